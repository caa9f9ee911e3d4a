//! The backtest: recorded bars through the very code that trades.
//!
//! Owns: replaying bar files through the unchanged orchestrator, ExitBot, PortfolioBot and bots,
//! with the simulated broker filling from the recorded prices (market orders at the next bar, with
//! the configured slippage and fees; options priced by Black-Scholes from the underlying at
//! `sim.volatility`) and a clock that steps bar by bar (`simulate`: one run, its own ledger and
//! book in memory, so a sweep runs many side by side over one shared copy of the bars, while a
//! single backtest streams its bar files: `Bars`, `replay`), with the buy-and-hold benchmark read
//! from the same replay as the run goes (`BuyAndHold`); the stepping itself (`step`, the engine
//! `replay_day` runs a live day in too) and its result (`Stepped::finish`: the orders, fills,
//! round trips and figures); then the report: a summary, `trades.csv` (round trips),
//! `orders.csv`, `equity.csv`, `report.json`, `equity.svg` and `report.html` (`report_page`).
//! Same inputs, same outputs, byte for byte.
//!
//! Never: touches the live state database (the run keeps its ledger in memory: the same schema
//! and statements, no file), the network, or a symbol the data does not hold (bots whose symbols have no bars are
//! left out, and files no bot trades are reported and skipped).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::Date;
use serde_json::json;

use crate::core::clock::{self, ManualClock};
use crate::core::config::Config;
use crate::core::decimal::Dec;
use crate::core::instrument::{AssetClass, multiplier};
use crate::core::market_data::{Bar, BySymbol};
use crate::core::round_trip::{self, RoundTrip};
use crate::core::state::{FillRecord, OrderRecord, State};
use crate::orchestrator::Orchestrator;
use crate::research::report_page;
use crate::research::stats::{self, Calendar};
use crate::sim::bar_files;
use crate::sim::replay::Replay;
use crate::sim::sim_broker::SimBroker;

/// The market the backtest's simulated broker is seeded with (only option open interest and
/// volume come from it: prices come from the data).
const SEED: u64 = 42;

/// A backtest's figures; the type is the report page's, which shows them.
pub use crate::research::report_page::Summary;

/// A backtest's bars, on the dates it replays.
pub enum Bars {
    /// In memory: the synthetic market's, or a sweep's copy shared by its simulations.
    Held(Arc<BySymbol<Vec<Bar>>>),
    /// Bar files read through once by `bar_files::check`, then streamed as the replay reaches
    /// them: a year of ten symbols is never in memory at once (fewer bars `check` keeps: `checked`).
    Files(bar_files::Checked),
}

impl Bars {
    /// The bars of checked files: held, when `check` could keep them all (`bar_files::HOLD_BARS`),
    /// else streamed from their files.
    pub fn checked(mut checked: bar_files::Checked) -> Bars {
        match checked.held.take() {
            Some(held) => Bars::Held(Arc::new(held)),
            None => Bars::Files(checked),
        }
    }

    /// The symbols with bars.
    pub fn symbols(&self) -> Vec<String> {
        match self {
            Bars::Held(data) => data.keys().cloned().collect(),
            Bars::Files(checked) => checked.files.keys().cloned().collect(),
        }
    }

    /// The replay's steps over the `traded` symbols, and how many bars they have.
    pub fn minutes(&self, traded: &[String]) -> Result<(Vec<Timestamp>, u64), String> {
        match self {
            Bars::Held(data) => {
                let held: Vec<&Vec<Bar>> = traded.iter().filter_map(|s| data.get(s)).collect();
                let bars = held.iter().map(|v| v.len() as u64).sum();
                Ok((merged_minutes(held.iter().map(|v| v.iter().map(|b| Ok(b.t))).collect())?, bars))
            }
            Bars::Files(checked) => {
                let bars = traded.iter().filter_map(|s| checked.files.get(s)).map(|(_, n)| n).sum();
                // From the minutes `check` noted, when it could note every traded file's;
                // otherwise from the files read again.
                let noted: Option<Vec<&bar_files::Minutes>> = traded.iter().map(|s| checked.minutes.get(s)).collect();
                if let Some(sets) = noted {
                    return Ok((bar_files::Minutes::merged(&sets), bars));
                }
                let mut series = Vec::new();
                for symbol in traded {
                    series.push(checked.open(symbol)?.map(|b| b.map(|b| b.t)));
                }
                Ok((merged_minutes(series)?, bars))
            }
        }
    }

