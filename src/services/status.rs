//! `trading-hydra status`: what the state database says, for a person or a script.
//!
//! Owns: gathering the report from a read-only database, in the ledger's own clock
//! (`ledger_account::now`: a simulated account's simulated time), and rendering it as text or
//! JSON (the same content in both). Never: writes, touches the network or needs credentials, so it works
//! over SSH while the daemon runs.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde_json::json;

use crate::core::clock;
use crate::core::decimal::Dec;
use crate::core::halt::Halt;
use crate::core::instrument::OccSymbol;
use crate::core::ledger_account::{self, LedgerAccount};
use crate::core::state::{
    BotActivity, BrokerPositionRow, BudgetRow, DayStart, LoopRun, OwnedPosition, State, StateError,
};

/// An iteration older than this many intervals is flagged: the daemon may be stopped or stuck.
pub const STALE_AFTER_INTERVALS: u64 = 3;

#[derive(Debug, Clone)]
pub struct StatusReport {
    pub state_path: String,
    pub mode: Option<String>,
    /// Whose ledger this is (`None`: no run has claimed it yet).
    pub account: Option<LedgerAccount>,
    /// A simulated account's clock: the simulated time of its newest iteration (the date and the
    /// halts are read by it). `None` for a broker's account: the wall clock.
    pub simulated_time: Option<Timestamp>,
    pub halts: Vec<Halt>,
    pub trading_date: Date,
    pub day_start: Option<DayStart>,
    pub budgets: Vec<BudgetRow>,
    /// What the daemon's own orders opened, by bot, each with its unrealised P&L at the broker's
    /// last reported price (`None` when the broker has not reported one yet).
    pub owned: Vec<(OwnedPosition, Option<f64>)>,
    /// Owned positions (bot, symbol) that no enabled bot of the configuration manages any more
    /// (`Config::manages`); filled in by `mark_orphans`.
    pub orphans: Vec<(String, String)>,
    /// Each owned position's resting protective stop, by (bot, symbol): its type, stop price
    /// and when it was recorded. A position without one has only the daemon's watch.
    pub protection: Vec<Protected>,
    /// What the broker holds beyond what the daemon owns: the user's own, never touched.
    pub unmanaged: Vec<BrokerPositionRow>,
    /// What the broker holds beyond what the daemon owns in a symbol (or a spread's leg) where
    /// an order of the daemon's is still in flight: likely that order's fill, reported by the
    /// broker before the ledger could book it (a spread's parent `filled` before its legs), so
    /// neither called the user's own nor the daemon's yet.
    pub settling: Vec<BrokerPositionRow>,
    /// When the broker's positions were last read (at reconciliation), if ever.
    pub positions_seen_at: Option<Timestamp>,
    /// Our orders still in flight.
    pub open_orders: usize,
    pub last_loop: Option<LoopRun>,
    /// Why each bot is not entering, as the loop last noted it (`reason` `None`: it just entered).
    pub bots: Vec<BotActivity>,
    /// Seconds since the last iteration started.
    pub last_loop_age_seconds: Option<i64>,
    pub stale: bool,
}

/// A protective stop resting at the broker for one of our positions.
#[derive(Debug, Clone, PartialEq)]
pub struct Protected {
    pub bot: String,
    pub symbol: String,
    pub order_type: String,
    pub stop_price: Option<String>,
    pub since: Timestamp,
}

