//! Round trips: the ledger's fills folded into trades a trader reads — from a bot's first fill
//! into a position to the fill that leaves it flat — with both fills' prices and times.
//!
//! Owns: which fills belong to one trade and what the trade shows: its entry and exit (time and
//! average price, or for an option spread its net per spread: a debit paid or a credit taken),
//! the rule that closed it, its size, its realised P&L (the ledger's own, summed exactly), its
//! slippage (each fill against the price its order was decided at, `OrderRecord::ref_price`) and
//! its fees (from a fee schedule when the caller has one: the backtest's; the live ledger has
//! none, Alpaca charging fees as account activities apart from fills). A pure function of plain
//! values: the backtest's `trades.csv` and the live `trading-hydra trades` are the same fold
//! over the same records, so they read alike.
//!
//! Never: reads or writes anything, or decides anything about an order. A fill joins the trip its
//! order's earlier fills joined; else the bot's open trip that holds its symbol; else it opens a
//! trip. A trip closes when every symbol in it is back to zero. A spread's legs, filled as one
//! order, are one trip.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;

use crate::core::decimal::Dec;
use crate::core::instrument::{OccSymbol, OptionKind, multiplier};
use crate::core::order::Intent;
use crate::core::state::{FillRecord, OrderRecord};

/// One trade, from flat to flat (or still open).
#[derive(Debug, Clone, PartialEq)]
pub struct RoundTrip {
    pub bot: String,
    /// The entry order's symbol: the ticker, the pair, or a spread's underlying.
    pub symbol: String,
    /// The option legs, each with its signed quantity at entry (empty for a stock or a coin).
    pub legs: Vec<(String, Dec)>,
    /// `long` or `short` for one symbol, `spread` for legs.
    pub side: &'static str,
    /// Shares, coins or contracts entered; for a spread, the spreads.
    pub qty: Dec,
    pub entry_at: Timestamp,
    /// The average entry fill; for a spread its net per spread (+ a debit, − a credit).
    pub entry_price: Option<Dec>,
    /// The last exit fill; `None` while the trip is open.
    pub exit_at: Option<Timestamp>,
    /// The average exit fill; for a spread its net per spread (+ paid, − taken).
    pub exit_price: Option<Dec>,
    /// The rule of the order whose fill closed it (`broker_stop`, `take_profit`, …); `None` while
    /// open.
    pub rule: Option<String>,
    /// Realised P&L, as the ledger booked it (fees not taken off).
    pub gross_pnl: Dec,
    /// Fees paid on its fills, when a fee schedule was given.
    pub fees: Option<Dec>,
    /// What its fills cost beyond the prices their orders were decided at (+ a cost, − an
    /// improvement), in dollars; `None` when no fill's order recorded one.
    pub slippage: Option<Dec>,
    /// The client order ids of its orders, in the order they filled.
    pub orders: Vec<String>,
}

impl RoundTrip {
    /// Realised P&L less fees (the gross when fees are not known).
    pub fn net_pnl(&self) -> Dec {
        let fees = self.fees.unwrap_or(Dec::ZERO);
        self.gross_pnl.checked_sub(fees).unwrap_or(self.gross_pnl)
    }

    /// Whether it has gone back to flat.
    pub fn is_closed(&self) -> bool {
        self.exit_at.is_some() && self.rule.is_some()
    }

    /// Minutes from the first entry fill to the last exit fill.
    pub fn minutes(&self) -> Option<i64> {
        self.exit_at.map(|x| x.duration_since(self.entry_at).as_secs() / 60)
    }

    /// The legs in words: `SPY 2026-12-18 put 480 ×-1; SPY 2026-12-18 put 475 ×1`.
    pub fn legs_text(&self) -> String {
        let leg = |(symbol, qty): &(String, Dec)| match OccSymbol::parse(symbol) {
            Some(o) => {
                let kind = if o.kind == OptionKind::Call { "call" } else { "put" };
                format!("{} {} {kind} {} ×{qty}", o.root, o.expiry, o.strike)
            }
            None => format!("{symbol} ×{qty}"),
        };
        self.legs.iter().map(leg).collect::<Vec<_>>().join("; ")
    }
}

