//! The shipped bots end to end against the loopback fake of Alpaca: a rising market in which each
//! bot opens exactly the position it should, then a falling one in which each closes by its stop —
//! asserting on the exact order bodies the fake received, and checking every request against
//! Alpaca's OpenAPI documents.

mod support;

use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Value, json};
use support::fake_alpaca::{FakeAlpaca, Market};
use trading_hydra::core::clock::ManualClock;
use trading_hydra::core::config::Config;
use trading_hydra::core::state::State;
use trading_hydra::orchestrator::Orchestrator;

/// Wednesday 2026-11-25, 10:30 New York.
const NOW: &str = "2026-11-25T15:30:00Z";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// 55 one-minute bars ending the minute before NOW: flat, then climbing, the last on heavy volume.
fn rising(start: f64, step: f64, volume: f64) -> Vec<Value> {
    rising_at(NOW, start, step, volume)
}

/// The same, ending the minute before `now`.
fn rising_at(now: &str, start: f64, step: f64, volume: f64) -> Vec<Value> {
    let end = ts(now).as_second() - 60;
    (0..55)
        .map(|i| {
            let c = if i < 40 { start } else { start + (i - 39) as f64 * step };
            let t = Timestamp::from_second(end - (54 - i) * 60).unwrap();
            let v = if i == 54 { volume * 3.0 } else { volume };
            json!({"t": t.to_string(), "o": c, "h": c + step / 4.0, "l": c - step / 4.0, "c": c, "v": v, "n": 10, "vw": c})
        })
        .collect()
}

fn quote(bid: f64, ask: f64) -> Value {
    quote_at(NOW, bid, ask)
}

fn quote_at(t: &str, bid: f64, ask: f64) -> Value {
    json!({"t": t, "bp": bid, "bs": 3, "ap": ask, "as": 3, "ax": "V", "bx": "V", "c": ["R"], "z": "C"})
}

/// SPY puts expiring 2026-12-11, deltas falling away from the money: the rules pick 470/465.
fn spy_chain(market: &mut Market, short_mid: f64, long_mid: f64) {
    for (k, delta) in [(475, 0.45), (470, 0.35), (465, 0.25), (460, 0.18)] {
        let symbol = format!("SPY261211P00{k}000");
        let mid = match k {
            470 => short_mid,
            465 => long_mid,
            _ => delta * 5.0,
        };
        market.contracts.push(json!({
            "id": symbol, "symbol": symbol, "name": "", "status": "active", "tradable": true,
            "expiration_date": "2026-12-11", "root_symbol": "SPY", "underlying_symbol": "SPY", "type": "put",
            "style": "american", "strike_price": format!("{k}"), "size": "100", "open_interest": "1000"
        }));
        market.snapshots.insert(
            symbol,
            json!({"latestQuote": {"t": NOW, "bp": mid - 0.02, "ap": mid + 0.02, "bs": 10, "as": 10, "ax": "C", "bx": "C", "c": "A"},
                   "greeks": {"delta": -delta, "gamma": 0.01, "theta": -0.05, "vega": 0.1, "rho": -0.01},
                   "impliedVolatility": 0.2, "dailyBar": {"t": NOW, "o": 1, "h": 1, "l": 1, "c": 1, "v": 500, "n": 10, "vw": 1}}),
        );
    }
}

