//! The simulated broker, driven by a clock the test moves: deterministic for a seed, Alpaca's
//! refusals, fills by order type, multi-leg spreads, sane option prices, and a book that survives
//! a restart.

use std::sync::Arc;

#[path = "../src/test_dir.rs"]
mod test_dir;

use jiff::{SignedDuration, Timestamp};
use trading_hydra::core::clock::{Clock, ManualClock};
use trading_hydra::core::config::Sim;
use trading_hydra::core::decimal::Dec;
use trading_hydra::core::instrument::{OptionKind, occ_symbol};
use trading_hydra::core::order::{Amount, Leg, OrderStatus, OrderType, PositionIntent, Side, TimeInForce};
use trading_hydra::core::state::State;
use trading_hydra::services::broker::{Broker, BrokerError, OrderRequest};
use trading_hydra::sim::sim_broker::SimBroker;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn d(s: &str) -> Dec {
    s.parse().unwrap()
}

/// Wednesday 2026-11-25, 10:00 New York.
const OPEN_DAY: &str = "2026-11-25T15:00:00Z";

fn sim(seed: u64, at: &str) -> (SimBroker, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(ts(at)));
    let b = SimBroker::open(clock.clone(), Sim::default(), seed, None).unwrap();
    (b, clock)
}

fn req(coid: &str, symbol: &str, side: Side, amount: Amount, tif: TimeInForce) -> OrderRequest {
    OrderRequest {
        client_order_id: coid.into(),
        symbol: symbol.into(),
        side,
        amount,
        order_type: OrderType::Market,
        time_in_force: tif,
        limit_price: None,
        stop_price: None,
        extended_hours: false,
        legs: vec![],
    }
}

fn qty(n: i64) -> Amount {
    Amount::Qty(Dec::from_int(n))
}

fn minutes(n: i64) -> SignedDuration {
    SignedDuration::from_mins(n)
}

