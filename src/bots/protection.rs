//! Protective orders: the stop each position rests at the broker, so it keeps one while the
//! daemon is down (a Pi without power, a dead SD card, a home connection gone for an afternoon).
//!
//! Owns: deciding, from plain values, which resting order protects a position — a stock a `stop`
//! (`gtc` for whole shares; fractional positions are day-only at Alpaca, so theirs is placed again
//! each session), a coin a `stop_limit` `gtc` (Alpaca has no plain crypto stop) with its limit
//! `CRYPTO_LIMIT_ROOM` beyond the stop so it fills in a fast fall — at `exits.broker_stop_pct`
//! from the entry, or `trailing_stop_pct` from the best price once the trade has been ahead
//! (the execution service moves the resting order up, replacing it), rounded to the broker's
//! price increments away from the market.
//!
//! Never: protects an option. Multi-leg orders take no stop at Alpaca, and the options bot opens
//! only multi-leg positions: their protection is the daemon's own watch.

use crate::core::decimal::Dec;
use crate::core::instrument::AssetClass;
use crate::core::order::{OrderType, Side, TimeInForce};
use crate::core::state::OwnedPosition;

pub use crate::core::order::BROKER_STOP;

/// How far beyond its stop a crypto stop-limit's limit sits: room to fill in a fast fall.
pub const CRYPTO_LIMIT_ROOM: f64 = 0.02;

/// The resting order that protects a position.
#[derive(Debug, Clone, PartialEq)]
pub struct Protection {
    pub side: Side,
    pub qty: Dec,
    pub order_type: OrderType,
    pub stop: Dec,
    /// A stop-limit's limit.
    pub limit: Option<Dec>,
    pub time_in_force: TimeInForce,
}

/// The protective order for `p` at `pct` percent from its entry — or, with `trail` (the bot's
/// `trailing_stop_pct`) once the trade has been ahead, `trail` percent from its best price if
/// that is nearer the market — or `None` for what cannot rest one (an option, an empty position,
/// an unusable price).
pub fn protection_for(p: &OwnedPosition, pct: f64, trail: Option<f64>) -> Option<Protection> {
    let class = AssetClass::of(&p.symbol);
    if class == AssetClass::UsOption || p.qty.is_zero() || !(pct > 0.0 && pct < 100.0) {
        return None;
    }
    let long = !p.qty.is_negative();
    let entry = p.avg_entry_price.to_f64();
    if !(entry.is_finite() && entry > 0.0) {
        return None;
    }
    let side = if long { Side::Sell } else { Side::Buy };
    let mut level = entry * if long { 1.0 - pct / 100.0 } else { 1.0 + pct / 100.0 };
    if let (Some(t), Some(best)) = (trail.filter(|t| *t > 0.0 && *t < 100.0), p.high_water) {
        let ahead = if long { best > entry } else { best < entry };
        let trailed = best * if long { 1.0 - t / 100.0 } else { 1.0 + t / 100.0 };
        if ahead {
            level = if long { level.max(trailed) } else { level.min(trailed) };
        }
    }
    let stop = price(level, long)?;
    let qty = p.qty.abs();
    if class == AssetClass::Crypto {
        let room = if long { 1.0 - CRYPTO_LIMIT_ROOM } else { 1.0 + CRYPTO_LIMIT_ROOM };
        let limit = price(stop.to_f64() * room, long)?;
        return Some(Protection {
            side,
            qty,
            order_type: OrderType::StopLimit,
            stop,
            limit: Some(limit),
            time_in_force: TimeInForce::Gtc,
        });
    }
    let time_in_force = if qty.is_whole() { TimeInForce::Gtc } else { TimeInForce::Day };
    Some(Protection { side, qty, order_type: OrderType::Stop, stop, limit: None, time_in_force })
}

