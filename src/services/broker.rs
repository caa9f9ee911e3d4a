//! The `Broker` trait and the broker's objects as the daemon sees them: account, clock, calendar,
//! positions, orders as reported, the order request, assets.
//!
//! Owns: those objects, the error classification (`BrokerError`), the rule that says whether an
//! order found at a broker is the one we sent (`order_mismatch`), what a refusal of an exit means
//! (`exit_refusal`), the replace request of a resting order, and the call statistics each
//! implementation keeps for the health window. The words they are made of — order words, market
//! data, instruments — are `core`'s (`core::order`, `core::market_data`, `core::instrument`).
//!
//! Never: exposes Alpaca's raw JSON, and never offers "cancel all orders" or "close all
//! positions": the daemon only ever touches what it owns, one order or position at a time.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::Date;

use crate::core::decimal::Dec;
use crate::core::instrument::{AssetClass, OptionKind};
use crate::core::market_data::{Bar, BySymbol, OptionContract, Quote, Snapshots};
use crate::core::order::{Amount, Leg, OrderStatus, OrderType, PositionIntent, Side, TimeInForce};

/// The account, with only what the daemon needs; every other field Alpaca sends is ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// The broker's id of the account (Alpaca's uuid): which account a ledger belongs to.
    pub id: String,
    /// The account number a person knows it by (`PA3…` for paper), when the broker gives one.
    pub number: Option<String>,
    pub status: String,
    pub equity: Dec,
    /// Yesterday's closing equity: the day-start reference when present.
    pub last_equity: Option<Dec>,
    pub cash: Dec,
    pub buying_power: Dec,
    /// What crypto may use.
    pub non_marginable_buying_power: Option<Dec>,
    pub options_buying_power: Option<Dec>,
    pub trading_blocked: bool,
    pub account_blocked: bool,
    pub trade_suspended_by_user: bool,
    pub shorting_enabled: bool,
    pub options_trading_level: Option<u8>,
    /// Whether the account may trade crypto (`ACTIVE`, or another word that blocks crypto
    /// entries); `None` when the broker does not say (crypto not enabled).
    pub crypto_status: Option<String>,
}

impl Account {
    /// `Err` names why the account may not trade now (an `account_blocked` halt).
    pub fn trading_refusal(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.status != "ACTIVE" {
            why.push(format!("status {}", self.status));
        }
        if self.trading_blocked {
            why.push("trading_blocked".to_string());
        }
        if self.account_blocked {
            why.push("account_blocked".to_string());
        }
        if self.trade_suspended_by_user {
            why.push("trade_suspended_by_user".to_string());
        }
        if why.is_empty() { None } else { Some(why.join(", ")) }
    }
}

/// The broker's market clock: the source of truth for the stock session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketClock {
    pub timestamp: Timestamp,
    pub is_open: bool,
    pub next_open: Timestamp,
    pub next_close: Timestamp,
}

/// An open position. `symbol` is in order form (`BTC/USD`, not the `BTCUSD` positions use).
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    pub symbol: String,
    pub asset_class: AssetClass,
    /// Negative for a short.
    pub qty: Dec,
    pub avg_entry_price: Dec,
    pub current_price: Option<Dec>,
    pub market_value: Option<Dec>,
    pub unrealized_pl: Option<Dec>,
    /// What open orders do not hold (Alpaca's `qty_available`: an open sell holds what it
    /// covers), unsigned; `None` when the broker did not say.
    pub qty_available: Option<Dec>,
}

/// What a broker's refusal of an exit means for the next try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitRefusal {
    /// Alpaca's 403 "insufficient qty available for order": open orders hold part of the
    /// position, or the broker holds less than the ledger says (a coin's fee taken in the coin).
    InsufficientQty,
    /// Alpaca's 403 "potential wash trade detected": an order of the other side rests on the
    /// symbol.
    WashTrade,
    /// Alpaca's 422 for a stop the market is already through: a sell stop not below the price
    /// (or a buy stop not above it). Messages seen: "stop price must not be greater than base
    /// price / 1.001", "stop price must be less than base_price - 0.01" (Alpaca-API#166).
    StopThroughMarket,
    /// Anything else: the same order later may be taken.
    Other,
}

