//! CryptoBot: the `cryptobot` section, its `pairs` traded 24/7.
//!
//! Owns: the decisions of the crypto bot. Entries on its signal, long only (Alpaca does not short
//! crypto), for `execution.default_notional_usd` (raised to `min_notional_usd` and
//! `risk.min_order_size`, lowered to what the bot may spend); sent the way Alpaca accepts it: a
//! market order by notional when `use_notional`, and otherwise — a limit order cannot carry a
//! notional — a quantity of the notional at the limit price, rounded down to six decimals. Time
//! in force `gtc` or `ioc` from `execution.tif`. Exits by the shared rules; `manage_until` does
//! not apply, crypto never closes.
//!
//! Never: performs I/O, or holds two positions in one pair.

use crate::bots::exits;
use crate::bots::signals::{self, Direction};
use crate::bots::{Bot, BotView, Entries, Entry, Exit};
use crate::core::config::BotKind;
use crate::core::config::{CryptoBot as Settings, CryptoOrderType, CryptoTif, Exits, Session};
use crate::core::decimal::Dec;
use crate::core::idle::Cause;
use crate::core::order::{Amount, OrderType, Side, TimeInForce};
use crate::core::risk::Budget;
use crate::core::signal::Signal;
use crate::core::state::PositionRules;

/// A crypto limit buy is placed this far above the ask, to be marketable.
const LIMIT_THROUGH: f64 = 0.001;

pub struct CryptoBot {
    id: String,
    symbols: Vec<String>,
    session: Session,
    signal: Signal,
    exits: Exits,
    order_type: CryptoOrderType,
    tif: TimeInForce,
    use_notional: bool,
    notional: f64,
    minimum: f64,
    cooldown_minutes: u32,
}

impl CryptoBot {
    pub fn new(s: &Settings, signal: Signal) -> CryptoBot {
        CryptoBot {
            id: s.bot_id.clone(),
            symbols: s.pairs.clone(),
            session: s.session.clone(),
            signal,
            exits: s.exits.clone(),
            order_type: s.execution.order_type,
            tif: match s.execution.tif {
                CryptoTif::Gtc => TimeInForce::Gtc,
                CryptoTif::Ioc => TimeInForce::Ioc,
            },
            use_notional: s.execution.use_notional,
            notional: s.execution.default_notional_usd,
            minimum: s.execution.min_notional_usd.max(s.risk.min_order_size),
            cooldown_minutes: s.risk.cooldown_minutes,
        }
    }

    /// The order for `dollars` of `symbol` at `ask`: `None` when it would be under the minimum.
    pub fn order_for(&self, symbol: &str, dollars: f64, ask: f64) -> Option<Entry> {
        let dollars = dollars.max(self.minimum);
        if !(ask.is_finite() && ask > 0.0 && dollars.is_finite()) {
            return None;
        }
        let risk_usd = dollars * self.exits.stop_loss_pct / 100.0;
        let entry = |amount, order_type, limit_price| Entry {
            symbol: symbol.to_string(),
            side: Side::Buy,
            amount,
            order_type,
            limit_price,
            time_in_force: self.tif,
            legs: Vec::new(),
            risk_usd,
        };
        match (self.order_type, self.use_notional) {
            (CryptoOrderType::Market, true) => {
                Some(entry(Amount::Notional(Dec::from_f64(dollars)?.round_to(2)), OrderType::Market, None))
            }
            (CryptoOrderType::Market, false) => {
                let qty = Dec::from_f64(dollars / ask)?.round_down(6);
                (qty > Dec::ZERO).then(|| entry(Amount::Qty(qty), OrderType::Market, None))
            }
            (CryptoOrderType::Limit, _) => {
                let limit = Dec::from_f64(ask * (1.0 + LIMIT_THROUGH))?.round_to(2);
                let qty = Dec::from_f64(dollars / limit.to_f64())?.round_down(6);
                // Rounding the quantity down must not take it under Alpaca's minimum.
                (qty > Dec::ZERO && qty.to_f64() * limit.to_f64() >= self.minimum - 0.01)
                    .then(|| entry(Amount::Qty(qty), OrderType::Limit, Some(limit)))
            }
        }
    }
}

