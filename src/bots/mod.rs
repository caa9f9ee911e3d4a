//! The execution bots (MomentumBots, OptionsBot, CryptoBot) and what they share.
//!
//! Owns: the `Bot` trait — pure decisions from a market view to order intents — and building the
//! enabled bots from the configuration (`from_config`; a placeholder signal, or an options bot
//! without one, becomes a bot that never enters). The signal modes and their parameters are
//! `core::signal`'s, checked when the configuration loads.
//!
//! Never: performs I/O, or imports a service. Bots decide; the execution service checks, records
//! and sends.

use jiff::Timestamp;
use jiff::civil::Date;

use crate::core::clock::SessionState;
use crate::core::config::BotKind;
use crate::core::config::{Config, EnabledBot, Session};
use crate::core::decimal::Dec;
use crate::core::idle::{Cause, Detail, Idle};
use crate::core::instrument::{OccSymbol, OptionKind};
use crate::core::market_data::{Bar, BySymbol, Contracts, Quote, Snapshots};
use crate::core::order::{Amount, Leg, OrderType, Side, TimeInForce};
use crate::core::risk::Budget;
use crate::core::signal::Signal;
use crate::core::state::{OwnedPosition, PositionRules};

pub mod crypto;
pub mod exits;
pub mod indicators;
pub mod keeper;
pub mod momentum;
pub mod options;
pub mod protection;
pub mod signals;

/// The part of one underlying's option chain a bot will read this minute (`ChainSpan`: expiry
/// dates, kind, strikes): `held` for the exits of the legs it holds, `entry` for the entry its
/// signal calls for. The execution service asks the broker for `held` alone when the bot
/// may not enter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainWant {
    pub root: String,
    pub held: Option<ChainSpan>,
    pub entry: Option<ChainSpan>,
}

impl ChainWant {
    /// What to fetch: `held`, and `entry` too when the bot may enter (one span from the earliest
    /// to the latest); `None` when that leaves nothing.
    pub fn span(&self, may_enter: bool) -> Option<ChainSpan> {
        [self.held, self.entry.filter(|_| may_enter)].into_iter().flatten().reduce(ChainSpan::widen)
    }
}

/// Expiry dates from `from` to `to` (both included) of the contracts of one `kind`, or of both
/// kinds (`None`), with strikes from the first of `strikes` to the second (both included), or of
/// every strike (`None`). A vertical spread reads one kind alone: half the chain, half the
/// prices; a held spread reads its legs' strikes alone: its exits read only its legs' quotes, and
/// a held underlying is never entered again (four in five of a backtest's chain requests, and a
/// live daemon's every minute while it holds a spread, are of held legs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainSpan {
    pub from: Date,
    pub to: Date,
    pub kind: Option<OptionKind>,
    pub strikes: Option<(Dec, Dec)>,
}

impl ChainSpan {
    /// Every strike of those dates.
    pub fn new(from: Date, to: Date, kind: Option<OptionKind>) -> ChainSpan {
        ChainSpan { from, to, kind, strikes: None }
    }

    /// The smallest span that holds both: from the earlier date to the later, of both kinds
    /// unless both read the same one, from the lower strike to the higher unless either reads
    /// every strike.
    pub fn widen(self, other: ChainSpan) -> ChainSpan {
        let kind = if self.kind == other.kind { self.kind } else { None };
        let strikes = self.strikes.zip(other.strikes).map(|((lo, hi), (l, h))| (lo.min(l), hi.max(h)));
        ChainSpan { from: self.from.min(other.from), to: self.to.max(other.to), kind, strikes }
    }

    /// The span of one contract: its expiry, its kind, its strike.
    pub fn of_leg(leg: &OccSymbol) -> ChainSpan {
        ChainSpan { strikes: Some((leg.strike, leg.strike)), ..ChainSpan::new(leg.expiry, leg.expiry, Some(leg.kind)) }
    }

