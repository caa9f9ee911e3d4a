//! Webhook notifications from the real binary against loopback servers: the format on the wire,
//! a hanging server that must not delay the loop or the shutdown past their bounds, and a failing
//! one that is logged and leaves trading alone, and repeated API errors against the loopback fake
//! of Alpaca.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::fake_alpaca::{FakeAlpaca, Fault, KEY, Market, SECRET, live_quote, rising_until_now, stranger_eth_buy};
use support::webhook::{Behaviour, webhook};

const BIN: &str = env!("CARGO_BIN_EXE_trading-hydra");

fn scratch(name: &str, format: &str) -> support::test_dir::TestDir {
    let dir = support::test_dir::TestDir::new(&format!("notify-{name}"));
    std::fs::create_dir_all(dir.join("config")).unwrap();
    // The shipped settings.yaml has a notify section: set its format.
    let settings = std::fs::read_to_string("config/settings.yaml")
        .unwrap()
        .replace("loop_interval_seconds: 5", "loop_interval_seconds: 1")
        .replace("  format: json ", &format!("  format: {format} "));
    assert!(settings.contains(&format!("  format: {format} ")));
    std::fs::write(dir.join("config/settings.yaml"), settings).unwrap();
    std::fs::copy(Path::new("config/bots.yaml"), dir.join("config/bots.yaml")).unwrap();
    dir
}

fn run(dir: &Path, url: &str, iterations: &str) -> (Output, Duration) {
    let start = Instant::now();
    let out = Command::new(BIN)
        .args(["run", "--sim", "--speed", "1", "--iterations", iterations])
        .current_dir(dir)
        .env("TRADING_HYDRA_WEBHOOK_URL", url)
        .env_remove("TRADING_HYDRA_CONFIG")
        .output()
        .unwrap();
    (out, start.elapsed())
}

#[test]
fn start_and_stop_are_posted_in_the_configured_format() {
    let (url, seen) = webhook(Behaviour::Ok);
    let dir = scratch("slack", "slack");
    let (out, _) = run(&dir, &url, "2");
    assert_eq!(out.status.code(), Some(0));
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let first: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert!(first["text"].as_str().unwrap().starts_with("*Trading Hydra started*"), "{first}");
    assert!(bodies[1].contains("Trading Hydra stopped"));
}

