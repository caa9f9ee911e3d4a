//! ExitBot, step 2 of the loop: the kill switch.
//!
//! Owns: turning this iteration's readings into halts — the daily loss
//! (`risk.global_max_daily_loss_pct`, until the next New York trading date), the health window
//! (`api_failures`), the account's flags (`account_blocked`), stale market data (`data_stale`) and
//! anomalies (clock skew against the broker, an implausible equity jump) — each only when its
//! `exitbot.kill_conditions` switch is on — and, always, orders of ours the ledger does not know
//! (`ledger_behind`, `services::lost_orders`); lifting the halts whose clear policy allows it; and,
//! while a daily-loss halt holds, cancelling this daemon's open entries and (with
//! `risk.flatten_on_daily_loss`) closing this daemon's positions, one by one. A halt the ledger
//! cannot store is held in memory and counts all the same (the flatten included).
//!
//! Never: stops exits, lifts a halt the table in `core::halt` does not let it lift, or touches an
//! order or a position the daemon did not open (no "cancel all", no "close all").

use jiff::{SignedDuration, Timestamp};

use crate::core::clock;
use crate::core::config::Config;
use crate::core::halt::{self, Halt, HaltReason};
use crate::core::halt_store;
use crate::core::health::{self, FailureWindow};
use crate::core::risk;
use crate::core::state::State;
use crate::event;
use crate::services::broker::{Account, Broker, BrokerError};
use crate::services::lost_orders::Check;
use crate::services::notify;
use crate::services::order_lifecycle::{ExecError, Orders};

/// What the iteration has seen so far.
#[derive(Debug, Default)]
pub struct Readings<'a> {
    pub account: Option<&'a Account>,
    pub account_error: Option<&'a BrokerError>,
    pub day_start_equity: Option<f64>,
    /// The equity of the previous iteration, for the jump check.
    pub previous_equity: Option<f64>,
    /// Local clock minus the broker's, when the broker's clock was read this iteration.
    pub clock_skew_seconds: Option<f64>,
    /// Symbols whose quotes were stale in the last execution step.
    pub stale: &'a [String],
    /// The stock market is open (options are flattened only then).
    pub market_open: bool,
    /// Whether the broker holds orders of ours the ledger does not know (`services::lost_orders`).
    pub ledger: Check,
    /// The broker's positions at the last reconcile: (symbol, market value), for Alpaca's
    /// closing-only restriction (`risk::closing_only`).
    pub position_values: &'a [(String, f64)],
}

/// What ExitBot ends with.
#[derive(Debug)]
pub struct Outcome {
    /// The halts active afterwards: those stored and those held in memory.
    pub halts: Vec<Halt>,
    /// False when the stored halts could not be read: the daemon is unsure, so halted.
    pub halts_known: bool,
    /// The first failure of the step; the checks, the flatten and the other halts went on.
    pub error: Option<ExecError>,
}

/// Alpaca's closing-only restriction, in words, when a position is over six times the equity.
fn closing_only(r: &Readings, a: &Account) -> Option<String> {
    let (symbol, pct) = risk::closing_only(a.equity.to_f64(), r.position_values)?;
    Some(format!(
        "closing only: {symbol} is {pct:.0} % of the equity, and Alpaca restricts an account to closing transactions \
         while a position is over 600 % of it, until its trading team reviews the account (reduce the position)"
    ))
}

