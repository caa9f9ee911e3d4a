//! The exit rules, one evaluator for every bot, from each bot's `exits` section.
//!
//! Owns: deciding, from plain values, whether an owned position must close now and by which rule:
//! `stop_loss` (`stop_loss_pct` against the entry), `trailing_stop` (`trailing_stop_pct` from the
//! best price since entry, which the execution service keeps in the state database so a restart
//! keeps it), `take_profit`, `time_stop` (`time_stop_minutes` in the trade),
//! `flatten_before_close` (`flatten_before_close_minutes` before the broker's close, stocks and
//! options) and `manage_until` (stocks, and a lone option leg: the bot's day ends at
//! `session.manage_until`, on the wall
//! clock of `system.timezone` — and never later than `CLOSE_MARGIN` before the broker's close: in
//! the weeks when that zone and New York change their clocks on different dates, a
//! `manage_until` before the close in one week falls after it in another, and a stock must not be
//! held into the close because of it).
//!
//! Never: sends anything, or turns a stop into a resting order. Stops are watched here and closed
//! with a market order when crossed, so no protective order ever rests on the wrong side of the
//! market (the Python successor's stop "limits" filled at once).

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::bots::{BotView, Exit};
use crate::core::clock::{HhMm, SessionState};
use crate::core::config::Exits;
use crate::core::order::{OrderType, Side, TimeInForce};
use crate::core::state::OwnedPosition;

/// How long before the broker's close a `manage_until` that falls at or after the close is
/// clamped to: time for a market order to fill inside the session.
pub const CLOSE_MARGIN: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// What the rules look at.
#[derive(Debug, Clone, Copy)]
pub struct Position {
    /// Positive long, negative short.
    pub qty: f64,
    pub entry_price: f64,
    pub opened_at: Timestamp,
    /// The best price since entry: the highest for a long, the lowest for a short.
    pub best_price: Option<f64>,
}

/// The market around the position.
#[derive(Debug, Clone)]
pub struct Market<'a> {
    pub now: Timestamp,
    pub price: f64,
    /// The stock session (for `flatten_before_close`); `None` for crypto, which never closes.
    pub session: Option<SessionState>,
    /// The bot's `manage_until` on the wall clock of `tz`; `None` where it does not apply.
    pub manage_until: Option<(HhMm, &'a TimeZone)>,
}

/// The first rule that says "close now", in the order written below.
pub fn triggered(rules: &Exits, p: &Position, m: &Market) -> Option<&'static str> {
    // Price rules need a price; the time rules below fire without one.
    if m.price.is_finite() && m.price > 0.0 && p.entry_price > 0.0 {
        let long = p.qty >= 0.0;
        // Gain in percent of the entry, from the position's side.
        let gain = if long { (m.price / p.entry_price - 1.0) * 100.0 } else { (1.0 - m.price / p.entry_price) * 100.0 };
        // A hair of tolerance: 100.5 against 100 is a 0.5 % move even if the float says 0.49999.
        const EPS: f64 = 1e-9;
        if gain <= -rules.stop_loss_pct + EPS {
            return Some("stop_loss");
        }
        if let (Some(trail), Some(best)) = (rules.trailing_stop_pct, p.best_price) {
            let from_best = if long { (1.0 - m.price / best) * 100.0 } else { (m.price / best - 1.0) * 100.0 };
            // Only once the trade has been in profit: before that the stop loss protects it.
            let was_ahead = if long { best > p.entry_price } else { best < p.entry_price };
            if was_ahead && from_best >= trail - EPS {
                return Some("trailing_stop");
            }
        }
        if gain >= rules.take_profit_pct - EPS {
            return Some("take_profit");
        }
    }
    if let Some(mins) = rules.time_stop_minutes
        && m.now.duration_since(p.opened_at).as_secs() >= i64::from(mins) * 60
    {
        return Some("time_stop");
    }
    if let (Some(mins), Some(s)) = (rules.flatten_before_close_minutes, m.session)
        && s.is_open
        && s.next_close.duration_since(m.now).as_secs() <= i64::from(mins) * 60
    {
        return Some("flatten_before_close");
    }
    if let Some((until, tz)) = m.manage_until
        && day_ended(m.now, m.session, until, tz)
    {
        return Some("manage_until");
    }
    None
}

