//! Metrics for a monitoring stack, without a new port (`metrics.textfile_path`).
//!
//! Owns: the Prometheus text exposition of what the ledger says after an iteration (`render`:
//! equity and the day's P&L, each bot's realised and unrealised P&L, positions, open orders and
//! positions without a resting stop, the active halts, the last iteration's time and duration,
//! and the running totals of requests, API errors and refused orders), and writing it for
//! node_exporter's textfile collector at most every 15 seconds, whole: a temporary file renamed
//! into place (`MetricsFile`).
//!
//! Never: opens a port, delays the loop on a slow disk for long (one small file, at most every
//! 15 s), or stops trading when the file cannot be written (`metrics_error`, once per failing
//! stretch).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::core::halt::HaltReason;
use crate::core::state::{State, StateError, with_suffix};
use crate::event;
use crate::services::status::{self, StatusReport};

/// The file is written at most this often.
pub const WRITE_EVERY: Duration = Duration::from_secs(15);

/// What the daemon counted since it started (Prometheus counters: they only grow, and start
/// again from zero with the process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub api_errors: u64,
    pub orders_refused: u64,
}

/// One bot's figures.
#[derive(Debug, Default)]
struct BotFigures {
    realized: f64,
    unrealized: f64,
    positions: usize,
    without_stop: usize,
}

