//! Black-Scholes prices and deltas of European options: the simulated broker's option chain and
//! the backtest's option prices.
//!
//! Owns: pure math on `f64`. Never: pretends to be a model of American exercise or dividends;
//! this is a plausible market for a simulator, not a pricing library.

/// The standard normal cumulative distribution, from `erfc` (W. J. Cody's rational
/// approximation via Numerical Recipes' `erfcc`, relative error below 1.2e-7).
pub fn norm_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Price and delta of a call (`is_call`) or put with spot `s`, strike `k`, `years` to expiry,
/// rate `r` and volatility `vol`. At or past expiry (or with no volatility) it is worth its
/// intrinsic value.
pub fn price_and_delta(is_call: bool, s: f64, k: f64, years: f64, r: f64, vol: f64) -> (f64, f64) {
    if years <= 0.0 || vol <= 0.0 || s <= 0.0 || k <= 0.0 {
        let intrinsic = if is_call { (s - k).max(0.0) } else { (k - s).max(0.0) };
        let delta = match (is_call, s > k) {
            (true, true) => 1.0,
            (false, false) if s < k => -1.0,
            _ => 0.0,
        };
        return (intrinsic, delta);
    }
    let sqrt_t = years.sqrt();
    let d1 = ((s / k).ln() + (r + 0.5 * vol * vol) * years) / (vol * sqrt_t);
    let d2 = d1 - vol * sqrt_t;
    let discount = (-r * years).exp();
    if is_call {
        (s * norm_cdf(d1) - k * discount * norm_cdf(d2), norm_cdf(d1))
    } else {
        (k * discount * norm_cdf(-d2) - s * norm_cdf(-d1), norm_cdf(d1) - 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_known_values() {
        assert!((norm_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((norm_cdf(1.96) - 0.975_002_1).abs() < 1e-6);
        assert!((norm_cdf(-1.0) - 0.158_655_25).abs() < 1e-6);
    }

    #[test]
    fn textbook_call_and_parity() {
        // Hull's example: S=42, K=40, r=10 %, vol=20 %, T=0.5: call 4.76, put 0.81.
        let (c, dc) = price_and_delta(true, 42.0, 40.0, 0.5, 0.1, 0.2);
        let (p, dp) = price_and_delta(false, 42.0, 40.0, 0.5, 0.1, 0.2);
        assert!((c - 4.76).abs() < 0.01, "{c}");
        assert!((p - 0.81).abs() < 0.01, "{p}");
        assert!((c - p - (42.0 - 40.0 * (-0.05f64).exp())).abs() < 1e-6, "put-call parity");
        assert!(dc > 0.0 && dc < 1.0 && dp < 0.0 && dp > -1.0);
        assert!((dc - dp - 1.0).abs() < 1e-9);
    }

    #[test]
    fn never_below_intrinsic() {
        for k in [80.0, 95.0, 100.0, 105.0, 120.0] {
            for t in [0.0, 1.0 / 365.0, 0.1, 1.0] {
                let (c, _) = price_and_delta(true, 100.0, k, t, 0.0, 0.3);
                let (p, _) = price_and_delta(false, 100.0, k, t, 0.0, 0.3);
                assert!(c >= (100.0 - k).max(0.0) - 1e-9 && p >= (k - 100.0).max(0.0) - 1e-9, "k={k} t={t}");
            }
        }
    }
}
