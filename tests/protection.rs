//! Protective stops resting at the broker (`exits.broker_stop_pct`), against the loopback fake,
//! which holds the quantity open sells cover and triggers resting stops when its quotes cross
//! them: each position gets its stop as soon as it is owned; a daemon that is gone while the price
//! falls through them still has its positions closed, and books those exits when it comes back
//! without selling anything; alive, its own take-profit cancels the stop first, is never refused
//! for held quantity, and leaves no protective order behind. And what such a day leaves in the
//! ledger, read back: its round trips (`trading-hydra trades`) and its replay against the
//! backtest (`trading-hydra replay`).

mod support;

use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Value, json};
use support::config_files;
use support::fake_alpaca::{FakeAlpaca, Market};
use trading_hydra::core::clock::ManualClock;
use trading_hydra::core::config::Config;
use trading_hydra::core::state::State;
use trading_hydra::orchestrator::Orchestrator;

/// Wednesday 2026-11-25, 10:30 New York.
const NOW: &str = "2026-11-25T15:30:00Z";
const LATER: &str = "2026-11-25T15:31:00Z";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// 55 one-minute bars ending the minute before NOW: flat, then climbing, the last on heavy volume.
fn rising(start: f64, step: f64, volume: f64) -> Vec<Value> {
    let end = ts(NOW).as_second() - 60;
    (0..55)
        .map(|i| {
            let c = if i < 40 { start } else { start + (i - 39) as f64 * step };
            let t = Timestamp::from_second(end - (54 - i) * 60).unwrap();
            let v = if i == 54 { volume * 3.0 } else { volume };
            json!({"t": t.to_string(), "o": c, "h": c + step / 4.0, "l": c - step / 4.0, "c": c, "v": v, "n": 10, "vw": c})
        })
        .collect()
}

fn quote(t: &str, bid: f64, ask: f64) -> Value {
    json!({"t": t, "bp": bid, "bs": 3, "ap": ask, "as": 3, "ax": "V", "bx": "V", "c": ["R"], "z": "C"})
}

/// The momentum bot on AAPL and the crypto bot on BTC/USD, each resting a stop 1 % below its
/// entry (the daemon's own stops are tighter: 0.5 % and 0.75 %).
/// The scratch folder comes first: dropped last, after the ledger in it is closed.
fn setup(name: &str) -> (support::test_dir::TestDir, FakeAlpaca, Config, Arc<ManualClock>) {
    let fake = FakeAlpaca::start();
    {
        let mut st = fake.lock();
        st.clock = json!({"timestamp": NOW, "is_open": true, "next_open": "2026-11-26T14:30:00Z", "next_close": "2026-11-25T21:00:00Z"});
        st.fund_100k();
        st.positions.clear();
        st.auto_fill = Some("0".into());
        let mut m = Market::default();
        m.bars.insert("AAPL".into(), rising(190.0, 0.2, 20_000.0));
        m.bars.insert("BTC/USD".into(), rising(60_000.0, 15.0, 2.0));
        m.quotes.insert("AAPL".into(), quote(NOW, 193.00, 193.02));
        m.quotes.insert("BTC/USD".into(), quote(NOW, 60_200.0, 60_210.0));
        st.market = Some(m);
        st.fill_prices.insert("AAPL".into(), "193.02".into());
        st.fill_prices.insert("BTC/USD".into(), "60210".into());
    }
    let scratch = support::test_dir::TestDir::new(&format!("protect-{name}"));
    let dir = scratch.path().to_path_buf();
    let mut cfg = Config::load(Path::new("config")).unwrap();
    cfg.settings.system.state_db_path = dir.join("state.db");
    cfg.bots.optionsbot.as_mut().unwrap().enabled = false;
    let crypto = cfg.bots.cryptobot.as_mut().unwrap();
    crypto.pairs = vec!["BTC/USD".into()];
    crypto.exits.broker_stop_pct = Some(1.0);
    cfg.bots.momentum_bots[0].exits.broker_stop_pct = Some(1.0);
    let clock = Arc::new(ManualClock::new(ts(NOW)));
    (scratch, fake, cfg, clock)
}

fn open(fake: &FakeAlpaca, cfg: &Config, clock: &Arc<ManualClock>) -> Orchestrator {
    let state = State::open(&cfg.settings.system.state_db_path).unwrap();
    Orchestrator::new(cfg.clone(), state, Box::new(clock.clone()), Box::new(fake.client()))
}

/// A configuration folder in `scratch` for the real binary: the shipped files, `cfg`'s ledger,
/// and these edits of `settings.yaml` and `bots.yaml`.
fn config_for(scratch: &Path, cfg: &Config, settings: &[(&str, &str)], bots: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = scratch.join("config");
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = format!("state_db_path: {}", cfg.settings.system.state_db_path.display());
    let mut edits = vec![("state_db_path: ./state/trading_state.db", ledger.as_str())];
    edits.extend_from_slice(settings);
    config_files::edit(&dir, "settings.yaml", &edits);
    config_files::edit(&dir, "bots.yaml", bots);
    dir
}

/// Every order body sent, and every answer's status, in order.
fn posts(fake: &FakeAlpaca) -> Vec<Value> {
    fake.seen()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/orders")
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect()
}

fn without_id(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("client_order_id");
    v
}

/// Enters both, and sees both stops placed the iteration the fills are booked.
fn enter_and_protect(fake: &FakeAlpaca, o: &mut Orchestrator) {
    assert_eq!(o.run_iteration().orders_submitted, 2, "{:?}", posts(fake));
    let s = o.run_iteration();
    assert_eq!(s.orders_submitted, 2, "the two protective stops: {:?}", posts(fake));
    let p = posts(fake);
    assert_eq!(
        without_id(p[2].clone()),
        json!({"symbol": "AAPL", "side": "sell", "qty": "51", "type": "stop", "stop_price": "191.08", "time_in_force": "gtc"}),
        "193.02 less 1 %, rounded down to the cent"
    );
    assert_eq!(
        without_id(p[3].clone()),
        json!({"symbol": "BTC/USD", "side": "sell", "qty": "0.000829", "type": "stop_limit", "stop_price": "59607.9",
               "limit_price": "58415.74", "time_in_force": "gtc"}),
        "60210 less 1 %, the limit 2 % below that"
    );
    for b in &p[2..4] {
        let rec = o.state().order(b["client_order_id"].as_str().unwrap()).unwrap().unwrap();
        assert_eq!((rec.intent.as_str(), rec.rule.as_deref()), ("exit", Some("broker_stop")), "recorded as ours");
    }
    // Placed once: nothing more while they rest.
    assert_eq!(o.run_iteration().orders_submitted, 0);
}

#[test]
fn with_the_daemon_gone_the_resting_stops_close_both_and_the_restart_books_them_and_sells_nothing() {
    let (_scratch, fake, cfg, clock) = setup("dead");
    let mut o = open(&fake, &cfg, &clock);
    enter_and_protect(&fake, &mut o);
    // The daemon dies (nothing of it runs any more), and the market falls through both stops.
    drop(o);
    {
        let mut st = fake.lock();
        st.clock["timestamp"] = LATER.into();
        let m = st.market.as_mut().unwrap();
        m.quotes.insert("AAPL".into(), quote(LATER, 190.50, 190.52));
        m.quotes.insert("BTC/USD".into(), quote(LATER, 59_000.0, 59_010.0));
        st.trigger_stops();
        assert!(st.positions.is_empty(), "the broker closed both: {:?}", st.positions);
    }
    let sent = posts(&fake).len();

    // Back: the fills are booked as the exits they are, and nothing is sold (or bought) again.
    clock.set(ts(LATER));
    let mut o = open(&fake, &cfg, &clock);
    let s = o.run_iteration();
    assert_eq!(s.orders_submitted, 0, "{:?}", posts(&fake));
    assert_eq!(posts(&fake).len(), sent, "no sell after the restart");
    assert!(o.state().owned_positions().unwrap().is_empty(), "{:?}", o.state().owned_positions());
    let stops: Vec<Value> = posts(&fake)[2..4].to_vec();
    for (b, price) in stops.iter().zip(["190.5", "59000"]) {
        let rec = o.state().order(b["client_order_id"].as_str().unwrap()).unwrap().unwrap();
        assert_eq!((rec.status.as_str(), rec.rule.as_deref()), ("filled", Some("broker_stop")));
        let filled = fake.lock().orders.iter().find(|x| x["client_order_id"] == b["client_order_id"]).cloned().unwrap();
        assert_eq!(filled["filled_avg_price"], price);
    }
    // The daily report counts them by their rule.
    let date = jiff::civil::date(2026, 11, 25);
    assert_eq!(o.state().exits_on("mom_AAPL", date).unwrap(), vec![("broker_stop".to_string(), 1)]);
    assert_eq!(o.state().exits_on("crypto_core", date).unwrap(), vec![("broker_stop".to_string(), 1)]);
    // The bots' cooldowns hold after those exits: no re-entry on the still-rising bars.
    o.run_iteration();
    assert_eq!(posts(&fake).len(), sent);
}

