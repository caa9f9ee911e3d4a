//! Orders of this daemon's bots that the broker holds and the ledger does not know.
//!
//! Owns: finding them (`find`) — orders at the broker under this daemon's id form
//! (`th-<bot>-<yyyymmdd>-<epoch>-<n>`, `ClientOrderId`) with no record in the ledger, that still
//! matter: open, or filled in a symbol the broker still holds. They are the evidence that the
//! ledger is behind the account — a restored backup, a journal that was lost, a second ledger on
//! the same account — and that a position or a resting stop is out there that the daemon would
//! otherwise buy again on top of. Also the words of the `ledger_behind` halt (`describe`), and
//! `recover`'s booking of them (`book`): an operator's explicit act, never the loop's.
//!
//! Never: sends, cancels or changes an order at the broker, or books anything by itself: the
//! loop only halts entries on what `find` returns; only `trading-hydra recover --confirm` books.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::{SignedDuration, Timestamp};

use crate::core::config::Config;
use crate::core::decimal::Dec;
use crate::core::instrument::OccSymbol;
use crate::core::order::{BROKER_STOP, Intent, OrderType, PositionIntent, Side};
use crate::core::state::{ClientOrderId, LegRecord, NewOrder, State, StateError};
use crate::services::broker::{Broker, Order};
use crate::services::order_lifecycle::ExecError;

/// How far before the ledger's newest order the broker's orders are read: the broker's clock
/// and ours may disagree, and an order recorded late in a crash still counts.
const LOOK_BACK: SignedDuration = SignedDuration::from_hours(24);

/// The rule a recovered exit is recorded with when it is not a protective stop: what asked for
/// it was in the ledger that was lost.
pub const RECOVERED: &str = "recovered";

/// What this iteration's check found (`services::exitbot` turns it into the `ledger_behind` halt
/// or lifts that halt).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Check {
    /// Not checked this iteration.
    #[default]
    NotRun,
    /// Checked: nothing lost.
    Clean,
    /// Checked: lost orders, in the halt's words (`describe`).
    Behind(String),
}

/// One order of ours the ledger does not know.
#[derive(Debug, Clone, PartialEq)]
pub struct LostOrder {
    pub id: ClientOrderId,
    pub order: Order,
    /// What the ledger knows of its id.
    pub standing: Standing,
}

/// Why an id of ours can be unknown to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// An epoch this ledger never drew: an older ledger's orders (the ledger was restored or
    /// replaced), or another ledger's on this account.
    OtherEpoch,
    /// This ledger's own epoch, numbered beyond its counter: it lost its last writes.
    BeyondCounter,
    /// This ledger's own epoch and within its counter, yet not recorded: rows were lost.
    Missing,
}

impl Standing {
    fn words(self) -> &'static str {
        match self {
            Standing::OtherEpoch => "under an id epoch this ledger never drew",
            Standing::BeyondCounter => "numbered beyond this ledger's order counter",
            Standing::Missing => "numbered by this ledger but missing from it",
        }
    }
}

/// The orders of ours the broker holds and the ledger does not know, oldest first. `held`: what
/// the broker holds, by symbol (a filled order matters only while its symbol is still held);
/// `in_memory`: ids the daemon holds unrecorded on purpose (exits sent while the ledger took no
/// writes), which are not lost.
pub fn find(
    state: &State,
    broker: &mut dyn Broker,
    held: &BTreeMap<String, Dec>,
    in_memory: &dyn Fn(&str) -> bool,
) -> Result<Vec<LostOrder>, ExecError> {
    let after = state.newest_order_at()?.map(|t| t - LOOK_BACK);
    let mut lost = Vec::new();
    for order in broker.recent_orders(after)? {
        let Some(id) = ClientOrderId::parse(&order.client_order_id) else { continue };
        if !matters(&order, held) || in_memory(&order.client_order_id) || state.knows_order(&order.client_order_id)? {
            continue;
        }
        let (drawn, counter) = state.id_standing(&id.epoch)?;
        let standing = match (drawn, id.n > counter) {
            (false, _) => Standing::OtherEpoch,
            (true, true) => Standing::BeyondCounter,
            (true, false) => Standing::Missing,
        };
        lost.push(LostOrder { id, order, standing });
    }
    // The broker answers newest first; booking goes oldest first.
    lost.sort_by_key(|l| l.order.created_at);
    Ok(lost)
}

