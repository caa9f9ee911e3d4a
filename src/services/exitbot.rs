//! ExitBot, step 2 of the loop: the kill switch.
//!
//! Owns: turning this iteration's readings into halts — the daily loss
//! (`risk.global_max_daily_loss_pct`, until the next New York trading date), the health window
//! (`api_failures`), the account's flags (`account_blocked`), stale market data (`data_stale`) and
//! anomalies (clock skew against the broker, an implausible equity jump) — each only when its
//! `exitbot.kill_conditions` switch is on; lifting the halts whose clear policy allows it; and,
//! while a daily-loss halt holds, cancelling this daemon's open entries and (with
//! `risk.flatten_on_daily_loss`) closing this daemon's positions, one by one.
//!
//! Never: stops exits, lifts a halt the table in `core::halt` does not let it lift, or touches an
//! order or a position the daemon did not open (no "cancel all", no "close all").

use jiff::{SignedDuration, Timestamp};

use crate::core::clock;
use crate::core::config::Config;
use crate::core::halt::{self, Halt, HaltReason};
use crate::core::health::{self, FailureWindow};
use crate::core::risk;
use crate::core::state::State;
use crate::event;
use crate::services::broker::{Account, Broker, BrokerError};
use crate::services::execution::{ExecError, Execution};
use crate::services::notify;

/// What the iteration has seen so far.
#[derive(Debug, Default)]
pub struct Readings<'a> {
    pub account: Option<&'a Account>,
    pub account_error: Option<&'a BrokerError>,
    pub day_start_equity: Option<f64>,
    /// The equity of the previous iteration, for the jump check.
    pub previous_equity: Option<f64>,
    /// Local clock minus the broker's, when the broker's clock was read this iteration.
    pub clock_skew_seconds: Option<f64>,
    /// Symbols whose quotes were stale in the last execution step.
    pub stale: &'a [String],
}

/// Runs the checks at `now` and returns the halts active afterwards.
pub fn run(
    state: &mut State,
    cfg: &Config,
    health: &mut FailureWindow,
    broker: &mut dyn Broker,
    exec: &mut Execution,
    r: &Readings,
    now: Timestamp,
) -> Result<Vec<Halt>, ExecError> {
    let exitbot = &cfg.bots.exitbot;
    let kill = &exitbot.kill_conditions;
    let set = |state: &State, reason, detail: String, until| -> Result<bool, ExecError> {
        let change = halt::set(state, &Halt { reason, detail, since: now, until })?;
        let new = change.is_some();
        notify::announce(change);
        Ok(new)
    };
    let equity = r.account.map(|a| a.equity.to_f64());
    if exitbot.enabled {
        if kill.api_failure_halt && health.tripped(now) {
            let last = health.last_failure().unwrap_or(now);
            let cooloff = SignedDuration::from_mins(i64::from(exitbot.cooloff_minutes));
            let detail = format!("{} failed broker calls within {} s", health.count(now), health.window().as_secs());
            set(state, HaltReason::ApiFailures, detail, Some(health::api_halt_until(last, health.window(), cooloff)))?;
        }
        let limit = cfg.settings.risk.global_max_daily_loss_pct;
        if kill.max_daily_loss_halt
            && let Some(pnl) = equity.zip(r.day_start_equity).and_then(|(e, d)| risk::daily_pnl_pct(e, d))
            && risk::daily_loss_breached(pnl, limit)
        {
            let detail = format!("daily P&L {pnl:.2} % reached the -{limit} % limit");
            set(state, HaltReason::DailyLoss, detail, Some(clock::next_trading_date_start(now)))?;
        }
        let refusal = match (r.account, r.account_error) {
            (Some(a), _) => a.trading_refusal(),
            (None, Some(e @ BrokerError::Unauthorized { .. })) => Some(e.to_string()),
            _ => None,
        };
        if let Some(why) = refusal {
            set(state, HaltReason::AccountBlocked, format!("the account may not trade: {why}"), None)?;
        }
        if kill.data_stale_halt && !r.stale.is_empty() {
            let detail = format!("stale market data for {}", r.stale.join(", "));
            set(state, HaltReason::DataStale, detail, None)?;
        }
        if kill.anomaly_halt {
            let max_skew = cfg.settings.health.max_clock_skew_seconds as f64;
            if let Some(skew) = r.clock_skew_seconds.filter(|s| s.abs() > max_skew) {
                let detail =
                    format!("the local clock is {skew:.0} s off the broker's (allowed {max_skew:.0} s): check NTP");
                set(state, HaltReason::Anomaly, detail, None)?;
            }
            let max_jump = cfg.settings.health.max_equity_jump_pct;
            if let Some(jump) = equity.zip(r.previous_equity).and_then(|(e, p)| risk::daily_pnl_pct(e, p))
                && jump.abs() > max_jump
            {
                let detail = format!("equity moved {jump:.1} % in one iteration (allowed {max_jump} %)");
                set(state, HaltReason::Anomaly, detail, None)?;
            }
        }
    }

    let mut still = Vec::new();
    for h in state.active_halts()? {
        let cause_cleared = match h.reason {
            HaltReason::ApiFailures => health.is_clean(now),
            HaltReason::AccountBlocked => r.account.is_some_and(|a| a.trading_refusal().is_none()),
            HaltReason::DataStale => r.stale.is_empty(),
            _ => false,
        };
        if halt::clears_by_itself(&h, now, cause_cleared) {
            notify::announce(halt::clear(state, h.reason, "auto", now)?);
        } else {
            still.push(h);
        }
    }

    if still.iter().any(|h| h.reason == HaltReason::DailyLoss) {
        // The flatten never waits on a cancel: the positions are closed now, and a cancel that
        // failed is tried again next iteration (the halt holds, so this runs again).
        let cancelled = exec.cancel_entries(state, broker);
        if cfg.settings.risk.flatten_on_daily_loss {
            let n = exec.flatten(state, broker, "daily_loss_flatten", now)?;
            if n > 0 {
                event!(Warn, "flatten", reason = "daily_loss", orders = n);
            }
        }
        cancelled?;
    }
    Ok(still)
}
