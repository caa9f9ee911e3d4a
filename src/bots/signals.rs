//! Entry signals, by `signal.mode`, with their `signal.params`.
//!
//! Owns: the modes, their parameters (every one named, with a default, range-checked at load
//! time: an unknown parameter is a configuration error) and the decision, a pure function of
//! bars.
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

use crate::bots::indicators;
use crate::services::broker::Bar;

pub const EMA_ROC_VOLUME: &str = "ema_roc_volume_v1";
pub const BREAKOUT: &str = "breakout_v1";
pub const PLACEHOLDER_MOMENTUM: &str = "placeholder_momentum_v1";
pub const PLACEHOLDER_CRYPTO: &str = "placeholder_crypto_momo_v1";

/// Modes a momentum bot's `signal.mode` may name.
pub const MOMENTUM_MODES: &[&str] = &[EMA_ROC_VOLUME, PLACEHOLDER_MOMENTUM];
/// Modes the crypto bot's `signal.mode` may name.
pub const CRYPTO_MODES: &[&str] = &[BREAKOUT, PLACEHOLDER_CRYPTO];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Long,
    Short,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// Never enters.
    Placeholder,
    EmaRocVolume {
        fast: usize,
        slow: usize,
        roc_bars: usize,
        min_roc_pct: f64,
        volume_bars: usize,
        min_volume_ratio: f64,
    },
    Breakout {
        lookback: usize,
        trend_ema: usize,
    },
}

impl Signal {
    /// Bars the signal needs to decide.
    pub fn bars_needed(&self) -> usize {
        match self {
            Signal::Placeholder => 0,
            Signal::EmaRocVolume { slow, roc_bars, volume_bars, .. } => {
                (*slow + 1).max(roc_bars + 1).max(volume_bars + 1)
            }
            Signal::Breakout { lookback, trend_ema } => (lookback + 1).max(*trend_ema),
        }
    }

    /// The direction the bars call for, if any.
    pub fn evaluate(&self, bars: &[Bar]) -> Option<Direction> {
        match *self {
            Signal::Placeholder => None,
            Signal::EmaRocVolume { fast, slow, roc_bars, min_roc_pct, volume_bars, min_volume_ratio } => {
                let last = bars.last()?;
                let f = indicators::ema(bars, fast)?;
                let f_before = indicators::ema(&bars[..bars.len() - 1], fast)?;
                let s = indicators::ema(bars, slow)?;
                let r = indicators::roc(bars, roc_bars)?;
                let v = indicators::volume_avg_before_last(bars, volume_bars)?;
                let busy = last.volume >= min_volume_ratio * v;
                if busy && last.close > f && f > s && f > f_before && r >= min_roc_pct {
                    Some(Direction::Long)
                } else if busy && last.close < f && f < s && f < f_before && r <= -min_roc_pct {
                    Some(Direction::Short)
                } else {
                    None
                }
            }
            Signal::Breakout { lookback, trend_ema } => {
                let last = bars.last()?;
                let high = indicators::highest_high_before_last(bars, lookback)?;
                let trend = indicators::ema(bars, trend_ema)?;
                (last.close > high && last.close > trend).then_some(Direction::Long)
            }
        }
    }
}

/// Reads `mode` and `params`; `Err((param, rule))` names what is wrong.
pub fn parse(mode: &str, params: &serde_yaml::Mapping) -> Result<Signal, (String, String)> {
    let mut p = Params { params, used: Vec::new() };
    let signal = match mode {
        PLACEHOLDER_MOMENTUM | PLACEHOLDER_CRYPTO => Signal::Placeholder,
        EMA_ROC_VOLUME => {
            let fast = p.count("fast", 9, 2, 500)?;
            let slow = p.count("slow", 21, 3, 1000)?;
            if fast >= slow {
                return Err(("fast".into(), format!("must be below slow ({slow}), got {fast}")));
            }
            Signal::EmaRocVolume {
                fast,
                slow,
                roc_bars: p.count("roc_bars", 10, 1, 1000)?,
                min_roc_pct: p.number("min_roc_pct", 0.15, 0.0, 100.0)?,
                volume_bars: p.count("volume_bars", 20, 1, 1000)?,
                min_volume_ratio: p.number("min_volume_ratio", 1.2, 0.0, 100.0)?,
            }
        }
        BREAKOUT => Signal::Breakout {
            lookback: p.count("lookback", 30, 2, 2000)?,
            trend_ema: p.count("trend_ema", 50, 2, 2000)?,
        },
        other => return Err((String::new(), format!("unknown signal mode {other:?}"))),
    };
    p.no_others()?;
    Ok(signal)
}

