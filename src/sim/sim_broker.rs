//! The simulated broker behind `run --sim`: an in-process paper exchange implementing `Broker`.
//!
//! Owns: a seeded synthetic market (one deterministic minute-by-minute path per symbol, with
//! trending and mean-reverting stretches), an option chain priced by Black-Scholes around each
//! underlying, and an account (cash, positions, orders) kept exactly in `Dec`. Market orders fill
//! at the first minute's price after they arrive, with slippage and fees; limit orders when the
//! price crosses; stop and stop-limit orders of stocks and coins inside the minute (its low or
//! high reaching the stop, a gap filled at the open, a stop-limit missing a gap beyond its limit); multi-leg option orders as one, at their net price. It refuses what
//! Alpaca refuses (buying power, fractional and option rules, crypto time-in-force and minimum,
//! duplicate client order ids, selling what is not held) with Alpaca's status codes and words.
//! Its book lives in the state database, so a restarted `--sim` daemon continues its account (a
//! backtest gives it none: its book lives in memory). Each root's chain is listed once per expiry
//! and centre strike, a new centre's list copying the contracts an earlier one made (`chain`), and
//! priced from one spot a minute, only the kind and strikes asked. The same market's bars,
//! generated ahead for a span of dates, are `backtest --synthetic`'s data (`synthetic_bars`).
//!
//! Never: touches the network, or shorts stock (it refuses a sale of more than is held, and a
//! lone option sold to open; credit spreads are allowed, reserving their maximum loss).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::{Date, Weekday};
use serde::{Deserialize, Serialize};

use crate::core::clock::{self, Clock, MarketCalendar, RegularSession};
use crate::core::config::Sim;
use crate::core::decimal::Dec;
use crate::core::instrument::{AssetClass, OccSymbol, OptionKind, occ_symbol};
use crate::core::market_data::{Bar, BySymbol, Greeks, OptionContract, OptionSnapshot, Quote, Snapshots};
use crate::core::order::{Amount, OrderStatus, OrderType, PositionIntent, Side, TimeInForce};
use crate::core::state::{State, StateError};
use crate::services::broker::{
    Account, Broker, BrokerError, CallStats, MarketClock, Order, OrderRequest, Position, ReplaceRequest, Transfer,
};
use crate::sim::black_scholes;
use crate::sim::replay::Replay;

/// Minutes of history kept per symbol (about two days).
const KEEP_MINUTES: usize = 3000;
/// How far before the start the price paths begin, so bots have history at once.
const WARMUP_MINUTES: i64 = 3 * 1440;
/// Orders kept in the book (open ones are always kept).
const KEEP_ORDERS: usize = 500;
/// The state-database key of the book.
const BOOK_KEY: &str = "sim_book";
/// The simulated account's id in `Account` (a ledger records it as `LedgerAccount::Simulated`).
pub const SIM_ACCOUNT_ID: &str = "simulated";
const RATE: f64 = 0.04;

// ---------------------------------------------------------------------------------------------
// Deterministic randomness
// ---------------------------------------------------------------------------------------------

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn hash3(a: u64, b: u64, c: i64) -> u64 {
    splitmix(splitmix(a ^ splitmix(b)) ^ c as u64)
}