    pub fn replay(&self) -> Result<Replay, String> {
        match self {
            Bars::Held(data) => Ok(Replay::held(data.clone())),
            Bars::Files(checked) => Replay::streamed(checked),
        }
    }

    /// Whether `symbol` has a bar on the replayed dates.
    fn has_bars(&self, symbol: &str) -> bool {
        match self {
            Bars::Held(data) => data.get(symbol).is_some_and(|v| !v.is_empty()),
            Bars::Files(checked) => checked.files.get(symbol).is_some_and(|(_, n)| *n > 0),
        }
    }
}

/// A curve of values by minute.
pub type Curve = Vec<(Timestamp, f64)>;

/// The symbols the configuration's enabled bots trade (tickers, underlyings, pairs).
pub fn traded_symbols(cfg: &Config) -> BTreeSet<String> {
    cfg.enabled_bots().iter().flat_map(|b| b.symbols()).collect()
}

/// Each bar minute's end: when its bar is known, and so where a backtest's clock steps.
pub fn bar_ends(minutes: Vec<Timestamp>) -> Vec<Timestamp> {
    minutes.into_iter().map(|t| t.saturating_add(jiff::SignedDuration::from_mins(1)).unwrap_or(t)).collect()
}

/// Keeps only the bots whose symbols the data holds; returns the files no bot trades.
pub fn fit_config(cfg: &mut Config, symbols: &[String]) -> Vec<String> {
    let has = |s: &str| symbols.iter().any(|x| x == s);
    let b = &mut cfg.bots;
    for m in &mut b.momentum_bots {
        m.enabled &= has(&m.ticker);
    }
    if let Some(o) = b.optionsbot.as_mut() {
        o.tickers.retain(|t| has(t));
        o.enabled &= !o.tickers.is_empty();
    }
    if let Some(c) = b.cryptobot.as_mut() {
        c.pairs.retain(|p| has(p));
        c.enabled &= !c.pairs.is_empty();
    }
    let traded = traded_symbols(cfg);
    symbols.iter().filter(|s| !traded.contains(*s)).cloned().collect()
}

/// One simulation's result: the summary and what the report's files are made of.
#[derive(Debug, Clone)]
pub struct Run {
    pub summary: Summary,
    /// The account's equity after each bar minute.
    pub equity: Vec<(Timestamp, f64)>,
    /// Every order of the run with its realised P&L.
    pub orders: Vec<(crate::core::state::OrderRecord, f64)>,
    /// Every fill of the run (a multi-leg order's by leg).
    pub fills: Vec<FillRecord>,
    /// The fills folded into trades, each with its fees by the simulated broker's rule.
    pub trips: Vec<RoundTrip>,
    pub exposure: Exposure,
    /// Buy-and-hold of the traded symbols at the same minutes (`BuyAndHold`); empty when
    /// `simulate` was not asked for it.
    pub benchmark: Curve,
}

/// Equal dollars in each traded symbol with bars, bought at its first bar's close and held: its
/// value at each minute is each symbol at the close of its last bar that began before the minute
/// (before its first bar, the cash set aside for it). Read from the replay as the run goes, so
/// the bar files are not read a third time; the same values, to the bit, as
/// `report_page::buy_and_hold` over the whole files (tested).
pub struct BuyAndHold {
    /// The symbols bought (none: no curve).
    symbols: Vec<String>,
    curve: Curve,
}

impl BuyAndHold {
    /// No benchmark.
    pub fn none() -> BuyAndHold {
        BuyAndHold { symbols: Vec::new(), curve: Vec::new() }
    }