struct Params<'a> {
    params: &'a serde_yaml::Mapping,
    used: Vec<&'static str>,
}

impl Params<'_> {
    fn raw(&mut self, name: &'static str) -> Option<&serde_yaml::Value> {
        self.used.push(name);
        self.params.get(name)
    }

    fn number(&mut self, name: &'static str, default: f64, lo: f64, hi: f64) -> Result<f64, (String, String)> {
        let Some(v) = self.raw(name) else { return Ok(default) };
        let x = v.as_f64().ok_or_else(|| (name.to_string(), format!("must be a number, got {v:?}")))?;
        if !(lo..=hi).contains(&x) {
            return Err((name.into(), format!("must be from {lo} to {hi}, got {x}")));
        }
        Ok(x)
    }

    fn count(&mut self, name: &'static str, default: usize, lo: u64, hi: u64) -> Result<usize, (String, String)> {
        let Some(v) = self.raw(name) else { return Ok(default) };
        let x = v.as_u64().ok_or_else(|| (name.to_string(), format!("must be a whole number, got {v:?}")))?;
        if !(lo..=hi).contains(&x) {
            return Err((name.into(), format!("must be from {lo} to {hi}, got {x}")));
        }
        Ok(x as usize)
    }

    fn no_others(&self) -> Result<(), (String, String)> {
        for key in self.params.keys() {
            let name = key.as_str().unwrap_or("?");
            if !self.used.contains(&name) {
                return Err((name.into(), format!("unknown parameter; known: {}", self.used.join(", "))));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;

    fn bar(close: f64, volume: f64) -> Bar {
        Bar { t: Timestamp::UNIX_EPOCH, open: close, high: close + 0.05, low: close - 0.05, close, volume }
    }

    fn params(yaml: &str) -> serde_yaml::Mapping {
        serde_yaml::from_str(yaml).unwrap()
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
        assert_eq!(s.evaluate(&rising(2000.0)), Some(Direction::Long));
        // The same climb on ordinary volume: no.
        assert_eq!(s.evaluate(&rising(1000.0)), None);
        // Flat: no.
        let flat: Vec<Bar> = (0..60).map(|_| bar(100.0, 5000.0)).collect();
        assert_eq!(s.evaluate(&flat), None);
        // Too few bars: no.
        assert_eq!(s.evaluate(&rising(2000.0)[40..]), None);
        // The mirror image: short.
        let falling: Vec<Bar> = rising(2000.0).iter().map(|b| bar(200.0 - b.close, b.volume)).collect();
        assert_eq!(s.evaluate(&falling), Some(Direction::Short));
    }

    #[test]
    fn breakout_needs_a_new_high_above_the_trend() {
        let s = parse(BREAKOUT, &params("{lookback: 10, trend_ema: 20}")).unwrap();
        let mut b: Vec<Bar> = (0..30).map(|i| bar(100.0 + (i % 3) as f64 * 0.1, 1.0)).collect();
        assert_eq!(s.evaluate(&b), None, "inside its range");
        b.push(bar(101.0, 1.0));
        assert_eq!(s.evaluate(&b), Some(Direction::Long));
        // A new high below a falling trend: no.
        let mut down: Vec<Bar> = (0..30).map(|i| bar(130.0 - i as f64, 1.0)).collect();
        down.push(bar(101.5, 1.0));
        assert_eq!(s.evaluate(&down), None);
    }

    #[test]
    fn placeholders_never_enter() {
        let p = parse(PLACEHOLDER_MOMENTUM, &params("{}")).unwrap();
        assert_eq!(p.evaluate(&rising(9999.0)), None);
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