/// The scratch folder comes first: dropped last, after the ledger in it is closed.
fn setup() -> (support::test_dir::TestDir, FakeAlpaca, Orchestrator, Arc<ManualClock>) {
    let fake = FakeAlpaca::start();
    {
        let mut st = fake.lock();
        st.clock = json!({"timestamp": NOW, "is_open": true, "next_open": "2026-11-26T14:30:00Z", "next_close": "2026-11-25T21:00:00Z"});
        st.fund_100k();
        st.positions.clear();
        st.auto_fill = Some("0".into());
        let mut m = Market::default();
        m.bars.insert("AAPL".into(), rising(190.0, 0.2, 20_000.0));
        m.bars.insert("SPY".into(), rising(480.0, 0.3, 50_000.0));
        m.bars.insert("BTC/USD".into(), rising(60_000.0, 15.0, 2.0));
        m.quotes.insert("AAPL".into(), quote(193.00, 193.02));
        m.quotes.insert("SPY".into(), quote(484.50, 484.52));
        m.quotes.insert("BTC/USD".into(), quote(60_200.0, 60_210.0));
        spy_chain(&mut m, 1.75, 1.25);
        st.market = Some(m);
        for (sym, px) in
            [("AAPL", "193.02"), ("BTC/USD", "60210"), ("SPY261211P00470000", "1.75"), ("SPY261211P00465000", "1.25")]
        {
            st.fill_prices.insert(sym.into(), px.into());
        }
    }
    let scratch = support::test_dir::TestDir::new("e2e");
    let dir = scratch.path().to_path_buf();
    let mut cfg = Config::load(Path::new("config")).unwrap();
    cfg.settings.system.state_db_path = dir.join("state.db");
    cfg.bots.optionsbot.as_mut().unwrap().tickers = vec!["SPY".into()];
    cfg.bots.cryptobot.as_mut().unwrap().pairs = vec!["BTC/USD".into()];
    // The bots' own exits: no resting stops at the broker (`tests/protection.rs` has those).
    cfg.bots.momentum_bots[0].exits.broker_stop = false;
    cfg.bots.cryptobot.as_mut().unwrap().exits.broker_stop = false;
    let broker = fake.client();
    let clock = Arc::new(ManualClock::new(ts(NOW)));
    let state = State::open(&cfg.settings.system.state_db_path).unwrap();
    let o = Orchestrator::new(cfg, state, Box::new(clock.clone()), Box::new(broker));
    (scratch, fake, o, clock)
}

/// The order bodies sent, each `client_order_id` by its name (`support::ids`).
fn posts(fake: &FakeAlpaca) -> Vec<Value> {
    support::ids::named_bodies(
        fake.seen()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/v2/orders")
            .map(|r| serde_json::from_str(&r.body).unwrap())
            .collect(),
    )
}