    /// The value at `t` of `start` (the first minute's equity) bought into the symbols.
    fn at(&mut self, replay: &Replay, t: Timestamp, start: f64) {
        if self.symbols.is_empty() {
            return;
        }
        let each = start / self.symbols.len() as f64;
        // Added in the symbols' order, from zero, at every minute alike.
        let mut value = 0.0;
        for symbol in &self.symbols {
            let last = replay.last_before(symbol, t);
            value += match (replay.first(symbol), last) {
                (Some(first), Some(last)) if first.t < t && first.close > 0.0 => each * last.close / first.close,
                _ => each,
            };
        }
        self.curve.push((t, value));
    }
}

/// The bars of `data` on the New York dates `from` to `to` (both included), symbols without any
/// left out.
pub fn window(mut data: BySymbol<Vec<Bar>>, from: Option<Date>, to: Option<Date>) -> BySymbol<Vec<Bar>> {
    let dates = clock::Dates::new(from, to);
    for bars in data.values_mut() {
        bars.retain(|b| dates.contains(b.t));
    }
    data.retain(|_, bars| !bars.is_empty());
    // A window of a long file keeps only its own bars' memory.
    data.values_mut().for_each(Vec::shrink_to_fit);
    data
}

/// The `days` weekdays ending on `last` (New York dates; the synthetic market knows no holidays).
pub fn weekdays_ending(last: Date, days: u32) -> Vec<Date> {
    let mut dates = Vec::with_capacity(days as usize);
    let mut d = last;
    while dates.len() < days as usize {
        if d.weekday().to_monday_one_offset() <= 5 {
            dates.push(d);
        }
        match d.yesterday() {
            Ok(y) => d = y,
            Err(_) => break,
        }
    }
    dates.reverse();
    dates
}

/// `backtest --synthetic`: the simulated market's seeded one-minute bars of every symbol an
/// enabled bot trades, over the `days` weekdays ending on `last` — a backtest with no keys and no
/// data files. Crypto trades the weekends between them too.
pub fn synthetic(cfg: &Config, days: u32, seed: u64, last: Date) -> Result<BySymbol<Vec<Bar>>, String> {
    let symbols = traded_symbols(cfg);
    if symbols.is_empty() {
        return Err("no enabled bot trades a symbol: nothing to simulate (see bots.yaml)".into());
    }
    let dates = weekdays_ending(last, days);
    let (Some(first), Some(last)) = (dates.first(), dates.last()) else {
        return Err("--synthetic needs at least one day".into());
    };
    let to = clock::start_of_date(last.tomorrow().map_err(|e| e.to_string())?);
    let symbols: Vec<String> = symbols.into_iter().collect();
    Ok(crate::sim::sim_broker::synthetic_bars(
        &symbols,
        seed,
        cfg.settings.sim.volatility,
        clock::start_of_date(*first),
        to,
    ))
}

/// Runs the backtest of `bars` and writes the report's files into `out`; `texts` are the
/// `settings.yaml` and `bots.yaml` `cfg` was read from, and `source` says where the bars came
/// from (both for `report.html`).
pub fn run(cfg: Config, texts: (&str, &str), bars: &Bars, out: &Path, source: &str) -> Result<Run, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let run = simulate(cfg, bars, true, std::io::stderr().is_terminal())?;
    let symbols: Vec<String> = bars.symbols().into_iter().filter(|s| !run.summary.skipped.contains(s)).collect();
    write_files(out, &run)?;
    let page = report_page::Page {
        summary: &run.summary,
        equity: &run.equity,
        benchmark: &run.benchmark,
        benchmark_symbols: &symbols,
        trips: &run.trips,
        source,
        config: texts,
    };
    write(out.join("report.html"), &report_page::render(&page))?;
    Ok(run)
}