/// One metric family being written: its `# HELP` and `# TYPE` lines, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{name}");
        if !labels.is_empty() {
            let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let _ = write!(self.out, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn family<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out }
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The exposition of `report` (the ledger after an iteration), `open_by_bot` (our orders in
/// flight) and `totals`.
pub fn render(report: &StatusReport, open_by_bot: &BTreeMap<String, usize>, totals: Totals) -> String {
    let mut out = String::new();
    let last = report.last_loop.as_ref();
    let equity = last.and_then(|l| l.equity);
    let day_start = last.and_then(|l| l.day_start_equity).or(report.day_start.as_ref().map(|d| d.equity));
    let gauge = |out: &mut String, name: &str, help: &str, v: Option<f64>| {
        if let Some(v) = v {
            family(out, name, "gauge", help).sample(name, &[], v);
        }
    };
    gauge(&mut out, "trading_hydra_equity_dollars", "The account's equity at the last iteration.", equity);
    gauge(
        &mut out,
        "trading_hydra_day_start_equity_dollars",
        "The trading date's reference equity (its deposits and withdrawals taken out).",
        day_start,
    );
    gauge(
        &mut out,
        "trading_hydra_day_pnl_dollars",
        "Equity less the day's reference equity.",
        equity.zip(day_start).map(|(e, d)| e - d),
    );
    // Every bot the ledger speaks of today: its budget row, or a position.
    let mut bots: BTreeMap<String, BotFigures> = BTreeMap::new();
    for b in &report.budgets {
        bots.entry(b.bot.clone()).or_default().realized = b.realized_pnl;
    }
    for (p, unrealized) in &report.owned {
        let e = bots.entry(p.bot.clone()).or_default();
        e.unrealized += unrealized.unwrap_or(0.0);
        e.positions += 1;
        if !report.protection.iter().any(|g| g.bot == p.bot && g.symbol == p.symbol) {
            e.without_stop += 1;
        }
    }
    for bot in open_by_bot.keys() {
        bots.entry(bot.clone()).or_default();
    }
    let per_bot = |out: &mut String, name: &str, help: &str, value: &dyn Fn(&str, &BotFigures) -> f64| {
        let mut f = family(out, name, "gauge", help);
        for (bot, v) in &bots {
            f.sample(name, &[("bot", bot)], value(bot, v));
        }
    };
    per_bot(&mut out, "trading_hydra_realized_pnl_dollars", "P&L realised today, by bot.", &|_, v| v.realized);
    per_bot(
        &mut out,
        "trading_hydra_unrealized_pnl_dollars",
        "Unrealised P&L of the bot's positions at the broker's last price.",
        &|_, v| v.unrealized,
    );
    per_bot(&mut out, "trading_hydra_positions", "Positions the bot owns.", &|_, v| v.positions as f64);
    per_bot(
        &mut out,
        "trading_hydra_positions_without_stop",
        "The bot's positions with no protective stop resting at the broker.",
        &|_, v| v.without_stop as f64,
    );
    per_bot(&mut out, "trading_hydra_open_orders", "The bot's orders in flight.", &|bot, _| {
        open_by_bot.get(bot).copied().unwrap_or(0) as f64
    });
    let mut f = family(&mut out, "trading_hydra_halt_active", "gauge", "1 while a halt of this reason is active.");
    for r in HaltReason::ALL {
        let on = report.halts.iter().any(|h| h.reason == r);
        f.sample("trading_hydra_halt_active", &[("reason", r.as_str())], if on { 1.0 } else { 0.0 });
    }
    if let Some(l) = last {
        gauge(
            &mut out,
            "trading_hydra_last_iteration_timestamp_seconds",
            "When the last iteration started (Unix time, the wall clock).",
            Some(l.started_at.as_millisecond() as f64 / 1000.0),
        );
        gauge(
            &mut out,
            "trading_hydra_last_iteration_duration_seconds",
            "How long the last iteration took.",
            Some(l.duration_ms as f64 / 1000.0),
        );
    }
    for (name, help, v) in [
        ("trading_hydra_requests_total", "Requests made to the broker since the daemon started.", totals.requests),
        (
            "trading_hydra_api_errors_total",
            "Broker calls that failed for good since the daemon started.",
            totals.api_errors,
        ),
        (
            "trading_hydra_orders_refused_total",
            "Orders the broker refused since the daemon started.",
            totals.orders_refused,
        ),
    ] {
        family(&mut out, name, "counter", help).sample(name, &[], v as f64);
    }
    out
}

/// Writes `text` to `path` whole: a temporary file beside it, renamed into place.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = with_suffix(path, ".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The daemon's metrics file, written after an iteration at most every `WRITE_EVERY`.
#[derive(Debug, Default)]
pub struct MetricsFile {
    written_at: Option<Instant>,
    failing: bool,
}

impl MetricsFile {
    /// Writes the file at `path` (`None`: off) when it is due.
    pub fn after_iteration(&mut self, state: &State, path: Option<&Path>, interval_seconds: u64, totals: Totals) {
        let Some(path) = path else { return };
        if self.written_at.is_some_and(|t| t.elapsed() < WRITE_EVERY) {
            return;
        }
        self.written_at = Some(Instant::now());
        let made = gather(state, interval_seconds, totals).map_err(|e| e.to_string()).and_then(|text| {
            write_atomically(path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        });
        match made {
            Ok(()) => self.failing = false,
            Err(detail) if !self.failing => {
                self.failing = true;
                event!(Warn, "metrics_error", detail = detail.as_str());
            }
            Err(_) => {}
        }
    }
}

fn gather(state: &State, interval_seconds: u64, totals: Totals) -> Result<String, StateError> {
    let report = status::gather(state, Timestamp::now(), interval_seconds)?;
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    for o in state.unfinished_orders()? {
        *open.entry(o.bot).or_default() += 1;
    }
    Ok(render(&report, &open, totals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn a_reader_never_sees_a_file_half_written() {
        let scratch = crate::test_dir::TestDir::new("metrics-atomic");
        let path = scratch.path().join("m.prom");
        write_atomically(&path, "x 0\n# end\n").unwrap();
        let reader_path = path.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = stop.clone();
        let reader = std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let text = std::fs::read_to_string(&reader_path).unwrap();
                assert!(text.ends_with("# end\n"), "a partial file: {} bytes", text.len());
                reads += 1;
            }
            reads
        });
        for i in 0..300 {
            let body: String = (0..(i % 50) * 40).map(|k| format!("x_{k} {i}\n")).collect();
            write_atomically(&path, &format!("{body}# end\n")).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        assert!(!scratch.path().join("m.prom.tmp").exists());
    }
}