#[test]
fn each_bot_enters_on_the_rise_and_exits_by_its_stop_on_the_fall() {
    let (_scratch, fake, mut o, clock) = setup();

    // The rise: each bot opens exactly one position, in the form Alpaca accepts.
    let s = o.run_iteration();
    assert!(s.entries_allowed, "{s:?}");
    assert_eq!(s.orders_submitted, 3, "{:?}", posts(&fake));
    let p = posts(&fake);
    assert_eq!(
        p[0],
        json!({"symbol": "AAPL", "side": "buy", "qty": "51", "type": "market", "time_in_force": "day",
               "client_order_id": "th-mom_AAPL-20261125-1"}),
        "$10,000 at the $193.02 ask: 51 whole shares"
    );
    assert_eq!(
        p[1],
        json!({"order_class": "mleg", "qty": "1", "type": "limit", "limit_price": "-0.5", "time_in_force": "day",
               "client_order_id": "th-opt_core-20261125-1",
               "legs": [
                   {"symbol": "SPY261211P00470000", "side": "sell", "ratio_qty": "1", "position_intent": "sell_to_open"},
                   {"symbol": "SPY261211P00465000", "side": "buy", "ratio_qty": "1", "position_intent": "buy_to_open"}]}),
        "a bull put spread for a $0.50 credit, max loss $450: one spread within $500"
    );
    assert_eq!(
        p[2],
        json!({"symbol": "BTC/USD", "side": "buy", "qty": "0.000829", "type": "limit", "limit_price": "60270.21",
               "time_in_force": "gtc", "client_order_id": "th-crypto_core-20261125-1"}),
        "$50 at a limit 0.1 % over the ask, as a quantity (a limit takes no notional)"
    );

    // Filled at once by the fake: the next iteration books what each bot owns, and sends nothing.
    assert_eq!(o.run_iteration().orders_submitted, 0);
    let owned = o.state().owned_positions().unwrap();
    let q = |bot: &str, sym: &str| owned.iter().find(|p| p.bot == bot && p.symbol == sym).map(|p| p.qty.to_string());
    assert_eq!(q("mom_AAPL", "AAPL").as_deref(), Some("51"));
    assert_eq!(q("crypto_core", "BTC/USD").as_deref(), Some("0.000829"));
    assert_eq!(q("opt_core", "SPY261211P00470000").as_deref(), Some("-1"));
    assert_eq!(q("opt_core", "SPY261211P00465000").as_deref(), Some("1"));
    // Each bot entered on the first iteration, and now says why it enters no more: it holds.
    let activity = o.state().bot_activity().unwrap();
    for bot in ["mom_AAPL", "opt_core", "crypto_core"] {
        let a = activity.iter().find(|a| a.bot == bot).unwrap();
        assert_eq!(a.causes, vec![trading_hydra::core::idle::Cause::Holding], "{a:?}");
        assert!(a.reason.as_deref().unwrap().contains("holds a position"), "{a:?}");
    }

    // A minute later, the fall: AAPL -0.6 %, BTC -1.2 %, and the spread's cost to close past
    // twice its credit.
    let later = "2026-11-25T15:31:00Z";
    clock.set(ts(later));
    {
        let mut st = fake.lock();
        st.clock["timestamp"] = later.into();
        let m = st.market.as_mut().unwrap();
        m.quotes.insert("AAPL".into(), quote_at(later, 191.85, 191.87));
        m.quotes.insert("SPY".into(), quote_at(later, 478.50, 478.52));
        m.quotes.insert("BTC/USD".into(), quote_at(later, 59_480.0, 59_490.0));
        m.snapshots.clear();
        m.contracts.clear();
        spy_chain(m, 3.00, 1.20);
    }
    let s = o.run_iteration();
    assert_eq!(s.orders_submitted, 3);
    // Holding the spread, the bot asked only its legs: their expiry, their kind, their strikes
    // (the spread's exit was priced from those two quotes alone).
    let chain = fake.seen().into_iter().rev().find(|r| r.path == "/v1beta1/options/snapshots/SPY").unwrap();
    let asked = ["type", "expiration_date_gte", "expiration_date_lte", "strike_price_gte", "strike_price_lte"]
        .map(|k| chain.q(k).map(str::to_string).unwrap_or_default());
    assert_eq!(asked, ["put", "2026-12-11", "2026-12-11", "465", "470"]);
    let exits: Vec<Value> = posts(&fake).into_iter().skip(3).collect();
    assert_eq!(
        exits[0],
        json!({"symbol": "AAPL", "side": "sell", "qty": "51", "type": "market", "time_in_force": "day",
               "client_order_id": "th-mom_AAPL-20261125-2"})
    );
    assert_eq!(
        exits[1],
        json!({"order_class": "mleg", "qty": "1", "type": "market", "time_in_force": "day",
               "client_order_id": "th-opt_core-20261125-2",
               "legs": [
                   {"symbol": "SPY261211P00465000", "side": "sell", "ratio_qty": "1", "position_intent": "sell_to_close"},
                   {"symbol": "SPY261211P00470000", "side": "buy", "ratio_qty": "1", "position_intent": "buy_to_close"}]}),
        "the spread closes as one order"
    );
    assert_eq!(
        exits[2],
        json!({"symbol": "BTC/USD", "side": "sell", "qty": "0.000829", "type": "market", "time_in_force": "gtc",
               "client_order_id": "th-crypto_core-20261125-2"})
    );
    for coid in ["th-mom_AAPL-20261125-2", "th-opt_core-20261125-2", "th-crypto_core-20261125-2"] {
        assert_eq!(support::ids::order(o.state(), coid).unwrap().rule.as_deref(), Some("stop_loss"), "{coid}");
    }
    o.run_iteration();
    let left = o.state().owned_positions().unwrap();
    assert!(left.is_empty(), "{left:?}");

    // Every request the daemon sent is one Alpaca documents.
    let specs = support::openapi::Specs::load();
    for r in fake.seen() {
        if let Err(why) = specs.check(&r.method, &r.path, &r.query, &r.body) {
            panic!("{} {} {:?}: {why}", r.method, r.path, r.query);
        }
    }
}

/// The fake at NOW, funded, filling at once: BTC/USD and ETH/USD rising on volume.
fn two_pairs_rising() -> FakeAlpaca {
    let fake = FakeAlpaca::start();
    {
        let mut st = fake.lock();
        st.clock = json!({"timestamp": NOW, "is_open": true, "next_open": "2026-11-26T14:30:00Z", "next_close": "2026-11-25T21:00:00Z"});
        st.fund_100k();
        st.positions.clear();
        st.auto_fill = Some("0".into());
        let mut m = Market::default();
        m.bars.insert("BTC/USD".into(), rising(60_000.0, 15.0, 2.0));
        m.bars.insert("ETH/USD".into(), rising(3_000.0, 1.0, 20.0));
        m.quotes.insert("BTC/USD".into(), quote(60_200.0, 60_210.0));
        m.quotes.insert("ETH/USD".into(), quote(3_015.0, 3_015.5));
        st.market = Some(m);
        st.fill_prices.insert("BTC/USD".into(), "60210".into());
        st.fill_prices.insert("ETH/USD".into(), "3015.5".into());
    }
    fake
}

