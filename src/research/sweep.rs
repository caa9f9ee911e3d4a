//! Parameter sweeps and walk-forward tests: many backtests of one data set.
//!
//! Owns: the grid of `--sweep KEY=V1,V2,…` axes — each combination a whole configuration, edited
//! in the files' YAML and validated like the files themselves before anything runs; running the
//! grid on `--jobs` plain threads, each combination its own simulation (own ledger, own book) over
//! the one shared copy of the bars; the ranking by `--rank` and `sweep.csv`; and
//! `--walk-forward TRAIN:TEST`: windows counted in stock sessions (`trading_dates`), for each the
//! best combination on the training days, run on the test days that follow (from the day after
//! the training's last), the test windows' P&L and round trips joined into one out-of-sample
//! result, beside the best combination in hindsight over the same days. (`main` writes the best
//! combination's whole report beside `sweep.csv`.)
//!
//! Never: lets the thread a combination ran on show in a result (results are collected by
//! combination and ranked with ties broken by the grid's order: the same grid gives the same
//! files byte for byte), or carries a position from one walk-forward window into the next (each
//! test window starts flat, with the simulated broker's starting cash).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use jiff::Timestamp;
use jiff::civil::Date;
use serde_yaml::Value;

use crate::core::clock;
use crate::core::config::{Config, ConfigError};
use crate::core::instrument::AssetClass;
use crate::core::market_data::{Bar, BySymbol};
use crate::core::round_trip::{RoundTrip, csv_field};
use crate::research::backtest::{self, Summary};

/// One `--sweep KEY=V1,V2,…`: a configuration key and the values it takes, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

impl Axis {
    /// `KEY=V1,V2,…`; the key a dotted path, at least one value, none empty.
    pub fn parse(arg: &str) -> Result<Axis, String> {
        let Some((key, values)) = arg.split_once('=') else {
            return Err(format!("--sweep takes KEY=V1,V2,..., got {arg:?}"));
        };
        let key = key.trim();
        if key.is_empty() || key.split('.').any(|s| s.trim().is_empty()) {
            return Err(format!(
                "--sweep {arg:?}: the key must be a dotted path such as momentum_bots.*.exits.stop_loss_pct"
            ));
        }
        let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
        if values.iter().any(String::is_empty) {
            return Err(format!("--sweep {arg:?}: a value is empty (write KEY=V1,V2,...)"));
        }
        Ok(Axis { key: key.to_string(), values })
    }
}

/// What a sweep ranks by: the best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rank {
    /// Total return, highest first.
    Return,
    /// Maximum drawdown, smallest first.
    Drawdown,
    /// Annualised Sharpe ratio of the daily returns, highest first (none, too few days: last).
    Sharpe,
    /// Round trips closed, most first.
    Trades,
}

impl Rank {
    pub fn parse(text: &str) -> Option<Rank> {
        match text {
            "return" => Some(Rank::Return),
            "drawdown" => Some(Rank::Drawdown),
            "sharpe" => Some(Rank::Sharpe),
            "trades" => Some(Rank::Trades),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rank::Return => "return",
            Rank::Drawdown => "drawdown",
            Rank::Sharpe => "sharpe",
            Rank::Trades => "trades",
        }
    }

    /// The score a summary ranks by: higher is better.
    fn score(self, s: &Summary) -> f64 {
        match self {
            Rank::Return => s.total_return_pct,
            Rank::Drawdown => -s.max_drawdown_pct,
            Rank::Sharpe => s.sharpe.unwrap_or(f64::NEG_INFINITY),
            Rank::Trades => f64::from(s.trades),
        }
    }

    /// Indexes of `summaries`, best first; equal scores keep the grid's order.
    pub fn order(self, summaries: &[Summary]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..summaries.len()).collect();
        order.sort_by(|a, b| self.score(&summaries[*b]).total_cmp(&self.score(&summaries[*a])));
        order
    }
}

/// One point of the grid: a value for each axis, and the validated configuration they give.
#[derive(Debug, Clone)]
pub struct Combination {
    pub values: Vec<String>,
    pub cfg: Config,
    /// `settings.yaml` and `bots.yaml` as this combination has them (for its report).
    pub texts: (String, String),
}

