//! The backtest's `report.html`: one self-contained page to open in any browser.
//!
//! Owns: the page — the headline figures, the bots' equity on its own scale, its return against
//! buy-and-hold of the traded symbols, the drawdown, monthly returns, each bot's net P&L, round
//! trips and win rate, the round trips, and the configuration the run used — as well-formed HTML
//! with inline SVG and CSS; the walk-forward's chart (`walk_forward_svg`); and the buy-and-hold
//! curve over whole series (`buy_and_hold`: the reference the backtest's own benchmark, read from
//! the replay during the run, is tested against).
//!
//! Never: loads anything from the network (no script, font or stylesheet from elsewhere: it opens
//! offline), or computes a figure of its own that `backtest::summarize` already gives.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use jiff::civil::Date;

use crate::core::clock;
use crate::core::decimal::Dec;
use crate::core::market_data::Bar;
use crate::core::round_trip::RoundTrip;
use crate::research::stats::Calendar;

/// A backtest's headline figures: what `report.json`, the summary printed and this page show.
/// Each is defined in the README ("Backtest statistics") and computed by `research::stats`.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub start_equity: f64,
    pub end_equity: f64,
    pub total_return_pct: f64,
    pub cagr_pct: Option<f64>,
    pub max_drawdown_pct: f64,
    pub longest_drawdown_days: f64,
    /// What the daily returns are taken over, and annualised by.
    pub calendar: Calendar,
    /// Daily returns (sessions or calendar days).
    pub days: u32,
    pub sharpe: Option<f64>,
    pub sortino: Option<f64>,
    pub calmar: Option<f64>,
    /// The best and worst daily return, in percent, with its date.
    pub best_day: Option<(Date, f64)>,
    pub worst_day: Option<(Date, f64)>,
    /// Closed round trips, and those still open at the end.
    pub trades: u32,
    pub open_trades: u32,
    pub win_rate_pct: Option<f64>,
    pub avg_win: Option<f64>,
    pub avg_loss: Option<f64>,
    pub profit_factor: Option<f64>,
    pub expectancy: Option<f64>,
    /// Fees paid, by the simulated broker's schedule.
    pub fees: f64,
    /// What fills cost beyond the prices their orders were decided at.
    pub slippage: Option<f64>,
    /// The average share of equity in positions (gross), in percent.
    pub exposure_pct: f64,
    /// The share of minutes with any position, in percent.
    pub time_in_market_pct: f64,
    /// Net P&L (fees off) of each bot's round trips.
    pub per_bot_pnl: BTreeMap<String, f64>,
    pub halts: BTreeMap<String, u32>,
    pub bars: u64,
    pub skipped: Vec<String>,
}

/// What the page shows.
pub struct Page<'a> {
    pub summary: &'a Summary,
    /// The account's equity after each bar minute.
    pub equity: &'a [(Timestamp, f64)],
    /// Buy-and-hold of the traded symbols at the same minutes (`buy_and_hold`).
    pub benchmark: &'a [(Timestamp, f64)],
    /// Which symbols the benchmark holds.
    pub benchmark_symbols: &'a [String],
    /// The round trips (`core::round_trip`).
    pub trips: &'a [RoundTrip],
    /// Where the bars came from, in words.
    pub source: &'a str,
    /// `settings.yaml` and `bots.yaml` as the run read them.
    pub config: (&'a str, &'a str),
}

/// The trades list shows at most this many round trips (all of them are in `trades.csv`).
const MAX_TRADE_ROWS: usize = 2000;
/// A curve is drawn through at most this many points (a year of minutes would be 100,000).
const MAX_POINTS: usize = 1200;

