//! The ledger's tests, with plain values and real SQLite files.

use std::collections::BTreeSet;

use super::orders::{self, draw_epoch};
use super::schema::{MIGRATIONS, UNFINISHED};
use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// `state.db` in a folder not made yet (`sub/`), inside a scratch folder removed at the end.
fn temp_db(name: &str) -> crate::test_dir::TestPath {
    crate::test_dir::TestDir::new(&format!("state-{name}")).into_path("sub/state.db")
}

#[test]
fn migrates_from_empty_and_reopens_with_data() {
    let path = temp_db("reopen");
    let now = ts("2026-11-25T15:00:00Z");
    {
        let s = State::open(&path).unwrap();
        s.kv_set("mode", "paper", now).unwrap();
        s.record_day_start(jiff::civil::date(2026, 11, 25), 100_000.0, "last_equity", now).unwrap();
    }
    let s = State::open(&path).unwrap();
    assert_eq!(s.user_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.kv_get("mode").unwrap().as_deref(), Some("paper"));
    let d = s.day_start(jiff::civil::date(2026, 11, 25)).unwrap().unwrap();
    assert_eq!(d.equity, 100_000.0);
}

/// An iteration that knew nothing and did nothing, at `at`.
fn quiet_run(at: Timestamp) -> LoopRun {
    LoopRun {
        iteration: 0,
        started_at: at,
        market_time: Some(at),
        duration_ms: 3,
        equity: None,
        day_start_equity: None,
        daily_pnl_pct: None,
        halted: false,
        orders_submitted: 0,
        requests: 0,
        error: None,
    }
}

/// mom_AAPL owns 10 AAPL at 100, written straight into the table.
fn own_ten_aapl(s: &State, now: Timestamp) {
    s.conn
        .execute(
            "INSERT INTO owned_positions (bot, symbol, qty, avg_entry_price, opened_at, updated_at)
             VALUES ('mom_AAPL', 'AAPL', '10', '100', ?1, ?1)",
            [clock::db_ts(now)],
        )
        .unwrap();
}

#[test]
fn every_read_sees_the_file_as_it_is_now() {
    let path = temp_db("fresh");
    let now = ts("2026-11-25T15:00:00Z");
    let s = State::open(&path).unwrap();
    own_ten_aapl(&s, now);
    assert_eq!(s.owned_positions().unwrap()[0].qty, Dec::from_int(10));
    s.set_owned_qty("mom_AAPL", "AAPL", Dec::from_int(7), now).unwrap();
    assert_eq!(s.owned_positions().unwrap()[0].qty, Dec::from_int(7));
    // Another connection's commit (as `halt` or a second process would write) is seen by the
    // next read, without waiting for the loop to look for other writers.
    let other = Connection::open(&path).unwrap();
    other.execute("UPDATE owned_positions SET qty = '3' WHERE symbol = 'AAPL'", []).unwrap();
    assert_eq!(s.owned_positions().unwrap()[0].qty, Dec::from_int(3));
    other
        .execute(
            "INSERT INTO orders (client_order_id, bot, symbol, side, qty, order_type, status, created_at, updated_at,
                 trading_date, intent)
             VALUES ('x-1', 'mom_AAPL', 'AAPL', 'buy', '1', 'market', 'submitted', ?1, ?1, '2026-11-25', 'entry')",
            [clock::db_ts(now)],
        )
        .unwrap();
    assert_eq!(s.unfinished_orders().unwrap().len(), 1);
    assert_eq!(s.entries_on("mom_AAPL", jiff::civil::date(2026, 11, 25)).unwrap(), 1);
    other.execute("DELETE FROM owned_positions", []).unwrap();
    assert!(s.owned_positions().unwrap().is_empty());
    // The loop's look for other writers says whether one committed since the last look.
    assert!(s.notice_other_writers().unwrap());
    assert!(!s.notice_other_writers().unwrap());
    other.execute("UPDATE orders SET status = 'filled'", []).unwrap();
    assert!(s.notice_other_writers().unwrap());
    assert!(s.unfinished_orders().unwrap().is_empty());
}

/// The exits in flight are the unfinished exits, protective stops aside: the narrow read says
/// what filtering every unfinished order would.
#[test]
fn exits_in_flight_are_unfinished_exits_that_are_not_protective_stops() {
    let mut s = State::open_memory().unwrap();
    let now = ts("2026-11-25T15:00:00Z");
    let exit = s.record_order(&order("sell", "1", "exit")).unwrap();
    s.record_order(&NewOrder { rule: Some(BROKER_STOP.into()), ..order("sell", "1", "exit") }).unwrap();
    s.record_order(&NewOrder { symbol: "MSFT".into(), ..order("buy", "1", "entry") }).unwrap();
    let done = s.record_order(&NewOrder { symbol: "QQQ".into(), ..order("sell", "1", "exit") }).unwrap();
    s.apply_order_report(&done, &OrderStatus::Canceled, Some("b-1"), Dec::ZERO, None, FillTime::booked(now)).unwrap();
    let by_filter = |s: &State| -> Vec<(String, String)> {
        s.unfinished_orders()
            .unwrap()
            .into_iter()
            .filter(|o| o.intent == Intent::Exit && o.rule.as_deref() != Some(BROKER_STOP))
            .map(|o| (o.bot, o.symbol))
            .collect()
    };
    assert_eq!(s.exits_in_flight().unwrap(), vec![("mom_AAPL".to_string(), "AAPL".to_string())]);
    assert_eq!(s.exits_in_flight().unwrap(), by_filter(&s));
    s.apply_order_report(&exit, &OrderStatus::Filled, Some("b-2"), Dec::ZERO, None, FillTime::booked(now)).unwrap();
    assert!(s.exits_in_flight().unwrap().is_empty());
    assert_eq!(s.exits_in_flight().unwrap(), by_filter(&s));
}