/// The report at the wall clock's `wall`. Dates and halts are read by the ledger's own clock
/// (`ledger_account::now`: a simulated account's simulated time); the daemon's liveness by the
/// wall clock.
pub fn gather(state: &State, wall: Timestamp, loop_interval_seconds: u64) -> Result<StatusReport, StateError> {
    let at = ledger_account::now(state, wall)?;
    let trading_date = at.trading_date();
    let held = state.broker_positions()?;
    let owned = state.owned_positions()?;
    let unfinished = state.unfinished_orders()?;
    let mut in_flight: Vec<String> = Vec::new();
    for o in unfinished.iter() {
        // A multi-leg order moves its legs, never its underlying (its `symbol`).
        let legs = state.order_legs(&o.client_order_id)?;
        if legs.is_empty() {
            in_flight.push(o.symbol.clone());
        }
        in_flight.extend(legs.into_iter().map(|l| l.symbol));
    }
    let (settling, unmanaged): (Vec<_>, Vec<_>) =
        unmanaged(&held, &owned).into_iter().partition(|u| in_flight.contains(&u.symbol));
    let last_loop = state.last_loop_run()?;
    let age = last_loop.as_ref().map(|r| wall.duration_since(r.started_at).as_secs());
    let stale = match age {
        Some(a) => a > (STALE_AFTER_INTERVALS * loop_interval_seconds) as i64,
        None => true,
    };
    Ok(StatusReport {
        state_path: state.path().display().to_string(),
        mode: state.kv_get(ledger_account::MODE_KEY)?,
        account: ledger_account::recorded(state)?,
        simulated_time: at.simulated.then_some(at.now),
        halts: state.active_halts()?,
        trading_date,
        day_start: state.day_start(trading_date)?,
        budgets: {
            // The trades of the day are the entries recorded so far, not the stored count.
            let mut budgets = state.budgets(trading_date)?.to_vec();
            for b in &mut budgets {
                b.trades = state.entries_on(&b.bot, trading_date)?;
            }
            budgets
        },
        owned: owned.iter().map(|p| (p.clone(), unrealized_pnl(p, &held))).collect(),
        orphans: Vec::new(),
        protection: unfinished
            .iter()
            .filter(|o| crate::services::order_lifecycle::is_protective(o))
            .map(|o| Protected {
                bot: o.bot.clone(),
                symbol: o.symbol.clone(),
                order_type: o.order_type.as_str().to_string(),
                stop_price: o.stop_price.clone(),
                since: o.created_at,
            })
            .collect(),
        unmanaged,
        settling,
        positions_seen_at: state.broker_positions_seen_at()?,
        open_orders: unfinished.len(),
        last_loop,
        bots: state.bot_activity()?,
        last_loop_age_seconds: age,
        stale,
    })
}

/// (broker's last price - our average) x our quantity x the contract multiplier (100 for an
/// option). Ours, not the broker's figure: the broker's covers the whole position, which may
/// include the user's own shares bought at another price.
/// Exact, then rounded half away from zero to the cent.
fn unrealized_pnl(p: &OwnedPosition, held: &[BrokerPositionRow]) -> Option<f64> {
    let price = held.iter().find(|h| h.symbol == p.symbol)?.current_price?;
    let pnl = price
        .checked_sub(p.avg_entry_price)?
        .checked_mul(p.qty)?
        .checked_mul_int(crate::core::instrument::multiplier(&p.symbol))?;
    Some(pnl.round_to(2).to_f64())
}

/// The part of each broker position that no bot owns.
fn unmanaged(held: &[BrokerPositionRow], owned: &[OwnedPosition]) -> Vec<BrokerPositionRow> {
    let mut out = Vec::new();
    for h in held {
        let ours = owned.iter().filter(|p| p.symbol == h.symbol).try_fold(Dec::ZERO, |sum, p| sum.checked_add(p.qty));
        // Real quantities never overflow the sum; if they did, show the whole position.
        let rest = ours.and_then(|o| h.qty.checked_sub(o)).unwrap_or(h.qty);
        if !rest.is_zero() {
            out.push(BrokerPositionRow { qty: rest, ..h.clone() });
        }
    }
    out
}

/// What a bot may still lose today before it stops entering: the rule of
/// `portfolio::loss_limit_reached` (realised gains give room back), never below zero.
fn loss_left(b: &BudgetRow) -> f64 {
    (b.daily_loss_limit + b.realized_pnl).max(0.0)
}

/// Signed dollars to the cent: `+$12.34`, `-$249.50` (also the console's heartbeat).
pub fn signed_money(v: f64) -> String {
    if v < 0.0 { format!("-${:.2}", -v) } else { format!("+${v:.2}") }
}