#[test]
fn alive_its_own_take_profit_cancels_the_stop_first_and_leaves_none_behind() {
    let (_scratch, fake, cfg, clock) = setup("alive");
    let mut o = open(&fake, &cfg, &clock);
    enter_and_protect(&fake, &mut o);
    let stop_id = posts(&fake)[2]["client_order_id"].as_str().unwrap().to_string();
    // `status` shows each position's resting stop.
    let report = trading_hydra::services::status::gather(o.state(), ts(NOW), 5).unwrap();
    let json = report.to_json(&jiff::tz::TimeZone::UTC);
    let aapl = json["positions"].as_array().unwrap().iter().find(|p| p["symbol"] == "AAPL").cloned().unwrap();
    assert_eq!(
        (aapl["protection"]["type"].as_str(), aapl["protection"]["stop_price"].as_str()),
        (Some("stop"), Some("191.08"))
    );
    let btc = json["positions"].as_array().unwrap().iter().find(|p| p["symbol"] == "BTC/USD").cloned().unwrap();
    assert_eq!(btc["protection"]["type"], "stop_limit");
    let text = report.to_text(&jiff::tz::TimeZone::UTC);
    assert!(text.contains("AAPL at 193.02") && text.contains("resting stop at 191.08 since"), "{text}");
    // AAPL up 1.2 %: the momentum bot's take profit (1 %).
    clock.set(ts(LATER));
    {
        let mut st = fake.lock();
        st.clock["timestamp"] = LATER.into();
        let m = st.market.as_mut().unwrap();
        m.quotes.insert("AAPL".into(), quote(LATER, 195.40, 195.42));
        m.quotes.insert("BTC/USD".into(), quote(LATER, 60_200.0, 60_210.0));
        st.fill_prices.insert("AAPL".into(), "195.40".into());
    }
    let s = o.run_iteration();
    assert_eq!(s.orders_submitted, 1, "{:?}", posts(&fake));
    let seen = fake.seen();
    let cancel = seen.iter().position(|r| r.method == "DELETE").expect("the stop was cancelled");
    let sell = seen
        .iter()
        .rposition(|r| r.method == "POST" && r.body.contains("\"AAPL\"") && r.body.contains("\"market\""))
        .expect("the take-profit sell");
    assert!(cancel < sell, "cancelled before the sell");
    let stop = fake.lock().orders.iter().find(|x| x["client_order_id"] == stop_id.as_str()).cloned().unwrap();
    assert_eq!(stop["status"], "canceled");
    let last = posts(&fake).last().cloned().unwrap();
    assert_eq!(
        (last["side"].as_str(), last["qty"].as_str(), last["type"].as_str()),
        (Some("sell"), Some("51"), Some("market"))
    );
    let rec = o.state().order(last["client_order_id"].as_str().unwrap()).unwrap().unwrap();
    assert_eq!(rec.rule.as_deref(), Some("take_profit"));
    // Filled; nothing refused; no protective order of AAPL left, and none placed again.
    o.run_iteration();
    o.run_iteration();
    let st = fake.lock();
    let open_aapl: Vec<&Value> = st
        .orders
        .iter()
        .filter(|x| x["symbol"] == "AAPL" && !matches!(x["status"].as_str(), Some("filled" | "canceled")))
        .collect();
    assert!(open_aapl.is_empty(), "{open_aapl:?}");
    assert!(!st.positions.iter().any(|p| p["symbol"] == "AAPL"));
    drop(st);
    assert!(o.state().owned_positions().unwrap().iter().all(|p| p.symbol != "AAPL"));
    let refused: Vec<String> = o
        .state()
        .all_orders()
        .unwrap()
        .into_iter()
        .filter(|(r, _)| r.status.as_str() == "rejected")
        .map(|(r, _)| r.client_order_id)
        .collect();
    assert!(refused.is_empty(), "never refused for held quantity: {refused:?}");
    // BTC keeps its stop.
    let btc_stop = posts(&fake)[3]["client_order_id"].as_str().unwrap().to_string();
    let btc = fake.lock().orders.iter().find(|x| x["client_order_id"] == btc_stop.as_str()).cloned().unwrap();
    assert_eq!(btc["status"], "accepted");
    // Every request the daemon sent — the stops, their cancel — is one Alpaca documents.
    let specs = support::openapi::Specs::load();
    for r in fake.seen() {
        if let Err(why) = specs.check(&r.method, &r.path, &r.query, &r.body) {
            panic!("{} {} {:?}: {why}", r.method, r.path, r.query);
        }
    }
}

/// With a trailing stop, the resting stop follows the best price: replaced (`PATCH`, a new id
/// recorded first) once the trade is ahead, at most once a minute; the replaced order is final,
/// the new one is what protects — and what the broker fills while the daemon is gone.
#[test]
fn a_trailing_stop_moves_its_resting_order_up_and_that_is_what_fills() {
    let (_scratch, fake, mut cfg, clock) = setup("trail");
    cfg.bots.cryptobot.as_mut().unwrap().exits.trailing_stop_pct = Some(0.5);
    let mut o = open(&fake, &cfg, &clock);
    enter_and_protect(&fake, &mut o);
    let first = posts(&fake)[3]["client_order_id"].as_str().unwrap().to_string();
    // BTC up 1.2 % (under its 1.5 % take profit): the best price is now the mid, 60,935. AAPL up
    // a quarter of a percent.
    clock.set(ts(LATER));
    {
        let mut st = fake.lock();
        st.clock["timestamp"] = LATER.into();
        let m = st.market.as_mut().unwrap();
        m.quotes.insert("AAPL".into(), quote(LATER, 193.50, 193.52));
        m.quotes.insert("BTC/USD".into(), quote(LATER, 60_930.0, 60_940.0));
    }
    let best = |o: &Orchestrator, s: &str| {
        o.state().owned_positions().unwrap().into_iter().find(|p| p.symbol == s).map(|p| p.high_water)
    };
    let aapl_at_entry = best(&o, "AAPL");
    o.run_iteration();
    // Only a bot with a trailing stop keeps a best price (nothing else reads one): BTC's is the
    // mid; AAPL's momentum bot, without a trailing stop, leaves its row as the entry wrote it
    // however its price rises.
    assert_eq!(best(&o, "BTC/USD"), Some(Some(60_935.0)));
    assert_eq!(best(&o, "AAPL"), aapl_at_entry);
    assert!(aapl_at_entry.is_some_and(|b| b.is_none_or(|b| b < 193.51)), "{aapl_at_entry:?}");
    let patches: Vec<_> = fake.seen().into_iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 1, "one replace");
    let old = fake.lock().orders.iter().find(|x| x["client_order_id"] == first.as_str()).cloned().unwrap();
    assert_eq!(patches[0].path, format!("/v2/orders/{}", old["id"].as_str().unwrap()));
    let body: Value = serde_json::from_str(&patches[0].body).unwrap();
    // 60,935 less 0.5 % = 60,630.32 (rounded down), above the fixed 59,607.90; the limit 2 % below.
    assert_eq!((body["stop_price"].as_str(), body["limit_price"].as_str()), (Some("60630.32"), Some("59417.71")));
    let new_id = body["client_order_id"].as_str().unwrap().to_string();
    assert_eq!(o.state().order(&first).unwrap().unwrap().status.as_str(), "replaced");
    let rec = o.state().order(&new_id).unwrap().unwrap();
    assert_eq!((rec.rule.as_deref(), rec.stop_price.as_deref()), (Some("broker_stop"), Some("60630.32")));
    // Not again within the minute, even with a higher best.
    {
        let mut st = fake.lock();
        st.market.as_mut().unwrap().quotes.insert("BTC/USD".into(), quote(LATER, 60_990.0, 61_000.0));
    }
    o.run_iteration();
    assert_eq!(fake.seen().iter().filter(|r| r.method == "PATCH").count(), 1);

    // Gone; BTC falls to 60,500: through the new stop (the old one, at 59,607.90, would not fire).
    drop(o);
    {
        let mut st = fake.lock();
        st.market.as_mut().unwrap().quotes.insert("BTC/USD".into(), quote(LATER, 60_500.0, 60_510.0));
        st.trigger_stops();
        assert!(!st.positions.iter().any(|p| p["symbol"] == "BTCUSD"), "{:?}", st.positions);
    }
    let mut o = open(&fake, &cfg, &clock);
    o.run_iteration();
    assert!(o.state().owned_positions().unwrap().iter().all(|p| p.symbol != "BTC/USD"));
    let rec = o.state().order(&new_id).unwrap().unwrap();
    assert_eq!((rec.status.as_str(), rec.rule.as_deref()), ("filled", Some("broker_stop")));
    // The replace is one of Alpaca's documented operations, with a body it declares.
    let specs = support::openapi::Specs::load();
    for r in fake.seen() {
        if let Err(why) = specs.check(&r.method, &r.path, &r.query, &r.body) {
            panic!("{} {} {:?}: {why}", r.method, r.path, r.query);
        }
    }
}

