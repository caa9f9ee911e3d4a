//! The stock session as the broker tells it.
//!
//! Owns: a cache of the broker's market clock, kept until its next boundary (the close while
//! open, the open while closed), so the clock is asked about twice a day rather than every
//! iteration; and the offset of the broker's clock from the local one at the last reading. When
//! the two disagree by more than `health.max_clock_skew_seconds` (a Pi whose NTP stepped its
//! clock), the market's time is the local time corrected by that offset (`market_time`): the
//! session, the close and every exit's time rule follow the broker, and the cache holds on that
//! time instead of being asked again every iteration — but the broker's clock is read again every
//! minute while the two disagree, so a `clock_skew` halt sees them agree once NTP has set the
//! local one; a local clock that goes back between two iterations (a step) has the broker's read
//! again at once. The broker's clock knows holidays and
//! early closes (its `next_close` on a half day is 13:00); the local `RegularSession` is the
//! fallback when the broker cannot answer, on the corrected time.
//!
//! Never: trusts a cached answer past its boundary.

use jiff::{SignedDuration, Timestamp};

use crate::core::clock::{MarketCalendar, RegularSession, SessionState};
use crate::services::broker::{Broker, MarketClock};

#[derive(Debug, Default)]
pub struct BrokerSession {
    cached: Option<MarketClock>,
    /// Local minus broker time at the last reading, until taken.
    skew: Option<f64>,
    /// Broker minus local time at the last reading, kept.
    offset: SignedDuration,
    /// How far the two clocks may disagree before the broker's is the market's time.
    tolerance: SignedDuration,
    /// The local time of the last call: a local clock that went back since (an NTP step) is
    /// read against the broker's again at once.
    last_local: Option<Timestamp>,
    /// The local time of the last reading of the broker's clock: while the two disagree it is
    /// read again every `SKEWED_READ_EVERY`, to see them agree (a Pi's clock set by NTP at last).
    last_read: Option<Timestamp>,
}

/// How often the broker's clock is read again while the local one disagrees with it.
const SKEWED_READ_EVERY: SignedDuration = SignedDuration::from_secs(60);

impl BrokerSession {
    /// A session whose local clock may disagree with the broker's by `tolerance`
    /// (`health.max_clock_skew_seconds`) before the broker's is used.
    pub fn new(tolerance: SignedDuration) -> BrokerSession {
        BrokerSession { tolerance, ..BrokerSession::default() }
    }

    /// A reloaded `health.max_clock_skew_seconds`.
    pub fn set_tolerance(&mut self, tolerance: SignedDuration) {
        self.tolerance = tolerance;
    }

    /// The market's time at the local time `local`: `local` itself, or corrected by the offset
    /// measured at the last reading of the broker's clock when the two disagree by more than the
    /// tolerance.
    pub fn market_time(&self, local: Timestamp) -> Timestamp {
        if self.offset.abs() > self.tolerance { local.saturating_add(self.offset).unwrap_or(local) } else { local }
    }

    /// The session at the local time `local`: from the cache while it holds on the market's
    /// time, else from the broker, else from the local calendar on the market's time.
    pub fn session_at(&mut self, broker: &mut dyn Broker, local: Timestamp) -> SessionState {
        // The local clock went back: it was stepped, and the offset is measured again.
        if self.last_local.replace(local).is_some_and(|last| local < last) {
            self.cached = None;
        }
        // Skewed: read again every minute, until the clocks agree.
        let skewed = self.offset.abs() > self.tolerance;
        if skewed && self.last_read.is_none_or(|t| local.duration_since(t).abs() >= SKEWED_READ_EVERY) {
            self.cached = None;
        }
        if let Some(c) = self.cached.filter(|c| still_valid(c, self.market_time(local))) {
            return to_state(&c);
        }
        match broker.clock() {
            Ok(c) => {
                self.cached = Some(c);
                self.last_read = Some(local);
                self.skew = Some(local.duration_since(c.timestamp).as_secs_f64());
                self.offset = c.timestamp.duration_since(local);
                let now = self.market_time(local);
                if still_valid(&c, now) { to_state(&c) } else { RegularSession.session_at(now) }
            }
            Err(_) => {
                self.cached = None;
                RegularSession.session_at(self.market_time(local))
            }
        }
    }
}

impl BrokerSession {
    /// The clock skew measured at the last reading of the broker's clock, once.
    pub fn take_skew(&mut self) -> Option<f64> {
        self.skew.take()
    }
}

/// A cached clock holds from its own reading until its next boundary.
fn still_valid(c: &MarketClock, now: Timestamp) -> bool {
    let boundary = if c.is_open { c.next_close } else { c.next_open };
    now < boundary && now >= c.timestamp.saturating_sub(jiff::SignedDuration::from_mins(5)).unwrap_or(c.timestamp)
}

fn to_state(c: &MarketClock) -> SessionState {
    SessionState { is_open: c.is_open, next_open: c.next_open, next_close: c.next_close }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use jiff::SignedDuration;

    use super::*;
    use crate::core::clock::{Clock, ManualClock};
    use crate::core::config::Sim;
    use crate::sim::sim_broker::SimBroker;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_broker_clock_is_asked_once_per_boundary() {
        // Wednesday 2026-11-25, 10:00 New York.
        let clock = Arc::new(ManualClock::new(ts("2026-11-25T15:00:00Z")));
        let mut broker = SimBroker::open(clock.clone(), Sim::default(), 1, None).unwrap();
        let mut session = BrokerSession::new(SignedDuration::from_secs(30));
        for _ in 0..300 {
            assert!(session.session_at(&mut broker, clock.now()).is_open);
            clock.advance(SignedDuration::from_mins(1));
        }
        assert_eq!(broker.take_call_stats().requests, 1, "one clock request for the whole session");
        // 16:00 New York: the boundary passed, so ask again; then quiet until Thursday's open.
        clock.set(ts("2026-11-25T21:00:00Z"));
        let s = session.session_at(&mut broker, clock.now());
        assert!(!s.is_open);
        assert_eq!(s.next_open, ts("2026-11-26T14:30:00Z"));
        for _ in 0..100 {
            clock.advance(SignedDuration::from_mins(5));
            assert!(!session.session_at(&mut broker, clock.now()).is_open);
        }
        assert_eq!(broker.take_call_stats().requests, 1);
    }
}
