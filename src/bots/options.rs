//! OptionsBot: defined-risk option strategies on the underlyings of `optionsbot.tickers` — bull
//! put and bear call credit spreads, the iron condor (both on one expiry, one credit band) and the
//! long straddle (at the money, entered on a volatility squeeze); the last two off by default.
//!
//! Owns: the decisions of the options bot, pure functions of the chain, the quotes, what it owns,
//! its budget and the time.
//!
//! - **Direction** from its signal on the underlying's one-minute bars (default
//!   `ema_roc_volume_v1`): up → `bull_put_spread` (sell a put, buy a lower one), down →
//!   `bear_call_spread` (sell a call, buy a higher one), each only when enabled; no direction →
//!   `iron_condor`, or a `straddle` when the last quarter hour's true range is at most 60 % of
//!   the hour's.
//! - **Legs** (`select_spread`): contracts expiring within `chain_rules.dte_min`..`dte_max` (and
//!   the strategy's `max_dte`), out of the money, with open interest ≥ `min_open_interest`; the
//!   short leg's |delta| within `delta_min`..`delta_max` (the one nearest the middle of the band,
//!   on the nearest expiry) and volume ≥ `min_volume`; the long leg `execution.spread_width`
//!   dollars further out on the same expiry. Both quotes no older than
//!   `execution.max_quote_age_seconds` (Alpaca's free feed is 15 minutes delayed by design).
//! - **Price and size**: the net credit at the legs' midpoints, rounded down to the cent, within the
//!   strategy's `min_credit`..`max_credit`; the maximum loss (width − credit) × 100 per spread;
//!   as many spreads as `risk.max_position_size_usd` and the open-risk budget both allow.
//! - **One order**: the spread goes out as one multi-leg (`mleg`) limit order, `day`, its limit the
//!   credit as a negative price, and comes back as one multi-leg market order: no leg is ever left
//!   alone.
//! - **Exits** (percentages of the credit received): `take_profit_pct` of it kept,
//!   `stop_loss_pct` of it lost, `risk.profit_target_usd`, `time_stop_minutes`,
//!   `flatten_before_close_minutes`, and `expiry`: closed `execution.exit_days_before_expiry`
//!   days before its expiry date at the latest. Without fresh quotes only the time rules decide.
//!   Closes go out only while the market is open. A lone leg left of a spread (a single option)
//!   ends its day at `session.manage_until` (clamped to the close) and closes alone, as a plain
//!   order. `spread_rule` and `spread_exits` are shared with the keeper of orphaned spreads.
//!
//! Never: performs I/O, opens an option alone, or holds two spreads on one underlying.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::bots::exits;
use crate::bots::indicators;
use crate::bots::signals::{self, Direction};
use crate::bots::{Bot, BotView, ChainSpan, ChainWant, Entries, Entry, Exit};
use crate::core::clock;
use crate::core::config::BotKind;
use crate::core::config::{ChainRules, CreditSpread, Exits, OptionsBot as Settings, OptionsRisk, Session, Straddle};
use crate::core::decimal::Dec;
use crate::core::idle::{Cause, Idle};
use crate::core::instrument::{OPTION_MULTIPLIER, OccSymbol, OptionKind};
use crate::core::market_data::{Bar, BySymbol, Contracts, OptionContract, Quote, Snapshots};
use crate::core::order::{Amount, Leg, OrderType, PositionIntent, Side, TimeInForce};
use crate::core::risk::Budget;
use crate::core::signal::Signal;
use crate::core::state::{OwnedPosition, PositionRules};

/// Shares per contract: option prices are per share.
const CONTRACT: f64 = OPTION_MULTIPLIER as f64;

/// The strategies the bot trades, recognised from the legs it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    BullPut,
    BearCall,
    IronCondor,
    Straddle,
}

/// Which strategy a set of held legs is: one short and one long put (bull put), the same in calls
/// (bear call), both of those (iron condor), or a long call and a long put (straddle).
pub fn strategy_of(legs: &[&OwnedPosition]) -> Option<Strategy> {
    let kinds: Vec<(OptionKind, bool)> = legs
        .iter()
        .map(|p| OccSymbol::parse(&p.symbol).map(|o| (o.kind, p.qty.is_negative())))
        .collect::<Option<_>>()?;
    let count = |k: OptionKind, short: bool| kinds.iter().filter(|x| **x == (k, short)).count();
    let (ps, pl, cs, cl) = (
        count(OptionKind::Put, true),
        count(OptionKind::Put, false),
        count(OptionKind::Call, true),
        count(OptionKind::Call, false),
    );
    match (kinds.len(), ps, pl, cs, cl) {
        (2, 1, 1, 0, 0) => Some(Strategy::BullPut),
        (2, 0, 0, 1, 1) => Some(Strategy::BearCall),
        (4, 1, 1, 1, 1) => Some(Strategy::IronCondor),
        (2, 0, 1, 0, 1) => Some(Strategy::Straddle),
        _ => None,
    }
}

/// A spread chosen from the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct SpreadPlan {
    pub short: String,
    pub long: String,
    pub expiry: Date,
    /// Net credit per share, rounded down to the cent.
    pub credit: Dec,
    /// (width − credit) × 100.
    pub max_loss: f64,
}

/// What the chain looks like to the selection.
pub struct Chain<'a> {
    pub contracts: &'a Contracts,
    pub snapshots: &'a Snapshots,
    pub now: Timestamp,
    pub max_quote_age_seconds: u64,
}

impl Chain<'_> {
    fn fresh_quote(&self, symbol: &str) -> Option<Quote> {
        let q = self.snapshots.get(symbol)?.quote?;
        let fresh = self.now.duration_since(q.t).as_secs() <= self.max_quote_age_seconds as i64;
        (fresh && q.bid >= 0.0 && q.ask > 0.0 && q.ask >= q.bid).then_some(q)
    }
}

