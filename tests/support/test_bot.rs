//! A trivial bot used only by tests: it enters and exits when the test says so, through the same
//! `Bot` trait and execution service as the real bots.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use trading_hydra::bots::{Bot, BotView, Entries, Entry, Exit};
use trading_hydra::core::clock::HhMm;
use trading_hydra::core::config::BotKind;
use trading_hydra::core::config::Session;
use trading_hydra::core::decimal::Dec;
use trading_hydra::core::order::{Amount, Leg, OrderType, Side, TimeInForce};
use trading_hydra::core::risk::Budget;

/// What the test wants the bot to do next.
#[derive(Debug, Default, Clone)]
pub struct Orders {
    /// (symbol, qty, limit price) entries to ask for, every iteration while set.
    pub enter: Vec<(String, i64, Option<Dec>)>,
    /// Exit everything owned, naming this rule.
    pub exit_all: Option<&'static str>,
    /// A multi-leg entry: (underlying, legs, number of spreads).
    pub spread: Option<(String, Vec<Leg>, i64)>,
    /// The bot's `cooldown_minutes` after an exit (0: none).
    pub cooldown_minutes: u32,
}

pub struct TestBot {
    pub id: String,
    pub kind: BotKind,
    pub symbols: Vec<String>,
    pub session: Session,
    pub orders: Arc<Mutex<Orders>>,
}

impl TestBot {
    /// A bot trading `symbols` all day long; the returned handle steers it.
    pub fn new(id: &str, kind: BotKind, symbols: &[&str]) -> (TestBot, Arc<Mutex<Orders>>) {
        let orders = Arc::new(Mutex::new(Orders::default()));
        let all_day = Session {
            trade_start: HhMm::parse("00:00").unwrap(),
            trade_end: HhMm::parse("23:59").unwrap(),
            manage_until: HhMm::parse("23:59").unwrap(),
        };
        let bot = TestBot {
            id: id.into(),
            kind,
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            session: all_day,
            orders: orders.clone(),
        };
        (bot, orders)
    }
}

impl Bot for TestBot {
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
    fn cooldown_minutes(&self) -> u32 {
        self.orders.lock().unwrap().cooldown_minutes
    }
    fn exits(&self, view: &BotView) -> Vec<Exit> {
        let Some(rule) = self.orders.lock().unwrap().exit_all else { return Vec::new() };
        view.owned
            .iter()
            .map(|p| Exit {
                symbol: p.symbol.clone(),
                side: if p.qty.is_negative() { Side::Buy } else { Side::Sell },
                qty: p.qty.abs(),
                rule,
                order_type: OrderType::Market,
                limit_price: None,
                time_in_force: TimeInForce::Day,
                legs: Vec::new(),
            })
            .collect()
    }
    fn entries(&self, _view: &BotView, _budget: &Budget) -> Entries {
        let orders = self.orders.lock().unwrap();
        if let Some((root, legs, n)) = &orders.spread {
            return Entries {
                wanted: vec![Entry {
                    symbol: root.clone(),
                    side: Side::Sell,
                    amount: Amount::Qty(Dec::from_int(*n)),
                    order_type: OrderType::Market,
                    limit_price: None,
                    time_in_force: TimeInForce::Day,
                    legs: legs.clone(),
                    risk_usd: 10.0,
                }],
                idle: Vec::new(),
            };
        }
        let wanted = orders
            .enter
            .iter()
            .map(|(symbol, qty, limit)| Entry {
                symbol: symbol.clone(),
                side: Side::Buy,
                amount: Amount::Qty(Dec::from_int(*qty)),
                order_type: if limit.is_some() { OrderType::Limit } else { OrderType::Market },
                limit_price: *limit,
                time_in_force: if self.kind == BotKind::Crypto { TimeInForce::Gtc } else { TimeInForce::Day },
                legs: Vec::new(),
                risk_usd: 10.0,
            })
            .collect();
        Entries { wanted, idle: Vec::new() }
    }
}
