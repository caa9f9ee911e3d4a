//! `trading-hydra replay DATE`: the live ledger's trading day against the backtest of it.
//!
//! Owns: running the same bots over that day in the backtest engine (`backtest::step`) from the
//! day's start — its starting equity, at the very times the live loop ran (the ledger's kept
//! iterations; the bar minutes when it kept none) — on the day's bars (bar files), or, for a
//! simulated ledger, on that account's own simulated market; then matching the live round trips
//! with the backtest's (`pair`: same bot, symbol and side, the nearest entry within
//! `MATCH_WITHIN`), and accounting for the gap between the two days' P&L (`Gap`).
//!
//! Never: writes the live ledger (it is read only), sends an order, or replays the positions the
//! day began with: those are listed as carried in, and what they did that day is the gap's rest.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::core::clock::{self, ManualClock};
use crate::core::config::Config;
use crate::core::decimal::Dec;
use crate::core::instrument::{OPTION_MULTIPLIER, OccSymbol};
use crate::core::round_trip::{self, RoundTrip};
use crate::core::state::State;
use crate::research::backtest::{self, Bars, BuyAndHold, Run};
use crate::sim::replay::Replay;
use crate::sim::sim_broker::SimBroker;

/// A live trade and a backtest trade are the same trade when they are of one bot, symbol and side
/// and entered at most this far apart.
pub const MATCH_WITHIN: SignedDuration = SignedDuration::from_mins(30);

/// The seed of the simulated broker's option open interest in a replay on bar files (as a
/// backtest's).
const SEED: u64 = 42;

/// Where the replay's prices come from.
pub enum Market {
    /// Bar files (`--data`, or downloaded with the keys).
    Bars(Bars),
    /// A simulated account's own market: its seed and the minute its paths start from.
    Simulated { seed: u64, origin: i64 },
}

/// The live day as the ledger has it.
pub struct LiveDay {
    pub date: Date,
    pub start_equity: f64,
    /// The equity of the day's last kept iteration.
    pub end_equity: Option<f64>,
    /// The market times of the day's kept iterations (empty: none kept).
    pub iterations: Vec<Timestamp>,
    /// Round trips entered that day.
    pub trips: Vec<RoundTrip>,
    /// Round trips entered before the day and still open at its start.
    pub carried: Vec<RoundTrip>,
}

/// Reads `date` from the live ledger.
pub fn live_day(state: &State, date: Date) -> Result<LiveDay, String> {
    let err = |e: crate::core::state::StateError| e.to_string();
    let orders = state.all_orders().map_err(err)?;
    let fills = state.fills().map_err(err)?;
    let all = round_trip::fold(orders.iter().map(|(o, _)| o), &fills, &|_, _, _| None);
    let start = clock::start_of_date(date);
    let (trips, rest): (Vec<RoundTrip>, Vec<RoundTrip>) =
        all.into_iter().partition(|t| clock::trading_date(t.entry_at) == date);
    let carried = rest.into_iter().filter(|t| t.entry_at < start && t.exit_at.is_none_or(|x| x >= start)).collect();
    let kept = state.iterations_on(date).map_err(err)?;
    let iterations: Vec<Timestamp> = kept.iter().map(|k| k.0).collect();
    let end_equity = kept.iter().rev().find_map(|k| k.1);
    let start_equity = match state.day_start(date).map_err(err)? {
        Some(d) => d.equity,
        None => kept.iter().find_map(|k| k.1).ok_or_else(|| {
            format!("the ledger has no day-start equity and no iteration on {date}: the daemon did not run that day")
        })?,
    };
    Ok(LiveDay { date, start_equity, end_equity, iterations, trips, carried })
}

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Pair {
    Both { live: Box<RoundTrip>, backtest: Box<RoundTrip> },
    OnlyLive(RoundTrip),
    OnlyBacktest(RoundTrip),
}