/// Every combination of the axes' values (the first axis varies slowest), each configuration
/// validated; the first key or value that does not work is refused, named, before anything runs.
pub fn grid(dir: &Path, settings: &str, bots: &str, axes: &[Axis]) -> Result<Vec<Combination>, String> {
    let mut seen = BTreeSet::new();
    for a in axes {
        if !seen.insert(a.key.as_str()) {
            return Err(format!("--sweep {} is given twice: give its values once, comma-separated", a.key));
        }
    }
    let yaml = |text: &str, file: &str| -> Result<Value, String> {
        let text = if text.trim().is_empty() { "{}" } else { text };
        serde_yaml::from_str(text).map_err(|e| format!("{}: {e}", dir.join(file).display()))
    };
    let settings = yaml(settings, crate::core::config::SETTINGS_FILE)?;
    let bots = yaml(bots, crate::core::config::BOTS_FILE)?;
    let mut out = Vec::new();
    let total: usize = axes.iter().map(|a| a.values.len()).product();
    for n in 0..total {
        // The mixed-radix digits of n, the last axis fastest.
        let mut values = Vec::with_capacity(axes.len());
        let mut rest = n;
        for a in axes.iter().rev() {
            values.push(a.values[rest % a.values.len()].clone());
            rest /= a.values.len();
        }
        values.reverse();
        let (mut s, mut b) = (settings.clone(), bots.clone());
        for (a, v) in axes.iter().zip(&values) {
            apply(&mut s, &mut b, &a.key, v)?;
        }
        let text = |v: &Value| serde_yaml::to_string(v).map_err(|e| format!("--sweep: {e}"));
        let texts = (text(&s)?, text(&b)?);
        let cfg = Config::from_texts(dir, &texts.0, &texts.1).map_err(|e| refused(axes, &values, &e))?;
        out.push(Combination { values, cfg, texts });
    }
    // A key whose values all give the same configuration is spelled wrong or means nothing here:
    // each combination against its twin with the key's first value (the same other values).
    let shown: Vec<String> = out.iter().map(|c| format!("{:?}", c.cfg)).collect();
    let mut stride = 1;
    for a in axes.iter().rev() {
        let n = a.values.len();
        let differs = (0..out.len()).any(|c| shown[c] != shown[c - (c / stride % n) * stride]);
        if n >= 2 && !differs {
            return Err(format!(
                "--sweep {}: its values {} all give the same configuration (is the key the one meant?)",
                a.key,
                a.values.join(",")
            ));
        }
        stride *= n;
    }
    Ok(out)
}

fn refused(axes: &[Axis], values: &[String], e: &ConfigError) -> String {
    let combo: Vec<String> = axes.iter().zip(values).map(|(a, v)| format!("{}={v}", a.key)).collect();
    let why = match e {
        ConfigError::Invalid { problems, .. } => {
            problems.iter().map(|p| format!("{} = {} {}", p.key, p.value, p.rule)).collect::<Vec<_>>().join("; ")
        }
        ConfigError::Parse { detail, .. } => detail.clone(),
        ConfigError::Read { .. } => e.to_string(),
    };
    format!("--sweep {}: the configuration it gives is refused: {why}", combo.join(" "))
}

/// Sets `key` to `text` (read as YAML: `0.5` a number, `true` a boolean) in whichever file holds
/// the key's first section: `bots.yaml` first, then `settings.yaml`.
fn apply(settings: &mut Value, bots: &mut Value, key: &str, text: &str) -> Result<(), String> {
    let value: Value = serde_yaml::from_str(text).map_err(|e| format!("--sweep {key}={text}: not a value: {e}"))?;
    let path: Vec<&str> = key.split('.').collect();
    let has = |v: &Value| v.get(path[0]).is_some();
    let root = if has(bots) {
        bots
    } else if has(settings) {
        settings
    } else {
        return Err(format!("--sweep {key}: neither bots.yaml nor settings.yaml has a section {:?}", path[0]));
    };
    let n = set(root, &path, &value, key)?;
    if n == 0 {
        return Err(format!("--sweep {key}: it names no bot of the configuration"));
    }
    Ok(())
}

