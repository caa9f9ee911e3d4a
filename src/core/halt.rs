//! Halts: the switch that stops new entries.
//!
//! Owns: the list of halt reasons and the table saying how each one may be lifted (the
//! deliberate heart of this module), and the loop's verdict on entries for an iteration
//! (`entries_stopped`): pure words and rules, tested with plain values. Setting and lifting a
//! halt in the ledger is `core::halt_store`'s.
//!
//! Never: blocks exits. A halt stops entries only; the daemon's own positions keep being managed
//! and protected while halted. And never lifts a halt because time passed unless the table says
//! so: the Python daemon lifted every halt, its daily-loss halt included, after a cool-off.

use std::fmt;

use jiff::Timestamp;

use crate::core::clock;

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
    /// Something implausible: an equity jump.
    Anomaly,
    /// The local clock disagrees with the broker's beyond `health.max_clock_skew_seconds` (a Pi
    /// that booted without a real-time clock, before NTP): lifts once the clocks agree.
    ClockSkew,
    /// An iteration panicked: a bug, so a person should look before entries resume.
    InternalError,
    /// The broker holds an order under one of our client order ids that is not the one we
    /// recorded (a moved, restored or second ledger): a person must look at the account.
    OrderConflict,
    /// The broker holds orders of this daemon's bots that the ledger does not know (a restored
    /// backup, a lost journal, a second ledger on the account): entries would double positions.
    LedgerBehind,
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
    pub const ALL: [HaltReason; 11] = [
        HaltReason::Manual,
        HaltReason::DailyLoss,
        HaltReason::ApiFailures,
        HaltReason::AccountBlocked,
        HaltReason::StateError,
        HaltReason::DataStale,
        HaltReason::Anomaly,
        HaltReason::ClockSkew,
        HaltReason::InternalError,
        HaltReason::OrderConflict,
        HaltReason::LedgerBehind,
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
            // The broker's clock is read again every minute while the two disagree; the halt
            // lifts at the first reading where they agree.
            HaltReason::ClockSkew => ClearPolicy::CauseCleared,
            HaltReason::InternalError => ClearPolicy::Operator,
            HaltReason::OrderConflict => ClearPolicy::Operator,
            // Its cause is read from the broker at each check: it lifts once no lost order is
            // left (booked by `recover --confirm`, or closed at the broker), never by time.
            HaltReason::LedgerBehind => ClearPolicy::CauseCleared,
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
            HaltReason::ClockSkew => "clock_skew",
            HaltReason::InternalError => "internal_error",
            HaltReason::OrderConflict => "order_conflict",
            HaltReason::LedgerBehind => "ledger_behind",
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

/// Why no entry may go this iteration, in words for `status` and `bot_idle` (`None`: entries may
/// go). Fail-closed: halts that could not be read (`halts_known` false) are a halt; any active or
/// held halt stops entries; so does being unsure of state (a failed read of orders, positions or
/// the account); and with `safety.fail_closed`, any failed step (`first_error`). The execution
/// step asks the entry gate (`Orders::entry_stop`) again before each entry for what happens
/// after this verdict.
pub fn entries_stopped(
    halts_known: bool,
    halts: &[HaltReason],
    unsure: bool,
    first_error: Option<&str>,
    fail_closed: bool,
) -> Option<String> {
    let error = first_error.unwrap_or("");
    if !halts_known {
        Some("the halts cannot be read: unsure of state".to_string())
    } else if !halts.is_empty() {
        let names: Vec<&str> = halts.iter().map(|h| h.as_str()).collect();
        Some(format!("halted: {} (see `trading-hydra status`)", names.join(", ")))
    } else if unsure {
        Some(format!("unsure of state: {error}"))
    } else if first_error.is_some() && fail_closed {
        Some(format!("a step failed (safety.fail_closed): {error}"))
    } else {
        None
    }
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
    fn entries_stop_on_any_halt_unknown_halts_unsure_state_and_failed_steps_when_fail_closed() {
        assert_eq!(entries_stopped(true, &[], false, None, true), None);
        let unknown = entries_stopped(false, &[], false, None, false).unwrap();
        assert!(unknown.contains("cannot be read"), "{unknown}");
        let halted = entries_stopped(true, &[HaltReason::DailyLoss, HaltReason::Manual], false, None, false).unwrap();
        assert!(halted.contains("daily_loss, manual"), "{halted}");
        // Unsure of state stops entries whatever `safety.fail_closed` says.
        let unsure = entries_stopped(true, &[], true, Some("orders: timed out"), false).unwrap();
        assert_eq!(unsure, "unsure of state: orders: timed out");
        // A failed step stops entries only fail-closed.
        assert!(entries_stopped(true, &[], false, Some("portfolio: x"), true).unwrap().contains("fail_closed"));
        assert_eq!(entries_stopped(true, &[], false, Some("portfolio: x"), false), None);
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
    fn a_ledger_behind_lifts_only_when_the_check_finds_nothing_lost() {
        let h = halt(HaltReason::LedgerBehind, None);
        assert!(!clears_by_itself(&h, ts("2030-01-01T00:00:00Z"), false));
        assert!(clears_by_itself(&h, ts("2026-11-25T15:00:01Z"), true));
        // `resume` may lift it, and the next check sets it again while the cause is there.
        assert!(resume_allowed(&h, ts("2026-11-25T15:00:01Z"), &jiff::tz::TimeZone::UTC).is_ok());
    }

    #[test]
    fn a_clock_skew_lifts_once_the_clocks_agree() {
        let h = halt(HaltReason::ClockSkew, None);
        assert!(!clears_by_itself(&h, ts("2030-01-01T00:00:00Z"), false));
        assert!(clears_by_itself(&h, ts("2026-11-25T15:00:01Z"), true));
    }

    #[test]
    fn bugs_and_state_errors_wait_for_an_operator() {
        for r in [HaltReason::InternalError, HaltReason::StateError, HaltReason::Anomaly] {
            assert!(!clears_by_itself(&halt(r, None), ts("2030-01-01T00:00:00Z"), true), "{r}");
        }
    }
}