/// A backtest's ledger keeps its answers (`core::backtest_reads`) only while nothing was
/// written: after each write of the loop's kinds every kept read answers what a plain read
/// of the same database does. A ledger on a file keeps nothing.
#[test]
fn a_backtests_kept_reads_answer_what_a_plain_read_does_after_every_write() {
    let mut s = State::open_memory().unwrap();
    assert!(State::open(&temp_db("plain")).unwrap().kept.is_none(), "a file's ledger keeps no reads");
    let now = ts("2026-11-25T15:00:00Z");
    let date = jiff::civil::date(2026, 11, 25);
    let agree = |s: &State, after: &str| {
        assert_eq!(s.owned_positions().unwrap(), s.read_owned_positions().unwrap(), "owned after {after}");
        let plain = s.read_orders(&format!("{UNFINISHED} AND ?1 = ?1"), "").unwrap();
        let ids = |v: Vec<OrderRecord>| v.into_iter().map(|o| (o.client_order_id, o.status)).collect::<Vec<_>>();
        assert_eq!(ids(s.unfinished_orders().unwrap()), ids(plain), "unfinished after {after}");
        assert_eq!(s.exits_in_flight().unwrap(), s.read_exits_in_flight().unwrap(), "exits after {after}");
        assert_eq!(
            s.bot_day("mom_AAPL", date).unwrap(),
            s.read_bot_day("mom_AAPL", date).unwrap(),
            "day after {after}"
        );
        assert_eq!(s.day_start(date).unwrap(), s.read_day_start(date).unwrap(), "day start after {after}");
    };
    agree(&s, "nothing");
    s.record_day_start(date, 1000.0, "first_seen", now).unwrap();
    agree(&s, "the day start");
    // A write to the budgets alone (a bot's day reads them with the orders).
    let budget = BudgetRow {
        trading_date: date,
        bot: "mom_AAPL".into(),
        daily_loss_limit: 50.0,
        max_open_risk: 20.0,
        max_trades: 5,
        max_positions: 2,
        realized_pnl: -7.5,
        trades: 0,
    };
    s.put_budget(&budget, now).unwrap();
    agree(&s, "a budget");
    let entry = s.record_order(&order("buy", "10", "entry")).unwrap();
    agree(&s, "an entry recorded");
    s.apply_order_report(
        &entry,
        &OrderStatus::Filled,
        Some("b-1"),
        Dec::from_int(10),
        Some(Dec::from_int(100)),
        FillTime::booked(now),
    )
    .unwrap();
    agree(&s, "its fill");
    s.record_best_price("mom_AAPL", "AAPL", 101.0, true).unwrap();
    agree(&s, "a best price");
    let exit = s.record_order(&order("sell", "10", "exit")).unwrap();
    agree(&s, "an exit recorded");
    s.apply_order_report(
        &exit,
        &OrderStatus::Filled,
        Some("b-2"),
        Dec::from_int(10),
        Some(Dec::from_int(90)),
        FillTime::booked(now),
    )
    .unwrap();
    agree(&s, "its fill at a loss");
    assert_eq!(s.bot_day("mom_AAPL", date).unwrap(), BotDay { realized_pnl: -107.5, entries: 1 });
    assert!(s.owned_positions().unwrap().is_empty());
}

#[test]
fn only_a_better_price_moves_the_best_price_of_a_long_or_a_short() {
    let now = ts("2026-11-25T15:00:00Z");
    let s = State::open_memory().unwrap();
    own_ten_aapl(&s, now);
    s.conn
        .execute(
            "INSERT INTO owned_positions (bot, symbol, qty, avg_entry_price, opened_at, high_water, updated_at)
             VALUES ('mom_MSFT', 'MSFT', '-4', '300', ?1, 310.0, ?1)",
            [clock::db_ts(now)],
        )
        .unwrap();
    let best = |symbol: &str| s.owned_positions().unwrap().iter().find(|p| p.symbol == symbol).unwrap().high_water;
    assert_eq!(best("AAPL"), None);
    for (price, seen) in [(101.0, 101.0), (100.5, 101.0), (0.1 + 0.2 + 101.0, 0.1 + 0.2 + 101.0)] {
        s.record_best_price("mom_AAPL", "AAPL", price, true).unwrap();
        assert_eq!(best("AAPL"), Some(seen), "long at {price}");
    }
    for (price, seen) in [(305.0, 305.0), (306.0, 305.0), (299.125, 299.125)] {
        s.record_best_price("mom_MSFT", "MSFT", price, false).unwrap();
        assert_eq!(best("MSFT"), Some(seen), "short at {price}");
    }
    assert_eq!(best("AAPL"), Some(0.1 + 0.2 + 101.0), "one position's price leaves the other's");
}

#[test]
fn day_start_is_never_replaced_within_the_day() {
    let path = temp_db("daystart");
    let s = State::open(&path).unwrap();
    let date = jiff::civil::date(2026, 11, 25);
    let now = ts("2026-11-25T15:00:00Z");
    s.record_day_start(date, 500.0, "first_seen", now).unwrap();
    // A small account (the Python daemon reset below $1,000) keeps its reference.
    let d = s.record_day_start(date, 900.0, "first_seen", now).unwrap();
    assert_eq!(d.equity, 500.0);
}