/// Equal dollars in each symbol of `series` (its bars, oldest first; a symbol without any is left
/// out) at its first bar's close, held: its value at each of `minutes` (each symbol at the close
/// of its last bar that began before that minute; before its first bar, the cash set aside for
/// it). An error reading a series is the result.
pub fn buy_and_hold<I>(
    series: Vec<I>,
    start: f64,
    minutes: &[(Timestamp, f64)],
) -> Result<Vec<(Timestamp, f64)>, String>
where
    I: Iterator<Item = Result<Bar, String>>,
{
    // `series` are the symbols' bars, oldest first, each read once: a symbol's value is added to
    // every minute before the next symbol's, in the same order for each minute (so the sums are
    // the same to the bit whether the bars are in memory or read from their files).
    let mut held = Vec::new();
    for mut bars in series {
        if let Some(first) = bars.next().transpose()? {
            held.push((first, bars));
        }
    }
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let each = start / held.len() as f64;
    let mut values = vec![0.0; minutes.len()];
    for (first, mut rest) in held {
        // The last bar that began before the minute (the first until one has).
        let mut last = first;
        let mut next = rest.next().transpose()?;
        for ((t, _), value) in minutes.iter().zip(values.iter_mut()) {
            while let Some(b) = next.filter(|b| b.t < *t) {
                last = b;
                next = rest.next().transpose()?;
            }
            *value += if first.t >= *t || first.close <= 0.0 { each } else { each * last.close / first.close };
        }
    }
    Ok(minutes.iter().zip(values).map(|((t, _), v)| (*t, v)).collect())
}

/// Escapes text for HTML (element content and attribute values).
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Dollars to the cent, with thousands separators: `$100,012.34`, `-$249.50`.
fn money(v: f64) -> String {
    let cents = Dec::from_f64(v).map(|d| d.round_to(2)).unwrap_or(Dec::ZERO);
    let text = cents.to_string();
    let (sign, digits) = text.strip_prefix('-').map_or(("", text.as_str()), |d| ("-", d));
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let frac = format!("{frac:0<2}");
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}${grouped}.{}", &frac[..2])
}

fn pct(v: f64) -> String {
    format!("{v:+.2} %")
}

/// Every `k`-th point and the last, so a curve has at most `MAX_POINTS`.
fn thin(points: &[(Timestamp, f64)]) -> Vec<(usize, f64)> {
    let step = points.len().div_ceil(MAX_POINTS).max(1);
    let mut out: Vec<(usize, f64)> = points.iter().enumerate().step_by(step).map(|(i, p)| (i, p.1)).collect();
    if let Some(last) = points.len().checked_sub(1)
        && out.last().is_some_and(|(i, _)| *i != last)
    {
        out.push((last, points[last].1));
    }
    out
}

/// One curve of a chart: its name, its colour and its points.
type Series<'a> = (&'a str, &'a str, &'a [(Timestamp, f64)]);

/// A line chart of one or more series over the same minutes, with its range labelled.
fn chart(title: &str, series: &[Series], unit: &dyn Fn(f64) -> String) -> String {
    chart_marked(title, series, unit, &[])
}

/// The walk-forward's chart, a standalone SVG file: the test windows joined (out of sample)
/// against the best combination in hindsight over the same days (in sample), each test window's
/// start marked by a vertical line.
pub fn walk_forward_svg(
    joined: &[(Timestamp, f64)],
    in_sample: &[(Timestamp, f64)],
    window_starts: &[Timestamp],
) -> String {
    let svg = chart_marked(
        "Walk-forward: out of sample (the test windows joined) against in sample (the best in hindsight)",
        &[("in sample: the best combination in hindsight", "#999", in_sample), ("out of sample", "#1f5fbf", joined)],
        &|v| format!("${v:.0}"),
        window_starts,
    );
    // Standalone: its own white ground, style and legend.
    let head = "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<style>text{font:11px sans-serif}.axis{stroke:#999}.grid{stroke:#eee}.mark{stroke:#d98c00;stroke-dasharray:3 3}</style>\n\
                <text x=\"90\" y=\"14\" fill=\"#1f5fbf\">━ out of sample</text><text x=\"210\" y=\"14\" fill=\"#999\">━ in sample (best in hindsight)</text><text x=\"420\" y=\"14\" fill=\"#d98c00\">┆ a test window starts</text>\n";
    match svg.find('\n') {
        Some(i) => format!("{}{head}{}", &svg[..=i], &svg[i + 1..]),
        None => svg,
    }
}

