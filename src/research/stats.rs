//! The backtest's statistics, each a pure function of plain values, each defined in the README
//! ("Backtest statistics") and tested against a hand computation.
//!
//! Owns: daily returns (from the starting equity, the first day included; over stock sessions,
//! or over calendar days for a crypto-only configuration), Sharpe and Sortino annualised by the
//! periods of that calendar (√252 or √365), CAGR, the maximum and the longest drawdown, Calmar,
//! and the round trips' figures (win rate, average win and loss, profit factor, expectancy).
//!
//! Never: reads a file or the ledger, or rounds: the report rounds what it shows.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::civil::Date;

use crate::core::clock;

/// What a "day" is for the daily returns and how many make a year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calendar {
    /// Stock sessions: a return from one session's close to the next (a weekend's crypto moves
    /// land in Monday's), 252 a year.
    Sessions,
    /// Calendar days, for a configuration that trades only crypto: 365 a year.
    Days,
}

impl Calendar {
    pub fn per_year(self) -> f64 {
        match self {
            Calendar::Sessions => 252.0,
            Calendar::Days => 365.0,
        }
    }

    /// How the report labels what is annualised by it.
    pub fn label(self) -> &'static str {
        match self {
            Calendar::Sessions => "stock sessions, ×√252",
            Calendar::Days => "calendar days, ×√365",
        }
    }
}