/// Runs the checks at `now`. A halt the ledger cannot store is held in `held` (and notified)
/// instead, and a daily-loss halt held there flattens like a stored one: a full disk stops
/// entries, never the flatten.
#[allow(clippy::too_many_arguments)]
pub fn run(
    state: &mut State,
    cfg: &Config,
    health: &mut FailureWindow,
    broker: &mut dyn Broker,
    exec: &mut Orders,
    held: &mut Vec<Halt>,
    r: &Readings,
    now: Timestamp,
) -> Outcome {
    let exitbot = &cfg.bots.exitbot;
    let kill = &exitbot.kill_conditions;
    let mut error: Option<ExecError> = None;
    let mut wanted: Vec<(HaltReason, String, Option<Timestamp>)> = Vec::new();
    let equity = r.account.map(|a| a.equity.to_f64());
    if exitbot.enabled {
        if kill.api_failure_halt && health.tripped(now) {
            let last = health.last_failure().unwrap_or(now);
            let cooloff = SignedDuration::from_mins(i64::from(exitbot.cooloff_minutes));
            let detail = format!("{} failed broker calls within {} s", health.count(now), health.window().as_secs());
            wanted.push((
                HaltReason::ApiFailures,
                detail,
                Some(health::api_halt_until(last, health.window(), cooloff)),
            ));
        }
        let limit = cfg.settings.risk.global_max_daily_loss_pct;
        if kill.max_daily_loss_halt
            && let Some(pnl) = equity.zip(r.day_start_equity).and_then(|(e, d)| risk::daily_pnl_pct(e, d))
            && risk::daily_loss_breached(pnl, limit)
        {
            let detail = format!("daily P&L {pnl:.2} % reached the -{limit} % limit");
            wanted.push((HaltReason::DailyLoss, detail, Some(clock::next_trading_date_start(now))));
        }
        let refusal = match (r.account, r.account_error) {
            (Some(a), _) => a.trading_refusal().or_else(|| closing_only(r, a)),
            (None, Some(e @ BrokerError::Unauthorized { .. })) => Some(e.to_string()),
            _ => None,
        };
        if let Some(why) = refusal {
            wanted.push((HaltReason::AccountBlocked, format!("the account may not trade: {why}"), None));
        }
        if kill.data_stale_halt && !r.stale.is_empty() {
            let detail = format!("stale market data for {}", r.stale.join(", "));
            wanted.push((HaltReason::DataStale, detail, None));
        }
        if kill.anomaly_halt {
            let max_skew = cfg.settings.health.max_clock_skew_seconds as f64;
            if let Some(skew) = r.clock_skew_seconds.filter(|s| s.abs() > max_skew) {
                let detail = format!(
                    "the local clock is {skew:.0} s off the broker's (allowed {max_skew:.0} s): check NTP; the market's \
                     time is the broker's meanwhile, and the halt lifts once the clocks agree"
                );
                wanted.push((HaltReason::ClockSkew, detail, None));
            }
            let max_jump = cfg.settings.health.max_equity_jump_pct;
            if let Some(jump) = equity.zip(r.previous_equity).and_then(|(e, p)| risk::daily_pnl_pct(e, p))
                && jump.abs() > max_jump
            {
                let detail = format!("equity moved {jump:.1} % in one iteration (allowed {max_jump} %)");
                wanted.push((HaltReason::Anomaly, detail, None));
            }
        }
    }
    // Not a kill condition but the ledger's own soundness: whatever `exitbot.enabled` says.
    if let Check::Behind(detail) = &r.ledger {
        wanted.push((HaltReason::LedgerBehind, detail.clone(), None));
    }
    for (reason, detail, until) in wanted {
        let (change, failed) = halt_store::set_or_hold(state, held, &Halt { reason, detail, since: now, until });
        notify::announce(change);
        if let Some(e) = failed {
            error.get_or_insert(e.into());
        }
    }

    let (stored, halts_known) = match state.active_halts() {
        Ok(h) => (h, true),
        Err(e) => {
            error.get_or_insert(e.into());
            (Vec::new(), false)
        }
    };
    let mut still: Vec<Halt> = Vec::new();
    for h in stored {
        let cause_cleared = match h.reason {
            HaltReason::ApiFailures => health.is_clean(now),
            HaltReason::AccountBlocked => {
                r.account.is_some_and(|a| a.trading_refusal().is_none() && closing_only(r, a).is_none())
            }
            HaltReason::DataStale => r.stale.is_empty(),
            HaltReason::LedgerBehind => r.ledger == Check::Clean,
            HaltReason::ClockSkew => {
                let allowed = cfg.settings.health.max_clock_skew_seconds as f64;
                r.clock_skew_seconds.is_some_and(|s| s.abs() <= allowed)
            }
            _ => false,
        };
        if !halt::clears_by_itself(&h, now, cause_cleared) {
            still.push(h);
            continue;
        }
        match halt_store::clear(state, h.reason, "auto", now) {
            Ok(change) => notify::announce(change),
            Err(e) => {
                error.get_or_insert(e.into());
                still.push(h);
            }
        }
    }
    // Held halts lift by the same table (a daily-loss halt at the next trading date); one whose
    // cause is read from the broker waits until it is stored.
    held.retain(|h| !halt::clears_by_itself(h, now, false));
    for h in held.iter() {
        if !still.iter().any(|s| s.reason == h.reason) {
            still.push(h.clone());
        }
    }

    if still.iter().any(|h| h.reason == HaltReason::DailyLoss) {
        // The flatten never waits on a cancel: the positions are closed now, and a cancel that
        // failed is tried again next iteration (the halt holds, so this runs again).
        let cancelled = exec.cancel_entries(state, broker);
        if cfg.settings.risk.flatten_on_daily_loss {
            match exec.flatten(state, broker, "daily_loss_flatten", r.market_open, now) {
                Ok(n) if n > 0 => event!(Warn, "flatten", reason = "daily_loss", orders = n),
                Ok(_) => {}
                Err(e) => {
                    error.get_or_insert(e.into());
                }
            }
        }
        if let Err(e) = cancelled {
            error.get_or_insert(e);
        }
    }
    Outcome { halts: still, halts_known, error }
}