/// Replays `bars` through the orchestrator with `cfg`, keeping nothing but the result: the
/// ledger and the simulated book live in memory, so simulations can run side by side. Bots whose
/// symbols the data lacks are left out; `benchmark` adds the buy-and-hold curve (the report
/// shows it; a sweep's combinations do not need it); `progress` prints a progress line on stderr.
pub fn simulate(mut cfg: Config, bars: &Bars, benchmark: bool, progress: bool) -> Result<Run, String> {
    let symbols = bars.symbols();
    let skipped = fit_config(&mut cfg, &symbols);
    let traded: Vec<String> = symbols.into_iter().filter(|s| !skipped.contains(s)).collect();
    let (minutes, bars_total) = bars.minutes(&traded)?;
    let sessions = sessions(bars, &traded)?;
    let Some(first) = minutes.first().copied() else {
        return Err(
            "no bars to replay (check --from/--to and that a configured bot trades a symbol of the data)".into()
        );
    };
    let clock = Arc::new(ManualClock::new(first));
    // The simulated book lives in memory only: nothing resumes a backtest.
    let mut sim = SimBroker::open(clock.clone(), cfg.settings.sim.clone(), SEED, None).map_err(|e| e.to_string())?;
    let replay = bars.replay()?;
    sim.replay(replay.clone());
    let symbols: Vec<String> =
        if benchmark { traded.iter().filter(|s| bars.has_bars(s)).cloned().collect() } else { Vec::new() };
    let curve = Vec::with_capacity(if symbols.is_empty() { 0 } else { minutes.len() });
    let steps = bar_ends(minutes);
    let stepped = step(cfg, clock, sim, &steps, &replay, BuyAndHold { symbols, curve }, progress)?;
    stepped.finish(sessions.as_ref(), bars_total, skipped)
}

/// The stock sessions the daily returns are taken over: the New York dates with a bar of a stock
/// (or an option's underlying) of `traded`. `None` for a configuration that trades only crypto,
/// which counts calendar days instead.
pub fn sessions(bars: &Bars, traded: &[String]) -> Result<Option<BTreeSet<Date>>, String> {
    let stocks: Vec<String> = traded.iter().filter(|s| AssetClass::of(s) != AssetClass::Crypto).cloned().collect();
    if stocks.is_empty() {
        return Ok(None);
    }
    Ok(Some(bars.minutes(&stocks)?.0.into_iter().map(clock::trading_date).collect()))
}

/// A simulation stepped through: what `finish` makes its `Run` of.
pub struct Stepped {
    o: Orchestrator,
    sim_cfg: crate::core::config::Sim,
    equity: Curve,
    benchmark: Curve,
    exposure: Exposure,
}

/// Runs the orchestrator over `sim` once at each of `steps` (the clock set to it first): the
/// engine of a backtest (the bar minutes' ends) and of `replay` (the live day's iteration times).
/// `replay` prices the buy-and-hold benchmark and the positions' exposure.
pub fn step(
    cfg: Config,
    clock: Arc<ManualClock>,
    sim: SimBroker,
    steps: &[Timestamp],
    replay: &Replay,
    mut benchmark: BuyAndHold,
    progress: bool,
) -> Result<Stepped, String> {
    let err = |e: crate::core::state::StateError| e.to_string();
    let failure = replay.failure();
    let sim_cfg = cfg.settings.sim.clone();
    let mut o = Orchestrator::new(cfg, State::open_memory().map_err(err)?, Box::new(clock.clone()), Box::new(sim));
    let mut equity: Vec<(Timestamp, f64)> = Vec::with_capacity(steps.len());
    // Steps with a position, and the sum over steps of the share of equity in positions.
    let mut exposed = 0u64;
    let mut exposure_sum = 0.0;
    for (i, t) in steps.iter().enumerate() {
        clock.set(*t);
        let s = o.run_iteration();
        if let Some(e) = s.equity {
            equity.push((s.market_time, e));
            benchmark.at(replay, s.market_time, equity[0].1);
        }
        let owned = o.state().owned_positions().map_err(err)?;
        if !owned.is_empty() {
            exposed += 1;
            if let (Some(e), Some((at, _))) = (s.equity.filter(|e| *e > 0.0), equity.last()) {
                exposure_sum += positions_value(&owned, replay, *at) / e;
            }
        }
        if progress && i % 5000 == 0 {
            eprint!("\rbacktest: {}/{} bars minutes ({} %)", i, steps.len(), i * 100 / steps.len().max(1));
        }
    }
    if progress {
        eprintln!("\rbacktest: {0}/{0} bar minutes (100 %)     ", steps.len());
    }
    if let Some(why) = failure.get() {
        return Err(format!("the replay of the bar files failed, so no report was written: {why}"));
    }
    let exposure = Exposure { exposed, share_sum: exposure_sum, minutes: steps.len() as u64 };
    Ok(Stepped { o, sim_cfg, equity, benchmark: benchmark.curve, exposure })
}

