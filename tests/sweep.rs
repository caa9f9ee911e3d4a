//! `backtest --sweep` and `--walk-forward` on a data set worked by hand: which combination wins,
//! the ranking, the windows' choices, and the refusal of a key or value that does not work.
//!
//! The data: AAPL days of two kinds (the shipped mom_AAPL bot, no slippage, no fees). Each day
//! the bot buys 97 shares at 103.00 (the entry of `tests/backtest.rs`'s hand-checked day), then
//! bar 62 jumps to 104.20, and bar 70 either
//! - crashes to 100.00 (an "A" day): a 1 % take profit sold at 104.20 (+116.40); a 3 % one is
//!   still in, and the resting stop fills at the crash's open, 100.00 (−291.00); or
//! - climbs to 106.50 (a "B" day): the 1 % take profit again +116.40; the 3 % one sells at
//!   106.50 (+339.50).

use std::path::Path;
use std::process::{Command, Output};

#[path = "support/hand_day.rs"]
mod hand_day;
#[path = "../src/test_dir.rs"]
mod test_dir;

const BIN: &str = env!("CARGO_BIN_EXE_trading-hydra");

/// Monday 2 to Monday 9 November 2026: A, A, A, B, B, B.
const DAYS: [(&str, bool); 6] = [
    ("2026-11-02", false),
    ("2026-11-03", false),
    ("2026-11-04", false),
    ("2026-11-05", true),
    ("2026-11-06", true),
    ("2026-11-09", true),
];

/// Bar 62 jumps to 104.20; bar 70 climbs to 106.50 on a B day, crashes to 100.00 on an A day.
fn day(date: &str, b_day: bool) -> String {
    hand_day::day(date, &[(62, 104.2), (70, if b_day { 106.5 } else { 100.0 })])
}

fn work(name: &str) -> test_dir::TestDir {
    let work = hand_day::work(&format!("sweep-{name}"), |bots| bots);
    let mut data = String::from("timestamp,open,high,low,close,volume\n");
    for (d, b) in DAYS {
        data.push_str(&day(d, b));
    }
    std::fs::write(work.join("bars/AAPL.csv"), data).unwrap();
    work
}