/// A price in the broker's increments — two decimals from $1 up, four below — rounded away from
/// the market: down for a long's sell stop, up for a short's buy stop. Through `Dec` first (nine
/// places), so float noise never costs a cent: 103 × 0.99 is 101.97, not 101.96.
fn price(x: f64, long: bool) -> Option<Dec> {
    if !(x.is_finite() && x > 0.0) {
        return None;
    }
    let places: u32 = if x >= 1.0 { 2 } else { 4 };
    let exact = Dec::from_f64(x)?;
    let down = exact.round_down(places);
    let rounded =
        if long || down == exact { down } else { down.checked_add(Dec::from_f64(10f64.powi(-(places as i32)))?)? };
    Some(rounded).filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(symbol: &str, qty: &str, entry: &str) -> OwnedPosition {
        OwnedPosition {
            bot: "b".into(),
            symbol: symbol.into(),
            qty: qty.parse().unwrap(),
            avg_entry_price: entry.parse().unwrap(),
            opened_at: "2026-11-25T15:00:00Z".parse().unwrap(),
            high_water: None,
        }
    }

    fn d(s: &str) -> Dec {
        s.parse().unwrap()
    }

    #[test]
    fn a_stock_rests_a_gtc_stop_below_its_entry_in_cents_rounded_down() {
        let p = protection_for(&held("AAPL", "51", "193.02"), 1.0, None).unwrap();
        // 193.02 × 0.99 = 191.0898 → 191.08, never 191.09 (closer to the market).
        assert_eq!(
            p,
            Protection {
                side: Side::Sell,
                qty: d("51"),
                order_type: OrderType::Stop,
                stop: d("191.08"),
                limit: None,
                time_in_force: TimeInForce::Gtc
            }
        );
        // A fractional position's stop is a day order (Alpaca's rule for fractions).
        assert_eq!(protection_for(&held("AAPL", "0.5", "193.02"), 1.0, None).unwrap().time_in_force, TimeInForce::Day);
        // A short's stop is a buy above, rounded up; a penny stock's in four decimals.
        let s = protection_for(&held("TSLA", "-3", "100"), 2.5, None).unwrap();
        assert_eq!((s.side, s.stop), (Side::Buy, d("102.5")));
        assert_eq!(protection_for(&held("XYZ", "100", "0.5123"), 1.0, None).unwrap().stop, d("0.5071"));
        // An exact level stays exact: 103 less 1 % is 101.97 (the float is 101.96999…).
        assert_eq!(protection_for(&held("AAPL", "97", "103"), 1.0, None).unwrap().stop, d("101.97"));
    }

    #[test]
    fn a_coin_rests_a_gtc_stop_limit_with_room_to_fill() {
        let p = protection_for(&held("BTC/USD", "0.000829", "60210"), 0.75, None).unwrap();
        assert_eq!((p.order_type, p.time_in_force, p.qty), (OrderType::StopLimit, TimeInForce::Gtc, d("0.000829")));
        // 60210 × 0.9925 = 59758.425 → 59758.42; the limit 2 % below: 58563.25.
        assert_eq!((p.stop, p.limit), (d("59758.42"), Some(d("58563.25"))));
    }

    #[test]
    fn a_trailing_stop_lifts_the_resting_stop_once_the_trade_is_ahead() {
        let mut p = held("AAPL", "10", "100");
        // Never ahead: the fixed stop, 1 % below the entry.
        p.high_water = Some(100.0);
        assert_eq!(protection_for(&p, 1.0, Some(0.5)).unwrap().stop, d("99"));
        // Best 102: 0.5 % below it (101.49) is above the fixed 99.
        p.high_water = Some(102.0);
        assert_eq!(protection_for(&p, 1.0, Some(0.5)).unwrap().stop, d("101.49"));
        // A wide trail never lowers the stop below the fixed one.
        assert_eq!(protection_for(&p, 1.0, Some(5.0)).unwrap().stop, d("99"));
        // A short trails its lowest price, from above.
        let mut s = held("TSLA", "-3", "100");
        s.high_water = Some(96.0);
        assert_eq!(protection_for(&s, 2.0, Some(1.0)).unwrap().stop, d("96.96"));
    }

    #[test]
    fn options_and_nonsense_rest_nothing() {
        assert_eq!(protection_for(&held("SPY261218P00470000", "-1", "1.75"), 1.0, None), None);
        assert_eq!(protection_for(&held("AAPL", "0", "193"), 1.0, None), None);
        assert_eq!(protection_for(&held("AAPL", "5", "0"), 1.0, None), None);
        assert_eq!(protection_for(&held("AAPL", "5", "193"), 0.0, None), None);
    }
}
