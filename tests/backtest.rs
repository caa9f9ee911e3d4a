//! The backtest command: recorded bars through the same bots, the report's files, and the same
//! outputs for the same inputs.

use std::path::Path;
use std::process::Command;

use jiff::Timestamp;

#[path = "support/hand_day.rs"]
mod hand_day;
#[path = "../src/test_dir.rs"]
mod test_dir;

const BIN: &str = env!("CARGO_BIN_EXE_trading-hydra");

/// A deterministic walk with trending stretches and volume bursts.
fn walk(start: f64, seed: u64, n: usize) -> Vec<(f64, f64)> {
    let mut x = seed | 1;
    let mut price = start;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let noise = ((x >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.002;
            let trend = if (i / 90) % 2 == 0 { 0.0006 } else { -0.0005 };
            price *= 1.0 + trend + noise;
            let volume = if i % 17 == 0 { 9000.0 } else { 1000.0 + (x % 500) as f64 };
            (price, volume)
        })
        .collect()
}

fn write_bars(dir: &Path, symbol: &str, minutes: &[Timestamp], start: f64, seed: u64) {
    let mut text = String::from("timestamp,open,high,low,close,volume\n");
    let path = walk(start, seed, minutes.len());
    let mut prev = start;
    for (t, (c, v)) in minutes.iter().zip(path) {
        let (hi, lo) = (prev.max(c) * 1.0005, prev.min(c) * 0.9995);
        text.push_str(&format!("{},{prev:.4},{hi:.4},{lo:.4},{c:.4},{v}\n", t.strftime("%Y-%m-%dT%H:%M:%SZ")));
        prev = c;
    }
    std::fs::write(dir.join(format!("{}.csv", symbol.replace('/', "-"))), text).unwrap();
}

/// Two trading days (Tuesday and Wednesday 2026-11-24/25): session minutes for stocks, every
/// minute for crypto, and a file no bot trades.
fn data(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let day = |d: &str| -> Vec<Timestamp> {
        let open: Timestamp = format!("{d}T14:30:00Z").parse().unwrap();
        (0..390).map(|m| open + jiff::SignedDuration::from_mins(m)).collect()
    };
    let session: Vec<Timestamp> = day("2026-11-24").into_iter().chain(day("2026-11-25")).collect();
    let all_day: Vec<Timestamp> = {
        let start: Timestamp = "2026-11-24T05:00:00Z".parse().unwrap();
        (0..2 * 1440).map(|m| start + jiff::SignedDuration::from_mins(m)).collect()
    };
    write_bars(dir, "AAPL", &session, 190.0, 7);
    write_bars(dir, "SPY", &session, 480.0, 11);
    write_bars(dir, "BTC/USD", &all_day, 60_000.0, 13);
    write_bars(dir, "XYZ", &session, 20.0, 17);
}

fn backtest(work: &Path, out: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["backtest", "--data", "bars", "--out", out])
        .current_dir(work)
        .env_remove("TRADING_HYDRA_CONFIG")
        .output()
        .unwrap()
}

fn scratch(name: &str) -> test_dir::TestDir {
    let dir = test_dir::TestDir::new(&format!("backtest-{name}"));
    std::fs::create_dir_all(dir.join("config")).unwrap();
    for f in ["settings.yaml", "bots.yaml"] {
        std::fs::copy(Path::new("config").join(f), dir.join("config").join(f)).unwrap();
    }
    data(&dir.join("bars"));
    dir
}