/// Reads Alpaca's refusal (its code 40310000 covers both named cases, so the message tells them
/// apart; `FACTS.md` §5a, the samples `error-403-insufficient-qty.json`, `error-403-wash-trade.json`).
pub fn exit_refusal(e: &BrokerError) -> ExitRefusal {
    let BrokerError::Rejected { status, message, .. } = e else { return ExitRefusal::Other };
    let m = message.to_ascii_lowercase();
    if *status == 422 && m.contains("stop price") && (m.contains("base price") || m.contains("base_price")) {
        return ExitRefusal::StopThroughMarket;
    }
    if *status != 403 {
        ExitRefusal::Other
    } else if m.contains("insufficient qty") {
        ExitRefusal::InsufficientQty
    } else if m.contains("wash trade") {
        ExitRefusal::WashTrade
    } else {
        ExitRefusal::Other
    }
}

/// An order as the broker reports it. A multi-leg parent has an empty symbol and no side; its
/// `legs` carry them.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: String,
    pub client_order_id: String,
    pub symbol: String,
    pub asset_class: AssetClass,
    pub side: Option<Side>,
    pub order_type: Option<OrderType>,
    pub time_in_force: Option<TimeInForce>,
    pub qty: Option<Dec>,
    pub notional: Option<Dec>,
    /// What filled, as the broker says it; `None` when it did not say (a null or missing field):
    /// then nothing of the report is believed (`order_lifecycle::record_report`).
    pub filled_qty: Option<Dec>,
    pub filled_avg_price: Option<Dec>,
    pub limit_price: Option<Dec>,
    pub stop_price: Option<Dec>,
    pub status: OrderStatus,
    /// `simple` (Alpaca's `""`), `bracket`, `oco`, `oto` or `mleg`.
    pub order_class: String,
    pub position_intent: Option<PositionIntent>,
    pub legs: Vec<Order>,
    pub created_at: Option<Timestamp>,
    /// When it filled, as the broker says (Alpaca's `filled_at`, set once the order is filled).
    pub filled_at: Option<Timestamp>,
}

/// One deposit or withdrawal of cash (`Broker::transfers`).
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    /// The broker's activity id.
    pub id: String,
    /// `CSD` (a deposit), `CSW` (a withdrawal) or `JNLC` (a cash journal, either way).
    pub kind: String,
    /// + into the account, - out of it.
    pub amount: Dec,
    pub at: Timestamp,
}

/// An order to send. With `legs` it is a multi-leg (`mleg`) option order: `amount` is then the
/// strategy count, `side` is ignored, and a negative `limit_price` is a net credit.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRequest {
    /// Recorded in the state database before sending; unique forever at Alpaca.
    pub client_order_id: String,
    pub symbol: String,
    pub side: Side,
    pub amount: Amount,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub limit_price: Option<Dec>,
    pub stop_price: Option<Dec>,
    pub extended_hours: bool,
    pub legs: Vec<Leg>,
}

/// What changes when a resting order is replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplaceRequest {
    /// The replacing order's id: recorded in the state database before the call.
    pub client_order_id: String,
    pub stop_price: Option<Dec>,
    pub limit_price: Option<Dec>,
}

/// Why a broker call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum BrokerError {
    /// Timeouts, dropped connections, 5xx and 429, still failing after the bounded retries.
    Transient { endpoint: String, status: Option<u16>, detail: String },
    /// 401 (or 403 on credentials): the keys were refused. Never retried.
    Unauthorized { endpoint: String, status: u16, message: String },
    /// A final refusal (403 buying power or permissions, 404, 422 validation): never retried,
    /// with Alpaca's own code and message.
    Rejected { endpoint: String, status: u16, code: Option<u64>, message: String },
    /// An answer the daemon could not read.
    BadResponse { endpoint: String, detail: String },
    /// A request the daemon refused to send (it would break a product rule).
    Invalid { detail: String },
    /// The broker holds an order under our client order id that is not the one we sent (another
    /// ledger's, or an old one of a ledger that was moved or restored): ours was not placed, and
    /// the stranger must never be booked or touched.
    Conflict { client_order_id: String, broker_order_id: String, detail: String },
}

