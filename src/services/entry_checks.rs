//! The risk checks an entry passes before the entry gate (`Orders::send_entry` asks it as the
//! entry goes): no entry of the bot in flight on the symbol, no position of another of the
//! daemon's bot ids in it, positions and trades against the bot's budget, orders per minute, the cooldown after an exit, a usable quote
//! and a plausible limit, the cash reserve, the asset class's buying power and the open-risk
//! budget; and the refusals that need neither the ledger nor market data (window, session).
//!
//! Owns: `Step` (what step 4 works from, here at the bottom of the step's modules so the checks
//! read it), `Refusal`, what each refusal says, and the cash-reserve rule.
//! Never: sends or records anything; a check that cannot be made refuses.

use std::collections::BTreeSet;
use std::fmt;

use jiff::{SignedDuration, Timestamp};

use crate::bots::{Bot, BotView, Entry};
use crate::core::clock;
use crate::core::clock::SessionState;
use crate::core::config::{BotKind, Config};
use crate::core::decimal::Dec;
use crate::core::idle::{Cause, Idle};
use crate::core::instrument::{AssetClass, OccSymbol};
use crate::core::order::{Amount, Intent};
use crate::core::risk::Budget;
use crate::core::state::{State, StateError};
use crate::services::broker::Account;

/// What step 4 works from: the configuration, the bots and their budgets, the session, whether
/// entries are allowed at all, the account, and the time.
#[derive(Clone, Copy)]
pub struct Step<'a> {
    pub cfg: &'a Config,
    pub bots: &'a [Box<dyn Bot>],
    pub budgets: &'a [Budget],
    pub session: SessionState,
    pub entries_allowed: bool,
    /// Why entries are not allowed, in words (`status`, `bot_idle`); empty while they are.
    pub why_stopped: &'a str,
    pub account: Option<&'a Account>,
    pub now: Timestamp,
}

/// A limit price further than this from the last quote is refused as implausible.
const MAX_LIMIT_DISTANCE: f64 = 0.05;

/// Why the risk checks refused an entry; the text is what `order_rejected` says.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Not quite a refusal: an entry for the symbol is in flight, and waits to see how it ends.
    InFlight,
    /// Another bot id of this daemon holds the symbol (a bot renamed or a symbol moved to another
    /// bot while held): Alpaca nets positions per symbol, and a second would open on top.
    HeldByAnother {
        bot: String,
        qty: Dec,
    },
    MaxPositions,
    MaxTrades,
    MaxOrdersPerMinute,
    /// The exit's time and the cooldown's end, as a person reads them (`clock::person_ts`).
    CoolingDown {
        since_exit: String,
        until: String,
    },
    NoQuote,
    UnusableQuote,
    LimitTooFar {
        limit: Dec,
        distance_pct: f64,
        mid: f64,
    },
    AccountUnknown,
    CashReserve {
        notional: f64,
        spendable: f64,
    },
    BuyingPowerUnknown,
    BuyingPower {
        notional: f64,
        power: Dec,
    },
    OpenRisk {
        risk: f64,
        budget: f64,
    },
    /// The broker blocks this kind of entry for the account: its `crypto_status` for a coin.
    BrokerBlocks(String),
    /// A check that could not be made (the state database failed) refuses.
    Unsure(String),
}

impl Refusal {
    /// The cause `status` and `bot_idle` give for this refusal.
    pub fn cause(&self) -> Cause {
        match self {
            Refusal::InFlight => Cause::InFlight,
            Refusal::HeldByAnother { .. } => Cause::Holding,
            Refusal::MaxPositions => Cause::MaxPositions,
            Refusal::MaxTrades => Cause::MaxTrades,
            Refusal::MaxOrdersPerMinute => Cause::MaxOrdersPerMinute,
            Refusal::CoolingDown { .. } => Cause::CoolingDown,
            Refusal::NoQuote | Refusal::UnusableQuote => Cause::NoQuote,
            Refusal::LimitTooFar { .. } => Cause::LimitTooFar,
            Refusal::CashReserve { .. } => Cause::CashReserve,
            Refusal::BuyingPower { .. } | Refusal::BuyingPowerUnknown => Cause::BuyingPower,
            Refusal::OpenRisk { .. } => Cause::OpenRisk,
            Refusal::AccountUnknown | Refusal::Unsure(_) => Cause::Unsure,
            Refusal::BrokerBlocks(_) => Cause::BrokerBlocks,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::InFlight => f.write_str("an entry for this symbol is already in flight"),
            Refusal::HeldByAnother { bot, qty } => {
                write!(f, "{bot} holds {qty} of it: one position per symbol (Alpaca nets them), so none on top")
            }
            Refusal::MaxPositions => f.write_str("max_concurrent_positions reached"),
            Refusal::MaxTrades => f.write_str("max_trades_per_day reached"),
            Refusal::MaxOrdersPerMinute => f.write_str("max_orders_per_minute reached"),
            Refusal::CoolingDown { since_exit, until } => {
                write!(f, "cooling down until {until} (cooldown_minutes after the exit at {since_exit})")
            }
            Refusal::NoQuote => f.write_str("no quote for the symbol"),
            Refusal::UnusableQuote => f.write_str("no usable quote"),
            Refusal::LimitTooFar { limit, distance_pct, mid } => {
                write!(f, "limit {limit} is {distance_pct:.1} % from the quote {mid:.2}")
            }
            Refusal::AccountUnknown => f.write_str("the account is unknown"),
            Refusal::CashReserve { notional, spendable } => {
                write!(f, "{notional:.2} would spend into the cash reserve ({spendable:.2} spendable)")
            }
            Refusal::BuyingPowerUnknown => f.write_str("the asset class's buying power is unknown"),
            Refusal::BuyingPower { notional, power } => write!(f, "{notional:.2} is beyond the buying power ({power})"),
            Refusal::OpenRisk { risk, budget } => write!(f, "risk {risk:.2} above the open-risk budget {budget:.2}"),
            Refusal::BrokerBlocks(why) => f.write_str(why),
            Refusal::Unsure(why) => f.write_str(why),
        }
    }
}

