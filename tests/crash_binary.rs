//! Crash safety of the real binary: `trading-hydra run` with the shipped bots, against the
//! loopback fake of Alpaca in a rising market (so the momentum, options and crypto bots all
//! enter), is killed with SIGKILL at random instants and restarted on the same state database,
//! a dozen times. Afterwards every order the broker has is known to the database, no bot entered
//! a symbol twice (one position each, never doubled by a restart), and what the daemon owns is
//! what the broker holds.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use support::fake_alpaca::{FakeAlpaca, Market, live_quote, rising_until_now};
use trading_hydra::core::state::State;

const BIN: &str = env!("CARGO_BIN_EXE_trading-hydra");

fn market() -> Market {
    let mut m = Market::default();
    m.bars.insert("AAPL".into(), rising_until_now(190.0, 0.2, 20_000.0));
    m.bars.insert("SPY".into(), rising_until_now(480.0, 0.3, 50_000.0));
    m.bars.insert("BTC/USD".into(), rising_until_now(60_000.0, 15.0, 2.0));
    m.quotes.insert("AAPL".into(), live_quote(193.00, 193.02));
    m.quotes.insert("SPY".into(), live_quote(484.50, 484.52));
    m.quotes.insert("BTC/USD".into(), live_quote(60_200.0, 60_210.0));
    // A put chain three weeks out, liquid and fresh: the rules pick 470/465.
    let expiry = Timestamp::now().checked_add(jiff::SignedDuration::from_hours(24 * 21)).unwrap();
    let date = expiry.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
    for (k, delta) in [(475, 0.45), (470, 0.35), (465, 0.25), (460, 0.18)] {
        let symbol = format!("SPY{}P00{k}000", date.strftime("%y%m%d"));
        let mid = delta * 5.0;
        m.contracts.push(json!({
            "id": symbol, "symbol": symbol, "status": "active", "tradable": true, "expiration_date": date.to_string(),
            "root_symbol": "SPY", "underlying_symbol": "SPY", "type": "put", "style": "american",
            "strike_price": format!("{k}"), "size": "100", "open_interest": "1000"
        }));
        m.snapshots.insert(
            symbol,
            json!({"latestQuote": {"t": "", "bp": mid - 0.02, "ap": mid + 0.02, "bs": 10, "as": 10},
                   "greeks": {"delta": -delta, "gamma": 0, "theta": 0, "vega": 0, "rho": 0},
                   "impliedVolatility": 0.2, "dailyBar": {"t": "", "o": 1, "h": 1, "l": 1, "c": 1, "v": 500}}),
        );
    }
    m
}