/// Matches each live trip, in the order they entered, with the unmatched backtest trip of the
/// same bot, symbol and side whose entry is nearest, within `MATCH_WITHIN`.
pub fn pair(live: &[RoundTrip], backtest: &[RoundTrip]) -> Vec<Pair> {
    let mut taken = vec![false; backtest.len()];
    let mut out = Vec::new();
    for l in live {
        let gap = |b: &RoundTrip| l.entry_at.duration_since(b.entry_at).abs();
        let best = backtest
            .iter()
            .enumerate()
            .filter(|(i, b)| !taken[*i] && b.bot == l.bot && b.symbol == l.symbol && b.side == l.side)
            .filter(|(_, b)| gap(b) <= MATCH_WITHIN)
            .min_by_key(|(_, b)| gap(b));
        match best {
            Some((i, b)) => {
                taken[i] = true;
                out.push(Pair::Both { live: Box::new(l.clone()), backtest: Box::new(b.clone()) });
            }
            None => out.push(Pair::OnlyLive(l.clone())),
        }
    }
    for (i, b) in backtest.iter().enumerate() {
        if !taken[i] {
            out.push(Pair::OnlyBacktest(b.clone()));
        }
    }
    out
}

/// Where the difference between the live day's P&L and the backtest's came from, in dollars
/// (each live minus backtest, so they add up to the gap).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gap {
    /// Live P&L − backtest P&L (equity at the end against the day's start).
    pub total: f64,
    /// The same trades at other prices: − Σ over matched trips of each fill price's difference
    /// (worse +) times the live quantity (so a worse live fill is a loss here, whether the trip
    /// closed or is still open).
    pub slippage: f64,
    /// Trades the backtest made and the live day did not: missed fills, refused orders.
    pub missed_fills: f64,
    /// Trades the live day made and the backtest did not: other timing, other data.
    pub timing_and_data: f64,
    /// What is left: matched trips of other sizes, open positions' marks, positions carried in,
    /// fees (trips are compared before them).
    pub rest: f64,
}

/// The comparison's figures.
pub fn gap(pairs: &[Pair], live_pnl: f64, backtest_pnl: f64) -> Gap {
    // Before fees: the live ledger knows none (Alpaca charges them apart), so they are the rest's.
    let pnl = |t: &RoundTrip| t.gross_pnl.to_f64();
    let (mut slippage, mut missed, mut extra) = (0.0, 0.0, 0.0);
    for p in pairs {
        match p {
            Pair::Both { live, backtest } => slippage -= price_cost(live, backtest),
            Pair::OnlyLive(l) => extra += pnl(l),
            Pair::OnlyBacktest(b) => missed -= pnl(b),
        }
    }
    let total = live_pnl - backtest_pnl;
    Gap { total, slippage, missed_fills: missed, timing_and_data: extra, rest: total - slippage - missed - extra }
}

/// The replay's result.
pub struct Replayed {
    pub live: LiveDay,
    pub run: Run,
    pub pairs: Vec<Pair>,
    pub gap: Gap,
}