/// The symbols an order trades: its own and its legs' (a spread's own is empty).
fn symbols_of(o: &Order) -> impl Iterator<Item = &str> {
    std::iter::once(o.symbol.as_str()).chain(o.legs.iter().map(|l| l.symbol.as_str())).filter(|s| !s.is_empty())
}

/// Every symbol the lost orders trade, once each, in order: what the broker's holdings are
/// shown for.
pub fn symbols(lost: &[LostOrder]) -> Vec<&str> {
    let mut symbols: Vec<&str> = lost.iter().flat_map(|l| symbols_of(&l.order)).collect();
    symbols.sort_unstable();
    symbols.dedup();
    symbols
}

/// Whether an order still matters to the account: open, or filled (some of it) in a symbol the
/// broker still holds. A done order whose symbols are flat is history.
fn matters(o: &Order, held: &BTreeMap<String, Dec>) -> bool {
    if !o.status.is_final() {
        return true;
    }
    let filled = o.filled_qty.is_some_and(|f| f > Dec::ZERO)
        || o.legs.iter().any(|l| l.filled_qty.is_some_and(|f| f > Dec::ZERO));
    filled && symbols_of(o).any(|s| held.get(s).is_some_and(|q| !q.is_zero()))
}

/// One lost order in a few words: `th-mom_AAPL-20261125-k2v9a0b1-7 (AAPL buy 52 market, filled
/// 52 at 190)`.
pub fn one_line(l: &LostOrder) -> String {
    let o = &l.order;
    let what = if o.legs.is_empty() {
        o.symbol.clone()
    } else {
        let legs: Vec<String> = o
            .legs
            .iter()
            .map(|g| format!("{} {}", g.position_intent.map_or("?", PositionIntent::as_str), g.symbol))
            .collect();
        format!("spread {}", legs.join(" / "))
    };
    let side = o.side.map_or("", Side::as_str);
    let amount = o.qty.or(o.notional).map_or("?".to_string(), |q| q.to_string());
    let kind = o.order_type.map_or("?", OrderType::as_str);
    let mut line = format!("{} ({what} {side} {amount} {kind}, {}", o.client_order_id, o.status.as_str());
    if let Some(f) = o.filled_qty.filter(|f| *f > Dec::ZERO) {
        let _ = write!(line, ", filled {f}");
        if let Some(p) = o.filled_avg_price {
            let _ = write!(line, " at {p}");
        }
    }
    line.push(')');
    line
}

/// The `ledger_behind` halt's detail: what was found, what the broker holds of those symbols,
/// and what to do.
pub fn describe(lost: &[LostOrder], held: &BTreeMap<String, Dec>) -> String {
    const SHOWN: usize = 5;
    let mut shown: Vec<String> = lost.iter().take(SHOWN).map(one_line).collect();
    if lost.len() > SHOWN {
        shown.push(format!("and {} more", lost.len() - SHOWN));
    }
    let mut standings: Vec<&str> = lost.iter().map(|l| l.standing.words()).collect();
    standings.dedup();
    let holds: Vec<String> = symbols(lost)
        .into_iter()
        .filter_map(|s| held.get(s).filter(|q| !q.is_zero()).map(|q| format!("{s} {q}")))
        .collect();
    let holds = if holds.is_empty() { "none of their symbols".to_string() } else { holds.join(", ") };
    format!(
        "the broker holds {} order(s) of this daemon's bots that the ledger does not know ({}): {}; the broker \
         holds {holds}. The ledger is behind the account (a restored backup, a lost journal, or a second ledger on \
         this account): entries are halted, exits of the positions the ledger holds go on. See them with \
         `trading-hydra recover`; stop the daemon and run `trading-hydra recover --confirm` to book them under \
         their bots, or close them at the broker; the halt lifts once none is left",
        lost.len(),
        standings.join("; "),
        shown.join("; ")
    )
}

/// Why `recover --confirm` books nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Unbookable(pub String);