/// The real binary, killed with SIGKILL once both stops rest at the fake; the market falls
/// through them while it is dead; restarted, it books both exits and sends nothing.
#[test]
fn the_binary_killed_with_its_stops_resting_books_the_brokers_exits_on_restart() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    use support::fake_alpaca::{live_quote, rising_until_now};
    const BIN: &str = env!("CARGO_BIN_EXE_trading-hydra");
    let fake = FakeAlpaca::start();
    {
        let mut st = fake.lock();
        st.live_time = true;
        st.clock = json!({"timestamp": "", "is_open": true, "next_open": "2099-01-01T14:30:00Z", "next_close": "2099-01-01T21:00:00Z"});
        st.fund_100k();
        st.positions.clear();
        st.auto_fill = Some("0".into());
        let mut m = Market::default();
        m.bars.insert("AAPL".into(), rising_until_now(190.0, 0.2, 20_000.0));
        m.bars.insert("BTC/USD".into(), rising_until_now(60_000.0, 15.0, 2.0));
        m.quotes.insert("AAPL".into(), live_quote(193.00, 193.02));
        m.quotes.insert("BTC/USD".into(), live_quote(60_200.0, 60_210.0));
        st.market = Some(m);
        st.fill_prices.insert("AAPL".into(), "193.02".into());
        st.fill_prices.insert("BTC/USD".into(), "60210".into());
    }
    let scratch = support::test_dir::TestDir::new("protect-bin");
    let dir = scratch.path().to_path_buf();
    std::fs::create_dir_all(dir.join("config")).unwrap();
    let settings = std::fs::read_to_string("config/settings.yaml")
        .unwrap()
        .replace("loop_interval_seconds: 5", "loop_interval_seconds: 1");
    std::fs::write(dir.join("config/settings.yaml"), settings).unwrap();
    // The shipped bots with their commented broker stops switched on, trading all day; no options.
    let bots = std::fs::read_to_string("config/bots.yaml")
        .unwrap()
        .replace("# broker_stop_pct: 1.0", "broker_stop_pct: 1.0")
        .replace("# broker_stop_pct: 1.5", "broker_stop_pct: 1.5")
        .replace("optionsbot:\n  enabled: true", "optionsbot:\n  enabled: false")
        .replace("pairs: [\"BTC/USD\", \"ETH/USD\"]", "pairs: [\"BTC/USD\"]")
        .replace("trade_start: \"06:35\"", "trade_start: \"00:00\"")
        .replace("trade_end: \"09:30\"", "trade_end: \"23:58\"")
        .replace("manage_until: \"12:55\"", "manage_until: \"23:59\"");
    assert!(bots.contains("\n      broker_stop_pct: 1.0") && bots.contains("\n    broker_stop_pct: 1.5"));
    std::fs::write(dir.join("config/bots.yaml"), bots).unwrap();
    let run = || {
        let mut c = Command::new(BIN);
        fake.point(c.current_dir(&dir).arg("run")).stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    let resting = |fake: &FakeAlpaca| {
        fake.lock().orders.iter().filter(|o| matches!(o["type"].as_str(), Some("stop" | "stop_limit"))).count()
    };
    let mut child = run().spawn().unwrap();
    let start = Instant::now();
    while resting(&fake) < 2 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(resting(&fake), 2, "{:?}", fake.lock().orders);
    {
        let mut st = fake.lock();
        let m = st.market.as_mut().unwrap();
        m.quotes.insert("AAPL".into(), live_quote(190.00, 190.02));
        m.quotes.insert("BTC/USD".into(), live_quote(59_000.0, 59_010.0));
        st.trigger_stops();
        assert!(st.positions.is_empty(), "the broker's stops closed both: {:?}", st.positions);
    }
    let sent = posts(&fake).len();
    assert_eq!(run().args(["--iterations", "2"]).status().unwrap().code(), Some(0));
    assert_eq!(posts(&fake).len(), sent, "nothing sent after the restart: {:?}", &posts(&fake)[sent..]);
    let state = State::open(&dir.join("state/trading_state.db")).unwrap();
    assert!(state.owned_positions().unwrap().is_empty(), "{:?}", state.owned_positions());
    let stops: Vec<_> =
        state.all_orders().unwrap().into_iter().filter(|(o, _)| o.rule.as_deref() == Some("broker_stop")).collect();
    assert_eq!(stops.len(), 2);
    assert!(stops.iter().all(|(o, _)| o.status.as_str() == "filled"), "{stops:?}");
}

/// The market `minutes` after NOW.
fn minutes_after_now(minutes: i64) -> Timestamp {
    Timestamp::from_second(ts(NOW).as_second() + minutes * 60).unwrap()
}

/// The broker at `t`, prices unchanged: its clock, and AAPL's and BTC's quotes fresh at `t`.
/// The daemon's clock is the caller's to set (it may disagree).
fn broker_at(fake: &FakeAlpaca, t: &str) {
    let mut st = fake.lock();
    st.clock["timestamp"] = t.into();
    let m = st.market.as_mut().unwrap();
    m.quotes.insert("AAPL".into(), quote(t, 193.00, 193.02));
    m.quotes.insert("BTC/USD".into(), quote(t, 60_200.0, 60_210.0));
}

/// The shipped configuration as files in `scratch`/config (a reload reads files), with the
/// ledger at `scratch`/state.db and the options bot off: the folder and the ledger's path.
fn config_files(scratch: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = scratch.join("config");
    std::fs::create_dir_all(&dir).unwrap();
    let db = scratch.join("state.db");
    config_files::edit(
        &dir,
        "settings.yaml",
        &[("state_db_path: ./state/trading_state.db", &format!("state_db_path: {}", db.display()))],
    );
    config_files::edit(&dir, "bots.yaml", &[("optionsbot:\n  enabled: true", "optionsbot:\n  enabled: false")]);
    (dir, db)
}

/// The sells of `symbol` other than protective stops, in order.
fn own_sells(fake: &FakeAlpaca, symbol: &str) -> Vec<Value> {
    let protective = |b: &Value| b["type"] == "stop" || b["type"] == "stop_limit";
    posts(fake).into_iter().filter(|b| b["symbol"] == symbol && b["side"] == "sell" && !protective(b)).collect()
}

/// Issue 31, case 1: the market opens through where the stop would rest (a gap: AAPL 5.3 % below
/// its entry, the stop 1 % below it). Alpaca refuses the stop with its 422; the position's own
/// stop-loss is due and goes out in the same iteration, before any stop is tried, and nothing
/// is sold twice or short.
#[test]
fn a_gap_through_the_stop_is_sold_by_the_stop_loss_at_once_and_no_refused_stop_holds_it() {
    let (_scratch, fake, cfg, clock) = setup("gap");
    let mut o = open(&fake, &cfg, &clock);
    assert_eq!(o.run_iteration().orders_submitted, 2, "both entries: {:?}", posts(&fake));
    {
        let mut st = fake.lock();
        st.clock["timestamp"] = LATER.into();
        st.market.as_mut().unwrap().quotes.insert("AAPL".into(), quote(LATER, 182.80, 182.82));
        st.fill_prices.insert("AAPL".into(), "182.80".into());
    }
    clock.set(ts(LATER));
    o.run_iteration();
    let sells = own_sells(&fake, "AAPL");
    assert_eq!(sells.len(), 1, "sold by its own rule in the iteration the gap is seen: {:?}", posts(&fake));
    let tried = posts(&fake).into_iter().filter(|b| b["symbol"] == "AAPL" && b["type"] == "stop").count();
    assert_eq!(tried, 0, "the exit went first, so no stop was tried for a position being sold");
    assert_eq!(sells[0]["type"], "market");
    let rec = o.state().order(sells[0]["client_order_id"].as_str().unwrap()).unwrap().unwrap();
    assert_eq!(rec.rule.as_deref(), Some("stop_loss"));
    assert!(o.state().owned_positions().unwrap().iter().all(|p| p.symbol != "AAPL"));
    // The next iterations sell nothing more, and nothing went short.
    o.run_iteration();
    o.run_iteration();
    assert_eq!(own_sells(&fake, "AAPL").len(), 1);
    assert!(fake.lock().min_by_symbol.get("AAPL").is_none_or(|m| *m >= 0.0));
}

/// A stop that cannot rest because the market is through it — here a tight one (0.2 %), the
/// daemon's own stop-loss (0.5 %) not reached — means the stop is due: the position is sold at
/// market in that iteration, once.
#[test]
fn a_stop_refused_because_the_market_is_through_it_sells_at_once() {
    let (_scratch, fake, mut cfg, clock) = setup("through");
    cfg.bots.momentum_bots[0].exits.broker_stop_pct = Some(0.2);
    let mut o = open(&fake, &cfg, &clock);
    assert_eq!(o.run_iteration().orders_submitted, 2, "both entries: {:?}", posts(&fake));
    {
        let mut st = fake.lock();
        // 0.32 % below the entry at 193.02: through the 0.2 % stop (192.63), short of the 0.5 %.
        st.clock["timestamp"] = LATER.into();
        st.market.as_mut().unwrap().quotes.insert("AAPL".into(), quote(LATER, 192.40, 192.42));
        st.fill_prices.insert("AAPL".into(), "192.40".into());
    }
    clock.set(ts(LATER));
    o.run_iteration();
    let refused: Vec<Value> =
        posts(&fake).into_iter().filter(|b| b["symbol"] == "AAPL" && b["type"] == "stop").collect();
    assert_eq!(refused.len(), 1, "one stop tried: {:?}", posts(&fake));
    let sells = own_sells(&fake, "AAPL");
    assert_eq!(sells.len(), 1, "sold at once: {:?}", posts(&fake));
    assert_eq!(sells[0]["type"], "market");
    assert!(o.state().owned_positions().unwrap().iter().all(|p| p.symbol != "AAPL"));
    o.run_iteration();
    assert_eq!(own_sells(&fake, "AAPL").len(), 1, "never sold twice");
    assert!(fake.lock().min_by_symbol.get("AAPL").is_none_or(|m| *m >= 0.0));
}