    /// The span of the contracts `legs`; `None` when there are none.
    pub fn of_legs(legs: impl IntoIterator<Item = OccSymbol>) -> Option<ChainSpan> {
        legs.into_iter().map(|o| ChainSpan::of_leg(&o)).reduce(ChainSpan::widen)
    }
}

/// What a bot sees when it decides.
#[derive(Debug)]
pub struct BotView<'a> {
    pub now: Timestamp,
    /// Its market: the stock session for stocks and options, always for crypto.
    pub market_open: bool,
    /// The stock session by the broker's clock.
    pub session: SessionState,
    /// What this bot owns.
    pub owned: Vec<&'a OwnedPosition>,
    pub quotes: &'a BySymbol<Quote>,
    /// One-minute bars, oldest first.
    pub bars: &'a BySymbol<Vec<Bar>>,
    /// Dollars it may spend on an entry: cash outside the reserve, within its asset class's
    /// buying power.
    pub spendable: f64,
    /// Option contracts of its underlyings (options bots only), by underlying and kind.
    pub contracts: &'a Contracts,
    /// Option snapshots (quote, greeks) of its underlyings' chains, by OCC symbol.
    pub options: &'a Snapshots,
}

/// A new position the bot wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub symbol: String,
    pub side: Side,
    pub amount: Amount,
    pub order_type: OrderType,
    pub limit_price: Option<Dec>,
    pub time_in_force: TimeInForce,
    /// Multi-leg option orders only.
    pub legs: Vec<Leg>,
    /// What the position loses at its stop, in dollars: counted against the open-risk budget.
    pub risk_usd: f64,
}

/// What a bot wants to open this iteration, and for each of its symbols that it does not, why
/// (in words with the numbers: `status` and the `bot_idle` event show it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entries {
    pub wanted: Vec<Entry>,
    pub idle: Vec<(String, Idle)>,
}

impl Entries {
    /// Notes why `symbol` gets no entry.
    pub fn skip(&mut self, symbol: &str, cause: Cause, detail: impl Into<Detail>) {
        self.idle.push((symbol.to_string(), Idle::new(cause, detail)));
    }
}

/// A position (or part of one) the bot wants closed, and the rule that says so.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    /// The symbol, or for an option spread its underlying.
    pub symbol: String,
    pub side: Side,
    /// Shares, coins, contracts, or for a spread the number of spreads.
    pub qty: Dec,
    pub rule: &'static str,
    pub order_type: OrderType,
    pub limit_price: Option<Dec>,
    pub time_in_force: TimeInForce,
    /// A spread closes as one multi-leg order, never leg by leg.
    pub legs: Vec<Leg>,
}