/// A minute later ETH/USD is 1 % lower (BTC/USD unchanged): past a 0.75 % stop.
fn eth_falls_one_percent(fake: &FakeAlpaca, clock: &ManualClock) {
    let later = "2026-11-25T15:31:00Z";
    clock.set(ts(later));
    {
        let mut st = fake.lock();
        st.clock["timestamp"] = later.into();
        let m = st.market.as_mut().unwrap();
        m.quotes.insert("BTC/USD".into(), quote_at(later, 60_200.0, 60_210.0));
        m.quotes.insert("ETH/USD".into(), quote_at(later, 2_985.0, 2_985.5));
        m.bars.insert("ETH/USD".into(), rising(2_900.0, 1.0, 20.0));
        st.fill_prices.insert("ETH/USD".into(), "2985".into());
    }
}

/// A pair removed from `cryptobot.pairs` while held — even with the configuration's stop widened
/// meanwhile — is still watched (its quotes fetched) and closed by the stop it was opened with;
/// no entry is ever sent for it again.
#[test]
fn a_pair_removed_from_the_config_while_held_is_sold_by_the_stop_it_opened_with() {
    let fake = two_pairs_rising();
    let scratch = support::test_dir::TestDir::new("e2e-orphan");
    let dir = scratch.path().to_path_buf();
    let mut cfg = Config::load(Path::new("config")).unwrap();
    cfg.settings.system.state_db_path = dir.join("state.db");
    for m in &mut cfg.bots.momentum_bots {
        m.enabled = false;
    }
    cfg.bots.optionsbot.as_mut().unwrap().enabled = false;
    // The keeper's watch by the stored stop (a resting stop at the broker would beat it).
    cfg.bots.cryptobot.as_mut().unwrap().exits.broker_stop = false;
    let clock = Arc::new(ManualClock::new(ts(NOW)));
    let open = |cfg: &Config| {
        let state = State::open(&cfg.settings.system.state_db_path).unwrap();
        Orchestrator::new(cfg.clone(), state, Box::new(clock.clone()), Box::new(fake.client()))
    };
    let mut o = open(&cfg);
    assert_eq!(o.run_iteration().orders_submitted, 2, "{:?}", raw_posts(&fake));
    o.run_iteration();
    assert_eq!(o.state().owned_positions().unwrap().len(), 2);

    // The operator drops ETH/USD from the pairs and widens the stop to 10 %, and restarts.
    drop(o);
    let crypto = cfg.bots.cryptobot.as_mut().unwrap();
    crypto.pairs = vec!["BTC/USD".into()];
    crypto.exits.stop_loss_pct = 10.0;
    crypto.exits.broker_stop = false;
    let quotes_asked = |fake: &FakeAlpaca| {
        fake.seen()
            .iter()
            .filter(|r| r.path.contains("quotes") && r.q("symbols").is_some_and(|s| s.contains("ETH")))
            .count()
    };
    let before = quotes_asked(&fake);
    let mut o = open(&cfg);
    o.run_iteration();
    assert!(quotes_asked(&fake) > before, "the orphan's quotes are fetched");
    assert_eq!(raw_posts(&fake).len(), 2, "nothing sold yet, nothing entered");

    // ETH falls 1 %: past the 0.75 % stop it was opened with, well inside the new 10 %.
    eth_falls_one_percent(&fake, &clock);
    let s = o.run_iteration();
    assert_eq!(s.orders_submitted, 1, "{:?}", raw_posts(&fake));
    let sell = raw_posts(&fake).last().cloned().unwrap();
    let bought = raw_posts(&fake).into_iter().find(|b| b["symbol"] == "ETH/USD").unwrap();
    assert_eq!(
        (sell["symbol"].as_str(), sell["side"].as_str(), sell["type"].as_str(), sell["qty"].as_str()),
        (Some("ETH/USD"), Some("sell"), Some("market"), bought["qty"].as_str()),
        "all of what was bought"
    );
    let coid = sell["client_order_id"].as_str().unwrap();
    assert!(coid.starts_with("th-crypto_core-20261125-"), "{coid}");
    assert_eq!(o.state().order(coid).unwrap().unwrap().rule.as_deref(), Some("stop_loss"));
    o.run_iteration();
    let owned = o.state().owned_positions().unwrap();
    assert_eq!(owned.iter().map(|p| p.symbol.as_str()).collect::<Vec<_>>(), vec!["BTC/USD"]);
    // And never an entry for the pair that left.
    for _ in 0..3 {
        o.run_iteration();
    }
    assert_eq!(raw_posts(&fake).iter().filter(|b| b["symbol"] == "ETH/USD").count(), 2, "one buy, one sell");
}