fn refusal(r: Result<impl std::fmt::Debug, BrokerError>) -> (u16, String) {
    match r {
        Err(BrokerError::Rejected { status, message, .. }) => (status, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_same_seed_gives_the_same_fills_and_equity() {
    let run = |seed: u64| {
        let (mut b, clock) = sim(seed, OPEN_DAY);
        let mut fills = Vec::new();
        for i in 0..5 {
            let o = b.submit_order(&req(&format!("c{i}"), "AAPL", Side::Buy, qty(2), TimeInForce::Day)).unwrap();
            clock.advance(minutes(7));
            fills.push(b.order(&o.id).unwrap().unwrap().filled_avg_price.unwrap());
        }
        let o = b.submit_order(&req("s", "AAPL", Side::Sell, qty(10), TimeInForce::Day)).unwrap();
        clock.advance(minutes(3));
        fills.push(b.order(&o.id).unwrap().unwrap().filled_avg_price.unwrap());
        (fills, b.account().unwrap().equity)
    };
    let (a, b) = (run(7), run(7));
    assert_eq!(a, b);
    assert_ne!(run(8).0, a.0, "another seed, another market");
}

#[test]
fn a_market_order_fills_at_the_next_minute_with_slippage_and_the_cash_is_exact() {
    let (mut b, clock) = sim(1, OPEN_DAY);
    let before = b.account().unwrap();
    assert_eq!(before.equity, Dec::from_int(100_000));
    let o = b.submit_order(&req("buy", "AAPL", Side::Buy, qty(10), TimeInForce::Day)).unwrap();
    assert_eq!(o.status, OrderStatus::Accepted);
    assert!(b.positions().unwrap().is_empty(), "not within the same minute");
    clock.advance(minutes(1));
    let filled = b.order(&o.id).unwrap().unwrap();
    assert_eq!(filled.status, OrderStatus::Filled);
    let price = filled.filled_avg_price.unwrap();
    let account = b.account().unwrap();
    // Cash falls by exactly price × qty (no stock commission by default).
    let cost = Dec::from_f64(price.to_f64() * 10.0).unwrap().round_to(2);
    assert_eq!(account.cash, Dec::from_int(100_000).checked_sub(cost).unwrap());
    let p = &b.positions().unwrap()[0];
    assert_eq!((p.symbol.as_str(), p.qty, p.avg_entry_price), ("AAPL", Dec::from_int(10), price));
    // The fill paid the slippage: above the minute's quote midpoint.
    let quote = b.stock_quotes(&["AAPL".to_string()]).unwrap()["AAPL"];
    assert!(quote.ask > quote.bid);
}

#[test]
fn limit_orders_wait_until_the_price_crosses() {
    let (mut b, clock) = sim(3, OPEN_DAY);
    let mid = {
        let q = b.stock_quotes(&["SPY".to_string()]).unwrap()["SPY"];
        (q.bid + q.ask) / 2.0
    };
    let far = OrderRequest {
        order_type: OrderType::Limit,
        limit_price: Some(Dec::from_f64(mid * 0.5).unwrap().round_to(2)),
        ..req("far", "SPY", Side::Buy, qty(1), TimeInForce::Day)
    };
    let near = OrderRequest {
        order_type: OrderType::Limit,
        limit_price: Some(Dec::from_f64(mid * 1.5).unwrap().round_to(2)),
        ..req("near", "SPY", Side::Buy, qty(1), TimeInForce::Day)
    };
    let far = b.submit_order(&far).unwrap();
    let near = b.submit_order(&near).unwrap();
    clock.advance(minutes(2));
    assert_eq!(b.order(&far.id).unwrap().unwrap().status, OrderStatus::Accepted);
    let n = b.order(&near.id).unwrap().unwrap();
    assert_eq!(n.status, OrderStatus::Filled);
    assert!(n.filled_avg_price.unwrap() <= n.limit_price.unwrap(), "a buy limit never fills above its limit");
    // A day order that never crossed expires at the close (16:00 New York = 21:00Z).
    clock.set(ts("2026-11-25T21:00:30Z"));
    assert_eq!(b.order(&far.id).unwrap().unwrap().status, OrderStatus::Expired);
    assert_eq!(b.account().unwrap().buying_power, b.account().unwrap().cash, "its reservation is released");
}

#[test]
fn stocks_wait_for_the_open_while_crypto_trades_on_a_sunday() {
    let (mut b, clock) = sim(4, "2026-11-29T15:00:00Z"); // Sunday
    let stock = b.submit_order(&req("stock", "AAPL", Side::Buy, qty(1), TimeInForce::Day)).unwrap();
    let coin =
        b.submit_order(&req("coin", "BTC/USD", Side::Buy, Amount::Notional(d("100")), TimeInForce::Gtc)).unwrap();
    clock.advance(minutes(5));
    assert_eq!(b.order(&stock.id).unwrap().unwrap().status, OrderStatus::Accepted);
    let c = b.order(&coin.id).unwrap().unwrap();
    assert_eq!(c.status, OrderStatus::Filled);
    let filled = c.filled_qty.unwrap();
    assert!(filled > Dec::ZERO && filled < d("0.01"));
    // Monday 09:31 New York: the stock order fills.
    clock.set(ts("2026-11-30T14:31:30Z"));
    assert_eq!(b.order(&stock.id).unwrap().unwrap().status, OrderStatus::Filled);
    let crypto: Vec<_> = b.positions().unwrap().into_iter().filter(|p| p.symbol == "BTC/USD").collect();
    assert_eq!(crypto.len(), 1);
}

#[test]
fn alpacas_refusals() {
    let (mut b, clock) = sim(5, OPEN_DAY);
    let r = |c: &str, s: &str, side, a, tif| req(c, s, side, a, tif);
    assert_eq!(refusal(b.submit_order(&r("bp", "SPY", Side::Buy, qty(10_000), TimeInForce::Day))).0, 403);
    let frac = r("frac", "AAPL", Side::Buy, Amount::Qty(d("0.5")), TimeInForce::Gtc);
    assert!(refusal(b.submit_order(&frac)).1.contains("fractional orders must be DAY"));
    let opt = occ_symbol("SPY", jiff::civil::date(2026, 12, 18), OptionKind::Call, Dec::from_int(480));
    assert!(
        refusal(b.submit_order(&r("ofrac", &opt, Side::Buy, Amount::Qty(d("1.5")), TimeInForce::Day)))
            .1
            .contains("integer")
    );
    assert!(refusal(b.submit_order(&r("ogtc", &opt, Side::Buy, qty(1), TimeInForce::Gtc))).1.contains("day"));
    assert_eq!(refusal(b.submit_order(&r("onaked", &opt, Side::Sell, qty(1), TimeInForce::Day))).0, 403);
    assert!(
        refusal(b.submit_order(&r("cday", "BTC/USD", Side::Buy, Amount::Notional(d("50")), TimeInForce::Day)))
            .1
            .contains("time_in_force")
    );
    assert!(
        refusal(b.submit_order(&r("cmin", "BTC/USD", Side::Buy, Amount::Notional(d("9.99")), TimeInForce::Gtc)))
            .1
            .contains("minimal amount of order 10")
    );
    assert!(
        refusal(b.submit_order(&r("short", "AAPL", Side::Sell, qty(1), TimeInForce::Day)))
            .1
            .contains("insufficient qty")
    );
    b.submit_order(&r("once", "AAPL", Side::Buy, qty(1), TimeInForce::Day)).unwrap();
    let dup = refusal(b.submit_order(&r("once", "AAPL", Side::Buy, qty(1), TimeInForce::Day)));
    assert_eq!(dup, (422, "client_order_id must be unique".to_string()));
    // Two sells of one held share: the second finds nothing available.
    clock.advance(minutes(1));
    b.submit_order(&r("sell1", "AAPL", Side::Sell, qty(1), TimeInForce::Day)).unwrap();
    assert_eq!(refusal(b.submit_order(&r("sell2", "AAPL", Side::Sell, qty(1), TimeInForce::Day))).0, 403);
    // A refusal in Alpaca's words is an answer, not an outage: none counts for the health window
    // (issue 13 reversed the earlier rule that counted all ten).
    assert!(b.take_call_stats().failures.is_empty());
}

#[test]
fn option_prices_are_sane() {
    let (mut b, _clock) = sim(6, OPEN_DAY);
    let spot = b.stock_quotes(&["SPY".to_string()]).unwrap()["SPY"].ask;
    let (from, to) = (jiff::civil::date(2026, 11, 26), jiff::civil::date(2027, 1, 15));
    let snaps = b.option_snapshots("SPY", from, to, None, None).unwrap();
    assert!(snaps.len() > 100, "{}", snaps.len());
    // One kind alone: exactly that kind's half of the chain, priced as in the whole.
    let puts = b.option_snapshots("SPY", from, to, Some(OptionKind::Put), None).unwrap();
    let occ = |s: &str| trading_hydra::core::instrument::OccSymbol::parse(s).unwrap();
    let whole_puts: Vec<_> = snaps.iter().filter(|(s, _)| occ(s).kind == OptionKind::Put).collect();
    assert_eq!(puts.iter().collect::<Vec<_>>(), whole_puts);
    assert_eq!(puts.len() * 2, snaps.len());
    // Strikes from one to another (both included): exactly those of the kind, priced as in the
    // whole — what a held spread's legs ask.
    let strikes: Vec<Dec> = puts.keys().map(|s| occ(s).strike).collect();
    let (low, high) = (strikes[1], strikes[3]);
    assert!(low < high);
    let legs = b.option_snapshots("SPY", from, to, Some(OptionKind::Put), Some((low, high))).unwrap();
    let between: Vec<_> = whole_puts.iter().copied().filter(|(s, _)| (low..=high).contains(&occ(s).strike)).collect();
    assert!(between.len() >= 2 && between.len() < puts.len(), "{}", between.len());
    assert_eq!(legs.iter().collect::<Vec<_>>(), between);
    for (symbol, s) in &snaps {
        let trading_hydra::core::instrument::OccSymbol { kind, strike, .. } =
            trading_hydra::core::instrument::OccSymbol::parse(symbol).unwrap();
        let delta = s.greeks.unwrap().delta;
        let q = s.quote.unwrap();
        let mid = (q.bid + q.ask) / 2.0;
        let k = strike.to_f64();
        match kind {
            OptionKind::Call => {
                assert!(delta > 0.0 && delta < 1.0, "{symbol} {delta}");
                assert!(mid >= (spot - k).max(0.0) - 1e-9, "{symbol}: {mid} below intrinsic");
            }
            OptionKind::Put => {
                assert!(delta < 0.0 && delta > -1.0, "{symbol} {delta}");
                assert!(mid >= (k - spot).max(0.0) - 1e-9, "{symbol}: {mid} below intrinsic");
            }
        }
        assert!(s.implied_volatility.unwrap() > 0.0);
    }
}

#[test]
fn a_credit_spread_fills_as_one_and_holds_its_maximum_loss() {
    let (mut b, clock) = sim(9, OPEN_DAY);
    let expiry = jiff::civil::date(2026, 12, 18);
    let contracts = b.option_contracts(&["SPY".to_string()], expiry, expiry).unwrap();
    let puts: Vec<_> = contracts.iter().filter(|c| c.kind == OptionKind::Put).collect();
    let short = puts[puts.len() / 2 - 2]; // below the money
    let long = puts[puts.len() / 2 - 3]; // one strike lower
    let width = short.strike.to_f64() - long.strike.to_f64();
    let spread = OrderRequest {
        client_order_id: "spread".into(),
        symbol: String::new(),
        side: Side::Sell,
        amount: qty(2),
        order_type: OrderType::Market,
        time_in_force: TimeInForce::Day,
        limit_price: None,
        stop_price: None,
        extended_hours: false,
        legs: vec![
            Leg { symbol: short.symbol.clone(), ratio_qty: 1, position_intent: PositionIntent::SellToOpen },
            Leg { symbol: long.symbol.clone(), ratio_qty: 1, position_intent: PositionIntent::BuyToOpen },
        ],
    };
    let cash0 = b.account().unwrap().cash;
    let o = b.submit_order(&spread).unwrap();
    assert_eq!(o.order_class, "mleg");
    let held = cash0.checked_sub(b.account().unwrap().buying_power).unwrap().to_f64();
    assert!(held > 0.0 && held <= width * 2.0 * 100.0 + 5.0, "reserved {held} for width {width}");
    clock.advance(minutes(1));
    let f = b.order(&o.id).unwrap().unwrap();
    assert_eq!(f.status, OrderStatus::Filled);
    assert!(f.filled_avg_price.unwrap() < Dec::ZERO, "a credit: {:?}", f.filled_avg_price);
    let pos = b.positions().unwrap();
    let q = |s: &str| pos.iter().find(|p| p.symbol == s).unwrap().qty;
    assert_eq!((q(&short.symbol), q(&long.symbol)), (Dec::from_int(-2), Dec::from_int(2)));
    assert!(b.account().unwrap().cash > cash0, "the credit was received");

    // Two short calls with nothing long: unbounded loss, refused.
    let calls: Vec<_> = contracts.iter().filter(|c| c.kind == OptionKind::Call).collect();
    let naked = OrderRequest {
        client_order_id: "naked".into(),
        legs: vec![
            Leg { symbol: calls[10].symbol.clone(), ratio_qty: 1, position_intent: PositionIntent::SellToOpen },
            Leg { symbol: calls[11].symbol.clone(), ratio_qty: 1, position_intent: PositionIntent::SellToOpen },
        ],
        ..spread
    };
    assert_eq!(refusal(b.submit_order(&naked)).0, 403);
}

#[test]
fn the_book_survives_a_restart() {
    let scratch = test_dir::TestDir::new("sim");
    let dir = scratch.path().to_path_buf();
    let db = dir.join("state.db");
    let clock = Arc::new(ManualClock::new(ts(OPEN_DAY)));
    let (cash, equity) = {
        let mut b = SimBroker::open(clock.clone(), Sim::default(), 11, Some(State::open(&db).unwrap())).unwrap();
        b.submit_order(&req("keep", "QQQ", Side::Buy, qty(3), TimeInForce::Day)).unwrap();
        clock.advance(minutes(2));
        let a = b.account().unwrap();
        (a.cash, a.equity)
    };
    let store = State::open(&db).unwrap();
    assert_eq!(SimBroker::stored_time(&store).unwrap(), Some(clock.now()));
    // Another seed is given, but the stored account (and its market) wins.
    let mut b = SimBroker::open(clock.clone(), Sim::default(), 99, Some(store)).unwrap();
    let a = b.account().unwrap();
    assert_eq!((a.cash, a.equity), (cash, equity));
    assert_eq!(b.positions().unwrap()[0].qty, Dec::from_int(3));
    assert!(b.submit_order(&req("keep", "QQQ", Side::Buy, qty(1), TimeInForce::Day)).is_err(), "ids stay unique");
}

#[test]
fn bars_are_session_minutes_for_stocks_and_every_minute_for_crypto() {
    let (mut b, _clock) = sim(12, "2026-11-25T15:00:00Z");
    let start = ts("2026-11-24T20:00:00Z"); // 15:00 New York yesterday
    let stocks = b.stock_bars(&["AAPL".to_string()], "1Min", start).unwrap();
    let bars = &stocks["AAPL"];
    // 60 minutes yesterday (15:00–16:00) + 30 today (09:30–10:00).
    assert_eq!(bars.len(), 90);
    assert!(bars.windows(2).all(|w| w[0].t < w[1].t));
    assert!(bars.iter().all(|b| b.low <= b.open.min(b.close) && b.high >= b.open.max(b.close)));
    let crypto = b.crypto_bars(&["ETH/USD".to_string()], "5Min", start).unwrap();
    assert_eq!(crypto["ETH/USD"].len(), 19 * 12);
    let q = b.crypto_quotes(&["ETH/USD".to_string()]).unwrap()["ETH/USD"];
    assert_eq!(q.t, ts("2026-11-25T15:00:00Z"));
}

/// One-minute bars of `symbol` from `start`: (open, high, low, close) each.
fn bars(start: &str, rows: &[(f64, f64, f64, f64)]) -> Vec<trading_hydra::core::market_data::Bar> {
    rows.iter()
        .enumerate()
        .map(|(i, &(open, high, low, close))| trading_hydra::core::market_data::Bar {
            t: ts(start).checked_add(minutes(i as i64)).unwrap(),
            open,
            high,
            low,
            close,
            volume: 1000.0,
        })
        .collect()
}

fn stop_req(coid: &str, symbol: &str, kind: OrderType, stop: &str, limit: Option<&str>, q: Amount) -> OrderRequest {
    OrderRequest {
        order_type: kind,
        stop_price: Some(d(stop)),
        limit_price: limit.map(d),
        ..req(coid, symbol, Side::Sell, q, if symbol.contains('/') { TimeInForce::Gtc } else { TimeInForce::Day })
    }
}

/// A resting stop sees the inside of each minute: it triggers when a bar's low reaches it, fills at
/// the stop — or at the open, when the price gapped through it; a stop-limit misses a gap beyond
/// its limit. (A backtest replays bars the same way.)
#[test]
fn resting_stops_trigger_on_the_bars_low_and_gaps_fill_at_the_open() {
    let (mut b, clock) = sim(3, OPEN_DAY);
    let mut data = trading_hydra::core::market_data::BySymbol::new();
    // Flat at 100 until 15:01, which dips to 99.2 inside the bar but closes at 99.9; 15:02 opens
    // at 97 (a gap through every stop) and closes at 96.
    let flat = (100.0, 100.1, 99.9, 100.0);
    let rows = [flat, flat, (100.0, 100.0, 99.2, 99.9), (97.0, 97.2, 95.5, 96.0), (96.0, 96.1, 95.9, 96.0)];
    data.insert("AAPL".to_string(), bars("2026-11-25T14:59:00Z", &rows));
    data.insert("BTC/USD".to_string(), bars("2026-11-25T14:59:00Z", &rows));
    b.replay(trading_hydra::sim::replay::Replay::held(std::sync::Arc::new(data)));
    let buy = |b: &mut SimBroker, coid: &str, symbol: &str, tif| {
        b.submit_order(&req(coid, symbol, Side::Buy, qty(10), tif)).unwrap()
    };
    buy(&mut b, "b1", "AAPL", TimeInForce::Day);
    buy(&mut b, "b2", "BTC/USD", TimeInForce::Gtc);
    clock.advance(minutes(1));
    // Stops at 99.5 (touched inside 15:01) and 98 (gapped through at 15:02); a crypto stop-limit
    // at 98 with its limit at 97.5, which the gap to 97 skips.
    let touched = b.submit_order(&stop_req("s1", "AAPL", OrderType::Stop, "99.5", None, qty(4))).unwrap();
    let gapped = b.submit_order(&stop_req("s2", "AAPL", OrderType::Stop, "98", None, qty(6))).unwrap();
    let missed = b.submit_order(&stop_req("s3", "BTC/USD", OrderType::StopLimit, "98", Some("97.5"), qty(10))).unwrap();
    clock.advance(minutes(1));
    let o = b.order(&touched.id).unwrap().unwrap();
    assert_eq!(o.status, OrderStatus::Filled, "the 15:01 low reached 99.5 though the minute closed above");
    assert!(o.filled_avg_price.unwrap() <= d("99.5") && o.filled_avg_price.unwrap() > d("99.4"), "{o:?}");
    assert_eq!(b.order(&gapped.id).unwrap().unwrap().status, OrderStatus::Accepted);
    clock.advance(minutes(1));
    let o = b.order(&gapped.id).unwrap().unwrap();
    assert_eq!(o.status, OrderStatus::Filled);
    assert!(o.filled_avg_price.unwrap() <= d("97") && o.filled_avg_price.unwrap() > d("96.9"), "at the open: {o:?}");
    let o = b.order(&missed.id).unwrap().unwrap();
    assert!(o.status != OrderStatus::Filled && o.filled_qty == Some(Dec::ZERO), "a gap beyond the limit misses: {o:?}");
    // The open sells hold what they cover: Alpaca's qty_available.
    let p = b.positions().unwrap();
    let btc = p.iter().find(|p| p.symbol == "BTC/USD").unwrap();
    assert_eq!((btc.qty, btc.qty_available), (d("10"), Some(d("0"))));
}

/// A replace: the old order ends `replaced`, the new one rests under its own client order id at
/// the new stop; a replaced (final) order cannot be replaced again, nor an id reused.
#[test]
fn a_resting_stop_is_replaced_under_a_new_id() {
    use trading_hydra::services::broker::ReplaceRequest;
    let (mut b, clock) = sim(5, OPEN_DAY);
    b.submit_order(&req("buy", "AAPL", Side::Buy, qty(10), TimeInForce::Day)).unwrap();
    clock.advance(minutes(1));
    let stop = b.submit_order(&stop_req("s1", "AAPL", OrderType::Stop, "1", None, qty(10))).unwrap();
    let r = ReplaceRequest { client_order_id: "s2".into(), stop_price: Some(d("2")), limit_price: None };
    let new = b.replace_order(&stop.id, &r).unwrap();
    assert_eq!((new.client_order_id.as_str(), new.stop_price, new.qty), ("s2", Some(d("2")), Some(d("10"))));
    assert_eq!(b.order(&stop.id).unwrap().unwrap().status, OrderStatus::Replaced);
    assert_eq!(
        refusal(b.replace_order(&stop.id, &ReplaceRequest { client_order_id: "s3".into(), ..r.clone() })).0,
        422
    );
    assert_eq!(refusal(b.replace_order(&new.id, &r)).0, 422, "s2 is taken");
    // Only the new one holds the shares.
    let p = b.positions().unwrap();
    assert_eq!(p.iter().find(|p| p.symbol == "AAPL").unwrap().qty_available, Some(d("0")));
}
