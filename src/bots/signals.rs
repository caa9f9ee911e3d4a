//! Entry signals, by `signal.mode`, with their `signal.params`.
//!
//! Owns: the decision of each mode (`core::signal` has the modes and their parameters, parsed
//! when the configuration loads), a pure function of bars.
//!
//! - `ema_roc_volume_v1` (stocks): long when the last close is above a rising fast EMA that is
//!   above the slow EMA, the rate of change over `roc_bars` is at least `min_roc_pct`, and the last
//!   bar's volume is at least `min_volume_ratio` × the average of the `volume_bars` before it
//!   (short: the mirror image, for bots that allow shorts). Trend, momentum and participation
//!   must agree, which keeps it out of the quiet chop of the middle of the day.
//! - `breakout_v1` (crypto): long when the last close breaks above the highest high of the
//!   `lookback` bars before it while above its `trend_ema`. Crypto trades around the clock in
//!   bursts between long quiet ranges; a breakout waits for the range to break instead of paying
//!   the whipsaws an EMA cross takes in those ranges, and the trend filter skips breakouts against
//!   the larger move.
//! - `placeholder_momentum_v1` / `placeholder_crypto_momo_v1`: the Python daemon's placeholders,
//!   which never enter (kept so a migrated config does not start trading by surprise).

use std::fmt::Write as _;

use crate::bots::indicators;
use crate::core::idle::{Cause, Detail, Idle};
use crate::core::market_data::Bar;
use crate::core::signal::Signal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Long,
    Short,
}

/// The direction the bars call for, if any.
pub fn evaluate(signal: &Signal, bars: &[Bar]) -> Option<Direction> {
    read(signal, bars).ok()
}

/// The direction the bars call for, or why none in words with the numbers (too few bars, or the
/// conditions that failed at the last bar), from one reading of the indicators: a bot without a
/// signal says why every minute.
pub fn read(signal: &Signal, bars: &[Bar]) -> Result<Direction, Idle> {
    match *signal {
        Signal::Placeholder => Err(not_yet(signal, bars).unwrap_or_else(|| {
            Idle::new(Cause::Placeholder, "its signal is a placeholder of the Python daemon: it never enters")
        })),
        Signal::EmaRocVolume { fast, slow, roc_bars, min_roc_pct, volume_bars, min_volume_ratio } => {
            let last = bars.last();
            let pair = indicators::ema_last_two(bars, fast);
            let f = pair.map(|(_, f)| f).or_else(|| indicators::ema(bars, fast));
            let s = indicators::ema(bars, slow);
            let r = indicators::roc(bars, roc_bars);
            let v = indicators::volume_avg_before_last(bars, volume_bars);
            if let (Some(last), Some((f_before, f)), Some(s), Some(r), Some(v)) = (last, pair, s, r, v) {
                let busy = last.volume >= min_volume_ratio * v;
                if busy && last.close > f && f > s && f > f_before && r >= min_roc_pct {
                    return Ok(Direction::Long);
                }
                if busy && last.close < f && f < s && f < f_before && r <= -min_roc_pct {
                    return Ok(Direction::Short);
                }
            }
            if let Some(short) = not_yet(signal, bars) {
                return Err(short);
            }
            let (Some(last), Some(f), Some(s), Some(r), Some(v)) = (last, f, s, r, v) else {
                return Err(Misses::idle(|failed| {
                    failed.push(format_args!("its indicators cannot be computed from these bars"))
                }));
            };
            let (close, volume) = (last.close, last.volume);
            Err(Misses::idle(move |failed| {
                if f > s {
                    if close <= f {
                        failed.push(format_args!("close {close:.2} not above EMA{fast} {f:.2}"));
                    }
                    if r < min_roc_pct {
                        failed.push(format_args!("ROC{roc_bars} {r:.2} % below {min_roc_pct:.2} %"));
                    }
                } else if f < s {
                    if close >= f {
                        failed.push(format_args!("close {close:.2} not below EMA{fast} {f:.2}"));
                    }
                    if r > -min_roc_pct {
                        failed.push(format_args!("ROC{roc_bars} {r:.2} % above -{min_roc_pct:.2} %"));
                    }
                } else {
                    failed.push(format_args!("EMA{fast} equals EMA{slow} ({f:.2}): no trend"));
                }
                let ratio = if v > 0.0 { volume / v } else { 0.0 };
                if volume < min_volume_ratio * v {
                    failed.push(format_args!(
                        "volume {ratio:.2}× its {volume_bars}-bar average, below {min_volume_ratio:.2}×"
                    ));
                }
                if failed.is_empty() {
                    failed.push(format_args!("EMA{fast} not yet turning the trend's way"));
                }
            }))
        }
        Signal::Breakout { lookback, trend_ema } => {
            let last = bars.last();
            let high = indicators::highest_high_before_last(bars, lookback);
            let trend = indicators::ema(bars, trend_ema);
            if let (Some(last), Some(high), Some(trend)) = (last, high, trend)
                && last.close > high
                && last.close > trend
            {
                return Ok(Direction::Long);
            }
            if let Some(short) = not_yet(signal, bars) {
                return Err(short);
            }
            let (Some(last), Some(high), Some(trend)) = (last, high, trend) else {
                return Err(Misses::idle(|failed| {
                    failed.push(format_args!("its indicators cannot be computed from these bars"))
                }));
            };
            let close = last.close;
            Err(Misses::idle(move |failed| {
                if close <= high {
                    failed.push(format_args!("close {close:.2} not above the {lookback}-bar high {high:.2}"));
                }
                if close <= trend {
                    failed.push(format_args!("close {close:.2} not above EMA{trend_ema} {trend:.2}"));
                }
            }))
        }
    }
}