/// The spread of `kind` (puts for a bull put spread, calls for a bear call spread) the rules pick,
/// or why none: the furthest filter any contract reached, with its numbers.
pub fn select_spread(
    kind: OptionKind,
    underlying: &str,
    spot: f64,
    chain: &Chain,
    rules: &ChainRules,
    strategy: &CreditSpread,
    width: f64,
) -> Result<SpreadPlan, Idle> {
    let today = clock::trading_date(chain.now);
    let max_dte = rules.dte_max.min(strategy.max_dte) as i64;
    // How far the contracts got, for the reason when none fits.
    let (mut listed, mut in_window, mut in_band, mut quoted, mut paired) = (0u32, 0u32, 0u32, 0u32, 0u32);
    let mut credits: (f64, f64) = (f64::INFINITY, f64::NEG_INFINITY);
    let dte = |d: Date| (d - today).get_days() as i64;
    let band_mid = (rules.delta_min + rules.delta_max) / 2.0;
    let mut best: Option<(i64, f64, SpreadPlan)> = None;
    // This underlying's contracts of this kind, in symbol order.
    for c in chain.contracts.of(underlying, kind) {
        listed += 1;
        let days = dte(c.expiration);
        let otm = match kind {
            OptionKind::Put => c.strike.to_f64() < spot,
            OptionKind::Call => c.strike.to_f64() > spot,
        };
        if !c.tradable
            || !otm
            || days < rules.dte_min as i64
            || days > max_dte
            || c.open_interest.unwrap_or(0) < rules.min_open_interest
        {
            continue;
        }
        in_window += 1;
        let Some(snap) = chain.snapshots.get(c.symbol.as_str()) else { continue };
        let Some(delta) = snap.greeks.map(|g| g.delta.abs()) else { continue };
        if delta < rules.delta_min || delta > rules.delta_max || snap.volume.unwrap_or(0.0) < rules.min_volume as f64 {
            continue;
        }
        in_band += 1;
        let Some(short_q) = chain.fresh_quote(&c.symbol) else { continue };
        quoted += 1;
        let long_strike = c.strike.to_f64() + if kind == OptionKind::Put { -width } else { width };
        // The first tradable one in symbol order, as a scan of the chain would find it.
        let Some(long) = chain.contracts.at_strike(underlying, kind, c.expiration, long_strike) else { continue };
        let Some(long_q) = chain.fresh_quote(&long.symbol) else { continue };
        paired += 1;
        let mid = |q: Quote| (q.bid + q.ask) / 2.0;
        let Some(credit) = Dec::from_f64(mid(short_q) - mid(long_q)).map(|c| c.round_down(2)) else { continue };
        let cr = credit.to_f64();
        credits = (credits.0.min(cr), credits.1.max(cr));
        if cr < strategy.min_credit || cr > strategy.max_credit || cr >= width {
            continue;
        }
        let plan = SpreadPlan {
            short: c.symbol.clone(),
            long: long.symbol.clone(),
            expiry: c.expiration,
            credit,
            max_loss: (width - cr) * CONTRACT,
        };
        let key = (days, (delta - band_mid).abs());
        let better = match &best {
            None => true,
            Some((d, dist, _)) => key.0 < *d || (key.0 == *d && key.1 < *dist),
        };
        if better {
            best = Some((key.0, key.1, plan));
        }
    }
    if let Some(b) = best {
        return Ok(b.2);
    }
    let k = kind.word();
    Err(if in_window == 0 {
        Idle::new(
            Cause::NoContract,
            format!(
                "no {k} out of the money expiring in {}–{max_dte} days with open interest ≥ {} ({listed} {k}s listed)",
                rules.dte_min, rules.min_open_interest
            ),
        )
    } else if in_band == 0 {
        Idle::new(
            Cause::NoContract,
            format!(
                "{in_window} {k}s in the expiry window, none with delta {:.2}–{:.2} and volume ≥ {}",
                rules.delta_min, rules.delta_max, rules.min_volume
            ),
        )
    } else if quoted == 0 {
        Idle::new(
            Cause::NoContract,
            format!("{in_band} {k}s in the delta band, none quoted in the last {} s", chain.max_quote_age_seconds),
        )
    } else if paired == 0 {
        Idle::new(
            Cause::NoContract,
            format!("{quoted} quoted short {k}s, none with a freshly quoted {k} {width} further out to buy"),
        )
    } else if credits.0 == credits.1 {
        Idle::new(
            Cause::PriceOutOfBand,
            format!(
                "credit {:.2} outside min {:.2}..max {:.2} (width {width})",
                credits.0, strategy.min_credit, strategy.max_credit
            ),
        )
    } else {
        Idle::new(
            Cause::PriceOutOfBand,
            format!(
                "credits {:.2}–{:.2} of {paired} spreads, none inside min {:.2}..max {:.2} (width {width})",
                credits.0, credits.1, strategy.min_credit, strategy.max_credit
            ),
        )
    })
}

/// Bars the straddle's squeeze test reads (an hour of one-minute bars and one).
pub const SQUEEZE_BARS: usize = 61;

/// A volatility squeeze: the last quarter hour's true range at most 60 % of the hour's. A market
/// coiled that tightly tends to break out one way or the other, which a straddle is paid for.
pub fn squeezed(bars: &[Bar]) -> bool {
    if bars.len() < SQUEEZE_BARS {
        return false;
    }
    let recent = indicators::atr(&bars[bars.len() - 16..], 15);
    let hour = indicators::atr(&bars[bars.len() - SQUEEZE_BARS..], 60);
    matches!((recent, hour), (Some(r), Some(h)) if h > 0.0 && r <= 0.6 * h)
}

/// A long straddle chosen from the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct StraddlePlan {
    pub call: String,
    pub put: String,
    /// Net debit per share at the asks, rounded up to the cent.
    pub debit: Dec,
}

/// An iron condor: a bull put spread and a bear call spread on one expiry, for one credit within
/// the iron condor's `min_credit`..`max_credit`. It can lose on one side only: its maximum loss is
/// (width − total credit) × 100.
pub fn select_condor(
    underlying: &str,
    spot: f64,
    chain: &Chain,
    rules: &ChainRules,
    condor: &CreditSpread,
    width: f64,
) -> Result<(SpreadPlan, SpreadPlan), Idle> {
    // Each side on its own need only bring some credit; the total is what must fit the band.
    let side = CreditSpread { min_credit: 0.01, ..condor.clone() };
    let put = select_spread(OptionKind::Put, underlying, spot, chain, rules, &side, width)?;
    let put_expiry = put.expiry;
    let mut call = select_spread(OptionKind::Call, underlying, spot, chain, rules, &side, width)?;
    if call.expiry != put_expiry {
        // Both sides on one expiry: restrict the calls to the puts' expiry.
        let same =
            ChainRules { dte_min: days_to(chain, put_expiry), dte_max: days_to(chain, put_expiry), ..rules.clone() };
        call = select_spread(
            OptionKind::Call,
            underlying,
            spot,
            chain,
            &same,
            &CreditSpread { max_dte: 10_000, ..side },
            width,
        )?;
    }
    let total = put.credit.to_f64() + call.credit.to_f64();
    if total >= condor.min_credit && total <= condor.max_credit && total < width {
        Ok((put, call))
    } else {
        Err(Idle::new(
            Cause::PriceOutOfBand,
            format!(
                "iron condor credit {total:.2} outside min {:.2}..max {:.2} (width {width})",
                condor.min_credit, condor.max_credit
            ),
        ))
    }
}

fn days_to(chain: &Chain, d: Date) -> u32 {
    (d - clock::trading_date(chain.now)).get_days().max(0) as u32
}

