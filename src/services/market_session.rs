//! The stock session as the broker tells it.
//!
//! Owns: a cache of the broker's market clock, kept until its next boundary (the close while
//! open, the open while closed), so the clock is asked about twice a day rather than every
//! iteration. The broker's clock knows holidays and early closes (its `next_close` on a half day
//! is 13:00); the local `RegularSession` is the fallback when the broker cannot answer.
//!
//! Never: trusts a cached answer past its boundary.

use jiff::Timestamp;

use crate::core::clock::{MarketCalendar, RegularSession, SessionState};
use crate::services::broker::{Broker, MarketClock};

#[derive(Debug, Default)]
pub struct BrokerSession {
    cached: Option<MarketClock>,
    /// Local minus broker time at the last reading, until taken.
    skew: Option<f64>,
}

impl BrokerSession {
    pub fn new() -> BrokerSession {
        BrokerSession::default()
    }

    /// The session at `now`: from the cache while it holds, else from the broker, else local.
    pub fn session_at(&mut self, broker: &mut dyn Broker, now: Timestamp) -> SessionState {
        if let Some(c) = self.cached.filter(|c| still_valid(c, now)) {
            return to_state(&c);
        }
        match broker.clock() {
            Ok(c) => {
                self.cached = Some(c);
                self.skew = Some(now.duration_since(c.timestamp).as_secs_f64());
                if still_valid(&c, now) { to_state(&c) } else { RegularSession.session_at(now) }
            }
            Err(_) => {
                self.cached = None;
                RegularSession.session_at(now)
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
        let mut session = BrokerSession::new();
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
