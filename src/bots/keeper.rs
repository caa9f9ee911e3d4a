//! The keeper of orphaned positions: those whose bot no longer watches them — the bot removed,
//! disabled or put back on a placeholder signal, the symbol dropped from its list.
//!
//! Owns: closing each orphan by the exit rules it was opened with (`position_rules`, stored at
//! its entry): a stock or a coin by the shared rules of `exits`, a spread by the options rules of
//! `options::spread_rule` (while the market is open, before its expiry). One keeper per bot id,
//! built by the execution service each iteration from what is orphaned, so the orphans' quotes
//! and chains are fetched like any bot's.
//!
//! Never: enters. A keeper's entries are always empty.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::bots::exits;
use crate::bots::options::{self, SpreadRules};
use crate::bots::{Bot, BotView, ChainSpan, ChainWant, Entries, Exit};
use crate::core::clock::{self, HhMm};
use crate::core::config::{BotKind, Session};
use crate::core::idle::{Cause, Idle};
use crate::core::instrument::OccSymbol;
use crate::core::order::TimeInForce;
use crate::core::risk::Budget;
use crate::core::state::{OwnedPosition, PositionRules};

/// A bot's orphans and their rules.
pub struct Keeper {
    id: String,
    kind: BotKind,
    /// What it watches: the orphans' symbols (a spread's underlying).
    symbols: Vec<String>,
    rules: BTreeMap<String, PositionRules>,
    session: Session,
    tz: TimeZone,
    /// Days from today to the furthest expiry of its option legs (their chains are fetched).
    option_days: Option<u32>,
    max_quote_age_seconds: u64,
}

impl Keeper {
    /// The keeper of `bot`'s orphans: `rules` by symbol (a spread's by its underlying), each
    /// position in `orphans` (`tz`: `system.timezone`, for a stored `manage_until`).
    pub fn new(
        bot: &str,
        rules: BTreeMap<String, PositionRules>,
        orphans: &[&OwnedPosition],
        tz: TimeZone,
        max_quote_age_seconds: u64,
        now: Timestamp,
    ) -> Keeper {
        let kind = rules.values().next().map_or(BotKind::Momentum, |r| r.kind);
        let today = clock::trading_date(now);
        let option_days = orphans
            .iter()
            .filter_map(|p| OccSymbol::parse(&p.symbol))
            .map(|o| (o.expiry - today).get_days().max(0) as u32)
            .max();
        let all_day = Session {
            trade_start: HhMm { hour: 0, minute: 0 },
            trade_end: HhMm { hour: 0, minute: 0 },
            manage_until: HhMm { hour: 23, minute: 59 },
        };
        Keeper {
            id: bot.to_string(),
            kind,
            symbols: rules.keys().cloned().collect(),
            rules,
            session: all_day,
            tz,
            option_days,
            max_quote_age_seconds,
        }
    }
}

impl Bot for Keeper {
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> BotKind {
        self.kind
    }
    fn symbols(&self) -> &[String] {
        &self.symbols
    }
    fn session(&self) -> &Session {
        &self.session
    }
    fn option_days(&self) -> Option<(u32, u32)> {
        self.option_days.map(|d| (0, d))
    }
    fn chains_wanted(
        &self,
        _bars: &crate::core::market_data::BySymbol<Vec<crate::core::market_data::Bar>>,
        owned: &[&OwnedPosition],
        _today: jiff::civil::Date,
    ) -> Vec<ChainWant> {
        let mut by_root: BTreeMap<String, ChainSpan> = BTreeMap::new();
        for o in owned.iter().filter_map(|p| OccSymbol::parse(&p.symbol)) {
            let leg = ChainSpan::of_leg(&o);
            by_root.entry(o.root).and_modify(|span| *span = span.widen(leg)).or_insert(leg);
        }
        by_root.into_iter().map(|(root, held)| ChainWant { root, held: Some(held), entry: None }).collect()
    }

