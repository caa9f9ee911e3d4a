//! Entry signals as configured: the modes `signal.mode` may name and their parameters, parsed
//! and range-checked when the configuration loads (an unknown mode or parameter is an error
//! naming it). What a signal decides from bars is `bots::signals`'.
//!
//! Never: looks at market data.

pub const EMA_ROC_VOLUME: &str = "ema_roc_volume_v1";
pub const BREAKOUT: &str = "breakout_v1";
pub const PLACEHOLDER_MOMENTUM: &str = "placeholder_momentum_v1";
pub const PLACEHOLDER_CRYPTO: &str = "placeholder_crypto_momo_v1";

/// Modes a momentum bot's `signal.mode` may name.
pub const MOMENTUM_MODES: &[&str] = &[EMA_ROC_VOLUME, PLACEHOLDER_MOMENTUM];
/// Modes the crypto bot's `signal.mode` may name.
pub const CRYPTO_MODES: &[&str] = &[BREAKOUT, PLACEHOLDER_CRYPTO];

/// The Python daemon's placeholder modes load, and never enter, so a migrated config does not
/// start trading by surprise.
pub fn is_placeholder_mode(mode: &str) -> bool {
    mode == PLACEHOLDER_MOMENTUM || mode == PLACEHOLDER_CRYPTO
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