/// Sets the value at `path` under `node`; how many places were set. In a list of bots the
/// segment after the list's name picks the bot by `bot_id`; `*`, or a segment that is no bot's id,
/// means every bot of the list.
fn set(node: &mut Value, path: &[&str], value: &Value, key: &str) -> Result<usize, String> {
    let Value::Mapping(map) = node else {
        return Err(format!("--sweep {key}: {:?} is not a section", path[0]));
    };
    let here = Value::String(path[0].to_string());
    if path.len() == 1 {
        map.insert(here, value.clone());
        return Ok(1);
    }
    let child = map.entry(here).or_insert_with(|| Value::Mapping(Default::default()));
    match child {
        Value::Sequence(list) => {
            let id = |v: &Value| v.get("bot_id").and_then(Value::as_str).map(str::to_string);
            // The rest of the path, and the one bot it is for (`None`: every bot of the list).
            let (rest, only): (&[&str], Option<&str>) = if path[1] == "*" {
                (&path[2..], None)
            } else if list.iter().any(|v| id(v).as_deref() == Some(path[1])) {
                (&path[2..], Some(path[1]))
            } else if list.iter().any(|v| v.get(path[1]).is_some()) {
                (&path[1..], None)
            } else {
                let ids: Vec<String> = list.iter().filter_map(id).collect();
                return Err(format!(
                    "--sweep {key}: {:?} is neither a bot_id of {} ({}) nor a key its bots have (write {}.*.… to set a key they do not have yet)",
                    path[1],
                    path[0],
                    ids.join(", "),
                    path[0]
                ));
            };
            if rest.is_empty() {
                return Err(format!("--sweep {key}: name a key inside the bot, e.g. {key}.exits.stop_loss_pct"));
            }
            let mut n = 0;
            for item in list.iter_mut().filter(|v| only.is_none() || id(v).as_deref() == only) {
                n += set(item, rest, value, key)?;
            }
            Ok(n)
        }
        _ => set(child, &path[1..], value, key),
    }
}

/// Runs every configuration over `data` on `jobs` threads; the summaries in the configurations'
/// order. `label` names the run on the progress line (on a terminal only).
pub fn run_all(
    configs: &[&Config],
    data: &Arc<BySymbol<Vec<Bar>>>,
    jobs: usize,
    label: &str,
) -> Result<Vec<Summary>, String> {
    let progress = std::io::stderr().is_terminal();
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Result<Summary, String>)>();
    let mut results: Vec<Option<Summary>> = vec![None; configs.len()];
    std::thread::scope(|scope| -> Result<(), String> {
        for _ in 0..jobs.clamp(1, configs.len().max(1)) {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(cfg) = configs.get(i) else { break };
                    let result = backtest::simulate((*cfg).clone(), &backtest::Bars::Held(data.clone()), false, false)
                        .map(|r| r.summary);
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut failed = None;
        for (done, (i, result)) in rx.iter().enumerate() {
            match result {
                Ok(s) => results[i] = Some(s),
                Err(e) => {
                    // Stop handing out work; the first failure is the answer.
                    next.store(configs.len(), Ordering::Relaxed);
                    failed.get_or_insert(format!("combination {}: {e}", i + 1));
                }
            }
            if progress {
                eprint!("\r{label}: {}/{} combinations", done + 1, configs.len());
            }
        }
        if progress {
            eprintln!();
        }
        failed.map_or(Ok(()), Err)
    })?;
    results.into_iter().map(|r| r.ok_or_else(|| "a combination gave no result".to_string())).collect()
}

/// The number of threads when `--jobs` is not given: the machine's cores.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The bars of `data` on the New York dates `from` to `to` (both included): a copy of that
/// stretch only.
pub fn between(data: &BySymbol<Vec<Bar>>, from: Date, to: Date) -> BySymbol<Vec<Bar>> {
    data.iter()
        .map(|(s, bars)| {
            let lo = bars.partition_point(|b| clock::trading_date(b.t) < from);
            let hi = bars.partition_point(|b| clock::trading_date(b.t) <= to);
            (s.clone(), bars[lo..hi.max(lo)].to_vec())
        })
        .filter(|(_, bars)| !bars.is_empty())
        .collect()
}