/// A long straddle: the call and the put at the strike nearest the spot, on the nearest expiry in
/// the window, both freshly quoted, for a debit (at the asks) no more than `max_cost`.
pub fn select_straddle(
    underlying: &str,
    spot: f64,
    chain: &Chain,
    rules: &ChainRules,
    straddle: &Straddle,
) -> Result<StraddlePlan, Idle> {
    let today = clock::trading_date(chain.now);
    // Per expiry in the window, the call and put pair at the strike nearest the spot.
    let mut atm: BTreeMap<Date, (f64, &OptionContract, &OptionContract)> = BTreeMap::new();
    for c in chain.contracts.of(underlying, OptionKind::Call).iter().filter(|c| c.tradable) {
        let days = (c.expiration - today).get_days() as i64;
        if days < rules.dte_min as i64 || days > rules.dte_max as i64 {
            continue;
        }
        let Some(put) = chain
            .contracts
            .of(underlying, OptionKind::Put)
            .iter()
            .find(|p| p.expiration == c.expiration && p.strike == c.strike && p.tradable)
        else {
            continue;
        };
        let distance = (c.strike.to_f64() - spot).abs();
        if atm.get(&c.expiration).is_none_or(|(d, ..)| distance < *d) {
            atm.insert(c.expiration, (distance, c, put));
        }
    }
    if atm.is_empty() {
        return Err(Idle::new(
            Cause::NoContract,
            format!("no call and put at one strike expiring in {}–{} days", rules.dte_min, rules.dte_max),
        ));
    }
    // The nearest expiry whose pair is quoted and affordable.
    let mut cheapest: Option<f64> = None;
    for (_, call, put) in atm.values() {
        let (Some(cq), Some(pq)) = (chain.fresh_quote(&call.symbol), chain.fresh_quote(&put.symbol)) else { continue };
        let Some(debit) = Dec::from_f64(cq.ask + pq.ask).map(|d| d.round_to(2)) else { continue };
        if debit > Dec::ZERO && debit.to_f64() <= straddle.max_cost {
            return Ok(StraddlePlan { call: call.symbol.clone(), put: put.symbol.clone(), debit });
        }
        cheapest = Some(cheapest.map_or(debit.to_f64(), |c: f64| c.min(debit.to_f64())));
    }
    Err(match cheapest {
        Some(d) => {
            Idle::new(Cause::PriceOutOfBand, format!("straddle debit {d:.2} above max_cost {:.2}", straddle.max_cost))
        }
        None => Idle::new(
            Cause::NoContract,
            format!("no straddle pair quoted in the last {} s", chain.max_quote_age_seconds),
        ),
    })
}

/// What the bot will send for one underlying.
enum Plan {
    Vertical(SpreadPlan),
    Condor(SpreadPlan, SpreadPlan),
    Straddle(StraddlePlan),
}

impl Plan {
    /// Dollars one unit can lose.
    fn max_loss(&self) -> f64 {
        match self {
            Plan::Vertical(p) => p.max_loss,
            // One side at most can lose: the width less both credits (both sides share the width).
            Plan::Condor(p, c) => p.max_loss - c.credit.to_f64() * CONTRACT,
            Plan::Straddle(s) => s.debit.to_f64() * CONTRACT,
        }
    }

    /// The net limit: a credit is negative, a debit positive.
    fn limit_price(&self) -> Dec {
        match self {
            Plan::Vertical(p) => Dec::ZERO.checked_sub(p.credit).unwrap_or(Dec::ZERO),
            Plan::Condor(p, c) => {
                Dec::ZERO.checked_sub(p.credit).and_then(|x| x.checked_sub(c.credit)).unwrap_or(Dec::ZERO)
            }
            Plan::Straddle(s) => s.debit,
        }
    }

    fn legs(&self) -> Vec<Leg> {
        let leg = |symbol: &str, position_intent| Leg { symbol: symbol.into(), ratio_qty: 1, position_intent };
        let vertical =
            |p: &SpreadPlan| vec![leg(&p.short, PositionIntent::SellToOpen), leg(&p.long, PositionIntent::BuyToOpen)];
        match self {
            Plan::Vertical(p) => vertical(p),
            Plan::Condor(p, c) => vertical(p).into_iter().chain(vertical(c)).collect(),
            Plan::Straddle(s) => vec![leg(&s.call, PositionIntent::BuyToOpen), leg(&s.put, PositionIntent::BuyToOpen)],
        }
    }
}

/// The legs a bot owns on one underlying as (number of spreads, closing legs): equal legs close as
/// N spreads of ratio 1, unequal ones as one of their sizes. `None` for no legs or more than four.
pub fn closing_legs(legs: &[&OwnedPosition]) -> Option<(Dec, Vec<Leg>)> {
    if legs.is_empty() || legs.len() > 4 {
        return None;
    }
    let sizes: Vec<Dec> = legs.iter().map(|p| p.qty.abs()).collect();
    let equal = sizes.iter().all(|q| *q == sizes[0]);
    let count = if equal { sizes[0] } else { Dec::ONE };
    let out = legs
        .iter()
        .map(|p| Leg {
            symbol: p.symbol.clone(),
            ratio_qty: if equal { 1 } else { p.qty.abs().to_f64() as u32 },
            position_intent: if p.qty.is_negative() { PositionIntent::BuyToClose } else { PositionIntent::SellToClose },
        })
        .collect();
    Some((count, out))
}

pub struct OptionsBot {
    id: String,
    symbols: Vec<String>,
    session: Session,
    signal: Signal,
    exits: Exits,
    risk: OptionsRisk,
    bull_put: CreditSpread,
    bear_call: CreditSpread,
    iron_condor: CreditSpread,
    straddle: Straddle,
    rules: ChainRules,
    width: f64,
    max_quote_age_seconds: u64,
    exit_days_before_expiry: u32,
    /// `system.timezone`, for `session.manage_until`.
    tz: TimeZone,
}

impl OptionsBot {
    pub fn new(s: &Settings, signal: Signal, tz: TimeZone) -> OptionsBot {
        OptionsBot {
            id: s.bot_id.clone(),
            symbols: s.tickers.clone(),
            session: s.session.clone(),
            signal,
            exits: s.exits.clone(),
            risk: s.risk.clone(),
            bull_put: s.strategies.bull_put_spread.clone(),
            bear_call: s.strategies.bear_call_spread.clone(),
            iron_condor: s.strategies.iron_condor.clone(),
            straddle: s.strategies.straddle.clone(),
            rules: s.chain_rules.clone(),
            width: s.execution.spread_width,
            max_quote_age_seconds: s.execution.max_quote_age_seconds,
            exit_days_before_expiry: s.execution.exit_days_before_expiry,
            tz,
        }
    }

    /// The days to expiry an entry on an underlying with these `bars` would read now, and the kind
    /// of contract: the window of the strategy its signal calls for, as `entries` picks it (puts
    /// for a bull put spread, calls for a bear call spread, both for a condor or a straddle;
    /// `None`: it calls for none).
    /// Kept in step with `entries` and the selections' own filters by a test.
    fn entry_days(&self, bars: &[Bar]) -> Option<(u32, u32, Option<OptionKind>)> {
        let spread = |s: &CreditSpread, kind| (self.rules.dte_min, self.rules.dte_max.min(s.max_dte), kind);
        match signals::evaluate(&self.signal, bars) {
            Some(Direction::Long) => self.bull_put.enabled.then(|| spread(&self.bull_put, Some(OptionKind::Put))),
            Some(Direction::Short) => self.bear_call.enabled.then(|| spread(&self.bear_call, Some(OptionKind::Call))),
            None if self.iron_condor.enabled => Some(spread(&self.iron_condor, None)),
            None if self.straddle.enabled && squeezed(bars) => Some((self.rules.dte_min, self.rules.dte_max, None)),
            None => None,
        }
        .filter(|(min, max, _)| min <= max)
    }