/// Issue 31, case 2: a coin bought with the fee taken from the coin. The stop for what the buy
/// reported filled is refused for held quantity; it rests at once for what the broker holds,
/// and the ledger is capped to that. When BTC then falls 1.5 % (the daemon's stop-loss 0.75 %,
/// the resting stop 2 %), the stop-loss sells what is held in that iteration, once.
#[test]
fn a_coins_stop_refused_for_its_fee_rests_at_what_the_broker_holds() {
    let (_scratch, fake, mut cfg, clock) = setup("coinfee");
    cfg.bots.cryptobot.as_mut().unwrap().exits.broker_stop_pct = Some(2.0);
    fake.lock().coin_fee = Some(0.0025);
    let mut o = open(&fake, &cfg, &clock);
    assert_eq!(o.run_iteration().orders_submitted, 2, "both entries: {:?}", posts(&fake));
    o.run_iteration();
    let stops: Vec<Value> =
        posts(&fake).into_iter().filter(|b| b["symbol"] == "BTC/USD" && b["type"] == "stop_limit").collect();
    assert_eq!(stops.len(), 2, "refused for 0.000829, then placed for what is held: {stops:?}");
    assert_eq!(stops[0]["qty"], "0.000829");
    assert_eq!(stops[1]["qty"], "0.000826927", "0.000829 less 0.25 %, rounded down");
    assert_eq!(stops[1]["stop_price"], "59005.8", "60210 less 2 %");
    let resting = fake
        .lock()
        .orders
        .iter()
        .filter(|x| x["symbol"] == "BTC/USD" && x["type"] == "stop_limit" && x["status"] == "accepted")
        .count();
    assert_eq!(resting, 1, "one stop rests");
    let owned = o.state().owned_positions().unwrap();
    let btc = owned.iter().find(|p| p.symbol == "BTC/USD").unwrap();
    assert_eq!(btc.qty.to_string(), "0.000826927", "the ledger capped to what the broker holds (rounded down)");
    // Resting, it is left alone.
    let before = posts(&fake).len();
    o.run_iteration();
    assert_eq!(posts(&fake).len(), before, "{:?}", posts(&fake));
    // BTC falls 1.5 %: the daemon's own stop-loss is due, the resting stop (2 %) is not reached.
    {
        let mut st = fake.lock();
        st.clock["timestamp"] = LATER.into();
        let m = st.market.as_mut().unwrap();
        m.quotes.insert("BTC/USD".into(), quote(LATER, 59_300.0, 59_310.0));
        m.quotes.insert("AAPL".into(), quote(LATER, 193.00, 193.02));
        st.fill_prices.insert("BTC/USD".into(), "59300".into());
    }
    clock.set(ts(LATER));
    o.run_iteration();
    let sells = own_sells(&fake, "BTC/USD");
    assert_eq!(sells.len(), 1, "sold by the stop-loss the iteration it is due: {:?}", posts(&fake));
    assert_eq!(sells[0]["qty"], "0.000826927", "what is held, not what the buy reported");
    assert!(fake.lock().positions.iter().all(|p| p["symbol"] != "BTCUSD"), "{:?}", fake.lock().positions);
    assert!(fake.lock().min_by_symbol.get("BTCUSD").is_none_or(|m| *m >= 0.0), "never short");
    o.run_iteration();
    assert_eq!(own_sells(&fake, "BTC/USD").len(), 1, "never sold twice");
}

/// Issue 31, case 3: a slow broker. The stop-loss is due while the stop rests; the stop's cancel
/// and its read-back both time out (each is processed by the broker after the client gave up).
/// The exit goes all the same — Alpaca would refuse it while the stop still held the shares — so
/// the position is sold in that iteration, once, and never left with neither a stop nor its exit.
#[test]
fn a_slow_broker_that_drops_the_stops_cancel_answer_still_gets_the_exit() {
    use std::time::Duration;
    use support::fake_alpaca::Fault;
    let (_scratch, fake, cfg, clock) = setup("slow");
    let mut o = open(&fake, &cfg, &clock);
    enter_and_protect(&fake, &mut o);
    let stop_id = posts(&fake)[2]["client_order_id"].as_str().unwrap().to_string();
    {
        let mut st = fake.lock();
        // 0.55 % below the entry at 193.02: the daemon's 0.5 % stop-loss is due, the resting 1 % stop
        // (191.08) is not touched.
        st.clock["timestamp"] = LATER.into();
        st.market.as_mut().unwrap().quotes.insert("AAPL".into(), quote(LATER, 191.95, 191.97));
        st.market.as_mut().unwrap().quotes.insert("BTC/USD".into(), quote(LATER, 60_200.0, 60_210.0));
        st.fill_prices.insert("AAPL".into(), "191.95".into());
    }
    clock.set(ts(LATER));
    let slow = || vec![Fault::Delay(Duration::from_millis(800)); 6];
    fake.fault("DELETE", "/v2/orders/", slow());
    fake.fault("GET", "/v2/orders:by_client_order_id", slow());
    o.run_iteration();
    // Give the delayed requests time to be processed, as the broker would.
    std::thread::sleep(Duration::from_millis(2000));
    let sells = own_sells(&fake, "AAPL");
    assert_eq!(sells.len(), 1, "the exit went out in the iteration it was due: {:?}", posts(&fake));
    assert_eq!(sells[0]["type"], "market");
    {
        let st = fake.lock();
        let stop = st.orders.iter().find(|x| x["client_order_id"] == stop_id.as_str()).unwrap();
        assert_eq!(stop["status"], "canceled", "the slow cancel was processed");
        assert!(st.positions.iter().all(|p| p["symbol"] != "AAPL"), "sold: {:?}", st.positions);
        assert!(st.min_by_symbol.get("AAPL").is_none_or(|m| *m >= 0.0), "never short");
    }
    // The broker fast again: the ledger learns both, and nothing more is sold or placed for AAPL.
    fake.lock().faults.clear();
    o.run_iteration();
    o.run_iteration();
    assert_eq!(own_sells(&fake, "AAPL").len(), 1, "never sold twice");
    assert!(o.state().owned_positions().unwrap().iter().all(|p| p.symbol != "AAPL"));
    let stop = o.state().order(&stop_id).unwrap().unwrap();
    assert_eq!(stop.status.as_str(), "canceled");
    let stops_after = posts(&fake).into_iter().filter(|b| b["symbol"] == "AAPL" && b["type"] == "stop").count();
    assert_eq!(stops_after, 1, "no stop placed again for a position that is gone");
}

/// Issue 31, case 5: a position whose bot no longer trades its symbol (the operator changed
/// `mom_AAPL`'s ticker to MSFT and its time stop from 25 to 1 minute, then restarted or
/// reloaded) keeps the exit rules it was opened with: the new 1-minute time stop never sells
/// AAPL; the stored 25-minute one does, on time.
#[test]
fn an_orphan_keeps_the_rules_it_was_opened_with_not_its_bots_new_ones() {
    let (_scratch, fake, cfg, clock) = setup("orphan-rules");
    let mut o = open(&fake, &cfg, &clock);
    enter_and_protect(&fake, &mut o);
    drop(o);
    let mut changed = cfg.clone();
    changed.bots.momentum_bots[0].ticker = "MSFT".into();
    changed.bots.momentum_bots[0].exits.time_stop_minutes = Some(1);
    let move_to = |t: Timestamp| {
        broker_at(&fake, &t.to_string());
        clock.set(t);
    };
    let mut o = open(&fake, &changed, &clock);
    for minute in [2, 5, 24] {
        move_to(minutes_after_now(minute));
        o.run_iteration();
        assert!(own_sells(&fake, "AAPL").is_empty(), "sold at minute {minute} by a rule it was not opened with");
    }
    move_to(minutes_after_now(26));
    o.run_iteration();
    let sells = own_sells(&fake, "AAPL");
    assert_eq!(sells.len(), 1, "the stored 25-minute time stop sells it: {:?}", posts(&fake));
    let rec = o.state().order(sells[0]["client_order_id"].as_str().unwrap()).unwrap().unwrap();
    assert_eq!(rec.rule.as_deref(), Some("time_stop"));
    move_to(minutes_after_now(27));
    o.run_iteration();
    assert_eq!(own_sells(&fake, "AAPL").len(), 1, "never sold twice");
    assert!(fake.lock().min_by_symbol.get("AAPL").is_none_or(|m| *m >= 0.0), "never short");
}

/// Issue 31, case 4: the Pi's clock steps back two hours (an NTP correction) and the daemon
/// restarts. The broker says 15:56 New York, a minute past `manage_until` (15:55), the close at
/// 16:00; the local clock says 13:56. The skew is measured at the first reading of the broker's
/// clock; from then on the market's time is the broker's: AAPL is sold by `manage_until` within
/// two iterations, before the close, and the broker's clock is not asked every iteration.
#[test]
fn a_clock_stepped_back_two_hours_still_sells_by_manage_until_before_the_close() {
    let (_scratch, fake, mut cfg, clock) = setup("clock-step");
    cfg.bots.momentum_bots[0].exits.time_stop_minutes = None;
    let mut o = open(&fake, &cfg, &clock);
    enter_and_protect(&fake, &mut o);
    drop(o);
    let broker_now = "2026-11-25T20:56:00Z";
    {
        let mut st = fake.lock();
        st.clock = json!({"timestamp": broker_now, "is_open": true, "next_open": "2026-11-26T14:30:00Z",
                          "next_close": "2026-11-25T21:00:00Z"});
        let m = st.market.as_mut().unwrap();
        m.quotes.insert("AAPL".into(), quote(broker_now, 193.00, 193.02));
        m.quotes.insert("BTC/USD".into(), quote(broker_now, 60_200.0, 60_210.0));
    }
    clock.set(ts("2026-11-25T18:56:00Z"));
    let clocks_before = fake.count("GET", "/v2/clock");
    let mut o = open(&fake, &cfg, &clock);
    o.run_iteration();
    clock.set(ts("2026-11-25T18:57:00Z"));
    o.run_iteration();
    let sells = own_sells(&fake, "AAPL");
    assert_eq!(sells.len(), 1, "sold by manage_until on the broker's clock: {:?}", posts(&fake));
    let rec = o.state().order(sells[0]["client_order_id"].as_str().unwrap()).unwrap().unwrap();
    assert_eq!(rec.rule.as_deref(), Some("manage_until"));
    for second in [5, 10, 15, 20] {
        clock.set(ts(&format!("2026-11-25T18:57:{second:02}Z")));
        o.run_iteration();
    }
    // Read at the start, then once a minute while the clocks disagree (issue 33: to see them
    // agree again), never every iteration.
    assert!(fake.count("GET", "/v2/clock") - clocks_before <= 2, "the broker's clock is read once a minute at most");
    assert_eq!(own_sells(&fake, "AAPL").len(), 1, "never sold twice");
    assert!(fake.lock().min_by_symbol.get("AAPL").is_none_or(|m| *m >= 0.0), "never short");
}