/// `trades.csv` (and `trading-hydra trades --csv`): one row per round trip (`core::round_trip`),
/// money to the cent.
pub fn csv(trips: &[RoundTrip]) -> String {
    let mut out = String::from(
        "bot,symbol,legs,side,qty,entry_time,entry_price,exit_time,exit_price,rule,minutes,gross_pnl,fees,pnl,slippage,orders\n",
    );
    let at = |t: Option<Timestamp>| t.map_or(String::new(), |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    let dec = |v: Option<Dec>| v.map_or(String::new(), |v| v.to_string());
    let cents = |v: Option<Dec>| v.map_or(String::new(), |v| format!("{:.2}", v.to_f64()));
    for t in trips {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            t.bot,
            t.symbol,
            csv_field(&t.legs_text()),
            t.side,
            t.qty,
            at(Some(t.entry_at)),
            dec(t.entry_price),
            at(t.exit_at),
            dec(t.exit_price),
            t.rule.as_deref().unwrap_or("open"),
            t.minutes().map_or(String::new(), |m| m.to_string()),
            cents(Some(t.gross_pnl)),
            cents(t.fees),
            cents(Some(t.net_pnl())),
            cents(t.slippage),
            t.orders.join(" ")
        );
    }
    out
}

/// The trips for a person (`trading-hydra trades`): a line each, times on the configured
/// clock, money to the cent, a spread's legs on the line below; then the closed trips' total.
pub fn table(trips: &[RoundTrip], tz: &jiff::tz::TimeZone) -> String {
    let at = |t: Timestamp| t.to_zoned_datetime(tz.clone()).strftime("%Y-%m-%d %H:%M").to_string();
    let mut out = format!(
        "{:<16} {:<9} {:<6} {:>10} {:<16} {:>11} {:<16} {:>11} {:<20} {:>11} {:>9}\n",
        "bot", "symbol", "side", "qty", "entry", "price", "exit", "price", "rule", "P&L", "slippage"
    );
    let mut total = Dec::ZERO;
    let mut closed = 0;
    for t in trips {
        let price = |p: Option<Dec>| p.map_or("-".to_string(), |p| p.to_string());
        let cents = |p: Option<Dec>| p.map_or("-".to_string(), |p| format!("{:.2}", p.to_f64()));
        if t.is_closed() {
            total = total.checked_add(t.net_pnl()).unwrap_or(total);
            closed += 1;
        }
        let _ = writeln!(
            out,
            "{:<16} {:<9} {:<6} {:>10} {:<16} {:>11} {:<16} {:>11} {:<20} {:>11} {:>9}",
            t.bot,
            t.symbol,
            t.side,
            t.qty.to_string(),
            at(t.entry_at),
            price(t.entry_price),
            t.exit_at.map_or("-".to_string(), at),
            price(t.exit_price),
            t.rule.as_deref().unwrap_or("open"),
            cents(Some(t.net_pnl())),
            cents(t.slippage)
        );
        if !t.legs.is_empty() {
            let _ = writeln!(out, "  legs: {}", t.legs_text());
        }
    }
    let _ =
        writeln!(out, "{closed} closed, {} open; the closed ones' P&L ${:.2}", trips.len() - closed, total.to_f64());
    out
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (the research files' too).
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}

/// A trip being folded.
struct Open {
    trip: RoundTrip,
    /// Each symbol's signed quantity now.
    held: BTreeMap<String, Dec>,
    /// Σ quantity × price of the entry and exit fills (signed quantities), and their sizes.
    entry_value: Dec,
    entry_size: Dec,
    exit_value: Dec,
    exit_size: Dec,
    /// A spread's spreads closed so far (a single symbol's are `exit_size`).
    exited_units: Dec,
}

/// The fee of one fill: (symbol, signed quantity, price) → dollars, or `None` when not known.
pub type FeeSchedule<'a> = &'a dyn Fn(&str, Dec, Dec) -> Option<Dec>;

/// Folds `fills` (any order; taken by time) of `orders` into round trips, oldest entry first.
/// A fill whose order is not among `orders` is left out.
pub fn fold<'o>(
    orders: impl IntoIterator<Item = &'o OrderRecord>,
    fills: &[FillRecord],
    fee: FeeSchedule,
) -> Vec<RoundTrip> {
    let by_id: BTreeMap<&str, &OrderRecord> = orders.into_iter().map(|o| (o.client_order_id.as_str(), o)).collect();
    let mut fills: Vec<&FillRecord> = fills.iter().collect();
    fills.sort_by_key(|f| (f.at, f.id));
    let mut trips: Vec<Open> = Vec::new();
    // The trip each order's fills went to, and the trips still open.
    let mut order_trip: BTreeMap<&str, usize> = BTreeMap::new();
    let mut open: Vec<usize> = Vec::new();
    for f in fills {
        let Some(o) = by_id.get(f.client_order_id.as_str()) else { continue };
        let joined = order_trip.get(o.client_order_id.as_str()).copied().or_else(|| {
            open.iter().copied().find(|&i| trips[i].trip.bot == o.bot && trips[i].held.contains_key(&f.symbol))
        });
        let i = match joined {
            Some(i) => i,
            None => {
                trips.push(new_trip(o, f));
                open.push(trips.len() - 1);
                trips.len() - 1
            }
        };
        order_trip.insert(o.client_order_id.as_str(), i);
        add_fill(&mut trips[i], o, f, fee);
        let t = &mut trips[i];
        if t.held.values().all(|q| q.is_zero()) {
            close(t, o);
            open.retain(|&j| j != i);
        }
    }
    trips.into_iter().map(finish).collect()
}