#[test]
fn halts_set_extend_and_clear() {
    let path = temp_db("halts");
    let s = State::open(&path).unwrap();
    let h = Halt {
        reason: HaltReason::ApiFailures,
        detail: "5 failures".into(),
        since: ts("2026-11-25T15:00:00Z"),
        until: Some(ts("2026-11-25T21:30:00Z")),
    };
    assert!(s.set_halt(&h).unwrap());
    let later = Halt {
        until: Some(ts("2026-11-25T22:00:00Z")),
        detail: "6 failures".into(),
        since: ts("2026-11-25T15:05:00Z"),
        ..h.clone()
    };
    assert!(!s.set_halt(&later).unwrap());
    let earlier = Halt { until: Some(ts("2026-11-25T16:00:00Z")), ..h.clone() };
    assert!(!s.set_halt(&earlier).unwrap());
    let active = s.active_halts().unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].since, h.since, "since is kept");
    assert_eq!(active[0].until, Some(ts("2026-11-25T22:00:00Z")), "until is never shortened");
    assert!(s.clear_halt(HaltReason::ApiFailures, "auto", ts("2026-11-25T22:00:00Z")).unwrap());
    assert!(s.active_halts().unwrap().is_empty());
    assert!(!s.clear_halt(HaltReason::ApiFailures, "auto", ts("2026-11-25T22:00:00Z")).unwrap());
    // A new halt of the same reason can be set again after clearing.
    assert!(s.set_halt(&h).unwrap());
}

fn order(side: &str, qty: &str, intent: &str) -> NewOrder {
    NewOrder {
        ref_price: None,
        bot: "mom_AAPL".into(),
        symbol: "AAPL".into(),
        side: Side::parse(side).unwrap(),
        qty: Some(qty.into()),
        notional: None,
        order_type: OrderType::Market,
        limit_price: None,
        stop_price: None,
        intent: Intent::parse(intent).unwrap(),
        rule: None,
        created_at: ts("2026-11-25T15:00:00Z"),
        trading_date: jiff::civil::date(2026, 11, 25),
        legs: Vec::new(),
    }
}

#[test]
fn client_order_ids_carry_the_bot_the_date_a_random_epoch_and_a_counter_that_only_grows() {
    let path = temp_db("orders");
    let mut s = State::open(&path).unwrap();
    let date = jiff::civil::date(2026, 11, 25);
    let first = s.record_order(&order("buy", "3", "entry")).unwrap();
    let id = ClientOrderId::parse(&first).unwrap();
    assert_eq!((id.bot.as_str(), id.date, id.n), ("mom_AAPL", date, 1), "{first}");
    assert_eq!(first, format!("th-mom_AAPL-20261125-{}-1", id.epoch));
    // Another bot's order takes the next number: one counter per ledger.
    let other = s.record_order(&NewOrder { bot: "mom-QQQ".into(), ..order("buy", "1", "entry") }).unwrap();
    assert_eq!(ClientOrderId::parse(&other).unwrap(), ClientOrderId { bot: "mom-QQQ".into(), n: 2, ..id.clone() });
    // Deleting rows (a ledger that lost its last transactions) never lowers the counter.
    s.conn.execute("DELETE FROM orders", []).unwrap();
    let third = s.record_order(&order("buy", "1", "entry")).unwrap();
    assert_eq!(ClientOrderId::parse(&third).unwrap().n, 3);
    let epochs: i64 = s.conn.query_row("SELECT count(*) FROM id_epochs", [], |r| r.get(0)).unwrap();
    assert_eq!(epochs, 1, "one epoch per process, recorded with its first order");
    assert!(
        s.update_order_status(
            &third,
            &RecordStatus::Broker(OrderStatus::Accepted),
            Some("b-1"),
            ts("2026-11-25T15:00:01Z")
        )
        .unwrap()
    );
    let back = s.order(&third).unwrap().unwrap();
    assert_eq!(back.status.as_str(), "accepted");
    assert_eq!(back.broker_order_id.as_deref(), Some("b-1"));
    assert_eq!(back.qty.as_deref(), Some("1"));
    assert_eq!(s.unfinished_orders().unwrap().len(), 1);
    assert_eq!(s.entries_on("mom_AAPL", date).unwrap(), 1);
    // A restart of the daemon on the same ledger draws a new epoch; the counter goes on.
    drop(s);
    let mut s = State::open(&path).unwrap();
    let after = ClientOrderId::parse(&s.record_order(&order("buy", "1", "entry")).unwrap()).unwrap();
    assert_ne!(after.epoch, id.epoch);
    assert_eq!(after.n, 4);
}

#[test]
fn two_new_ledgers_never_issue_the_same_id() {
    let mut seen = BTreeSet::new();
    for k in 0..20 {
        let path = temp_db(&format!("fresh-{k}"));
        let mut s = State::open(&path).unwrap();
        let id = s.record_order(&order("buy", "1", "entry")).unwrap();
        assert!(id.ends_with("-1"), "{id}");
        assert!(seen.insert(id.clone()), "{id} issued twice by two new ledgers");
    }
}

#[test]
fn client_order_ids_parse_back_and_other_formats_do_not() {
    let id =
        ClientOrderId { bot: "a-b_c".into(), date: jiff::civil::date(2026, 1, 2), epoch: "0a1b2c3d".into(), n: 77 };
    assert_eq!(id.text(), "th-a-b_c-20260102-0a1b2c3d-77");
    assert_eq!(ClientOrderId::parse(&id.text()), Some(id));
    assert!(ClientOrderId::parse("th-mom_AAPL-20261125-1").is_none(), "the format before migration 9");
    assert!(ClientOrderId::parse("th-mom_AAPL-20261125-ABCDEFGH-1").is_none());
    assert!(ClientOrderId::parse("sim-close-3").is_none());
    let longest =
        ClientOrderId { bot: "b".repeat(32), n: u64::MAX, ..ClientOrderId::parse("th-x-20260102-0a1b2c3d-1").unwrap() };
    assert!(longest.text().len() <= 128, "Alpaca's limit");
}