/// Case 4 on a daemon that keeps running: its broker clock was read at the open and is cached
/// until the close; at 15:50 New York the Pi's clock steps back two hours. The local clock going
/// back has the broker's read again, and `manage_until` sells AAPL on the broker's time, before
/// the close.
#[test]
fn a_running_daemons_clock_stepped_back_still_sells_by_manage_until() {
    let (_scratch, fake, mut cfg, clock) = setup("clock-step-running");
    cfg.bots.momentum_bots[0].exits.time_stop_minutes = None;
    let mut o = open(&fake, &cfg, &clock);
    enter_and_protect(&fake, &mut o);
    let at = |t: &str, local: &str| {
        broker_at(&fake, t);
        clock.set(ts(local));
    };
    at("2026-11-25T20:50:00Z", "2026-11-25T20:50:00Z");
    o.run_iteration();
    assert!(own_sells(&fake, "AAPL").is_empty(), "15:50: not yet manage_until");
    // The step: the broker says 15:56, the local clock 13:56.
    at("2026-11-25T20:56:00Z", "2026-11-25T18:56:00Z");
    o.run_iteration();
    at("2026-11-25T20:57:00Z", "2026-11-25T18:57:00Z");
    o.run_iteration();
    let sells = own_sells(&fake, "AAPL");
    assert_eq!(sells.len(), 1, "sold by manage_until on the broker's clock: {:?}", posts(&fake));
    let rec = o.state().order(sells[0]["client_order_id"].as_str().unwrap()).unwrap().unwrap();
    assert_eq!(rec.rule.as_deref(), Some("manage_until"));
    at("2026-11-25T20:58:00Z", "2026-11-25T18:58:00Z");
    o.run_iteration();
    assert_eq!(own_sells(&fake, "AAPL").len(), 1, "never sold twice");
    assert!(fake.lock().min_by_symbol.get("AAPL").is_none_or(|m| *m >= 0.0), "never short");
}

/// A stop the broker keeps refusing for another reason is tried again on the exits' backoff and
/// alerted once, a minute after its first refusal, by its own name (`protection_stuck`, never
/// `exit_stuck`); meanwhile the daemon's own stop-loss stays in force and sells when it is due.
#[test]
fn a_stop_refused_for_another_reason_is_alerted_once_by_its_name_and_the_stop_loss_still_sells() {
    use support::fake_alpaca::Fault;
    support::events::capture();
    let (_scratch, fake, cfg, clock) = setup("stop-stuck");
    let mut o = open(&fake, &cfg, &clock);
    assert_eq!(o.run_iteration().orders_submitted, 2, "both entries: {:?}", posts(&fake));
    let refuse = || Fault::Status {
        status: 422,
        body: r#"{"code":42210000,"message":"invalid stop_price"}"#.into(),
        reset: None,
    };
    // The AAPL stop is refused five times; BTC's (placed second, the first time) passes.
    fake.fault("POST", "/v2/orders", vec![refuse(), Fault::Pass, refuse(), refuse(), refuse(), refuse()]);
    let start = ts(NOW).as_second();
    for seconds in [0, 6, 17, 38, 79] {
        clock.set(Timestamp::from_second(start + seconds).unwrap());
        o.run_iteration();
    }
    let stops = posts(&fake).into_iter().filter(|b| b["symbol"] == "AAPL" && b["type"] == "stop").count();
    assert_eq!(stops, 5, "tried again on the backoff, not every iteration: {:?}", posts(&fake));
    let stuck = support::events::named("protection_stuck", "symbol", "AAPL");
    assert_eq!(stuck.len(), 1, "alerted once, a minute after the first refusal: {stuck:?}");
    assert!(stuck[0]["detail"].contains("invalid stop_price"), "{stuck:?}");
    assert!(support::events::named("exit_stuck", "symbol", "AAPL").is_empty(), "a stop is no exit");
    // The daemon's own stop-loss is due: it sells at once, whatever the stop's refusals.
    {
        let mut st = fake.lock();
        let t = Timestamp::from_second(start + 120).unwrap().to_string();
        st.market.as_mut().unwrap().quotes.insert("AAPL".into(), quote(&t, 191.95, 191.97));
        st.fill_prices.insert("AAPL".into(), "191.95".into());
    }
    clock.set(Timestamp::from_second(start + 120).unwrap());
    o.run_iteration();
    assert_eq!(own_sells(&fake, "AAPL").len(), 1, "{:?}", posts(&fake));
    assert!(o.state().owned_positions().unwrap().iter().all(|p| p.symbol != "AAPL"));
}

/// Case 5 as the operator meets it, by `reload`: `mom_AAPL`'s ticker becomes IBM and its time stop
/// 1 minute instead of 25, while it holds AAPL. AAPL is the keeper's, closed by the 25-minute time
/// stop it was opened with, never by the bot's new one.
#[test]
fn an_orphan_made_by_reload_keeps_the_rules_it_was_opened_with() {
    let (scratch, fake, _cfg, clock) = setup("orphan-reload");
    let (dir, db) = config_files(scratch.path());
    let cfg = Config::load(&dir).unwrap();
    let mut o = open(&fake, &cfg, &clock);
    let (s, b) = Config::read_texts(&dir).unwrap();
    o.keep_texts(s, b);
    o.run_iteration();
    assert!(o.state().owned_positions().unwrap().iter().any(|p| p.symbol == "AAPL"), "{:?}", posts(&fake));

    config_files::edit(
        &dir,
        "bots.yaml",
        &[("    ticker: AAPL", "    ticker: IBM"), ("time_stop_minutes: 25", "time_stop_minutes: 1")],
    );
    State::open(&db).unwrap().kv_set("reload_request", "r1", ts(NOW)).unwrap();
    o.between_iterations();
    let answer: Value = serde_json::from_str(&o.state().kv_get("reload_result").unwrap().unwrap()).unwrap();
    assert_eq!(answer["applied"], true, "{answer}");

    for minute in [2, 5, 24, 26, 27] {
        let t = minutes_after_now(minute);
        broker_at(&fake, &t.to_string());
        clock.set(t);
        o.run_iteration();
        let sold = own_sells(&fake, "AAPL").len();
        assert_eq!(sold, usize::from(minute >= 26), "minute {minute}: {:?}", posts(&fake));
    }
    let sells = own_sells(&fake, "AAPL");
    let rec = o.state().order(sells[0]["client_order_id"].as_str().unwrap()).unwrap().unwrap();
    assert_eq!(rec.rule.as_deref(), Some("time_stop"));
    assert!(fake.lock().min_by_symbol.get("AAPL").is_none_or(|m| *m >= 0.0), "never short");
}

/// Issue 32, case 4: a fill report is believed only when it is whole. AAPL's buy is reported
/// filled at a price of "0": nothing is booked (never at 0), the entry stays in flight and is
/// read again, `fill_unpriced` once; the bot does not buy again meanwhile. When the broker's
/// report carries the price, the fill is booked at it.
#[test]
fn a_fill_reported_at_a_price_of_zero_is_never_booked_and_waits_for_its_price() {
    support::events::capture();
    let (_scratch, fake, cfg, clock) = setup("price-zero");
    fake.lock().fill_prices.remove("AAPL");
    let mut o = open(&fake, &cfg, &clock);
    o.run_iteration();
    let buy = posts(&fake).into_iter().find(|b| b["symbol"] == "AAPL").unwrap();
    let id = buy["client_order_id"].as_str().unwrap().to_string();
    assert_eq!(
        fake.lock().orders.iter().find(|x| x["client_order_id"] == id.as_str()).unwrap()["filled_avg_price"],
        "0"
    );
    for _ in 0..2 {
        o.run_iteration();
        assert!(o.state().owned_positions().unwrap().iter().all(|p| p.symbol != "AAPL"), "nothing booked at 0");
        let rec = o.state().order(&id).unwrap().unwrap();
        assert!(!rec.status.is_final(), "kept in flight: {:?}", rec.status);
    }
    assert_eq!(support::events::named("fill_unpriced", "client_order_id", &id).len(), 1, "said once");
    assert_eq!(posts(&fake).iter().filter(|b| b["symbol"] == "AAPL" && b["side"] == "buy").count(), 1, "no second buy");
    // The broker's report is whole again: booked at its price.
    {
        let mut st = fake.lock();
        let i = st.orders.iter().position(|x| x["client_order_id"] == id.as_str()).unwrap();
        st.orders[i]["filled_avg_price"] = "193.02".into();
    }
    o.run_iteration();
    let owned = o.state().owned_positions().unwrap();
    let aapl = owned.iter().find(|p| p.symbol == "AAPL").unwrap();
    assert_eq!((aapl.qty.to_string(), aapl.avg_entry_price.to_string()), ("51".into(), "193.02".into()));
}