#[test]
fn a_backtest_reports_and_repeats_itself_byte_for_byte() {
    let work = scratch("repeat");
    let first = backtest(&work, "out1");
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(text.contains("skipped            XYZ: no configured bot trades it"), "{text}");
    for f in ["trades.csv", "equity.csv", "report.json", "equity.svg"] {
        assert!(work.join("out1").join(f).exists(), "{f}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("out1/report.json")).unwrap()).unwrap();
    assert_eq!(report["start_equity"], 100000.0);
    assert!(report["trades"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["bars"], 390 * 2 * 2 + 2 * 1440);
    let orders = std::fs::read_to_string(work.join("out1/orders.csv")).unwrap();
    assert!(orders.lines().skip(1).all(|l| l.starts_with("th-")), "{orders}");
    let trades = std::fs::read_to_string(work.join("out1/trades.csv")).unwrap();
    assert!(
        trades.starts_with("bot,symbol,legs,side,qty,entry_time,entry_price,exit_time,exit_price,rule,"),
        "{trades}"
    );
    assert!(std::fs::read_to_string(work.join("out1/equity.svg")).unwrap().starts_with("<svg"));
    // The live state database was never created: the backtest keeps its own, then deletes it.
    assert!(!work.join("state").exists());

    let second = backtest(&work, "out2");
    assert_eq!(second.status.code(), Some(0));
    for f in ["trades.csv", "orders.csv", "equity.csv", "report.json", "equity.svg", "report.html"] {
        let a = std::fs::read(work.join("out1").join(f)).unwrap();
        let b = std::fs::read(work.join("out2").join(f)).unwrap();
        assert!(a == b, "{f} differs between two runs on the same data");
    }
}

#[test]
fn bad_data_is_a_usage_error_naming_the_file_and_line() {
    let work = scratch("bad");
    std::fs::write(
        work.join("bars/BAD.csv"),
        "timestamp,open,high,low,close,volume\n2026-11-24T14:30:00Z,1,2,0.5,oops,10\n",
    )
    .unwrap();
    let out = backtest(&work, "out");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("BAD.csv line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One AAPL session: 40 flat minutes at 100, a climb of 0.20 a minute to 103.00 whose last bar
/// trades three times the volume, flat at 103.00, then a jump (day 1) or a crash (day 2).
/// The hand-worked day: 103.00 from the entry until bar `at`, then `after`.
fn day_of_aapl(date: &str, after: f64, at: usize) -> String {
    hand_day::day(date, &[(at, after)])
}

/// Worked by hand (no slippage, no fees, the shipped mom_AAPL bot):
/// - Day 1: the signal fires on the close of bar 54 (15:24Z, 10:24 New York): 103.00 with
///   volume 3x the average, above rising EMAs, +1.98 % over 10 bars. The ask is 103.00515
///   (the sim's half spread, 0.5 bp); the size is the smallest of $500 / (103.00515 x 0.5 %) =
///   970, $10,000 / 103.00515 = 97.08 and the spendable cash: 97 shares. It fills at the next
///   bar's close, 103.00. Bar 70 jumps to 104.20: +1.17 % is past the 1 % take profit; the exit
///   fills at the next bar, 104.20. P&L 97 x 1.20 = +116.40.
/// - Day 2: the same entry, then bar 60 crashes to 87.55 (-15 %). Equity falls 97 x 15.45 =
///   $1,498.65, -1.497 % of the day's start (100,116.40): the daily-loss halt. The position's
///   resting stop (0.5 % below the entry: 102.48) fills at that bar's open, 87.55, so the flatten
///   has nothing left to sell. P&L -1,498.65.
#[test]
fn a_hand_checked_data_set_gives_exact_trades_and_pnl() {
    let work = hand_day::work("backtest-exact", |bots| bots);
    let data = format!(
        "timestamp,open,high,low,close,volume\n{}{}",
        day_of_aapl("2026-11-24", 104.2, 70),
        day_of_aapl("2026-11-25", 87.55, 60)
    );
    std::fs::write(work.join("bars/AAPL.csv"), data).unwrap();
    let out = backtest(&work, "out");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let orders = std::fs::read_to_string(work.join("out/orders.csv")).unwrap();
    let rows: Vec<Vec<&str>> = orders.lines().skip(1).map(|l| l.split(',').collect()).collect();
    // client_order_id,bot,symbol,side,qty,type,limit_price,stop_price,decided_price,intent,rule,status,
    // filled_qty,fill_price,first_fill,last_fill,realized_pnl,trading_date,created_at
    // The fills (the resting protective stops that were cancelled or never filled are rows too).
    let summary: Vec<(&str, &str, &str, &str, &str, &str)> =
        rows.iter().filter(|r| r[11] == "filled").map(|r| (r[3], r[4], r[9], r[10], r[13], r[16])).collect();
    assert_eq!(
        summary,
        vec![
            ("buy", "97", "entry", "", "103", "0.00"),
            ("sell", "97", "exit", "take_profit", "104.2", "116.40"),
            ("buy", "97", "entry", "", "103", "0.00"),
            // The resting stop (0.5 % below 103.00: 102.48) fills at the gap's open, 87.55.
            ("sell", "97", "exit", "broker_stop", "87.55", "-1498.65"),
        ],
        "{orders}"
    );
    assert_eq!(rows[0][18], "2026-11-24T15:25:00.000Z", "sent when bar 54 closed");
    assert_eq!(rows[0][14], "2026-11-24T15:26:00.000Z", "filled at the next bar");
    // The round trips: one row each, with both fills.
    let trades = std::fs::read_to_string(work.join("out/trades.csv")).unwrap();
    let trips: Vec<Vec<&str>> = trades.lines().skip(1).map(|l| l.split(',').collect()).collect();
    // bot,symbol,legs,side,qty,entry_time,entry_price,exit_time,exit_price,rule,minutes,gross_pnl,fees,pnl,slippage
    let trips: Vec<Vec<&str>> = trips.iter().map(|r| r[..15].to_vec()).collect();
    assert_eq!(
        trips,
        vec![
            vec![
                "mom_AAPL",
                "AAPL",
                "",
                "long",
                "97",
                "2026-11-24T15:26:00Z",
                "103",
                "2026-11-24T15:42:00Z",
                "104.2",
                "take_profit",
                "16",
                "116.40",
                "0.00",
                "116.40",
                "0.00",
            ],
            vec![
                "mom_AAPL",
                "AAPL",
                "",
                "long",
                "97",
                "2026-11-25T15:26:00Z",
                "103",
                "2026-11-25T15:31:00Z",
                "87.55",
                // Slippage against the stop it was decided at, 102.48: (87.55 − 102.48) × −97.
                "broker_stop",
                "5",
                "-1498.65",
                "0.00",
                "-1498.65",
                "1448.21",
            ],
        ],
        "{trades}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("out/report.json")).unwrap()).unwrap();
    assert_eq!(report["end_equity"], 100_000.0 + 116.40 - 1498.65);
    assert_eq!(report["per_bot_pnl"]["mom_AAPL"], -1382.25);
    assert_eq!(report["halts"]["daily_loss"], 1);
    assert_eq!(report["trades"], 2);
    assert_eq!(report["win_rate_pct"], 50.0);
}

/// A backtest with the momentum bot's broker stop on (`broker_stop_pct: 1.0`): the entry of the
/// hand-checked day (97 AAPL at 103.00) rests a stop at 101.97. Bar 250, more than three hours
/// later, dips to 101.50 inside the minute but closes at 103.00 again: the daemon's own watch
/// (which sees closes) never fires, the resting stop does, at its stop. P&L 97 × (101.97 −
/// 103.00) = −99.91, and `trades.csv` shows the hours the stop rested.
#[test]
fn a_backtest_fills_a_resting_stop_where_a_bar_dips_through_it() {
    // Without the bot's 25-minute time stop, which would close the trade long before the wick.
    let work = hand_day::work("backtest-stop", |bots| {
        bots.replacen("time_stop_minutes: 25    #", "# time_stop_minutes: 25    #", 1)
            .replace("# broker_stop_pct: 1.0", "broker_stop_pct: 1.0")
    });
    // The flat day after the climb, with one wick: bar 250's low at 101.50.
    let day = day_of_aapl("2026-11-24", 103.0, 389);
    let mut lines: Vec<String> = day.lines().map(str::to_string).collect();
    let cols: Vec<String> = lines[250].split(',').map(str::to_string).collect();
    lines[250] = format!("{},103.00,103.05,101.50,103.00,1000", cols[0]);
    std::fs::write(work.join("bars/AAPL.csv"), format!("timestamp,open,high,low,close,volume\n{}\n", lines.join("\n")))
        .unwrap();
    let out = backtest(&work, "out");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let trades = std::fs::read_to_string(work.join("out/trades.csv")).unwrap();
    let rows: Vec<Vec<&str>> = trades.lines().skip(1).map(|l| l.split(',').collect()).collect();
    // bot,symbol,legs,side,qty,entry_time,entry_price,exit_time,exit_price,rule,minutes,gross_pnl,fees,pnl,slippage
    let trips: Vec<Vec<&str>> = rows.iter().map(|r| r[3..15].to_vec()).collect();
    assert_eq!(
        trips,
        // The stop rests at 101.97 from the entry (filled in bar 55, stamped at its end, 15:26)
        // until the wick of bar 250 (18:40 to 18:41Z): three hours and fifteen minutes, the fill at
        // the stop itself (no slippage).
        vec![vec![
            "long",
            "97",
            "2026-11-24T15:26:00Z",
            "103",
            "2026-11-24T18:41:00Z",
            "101.97",
            "broker_stop",
            "195",
            "-99.91",
            "0.00",
            "-99.91",
            "0.00",
        ]],
        "{trades}"
    );
}

fn synthetic(work: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["backtest", "--synthetic", "3", "--to", "2026-12-01", "--out", out]).args(extra).current_dir(work);
    // No keys, and any Alpaca host a stray request would reach is a closed port.
    for var in ["ALPACA_KEY", "ALPACA_SECRET", "TRADING_HYDRA_CONFIG"] {
        cmd.env_remove(var);
    }
    cmd.env("ALPACA_TRADING_URL", "http://127.0.0.1:9").env("ALPACA_DATA_URL", "http://127.0.0.1:9");
    cmd.output().unwrap()
}

#[test]
fn a_synthetic_backtest_needs_no_keys_and_repeats_itself_by_seed() {
    let work = scratch("synthetic");
    let first = synthetic(&work, "a", &[]);
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("a/report.json")).unwrap()).unwrap();
    // The shipped bots trade AAPL, SPY, QQQ and IWM (session minutes of the weekdays Fri 27 Nov,
    // Mon 30 Nov and Tue 1 Dec) and BTC/USD, ETH/USD (every minute of those five calendar days).
    assert_eq!(report["bars"], 4 * 390 * 3 + 2 * 1440 * 5, "{report}");
    assert!(report["trades"].as_u64().unwrap() >= 1, "{report}");
    let equity = std::fs::read_to_string(work.join("a/equity.csv")).unwrap();
    let first_row = equity.lines().nth(1).unwrap();
    assert!(first_row.starts_with("2026-11-27"), "{first_row}");
    assert!(!work.join("state").exists(), "the live ledger is never created");

    // The default seed is 42: the same market, byte for byte; another seed, another market.
    let again = synthetic(&work, "b", &["--seed", "42"]);
    assert_eq!(again.status.code(), Some(0));
    let other = synthetic(&work, "c", &["--seed", "7"]);
    assert_eq!(other.status.code(), Some(0));
    let read = |d: &str| std::fs::read(work.join(d).join("trades.csv")).unwrap();
    assert!(read("a") == read("b"), "the same seed gives the same trades");
    assert!(read("a") != read("c"), "another seed gives another market");
}

/// Checks that `html` is well-formed: every element closed in order (void elements written
/// `<x/>`), no raw `<` in text, every `&` an entity.
fn well_formed(html: &str) -> Result<(), String> {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html.strip_prefix("<!DOCTYPE html>").ok_or("no doctype")?;
    while let Some(open) = rest.find(['<', '&']) {
        let (text, tail) = rest.split_at(open);
        if text.contains('>') {
            return Err(format!("a raw '>' in text: {:?}", &text[..text.len().min(80)]));
        }
        if tail.starts_with('&') {
            let entity = tail.split_once(';').map(|(e, _)| e).unwrap_or(tail);
            if !["&amp", "&lt", "&gt", "&quot", "&#39"].contains(&entity) {
                return Err(format!("a bare '&': {:?}", &tail[..tail.len().min(40)]));
            }
            rest = &tail[entity.len() + 1..];
            continue;
        }
        let close = tail.find('>').ok_or("an unclosed tag")?;
        let tag = &tail[1..close];
        rest = &tail[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(top) if top == name => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap_or("").to_string();
            if name.is_empty() || tag.contains('<') {
                return Err(format!("a bad tag: <{tag}>"));
            }
            // Style and pre content are text: skip to their end tag.
            if name == "style" {
                let end = rest.find("</style>").ok_or("an unclosed style")?;
                rest = &rest[end..];
            }
            stack.push(name);
        }
    }
    if stack.is_empty() { Ok(()) } else { Err(format!("left open: {stack:?}")) }
}

#[test]
fn the_report_page_is_well_formed_self_contained_and_renders() {
    let work = scratch("report-page");
    let out = backtest(&work, "out");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let path = work.join("out/report.html");
    let html = std::fs::read_to_string(&path).unwrap();
    well_formed(&html).unwrap();
    // Nothing from the network: no script, and no address but the SVG namespace.
    assert!(!html.contains("<script"), "no script");
    assert_eq!(html.matches("http").count(), html.matches("http://www.w3.org/2000/svg").count(), "no remote resource");
    for section in [
        "<h2>Equity</h2>",
        "<h2>Drawdown</h2>",
        "<h2>Monthly returns</h2>",
        "<h2>By bot</h2>",
        "<h2>Round trips (",
        "<h2>Return against buy and hold</h2>",
        "<h3>bots.yaml</h3>",
    ] {
        assert!(html.contains(section), "{section}");
    }
    assert!(html.contains("buy and hold of AAPL, BTC/USD, SPY"), "the benchmark names the traded symbols");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("out/report.json")).unwrap()).unwrap();
    let card = format!("<b>{} (+{} open)</b>", report["trades"], report["open_trades"]);
    assert!(html.contains(&card), "the round trips card is report.json's figure");
    let trips = std::fs::read_to_string(work.join("out/trades.csv")).unwrap().lines().count() - 1;
    assert!(html.contains(&format!("<h2>Round trips ({trips})</h2>")));
    assert!(html.contains("ticker: AAPL"), "the configuration the run used");
    // A checker that did not fail on a broken page would prove nothing.
    assert!(well_formed(&html.replacen("</table>", "", 1)).is_err());
    assert!(well_formed(&html.replacen("&amp;", "&", 1)).is_err());

    // Rendered where a headless browser is installed (Debian's chromium). The browser runs on
    // the real clock (a static page needs no other): under `scripts/test-at.sh` libfaketime's
    // `LD_PRELOAD` would reach it, and chromium spins or traps under a faked clock.
    let browser_command = |b: &str| {
        let mut c = Command::new(b);
        c.env_remove("LD_PRELOAD");
        c
    };
    let Some(browser) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| browser_command(b).arg("--version").output().is_ok_and(|o| o.status.success()))
    else {
        eprintln!("no chromium here: the page was checked but not rendered");
        return;
    };
    let dom = browser_command(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", path.display()))
        .output()
        .unwrap();
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let rendered = String::from_utf8_lossy(&dom.stdout);
    assert!(rendered.contains("Backtest report") && rendered.contains("<polyline"), "{rendered:.500}");
    let shot = work.join("out/shot.png");
    let png = browser_command(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,1600"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", path.display()))
        .output()
        .unwrap();
    assert!(png.status.success(), "{}", String::from_utf8_lossy(&png.stderr));
    let bytes = std::fs::read(&shot).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "a screenshot with something on it: {} bytes",
        bytes.len()
    );
}

