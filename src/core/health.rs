//! The health window: how many broker calls failed recently.
//!
//! Owns: a sliding window of failure instants (`health.max_api_failures_in_window` over
//! `health.api_failure_window_seconds`) and the rule for how long an API-failure halt lasts.
//!
//! Never: sets or clears a halt itself (ExitBot does, from this verdict), or grows without bound:
//! it keeps at most `limit` instants, which is all the verdict needs.

use std::collections::VecDeque;

use jiff::{SignedDuration, Timestamp};

#[derive(Debug, Clone)]
pub struct FailureWindow {
    limit: u32,
    window: SignedDuration,
    failures: VecDeque<Timestamp>,
    last: Option<Timestamp>,
}

impl FailureWindow {
    /// `limit` failures within `window` trip it.
    pub fn new(limit: u32, window: SignedDuration) -> FailureWindow {
        let limit = limit.max(1);
        FailureWindow { limit, window, failures: VecDeque::with_capacity(limit as usize), last: None }
    }

    pub fn record_failure(&mut self, at: Timestamp) {
        if self.failures.len() == self.limit as usize {
            self.failures.pop_front();
        }
        self.failures.push_back(at);
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
    }

    /// Failures younger than the window at `now`: one at `t` counts while `now - t < window`.
    pub fn count(&mut self, now: Timestamp) -> u32 {
        while let Some(&first) = self.failures.front() {
            if now.duration_since(first) >= self.window {
                self.failures.pop_front();
            } else {
                break;
            }
        }
        self.failures.len() as u32
    }

    pub fn tripped(&mut self, now: Timestamp) -> bool {
        self.count(now) >= self.limit
    }

    /// No failure inside the window.
    pub fn is_clean(&mut self, now: Timestamp) -> bool {
        self.count(now) == 0
    }

    pub fn last_failure(&self) -> Option<Timestamp> {
        self.last
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn window(&self) -> SignedDuration {
        self.window
    }
}

/// When an API-failure halt may lift: once the window holds no failure again *and* the cool-off
/// has passed, both counted from the last failure. Stored as the halt's `until`, so a restart
/// (which starts with an empty window) cannot lift it early.
pub fn api_halt_until(last_failure: Timestamp, window: SignedDuration, cooloff: SignedDuration) -> Timestamp {
    last_failure.saturating_add(window.max(cooloff)).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn trips_exactly_at_the_limit_inside_the_window() {
        let mut w = FailureWindow::new(5, SignedDuration::from_secs(60));
        for s in 0..4 {
            w.record_failure(t(s * 10));
        }
        assert!(!w.tripped(t(40)), "4 of 5");
        w.record_failure(t(59));
        assert!(w.tripped(t(59)), "5 within 60 s");
        // At t(60) the failure at t(0) is exactly one window old and no longer counts.
        assert_eq!(w.count(t(60)), 4);
        assert!(!w.tripped(t(60)));
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_trip() {
        let mut w = FailureWindow::new(3, SignedDuration::from_secs(60));
        for s in 0..20 {
            w.record_failure(t(s * 30));
            assert!(!w.tripped(t(s * 30)), "at {s}");
        }
    }

    #[test]
    fn clean_exactly_one_window_after_the_last_failure() {
        let mut w = FailureWindow::new(2, SignedDuration::from_secs(60));
        w.record_failure(t(0));
        w.record_failure(t(10));
        assert!(!w.is_clean(t(69)));
        assert!(w.is_clean(t(70)));
        assert_eq!(w.last_failure(), Some(t(10)));
    }

    #[test]
    fn holds_no_more_than_the_limit() {
        let mut w = FailureWindow::new(3, SignedDuration::from_secs(60));
        for s in 0..1000 {
            w.record_failure(t(s));
        }
        assert_eq!(w.failures.len(), 3);
        assert!(w.tripped(t(1000)));
    }

    #[test]
    fn halt_lasts_the_longer_of_window_and_cooloff() {
        let last = t(0);
        assert_eq!(api_halt_until(last, SignedDuration::from_secs(60), SignedDuration::from_mins(390)), t(390 * 60));
        assert_eq!(api_halt_until(last, SignedDuration::from_secs(600), SignedDuration::from_secs(0)), t(600));
    }
}