    /// Its legs grouped by underlying.
    fn spreads<'a>(view: &BotView<'a>) -> BTreeMap<String, Vec<&'a OwnedPosition>> {
        let mut out: BTreeMap<String, Vec<&OwnedPosition>> = BTreeMap::new();
        for p in &view.owned {
            if let Some(OccSymbol { root, .. }) = OccSymbol::parse(&p.symbol) {
                out.entry(root).or_default().push(*p);
            }
        }
        out
    }

    /// The rule that closes a spread now, if any.
    fn exit_rule(&self, legs: &[&OwnedPosition], view: &BotView) -> Option<&'static str> {
        // The strategy's own target (a fraction of the credit), if the legs tell the strategy.
        let profit_fraction = strategy_of(legs).map(|st| match st {
            Strategy::BullPut => self.bull_put.profit_target,
            Strategy::BearCall => self.bear_call.profit_target,
            Strategy::IronCondor => self.iron_condor.profit_target,
            Strategy::Straddle => self.straddle.profit_target,
        });
        let rules = SpreadRules {
            exits: &self.exits,
            profit_fraction,
            profit_target_usd: self.risk.profit_target_usd,
            max_quote_age_seconds: self.max_quote_age_seconds,
            exit_days_before_expiry: self.exit_days_before_expiry,
        };
        spread_rule(&rules, legs, view)
    }
}

/// What closes a spread, as plain values: an options bot's, or those stored with a spread whose
/// bot has left the configuration.
#[derive(Debug, Clone, Copy)]
pub struct SpreadRules<'a> {
    pub exits: &'a Exits,
    /// The strategy's profit target, a fraction of the credit.
    pub profit_fraction: Option<f64>,
    pub profit_target_usd: Option<f64>,
    pub max_quote_age_seconds: u64,
    pub exit_days_before_expiry: u32,
}

/// The rule that closes the spread of `legs` now, if any.
pub fn spread_rule(r: &SpreadRules, legs: &[&OwnedPosition], view: &BotView) -> Option<&'static str> {
    let today = clock::trading_date(view.now);
    let expiry = legs.iter().filter_map(|p| OccSymbol::parse(&p.symbol).map(|o| o.expiry)).min()?;
    if (expiry - today).get_days() <= r.exit_days_before_expiry as i32 {
        return Some("expiry");
    }
    let opened = legs.iter().map(|p| p.opened_at).min()?;
    // The credit received and what closing costs now, per share, from fresh quotes only.
    let chain = Chain {
        contracts: &Contracts::default(),
        snapshots: view.options,
        now: view.now,
        max_quote_age_seconds: r.max_quote_age_seconds,
    };
    let mut credit = 0.0;
    let mut cost = Some(0.0);
    let count = legs.iter().map(|p| p.qty.abs().to_f64()).fold(f64::MAX, f64::min);
    for p in legs {
        let ratio = p.qty.abs().to_f64() / count;
        let short = p.qty.is_negative();
        credit += if short { 1.0 } else { -1.0 } * p.avg_entry_price.to_f64() * ratio;
        cost = cost.zip(chain.fresh_quote(&p.symbol)).map(|(c, q)| c + if short { q.ask } else { -q.bid } * ratio);
    }
    // P&L per share: what was received (negative: paid) less what closing costs (negative:
    // what closing brings in). In percent of what was received or paid.
    if let Some(cost) = cost.filter(|_| credit != 0.0) {
        let pnl_pct = (credit - cost) / credit.abs() * 100.0;
        // The strategy's own target and the bot's take profit: whichever comes first.
        let target = r.profit_fraction.map_or(r.exits.take_profit_pct, |f| r.exits.take_profit_pct.min(f * 100.0));
        if pnl_pct >= target - 1e-9 {
            return Some("take_profit");
        }
        if -pnl_pct >= r.exits.stop_loss_pct - 1e-9 {
            return Some("stop_loss");
        }
        if let Some(target) = r.profit_target_usd
            && (credit - cost) * CONTRACT * count >= target
        {
            return Some("profit_target");
        }
    }
    if let Some(mins) = r.exits.time_stop_minutes
        && view.now.duration_since(opened).as_secs() >= i64::from(mins) * 60
    {
        return Some("time_stop");
    }
    if let Some(mins) = r.exits.flatten_before_close_minutes
        && view.session.is_open
        && view.session.next_close.duration_since(view.now).as_secs() <= i64::from(mins) * 60
    {
        return Some("flatten_before_close");
    }
    None
}

/// The closing orders of the spreads in `view.owned` that `rule` closes now: one multi-leg market
/// order per underlying, and only while the market is open (options trade in the regular
/// session only, and an order sent after the close would wait for the open, priced by the night;
/// a rule that fires while it is shut fires again at the open, and `exit_days_before_expiry`
/// keeps that before the expiry).
pub fn spread_exits(view: &BotView, rule: impl Fn(&[&OwnedPosition]) -> Option<&'static str>) -> Vec<Exit> {
    if !view.market_open {
        return Vec::new();
    }
    let mut by_root: BTreeMap<String, Vec<&OwnedPosition>> = BTreeMap::new();
    for p in &view.owned {
        if let Some(OccSymbol { root, .. }) = OccSymbol::parse(&p.symbol) {
            by_root.entry(root).or_default().push(*p);
        }
    }
    let mut out = Vec::new();
    for (root, legs) in by_root {
        let Some(rule) = rule(&legs) else { continue };
        // A lone leg closes as a plain order of its own (a multi-leg order takes 2 to 4 legs).
        if let [p] = legs.as_slice() {
            out.push(Exit {
                symbol: p.symbol.clone(),
                side: if p.qty.is_negative() { Side::Buy } else { Side::Sell },
                qty: p.qty.abs(),
                rule,
                order_type: OrderType::Market,
                limit_price: None,
                time_in_force: TimeInForce::Day,
                legs: Vec::new(),
            });
            continue;
        }
        let Some((count, close)) = closing_legs(&legs) else { continue };
        out.push(Exit {
            symbol: root,
            side: Side::Buy,
            qty: count,
            rule,
            order_type: OrderType::Market,
            limit_price: None,
            time_in_force: TimeInForce::Day,
            legs: close,
        });
    }
    out
}

impl Bot for OptionsBot {
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> BotKind {
        BotKind::Options
    }
    fn symbols(&self) -> &[String] {
        &self.symbols
    }
    fn session(&self) -> &Session {
        &self.session
    }
    fn bars_needed(&self) -> usize {
        // The straddle's volatility squeeze reads an hour of bars.
        let squeeze = if self.straddle.enabled { SQUEEZE_BARS } else { 0 };
        self.signal.bars_needed().max(squeeze)
    }
    fn cooldown_minutes(&self) -> u32 {
        self.risk.cooldown_minutes
    }
    fn option_days(&self) -> Option<(u32, u32)> {
        Some((self.rules.dte_min, self.rules.dte_max))
    }

    fn chains_wanted(&self, bars: &BySymbol<Vec<Bar>>, owned: &[&OwnedPosition], today: Date) -> Vec<ChainWant> {
        self.symbols
            .iter()
            .filter_map(|root| {
                let held = ChainSpan::of_legs(
                    owned.iter().filter_map(|p| OccSymbol::parse(&p.symbol)).filter(|o| &o.root == root),
                );
                // One spread per underlying: a held root is not entered (`entries`), so its
                // held legs are all it reads.
                let entry = if held.is_some() {
                    None
                } else {
                    bars.get(root).and_then(|b| self.entry_days(b)).and_then(|(min, max, kind)| {
                        let day = |n: u32| today.checked_add(jiff::Span::new().days(i64::from(n))).ok();
                        Some(ChainSpan::new(day(min)?, day(max)?, kind))
                    })
                };
                (held.is_some() || entry.is_some()).then(|| ChainWant { root: root.clone(), held, entry })
            })
            .collect()
    }

