//! The live loop's benchmarks: each prints one line a script can read,
//! `bench <name> <value> <unit> target <target>`.
//!
//! - `live_loop_cpu_us`: CPU time per iteration with all three bots enabled on 12 symbols,
//!   against the simulated broker (a test clock steps 5 s per iteration, through a session).
//! - `requests_per_iteration`: HTTP requests per steady-state iteration against the loopback fake
//!   of Alpaca, same bots and symbols, averaged over simulated minutes; every iteration counted
//!   may enter (the bench stops if one is halted or failed: such an iteration asks less).
//! - `loopback_cpu_per_iteration_us`, `loopback_requests_per_iteration`: the release binary
//!   against the loopback fake at a 1-second interval (shipped bots), its own CPU once it exited.
//! - `peak_rss_kb_1000`, `startup_ms`, `log_bytes_per_quiet_iteration`: the release binary,
//!   `run --sim` with the shipped config (6 symbols), read from its `shutdown` event and log.
//! - `rss_growth_kb` (with `BENCH_LONG=1`): peak RSS after 100,000 iterations minus after 1,000.
//! - `backtest_bars_per_second_21d`, `backtest_peak_rss_kb_21d` (and `_252d`, a year, with
//!   `BENCH_LONG=1`): the release binary's backtest of 10 symbols of one-minute session bars.
//!
//! - `order_record_fsync_us`, `order_record_nofsync_us`: the wall time of recording one order
//!   before it is sent (`State::record_order`: numbered, with its legs, one transaction) in a
//!   file on this machine's disk, fsynced as the daemon does it, and as a backtest's throw-away
//!   ledger does it (no fsync): their difference is what durability costs per order.
//!
//! Run: `cargo bench --bench loop`.

#[path = "../tests/support/fake_alpaca.rs"]
mod fake_alpaca;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use trading_hydra::core::clock::ManualClock;
use trading_hydra::core::config::{Config, DataFeed, Sim};
use trading_hydra::core::state::State;
use trading_hydra::orchestrator::Orchestrator;
use trading_hydra::services::alpaca_client::{AlpacaClient, ClientSettings, Credentials};
use trading_hydra::sim::sim_broker::SimBroker;

/// Wednesday 2026-11-25, 09:35 New York.
const START: &str = "2026-11-25T14:35:00Z";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("th-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The shipped config with 7 momentum tickers, 3 option underlyings and 2 crypto pairs, trading
/// all day.
fn twelve_symbols(db: &Path) -> Config {
    let mut cfg = Config::load(Path::new("config")).unwrap();
    cfg.settings.system.state_db_path = db.to_path_buf();
    let template = cfg.bots.momentum_bots[0].clone();
    cfg.bots.momentum_bots = ["AAPL", "MSFT", "TSLA", "NVDA", "AMZN", "GOOG", "META"]
        .iter()
        .map(|t| {
            let mut m = template.clone();
            m.bot_id = format!("mom_{t}");
            m.ticker = t.to_string();
            m.enabled = true;
            m.session.trade_start = trading_hydra::core::clock::HhMm::parse("00:00").unwrap();
            m.session.trade_end = trading_hydra::core::clock::HhMm::parse("23:58").unwrap();
            m.session.manage_until = trading_hydra::core::clock::HhMm::parse("23:59").unwrap();
            m
        })
        .collect();
    cfg
}

/// utime + stime of this process, in microseconds (Linux).
fn cpu_us() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000) // 100 ticks a second on Linux
}

fn line(name: &str, value: f64, unit: &str, target: &str) {
    println!("bench {name} {value:.1} {unit} target {target}");
}

fn order_record_cost() {
    use trading_hydra::core::state::NewOrder;
    let order = NewOrder {
        ref_price: None,
        bot: "mom_AAPL".into(),
        symbol: "AAPL".into(),
        side: trading_hydra::core::order::Side::Buy,
        qty: Some("51".into()),
        notional: None,
        order_type: trading_hydra::core::order::OrderType::Market,
        limit_price: None,
        stop_price: None,
        intent: trading_hydra::core::order::Intent::Entry,
        rule: None,
        created_at: START.parse().unwrap(),
        trading_date: jiff::civil::date(2026, 11, 25),
        legs: Vec::new(),
    };
    let n = 500;
    for (name, durable) in [("order_record_fsync_us", true), ("order_record_nofsync_us", false)] {
        let db = scratch(name).join("state.db");
        let mut state = if durable { State::open(&db) } else { State::open_scratch(&db) }.unwrap();
        state.record_order(&order).unwrap(); // the epoch's row, once per process
        let t = Instant::now();
        for _ in 0..n {
            state.record_order(&order).unwrap();
        }
        line(name, t.elapsed().as_secs_f64() * 1e6 / n as f64, "us/order", "-");
    }
}

