//! The ledger on a full filesystem: a small tmpfs holds the state database and the log, a filler
//! file takes the rest, and then the prices fall. The stops and the daily-loss flatten still go
//! out (under ids derived from what they close), no entry does, the halt is held in memory and
//! notified, a restart on the still-full ledger sells nothing twice, and once space returns the
//! ledger records what was sent and books the fills. Mounting needs root: as anyone else each
//! test says so and passes without checking anything.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};
use support::fake_alpaca::{FakeAlpaca, Market};
use support::test_bot::TestBot;
use trading_hydra::core::clock::ManualClock;
use trading_hydra::core::config::{BotKind, Config};
use trading_hydra::core::halt::HaltReason;
use trading_hydra::core::state::{ClientOrderId, State};
use trading_hydra::orchestrator::Orchestrator;

/// Wednesday 2026-11-25, 10:30 New York.
const NOW: &str = "2026-11-25T15:30:00Z";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A tmpfs of `size` mounted at a fresh directory, unmounted when dropped; `None` (with the
/// reason printed) when this test cannot mount one.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(name: &str, size: &str) -> Option<Tmpfs> {
        let dir = std::env::temp_dir().join(format!("th-fulldisk-{}-{name}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::fs::remove_dir(&dir);
            eprintln!("full_disk: skipped: mounting a tmpfs needs root (run the tests as root to check a full disk)");
            return None;
        }
        Some(Tmpfs(dir))
    }

    /// Writes a filler file until the filesystem refuses; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).and_then(|()| f.sync_all()).is_ok() {}
        // The last partial block too, byte by byte.
        while f.write_all(&[0]).and_then(|()| f.sync_all()).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One webhook for the whole process (the notifier is process-wide).
fn webhook() -> Arc<Mutex<Vec<String>>> {
    static SEEN: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    SEEN.get_or_init(|| {
        let (url, seen) = support::webhook::webhook(support::webhook::Behaviour::Ok);
        // SAFETY: set once, before the notifier starts and before any other thread reads it.
        unsafe { std::env::set_var("TRADING_HYDRA_WEBHOOK_URL", &url) };
        trading_hydra::services::notify::start(trading_hydra::core::config::NotifyFormat::Json);
        seen
    })
    .clone()
}

/// Waits up to 5 s for a notification containing `text`.
fn notified(seen: &Arc<Mutex<Vec<String>>>, text: &str) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if seen.lock().unwrap().iter().any(|b| b.contains(text)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// 55 one-minute bars ending the minute before `now`: flat, then climbing, the last on heavy
/// volume (the crypto bot's breakout).
fn rising(now: &str, start: f64, step: f64) -> Vec<Value> {
    let end = ts(now).as_second() - 60;
    (0..55)
        .map(|i| {
            let c = if i < 40 { start } else { start + (i - 39) as f64 * step };
            let t = Timestamp::from_second(end - (54 - i) * 60).unwrap();
            let v = if i == 54 { 6.0 } else { 2.0 };
            json!({"t": t.to_string(), "o": c, "h": c + step / 4.0, "l": c - step / 4.0, "c": c, "v": v, "n": 10, "vw": c})
        })
        .collect()
}

fn quote_at(t: &str, bid: f64, ask: f64) -> Value {
    json!({"t": t, "bp": bid, "bs": 3, "ap": ask, "as": 3, "ax": "V", "bx": "V", "c": ["R"], "z": "C"})
}

fn fake() -> FakeAlpaca {
    let fake = FakeAlpaca::start();
    {
        let mut st = fake.lock();
        st.clock = json!({"timestamp": NOW, "is_open": true, "next_open": "2026-11-26T14:30:00Z", "next_close": "2026-11-25T21:00:00Z"});
        st.fund_100k();
        st.positions.clear();
        st.auto_fill = Some("0".into());
    }
    fake
}

fn config(db: &Path) -> Config {
    let mut cfg = Config::load(Path::new("config")).unwrap();
    cfg.settings.system.state_db_path = db.to_path_buf();
    cfg
}

/// The sells the fake holds (each order once, however often it was sent).
fn sells(fake: &FakeAlpaca) -> Vec<Value> {
    fake.lock().orders.iter().filter(|o| o["side"] == "sell").cloned().collect()
}

fn post_count(fake: &FakeAlpaca) -> usize {
    fake.seen().iter().filter(|r| r.method == "POST" && r.path == "/v2/orders").count()
}

/// The reproduction: BTC and ETH held by the crypto bot, the disk full, both fall 2 %
/// through the 0.75 % stop.
#[test]
fn on_a_full_disk_the_stops_go_out_once_no_entry_does_and_the_ledger_catches_up() {
    let Some(disk) = Tmpfs::mount("stops", "4m") else { return };
    let seen = webhook();
    let log = disk.0.join("trading_hydra.jsonl");
    let _ = trading_hydra::core::logging::init(&trading_hydra::core::logging::LogSettings {
        path: log.clone(),
        max_bytes: 10 << 20,
        keep_files: 1,
        tz: jiff::tz::TimeZone::UTC,
        file_level: log::LevelFilter::Info,
        stderr_level: log::LevelFilter::Off,
        quiet_summaries: false,
    });
    let fake = fake();
    {
        let mut st = fake.lock();
        let mut m = Market::default();
        m.bars.insert("BTC/USD".into(), rising(NOW, 60_000.0, 15.0));
        m.bars.insert("ETH/USD".into(), rising(NOW, 3_000.0, 1.0));
        m.quotes.insert("BTC/USD".into(), quote_at(NOW, 60_200.0, 60_210.0));
        m.quotes.insert("ETH/USD".into(), quote_at(NOW, 3_015.0, 3_015.5));
        st.market = Some(m);
        st.fill_prices.insert("BTC/USD".into(), "60210".into());
        st.fill_prices.insert("ETH/USD".into(), "3015.5".into());
    }
    let db = disk.0.join("state.db");
    let mut cfg = config(&db);
    for m in &mut cfg.bots.momentum_bots {
        m.enabled = false;
    }
    cfg.bots.optionsbot.as_mut().unwrap().enabled = false;
    // The daemon's own stops, on a full disk: no resting stop at the broker to beat them to it
    // (those are `tests/protection.rs`'s).
    cfg.bots.cryptobot.as_mut().unwrap().exits.broker_stop = false;
    let clock = Arc::new(ManualClock::new(ts(NOW)));
    let open = |cfg: &Config| {
        let state = State::open(&db).unwrap();
        Orchestrator::new(cfg.clone(), state, Box::new(clock.clone()), Box::new(fake.client()))
    };
    let mut o = open(&cfg);
    assert_eq!(o.run_iteration().orders_submitted, 2, "one entry per pair");
    o.run_iteration();
    let owned = o.state().owned_positions().unwrap();
    assert_eq!(owned.len(), 2, "{owned:?}");

    // The disk fills; a minute later both pairs are 2 % down.
    let filler = disk.fill();
    let later = "2026-11-25T15:31:00Z";
    clock.set(ts(later));
    {
        let mut st = fake.lock();
        st.clock["timestamp"] = later.into();
        let m = st.market.as_mut().unwrap();
        m.quotes.insert("BTC/USD".into(), quote_at(later, 59_000.0, 59_010.0));
        m.quotes.insert("ETH/USD".into(), quote_at(later, 2_955.0, 2_955.5));
        // Still a breakout, so only the halt keeps an entry out.
        m.bars.insert("BTC/USD".into(), rising(later, 58_000.0, 15.0));
        m.bars.insert("ETH/USD".into(), rising(later, 2_900.0, 1.0));
        st.fill_prices.insert("BTC/USD".into(), "59000".into());
        st.fill_prices.insert("ETH/USD".into(), "2955".into());
    }
    let s = o.run_iteration();
    assert!(s.halted && !s.entries_allowed, "{s:?}");
    assert!(s.halts.contains(&HaltReason::StateError), "the halt is held in memory: {s:?}");
    let sold = sells(&fake);
    assert_eq!(sold.len(), 2, "both stops went out: {sold:?}");
    for o in &sold {
        let id = ClientOrderId::parse(o["client_order_id"].as_str().unwrap()).unwrap();
        assert!(id.is_derived() && id.n == 1, "an id derived from the position, not the counter: {o}");
        assert_eq!(o["status"], "filled");
    }
    assert_eq!(fake.lock().orders.iter().filter(|o| o["side"] == "buy").count(), 2, "no entry");
    assert!(notified(&seen, "held in memory"), "the operator hears of it at once: {:?}", seen.lock().unwrap());
    assert!(o.state().active_halts().unwrap().is_empty(), "nothing could be stored");

    // The next iterations decide nothing again: the exits are in flight (sold, in fact).
    let posts = post_count(&fake);
    for _ in 0..3 {
        o.run_iteration();
    }
    assert_eq!(post_count(&fake), posts, "nothing sent twice");

    // A restart on the still-full ledger: the stops are decided again, under the same ids, and
    // Alpaca's duplicate check resolves them to the orders already filled.
    drop(o);
    let mut o = open(&cfg);
    let s = o.run_iteration();
    assert!(!s.entries_allowed, "{s:?}");
    assert_eq!(post_count(&fake), posts + 2, "both stops decided again after the restart");
    assert_eq!(sells(&fake).len(), 2, "nothing sold twice: {:?}", sells(&fake));
    assert!(fake.lock().min_by_symbol.values().all(|m| *m >= 0.0), "never short");

    // Space returns: the ledger records both exits with their fills, and the halt.
    std::fs::remove_file(&filler).unwrap();
    o.run_iteration();
    assert!(o.state().owned_positions().unwrap().is_empty(), "{:?}", o.state().owned_positions());
    for sell in sells(&fake) {
        let rec = o.state().order(sell["client_order_id"].as_str().unwrap()).unwrap().unwrap();
        assert_eq!(
            (rec.intent.as_str(), rec.rule.as_deref(), rec.status.as_str()),
            ("exit", Some("stop_loss"), "filled")
        );
    }
    let halts = o.state().active_halts().unwrap();
    assert_eq!(halts.iter().map(|h| h.reason).collect::<Vec<_>>(), vec![HaltReason::StateError], "{halts:?}");
    assert_eq!(sells(&fake).len(), 2);
    trading_hydra::core::logging::drain(Duration::from_secs(5));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("\"order_recorded_late\""), "the log took lines again once space returned");
}

/// The daily-loss flatten on a full disk: before, the daily-loss halt could not be stored and
/// ExitBot returned before the flatten. Now the halt is held in memory and the flatten goes out.
#[test]
fn on_a_full_disk_the_daily_loss_halt_is_held_and_flattens() {
    let Some(disk) = Tmpfs::mount("flatten", "4m") else { return };
    let seen = webhook();
    let fake = fake();
    fake.lock().quote_time = Some(NOW.into());
    // A fill has a price (one at 0 is never booked).
    fake.lock().fill_prices.insert("TSLA".into(), "250".into());
    let db = disk.0.join("state.db");
    let (bot, orders) = TestBot::new("mom_AAPL", BotKind::Momentum, &["TSLA"]);
    let clock = Arc::new(ManualClock::new(ts(NOW)));
    let mut o = Orchestrator::with_bots(
        config(&db),
        State::open(&db).unwrap(),
        Box::new(clock.clone()),
        Box::new(fake.client()),
        vec![Box::new(bot)],
    );
    orders.lock().unwrap().enter = vec![("TSLA".into(), 3, None)];
    assert_eq!(o.run_iteration().orders_submitted, 1);
    orders.lock().unwrap().enter.clear();
    o.run_iteration();
    assert_eq!(o.state().owned_positions().unwrap().len(), 1);

    let _filler = disk.fill();
    fake.lock().account["equity"] = "96000".into();
    let s = o.run_iteration();
    assert!(s.halts.contains(&HaltReason::DailyLoss) && !s.entries_allowed, "{s:?}");
    let sold = sells(&fake);
    assert_eq!(sold.len(), 1, "the flatten went out: {sold:?}");
    assert_eq!((sold[0]["symbol"].as_str(), sold[0]["qty"].as_str()), (Some("TSLA"), Some("3")));
    assert!(ClientOrderId::parse(sold[0]["client_order_id"].as_str().unwrap()).unwrap().is_derived());
    assert!(notified(&seen, "daily_loss"), "{:?}", seen.lock().unwrap());
    o.run_iteration();
    assert_eq!(sells(&fake).len(), 1, "flattened once");
}
