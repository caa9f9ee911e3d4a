//! `trading-hydra status`: what the state database says, for a person or a script.
//!
//! Owns: gathering the report from a read-only database and rendering it as text or JSON (the
//! same content in both). Never: writes, touches the network or needs credentials, so it works
//! over SSH while the daemon runs.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde_json::json;

use crate::core::clock;
use crate::core::halt::Halt;
use crate::core::state::{BudgetRow, DayStart, LoopRun, OwnedPosition, State, StateError};

/// An iteration older than this many intervals is flagged: the daemon may be stopped or stuck.
pub const STALE_AFTER_INTERVALS: u64 = 3;

#[derive(Debug, Clone)]
pub struct StatusReport {
    pub state_path: String,
    pub mode: Option<String>,
    pub halts: Vec<Halt>,
    pub trading_date: Date,
    pub day_start: Option<DayStart>,
    pub budgets: Vec<BudgetRow>,
    /// What the daemon's own orders opened, by bot.
    pub owned: Vec<OwnedPosition>,
    /// Our orders still in flight.
    pub open_orders: usize,
    pub last_loop: Option<LoopRun>,
    /// Seconds since the last iteration started.
    pub last_loop_age_seconds: Option<i64>,
    pub stale: bool,
}

pub fn gather(state: &State, now: Timestamp, loop_interval_seconds: u64) -> Result<StatusReport, StateError> {
    let trading_date = clock::trading_date(now);
    let last_loop = state.last_loop_run()?;
    let age = last_loop.as_ref().map(|r| now.duration_since(r.started_at).as_secs());
    let stale = match age {
        Some(a) => a > (STALE_AFTER_INTERVALS * loop_interval_seconds) as i64,
        None => true,
    };
    Ok(StatusReport {
        state_path: state.path().display().to_string(),
        mode: state.kv_get("mode")?,
        halts: state.active_halts()?,
        trading_date,
        day_start: state.day_start(trading_date)?,
        budgets: {
            // The trades of the day are the entries recorded so far, not the stored count.
            let mut budgets = state.budgets(trading_date)?;
            for b in &mut budgets {
                b.trades = state.entries_on(&b.bot, trading_date)?;
            }
            budgets
        },
        owned: state.owned_positions()?,
        open_orders: state.unfinished_orders()?.len(),
        last_loop,
        last_loop_age_seconds: age,
        stale,
    })
}

impl StatusReport {
    pub fn to_json(&self, tz: &TimeZone) -> serde_json::Value {
        let ts = |t: Timestamp| clock::display_ts(t, tz);
        json!({
            "state_db": self.state_path,
            "mode": self.mode,
            "trading_date": self.trading_date.to_string(),
            "halted": !self.halts.is_empty(),
            "halts": self.halts.iter().map(|h| json!({
                "reason": h.reason.as_str(),
                "detail": h.detail,
                "since": ts(h.since),
                "until": h.until.map(ts),
            })).collect::<Vec<_>>(),
            "day_start": self.day_start.as_ref().map(|d| json!({"equity": d.equity, "source": d.source})),
            "budgets": self.budgets.iter().map(|b| json!({
                "bot": b.bot,
                "daily_loss_limit": b.daily_loss_limit,
                "max_open_risk": b.max_open_risk,
                "max_trades": b.max_trades,
                "max_positions": b.max_positions,
                "realized_pnl": b.realized_pnl,
                "trades": b.trades,
            })).collect::<Vec<_>>(),
            "positions": self.owned.iter().map(|p| json!({
                "bot": p.bot,
                "symbol": p.symbol,
                "qty": p.qty.to_string(),
                "avg_entry_price": p.avg_entry_price.to_string(),
                "opened_at": ts(p.opened_at),
            })).collect::<Vec<_>>(),
            "open_orders": self.open_orders,
            "last_loop": self.last_loop.as_ref().map(|r| json!({
                "iteration": r.iteration,
                "started_at": ts(r.started_at),
                "age_seconds": self.last_loop_age_seconds,
                "duration_ms": r.duration_ms,
                "equity": r.equity,
                "day_start_equity": r.day_start_equity,
                "daily_pnl_pct": r.daily_pnl_pct,
                "halted": r.halted,
                "orders_submitted": r.orders_submitted,
                "error": r.error,
            })),
            "stale": self.stale,
        })
    }

    pub fn to_text(&self, tz: &TimeZone) -> String {
        let ts = |t: Timestamp| clock::display_ts(t, tz);
        let money = |v: Option<f64>| v.map_or("unknown".to_string(), |v| format!("${v:.2}"));
        let mut out = String::new();
        let mut line = |label: &str, value: String| out.push_str(&format!("{label:<16}{value}\n"));
        line("state", self.state_path.clone());
        line("mode", self.mode.clone().unwrap_or_else(|| "never run".into()));
        line("trading date", format!("{} (New York)", self.trading_date));
        if self.halts.is_empty() {
            line("halts", "none: entries allowed".into());
        }
        for h in &self.halts {
            let until = h.until.map_or("until resumed".to_string(), |u| format!("until {}", ts(u)));
            line("HALTED", format!("{} since {}, {until}: {}", h.reason, ts(h.since), h.detail));
        }
        match &self.day_start {
            Some(d) => line("day start", format!("{} ({})", money(Some(d.equity)), d.source)),
            None => line("day start", "not recorded yet today".into()),
        }
        match &self.last_loop {
            Some(r) => {
                let age = self.last_loop_age_seconds.map_or(String::new(), |a| format!(", {a} s ago"));
                let flag = if self.stale { "  ** STALE: is the daemon running? **" } else { "" };
                line("last iteration", format!("#{} at {}{age}{flag}", r.iteration, ts(r.started_at)));
                let pnl = r.daily_pnl_pct.map_or("unknown".to_string(), |p| format!("{p:+.2} %"));
                line("equity", format!("{} (day P&L {pnl})", money(r.equity)));
                if let Some(e) = &r.error {
                    line("last error", e.clone());
                }
            }
            None => line("last iteration", "none recorded".into()),
        }
        if self.owned.is_empty() {
            line("positions", "none owned by the daemon".into());
        }
        for p in &self.owned {
            line(
                "position",
                format!("{}: {} {} at {} since {}", p.bot, p.qty, p.symbol, p.avg_entry_price, ts(p.opened_at)),
            );
        }
        line("open orders", self.open_orders.to_string());
        if self.budgets.is_empty() {
            line("budgets", "none recorded today".into());
        }
        for b in &self.budgets {
            line(
                "budget",
                format!(
                    "{}: loss limit ${:.2}, realized ${:.2}, trades {}/{}, positions max {}",
                    b.bot, b.daily_loss_limit, b.realized_pnl, b.trades, b.max_trades, b.max_positions
                ),
            );
        }
        out
    }
}