/// Fewer bars than the signal needs, said with the count; `None` when there are enough.
fn not_yet(signal: &Signal, bars: &[Bar]) -> Option<Idle> {
    let (need, have) = (signal.bars_needed(), bars.len());
    (have < need).then(|| {
        Idle::new(
            Cause::NoData,
            Detail::later(move |out| {
                let _ = write!(out, "{have} of the {need} bars its signal needs");
            }),
        )
    })
}

/// The conditions that failed, written one after another into one text ("no signal: A, B") when
/// the text is read (`Detail::later`): a bot without a signal says so every minute, and the loop
/// reads the text only when the causes change or a few minutes have passed.
struct Misses<'a> {
    text: &'a mut String,
    any: bool,
}

impl Misses<'_> {
    /// A `NoSignal` idle whose detail `find` writes, condition by condition.
    fn idle(find: impl Fn(&mut Misses) + Send + Sync + 'static) -> Idle {
        Idle::new(
            Cause::NoSignal,
            Detail::later(move |text| {
                text.push_str("no signal");
                find(&mut Misses { text, any: false });
            }),
        )
    }

    fn push(&mut self, condition: std::fmt::Arguments) {
        self.text.push_str(if self.any { ", " } else { ": " });
        self.any = true;
        let _ = self.text.write_fmt(condition);
    }

    fn is_empty(&self) -> bool {
        !self.any
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::core::signal::{BREAKOUT, EMA_ROC_VOLUME, PLACEHOLDER_CRYPTO, PLACEHOLDER_MOMENTUM, parse};

    fn bar(close: f64, volume: f64) -> Bar {
        Bar { t: Timestamp::UNIX_EPOCH, open: close, high: close + 0.05, low: close - 0.05, close, volume }
    }

    fn params(yaml: &str) -> serde_yaml::Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// Why `read` gave no direction.
    fn why(signal: &Signal, bars: &[Bar]) -> Idle {
        read(signal, bars).unwrap_err()
    }

    fn stock() -> Signal {
        parse(EMA_ROC_VOLUME, &params("{}")).unwrap()
    }

    /// 40 quiet bars at 100, then a steady climb; the last bar on heavy volume.
    fn rising(last_volume: f64) -> Vec<Bar> {
        let mut b: Vec<Bar> = (0..40).map(|_| bar(100.0, 1000.0)).collect();
        for i in 1..=15 {
            b.push(bar(100.0 + i as f64 * 0.1, 1000.0));
        }
        b.last_mut().unwrap().volume = last_volume;
        b
    }

    #[test]
    fn momentum_fires_on_trend_momentum_and_volume_together() {
        let s = stock();
        assert_eq!(evaluate(&s, &rising(2000.0)), Some(Direction::Long));
        // The same climb on ordinary volume: no.
        assert_eq!(evaluate(&s, &rising(1000.0)), None);
        // Flat: no.
        let flat: Vec<Bar> = (0..60).map(|_| bar(100.0, 5000.0)).collect();
        assert_eq!(evaluate(&s, &flat), None);
        // Too few bars: no.
        assert_eq!(evaluate(&s, &rising(2000.0)[40..]), None);
        // The mirror image: short.
        let falling: Vec<Bar> = rising(2000.0).iter().map(|b| bar(200.0 - b.close, b.volume)).collect();
        assert_eq!(evaluate(&s, &falling), Some(Direction::Short));
    }

    #[test]
    fn breakout_needs_a_new_high_above_the_trend() {
        let s = parse(BREAKOUT, &params("{lookback: 10, trend_ema: 20}")).unwrap();
        let mut b: Vec<Bar> = (0..30).map(|i| bar(100.0 + (i % 3) as f64 * 0.1, 1.0)).collect();
        assert_eq!(evaluate(&s, &b), None, "inside its range");
        b.push(bar(101.0, 1.0));
        assert_eq!(evaluate(&s, &b), Some(Direction::Long));
        // A new high below a falling trend: no.
        let mut down: Vec<Bar> = (0..30).map(|i| bar(130.0 - i as f64, 1.0)).collect();
        down.push(bar(101.5, 1.0));
        assert_eq!(evaluate(&s, &down), None);
    }

    #[test]
    fn no_signal_says_which_conditions_failed_with_their_numbers() {
        let s = stock();
        let quiet = why(&s, &rising(1000.0));
        assert_eq!(quiet.causes, vec![Cause::NoSignal]);
        assert!(quiet.detail.to_string().contains("volume 1.00× its"), "{}", quiet.detail);
        assert!(!quiet.detail.to_string().contains("ROC"), "the trend and momentum held: {}", quiet.detail);
        let short = why(&s, &rising(2000.0)[40..]);
        assert_eq!(short.causes, vec![Cause::NoData]);
        assert_eq!(short.detail.to_string(), format!("15 of the {} bars its signal needs", s.bars_needed()));
        let flat: Vec<Bar> = (0..60).map(|_| bar(100.0, 5000.0)).collect();
        assert!(why(&s, &flat).detail.to_string().contains("no trend"), "{}", why(&s, &flat).detail);
        // Each failed condition, joined by commas after one "no signal: ".
        assert_eq!(
            why(&s, &flat).detail.to_string(),
            "no signal: EMA9 equals EMA21 (100.00): no trend, volume 1.00× its 20-bar average, below 1.20×"
        );
        let b = parse(BREAKOUT, &params("{lookback: 10, trend_ema: 20}")).unwrap();
        let range: Vec<Bar> = (0..30).map(|i| bar(100.0 + (i % 3) as f64 * 0.1, 1.0)).collect();
        assert!(
            why(&b, &range).detail.to_string().starts_with("no signal: close 100.20 not above the 10-bar high 100.25")
        );
        let p = parse(PLACEHOLDER_MOMENTUM, &params("{}")).unwrap();
        assert_eq!(why(&p, &rising(9999.0)).causes, vec![Cause::Placeholder]);
    }

    #[test]
    fn placeholders_never_enter() {
        let p = parse(PLACEHOLDER_MOMENTUM, &params("{}")).unwrap();
        assert_eq!(evaluate(&p, &rising(9999.0)), None);
        assert_eq!(parse(PLACEHOLDER_CRYPTO, &params("{}")).unwrap().bars_needed(), 0);
    }

    #[test]
    fn parameters_are_checked() {
        assert!(parse(EMA_ROC_VOLUME, &params("{fast: 30, slow: 20}")).unwrap_err().0 == "fast");
        assert_eq!(parse(EMA_ROC_VOLUME, &params("{fastt: 5}")).unwrap_err().0, "fastt");
        assert_eq!(parse(EMA_ROC_VOLUME, &params("{min_roc_pct: lots}")).unwrap_err().0, "min_roc_pct");
        assert_eq!(parse(BREAKOUT, &params("{lookback: 0}")).unwrap_err().0, "lookback");
        assert!(parse("moon_v2", &params("{}")).is_err());
        let s = parse(EMA_ROC_VOLUME, &params("{fast: 5, slow: 13, roc_bars: 5}")).unwrap();
        assert_eq!(s.bars_needed(), 21);
    }
}