fn live_loop_cost() {
    let dir = scratch("cpu");
    let db = dir.join("state.db");
    let clock = Arc::new(ManualClock::new(START.parse().unwrap()));
    let sim = SimBroker::open(clock.clone(), Sim::default(), 42, Some(State::open(&db).unwrap())).unwrap();
    let mut o =
        Orchestrator::new(twelve_symbols(&db), State::open(&db).unwrap(), Box::new(clock.clone()), Box::new(sim));
    // Warm up: a quarter hour of history, so the signals are live.
    for _ in 0..180 {
        o.run_iteration();
        clock.advance(SignedDuration::from_secs(5));
    }
    let n = 3000;
    let (cpu0, wall0) = (cpu_us(), Instant::now());
    let mut orders = 0;
    for _ in 0..n {
        orders += o.run_iteration().orders_submitted;
        clock.advance(SignedDuration::from_secs(5));
    }
    let wall = wall0.elapsed().as_secs_f64() * 1e6 / n as f64;
    if let (Some(a), Some(b)) = (cpu0, cpu_us()) {
        line("live_loop_cpu_us", (b - a) as f64 / n as f64, "us/iteration", "<=1000");
    }
    line("live_loop_wall_us", wall, "us/iteration", "-");
    println!("# {n} iterations (4 h 10 min of a simulated session, 12 symbols) sent {orders} orders");
}

fn requests_per_iteration() {
    let fake = fake_alpaca::FakeAlpaca::start();
    let start: Timestamp = START.parse().unwrap();
    let dir = scratch("requests");
    let db = dir.join("state.db");
    let cfg = twelve_symbols(&db);
    {
        let mut st = fake.lock();
        st.clock = serde_json::json!({"timestamp": START, "is_open": true, "next_open": "2026-11-26T14:30:00Z", "next_close": "2026-11-25T21:00:00Z"});
        st.quote_time = Some(START.into());
        st.market = Some(quiet_market(&cfg, start));
        // The fake counts Alpaca's 200 a minute in real time, and this bench runs its simulated
        // minutes in milliseconds: its limit would refuse what a minute really allows.
        st.rate_limit = Some(u32::MAX);
    }
    let broker = AlpacaClient::new(
        Credentials::new(fake_alpaca::KEY.into(), fake_alpaca::SECRET.into()),
        ClientSettings {
            trading_url: fake.url.clone(),
            data_url: fake.url.clone(),
            feed: DataFeed::Iex,
            timeout: Duration::from_secs(1),
            retry_budget: Duration::from_secs(2),
            max_attempts: 1,
            backoff: Duration::from_millis(10),
            requests_per_minute: 10_000,
        },
    );
    let clock = Arc::new(ManualClock::new(start));
    let mut o = Orchestrator::new(cfg, State::open(&db).unwrap(), Box::new(clock.clone()), Box::new(broker));
    o.run_iteration(); // start-up: reconciliation, contracts of the day
    let minutes = 5;
    let mut requests = 0;
    for i in 1..=minutes * 12 {
        let now = start + SignedDuration::from_secs(5 * i);
        clock.set(now);
        {
            let mut st = fake.lock();
            st.clock["timestamp"] = now.to_string().into();
            st.quote_time = Some(now.to_string());
        }
        requests += steady(o.run_iteration());
    }
    let per = requests as f64 / (minutes * 12) as f64;
    line("requests_per_iteration", per, "requests (5 s interval)", "<=8");
    // At a 1-second interval: two simulated minutes, one iteration a second.
    let mut fast = 0;
    let base = start + SignedDuration::from_secs(5 * minutes * 12);
    for i in 1..=120 {
        let now = base + SignedDuration::from_secs(i);
        clock.set(now);
        {
            let mut st = fake.lock();
            st.clock["timestamp"] = now.to_string().into();
            st.quote_time = Some(now.to_string());
        }
        fast += steady(o.run_iteration());
    }
    line("requests_per_minute_at_1s", fast as f64 / 2.0, "requests a minute", "<=150");
}