impl Bot for CryptoBot {
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> BotKind {
        BotKind::Crypto
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
        // Crypto never closes: no session, no manage_until.
        view.owned.iter().filter_map(|p| exits::exit_for(&self.exits, p, view, None, None, TimeInForce::Gtc)).collect()
    }

    fn broker_stop_pct(&self) -> Option<f64> {
        self.exits.resting_stop_pct()
    }

    fn trailing_stop_pct(&self) -> Option<f64> {
        self.exits.trailing_stop_pct
    }

    fn position_rules(&self) -> Option<PositionRules> {
        Some(PositionRules {
            kind: BotKind::Crypto,
            exits: self.exits.clone(),
            manage_until: None,
            exit_days_before_expiry: None,
        })
    }

    fn entries(&self, view: &BotView, _budget: &Budget) -> Entries {
        let mut out = Entries::default();
        let mut spendable = view.spendable;
        for symbol in &self.symbols {
            if view.owned.iter().any(|p| &p.symbol == symbol) {
                out.skip(symbol, Cause::Holding, "holds a position (one per pair)");
                continue;
            }
            let (Some(bars), Some(quote)) = (view.bars.get(symbol), view.quotes.get(symbol)) else {
                out.skip(symbol, Cause::NoData, "no bars or no quote yet");
                continue;
            };
            match signals::read(&self.signal, bars) {
                Ok(Direction::Long) => {}
                Ok(Direction::Short) => {
                    out.skip(symbol, Cause::NoSignal, "the signal is short (crypto is long only)");
                    continue;
                }
                Err(why) => {
                    out.idle.push((symbol.clone(), why));
                    continue;
                }
            }
            let dollars = self.notional.min(spendable);
            if dollars < self.minimum {
                out.skip(
                    symbol,
                    Cause::TooSmall,
                    format!("signal long, but {dollars:.2} to spend is below the minimum order of {:.2}", self.minimum),
                );
                continue;
            }
            match self.order_for(symbol, dollars, quote.ask) {
                Some(e) => {
                    spendable -= dollars;
                    out.wanted.push(e);
                }
                None => out.skip(
                    symbol,
                    Cause::TooSmall,
                    format!("signal long, but {dollars:.2} at the ask {:.2} rounds to no order", quote.ask),
                ),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::core::config::Config;

    fn bot(order_type: CryptoOrderType, use_notional: bool) -> CryptoBot {
        let cfg = Config::load(Path::new("config")).unwrap();
        let mut s = cfg.bots.cryptobot.unwrap();
        s.execution.order_type = order_type;
        s.execution.use_notional = use_notional;
        CryptoBot::new(&s, Signal::Placeholder)
    }

    #[test]
    fn orders_take_the_form_alpaca_accepts() {
        // Market by notional: $50.
        let e = bot(CryptoOrderType::Market, true).order_for("BTC/USD", 50.0, 60_000.0).unwrap();
        assert_eq!((e.amount, e.order_type), (Amount::Notional(Dec::from_int(50)), OrderType::Market));
        // A limit cannot carry a notional: quantity at the limit price, six decimals, rounded down.
        let e = bot(CryptoOrderType::Limit, true).order_for("BTC/USD", 50.0, 60_000.0).unwrap();
        assert_eq!(e.limit_price, Some("60060".parse().unwrap()));
        assert_eq!(e.amount, Amount::Qty("0.000832".parse().unwrap()));
        assert_eq!(e.time_in_force, TimeInForce::Gtc);
        // Never under the $15 minimum of the shipped config.
        let e = bot(CryptoOrderType::Market, true).order_for("ETH/USD", 5.0, 3000.0).unwrap();
        assert_eq!(e.amount, Amount::Notional(Dec::from_int(15)));
    }
}