#[test]
fn a_derived_id_is_the_same_for_the_same_exit_and_never_a_drawn_one() {
    let date = jiff::civil::date(2026, 11, 25);
    let key = "crypto_core|BTC/USD|sell|0.000829|BTC/USD:0.000829:2026-11-25T15:30:00Z";
    let a = ClientOrderId::derived("crypto_core", date, key, 1);
    // Fixed across processes and builds: the hash is FNV-1a, not std's seeded one.
    assert_eq!(a, ClientOrderId::derived("crypto_core", date, key, 1));
    assert_eq!(ClientOrderId::parse(&a.text()), Some(a.clone()));
    assert!(a.is_derived() && a.epoch.len() == 8, "{}", a.text());
    assert_ne!(a.epoch, ClientOrderId::derived("crypto_core", date, &format!("{key}x"), 1).epoch);
    assert_eq!(ClientOrderId::derived("crypto_core", date, key, 2).n, 2);
    for k in 0..2000 {
        let drawn = draw_epoch(Timestamp::from_second(k).unwrap());
        assert!(!drawn.starts_with('x') && drawn.len() == 8, "{drawn}");
    }
}

#[test]
fn position_rules_round_trip_and_the_last_entry_wins() {
    let path = temp_db("rules");
    let s = State::open(&path).unwrap();
    let now = ts("2026-11-25T15:00:00Z");
    assert_eq!(s.position_rules("mom_AAPL", "AAPL").unwrap(), None);
    let mut r = PositionRules {
        kind: BotKind::Momentum,
        exits: Exits {
            stop_loss_pct: 0.75,
            take_profit_pct: 1.5,
            time_stop_minutes: Some(240),
            flatten_before_close_minutes: None,
            trailing_stop_pct: Some(0.4),
            broker_stop: false,
            broker_stop_pct: None,
        },
        manage_until: Some(HhMm::parse("15:50").unwrap()),
        exit_days_before_expiry: None,
    };
    s.put_position_rules("mom_AAPL", "AAPL", &r, now).unwrap();
    assert_eq!(s.position_rules("mom_AAPL", "AAPL").unwrap().as_ref(), Some(&r));
    r.exits.stop_loss_pct = 2.0;
    r.manage_until = None;
    s.put_position_rules("mom_AAPL", "AAPL", &r, now).unwrap();
    assert_eq!(s.position_rules("mom_AAPL", "AAPL").unwrap(), Some(r));
    assert_eq!(s.position_rules("mom_AAPL", "MSFT").unwrap(), None);
}

#[test]
fn an_order_sent_unrecorded_is_recorded_once_under_its_own_id() {
    let path = temp_db("record-as");
    let mut s = State::open(&path).unwrap();
    let id = ClientOrderId::derived("mom_AAPL", jiff::civil::date(2026, 11, 25), "k", 1).text();
    assert!(s.record_order_as(&id, &order("sell", "3", "exit")).unwrap());
    assert!(!s.record_order_as(&id, &order("sell", "3", "exit")).unwrap(), "a second flush is harmless");
    let back = s.order(&id).unwrap().unwrap();
    assert_eq!((back.qty.as_deref(), back.intent, back.status.as_str()), (Some("3"), Intent::Exit, "recorded"));
    // The counter was not touched: the next numbered order is still the first.
    assert_eq!(ClientOrderId::parse(&s.record_order(&order("buy", "1", "entry")).unwrap()).unwrap().n, 1);
}

#[test]
fn the_record_is_committed_before_record_order_returns_and_the_everyday_level_is_restored() {
    let path = temp_db("durable");
    let mut s = State::open(&path).unwrap();
    let id = s.record_order(&order("buy", "1", "entry")).unwrap();
    // Another connection (another process, or the same file after a crash) sees it.
    let other = Connection::open(&path).unwrap();
    let n: i64 =
        other.query_row("SELECT count(*) FROM orders WHERE client_order_id = ?1", [&id], |r| r.get(0)).unwrap();
    assert_eq!(n, 1);
    let level: i64 = s.conn.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap();
    assert_eq!(level, 1, "NORMAL again after the FULL commit");
}