#[test]
fn a_hanging_webhook_delays_neither_the_loop_nor_the_shutdown_past_their_bounds() {
    let (url, _) = webhook(Behaviour::Hang);
    let dir = scratch("hang", "json");
    let (out, took) = run(&dir, &url, "3");
    assert_eq!(out.status.code(), Some(0));
    // Two 1-second pauses between three iterations, plus at most a second for the queue.
    assert!(took < Duration::from_millis(3_600), "took {took:?}");
    let log = std::fs::read_to_string(dir.join("logs/app.jsonl")).unwrap();
    let times: Vec<jiff::Timestamp> = log
        .lines()
        .filter(|l| l.contains("\"loop_summary\""))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["ts"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(times.len(), 3);
    for w in times.windows(2) {
        assert!(w[1].duration_since(w[0]).as_secs_f64() < 1.3, "the loop waited on the webhook");
    }
}

#[test]
fn a_failing_webhook_is_logged_and_never_stops_trading() {
    let (url, seen) = webhook(Behaviour::Fail);
    let dir = scratch("fail", "ntfy");
    let (out, _) = run(&dir, &url, "3");
    assert_eq!(out.status.code(), Some(0));
    assert!(seen.lock().unwrap().len() >= 3, "retried");
    let log = std::fs::read_to_string(dir.join("logs/app.jsonl")).unwrap();
    assert!(log.contains("\"notify_error\""), "{log}");
    // Each lost message is counted: in its notify_error event and in the shutdown event's total
    // (the shutdown message itself is sent after that event, so it is not in the total).
    let events: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let counts: Vec<u64> =
        events.iter().filter(|e| e["event"] == "notify_error").map(|e| e["failures"].as_u64().unwrap()).collect();
    assert_eq!(counts, (1..=counts.len() as u64).collect::<Vec<_>>());
    let shutdown = events.iter().find(|e| e["event"] == "shutdown").unwrap();
    assert!(shutdown["notify_failures"].as_u64().unwrap() >= 1, "{shutdown}");
    assert_eq!(log.lines().filter(|l| l.contains("\"loop_summary\"")).count(), 3);
    assert!(!log.contains("secret-token"), "the webhook's URL reached the log");
}

#[test]
fn repeated_api_errors_are_posted_once_even_without_the_api_halt() {
    let fake = FakeAlpaca::start();
    let (url, seen) = webhook(Behaviour::Ok);
    let dir = scratch("apierrors", "json");
    // With the halt off, this message is the only word the operator gets of a failing broker.
    let settings = std::fs::read_to_string(dir.join("config/settings.yaml"))
        .unwrap()
        .replace("max_api_failures_in_window: 5", "max_api_failures_in_window: 2");
    std::fs::write(dir.join("config/settings.yaml"), settings).unwrap();
    let bots = std::fs::read_to_string(dir.join("config/bots.yaml")).unwrap();
    assert!(bots.contains("api_failure_halt: true"));
    std::fs::write(dir.join("config/bots.yaml"), bots.replace("api_failure_halt: true", "api_failure_halt: false"))
        .unwrap();
    let body = r#"{"message":"internal server error"}"#.to_string();
    fake.fault(
        "GET",
        "/v2/account",
        (0..100).map(|_| Fault::Status { status: 500, body: body.clone(), reset: None }).collect(),
    );
    let out = Command::new(BIN)
        .args(["run", "--iterations", "4"])
        .current_dir(&dir)
        .env("TRADING_HYDRA_WEBHOOK_URL", &url)
        .env("ALPACA_KEY", KEY)
        .env("ALPACA_SECRET", SECRET)
        .env("ALPACA_TRADING_URL", &fake.url)
        .env("ALPACA_DATA_URL", &fake.url)
        .env_remove("TRADING_HYDRA_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let bodies: Vec<serde_json::Value> =
        seen.lock().unwrap().iter().map(|b| serde_json::from_str(b).unwrap()).collect();
    let api: Vec<&serde_json::Value> = bodies.iter().filter(|b| b["event"] == "api_errors").collect();
    assert_eq!(api.len(), 1, "once while the window stays tripped: {bodies:?}");
    assert!(api[0]["text"].as_str().unwrap().contains("failed broker calls"), "{}", api[0]);
    // (The fake's fixed clock and quotes set other halts; none of them is the API one.)
    assert!(
        bodies.iter().all(|b| b["title"].as_str().is_none_or(|t| !t.ends_with("api_failures"))),
        "the api halt is off: {bodies:?}"
    );
}

/// The real binary's crypto bot enters on a breakout, and every id it sends is already taken at
/// the broker by another ledger's order (an ETH/USD buy): the webhook hears of the
/// `order_conflict` halt with both orders named, the stranger is never booked, and `status`
/// shows the halt.
#[test]
fn an_order_conflict_halts_and_is_notified_naming_both_orders() {
    let fake = FakeAlpaca::start();
    {
        let mut st = fake.lock();
        st.live_time = true;
        // Stocks closed: only the 24/7 crypto bot trades.
        st.clock = serde_json::json!({"timestamp": "", "is_open": false, "next_open": "2099-01-01T14:30:00Z", "next_close": "2099-01-01T21:00:00Z"});
        st.fund_100k();
        st.positions.clear();
        let mut m = Market::default();
        m.bars.insert("BTC/USD".into(), rising_until_now(60_000.0, 15.0, 2.0));
        m.quotes.insert("BTC/USD".into(), live_quote(60_200.0, 60_210.0));
        m.quotes.insert("ETH/USD".into(), live_quote(3_000.0, 3_001.0));
        st.market = Some(m);
        st.squatter = Some(stranger_eth_buy());
    }
    let (url, seen) = webhook(Behaviour::Ok);
    let dir = scratch("conflict", "json");
    let run = |args: &[&str]| {
        fake.point(Command::new(BIN).args(args).current_dir(&dir).env("TRADING_HYDRA_WEBHOOK_URL", &url))
            .output()
            .unwrap()
    };
    let out = run(&["run", "--iterations", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let posts = fake.count("POST", "/v2/orders");
    assert_eq!(posts, 1, "one entry, then halted");
    let stranger = fake.lock().orders[0].clone();
    assert_eq!(stranger["symbol"], "ETH/USD", "the fake holds only the stranger");
    let ours = stranger["client_order_id"].as_str().unwrap().to_string();
    assert!(ours.starts_with("th-crypto_core-"), "{ours}");

    let bodies: Vec<serde_json::Value> =
        seen.lock().unwrap().iter().map(|b| serde_json::from_str(b).unwrap()).collect();
    let halt = bodies.iter().find(|b| b["event"] == "halt").unwrap_or_else(|| panic!("no halt posted: {bodies:?}"));
    assert_eq!(halt["title"], "Trading Hydra halted: order_conflict");
    let text = halt["text"].as_str().unwrap();
    assert!(text.contains(&ours) && text.contains(stranger["id"].as_str().unwrap()), "{text}");
    assert!(text.contains("symbol ETH/USD (ours BTC/USD)"), "{text}");

    let status = run(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(st["halts"][0]["reason"], "order_conflict", "{st}");
    assert!(st["positions"].as_array().unwrap().is_empty(), "the stranger was booked: {st}");
    let log = std::fs::read_to_string(dir.join("logs/app.jsonl")).unwrap();
    assert!(log.lines().any(|l| l.contains("\"order_conflict\"") && l.contains(&ours)), "no order_conflict event");
}

/// `trading-hydra halt` and `resume` from the command line reach the webhook too (they used to
/// tell nobody: the notifier was started only by `run`).
#[test]
fn halt_and_resume_from_the_command_line_are_posted() {
    let (url, seen) = webhook(Behaviour::Ok);
    let dir = scratch("cli-halt", "json");
    let (out, _) = run(&dir, &url, "1");
    assert_eq!(out.status.code(), Some(0), "the ledger halt works on");
    seen.lock().unwrap().clear();
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .current_dir(&dir)
            .env("TRADING_HYDRA_WEBHOOK_URL", &url)
            .env_remove("TRADING_HYDRA_CONFIG")
            .output()
            .unwrap()
    };
    let out = cli(&["halt", "--reason", "earnings day"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&["resume"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let bodies: Vec<serde_json::Value> =
        seen.lock().unwrap().iter().map(|b| serde_json::from_str(b).unwrap()).collect();
    let events: Vec<(&str, &str)> =
        bodies.iter().map(|b| (b["event"].as_str().unwrap(), b["title"].as_str().unwrap())).collect();
    assert_eq!(
        events,
        vec![("halt", "Trading Hydra halted: manual"), ("resume", "Trading Hydra resumed: manual")],
        "{bodies:?}"
    );
    assert!(bodies[0]["text"].as_str().unwrap().starts_with("earnings day"), "{}", bodies[0]);
    // Nothing changed, nothing posted: a second resume finds no halt.
    assert_eq!(cli(&["resume"]).status.code(), Some(0));
    assert_eq!(seen.lock().unwrap().len(), 2);
}

/// Issue 33, the dead-man's switch: `notify.heartbeat_url` is pinged after healthy iterations at
/// most once a minute of the daemon's clock (a simulation at 600× pings ten times a real second),
/// its failure form (`/fail`) with the reason while halted, and nothing once the daemon is killed;
/// the URL never reaches the log.
#[test]
fn the_heartbeat_pings_while_healthy_fails_with_the_reason_when_halted_and_stops_with_the_daemon() {
    let (url, bodies, paths) = support::webhook::recorder(Behaviour::Ok);
    let dir = scratch("heartbeat", "json");
    let settings = dir.join("config/settings.yaml");
    let text = std::fs::read_to_string(&settings)
        .unwrap()
        .replace("  heartbeat_url: null", &format!("  heartbeat_url: {url}"));
    std::fs::write(&settings, text).unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--sim", "--speed", "600"])
        .current_dir(&dir)
        .env_remove("TRADING_HYDRA_WEBHOOK_URL")
        .env_remove("TRADING_HYDRA_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(30), "{what}: {:?}", paths.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let ok = "/hook/secret-token";
    wait("healthy pings", &|| paths.lock().unwrap().iter().filter(|p| *p == ok).count() >= 3);
    assert!(bodies.lock().unwrap()[0].starts_with("ok: iteration 1"), "{:?}", bodies.lock().unwrap());
    // Once a simulated minute at most: 12 iterations of 5 simulated seconds between two pings.
    let log = std::fs::read_to_string(dir.join("logs/app.jsonl")).unwrap();
    let iterations = log.lines().filter(|l| l.contains("\"loop_summary\"")).count();
    let pings = paths.lock().unwrap().len();
    assert!(pings <= iterations / 12 + 1, "{pings} pings for {iterations} iterations");

    let halt = Command::new(BIN).args(["halt", "--reason", "away"]).current_dir(&dir).output().unwrap();
    assert_eq!(halt.status.code(), Some(0));
    wait("a failure ping", &|| paths.lock().unwrap().iter().any(|p| p == "/hook/secret-token/fail"));
    let i = paths.lock().unwrap().iter().position(|p| p == "/hook/secret-token/fail").unwrap();
    assert_eq!(bodies.lock().unwrap()[i], "halted: manual");

    child.kill().unwrap();
    child.wait().unwrap();
    let after = paths.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(paths.lock().unwrap().len(), after, "no ping after the daemon is gone");
    let log = std::fs::read_to_string(dir.join("logs/app.jsonl")).unwrap();
    assert!(!log.contains("secret-token"), "the heartbeat's URL reached the log");
}