impl Stepped {
    /// The run's orders, fills, round trips (their fees by the simulated broker's schedule) and
    /// figures.
    pub fn finish(self, sessions: Option<&BTreeSet<Date>>, bars: u64, skipped: Vec<String>) -> Result<Run, String> {
        let err = |e: crate::core::state::StateError| e.to_string();
        let state = self.o.state();
        let orders = state.all_orders().map_err(err)?;
        let fills = state.fills().map_err(err)?;
        let sim = self.sim_cfg;
        let fee = move |symbol: &str, qty: Dec, price: Dec| {
            let value = qty.to_f64().abs() * price.to_f64() * multiplier(symbol) as f64;
            Dec::from_f64(crate::sim::sim_broker::fee(&sim, symbol, qty.to_f64(), value)).map(|f| f.round_to(2))
        };
        let trips = round_trip::fold(orders.iter().map(|(o, _)| o), &fills, &fee);
        let halts: BTreeMap<String, u32> = state.halt_counts().map_err(err)?.into_iter().collect();
        let (equity, exposure) = (self.equity, self.exposure);
        let summary = summarize(&equity, &trips, sessions, halts, exposure, bars, skipped);
        Ok(Run { summary, equity, orders, fills, trips, exposure, benchmark: self.benchmark })
    }
}

/// What the owned positions are worth at `t`, gross (a short counts as much as a long): each
/// stock or coin at its last close before `t`, an option leg (which has no bars) at its entry
/// price.
fn positions_value(owned: &[crate::core::state::OwnedPosition], replay: &Replay, t: Timestamp) -> f64 {
    owned
        .iter()
        .map(|p| {
            let price = match replay.last_at_or_before(&p.symbol, t) {
                Some(bar) if AssetClass::of(&p.symbol) != AssetClass::UsOption => bar.close,
                _ => p.avg_entry_price.to_f64(),
            };
            (p.qty.to_f64() * price * multiplier(&p.symbol) as f64).abs()
        })
        .sum()
}

/// How much of the run the bots were in the market.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exposure {
    /// Minutes with any position.
    pub exposed: u64,
    /// Σ over minutes of the positions' gross value over equity.
    pub share_sum: f64,
    /// Minutes replayed.
    pub minutes: u64,
}

/// Every minute at which one of `series` (each oldest first, as bar files are checked to be)
/// has a bar, oldest first, once: the steps of the replay. Merged a bar at a time, from the bars
/// in memory or read again from their files, rather than collected and sorted (which held a copy
/// of every bar's time, 16 MB for a year of ten symbols, through the whole run).
fn merged_minutes<I>(series: Vec<I>) -> Result<Vec<Timestamp>, String>
where
    I: Iterator<Item = Result<Timestamp, String>>,
{
    let mut heads = Vec::with_capacity(series.len());
    for mut s in series {
        heads.push((s.next().transpose()?, s));
    }
    let mut out: Vec<Timestamp> = Vec::new();
    while let Some(t) = heads.iter().filter_map(|h| h.0).min() {
        out.push(t);
        for (head, rest) in heads.iter_mut() {
            while head.is_some_and(|h| h <= t) {
                *head = rest.next().transpose()?;
            }
        }
    }
    Ok(out)
}