/// Each day's return: the last equity of each New York date of `days` (the stock sessions, or
/// for `Calendar::Days` every date of the curve) against the one before, the first against
/// `start`. A session's close is the last equity of its date or of any date before it since the
/// previous session (so a weekend's moves count on Monday). Equity after the last day of `days`
/// is in no return.
pub fn daily_returns(equity: &[(Timestamp, f64)], start: f64, days: Option<&BTreeSet<Date>>) -> Vec<(Date, f64)> {
    // The last equity of each date of the curve.
    let mut closes: BTreeMap<Date, f64> = BTreeMap::new();
    for (t, e) in equity {
        closes.insert(clock::trading_date(*t), *e);
    }
    let dates: Vec<Date> = match days {
        Some(days) => days.iter().copied().collect(),
        None => closes.keys().copied().collect(),
    };
    let mut out = Vec::with_capacity(dates.len());
    let mut prev = start;
    for d in dates {
        // The last close on or before `d`.
        let Some((_, close)) = closes.range(..=d).next_back() else { continue };
        if prev > 0.0 {
            out.push((d, close / prev - 1.0));
        }
        prev = *close;
    }
    out
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Mean over sample standard deviation (n − 1) of the daily returns, × √(periods a year); no
/// risk-free rate is taken off. `None` with fewer than two returns or none that differ.
pub fn sharpe(returns: &[f64], per_year: f64) -> Option<f64> {
    if returns.len() < 2 {
        return None;
    }
    let m = mean(returns);
    let var = returns.iter().map(|r| (r - m).powi(2)).sum::<f64>() / (returns.len() - 1) as f64;
    (var > 0.0).then(|| m / var.sqrt() * per_year.sqrt())
}

/// Mean over the downside deviation (√(Σ min(r, 0)² / n), against 0) of the daily returns,
/// × √(periods a year). `None` with fewer than two returns or without a losing day.
pub fn sortino(returns: &[f64], per_year: f64) -> Option<f64> {
    if returns.len() < 2 {
        return None;
    }
    let down = returns.iter().map(|r| r.min(0.0).powi(2)).sum::<f64>() / returns.len() as f64;
    (down > 0.0).then(|| mean(returns) / down.sqrt() * per_year.sqrt())
}

/// Compound annual growth, as a fraction: (end / start)^(periods a year / periods) − 1.
pub fn cagr(start: f64, end: f64, periods: usize, per_year: f64) -> Option<f64> {
    (start > 0.0 && end > 0.0 && periods > 0).then(|| (end / start).powf(per_year / periods as f64) - 1.0)
}

/// The deepest fall from a running peak, as a fraction, and the longest time below a peak
/// (from the peak to the first equity at or above it again, or to the end), in days.
pub fn drawdowns(equity: &[(Timestamp, f64)]) -> (f64, f64) {
    let mut peak: Option<(Timestamp, f64)> = None;
    let (mut deepest, mut longest) = (0.0f64, 0.0f64);
    let days = |from: Timestamp, to: Timestamp| to.duration_since(from).as_secs_f64() / 86_400.0;
    for &(t, e) in equity {
        match peak {
            Some((since, p)) if e < p => {
                deepest = deepest.max((p - e) / p);
                longest = longest.max(days(since, t));
            }
            _ => peak = Some((t, e)),
        }
    }
    (deepest, longest)
}

/// Calmar: CAGR over the maximum drawdown (both fractions). `None` without a drawdown.
pub fn calmar(cagr: Option<f64>, max_drawdown: f64) -> Option<f64> {
    cagr.filter(|_| max_drawdown > 0.0).map(|c| c / max_drawdown)
}

/// The closed round trips' figures, from their net P&L (fees taken off).
#[derive(Debug, Clone, PartialEq)]
pub struct TradeStats {
    pub count: u32,
    /// Trips that gained or lost something (a trip at exactly zero is neither).
    pub win_rate_pct: Option<f64>,
    pub avg_win: Option<f64>,
    pub avg_loss: Option<f64>,
    /// Σ gains / |Σ losses|; `None` without a loss.
    pub profit_factor: Option<f64>,
    /// Mean net P&L per trip.
    pub expectancy: Option<f64>,
}

pub fn trade_stats(pnl: &[f64]) -> TradeStats {
    let wins: Vec<f64> = pnl.iter().copied().filter(|p| *p > 0.0).collect();
    let losses: Vec<f64> = pnl.iter().copied().filter(|p| *p < 0.0).collect();
    let avg = |v: &[f64]| (!v.is_empty()).then(|| mean(v));
    let decided = wins.len() + losses.len();
    let lost: f64 = losses.iter().sum();
    TradeStats {
        count: pnl.len() as u32,
        win_rate_pct: (decided > 0).then(|| wins.len() as f64 / decided as f64 * 100.0),
        avg_win: avg(&wins),
        avg_loss: avg(&losses),
        profit_factor: (lost < 0.0).then(|| wins.iter().sum::<f64>() / -lost),
        expectancy: avg(pnl),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// Three sessions, Thursday to Monday, with crypto trading the weekend between.
    fn curve() -> Vec<(Timestamp, f64)> {
        vec![
            (at("2026-12-03T15:00:00Z"), 100_000.0),
            (at("2026-12-03T20:59:00Z"), 101_000.0), // Thursday's close: +1 % on the start
            (at("2026-12-04T20:59:00Z"), 99_990.0),  // Friday: −1 %
            (at("2026-12-05T18:00:00Z"), 98_000.0),  // Saturday, crypto
            (at("2026-12-07T20:59:00Z"), 100_989.9), // Monday: +1 % on Friday
        ]
    }

    #[test]
    fn daily_returns_start_from_the_starting_equity_and_weekends_land_on_monday() {
        let sessions: BTreeSet<Date> =
            ["2026-12-03", "2026-12-04", "2026-12-07"].iter().map(|d| d.parse().unwrap()).collect();
        let r = daily_returns(&curve(), 100_000.0, Some(&sessions));
        let values: Vec<f64> = r.iter().map(|x| x.1).collect();
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(close(values[0], 0.01) && close(values[1], -0.01) && close(values[2], 0.01), "{values:?}");
        // Calendar days: Saturday is a day of its own.
        let days = daily_returns(&curve(), 100_000.0, None);
        assert_eq!(days.len(), 4);
        assert!(close(days[2].1, 98_000.0 / 99_990.0 - 1.0));
    }

    #[test]
    fn sharpe_and_sortino_match_a_hand_computation() {
        // Returns 1 %, −1 %, 1 %: mean 1/300, sample variance ((2/3)² + (4/3)² + (2/3)²)/2 × 10⁻⁴
        // = 4/3 × 10⁻⁴, sd 0.011547; Sharpe = 0.0033333 / 0.011547 × √252 = 4.5826.
        let r = [0.01, -0.01, 0.01];
        let s = sharpe(&r, 252.0).unwrap();
        assert!((s - 4.582576).abs() < 1e-5, "{s}");
        // Downside deviation √(0.0001 / 3) = 0.0057735; Sortino = 0.0033333 / 0.0057735 × √252.
        let so = sortino(&r, 252.0).unwrap();
        assert!((so - 9.165151).abs() < 1e-5, "{so}");
        // A crypto-only year: √365.
        assert!((sharpe(&r, 365.0).unwrap() - 0.0033333333 / 0.0115470054 * 365f64.sqrt()).abs() < 1e-6);
        assert_eq!(sharpe(&[0.01], 252.0), None, "one return is no deviation");
        assert_eq!(sharpe(&[0.01, 0.01], 252.0), None);
        assert_eq!(sortino(&[0.01, 0.02], 252.0), None, "no losing day: no downside");
    }

    #[test]
    fn the_first_days_gain_counts() {
        // The walk-forward window: its only winning day was the first.
        let sessions: BTreeSet<Date> = ["2026-12-03", "2026-12-04"].iter().map(|d| d.parse().unwrap()).collect();
        let eq = vec![(at("2026-12-03T20:59:00Z"), 100_500.0), (at("2026-12-04T20:59:00Z"), 100_170.0)];
        let r: Vec<f64> = daily_returns(&eq, 100_000.0, Some(&sessions)).into_iter().map(|x| x.1).collect();
        assert_eq!(r.len(), 2);
        assert!(sharpe(&r, 252.0).unwrap() > 0.0, "+0.17 % over two days is a positive Sharpe: {r:?}");
    }

    #[test]
    fn cagr_drawdowns_and_calmar_by_hand() {
        // +10 % over 126 sessions: 1.1² − 1 = 21 % a year.
        assert!(close(cagr(100.0, 110.0, 126, 252.0).unwrap(), 0.21));
        assert_eq!(cagr(0.0, 110.0, 126, 252.0), None);
        // Peak 101,000 on Thursday, 98,000 on Saturday (−2.97 %), not back by Monday's end.
        let (deepest, longest) = drawdowns(&curve());
        assert!(close(deepest, 3000.0 / 101_000.0));
        assert!(close(longest, 4.0), "Thursday 20:59 to Monday 20:59: {longest}");
        let (none, zero) = drawdowns(&[(at("2026-12-03T15:00:00Z"), 1.0), (at("2026-12-03T16:00:00Z"), 2.0)]);
        assert_eq!((none, zero), (0.0, 0.0));
        assert!(close(calmar(Some(0.21), 0.07).unwrap(), 3.0));
        assert_eq!(calmar(Some(0.21), 0.0), None);
    }

    #[test]
    fn trade_figures_by_hand() {
        let t = trade_stats(&[100.0, -50.0, 0.0, 200.0, -25.0]);
        assert_eq!(t.count, 5);
        assert_eq!(t.win_rate_pct, Some(50.0), "the trip at zero is neither");
        assert_eq!((t.avg_win, t.avg_loss), (Some(150.0), Some(-37.5)));
        assert_eq!(t.profit_factor, Some(4.0));
        assert_eq!(t.expectancy, Some(45.0));
        let none = trade_stats(&[]);
        assert_eq!((none.win_rate_pct, none.profit_factor, none.expectancy), (None, None, None));
        assert_eq!(trade_stats(&[10.0]).profit_factor, None);
    }
}