/// The days a walk-forward counts, in order: the New York dates with a bar of a stock (or an
/// option's underlying) — the stock sessions — or, when the bars are all crypto's, every date
/// they cover. (Counting crypto's weekend days made a 5-day test window from Thursday to Monday
/// three sessions.)
pub fn trading_dates(data: &BySymbol<Vec<Bar>>) -> Vec<Date> {
    let stock = |s: &String| AssetClass::of(s) != AssetClass::Crypto;
    let any_stock = data.keys().any(stock);
    let dates: BTreeSet<Date> = data
        .iter()
        .filter(|(s, _)| !any_stock || stock(s))
        .flat_map(|(_, bars)| bars.iter().map(|b| clock::trading_date(b.t)))
        .collect();
    dates.into_iter().collect()
}

/// One sweep's ranked result.
pub struct Ranked<'a> {
    pub axes: &'a [Axis],
    pub combos: &'a [Combination],
    pub summaries: Vec<Summary>,
    pub order: Vec<usize>,
    pub rank: Rank,
}

impl Ranked<'_> {
    pub fn best(&self) -> usize {
        self.order[0]
    }

    /// `sweep.csv`: every combination, best first, with every metric.
    pub fn csv(&self) -> String {
        let mut out = String::from("rank");
        for a in self.axes {
            let _ = write!(out, ",{}", a.key);
        }
        out.push_str(
            ",total_return_pct,max_drawdown_pct,sharpe,trades,sortino,cagr_pct,profit_factor,expectancy,win_rate_pct,avg_win,avg_loss,fees,exposure_pct,start_equity,end_equity\n",
        );
        for (r, i) in self.order.iter().enumerate() {
            let s = &self.summaries[*i];
            let _ = write!(out, "{}", r + 1);
            for v in &self.combos[*i].values {
                let _ = write!(out, ",{}", csv_field(v));
            }
            headline(&mut out, s);
            let _ = writeln!(
                out,
                ",{},{},{},{},{},{},{},{:.2},{:.2},{:.2},{:.2}",
                opt(s.sortino, 4),
                opt(s.cagr_pct, 4),
                opt(s.profit_factor, 4),
                opt(s.expectancy, 2),
                opt(s.win_rate_pct, 2),
                opt(s.avg_win, 2),
                opt(s.avg_loss, 2),
                s.fees,
                s.exposure_pct,
                s.start_equity,
                s.end_equity
            );
        }
        out
    }

    /// The ranked table for a person: the first `rows` combinations.
    pub fn table(&self, rows: usize) -> String {
        let mut out = String::from("rank   return %  max dd %   sharpe  trades   win %");
        for a in self.axes {
            let _ = write!(out, "  {}", a.key);
        }
        out.push('\n');
        for (r, i) in self.order.iter().take(rows).enumerate() {
            let s = &self.summaries[*i];
            let _ = write!(
                out,
                "{:>4} {:>+10.2} {:>9.2} {:>8} {:>7} {:>7}",
                r + 1,
                s.total_return_pct,
                s.max_drawdown_pct,
                opt(s.sharpe, 2),
                s.trades,
                opt(s.win_rate_pct, 2)
            );
            for (a, v) in self.axes.iter().zip(&self.combos[*i].values) {
                let _ = write!(out, "  {v:<w$}", w = a.key.len());
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        }
        if self.order.len() > rows {
            let _ = writeln!(out, "... and {} more in sweep.csv", self.order.len() - rows);
        }
        out
    }

    /// `KEY=V KEY=V` of combination `i`.
    pub fn describe(&self, i: usize) -> String {
        describe(self.axes, &self.combos[i].values)
    }
}

fn describe(axes: &[Axis], values: &[String]) -> String {
    axes.iter().zip(values).map(|(a, v)| format!("{}={v}", a.key)).collect::<Vec<_>>().join(" ")
}