/// Issue 32, case 4: a report that says `filled` with `filled_qty: null` is not final with
/// nothing filled: the entry stays in flight, and the bot does not buy again.
#[test]
fn a_fill_report_without_its_filled_quantity_is_not_final_and_nothing_is_bought_again() {
    let (_scratch, fake, cfg, clock) = setup("qty-null");
    fake.lock().auto_fill = None;
    let mut o = open(&fake, &cfg, &clock);
    o.run_iteration();
    let buy = posts(&fake).into_iter().find(|b| b["symbol"] == "AAPL").unwrap();
    let id = buy["client_order_id"].as_str().unwrap().to_string();
    {
        let mut st = fake.lock();
        let i = st.orders.iter().position(|x| x["client_order_id"] == id.as_str()).unwrap();
        st.book_fill(i, "193.02");
        st.orders[i]["filled_qty"] = Value::Null;
    }
    for minute in 1..4 {
        clock.set(minutes_after_now(minute));
        o.run_iteration();
        let rec = o.state().order(&id).unwrap().unwrap();
        assert!(!rec.status.is_final(), "minute {minute}: kept in flight: {:?}", rec.status);
    }
    assert_eq!(posts(&fake).iter().filter(|b| b["symbol"] == "AAPL" && b["side"] == "buy").count(), 1, "no second buy");
}

/// Issue 32, case 5: a `reload` that renames a bot holding a position (`mom_AAPL`, holding AAPL,
/// becomes `mom_AAPL_v2`) is refused whole, naming both ids and what is held: the new id would
/// start with no position and buy AAPL again. Nothing is bought twice.
#[test]
fn a_reload_that_renames_a_bot_holding_a_position_is_refused_and_nothing_is_bought_twice() {
    let (scratch, fake, _cfg, clock) = setup("rename-reload");
    let (dir, db) = config_files(scratch.path());
    let cfg = Config::load(&dir).unwrap();
    let mut o = open(&fake, &cfg, &clock);
    let (s, b) = Config::read_texts(&dir).unwrap();
    o.keep_texts(s, b);
    o.run_iteration();
    assert!(o.state().owned_positions().unwrap().iter().any(|p| p.symbol == "AAPL" && p.bot == "mom_AAPL"));

    config_files::edit(&dir, "bots.yaml", &[("  - bot_id: mom_AAPL\n", "  - bot_id: mom_AAPL_v2\n")]);
    State::open(&db).unwrap().kv_set("reload_request", "r1", ts(NOW)).unwrap();
    o.between_iterations();
    let answer: Value = serde_json::from_str(&o.state().kv_get("reload_result").unwrap().unwrap()).unwrap();
    assert_eq!(answer["applied"], false, "{answer}");
    let detail = answer["detail"].as_str().unwrap();
    assert!(detail.contains("mom_AAPL_v2 would trade AAPL, which mom_AAPL holds (51)"), "{detail}");
    assert_eq!(o.config().bots.momentum_bots[0].bot_id, "mom_AAPL", "the running configuration is kept");
    for minute in 1..4 {
        let t = minutes_after_now(minute);
        {
            let mut st = fake.lock();
            st.clock["timestamp"] = t.to_string().into();
            let m = st.market.as_mut().unwrap();
            m.quotes.insert("AAPL".into(), quote(&t.to_string(), 193.00, 193.02));
        }
        clock.set(t);
        o.run_iteration();
    }
    let buys = posts(&fake).into_iter().filter(|b| b["symbol"] == "AAPL" && b["side"] == "buy").count();
    assert_eq!(buys, 1, "bought once: {:?}", posts(&fake));
}

/// Issue 32, case 5 by a restart: the daemon restarts with `mom_AAPL` renamed `mom_AAPL_v2`
/// while AAPL is held under the old id. The new id's entry on AAPL is refused (another bot id
/// holds it; Alpaca nets positions per symbol), so nothing is bought on top; the old position is
/// the keeper's, closed by its own rules.
#[test]
fn after_a_restart_with_a_renamed_bot_nothing_is_bought_on_top_of_the_old_ids_position() {
    let (_scratch, fake, cfg, clock) = setup("rename-restart");
    let mut o = open(&fake, &cfg, &clock);
    o.run_iteration();
    assert!(o.state().owned_positions().unwrap().iter().any(|p| p.symbol == "AAPL"));
    drop(o);
    let mut renamed = cfg.clone();
    renamed.bots.momentum_bots[0].bot_id = "mom_AAPL_v2".into();
    let mut o = open(&fake, &renamed, &clock);
    for minute in 1..4 {
        let t = minutes_after_now(minute);
        broker_at(&fake, &t.to_string());
        clock.set(t);
        o.run_iteration();
    }
    let buys = posts(&fake).into_iter().filter(|b| b["symbol"] == "AAPL" && b["side"] == "buy").count();
    assert_eq!(buys, 1, "bought once: {:?}", posts(&fake));
    let activity = o.state().bot_activity().unwrap();
    let v2 = activity.iter().find(|a| a.bot == "mom_AAPL_v2").unwrap();
    assert!(v2.reason.as_deref().unwrap_or_default().contains("mom_AAPL holds 51"), "{v2:?}");
}

/// Issue 32, case 1: a ledger restored from a backup taken before the entries. The broker holds
/// both positions and their resting stops under ids the ledger never drew. Restarted on it, the
/// daemon halts entries (`ledger_behind`, naming the orders and what the broker holds) before any
/// entry, and buys nothing on top; `recover` lists them, `recover --confirm` books them under
/// their bots, and the next start lifts the halt and sends nothing (the positions are owned, their
/// stops are theirs).
#[test]
fn a_restored_ledger_halts_on_the_orders_it_lost_buys_nothing_and_recover_books_them() {
    use std::process::Command;
    const BIN: &str = env!("CARGO_BIN_EXE_trading-hydra");
    support::events::capture();
    let (scratch, fake, cfg, clock) = setup("restore");
    let (dir, db) = config_files(scratch.path());
    assert_eq!(db, cfg.settings.system.state_db_path);
    fake.lock().order_time = Some(NOW.into());
    // The backup: the ledger before anything was traded, copied by `State::backup_to`.
    let backup = scratch.path().join("backup.db");
    State::open(&db).unwrap().backup_to(&backup).unwrap();
    let mut o = open(&fake, &cfg, &clock);
    enter_and_protect(&fake, &mut o);
    drop(o);
    let at_broker = |fake: &FakeAlpaca| {
        let st = fake.lock();
        let mut p: Vec<(String, String)> = st
            .positions
            .iter()
            .map(|p| (p["symbol"].as_str().unwrap().to_string(), p["qty"].as_str().unwrap().to_string()))
            .collect();
        p.sort();
        p
    };
    let held = at_broker(&fake);
    assert_eq!(held, [("AAPL".to_string(), "51".to_string()), ("BTCUSD".to_string(), "0.000829".to_string())]);
    let sent = posts(&fake);
    assert_eq!(sent.len(), 4, "two entries, two stops");

    // Restored over the ledger, with the daemon stopped.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(&backup, &db).unwrap();
    clock.set(ts(LATER));
    broker_at(&fake, LATER);
    let mut o = open(&fake, &cfg, &clock);
    let s = o.run_iteration();
    assert_eq!((s.orders_submitted, s.entries_allowed), (0, false), "{s:?}");
    assert!(s.halts.contains(&trading_hydra::core::halt::HaltReason::LedgerBehind), "{s:?}");
    let halt = o.state().active_halts().unwrap().into_iter().find(|h| h.reason.as_str() == "ledger_behind").unwrap();
    for b in &sent {
        assert!(halt.detail.contains(b["client_order_id"].as_str().unwrap()), "{}", halt.detail);
    }
    assert!(
        halt.detail.contains("AAPL 51") && halt.detail.contains("never drew") && halt.detail.contains("recover"),
        "{}",
        halt.detail
    );
    let first_id = sent[0]["client_order_id"].as_str().unwrap();
    let said: Vec<_> = support::events::named("ledger_behind", "orders", "4")
        .into_iter()
        .filter(|e| e["client_order_ids"].contains(first_id))
        .collect();
    assert_eq!(said.len(), 1, "said once");
    // Minutes later, still nothing bought on top.
    for m in 2..4 {
        let t = minutes_after_now(m).to_string();
        clock.set(ts(&t));
        broker_at(&fake, &t);
        assert_eq!(o.run_iteration().orders_submitted, 0);
    }
    assert_eq!(posts(&fake).len(), 4, "{:?}", &posts(&fake)[4..]);
    assert_eq!(at_broker(&fake), held, "the broker never holds more than the daemon meant");
    assert_eq!(
        said.len(),
        support::events::named("ledger_behind", "client_order_ids", &said[0]["client_order_ids"]).len()
    );
    drop(o);

    // `recover` lists them and changes nothing; `--confirm` books them.
    let recover = |confirm: bool| {
        let mut c = Command::new(BIN);
        fake.point(c.current_dir(scratch.path()).args(["recover", "--config", dir.to_str().unwrap()]));
        if confirm {
            c.arg("--confirm");
        }
        c.output().unwrap()
    };
    let out = recover(false);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("4 order(s)") && text.contains(first_id) && text.contains("--confirm"), "{text}");
    assert!(State::open(&db).unwrap().all_orders().unwrap().is_empty(), "listing books nothing");
    let out = recover(true);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("booked 4 order(s)"), "{text}");
    {
        let state = State::open(&db).unwrap();
        let mut owned: Vec<(String, String, String)> =
            state.owned_positions().unwrap().into_iter().map(|p| (p.bot, p.symbol, p.qty.to_string())).collect();
        owned.sort();
        assert_eq!(
            owned,
            [
                ("crypto_core".to_string(), "BTC/USD".to_string(), "0.000829".to_string()),
                ("mom_AAPL".to_string(), "AAPL".to_string(), "51".to_string())
            ]
        );
        let stops: Vec<_> = state
            .unfinished_orders()
            .unwrap()
            .into_iter()
            .filter(|r| r.rule.as_deref() == Some("broker_stop"))
            .collect();
        assert_eq!(stops.len(), 2, "the resting stops are the positions' own again");
    }

    // Started again: the halt lifts at the first check, and nothing is sent — no entry on top,
    // no second stop.
    let t = minutes_after_now(5).to_string();
    clock.set(ts(&t));
    broker_at(&fake, &t);
    let mut o = open(&fake, &cfg, &clock);
    let s = o.run_iteration();
    assert!(!s.halts.contains(&trading_hydra::core::halt::HaltReason::LedgerBehind), "{s:?}");
    assert_eq!(s.orders_submitted, 0, "{:?}", &posts(&fake)[4..]);
    assert_eq!(o.run_iteration().orders_submitted, 0);
    assert_eq!(at_broker(&fake), held);
}

