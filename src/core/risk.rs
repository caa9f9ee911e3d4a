//! Risk arithmetic that every step shares: daily P&L against the day-start reference, and the
//! budget a bot trades within (PortfolioBot allocates it, the execution service checks it).
//!
//! Owns: pure functions of plain numbers. Never: I/O, state, or a default that lets a trade
//! through when an input is missing or not a number (`None` means "unknown", and callers fail
//! closed on unknown).

/// One bot's budget for a trading date.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub bot: String,
    pub daily_loss_limit: f64,
    pub max_open_risk: f64,
    pub max_trades: u32,
    pub max_positions: u32,
}

/// Daily P&L in percent: `(equity - day_start) / day_start * 100`. `None` when either input is
/// not a finite number or the reference is not positive.
pub fn daily_pnl_pct(equity: f64, day_start: f64) -> Option<f64> {
    if !equity.is_finite() || !day_start.is_finite() || day_start <= 0.0 {
        return None;
    }
    Some((equity - day_start) / day_start * 100.0)
}

/// Whether the daily loss reached the limit (`max_loss_pct`, a positive percentage). Reaching it
/// exactly counts: "at or below -limit".
pub fn daily_loss_breached(pnl_pct: f64, max_loss_pct: f64) -> bool {
    // A tiny tolerance so that -1.0 computed as -0.99999999999 from exact cents still trips.
    pnl_pct <= -max_loss_pct + 1e-9
}

/// Alpaca restricts an account to closing transactions while one position is worth more than
/// this many times its equity (its "Equity/Order Ratio Validation Check", until its trading
/// team has reviewed the account).
pub const CLOSING_ONLY_RATIO: f64 = 6.0;

/// The position over `CLOSING_ONLY_RATIO` times `equity`, the largest, as (symbol, its value in
/// percent of equity): then the broker takes closing orders only. `positions`: (symbol, market
/// value); `None` when none is over, or the equity is not a positive number.
pub fn closing_only(equity: f64, positions: &[(String, f64)]) -> Option<(String, f64)> {
    if !equity.is_finite() || equity <= 0.0 {
        return None;
    }
    positions
        .iter()
        .map(|(s, v)| (s, v.abs() / equity))
        .filter(|(_, r)| r.is_finite() && *r > CLOSING_ONLY_RATIO)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(s, r)| (s.clone(), r * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_over_six_times_the_equity_means_closing_only() {
        let p = |s: &str, v: f64| (s.to_string(), v);
        assert_eq!(closing_only(10_000.0, &[p("SPY", 60_000.0), p("QQQ", -1_000.0)]), None, "600 % exactly is allowed");
        assert_eq!(closing_only(10_000.0, &[p("SPY", 61_000.0), p("QQQ", -70_000.0)]), Some(("QQQ".into(), 700.0)));
        assert_eq!(closing_only(0.0, &[p("SPY", 1.0)]), None);
    }

    #[test]
    fn pnl_percent() {
        assert_eq!(daily_pnl_pct(99_000.0, 100_000.0), Some(-1.0));
        assert_eq!(daily_pnl_pct(101_500.0, 100_000.0), Some(1.5));
        assert_eq!(daily_pnl_pct(100.0, 0.0), None);
        assert_eq!(daily_pnl_pct(f64::NAN, 100.0), None);
        // A small account is a real account: $500 -> $494 is -1.2 %.
        let p = daily_pnl_pct(494.0, 500.0).unwrap();
        assert!((p + 1.2).abs() < 1e-12);
    }

    #[test]
    fn breach_is_at_or_below_the_limit() {
        assert!(daily_loss_breached(-1.0, 1.0));
        assert!(daily_loss_breached(daily_pnl_pct(99_000.00, 100_000.00).unwrap(), 1.0));
        assert!(daily_loss_breached(-1.2, 1.0));
        assert!(!daily_loss_breached(-0.99, 1.0));
        assert!(!daily_loss_breached(0.5, 1.0));
    }
}