pub trait Bot {
    fn id(&self) -> &str;
    fn kind(&self) -> BotKind;
    /// The symbols it trades (tickers, underlyings or pairs).
    fn symbols(&self) -> &[String];
    fn session(&self) -> &Session;
    /// One-minute bars its signal needs (none: no bars are fetched for it).
    fn bars_needed(&self) -> usize {
        0
    }
    /// Minutes after an exit before it may enter the same symbol again.
    fn cooldown_minutes(&self) -> u32 {
        0
    }
    /// For an options bot, the days to expiry of the chains it reads (its underlyings' contracts
    /// are then fetched, once a day).
    fn option_days(&self) -> Option<(u32, u32)> {
        None
    }
    /// For an options bot, the underlyings whose option snapshots it will read now, and on which
    /// expiry dates, from its bars and what it holds (`today`: the trading date). A chain nobody
    /// reads costs a request a minute, and every expiry in it a price (450 contracts a root over
    /// 60 days, against 50 for the one expiry a held spread needs).
    fn chains_wanted(&self, _bars: &BySymbol<Vec<Bar>>, _owned: &[&OwnedPosition], _today: Date) -> Vec<ChainWant> {
        Vec::new()
    }
    /// Whether its exit rules watch its positions in `symbol` (a ticker, a pair, or an option
    /// leg of one of its underlyings). A position its bot does not watch is an orphan, closed by
    /// the rules it was opened with (`keeper`).
    fn watches(&self, symbol: &str) -> bool {
        let root = OccSymbol::parse(symbol).map(|o| o.root);
        let traded = root.as_deref().unwrap_or(symbol);
        self.symbols().iter().any(|s| s == traded)
    }
    /// How far from the entry its positions rest a protective stop at the broker
    /// (`exits.broker_stop_pct`; `None`: none, the daemon's watch only).
    fn broker_stop_pct(&self) -> Option<f64> {
        None
    }
    /// Its `exits.trailing_stop_pct`, which a resting protective stop follows too.
    fn trailing_stop_pct(&self) -> Option<f64> {
        None
    }
    /// The exit rules its entries open positions with, stored with each entry so they outlive a
    /// change of the configuration (`None`: nothing stored).
    fn position_rules(&self) -> Option<PositionRules> {
        None
    }
    /// Why it never enters, whatever the market (a placeholder signal, a keeper of orphans):
    /// asked before anything else, and `entries` is then not called.
    fn never_enters(&self) -> Option<Idle> {
        None
    }
    /// Exits for what it owns. Called every iteration, halted or not.
    fn exits(&self, view: &BotView) -> Vec<Exit>;
    /// Entries, and why not for the symbols it leaves alone. Called only when the preflight passed.
    fn entries(&self, view: &BotView, budget: &Budget) -> Entries;
}

/// A bot whose signal is a Python placeholder: it holds nothing and never enters.
pub struct PlaceholderBot {
    id: String,
    kind: BotKind,
    symbols: Vec<String>,
    session: Session,
}

impl Bot for PlaceholderBot {
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> BotKind {
        self.kind
    }
    fn symbols(&self) -> &[String] {
        &self.symbols
    }
    fn session(&self) -> &Session {
        &self.session
    }
    /// Nothing: its positions (opened before its signal became a placeholder) are orphans, kept
    /// by the rules they were opened with.
    fn watches(&self, _symbol: &str) -> bool {
        false
    }
    fn exits(&self, _view: &BotView) -> Vec<Exit> {
        Vec::new()
    }
    fn never_enters(&self) -> Option<Idle> {
        Some(Idle::new(Cause::Placeholder, "its signal is a placeholder of the Python daemon: it never enters"))
    }
    fn entries(&self, _view: &BotView, _budget: &Budget) -> Entries {
        Entries::default()
    }
}

/// The enabled bots of a configuration, in the order the execution service runs them: momentum
/// bots as listed, then the options bot, then the crypto bot.
pub fn from_config(cfg: &Config) -> Vec<Box<dyn Bot>> {
    let mut out: Vec<Box<dyn Bot>> = Vec::new();
    for bot in cfg.enabled_bots() {
        // Parsed when the configuration loaded: a placeholder (or an options bot without a
        // signal) becomes a bot that never enters.
        let sig = bot.signal();
        if sig == Signal::Placeholder {
            let session = match bot {
                EnabledBot::Momentum(m) => m.session.clone(),
                EnabledBot::Options(o) => o.session.clone(),
                EnabledBot::Crypto(c) => c.session.clone(),
            };
            out.push(Box::new(PlaceholderBot {
                id: bot.id().to_string(),
                kind: bot.kind(),
                symbols: bot.symbols(),
                session,
            }));
            continue;
        }
        out.push(match bot {
            EnabledBot::Momentum(m) => Box::new(momentum::MomentumBot::new(m, sig, cfg.timezone.clone())),
            EnabledBot::Options(o) => Box::new(options::OptionsBot::new(o, sig, cfg.timezone.clone())),
            EnabledBot::Crypto(c) => Box::new(crypto::CryptoBot::new(c, sig)),
        });
    }
    out
}