    fn exits(&self, view: &BotView) -> Vec<Exit> {
        let mut out: Vec<Exit> = Vec::new();
        for p in view.owned.iter().filter(|p| OccSymbol::parse(&p.symbol).is_none()) {
            let Some(r) = self.rules.get(&p.symbol) else { continue };
            let exit = match r.kind {
                BotKind::Crypto => exits::exit_for(&r.exits, p, view, None, None, TimeInForce::Gtc),
                _ => {
                    let until = r.manage_until.map(|t| (t, &self.tz));
                    exits::exit_for(&r.exits, p, view, Some(view.session), until, TimeInForce::Day)
                }
            };
            out.extend(exit);
        }
        out.extend(options::spread_exits(view, |legs| {
            let root = OccSymbol::parse(&legs[0].symbol)?.root;
            let r = self.rules.get(&root)?;
            // A lone leg (a single option) is flat by its stored day's end, like a stock.
            if legs.len() == 1
                && let Some(until) = r.manage_until
                && exits::day_ended(view.now, Some(view.session), until, &self.tz)
            {
                return Some("manage_until");
            }
            let rules = SpreadRules {
                exits: &r.exits,
                profit_fraction: None,
                profit_target_usd: None,
                max_quote_age_seconds: self.max_quote_age_seconds,
                exit_days_before_expiry: r.exit_days_before_expiry.unwrap_or(1),
            };
            options::spread_rule(&rules, legs, view)
        }));
        out
    }

    fn never_enters(&self) -> Option<Idle> {
        Some(Idle::new(
            Cause::ExitsOnly,
            "left the configuration: its positions are closed by the exit rules they were opened with, no new entry",
        ))
    }
    fn entries(&self, _view: &BotView, _budget: &Budget) -> Entries {
        Entries::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::SessionState;
    use crate::core::config::Exits;
    use crate::core::decimal::Dec;
    use crate::core::market_data::{BySymbol, Quote};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn rules(kind: BotKind, stop: f64) -> PositionRules {
        PositionRules {
            kind,
            exits: Exits {
                stop_loss_pct: stop,
                take_profit_pct: 5.0,
                time_stop_minutes: None,
                flatten_before_close_minutes: None,
                trailing_stop_pct: None,
                broker_stop: false,
                broker_stop_pct: None,
            },
            manage_until: (kind == BotKind::Momentum).then(|| HhMm::parse("15:50").unwrap()),
            exit_days_before_expiry: None,
        }
    }

    fn held(symbol: &str, price: &str) -> OwnedPosition {
        OwnedPosition {
            bot: "gone".into(),
            symbol: symbol.into(),
            qty: Dec::from_int(2),
            avg_entry_price: price.parse().unwrap(),
            opened_at: ts("2026-11-25T15:00:00Z"),
            high_water: None,
        }
    }

    #[test]
    fn an_orphan_closes_by_its_stored_stop_and_day_end_and_never_enters() {
        let (eth, aapl) = (held("ETH/USD", "3000"), held("AAPL", "200"));
        let mut by = BTreeMap::new();
        by.insert("ETH/USD".to_string(), rules(BotKind::Crypto, 0.75));
        by.insert("AAPL".to_string(), rules(BotKind::Momentum, 50.0));
        let now = ts("2026-11-25T15:30:00Z");
        let k = Keeper::new("gone", by, &[&eth, &aapl], TimeZone::get("America/New_York").unwrap(), 60, now);
        let mut quotes = BySymbol::new();
        quotes
            .insert("ETH/USD".to_string(), Quote { t: now, bid: 2_970.0, ask: 2_970.0, bid_size: 1.0, ask_size: 1.0 });
        quotes.insert("AAPL".to_string(), Quote { t: now, bid: 200.0, ask: 200.0, bid_size: 1.0, ask_size: 1.0 });
        let (bars, contracts, options) = (
            BySymbol::new(),
            crate::core::market_data::Contracts::default(),
            crate::core::market_data::Snapshots::new(),
        );
        let view = |now: &str| BotView {
            now: ts(now),
            market_open: true,
            session: SessionState { is_open: true, next_open: ts(now), next_close: ts("2026-11-25T21:00:00Z") },
            owned: vec![&eth, &aapl],
            quotes: &quotes,
            bars: &bars,
            spendable: 1e6,
            contracts: &contracts,
            options: &options,
        };
        let v = view("2026-11-25T15:30:00Z");
        let exits = k.exits(&v);
        assert_eq!(
            exits.iter().map(|e| (e.symbol.as_str(), e.rule)).collect::<Vec<_>>(),
            vec![("ETH/USD", "stop_loss")]
        );
        assert_eq!(exits[0].time_in_force, TimeInForce::Gtc);
        // 15:50 New York is the stock's stored day end.
        let late = k.exits(&view("2026-11-25T20:50:00Z"));
        assert!(late.iter().any(|e| e.symbol == "AAPL" && e.rule == "manage_until"), "{late:?}");
        assert!(
            k.entries(
                &v,
                &Budget {
                    bot: "gone".into(),
                    daily_loss_limit: 1.0,
                    max_open_risk: 1.0,
                    max_trades: 5,
                    max_positions: 5
                }
            )
            .wanted
            .is_empty()
        );
        assert_eq!(k.never_enters().unwrap().causes, vec![Cause::ExitsOnly]);
    }
}
