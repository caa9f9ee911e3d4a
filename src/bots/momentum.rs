//! MomentumBot: one stock, one bot (`momentum_bots`, a list).
//!
//! Owns: the decisions of one momentum bot. Entries on its signal, sized as the smaller of what
//! its open-risk budget allows at its stop distance (`max_open_risk / (price × stop_loss_pct)`),
//! `risk.max_position_usd` and the cash it may spend; whole shares unless `execution.fractional`;
//! long only unless `allow_short`; a market `day` order, or a marketable limit `limit_offset_bps`
//! through the quote. Exits by the shared rules, `manage_until` included.
//!
//! Never: performs I/O, or enters while it holds its ticker.

use jiff::tz::TimeZone;

use crate::bots::exits;
use crate::bots::signals::{self, Direction};
use crate::bots::{Bot, BotView, Entries, Entry, Exit};
use crate::core::config::BotKind;
use crate::core::config::{EntryOrderType, Exits, MomentumBot as Settings, Session};
use crate::core::decimal::Dec;
use crate::core::idle::Cause;
use crate::core::order::{Amount, OrderType, Side, TimeInForce};
use crate::core::risk::Budget;
use crate::core::signal::Signal;
use crate::core::state::PositionRules;

pub struct MomentumBot {
    id: String,
    symbols: Vec<String>,
    session: Session,
    signal: Signal,
    exits: Exits,
    allow_short: bool,
    max_position_usd: f64,
    cooldown_minutes: u32,
    order_type: EntryOrderType,
    limit_offset_bps: f64,
    fractional: bool,
    tz: TimeZone,
}

impl MomentumBot {
    /// From a validated configuration entry (its signal already parsed once at load time).
    pub fn new(s: &Settings, signal: Signal, tz: TimeZone) -> MomentumBot {
        MomentumBot {
            id: s.bot_id.clone(),
            symbols: vec![s.ticker.clone()],
            session: s.session.clone(),
            signal,
            exits: s.exits.clone(),
            allow_short: s.allow_short,
            max_position_usd: s.risk.max_position_usd,
            cooldown_minutes: s.risk.cooldown_minutes,
            order_type: s.execution.order_type,
            limit_offset_bps: s.execution.limit_offset_bps,
            fractional: s.execution.fractional,
            tz,
        }
    }
}

/// Shares for a position: the smallest of the three caps, whole unless fractional is allowed.
pub fn size(
    price: f64,
    stop_pct: f64,
    max_open_risk: f64,
    max_position_usd: f64,
    spendable: f64,
    fractional: bool,
) -> Option<Dec> {
    if !(price > 0.0 && stop_pct > 0.0) {
        return None;
    }
    let by_risk = max_open_risk / (price * stop_pct / 100.0);
    let shares = by_risk.min(max_position_usd / price).min(spendable / price);
    let qty = Dec::from_f64(shares)?.round_down(if fractional { 4 } else { 0 });
    (qty > Dec::ZERO).then_some(qty)
}

impl Bot for MomentumBot {
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> BotKind {
        BotKind::Momentum
    }
    fn symbols(&self) -> &[String] {
        &self.symbols
    }
    fn session(&self) -> &Session {
        &self.session
    }
    fn bars_needed(&self) -> usize {
        self.signal.bars_needed()
    }
    fn cooldown_minutes(&self) -> u32 {
        self.cooldown_minutes
    }

    fn exits(&self, view: &BotView) -> Vec<Exit> {
        let until = Some((self.session.manage_until, &self.tz));
        view.owned
            .iter()
            .filter_map(|p| exits::exit_for(&self.exits, p, view, Some(view.session), until, TimeInForce::Day))
            .collect()
    }

    fn broker_stop_pct(&self) -> Option<f64> {
        self.exits.resting_stop_pct()
    }

    fn trailing_stop_pct(&self) -> Option<f64> {
        self.exits.trailing_stop_pct
    }

    fn position_rules(&self) -> Option<PositionRules> {
        Some(PositionRules {
            kind: BotKind::Momentum,
            exits: self.exits.clone(),
            manage_until: Some(self.session.manage_until),
            exit_days_before_expiry: None,
        })
    }

