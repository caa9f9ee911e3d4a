//! The execution step, step 4 of the loop, as a short script: bring the market data up to date,
//! have a stock whose quote is a quarter away from its entry reconciled first (a split the broker
//! applied overnight looks exactly like it), keep the best price of each position whose bot has a
//! trailing stop, let the order lifecycle close what is due and keep the protective stops, then
//! every bot in order — its exits (always), then its entries, each one
//! past the entry gate and the risk checks at the moment it would be sent.
//!
//! Owns: the order of step 4, the keepers of orphaned positions, and the price each order of a
//! bot is decided at (`reference_price`: the quote's mid as the bot saw it, recorded with the
//! order so its fills' slippage can be measured; never sent); what it keeps between
//! iterations lives in the modules it drives: `order_lifecycle` (every order, and the entry
//! gate), `market_feed` (quotes, bars, chains), `idle_notes` (why a bot is not entering),
//! `entry_checks` (the risk checks).
//!
//! Never: sends an order itself (`Orders::send_entry`, `Orders::send_exit` do), offers an entry
//! that `entry_checks::risk_check` refuses, or lets a failure of the market data or of the ledger
//! hold the exits back.

use std::collections::{BTreeMap, BTreeSet};

use jiff::SignedDuration;

use crate::bots::keeper::Keeper;
use crate::bots::{Bot, BotView, Entries, Exit};
use crate::core::config::BotKind;
use crate::core::decimal::Dec;
use crate::core::idle::{Cause, Idle};
use crate::core::instrument::{AssetClass, OccSymbol};
use crate::core::order::{Amount, Intent};
use crate::core::risk::Budget;
use crate::core::state::{BotDay, OwnedPosition, State, StateError};
use crate::services::broker::Broker;
use crate::services::entry_checks::{
    cooling_down, describe_time_refusal, entry_refused_by_time, risk_check, spendable,
};
use crate::services::idle_notes::IdleNotes;
use crate::services::market_feed::{MarketData, MarketFeed};
use crate::services::order_lifecycle::{EntryStop, OrderSpec, Orders, count};
use crate::services::portfolio;
use crate::{core::clock, event};

pub use crate::services::entry_checks::Step;
pub use crate::services::order_lifecycle::{ExecError, StepReport};

/// What the execution step keeps between iterations.
#[derive(Debug, Default)]
pub struct Execution {
    /// Every order of ours in flight, and the entry gate.
    pub orders: Orders,
    feed: MarketFeed,
    notes: IdleNotes,
    /// Positions (bot, symbol, average price) whose price gap was already checked against the
    /// broker (`gap_worth_a_look`): once each.
    gaps_checked: BTreeSet<(String, String, Dec)>,
}

/// A stock's quote this far from its position's entry (a quarter) is looked at against the
/// broker's position before any exit reads it as a loss or a gain: a split applied overnight
/// looks exactly like it.
const GAP_WORTH_A_LOOK: f64 = 0.25;

impl Execution {
    pub fn new() -> Execution {
        Execution::default()
    }

    /// Step 4: every bot, in order: its exits (always), then — if the preflight passes — its
    /// entries through the entry gate and the risk checks.
    pub fn run_bots(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        step: &Step,
    ) -> Result<StepReport, ExecError> {
        let mut report = StepReport::default();
        // The configured bots, then a keeper for each bot id with orphaned positions.
        let owned_now = state.owned_positions()?;
        let keepers = keepers(state, step, &owned_now)?;
        let bots: Vec<&dyn Bot> =
            step.bots.iter().map(|b| b.as_ref()).chain(keepers.iter().map(|k| k as &dyn Bot)).collect();
        let bots = bots.as_slice();
        if bots.is_empty() {
            return Ok(report);
        }
        // Market data. A failure here does not stop the exits: they run on the time rules.
        // An options bot that cannot enter this iteration needs no chain it holds nothing in.
        let may_enter = |bot: &dyn Bot| entry_refused_by_time(step, bot, step.entries_allowed).is_none();
        let staleness = step.cfg.settings.health.max_price_staleness_seconds;
        report.data_error = self.feed.refresh(broker, bots, &owned_now, &may_enter, staleness, step.now);
        // Lent to the bots' views while `self` keeps sending; given back below.
        let data = self.feed.lend();
        let result = self.decide_and_send(state, broker, step, bots, &data, report);
        self.feed.give_back(data);
        self.orders.close_gate();
        result
    }

