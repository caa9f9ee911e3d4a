//! Halts: the switch that stops new entries.
//!
//! Owns: the list of halt reasons, the table saying how each one may be lifted (the deliberate
//! heart of this module), and the set/clear operations that persist a halt, log `halt` /
//! `resume` and hand back what changed (`Change`), which callers that own a notifier post; and
//! the halts held in memory while the ledger cannot store them (`set_or_hold`, `store_held`).
//!
//! Never: blocks exits. A halt stops entries only; the daemon's own positions keep being managed
//! and protected while halted. And never lifts a halt because time passed unless the table says
//! so: the Python daemon lifted every halt, its daily-loss halt included, after a cool-off.

use std::fmt;

use jiff::Timestamp;

use crate::core::clock;
use crate::core::state::{State, StateError};
use crate::event;

/// Why entries are stopped. The names are the contract's `reason` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HaltReason {
    /// Set by `trading-hydra halt`.
    Manual,
    /// The day's loss reached `risk.global_max_daily_loss_pct`.
    DailyLoss,
    /// Too many failed broker calls inside the health window.
    ApiFailures,
    /// The broker says the account may not trade.
    AccountBlocked,
    /// The state database failed: the daemon is unsure of what it owns.
    StateError,
    /// Market data older than allowed while its market is open.
    DataStale,
    /// Something implausible: clock skew, an equity jump.
    Anomaly,
    /// An iteration panicked: a bug, so a person should look before entries resume.
    InternalError,
    /// The broker holds an order under one of our client order ids that is not the one we
    /// recorded (a moved, restored or second ledger): a person must look at the account.
    OrderConflict,
}

/// How a halt may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearPolicy {
    /// Only an operator's `resume` lifts it; it never lifts itself.
    Operator,
    /// It lifts itself at `until` and not a moment before; `resume` cannot shorten it.
    AtUntil,
    /// The daemon lifts it once its cause has cleared and `until` (if any) has passed; `resume`
    /// may lift it once `until` has passed (the daemon sets it again if the cause is still there).
    CauseCleared,
}

impl HaltReason {
    pub const ALL: [HaltReason; 9] = [
        HaltReason::Manual,
        HaltReason::DailyLoss,
        HaltReason::ApiFailures,
        HaltReason::AccountBlocked,
        HaltReason::StateError,
        HaltReason::DataStale,
        HaltReason::Anomaly,
        HaltReason::InternalError,
        HaltReason::OrderConflict,
    ];

    /// The table. Changing a row here changes what can lift a halt on a live account: keep the
    /// tests in this file in step.
    pub fn policy(self) -> ClearPolicy {
        match self {
            HaltReason::Manual => ClearPolicy::Operator,
            HaltReason::DailyLoss => ClearPolicy::AtUntil,
            HaltReason::ApiFailures => ClearPolicy::CauseCleared,
            HaltReason::AccountBlocked => ClearPolicy::CauseCleared,
            HaltReason::DataStale => ClearPolicy::CauseCleared,
            HaltReason::StateError => ClearPolicy::Operator,
            HaltReason::Anomaly => ClearPolicy::Operator,
            HaltReason::InternalError => ClearPolicy::Operator,
            HaltReason::OrderConflict => ClearPolicy::Operator,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HaltReason::Manual => "manual",
            HaltReason::DailyLoss => "daily_loss",
            HaltReason::ApiFailures => "api_failures",
            HaltReason::AccountBlocked => "account_blocked",
            HaltReason::StateError => "state_error",
            HaltReason::DataStale => "data_stale",
            HaltReason::Anomaly => "anomaly",
            HaltReason::InternalError => "internal_error",
            HaltReason::OrderConflict => "order_conflict",
        }
    }