/// The run's figures (`stats` defines each): `equity` by minute, the round trips, the stock
/// sessions (`None`: a crypto-only run, on calendar days).
pub fn summarize(
    equity: &[(Timestamp, f64)],
    trips: &[RoundTrip],
    sessions: Option<&BTreeSet<Date>>,
    halts: BTreeMap<String, u32>,
    exposure: Exposure,
    bars: u64,
    skipped: Vec<String>,
) -> Summary {
    let start = equity.first().map_or(0.0, |e| e.1);
    let end = equity.last().map_or(0.0, |e| e.1);
    let calendar = if sessions.is_some() { Calendar::Sessions } else { Calendar::Days };
    let daily = stats::daily_returns(equity, start, sessions);
    let returns: Vec<f64> = daily.iter().map(|d| d.1).collect();
    let per_year = calendar.per_year();
    let (max_dd, longest) = stats::drawdowns(equity);
    let cagr = stats::cagr(start, end, daily.len(), per_year);
    let closed: Vec<f64> = trips.iter().filter(|t| t.is_closed()).map(|t| t.net_pnl().to_f64()).collect();
    let figures = stats::trade_stats(&closed);
    let best = daily.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1));
    let worst = daily.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1));
    let mut per_bot_pnl = BTreeMap::new();
    for t in trips {
        *per_bot_pnl.entry(t.bot.clone()).or_insert(0.0) += t.net_pnl().to_f64();
    }
    let sum = |f: &dyn Fn(&RoundTrip) -> Option<Dec>| {
        let parts: Vec<Dec> = trips.iter().filter_map(f).collect();
        (!parts.is_empty()).then(|| parts.iter().fold(Dec::ZERO, |a, b| a.checked_add(*b).unwrap_or(a)).to_f64())
    };
    let share = |part: f64| if exposure.minutes > 0 { part / exposure.minutes as f64 * 100.0 } else { 0.0 };
    Summary {
        start_equity: start,
        end_equity: end,
        total_return_pct: if start > 0.0 { (end / start - 1.0) * 100.0 } else { 0.0 },
        cagr_pct: cagr.map(|c| c * 100.0),
        max_drawdown_pct: max_dd * 100.0,
        longest_drawdown_days: longest,
        calendar,
        days: daily.len() as u32,
        sharpe: stats::sharpe(&returns, per_year),
        sortino: stats::sortino(&returns, per_year),
        calmar: stats::calmar(cagr, max_dd),
        best_day: best.map(|(d, r)| (d, r * 100.0)),
        worst_day: worst.map(|(d, r)| (d, r * 100.0)),
        trades: figures.count,
        open_trades: trips.iter().filter(|t| !t.is_closed()).count() as u32,
        win_rate_pct: figures.win_rate_pct,
        avg_win: figures.avg_win,
        avg_loss: figures.avg_loss,
        profit_factor: figures.profit_factor,
        expectancy: figures.expectancy,
        fees: sum(&|t| t.fees).unwrap_or(0.0),
        slippage: sum(&|t| t.slippage),
        exposure_pct: share(exposure.share_sum),
        time_in_market_pct: share(exposure.exposed as f64),
        per_bot_pnl,
        halts,
        bars,
        skipped,
    }
}