    /// Step 4 proper, once the market data is in.
    fn decide_and_send(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        step: &Step,
        bots: &[&dyn Bot],
        data: &MarketData,
        mut report: StepReport,
    ) -> Result<StepReport, ExecError> {
        let Step { cfg, session, now, .. } = *step;
        let quotes = &data.quotes;
        let staleness = SignedDuration::from_secs(cfg.settings.health.max_price_staleness_seconds as i64);
        // Stale data halts for the configured bots' symbols (an orphan's stale quote only holds
        // its price rules back).
        for bot in step.bots {
            let market_open = bot.kind() == BotKind::Crypto || session.is_open;
            for s in bot.symbols() {
                let fresh = quotes.get(s).is_some_and(|q| now.duration_since(q.t) <= staleness);
                if market_open && !fresh && report.data_error.is_none() {
                    report.stale.push(s.clone());
                }
            }
        }
        let mut owned = state.owned_positions()?;
        // A stock far from its entry may have split at the broker: reconciled first (a split
        // re-bases the position), once per position. A failure holds no exit back.
        let gapped: Vec<(String, String, Dec)> = owned
            .iter()
            .filter(|p| AssetClass::of(&p.symbol) == AssetClass::UsEquity)
            .filter(|p| {
                quotes.get(&p.symbol).is_some_and(|q| gap_worth_a_look(p.avg_entry_price, (q.bid + q.ask) / 2.0))
            })
            .map(|p| (p.bot.clone(), p.symbol.clone(), p.avg_entry_price))
            .filter(|k| !self.gaps_checked.contains(k))
            .collect();
        if !gapped.is_empty() {
            match self.orders.reconcile(state, broker, now) {
                // Checked: not again for these positions at these prices (a failed check is
                // tried again next iteration).
                Ok(()) => {
                    self.gaps_checked.extend(gapped);
                    owned = state.owned_positions()?;
                }
                Err(e) => {
                    report
                        .data_error
                        .get_or_insert(format!("a price gap could not be checked against the broker: {e}"));
                }
            }
        }
        // The best price since entry, for trailing stops: kept only for a bot that has one, the
        // only reader (`exits::triggered`, `protection_for`) — a write a minute per position
        // otherwise, on the Pi's SD card, and 4.3 % of the benchmark's backtest (docs/performance.md,
        // 2026-12-07, next session). A position whose bot is gone from the configuration keeps it.
        // (A ledger that takes no writes keeps the old best: the stops still run.)
        // Only a better price is written, and the positions are read again only after one was.
        let mut moved = false;
        for p in &owned {
            if bots.iter().any(|b| b.id() == p.bot && b.trailing_stop_pct().is_none()) {
                continue;
            }
            let Some(q) = quotes.get(&p.symbol) else { continue };
            let (mid, long) = ((q.bid + q.ask) / 2.0, !p.qty.is_negative());
            let better = p.high_water.is_none_or(|best| if long { mid > best } else { mid < best });
            if better {
                match state.record_best_price(&p.bot, &p.symbol, mid, long) {
                    Ok(()) => moved = true,
                    Err(e) => self.orders.ledger_failed(&e),
                }
            }
        }
        if moved {
            owned = state.owned_positions()?;
        }
        self.orders.forget_refusals_of_closed(&owned);
        // The entry gate opens on what this iteration allows; `run_bots` closes it after.
        self.orders.open_gate(step.entries_allowed, &report);
        if session.is_open {
            self.orders.close_due_at_open(state, broker, now, &mut report)?;
        }
        let views: Vec<BotView> = bots
            .iter()
            .map(|bot| BotView {
                now,
                market_open: bot.kind() == BotKind::Crypto || session.is_open,
                session,
                owned: owned.iter().filter(|p| p.bot == bot.id()).collect(),
                quotes,
                bars: &data.bars,
                spendable: spendable(cfg, bot.kind(), step.account),
                contracts: &data.contracts,
                options: &data.snapshots,
            })
            .collect();
        // Every bot's exits first: nothing about a protective stop (a refusal, a wait, a failure)
        // comes before them.
        for (bot, view) in bots.iter().zip(&views) {
            self.exits(state, broker, *bot, view, &mut report)?;
        }
        // Then the resting stops of what is still held without an exit in flight. Protection never
        // holds the entries back either: a failure here is noted.
        if let Err(e) = self.orders.protect(state, broker, bots, now, &mut report) {
            self.orders.ledger_failed(&e);
        }
        for (bot, view) in bots.iter().zip(&views) {
            self.entries(state, broker, step, *bot, view, &mut report)?;
        }
        Ok(report)
    }