    pub fn parse(text: &str) -> Option<HaltReason> {
        HaltReason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for HaltReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An active halt as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Halt {
    pub reason: HaltReason,
    pub detail: String,
    pub since: Timestamp,
    /// `None`: until resumed (or until its cause clears, for `CauseCleared` halts).
    pub until: Option<Timestamp>,
}

/// Whether the daemon may lift `halt` on its own at `now`. `cause_cleared` is the daemon's own
/// verdict on the cause (the health window is clean, the account is no longer blocked, …).
pub fn clears_by_itself(halt: &Halt, now: Timestamp, cause_cleared: bool) -> bool {
    let until_passed = halt.until.is_none_or(|u| now >= u);
    match halt.reason.policy() {
        ClearPolicy::Operator => false,
        ClearPolicy::AtUntil => halt.until.is_some_and(|u| now >= u),
        ClearPolicy::CauseCleared => cause_cleared && until_passed,
    }
}

/// Whether an operator's `resume` may lift `halt` at `now`; `Err` says why not, its times on the
/// wall clock of `tz`.
pub fn resume_allowed(halt: &Halt, now: Timestamp, tz: &jiff::tz::TimeZone) -> Result<(), String> {
    let until = halt.until.filter(|u| now < *u);
    match (halt.reason.policy(), until) {
        (ClearPolicy::Operator, _) | (_, None) => Ok(()),
        (ClearPolicy::AtUntil, Some(u)) => Err(format!(
            "the {} halt lasts until {} (the next trading date) and cannot be lifted before",
            halt.reason,
            clock::person_ts(u, tz)
        )),
        (ClearPolicy::CauseCleared, Some(u)) => Err(format!(
            "the {} halt holds until {} at least; the daemon lifts it once its cause has cleared",
            halt.reason,
            clock::person_ts(u, tz)
        )),
    }
}

/// What `set` or `clear` changed, worded for the operator: the caller posts it as a
/// notification (`services::notify::announce`) if it has a notifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `halt` or `resume`.
    pub event: &'static str,
    pub title: String,
    pub text: String,
}

/// Sets (or extends) a halt and logs `halt` when it is new; returns the change when it is new.
/// An existing halt of the same reason keeps its `since`; its `until` becomes the later of the
/// two (a halt is never shortened here).
pub fn set(state: &State, halt: &Halt) -> Result<Option<Change>, StateError> {
    if !state.set_halt(halt)? {
        return Ok(None);
    }
    Ok(Some(announced(halt, false)))
}

/// Logs `halt` and words the change (`held`: in memory only, the ledger took no write).
fn announced(halt: &Halt, held: bool) -> Change {
    let until = halt.until.map(clock::db_ts);
    event!(
        Warn,
        "halt",
        reason = halt.reason.as_str(),
        detail = halt.detail.as_str(),
        until = until.as_deref(),
        held_in_memory = held,
    );
    let kept = if held { "; held in memory: the state database takes no writes" } else { "" };
    Change {
        event: "halt",
        title: format!("Trading Hydra halted: {}", halt.reason),
        text: format!(
            "{} (until {}){kept}; exits of the daemon's positions go on",
            halt.detail,
            until.as_deref().unwrap_or("resumed")
        ),
    }
}

/// Like `set`, for a daemon that must halt even when the ledger cannot store it (disk full,
/// read-only, I/O error): such a halt is kept in `held` (once per reason) and stops entries all
/// the same — the caller counts `held` as active — and its change is still handed back, to be
/// announced (notifications need no disk). `store_held` writes it once the ledger takes writes.
/// The ledger's error comes back beside the change.
pub fn set_or_hold(state: &State, held: &mut Vec<Halt>, halt: &Halt) -> (Option<Change>, Option<StateError>) {
    match set(state, halt) {
        Ok(change) => (change, None),
        Err(_) if held.iter().any(|h| h.reason == halt.reason) => (None, None),
        Err(e) => {
            held.push(halt.clone());
            (Some(announced(halt, true)), Some(e))
        }
    }
}

/// Stores the halts held in memory, oldest first; each one stored leaves `held`. Stops at the
/// first the ledger still refuses.
pub fn store_held(state: &State, held: &mut Vec<Halt>) -> Result<(), StateError> {
    while let Some(h) = held.first() {
        state.set_halt(h)?;
        held.remove(0);
    }
    Ok(())
}

/// Lifts a halt and logs `resume`; returns the change when there was one. `by` says who lifted
/// it (`operator`, `auto`).
pub fn clear(state: &State, reason: HaltReason, by: &str, now: Timestamp) -> Result<Option<Change>, StateError> {
    if !state.clear_halt(reason, by, now)? {
        return Ok(None);
    }
    event!(Info, "resume", reason = reason.as_str(), by = by);
    Ok(Some(Change {
        event: "resume",
        title: format!("Trading Hydra resumed: {reason}"),
        text: format!("the {reason} halt was lifted ({by})"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn halt(reason: HaltReason, until: Option<&str>) -> Halt {
        Halt { reason, detail: "x".into(), since: ts("2026-11-25T15:00:00Z"), until: until.map(ts) }
    }

    #[test]
    fn names_round_trip() {
        for r in HaltReason::ALL {
            assert_eq!(HaltReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(HaltReason::parse("nope"), None);
    }

    #[test]
    fn manual_never_clears_by_itself_but_resume_lifts_it() {
        let h = halt(HaltReason::Manual, None);
        assert!(!clears_by_itself(&h, ts("2030-01-01T00:00:00Z"), true));
        assert!(resume_allowed(&h, ts("2026-11-25T15:00:01Z"), &jiff::tz::TimeZone::UTC).is_ok());
    }

    #[test]
    fn daily_loss_lasts_exactly_until_the_next_trading_date() {
        let until = "2026-11-26T05:00:00Z";
        let h = halt(HaltReason::DailyLoss, Some(until));
        let before = ts("2026-11-26T04:59:59.999Z");
        assert!(!clears_by_itself(&h, before, true));
        assert!(resume_allowed(&h, before, &jiff::tz::TimeZone::UTC).is_err());
        assert!(clears_by_itself(&h, ts(until), false));
        assert!(resume_allowed(&h, ts(until), &jiff::tz::TimeZone::UTC).is_ok());
        // A daily-loss halt without an end never lifts itself.
        assert!(!clears_by_itself(&halt(HaltReason::DailyLoss, None), ts("2030-01-01T00:00:00Z"), true));
    }

    #[test]
    fn cause_cleared_needs_both_the_cause_and_the_time() {
        let until = "2026-11-25T21:30:00Z";
        let h = halt(HaltReason::ApiFailures, Some(until));
        assert!(!clears_by_itself(&h, ts("2026-11-25T21:29:59Z"), true));
        assert!(!clears_by_itself(&h, ts(until), false));
        assert!(clears_by_itself(&h, ts(until), true));
        assert!(resume_allowed(&h, ts("2026-11-25T21:29:59Z"), &jiff::tz::TimeZone::UTC).is_err());
        assert!(resume_allowed(&h, ts(until), &jiff::tz::TimeZone::UTC).is_ok());
    }

    #[test]
    fn an_order_conflict_waits_for_an_operator_and_resume_lifts_it() {
        let h = halt(HaltReason::OrderConflict, None);
        assert!(!clears_by_itself(&h, ts("2030-01-01T00:00:00Z"), true));
        assert!(resume_allowed(&h, ts("2026-11-25T15:00:01Z"), &jiff::tz::TimeZone::UTC).is_ok());
    }

    #[test]
    fn a_halt_the_ledger_refuses_is_held_once_announced_and_stored_later() {
        let scratch = crate::test_dir::TestDir::new("halt-held");
        let dir = scratch.path().to_path_buf();
        let path = dir.join("state.db");
        let state = State::open(&path).unwrap();
        let h = halt(HaltReason::DailyLoss, Some("2026-11-26T05:00:00Z"));
        let mut held = Vec::new();
        // A read-only ledger stands for a full disk: every write fails.
        state.set_query_only(true);
        let (change, failed) = set_or_hold(&state, &mut held, &h);
        assert!(failed.is_some() && change.is_some_and(|c| c.text.contains("held in memory")));
        assert_eq!(held, vec![h.clone()]);
        let (change, _) = set_or_hold(&state, &mut held, &h);
        assert!(change.is_none() && held.len() == 1, "held and announced once");
        assert!(store_held(&state, &mut held).is_err() && held.len() == 1);
        state.set_query_only(false);
        store_held(&state, &mut held).unwrap();
        assert!(held.is_empty());
        assert_eq!(state.active_halts().unwrap(), vec![h]);
    }

    #[test]
    fn bugs_and_state_errors_wait_for_an_operator() {
        for r in [HaltReason::InternalError, HaltReason::StateError, HaltReason::Anomaly] {
            assert!(!clears_by_itself(&halt(r, None), ts("2030-01-01T00:00:00Z"), true), "{r}");
        }
    }
}