pub fn write(path: PathBuf, text: &str) -> Result<(), String> {
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

fn write_files(out: &Path, run: &Run) -> Result<(), String> {
    write(out.join("trades.csv"), &round_trip::csv(&run.trips))?;
    write(out.join("orders.csv"), &orders_csv(&run.orders, &run.fills))?;
    write(out.join("equity.csv"), &equity_csv(&run.equity))?;
    let s = &run.summary;
    let day = |d: Option<(Date, f64)>| d.map(|(d, r)| json!({"date": d.to_string(), "return_pct": round(r, 4)}));
    let r2 = |v: Option<f64>| v.map(|v| round(v, 2));
    let r4 = |v: Option<f64>| v.map(|v| round(v, 4));
    let report = json!({
        "start_equity": round(s.start_equity, 2),
        "end_equity": round(s.end_equity, 2),
        "total_return_pct": round(s.total_return_pct, 4),
        "cagr_pct": r4(s.cagr_pct),
        "max_drawdown_pct": round(s.max_drawdown_pct, 4),
        "longest_drawdown_days": round(s.longest_drawdown_days, 2),
        "returns_over": s.calendar.label(),
        "days": s.days,
        "sharpe": r4(s.sharpe),
        "sortino": r4(s.sortino),
        "calmar": r4(s.calmar),
        "best_day": day(s.best_day),
        "worst_day": day(s.worst_day),
        "trades": s.trades,
        "open_trades": s.open_trades,
        "win_rate_pct": r2(s.win_rate_pct),
        "avg_win": r2(s.avg_win),
        "avg_loss": r2(s.avg_loss),
        "profit_factor": r4(s.profit_factor),
        "expectancy": r2(s.expectancy),
        "fees": round(s.fees, 2),
        "slippage": r2(s.slippage),
        "exposure_pct": round(s.exposure_pct, 2),
        "time_in_market_pct": round(s.time_in_market_pct, 2),
        "per_bot_pnl": s.per_bot_pnl.iter().map(|(k, v)| (k.clone(), json!(round(*v, 2)))).collect::<serde_json::Map<_, _>>(),
        "halts": s.halts,
        "bars": s.bars,
        "skipped_files": s.skipped,
    });
    write(out.join("report.json"), &format!("{}\n", serde_json::to_string_pretty(&report).unwrap_or_default()))?;
    write(out.join("equity.svg"), &svg(&run.equity))
}

/// `orders.csv`: every order as recorded, with its first and last fill's time and its average
/// fill price (a multi-leg order's net per spread).
pub fn orders_csv(orders: &[(OrderRecord, f64)], fills: &[FillRecord]) -> String {
    let mut by_order: BTreeMap<&str, Vec<&FillRecord>> = BTreeMap::new();
    for f in fills {
        by_order.entry(f.client_order_id.as_str()).or_default().push(f);
    }
    let mut out = String::from(
        "client_order_id,bot,symbol,side,qty,type,limit_price,stop_price,decided_price,intent,rule,status,filled_qty,fill_price,first_fill,last_fill,realized_pnl,trading_date,created_at\n",
    );
    for (o, pnl) in orders {
        let fills = by_order.get(o.client_order_id.as_str()).map_or(&[][..], Vec::as_slice);
        let value = fills
            .iter()
            .fold(Dec::ZERO, |a, f| a.checked_add(f.qty.checked_mul(f.price).unwrap_or(Dec::ZERO)).unwrap_or(a));
        let legs = fills.iter().any(|f| f.symbol != o.symbol);
        let price = if legs {
            value.checked_div(o.filled_qty)
        } else {
            let size = fills.iter().fold(Dec::ZERO, |a, f| a.checked_add(f.qty.abs()).unwrap_or(a));
            value.abs().checked_div(size)
        };
        let at = |f: Option<&&FillRecord>| f.map_or(String::new(), |f| clock::db_ts(f.at));
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.2},{},{}",
            o.client_order_id,
            o.bot,
            o.symbol,
            o.side.as_str(),
            o.qty.as_deref().or(o.notional.as_deref()).unwrap_or(""),
            o.order_type.as_str(),
            o.limit_price.as_deref().unwrap_or(""),
            o.stop_price.as_deref().unwrap_or(""),
            o.ref_price.as_deref().unwrap_or(""),
            o.intent.as_str(),
            o.rule.as_deref().unwrap_or(""),
            o.status.as_str(),
            o.filled_qty,
            price.map_or(String::new(), |p| p.round_to(6).to_string()),
            at(fills.first()),
            at(fills.last()),
            pnl,
            o.trading_date,
            clock::db_ts(o.created_at)
        );
    }
    out
}

/// `timestamp,equity`, one row per bar minute.
pub fn equity_csv(equity: &[(Timestamp, f64)]) -> String {
    let mut eq = String::from("timestamp,equity\n");
    for (t, e) in equity {
        let _ = writeln!(eq, "{},{:.2}", t.strftime("%Y-%m-%dT%H:%M:%SZ"), e);
    }
    eq
}