    /// A bot's exits, whatever the entry gate says: each one not already in flight and not
    /// waiting after a refusal goes to `Orders::send_exit`. A bot decides the exits of the
    /// positions it watches only: one of its id in a symbol it no longer trades (a reload or a
    /// restart changed its symbols) is an orphan, closed by its keeper with the rules it was
    /// opened with, never by the bot's new ones.
    fn exits(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        bot: &dyn Bot,
        view: &BotView,
        report: &mut StepReport,
    ) -> Result<(), StateError> {
        let watched =
            BotView { owned: view.owned.iter().copied().filter(|p| bot.watches(&p.symbol)).collect(), ..*view };
        let exits = bot.exits(&watched);
        // Read only when there is an exit to send (most minutes there is none).
        let in_flight = if exits.is_empty() { BTreeSet::new() } else { self.orders.exits_in_flight(state)? };
        for exit in exits {
            if in_flight.contains(&(bot.id().to_string(), exit.symbol.clone()))
                || self.orders.exit_waits(bot.id(), &exit.symbol, view.now)
            {
                continue;
            }
            let spec = exit_spec(bot.id(), &exit, &watched);
            for sent in self.orders.send_exit(state, broker, &spec, view.now)? {
                count(report, &sent);
            }
        }
        Ok(())
    }