/// Issue 32, case 6: $1,500 withdrawn with both positions held and protected (equity 100,000 →
/// 98,500, prices unchanged) is no loss: no halt, no cancel, nothing sold; the day's reference
/// moves with it, once, across a restart too. A $5,000 deposit then does not widen the day's
/// loss limit: a real loss of $1,100 after it (1.06 % of the new reference, 2.4 % up on the
/// old) halts.
#[test]
fn a_withdrawal_is_no_loss_and_a_deposit_does_not_widen_the_days_loss_limit() {
    use trading_hydra::core::halt::HaltReason;
    support::events::capture();
    let (_scratch, fake, cfg, clock) = setup("transfer");
    let mut o = open(&fake, &cfg, &clock);
    enter_and_protect(&fake, &mut o);
    let sent = posts(&fake).len();
    let equity_at = |fake: &FakeAlpaca, equity: &str| {
        let mut st = fake.lock();
        st.account["equity"] = equity.into();
    };
    clock.set(ts(LATER));
    broker_at(&fake, LATER);
    equity_at(&fake, "98500");
    fake.transfer("20261125103030000::wd-th-case6", "CSW", "-1500", LATER);
    let s = o.run_iteration();
    assert!(s.halts.is_empty(), "{s:?}");
    assert_eq!((s.day_start_equity, s.daily_pnl_pct), (Some(98_500.0), Some(0.0)), "{s:?}");
    assert_eq!(posts(&fake).len(), sent, "nothing sold: {:?}", &posts(&fake)[sent..]);
    assert!(fake.seen().iter().all(|r| r.method != "DELETE"), "no stop cancelled");
    let said = support::events::named("transfer", "id", "20261125103030000::wd-th-case6");
    assert_eq!(said.len(), 1);
    assert_eq!((said[0]["kind"].as_str(), said[0]["amount"].as_str()), ("CSW", "-1500"));
    // Restarted: the same reference, the transfer not counted twice nor logged again.
    drop(o);
    let mut o = open(&fake, &cfg, &clock);
    let s = o.run_iteration();
    assert_eq!((s.day_start_equity, s.halts.is_empty()), (Some(98_500.0), true), "{s:?}");
    assert_eq!(support::events::named("transfer", "id", "20261125103030000::wd-th-case6").len(), 1);

    // $5,000 deposited, then a real loss of $1,100.
    let t = minutes_after_now(2).to_string();
    clock.set(ts(&t));
    broker_at(&fake, &t);
    equity_at(&fake, "103500");
    fake.transfer("20261125103230000::dep-th-case6", "CSD", "5000", &t);
    let s = o.run_iteration();
    assert_eq!((s.day_start_equity, s.halts.is_empty()), (Some(103_500.0), true), "{s:?}");
    let t = minutes_after_now(3).to_string();
    clock.set(ts(&t));
    broker_at(&fake, &t);
    equity_at(&fake, "102400");
    let s = o.run_iteration();
    assert!(s.halts.contains(&HaltReason::DailyLoss), "a loss of 1.06 % of the day's reference: {s:?}");
    let requests = fake.seen().iter().filter(|r| r.path == "/v2/account/activities").count();
    assert!(requests <= 6, "the activities are asked at start-up, on a breach and with each reconcile: {requests}");
}

/// Issue 32, case 3: AAPL splits 2-for-1 while the daemon holds 51 bought at 193.02 with its stop
/// resting at 191.08. Alpaca shows 102 at 96.51 and adjusts the resting stop to 102 at 95.54; the
/// quotes halve. The position, its best price and its stop's record are re-based
/// (`corporate_action`), nothing is cancelled or sold, nothing is booked as a loss, and the stop
/// stays the position's own. Before, the halved quote read as a 50 % loss: the stop was cancelled
/// and 51 sold as a `stop_loss`, the other 51 left unowned.
#[test]
fn a_split_rebases_the_position_and_its_stop_and_sells_nothing() {
    support::events::capture();
    let (_scratch, fake, cfg, clock) = setup("split");
    let mut o = open(&fake, &cfg, &clock);
    enter_and_protect(&fake, &mut o);
    let sent = posts(&fake).len();
    let stop_id = posts(&fake)[2]["client_order_id"].as_str().unwrap().to_string();
    {
        let mut st = fake.lock();
        st.clock["timestamp"] = LATER.into();
        for p in st.positions.iter_mut().filter(|p| p["symbol"] == "AAPL") {
            p["qty"] = "102".into();
            p["avg_entry_price"] = "96.51".into();
        }
        for o in st.orders.iter_mut().filter(|o| o["client_order_id"] == stop_id.as_str()) {
            o["qty"] = "102".into();
            o["stop_price"] = "95.54".into();
        }
        let m = st.market.as_mut().unwrap();
        m.quotes.insert("AAPL".into(), quote(LATER, 96.50, 96.52));
        m.quotes.insert("BTC/USD".into(), quote(LATER, 60_200.0, 60_210.0));
    }
    clock.set(ts(LATER));
    for _ in 0..2 {
        let s = o.run_iteration();
        assert_eq!(s.orders_submitted, 0, "{:?}", &posts(&fake)[sent..]);
    }
    assert_eq!(posts(&fake).len(), sent);
    assert!(fake.seen().iter().all(|r| r.method != "DELETE"), "the stop was not cancelled");
    let aapl = o.state().owned_positions().unwrap().into_iter().find(|p| p.symbol == "AAPL").unwrap();
    assert_eq!((aapl.qty.to_string(), aapl.avg_entry_price.to_string()), ("102".to_string(), "96.51".to_string()));
    let stop = o.state().order(&stop_id).unwrap().unwrap();
    assert_eq!((stop.qty.as_deref(), stop.stop_price.as_deref()), (Some("102"), Some("95.54")));
    assert!(!stop.status.is_final(), "{stop:?}");
    let date = jiff::civil::date(2026, 11, 25);
    assert_eq!(o.state().bot_day("mom_AAPL", date).unwrap().realized_pnl, 0.0, "no loss booked");
    // (The events of the tests of this file are shared: the ticker test's goes `to` AAPX.)
    let said = support::events::named("corporate_action", "to", "AAPL");
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(said[0]["split"], "2-for-1");
}

/// Issue 32, case 3 (a new ticker): overnight AAPL's 51 shares bought at 193.02 become 5 of
/// `AAPX` at 1930.20 — a 1-for-10 reverse split with a new symbol, the tenth of a share paid in
/// cash. At the start the position follows its holding to the new ticker with its exit rules (an
/// orphan now: its bot trades AAPL), re-based; nothing is sold, and it is not read as closed by
/// hand.
#[test]
fn a_reverse_split_to_a_new_ticker_moves_the_position_with_its_rules() {
    support::events::capture();
    let (_scratch, fake, cfg, clock) = setup("ticker");
    let mut o = open(&fake, &cfg, &clock);
    enter_and_protect(&fake, &mut o);
    drop(o);
    let sent = posts(&fake).len();
    {
        let mut st = fake.lock();
        st.clock["timestamp"] = LATER.into();
        for p in st.positions.iter_mut().filter(|p| p["symbol"] == "AAPL") {
            p["symbol"] = "AAPX".into();
            p["qty"] = "5".into();
            p["avg_entry_price"] = "1930.2".into();
        }
        // The old symbol's resting stop is cancelled by the broker.
        for o in st.orders.iter_mut().filter(|o| o["symbol"] == "AAPL" && o["type"] == "stop") {
            o["status"] = "canceled".into();
        }
        st.market.as_mut().unwrap().quotes.insert("BTC/USD".into(), quote(LATER, 60_200.0, 60_210.0));
    }
    clock.set(ts(LATER));
    let mut o = open(&fake, &cfg, &clock);
    let s = o.run_iteration();
    assert_eq!(s.orders_submitted, 0, "{:?}", &posts(&fake)[sent..]);
    let owned: Vec<(String, String, String, String)> = o
        .state()
        .owned_positions()
        .unwrap()
        .into_iter()
        .filter(|p| p.bot == "mom_AAPL")
        .map(|p| (p.bot, p.symbol, p.qty.to_string(), p.avg_entry_price.to_string()))
        .collect();
    assert_eq!(owned, [("mom_AAPL".to_string(), "AAPX".to_string(), "5".to_string(), "1930.2".to_string())]);
    assert!(o.state().position_rules("mom_AAPL", "AAPX").unwrap().is_some(), "its exit rules moved with it");
    let said = support::events::named("corporate_action", "to", "AAPX");
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(said[0]["split"], "1-for-10");
    assert!(support::events::named("reconcile", "symbol", "AAPL").is_empty(), "not read as closed by hand");
    assert_eq!(o.run_iteration().orders_submitted, 0);
}