/// Runs the backtest of `live`'s day with `cfg` on `market`, and compares.
pub fn replay(mut cfg: Config, live: LiveDay, market: Market) -> Result<Replayed, String> {
    let start = clock::start_of_date(live.date);
    let end = clock::start_of_date(live.date.tomorrow().map_err(|e| e.to_string())?);
    cfg.settings.sim.starting_cash = live.start_equity;
    let ((sim, clock), replay, steps, skipped) = match market {
        Market::Bars(bars) => {
            let symbols = bars.symbols();
            let skipped = backtest::fit_config(&mut cfg, &symbols);
            let traded: Vec<String> = symbols.into_iter().filter(|s| !skipped.contains(s)).collect();
            // The live loop's times; without them, each bar minute's end on the day.
            let steps = if live.iterations.is_empty() {
                let mut ends = backtest::bar_ends(bars.minutes(&traded)?.0);
                ends.retain(|t| *t > start && *t <= end);
                ends
            } else {
                live.iterations.clone()
            };
            let replay = bars.replay()?;
            let clock = Arc::new(ManualClock::new(steps.first().copied().unwrap_or(start)));
            let mut sim =
                SimBroker::open(clock.clone(), cfg.settings.sim.clone(), SEED, None).map_err(|e| e.to_string())?;
            sim.replay(replay.clone());
            ((sim, clock), replay, steps, skipped)
        }
        Market::Simulated { seed, origin } => {
            if live.iterations.is_empty() {
                return Err(format!(
                    "the ledger keeps no iteration of {}: a simulated day is replayed at its own loop's times",
                    live.date
                ));
            }
            let clock = Arc::new(ManualClock::new(live.iterations[0]));
            let sim = SimBroker::on_market(clock.clone(), cfg.settings.sim.clone(), seed, origin);
            ((sim, clock), Replay::none(), live.iterations.clone(), Vec::new())
        }
    };
    if steps.is_empty() {
        return Err(format!("no bars on {}: nothing to replay (the data must hold that day's bars)", live.date));
    }
    // One day: its return is the day's, over the day as its own calendar.
    let days = BTreeSet::from([live.date]);
    let stepped = backtest::step(cfg, clock, sim, &steps, &replay, BuyAndHold::none(), false)?;
    let run = stepped.finish(Some(&days), 0, skipped)?;
    let pairs = pair(&live.trips, &run.trips);
    let live_pnl = live.end_equity.map_or(f64::NAN, |e| e - live.start_equity);
    let backtest_pnl = run.summary.end_equity - run.summary.start_equity;
    let gap = gap(&pairs, live_pnl, backtest_pnl);
    Ok(Replayed { live, run, pairs, gap })
}

fn at(t: Option<Timestamp>) -> String {
    t.map_or("-".to_string(), |t| t.strftime("%H:%M:%S").to_string())
}

fn price(p: Option<Dec>) -> String {
    p.map_or("-".to_string(), |p| p.to_string())
}

/// Whether the trip pays its price at its entry (`entry`) or at its exit: a long buys in and sells
/// out, a short the other way; a spread's net prices are what it pays both ways (+ a debit, − a
/// credit taken).
fn paying(trip: &RoundTrip, entry: bool) -> bool {
    match trip.side {
        "short" => !entry,
        "spread" => true,
        _ => entry,
    }
}

/// Live price − backtest price, signed so that + is worse for the trade (paid more, or got
/// less), per unit (a share, a coin, a contract's price, a spread's net).
fn worse(live: Option<Dec>, backtest: Option<Dec>, paying: bool) -> Option<f64> {
    let d = live?.to_f64() - backtest?.to_f64();
    Some(if paying { d } else { -d })
}

/// What a unit's price is multiplied by: 100 for option contracts and spreads.
fn unit(trip: &RoundTrip) -> f64 {
    let option = trip.side == "spread" || OccSymbol::parse(&trip.symbol).is_some();
    if option { OPTION_MULTIPLIER as f64 } else { 1.0 }
}

/// What a matched trip's live fills cost beyond the backtest's, in dollars: each price's
/// difference (worse +) times the live quantity.
fn price_cost(live: &RoundTrip, backtest: &RoundTrip) -> f64 {
    let entry = worse(live.entry_price, backtest.entry_price, paying(live, true)).unwrap_or(0.0);
    let exit = worse(live.exit_price, backtest.exit_price, paying(live, false)).unwrap_or(0.0);
    (entry + exit) * live.qty.to_f64() * unit(live)
}

/// Seconds from the backtest's time to the live one's.
fn later(live: Option<Timestamp>, backtest: Option<Timestamp>) -> Option<i64> {
    Some(live?.duration_since(backtest?).as_secs())
}