/// The equity curve, with the drawdown from the running peak shaded, as a standalone SVG.
pub fn svg(equity: &[(Timestamp, f64)]) -> String {
    let (w, h, pad) = (900.0, 360.0, 40.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    if equity.len() < 2 {
        out.push_str("<text x=\"40\" y=\"40\" font-family=\"sans-serif\">not enough data</text>\n</svg>\n");
        return out;
    }
    let lo = equity.iter().map(|e| e.1).fold(f64::MAX, f64::min);
    let hi = equity.iter().map(|e| e.1).fold(f64::MIN, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let n = (equity.len() - 1) as f64;
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / n;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * (v - lo) / span;
    // Each point written straight into the page: a year's curve is 100,000 of them.
    let point = |out: &mut String, i: usize, v: f64| {
        let _ = write!(out, "{:.1},{:.1}", x(i), y(v));
    };
    // Drawdown: the area between the running peak and the curve, along the peak and back.
    out.push_str("<polygon fill=\"#f4c7c3\" stroke=\"none\" points=\"");
    let mut peak = f64::MIN;
    for (i, (_, e)) in equity.iter().enumerate() {
        peak = peak.max(*e);
        point(&mut out, i, peak);
        out.push(' ');
    }
    for (i, (_, e)) in equity.iter().enumerate().rev() {
        point(&mut out, i, *e);
        out.push(if i > 0 { ' ' } else { '"' });
    }
    out.push_str("/>\n<polyline fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"1.5\" points=\"");
    for (i, (_, e)) in equity.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        point(&mut out, i, *e);
    }
    out.push_str("\"/>\n");
    let label = |v: f64| format!("{v:.0}");
    let _ = writeln!(
        out,
        "<text x=\"4\" y=\"{:.1}\" font-family=\"sans-serif\" font-size=\"11\">{}</text>",
        y(hi) + 4.0,
        label(hi)
    );
    let _ = writeln!(
        out,
        "<text x=\"4\" y=\"{:.1}\" font-family=\"sans-serif\" font-size=\"11\">{}</text>",
        y(lo) + 4.0,
        label(lo)
    );
    let first = equity[0].0.strftime("%Y-%m-%d").to_string();
    let last = equity[equity.len() - 1].0.strftime("%Y-%m-%d").to_string();
    let _ = writeln!(
        out,
        "<text x=\"{pad}\" y=\"{:.1}\" font-family=\"sans-serif\" font-size=\"11\">{first}</text>",
        h - 10.0
    );
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-family=\"sans-serif\" font-size=\"11\" text-anchor=\"end\">{last}</text>",
        w - pad,
        h - 10.0
    );
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"20\" font-family=\"sans-serif\" font-size=\"13\" text-anchor=\"middle\">Equity (drawdown shaded)</text>",
        w / 2.0
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(minutes: &[i64]) -> Vec<Bar> {
        let at = |m: i64| Timestamp::from_second(1_735_000_000 + 60 * m).unwrap();
        minutes.iter().map(|&m| Bar { t: at(m), open: 1.0, high: 1.0, low: 1.0, close: 1.0, volume: 1.0 }).collect()
    }

    #[test]
    fn the_replays_steps_are_every_minute_any_series_has_once_in_order() {
        let (a, b, c) = (bars(&[0, 1, 2, 5, 9]), bars(&[1, 3, 5, 6]), bars(&[]));
        let merged = |v: Vec<&Vec<Bar>>| merged_minutes(v.iter().map(|s| s.iter().map(|b| Ok(b.t))).collect());
        let steps = merged(vec![&a, &b, &c]).unwrap();
        let mut expected: Vec<Timestamp> = a.iter().chain(&b).map(|x| x.t).collect();
        expected.sort();
        expected.dedup();
        assert_eq!(steps, expected);
        assert_eq!(steps.len(), 7);
        assert!(merged(vec![&c]).unwrap().is_empty());
        let failing = vec![Ok(steps[0]), Err("SPY.csv line 3: bad timestamp".to_string())].into_iter();
        assert_eq!(merged_minutes(vec![failing]).unwrap_err(), "SPY.csv line 3: bad timestamp");
    }
}