#[test]
fn the_binary_killed_at_random_never_doubles_an_entry_and_keeps_its_books() {
    let fake = FakeAlpaca::start();
    {
        let mut st = fake.lock();
        st.live_time = true;
        st.clock = json!({"timestamp": "", "is_open": true, "next_open": "2099-01-01T14:30:00Z", "next_close": "2099-01-01T21:00:00Z"});
        st.fund_100k();
        st.positions.clear();
        st.auto_fill = Some("0".into());
        st.market = Some(market());
        for (sym, px) in [("AAPL", "193.02"), ("BTC/USD", "60210")] {
            st.fill_prices.insert(sym.into(), px.into());
        }
        st.min_seen = f64::MAX;
    }
    // The shipped config, everything enabled, trading all day, one second between iterations.
    let scratch = support::test_dir::TestDir::new("crashbin");
    let dir = scratch.path().to_path_buf();
    std::fs::create_dir_all(dir.join("config")).unwrap();
    let settings = std::fs::read_to_string("config/settings.yaml")
        .unwrap()
        .replace("loop_interval_seconds: 5", "loop_interval_seconds: 1");
    std::fs::write(dir.join("config/settings.yaml"), settings).unwrap();
    let bots = std::fs::read_to_string("config/bots.yaml")
        .unwrap()
        .replace("tickers: [SPY, QQQ, IWM]", "tickers: [SPY]")
        .replace("pairs: [\"BTC/USD\", \"ETH/USD\"]", "pairs: [\"BTC/USD\"]")
        .replace("trade_start: \"06:35\"", "trade_start: \"00:00\"")
        .replace("trade_end: \"09:30\"", "trade_end: \"23:58\"")
        .replace("manage_until: \"12:55\"", "manage_until: \"23:59\"")
        .replace("trade_start: \"06:40\"", "trade_start: \"00:00\"")
        .replace("trade_end: \"12:30\"", "trade_end: \"23:58\"")
        .replace("manage_until: \"13:00\"", "manage_until: \"23:59\"");
    std::fs::write(dir.join("config/bots.yaml"), bots).unwrap();

    let run = |iterations: Option<&str>| {
        let mut c = Command::new(BIN);
        fake.point(c.current_dir(&dir).arg("run")).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(n) = iterations {
            c.args(["--iterations", n]);
        }
        c
    };
    let seed = Timestamp::now().as_nanosecond() as u64 | 1;
    let mut x = seed;
    for _ in 0..12 {
        let mut child = run(None).spawn().unwrap();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::thread::sleep(Duration::from_millis(30 + x % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    assert_eq!(run(Some("3")).status().unwrap().code(), Some(0), "a clean run after the crashes (seed {seed})");

    let st = fake.lock();
    let state = State::open(&PathBuf::from(&dir).join("state/trading_state.db")).unwrap();
    let entries: Vec<&Value> =
        st.orders.iter().filter(|o| o["client_order_id"].as_str().unwrap().starts_with("th-")).collect();
    // Each bot tried (one may have been killed between recording and sending: its entry then
    // waits, recorded, to be abandoned a minute later), and the broker has seen some.
    let tried: std::collections::BTreeSet<String> = state
        .all_orders()
        .unwrap()
        .into_iter()
        .filter(|(o, _)| o.intent.as_str() == "entry")
        .map(|(o, _)| o.bot)
        .collect();
    assert_eq!(tried.len(), 3, "the bots did not all trade (seed {seed}): {tried:?}");
    assert!(!entries.is_empty(), "nothing reached the broker (seed {seed})");
    for o in &st.orders {
        let coid = o["client_order_id"].as_str().unwrap();
        assert!(state.order(coid).unwrap().is_some(), "{coid} at the broker is unknown to the database (seed {seed})");
    }
    // One entry per bot and symbol, and one protective stop: a restart never sends a purpose
    // again.
    let mut purposes = std::collections::BTreeMap::new();
    for o in &st.orders {
        let coid = o["client_order_id"].as_str().unwrap();
        let bot = coid.split('-').nth(1).unwrap().to_string();
        let stop = matches!(o["type"].as_str(), Some("stop" | "stop_limit"));
        *purposes.entry((bot, o["symbol"].as_str().unwrap().to_string(), stop)).or_insert(0) += 1;
    }
    eprintln!("seed {seed}: orders at the broker by (bot, symbol): {purposes:?}");
    assert!(purposes.values().all(|n| *n == 1), "a purpose was sent twice (seed {seed}): {purposes:?}");
    for symbol in ["AAPL", "BTCUSD"] {
        let min = st.min_by_symbol.get(symbol).copied().unwrap_or(0.0);
        assert!(min >= 0.0, "{symbol} was sold short: {min} (seed {seed})");
    }
    // What the daemon owns is what the broker holds (the fake account holds nothing else).
    let owned = state.owned_positions().unwrap();
    for p in &st.positions {
        let symbol = p["symbol"].as_str().unwrap();
        let symbol = if symbol == "BTCUSD" { "BTC/USD" } else { symbol };
        let held: f64 = p["qty"].as_str().unwrap().parse().unwrap();
        let ours = owned.iter().find(|o| o.symbol == symbol).map_or(0.0, |o| o.qty.to_f64());
        assert_eq!(ours, held, "{symbol} not tracked (seed {seed})");
    }
}