/// Every symbol an enabled bot of `cfg` trades quoted, stamped by the fake's `quote_time` or
/// `live_time`, with an hour of flat one-minute bars before `start`: a market the bots watch
/// without a signal, so the requests counted are those of a daemon that may enter and does not.
fn quiet_market(cfg: &Config, start: Timestamp) -> fake_alpaca::Market {
    let mut market = fake_alpaca::Market::default();
    for symbol in cfg.enabled_bots().iter().flat_map(|b| b.symbols()) {
        let bars = (1..=60)
            .map(|i| {
                let t = start - SignedDuration::from_mins(61 - i);
                serde_json::json!({"t": t.to_string(), "o": 100.0, "h": 100.05, "l": 99.95, "c": 100.0, "v": 1000, "n": 10, "vw": 100.0})
            })
            .collect();
        market.quotes.insert(symbol.clone(), fake_alpaca::live_quote(99.99, 100.01));
        market.bars.insert(symbol, bars);
    }
    market
}

/// The requests of an iteration that may enter: one that is halted or failed asks less, and its
/// count would flatter the figure.
fn steady(summary: trading_hydra::orchestrator::LoopSummary) -> u32 {
    assert!(
        summary.entries_allowed && summary.error.is_none(),
        "the requests bench measured a daemon that may not enter: {summary:?}"
    );
    summary.requests
}

/// Runs the release binary in a scratch folder with the shipped config; returns the folder.
fn run_binary(name: &str, args: &[&str], config_edit: impl Fn(String) -> String) -> (PathBuf, Duration) {
    let dir = scratch(name);
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::write(dir.join("config/settings.yaml"), std::fs::read_to_string("config/settings.yaml").unwrap()).unwrap();
    std::fs::write(dir.join("config/bots.yaml"), config_edit(std::fs::read_to_string("config/bots.yaml").unwrap()))
        .unwrap();
    let bin = binary();
    let t0 = Instant::now();
    let status =
        Command::new(bin).args(args).current_dir(&dir).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    assert!(status.success(), "{args:?}");
    (dir, t0.elapsed())
}