/// `,return,drawdown,sharpe,trades`: the four figures both CSV files give of a run, alike.
fn headline(out: &mut String, s: &Summary) {
    let _ = write!(out, ",{:.4},{:.4},{},{}", s.total_return_pct, s.max_drawdown_pct, opt(s.sharpe, 4), s.trades);
}

fn opt(v: Option<f64>, places: usize) -> String {
    v.map_or(String::new(), |v| format!("{v:.places$}"))
}

/// Runs and ranks the whole grid over `data`.
pub fn sweep<'a>(
    axes: &'a [Axis],
    combos: &'a [Combination],
    data: &Arc<BySymbol<Vec<Bar>>>,
    rank: Rank,
    jobs: usize,
    label: &str,
) -> Result<Ranked<'a>, String> {
    let configs: Vec<&Config> = combos.iter().map(|c| &c.cfg).collect();
    let summaries = run_all(&configs, data, jobs, label)?;
    let order = rank.order(&summaries);
    Ok(Ranked { axes, combos, summaries, order, rank })
}

/// One walk-forward window: the combination its training days chose, and how it did after.
#[derive(Debug, Clone)]
pub struct Window {
    pub train: (Date, Date),
    pub test: (Date, Date),
    pub chosen: usize,
    pub train_summary: Summary,
    pub test_summary: Summary,
}

/// The walk-forward's result.
pub struct WalkForward {
    pub windows: Vec<Window>,
    /// The test windows' equity joined into one curve: each window's gains and losses added on
    /// from where the one before ended.
    pub joined: Vec<(Timestamp, f64)>,
    pub out_of_sample: Summary,
    /// The round trips all test windows closed.
    pub trades: u32,
}

/// Windows of `train` trading days (`trading_dates`) followed by `test` days, stepping by `test`;
/// the last test window may be shorter. None when the data holds no more than `train` days. Each
/// window's test bars run from the day after its training's last day (crypto's weekend after a
/// Friday is tested, not lost between the windows) to its last test day.
pub fn windows(dates: &[Date], train: usize, test: usize) -> Vec<((Date, Date), (Date, Date))> {
    let mut out = Vec::new();
    let mut i = 0;
    while train > 0 && test > 0 && i + train < dates.len() {
        let t_end = (i + train + test).min(dates.len());
        out.push(((dates[i], dates[i + train - 1]), (dates[i + train], dates[t_end - 1])));
        i += test;
    }
    out
}

/// For each window: the grid on the training days, the best by `rank` on the test days.
pub fn walk_forward(
    combos: &[Combination],
    data: &BySymbol<Vec<Bar>>,
    (train, test): (usize, usize),
    rank: Rank,
    jobs: usize,
) -> Result<WalkForward, String> {
    let dates = trading_dates(data);
    let plan = windows(&dates, train, test);
    if plan.is_empty() {
        return Err(format!(
            "--walk-forward {train}:{test} needs more than {train} trading days of bars; the data holds {}",
            dates.len()
        ));
    }
    let configs: Vec<&Config> = combos.iter().map(|c| &c.cfg).collect();
    let mut windows = Vec::new();
    let mut joined: Vec<(Timestamp, f64)> = Vec::new();
    let mut trips: Vec<RoundTrip> = Vec::new();
    let mut exposure = backtest::Exposure { exposed: 0, share_sum: 0.0, minutes: 0 };
    for (n, (tr, te)) in plan.iter().enumerate() {
        let label = format!("walk-forward window {}/{} (training {} to {})", n + 1, plan.len(), tr.0, tr.1);
        let train_data = Arc::new(between(data, tr.0, tr.1));
        let summaries = run_all(&configs, &train_data, jobs, &label)?;
        let chosen = rank.order(&summaries)[0];
        let after_training = tr.1.tomorrow().map_err(|e| e.to_string())?;
        let test_data = Arc::new(between(data, after_training, te.1));
        let run = backtest::simulate(combos[chosen].cfg.clone(), &backtest::Bars::Held(test_data), false, false)
            .map_err(|e| format!("walk-forward window {} (test {} to {}): {e}", n + 1, te.0, te.1))?;
        // Each test window starts with the starting cash: its gains and losses in dollars go on
        // from where the joined curve stands. Added, not compounded: the bots size by dollar
        // caps (`max_position_usd`, the budgets), so scaling a window by the equity before it
        // would credit it with sizes it never traded (on the benchmark's year, compounding turned
        // +282 % into +1,100 %).
        let shift = match (joined.last(), run.equity.first()) {
            (Some(last), Some(first)) => last.1 - first.1,
            _ => 0.0,
        };
        joined.extend(run.equity.iter().map(|(t, e)| (*t, e + shift)));
        trips.extend(run.trips.iter().cloned());
        exposure.exposed += run.exposure.exposed;
        exposure.share_sum += run.exposure.share_sum;
        exposure.minutes += run.exposure.minutes;
        windows.push(Window {
            train: *tr,
            test: *te,
            chosen,
            train_summary: summaries[chosen].clone(),
            test_summary: run.summary,
        });
    }
    // The joined test windows' figures: their sessions, their round trips.
    let (first, last) = (plan[0].1.0, plan[plan.len() - 1].1.1);
    let stocks = data.keys().any(|s| AssetClass::of(s) != AssetClass::Crypto);
    let sessions: BTreeSet<Date> = dates.iter().copied().filter(|d| *d >= first && *d <= last).collect();
    let sessions = stocks.then_some(&sessions);
    let out_of_sample = backtest::summarize(&joined, &trips, sessions, Default::default(), exposure, 0, Vec::new());
    let trades = out_of_sample.trades;
    Ok(WalkForward { windows, joined, out_of_sample, trades })
}