fn new_trip(o: &OrderRecord, f: &FillRecord) -> Open {
    let option = OccSymbol::parse(&f.symbol).is_some();
    Open {
        trip: RoundTrip {
            bot: o.bot.clone(),
            symbol: o.symbol.clone(),
            legs: Vec::new(),
            side: if option && f.symbol != o.symbol {
                "spread"
            } else if f.qty.is_negative() {
                "short"
            } else {
                "long"
            },
            qty: Dec::ZERO,
            entry_at: f.at,
            entry_price: None,
            exit_at: None,
            exit_price: None,
            rule: None,
            gross_pnl: Dec::ZERO,
            fees: None,
            slippage: None,
            orders: Vec::new(),
        },
        held: BTreeMap::new(),
        entry_value: Dec::ZERO,
        entry_size: Dec::ZERO,
        exit_value: Dec::ZERO,
        exit_size: Dec::ZERO,
        exited_units: Dec::ZERO,
    }
}

/// Adds `b` to `a`, keeping `a` on the (unreachable at real sizes) overflow.
fn add(a: Dec, b: Dec) -> Dec {
    a.checked_add(b).unwrap_or(a)
}

fn add_fill(t: &mut Open, o: &OrderRecord, f: &FillRecord, fee: FeeSchedule) {
    let held = t.held.entry(f.symbol.clone()).or_insert(Dec::ZERO);
    *held = add(*held, f.qty);
    let value = f.qty.checked_mul(f.price).unwrap_or(Dec::ZERO);
    let spread = t.trip.side == "spread";
    let entry = o.intent == Intent::Entry;
    if entry {
        t.entry_value = add(t.entry_value, value);
        t.entry_size = add(t.entry_size, f.qty.abs());
        if spread {
            match t.trip.legs.iter_mut().find(|(s, _)| *s == f.symbol) {
                Some(leg) => leg.1 = add(leg.1, f.qty),
                None => t.trip.legs.push((f.symbol.clone(), f.qty)),
            }
        }
    } else {
        t.exit_value = add(t.exit_value, value);
        t.exit_size = add(t.exit_size, f.qty.abs());
        t.trip.exit_at = Some(f.at);
    }
    if !t.trip.orders.contains(&o.client_order_id) {
        t.trip.orders.push(o.client_order_id.clone());
        // A spread's size is its orders' spreads, each counted once, whichever leg filled first.
        if spread && entry {
            t.trip.qty = add(t.trip.qty, o.filled_qty);
        } else if spread {
            t.exited_units = add(t.exited_units, o.filled_qty);
        }
    }
    t.trip.gross_pnl = add(t.trip.gross_pnl, f.realized_pnl);
    if let Some(paid) = fee(&f.symbol, f.qty, f.price) {
        t.trip.fees = Some(add(t.trip.fees.unwrap_or(Dec::ZERO), paid));
    }
    // Slippage of a single-leg order's fill: (price − decided) × quantity × multiplier, which is
    // a cost for a buy above it and for a sell below it. (A spread's reference is its net limit,
    // which its fills meet or beat: not a slippage worth the name.)
    let decided = o.ref_price.as_deref().and_then(|p| p.parse::<Dec>().ok());
    if let (Some(decided), false) = (decided, spread) {
        let cost = f
            .price
            .checked_sub(decided)
            .and_then(|d| d.checked_mul(f.qty))
            .and_then(|c| c.checked_mul_int(multiplier(&f.symbol)));
        if let Some(cost) = cost {
            t.trip.slippage = Some(add(t.trip.slippage.unwrap_or(Dec::ZERO), cost.round_to(2)));
        }
    }
}

fn close(t: &mut Open, o: &OrderRecord) {
    t.trip.rule = Some(o.rule.clone().unwrap_or_else(|| "unknown".into()));
}