    fn exits(&self, view: &BotView) -> Vec<Exit> {
        spread_exits(view, |legs| {
            // A lone leg (a single option) is flat by the day's end, like a stock.
            let lone =
                legs.len() == 1 && exits::day_ended(view.now, Some(view.session), self.session.manage_until, &self.tz);
            if lone { Some("manage_until") } else { self.exit_rule(legs, view) }
        })
    }

    fn position_rules(&self) -> Option<PositionRules> {
        Some(PositionRules {
            kind: BotKind::Options,
            exits: self.exits.clone(),
            manage_until: Some(self.session.manage_until),
            exit_days_before_expiry: Some(self.exit_days_before_expiry),
        })
    }

    fn entries(&self, view: &BotView, budget: &Budget) -> Entries {
        let held = Self::spreads(view);
        let mut out = Entries::default();
        let mut room = self.risk.max_position_size_usd.min(budget.max_open_risk);
        for root in &self.symbols {
            if held.contains_key(root) {
                out.skip(root, Cause::Holding, "holds a position on it (one per underlying)");
                continue;
            }
            let (Some(bars), Some(quote)) = (view.bars.get(root), view.quotes.get(root)) else {
                out.skip(root, Cause::NoData, "no bars or no quote yet");
                continue;
            };
            let chain = Chain {
                contracts: view.contracts,
                snapshots: view.options,
                now: view.now,
                max_quote_age_seconds: self.max_quote_age_seconds,
            };
            let spot = (quote.bid + quote.ask) / 2.0;
            // What the signal said leads the reason a selection gives for finding nothing.
            let said = |prefix: &'static str| move |why: Idle| Idle { detail: why.detail.within(prefix, ""), ..why };
            let plan = match signals::read(&self.signal, bars) {
                Ok(Direction::Long) if self.bull_put.enabled => {
                    select_spread(OptionKind::Put, root, spot, &chain, &self.rules, &self.bull_put, self.width)
                        .map(Plan::Vertical)
                        .map_err(said("signal up, "))
                }
                Ok(Direction::Short) if self.bear_call.enabled => {
                    select_spread(OptionKind::Call, root, spot, &chain, &self.rules, &self.bear_call, self.width)
                        .map(Plan::Vertical)
                        .map_err(said("signal down, "))
                }
                Ok(Direction::Long) => Err(Idle::new(Cause::NoSignal, "signal up, and bull_put is disabled")),
                Ok(Direction::Short) => Err(Idle::new(Cause::NoSignal, "signal down, and bear_call is disabled")),
                // No direction: a range-bound market for an iron condor, or a coiled one for a straddle.
                Err(_) if self.iron_condor.enabled => {
                    select_condor(root, spot, &chain, &self.rules, &self.iron_condor, self.width)
                        .map(|(p, c)| Plan::Condor(p, c))
                        .map_err(said("no direction, "))
                }
                Err(_) if self.straddle.enabled && squeezed(bars) => {
                    select_straddle(root, spot, &chain, &self.rules, &self.straddle)
                        .map(Plan::Straddle)
                        .map_err(said("no direction, "))
                }
                Err(why) => {
                    let tail = if self.straddle.enabled { "; no squeeze for a straddle" } else { "" };
                    Err(Idle { detail: why.detail.within("", tail), ..why })
                }
            };
            let plan = match plan {
                Ok(plan) => plan,
                Err(why) => {
                    out.idle.push((root.clone(), why));
                    continue;
                }
            };
            let max_loss = plan.max_loss();
            let n = (room / max_loss).floor();
            if n < 1.0 {
                out.skip(
                    root,
                    Cause::TooSmall,
                    format!(
                        "one unit can lose {max_loss:.2}, more than the {room:.2} left (max_position_size_usd {:.2}, open-risk budget {:.2})",
                        self.risk.max_position_size_usd, budget.max_open_risk
                    ),
                );
                continue;
            }
            room -= n * max_loss;
            out.wanted.push(Entry {
                symbol: root.clone(),
                side: Side::Sell,
                amount: Amount::Qty(Dec::from_int(n as i64)),
                order_type: OrderType::Limit,
                limit_price: Some(plan.limit_price()),
                time_in_force: TimeInForce::Day,
                legs: plan.legs(),
                risk_usd: n * max_loss,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::instrument::occ_symbol;
    use crate::core::market_data::{Greeks, OptionSnapshot};
    use jiff::civil::date;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const NOW: &str = "2026-11-25T15:00:00Z";

    /// One held leg of the options bot.
    fn leg(symbol: &str, qty: i64) -> OwnedPosition {
        OwnedPosition {
            bot: "opt_core".into(),
            symbol: symbol.into(),
            qty: Dec::from_int(qty),
            avg_entry_price: Dec::ONE,
            opened_at: ts(NOW),
            high_water: None,
        }
    }

    /// SPY at 480: puts every $5 from 440 to 475 on two expiries, with deltas falling away from
    /// the money, all liquid and freshly quoted.
    fn chain(expiries: &[Date]) -> (BySymbol<OptionContract>, Snapshots) {
        let mut contracts = BySymbol::new();
        let mut snaps = Snapshots::new();
        for &e in expiries {
            for k in (440..=475).step_by(5) {
                let strike = Dec::from_int(k);
                let symbol = occ_symbol("SPY", e, OptionKind::Put, strike);
                // 475: delta 0.45, 470: 0.35, 465: 0.25, 460: 0.18, 455: 0.12, …; price 5 × delta.
                let delta = match k {
                    475 => 0.45,
                    470 => 0.35,
                    465 => 0.25,
                    460 => 0.18,
                    455 => 0.12,
                    _ => 0.06,
                };
                let mid = delta * 5.0;
                contracts.insert(
                    symbol.clone(),
                    OptionContract {
                        symbol: symbol.clone(),
                        underlying: "SPY".into(),
                        expiration: e,
                        kind: OptionKind::Put,
                        strike,
                        multiplier: Dec::from_int(100),
                        open_interest: Some(1000),
                        close_price: None,
                        tradable: true,
                    },
                );
                snaps.insert(
                    symbol,
                    OptionSnapshot {
                        quote: Some(Quote {
                            t: ts(NOW),
                            bid: mid - 0.02,
                            ask: mid + 0.02,
                            bid_size: 1.0,
                            ask_size: 1.0,
                        }),
                        greeks: Some(Greeks { delta: -delta, gamma: 0.0, theta: 0.0, vega: 0.0, rho: 0.0 }),
                        implied_volatility: Some(0.2),
                        volume: Some(500.0),
                    },
                );
            }
        }
        (contracts, snaps)
    }

    fn rules() -> ChainRules {
        ChainRules { dte_min: 7, dte_max: 60, delta_min: 0.10, delta_max: 0.40, min_volume: 50, min_open_interest: 100 }
    }

    fn strategy() -> CreditSpread {
        CreditSpread { enabled: true, min_credit: 0.50, max_credit: 3.00, profit_target: 0.5, max_dte: 45 }
    }

    fn pick(c: &BySymbol<OptionContract>, s: &Snapshots, rules: &ChainRules) -> Result<SpreadPlan, Idle> {
        let c: Contracts = c.values().cloned().collect();
        let chain = Chain { contracts: &c, snapshots: s, now: ts(NOW), max_quote_age_seconds: 960 };
        select_spread(OptionKind::Put, "SPY", 480.0, &chain, rules, &strategy(), 5.0)
    }

    #[test]
    fn picks_the_short_nearest_the_middle_of_the_delta_band_on_the_nearest_expiry() {
        let near = jiff::civil::date(2026, 12, 11); // 16 days
        let far = jiff::civil::date(2026, 12, 18);
        let (c, s) = chain(&[far, near]);
        let plan = pick(&c, &s, &rules()).unwrap();
        // Band 0.10–0.40, middle 0.25. The 465/460 spread is nearest (0.25) but its credit,
        // 1.25 − 0.90 = 0.35, is under min_credit; 470/465 (0.35 away by 0.10) credits
        // 1.75 − 1.25 = 0.50: taken, on the nearest expiry.
        assert_eq!(plan.short, occ_symbol("SPY", near, OptionKind::Put, Dec::from_int(470)));
        assert_eq!(plan.long, occ_symbol("SPY", near, OptionKind::Put, Dec::from_int(465)));
        assert_eq!(plan.expiry, near);
        assert_eq!(plan.credit, "0.5".parse().unwrap());
        assert!((plan.max_loss - 450.0).abs() < 1e-9);
    }

    #[test]
    fn none_suitable_means_no_spread_and_says_which_filter_stopped_it() {
        let near = jiff::civil::date(2026, 12, 11);
        let (c, s) = chain(&[near]);
        let why = |r: Result<SpreadPlan, Idle>| {
            let idle = r.unwrap_err();
            (idle.causes[0], idle.detail.to_string())
        };
        // Too soon (dte_min 20), too illiquid, or a band nothing sits in: nothing, and why.
        assert_eq!(
            why(pick(&c, &s, &ChainRules { dte_min: 20, ..rules() })),
            (
                Cause::NoContract,
                "no put out of the money expiring in 20–45 days with open interest ≥ 100 (8 puts listed)".into()
            )
        );
        assert_eq!(why(pick(&c, &s, &ChainRules { min_open_interest: 5000, ..rules() })).0, Cause::NoContract);
        assert_eq!(
            why(pick(&c, &s, &ChainRules { min_volume: 1000, ..rules() })),
            (Cause::NoContract, "8 puts in the expiry window, none with delta 0.10–0.40 and volume ≥ 1000".into())
        );
        assert!(
            why(pick(&c, &s, &ChainRules { delta_min: 0.50, delta_max: 0.60, ..rules() }))
                .1
                .contains("delta 0.50–0.60")
        );
        // Credits the band refuses: the credits found, and the band.
        let rich = CreditSpread { min_credit: 1.0, ..strategy() };
        let listed: Contracts = c.values().cloned().collect();
        let chain_view = Chain { contracts: &listed, snapshots: &s, now: ts(NOW), max_quote_age_seconds: 960 };
        let (cause, detail) = why(select_spread(OptionKind::Put, "SPY", 480.0, &chain_view, &rules(), &rich, 5.0));
        assert_eq!(cause, Cause::PriceOutOfBand);
        assert!(detail.starts_with("credits 0.30–0.50 of "), "{detail}");
        assert!(detail.ends_with("none inside min 1.00..max 3.00 (width 5)"), "{detail}");
        // Stale quotes (an hour old): nothing.
        let old: Snapshots = s
            .iter()
            .map(|(k, v)| {
                let mut v = v.clone();
                v.quote.as_mut().unwrap().t = ts("2026-11-25T14:00:00Z");
                (k.clone(), v)
            })
            .collect();
        assert_eq!(
            why(pick(&c, &old, &rules())),
            (Cause::NoContract, "4 puts in the delta band, none quoted in the last 960 s".into())
        );
    }

    /// Puts and calls every $5 from 440 to 520 around SPY at 480, one expiry; |delta| falls by
    /// 0.1 a strike away from the money (from 0.45), mid = 5 × |delta|.
    fn both_sides(expiry: Date) -> (BySymbol<OptionContract>, Snapshots) {
        let mut contracts = BySymbol::new();
        let mut snaps = Snapshots::new();
        for k in (440..=520).step_by(5) {
            for kind in [OptionKind::Put, OptionKind::Call] {
                let away = match kind {
                    OptionKind::Put => (480 - k) as f64 / 5.0,
                    OptionKind::Call => (k - 480) as f64 / 5.0,
                };
                let delta: f64 = (0.45 - 0.1 * away.max(0.0)).max(0.02);
                let delta = if away < 0.0 { 0.55 } else { delta };
                let symbol = occ_symbol("SPY", expiry, kind, Dec::from_int(k));
                contracts.insert(
                    symbol.clone(),
                    OptionContract {
                        symbol: symbol.clone(),
                        underlying: "SPY".into(),
                        expiration: expiry,
                        kind,
                        strike: Dec::from_int(k),
                        multiplier: Dec::from_int(100),
                        open_interest: Some(1000),
                        close_price: None,
                        tradable: true,
                    },
                );
                let mid = delta * 5.0;
                let signed = if kind == OptionKind::Put { -delta } else { delta };
                snaps.insert(
                    symbol,
                    OptionSnapshot {
                        quote: Some(Quote {
                            t: ts(NOW),
                            bid: mid - 0.02,
                            ask: mid + 0.02,
                            bid_size: 1.0,
                            ask_size: 1.0,
                        }),
                        greeks: Some(Greeks { delta: signed, gamma: 0.0, theta: 0.0, vega: 0.0, rho: 0.0 }),
                        implied_volatility: Some(0.2),
                        volume: Some(500.0),
                    },
                );
            }
        }
        (contracts, snaps)
    }

    #[test]
    fn an_iron_condor_sells_both_sides_on_one_expiry_for_one_credit() {
        let expiry = jiff::civil::date(2026, 12, 11);
        let (c, s) = both_sides(expiry);
        let c: Contracts = c.into_values().collect();
        let chain = Chain { contracts: &c, snapshots: &s, now: ts(NOW), max_quote_age_seconds: 960 };
        let condor =
            CreditSpread { enabled: true, min_credit: 1.00, max_credit: 4.00, profit_target: 0.25, max_dte: 60 };
        let (put, call) = select_condor("SPY", 480.0, &chain, &rules(), &condor, 5.0).unwrap();
        // Band 0.10–0.40 (middle 0.25): the 470 put (|delta| 0.25) over 465, the 490 call over 495.
        assert_eq!((put.short.as_str(), put.long.as_str()), ("SPY261211P00470000", "SPY261211P00465000"));
        assert_eq!((call.short.as_str(), call.long.as_str()), ("SPY261211C00490000", "SPY261211C00495000"));
        // Each side credits 1.25 − 0.75 = 0.50; the total 1.00 fits the condor's band.
        let plan = Plan::Condor(put.clone(), call.clone());
        assert_eq!(plan.limit_price(), "-1".parse().unwrap());
        assert!((plan.max_loss() - 400.0).abs() < 1e-9, "(5 - 1) x 100, not both sides: {}", plan.max_loss());
        let legs = plan.legs();
        assert_eq!(legs.len(), 4);
        assert_eq!(legs.iter().filter(|l| l.position_intent == PositionIntent::SellToOpen).count(), 2);
        // A band the total cannot reach: none.
        let greedy = CreditSpread { min_credit: 2.0, ..condor };
        let refused = select_condor("SPY", 480.0, &chain, &rules(), &greedy, 5.0).unwrap_err();
        assert_eq!(refused.detail.to_string(), "iron condor credit 1.00 outside min 2.00..max 4.00 (width 5)");
    }

    #[test]
    fn a_straddle_buys_the_call_and_put_nearest_the_money_within_its_cost() {
        let expiry = jiff::civil::date(2026, 12, 11);
        let (c, s) = both_sides(expiry);
        let c: Contracts = c.into_values().collect();
        let chain = Chain { contracts: &c, snapshots: &s, now: ts(NOW), max_quote_age_seconds: 960 };
        let st = Straddle { enabled: true, max_cost: 10.0, profit_target: 0.3 };
        let plan = select_straddle("SPY", 481.0, &chain, &rules(), &st).unwrap();
        assert_eq!((plan.call.as_str(), plan.put.as_str()), ("SPY261211C00480000", "SPY261211P00480000"));
        // Asks 2.27 + 2.27.
        assert_eq!(plan.debit, "4.54".parse().unwrap());
        assert_eq!(Plan::Straddle(plan.clone()).limit_price(), plan.debit, "a debit is a positive limit");
        let dear = select_straddle("SPY", 481.0, &chain, &rules(), &Straddle { max_cost: 4.0, ..st }).unwrap_err();
        assert_eq!(
            (dear.causes[0], dear.detail.to_string().as_str()),
            (Cause::PriceOutOfBand, "straddle debit 4.54 above max_cost 4.00")
        );
    }

    #[test]
    fn a_squeeze_is_a_quiet_quarter_hour_after_a_busy_hour() {
        let bar = |range: f64| Bar {
            t: ts(NOW),
            open: 100.0,
            high: 100.0 + range,
            low: 100.0 - range,
            close: 100.0,
            volume: 1.0,
        };
        let mut bars: Vec<Bar> = (0..46).map(|_| bar(1.0)).collect();
        bars.extend((0..15).map(|_| bar(0.2)));
        assert!(squeezed(&bars));
        let flat: Vec<Bar> = (0..61).map(|_| bar(1.0)).collect();
        assert!(!squeezed(&flat));
        assert!(!squeezed(&bars[1..]), "needs an hour of bars");
    }

    #[test]
    fn held_legs_tell_their_strategy() {
        let (ps, pl) = (leg("SPY261218P00470000", -1), leg("SPY261218P00465000", 1));
        let (cs, cl) = (leg("SPY261218C00490000", -1), leg("SPY261218C00495000", 1));
        assert_eq!(strategy_of(&[&ps, &pl]), Some(Strategy::BullPut));
        assert_eq!(strategy_of(&[&cs, &cl]), Some(Strategy::BearCall));
        assert_eq!(strategy_of(&[&ps, &pl, &cs, &cl]), Some(Strategy::IronCondor));
        let (c, p) = (leg("SPY261218C00480000", 1), leg("SPY261218P00480000", 1));
        assert_eq!(strategy_of(&[&c, &p]), Some(Strategy::Straddle));
        assert_eq!(strategy_of(&[&ps]), None);
    }

    /// The shipped options bot, its signal (`ema_roc_volume_v1`, default parameters) parsed here.
    fn shipped_bot() -> OptionsBot {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let cfg = crate::core::config::Config::load(&root.join("config")).unwrap();
        let signal = crate::core::signal::parse(crate::core::signal::EMA_ROC_VOLUME, &Default::default()).unwrap();
        OptionsBot::new(cfg.bots.optionsbot.as_ref().unwrap(), signal, cfg.timezone.clone())
    }

    /// With nothing to sell, each underlying says why, led by what its signal said.
    #[test]
    fn an_underlying_without_a_spread_says_what_the_signal_said_and_what_the_chain_lacked() {
        let bot = shipped_bot();
        // SPY flat, then climbing on a busy last bar: a long signal; no chain listed at all.
        let bar = |close: f64, volume: f64| Bar {
            t: ts(NOW),
            open: close,
            high: close + 0.05,
            low: close - 0.05,
            close,
            volume,
        };
        let mut rising: Vec<Bar> = (0..40).map(|_| bar(480.0, 1000.0)).collect();
        rising.extend((1..=15).map(|i| bar(480.0 + f64::from(i) * 0.5, if i == 15 { 2000.0 } else { 1000.0 })));
        let mut bars = BySymbol::new();
        bars.insert("SPY".to_string(), rising);
        let mut quotes = BySymbol::new();
        quotes.insert("SPY".to_string(), Quote { t: ts(NOW), bid: 487.4, ask: 487.6, bid_size: 1.0, ask_size: 1.0 });
        let (contracts, options) = (Contracts::default(), Snapshots::new());
        let view = BotView {
            now: ts(NOW),
            market_open: true,
            session: crate::core::clock::SessionState {
                is_open: true,
                next_open: ts(NOW),
                next_close: ts("2026-11-25T21:00:00Z"),
            },
            owned: Vec::new(),
            quotes: &quotes,
            bars: &bars,
            spendable: 1e6,
            contracts: &contracts,
            options: &options,
        };
        let budget = Budget {
            bot: "opt_core".into(),
            daily_loss_limit: 250.0,
            max_open_risk: 500.0,
            max_trades: 3,
            max_positions: 3,
        };
        let e = bot.entries(&view, &budget);
        assert!(e.wanted.is_empty());
        let (symbol, spy) = &e.idle[0];
        assert_eq!((symbol.as_str(), spy.causes.as_slice()), ("SPY", [Cause::NoContract].as_slice()));
        assert!(
            spy.detail.to_string().starts_with("signal up, no put out of the money expiring in "),
            "{}",
            spy.detail
        );
        assert_eq!(e.idle[1].1.causes, [Cause::NoData], "QQQ has no bars");
    }

    /// The chains asked for each minute: a held underlying's legs' expiry alone, an unheld one's
    /// entry window when its signal calls for a spread (bull put: `dte_min`..the strategy's
    /// `max_dte`), nothing when it calls for none; and a selection from only those dates finds
    /// what it finds in the whole chain.
    #[test]
    fn the_chains_wanted_are_the_held_legs_expiry_and_the_signals_entry_window() {
        let bot = shipped_bot();
        let (dte_min, max_dte) = (bot.rules.dte_min, bot.rules.dte_max.min(bot.bull_put.max_dte));
        assert!(dte_min < max_dte && max_dte < bot.rules.dte_max, "the shipped windows differ: {dte_min} {max_dte}");
        let bar = |close: f64, volume: f64| Bar { t: ts(NOW), open: close, high: close, low: close, close, volume };
        let mut rising: Vec<Bar> = (0..40).map(|_| bar(480.0, 1000.0)).collect();
        rising.extend((1..=15).map(|i| bar(480.0 + f64::from(i) * 0.5, if i == 15 { 2000.0 } else { 1000.0 })));
        let mut bars = BySymbol::new();
        bars.insert("SPY".to_string(), rising);
        bars.insert("IWM".to_string(), (0..55).map(|_| bar(200.0, 1000.0)).collect());
        let today = date(2026, 11, 25);
        let day = |n: u32| today.checked_add(jiff::Span::new().days(i64::from(n))).unwrap();
        let qqq = [leg("QQQ261218P00400000", -1), leg("QQQ261218P00395000", 1)];
        let owned: Vec<&OwnedPosition> = qqq.iter().collect();
        let wants = bot.chains_wanted(&bars, &owned, today);
        assert_eq!(
            wants,
            [
                ChainWant {
                    root: "SPY".into(),
                    held: None,
                    entry: Some(ChainSpan::new(day(dte_min), day(max_dte), Some(OptionKind::Put)))
                },
                // The held spread's legs alone: their expiry, their kind, their strikes.
                ChainWant {
                    root: "QQQ".into(),
                    held: Some(ChainSpan {
                        strikes: Some((Dec::from_int(395), Dec::from_int(400))),
                        ..ChainSpan::new(date(2026, 12, 18), date(2026, 12, 18), Some(OptionKind::Put))
                    }),
                    entry: None
                },
            ],
            "IWM is flat (no signal, no condor or straddle enabled): not asked for"
        );
        assert_eq!(wants[0].span(false), None, "not entering: nothing of SPY");
        assert_eq!(wants[1].span(false), wants[1].held);
        // Held puts and an entry on puts read puts; held calls and an entry on puts read both.
        let both = ChainWant {
            root: "SPY".into(),
            held: Some(ChainSpan::new(day(1), day(1), Some(OptionKind::Put))),
            ..wants[0].clone()
        };
        assert_eq!(both.span(true), Some(ChainSpan::new(day(1), day(max_dte), Some(OptionKind::Put))));
        let mixed = ChainWant { held: Some(ChainSpan { kind: Some(OptionKind::Call), ..both.held.unwrap() }), ..both };
        assert_eq!(mixed.span(true), Some(ChainSpan::new(day(1), day(max_dte), None)));
        assert_eq!(mixed.span(false), mixed.held);
        // Held legs' strikes and an entry's window read every strike of both.
        let legs_and_entry = ChainWant { held: wants[1].held, ..wants[0].clone() };
        assert_eq!(legs_and_entry.span(true).unwrap().strikes, None);
        assert_eq!(legs_and_entry.span(false), wants[1].held);

        // Puts on the days just outside and just inside the window, and a call beside each put:
        // the window's puts alone give the same pick as the whole chain.
        let (mut c, mut all) = chain(&[day(dte_min - 1), day(dte_min), day(max_dte), day(max_dte + 1)]);
        let puts: Vec<(OptionContract, OptionSnapshot)> =
            c.values().map(|p| (p.clone(), all[p.symbol.as_str()].clone())).collect();
        for (put, snap) in puts {
            let symbol = occ_symbol("SPY", put.expiration, OptionKind::Call, put.strike);
            c.insert(symbol.clone(), OptionContract { symbol: symbol.clone(), kind: OptionKind::Call, ..put });
            all.insert(symbol, snap);
        }
        let ChainSpan { from, to, kind, .. } = wants[0].entry.unwrap();
        let only: Snapshots = all
            .iter()
            .filter(|(sym, _)| {
                OccSymbol::parse(sym).is_some_and(|o| o.expiry >= from && o.expiry <= to && Some(o.kind) == kind)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert!(only.len() < all.len());
        let in_window = pick(&c, &only, &rules()).unwrap();
        assert_eq!(in_window, pick(&c, &all, &rules()).unwrap());
        assert_eq!(in_window.expiry, day(dte_min));
    }

    /// A spread one day from its expiry is closed by the `expiry` rule — while the market is open;
    /// seen due while it is shut, the close waits for the open.
    #[test]
    fn a_spread_is_closed_only_while_the_market_is_open() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let cfg = crate::core::config::Config::load(&root.join("config")).unwrap();
        let bot = OptionsBot::new(cfg.bots.optionsbot.as_ref().unwrap(), Signal::Placeholder, cfg.timezone.clone());
        // Expiring Thursday 2026-11-26; now is Wednesday the 25th.
        let legs = [leg("SPY261126P00470000", -1), leg("SPY261126P00465000", 1)];
        let (none, bars, contracts, options) =
            (BySymbol::new(), BySymbol::new(), Contracts::default(), Snapshots::new());
        let view = |open: bool| BotView {
            now: ts(NOW),
            market_open: open,
            session: crate::core::clock::SessionState {
                is_open: open,
                next_open: ts(NOW),
                next_close: ts("2026-11-25T21:00:00Z"),
            },
            owned: legs.iter().collect(),
            quotes: &none,
            bars: &bars,
            spendable: 0.0,
            contracts: &contracts,
            options: &options,
        };
        let exits = bot.exits(&view(true));
        assert_eq!(
            exits.iter().map(|e| (e.symbol.as_str(), e.rule, e.legs.len())).collect::<Vec<_>>(),
            [("SPY", "expiry", 2)]
        );
        assert!(bot.exits(&view(false)).is_empty(), "no spread close while the market is shut");
    }

    /// A lone leg — a single option — is flat by the close: the shipped `manage_until` is 13:00
    /// Los Angeles, the close itself, so it is clamped to five minutes before.
    #[test]
    fn a_lone_option_leg_is_closed_before_the_close() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let cfg = crate::core::config::Config::load(&root.join("config")).unwrap();
        let bot = OptionsBot::new(cfg.bots.optionsbot.as_ref().unwrap(), Signal::Placeholder, cfg.timezone.clone());
        let lone = [leg("SPY261218P00470000", -1)];
        let (none, bars, contracts, options) =
            (BySymbol::new(), BySymbol::new(), Contracts::default(), Snapshots::new());
        let view = |now: &str| BotView {
            now: ts(now),
            market_open: true,
            session: crate::core::clock::SessionState {
                is_open: true,
                next_open: ts(now),
                next_close: ts("2026-11-25T21:00:00Z"),
            },
            owned: lone.iter().collect(),
            quotes: &none,
            bars: &bars,
            spendable: 0.0,
            contracts: &contracts,
            options: &options,
        };
        let rules = |now: &str| bot.exits(&view(now)).iter().map(|e| e.rule).collect::<Vec<_>>();
        assert!(!rules("2026-11-25T20:54:00Z").contains(&"manage_until"));
        let exits = bot.exits(&view("2026-11-25T20:55:00Z"));
        assert_eq!(
            exits.iter().map(|e| (e.symbol.as_str(), e.rule, e.side, e.legs.len())).collect::<Vec<_>>(),
            [("SPY261218P00470000", "manage_until", Side::Buy, 0)],
            "bought back alone, as a plain order"
        );
    }

    #[test]
    fn spread_legs_close_together() {
        let (a, b) = (leg("SPY261218P00470000", -2), leg("SPY261218P00465000", 2));
        let (n, legs) = closing_legs(&[&a, &b]).unwrap();
        assert_eq!(n, Dec::from_int(2));
        assert_eq!(legs[0].position_intent, PositionIntent::BuyToClose);
        assert_eq!(legs[1].position_intent, PositionIntent::SellToClose);
        assert!(legs.iter().all(|l| l.ratio_qty == 1));
    }
}