/// The order bodies sent, ids as they are (a restart draws a new epoch).
fn raw_posts(fake: &FakeAlpaca) -> Vec<Value> {
    fake.seen()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/orders")
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect()
}

/// `system.timezone: Europe/London`, and a momentum bot whose day ends at 20:50 London — 15:50
/// New York most of the year. On Wednesday 2026-03-18 New York is already on summer time and
/// London not yet: 20:50 London is 16:50 New York, after the close. The position is still closed
/// before the close, five minutes before it, by the loop itself.
#[test]
fn a_london_zone_bot_is_flat_by_the_close_in_a_week_of_mismatched_daylight_saving() {
    let t0 = "2026-03-18T15:30:00Z";
    let close = "2026-03-18T20:00:00Z";
    let fake = FakeAlpaca::start();
    {
        let mut st = fake.lock();
        st.clock = json!({"timestamp": t0, "is_open": true, "next_open": "2026-03-19T13:30:00Z", "next_close": close});
        st.fund_100k();
        st.positions.clear();
        st.auto_fill = Some("0".into());
        let mut m = Market::default();
        m.bars.insert("AAPL".into(), rising_at(t0, 190.0, 0.2, 20_000.0));
        m.quotes.insert("AAPL".into(), quote_at(t0, 193.00, 193.02));
        st.market = Some(m);
        st.fill_prices.insert("AAPL".into(), "193.02".into());
    }
    let scratch = support::test_dir::TestDir::new("e2e-london");
    let dir = scratch.path().to_path_buf();
    let mut cfg = Config::load(Path::new("config")).unwrap();
    cfg.settings.system.state_db_path = dir.join("state.db");
    cfg.settings.system.timezone = "Europe/London".into();
    cfg.timezone = jiff::tz::TimeZone::get("Europe/London").unwrap();
    cfg.bots.optionsbot.as_mut().unwrap().enabled = false;
    cfg.bots.cryptobot.as_mut().unwrap().enabled = false;
    let m = &mut cfg.bots.momentum_bots[0];
    let hm = |t: &str| trading_hydra::core::clock::HhMm::parse(t).unwrap();
    m.session.trade_start = hm("14:35");
    m.session.trade_end = hm("19:30");
    m.session.manage_until = hm("20:50");
    m.exits.time_stop_minutes = None;
    m.exits.flatten_before_close_minutes = None;
    let clock = Arc::new(ManualClock::new(ts(t0)));
    let state = State::open(&cfg.settings.system.state_db_path).unwrap();
    let mut o = Orchestrator::new(cfg, state, Box::new(clock.clone()), Box::new(fake.client()));
    assert_eq!(o.run_iteration().orders_submitted, 1, "{:?}", raw_posts(&fake));
    o.run_iteration();
    assert_eq!(o.state().owned_positions().unwrap().len(), 1);

    let at = |t: &str| {
        clock.set(ts(t));
        let mut st = fake.lock();
        st.clock["timestamp"] = t.into();
        st.market.as_mut().unwrap().quotes.insert("AAPL".into(), quote_at(t, 193.00, 193.02));
    };
    // 19:54 UTC: 15:54 New York, 19:54 London — nothing yet.
    at("2026-03-18T19:54:00Z");
    assert_eq!(o.run_iteration().orders_submitted, 0);
    // 19:55 UTC: five minutes before the close, long before 20:50 London.
    at("2026-03-18T19:55:00Z");
    assert_eq!(o.run_iteration().orders_submitted, 1);
    let sell = raw_posts(&fake).last().cloned().unwrap();
    assert_eq!((sell["side"].as_str(), sell["qty"].as_str()), (Some("sell"), Some("51")));
    let rec = o.state().order(sell["client_order_id"].as_str().unwrap()).unwrap().unwrap();
    assert_eq!(rec.rule.as_deref(), Some("manage_until"));
    o.run_iteration();
    assert!(o.state().owned_positions().unwrap().is_empty(), "flat before the 20:00 UTC close");
}