impl BrokerError {
    pub fn status(&self) -> Option<u16> {
        match self {
            BrokerError::Transient { status, .. } => *status,
            BrokerError::Unauthorized { status, .. } | BrokerError::Rejected { status, .. } => Some(*status),
            BrokerError::BadResponse { .. } | BrokerError::Invalid { .. } | BrokerError::Conflict { .. } => None,
        }
    }

    pub fn endpoint(&self) -> &str {
        match self {
            BrokerError::Transient { endpoint, .. }
            | BrokerError::Unauthorized { endpoint, .. }
            | BrokerError::Rejected { endpoint, .. }
            | BrokerError::BadResponse { endpoint, .. } => endpoint,
            BrokerError::Invalid { .. } | BrokerError::Conflict { .. } => "",
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, BrokerError::Transient { .. })
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerError::Transient { endpoint, status, detail } => match status {
                Some(s) => write!(f, "{endpoint}: HTTP {s} after retries: {detail}"),
                None => write!(f, "{endpoint}: {detail} (after retries)"),
            },
            BrokerError::Unauthorized { endpoint, status, message } => write!(
                f,
                "{endpoint}: the broker refused the credentials (HTTP {status}: {message}); check ALPACA_KEY/ALPACA_SECRET and that they belong to the paper or live account you chose"
            ),
            BrokerError::Rejected { endpoint, status, code, message } => match code {
                Some(c) => write!(f, "{endpoint}: refused (HTTP {status}, code {c}): {message}"),
                None => write!(f, "{endpoint}: refused (HTTP {status}): {message}"),
            },
            BrokerError::BadResponse { endpoint, detail } => write!(f, "{endpoint}: unreadable answer: {detail}"),
            BrokerError::Invalid { detail } => write!(f, "order not sent: {detail}"),
            BrokerError::Conflict { client_order_id, broker_order_id, detail } => write!(
                f,
                "the broker's order {broker_order_id} under our client order id {client_order_id} is not the order we sent ({detail}); it was not adopted"
            ),
        }
    }
}

impl std::error::Error for BrokerError {}

/// What a broker did since it was last asked: requests sent and the instants of failed calls
/// (for the health window).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallStats {
    pub requests: u32,
    pub failures: Vec<Timestamp>,
}