fn shutdown_rss(dir: &Path) -> f64 {
    let log = std::fs::read_to_string(dir.join("logs/app.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    last["peak_rss_kb"].as_f64().unwrap_or(f64::NAN)
}

fn binary_measurements() {
    let keep = |s: String| s;
    let (dir, _) = run_binary("rss", &["run", "--sim", "--speed", "100000", "--iterations", "1000"], keep);
    let rss_1000 = shutdown_rss(&dir);
    line("peak_rss_kb_1000", rss_1000, "KiB", "<=12288");

    let mut best = f64::MAX;
    for _ in 0..10 {
        let (_, took) = run_binary("startup", &["run", "--sim", "--once"], keep);
        best = best.min(took.as_secs_f64() * 1000.0);
    }
    line("startup_ms", best, "ms (process start to exit after the first loop_summary, best of 10)", "<=50");

    // Quiet: the Python daemon's bots.yaml (placeholders) never enters, so no order is logged.
    let quiet = |_: String| std::fs::read_to_string("tests/fixtures/python-config/bots.yaml").unwrap();
    let (dir, _) = run_binary("quiet", &["run", "--sim", "--speed", "100000", "--iterations", "1000"], quiet);
    let log = std::fs::read_to_string(dir.join("logs/app.jsonl")).unwrap();
    let per_iteration: usize =
        log.lines().filter(|l| l.contains("\"loop_summary\"")).map(|l| l.len() + 1).sum::<usize>() / 1000;
    line("log_bytes_per_quiet_iteration", per_iteration as f64, "bytes", "<=400");
    println!("# the whole log of 1,000 quiet iterations: {} bytes", log.len());

    if std::env::var("BENCH_LONG").is_ok() && std::env::var("BENCH_DAYS").is_err() {
        let (dir, took) = run_binary("long", &["run", "--sim", "--speed", "100000", "--iterations", "100000"], keep);
        line("rss_growth_kb", shutdown_rss(&dir) - rss_1000, "KiB (100,000 iterations minus 1,000)", "<=1024");
        println!("# 100,000 iterations took {:.0} s", took.as_secs_f64());
    }
}

/// Writes `days` weekdays of session bars for 10 symbols — seven momentum tickers and the three
/// option underlyings, all traded — and times the release binary's backtest on them.
fn backtest_throughput(days: usize) {
    let dir = scratch(&format!("backtest-{days}"));
    std::fs::create_dir_all(dir.join("bars")).unwrap();
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::copy("config/settings.yaml", dir.join("config/settings.yaml")).unwrap();
    let tickers = ["AAPL", "MSFT", "TSLA", "NVDA", "AMZN", "GOOG", "META", "SPY", "QQQ", "IWM"];
    // Momentum bots on seven tickers, options on the three ETFs: all ten are traded.
    let bots = std::fs::read_to_string("config/bots.yaml").unwrap();
    let (head, rest) = bots.split_once("momentum_bots:").unwrap();
    let (_, tail) = rest.split_once("optionsbot:").unwrap();
    let mut momentum = String::from("momentum_bots:\n");
    for t in &tickers[..7] {
        momentum.push_str(&format!(
            "  - bot_id: mom_{t}\n    ticker: {t}\n    session: {{trade_start: \"06:35\", trade_end: \"12:30\", manage_until: \"12:55\"}}\n    exits: {{stop_loss_pct: 0.5, take_profit_pct: 1.0, time_stop_minutes: 25}}\n    signal: {{mode: ema_roc_volume_v1}}\n"
        ));
    }
    std::fs::write(dir.join("config/bots.yaml"), format!("{head}{momentum}\noptionsbot:{tail}")).unwrap();
    let mut bars = 0u64;
    let first: Timestamp = "2025-01-06T14:30:00Z".parse().unwrap();
    for (k, t) in tickers.iter().enumerate() {
        let mut text = String::from("timestamp,open,high,low,close,volume\n");
        let mut x = 0x9E37_79B9u64 + k as u64;
        let mut price = 100.0 + 20.0 * k as f64;
        let mut day = 0;
        let mut d = 0;
        while day < days {
            let date = first + SignedDuration::from_hours(24 * d);
            d += 1;
            let wd = date.to_zoned_datetime(jiff::tz::TimeZone::UTC).weekday();
            if matches!(wd, jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday) {
                continue;
            }
            day += 1;
            for m in 0..390 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let r = ((x >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.002
                    + if (m / 60) % 2 == 0 { 0.0004 } else { -0.0004 };
                let open = price;
                price *= 1.0 + r;
                let ts = date + SignedDuration::from_mins(m);
                let v = if m % 13 == 0 { 9000 } else { 1000 };
                text.push_str(&format!(
                    "{},{open:.4},{:.4},{:.4},{price:.4},{v}\n",
                    ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    open.max(price),
                    open.min(price)
                ));
                bars += 1;
            }
        }
        std::fs::write(dir.join("bars").join(format!("{t}.csv")), text).unwrap();
    }
    let bin = binary();
    let t0 = Instant::now();
    let out =
        Command::new(bin).args(["backtest", "--data", "bars", "--out", "out"]).current_dir(&dir).output().unwrap();
    let took = t0.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let rss: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("peak memory"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN);
    line(&format!("backtest_bars_per_second_{days}d"), bars as f64 / took, "bars/s (10 symbols, one core)", ">=500000");
    line(&format!("backtest_peak_rss_kb_{days}d"), rss, "KiB", "<=65536");
    println!("# {bars} bars in {took:.1} s");
    if days > 21 {
        return;
    }
    // A sweep of 8 combinations on every core.
    let t0 = Instant::now();
    let out = Command::new(binary())
        .args(["backtest", "--data", "bars", "--out", "sweep"])
        .args(["--sweep", "momentum_bots.*.exits.stop_loss_pct=0.3,0.5,0.8,1.0"])
        .args(["--sweep", "momentum_bots.*.exits.take_profit_pct=1,2"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let took = t0.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    line(
        &format!("sweep_bars_per_second_{days}d"),
        8.0 * bars as f64 / took,
        &format!("bars/s (8 combinations of the same data on {cores} cores)"),
        "-",
    );
    line(&format!("sweep_seconds_per_combination_{days}d"), took / 8.0, "s", "-");
}

/// CPU time of this process's children that have been waited for (cutime + cstime), in
/// microseconds (Linux).
fn children_cpu_us() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(13)?.parse::<u64>().ok()? + fields.get(14)?.parse::<u64>().ok()?;
    Some(ticks * 10_000)
}

/// The release binary against the loopback fake of Alpaca at a one-second interval, the shipped
/// bots (6 symbols), a market that is open: the daemon's own CPU per iteration (its utime +
/// stime once it has exited, the fake's threads not counted) and its requests per iteration.
fn loopback_binary_cost() {
    let fake = fake_alpaca::FakeAlpaca::start();
    {
        let mut st = fake.lock();
        st.live_time = true;
        st.clock = serde_json::json!({"timestamp": "", "is_open": true, "next_open": "2099-01-01T14:30:00Z", "next_close": "2099-01-01T21:00:00Z"});
        st.market = Some(quiet_market(&Config::load(Path::new("config")).unwrap(), Timestamp::now()));
    }
    let dir = scratch("loopback");
    std::fs::create_dir_all(dir.join("config")).unwrap();
    let settings = std::fs::read_to_string("config/settings.yaml")
        .unwrap()
        .replace("loop_interval_seconds: 5", "loop_interval_seconds: 1");
    std::fs::write(dir.join("config/settings.yaml"), settings).unwrap();
    // Every bot inside its window whatever the hour the bench runs at (the fake's market is
    // always open): the shipped windows would leave the stock bots idle outside New York's
    // session, asking less.
    let mut bots = std::fs::read_to_string("config/bots.yaml").unwrap();
    for (from, to) in [("06:35", "00:00"), ("06:40", "00:00"), ("09:30", "23:58"), ("12:30", "23:58")] {
        bots = bots.replace(&format!("trade_start: \"{from}\""), &format!("trade_start: \"{to}\""));
        bots = bots.replace(&format!("trade_end: \"{from}\""), &format!("trade_end: \"{to}\""));
    }
    for from in ["12:55", "13:00"] {
        bots = bots.replace(&format!("manage_until: \"{from}\""), "manage_until: \"23:59\"");
    }
    std::fs::write(dir.join("config/bots.yaml"), bots).unwrap();
    // The CPU and requests of a run of `n` iterations, start-up included.
    let run = |n: u64| {
        let _ = std::fs::remove_dir_all(dir.join("state"));
        let _ = std::fs::remove_dir_all(dir.join("logs"));
        let before = children_cpu_us().unwrap_or(0);
        let seen_before = fake.lock().seen.len();
        let mut cmd = Command::new(binary());
        fake.point(cmd.current_dir(&dir).args(["run", "--iterations", &n.to_string()]));
        let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
        assert!(status.success());
        // A halted daemon asks less: its figures would flatter.
        let log = std::fs::read_to_string(dir.join("logs/app.jsonl")).unwrap_or_default();
        let halts: Vec<&str> = log.lines().filter(|l| l.contains(r#""event":"halt""#)).collect();
        assert!(halts.is_empty(), "the loopback bench measured a halted daemon:\n{}", halts.join("\n"));
        if log.contains("outside_window") {
            println!("# a bot was outside its window (the bench ran near midnight, Los Angeles): it asked less");
        }
        (children_cpu_us().unwrap_or(0) - before, fake.lock().seen.len() - seen_before)
    };
    // Start-up and the first iteration (reconciliation, the day's contracts) apart: the steady
    // state is the difference between a long run and a one-iteration run.
    let iterations = 90;
    let (cpu_one, req_one) = run(1);
    let (cpu, requests) = run(iterations + 1);
    line(
        "loopback_cpu_per_iteration_us",
        cpu.saturating_sub(cpu_one) as f64 / iterations as f64,
        "us/iteration (release binary, loopback fake, 1 s interval, shipped bots; steady state)",
        "-",
    );
    line(
        "loopback_requests_per_iteration",
        requests.saturating_sub(req_one) as f64 / iterations as f64,
        "requests (steady state)",
        "-",
    );
    println!("# start-up and the first iteration: {cpu_one} us of CPU, {req_one} requests");
}

/// The binary the benchmarks run: this build's, or `BENCH_BIN` (to compare with another build).
fn binary() -> String {
    std::env::var("BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_trading-hydra").to_string())
}

/// Whether `name` runs: all of them unless `BENCH_ONLY` lists some (comma-separated).
fn wanted(name: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|n| n.trim() == name))
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is expected. `BENCH_ONLY=backtest,sweep,
    // order_record,live_loop,requests,loopback,binary` picks some.
    if wanted("backtest") {
        backtest_throughput(21);
        if std::env::var("BENCH_LONG").is_ok() {
            // A year of session bars; BENCH_DAYS=N for another length.
            let days = std::env::var("BENCH_DAYS").ok().and_then(|d| d.parse().ok()).unwrap_or(252);
            backtest_throughput(days);
        }
    }
    if wanted("order_record") {
        order_record_cost();
    }
    if wanted("live_loop") {
        live_loop_cost();
    }
    if wanted("requests") {
        requests_per_iteration();
    }
    if wanted("loopback") {
        loopback_binary_cost();
    }
    if wanted("binary") {
        binary_measurements();
    }
}