/// `reload` of a pair's removal while it is held: in force from the next iteration, the pair's
/// position is kept by the keeper (`exits_only` in the bot activity), closed by the stop it was
/// opened with even though the reloaded file widened it, and never entered again; the log names
/// the change.
#[test]
fn a_pair_removed_by_reload_while_held_is_kept_by_its_stored_stop_and_never_entered_again() {
    let fake = two_pairs_rising();
    // The configuration as files, since a reload reads them: crypto only, the daemon's own stop.
    let scratch = support::test_dir::TestDir::new("e2e-reload");
    let dir = scratch.path().to_path_buf();
    std::fs::create_dir_all(dir.join("config")).unwrap();
    let edit = |file: &str, edits: &[(&str, &str)]| support::config_files::edit(&dir.join("config"), file, edits);
    let db = dir.join("state.db");
    edit("settings.yaml", &[("state_db_path: ./state/trading_state.db", &format!("state_db_path: {}", db.display()))]);
    edit(
        "bots.yaml",
        &[
            ("  - bot_id: mom_AAPL\n    enabled: true", "  - bot_id: mom_AAPL\n    enabled: false"),
            ("optionsbot:\n  enabled: true", "optionsbot:\n  enabled: false"),
            ("    # broker_stop: false     # added", "    broker_stop: false     # added"),
        ],
    );
    let cfg = Config::load(&dir.join("config")).unwrap();
    let clock = Arc::new(ManualClock::new(ts(NOW)));
    let state = State::open(&db).unwrap();
    let mut o = Orchestrator::new(cfg, state, Box::new(clock.clone()), Box::new(fake.client()));
    let (s, b) = trading_hydra::core::config::Config::read_texts(&dir.join("config")).unwrap();
    o.keep_texts(s, b);
    assert_eq!(o.run_iteration().orders_submitted, 2, "{:?}", raw_posts(&fake));
    o.run_iteration();
    assert_eq!(o.state().owned_positions().unwrap().len(), 2);

    // The operator drops ETH/USD and widens the stop to 10 %, then runs `reload` (its request, as
    // the command writes it into the ledger from another process).
    edit(
        "bots.yaml",
        &[("pairs: [\"BTC/USD\", \"ETH/USD\"]", "pairs: [\"BTC/USD\"]"), ("stop_loss_pct: 0.75", "stop_loss_pct: 10")],
    );
    State::open(&db).unwrap().kv_set("reload_request", "r1", ts(NOW)).unwrap();
    o.between_iterations();
    let answer: Value = serde_json::from_str(&o.state().kv_get("reload_result").unwrap().unwrap()).unwrap();
    assert_eq!(answer["applied"], true, "{answer}");
    assert_eq!(
        answer["changes"],
        json!([
            "bots.yaml cryptobot.exits.stop_loss_pct: 0.75 -> 10",
            "bots.yaml cryptobot.pairs: [BTC/USD, ETH/USD] -> [BTC/USD]"
        ])
    );
    assert_eq!(o.config().bots.cryptobot.as_ref().unwrap().pairs, vec!["BTC/USD".to_string()]);
    o.run_iteration();
    assert_eq!(raw_posts(&fake).len(), 2, "nothing sold yet, nothing entered");
    // The configured bot speaks for its id (it holds BTC/USD), not the keeper of its orphan.
    let activity = o.state().bot_activity().unwrap();
    let crypto = activity.iter().find(|a| a.bot == "crypto_core").unwrap();
    assert_eq!(crypto.causes, vec![trading_hydra::core::idle::Cause::Holding], "{crypto:?}");

    // ETH falls 1 %: past the 0.75 % stop it was opened with, well inside the reloaded 10 %.
    eth_falls_one_percent(&fake, &clock);
    assert_eq!(o.run_iteration().orders_submitted, 1, "{:?}", raw_posts(&fake));
    let sell = raw_posts(&fake).last().cloned().unwrap();
    assert_eq!((sell["symbol"].as_str(), sell["side"].as_str()), (Some("ETH/USD"), Some("sell")));
    assert_eq!(
        o.state().order(sell["client_order_id"].as_str().unwrap()).unwrap().unwrap().rule.as_deref(),
        Some("stop_loss")
    );
    for _ in 0..3 {
        o.run_iteration();
    }
    assert_eq!(
        raw_posts(&fake).iter().filter(|b| b["symbol"] == "ETH/USD").count(),
        2,
        "one buy, one sell, never again"
    );
    let owned = o.state().owned_positions().unwrap();
    assert_eq!(owned.iter().map(|p| p.symbol.as_str()).collect::<Vec<_>>(), vec!["BTC/USD"]);
}