/// Issue 33, what the broker blocks: with the account's `crypto_status` not `ACTIVE` the crypto
/// bot's entry is not tried (its reason says why, `broker_blocks`), the stock bot's goes; once
/// the flag is `ACTIVE` again the crypto entry goes too.
#[test]
fn a_crypto_status_other_than_active_blocks_crypto_entries_only_and_clears() {
    let (_scratch, fake, cfg, clock) = setup("crypto-status");
    fake.lock().account["crypto_status"] = "INACTIVE".into();
    let mut o = open(&fake, &cfg, &clock);
    let s = o.run_iteration();
    assert!(s.entries_allowed && s.halts.is_empty(), "no halt: {s:?}");
    let sent: Vec<String> = posts(&fake).iter().map(|b| b["symbol"].as_str().unwrap().to_string()).collect();
    assert_eq!(sent, ["AAPL"], "the stock entry only");
    let report = trading_hydra::services::status::gather(o.state(), ts(NOW), 5).unwrap();
    let crypto = report.bots.iter().find(|b| b.bot == "crypto_core").unwrap();
    assert!(
        crypto.reason.as_deref().unwrap_or_default().contains("crypto_status for the account is INACTIVE"),
        "{crypto:?}"
    );
    fake.lock().account["crypto_status"] = "ACTIVE".into();
    o.run_iteration();
    assert!(posts(&fake).iter().any(|b| b["symbol"] == "BTC/USD" && b["side"] == "buy"), "{:?}", posts(&fake));
}

/// The live round trips (`trading-hydra trades`, the real binary on the ledger): each trade with
/// the broker's fill times — the protective stop filled hours after the entry, while the daemon
/// was gone — its fill prices, the rule that closed it, and its slippage against the prices the
/// orders were decided at (the quote's mid for the entry, the stop's trigger for the stop).
#[test]
fn the_live_round_trips_show_the_brokers_fill_times_prices_and_slippage() {
    const AFTERNOON: &str = "2026-11-25T18:15:00Z";
    let (scratch, fake, cfg, clock) = setup("trips");
    // The broker's fill time, twenty seconds before the daemon reads the answer.
    fake.lock().fill_time = Some("2026-11-25T15:29:40Z".into());
    let mut o = open(&fake, &cfg, &clock);
    enter_and_protect(&fake, &mut o);
    drop(o);
    {
        let mut st = fake.lock();
        st.fill_time = Some("2026-11-25T18:12:45Z".into());
        st.clock["timestamp"] = AFTERNOON.into();
        let m = st.market.as_mut().unwrap();
        m.quotes.insert("AAPL".into(), quote(AFTERNOON, 190.50, 190.52));
        m.quotes.insert("BTC/USD".into(), quote(AFTERNOON, 59_000.0, 59_010.0));
        st.trigger_stops();
    }
    clock.set(ts(AFTERNOON));
    let mut o = open(&fake, &cfg, &clock);
    o.run_iteration();
    assert!(o.state().owned_positions().unwrap().is_empty());
    drop(o);

    let dir = config_for(scratch.path(), &cfg, &[], &[]);
    let trades = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trading-hydra"))
            .args(["trades", "--config", dir.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let csv = trades(&["--csv"]);
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').take(15).collect()).collect();
    // bot,symbol,legs,side,qty,entry_time,entry_price,exit_time,exit_price,rule,minutes,gross_pnl,fees,pnl,slippage
    assert_eq!(
        rows,
        vec![
            // (190.50 − 193.02) × 51 = −128.52. Slippage: 0.01 over the mid of 193.00/193.02 on
            // the buy (0.51), 0.58 under the stop of 191.08 on the sell (29.58).
            vec![
                "mom_AAPL",
                "AAPL",
                "",
                "long",
                "51",
                "2026-11-25T15:29:40Z",
                "193.02",
                "2026-11-25T18:12:45Z",
                "190.5",
                "broker_stop",
                "163",
                "-128.52",
                "",
                "-128.52",
                "30.09",
            ],
            // (59,000 − 60,210) × 0.000829 = −1.00309. Slippage: 5 over the mid on the buy
            // (0.00), 607.90 under the stop on the sell (0.50).
            vec![
                "crypto_core",
                "BTC/USD",
                "",
                "long",
                "0.000829",
                "2026-11-25T15:29:40Z",
                "60210",
                "2026-11-25T18:12:45Z",
                "59000",
                "broker_stop",
                "163",
                "-1.00",
                "",
                "-1.00",
                "0.50",
            ],
        ],
        "{csv}"
    );
    // For a person: one line a trade, on the configured clock, and the total.
    let table = trades(&["--from", "2026-11-25", "--to", "2026-11-25"]);
    assert!(table.contains("2 closed, 0 open; the closed ones' P&L $-129.52"), "{table}");
    assert!(trades(&["--from", "2026-11-26"]).starts_with("no round trips in the ledger entered from 2026-11-26"));
}

/// `trading-hydra replay` of a loopback-fake day whose broker filled worse than the data: the
/// entries filled at the ask (AAPL 193.02, BTC/USD 60,210) where the backtest, on the same bars,
/// fills at the next minute's close (193.00, 60,200). The replay steps at the live loop's own
/// times, matches both trades, and shows the difference a unit and as the gap's slippage.
#[test]
fn a_replay_of_a_fake_day_shows_the_slippage_the_broker_added() {
    let (scratch, fake, mut cfg, clock) = setup("replay");
    cfg.settings.sim.slippage_bps = 0.0;
    let times = [NOW, LATER, "2026-11-25T15:32:00Z"];
    let mut o = open(&fake, &cfg, &clock);
    for (i, t) in times.iter().enumerate() {
        clock.set(ts(t));
        {
            let mut st = fake.lock();
            st.clock["timestamp"] = (*t).into();
            let m = st.market.as_mut().unwrap();
            m.quotes.insert("AAPL".into(), quote(t, 193.00, 193.02));
            m.quotes.insert("BTC/USD".into(), quote(t, 60_200.0, 60_210.0));
        }
        let s = o.run_iteration();
        assert_eq!(s.orders_submitted, if i < 2 { 2 } else { 0 }, "entries, then their stops: {:?}", posts(&fake));
    }
    drop(o);
    // The bars the fake served, and the minutes after them, flat: one file a symbol.
    let bars = scratch.path().join("bars");
    std::fs::create_dir_all(&bars).unwrap();
    for (symbol, file, start, step, volume, after) in
        [("AAPL", "AAPL.csv", 190.0, 0.2, 20_000.0, 193.00), ("BTC/USD", "BTC-USD.csv", 60_000.0, 15.0, 2.0, 60_200.0)]
    {
        let mut text = String::from("timestamp,open,high,low,close,volume\n");
        for b in rising(start, step, volume) {
            let f = |k: &str| b[k].as_f64().unwrap();
            let t = ts(b["t"].as_str().unwrap()).strftime("%Y-%m-%dT%H:%M:%SZ");
            text.push_str(&format!("{t},{},{},{},{},{}\n", f("o"), f("h"), f("l"), f("c"), f("v")));
        }
        for m in 0..5 {
            let t = ts(NOW) + jiff::SignedDuration::from_mins(m);
            text.push_str(&format!("{},{after},{after},{after},{after},1000\n", t.strftime("%Y-%m-%dT%H:%M:%SZ")));
        }
        std::fs::write(bars.join(file), text).unwrap_or_else(|e| panic!("{symbol}: {e}"));
    }
    // The bots of this day, resting their stops at 1 % (the bars hold AAPL and BTC/USD only: the
    // replay leaves out the bots of other symbols, as a backtest does).
    let dir = config_for(
        scratch.path(),
        &cfg,
        &[("slippage_bps: 2", "slippage_bps: 0")],
        &[("# broker_stop_pct: 1.0", "broker_stop_pct: 1.0"), ("# broker_stop_pct: 1.5", "broker_stop_pct: 1.0")],
    );
    let out_dir = scratch.path().join("replay");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trading-hydra"))
        .args(["replay", "2026-11-25", "--config", dir.to_str().unwrap(), "--data", bars.to_str().unwrap()])
        .args(["--out", out_dir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("3 steps (the live loop's own times); trades in both 2, only live 0"), "{text}");
    let rows: Vec<Vec<String>> = std::fs::read_to_string(out_dir.join("replay.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    // kind,bot,symbol,side,qty,live_entry_time,live_entry_price,backtest_entry_time,backtest_entry_price,entry_price_worse
    let entries: Vec<[&str; 5]> =
        rows.iter().map(|r| [r[0].as_str(), r[2].as_str(), r[6].as_str(), r[8].as_str(), r[9].as_str()]).collect();
    assert_eq!(
        entries,
        vec![["both", "AAPL", "193.02", "193", "0.020000"], ["both", "BTC/USD", "60210", "60200", "10.000000"]],
        "{rows:?}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("replay.json")).unwrap()).unwrap();
    assert_eq!(json["at_live_loop_times"], true);
    assert_eq!(json["trades_only_backtest"], 0);
    // The gap's slippage: 0.02 on 51 shares and 10 on 0.000829 BTC, lost: −1.03.
    assert_eq!(json["gap"]["slippage"], -1.03, "{json}");
}