/// `chart`, with a vertical line at each of `marks`.
fn chart_marked(title: &str, series: &[Series], unit: &dyn Fn(f64) -> String, marks: &[Timestamp]) -> String {
    let (w, h, left, pad) = (900.0, 300.0, 90.0, 30.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">\n",
        esc(title)
    );
    let all: Vec<f64> = series.iter().flat_map(|(_, _, p)| p.iter().map(|x| x.1)).collect();
    let n = series.iter().map(|(_, _, p)| p.len()).max().unwrap_or(0);
    if n < 2 || all.is_empty() {
        out.push_str("<text x=\"20\" y=\"40\">not enough data</text>\n</svg>\n");
        return out;
    }
    let lo = all.iter().copied().fold(f64::MAX, f64::min);
    let hi = all.iter().copied().fold(f64::MIN, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let x = |i: usize| left + (w - left - pad) * i as f64 / (n - 1) as f64;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * (v - lo) / span;
    let _ = writeln!(
        out,
        "<line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" class=\"axis\"/>",
        h - pad,
        w - pad,
        h - pad
    );
    for v in [lo, (lo + hi) / 2.0, hi] {
        let _ = writeln!(
            out,
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" class=\"grid\"/>",
            y(v),
            w - pad
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y(v) + 4.0,
            esc(&unit(v))
        );
    }
    // A mark stands at the first point of the longest series at or after it.
    if let Some((_, _, longest)) = series.iter().max_by_key(|(_, _, p)| p.len()) {
        for m in marks {
            let i = longest.partition_point(|p| p.0 < *m).min(n - 1);
            let _ = writeln!(
                out,
                "<line x1=\"{0:.1}\" y1=\"{pad}\" x2=\"{0:.1}\" y2=\"{1:.1}\" class=\"mark\"/>",
                x(i),
                h - pad
            );
        }
    }
    for (name, colour, points) in series {
        if points.len() < 2 {
            continue;
        }
        let path: Vec<String> = thin(points).iter().map(|(i, v)| format!("{:.1},{:.1}", x(*i), y(*v))).collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.6\" points=\"{}\"><title>{}</title></polyline>",
            path.join(" "),
            esc(name)
        );
    }
    let first = series.iter().find_map(|(_, _, p)| p.first()).map(|p| p.0);
    let last = series.iter().find_map(|(_, _, p)| p.last()).map(|p| p.0);
    if let (Some(a), Some(b)) = (first, last) {
        let _ = writeln!(out, "<text x=\"{left}\" y=\"{:.1}\">{}</text>", h - 8.0, clock::trading_date(a));
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            w - pad,
            h - 8.0,
            clock::trading_date(b)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The drawdown from the running peak, in percent (0 or below), at each point.
fn drawdown(equity: &[(Timestamp, f64)]) -> Vec<(Timestamp, f64)> {
    let mut peak = f64::MIN;
    equity
        .iter()
        .map(|(t, e)| {
            peak = peak.max(*e);
            (*t, if peak > 0.0 { (e - peak) / peak * 100.0 } else { 0.0 })
        })
        .collect()
}

/// Each month's return (New York dates): its last equity against the month before's (the first
/// month against the starting equity), by (year, month).
fn monthly_returns(equity: &[(Timestamp, f64)], start: f64) -> BTreeMap<(i16, i8), f64> {
    let mut month_end: BTreeMap<(i16, i8), f64> = BTreeMap::new();
    for (t, e) in equity {
        let d = clock::trading_date(*t);
        month_end.insert((d.year(), d.month()), *e);
    }
    let mut before = start;
    let mut out = BTreeMap::new();
    for (k, end) in month_end {
        if before > 0.0 {
            out.insert(k, (end / before - 1.0) * 100.0);
        }
        before = end;
    }
    out
}

/// Per bot: (closed round trips, won, lost).
fn per_bot_trades(trips: &[RoundTrip]) -> BTreeMap<String, (u32, u32, u32)> {
    let mut out: BTreeMap<String, (u32, u32, u32)> = BTreeMap::new();
    for t in trips.iter().filter(|t| t.is_closed()) {
        let row = out.entry(t.bot.clone()).or_default();
        row.0 += 1;
        let pnl = t.net_pnl();
        if pnl > Dec::ZERO {
            row.1 += 1;
        } else if pnl < Dec::ZERO {
            row.2 += 1;
        }
    }
    out
}

/// The points of `curve` a chart draws (`thin`'s: every k-th and the last), each as its percent
/// change from the first: not a copy of a year's 100,000 points for 1,200 drawn.
fn in_returns(curve: &[(Timestamp, f64)]) -> Vec<(Timestamp, f64)> {
    let Some(first) = curve.first().map(|p| p.1).filter(|v| *v > 0.0) else { return Vec::new() };
    thin(curve).into_iter().map(|(i, v)| (curve[i].0, (v / first - 1.0) * 100.0)).collect()
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:960px;color:#1d1d1f;padding:0 1em}\
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
.muted{color:#666}.cards{display:flex;flex-wrap:wrap;gap:.6em}.card{border:1px solid #ddd;border-radius:6px;padding:.5em .8em;min-width:8em}\
.card b{display:block;font-size:1.25em}table{border-collapse:collapse;font-size:.9em}td,th{padding:.25em .6em;border-bottom:1px solid #eee;text-align:right}\
th{background:#f6f6f6}td.l,th.l{text-align:left}.pos{color:#107c10}.neg{color:#c50f1f}svg{width:100%;height:auto;font-size:11px;font-family:inherit}\
.axis{stroke:#999}.grid{stroke:#eee}.legend span{margin-right:1.2em}pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.8em}\
.scroll{max-height:30em;overflow:auto}.mark{stroke:#d98c00;stroke-dasharray:3 3}";

fn signed_class(v: f64) -> &'static str {
    if v > 0.0 {
        "pos"
    } else if v < 0.0 {
        "neg"
    } else {
        ""
    }
}

/// The whole page.
pub fn render(p: &Page) -> String {
    let s = p.summary;
    let mut out = String::with_capacity(64 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n");
    out.push_str("<title>Trading Hydra backtest</title>\n");
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
    let (first, last) = (p.equity.first().map(|e| e.0), p.equity.last().map(|e| e.0));
    let span = match (first, last) {
        (Some(a), Some(b)) => format!("{} to {}", clock::trading_date(a), clock::trading_date(b)),
        _ => "no data".to_string(),
    };
    let _ = writeln!(
        out,
        "<h1>Backtest report</h1>\n<p class=\"muted\">{} · {} · {} bars · trading-hydra {}</p>",
        esc(&span),
        esc(p.source),
        s.bars,
        crate::VERSION
    );

    // Headline figures.
    let bench_return = match (p.benchmark.first(), p.benchmark.last()) {
        (Some(a), Some(b)) if a.1 > 0.0 => Some((b.1 / a.1 - 1.0) * 100.0),
        _ => None,
    };
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("n/a".to_string(), f);
    let two = |v: f64| format!("{v:.2}");
    let day = |d: Option<(Date, f64)>| d.map_or("n/a".to_string(), |(d, r)| format!("{} ({d})", pct(r)));
    let cards = [
        ("Return", pct(s.total_return_pct), signed_class(s.total_return_pct)),
        ("Buy and hold", opt(bench_return, &pct), bench_return.map_or("", signed_class)),
        ("CAGR", opt(s.cagr_pct, &pct), ""),
        ("End equity", money(s.end_equity), ""),
        ("Max drawdown", format!("{:.2} %", s.max_drawdown_pct), ""),
        ("Longest drawdown", format!("{:.1} days", s.longest_drawdown_days), ""),
        ("Sharpe (annualised)", opt(s.sharpe, &two), ""),
        ("Sortino (annualised)", opt(s.sortino, &two), ""),
        ("Calmar", opt(s.calmar, &two), ""),
        ("Best day", day(s.best_day), ""),
        ("Worst day", day(s.worst_day), ""),
        ("Round trips", format!("{} (+{} open)", s.trades, s.open_trades), ""),
        ("Win rate", opt(s.win_rate_pct, &|v| format!("{v:.1} %")), ""),
        ("Average win", opt(s.avg_win, &money), ""),
        ("Average loss", opt(s.avg_loss, &money), ""),
        ("Profit factor", opt(s.profit_factor, &two), ""),
        ("Expectancy", opt(s.expectancy, &money), ""),
        ("Fees paid", money(s.fees), ""),
        ("Slippage paid", opt(s.slippage, &money), ""),
        ("Exposure", format!("{:.1} % of equity", s.exposure_pct), ""),
        ("Time in market", format!("{:.1} %", s.time_in_market_pct), ""),
    ];
    out.push_str("<div class=\"cards\">\n");
    for (label, value, class) in cards {
        let class = if class.is_empty() { String::new() } else { format!(" class=\"{class}\"") };
        let _ = writeln!(
            out,
            "<div class=\"card\"><span class=\"muted\">{label}</span><b{class}>{}</b></div>",
            esc(&value)
        );
    }
    out.push_str("</div>\n");
    let _ = writeln!(
        out,
        "<p class=\"muted\">Daily returns over {} ({} of them), from the starting equity; the README defines every figure. Fees by the simulated broker's schedule; slippage against the price each order was decided at.</p>",
        s.calendar.label(),
        s.days
    );

    // Equity against buy-and-hold, and the drawdown.
    // The bots' equity on its own scale (a benchmark that moves ten times as much would flatten
    // it), then both as returns on one scale.
    out.push_str("<h2>Equity</h2>\n");
    let dollars = |v: f64| format!("${v:.0}");
    out.push_str(&chart("Equity", &[("the bots", "#1f5fbf", p.equity)], &dollars));
    out.push_str("<h2>Return against buy and hold</h2>\n");
    let held = if p.benchmark_symbols.is_empty() { "none".to_string() } else { p.benchmark_symbols.join(", ") };
    let _ = writeln!(
        out,
        "<p class=\"legend\"><span style=\"color:#1f5fbf\">━ the bots</span><span style=\"color:#999\">━ buy and hold of {} (equal dollars at the first bar)</span></p>",
        esc(&held)
    );
    let (ours, theirs) = (in_returns(p.equity), in_returns(p.benchmark));
    out.push_str(&chart(
        "Return against buy and hold",
        &[("buy and hold", "#999", &theirs), ("the bots", "#1f5fbf", &ours)],
        &|v| format!("{v:+.1} %"),
    ));
    out.push_str("<h2>Drawdown</h2>\n");
    let dd = drawdown(p.equity);
    out.push_str(&chart("Drawdown", &[("drawdown", "#c50f1f", &dd)], &|v| format!("{v:.2} %")));

    // Monthly returns.
    out.push_str("<h2>Monthly returns</h2>\n<table>\n<tr><th class=\"l\">year</th>");
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    for m in MONTHS {
        let _ = write!(out, "<th>{m}</th>");
    }
    out.push_str("<th>year</th></tr>\n");
    let months = monthly_returns(p.equity, s.start_equity);
    let years: Vec<i16> = {
        let mut y: Vec<i16> = months.keys().map(|k| k.0).collect();
        y.dedup();
        y
    };
    for year in years {
        let _ = write!(out, "<tr><td class=\"l\">{year}</td>");
        let mut compound = 1.0;
        for m in 1..=12i8 {
            match months.get(&(year, m)) {
                Some(r) => {
                    compound *= 1.0 + r / 100.0;
                    let _ = write!(out, "<td class=\"{}\">{r:+.2}</td>", signed_class(*r));
                }
                None => out.push_str("<td></td>"),
            }
        }
        let y = (compound - 1.0) * 100.0;
        let _ = writeln!(out, "<td class=\"{}\"><b>{y:+.2}</b></td></tr>", signed_class(y));
    }
    out.push_str("</table>\n<p class=\"muted\">Percent, by New York date: each month's last equity against the month before's.</p>\n");

    // Per bot.
    out.push_str("<h2>By bot</h2>\n<table>\n<tr><th class=\"l\">bot</th><th>net P&amp;L</th><th>round trips</th><th>won</th><th>lost</th><th>win rate</th></tr>\n");
    let trades = per_bot_trades(p.trips);
    let mut bots: Vec<&String> = s.per_bot_pnl.keys().chain(trades.keys()).collect();
    bots.sort();
    bots.dedup();
    for bot in bots {
        let pnl = s.per_bot_pnl.get(bot).copied().unwrap_or(0.0);
        let (entries, won, lost) = trades.get(bot).copied().unwrap_or_default();
        let rate = if won + lost > 0 {
            format!("{:.1} %", f64::from(won) * 100.0 / f64::from(won + lost))
        } else {
            "n/a".into()
        };
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">{}</td><td class=\"{}\">{}</td><td>{entries}</td><td>{won}</td><td>{lost}</td><td>{rate}</td></tr>",
            esc(bot),
            signed_class(pnl),
            money(pnl)
        );
    }
    out.push_str("</table>\n");
    if !s.halts.is_empty() {
        out.push_str("<p>Halts: ");
        let halts: Vec<String> = s.halts.iter().map(|(r, n)| format!("{} × {n}", esc(r))).collect();
        out.push_str(&halts.join(", "));
        out.push_str("</p>\n");
    }

    // The round trips.
    let _ = writeln!(out, "<h2>Round trips ({})</h2>", p.trips.len());
    if p.trips.len() > MAX_TRADE_ROWS {
        let _ = writeln!(
            out,
            "<p class=\"muted\">The first {MAX_TRADE_ROWS}; every one is in <code>trades.csv</code>, every order in <code>orders.csv</code>.</p>"
        );
    }
    out.push_str("<div class=\"scroll\"><table>\n<tr><th class=\"l\">bot</th><th class=\"l\">symbol</th><th class=\"l\">side</th><th>qty</th><th class=\"l\">entry (UTC)</th><th>entry price</th><th class=\"l\">exit (UTC)</th><th>exit price</th><th class=\"l\">rule</th><th>minutes</th><th>fees</th><th>slippage</th><th>P&amp;L</th></tr>\n");
    let at = |t: Option<Timestamp>| t.map_or(String::new(), |t| t.strftime("%Y-%m-%d %H:%M").to_string());
    let price = |p: Option<Dec>| p.map_or(String::new(), |p| p.to_string());
    for t in p.trips.iter().take(MAX_TRADE_ROWS) {
        let symbol = if t.legs.is_empty() { t.symbol.clone() } else { format!("{}: {}", t.symbol, t.legs_text()) };
        let pnl = t.net_pnl().to_f64();
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(&t.bot),
            esc(&symbol),
            t.side,
            t.qty,
            at(Some(t.entry_at)),
            price(t.entry_price),
            at(t.exit_at),
            price(t.exit_price),
            esc(t.rule.as_deref().unwrap_or("open")),
            t.minutes().map_or(String::new(), |m| m.to_string()),
            t.fees.map_or(String::new(), |f| money(f.to_f64())),
            t.slippage.map_or(String::new(), |f| money(f.to_f64())),
            signed_class(pnl),
            money(pnl)
        );
    }
    out.push_str("</table></div>\n");

    // The configuration.
    out.push_str("<h2>Configuration</h2>\n");
    let (settings, bots) = p.config;
    let _ = writeln!(
        out,
        "<h3>settings.yaml</h3>\n<pre>{}</pre>\n<h3>bots.yaml</h3>\n<pre>{}</pre>",
        esc(settings),
        esc(bots)
    );
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn bar(at: &str, close: f64) -> Bar {
        Bar { t: t(at), open: close, high: close, low: close, close, volume: 1.0 }
    }

    #[test]
    fn money_is_exact_to_the_cent_with_separators() {
        assert_eq!(money(100_012.345), "$100,012.35");
        assert_eq!(money(-249.5), "-$249.50");
        assert_eq!(money(0.0), "$0.00");
        assert_eq!(money(999.999), "$1,000.00");
        assert_eq!(money(1_234_567.0), "$1,234,567.00");
    }

    #[test]
    fn buy_and_hold_splits_the_cash_equally_and_follows_each_close() {
        let mut data = crate::core::market_data::BySymbol::new();
        data.insert("A".to_string(), vec![bar("2026-11-25T14:30:00Z", 10.0), bar("2026-11-25T14:31:00Z", 12.0)]);
        data.insert("B".to_string(), vec![bar("2026-11-25T14:31:00Z", 50.0), bar("2026-11-25T14:32:00Z", 25.0)]);
        let minutes: Vec<(Timestamp, f64)> = ["2026-11-25T14:31:00Z", "2026-11-25T14:32:00Z", "2026-11-25T14:33:00Z"]
            .iter()
            .map(|m| (t(m), 0.0))
            .collect();
        let series = ["A", "B"].iter().map(|s| data[*s].iter().map(|b| Ok(*b))).collect();
        let v = buy_and_hold(series, 1000.0, &minutes).unwrap();
        // 14:31: A's first bar closed (10: 500 held), B has not begun (its 500 in cash).
        // 14:32: A at 12 (600), B at 50 (500). 14:33: A 600, B at 25 (250).
        assert_eq!(v.iter().map(|p| p.1).collect::<Vec<_>>(), vec![1000.0, 1100.0, 850.0]);
    }

    #[test]
    fn months_are_compared_with_the_month_before() {
        let eq = vec![
            (t("2026-10-30T20:00:00Z"), 110.0),
            (t("2026-11-02T15:00:00Z"), 99.0),
            (t("2026-11-30T20:00:00Z"), 121.0),
        ];
        let m = monthly_returns(&eq, 100.0);
        assert!((m[&(2026, 10)] - 10.0).abs() < 1e-9);
        assert!((m[&(2026, 11)] - 10.0).abs() < 1e-9, "121 against October's 110");
    }

    #[test]
    fn text_from_the_configuration_is_escaped() {
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