impl WalkForward {
    /// `walk_forward.csv`: one row per window.
    pub fn csv(&self, axes: &[Axis], combos: &[Combination]) -> String {
        let mut out = String::from("window,train_from,train_to,test_from,test_to");
        for a in axes {
            let _ = write!(out, ",{}", a.key);
        }
        out.push_str(",train_return_pct,train_max_drawdown_pct,train_sharpe,train_trades,test_return_pct,test_max_drawdown_pct,test_sharpe,test_trades\n");
        for (n, w) in self.windows.iter().enumerate() {
            let _ = write!(out, "{},{},{},{},{}", n + 1, w.train.0, w.train.1, w.test.0, w.test.1);
            for v in &combos[w.chosen].values {
                let _ = write!(out, ",{}", csv_field(v));
            }
            for s in [&w.train_summary, &w.test_summary] {
                headline(&mut out, s);
            }
            out.push('\n');
        }
        out
    }

    /// The windows for a person.
    pub fn table(&self, axes: &[Axis], combos: &[Combination]) -> String {
        let mut out = String::from("window  training                 test                     test return %  chosen\n");
        for (n, w) in self.windows.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:>6}  {} to {}  {} to {}  {:>+13.2}  {}",
                n + 1,
                w.train.0,
                w.train.1,
                w.test.0,
                w.test.1,
                w.test_summary.total_return_pct,
                describe(axes, &combos[w.chosen].values)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn an_axis_is_a_key_and_its_values() {
        let a = Axis::parse("momentum_bots.*.exits.stop_loss_pct=0.5, 0.75,1").unwrap();
        assert_eq!(a.key, "momentum_bots.*.exits.stop_loss_pct");
        assert_eq!(a.values, ["0.5", "0.75", "1"]);
        assert!(Axis::parse("momentum_bots.exits.stop_loss_pct").is_err());
        assert!(Axis::parse("=0.5").is_err());
        assert!(Axis::parse("a..b=1").is_err());
        assert!(Axis::parse("a.b=1,,2").is_err());
    }

    #[test]
    fn ranking_puts_the_best_first_and_keeps_the_grid_order_on_ties() {
        let s = |ret: f64, dd: f64, sharpe: Option<f64>, trades: u32| Summary {
            total_return_pct: ret,
            max_drawdown_pct: dd,
            sharpe,
            trades,
            ..backtest::summarize(&[], &[], None, Default::default(), backtest::Exposure::default(), 0, Vec::new())
        };
        let all = [s(1.0, 3.0, None, 5), s(2.0, 1.0, Some(0.5), 5), s(2.0, 2.0, Some(1.5), 9)];
        assert_eq!(Rank::Return.order(&all), [1, 2, 0]);
        assert_eq!(Rank::Drawdown.order(&all), [1, 2, 0]);
        assert_eq!(Rank::Sharpe.order(&all), [2, 1, 0]);
        assert_eq!(Rank::Trades.order(&all), [2, 0, 1]);
    }