/// The checks every entry passes: positions, trades, price sanity, cash reserve, budget.
/// `Err` says which one refused it; `orders_last_minute` is `Orders::orders_last_minute`. A check that cannot be made refuses.
pub fn risk_check(
    state: &State,
    step: &Step,
    bot: &dyn Bot,
    budget: &Budget,
    view: &BotView,
    entry: &Entry,
    orders_last_minute: usize,
) -> Result<(), Refusal> {
    let Step { cfg, account, now, .. } = *step;
    // Entries still in flight count as positions: an order not yet filled must not be doubled
    // by the next iteration's signal.
    let in_flight: BTreeSet<String> = state
        .unfinished_orders()
        .map_err(|e| Refusal::Unsure(e.to_string()))?
        .iter()
        .filter(|o| o.bot == bot.id() && o.intent == Intent::Entry)
        .map(|o| o.symbol.clone())
        .collect();
    if in_flight.contains(&entry.symbol) {
        return Err(Refusal::InFlight);
    }
    // A position is a symbol, or for options an underlying: a spread's legs are one position.
    let root = |s: &str| OccSymbol::parse(s).map_or_else(|| s.to_string(), |o| o.root);
    // A position of another of our bot ids in the symbol.
    let owned = state.owned_positions().map_err(|e| Refusal::Unsure(e.to_string()))?;
    if let Some(p) = owned.iter().find(|p| p.bot != bot.id() && root(&p.symbol) == entry.symbol) {
        return Err(Refusal::HeldByAnother { bot: p.bot.clone(), qty: p.qty });
    }
    // What the broker blocks, the daemon does not try: its exits go on.
    if let Some(status) = account.and_then(|a| a.crypto_status.as_deref())
        && AssetClass::of(&entry.symbol) == AssetClass::Crypto
        && !status.eq_ignore_ascii_case("ACTIVE")
    {
        return Err(Refusal::BrokerBlocks(format!(
            "the broker's crypto_status for the account is {status}: no crypto entry until it is ACTIVE"
        )));
    }
    let mut holding: BTreeSet<String> = in_flight;
    holding.extend(view.owned.iter().map(|p| root(&p.symbol)));
    let holding = holding.len();
    if holding as u32 >= budget.max_positions {
        return Err(Refusal::MaxPositions);
    }
    let entries = state.entries_on(bot.id(), clock::trading_date(now)).map_err(|e| Refusal::Unsure(e.to_string()))?;
    if entries >= budget.max_trades {
        return Err(Refusal::MaxTrades);
    }
    if orders_last_minute >= cfg.settings.risk.max_orders_per_minute as usize {
        return Err(Refusal::MaxOrdersPerMinute);
    }
    if let Some(refusal) =
        cooling_down(state, bot, &entry.symbol, now, &cfg.timezone).map_err(|e| Refusal::Unsure(e.to_string()))?
    {
        return Err(refusal);
    }
    let Some(quote) = view.quotes.get(&entry.symbol) else {
        return Err(Refusal::NoQuote);
    };
    let mid = (quote.bid + quote.ask) / 2.0;
    if !(mid.is_finite() && mid > 0.0) {
        return Err(Refusal::UnusableQuote);
    }
    // A spread's limit is its net price, not the underlying's: no distance to compare.
    if let Some(limit) = entry.limit_price.filter(|_| entry.legs.is_empty()) {
        let distance = (limit.to_f64() - mid).abs() / mid;
        if distance > MAX_LIMIT_DISTANCE {
            return Err(Refusal::LimitTooFar { limit, distance_pct: distance * 100.0, mid });
        }
    }
    // What it ties up: a spread its maximum loss, anything else its price.
    let notional = match entry.amount {
        _ if !entry.legs.is_empty() => entry.risk_usd,
        Amount::Qty(q) => q.to_f64() * entry.limit_price.map_or(mid, Dec::to_f64),
        Amount::Notional(n) => n.to_f64(),
    };
    let Some(account) = account else { return Err(Refusal::AccountUnknown) };
    let spendable = cash_outside_reserve(cfg, account);
    if notional > spendable {
        return Err(Refusal::CashReserve { notional, spendable });
    }
    let Some(power) = class_buying_power(bot.kind(), account) else { return Err(Refusal::BuyingPowerUnknown) };
    if notional > power.to_f64() {
        return Err(Refusal::BuyingPower { notional, power });
    }
    // The entry's own loss at its stop. (Summing the open risk of held positions needs their
    // stops, which the bots' exit rules bring.)
    if !(entry.risk_usd.is_finite() && entry.risk_usd >= 0.0) || entry.risk_usd > budget.max_open_risk {
        return Err(Refusal::OpenRisk { risk: entry.risk_usd, budget: budget.max_open_risk });
    }
    Ok(())
}

