//! ExitBot, step 2 of the loop: the kill switch.
//!
//! Owns: turning the health verdicts into halts (and lifting the halts whose clear policy allows
//! it), then answering "which halts are active now?" for the rest of the iteration.
//!
//! Never: stops exits, or lifts a halt the table in `core::halt` does not let it lift. The
//! daily-loss check, account flags, stale data and anomalies join here with the loop issue; until
//! then their halts, if set by hand in the database, simply hold (their causes are never judged
//! cleared).

use jiff::{SignedDuration, Timestamp};

use crate::core::config::Config;
use crate::core::halt::{self, Halt, HaltReason};
use crate::core::health::{self, FailureWindow};
use crate::core::state::{State, StateError};

/// Runs the checks at `now` and returns the halts active afterwards.
pub fn run(state: &State, cfg: &Config, health: &mut FailureWindow, now: Timestamp) -> Result<Vec<Halt>, StateError> {
    let exitbot = &cfg.bots.exitbot;
    if exitbot.enabled && exitbot.kill_conditions.api_failure_halt && health.tripped(now) {
        let last = health.last_failure().unwrap_or(now);
        let cooloff = SignedDuration::from_mins(i64::from(exitbot.cooloff_minutes));
        let detail = format!("{} failed broker calls within {} s", health.count(now), health.window().as_secs());
        let until = health::api_halt_until(last, health.window(), cooloff);
        halt::set(state, &Halt { reason: HaltReason::ApiFailures, detail, since: now, until: Some(until) })?;
    }

    let mut active = state.active_halts()?;
    let mut still = Vec::with_capacity(active.len());
    for h in active.drain(..) {
        let cause_cleared = match h.reason {
            HaltReason::ApiFailures => health.is_clean(now),
            _ => false,
        };
        if halt::clears_by_itself(&h, now, cause_cleared) {
            halt::clear(state, h.reason, "auto", now)?;
        } else {
            still.push(h);
        }
    }
    Ok(still)
}