/// What the ledger records for a lost order: the order as the broker holds it, under the bot its
/// id names, with the intent its shape shows — a stop is a protective stop (the only stops the
/// daemon places), an opening (a buy; an option order to open) an entry, anything else an exit.
pub fn new_order(l: &LostOrder, now: Timestamp) -> Result<NewOrder, Unbookable> {
    let o = &l.order;
    let unbookable = |why: &str| Unbookable(format!("{}: {why}", o.client_order_id));
    let legs: Vec<LegRecord> = o
        .legs
        .iter()
        .map(|g| {
            let intent = g.position_intent.ok_or_else(|| unbookable("a leg without its position intent"))?;
            let ratio = match (g.qty, o.qty) {
                (Some(leg), Some(count)) if count > Dec::ZERO => {
                    // A whole ratio of a few contracts: its float is exact.
                    let ratio =
                        leg.checked_div(count).filter(|r| r.is_whole() && *r > Dec::ZERO && *r < Dec::from_int(100));
                    ratio.map(|r| r.to_f64() as u32).ok_or_else(|| unbookable("a leg's ratio is not whole"))?
                }
                _ => return Err(unbookable("a leg without its quantity")),
            };
            Ok(LegRecord { symbol: g.symbol.clone(), ratio, position_intent: intent.as_str().to_string() })
        })
        .collect::<Result<_, _>>()?;
    let opens = |p: Option<PositionIntent>| matches!(p, Some(PositionIntent::BuyToOpen | PositionIntent::SellToOpen));
    let (symbol, side, intent, rule) = if legs.is_empty() {
        let side = o.side.ok_or_else(|| unbookable("no side"))?;
        let order_type = o.order_type.ok_or_else(|| unbookable("no order type"))?;
        if matches!(order_type, OrderType::Stop | OrderType::StopLimit) {
            (o.symbol.clone(), side, Intent::Exit, Some(BROKER_STOP.to_string()))
        } else if o.position_intent.map_or(side == Side::Buy, |p| opens(Some(p))) {
            (o.symbol.clone(), side, Intent::Entry, None)
        } else {
            (o.symbol.clone(), side, Intent::Exit, Some(RECOVERED.to_string()))
        }
    } else {
        let root = o.legs.iter().find_map(|g| OccSymbol::parse(&g.symbol).map(|s| s.root));
        let root = root.ok_or_else(|| unbookable("a spread whose legs are not option symbols"))?;
        // The daemon's spreads: opened as a sell (a credit), closed as a buy.
        if o.legs.iter().any(|g| opens(g.position_intent)) {
            (root, Side::Sell, Intent::Entry, None)
        } else {
            (root, Side::Buy, Intent::Exit, Some(RECOVERED.to_string()))
        }
    };
    Ok(NewOrder {
        ref_price: None,
        bot: l.id.bot.clone(),
        symbol,
        side,
        qty: o.qty.map(|q| q.to_string()),
        notional: o.notional.map(|n| n.to_string()),
        order_type: o.order_type.ok_or_else(|| unbookable("no order type"))?,
        limit_price: o.limit_price.map(|p| p.to_string()),
        stop_price: o.stop_price.map(|p| p.to_string()),
        intent,
        rule,
        created_at: o.created_at.unwrap_or(now),
        trading_date: l.id.date,
        legs,
    })
}

/// Books the lost orders into the ledger (`recover --confirm`), oldest first, each under the bot
/// its id names with that bot's exit rules for an entry: afterwards they are followed like any
/// order of ours, and their fills become the bots' positions. Checked whole before anything is
/// written: an order of a bot `cfg` does not have (its rules unknown), or of a shape the daemon
/// never sends, books nothing. Returns the ids booked.
pub fn book(state: &mut State, cfg: &Config, lost: &[LostOrder], now: Timestamp) -> Result<Vec<String>, BookError> {
    let mut planned = Vec::new();
    for l in lost {
        let new = new_order(l, now).map_err(BookError::Unbookable)?;
        let rules = cfg.rules_of(&l.id.bot).ok_or_else(|| {
            BookError::Unbookable(Unbookable(format!(
                "{}: bot {} is not in bots.yaml, so the rules to manage its position are unknown: add it back, or \
                 close the position at the broker",
                l.order.client_order_id, l.id.bot
            )))
        })?;
        planned.push((l, new, rules));
    }
    let mut booked = Vec::new();
    for (l, new, rules) in planned {
        // As `Orders::send_entry` stores them: under the order's symbol (a spread's underlying).
        if new.intent == Intent::Entry {
            state.put_position_rules(&new.bot, &new.symbol, &rules, now)?;
        }
        if state.record_recovered(&l.order.client_order_id, &new, &l.order.id, &l.id.epoch)? {
            booked.push(l.order.client_order_id.clone());
        }
    }
    Ok(booked)
}