/// Everything the loop needs from a brokerage. Implemented by the Alpaca client, the simulated
/// broker and, in tests, by the Alpaca client pointed at a loopback fake.
pub trait Broker {
    fn account(&mut self) -> Result<Account, BrokerError>;
    fn clock(&mut self) -> Result<MarketClock, BrokerError>;
    fn positions(&mut self) -> Result<Vec<Position>, BrokerError>;
    fn open_orders(&mut self) -> Result<Vec<Order>, BrokerError>;
    /// The newest orders, open or done (at most 500, newest first), submitted after `after`
    /// (every order when `None`): what `services::lost_orders` holds the ledger against.
    fn recent_orders(&mut self, after: Option<Timestamp>) -> Result<Vec<Order>, BrokerError>;
    /// The account's deposits and withdrawals (Alpaca's activities `CSD`, `CSW`, `JNLC`) after
    /// `after`, oldest first; cancelled ones left out.
    fn transfers(&mut self, after: Timestamp) -> Result<Vec<Transfer>, BrokerError>;
    /// `None` when the broker has no such order.
    fn order(&mut self, id: &str) -> Result<Option<Order>, BrokerError>;
    fn order_by_client_id(&mut self, client_order_id: &str) -> Result<Option<Order>, BrokerError>;
    /// Sends an order at most once per client order id: an answer lost to a timeout or a 5xx is
    /// resolved by asking for the client order id before any resend.
    fn submit_order(&mut self, request: &OrderRequest) -> Result<Order, BrokerError>;
    /// Replaces one of our resting orders (Alpaca's `PATCH /v2/orders/{order_id}`) with the same
    /// order at a new stop (and limit) under a new client order id, recorded before the call;
    /// the old order becomes `replaced`. Never resent: a lost answer is looked up by the new id.
    fn replace_order(&mut self, id: &str, request: &ReplaceRequest) -> Result<Order, BrokerError>;
    fn cancel_order(&mut self, id: &str) -> Result<(), BrokerError>;
    /// Bars for many stocks in one call (pages followed), oldest first.
    fn stock_bars(
        &mut self,
        symbols: &[String],
        timeframe: &str,
        start: Timestamp,
    ) -> Result<BySymbol<Vec<Bar>>, BrokerError>;
    fn stock_quotes(&mut self, symbols: &[String]) -> Result<BySymbol<Quote>, BrokerError>;
    fn crypto_bars(
        &mut self,
        pairs: &[String],
        timeframe: &str,
        start: Timestamp,
    ) -> Result<BySymbol<Vec<Bar>>, BrokerError>;
    fn crypto_quotes(&mut self, pairs: &[String]) -> Result<BySymbol<Quote>, BrokerError>;
    fn option_contracts(
        &mut self,
        underlyings: &[String],
        from: Date,
        to: Date,
    ) -> Result<Vec<OptionContract>, BrokerError>;
    /// Snapshots of `underlying`'s contracts expiring from `from` to `to`, of one `kind` (calls
    /// or puts) or of both (`None`), with strikes from the first of `strikes` to the second (both
    /// included) or of every strike (`None`).
    fn option_snapshots(
        &mut self,
        underlying: &str,
        from: Date,
        to: Date,
        kind: Option<OptionKind>,
        strikes: Option<(Dec, Dec)>,
    ) -> Result<Snapshots, BrokerError>;
    /// Drains the call statistics gathered since the last call.
    fn take_call_stats(&mut self) -> CallStats;
}

/// Why `found`, an order the broker holds under the client order id of `sent`, is not the order
/// we sent — `None` when it is: the same client order id, symbol and side (for a multi-leg order:
/// the same legs, each with its symbol, side, position intent and ratio), quantity or notional,
/// type, limit price and stop price. Alpaca keeps a client order id unique forever, so the order
/// under one of our ids may be another ledger's; only a match is ours. A field the broker left
/// out counts as different: believing an order is never the default.
pub fn order_mismatch(sent: &OrderRequest, found: &Order) -> Option<String> {
    let mut why: Vec<String> = Vec::new();
    let text = text_of;
    if found.client_order_id != sent.client_order_id {
        why.push(format!("client order id {:?}", found.client_order_id));
    }
    if sent.legs.is_empty() {
        if found.symbol != sent.symbol {
            why.push(format!("symbol {} (ours {})", found.symbol, sent.symbol));
        }
        if found.side != Some(sent.side) {
            let side = found.side.map_or("none", Side::as_str);
            why.push(format!("side {side} (ours {})", sent.side.as_str()));
        }
    } else if let Some(d) = legs_mismatch(sent, found) {
        why.push(d);
    }
    match sent.amount {
        Amount::Qty(q) if found.qty != Some(q) => why.push(format!("qty {} (ours {q})", text(found.qty))),
        Amount::Notional(n) if found.notional != Some(n) => {
            why.push(format!("notional {} (ours {n})", text(found.notional)))
        }
        _ => {}
    }
    if found.order_type != Some(sent.order_type) {
        let t = found.order_type.map_or("none", OrderType::as_str);
        why.push(format!("type {t} (ours {})", sent.order_type.as_str()));
    }
    if found.limit_price != sent.limit_price {
        why.push(format!("limit price {} (ours {})", text(found.limit_price), text(sent.limit_price)));
    }
    if found.stop_price != sent.stop_price {
        why.push(format!("stop price {} (ours {})", text(found.stop_price), text(sent.stop_price)));
    }
    if why.is_empty() { None } else { Some(why.join(", ")) }
}