    fn entries(&self, view: &BotView, budget: &Budget) -> Entries {
        let mut out = Entries::default();
        let symbol = &self.symbols[0];
        if view.owned.iter().any(|p| &p.symbol == symbol) {
            out.skip(symbol, Cause::Holding, "holds a position (one at a time)");
            return out;
        }
        let (Some(bars), Some(quote)) = (view.bars.get(symbol), view.quotes.get(symbol)) else {
            out.skip(symbol, Cause::NoData, "no bars or no quote yet");
            return out;
        };
        let side = match signals::read(&self.signal, bars) {
            Ok(Direction::Long) => Side::Buy,
            Ok(Direction::Short) if self.allow_short => Side::Sell,
            Ok(Direction::Short) => {
                out.skip(symbol, Cause::NoSignal, "the signal is short and allow_short is off");
                return out;
            }
            Err(why) => {
                out.idle.push((symbol.clone(), why));
                return out;
            }
        };
        // What it would pay: the ask to buy, the bid to sell short.
        let price = if side == Side::Buy { quote.ask } else { quote.bid };
        let Some(qty) = size(
            price,
            self.exits.stop_loss_pct,
            budget.max_open_risk,
            self.max_position_usd,
            view.spendable,
            self.fractional,
        ) else {
            out.skip(
                symbol,
                Cause::TooSmall,
                format!(
                    "signal {}, but less than one share fits: price {price:.2}, open-risk budget {:.2} at a {} % stop, max_position_usd {:.2}, spendable {:.2}",
                    if side == Side::Buy { "long" } else { "short" },
                    budget.max_open_risk,
                    self.exits.stop_loss_pct,
                    self.max_position_usd,
                    view.spendable
                ),
            );
            return out;
        };
        let limit_price = match self.order_type {
            EntryOrderType::Market => None,
            EntryOrderType::Limit => {
                let through = if side == Side::Buy { 1.0 } else { -1.0 } * self.limit_offset_bps / 10_000.0;
                Dec::from_f64(price * (1.0 + through)).map(|p| p.round_to(if price >= 1.0 { 2 } else { 4 }))
            }
        };
        let order_type = if limit_price.is_some() { OrderType::Limit } else { OrderType::Market };
        out.wanted.push(Entry {
            symbol: symbol.clone(),
            side,
            amount: Amount::Qty(qty),
            order_type,
            limit_price,
            time_in_force: TimeInForce::Day,
            legs: Vec::new(),
            risk_usd: qty.to_f64() * price * self.exits.stop_loss_pct / 100.0,
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use jiff::Timestamp;

    use super::*;
    use crate::core::clock::SessionState;
    use crate::core::config::Config;
    use crate::core::market_data::{Bar, BySymbol, Quote};
    use crate::core::state::OwnedPosition;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// The shipped mom_AAPL with the given shorting rule.
    fn bot(allow_short: bool) -> MomentumBot {
        let cfg = Config::load(Path::new("config")).unwrap();
        let mut s = cfg.bots.momentum_bots[0].clone();
        s.allow_short = allow_short;
        let signal = crate::core::signal::parse(&s.signal.mode, &s.signal.params).unwrap();
        MomentumBot::new(&s, signal, cfg.timezone.clone())
    }

    fn bars(up: bool) -> Vec<Bar> {
        let bar = |c: f64, v: f64| Bar {
            t: Timestamp::UNIX_EPOCH,
            open: c,
            high: c + 0.05,
            low: c - 0.05,
            close: c,
            volume: v,
        };
        let mut b: Vec<Bar> = (0..40).map(|_| bar(190.0, 1000.0)).collect();
        for i in 1..=15 {
            let step = if up { 0.2 } else { -0.2 };
            b.push(bar(190.0 + i as f64 * step, 1000.0));
        }
        b.last_mut().unwrap().volume = 3000.0;
        b
    }

    fn budget() -> Budget {
        Budget {
            bot: "mom_AAPL".into(),
            daily_loss_limit: 250.0,
            max_open_risk: 500.0,
            max_trades: 3,
            max_positions: 1,
        }
    }

    fn decide(bot: &MomentumBot, up: bool, owned: &[OwnedPosition], bid: f64, now: &str) -> (Vec<Entry>, Vec<Exit>) {
        let mut b = BySymbol::new();
        b.insert("AAPL".to_string(), bars(up));
        let mut q = BySymbol::new();
        q.insert("AAPL".to_string(), Quote { t: ts(now), bid, ask: bid + 0.02, bid_size: 1.0, ask_size: 1.0 });
        let session = SessionState { is_open: true, next_open: ts(now), next_close: ts("2026-11-25T21:00:00Z") };
        let view = BotView {
            now: ts(now),
            market_open: true,
            session,
            owned: owned.iter().collect(),
            quotes: &q,
            bars: &b,
            spendable: 70_000.0,
            contracts: &crate::core::market_data::Contracts::default(),
            options: &crate::core::market_data::Snapshots::new(),
        };
        (bot.entries(&view, &budget()).wanted, bot.exits(&view))
    }

    const TEN: &str = "2026-11-25T15:00:00Z";

    #[test]
    fn a_rising_ticker_is_bought_at_the_sized_quantity() {
        let (entries, exits) = decide(&bot(false), true, &[], 193.0, TEN);
        assert!(exits.is_empty());
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        // $10,000 / $193.02 = 51.8 → 51 whole shares; market, day.
        assert_eq!(
            (e.side, e.amount, e.order_type, e.time_in_force),
            (Side::Buy, Amount::Qty(Dec::from_int(51)), OrderType::Market, TimeInForce::Day)
        );
        assert!((e.risk_usd - 51.0 * 193.02 * 0.005).abs() < 1e-6);
    }

    #[test]
    fn falling_is_short_only_when_allowed() {
        assert!(decide(&bot(false), false, &[], 187.0, TEN).0.is_empty());
        let (entries, _) = decide(&bot(true), false, &[], 187.0, TEN);
        assert_eq!(entries[0].side, Side::Sell);
    }

    #[test]
    fn a_held_ticker_is_not_bought_again_and_its_stop_closes_it() {
        let held = OwnedPosition {
            bot: "mom_AAPL".into(),
            symbol: "AAPL".into(),
            qty: Dec::from_int(51),
            avg_entry_price: Dec::from_int(193),
            opened_at: ts(TEN),
            high_water: Some(193.0),
        };
        let (entries, exits) = decide(&bot(false), true, std::slice::from_ref(&held), 193.0, "2026-11-25T15:05:00Z");
        assert!(entries.is_empty() && exits.is_empty());
        // 192.02 mid against 193: -0.51 %, past the 0.50 % stop.
        let (_, exits) = decide(&bot(false), true, std::slice::from_ref(&held), 192.01, "2026-11-25T15:05:00Z");
        assert_eq!((exits[0].rule, exits[0].side, exits[0].qty), ("stop_loss", Side::Sell, Dec::from_int(51)));
        // 12:55 Los Angeles is manage_until: the day's end for the bot.
        let (_, exits) = decide(&bot(false), true, std::slice::from_ref(&held), 193.0, "2026-11-25T20:55:00Z");
        assert_eq!(exits[0].rule, "time_stop");
    }

    #[test]
    fn sizing_takes_the_smallest_cap_and_whole_shares() {
        // $500 of open risk at a 0.5 % stop on $190: 526 shares by risk; $10,000 caps it at 52.
        assert_eq!(size(190.0, 0.5, 500.0, 10_000.0, 70_000.0, false), Some(Dec::from_int(52)));
        // Little cash: 9 shares for $1,800.
        assert_eq!(size(190.0, 0.5, 500.0, 10_000.0, 1_800.0, false), Some(Dec::from_int(9)));
        // Risk caps it: $20 at 0.5 % of $190 = 21.05 → 21.
        assert_eq!(size(190.0, 0.5, 20.0, 10_000.0, 70_000.0, false), Some(Dec::from_int(21)));
        // Fractional: 9.4736 shares.
        assert_eq!(size(190.0, 0.5, 500.0, 10_000.0, 1_800.0, true), Some("9.4736".parse().unwrap()));
        // Less than one share affordable and no fractions: nothing.
        assert_eq!(size(190.0, 0.5, 500.0, 10_000.0, 100.0, false), None);
        assert_eq!(size(f64::NAN, 0.5, 500.0, 10_000.0, 100.0, false), None);
    }
}