fn uniform(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// A standard normal draw, fixed by its inputs (Box-Muller).
fn normal(seed: u64, key: u64, m: i64) -> f64 {
    let u1 = uniform(hash3(seed, key, m.wrapping_mul(2)));
    let u2 = uniform(hash3(seed, key, m.wrapping_mul(2).wrapping_add(1)));
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn symbol_key(symbol: &str) -> u64 {
    symbol.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// The simulated broker's fee on a fill of `qty` worth `value` dollars of `symbol`: a crypto fee in
/// basis points of the value, a fee per option contract, a fee per share. (The backtest's round
/// trips show each fill's fee by the same rule.)
pub fn fee(cfg: &Sim, symbol: &str, qty: f64, value: f64) -> f64 {
    match AssetClass::of(symbol) {
        AssetClass::Crypto => value.abs() * cfg.crypto_fee_bps / 10_000.0,
        AssetClass::UsOption => qty.abs() * cfg.fee_per_contract,
        _ => qty.abs() * cfg.fee_per_share,
    }
}

fn minute_of(t: Timestamp) -> i64 {
    t.as_second().div_euclid(60)
}

fn minute_start(m: i64) -> Timestamp {
    Timestamp::from_second(m.saturating_mul(60)).unwrap_or(Timestamp::MAX)
}

// ---------------------------------------------------------------------------------------------
// The market
// ---------------------------------------------------------------------------------------------

fn base_price(symbol: &str) -> f64 {
    match symbol {
        "SPY" => 480.0,
        "QQQ" => 410.0,
        "IWM" => 200.0,
        "AAPL" => 190.0,
        "TSLA" => 250.0,
        "MSFT" => 380.0,
        "BTC/USD" => 60_000.0,
        "ETH/USD" => 3_000.0,
        other => 20.0 + (symbol_key(other) % 28_000) as f64 / 100.0,
    }
}

fn is_crypto(symbol: &str) -> bool {
    AssetClass::of(symbol) == AssetClass::Crypto
}

/// One symbol's price path: `closes[i]` is the close of minute `first + i`.
struct Path {
    key: u64,
    base: f64,
    vol: f64,
    /// The minute the path starts from (at its base price).
    origin: i64,
    first: i64,
    closes: VecDeque<f64>,
}

impl Path {
    fn new(symbol: &str, origin: i64, annual_vol: f64) -> Path {
        let vol = if is_crypto(symbol) {
            1.6 * annual_vol / (365.0f64 * 1440.0).sqrt()
        } else {
            annual_vol / (252.0f64 * 390.0).sqrt()
        };
        let base = base_price(symbol);
        Path { key: symbol_key(symbol), base, vol, origin, first: origin, closes: VecDeque::from([base]) }
    }

    /// Trending up, trending down, or pulled back toward its base: a new regime every 3 hours.
    /// The draws depend on the minute's distance from the path's origin, not on the calendar, so
    /// a seed gives the same market whatever day the simulation starts.
    fn step(&self, seed: u64, m: i64, prev: f64) -> f64 {
        let m = m - self.origin;
        let drift = match hash3(seed, self.key ^ 0x5EED, m.div_euclid(180)) % 3 {
            0 => 0.08 * self.vol,
            1 => -0.08 * self.vol,
            _ => -0.02 * (prev / self.base).ln(),
        };
        prev * (drift + self.vol * normal(seed, self.key, m)).exp()
    }

    fn close(&mut self, seed: u64, m: i64) -> f64 {
        if m < self.first {
            return self.closes[0];
        }
        while self.first + (self.closes.len() as i64) <= m {
            let prev = *self.closes.back().unwrap_or(&self.base);
            let next = self.step(seed, self.first + self.closes.len() as i64, prev);
            self.closes.push_back(next);
            if self.closes.len() > KEEP_MINUTES {
                self.closes.pop_front();
                self.first += 1;
            }
        }
        self.closes[(m - self.first) as usize]
    }

    fn bar(&mut self, seed: u64, m: i64) -> Bar {
        let open = self.close(seed, m - 1);
        let close = self.close(seed, m);
        let wiggle = |salt: i64| {
            1.0 + 0.3 * self.vol * normal(seed, self.key ^ 0xB0B, m.wrapping_mul(4).wrapping_add(salt)).abs()
        };
        let high = open.max(close) * wiggle(1);
        let low = open.min(close) / wiggle(2);
        let volume =
            (if is_crypto_key(self.base) { 2.0 } else { 20_000.0 }) * (0.5 + uniform(hash3(seed, self.key, m)));
        Bar { t: minute_start(m), open, high, low, close, volume: volume.round() }
    }
}

fn is_crypto_key(base: f64) -> bool {
    base >= 1000.0
}

struct Market {
    seed: u64,
    origin: i64,
    vol: f64,
    paths: BTreeMap<String, Path>,
    /// Recorded bars replayed instead of the synthetic paths (a backtest). A symbol without
    /// recorded bars keeps its synthetic path.
    replay: Replay,
}

impl Market {
    fn path(&mut self, symbol: &str) -> &mut Path {
        let (origin, vol) = (self.origin, self.vol);
        self.paths.entry(symbol.to_string()).or_insert_with(|| Path::new(symbol, origin, vol))
    }

    /// The price of a stock or crypto pair at minute `m`: a recorded bar's close (the last bar
    /// that began before the minute did), or the synthetic path's.
    fn price(&mut self, symbol: &str, m: i64) -> f64 {
        if let Some(bar) = self.replay.recorded(symbol, minute_start(m) - jiff::SignedDuration::from_secs(1)) {
            return bar.map_or(f64::NAN, |b| b.close);
        }
        let seed = self.seed;
        self.path(symbol).close(seed, m)
    }

    fn bar(&mut self, symbol: &str, m: i64) -> Bar {
        let seed = self.seed;
        self.path(symbol).bar(seed, m)
    }

    /// The minute whose close is `price(symbol, m)`, as a bar: its open, high and low are what a
    /// resting stop sees inside it.
    fn minute_bar(&mut self, symbol: &str, m: i64) -> Option<Bar> {
        if let Some(bar) = self.replay.recorded(symbol, minute_start(m) - jiff::SignedDuration::from_secs(1)) {
            return bar;
        }
        Some(self.bar(symbol, m))
    }

    /// Black-Scholes price, delta and implied volatility of an OCC option at minute `m`.
    fn option(&mut self, symbol: &str, m: i64) -> Option<(f64, f64, f64)> {
        let OccSymbol { root, expiry, kind, strike } = OccSymbol::parse(symbol)?;
        let spot = self.price(&root, m);
        Some(self.price_option(spot, kind, strike.to_f64(), expiry_close(expiry), m))
    }

    /// The same for a contract of strike `k` expiring at `expires` with the underlying at `spot`,
    /// with a mild put skew.
    fn price_option(&self, spot: f64, kind: OptionKind, k: f64, expires: Timestamp, m: i64) -> (f64, f64, f64) {
        let years = (expires.as_second() - minute_start(m).as_second()) as f64 / (365.0 * 86_400.0);
        let iv = self.vol * (1.0 + 0.3 * ((k / spot) - 1.0).abs() + if kind == OptionKind::Put { 0.05 } else { 0.0 });
        let is_call = kind == OptionKind::Call;
        let (price, delta) = black_scholes::price_and_delta(is_call, spot, k, years, RATE, iv);
        // Listed equity options are American: never worth less than exercising them now.
        let intrinsic = if is_call { (spot - k).max(0.0) } else { (k - spot).max(0.0) };
        (price.max(intrinsic), delta, iv)
    }
}

/// One listed contract of the simulated chain, with what pricing it needs.
#[derive(Clone)]
struct Listed {
    contract: OptionContract,
    strike: f64,
    expires: Timestamp,
    /// `symbol_key` of its symbol, for the seeded daily volume.
    key: u64,
}

/// A root's chains as listed. `lists`: by expiry and centre strike (the strike's `f64` bits, a
/// whole multiple of the strike step), the least recently read first (`kept`): an expiry listed
/// around one centre lists the same contracts every time, so each list is made once, not once a
/// minute (in a backtest every step is a new minute, and the spot wanders between a few centres
/// all day) — and not again when the span of dates asked for moves by a day, as it does every
/// day. `made`: every contract listed so far, by expiry, then puts after calls, then strike: a
/// list around a new centre shares 48 of its 50 contracts with its neighbour's, and copies them
/// from here instead of writing their symbols again (over a year the spot wanders across
/// hundreds of strikes, and writing symbols was a twelfth of the run; an expiry's contracts go
/// once it is past, a strike's once the spot is far from it).
#[derive(Default)]
struct Chains {
    lists: Vec<((Date, u64), Vec<Listed>)>,
    made: BTreeMap<Date, BTreeMap<(bool, Dec), Listed>>,
}

/// Expiries (by centre) kept per root; a new one beyond these takes the place of the least
/// recently read. 32: two centres of a 16-Friday window.
const EXPIRIES_KEPT: usize = 32;

/// The value under `key` in `items` (the least recently read first), made by `make` when it is
/// missing; beyond `cap` items the least recently read gives its place.
fn kept<K: PartialEq, V>(items: &mut Vec<(K, V)>, key: K, cap: usize, make: impl FnOnce() -> V) -> &mut V {
    match items.iter().position(|(k, _)| *k == key) {
        Some(i) => {
            let hit = items.remove(i);
            items.push(hit);
        }
        None => {
            if items.len() >= cap {
                items.remove(0);
            }
            items.push((key, make()));
        }
    }
    // Not empty: an item was just pushed.
    let last = items.len() - 1;
    &mut items[last].1
}

/// 16:00 New York on the expiry date.
fn expiry_close(d: Date) -> Timestamp {
    d.to_datetime(RegularSession::CLOSE.to_time())
        .to_zoned_datetime(clock::market_tz())
        .map_or(Timestamp::MAX, |z| z.timestamp())
}

// ---------------------------------------------------------------------------------------------
// The book
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct BookLeg {
    symbol: String,
    ratio: u32,
    intent: String,
    /// Its price when the order filled.
    #[serde(default)]
    fill_price: Option<Dec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct BookOrder {
    id: String,
    client_order_id: String,
    symbol: String,
    side: String,
    qty: Option<Dec>,
    notional: Option<Dec>,
    order_type: String,
    tif: String,
    limit_price: Option<Dec>,
    stop_price: Option<Dec>,
    status: String,
    filled_qty: Dec,
    filled_avg_price: Option<Dec>,
    created_at: i64,
    /// When it filled (seconds), as Alpaca's `filled_at`.
    #[serde(default)]
    filled_at: Option<i64>,
    /// The first minute at which it may fill: the one after it arrived.
    fill_from_minute: i64,
    /// Buying power held while it is open.
    reserved: Dec,
    legs: Vec<BookLeg>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct BookPosition {
    qty: Dec,
    avg_price: Dec,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Book {
    seed: u64,
    origin_minute: i64,
    /// The simulated time last seen: a restart continues from here.
    sim_time: i64,
    cash: Dec,
    positions: BTreeMap<String, BookPosition>,
    orders: Vec<BookOrder>,
    next_id: u64,
    /// The equity at the end of the previous trading date (Alpaca's `last_equity`).
    last_equity: Option<Dec>,
    trading_date: String,
}

impl Book {
    /// A new account at `now` with the starting cash, its market `seed`'s from minute `origin`.
    fn fresh(now: Timestamp, cfg: &Sim, seed: u64, origin: i64) -> Book {
        Book {
            seed,
            origin_minute: origin,
            sim_time: now.as_second(),
            cash: cents(cfg.starting_cash),
            positions: BTreeMap::new(),
            orders: Vec::new(),
            next_id: 1,
            last_equity: None,
            trading_date: clock::trading_date(now).to_string(),
        }
    }
}

fn rejected(status: u16, code: u64, message: impl Into<String>) -> BrokerError {
    BrokerError::Rejected { endpoint: "POST /v2/orders".into(), status, code: Some(code), message: message.into() }
}

fn dec(v: f64) -> Dec {
    Dec::from_f64(v).unwrap_or(Dec::ZERO)
}

/// Money is kept to the cent; prices to the cent above $1 and to 1/100 of a cent below.
fn cents(v: f64) -> Dec {
    dec(v).round_to(2)
}

fn price_dec(v: f64) -> Dec {
    if v >= 1.0 { dec(v).round_to(2) } else { dec(v).round_to(4) }
}

pub struct SimBroker {
    clock: Arc<dyn Clock + Send + Sync>,
    cfg: Sim,
    market: Market,
    book: Book,
    store: Option<State>,
    stats: CallStats,
    /// The simulated second the book was last written at.
    saved_at: i64,
    /// Each root's option chain as last listed.
    chains: BTreeMap<String, Chains>,
    /// No order of the book before this index is open (orders open only when added, at the
    /// end), so the open ones are looked for from here: the book keeps 500 orders and is
    /// searched for open ones several times a call.
    open_from: usize,
}

/// The simulated market's one-minute bars of `symbols` from `from` until `to`: stocks in the
/// regular session (the price walks on overnight, so a day opens with a gap), crypto every minute.
/// Each path starts at `from` from its symbol's base price and draws by its distance from `from`,
/// so the same seed and symbols give the same prices whatever the dates (`backtest --synthetic`).
pub fn synthetic_bars(
    symbols: &[String],
    seed: u64,
    annual_vol: f64,
    from: Timestamp,
    to: Timestamp,
) -> BySymbol<Vec<Bar>> {
    let origin = minute_of(from);
    let mut market = Market { seed, origin, vol: annual_vol, paths: BTreeMap::new(), replay: Replay::none() };
    let mut out = BySymbol::new();
    for symbol in symbols {
        let stock = !is_crypto(symbol);
        let mut open = SimBroker::session_minutes();
        let bars: Vec<Bar> =
            (origin..minute_of(to)).filter(|m| !stock || open(*m)).map(|m| market.bar(symbol, m)).collect();
        out.insert(symbol.clone(), bars);
    }
    out
}

impl SimBroker {
    /// A new simulated account, or the one stored in `store` (whose seed then wins over `seed`).
    pub fn open(
        clock: Arc<dyn Clock + Send + Sync>,
        cfg: Sim,
        seed: u64,
        store: Option<State>,
    ) -> Result<SimBroker, StateError> {
        let now = clock.now();
        let stored = match &store {
            Some(s) => s.kv_get(BOOK_KEY)?,
            None => None,
        };
        let book = match stored {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StateError::BadRow { what: "kv.sim_book", detail: e.to_string() })?,
            None => Book::fresh(now, &cfg, seed, minute_of(now) - WARMUP_MINUTES),
        };
        Ok(SimBroker::with_book(clock, cfg, book, store))
    }

    /// A new simulated account, kept in memory, on the market of `seed` whose paths start at
    /// minute `origin` (`stored_market`): the same prices, minute for minute, as that account's.
    pub fn on_market(clock: Arc<dyn Clock + Send + Sync>, cfg: Sim, seed: u64, origin: i64) -> SimBroker {
        let book = Book::fresh(clock.now(), &cfg, seed, origin);
        SimBroker::with_book(clock, cfg, book, None)
    }

    fn with_book(clock: Arc<dyn Clock + Send + Sync>, cfg: Sim, book: Book, store: Option<State>) -> SimBroker {
        let market = Market {
            seed: book.seed,
            origin: book.origin_minute,
            vol: cfg.volatility,
            paths: BTreeMap::new(),
            replay: Replay::none(),
        };
        SimBroker {
            clock,
            cfg,
            market,
            book,
            store,
            stats: CallStats::default(),
            saved_at: i64::MIN,
            chains: BTreeMap::new(),
            open_from: 0,
        }
    }

    /// Replays recorded one-minute bars (oldest first) instead of the synthetic market, for the
    /// symbols given; options on them are priced by Black-Scholes from the recorded prices. Held
    /// bars are shared: a parameter sweep runs many simulations over one copy.
    pub fn replay(&mut self, bars: Replay) {
        self.market.replay = bars;
    }

    /// The market of the simulated account stored in `store`: its seed and the minute its
    /// price paths start from (`replay` runs a fresh account on that very market).
    pub fn stored_market(store: &State) -> Result<Option<(u64, i64)>, StateError> {
        let Some(text) = store.kv_get(BOOK_KEY)? else { return Ok(None) };
        let book: Book = serde_json::from_str(&text)
            .map_err(|e| StateError::BadRow { what: "kv.sim_book", detail: e.to_string() })?;
        Ok(Some((book.seed, book.origin_minute)))
    }

    /// Where a restarted simulation resumes its clock: the simulated time stored in `store`.
    pub fn stored_time(store: &State) -> Result<Option<Timestamp>, StateError> {
        let Some(text) = store.kv_get(BOOK_KEY)? else { return Ok(None) };
        let book: Book = serde_json::from_str(&text)
            .map_err(|e| StateError::BadRow { what: "kv.sim_book", detail: e.to_string() })?;
        Ok(Timestamp::from_second(book.sim_time).ok())
    }

    fn save(&mut self) -> Result<(), BrokerError> {
        self.saved_at = self.book.sim_time;
        if let Some(store) = &self.store {
            let text = serde_json::to_string(&self.book).map_err(|e| BrokerError::Invalid { detail: e.to_string() })?;
            store
                .kv_set(BOOK_KEY, &text, Timestamp::from_second(self.book.sim_time).unwrap_or(Timestamp::UNIX_EPOCH))
                .map_err(|e| BrokerError::Transient {
                    endpoint: "sim book".into(),
                    status: None,
                    detail: e.to_string(),
                })?;
        }
        Ok(())
    }

    fn stock_open(now: Timestamp) -> bool {
        RegularSession.session_at(now).is_open
    }

    /// `stock_open` for minute after minute, oldest first: one session computed per open or
    /// closed stretch instead of one per minute (a time-zone conversion each).
    fn session_minutes() -> impl FnMut(i64) -> bool {
        let mut known: Option<(bool, i64)> = None;
        move |m| match known {
            Some((open, until)) if m < until => open,
            _ => {
                let s = RegularSession.session_at(minute_start(m));
                let (open, until) = if s.is_open { (true, s.next_close) } else { (false, s.next_open) };
                // The stretch ends at the minute its boundary falls in (the session's are whole minutes).
                known = Some((open, minute_of(until).max(m + 1)));
                open
            }
        }
    }

    /// The price of a position's symbol (an option's Black-Scholes value).
    fn mark(&mut self, symbol: &str, m: i64) -> f64 {
        match AssetClass::of(symbol) {
            AssetClass::UsOption => self.market.option(symbol, m).map_or(0.0, |o| o.0),
            _ => self.market.price(symbol, m),
        }
    }

    fn multiplier(symbol: &str) -> Dec {
        Dec::from_int(crate::core::instrument::multiplier(symbol))
    }

    fn equity(&mut self, m: i64) -> Dec {
        let mut equity = self.book.cash;
        let held: Vec<(String, Dec)> = self.book.positions.iter().map(|(s, p)| (s.clone(), p.qty)).collect();
        for (symbol, qty) in held {
            let value = qty.to_f64() * self.mark(&symbol, m) * Self::multiplier(&symbol).to_f64();
            equity = equity.checked_add(cents(value)).unwrap_or(equity);
        }
        equity
    }

    fn reserved(&self) -> Dec {
        self.maybe_open().filter(|o| is_open(&o.status)).fold(Dec::ZERO, |a, o| a.checked_add(o.reserved).unwrap_or(a))
    }

    fn buying_power(&self) -> Dec {
        self.book.cash.checked_sub(self.reserved()).unwrap_or(Dec::ZERO).max(Dec::ZERO)
    }

    /// Moves the book to `now`: a new trading date records yesterday's equity; open orders fill,
    /// trigger or expire.
    fn settle(&mut self) -> Result<(), BrokerError> {
        let now = self.clock.now();
        let m = minute_of(now);
        let date = clock::trading_date(now).to_string();
        let mut changed = false;
        if date != self.book.trading_date {
            self.book.last_equity = Some(self.equity(m));
            self.book.trading_date = date;
            changed = true;
        }
        self.book.sim_time = now.as_second();
        for i in self.open_from..self.book.orders.len() {
            if !is_open(&self.book.orders[i].status) || m < self.book.orders[i].fill_from_minute {
                continue;
            }
            changed |= self.work_order(i, now, m);
        }
        if changed {
            self.trim_orders();
        }
        self.move_open_from();
        // The book is written when it changed, and otherwise once a simulated minute (so a
        // restart resumes its clock): writing it on every call cost most of a backtest's time.
        if changed || now.as_second().saturating_sub(self.saved_at) >= 60 {
            self.save()?;
        }
        Ok(())
    }

    /// Fills, triggers or expires one open order at minute `m`; whether it changed.
    fn work_order(&mut self, i: usize, now: Timestamp, m: i64) -> bool {
        let o = self.book.orders[i].clone();
        let class = if o.legs.is_empty() { AssetClass::of(&o.symbol) } else { AssetClass::UsOption };
        let created = Timestamp::from_second(o.created_at).unwrap_or(now);
        if o.tif == "day" && class != AssetClass::Crypto {
            // The close of the session it was placed in, or of the next one if placed outside.
            if now >= RegularSession.session_at(created).next_close {
                self.book.orders[i].status = "expired".into();
                return true;
            }
        }
        if class != AssetClass::Crypto && !Self::stock_open(now) {
            return false;
        }
        let buy = o.side == "buy";
        let (price, per_unit_mult) = if o.legs.is_empty() {
            (self.mark(&o.symbol, m), Self::multiplier(&o.symbol).to_f64())
        } else {
            let mut net = 0.0;
            for leg in &o.legs {
                let p = self.mark(&leg.symbol, m);
                let sign = if leg.intent.starts_with("buy") { 1.0 } else { -1.0 };
                net += sign * p * leg.ratio as f64;
            }
            (net, 100.0)
        };
        let slip = self.cfg.slippage_bps / 10_000.0;
        let fill = match o.order_type.as_str() {
            "market" => {
                Some(if buy || !o.legs.is_empty() { price + price.abs() * slip } else { price - price.abs() * slip })
            }
            "limit" => {
                let limit = o.limit_price.map_or(f64::NAN, Dec::to_f64);
                let crosses = if buy || !o.legs.is_empty() { price <= limit } else { price >= limit };
                crosses.then_some(if !o.legs.is_empty() { limit.min(price) } else { price })
            }
            "stop" | "stop_limit" if o.legs.is_empty() && class != AssetClass::UsOption => {
                self.stop_fill(&o, buy, m, slip)
            }
            "stop" | "stop_limit" => {
                let stop = o.stop_price.map_or(f64::NAN, Dec::to_f64);
                let triggered = if buy { price >= stop } else { price <= stop };
                match (triggered, o.order_type.as_str(), o.limit_price) {
                    (false, _, _) => None,
                    (true, "stop_limit", Some(l)) => {
                        let l = l.to_f64();
                        let ok = if buy { price <= l } else { price >= l };
                        ok.then_some(price)
                    }
                    (true, _, _) => Some(if buy { price * (1.0 + slip) } else { price * (1.0 - slip) }),
                }
            }
            _ => None,
        };
        let Some(fill_price) = fill else {
            if o.tif == "ioc" || o.tif == "fok" {
                self.book.orders[i].status = "canceled".into();
                return true;
            }
            return false;
        };
        self.apply_fill(i, fill_price, per_unit_mult);
        true
    }

    /// A resting stop (or stop-limit) of a stock or coin, inside minute `m`: triggered when the
    /// minute's high (a buy) or low (a sell) reaches the stop — filled at the stop, or at the open
    /// when the price gapped through it. A stop-limit then fills only at its limit or better: a
    /// gap beyond the limit misses, unless the minute comes back to the limit.
    fn stop_fill(&mut self, o: &BookOrder, buy: bool, m: i64, slip: f64) -> Option<f64> {
        let stop = o.stop_price.map_or(f64::NAN, Dec::to_f64);
        let bar = self.market.minute_bar(&o.symbol, m)?;
        let triggered = if buy { bar.high >= stop } else { bar.low <= stop };
        if !triggered {
            return None;
        }
        let at = if buy { bar.open.max(stop) } else { bar.open.min(stop) };
        match (o.order_type.as_str(), o.limit_price) {
            ("stop_limit", Some(l)) => {
                let l = l.to_f64();
                let within = if buy { at <= l } else { at >= l };
                let back = if buy { bar.low <= l } else { bar.high >= l };
                if within { Some(at) } else { back.then_some(l) }
            }
            _ => Some(if buy { at * (1.0 + slip) } else { at * (1.0 - slip) }),
        }
    }

    fn apply_fill(&mut self, i: usize, fill_price: f64, mult: f64) {
        let o = self.book.orders[i].clone();
        let fill_dec = if o.legs.is_empty() { price_dec(fill_price) } else { cents(fill_price) };
        let qty = match (o.qty, o.notional) {
            (Some(q), _) => q,
            (None, Some(n)) => dec(n.to_f64() / fill_price).round_down(9),
            _ => Dec::ZERO,
        };
        let q = qty.to_f64();
        if o.legs.is_empty() {
            let signed = if o.side == "buy" { qty } else { Dec::ZERO.checked_sub(qty).unwrap_or(Dec::ZERO) };
            let value = q * fill_dec.to_f64() * mult;
            let fee = self.fee(&o.symbol, q, value);
            let cash_change = if o.side == "buy" { -value - fee } else { value - fee };
            self.book.cash = self.book.cash.checked_add(cents(cash_change)).unwrap_or(self.book.cash);
            self.add_position(&o.symbol, signed, fill_dec);
        } else {
            let mut cash_change = -(fill_dec.to_f64() * q * mult);
            // Each leg at its mark, the first one carrying what the net fill differs by
            // (slippage), so the legs add up to the net price the order filled at.
            let m = minute_of(self.clock.now());
            let sign = |intent: &str| if intent.starts_with("buy") { 1.0 } else { -1.0 };
            let mut prices: Vec<f64> = o.legs.iter().map(|l| self.mark(&l.symbol, m)).collect();
            let at_marks: f64 = o.legs.iter().zip(&prices).map(|(l, p)| sign(&l.intent) * p * l.ratio as f64).sum();
            if let Some(first) = o.legs.first() {
                prices[0] =
                    (prices[0] + (fill_dec.to_f64() - at_marks) / (sign(&first.intent) * first.ratio as f64)).max(0.0);
            }
            for (j, leg) in o.legs.iter().enumerate() {
                let leg_qty = Dec::from_int(leg.ratio as i64 * q as i64);
                let signed = if leg.intent.starts_with("buy") {
                    leg_qty
                } else {
                    Dec::ZERO.checked_sub(leg_qty).unwrap_or(Dec::ZERO)
                };
                let leg_price = price_dec(prices[j]);
                self.add_position(&leg.symbol, signed, leg_price);
                self.book.orders[i].legs[j].fill_price = Some(leg_price);
                cash_change -= self.cfg.fee_per_contract * leg_qty.to_f64();
            }
            self.book.cash = self.book.cash.checked_add(cents(cash_change)).unwrap_or(self.book.cash);
        }
        let ord = &mut self.book.orders[i];
        ord.status = "filled".into();
        ord.filled_qty = qty;
        ord.filled_avg_price = Some(fill_dec);
        ord.filled_at = Some(self.clock.now().as_second());
        ord.reserved = Dec::ZERO;
    }

    fn fee(&self, symbol: &str, qty: f64, value: f64) -> f64 {
        fee(&self.cfg, symbol, qty, value)
    }

    fn add_position(&mut self, symbol: &str, signed_qty: Dec, price: Dec) {
        let entry =
            self.book.positions.entry(symbol.to_string()).or_insert(BookPosition { qty: Dec::ZERO, avg_price: price });
        let old = entry.qty;
        let new = old.checked_add(signed_qty).unwrap_or(old);
        let same_direction = old.is_zero() || (old.is_negative() == signed_qty.is_negative());
        if same_direction && !new.is_zero() {
            // Weighted average entry price of an increased position.
            let avg = (old.to_f64().abs() * entry.avg_price.to_f64() + signed_qty.to_f64().abs() * price.to_f64())
                / new.to_f64().abs();
            entry.avg_price = price_dec(avg);
        } else if !new.is_zero() && new.is_negative() != old.is_negative() {
            entry.avg_price = price;
        }
        entry.qty = new;
        if new.is_zero() {
            self.book.positions.remove(symbol);
        }
    }

    /// The orders from the first that may be open (`open_from`).
    fn maybe_open(&self) -> impl Iterator<Item = &BookOrder> {
        self.book.orders.get(self.open_from..).unwrap_or_default().iter()
    }

    /// Moves `open_from` past the orders that are no longer open.
    fn move_open_from(&mut self) {
        let orders = &self.book.orders;
        let mut i = self.open_from.min(orders.len());
        while i < orders.len() && !is_open(&orders[i].status) {
            i += 1;
        }
        self.open_from = i;
    }

    fn trim_orders(&mut self) {
        let excess = self.book.orders.len().saturating_sub(KEEP_ORDERS);
        if excess > 0 {
            // The indices move: look for the first open order again from the start.
            self.open_from = 0;
            let mut dropped = 0;
            self.book.orders.retain(|o| {
                if dropped < excess && !is_open(&o.status) {
                    dropped += 1;
                    false
                } else {
                    true
                }
            });
        }
    }

    fn held(&self, symbol: &str) -> Dec {
        self.book.positions.get(symbol).map_or(Dec::ZERO, |p| p.qty)
    }

    /// Quantity already promised to open sell orders of `symbol`.
    fn pending_sells(&self, symbol: &str) -> Dec {
        self.maybe_open()
            .filter(|o| is_open(&o.status) && o.symbol == symbol && o.side == "sell")
            .fold(Dec::ZERO, |a, o| a.checked_add(o.qty.unwrap_or(Dec::ZERO)).unwrap_or(a))
    }

    /// Alpaca's rules, then the account's means. `Ok` is the buying power to hold.
    fn admit(&mut self, r: &OrderRequest, m: i64) -> Result<Dec, BrokerError> {
        if self.book.orders.iter().any(|o| o.client_order_id == r.client_order_id) {
            return Err(rejected(422, 40010001, "client_order_id must be unique"));
        }
        if !r.legs.is_empty() {
            return self.admit_mleg(r, m);
        }
        let class = AssetClass::of(&r.symbol);
        let tif = r.time_in_force;
        let (qty, notional) = match r.amount {
            Amount::Qty(q) => (Some(q), None),
            Amount::Notional(n) => (None, Some(n)),
        };
        let price = self.mark(&r.symbol, m);
        let est_value = match (qty, notional) {
            (Some(q), _) => q.to_f64() * price * Self::multiplier(&r.symbol).to_f64(),
            (_, Some(n)) => n.to_f64(),
            _ => 0.0,
        };
        match class {
            AssetClass::Crypto => {
                if !matches!(tif, TimeInForce::Gtc | TimeInForce::Ioc) {
                    return Err(rejected(422, 42210000, "invalid crypto time_in_force"));
                }
                if !matches!(r.order_type, OrderType::Market | OrderType::Limit | OrderType::StopLimit) {
                    return Err(rejected(422, 42210000, "invalid order type for crypto order"));
                }
                if r.side == Side::Buy && est_value < 10.0 {
                    return Err(rejected(403, 40310000, "cost basis must be >= minimal amount of order 10"));
                }
            }
            AssetClass::UsOption => {
                if qty.is_none_or(|q| !q.is_whole()) {
                    return Err(rejected(422, 40010001, "qty must be integer"));
                }
                if tif != TimeInForce::Day {
                    return Err(rejected(422, 42210000, "options orders only allow time_in_force day"));
                }
                if r.extended_hours {
                    return Err(rejected(422, 42210000, "extended hours not supported for options"));
                }
                if r.side == Side::Sell && self.held(&r.symbol) <= Dec::ZERO {
                    return Err(rejected(403, 40310000, "account not eligible to trade uncovered option contracts"));
                }
            }
            _ => {
                let fractional = notional.is_some() || qty.is_some_and(|q| !q.is_whole());
                if fractional
                    && (tif != TimeInForce::Day
                        || !matches!(
                            r.order_type,
                            OrderType::Market | OrderType::Limit | OrderType::Stop | OrderType::StopLimit
                        ))
                {
                    return Err(rejected(422, 42210000, "fractional orders must be DAY orders"));
                }
            }
        }
        match r.side {
            Side::Buy => {
                let cost = cents(
                    est_value * (1.0 + self.cfg.slippage_bps / 10_000.0)
                        + self.fee(&r.symbol, qty.map_or(0.0, Dec::to_f64), est_value),
                );
                if cost > self.buying_power() {
                    return Err(rejected(403, 40310000, "insufficient buying power"));
                }
                Ok(cost)
            }
            Side::Sell => {
                let available = self.held(&r.symbol).checked_sub(self.pending_sells(&r.symbol)).unwrap_or(Dec::ZERO);
                let wanted = qty.unwrap_or_else(|| dec(est_value / price.max(1e-9)).round_down(9));
                if wanted > available {
                    return Err(rejected(
                        403,
                        40310000,
                        format!(
                            "insufficient qty available for order (requested: {wanted}, available: {})",
                            available.max(Dec::ZERO)
                        ),
                    ));
                }
                Ok(Dec::ZERO)
            }
        }
    }

    /// Multi-leg option orders: 2–4 option legs on one underlying; what opens must have a bounded
    /// loss (a spread, not a naked short), and that loss is the buying power it holds.
    fn admit_mleg(&mut self, r: &OrderRequest, m: i64) -> Result<Dec, BrokerError> {
        if !(2..=4).contains(&r.legs.len()) {
            return Err(rejected(422, 40010001, "mleg orders need 2 to 4 legs"));
        }
        if r.time_in_force != TimeInForce::Day {
            return Err(rejected(422, 42210000, "options orders only allow time_in_force day"));
        }
        let Amount::Qty(q) = r.amount else { return Err(rejected(422, 40010001, "mleg orders take qty")) };
        if !q.is_whole() {
            return Err(rejected(422, 40010001, "qty must be integer"));
        }
        let mut legs = Vec::new();
        let mut root = None;
        for leg in &r.legs {
            let Some(OccSymbol { root: leg_root, kind, strike, .. }) = OccSymbol::parse(&leg.symbol) else {
                return Err(rejected(422, 40010001, format!("{} is not an option symbol", leg.symbol)));
            };
            if root.get_or_insert_with(|| leg_root.clone()) != &leg_root {
                return Err(rejected(422, 40010001, "all legs must share one underlying"));
            }
            let n = (leg.ratio_qty as f64) * q.to_f64();
            match leg.position_intent {
                PositionIntent::BuyToClose if self.held(&leg.symbol) >= Dec::ZERO => {
                    return Err(rejected(403, 40310000, format!("no short position in {} to close", leg.symbol)));
                }
                PositionIntent::SellToClose if self.held(&leg.symbol) <= Dec::ZERO => {
                    return Err(rejected(403, 40310000, format!("no long position in {} to close", leg.symbol)));
                }
                _ => {}
            }
            let sign = if leg.position_intent.side() == Side::Buy { 1.0 } else { -1.0 };
            let opening = matches!(leg.position_intent, PositionIntent::BuyToOpen | PositionIntent::SellToOpen);
            legs.push((kind, strike.to_f64(), sign * n, opening));
        }
        // The premium paid (positive) or received (negative) at the limit, else at the marks.
        let premium = match r.limit_price {
            Some(l) => l.to_f64() * q.to_f64() * 100.0,
            None => {
                let mut net = 0.0;
                for (leg, (_, _, signed, _)) in r.legs.iter().zip(&legs) {
                    net += self.mark(&leg.symbol, m) * signed * 100.0;
                }
                net
            }
        };
        // Payoff at expiry is piecewise linear in the underlying: its worst case is at 0, at a
        // strike, or unbounded when more calls are short than long.
        let opening: Vec<_> = legs.iter().filter(|l| l.3).collect();
        let call_slope: f64 = opening.iter().filter(|l| l.0 == OptionKind::Call).map(|l| l.2).sum();
        if call_slope < 0.0 {
            return Err(rejected(403, 40310000, "account not eligible to trade uncovered option contracts"));
        }
        let payoff = |s: f64| -> f64 {
            opening
                .iter()
                .map(|(kind, k, signed, _)| {
                    let intrinsic = if *kind == OptionKind::Call { (s - k).max(0.0) } else { (k - s).max(0.0) };
                    intrinsic * signed * 100.0
                })
                .sum::<f64>()
        };
        let mut worst = payoff(0.0);
        for (_, k, _, _) in &opening {
            worst = worst.min(payoff(*k));
        }
        let max_loss = (premium - worst).max(0.0);
        let hold = cents(max_loss + self.cfg.fee_per_contract * q.to_f64() * r.legs.len() as f64);
        if !opening.is_empty() && hold > self.buying_power() {
            return Err(rejected(403, 40310000, "insufficient options buying power"));
        }
        Ok(if opening.is_empty() { Dec::ZERO } else { hold })
    }

    fn to_order(&self, o: &BookOrder) -> Order {
        let mleg = !o.legs.is_empty();
        let class = if mleg { AssetClass::Other } else { AssetClass::of(&o.symbol) };
        Order {
            id: o.id.clone(),
            client_order_id: o.client_order_id.clone(),
            symbol: o.symbol.clone(),
            asset_class: class,
            side: if mleg { None } else { Side::parse(&o.side) },
            order_type: OrderType::parse(&o.order_type),
            time_in_force: TimeInForce::parse(&o.tif),
            qty: o.qty,
            notional: o.notional,
            filled_qty: Some(o.filled_qty),
            filled_avg_price: o.filled_avg_price,
            limit_price: o.limit_price,
            stop_price: o.stop_price,
            status: OrderStatus::parse(&o.status),
            order_class: if mleg { "mleg".into() } else { "simple".into() },
            position_intent: None,
            legs: o
                .legs
                .iter()
                .map(|l| Order {
                    id: String::new(),
                    client_order_id: String::new(),
                    symbol: l.symbol.clone(),
                    asset_class: AssetClass::UsOption,
                    side: Side::parse(if l.intent.starts_with("buy") { "buy" } else { "sell" }),
                    order_type: None,
                    time_in_force: TimeInForce::parse(&o.tif),
                    qty: o.qty.map(|q| Dec::from_int(q.to_f64() as i64 * l.ratio as i64)),
                    notional: None,
                    filled_qty: Some(if o.status == "filled" {
                        o.qty.map_or(Dec::ZERO, |q| Dec::from_int(q.to_f64() as i64 * l.ratio as i64))
                    } else {
                        Dec::ZERO
                    }),
                    filled_avg_price: l.fill_price,
                    limit_price: None,
                    stop_price: None,
                    status: OrderStatus::parse(&o.status),
                    order_class: "mleg".into(),
                    position_intent: intent_of(&l.intent),
                    legs: Vec::new(),
                    created_at: Timestamp::from_second(o.created_at).ok(),
                    filled_at: o.filled_at.and_then(|t| Timestamp::from_second(t).ok()),
                })
                .collect(),
            created_at: Timestamp::from_second(o.created_at).ok(),
            filled_at: o.filled_at.and_then(|t| Timestamp::from_second(t).ok()),
        }
    }

    fn quote_at(&mut self, symbol: &str, now: Timestamp) -> Quote {
        let m = minute_of(now);
        let mid = self.mark(symbol, m);
        let half_spread = if is_crypto(symbol) { mid * 0.000_25 } else { (mid * 0.000_05).max(0.005) };
        Quote { t: now, bid: mid - half_spread, ask: mid + half_spread, bid_size: 3.0, ask_size: 3.0 }
    }

    fn bars_for(
        &mut self,
        symbols: &[String],
        timeframe: &str,
        start: Timestamp,
        stocks: bool,
    ) -> Result<BySymbol<Vec<Bar>>, BrokerError> {
        let step = match timeframe {
            "1Min" => 1,
            "5Min" => 5,
            "15Min" => 15,
            "1Hour" => 60,
            other => {
                return Err(BrokerError::Invalid {
                    detail: format!("the simulated broker serves 1Min, 5Min, 15Min and 1Hour bars, not {other}"),
                });
            }
        };
        let now = self.clock.now();
        if step == 1 && symbols.iter().all(|s| self.market.replay.has(s)) {
            // Recorded bars: those that began at or after `start` and have closed by now.
            let mut out = BySymbol::new();
            for symbol in symbols {
                let bars = self
                    .market
                    .replay
                    .closed_between(symbol, start, now)
                    .map_err(|detail| BrokerError::Invalid { detail })?;
                out.insert(symbol.clone(), bars);
            }
            return Ok(out);
        }
        // Only completed minutes, never more than the history kept.
        let last = minute_of(now) - 1;
        let first = minute_of(start).max(last - KEEP_MINUTES as i64 + 2);
        let mut out = BySymbol::new();
        for symbol in symbols {
            let mut bars: Vec<Bar> = Vec::new();
            let mut m = first - first.rem_euclid(step);
            let mut open = Self::session_minutes();
            while m + step - 1 <= last {
                if stocks && !open(m) {
                    m += step;
                    continue;
                }
                let mut agg = self.market.bar(symbol, m);
                for k in 1..step {
                    let b = self.market.bar(symbol, m + k);
                    agg.high = agg.high.max(b.high);
                    agg.low = agg.low.min(b.low);
                    agg.close = b.close;
                    agg.volume += b.volume;
                }
                if minute_start(m) >= start {
                    bars.push(agg);
                }
                m += step;
            }
            out.insert(symbol.clone(), bars);
        }
        Ok(out)
    }

    fn count(&mut self) {
        self.stats.requests += 1;
    }

    /// `root`'s listed contracts between `from` and `to` at minute `m`, when it trades at `spot`
    /// (in the market seeded with `seed`): 25 strikes around the spot (a step of 0.5 under $50,
    /// 1 under $200, else 5) by calls and puts, each Friday, in the symbols' order. Listed once
    /// per expiry and centre strike, and kept (`EXPIRIES_KEPT`).
    fn chain<'c>(
        chains: &'c mut BTreeMap<String, Chains>,
        (spot, seed): (f64, u64),
        root: &str,
        from: Date,
        to: Date,
        m: i64,
    ) -> Vec<&'c Listed> {
        let step = if spot < 50.0 {
            0.5
        } else if spot < 200.0 {
            1.0
        } else {
            5.0
        };
        let centre = (spot / step).round() * step;
        let from = from.max(clock::trading_date(minute_start(m)));
        let key = centre.to_bits();
        let expiries = fridays(from, to);
        let chains = chains.entry(root.to_string()).or_default();
        // An expiry's contracts are kept until it is past.
        chains.made.retain(|expiry, _| *expiry >= from);
        // Every expiry of the span listed first (none of them pushed out by another of them) …
        let cap = EXPIRIES_KEPT.max(expiries.len());
        for &expiry in &expiries {
            // (The contracts made so far are looked up only when a list is missing.)
            let made = &mut chains.made;
            kept(&mut chains.lists, (expiry, key), cap, || {
                list(made.entry(expiry).or_default(), root, expiry, centre, step, seed)
            });
        }
        // … then read together, by expiry: the symbols' order (`YYMMDD` first).
        let lists: &'c [((Date, u64), Vec<Listed>)] = &chains.lists;
        expiries
            .iter()
            .filter_map(|e| lists.iter().find(|(k, _)| *k == (*e, key)))
            .flat_map(|(_, contracts)| contracts.iter())
            .collect()
    }
}

/// `root`'s contracts expiring on `expiry`: 25 strikes `step` apart around `centre`, a call and
/// a put at each, in the symbols' order; each one copied from `made` when an earlier list made it.
fn list(
    made: &mut BTreeMap<(bool, Dec), Listed>,
    root: &str,
    expiry: Date,
    centre: f64,
    step: f64,
    seed: u64,
) -> Vec<Listed> {
    let mut listed = Vec::with_capacity(50);
    let expires = expiry_close(expiry);
    // Only the spot's neighbourhood is listed again: contracts over two lists' width away go (a
    // year's spot wanders across hundreds of strikes, each kept would be memory for nothing).
    let near = 24.0 * step;
    made.retain(|(_, k), _| (k.to_f64() - centre).abs() <= near);
    // Calls before puts, then by strike: the symbols' own order (`C`/`P`, then the strike on
    // eight digits), so the snapshots' map is built in one pass, not insert by insert (comparing
    // long OCC symbols with common prefixes cost a fifth of a backtest).
    for kind in [OptionKind::Call, OptionKind::Put] {
        for i in -12i32..=12 {
            let k = centre + i as f64 * step;
            if k <= 0.0 {
                continue;
            }
            let strike = dec(k);
            let contract = made.entry((kind == OptionKind::Put, strike)).or_insert_with(|| {
                let symbol = occ_symbol(root, expiry, kind, strike);
                let symbol_hash = symbol_key(&symbol);
                let oi = 100 + hash3(seed, symbol_hash, 7) % 5000;
                let contract = OptionContract {
                    symbol,
                    underlying: root.to_string(),
                    expiration: expiry,
                    kind,
                    strike,
                    multiplier: Dec::from_int(crate::core::instrument::OPTION_MULTIPLIER),
                    open_interest: Some(oi),
                    close_price: None,
                    tradable: true,
                };
                Listed { contract, strike: strike.to_f64(), expires, key: symbol_hash }
            });
            listed.push(contract.clone());
        }
    }
    // (`<=`: before its first recorded bar a root's spot is unknown, NaN, and every strike of
    // the list is 0 — a chain no bot can use, listed as it always was.)
    debug_assert!(listed.windows(2).all(|w| w[0].contract.symbol <= w[1].contract.symbol));
    listed
}

fn is_open(status: &str) -> bool {
    matches!(status, "new" | "accepted" | "pending_new" | "partially_filled")
}

fn intent_of(text: &str) -> Option<PositionIntent> {
    match text {
        "buy_to_open" => Some(PositionIntent::BuyToOpen),
        "buy_to_close" => Some(PositionIntent::BuyToClose),
        "sell_to_open" => Some(PositionIntent::SellToOpen),
        "sell_to_close" => Some(PositionIntent::SellToClose),
        _ => None,
    }
}

impl Broker for SimBroker {
    fn account(&mut self) -> Result<Account, BrokerError> {
        self.count();
        self.settle()?;
        let m = minute_of(self.clock.now());
        let equity = self.equity(m);
        let bp = self.buying_power();
        Ok(Account {
            id: SIM_ACCOUNT_ID.into(),
            number: None,
            status: "ACTIVE".into(),
            equity,
            last_equity: self.book.last_equity,
            cash: self.book.cash,
            buying_power: bp,
            non_marginable_buying_power: Some(bp),
            options_buying_power: Some(bp),
            trading_blocked: false,
            account_blocked: false,
            trade_suspended_by_user: false,
            shorting_enabled: false,
            options_trading_level: Some(3),
            crypto_status: Some("ACTIVE".into()),
        })
    }

    fn clock(&mut self) -> Result<MarketClock, BrokerError> {
        self.count();
        let now = self.clock.now();
        let s = RegularSession.session_at(now);
        Ok(MarketClock { timestamp: now, is_open: s.is_open, next_open: s.next_open, next_close: s.next_close })
    }

    fn positions(&mut self) -> Result<Vec<Position>, BrokerError> {
        self.count();
        self.settle()?;
        let m = minute_of(self.clock.now());
        let held: Vec<(String, BookPosition)> =
            self.book.positions.iter().map(|(s, p)| (s.clone(), p.clone())).collect();
        Ok(held
            .into_iter()
            .map(|(symbol, p)| {
                let price = self.mark(&symbol, m);
                let mult = Self::multiplier(&symbol).to_f64();
                let value = p.qty.to_f64() * price * mult;
                let pl = (price - p.avg_price.to_f64()) * p.qty.to_f64() * mult;
                let pending = self.pending_sells(&symbol);
                Position {
                    asset_class: AssetClass::of(&symbol),
                    symbol,
                    qty: p.qty,
                    avg_entry_price: p.avg_price,
                    current_price: Some(price_dec(price)),
                    market_value: Some(cents(value)),
                    unrealized_pl: Some(cents(pl)),
                    // What open sells leave (an open sell holds what it covers).
                    qty_available: Some(p.qty.abs().checked_sub(pending).unwrap_or(Dec::ZERO).max(Dec::ZERO)),
                }
            })
            .collect())
    }

    fn open_orders(&mut self) -> Result<Vec<Order>, BrokerError> {
        self.count();
        self.settle()?;
        Ok(self.maybe_open().filter(|o| is_open(&o.status)).map(|o| self.to_order(o)).collect())
    }

    /// The simulated account takes no deposits or withdrawals.
    fn transfers(&mut self, _after: Timestamp) -> Result<Vec<Transfer>, BrokerError> {
        self.count();
        Ok(Vec::new())
    }

    fn recent_orders(&mut self, after: Option<Timestamp>) -> Result<Vec<Order>, BrokerError> {
        self.count();
        self.settle()?;
        let after = after.map_or(i64::MIN, |t| t.as_second());
        let newest = self.book.orders.iter().rev().take_while(|o| o.created_at > after).take(500);
        Ok(newest.map(|o| self.to_order(o)).collect())
    }

    fn order(&mut self, id: &str) -> Result<Option<Order>, BrokerError> {
        self.count();
        self.settle()?;
        Ok(self.book.orders.iter().find(|o| o.id == id).map(|o| self.to_order(o)))
    }

    fn order_by_client_id(&mut self, client_order_id: &str) -> Result<Option<Order>, BrokerError> {
        self.count();
        self.settle()?;
        Ok(self.book.orders.iter().find(|o| o.client_order_id == client_order_id).map(|o| self.to_order(o)))
    }

    fn submit_order(&mut self, r: &OrderRequest) -> Result<Order, BrokerError> {
        self.count();
        self.settle()?;
        let now = self.clock.now();
        let m = minute_of(now);
        // A refusal is the broker's answer, not an outage: like Alpaca's, it is not counted for
        // the health window.
        let reserved = self.admit(r, m)?;
        let id = format!("sim-{:08}", self.book.next_id);
        self.book.next_id += 1;
        let (qty, notional) = match r.amount {
            Amount::Qty(q) => (Some(q), None),
            Amount::Notional(n) => (None, Some(n)),
        };
        let symbol = if r.legs.is_empty() { r.symbol.clone() } else { String::new() };
        self.book.orders.push(BookOrder {
            id,
            client_order_id: r.client_order_id.clone(),
            symbol,
            side: if r.legs.is_empty() { r.side.as_str().into() } else { String::new() },
            qty,
            notional,
            order_type: r.order_type.as_str().into(),
            tif: r.time_in_force.as_str().into(),
            limit_price: r.limit_price,
            stop_price: r.stop_price,
            status: "accepted".into(),
            filled_qty: Dec::ZERO,
            filled_avg_price: None,
            created_at: now.as_second(),
            filled_at: None,
            fill_from_minute: m + 1,
            reserved,
            legs: r
                .legs
                .iter()
                .map(|l| BookLeg {
                    symbol: l.symbol.clone(),
                    ratio: l.ratio_qty,
                    intent: l.position_intent.as_str().into(),
                    fill_price: None,
                })
                .collect(),
        });
        self.save()?;
        let placed = self.book.orders.last().map(|o| self.to_order(o));
        placed.ok_or_else(|| BrokerError::Invalid { detail: "order vanished".into() })
    }

    fn replace_order(&mut self, id: &str, r: &ReplaceRequest) -> Result<Order, BrokerError> {
        self.count();
        self.settle()?;
        let endpoint = "PATCH /v2/orders/{order_id}";
        let refuse = |status: u16, code: u64, message: String| BrokerError::Rejected {
            endpoint: endpoint.into(),
            status,
            code: Some(code),
            message,
        };
        if self.book.orders.iter().any(|o| o.client_order_id == r.client_order_id) {
            return Err(refuse(422, 40010001, "client_order_id must be unique".into()));
        }
        let Some(i) = self.book.orders.iter().position(|o| o.id == id) else {
            return Err(refuse(404, 40410000, "order not found".into()));
        };
        if !is_open(&self.book.orders[i].status) {
            return Err(refuse(422, 42210000, format!("order is already {}", self.book.orders[i].status)));
        }
        let now = self.clock.now();
        let mut new = self.book.orders[i].clone();
        self.book.orders[i].status = "replaced".into();
        self.book.orders[i].reserved = Dec::ZERO;
        new.id = format!("sim-{:08}", self.book.next_id);
        self.book.next_id += 1;
        new.client_order_id = r.client_order_id.clone();
        new.stop_price = r.stop_price.or(new.stop_price);
        new.limit_price = r.limit_price.or(new.limit_price);
        new.created_at = now.as_second();
        new.fill_from_minute = minute_of(now) + 1;
        self.book.orders.push(new);
        self.save()?;
        let placed = self.book.orders.last().map(|o| self.to_order(o));
        placed.ok_or_else(|| BrokerError::Invalid { detail: "order vanished".into() })
    }

    fn cancel_order(&mut self, id: &str) -> Result<(), BrokerError> {
        self.count();
        self.settle()?;
        let endpoint = "DELETE /v2/orders/{order_id}";
        let Some(o) = self.book.orders.iter_mut().find(|o| o.id == id) else {
            return Err(BrokerError::Rejected {
                endpoint: endpoint.into(),
                status: 404,
                code: Some(40410000),
                message: "order not found".into(),
            });
        };
        if !is_open(&o.status) {
            return Err(BrokerError::Rejected {
                endpoint: endpoint.into(),
                status: 422,
                code: Some(42210000),
                message: format!("order is already {}", o.status),
            });
        }
        o.status = "canceled".into();
        o.reserved = Dec::ZERO;
        self.save()
    }

    fn stock_bars(
        &mut self,
        symbols: &[String],
        timeframe: &str,
        start: Timestamp,
    ) -> Result<BySymbol<Vec<Bar>>, BrokerError> {
        self.count();
        self.bars_for(symbols, timeframe, start, true)
    }

    fn stock_quotes(&mut self, symbols: &[String]) -> Result<BySymbol<Quote>, BrokerError> {
        self.count();
        let now = self.clock.now();
        // Outside the session the last quote is the close: its timestamp says so.
        let at = if Self::stock_open(now) { now } else { last_close_before(now) };
        Ok(symbols.iter().map(|s| (s.clone(), self.quote_at(s, at))).collect())
    }

    fn crypto_bars(
        &mut self,
        pairs: &[String],
        timeframe: &str,
        start: Timestamp,
    ) -> Result<BySymbol<Vec<Bar>>, BrokerError> {
        self.count();
        self.bars_for(pairs, timeframe, start, false)
    }

    fn crypto_quotes(&mut self, pairs: &[String]) -> Result<BySymbol<Quote>, BrokerError> {
        self.count();
        let now = self.clock.now();
        Ok(pairs.iter().map(|s| (s.clone(), self.quote_at(s, now))).collect())
    }

    fn option_contracts(
        &mut self,
        underlyings: &[String],
        from: Date,
        to: Date,
    ) -> Result<Vec<OptionContract>, BrokerError> {
        self.count();
        let m = minute_of(self.clock.now());
        let mut out = Vec::new();
        for root in underlyings {
            let at = (self.market.price(root, m), self.market.seed);
            out.extend(Self::chain(&mut self.chains, at, root, from, to, m).iter().map(|l| l.contract.clone()));
        }
        Ok(out)
    }

    fn option_snapshots(
        &mut self,
        underlying: &str,
        from: Date,
        to: Date,
        kind: Option<OptionKind>,
        strikes: Option<(Dec, Dec)>,
    ) -> Result<Snapshots, BrokerError> {
        self.count();
        let now = self.clock.now();
        let m = minute_of(now);
        let spot = self.market.price(underlying, m);
        let (seed, day) = (self.market.seed, m.div_euclid(1440));
        let listed = Self::chain(&mut self.chains, (spot, seed), underlying, from, to, m);
        let market = &self.market;
        let snapshot = |l: &Listed| {
            let c = &l.contract;
            let (price, delta, iv) = market.price_option(spot, c.kind, l.strike, l.expires, m);
            let half = (price * 0.02).max(0.01);
            let quote =
                Quote { t: now, bid: (price - half).max(0.0), ask: price + half, bid_size: 10.0, ask_size: 10.0 };
            let volume = (hash3(seed, l.key, day) % 2000) as f64;
            let snap = OptionSnapshot {
                quote: Some(quote),
                greeks: Some(Greeks { delta, gamma: 0.0, theta: 0.0, vega: 0.0, rho: 0.0 }),
                implied_volatility: Some(iv),
                volume: Some(volume),
            };
            (l.contract.symbol.clone(), snap)
        };
        // Gathered at its full size first: a map collected from a filtered iterator grows its
        // buffer of (symbol, snapshot) pairs by doubling, copying them each time.
        let mut snaps = Vec::with_capacity(listed.len());
        let wanted = |l: &&Listed| {
            let strike = l.contract.strike;
            kind.is_none_or(|k| l.contract.kind == k)
                && strikes.is_none_or(|(low, high)| (low..=high).contains(&strike))
        };
        snaps.extend(listed.iter().copied().filter(wanted).map(snapshot));
        Ok(snaps.into_iter().collect())
    }

    fn take_call_stats(&mut self) -> CallStats {
        std::mem::take(&mut self.stats)
    }
}

/// The last regular-session close at or before `now`.
fn last_close_before(now: Timestamp) -> Timestamp {
    let mut day = clock::trading_date(now);
    for _ in 0..10 {
        if !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) {
            let close = RegularSession.session_at(clock::start_of_date(day)).next_close;
            if close <= now {
                return close;
            }
        }
        day = day.yesterday().unwrap_or(Date::MIN);
    }
    now
}

fn fridays(from: Date, to: Date) -> Vec<Date> {
    let mut out = Vec::new();
    let mut d = from;
    while d <= to && out.len() < 12 {
        if d.weekday() == Weekday::Friday {
            out.push(d);
        }
        d = d.tomorrow().unwrap_or(Date::MAX);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_minutes_agree_with_stock_open_minute_by_minute_over_a_week() {
        // Friday before a weekend, through the daylight-saving change of 2026-11-01, to Tuesday.
        let from = minute_of("2026-10-30T00:00:00Z".parse().unwrap());
        let to = minute_of("2026-11-04T00:00:00Z".parse().unwrap());
        let mut open = SimBroker::session_minutes();
        let mut opened = 0;
        for m in from..to {
            let expected = SimBroker::stock_open(minute_start(m));
            assert_eq!(open(m), expected, "minute {}", minute_start(m));
            opened += usize::from(expected);
        }
        assert_eq!(opened, 3 * 390, "Friday, Monday, Tuesday");
    }

    /// A chain listed around a new centre, with the contracts it shares with earlier lists copied
    /// from them, is the chain listed fresh there: the same contracts, in the same order, with
    /// the same prices' inputs — as the spot wanders up and down, across the $200 step change,
    /// and after far-away strikes were dropped.
    #[test]
    fn a_chain_around_a_new_centre_is_the_chain_listed_fresh() {
        let m = minute_of("2026-12-07T15:00:00Z".parse().unwrap());
        let (from, to) = (jiff::civil::date(2026, 12, 7), jiff::civil::date(2027, 1, 15));
        type Seen = Vec<(OptionContract, f64, Timestamp, u64)>;
        let chain = |chains: &mut BTreeMap<String, Chains>, spot: f64| -> Seen {
            SimBroker::chain(chains, (spot, 7), "SPY", from, to, m)
                .iter()
                .map(|l| (l.contract.clone(), l.strike, l.expires, l.key))
                .collect()
        };
        let mut walked = BTreeMap::new();
        for spot in [190.0, 196.4, 203.0, 212.0, 198.0, 260.0, 201.0, 188.0] {
            let seen = chain(&mut walked, spot);
            assert_eq!(seen, chain(&mut BTreeMap::new(), spot), "at {spot}");
            assert!(seen.len() >= 5 * 50, "{} contracts at {spot}", seen.len());
        }
        // What stays made is the last spot's neighbourhood: 24 strikes either side of its centre,
        // calls and puts, of each expiry.
        let made = &walked["SPY"].made;
        assert!(!made.is_empty());
        assert!(made.values().all(|by_strike| by_strike.len() <= 2 * 49), "only the spot's neighbourhood is kept");
    }
}