/// The legs part of `order_mismatch`. A leg's ratio is its quantity over the order's, when the
/// broker gives both.
fn legs_mismatch(sent: &OrderRequest, found: &Order) -> Option<String> {
    if found.legs.len() != sent.legs.len() {
        return Some(format!("{} legs (ours {})", found.legs.len(), sent.legs.len()));
    }
    let count = match sent.amount {
        Amount::Qty(q) | Amount::Notional(q) => q,
    };
    for leg in &sent.legs {
        let Some(f) = found.legs.iter().find(|f| f.symbol == leg.symbol) else {
            return Some(format!("no leg {} (ours {})", leg.symbol, leg.position_intent.as_str()));
        };
        let intent_differs = f.position_intent.is_some_and(|p| p != leg.position_intent);
        if f.side != Some(leg.position_intent.side()) || intent_differs {
            return Some(format!("leg {} is not {}", leg.symbol, leg.position_intent.as_str()));
        }
        let ratio = f.qty.zip(count.checked_mul_int(i64::from(leg.ratio_qty)));
        if ratio.is_some_and(|(found_qty, ours)| found_qty != ours) {
            return Some(format!("leg {} qty {} (ours {} × {})", leg.symbol, text_of(f.qty), count, leg.ratio_qty));
        }
    }
    None
}