    #[test]
    fn a_walk_forward_counts_stock_sessions_unless_the_bars_are_all_crypto() {
        let bar = |t: &str| Bar { t: t.parse().unwrap(), open: 1.0, high: 1.0, low: 1.0, close: 1.0, volume: 1.0 };
        // Thursday and Friday sessions, crypto through the weekend, Monday's session.
        let days = ["2026-12-03", "2026-12-04", "2026-12-05", "2026-12-06", "2026-12-07"];
        let mut data = BySymbol::new();
        data.insert("BTC/USD".to_string(), days.iter().map(|d| bar(&format!("{d}T17:00:00Z"))).collect());
        let sessions = ["2026-12-03", "2026-12-04", "2026-12-07"];
        data.insert("SPY".to_string(), sessions.iter().map(|d| bar(&format!("{d}T15:00:00Z"))).collect());
        let dates: Vec<Date> = sessions.iter().map(|d| date(d)).collect();
        assert_eq!(trading_dates(&data), dates);
        data.remove("SPY");
        assert_eq!(trading_dates(&data).len(), 5, "crypto only: every date");
    }

    #[test]
    fn windows_step_by_the_test_days_and_the_last_may_be_short() {
        let d: Vec<Date> = (1..=10).map(|n| date(&format!("2026-03-{n:02}"))).collect();
        let w = windows(&d, 4, 3);
        assert_eq!(
            w,
            [
                ((d[0], d[3]), (d[4], d[6])),
                ((d[3], d[6]), (d[7], d[9])),
                // 6 + 4 = 10 days: no test day left after the third training stretch.
            ]
        );
        assert!(windows(&d, 10, 2).is_empty());
        assert_eq!(windows(&d, 9, 5), [((d[0], d[8]), (d[9], d[9]))]);
    }

    #[test]
    fn a_key_reaches_one_bot_by_id_or_every_bot_of_the_list() {
        let mut bots: Value = serde_yaml::from_str(
            "momentum_bots:\n  - bot_id: a\n    exits: {stop_loss_pct: 1}\n  - bot_id: b\n    exits: {stop_loss_pct: 1}\n",
        )
        .unwrap();
        let mut settings: Value = serde_yaml::from_str("runner: {loop_interval_seconds: 5}\n").unwrap();
        let stop = |b: &Value, i: usize| b["momentum_bots"][i]["exits"]["stop_loss_pct"].as_f64();
        apply(&mut settings, &mut bots, "momentum_bots.b.exits.stop_loss_pct", "0.5").unwrap();
        assert_eq!((stop(&bots, 0), stop(&bots, 1)), (Some(1.0), Some(0.5)));
        apply(&mut settings, &mut bots, "momentum_bots.*.exits.stop_loss_pct", "2").unwrap();
        assert_eq!((stop(&bots, 0), stop(&bots, 1)), (Some(2.0), Some(2.0)));
        apply(&mut settings, &mut bots, "momentum_bots.exits.stop_loss_pct", "3").unwrap();
        assert_eq!((stop(&bots, 0), stop(&bots, 1)), (Some(3.0), Some(3.0)));
        apply(&mut settings, &mut bots, "runner.loop_interval_seconds", "10").unwrap();
        assert_eq!(settings["runner"]["loop_interval_seconds"].as_u64(), Some(10));
        let e = apply(&mut settings, &mut bots, "nosuch.key", "1").unwrap_err();
        assert!(e.contains("\"nosuch\""), "{e}");
        let e = apply(&mut settings, &mut bots, "momentum_bots.c.exits.stop_loss_pct", "1").unwrap_err();
        assert!(e.contains("neither a bot_id of momentum_bots (a, b)"), "{e}");
        let e = apply(&mut settings, &mut bots, "runner.loop_interval_seconds.x", "1").unwrap_err();
        assert!(e.contains("not a section"), "{e}");
    }
}