/// Why `book` stopped.
#[derive(Debug)]
pub enum BookError {
    /// Nothing was written.
    Unbookable(Unbookable),
    /// The ledger refused a write; what was booked before it stays (each order is one
    /// transaction), and a second `recover --confirm` books the rest.
    State(StateError),
}

impl From<StateError> for BookError {
    fn from(e: StateError) -> BookError {
        BookError::State(e)
    }
}

impl std::fmt::Display for BookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BookError::Unbookable(Unbookable(why)) => write!(f, "nothing was booked: {why}"),
            BookError::State(e) => {
                write!(f, "{e}; what was booked before stays, and running recover again books the rest")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::instrument::AssetClass;
    use crate::core::order::OrderStatus;

    fn d(t: &str) -> Dec {
        t.parse().unwrap()
    }

    fn order(id: &str, symbol: &str, side: Side, kind: OrderType, status: &str, filled: &str) -> Order {
        Order {
            id: format!("b-{id}"),
            client_order_id: id.into(),
            symbol: symbol.into(),
            asset_class: AssetClass::UsEquity,
            side: Some(side),
            order_type: Some(kind),
            time_in_force: None,
            qty: Some(d("52")),
            notional: None,
            filled_qty: Some(d(filled)),
            filled_avg_price: (filled != "0").then(|| d("190")),
            limit_price: None,
            stop_price: (kind == OrderType::Stop).then(|| d("188.1")),
            status: OrderStatus::parse(status),
            order_class: String::new(),
            position_intent: None,
            legs: Vec::new(),
            created_at: None,
            filled_at: None,
        }
    }

    #[test]
    fn what_is_open_or_still_held_matters_and_history_does_not() {
        let held: BTreeMap<String, Dec> = [("AAPL".to_string(), d("52"))].into();
        let stop = order("s", "AAPL", Side::Sell, OrderType::Stop, "new", "0");
        assert!(matters(&stop, &held), "a resting stop");
        assert!(matters(&order("e", "AAPL", Side::Buy, OrderType::Market, "filled", "52"), &held));
        assert!(!matters(&order("e", "MSFT", Side::Buy, OrderType::Market, "filled", "52"), &held), "flat since");
        assert!(!matters(&order("c", "AAPL", Side::Buy, OrderType::Limit, "canceled", "0"), &held), "never filled");
    }

    #[test]
    fn a_lost_order_is_booked_as_what_its_shape_says() {
        let id = ClientOrderId::parse("th-mom_AAPL-20261125-k2v9a0b1-7").unwrap();
        let now: Timestamp = "2026-11-25T15:30:00Z".parse().unwrap();
        let lost = |o: Order| LostOrder { id: id.clone(), order: o, standing: Standing::OtherEpoch };
        let entry = new_order(&lost(order("e", "AAPL", Side::Buy, OrderType::Market, "filled", "52")), now).unwrap();
        assert_eq!((entry.bot.as_str(), entry.intent, entry.rule), ("mom_AAPL", Intent::Entry, None));
        let stop = new_order(&lost(order("s", "AAPL", Side::Sell, OrderType::Stop, "new", "0")), now).unwrap();
        assert_eq!(
            (stop.intent, stop.rule.as_deref(), stop.stop_price.as_deref()),
            (Intent::Exit, Some(BROKER_STOP), Some("188.1"))
        );
        let exit = new_order(&lost(order("x", "AAPL", Side::Sell, OrderType::Market, "filled", "52")), now).unwrap();
        assert_eq!((exit.intent, exit.rule.as_deref()), (Intent::Exit, Some(RECOVERED)));
        assert_eq!(exit.trading_date, jiff::civil::date(2026, 11, 25), "the date its id names");
        let words = describe(
            &[lost(order("s", "AAPL", Side::Sell, OrderType::Stop, "new", "0"))],
            &[("AAPL".to_string(), d("52"))].into(),
        );
        assert!(
            words.contains("never drew") && words.contains("AAPL 52") && words.contains("recover --confirm"),
            "{words}"
        );
    }
}