#[test]
fn a_new_file_opened_by_many_processes_at_once_is_migrated_once() {
    let path = temp_db("race");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let path = path.to_path_buf();
            std::thread::spawn(move || State::open(&path).map(drop).map_err(|e| e.to_string()))
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    assert_eq!(State::open(&path).unwrap().user_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn open_existing_creates_nothing() {
    let path = temp_db("existing");
    match State::open_existing(&path) {
        Err(StateError::Missing { path: p }) => assert!(p.is_absolute(), "{p:?}"),
        Err(e) => panic!("expected Missing, got {e}"),
        Ok(_) => panic!("expected Missing, got a ledger"),
    }
    assert!(!path.parent().unwrap().exists(), "not even the folder");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(State::open_existing(&path), Err(StateError::Missing { .. })), "an empty file is no ledger");
    std::fs::remove_file(&path).unwrap();
    drop(State::open(&path).unwrap());
    assert!(State::open_existing(&path).is_ok());
}

#[test]
fn a_fill_without_a_price_is_not_booked_and_the_order_stays_unfinished() {
    let path = temp_db("unpriced");
    let mut s = State::open(&path).unwrap();
    let now = ts("2026-11-25T15:00:00Z");
    let d = |t: &str| t.parse::<Dec>().unwrap();
    let e = s.record_order(&order("buy", "10", "entry")).unwrap();
    assert!(
        s.apply_order_report(&e, &OrderStatus::Filled, Some("b1"), d("10"), None, FillTime::booked(now))
            .unwrap()
            .is_none()
    );
    assert!(s.owned_positions().unwrap().is_empty(), "nothing booked at no price");
    let rec = s.order(&e).unwrap().unwrap();
    assert_eq!((rec.status.as_str(), rec.filled_qty), ("recorded", Dec::ZERO));
    assert_eq!(rec.broker_order_id.as_deref(), Some("b1"));
    assert_eq!(s.unfinished_orders().unwrap().len(), 1, "read again next iteration");
    // Once the price comes, the fill is booked, once.
    let delta = s
        .apply_order_report(&e, &OrderStatus::Filled, Some("b1"), d("10"), Some(d("101")), FillTime::booked(now))
        .unwrap()
        .unwrap();
    assert_eq!((delta.qty, delta.price), (d("10"), d("101")));
    assert!(
        s.apply_order_report(&e, &OrderStatus::Filled, Some("b1"), d("10"), Some(d("101")), FillTime::booked(now))
            .unwrap()
            .is_none()
    );
    assert_eq!(s.owned_positions().unwrap()[0].avg_entry_price, d("101"));
}

/// The cooldown's clock: the newest exit of the bot and symbol that filled; an exit that
/// filled nothing, or another symbol's, does not count.
#[test]
fn the_last_exit_is_the_newest_that_filled_of_that_bot_and_symbol() {
    let path = temp_db("last-exit");
    let mut s = State::open(&path).unwrap();
    let d = |t: &str| t.parse::<Dec>().unwrap();
    let e = s.record_order(&order("buy", "10", "entry")).unwrap();
    s.apply_order_report(
        &e,
        &OrderStatus::Filled,
        Some("b1"),
        d("10"),
        Some(d("100")),
        FillTime::booked(ts("2026-11-25T15:00:00Z")),
    )
    .unwrap();
    assert_eq!(s.last_exit("mom_AAPL", "AAPL").unwrap(), None);
    for (n, (qty, at)) in [("4", "2026-11-25T15:10:00Z"), ("6", "2026-11-25T15:30:00Z")].into_iter().enumerate() {
        let x = s.record_order(&order("sell", qty, "exit")).unwrap();
        let id = format!("b{}", n + 2);
        s.apply_order_report(&x, &OrderStatus::Filled, Some(&id), d(qty), Some(d("101")), FillTime::booked(ts(at)))
            .unwrap();
    }
    let unfilled = s.record_order(&order("sell", "1", "exit")).unwrap();
    s.apply_order_report(
        &unfilled,
        &OrderStatus::Canceled,
        Some("b9"),
        d("0"),
        None,
        FillTime::booked(ts("2026-11-25T15:40:00Z")),
    )
    .unwrap();
    let other = s.record_order(&NewOrder { symbol: "MSFT".into(), ..order("sell", "1", "exit") }).unwrap();
    s.apply_order_report(
        &other,
        &OrderStatus::Filled,
        Some("b8"),
        d("1"),
        Some(d("300")),
        FillTime::booked(ts("2026-11-25T15:50:00Z")),
    )
    .unwrap();
    assert_eq!(s.last_exit("mom_AAPL", "AAPL").unwrap(), Some(ts("2026-11-25T15:30:00Z")));
    assert_eq!(s.last_exit("mom_AAPL", "MSFT").unwrap(), Some(ts("2026-11-25T15:50:00Z")));
    assert_eq!(s.last_exit("mom_MSFT", "AAPL").unwrap(), None);
}

#[test]
fn a_leg_fill_without_a_price_waits_and_nothing_is_booked_at_zero() {
    let path = temp_db("unpriced-legs");
    let mut s = State::open(&path).unwrap();
    let now = ts("2026-11-25T15:00:00Z");
    let d = |t: &str| t.parse::<Dec>().unwrap();
    let leg =
        |symbol: &str, intent: &str| LegRecord { symbol: symbol.into(), ratio: 1, position_intent: intent.into() };
    let spread = NewOrder {
        ref_price: None,
        symbol: "SPY".into(),
        side: Side::Sell,
        qty: Some("1".into()),
        legs: vec![leg("SPY261218P00480000", "sell_to_open"), leg("SPY261218P00475000", "buy_to_open")],
        ..order("sell", "1", "entry")
    };
    let id = s.record_order(&spread).unwrap();
    let reports = |short: Option<&str>, long: Option<&str>| {
        vec![
            ("SPY261218P00480000".to_string(), d("1"), short.map(d)),
            ("SPY261218P00475000".to_string(), d("1"), long.map(d)),
        ]
    };
    let booked = s
        .apply_leg_reports(
            &id,
            &OrderStatus::Filled,
            Some("b"),
            d("1"),
            &reports(Some("2.10"), None),
            FillTime::booked(now),
        )
        .unwrap();
    assert_eq!(booked.fills.len(), 1, "the priced leg is booked: {booked:?}");
    assert!(!booked.settled);
    assert_eq!(s.order(&id).unwrap().unwrap().status.as_str(), "recorded", "kept unfinished for the other leg");
    // An answer that leaves the legs out books nothing and finishes nothing.
    let booked = s.apply_leg_reports(&id, &OrderStatus::Filled, Some("b"), d("1"), &[], FillTime::booked(now)).unwrap();
    assert!(booked.fills.is_empty() && !booked.settled);
    assert_eq!(s.order(&id).unwrap().unwrap().status.as_str(), "recorded");
    let booked = s
        .apply_leg_reports(
            &id,
            &OrderStatus::Filled,
            Some("b"),
            d("1"),
            &reports(Some("2.10"), Some("1.60")),
            FillTime::booked(now),
        )
        .unwrap();
    assert_eq!(
        booked.fills.iter().map(|f| (f.symbol.as_str(), f.price)).collect::<Vec<_>>(),
        vec![("SPY261218P00475000", d("1.60"))]
    );
    assert!(booked.settled);
    assert_eq!(s.order(&id).unwrap().unwrap().status.as_str(), "filled");
    let owned = s.owned_positions().unwrap();
    assert!(owned.iter().all(|p| !p.avg_entry_price.is_zero()), "{owned:?}");
    assert_eq!(owned.len(), 2);
}

#[test]
fn a_spread_reported_filled_is_final_only_when_its_legs_carry_the_fill() {
    let path = temp_db("legs-behind");
    let mut s = State::open(&path).unwrap();
    let now = ts("2026-11-25T15:00:00Z");
    let d = |t: &str| t.parse::<Dec>().unwrap();
    let leg = |symbol: &str, ratio: u32, intent: &str| LegRecord {
        symbol: symbol.into(),
        ratio,
        position_intent: intent.into(),
    };
    // Two spreads of a 1x2 ratio: the short leg carries 2 contracts a unit, the long one 4.
    let spread = NewOrder {
        ref_price: None,
        symbol: "SPY".into(),
        side: Side::Sell,
        qty: Some("2".into()),
        legs: vec![leg("SPY261218P00480000", 1, "sell_to_open"), leg("SPY261218P00475000", 2, "buy_to_open")],
        ..order("sell", "2", "entry")
    };
    let id = s.record_order(&spread).unwrap();
    let report = |short: &str, long: &str, long_price: Option<&str>| {
        vec![
            ("SPY261218P00480000".to_string(), d(short), (short != "0").then(|| d("2.10"))),
            ("SPY261218P00475000".to_string(), d(long), long_price.map(d)),
        ]
    };
    // The parent says filled while its legs still show nothing: nothing booked, not final.
    let booked = s
        .apply_leg_reports(&id, &OrderStatus::Filled, Some("b"), d("2"), &report("0", "0", None), FillTime::booked(now))
        .unwrap();
    assert!(booked.fills.is_empty() && !booked.settled, "{booked:?}");
    assert_eq!(s.order(&id).unwrap().unwrap().status.as_str(), "recorded");
    // Still not final when the parent's count is missing: `filled` means every unit ordered.
    let booked = s
        .apply_leg_reports(
            &id,
            &OrderStatus::Filled,
            Some("b"),
            d("0"),
            &report("2", "2", Some("1.60")),
            FillTime::booked(now),
        )
        .unwrap();
    assert_eq!(booked.fills.len(), 2);
    assert!(!booked.settled, "the long leg carries 2 of its 4");
    assert_eq!(s.order(&id).unwrap().unwrap().status.as_str(), "recorded");
    let booked = s
        .apply_leg_reports(
            &id,
            &OrderStatus::Filled,
            Some("b"),
            d("2"),
            &report("2", "4", Some("1.60")),
            FillTime::booked(now),
        )
        .unwrap();
    assert_eq!(booked.fills.iter().map(|f| f.qty).collect::<Vec<_>>(), vec![d("2")]);
    assert!(booked.settled);
    assert_eq!(s.order(&id).unwrap().unwrap().status.as_str(), "filled");
    let mut owned: Vec<(String, Dec)> =
        s.owned_positions().unwrap().iter().map(|p| (p.symbol.clone(), p.qty)).collect();
    owned.sort();
    assert_eq!(owned, vec![("SPY261218P00475000".into(), d("4")), ("SPY261218P00480000".into(), d("-2"))]);
    // A spread cancelled unfilled is final at once.
    let none = s.record_order(&spread).unwrap();
    let booked = s
        .apply_leg_reports(
            &none,
            &OrderStatus::Canceled,
            Some("c"),
            d("0"),
            &report("0", "0", None),
            FillTime::booked(now),
        )
        .unwrap();
    assert!(booked.fills.is_empty() && booked.settled);
    assert_eq!(s.order(&none).unwrap().unwrap().status.as_str(), "canceled");
}

#[test]
fn fills_move_owned_positions_once_and_realise_pnl() {
    let path = temp_db("fills");
    let mut s = State::open(&path).unwrap();
    let now = ts("2026-11-25T15:00:00Z");
    let d = |t: &str| t.parse::<Dec>().unwrap();
    let e1 = s.record_order(&order("buy", "10", "entry")).unwrap();
    // A partial fill, then the full fill, then the same report again.
    let delta = s
        .apply_order_report(
            &e1,
            &OrderStatus::PartiallyFilled,
            Some("b1"),
            d("4"),
            Some(d("100")),
            FillTime::booked(now),
        )
        .unwrap();
    assert_eq!(delta.unwrap().qty, d("4"));
    s.apply_order_report(&e1, &OrderStatus::Filled, Some("b1"), d("10"), Some(d("101.2")), FillTime::booked(now))
        .unwrap();
    assert!(
        s.apply_order_report(&e1, &OrderStatus::Filled, Some("b1"), d("10"), Some(d("101.2")), FillTime::booked(now))
            .unwrap()
            .is_none()
    );
    let owned = s.owned_positions().unwrap();
    assert_eq!(owned[0].qty, d("10"));
    assert_eq!(owned[0].avg_entry_price, d("100.72"));
    assert!(s.unfinished_orders().unwrap().is_empty());
    // Sell 10 at 102: +12.8 realised, the position closes.
    let x1 = s.record_order(&order("sell", "10", "exit")).unwrap();
    let delta = s
        .apply_order_report(&x1, &OrderStatus::Filled, Some("b2"), d("10"), Some(d("102")), FillTime::booked(now))
        .unwrap()
        .unwrap();
    assert_eq!(delta.realized_pnl, d("12.8"), "exactly, not 12.800000000000011");
    assert!(s.owned_positions().unwrap().is_empty());
    let budgets = s.budgets(jiff::civil::date(2026, 11, 25)).unwrap().to_vec();
    assert_eq!(budgets[0].realized_pnl, 12.8, "the stored sum reads back without float noise");
}

#[test]
fn an_exit_never_flips_a_position_into_a_short() {
    let path = temp_db("flip");
    let mut s = State::open(&path).unwrap();
    let now = ts("2026-11-25T15:00:00Z");
    let d = |t: &str| t.parse::<Dec>().unwrap();
    let e = s.record_order(&order("buy", "1", "entry")).unwrap();
    s.apply_order_report(&e, &OrderStatus::Filled, None, d("1"), Some(d("50")), FillTime::booked(now)).unwrap();
    // Reconciliation capped it meanwhile, or the exit over-filled: either way, closed at zero.
    let x = s.record_order(&order("sell", "5", "exit")).unwrap();
    s.apply_order_report(&x, &OrderStatus::Filled, None, d("5"), Some(d("50")), FillTime::booked(now)).unwrap();
    assert!(s.owned_positions().unwrap().is_empty());
    let y = s.record_order(&order("sell", "3", "exit")).unwrap();
    s.apply_order_report(&y, &OrderStatus::Filled, None, d("3"), Some(d("50")), FillTime::booked(now)).unwrap();
    assert!(s.owned_positions().unwrap().is_empty(), "no short booked from an exit");
    // An entry that sells (an allowed short) does open a short.
    let z = s.record_order(&order("sell", "2", "entry")).unwrap();
    s.apply_order_report(&z, &OrderStatus::Filled, None, d("2"), Some(d("50")), FillTime::booked(now)).unwrap();
    assert_eq!(s.owned_positions().unwrap()[0].qty, d("-2"));
}

#[test]
fn the_best_price_since_entry_survives_a_restart_and_never_worsens() {
    let path = temp_db("best");
    let now = ts("2026-11-25T15:00:00Z");
    let d = |t: &str| t.parse::<Dec>().unwrap();
    {
        let mut s = State::open(&path).unwrap();
        let e = s.record_order(&order("buy", "10", "entry")).unwrap();
        s.apply_order_report(&e, &OrderStatus::Filled, None, d("10"), Some(d("100")), FillTime::booked(now)).unwrap();
        s.record_best_price("mom_AAPL", "AAPL", 101.5, true).unwrap();
        s.record_best_price("mom_AAPL", "AAPL", 100.7, true).unwrap();
    }
    let s = State::open(&path).unwrap();
    assert_eq!(s.owned_positions().unwrap()[0].high_water, Some(101.5), "a trailing stop's mark outlives a restart");
    // For a short the best price is the lowest.
    s.record_best_price("mom_AAPL", "AAPL", 99.0, false).unwrap();
    assert_eq!(s.owned_positions().unwrap()[0].high_water, Some(99.0));
}

#[test]
fn the_final_statuses_in_sql_are_exactly_the_records_final_ones() {
    let every = [
        "recorded",
        "unknown",
        "rejected",
        "abandoned",
        "conflict",
        "new",
        "accepted",
        "pending_new",
        "accepted_for_bidding",
        "partially_filled",
        "filled",
        "done_for_day",
        "canceled",
        "expired",
        "replaced",
        "pending_cancel",
        "pending_replace",
        "stopped",
        "suspended",
        "calculated",
        "held",
        "pending_review",
    ];
    for text in every {
        assert_eq!(RecordStatus::parse(text).is_final(), FINAL_ORDER_STATUSES.contains(&text), "{text}");
    }
    assert!(FINAL_ORDER_STATUSES.iter().all(|t| every.contains(t)));
}

#[test]
fn writing_an_order_builds_no_temporary_table() {
    let path = temp_db("ephemeral");
    let s = State::open(&path).unwrap();
    for q in [
        "UPDATE orders SET status = ?2, broker_order_id = coalesce(?3, broker_order_id), filled_qty = ?4,
             updated_at = ?5 WHERE client_order_id = ?1",
        "DELETE FROM orders WHERE client_order_id = ?1",
    ] {
        let n = q.matches('?').count();
        let mut stmt = s.conn.prepare(&format!("EXPLAIN {q}")).unwrap();
        let ops: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(std::iter::repeat_n(rusqlite::types::Null, n)), |r| r.get(1))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(!ops.iter().any(|o| o == "OpenEphemeral"), "{q}: {ops:?}");
    }
}