/// Whether a bot's day, ending at `until` on `tz`'s wall clock, is over at `now` — or, when today
/// `until` falls at or after the broker's close, whether the close is `CLOSE_MARGIN` away.
pub fn day_ended(now: Timestamp, session: Option<SessionState>, until: HhMm, tz: &TimeZone) -> bool {
    let local = now.to_zoned_datetime(tz.clone()).time();
    if local >= until.to_time() {
        return true;
    }
    // Clamped to the close: today's `manage_until` is at or after the broker's close.
    session.filter(|s| s.is_open).is_some_and(|s| {
        crate::core::clock::today_at(now, tz, until).is_none_or(|deadline| deadline >= s.next_close)
            && s.next_close.duration_since(now) <= CLOSE_MARGIN
    })
}

/// The market exit of all of `p` if a rule says so, priced at the quote's midpoint.
/// `session` and `manage_until` as in `Market`; `tif` the time in force its market takes.
pub fn exit_for(
    rules: &Exits,
    p: &OwnedPosition,
    view: &BotView,
    session: Option<SessionState>,
    manage_until: Option<(HhMm, &TimeZone)>,
    tif: TimeInForce,
) -> Option<Exit> {
    let price = view.quotes.get(&p.symbol).map_or(f64::NAN, |q| (q.bid + q.ask) / 2.0);
    let position = Position {
        qty: p.qty.to_f64(),
        entry_price: p.avg_entry_price.to_f64(),
        opened_at: p.opened_at,
        best_price: p.high_water,
    };
    let rule = triggered(rules, &position, &Market { now: view.now, price, session, manage_until })?;
    Some(Exit {
        symbol: p.symbol.clone(),
        side: if p.qty.is_negative() { Side::Buy } else { Side::Sell },
        qty: p.qty.abs(),
        rule,
        order_type: OrderType::Market,
        limit_price: None,
        time_in_force: tif,
        legs: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn rules(trailing: Option<f64>) -> Exits {
        Exits {
            stop_loss_pct: 0.5,
            take_profit_pct: 1.0,
            time_stop_minutes: Some(25),
            flatten_before_close_minutes: Some(5),
            trailing_stop_pct: trailing,
            broker_stop: false,
            broker_stop_pct: None,
        }
    }

    fn long(entry: f64, best: Option<f64>) -> Position {
        Position { qty: 10.0, entry_price: entry, opened_at: ts("2026-11-25T15:00:00Z"), best_price: best }
    }

    fn at(now: &str, price: f64) -> Market<'static> {
        Market { now: ts(now), price, session: None, manage_until: None }
    }

    const SOON: &str = "2026-11-25T15:10:00Z";

    #[test]
    fn stop_and_take_profit_at_their_edges() {
        let r = rules(None);
        let p = long(100.0, None);
        assert_eq!(triggered(&r, &p, &at(SOON, 99.51)), None);
        assert_eq!(triggered(&r, &p, &at(SOON, 99.5)), Some("stop_loss"));
        assert_eq!(triggered(&r, &p, &at(SOON, 100.99)), None);
        assert_eq!(triggered(&r, &p, &at(SOON, 101.0)), Some("take_profit"));
        // A short is the mirror image.
        let s = Position { qty: -10.0, ..p };
        assert_eq!(triggered(&r, &s, &at(SOON, 100.5)), Some("stop_loss"));
        assert_eq!(triggered(&r, &s, &at(SOON, 99.0)), Some("take_profit"));
    }

    #[test]
    fn trailing_stop_follows_the_best_price_once_ahead() {
        let r = rules(Some(0.4));
        // Best 100.8 since entry at 100: the trail is at 100.8 × 0.996 = 100.3968.
        assert_eq!(triggered(&r, &long(100.0, Some(100.8)), &at(SOON, 100.40)), None);
        assert_eq!(triggered(&r, &long(100.0, Some(100.8)), &at(SOON, 100.39)), Some("trailing_stop"));
        // Never ahead: the trail waits, the stop loss protects.
        assert_eq!(triggered(&r, &long(100.0, Some(100.0)), &at(SOON, 99.6)), None);
    }

    /// London and New York in March 2026: the US moves its clocks on the 8th, the UK on the 29th.
    /// In between, 20:50 London — 15:50 New York most of the year — is 16:50 New York, after the
    /// close: the bot's day end is clamped to five minutes before the close.
    #[test]
    fn a_manage_until_after_the_close_is_clamped_to_it() {
        let london = jiff::tz::TimeZone::get("Europe/London").unwrap();
        let until = HhMm::parse("20:50").unwrap();
        let no_time = Exits { flatten_before_close_minutes: None, time_stop_minutes: None, ..rules(None) };
        let p = Position { opened_at: ts("2026-03-18T14:00:00Z"), ..long(100.0, None) };
        let day = |close: &str, now: &str| {
            let session = SessionState { is_open: true, next_open: ts(SOON), next_close: ts(close) };
            let m = Market { now: ts(now), price: 100.0, session: Some(session), manage_until: Some((until, &london)) };
            triggered(&no_time, &p, &m)
        };
        // Wednesday 2026-03-18: the close (16:00 EDT) is 20:00Z, 20:50 London (GMT) is 20:50Z.
        assert_eq!(day("2026-03-18T20:00:00Z", "2026-03-18T19:54:59Z"), None);
        assert_eq!(day("2026-03-18T20:00:00Z", "2026-03-18T19:55:00Z"), Some("manage_until"), "clamped");
        // In April both zones are on summer time: 20:50 London is 19:50Z, before the close, and
        // the configured time stands.
        assert_eq!(day("2026-04-15T20:00:00Z", "2026-04-15T19:49:59Z"), None);
        assert_eq!(day("2026-04-15T20:00:00Z", "2026-04-15T19:50:00Z"), Some("manage_until"), "as configured");
        // A closed market (the order would wait for the next open) is no reason either way.
        let closed = SessionState { is_open: false, next_open: ts(SOON), next_close: ts("2026-03-18T20:00:00Z") };
        let m = Market {
            now: ts("2026-03-18T19:58:00Z"),
            price: 100.0,
            session: Some(closed),
            manage_until: Some((until, &london)),
        };
        assert_eq!(triggered(&no_time, &p, &m), None);
    }

    #[test]
    fn time_stop_close_and_manage_until() {
        let r = rules(None);
        let p = long(100.0, None);
        assert_eq!(triggered(&r, &p, &at("2026-11-25T15:24:59Z", 100.0)), None);
        assert_eq!(triggered(&r, &p, &at("2026-11-25T15:25:00Z", 100.0)), Some("time_stop"));
        let no_time = Exits { time_stop_minutes: None, ..r };
        let session = SessionState { is_open: true, next_open: ts(SOON), next_close: ts("2026-11-25T21:00:00Z") };
        let close = |now| Market { now: ts(now), price: 100.0, session: Some(session), manage_until: None };
        assert_eq!(triggered(&no_time, &p, &close("2026-11-25T20:54:59Z")), None);
        assert_eq!(triggered(&no_time, &p, &close("2026-11-25T20:55:00Z")), Some("flatten_before_close"));
        let la = crate::core::clock::time_zone("America/Los_Angeles").unwrap();
        let until = HhMm::parse("12:55").unwrap();
        let m = |now| Market { now: ts(now), price: 100.0, session: None, manage_until: Some((until, &la)) };
        assert_eq!(triggered(&no_time, &p, &m("2026-11-25T20:54:00Z")), None);
        assert_eq!(triggered(&no_time, &p, &m("2026-11-25T20:55:00Z")), Some("manage_until"));
    }

    #[test]
    fn without_a_price_only_the_time_rules_decide() {
        assert_eq!(triggered(&rules(None), &long(100.0, None), &at(SOON, f64::NAN)), None);
        assert_eq!(
            triggered(&rules(None), &long(100.0, None), &at("2026-11-25T15:30:00Z", f64::NAN)),
            Some("time_stop")
        );
    }
}
