//! Indicators over a slice of bars: EMA, SMA, rate of change, ATR and average volume.
//!
//! Owns: pure arithmetic, one pass over the slice each, no allocation. Every function answers
//! `None` when the slice is too short or the inputs are not usable numbers, so a signal never
//! fires on half an indicator.
//!
//! Never: looks at the clock or the broker.

use crate::core::market_data::Bar;

/// Simple moving average of the last `period` values of `value`.
pub fn sma(bars: &[Bar], period: usize, value: impl Fn(&Bar) -> f64) -> Option<f64> {
    if period == 0 || bars.len() < period {
        return None;
    }
    let sum: f64 = bars[bars.len() - period..].iter().map(value).sum();
    finite(sum / period as f64)
}

/// Exponential moving average of the closes, seeded with the SMA of the first `period` closes,
/// smoothing 2 / (period + 1). Needs at least `period` bars.
pub fn ema(bars: &[Bar], period: usize) -> Option<f64> {
    if period == 0 || bars.len() < period {
        return None;
    }
    let alpha = 2.0 / (period as f64 + 1.0);
    let seed: f64 = bars[..period].iter().map(|b| b.close).sum::<f64>() / period as f64;
    let value = bars[period..].iter().fold(seed, |acc, b| acc + alpha * (b.close - acc));
    finite(value)
}

/// `ema` of all the bars but the last, and of all of them, from one pass: the same two numbers,
/// to the bit, as two calls (the second call's fold is the first's plus one step). Needs at least
/// `period + 1` bars.
pub fn ema_last_two(bars: &[Bar], period: usize) -> Option<(f64, f64)> {
    if period == 0 || bars.len() < period + 1 {
        return None;
    }
    let alpha = 2.0 / (period as f64 + 1.0);
    let seed: f64 = bars[..period].iter().map(|b| b.close).sum::<f64>() / period as f64;
    let before = bars[period..bars.len() - 1].iter().fold(seed, |acc, b| acc + alpha * (b.close - acc));
    let last = before + alpha * (bars[bars.len() - 1].close - before);
    Some((finite(before)?, finite(last)?))
}

/// Rate of change in percent over `n` bars: last close against the close `n` bars earlier.
pub fn roc(bars: &[Bar], n: usize) -> Option<f64> {
    if n == 0 || bars.len() <= n {
        return None;
    }
    let last = bars[bars.len() - 1].close;
    let then = bars[bars.len() - 1 - n].close;
    if then <= 0.0 {
        return None;
    }
    finite((last / then - 1.0) * 100.0)
}

/// Average true range, Wilder's smoothing, over `period` bars (needs `period + 1`).
pub fn atr(bars: &[Bar], period: usize) -> Option<f64> {
    if period == 0 || bars.len() < period + 1 {
        return None;
    }
    let tr = |i: usize| {
        let (b, prev) = (&bars[i], bars[i - 1].close);
        (b.high - b.low).max((b.high - prev).abs()).max((b.low - prev).abs())
    };
    let first: f64 = (1..=period).map(tr).sum::<f64>() / period as f64;
    let value = (period + 1..bars.len()).fold(first, |acc, i| (acc * (period as f64 - 1.0) + tr(i)) / period as f64);
    finite(value)
}

/// Average volume of the `n` bars before the last one (the last is what is compared to it).
pub fn volume_avg_before_last(bars: &[Bar], n: usize) -> Option<f64> {
    if n == 0 || bars.len() < n + 1 {
        return None;
    }
    sma(&bars[..bars.len() - 1], n, |b| b.volume)
}

/// Highest high of the `n` bars before the last one.
pub fn highest_high_before_last(bars: &[Bar], n: usize) -> Option<f64> {
    if n == 0 || bars.len() < n + 1 {
        return None;
    }
    finite(bars[bars.len() - 1 - n..bars.len() - 1].iter().map(|b| b.high).fold(f64::MIN, f64::max))
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;

    #[test]
    fn the_last_two_emas_from_one_pass_are_the_two_emas_to_the_bit() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let closes: Vec<f64> = (0..200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                100.0 + (x % 10_000) as f64 / 997.0
            })
            .collect();
        let b = bars(&closes);
        for period in [1, 3, 9, 21] {
            for n in [period, period + 1, period + 2, 60, 200] {
                let two = ema_last_two(&b[..n], period);
                let apart = ema(&b[..n - 1], period).zip(ema(&b[..n], period));
                assert_eq!(
                    two.map(|(a, z)| (a.to_bits(), z.to_bits())),
                    apart.map(|(a, z)| (a.to_bits(), z.to_bits())),
                    "period {period}, {n} bars"
                );
            }
        }
    }

    fn bars(closes: &[f64]) -> Vec<Bar> {
        closes
            .iter()
            .map(|&c| Bar { t: Timestamp::UNIX_EPOCH, open: c, high: c + 1.0, low: c - 1.0, close: c, volume: 100.0 })
            .collect()
    }

    #[test]
    fn sma_and_ema_by_hand() {
        let b = bars(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(sma(&b, 3, |b| b.close), Some(4.0));
        // Seed SMA(1,2,3) = 2; alpha = 0.5; then 2 + 0.5(4 - 2) = 3; 3 + 0.5(5 - 3) = 4.
        assert_eq!(ema(&b, 3), Some(4.0));
        assert_eq!(ema(&b, 6), None);
        assert_eq!(ema(&b, 0), None);
    }

    #[test]
    fn rate_of_change_by_hand() {
        let b = bars(&[100.0, 101.0, 102.0, 110.0]);
        assert!((roc(&b, 3).unwrap() - 10.0).abs() < 1e-12);
        assert!((roc(&b, 1).unwrap() - (110.0 / 102.0 - 1.0) * 100.0).abs() < 1e-12);
        assert_eq!(roc(&b, 4), None);
    }

    #[test]
    fn atr_by_hand() {
        // Ranges of 2 around a flat close; a gap of 10 on the last bar.
        let mut b = bars(&[10.0, 10.0, 10.0, 20.0]);
        b[3].low = 19.0;
        b[3].high = 21.0;
        // True ranges: 2, 2, max(2, |21-10|, |19-10|) = 11. Period 2: first (2+2)/2 = 2, then (2+11)/2.
        assert_eq!(atr(&b, 2), Some(6.5));
        assert_eq!(atr(&b, 3), Some(5.0));
        assert_eq!(atr(&b, 4), None);
    }

    #[test]
    fn volume_and_breakout_look_before_the_last_bar() {
        let mut b = bars(&[1.0, 2.0, 3.0, 4.0]);
        b[3].volume = 400.0;
        assert_eq!(volume_avg_before_last(&b, 3), Some(100.0));
        assert_eq!(highest_high_before_last(&b, 3), Some(4.0));
        assert_eq!(highest_high_before_last(&b, 4), None);
    }

    #[test]
    fn unusable_numbers_give_none() {
        let b = bars(&[1.0, f64::NAN, 3.0]);
        assert_eq!(sma(&b, 3, |b| b.close), None);
        assert_eq!(roc(&bars(&[0.0, 1.0]), 1), None);
    }
}
