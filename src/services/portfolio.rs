//! PortfolioBot, step 3 of the loop: each bot's risk budget for the trading date.
//!
//! Owns: the allocation rule, a pure function of plain numbers. The day's risk is the day-start
//! equity × `risk.global_max_daily_loss_pct`; `portfoliobot.buckets` split it between momentum,
//! options and crypto; the momentum bucket is shared equally by the enabled momentum bots; each
//! bot's share is clamped to `portfoliobot.guardrails` (percent of the day's risk). A bot whose
//! realised P&L over the look-back is negative gets `LOSER_SCALE` of its share, never below the
//! guardrail minimum. A bot's budget is:
//! - `daily_loss_limit` = its share: once its realised loss today reaches it, it stops entering;
//! - `max_open_risk` = `OPEN_RISK_MULTIPLE` × its share: the most its open positions may risk at
//!   their stops;
//! - its `max_trades_per_day` and `max_concurrent_positions` from bots.yaml.
//!
//! Never: invents a budget. Without a day-start equity there is no budget, and with
//! `safety.allow_budget_fallback: false` no budget means no entries.

use crate::core::config::{BotKind, Config};
use crate::core::risk::Budget;

/// Open risk a bot may carry, as a multiple of its daily loss share.
pub const OPEN_RISK_MULTIPLE: f64 = 2.0;
/// The share kept by a bot whose recent realised P&L is negative.
pub const LOSER_SCALE: f64 = 0.5;
/// Trading dates of realised P&L that decide whether a bot is scaled down.
pub const LOOKBACK_DAYS: i64 = 5;

/// What the allocation needs to know of one enabled bot.
#[derive(Debug, Clone, PartialEq)]
pub struct BotSlot {
    pub bot: String,
    pub kind: BotKind,
    pub max_trades: u32,
    pub max_positions: u32,
    /// Realised P&L over the last `LOOKBACK_DAYS` trading dates (today excluded).
    pub recent_pnl: f64,
}

/// The enabled bots of a configuration, in the fixed order the execution service runs them.
pub fn slots(cfg: &Config, recent_pnl: impl Fn(&str) -> f64) -> Vec<BotSlot> {
    cfg.enabled_bots()
        .iter()
        .map(|b| {
            let (max_trades, max_positions) = b.limits();
            BotSlot {
                bot: b.id().to_string(),
                kind: b.kind(),
                max_trades,
                max_positions,
                recent_pnl: recent_pnl(b.id()),
            }
        })
        .collect()
}

/// The budgets of `slots` for a day that started at `day_start_equity`. Empty when the equity is
/// not a positive number (no reference, no budget).
pub fn allocate(cfg: &Config, day_start_equity: f64, slots: &[BotSlot]) -> Vec<Budget> {
    if !day_start_equity.is_finite() || day_start_equity <= 0.0 {
        return Vec::new();
    }
    let p = &cfg.bots.portfoliobot;
    let daily_risk = day_start_equity * cfg.settings.risk.global_max_daily_loss_pct / 100.0;
    let bucket_pct = |kind: BotKind| match kind {
        BotKind::Momentum => p.buckets.momentum_bucket_pct_of_daily_risk,
        BotKind::Options => p.buckets.options_bucket_pct_of_daily_risk,
        BotKind::Crypto => p.buckets.crypto_bucket_pct_of_daily_risk,
    };
    let min = daily_risk * p.guardrails.per_bot_min_pct_of_daily_risk / 100.0;
    let max = daily_risk * p.guardrails.per_bot_max_pct_of_daily_risk / 100.0;
    slots
        .iter()
        .map(|s| {
            let sharing = slots.iter().filter(|o| o.kind == s.kind).count().max(1) as f64;
            let mut share = (daily_risk * bucket_pct(s.kind) / 100.0 / sharing).clamp(min, max);
            if s.recent_pnl < 0.0 {
                share = (share * LOSER_SCALE).max(min);
            }
            let share = (share * 100.0).round() / 100.0;
            Budget {
                bot: s.bot.clone(),
                daily_loss_limit: share,
                max_open_risk: share * OPEN_RISK_MULTIPLE,
                max_trades: s.max_trades,
                max_positions: s.max_positions,
            }
        })
        .collect()
}