/// The average prices, from the sums.
fn finish(t: Open) -> RoundTrip {
    let mut trip = t.trip;
    if trip.side == "spread" {
        // Net per spread: Σ signed quantity × price over the spreads.
        trip.entry_price = t.entry_value.checked_div(trip.qty).map(|p| p.round_to(4));
        trip.exit_price = t.exit_value.checked_div(t.exited_units).map(|p| p.round_to(4));
    } else {
        // A single symbol's size is what its entry fills bought (or sold short).
        trip.qty = t.entry_size;
        trip.entry_price = t.entry_value.abs().checked_div(t.entry_size).map(|p| p.round_to(6));
        trip.exit_price = t.exit_value.abs().checked_div(t.exit_size).map(|p| p.round_to(6));
    }
    if trip.rule.is_none() {
        trip.exit_at = None;
        trip.exit_price = None;
    }
    trip
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::order::{OrderType, RecordStatus, Side};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn d(s: &str) -> Dec {
        s.parse().unwrap()
    }

    fn order(id: &str, bot: &str, symbol: &str, intent: Intent, rule: Option<&str>, filled: &str) -> OrderRecord {
        OrderRecord {
            client_order_id: id.into(),
            bot: bot.into(),
            symbol: symbol.into(),
            side: Side::Buy,
            qty: Some(filled.into()),
            notional: None,
            order_type: OrderType::Market,
            limit_price: None,
            stop_price: None,
            intent,
            status: RecordStatus::parse("filled"),
            broker_order_id: None,
            created_at: ts("2026-12-01T15:00:00Z"),
            trading_date: "2026-12-01".parse().unwrap(),
            rule: rule.map(str::to_string),
            filled_qty: d(filled),
            ref_price: None,
        }
    }

    fn fill(id: i64, order: &str, symbol: &str, qty: &str, price: &str, pnl: &str, at: &str) -> FillRecord {
        FillRecord {
            id,
            client_order_id: order.into(),
            symbol: symbol.into(),
            qty: d(qty),
            price: d(price),
            realized_pnl: d(pnl),
            at: ts(at),
        }
    }

    fn no_fee(_: &str, _: Dec, _: Dec) -> Option<Dec> {
        None
    }

    #[test]
    fn a_stop_that_fills_hours_later_shows_both_fills_and_the_hours_between() {
        let mut entry = order("e1", "mom", "AAPL", Intent::Entry, None, "10");
        entry.ref_price = Some("100".into());
        let mut stop = order("s1", "mom", "AAPL", Intent::Exit, Some("broker_stop"), "10");
        stop.ref_price = Some("95".into());
        let fills = [
            // Bought in two pieces, sold at the stop three hours later, 0.10 below it.
            fill(1, "e1", "AAPL", "4", "100.02", "0", "2026-12-01T15:01:00Z"),
            fill(2, "e1", "AAPL", "6", "100.04", "0", "2026-12-01T15:02:00Z"),
            fill(3, "s1", "AAPL", "-10", "94.9", "-51.32", "2026-12-01T18:02:00Z"),
        ];
        let trips = fold(&[entry, stop], &fills, &no_fee);
        assert_eq!(trips.len(), 1);
        let t = &trips[0];
        assert_eq!((t.side, t.qty, t.rule.as_deref()), ("long", d("10"), Some("broker_stop")));
        assert_eq!(t.entry_at, ts("2026-12-01T15:01:00Z"));
        assert_eq!(t.exit_at, Some(ts("2026-12-01T18:02:00Z")));
        assert_eq!(t.minutes(), Some(181));
        // (4 × 100.02 + 6 × 100.04) / 10 = 100.032
        assert_eq!(t.entry_price, Some(d("100.032")));
        assert_eq!(t.exit_price, Some(d("94.9")));
        assert_eq!(t.gross_pnl, d("-51.32"));
        // Entry: 4 × 0.02 + 6 × 0.04 = 0.32; exit: (94.9 − 95) × −10 = 1.00.
        assert_eq!(t.slippage, Some(d("1.32")));
        assert_eq!(t.fees, None);
        assert_eq!(t.net_pnl(), d("-51.32"));
        assert_eq!(t.orders, vec!["e1".to_string(), "s1".to_string()]);
    }

    #[test]
    fn a_partial_exit_keeps_the_trip_open_and_the_next_entry_starts_another() {
        let e1 = order("e1", "c", "BTC/USD", Intent::Entry, None, "0.5");
        let x1 = order("x1", "c", "BTC/USD", Intent::Exit, Some("take_profit"), "0.2");
        let x2 = order("x2", "c", "BTC/USD", Intent::Exit, Some("trailing_stop"), "0.3");
        let e2 = order("e2", "c", "BTC/USD", Intent::Entry, None, "0.1");
        let fills = [
            fill(1, "e1", "BTC/USD", "0.5", "60000", "0", "2026-12-05T10:00:00Z"),
            fill(2, "x1", "BTC/USD", "-0.2", "61000", "200", "2026-12-05T11:00:00Z"),
            fill(3, "x2", "BTC/USD", "-0.3", "60500", "150", "2026-12-05T12:00:00Z"),
            fill(4, "e2", "BTC/USD", "0.1", "60400", "0", "2026-12-05T13:00:00Z"),
        ];
        let fee = |_: &str, q: Dec, p: Dec| q.abs().checked_mul(p).and_then(|v| v.checked_div(Dec::from_int(1000)));
        let trips = fold(&[e1, x1, x2, e2], &fills, &fee);
        assert_eq!(trips.len(), 2);
        let first = &trips[0];
        assert_eq!(first.rule.as_deref(), Some("trailing_stop"), "the fill that left it flat names the rule");
        // (0.2 × 61000 + 0.3 × 60500) / 0.5 = 60700
        assert_eq!(first.exit_price, Some(d("60700")));
        assert_eq!(first.gross_pnl, d("350"));
        // 0.1 % of 30000 + 12200 + 18150
        assert_eq!(first.fees, Some(d("60.35")));
        assert_eq!(first.net_pnl(), d("289.65"));
        let second = &trips[1];
        assert!(!second.is_closed());
        assert_eq!((second.exit_at, second.exit_price, second.qty), (None, None, d("0.1")));
    }

    #[test]
    fn a_credit_spread_is_one_trip_with_its_legs_and_its_net_prices() {
        let short = "SPY261218P00480000";
        let long = "SPY261218P00475000";
        let open = order("o1", "opt", "SPY", Intent::Entry, None, "2");
        let shut = order("c1", "opt", "SPY", Intent::Exit, Some("take_profit"), "2");
        let fills = [
            fill(1, "o1", short, "-2", "2.10", "0", "2026-12-01T15:00:00Z"),
            fill(2, "o1", long, "2", "1.60", "0", "2026-12-01T15:00:00Z"),
            fill(3, "c1", short, "2", "1.00", "220", "2026-12-03T16:00:00Z"),
            fill(4, "c1", long, "-2", "0.80", "-160", "2026-12-03T16:00:00Z"),
        ];
        let trips = fold(&[open, shut], &fills, &no_fee);
        assert_eq!(trips.len(), 1);
        let t = &trips[0];
        assert_eq!((t.side, t.symbol.as_str(), t.qty), ("spread", "SPY", d("2")));
        assert_eq!(t.legs, vec![(short.to_string(), d("-2")), (long.to_string(), d("2"))]);
        assert_eq!(t.legs_text(), "SPY 2026-12-18 put 480 ×-2; SPY 2026-12-18 put 475 ×2");
        // Taken: −2 × 2.10 + 2 × 1.60 = −1.00 for 2 spreads, a credit of 0.50 each; paid 0.20 to close.
        assert_eq!(t.entry_price, Some(d("-0.5")));
        assert_eq!(t.exit_price, Some(d("0.2")));
        assert_eq!(t.gross_pnl, d("60"));
        assert_eq!(t.slippage, None);
    }

    #[test]
    fn two_bots_in_one_symbol_keep_their_own_trips() {
        let a = order("a1", "mom_a", "SPY", Intent::Entry, None, "1");
        let b = order("b1", "mom_b", "SPY", Intent::Entry, None, "1");
        let ax = order("a2", "mom_a", "SPY", Intent::Exit, Some("time_stop"), "1");
        let fills = [
            fill(1, "a1", "SPY", "1", "500", "0", "2026-12-01T15:00:00Z"),
            fill(2, "b1", "SPY", "1", "501", "0", "2026-12-01T15:01:00Z"),
            fill(3, "a2", "SPY", "-1", "502", "2", "2026-12-01T15:02:00Z"),
            fill(4, "zz", "SPY", "-1", "502", "2", "2026-12-01T15:03:00Z"),
        ];
        let trips = fold(&[a, b, ax], &fills, &no_fee);
        assert_eq!(trips.len(), 2, "a fill of an order not given is left out");
        assert_eq!((trips[0].bot.as_str(), trips[0].is_closed()), ("mom_a", true));
        assert_eq!((trips[1].bot.as_str(), trips[1].is_closed()), ("mom_b", false));
    }
}