    /// A bot's entries: the preflight for the bot, then for each entry it wants the entry gate
    /// (`Orders::entry_stop`, asked again by `Orders::send_entry` as each goes) and the risk checks.
    /// Notes why the bot is idle when it sends none.
    fn entries(
        &mut self,
        state: &mut State,
        broker: &mut dyn Broker,
        step: &Step,
        bot: &dyn Bot,
        view: &BotView,
        report: &mut StepReport,
    ) -> Result<(), ExecError> {
        let Step { cfg, budgets, now, .. } = *step;
        if let Some(never) = bot.never_enters() {
            // A keeper of a configured bot's orphans shares its id: that bot speaks for it.
            if !step.bots.iter().any(|b| b.id() == bot.id() && b.never_enters().is_none()) {
                self.notes.note_idle(state, bot.id(), Some(never), now);
            }
            return Ok(());
        }
        if let Some(reason) = self.preflight(state, step, bot)? {
            event!(Debug, "entries_skipped", bot = bot.id(), reason = reason.detail.to_string().as_str());
            self.notes.note_idle(state, bot.id(), Some(reason), now);
            return Ok(());
        }
        // A bot without a budget today gets none to spend (made only then: not a copy a minute).
        let unbudgeted;
        let budget = match budgets.iter().find(|b| b.bot == bot.id()) {
            Some(b) => b,
            None => {
                unbudgeted = Budget {
                    bot: bot.id().into(),
                    daily_loss_limit: 0.0,
                    max_open_risk: 0.0,
                    max_trades: 0,
                    max_positions: 0,
                };
                &unbudgeted
            }
        };
        let Entries { wanted, mut idle } = bot.entries(view, budget);
        // A bot that wants nothing and says nothing has no signal, on each of its symbols.
        if wanted.is_empty() && idle.is_empty() {
            idle = bot.symbols().iter().map(|s| (s.clone(), Idle::new(Cause::NoSignal, "no signal"))).collect();
        }
        // A symbol cooling down after an exit says so whatever its signal does meanwhile (its
        // cause would otherwise flip between no_signal and cooling_down as the signal comes
        // and goes); one held says that instead. Only for a ledger whose bot activity someone
        // reads (`status`, the log): a backtest's keeps none and logs nothing, and this ledger
        // read per idle symbol a minute was 10 % of its instructions. The cooldown itself is
        // checked before every entry all the same (`risk_check`).
        if state.keeps_status_rows() {
            for (symbol, why) in idle.iter_mut().filter(|(_, why)| !why.causes.contains(&Cause::Holding)) {
                if let Some(refusal) = cooling_down(state, bot, symbol, now, &cfg.timezone)? {
                    *why = Idle::new(refusal.cause(), refusal.to_string());
                }
            }
        }
        let mut entered = false;
        for entry in wanted {
            let sent_last_minute = self.orders.orders_last_minute(now);
            if let Err(why) = risk_check(state, step, bot, budget, view, &entry, sent_last_minute) {
                idle.push((entry.symbol.clone(), Idle::new(why.cause(), why.to_string())));
                self.notes.log_refusal(bot.id(), &entry.symbol, why);
                continue;
            }
            let spec = OrderSpec {
                bot: bot.id().into(),
                symbol: entry.symbol.clone(),
                side: entry.side,
                amount: entry.amount,
                order_type: entry.order_type,
                limit_price: entry.limit_price,
                stop_price: None,
                time_in_force: entry.time_in_force,
                intent: Intent::Entry,
                rule: None,
                legs: entry.legs.clone(),
                ref_price: reference_price(view, &entry.symbol, entry.limit_price, &entry.legs),
            };
            // The gate is asked again as it goes: an earlier send of this iteration may have
            // found a conflict or met a ledger that refuses writes.
            match self.orders.send_entry(state, broker, &spec, bot.position_rules().as_ref(), now)? {
                Ok(sent) => {
                    entered = true;
                    self.notes.entered(bot.id(), &entry.symbol);
                    count(report, &sent);
                }
                Err(stop) => idle.push((entry.symbol.clone(), idle_of(&stop))),
            }
        }
        // A bot that sent an entry is not idle (one without symbols has no signal).
        let idle =
            (!entered).then(|| Idle::of_symbols(idle).unwrap_or_else(|| Idle::new(Cause::NoSignal, "no signal")));
        self.notes.note_idle(state, bot.id(), idle, now);
        Ok(())
    }

    /// Why a bot may not enter now, or `None` when it may: its window and session, the entry
    /// gate for all its symbols, its budget, its day's losses and trades, the orders per minute.
    fn preflight(&mut self, state: &State, step: &Step, bot: &dyn Bot) -> Result<Option<Idle>, StateError> {
        let Step { cfg, budgets, entries_allowed, now, .. } = *step;
        if let Some(cause) = entry_refused_by_time(step, bot, entries_allowed) {
            return Ok(Some(describe_time_refusal(cause, step, bot)));
        }
        let symbols: Vec<&str> = bot.symbols().iter().map(String::as_str).collect();
        if let Some(stop) = self.orders.entry_stop(&symbols) {
            return Ok(Some(idle_of(&stop)));
        }
        // No budget, no entries: a budget is never invented (see `safety.allow_budget_fallback`).
        let Some(budget) = budgets.iter().find(|b| b.bot == bot.id()) else {
            return Ok(Some(Idle::new(
                Cause::NoBudget,
                "no budget for today (the day-start equity is not known yet, or PortfolioBot failed)",
            )));
        };
        let date = clock::trading_date(now);
        let BotDay { realized_pnl: realized, entries: trades } = state.bot_day(bot.id(), date)?;
        if portfolio::loss_limit_reached(budget, realized) {
            return Ok(Some(Idle::new(
                Cause::LossShareUsed,
                format!("its daily loss share is used: {realized:.2} of -{:.2}", budget.daily_loss_limit),
            )));
        }
        if trades >= budget.max_trades {
            return Ok(Some(Idle::new(
                Cause::MaxTrades,
                format!("trades today {trades}/{} (max_trades_per_day)", budget.max_trades),
            )));
        }
        let sent = self.orders.orders_last_minute(now);
        let most = cfg.settings.risk.max_orders_per_minute as usize;
        if sent >= most {
            return Ok(Some(Idle::new(
                Cause::MaxOrdersPerMinute,
                format!("{sent} orders in the last minute, max_orders_per_minute {most}"),
            )));
        }
        Ok(None)
    }
}