/// Dollars a bot of `kind` may spend: cash outside the reserve, within its class's buying power.
pub fn spendable(cfg: &Config, kind: BotKind, account: Option<&Account>) -> f64 {
    let Some(a) = account else { return 0.0 };
    let cash = cash_outside_reserve(cfg, a);
    class_buying_power(kind, a).map_or(0.0, |p| cash.min(p.to_f64())).max(0.0)
}

/// The cash-reserve rule, the one place it is written: cash outside
/// `portfoliobot.cash_reserve_pct` may be spent.
fn cash_outside_reserve(cfg: &Config, a: &Account) -> f64 {
    a.cash.to_f64() * (1.0 - cfg.bots.portfoliobot.cash_reserve_pct / 100.0)
}

/// The buying power of a bot's asset class: crypto cannot use margin, options have their own.
fn class_buying_power(kind: BotKind, a: &Account) -> Option<Dec> {
    match kind {
        BotKind::Crypto => a.non_marginable_buying_power,
        BotKind::Options => a.options_buying_power,
        BotKind::Momentum => Some(a.buying_power),
    }
}

/// `Refusal::CoolingDown` while `bot`'s last exit of `symbol` is younger than its
/// `cooldown_minutes`, its times in `tz` for the person who reads them.
pub fn cooling_down(
    state: &State,
    bot: &dyn Bot,
    symbol: &str,
    now: Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Result<Option<Refusal>, StateError> {
    let cooldown = SignedDuration::from_mins(i64::from(bot.cooldown_minutes()));
    Ok(state.last_exit(bot.id(), symbol)?.filter(|exit| now.duration_since(*exit) < cooldown).map(|exit| {
        let until = exit.saturating_add(cooldown).unwrap_or(exit);
        Refusal::CoolingDown { since_exit: clock::person_ts(exit, tz), until: clock::person_ts(until, tz) }
    }))
}

/// The refusals of an entry that need neither the ledger nor market data, in `preflight`'s
/// order: entries stopped for the iteration, outside the bot's window, its market shut.
/// `preflight` starts with them; `refresh_options` fetches no chain for a bot they refuse.
pub fn entry_refused_by_time(step: &Step, bot: &dyn Bot, entries_allowed: bool) -> Option<Cause> {
    if !entries_allowed {
        return Some(Cause::EntriesStopped);
    }
    let session = bot.session();
    if !clock::in_window(step.now, &step.cfg.timezone, session.trade_start, session.trade_end) {
        return Some(Cause::OutsideWindow);
    }
    if bot.kind() != BotKind::Crypto && !step.session.is_open {
        return Some(Cause::MarketClosed);
    }
    None
}

/// `entry_refused_by_time`'s refusal in words, with the window, the next open or what stopped
/// entries.
pub fn describe_time_refusal(cause: Cause, step: &Step, bot: &dyn Bot) -> Idle {
    let tz = &step.cfg.timezone;
    let detail = match cause {
        Cause::EntriesStopped if step.why_stopped.is_empty() => "entries are stopped".to_string(),
        Cause::EntriesStopped => step.why_stopped.to_string(),
        Cause::OutsideWindow => {
            let s = bot.session();
            format!("outside its window {}–{} ({})", s.trade_start, s.trade_end, step.cfg.settings.system.timezone)
        }
        Cause::MarketClosed => {
            format!("the stock market is closed; it opens {}", clock::person_ts(step.session.next_open, tz))
        }
        _ => cause.as_str().to_string(),
    };
    Idle::new(cause, detail)
}