#[test]
fn unfinished_orders_are_found_by_their_index() {
    let path = temp_db("plan");
    let s = State::open(&path).unwrap();
    let words: Vec<String> = UNFINISHED.split_whitespace().map(String::from).collect();
    let finals: Vec<String> = FINAL_ORDER_STATUSES.iter().map(|s| format!("'{s}'")).collect();
    let expected: Vec<String> =
        finals.iter().flat_map(|f| ["status".into(), "<>".into(), f.clone(), "AND".into()]).collect();
    assert_eq!(words, expected[..expected.len() - 1], "UNFINISHED and FINAL_ORDER_STATUSES drifted apart");
    let index = MIGRATIONS.iter().rev().find(|m| m.contains("CREATE INDEX orders_unfinished")).unwrap();
    assert!(index.contains(UNFINISHED), "the index and the query drifted apart");
    let plan =
        query_plan(&s, &format!("SELECT client_order_id FROM orders WHERE {UNFINISHED} ORDER BY created_at"), &[]);
    assert!(plan.iter().any(|p| p.contains("orders_unfinished")), "{plan:?}");
}

/// SQLite's plan for `query` with `args` bound: one line per step (`SCAN orders`, `SEARCH orders
/// USING INDEX …`).
fn query_plan(s: &State, query: &str, args: &[&str]) -> Vec<String> {
    s.conn
        .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
        .unwrap()
        .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The reads that run with every check for lost orders and every day's report find their rows
/// by index, not by a scan of every order ever sent (which grew with the ledger: a fifth of a
/// year's backtest before schema 18).
#[test]
fn the_newest_order_and_a_days_exits_are_found_by_index() {
    let path = temp_db("plan18");
    let s = State::open(&path).unwrap();
    let plan = |q: &str, args: &[&str]| query_plan(&s, q, args);
    let newest = plan(orders::NEWEST_ORDER, &[]);
    assert!(newest.iter().any(|p| p.contains("orders_by_created")), "{newest:?}");
    let exits = plan(orders::EXITS_ON, &["mom_AAPL", "2026-11-25T05:00:00Z", "2026-11-26T05:00:00Z"]);
    assert!(exits.iter().any(|p| p.contains("orders_filled_exits")), "{exits:?}");
    assert!(!exits.iter().chain(&newest).any(|p| p.starts_with("SCAN orders")), "{exits:?} {newest:?}");
    // And the exits in flight, read every minute, still by the index of the unfinished orders
    // (an index of every exit was taken for them instead, a scan of every exit a minute).
    let in_flight = plan(&orders::exits_in_flight_query(), &[]);
    assert!(in_flight.iter().any(|p| p.contains("orders_unfinished")), "{in_flight:?}");
}

#[test]
fn budgets_round_trip_per_date() {
    let path = temp_db("budgets");
    let s = State::open(&path).unwrap();
    let date = jiff::civil::date(2026, 11, 25);
    let b = BudgetRow {
        trading_date: date,
        bot: "mom_AAPL".into(),
        daily_loss_limit: 250.0,
        max_open_risk: 500.0,
        max_trades: 3,
        max_positions: 1,
        realized_pnl: -12.5,
        trades: 1,
    };
    s.put_budget(&b, ts("2026-11-25T15:00:00Z")).unwrap();
    assert_eq!(s.budgets(date).unwrap().to_vec(), vec![b]);
    assert!(s.budgets(jiff::civil::date(2026, 11, 26)).unwrap().is_empty());
}

#[test]
fn loop_runs_are_pruned() {
    let path = temp_db("prune");
    let s = State::open(&path).unwrap();
    let run = quiet_run(ts("2026-11-25T15:00:00Z"));
    s.conn.execute_batch("BEGIN").unwrap();
    for i in 0..(LOOP_RUNS_KEPT as u64 + 2000) {
        s.insert_loop_run(&LoopRun { iteration: i, ..run.clone() }).unwrap();
    }
    s.conn.execute_batch("COMMIT").unwrap();
    assert_eq!(s.loop_run_count().unwrap(), LOOP_RUNS_KEPT);
    assert_eq!(s.last_loop_run().unwrap().unwrap().iteration, LOOP_RUNS_KEPT as u64 + 1999);
}

/// What only `status` reads is written to a file, and not to a backtest's ledger in memory.
#[test]
fn a_ledger_in_memory_keeps_no_loop_runs_or_bot_activity() {
    let at = ts("2026-11-25T15:00:00Z");
    let idle = Idle::new(crate::core::idle::Cause::NoSignal, "no signal");
    let file = State::open(&temp_db("for-status")).unwrap();
    let memory = State::open_memory().unwrap();
    for s in [&file, &memory] {
        s.insert_loop_run(&quiet_run(at)).unwrap();
        s.put_bot_activity("mom_AAPL", Some(&idle), at, at).unwrap();
    }
    assert_eq!((file.loop_run_count().unwrap(), file.bot_activity().unwrap().len()), (1, 1));
    assert_eq!((memory.loop_run_count().unwrap(), memory.bot_activity().unwrap().len()), (0, 0));
    assert_eq!((file.keeps_status_rows(), memory.keeps_status_rows()), (true, false), "and says so");
    // Its pages are small (each changed page is copied whole into the journal); the file's
    // are SQLite's default.
    let page = |s: &State| s.conn.row("PRAGMA page_size", [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!((page(&file), page(&memory)), (4096, 1024));
}

#[test]
fn garbage_file_is_refused_and_left_untouched() {
    let path = temp_db("garbage");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let junk = b"this is not a database, it is a grocery list\n".repeat(100);
    std::fs::write(&path, &junk).unwrap();
    assert!(matches!(State::open(&path), Err(StateError::NotADatabase { .. })));
    assert!(matches!(State::open_read_only(&path), Err(StateError::NotADatabase { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), junk);
    assert!(!path.with_extension("db-wal").exists());
}

#[test]
fn newer_schema_is_refused() {
    let path = temp_db("newer");
    drop(State::open(&path).unwrap());
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(State::open(&path), Err(StateError::TooNew { .. })));
    assert!(matches!(State::open_read_only(&path), Err(StateError::TooNew { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn another_programs_database_is_refused() {
    let path = temp_db("foreign");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE recipes (name TEXT)").unwrap();
    }
    assert!(matches!(State::open(&path), Err(StateError::ForeignDatabase { .. })));
}

#[test]
fn read_only_needs_an_existing_file_and_cannot_write() {
    let path = temp_db("ro");
    assert!(matches!(State::open_read_only(&path), Err(StateError::Missing { .. })));
    assert!(!path.exists());
    drop(State::open(&path).unwrap());
    let ro = State::open_read_only(&path).unwrap();
    assert!(ro.kv_set("x", "y", ts("2026-11-25T15:00:00Z")).is_err());
}

#[test]
fn a_ledger_this_user_may_not_read_names_the_real_fix() {
    let denied = StateError::Inspect {
        path: PathBuf::from("/var/lib/trading-hydra/state/trading_state.db"),
        error: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
    };
    let text = denied.to_string();
    assert!(text.contains("sudo -u trading-hydra") && !text.contains("--config"), "{text}");
    let other =
        StateError::Inspect { path: PathBuf::from("x"), error: std::io::Error::from(std::io::ErrorKind::Other) };
    assert!(!other.to_string().contains("sudo"));
}