/// The entry gate's stop as a bot's idle cause: stale data is its own cause, every other reason
/// is entries stopped.
fn idle_of(stop: &EntryStop) -> Idle {
    let cause = match stop {
        EntryStop::StaleData(_) => Cause::StaleData,
        _ => Cause::EntriesStopped,
    };
    Idle::new(cause, stop.to_string())
}

fn exit_spec(bot: &str, exit: &Exit, view: &BotView) -> OrderSpec {
    // Never more than owned: an exit that over-sells would open a short. (A spread's quantity is
    // its count of spreads; its legs were built from what is owned.)
    let owned = view.owned.iter().find(|p| p.symbol == exit.symbol).map_or(Dec::ZERO, |p| p.qty.abs());
    let qty = if exit.legs.is_empty() { exit.qty.min(owned) } else { exit.qty };
    OrderSpec {
        bot: bot.into(),
        symbol: exit.symbol.clone(),
        side: exit.side,
        amount: Amount::Qty(qty),
        order_type: exit.order_type,
        limit_price: exit.limit_price,
        stop_price: None,
        time_in_force: exit.time_in_force,
        intent: Intent::Exit,
        rule: Some(exit.rule),
        legs: exit.legs.clone(),
        ref_price: reference_price(view, &exit.symbol, exit.limit_price, &exit.legs),
    }
}

/// The price an order is decided at, for its fills' slippage: the mid of the symbol's quote as
/// the bot saw it (a marketable limit's limit is only how far it may go), else its limit; a
/// spread's net limit. `None` when none is known.
fn reference_price(view: &BotView, symbol: &str, limit: Option<Dec>, legs: &[crate::core::order::Leg]) -> Option<Dec> {
    if !legs.is_empty() {
        return limit;
    }
    let mid = view.quotes.get(symbol).filter(|q| q.bid > 0.0 && q.ask > 0.0).map(|q| (q.bid + q.ask) / 2.0);
    mid.and_then(Dec::from_f64).map(|p| p.round_to(6)).or(limit)
}

/// A keeper (`bots::keeper`) for each bot id whose positions no configured bot watches, with the
/// rules each was opened with — or, for a position opened before this build stored them, the
/// rules of that bot id's section if the configuration still has one (disabled, say). An orphan
/// with neither is left to the daily-loss flatten, and the start-up warning names it.
/// Whether `price` is far enough from `entry` (`GAP_WORTH_A_LOOK`) to be checked for a split.
fn gap_worth_a_look(entry: Dec, price: f64) -> bool {
    let entry = entry.to_f64();
    entry > 0.0 && price > 0.0 && (price / entry - 1.0).abs() >= GAP_WORTH_A_LOOK
}

fn keepers(state: &State, step: &Step, owned: &[OwnedPosition]) -> Result<Vec<Keeper>, StateError> {
    let orphans: Vec<&OwnedPosition> =
        owned.iter().filter(|p| !step.bots.iter().any(|b| b.id() == p.bot && b.watches(&p.symbol))).collect();
    let mut by_bot: BTreeMap<&str, (BTreeMap<String, crate::core::state::PositionRules>, Vec<&OwnedPosition>)> =
        BTreeMap::new();
    for p in orphans {
        let key = OccSymbol::parse(&p.symbol).map_or_else(|| p.symbol.clone(), |o| o.root);
        let rules = match state.position_rules(&p.bot, &key)? {
            Some(r) => Some(r),
            None => step.cfg.rules_of(&p.bot),
        };
        let Some(rules) = rules else { continue };
        let entry = by_bot.entry(p.bot.as_str()).or_default();
        entry.0.insert(key, rules);
        entry.1.push(p);
    }
    let max_age = step.cfg.bots.optionsbot.as_ref().map_or(60, |o| o.execution.max_quote_age_seconds);
    Ok(by_bot
        .into_iter()
        .map(|(bot, (rules, held))| Keeper::new(bot, rules, &held, step.cfg.timezone.clone(), max_age, step.now))
        .collect())
}