#[test]
fn bar_files_streamed_give_the_same_report_as_the_same_bars_held_in_memory() {
    use std::sync::Arc;
    use trading_hydra::core::config::Config;
    use trading_hydra::research::backtest;
    use trading_hydra::sim::bar_files;
    // Thursday to Tuesday: the weekend is longer than the window the stream keeps, crypto trades
    // through it, and the momentum and options bots trade each session.
    let work = scratch("streamed");
    let bars = work.join("bars-long");
    std::fs::create_dir_all(&bars).unwrap();
    let days = ["2026-11-19", "2026-11-20", "2026-11-23", "2026-11-24"];
    let session: Vec<Timestamp> = days
        .iter()
        .flat_map(|d| {
            let open: Timestamp = format!("{d}T14:30:00Z").parse().unwrap();
            (0..390).map(move |m| open + jiff::SignedDuration::from_mins(m))
        })
        .collect();
    let start: Timestamp = "2026-11-19T05:00:00Z".parse().unwrap();
    let all_day: Vec<Timestamp> = (0..6 * 1440).map(|m| start + jiff::SignedDuration::from_mins(m)).collect();
    write_bars(&bars, "AAPL", &session, 190.0, 7);
    write_bars(&bars, "SPY", &session, 480.0, 11);
    write_bars(&bars, "BTC/USD", &all_day, 60_000.0, 13);
    let config = work.join("config");
    let (settings, bots) = Config::read_texts(&config).unwrap();
    let from = Some("2026-11-20".parse().unwrap());
    let held = backtest::Bars::Held(Arc::new(backtest::window(bar_files::read(&bars).unwrap(), from, None)));
    let streamed =
        backtest::Bars::Files(bar_files::check(&bars, trading_hydra::core::clock::Dates::new(from, None)).unwrap());
    let mut reports = Vec::new();
    for (name, data) in [("held", &held), ("streamed", &streamed)] {
        let cfg = Config::from_texts(&config, &settings, &bots).unwrap();
        let summary = backtest::run(cfg, (&settings, &bots), data, &work.join(name), "bars").unwrap().summary;
        assert!(summary.trades >= 3, "{summary:?}");
        assert_eq!(summary.bars, 3 * 390 * 2 + 5 * 1440, "{summary:?}");
        reports.push(summary);
    }
    assert_eq!(reports[0], reports[1]);
    for f in ["trades.csv", "orders.csv", "equity.csv", "report.json", "equity.svg", "report.html"] {
        let a = std::fs::read(work.join("held").join(f)).unwrap();
        let b = std::fs::read(work.join("streamed").join(f)).unwrap();
        assert!(a == b, "{f} differs between the held and the streamed replay");
    }
}