impl Replayed {
    /// The comparison for a person.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let count = |f: &dyn Fn(&Pair) -> bool| self.pairs.iter().filter(|p| f(p)).count();
        let _ = writeln!(
            out,
            "replay of {}: {} steps ({}); trades in both {}, only live {}, only in the backtest {}",
            self.live.date,
            self.run.equity.len(),
            if self.live.iterations.is_empty() { "the bar minutes" } else { "the live loop's own times" },
            count(&|p| matches!(p, Pair::Both { .. })),
            count(&|p| matches!(p, Pair::OnlyLive(_))),
            count(&|p| matches!(p, Pair::OnlyBacktest(_)))
        );
        for p in &self.pairs {
            match p {
                Pair::Both { live, backtest } => {
                    // (+ 0.0: a difference of −0 is shown as +0.)
                    let d = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:+.4}", v + 0.0));
                    let s = |v: Option<i64>| v.map_or("-".to_string(), |v| format!("{v:+} s"));
                    let _ = writeln!(
                        out,
                        "both      {} {} {} {}: entry {} at {} (backtest {} at {}: {} a unit, {}), exit {} at {} (backtest {} at {}: {} a unit, {}), P&L before fees ${:.2} (backtest ${:.2})",
                        live.bot,
                        live.symbol,
                        live.side,
                        live.qty,
                        price(live.entry_price),
                        at(Some(live.entry_at)),
                        price(backtest.entry_price),
                        at(Some(backtest.entry_at)),
                        d(worse(live.entry_price, backtest.entry_price, paying(live, true))),
                        s(later(Some(live.entry_at), Some(backtest.entry_at))),
                        price(live.exit_price),
                        at(live.exit_at),
                        price(backtest.exit_price),
                        at(backtest.exit_at),
                        d(worse(live.exit_price, backtest.exit_price, paying(live, false))),
                        s(later(live.exit_at, backtest.exit_at)),
                        live.gross_pnl.to_f64(),
                        backtest.gross_pnl.to_f64()
                    );
                }
                Pair::OnlyLive(t) | Pair::OnlyBacktest(t) => {
                    let _ = writeln!(
                        out,
                        "{} {} {} {} {}: entry {} at {}, exit {} at {} ({}), P&L before fees ${:.2}",
                        if matches!(p, Pair::OnlyLive(_)) { "live only" } else { "backtest " },
                        t.bot,
                        t.symbol,
                        t.side,
                        t.qty,
                        price(t.entry_price),
                        at(Some(t.entry_at)),
                        price(t.exit_price),
                        at(t.exit_at),
                        t.rule.as_deref().unwrap_or("open"),
                        t.gross_pnl.to_f64()
                    );
                }
            }
        }
        for t in &self.live.carried {
            let _ = writeln!(
                out,
                "carried in {} {} {} {}: entered {}, not replayed",
                t.bot, t.symbol, t.side, t.qty, t.entry_at
            );
        }
        let g = &self.gap;
        let live_pnl = self.live.end_equity.map(|e| e - self.live.start_equity);
        let _ = writeln!(
            out,
            "P&L of the day: live {}, backtest ${:.2}, from ${:.2}",
            live_pnl.map_or("unknown (no iteration kept)".to_string(), |p| format!("${p:.2}")),
            self.run.summary.end_equity - self.run.summary.start_equity,
            self.live.start_equity
        );
        let _ = writeln!(
            out,
            "the gap ${:.2}: slippage (the same trades at other prices) ${:.2}, missed fills (backtest-only trades) ${:.2}, timing and data (live-only trades) ${:.2}, the rest (open marks, carried positions, fees) ${:.2}",
            g.total, g.slippage, g.missed_fills, g.timing_and_data, g.rest
        );
        out
    }

    /// `replay.csv`: one row per pair.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "kind,bot,symbol,side,qty,live_entry_time,live_entry_price,backtest_entry_time,backtest_entry_price,entry_price_worse,entry_seconds_later,live_exit_time,live_exit_price,backtest_exit_time,backtest_exit_price,exit_price_worse,exit_seconds_later,live_pnl_before_fees,backtest_pnl_before_fees\n",
        );
        let ts = |t: Option<Timestamp>| t.map_or(String::new(), |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        let p = |v: Option<Dec>| v.map_or(String::new(), |v| v.to_string());
        let f = |v: Option<f64>| v.map_or(String::new(), |v| format!("{:.6}", v + 0.0));
        let n = |v: Option<i64>| v.map_or(String::new(), |v| v.to_string());
        let cents = |t: Option<&RoundTrip>| t.map_or(String::new(), |t| format!("{:.2}", t.gross_pnl.to_f64()));
        for pair in &self.pairs {
            let (kind, l, b) = match pair {
                Pair::Both { live, backtest } => ("both", Some(live.as_ref()), Some(backtest.as_ref())),
                Pair::OnlyLive(t) => ("live_only", Some(t), None),
                Pair::OnlyBacktest(t) => ("backtest_only", None, Some(t)),
            };
            let Some(any) = l.or(b) else { continue };
            let _ = writeln!(
                out,
                "{kind},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                any.bot,
                any.symbol,
                any.side,
                any.qty,
                ts(l.map(|t| t.entry_at)),
                p(l.and_then(|t| t.entry_price)),
                ts(b.map(|t| t.entry_at)),
                p(b.and_then(|t| t.entry_price)),
                f(worse(l.and_then(|t| t.entry_price), b.and_then(|t| t.entry_price), paying(any, true))),
                n(later(l.map(|t| t.entry_at), b.map(|t| t.entry_at))),
                ts(l.and_then(|t| t.exit_at)),
                p(l.and_then(|t| t.exit_price)),
                ts(b.and_then(|t| t.exit_at)),
                p(b.and_then(|t| t.exit_price)),
                f(worse(l.and_then(|t| t.exit_price), b.and_then(|t| t.exit_price), paying(any, false))),
                n(later(l.and_then(|t| t.exit_at), b.and_then(|t| t.exit_at))),
                cents(l),
                cents(b)
            );
        }
        out
    }

    /// `replay.json`: the day's figures and the gap.
    pub fn json(&self) -> serde_json::Value {
        let count = |f: &dyn Fn(&Pair) -> bool| self.pairs.iter().filter(|p| f(p)).count();
        let r = |v: f64| (v * 100.0).round() / 100.0;
        json!({
            "date": self.live.date.to_string(),
            "steps": self.run.equity.len(),
            "at_live_loop_times": !self.live.iterations.is_empty(),
            "start_equity": r(self.live.start_equity),
            "live_pnl": self.live.end_equity.map(|e| r(e - self.live.start_equity)),
            "backtest_pnl": r(self.run.summary.end_equity - self.run.summary.start_equity),
            "trades_in_both": count(&|p| matches!(p, Pair::Both { .. })),
            "trades_only_live": count(&|p| matches!(p, Pair::OnlyLive(_))),
            "trades_only_backtest": count(&|p| matches!(p, Pair::OnlyBacktest(_))),
            "carried_in": self.live.carried.len(),
            "gap": {
                "total": r(self.gap.total),
                "slippage": r(self.gap.slippage),
                "missed_fills": r(self.gap.missed_fills),
                "timing_and_data": r(self.gap.timing_and_data),
                "rest": r(self.gap.rest),
            },
        })
    }

    /// Writes `replay.txt`, `replay.csv`, `replay.json` and the backtest's own report files into
    /// `out`.
    pub fn write(&self, out: &Path) -> Result<(), String> {
        std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
        backtest::write(out.join("replay.txt"), &self.text())?;
        backtest::write(out.join("replay.csv"), &self.csv())?;
        let json = serde_json::to_string_pretty(&self.json()).unwrap_or_default();
        backtest::write(out.join("replay.json"), &format!("{json}\n"))?;
        backtest::write(out.join("trades.csv"), &round_trip::csv(&self.run.trips))?;
        backtest::write(out.join("live_trades.csv"), &round_trip::csv(&self.live.trips))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trip(bot: &str, symbol: &str, entry: &str, pnl: &str) -> RoundTrip {
        RoundTrip {
            bot: bot.into(),
            symbol: symbol.into(),
            legs: Vec::new(),
            side: "long",
            qty: Dec::from_int(10),
            entry_at: entry.parse().unwrap(),
            entry_price: Some(Dec::from_int(100)),
            exit_at: None,
            exit_price: None,
            rule: Some("take_profit".into()),
            gross_pnl: pnl.parse().unwrap(),
            fees: None,
            slippage: None,
            orders: Vec::new(),
        }
    }

    #[test]
    fn trips_pair_by_bot_symbol_side_and_the_nearest_entry_within_half_an_hour() {
        let live = [trip("a", "AAPL", "2026-12-01T15:00:00Z", "10"), trip("a", "AAPL", "2026-12-01T17:00:00Z", "-5")];
        let backtest = [
            trip("a", "AAPL", "2026-12-01T16:59:00Z", "-4"),
            trip("a", "AAPL", "2026-12-01T15:01:00Z", "12"),
            trip("b", "AAPL", "2026-12-01T15:00:00Z", "3"),
            trip("a", "AAPL", "2026-12-01T19:00:00Z", "7"),
        ];
        let pairs = pair(&live, &backtest);
        assert!(matches!(&pairs[0], Pair::Both { backtest, .. } if backtest.entry_at == backtest_at("15:01")));
        assert!(matches!(&pairs[1], Pair::Both { backtest, .. } if backtest.entry_at == backtest_at("16:59")));
        assert!(matches!(&pairs[2], Pair::OnlyBacktest(t) if t.bot == "b"), "another bot's trade is not ours");
        assert!(matches!(&pairs[3], Pair::OnlyBacktest(t) if t.entry_at == backtest_at("19:00")), "two hours off");
        // The gap: live 10 − 5 = 5 on the day against the backtest's 12 − 4 + 3 + 7 = 18.
        let g = gap(&pairs, 5.0, 18.0);
        assert_eq!(g.total, -13.0);
        // Matched at the same prices: no slippage; their P&L difference (−3) is the rest's.
        assert_eq!(g.slippage, 0.0);
        assert_eq!(g.missed_fills, -10.0);
        assert_eq!(g.timing_and_data, 0.0);
        assert_eq!(g.rest, -3.0);
        // A live entry 0.05 worse on 10 shares, and an exit 0.10 worse (sold lower): −1.50.
        let mut worse_live = live[0].clone();
        worse_live.entry_price = Some("100.05".parse().unwrap());
        worse_live.exit_price = Some("104.90".parse().unwrap());
        let mut same = backtest[1].clone();
        same.exit_price = Some(Dec::from_int(105));
        let g = gap(&pair(&[worse_live.clone()], &[same.clone()]), 0.0, 0.0);
        assert!((g.slippage + 1.5).abs() < 1e-9, "{g:?}");
        // A short pays at its exit: bought back 0.10 higher is worse too.
        let (mut short_live, mut short_bt) = (worse_live, same);
        (short_live.side, short_bt.side) = ("short", "short");
        short_live.entry_price = Some(Dec::from_int(100));
        short_live.exit_price = Some("105.10".parse().unwrap());
        assert!((gap(&pair(&[short_live], &[short_bt]), 0.0, 0.0).slippage + 1.0).abs() < 1e-9);
        let lone = pair(&live[..1], &[]);
        assert_eq!(lone, vec![Pair::OnlyLive(live[0].clone())]);
        assert_eq!(gap(&lone, 10.0, 0.0).timing_and_data, 10.0);
    }

    fn backtest_at(hm: &str) -> Timestamp {
        format!("2026-12-01T{hm}:00Z").parse().unwrap()
    }
}