/// Whether a bot that realised `realized_pnl` today has lost its daily share.
pub fn loss_limit_reached(budget: &Budget, realized_pnl: f64) -> bool {
    realized_pnl <= -budget.daily_loss_limit
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn cfg() -> Config {
        Config::load(Path::new("config")).unwrap()
    }

    fn slot(bot: &str, kind: BotKind, recent_pnl: f64) -> BotSlot {
        BotSlot { bot: bot.into(), kind, max_trades: 3, max_positions: 1, recent_pnl }
    }

    fn limit(budgets: &[Budget], bot: &str) -> f64 {
        budgets.iter().find(|b| b.bot == bot).unwrap().daily_loss_limit
    }

    /// $100,000 at 1 %: $1,000 of daily risk. Buckets 25/50/25, guardrails 5–25 % ($50–$250).
    #[test]
    fn buckets_and_guardrails_by_hand() {
        let c = cfg();
        let slots = [
            slot("mom_a", BotKind::Momentum, 0.0),
            slot("mom_b", BotKind::Momentum, 0.0),
            slot("opt", BotKind::Options, 0.0),
            slot("crypto", BotKind::Crypto, 0.0),
        ];
        let b = allocate(&c, 100_000.0, &slots);
        // Momentum: $250 shared by two = $125 each.
        assert_eq!(limit(&b, "mom_a"), 125.0);
        assert_eq!(limit(&b, "mom_b"), 125.0);
        // Options: $500, clamped to the $250 maximum.
        assert_eq!(limit(&b, "opt"), 250.0);
        assert_eq!(limit(&b, "crypto"), 250.0);
        assert_eq!(b[0].max_open_risk, 250.0);
    }

    #[test]
    fn many_momentum_bots_hit_the_minimum() {
        let c = cfg();
        let slots: Vec<BotSlot> = (0..10).map(|i| slot(&format!("m{i}"), BotKind::Momentum, 0.0)).collect();
        // $250 / 10 = $25, raised to the $50 minimum.
        assert_eq!(limit(&allocate(&c, 100_000.0, &slots), "m3"), 50.0);
    }

    #[test]
    fn a_recent_loser_is_scaled_down_but_not_below_the_minimum() {
        let c = cfg();
        let b = allocate(&c, 100_000.0, &[slot("crypto", BotKind::Crypto, -10.0), slot("m", BotKind::Momentum, -1.0)]);
        assert_eq!(limit(&b, "crypto"), 125.0);
        // $250 × 0.5 = $125 for the lone momentum bot too.
        assert_eq!(limit(&b, "m"), 125.0);
        let few = allocate(
            &c,
            100_000.0,
            &(0..10).map(|i| slot(&format!("m{i}"), BotKind::Momentum, -5.0)).collect::<Vec<_>>(),
        );
        assert_eq!(limit(&few, "m0"), 50.0);
    }

    #[test]
    fn a_small_account_gets_small_budgets_not_none() {
        let c = cfg();
        let b = allocate(&c, 500.0, &[slot("crypto", BotKind::Crypto, 0.0)]);
        // $5 of daily risk; crypto's 25 % = $1.25, inside the guardrails.
        assert_eq!(limit(&b, "crypto"), 1.25);
        assert!(allocate(&c, 0.0, &[slot("crypto", BotKind::Crypto, 0.0)]).is_empty());
        assert!(allocate(&c, f64::NAN, &[slot("crypto", BotKind::Crypto, 0.0)]).is_empty());
    }

    #[test]
    fn the_loss_limit_is_reached_at_the_share() {
        let b =
            Budget { bot: "x".into(), daily_loss_limit: 125.0, max_open_risk: 250.0, max_trades: 3, max_positions: 1 };
        assert!(!loss_limit_reached(&b, -124.99));
        assert!(loss_limit_reached(&b, -125.0));
    }
}