fn run(work: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["backtest", "--data", "bars"])
        .args(args)
        .current_dir(work)
        .env_remove("TRADING_HYDRA_CONFIG")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sweep.csv`'s rows as maps of column to value.
fn rows(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines.map(|l| head.iter().map(|h| h.to_string()).zip(l.split(',').map(String::from)).collect()).collect()
}

const TP: &str = "momentum_bots.mom_AAPL.exits.take_profit_pct";
const STOP: &str = "momentum_bots.*.exits.stop_loss_pct";

#[test]
fn a_sweep_ranks_every_combination_and_each_agrees_with_a_plain_backtest() {
    let work = work("grid");
    let tp = format!("{TP}=1,3");
    let stop = format!("{STOP}=0.5,2");
    let text = ok(&run(&work, &["--out", "one", "--sweep", &tp, "--sweep", &stop, "--jobs", "1"]));
    assert!(text.contains("sweep: 4 combinations over 2340 bars, ranked by return"), "{text}");
    let grid = rows(&work.join("one/sweep.csv"));
    // Six days at +116.40 with the 1 % take profit: +0.6984 %; three A days at -291.00 and three
    // B days at +339.50 with the 3 %: +0.1455 %. The stop's width changes neither (97 shares
    // either way): equal scores keep the grid's order.
    let ranked: Vec<(&str, &str, &str, &str)> = grid
        .iter()
        .map(|r| (r["rank"].as_str(), r[TP].as_str(), r[STOP].as_str(), r["total_return_pct"].as_str()))
        .collect();
    assert_eq!(
        ranked,
        [
            ("1", "1", "0.5", "0.6984"),
            ("2", "1", "2", "0.6984"),
            ("3", "3", "0.5", "0.1455"),
            ("4", "3", "2", "0.1455")
        ]
    );
    assert_eq!(grid[0]["trades"], "6");
    assert_eq!(grid[0]["end_equity"], "100698.40");
    assert_eq!(grid[2]["end_equity"], "100145.50");
    assert!(text.contains(&format!("best               {TP}=1 {STOP}=0.5")), "{text}");
    // The winner's whole report beside sweep.csv: the same figures as its row, and its trades.
    let best: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("one/best/report.json")).unwrap()).unwrap();
    assert_eq!((best["end_equity"].as_f64(), best["trades"].as_u64()), (Some(100_698.4), Some(6)));
    let trips = std::fs::read_to_string(work.join("one/best/trades.csv")).unwrap();
    assert_eq!(trips.lines().filter(|l| l.contains(",take_profit,")).count(), 6, "{trips}");
    assert!(
        std::fs::read_to_string(work.join("one/best/report.html")).unwrap().contains(&format!("{TP}=1 {STOP}=0.5"))
    );

    // Ranked by drawdown, the 3 % take profit's -291.00 days come last.
    ok(&run(&work, &["--out", "dd", "--sweep", &tp, "--rank", "drawdown"]));
    let dd = rows(&work.join("dd/sweep.csv"));
    assert_eq!((dd[0][TP].as_str(), dd[1][TP].as_str()), ("1", "3"));
    assert!(dd[0]["max_drawdown_pct"] < dd[1]["max_drawdown_pct"], "{dd:?}");

    // The same grid on two threads: the same file, byte for byte.
    ok(&run(&work, &["--out", "two", "--sweep", &tp, "--sweep", &stop, "--jobs", "2"]));
    assert_eq!(std::fs::read(work.join("one/sweep.csv")).unwrap(), std::fs::read(work.join("two/sweep.csv")).unwrap());

    // A combination is the plain backtest of the file with that value: the 3 % take profit.
    let bots = std::fs::read_to_string(work.join("config/bots.yaml")).unwrap();
    let edited = bots.replacen("take_profit_pct: 1.00", "take_profit_pct: 3", 1);
    assert_ne!(bots, edited);
    std::fs::write(work.join("config/bots.yaml"), edited).unwrap();
    ok(&run(&work, &["--out", "plain"]));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("plain/report.json")).unwrap()).unwrap();
    assert_eq!(report["total_return_pct"], 0.1455);
    assert_eq!(report["end_equity"], 100145.5);
}

#[test]
fn a_key_or_value_that_does_not_work_is_refused_before_anything_runs() {
    let work = work("refused");
    for (sweep, says) in [
        (
            "momentum_bots.mom_MSFT.exits.stop_loss_pct=1,2",
            "\"mom_MSFT\" is neither a bot_id of momentum_bots (mom_AAPL",
        ),
        ("momentum_bots.*.exits.stop_loss_pc=1,2", "unknown field `stop_loss_pc`"),
        ("momentum_bots.*.exits.stop_loss_pct=0.5,-1", "stop_loss_pct = -1 must be above 0"),
        ("momentum_bots.*.exits.stop_loss_pct=0.5,wide", "invalid type: string \"wide\""),
        ("nosuch.key=1", "neither bots.yaml nor settings.yaml has a section \"nosuch\""),
        ("runner.loop_interval_seconds=5,5", "all give the same configuration"),
    ] {
        let out = run(&work, &["--out", "out", "--sweep", sweep]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{sweep}: {err}");
        assert!(err.contains(says), "{sweep}: {err}");
        assert!(!work.join("out").exists(), "{sweep}: nothing runs");
    }
    // A meaningless key beside a good one: still named.
    let tp = format!("{TP}=1,3");
    let out = run(&work, &["--out", "out", "--sweep", &tp, "--sweep", "runner.loop_interval_seconds=5,5"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--sweep runner.loop_interval_seconds: its values 5,5 all give the same"), "{err}");
    let out = run(&work, &["--out", "out", "--walk-forward", "2:1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("go with --sweep"));
    // More training days than the data holds: said, exit 1.
    let out = run(&work, &["--out", "out", "--sweep", &format!("{TP}=1,3"), "--walk-forward", "6:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs more than 6 trading days of bars; the data holds 6"));
}

/// Windows of two training days and one test day over A A A B B B: the first three choose the
/// 1 % take profit (A, A; A, A; A, B: +232.80 against +48.50), the last the 3 % (B, B). Out of
/// sample: three days at +116.40, then one at +339.50. In hindsight the 3 % wins the test days
/// (A B B B: +727.50 against +465.60).
#[test]
fn a_walk_forward_picks_on_the_training_days_and_joins_the_test_days() {
    let work = work("walk");
    let tp = format!("{TP}=1,3");
    let text = ok(&run(&work, &["--out", "wf", "--sweep", &tp, "--walk-forward", "2:1"]));
    let windows = rows(&work.join("wf/walk_forward.csv"));
    let chosen: Vec<(&str, &str, &str, &str)> = windows
        .iter()
        .map(|w| (w["train_from"].as_str(), w["test_from"].as_str(), w[TP].as_str(), w["test_return_pct"].as_str()))
        .collect();
    assert_eq!(
        chosen,
        [
            ("2026-11-02", "2026-11-04", "1", "0.1164"),
            ("2026-11-03", "2026-11-05", "1", "0.1164"),
            ("2026-11-04", "2026-11-06", "1", "0.1164"),
            ("2026-11-05", "2026-11-09", "3", "0.3395"),
        ]
    );
    assert_eq!(windows[2]["train_return_pct"], "0.2328");
    // The joined curve: each window's dollars added on where the last ended.
    let joined = 100_000.0 + 3.0 * 116.40 + 339.50;
    let curve = std::fs::read_to_string(work.join("wf/walk_forward_equity.csv")).unwrap();
    let last: f64 = curve.lines().last().unwrap().split(',').nth(1).unwrap().parse().unwrap();
    assert!((last - joined).abs() < 0.01, "{last} against {joined}");
    assert!(curve.lines().nth(1).unwrap().ends_with(",100000.00"), "{curve}");
    let oos = format!("return {:+.2} %", (joined / 100_000.0 - 1.0) * 100.0);
    assert!(
        text.contains(&format!("out-of-sample      2026-11-04 to 2026-11-09, the test windows joined: {oos}")),
        "{text}"
    );
    assert!(text.contains("in-sample best     the same days in hindsight: return +0.73 %"), "{text}");
    assert!(text.contains(&format!("round trips 4: {TP}=3")), "{text}");
    // The in-sample sweep of the test days is sweep.csv: the 3 % first.
    let grid = rows(&work.join("wf/sweep.csv"));
    assert_eq!((grid[0][TP].as_str(), grid[0]["end_equity"].as_str()), ("3", "100727.50"));
    assert_eq!((grid[1][TP].as_str(), grid[1]["end_equity"].as_str()), ("1", "100465.60"));
    // The chart: both lines, and a mark where each of the four test windows starts.
    let chart = std::fs::read_to_string(work.join("wf/walk_forward_equity.svg")).unwrap();
    assert!(chart.starts_with("<svg"), "{chart}");
    assert_eq!(chart.matches("class=\"mark\"").count(), 4, "{chart}");
    assert_eq!(chart.matches("<polyline").count(), 2, "out of sample and in sample");
    // The in-sample best's whole report, beside sweep.csv.
    let best: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("wf/best/report.json")).unwrap()).unwrap();
    assert_eq!(best["end_equity"], 100_727.5);
    assert!(std::fs::read_to_string(work.join("wf/best/report.html")).unwrap().contains(&format!("{TP}=3")));
}