fn text_of(d: Option<Dec>) -> String {
    d.map_or("none".to_string(), |d| d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpacas_refusals_of_an_exit_are_told_apart_by_their_message() {
        let refused = |status: u16, file: &str| {
            let body: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(format!("tests/fixtures/alpaca/{file}")).unwrap())
                    .unwrap();
            BrokerError::Rejected {
                endpoint: "POST /v2/orders".into(),
                status,
                code: body["code"].as_u64(),
                message: body["message"].as_str().unwrap().into(),
            }
        };
        assert_eq!(exit_refusal(&refused(403, "error-403-insufficient-qty.json")), ExitRefusal::InsufficientQty);
        assert_eq!(exit_refusal(&refused(403, "error-403-wash-trade.json")), ExitRefusal::WashTrade);
        assert_eq!(exit_refusal(&refused(403, "error-403-insufficient-buying-power.json")), ExitRefusal::Other);
        // A stop the market is already through, in both wordings seen.
        let through = |message: &str| BrokerError::Rejected {
            endpoint: "POST /v2/orders".into(),
            status: 422,
            code: Some(42210000),
            message: message.into(),
        };
        assert_eq!(
            exit_refusal(&through("stop price must not be greater than base price / 1.001")),
            ExitRefusal::StopThroughMarket
        );
        assert_eq!(
            exit_refusal(&through("stop price must be less than base_price - 0.01")),
            ExitRefusal::StopThroughMarket
        );
        assert_eq!(exit_refusal(&through("qty must be integer")), ExitRefusal::Other);
        assert_eq!(exit_refusal(&refused(422, "error-422-sub-penny.json")), ExitRefusal::Other);
        let transient =
            BrokerError::Transient { endpoint: "POST /v2/orders".into(), status: Some(503), detail: "x".into() };
        assert_eq!(exit_refusal(&transient), ExitRefusal::Other);
    }

    fn sent() -> OrderRequest {
        OrderRequest {
            client_order_id: "th-b-20261201-abcdefgh-1".into(),
            symbol: "AAPL".into(),
            side: Side::Buy,
            amount: Amount::Qty(Dec::from_int(2)),
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Day,
            limit_price: Some("150.25".parse().unwrap()),
            stop_price: None,
            extended_hours: false,
            legs: Vec::new(),
        }
    }

    /// The order a broker would report for `r`, field for field.
    fn found(r: &OrderRequest) -> Order {
        let (qty, notional) = match r.amount {
            Amount::Qty(q) => (Some(q), None),
            Amount::Notional(n) => (None, Some(n)),
        };
        let leg = |l: &Leg| Order {
            symbol: l.symbol.clone(),
            side: Some(l.position_intent.side()),
            position_intent: Some(l.position_intent),
            qty: qty.and_then(|q| q.checked_mul_int(i64::from(l.ratio_qty))),
            legs: Vec::new(),
            ..found(&OrderRequest { legs: Vec::new(), ..r.clone() })
        };
        Order {
            id: "b-1".into(),
            client_order_id: r.client_order_id.clone(),
            symbol: if r.legs.is_empty() { r.symbol.clone() } else { String::new() },
            asset_class: AssetClass::Other,
            side: if r.legs.is_empty() { Some(r.side) } else { None },
            order_type: Some(r.order_type),
            time_in_force: Some(r.time_in_force),
            qty,
            notional,
            filled_qty: Some(Dec::ZERO),
            filled_avg_price: None,
            limit_price: r.limit_price,
            stop_price: r.stop_price,
            status: OrderStatus::Accepted,
            order_class: if r.legs.is_empty() { "simple".into() } else { "mleg".into() },
            position_intent: None,
            legs: r.legs.iter().map(leg).collect(),
            created_at: None,
            filled_at: None,
        }
    }

    #[test]
    fn the_order_we_sent_matches_and_every_other_field_is_a_mismatch() {
        let r = sent();
        assert_eq!(order_mismatch(&r, &found(&r)), None);
        let cases: Vec<(Order, &str)> = vec![
            (Order { symbol: "ETH/USD".into(), ..found(&r) }, "symbol ETH/USD (ours AAPL)"),
            (Order { side: Some(Side::Sell), ..found(&r) }, "side sell (ours buy)"),
            (Order { side: None, ..found(&r) }, "side none (ours buy)"),
            (Order { qty: Some(Dec::from_int(20)), ..found(&r) }, "qty 20 (ours 2)"),
            (Order { order_type: Some(OrderType::Market), ..found(&r) }, "type market (ours limit)"),
            (Order { limit_price: None, ..found(&r) }, "limit price none (ours 150.25)"),
            (Order { stop_price: Some(Dec::from_int(1)), ..found(&r) }, "stop price 1 (ours none)"),
            (Order { client_order_id: "x".into(), ..found(&r) }, "client order id \"x\""),
        ];
        for (order, why) in cases {
            assert_eq!(order_mismatch(&r, &order).as_deref(), Some(why));
        }
        // A notional order is compared by its notional.
        let n = OrderRequest { amount: Amount::Notional(Dec::from_int(50)), ..sent() };
        assert_eq!(order_mismatch(&n, &found(&n)), None);
        assert_eq!(order_mismatch(&n, &found(&r)).as_deref(), Some("notional none (ours 50)"));
    }

    #[test]
    fn a_multi_leg_order_matches_only_with_the_same_legs() {
        let legs = vec![
            Leg { symbol: "SPY261218P00480000".into(), ratio_qty: 1, position_intent: PositionIntent::SellToOpen },
            Leg { symbol: "SPY261218P00475000".into(), ratio_qty: 1, position_intent: PositionIntent::BuyToOpen },
        ];
        let r = OrderRequest { symbol: "SPY".into(), side: Side::Sell, legs, ..sent() };
        assert_eq!(order_mismatch(&r, &found(&r)), None, "a parent has no symbol or side");
        let mut other = found(&r);
        other.legs[0].position_intent = Some(PositionIntent::SellToClose);
        assert_eq!(order_mismatch(&r, &other).as_deref(), Some("leg SPY261218P00480000 is not sell_to_open"));
        let mut ratio = found(&r);
        ratio.legs[1].qty = Some(Dec::from_int(6));
        assert!(order_mismatch(&r, &ratio).unwrap().starts_with("leg SPY261218P00475000 qty 6"));
        let mut fewer = found(&r);
        fewer.legs.pop();
        assert_eq!(order_mismatch(&r, &fewer).as_deref(), Some("1 legs (ours 2)"));
        let mut swapped = found(&r);
        swapped.legs[1].symbol = "SPY261218P00470000".into();
        assert_eq!(order_mismatch(&r, &swapped).as_deref(), Some("no leg SPY261218P00475000 (ours buy_to_open)"));
    }
}