impl StatusReport {
    /// Notes which owned positions the configuration `cfg` no longer manages.
    /// Also leaves out the activity of bots that have left it and hold nothing (the last words
    /// of a bot that is gone would only mislead).
    pub fn mark_orphans(&mut self, cfg: &crate::core::config::Config) {
        let enabled: Vec<String> = cfg.enabled_bots().iter().map(|b| b.id().to_string()).collect();
        let owned = &self.owned;
        self.bots.retain(|a| enabled.contains(&a.bot) || owned.iter().any(|(p, _)| p.bot == a.bot));
        self.orphans = self
            .owned
            .iter()
            .filter(|(p, _)| !cfg.manages(&p.bot, &p.symbol))
            .map(|(p, _)| (p.bot.clone(), p.symbol.clone()))
            .collect();
    }

    fn protection_of(&self, p: &OwnedPosition) -> Option<&Protected> {
        self.protection.iter().find(|g| g.bot == p.bot && g.symbol == p.symbol)
    }

    fn is_orphan(&self, p: &OwnedPosition) -> bool {
        self.orphans.iter().any(|(b, s)| *b == p.bot && *s == p.symbol)
    }

    pub fn to_json(&self, tz: &TimeZone) -> serde_json::Value {
        let ts = |t: Timestamp| clock::display_ts(t, tz);
        json!({
            "state_db": self.state_path,
            "mode": self.mode,
            "account": self.account.as_ref().map(LedgerAccount::to_json),
            "clock": if self.simulated_time.is_some() { "simulated" } else { "wall" },
            "simulated_time": self.simulated_time.map(ts),
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
                "loss_left": loss_left(b),
                "trades": b.trades,
                "trades_left": b.max_trades.saturating_sub(b.trades),
            })).collect::<Vec<_>>(),
            "positions": self.owned.iter().map(|(p, pnl)| json!({
                "bot": p.bot,
                "symbol": p.symbol,
                "qty": p.qty.to_string(),
                "avg_entry_price": p.avg_entry_price.to_string(),
                "opened_at": ts(p.opened_at),
                "unrealized_pnl": pnl,
                "orphan": self.is_orphan(p),
                "protection": self.protection_of(p).map(|g| json!({
                    "type": g.order_type, "stop_price": g.stop_price, "since": ts(g.since),
                })),
            })).collect::<Vec<_>>(),
            "unmanaged_positions": self.unmanaged.iter().map(|u| json!({
                "symbol": u.symbol,
                "qty": u.qty.to_string(),
                "avg_entry_price": u.avg_entry_price.to_string(),
                "current_price": u.current_price.map(|c| c.to_string()),
            })).collect::<Vec<_>>(),
            "settling_positions": self.settling.iter().map(|u| json!({
                "symbol": u.symbol,
                "qty": u.qty.to_string(),
                "avg_entry_price": u.avg_entry_price.to_string(),
                "current_price": u.current_price.map(|c| c.to_string()),
            })).collect::<Vec<_>>(),
            "bots": self.bots.iter().map(|a| json!({
                "bot": a.bot,
                "entering": a.reason.is_none(),
                "causes": a.causes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                "reason": a.reason,
                "since": ts(a.since),
                "updated_at": ts(a.updated_at),
            })).collect::<Vec<_>>(),
            "positions_seen_at": self.positions_seen_at.map(ts),
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
        match &self.account {
            Some(a) => line("account", a.to_string()),
            None => line("account", "none yet (no run has claimed this ledger)".into()),
        }
        if let Some(t) = self.simulated_time {
            line("simulated time", format!("{} (its newest iteration; the wall clock is not its clock)", ts(t)));
        }
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
        for a in &self.bots {
            let text = match &a.reason {
                None => format!("{}: entered at {}", a.bot, ts(a.since)),
                Some(r) => {
                    let causes: Vec<&str> = a.causes.iter().map(|c| c.as_str()).collect();
                    format!("{}: not entering since {} ({}): {r}", a.bot, ts(a.since), causes.join(", "))
                }
            };
            line("bot", text);
        }
        if self.owned.is_empty() {
            line("positions", "none owned by the daemon".into());
        }
        for (p, pnl) in &self.owned {
            let pnl = pnl.map_or("unrealised P&L unknown".to_string(), |v| format!("unrealised {}", signed_money(v)));
            let orphan = if self.is_orphan(p) {
                "; ORPHAN: its bot or symbol has left the configuration; the daemon closes it by the exit rules it was opened with"
            } else {
                ""
            };
            let guard = match self.protection_of(p) {
                Some(g) => format!(
                    "; resting {} at {} since {}",
                    g.order_type,
                    g.stop_price.as_deref().unwrap_or("?"),
                    ts(g.since)
                ),
                None if OccSymbol::parse(&p.symbol).is_some() => {
                    "; no stop at the broker (a spread cannot rest one): the daemon's watch only".into()
                }
                None => "; no stop at the broker: the daemon's watch only".into(),
            };
            line(
                "position",
                format!(
                    "{}: {} {} at {} since {}, {pnl}{guard}{orphan}",
                    p.bot,
                    p.qty,
                    p.symbol,
                    p.avg_entry_price,
                    ts(p.opened_at)
                ),
            );
        }
        for u in &self.unmanaged {
            line(
                "unmanaged",
                format!("{} {} at {} (not the daemon's: never touched)", u.qty, u.symbol, u.avg_entry_price),
            );
        }
        for u in &self.settling {
            line(
                "settling",
                format!(
                    "{} {} at {} (an order of the daemon's is in flight here: booked when the broker reports its fill)",
                    u.qty, u.symbol, u.avg_entry_price
                ),
            );
        }
        match self.positions_seen_at {
            Some(t) => line("broker seen", ts(t)),
            None => line("broker seen", "never: prices and unmanaged positions unknown".into()),
        }
        line("open orders", self.open_orders.to_string());
        if self.budgets.is_empty() {
            line("budgets", "none recorded today".into());
        }
        for b in &self.budgets {
            line(
                "budget",
                format!(
                    "{}: loss limit ${:.2}, realized ${:.2}, ${:.2} left; trades {}/{}; positions max {}",
                    b.bot,
                    b.daily_loss_limit,
                    b.realized_pnl,
                    loss_left(b),
                    b.trades,
                    b.max_trades,
                    b.max_positions
                ),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::NewOrder;

    fn d(t: &str) -> Dec {
        t.parse().unwrap()
    }

    fn fill(s: &mut State, coid: &str, bot: &str, symbol: &str, qty: &str, price: &str, now: Timestamp) {
        let id = s
            .record_order(&NewOrder {
                ref_price: None,
                bot: bot.into(),
                symbol: symbol.into(),
                side: crate::core::order::Side::Buy,
                qty: Some(qty.into()),
                notional: None,
                order_type: crate::core::order::OrderType::Market,
                limit_price: None,
                stop_price: None,
                intent: crate::core::order::Intent::Entry,
                rule: None,
                created_at: now,
                trading_date: clock::trading_date(now),
                legs: Vec::new(),
            })
            .unwrap();
        s.apply_order_report(
            &id,
            &crate::core::order::OrderStatus::Filled,
            Some(coid),
            d(qty),
            Some(d(price)),
            crate::core::state::FillTime::booked(now),
        )
        .unwrap();
    }

    fn held(symbol: &str, qty: &str, avg: &str, price: Option<&str>) -> BrokerPositionRow {
        BrokerPositionRow { symbol: symbol.into(), qty: d(qty), avg_entry_price: d(avg), current_price: price.map(d) }
    }

    #[test]
    fn loss_left_follows_the_budget_rule_and_never_goes_negative() {
        let row = |realized: f64| BudgetRow {
            trading_date: jiff::civil::date(2026, 11, 25),
            bot: "b".into(),
            daily_loss_limit: 250.0,
            max_open_risk: 0.0,
            max_trades: 5,
            max_positions: 1,
            realized_pnl: realized,
            trades: 0,
        };
        assert_eq!(loss_left(&row(0.0)), 250.0);
        assert_eq!(loss_left(&row(-100.0)), 150.0);
        assert_eq!(loss_left(&row(40.0)), 290.0);
        assert_eq!(loss_left(&row(-300.0)), 0.0);
    }

    #[test]
    fn positions_no_configured_bot_manages_are_named_orphans() {
        let scratch = crate::test_dir::TestDir::new("status-orphans");
        let dir = scratch.path().to_path_buf();
        let mut s = State::open(&dir.join("state.db")).unwrap();
        let now: Timestamp = "2026-11-25T15:00:00Z".parse().unwrap();
        fill(&mut s, "e1", "mom_AAPL", "AAPL", "10", "100", now);
        fill(&mut s, "e2", "mom_GONE", "NFLX", "2", "90", now);
        fill(&mut s, "e3", "crypto_core", "DOGE/USD", "100", "0.1", now);
        let cfg = crate::core::config::Config::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config"))
            .unwrap();
        let mut r = gather(&s, now, 5).unwrap();
        r.mark_orphans(&cfg);
        let json = r.to_json(&TimeZone::UTC);
        let orphan = |sym: &str| {
            json["positions"].as_array().unwrap().iter().find(|p| p["symbol"] == sym).unwrap()["orphan"].clone()
        };
        assert_eq!((orphan("AAPL"), orphan("NFLX"), orphan("DOGE/USD")), (false.into(), true.into(), true.into()));
        let text = r.to_text(&TimeZone::UTC);
        assert_eq!(text.matches("ORPHAN").count(), 2, "{text}");
    }

    #[test]
    fn unrealised_pnl_is_ours_and_the_rest_is_unmanaged() {
        let scratch = crate::test_dir::TestDir::new("status");
        let dir = scratch.path().to_path_buf();
        let mut s = State::open(&dir.join("state.db")).unwrap();
        let now: Timestamp = "2026-11-25T15:00:00Z".parse().unwrap();
        fill(&mut s, "e1", "mom_AAPL", "AAPL", "10", "100", now);
        fill(&mut s, "e2", "opt_SPY", "SPY261218P00600000", "2", "1.50", now);
        fill(&mut s, "e3", "mom_TSLA", "TSLA", "3", "200", now);
        // Before the broker was ever read: no prices, nothing known to be unmanaged.
        let r = gather(&s, now, 5).unwrap();
        assert!(r.owned.iter().all(|(_, pnl)| pnl.is_none()));
        assert!(r.unmanaged.is_empty() && r.positions_seen_at.is_none());
        assert!(r.to_text(&TimeZone::UTC).contains("unrealised P&L unknown"));

        // The user holds 5 more AAPL bought elsewhere at 90, and 7 MSFT of their own.
        s.replace_broker_positions(
            &[
                held("AAPL", "15", "96.666666667", Some("103.25")),
                held("MSFT", "7", "400", Some("410")),
                held("SPY261218P00600000", "2", "1.50", Some("1.10")),
                held("TSLA", "3", "200", None),
            ],
            now,
        )
        .unwrap();
        let r = gather(&s, now, 5).unwrap();
        let pnl = |sym: &str| r.owned.iter().find(|(p, _)| p.symbol == sym).unwrap().1;
        // (103.25 - 100) x 10: our shares at our price, not the broker's blended figure.
        assert_eq!(pnl("AAPL"), Some(32.5));
        // (1.10 - 1.50) x 2 contracts x 100.
        assert_eq!(pnl("SPY261218P00600000"), Some(-80.0));
        assert_eq!(pnl("TSLA"), None);
        let unmanaged: Vec<(String, Dec)> = r.unmanaged.iter().map(|u| (u.symbol.clone(), u.qty)).collect();
        assert_eq!(unmanaged, vec![("AAPL".to_string(), d("5")), ("MSFT".to_string(), d("7"))]);
        assert_eq!(r.positions_seen_at, Some(now));

        let json = r.to_json(&TimeZone::UTC);
        assert_eq!(json["unmanaged_positions"][1]["symbol"], "MSFT");
        assert_eq!(json["unmanaged_positions"][1]["qty"], "7");
        let aapl = json["positions"].as_array().unwrap().iter().find(|p| p["symbol"] == "AAPL").unwrap();
        assert_eq!(aapl["unrealized_pnl"], 32.5);
        let text = r.to_text(&TimeZone::UTC);
        assert!(text.contains("unrealised +$32.50"), "{text}");
        assert!(text.contains("unrealised -$80.00"), "{text}");
        assert!(text.contains("unmanaged       7 MSFT"), "{text}");

        // The next picture replaces the last one whole: MSFT sold by the user is gone.
        let later = now + jiff::SignedDuration::from_secs(300);
        s.replace_broker_positions(&[held("AAPL", "10", "100", Some("99"))], later).unwrap();
        let r = gather(&s, later, 5).unwrap();
        assert!(r.unmanaged.is_empty());
        assert_eq!(r.positions_seen_at, Some(later));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