#[test]
fn the_benchmark_read_during_the_run_equals_buy_and_hold_over_the_whole_files() {
    use std::sync::Arc;
    use trading_hydra::core::config::Config;
    use trading_hydra::research::{backtest, report_page};
    use trading_hydra::sim::bar_files;
    // SPY begins a day late and AAPL misses an hour: a symbol before its first bar is its cash,
    // and a gap holds the last close.
    let work = scratch("benchmark");
    let bars = work.join("bars-late");
    std::fs::create_dir_all(&bars).unwrap();
    let session = |days: &[&str]| -> Vec<Timestamp> {
        days.iter()
            .flat_map(|d| {
                let open: Timestamp = format!("{d}T14:30:00Z").parse().unwrap();
                (0..390).map(move |m| open + jiff::SignedDuration::from_mins(m))
            })
            .collect()
    };
    let aapl: Vec<Timestamp> = session(&["2026-11-19", "2026-11-20", "2026-11-23"])
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !(500..560).contains(i))
        .map(|(_, t)| t)
        .collect();
    write_bars(&bars, "AAPL", &aapl, 190.0, 7);
    write_bars(&bars, "SPY", &session(&["2026-11-20", "2026-11-23"]), 480.0, 11);
    let start: Timestamp = "2026-11-19T05:00:00Z".parse().unwrap();
    let all_day: Vec<Timestamp> = (0..5 * 1440).map(|m| start + jiff::SignedDuration::from_mins(m)).collect();
    write_bars(&bars, "BTC/USD", &all_day, 60_000.0, 13);
    let config = work.join("config");
    let (settings, bots) = Config::read_texts(&config).unwrap();
    let all = bar_files::read(&bars).unwrap();
    let held = backtest::Bars::Held(Arc::new(all.clone()));
    let streamed =
        backtest::Bars::Files(bar_files::check(&bars, trading_hydra::core::clock::Dates::new(None, None)).unwrap());
    for data in [&held, &streamed] {
        let cfg = Config::from_texts(&config, &settings, &bots).unwrap();
        let run = backtest::simulate(cfg, data, true, false).unwrap();
        let series: Vec<_> = all
            .iter()
            .filter(|(s, _)| !run.summary.skipped.contains(s))
            .map(|(_, v)| v.iter().map(|b| Ok::<_, String>(*b)))
            .collect();
        assert_eq!(series.len(), 3, "{:?}", run.summary.skipped);
        let expected = report_page::buy_and_hold(series, run.summary.start_equity, &run.equity).unwrap();
        assert_eq!(run.benchmark.len(), run.equity.len());
        assert!(run.benchmark == expected, "the benchmark read during the run differs from the files'");
        // It moved: SPY's cash before its first bar, then all three symbols' closes.
        assert!(run.benchmark.windows(2).any(|w| w[0].1 != w[1].1));
    }
}
