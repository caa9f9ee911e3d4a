//! The SQLite state database: what must survive a restart or a crash.
//!
//! Owns: the schema and its migrations (`PRAGMA user_version`), and every read and write of the
//! file at `system.state_db_path` — key/value pairs, the day-start equity per trading date, halts,
//! orders, budgets, loop runs, the exit rules each position was opened with and why each bot is
//! not entering (`bot_activity`); the numbering of
//! our client order ids (`ClientOrderId`: a random epoch per process and a counter that only
//! grows), and which writes are fsynced before they return (`durably`: an order recorded before it is sent, a halt). Timestamps are stored as
//! fixed-width UTC text (`clock::db_ts`) so that text order is time order and a person can read
//! them with `sqlite3`. Every statement goes through the statement cache (`Cached`); every read is
//! a read of the file as it is now — nothing is kept between calls, so no answer can be stale.
//! A backtest's ledger is the same
//! schema in memory (`open_memory`), without what only `status` reads: it writes no loop-run rows
//! and no bot activity (a third of its statements a minute, for a ledger nobody will look at).
//!
//! Never: overwrites, "repairs" or migrates a file it does not recognise. A file that is not
//! SQLite, fails its integrity check, belongs to another program or comes from a newer version of
//! this daemon is refused untouched. Never issues a client order id twice, and never books a fill
//! without its price. (Whether another process may use the file is `ledger_lock`'s.)

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::core::backtest_reads::Kept;
use crate::core::clock::{self, HhMm};
use crate::core::config::{BotKind, Exits};
use crate::core::decimal::Dec;
use crate::core::halt::{Halt, HaltReason};
use crate::core::idle::{Cause, Idle};
use crate::core::instrument;
use crate::core::ledger::{self, Fill, Holding};
use crate::core::order::{BROKER_STOP, Intent, OrderStatus, OrderType, RecordStatus, Side};

/// The schema version this code writes. Migration `n` (1-based) lifts a database from `n - 1`.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const MIGRATIONS: &[&str] = &[
    // 1: the foundation.
    "CREATE TABLE kv (
         key        TEXT PRIMARY KEY,
         value      TEXT NOT NULL,
         updated_at TEXT NOT NULL
     );
     CREATE TABLE day_start_equity (
         trading_date TEXT PRIMARY KEY,          -- New York date, YYYY-MM-DD
         equity       REAL NOT NULL,
         source       TEXT NOT NULL,             -- last_equity | first_seen
         recorded_at  TEXT NOT NULL
     );
     CREATE TABLE halts (
         id         INTEGER PRIMARY KEY,
         reason     TEXT NOT NULL,
         detail     TEXT NOT NULL,
         since      TEXT NOT NULL,
         until      TEXT,                         -- NULL: until resumed / cause cleared
         cleared_at TEXT,                         -- NULL: active
         cleared_by TEXT
     );
     CREATE UNIQUE INDEX halts_one_active_per_reason ON halts(reason) WHERE cleared_at IS NULL;
     CREATE TABLE orders (
         client_order_id  TEXT PRIMARY KEY,       -- recorded before the order is sent
         bot              TEXT NOT NULL,
         symbol           TEXT NOT NULL,
         side             TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
         qty              TEXT,                   -- exact decimal text as sent
         notional         TEXT,
         order_type       TEXT NOT NULL,
         intent           TEXT NOT NULL CHECK (intent IN ('entry', 'exit')),
         status           TEXT NOT NULL,
         broker_order_id  TEXT,
         filled_qty       TEXT,
         filled_avg_price TEXT,
         created_at       TEXT NOT NULL,
         updated_at       TEXT NOT NULL,
         CHECK ((qty IS NULL) <> (notional IS NULL))
     );
     CREATE INDEX orders_by_bot ON orders(bot, created_at);
     CREATE TABLE budgets (
         trading_date      TEXT NOT NULL,
         bot               TEXT NOT NULL,
         daily_loss_limit  REAL NOT NULL,
         max_open_risk     REAL NOT NULL,
         max_trades        INTEGER NOT NULL,
         max_positions     INTEGER NOT NULL,
         realized_pnl      REAL NOT NULL DEFAULT 0,
         trades            INTEGER NOT NULL DEFAULT 0,
         updated_at        TEXT NOT NULL,
         PRIMARY KEY (trading_date, bot)
     );
     CREATE TABLE loop_runs (
         id               INTEGER PRIMARY KEY,
         iteration        INTEGER NOT NULL,
         started_at       TEXT NOT NULL,
         duration_ms      INTEGER NOT NULL,
         equity           REAL,
         day_start_equity REAL,
         daily_pnl_pct    REAL,
         halted           INTEGER NOT NULL,
         orders_submitted INTEGER NOT NULL,
         requests         INTEGER NOT NULL,
         error            TEXT
     );",
    // 2: ownership. What the daemon's own filled orders opened, per bot and symbol; exit rules
    // on orders; the trading date an order belongs to.
    "CREATE TABLE owned_positions (
         bot             TEXT NOT NULL,
         symbol          TEXT NOT NULL,
         qty             TEXT NOT NULL,          -- exact decimal, negative for a short
         avg_entry_price TEXT NOT NULL,
         opened_at       TEXT NOT NULL,
         high_water      REAL,                   -- best price since entry, for trailing stops
         updated_at      TEXT NOT NULL,
         PRIMARY KEY (bot, symbol)
     );
     ALTER TABLE orders ADD COLUMN rule TEXT;
     ALTER TABLE orders ADD COLUMN trading_date TEXT;
     CREATE INDEX orders_by_status ON orders(status);",
    // 3: the legs of multi-leg option orders, each followed to its own fills.
    "CREATE TABLE order_legs (
         client_order_id TEXT NOT NULL REFERENCES orders(client_order_id),
         symbol          TEXT NOT NULL,
         ratio           INTEGER NOT NULL,
         position_intent TEXT NOT NULL,          -- buy_to_open, sell_to_close, ...
         filled_qty      TEXT NOT NULL DEFAULT '0',
         PRIMARY KEY (client_order_id, symbol)
     );",
    // 4: the P&L each order realised, for reports.
    "ALTER TABLE orders ADD COLUMN realized_pnl REAL NOT NULL DEFAULT 0;",
    // 5: indexes for the per-iteration questions (entries of the day, the last exit), which
    // otherwise scan every order ever sent and slow a long-running daemon down.
    "CREATE INDEX orders_by_bot_date ON orders(bot, trading_date, intent);
     CREATE INDEX orders_by_bot_symbol ON orders(bot, symbol, intent);",
    // 6: the orders still in flight, asked for several times an iteration, found without reading
    // every order ever sent. The condition must stay the one `unfinished_orders` uses.
    "CREATE INDEX orders_unfinished ON orders(created_at)
     WHERE status NOT IN ('filled', 'canceled', 'expired', 'replaced', 'rejected', 'done_for_day', 'abandoned');",
    // 7: one report per trading date, written after the close.
    "CREATE TABLE daily_reports (
         trading_date TEXT PRIMARY KEY,
         equity       REAL,
         day_start    REAL,
         pnl_pct      REAL,
         report       TEXT NOT NULL,          -- the whole report as JSON
         created_at   TEXT NOT NULL
     );",
    // 8: what the broker held at the last reconciliation, ours or not, so `status` can show
    // unrealised P&L and unmanaged positions without the network or credentials. When it was
    // read is kv `broker_positions_seen_at`, written in the same transaction.
    "CREATE TABLE broker_positions (
         symbol          TEXT PRIMARY KEY,
         qty             TEXT NOT NULL,      -- exact decimal text, negative for a short
         avg_entry_price TEXT NOT NULL,
         current_price   TEXT                -- NULL when the broker did not say
     );",
    // 9: order identity. The limit price each order was sent with (an order found at the broker
    // under our id is ours only if it is what we sent), the random part of the ids of each start
    // (`id_epochs`; the counter that numbers orders is kv `order_seq`), and `conflict`, a final
    // status, in the index of the orders in flight.
    "ALTER TABLE orders ADD COLUMN limit_price TEXT;
     CREATE TABLE id_epochs (
         epoch      TEXT PRIMARY KEY,        -- eight random characters, part of every id of one start
         started_at TEXT NOT NULL
     );
     DROP INDEX orders_unfinished;
     CREATE INDEX orders_unfinished ON orders(created_at)
     WHERE status NOT IN ('filled', 'canceled', 'expired', 'replaced', 'rejected', 'done_for_day', 'abandoned', 'conflict');",
    // 10: the exit rules in force when a position was opened, so a position whose bot or symbol
    // later leaves the configuration is still closed by them.
    "CREATE TABLE position_rules (
         bot                          TEXT NOT NULL,
         symbol                       TEXT NOT NULL,  -- the entry's symbol; a spread's underlying
         kind                         TEXT NOT NULL,  -- momentum, options, crypto
         stop_loss_pct                REAL NOT NULL,
         take_profit_pct              REAL NOT NULL,
         trailing_stop_pct            REAL,
         time_stop_minutes            INTEGER,
         flatten_before_close_minutes INTEGER,
         manage_until                 TEXT,           -- HH:MM on system.timezone's clock (stocks)
         exit_days_before_expiry      INTEGER,        -- options
         recorded_at                  TEXT NOT NULL,
         PRIMARY KEY (bot, symbol)
     );",
    // 11: the stop price each order was sent with: a protective stop resting at the broker is
    // ours only if its stop is the one we sent.
    "ALTER TABLE orders ADD COLUMN stop_price TEXT;",
    // 12: why each bot is not entering, as the loop last noted it (`core::idle`), for `status`.
    // Written when the causes change, the detail's numbers refreshed now and then.
    "CREATE TABLE bot_activity (
         bot        TEXT PRIMARY KEY,
         causes     TEXT,                -- `no_signal,price_out_of_band`; NULL: it entered
         reason     TEXT,                -- the detail in words; NULL: it entered
         since      TEXT NOT NULL,       -- when these causes began
         updated_at TEXT NOT NULL
     );",
    // 13: the day's entries of every bot at once (`entries_on`, every iteration), found by date,
    // and a bot's last exit of a symbol (`last_exit`, for its cooldown) found at the end of its
    // exits by time, instead of by scans of every order (or every exit) ever sent: the scans grew
    // with the ledger, so a year's backtest (or a year of a daemon) slowed down as it went.
    "CREATE INDEX orders_by_date ON orders(trading_date, intent);
     DROP INDEX orders_by_bot_symbol;
     CREATE INDEX orders_by_bot_symbol ON orders(bot, symbol, intent, updated_at);",
    // 14: the index of the orders in flight says "not final" as one comparison per final status
    // (`UNFINISHED`) instead of `NOT IN (…)`, which SQLite evaluated by building a temporary
    // table of the eight statuses, twice, on every write to an order.
    "DROP INDEX orders_unfinished;
     CREATE INDEX orders_unfinished ON orders(created_at)
     WHERE status <> 'filled' AND status <> 'canceled' AND status <> 'expired' AND status <> 'replaced'
       AND status <> 'rejected' AND status <> 'done_for_day' AND status <> 'abandoned' AND status <> 'conflict';",
    // 15: the market's time of each iteration beside the wall clock's: the simulated time in
    // `--sim`, which is what `status`, `halt` and `resume` read a simulated account's date by
    // (`ledger_account::now`). NULL in the rows of older builds.
    "ALTER TABLE loop_runs ADD COLUMN market_time TEXT;",
];

/// An order not in a final status, as the index `orders_unfinished` says it (word for word: SQLite
/// uses a partial index only for a query that repeats its condition), over `FINAL_ORDER_STATUSES`
/// (a test holds the three together).
const UNFINISHED: &str = "status <> 'filled' AND status <> 'canceled' AND status <> 'expired' AND status <> 'replaced'
       AND status <> 'rejected' AND status <> 'done_for_day' AND status <> 'abandoned' AND status <> 'conflict'";

/// The exit rules stored beside each entry (`position_rules`); the type is the configuration's.
pub use crate::core::config::PositionRules;

/// One position as the broker reported it at the last reconciliation.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerPositionRow {
    pub symbol: String,
    pub qty: Dec,
    pub avg_entry_price: Dec,
    pub current_price: Option<Dec>,
}

/// One leg of a recorded multi-leg order.
#[derive(Debug, Clone, PartialEq)]
pub struct LegRecord {
    pub symbol: String,
    pub ratio: u32,
    /// `buy_to_open`, `sell_to_open`, `buy_to_close` or `sell_to_close`.
    pub position_intent: String,
}

/// Order statuses after which nothing more happens to an order. Besides the broker's own:
/// `rejected` (refused before or when sent), `abandoned` (recorded, then never found at the
/// broker: the process died between recording and sending) and `conflict` (the broker holds
/// another order under this id: ours was never placed, and the stranger is never booked).
pub const FINAL_ORDER_STATUSES: &[&str] =
    &["filled", "canceled", "expired", "replaced", "rejected", "done_for_day", "abandoned", "conflict"];

/// How many loop runs are kept: about 28 hours at the default 5 s interval. Older rows are deleted
/// as new ones arrive, so months of running do not fill a small SD card.
pub const LOOP_RUNS_KEPT: i64 = 20_000;

#[derive(Debug)]
pub enum StateError {
    CreateDir {
        dir: PathBuf,
        error: std::io::Error,
    },
    Inspect {
        path: PathBuf,
        error: std::io::Error,
    },
    NotADatabase {
        path: PathBuf,
    },
    Corrupt {
        path: PathBuf,
        detail: String,
    },
    ForeignDatabase {
        path: PathBuf,
    },
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// No ledger where a command that needs one looked: nothing was created.
    Missing {
        path: PathBuf,
    },
    /// Another `run` holds the ledger's lock.
    InUse {
        path: PathBuf,
        lock: PathBuf,
        pid: Option<u32>,
    },
    /// The lock file beside the ledger could not be opened or locked.
    Lock {
        lock: PathBuf,
        error: std::io::Error,
    },
    Open {
        path: PathBuf,
        error: rusqlite::Error,
    },
    Migrate {
        path: PathBuf,
        error: rusqlite::Error,
    },
    Sql {
        what: &'static str,
        error: rusqlite::Error,
    },
    /// A row that this code cannot read back (edited by hand, or written by a buggy version).
    BadRow {
        what: &'static str,
        detail: String,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let untouched = "nothing was changed; move the file aside or point system.state_db_path elsewhere";
        match self {
            StateError::CreateDir { dir, error } => {
                write!(f, "cannot create the state folder {}: {error}", dir.display())
            }
            StateError::Inspect { path, error } => {
                write!(f, "cannot read the state database {}: {error}", path.display())
            }
            StateError::NotADatabase { path } => write!(f, "{} is not a SQLite database; {untouched}", path.display()),
            StateError::Corrupt { path, detail } => {
                write!(f, "the state database {} is damaged ({detail}); {untouched}", path.display())
            }
            StateError::ForeignDatabase { path } => {
                write!(
                    f,
                    "{} is a SQLite database of another program (it has tables but no Trading Hydra schema); {untouched}",
                    path.display()
                )
            }
            StateError::TooNew { path, found, supported } => write!(
                f,
                "the state database {} has schema version {found}, newer than this build's {supported}; run the newer trading-hydra, or {untouched}",
                path.display()
            ),
            StateError::Missing { path } => write!(
                f,
                "no state database at {} (nothing was created there); this command works on the ledger of a \
                 daemon that has run: run it in the folder the daemon runs in (the service's WorkingDirectory, \
                 /var/lib/trading-hydra in the shipped unit) or with the daemon's --config, since \
                 system.state_db_path is relative to the current folder",
                path.display()
            ),
            StateError::InUse { path, lock, pid } => write!(
                f,
                "the ledger {} is in use by another trading-hydra run ({}; lock {}); stop that one first \
                 (for the service: systemctl stop trading-hydra), or give this one its own system.state_db_path",
                path.display(),
                pid.map_or("PID unknown".to_string(), |p| format!("PID {p}")),
                lock.display()
            ),
            StateError::Lock { lock, error } => {
                write!(f, "cannot lock the ledger with {}: {error}; nothing was changed", lock.display())
            }
            StateError::Open { path, error } => write!(f, "cannot open the state database {}: {error}", path.display()),
            StateError::Migrate { path, error } => write!(
                f,
                "cannot upgrade the state database {} (rolled back, nothing changed): {error}",
                path.display()
            ),
            StateError::Sql { what, error } => write!(f, "state database error while {what}: {error}"),
            StateError::BadRow { what, detail } => {
                write!(f, "state database holds a row this build cannot read ({what}): {detail}")
            }
        }
    }
}

impl std::error::Error for StateError {}

/// One day's reference equity.
#[derive(Debug, Clone, PartialEq)]
pub struct DayStart {
    pub trading_date: Date,
    pub equity: f64,
    /// `last_equity` (the broker's previous close) or `first_seen`.
    pub source: String,
}

/// One order as the daemon recorded it. Quantities stay text: the exact decimal that was sent.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRecord {
    pub client_order_id: String,
    pub bot: String,
    pub symbol: String,
    pub side: Side,
    pub qty: Option<String>,
    pub notional: Option<String>,
    pub order_type: OrderType,
    /// As sent (`None` for a market order, and for orders recorded before migration 9).
    pub limit_price: Option<String>,
    pub stop_price: Option<String>,
    pub intent: Intent,
    pub status: RecordStatus,
    pub broker_order_id: Option<String>,
    pub created_at: Timestamp,
    /// The New York trading date the order belongs to.
    pub trading_date: Date,
    /// For an exit: the rule that asked for it (`stop_loss`, `daily_loss_flatten`, …).
    pub rule: Option<String>,
    pub filled_qty: Dec,
}

/// An order about to be sent: what `State::record_order` numbers and records.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub bot: String,
    pub symbol: String,
    pub side: Side,
    pub qty: Option<String>,
    pub notional: Option<String>,
    pub order_type: OrderType,
    pub limit_price: Option<String>,
    /// A stop or stop-limit order's trigger.
    pub stop_price: Option<String>,
    pub intent: Intent,
    /// For an exit: the rule that asked for it.
    pub rule: Option<String>,
    pub created_at: Timestamp,
    pub trading_date: Date,
    /// The legs of a multi-leg order, recorded with it.
    pub legs: Vec<LegRecord>,
}

/// The parts of a client order id this build issues: `th-<bot>-<yyyymmdd>-<epoch>-<n>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOrderId {
    pub bot: String,
    pub date: Date,
    /// Eight random characters drawn when a daemon first numbers an order on this ledger.
    pub epoch: String,
    /// The ledger's order counter, which only grows.
    pub n: u64,
}

impl ClientOrderId {
    /// The text sent to the broker: at most 3 + 32 + 1 + 8 + 1 + 8 + 1 + 20 = 74 characters of
    /// Alpaca's 128.
    pub fn text(&self) -> String {
        format!("th-{}-{}-{}-{}", self.bot, self.date.strftime("%Y%m%d"), self.epoch, self.n)
    }

    /// Reads one back; `None` for any other format (the `th-<bot>-<yyyymmdd>-<n>` of ledgers
    /// before migration 9 included). Parsed from the right: a bot id may contain `-`.
    pub fn parse(text: &str) -> Option<ClientOrderId> {
        let rest = text.strip_prefix("th-")?;
        let mut parts = rest.rsplitn(4, '-');
        let n = parts.next()?.parse().ok()?;
        let epoch =
            parts.next().filter(|e| e.len() == 8 && e.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()))?;
        let date = parts.next().filter(|d| d.len() == 8)?;
        let date = Date::strptime("%Y%m%d", date).ok()?;
        let bot = parts.next().filter(|b| !b.is_empty())?;
        Some(ClientOrderId { bot: bot.to_string(), date, epoch: epoch.to_string(), n })
    }

    /// The id of an exit sent while the ledger takes no writes (disk full, read-only, I/O error),
    /// when no counter can be saved: derived from what the exit closes, so the same exit decided
    /// again — the next iteration, or after a restart on the same ledger — carries the same id,
    /// and Alpaca's refusal of a duplicate id (resolved to the order only if it matches) stops a
    /// second one. The epoch is `x` and seven characters of a hash of `closes` (FNV-1a: the same
    /// on every build and machine; a drawn epoch never starts with `x`); `n` is the attempt, 1
    /// and then one more after each refusal.
    pub fn derived(bot: &str, date: Date, closes: &str, attempt: u64) -> ClientOrderId {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in closes.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let epoch = std::iter::once('x').chain(base36(h).take(7)).collect();
        ClientOrderId { bot: bot.to_string(), date, epoch, n: attempt }
    }

    /// Whether this id was derived (`derived`) rather than numbered by the ledger's counter.
    pub fn is_derived(&self) -> bool {
        self.epoch.starts_with('x')
    }
}

/// The base-36 digits of `x`, lowest first, forever (zeros once `x` is used up).
fn base36(mut x: u64) -> impl Iterator<Item = char> {
    std::iter::from_fn(move || {
        let digit = (x % 36) as u32;
        x /= 36;
        char::from_digit(digit, 36)
    })
}

/// A New York trading date as the stored timestamps that bound it: [its start, the next's).
fn date_bounds(date: Date) -> (String, String) {
    let next = date.tomorrow().unwrap_or(date);
    (clock::db_ts(clock::start_of_date(date)), clock::db_ts(clock::start_of_date(next)))
}

/// Inserts an order and its legs as `recorded`, inside the caller's transaction.
fn insert_order(tx: &rusqlite::Transaction<'_>, id: &str, o: &NewOrder) -> Result<(), StateError> {
    let what = "recording an order";
    tx.run(
        "INSERT INTO orders (client_order_id, bot, symbol, side, qty, notional, order_type, limit_price, intent,
                             status, filled_qty, created_at, updated_at, rule, trading_date, stop_price)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'recorded', '0', ?10, ?10, ?11, ?12, ?13)",
        params![
            id,
            o.bot,
            o.symbol,
            o.side.as_str(),
            o.qty,
            o.notional,
            o.order_type.as_str(),
            o.limit_price,
            o.intent.as_str(),
            clock::db_ts(o.created_at),
            o.rule,
            o.trading_date.to_string(),
            o.stop_price
        ],
    )
    .map_err(sql(what))?;
    for l in &o.legs {
        tx.run(
            "INSERT INTO order_legs (client_order_id, symbol, ratio, position_intent) VALUES (?1, ?2, ?3, ?4)",
            params![id, l.symbol, l.ratio, l.position_intent],
        )
        .map_err(sql("recording an order leg"))?;
    }
    Ok(())
}

/// The epoch of a throw-away ledger's ids (`State::open_scratch`, `State::open_memory`).
const SCRATCH_EPOCH: &str = "backtest";

/// Eight characters of `0-9a-z`, the first never `x` (about 41 bits), from the operating
/// system's randomness — std's hash keys come from getrandom(2), which works in an empty chroot
/// too — mixed with the time and the process id.
fn draw_epoch(now: Timestamp) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i128(now.as_nanosecond());
    h.write_u32(std::process::id());
    let x = h.finish();
    // The first character from `0-9a-w` only: an epoch starting with `x` is a derived id's.
    let first = char::from_digit((x % 33) as u32, 36).unwrap_or('0');
    std::iter::once(first).chain(base36(x / 33).take(7)).collect()
}

/// A position the daemon's own filled orders opened.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedPosition {
    pub bot: String,
    pub symbol: String,
    /// Negative for a short.
    pub qty: Dec,
    pub avg_entry_price: Dec,
    pub opened_at: Timestamp,
    pub high_water: Option<f64>,
}

/// What one fill changed.
#[derive(Debug, Clone, PartialEq)]
pub struct FillDelta {
    pub bot: String,
    pub symbol: String,
    /// Signed: positive bought, negative sold.
    pub qty: Dec,
    pub price: Dec,
    /// Realised on the part that reduced the position, exactly (`ledger::apply`).
    pub realized_pnl: Dec,
}

/// What one report on a multi-leg order booked (`State::apply_leg_reports`).
#[derive(Debug, Clone, PartialEq)]
pub struct LegBooking {
    /// Each leg's new fill, with its price.
    pub fills: Vec<FillDelta>,
    /// Every leg carries, priced, what the parent reports filled. While false the order is kept
    /// unfinished and asked again.
    pub settled: bool,
}

/// One bot's budget for one trading date.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRow {
    pub trading_date: Date,
    pub bot: String,
    pub daily_loss_limit: f64,
    pub max_open_risk: f64,
    pub max_trades: u32,
    pub max_positions: u32,
    pub realized_pnl: f64,
    pub trades: u32,
}

/// One iteration of the loop, as step 5 records it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopRun {
    pub iteration: u64,
    /// The wall clock's time: what `status` measures the daemon's liveness by.
    pub started_at: Timestamp,
    /// The market's time the iteration decided on (simulated in `--sim`; `None` in the rows of
    /// builds before schema 15).
    pub market_time: Option<Timestamp>,
    pub duration_ms: u64,
    pub equity: Option<f64>,
    pub day_start_equity: Option<f64>,
    pub daily_pnl_pct: Option<f64>,
    pub halted: bool,
    pub orders_submitted: u32,
    pub requests: u32,
    pub error: Option<String>,
}

/// Why a bot was not entering when the loop last noted it (`reason` `None`: it had just entered).
#[derive(Debug, Clone, PartialEq)]
pub struct BotActivity {
    pub bot: String,
    pub causes: Vec<Cause>,
    pub reason: Option<String>,
    pub since: Timestamp,
    pub updated_at: Timestamp,
}

/// The reads a backtest's ledger keeps (`core::backtest_reads`).
#[derive(Default)]
struct BacktestReads {
    owned: Kept<(), Vec<OwnedPosition>>,
    unfinished: Kept<(), Vec<OrderRecord>>,
    exits: Kept<(), Vec<(String, String)>>,
    days: Kept<(String, Date), BotDay>,
    day_start: Kept<Date, Option<DayStart>>,
}

/// A bot's trading date so far (`State::bot_day`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BotDay {
    pub realized_pnl: f64,
    pub entries: u32,
}

pub struct State {
    conn: Connection,
    path: PathBuf,
    /// Whether orders and halts are fsynced before `record_order` and `set_halt` return (every
    /// ledger but a backtest's throw-away one).
    durable: bool,
    /// The random part of the ids this process issues, once it has recorded one.
    epoch: Option<String>,
    /// `PRAGMA data_version` when other writers were last looked for (`notice_other_writers`).
    others: std::cell::Cell<i64>,
    /// A backtest's ledger in memory only (`open_memory`): its kept reads. `None` for every
    /// ledger on a file, whose reads are all plain.
    kept: Option<BacktestReads>,
    /// Whether the rows only `status` reads are written (loop runs, bot activity): not in a
    /// backtest's ledger in memory, which nobody can open.
    for_status: bool,
}

/// Every statement goes through the connection's statement cache: the loop runs the same few
/// dozen statements every iteration, and preparing one afresh (`query_row`, `execute`) cost more
/// than running it.
trait Cached {
    fn row<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
    fn run<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
}

impl Cached for Connection {
    fn row<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    fn run<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }
}

/// More than the statements the state runs (about 60), so none is ever evicted and re-prepared.
const STATEMENT_CACHE: usize = 128;

/// What every connection is set to before its first statement: the statement cache, and the query
/// planner's stability guarantee. The bundled SQLite is built with STAT4, which otherwise marks a
/// cached statement stale whenever a parameter compared with an indexed column is bound again —
/// every call — and prepares it afresh: the cache would save nothing.
fn tune(conn: &Connection, path: &Path) -> Result<(), StateError> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map(drop)
        .map_err(|e| classify_open_error(path, e))
}

fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> StateError {
    move |error| StateError::Sql { what, error }
}

fn bad_row(what: &'static str) -> impl FnOnce(String) -> StateError {
    move |detail| StateError::BadRow { what, detail }
}

impl State {
    fn with(conn: Connection, path: PathBuf, durable: bool, epoch: Option<String>) -> State {
        State { conn, path, durable, epoch, others: std::cell::Cell::new(0), kept: None, for_status: true }
    }

    /// Looks once whether another connection has committed since the last look, and says so (a
    /// `halt`, `resume` or `reload` from another process). The loop calls it at the start of each
    /// iteration and while it sleeps.
    pub fn notice_other_writers(&self) -> Result<bool, StateError> {
        let others: i64 =
            self.conn.row("PRAGMA data_version", [], |r| r.get(0)).map_err(sql("reading the data version"))?;
        Ok(self.others.replace(others) != others)
    }

    /// Opens (creating it and its folder on first run) and migrates the database.
    pub fn open(path: &Path) -> Result<State, StateError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| StateError::CreateDir { dir: dir.to_path_buf(), error })?;
        }
        let conn = Connection::open(path).map_err(|error| StateError::Open { path: path.to_path_buf(), error })?;
        check_is_sqlite(&conn, path)?;
        tune(&conn, path)?;
        let mut state = State::with(conn, path.to_path_buf(), true, None);
        // First: a second process opening the same file meanwhile waits instead of failing.
        state.conn.busy_timeout(Duration::from_secs(5)).map_err(sql("setting the busy timeout"))?;
        state.check_integrity()?;
        state.check_version()?;
        // WAL lets `status` read while the daemon writes. NORMAL is durable across a process
        // crash; what must also survive a power cut (an order recorded before it is sent, a
        // halt) is committed with FULL (`durably`).
        state.switch_to_wal()?;
        state.conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql("setting synchronous"))?;
        state.migrate()?;
        Ok(state)
    }

    /// The switch to WAL takes the file for itself for a moment. When another process opens a new
    /// file at the same instant, SQLite can answer "database is locked" at once instead of
    /// waiting (its busy handler does not wait while this connection holds a read lock that
    /// the other's lock would deadlock with): tried again, for as long as the busy timeout.
    fn switch_to_wal(&self) -> Result<(), StateError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match self.conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => return Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(error) => return Err(StateError::Sql { what: "switching to WAL", error }),
            }
        }
    }

    /// Opens a ledger that must already exist (`halt`, `resume`): a missing or empty file is
    /// `Missing` with its absolute path, and nothing is created.
    pub fn open_existing(path: &Path) -> Result<State, StateError> {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        match std::fs::metadata(path) {
            Ok(m) if m.len() > 0 => State::open(path),
            Ok(_) => Err(StateError::Missing { path: absolute }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StateError::Missing { path: absolute }),
            Err(error) => Err(StateError::Inspect { path: absolute, error }),
        }
    }

    /// Opens a throw-away database (a backtest's): nothing in it needs to survive a power cut,
    /// so nothing is fsynced, and nothing it numbers is ever sent to a broker, so its ids carry
    /// the fixed epoch `backtest` and the same replay gives the same ids.
    pub fn open_scratch(path: &Path) -> Result<State, StateError> {
        let mut state = State::open(path)?;
        state.durable = false;
        state.epoch = Some(SCRATCH_EPOCH.to_string());
        Ok(state)
    }

    /// A backtest's ledger, in memory: the same schema and statements as the file, no file, no
    /// locks, no journal on disk, pages of 1 KiB. Gone when dropped; its ids carry the fixed epoch `backtest`, so
    /// the same replay gives the same ids.
    pub fn open_memory() -> Result<State, StateError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|error| StateError::Open { path: path.clone(), error })?;
        tune(&conn, &path)?;
        // Small pages, set before the schema makes any: every page a transaction changes is first
        // copied whole into the in-memory rollback journal, and the ledger's rows are small (4 KiB
        // pages: 4.5 % of a backtest's instructions went to those copies; 1 KiB: 3.6 % fewer).
        conn.pragma_update(None, "page_size", 1024).map_err(|error| StateError::Open { path: path.clone(), error })?;
        let mut state = State::with(conn, path, false, Some(SCRATCH_EPOCH.to_string()));
        state.for_status = false;
        state.kept = Some(BacktestReads::default());
        state.migrate()?;
        Ok(state)
    }

    /// Opens an existing database for reading only: `status` uses it while the daemon runs.
    pub fn open_read_only(path: &Path) -> Result<State, StateError> {
        if !path.exists() {
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            return Err(StateError::Missing { path: absolute });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|error| StateError::Open { path: path.to_path_buf(), error })?;
        check_is_sqlite(&conn, path)?;
        tune(&conn, path)?;
        let state = State::with(conn, path.to_path_buf(), false, None);
        state.conn.busy_timeout(Duration::from_secs(2)).map_err(sql("setting the busy timeout"))?;
        let found = state.user_version()?;
        if found > SCHEMA_VERSION {
            return Err(StateError::TooNew { path: state.path.clone(), found, supported: SCHEMA_VERSION });
        }
        if found < SCHEMA_VERSION {
            // Reading an older schema would fail table by table; say what to do instead.
            return Err(StateError::Corrupt {
                path: state.path.clone(),
                detail: format!(
                    "schema version {found}, older than {SCHEMA_VERSION}: start the daemon once to upgrade it"
                ),
            });
        }
        Ok(state)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn user_version(&self) -> Result<i64, StateError> {
        self.conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| classify_open_error(&self.path, e))
    }

    fn check_integrity(&self) -> Result<(), StateError> {
        let verdict: String = self
            .conn
            .pragma_query_value(None, "quick_check", |r| r.get(0))
            .map_err(|e| classify_open_error(&self.path, e))?;
        if verdict != "ok" {
            return Err(StateError::Corrupt { path: self.path.clone(), detail: verdict });
        }
        Ok(())
    }

    fn check_version(&self) -> Result<(), StateError> {
        // The version and the tables in one statement, so one snapshot: read apart, another
        // process's migration could commit between them (version 0, then tables) and a new
        // ledger would look like another program's.
        let (found, tables): (i64, i64) = self
            .conn
            .row(
                "SELECT (SELECT user_version FROM pragma_user_version()),
                        (SELECT count(*) FROM sqlite_master WHERE type = 'table')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| classify_open_error(&self.path, e))?;
        if found > SCHEMA_VERSION {
            return Err(StateError::TooNew { path: self.path.clone(), found, supported: SCHEMA_VERSION });
        }
        if found == 0 && tables > 0 {
            return Err(StateError::ForeignDatabase { path: self.path.clone() });
        }
        Ok(())
    }

    /// Applies the missing migrations in one transaction: all of them or none. The version is
    /// read inside that write transaction, so two processes opening a new file at once cannot
    /// both migrate it (the second waits, then finds it done).
    fn migrate(&mut self) -> Result<(), StateError> {
        let path = self.path.clone();
        let fail = |error| StateError::Migrate { path: path.clone(), error };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(fail)?;
        let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(fail)?;
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        if found > SCHEMA_VERSION {
            return Err(StateError::TooNew { path: path.clone(), found, supported: SCHEMA_VERSION });
        }
        for step in &MIGRATIONS[found as usize..] {
            tx.execute_batch(step).map_err(fail)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(fail)?;
        tx.commit().map_err(fail)
    }

    // --- key/value --------------------------------------------------------------------------

    pub fn kv_get(&self, key: &str) -> Result<Option<String>, StateError> {
        self.conn
            .row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(sql("reading a key"))
    }

    pub fn kv_set(&self, key: &str, value: &str, now: Timestamp) -> Result<(), StateError> {
        self.conn
            .run(
                "INSERT INTO kv (key, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![key, value, clock::db_ts(now)],
            )
            .map(drop)
            .map_err(sql("writing a key"))
    }

    // --- day-start equity -------------------------------------------------------------------

    pub fn day_start(&self, date: Date) -> Result<Option<DayStart>, StateError> {
        match &self.kept {
            None => self.read_day_start(date),
            Some(kept) => kept.day_start.get(self.conn.total_changes(), date, || self.read_day_start(date)),
        }
    }

    fn read_day_start(&self, date: Date) -> Result<Option<DayStart>, StateError> {
        let row: Option<(f64, String)> = self
            .conn
            .row("SELECT equity, source FROM day_start_equity WHERE trading_date = ?1", [date.to_string()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(sql("reading the day-start equity"))?;
        Ok(row.map(|(equity, source)| DayStart { trading_date: date, equity, source }))
    }

    /// Records the day-start equity of `date` unless one is already recorded, and returns the one
    /// that stands. Once set it is never replaced within the day, whatever the account's size.
    pub fn record_day_start(
        &self,
        date: Date,
        equity: f64,
        source: &str,
        now: Timestamp,
    ) -> Result<DayStart, StateError> {
        // Read first: every iteration asks, and a write that changes nothing still takes the
        // file's write lock.
        if let Some(stands) = self.day_start(date)? {
            return Ok(stands);
        }
        self.conn
            .run(
                "INSERT INTO day_start_equity (trading_date, equity, source, recorded_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (trading_date) DO NOTHING",
                params![date.to_string(), equity, source, clock::db_ts(now)],
            )
            .map_err(sql("recording the day-start equity"))?;
        self.day_start(date)?.ok_or_else(|| StateError::BadRow {
            what: "day_start_equity",
            detail: "the row just written is missing".into(),
        })
    }

    // --- halts ------------------------------------------------------------------------------

    pub fn active_halts(&self) -> Result<Vec<Halt>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT reason, detail, since, until FROM halts WHERE cleared_at IS NULL ORDER BY since, id",
            )
            .map_err(sql("reading halts"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .map_err(sql("reading halts"))?;
        let mut halts = Vec::new();
        for row in rows {
            let (reason, detail, since, until) = row.map_err(sql("reading halts"))?;
            // An unknown reason (a newer build's, or a hand edit) still halts: fail closed.
            let reason = HaltReason::parse(&reason).unwrap_or(HaltReason::StateError);
            let since = clock::parse_ts(&since).map_err(bad_row("halts.since"))?;
            let until = until.as_deref().map(clock::parse_ts).transpose().map_err(bad_row("halts.until"))?;
            halts.push(Halt { reason, detail, since, until });
        }
        Ok(halts)
    }

    /// Sets a halt; returns whether it is new. An active halt of the same reason keeps its
    /// `since`, takes the new detail and the later `until` (a halt without an end keeps none).
    /// Durable (`durably`): a halt the operator was told about survives a power cut.
    pub fn set_halt(&self, halt: &Halt) -> Result<bool, StateError> {
        let until = halt.until.map(clock::db_ts);
        self.durably("setting a halt", |tx| {
            let inserted = tx
                .run(
                    "INSERT INTO halts (reason, detail, since, until) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (reason) WHERE cleared_at IS NULL DO NOTHING",
                    params![halt.reason.as_str(), halt.detail, clock::db_ts(halt.since), until],
                )
                .map_err(sql("setting a halt"))?;
            if inserted == 0 {
                tx.run(
                    "UPDATE halts SET detail = ?2,
                         until = CASE WHEN until IS NULL OR ?3 IS NULL THEN NULL ELSE max(until, ?3) END
                     WHERE reason = ?1 AND cleared_at IS NULL",
                    params![halt.reason.as_str(), halt.detail, until],
                )
                .map_err(sql("extending a halt"))?;
            }
            Ok(inserted == 1)
        })
    }

    /// Clears the active halt of `reason`; returns whether there was one.
    pub fn clear_halt(&self, reason: HaltReason, by: &str, now: Timestamp) -> Result<bool, StateError> {
        let n = self
            .conn
            .run(
                "UPDATE halts SET cleared_at = ?2, cleared_by = ?3 WHERE reason = ?1 AND cleared_at IS NULL",
                params![reason.as_str(), clock::db_ts(now), by],
            )
            .map_err(sql("clearing a halt"))?;
        Ok(n > 0)
    }

    /// Makes every write fail (SQLite's `query_only`), as a full disk would: for tests.
    #[cfg(test)]
    pub(crate) fn set_query_only(&self, on: bool) {
        self.conn.pragma_update(None, "query_only", on).unwrap();
    }

    // --- exit rules of positions ----------------------------------------------------------

    /// Stores the exit rules `bot` enters `symbol` with (replacing older ones): written before
    /// the entry is recorded, so every position this build opens has them.
    pub fn put_position_rules(
        &self,
        bot: &str,
        symbol: &str,
        r: &PositionRules,
        now: Timestamp,
    ) -> Result<(), StateError> {
        let e = &r.exits;
        self.conn
            .run(
                "INSERT INTO position_rules (bot, symbol, kind, stop_loss_pct, take_profit_pct, trailing_stop_pct,
                     time_stop_minutes, flatten_before_close_minutes, manage_until, exit_days_before_expiry, recorded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (bot, symbol) DO UPDATE SET kind = excluded.kind, stop_loss_pct = excluded.stop_loss_pct,
                     take_profit_pct = excluded.take_profit_pct, trailing_stop_pct = excluded.trailing_stop_pct,
                     time_stop_minutes = excluded.time_stop_minutes,
                     flatten_before_close_minutes = excluded.flatten_before_close_minutes,
                     manage_until = excluded.manage_until, exit_days_before_expiry = excluded.exit_days_before_expiry,
                     recorded_at = excluded.recorded_at",
                params![
                    bot,
                    symbol,
                    r.kind.as_str(),
                    e.stop_loss_pct,
                    e.take_profit_pct,
                    e.trailing_stop_pct,
                    e.time_stop_minutes,
                    e.flatten_before_close_minutes,
                    r.manage_until.map(|t| t.to_string()),
                    r.exit_days_before_expiry,
                    clock::db_ts(now)
                ],
            )
            .map_err(sql("storing a position's exit rules"))?;
        Ok(())
    }

    /// The exit rules `bot` entered `symbol` with, if this build stored them.
    pub fn position_rules(&self, bot: &str, symbol: &str) -> Result<Option<PositionRules>, StateError> {
        let what = "reading a position's exit rules";
        let row = self
            .conn
            .row(
                "SELECT kind, stop_loss_pct, take_profit_pct, trailing_stop_pct, time_stop_minutes,
                        flatten_before_close_minutes, manage_until, exit_days_before_expiry
                 FROM position_rules WHERE bot = ?1 AND symbol = ?2",
                params![bot, symbol],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Exits {
                            stop_loss_pct: r.get(1)?,
                            take_profit_pct: r.get(2)?,
                            trailing_stop_pct: r.get(3)?,
                            time_stop_minutes: r.get(4)?,
                            flatten_before_close_minutes: r.get(5)?,
                            // A stored position's resting stop is followed through its order,
                            // not its rules.
                            broker_stop: false,
                            broker_stop_pct: None,
                        },
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<u32>>(7)?,
                    ))
                },
            )
            .optional()
            .map_err(sql(what))?;
        let Some((kind, exits, until, days)) = row else { return Ok(None) };
        let bad = |what: &'static str, detail: String| StateError::BadRow { what, detail };
        let kind = BotKind::parse(&kind).ok_or_else(|| bad("position_rules.kind", kind.clone()))?;
        let manage_until =
            until.map(|t| HhMm::parse(&t).map_err(|e| bad("position_rules.manage_until", e))).transpose()?;
        Ok(Some(PositionRules { kind, exits, manage_until, exit_days_before_expiry: days }))
    }

    // --- orders -----------------------------------------------------------------------------

    /// Runs `f` in one write transaction that is on disk when this returns: committed with
    /// `synchronous=FULL`, so SQLite fsyncs the WAL before the commit completes. For what must
    /// survive a power cut — an order recorded before it is sent, a halt. Everything else commits
    /// with NORMAL (durable across a crash of the process, not of the machine).
    fn durably<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        if self.durable {
            self.conn.pragma_update(None, "synchronous", "FULL").map_err(sql(what))?;
        }
        let result = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(sql(what))
            .and_then(|tx| {
                let value = f(&tx)?;
                tx.commit().map_err(sql(what))?;
                Ok(value)
            });
        if self.durable {
            // Back to the everyday level even when the transaction failed (it rolled back).
            self.conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql(what))?;
        }
        result
    }

    /// Numbers an order and records it, with its legs, in one durable transaction (`durably`)
    /// before it is sent; returns its client order id, `th-<bot>-<yyyymmdd>-<epoch>-<n>`
    /// (`ClientOrderId`). `n` is the ledger's counter (kv `order_seq`), which only grows; the
    /// epoch is drawn the first time this process numbers an order and recorded in `id_epochs`
    /// with it. So a new ledger, a moved or restored one, or one that lost its last transactions
    /// never issues an id this account has seen: Alpaca refuses a reused id forever, and an order
    /// found under one of ours is checked against this record before it is believed.
    pub fn record_order(&mut self, o: &NewOrder) -> Result<String, StateError> {
        let what = "recording an order";
        let fresh = self.epoch.is_none();
        let epoch = self.epoch.clone().unwrap_or_else(|| draw_epoch(o.created_at));
        let at = clock::db_ts(o.created_at);
        let client_order_id = self.durably(what, |tx| {
            if fresh {
                tx.run("INSERT INTO id_epochs (epoch, started_at) VALUES (?1, ?2)", params![epoch, at])
                    .map_err(sql(what))?;
            }
            // Counted, then read back, in this transaction. (Not `RETURNING value`: SQLite
            // gathers returned rows in a temporary table of their own, which cost as much as
            // recording the order itself.)
            tx.run(
                "INSERT INTO kv (key, value, updated_at) VALUES ('order_seq', '1', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1, updated_at = excluded.updated_at",
                [&at],
            )
            .map_err(sql(what))?;
            let n: String =
                tx.row("SELECT value FROM kv WHERE key = 'order_seq'", [], |r| r.get(0)).map_err(sql(what))?;
            let n: u64 = n.parse().map_err(|_| StateError::BadRow { what: "kv.order_seq", detail: n.clone() })?;
            let id = ClientOrderId { bot: o.bot.clone(), date: o.trading_date, epoch: epoch.clone(), n }.text();
            insert_order(tx, &id, o)?;
            Ok(id)
        })?;
        self.epoch = Some(epoch);
        Ok(client_order_id)
    }

    /// Records an order that was sent under `client_order_id` while the ledger took no writes (an
    /// exit with an id derived from what it closes, `ClientOrderId::derived`), once it takes them
    /// again. `false` when an order of that id is already recorded (a second flush is harmless).
    pub fn record_order_as(&mut self, client_order_id: &str, o: &NewOrder) -> Result<bool, StateError> {
        let what = "recording an order sent while the ledger took no writes";
        self.durably(what, |tx| {
            let known: i64 = tx
                .row("SELECT count(*) FROM orders WHERE client_order_id = ?1", [client_order_id], |r| r.get(0))
                .map_err(sql(what))?;
            if known > 0 {
                return Ok(false);
            }
            insert_order(tx, client_order_id, o)?;
            Ok(true)
        })
    }

    pub fn order_legs(&self, client_order_id: &str) -> Result<Vec<LegRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT symbol, ratio, position_intent FROM order_legs WHERE client_order_id = ?1 ORDER BY rowid",
            )
            .map_err(sql("reading order legs"))?;
        let rows = stmt
            .query_map([client_order_id], |r| {
                Ok(LegRecord { symbol: r.get(0)?, ratio: r.get(1)?, position_intent: r.get(2)? })
            })
            .map_err(sql("reading order legs"))?;
        rows.collect::<Result<_, _>>().map_err(sql("reading order legs"))
    }

    /// Like `apply_order_report`, for a multi-leg order: each leg's cumulative fill moves its own
    /// owned position (a leg that closes never flips one), all in one transaction. A leg is
    /// booked with its price or not at all. The order is final only when its legs are: each leg
    /// must carry, priced, the strategy units the parent reports filled (all of them once the
    /// parent says `filled`) times its ratio. Alpaca can report the parent `filled` while a leg
    /// still shows `filled_qty` 0 or no price, or answer without the legs: then the order keeps
    /// its status (unfinished, still followed), `LegBooking::settled` is false, and the next
    /// report books what is missing — never the parent's fill, which would invent a position.
    pub fn apply_leg_reports(
        &mut self,
        client_order_id: &str,
        status: &OrderStatus,
        broker_order_id: Option<&str>,
        filled_qty: Dec,
        legs: &[(String, Dec, Option<Dec>)],
        now: Timestamp,
    ) -> Result<LegBooking, StateError> {
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql("recording a fill"))?;
        let row: Option<(String, Option<String>, Option<String>)> = tx
            .row("SELECT bot, trading_date, qty FROM orders WHERE client_order_id = ?1", [client_order_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(sql("recording a fill"))?;
        let Some((bot, date, ordered)) = row else { return Ok(LegBooking { fills: Vec::new(), settled: true }) };
        let recorded: Vec<(String, String, u32, String)> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT symbol, position_intent, ratio, filled_qty FROM order_legs WHERE client_order_id = ?1
                     ORDER BY rowid",
                )
                .map_err(sql("recording a leg fill"))?;
            let rows = stmt
                .query_map([client_order_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(sql("recording a leg fill"))?;
            rows.collect::<Result<_, _>>().map_err(sql("recording a leg fill"))?
        };
        let bad = |what: &'static str| {
            move |e: crate::core::decimal::DecError| StateError::BadRow { what, detail: e.to_string() }
        };
        // The strategy units filled: the parent's count, and all that were ordered once it says
        // `filled` (whatever count it gives beside that word).
        let mut units = filled_qty;
        if *status == OrderStatus::Filled {
            let ordered: Dec = ordered.as_deref().unwrap_or("0").parse().map_err(bad("orders.qty"))?;
            units = units.max(ordered);
        }
        let mut settled = true;
        let mut deltas = Vec::new();
        let mut realized_total = Dec::ZERO;
        // Only the legs we sent are ours to book.
        for (symbol, intent, ratio, before) in recorded {
            let before: Dec = before.parse().map_err(bad("order_legs.filled_qty"))?;
            // What this leg must carry for the parent's report to be whole. (Overflow cannot
            // happen at real sizes; if it did, the leg is taken as short of it.)
            let due = units.checked_mul_int(i64::from(ratio));
            let Some((_, leg_filled, price)) = legs.iter().find(|(s, ..)| *s == symbol) else {
                settled &= due.is_some_and(|due| before >= due);
                continue;
            };
            let new = leg_filled.checked_sub(before).unwrap_or(Dec::ZERO);
            let priced = price.filter(|_| new > Dec::ZERO);
            let booked = if priced.is_some() { *leg_filled } else { before };
            settled &= due.is_some_and(|due| booked >= due);
            let Some(price) = priced else { continue };
            tx.run(
                "UPDATE order_legs SET filled_qty = ?3 WHERE client_order_id = ?1 AND symbol = ?2",
                params![client_order_id, symbol, leg_filled.to_string()],
            )
            .map_err(sql("recording a leg fill"))?;
            let signed = if intent.starts_with("buy") { new } else { Dec::ZERO.checked_sub(new).unwrap_or(Dec::ZERO) };
            let closing = intent.ends_with("_to_close");
            let realized = move_owned(&tx, &bot, &symbol, signed, price, closing, now)?;
            realized_total = realized_total.checked_add(realized).unwrap_or(realized_total);
            deltas.push(FillDelta { bot: bot.clone(), symbol, qty: signed, price, realized_pnl: realized });
        }
        if settled {
            tx.run(
                "UPDATE orders SET status = ?2, broker_order_id = coalesce(?3, broker_order_id), filled_qty = ?4,
                     updated_at = ?5 WHERE client_order_id = ?1",
                params![client_order_id, status.as_str(), broker_order_id, filled_qty.to_string(), clock::db_ts(now)],
            )
            .map_err(sql("recording a fill"))?;
        } else {
            learn_broker_id(&tx, client_order_id, broker_order_id)?;
        }
        add_realized(&tx, date.as_deref(), &bot, realized_total, now)?;
        add_order_realized(&tx, client_order_id, realized_total)?;
        tx.commit().map_err(sql("recording a fill"))?;
        Ok(LegBooking { fills: deltas, settled })
    }

    pub fn update_order_status(
        &self,
        client_order_id: &str,
        status: &RecordStatus,
        broker_order_id: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, StateError> {
        let n = self
            .conn
            .run(
                "UPDATE orders SET status = ?2, broker_order_id = coalesce(?3, broker_order_id), updated_at = ?4
                 WHERE client_order_id = ?1",
                params![client_order_id, status.as_str(), broker_order_id, clock::db_ts(now)],
            )
            .map_err(sql("updating an order"))?;
        Ok(n > 0)
    }

    fn read_orders(&self, filter: &str, arg: &str) -> Result<Vec<OrderRecord>, StateError> {
        let query = format!(
            "SELECT client_order_id, bot, symbol, side, qty, notional, order_type, intent, status, broker_order_id,
                    created_at, trading_date, rule, filled_qty, limit_price, stop_price
             FROM orders WHERE {filter} ORDER BY created_at, rowid"
        );
        let mut stmt = self.conn.prepare_cached(&query).map_err(sql("reading orders"))?;
        let rows = stmt
            .query_map([arg], |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?),
                    (r.get::<_, Option<String>>(4)?, r.get::<_, Option<String>>(5)?, r.get::<_, String>(6)?),
                    (r.get::<_, String>(7)?, r.get::<_, String>(8)?, r.get::<_, Option<String>>(9)?),
                    (r.get::<_, String>(10)?, r.get::<_, Option<String>>(11)?, r.get::<_, Option<String>>(12)?),
                    (r.get::<_, Option<String>>(13)?, r.get::<_, Option<String>>(14)?, r.get::<_, Option<String>>(15)?),
                ))
            })
            .map_err(sql("reading orders"))?;
        let mut out = Vec::new();
        for row in rows {
            let (
                (coid, bot, symbol, side),
                (qty, notional, order_type),
                (intent, status, broker_id),
                (created, date, rule),
                (filled, limit_price, stop_price),
            ) = row.map_err(sql("reading orders"))?;
            let created_at = clock::parse_ts(&created).map_err(bad_row("orders.created_at"))?;
            let trading_date = match date {
                Some(d) => d.parse().map_err(|_| StateError::BadRow { what: "orders.trading_date", detail: d })?,
                None => clock::trading_date(created_at),
            };
            let filled_qty = filled
                .as_deref()
                .map(str::parse::<Dec>)
                .transpose()
                .map_err(|e| StateError::BadRow { what: "orders.filled_qty", detail: e.to_string() })?
                .unwrap_or(Dec::ZERO);
            // Text only at this edge: a side, type or intent this build cannot read is a row it
            // cannot trust (the iteration is then unsure); an unknown status reads as not final.
            let word = |what: &'static str, text: &str| StateError::BadRow { what, detail: text.to_string() };
            out.push(OrderRecord {
                client_order_id: coid,
                bot,
                symbol,
                side: Side::parse(&side).ok_or_else(|| word("orders.side", &side))?,
                qty,
                notional,
                order_type: OrderType::parse(&order_type).ok_or_else(|| word("orders.order_type", &order_type))?,
                limit_price,
                stop_price,
                intent: Intent::parse(&intent).ok_or_else(|| word("orders.intent", &intent))?,
                status: RecordStatus::parse(&status),
                broker_order_id: broker_id,
                created_at,
                trading_date,
                rule,
                filled_qty,
            });
        }
        Ok(out)
    }

    pub fn order(&self, client_order_id: &str) -> Result<Option<OrderRecord>, StateError> {
        Ok(self.read_orders("client_order_id = ?1", client_order_id)?.into_iter().next())
    }

    /// Every order, oldest first, with the P&L each realised: for reports.
    pub fn all_orders(&self) -> Result<Vec<(OrderRecord, f64)>, StateError> {
        let orders = self.read_orders("?1 = ?1", "")?;
        let mut out = Vec::with_capacity(orders.len());
        for o in orders {
            let pnl: f64 = self
                .conn
                .row("SELECT realized_pnl FROM orders WHERE client_order_id = ?1", [&o.client_order_id], |r| r.get(0))
                .map_err(sql("reading an order's P&L"))?;
            out.push((o, pnl));
        }
        Ok(out)
    }

    /// Records the report of a trading date; `false` when that date already has one.
    pub fn insert_daily_report(
        &self,
        date: Date,
        equity: Option<f64>,
        day_start: Option<f64>,
        pnl_pct: Option<f64>,
        report: &str,
        now: Timestamp,
    ) -> Result<bool, StateError> {
        let n = self
            .conn
            .run(
                "INSERT INTO daily_reports (trading_date, equity, day_start, pnl_pct, report, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (trading_date) DO NOTHING",
                params![date.to_string(), equity, day_start, pnl_pct, report, clock::db_ts(now)],
            )
            .map_err(sql("recording a daily report"))?;
        Ok(n == 1)
    }

    pub fn daily_report(&self, date: Date) -> Result<Option<String>, StateError> {
        self.conn
            .row("SELECT report FROM daily_reports WHERE trading_date = ?1", [date.to_string()], |r| r.get(0))
            .optional()
            .map_err(sql("reading a daily report"))
    }

    /// Halts set during a New York trading date, by reason.
    pub fn halts_on(&self, date: Date) -> Result<Vec<(String, u32)>, StateError> {
        let (from, to) = date_bounds(date);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT reason, count(*) FROM halts WHERE since >= ?1 AND since < ?2 GROUP BY reason ORDER BY reason",
            )
            .map_err(sql("counting the day's halts"))?;
        let rows =
            stmt.query_map([from, to], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql("counting the day's halts"))?;
        rows.collect::<Result<_, _>>().map_err(sql("counting the day's halts"))
    }

    /// `bot`'s exits that filled (some or all) during trading date `date`, counted by rule (a
    /// protective stop's fill is `broker_stop`, whenever it was placed).
    pub fn exits_on(&self, bot: &str, date: Date) -> Result<Vec<(String, u32)>, StateError> {
        let (from, to) = date_bounds(date);
        let what = "counting the day's exits";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT coalesce(rule, ''), count(*) FROM orders
                 WHERE bot = ?1 AND intent = 'exit' AND filled_qty IS NOT NULL AND filled_qty <> '0'
                   AND updated_at >= ?2 AND updated_at < ?3
                 GROUP BY rule ORDER BY rule",
            )
            .map_err(sql(what))?;
        let rows = stmt.query_map(params![bot, from, to], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql(what))?;
        rows.collect::<Result<_, _>>().map_err(sql(what))
    }

    /// How many halts were ever set, by reason.
    pub fn halt_counts(&self) -> Result<Vec<(String, u32)>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT reason, count(*) FROM halts GROUP BY reason ORDER BY reason")
            .map_err(sql("counting halts"))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql("counting halts"))?;
        rows.collect::<Result<_, _>>().map_err(sql("counting halts"))
    }

    /// Orders that may still change: not in a final status.
    pub fn unfinished_orders(&self) -> Result<Vec<OrderRecord>, StateError> {
        // `?1` is unused but keeps one reader for every filter.
        let read = || self.read_orders(&format!("{UNFINISHED} AND ?1 = ?1"), "");
        match &self.kept {
            None => read(),
            Some(kept) => kept.unfinished.get(self.conn.total_changes(), (), read),
        }
    }

    /// (bot, symbol) of every exit order still in flight, protective stops aside (a resting
    /// stop is no exit in flight: an exit of the daemon's own clears it first); a pair may come
    /// twice. The narrow read of `unfinished_orders` the loop asks once a bot a minute. (No
    /// `DISTINCT`: with it SQLite walks a whole index of orders instead of the unfinished ones.)
    pub fn exits_in_flight(&self) -> Result<Vec<(String, String)>, StateError> {
        match &self.kept {
            None => self.read_exits_in_flight(),
            Some(kept) => kept.exits.get(self.conn.total_changes(), (), || self.read_exits_in_flight()),
        }
    }

    fn read_exits_in_flight(&self) -> Result<Vec<(String, String)>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT bot, symbol FROM orders WHERE {UNFINISHED}
                 AND intent = 'exit' AND coalesce(rule, '') <> '{BROKER_STOP}'"
            ))
            .map_err(sql("reading exits in flight"))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql("reading exits in flight"))?;
        rows.collect::<Result<_, _>>().map_err(sql("reading exits in flight"))
    }

    /// Entry orders a bot sent (or tried to) on a trading date: its trades of the day.
    pub fn entries_on(&self, bot: &str, date: Date) -> Result<u32, StateError> {
        Ok(self.bot_day(bot, date)?.entries)
    }

    /// A bot's trading date so far, in one read: what it realised (0 before its budget row is
    /// written) and its entries (`entries_on`).
    pub fn bot_day(&self, bot: &str, date: Date) -> Result<BotDay, StateError> {
        match &self.kept {
            None => self.read_bot_day(bot, date),
            Some(kept) => {
                kept.days.get(self.conn.total_changes(), (bot.to_string(), date), || self.read_bot_day(bot, date))
            }
        }
    }

    fn read_bot_day(&self, bot: &str, date: Date) -> Result<BotDay, StateError> {
        self.conn
            .row(
                "SELECT (SELECT realized_pnl FROM budgets WHERE trading_date = ?1 AND bot = ?2),
                        (SELECT count(*) FROM orders WHERE trading_date = ?1 AND bot = ?2 AND intent = 'entry'
                         AND status NOT IN ('rejected', 'abandoned'))",
                params![date.to_string(), bot],
                |r| Ok(BotDay { realized_pnl: r.get::<_, Option<f64>>(0)?.unwrap_or(0.0), entries: r.get(1)? }),
            )
            .map_err(sql("reading a bot's day"))
    }

    /// Records a broker's report on one of our orders and, in the same transaction, moves the
    /// owned position by what newly filled. Returns the change, if any. Fills are cumulative
    /// (`filled_qty` is the order's total so far), so a report seen twice changes nothing.
    pub fn apply_order_report(
        &mut self,
        client_order_id: &str,
        status: &OrderStatus,
        broker_order_id: Option<&str>,
        filled_qty: Dec,
        avg_price: Option<Dec>,
        now: Timestamp,
    ) -> Result<Option<FillDelta>, StateError> {
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql("recording a fill"))?;
        let row: Option<[Option<String>; 6]> = tx
            .row(
                "SELECT bot, symbol, side, coalesce(filled_qty, '0'), trading_date, intent FROM orders
                 WHERE client_order_id = ?1",
                [client_order_id],
                |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?]),
            )
            .optional()
            .map_err(sql("recording a fill"))?;
        let Some([Some(bot), Some(symbol), Some(side), Some(before), date, intent]) = row else { return Ok(None) };
        let exit = intent.as_deref() == Some("exit");
        let before: Dec = before.parse().map_err(|e: crate::core::decimal::DecError| StateError::BadRow {
            what: "orders.filled_qty",
            detail: e.to_string(),
        })?;
        let new = filled_qty.checked_sub(before).unwrap_or(Dec::ZERO);
        if new > Dec::ZERO && avg_price.is_none() {
            // More filled, but the answer has no price: a fill is booked with its price or not at
            // all. Nothing moves — not the quantity, not the status, so the order stays unfinished
            // and its next report books the fill.
            learn_broker_id(&tx, client_order_id, broker_order_id)?;
            tx.commit().map_err(sql("recording a fill"))?;
            return Ok(None);
        }
        tx.run(
            "UPDATE orders SET status = ?2, broker_order_id = coalesce(?3, broker_order_id), filled_qty = ?4,
                 updated_at = ?5 WHERE client_order_id = ?1",
            params![
                client_order_id,
                status.as_str(),
                broker_order_id,
                filled_qty.max(before).to_string(),
                clock::db_ts(now)
            ],
        )
        .map_err(sql("recording a fill"))?;
        let delta = match (new > Dec::ZERO, avg_price) {
            (true, Some(price)) => {
                let signed = if side == "buy" { new } else { Dec::ZERO.checked_sub(new).unwrap_or(Dec::ZERO) };
                let realized = move_owned(&tx, &bot, &symbol, signed, price, exit, now)?;
                add_realized(&tx, date.as_deref(), &bot, realized, now)?;
                add_order_realized(&tx, client_order_id, realized)?;
                Some(FillDelta { bot, symbol, qty: signed, price, realized_pnl: realized })
            }
            _ => None,
        };
        tx.commit().map_err(sql("recording a fill"))?;
        Ok(delta)
    }

    // --- owned positions --------------------------------------------------------------------

    pub fn owned_positions(&self) -> Result<Vec<OwnedPosition>, StateError> {
        match &self.kept {
            None => self.read_owned_positions(),
            Some(kept) => kept.owned.get(self.conn.total_changes(), (), || self.read_owned_positions()),
        }
    }

    fn read_owned_positions(&self) -> Result<Vec<OwnedPosition>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT bot, symbol, qty, avg_entry_price, opened_at, high_water FROM owned_positions ORDER BY bot, symbol",
            )
            .map_err(sql("reading owned positions"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<f64>>(5)?,
                ))
            })
            .map_err(sql("reading owned positions"))?;
        let mut out = Vec::new();
        for row in rows {
            let (bot, symbol, qty, avg, opened, high_water) = row.map_err(sql("reading owned positions"))?;
            let num = |t: &str, what: &'static str| {
                t.parse::<Dec>().map_err(|e| StateError::BadRow { what, detail: e.to_string() })
            };
            out.push(OwnedPosition {
                qty: num(&qty, "owned_positions.qty")?,
                avg_entry_price: num(&avg, "owned_positions.avg_entry_price")?,
                opened_at: clock::parse_ts(&opened).map_err(bad_row("owned_positions.opened_at"))?,
                high_water,
                bot,
                symbol,
            });
        }
        Ok(out)
    }

    /// Replaces the stored picture of the broker's positions with a fresh one, in one
    /// transaction so `status` never reads half of it.
    pub fn replace_broker_positions(&mut self, rows: &[BrokerPositionRow], now: Timestamp) -> Result<(), StateError> {
        let what = "recording the broker's positions";
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql(what))?;
        tx.run("DELETE FROM broker_positions", []).map_err(sql(what))?;
        for r in rows {
            tx.run(
                "INSERT INTO broker_positions (symbol, qty, avg_entry_price, current_price) VALUES (?1, ?2, ?3, ?4)",
                params![
                    r.symbol,
                    r.qty.to_string(),
                    r.avg_entry_price.to_string(),
                    r.current_price.map(|p| p.to_string())
                ],
            )
            .map_err(sql(what))?;
        }
        // Kept apart from the rows: an empty picture still says when the broker was read.
        tx.run(
            "INSERT INTO kv (key, value, updated_at) VALUES ('broker_positions_seen_at', ?1, ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            [clock::db_ts(now)],
        )
        .map_err(sql(what))?;
        tx.commit().map_err(sql(what))
    }

    pub fn broker_positions(&self) -> Result<Vec<BrokerPositionRow>, StateError> {
        let what = "reading the broker's positions";
        let mut stmt = self
            .conn
            .prepare_cached("SELECT symbol, qty, avg_entry_price, current_price FROM broker_positions ORDER BY symbol")
            .map_err(sql(what))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .map_err(sql(what))?;
        let mut out = Vec::new();
        for row in rows {
            let (symbol, qty, avg, price) = row.map_err(sql(what))?;
            let num = |t: &str, what: &'static str| {
                t.parse::<Dec>().map_err(|e| StateError::BadRow { what, detail: e.to_string() })
            };
            out.push(BrokerPositionRow {
                qty: num(&qty, "broker_positions.qty")?,
                avg_entry_price: num(&avg, "broker_positions.avg_entry_price")?,
                current_price: price.as_deref().map(|p| num(p, "broker_positions.current_price")).transpose()?,
                symbol,
            });
        }
        Ok(out)
    }

    /// When the broker's positions were last read, if ever.
    pub fn broker_positions_seen_at(&self) -> Result<Option<Timestamp>, StateError> {
        match self.kv_get("broker_positions_seen_at")? {
            Some(t) => clock::parse_ts(&t).map(Some).map_err(bad_row("kv.broker_positions_seen_at")),
            None => Ok(None),
        }
    }

    /// Caps (or drops, at zero) what a bot owns of a symbol: reconciliation found less at the
    /// broker than the ledger says.
    pub fn set_owned_qty(&self, bot: &str, symbol: &str, qty: Dec, now: Timestamp) -> Result<(), StateError> {
        if qty.is_zero() {
            self.conn
                .run("DELETE FROM owned_positions WHERE bot = ?1 AND symbol = ?2", params![bot, symbol])
                .map(drop)
                .map_err(sql("dropping an owned position"))
        } else {
            self.conn
                .run(
                    "UPDATE owned_positions SET qty = ?3, updated_at = ?4 WHERE bot = ?1 AND symbol = ?2",
                    params![bot, symbol, qty.to_string(), clock::db_ts(now)],
                )
                .map(drop)
                .map_err(sql("capping an owned position"))
        }
    }

    /// Records a price seen while holding: the best since entry is kept (the highest for a long,
    /// the lowest for a short), for trailing stops.
    pub fn record_best_price(&self, bot: &str, symbol: &str, price: f64, long: bool) -> Result<(), StateError> {
        // Only a better price changes the row.
        let sql_text = if long {
            "UPDATE owned_positions SET high_water = ?3
             WHERE bot = ?1 AND symbol = ?2 AND (high_water IS NULL OR high_water < ?3)"
        } else {
            "UPDATE owned_positions SET high_water = ?3
             WHERE bot = ?1 AND symbol = ?2 AND (high_water IS NULL OR high_water > ?3)"
        };
        self.conn.run(sql_text, params![bot, symbol, price]).map(drop).map_err(sql("recording a best price"))
    }

    /// When a bot's last exit in `symbol` (partly) filled, for its cooldown.
    pub fn last_exit(&self, bot: &str, symbol: &str) -> Result<Option<Timestamp>, StateError> {
        let at: Option<String> = self
            .conn
            .row(
                // Newest first down the index, to the first that filled: not `max()`, which
                // reads every exit of the pair.
                "SELECT updated_at FROM orders WHERE bot = ?1 AND symbol = ?2 AND intent = 'exit'
                 AND filled_qty IS NOT NULL AND filled_qty <> '0' ORDER BY updated_at DESC LIMIT 1",
                params![bot, symbol],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("reading the last exit"))?;
        at.as_deref().map(clock::parse_ts).transpose().map_err(bad_row("orders.updated_at"))
    }

    // --- bot activity -----------------------------------------------------------------------

    /// Whether this ledger keeps the rows only `status` reads (loop runs, bot activity): not a
    /// backtest's ledger in memory. A caller need not prepare what would not be written.
    pub fn keeps_status_rows(&self) -> bool {
        self.for_status
    }

    /// Notes why `bot` is not entering (`None`: it sent an entry) since `since`.
    pub fn put_bot_activity(
        &self,
        bot: &str,
        idle: Option<&Idle>,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<(), StateError> {
        if !self.for_status {
            return Ok(());
        }
        let reason = idle.map(|i| i.detail.to_string());
        self.conn
            .run(
                "INSERT INTO bot_activity (bot, causes, reason, since, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (bot) DO UPDATE SET causes = excluded.causes, reason = excluded.reason,
                     since = excluded.since, updated_at = excluded.updated_at",
                params![bot, idle.map(Idle::causes_text), reason, clock::db_ts(since), clock::db_ts(now)],
            )
            .map(drop)
            .map_err(sql("writing a bot's activity"))
    }

    /// Every bot's last noted activity, by bot id.
    pub fn bot_activity(&self) -> Result<Vec<BotActivity>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT bot, causes, reason, since, updated_at FROM bot_activity ORDER BY bot")
            .map_err(sql("reading the bots' activity"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(sql("reading the bots' activity"))?;
        let mut out = Vec::new();
        for row in rows {
            let (bot, causes, reason, since, updated_at) = row.map_err(sql("reading the bots' activity"))?;
            out.push(BotActivity {
                bot,
                causes: causes.as_deref().map(Idle::parse_causes).unwrap_or_default(),
                reason,
                since: clock::parse_ts(&since).map_err(bad_row("bot_activity.since"))?,
                updated_at: clock::parse_ts(&updated_at).map_err(bad_row("bot_activity.updated_at"))?,
            });
        }
        Ok(out)
    }

    // --- budgets ----------------------------------------------------------------------------

    pub fn put_budget(&self, b: &BudgetRow, now: Timestamp) -> Result<(), StateError> {
        self.conn
            .run(
                "INSERT INTO budgets (trading_date, bot, daily_loss_limit, max_open_risk, max_trades, max_positions, realized_pnl, trades, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (trading_date, bot) DO UPDATE SET
                     daily_loss_limit = excluded.daily_loss_limit, max_open_risk = excluded.max_open_risk,
                     max_trades = excluded.max_trades, max_positions = excluded.max_positions,
                     trades = excluded.trades, updated_at = excluded.updated_at",
                params![
                    b.trading_date.to_string(),
                    b.bot,
                    b.daily_loss_limit,
                    b.max_open_risk,
                    b.max_trades,
                    b.max_positions,
                    b.realized_pnl,
                    b.trades,
                    clock::db_ts(now)
                ],
            )
            .map(drop)
            .map_err(sql("writing a budget"))
    }

    pub fn budgets(&self, date: Date) -> Result<Vec<BudgetRow>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT bot, daily_loss_limit, max_open_risk, max_trades, max_positions, realized_pnl, trades
                 FROM budgets WHERE trading_date = ?1 ORDER BY bot",
            )
            .map_err(sql("reading budgets"))?;
        let rows = stmt
            .query_map([date.to_string()], |r| {
                Ok(BudgetRow {
                    trading_date: date,
                    bot: r.get(0)?,
                    daily_loss_limit: r.get(1)?,
                    max_open_risk: r.get(2)?,
                    max_trades: r.get(3)?,
                    max_positions: r.get(4)?,
                    realized_pnl: r.get(5)?,
                    trades: r.get(6)?,
                })
            })
            .map_err(sql("reading budgets"))?;
        rows.collect::<Result<_, _>>().map_err(sql("reading budgets"))
    }

    /// A bot's realised P&L over the trading dates `from` to `to`, both included.
    pub fn realized_between(&self, bot: &str, from: Date, to: Date) -> Result<f64, StateError> {
        self.conn
            .row(
                "SELECT coalesce(sum(realized_pnl), 0) FROM budgets WHERE bot = ?1 AND trading_date BETWEEN ?2 AND ?3",
                params![bot, from.to_string(), to.to_string()],
                |r| r.get(0),
            )
            .map_err(sql("summing realised P&L"))
    }

    // --- loop runs --------------------------------------------------------------------------

    pub fn insert_loop_run(&self, run: &LoopRun) -> Result<(), StateError> {
        if !self.for_status {
            return Ok(());
        }
        self.conn.run(
            "INSERT INTO loop_runs (iteration, started_at, duration_ms, equity, day_start_equity, daily_pnl_pct, halted,
                                        orders_submitted, requests, error, market_time)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
            run.iteration as i64,
            clock::db_ts(run.started_at),
            run.duration_ms as i64,
            run.equity,
            run.day_start_equity,
            run.daily_pnl_pct,
            run.halted,
            run.orders_submitted,
            run.requests,
            run.error,
            run.market_time.map(clock::db_ts)
            ],
        )
        .map_err(sql("recording a loop run"))?;
        let id = self.conn.last_insert_rowid();
        // Pruning in batches keeps the cost off most iterations.
        if id % 1000 == 0 {
            self.conn
                .run("DELETE FROM loop_runs WHERE id <= ?1", [id - LOOP_RUNS_KEPT])
                .map_err(sql("pruning old loop runs"))?;
        }
        Ok(())
    }

    pub fn last_loop_run(&self) -> Result<Option<LoopRun>, StateError> {
        let row = self
            .conn
            .row(
                "SELECT iteration, started_at, duration_ms, equity, day_start_equity, daily_pnl_pct, halted, orders_submitted, requests, error,
                        market_time
                 FROM loop_runs ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get::<_, Option<String>>(10)?,
                    ))
                },
            )
            .optional()
            .map_err(sql("reading the last loop run"))?;
        let Some((
            iteration,
            started,
            duration_ms,
            equity,
            day_start_equity,
            daily_pnl_pct,
            halted,
            orders_submitted,
            requests,
            error,
            market_time,
        )) = row
        else {
            return Ok(None);
        };
        let market_time =
            market_time.map(|t| clock::parse_ts(&t)).transpose().map_err(bad_row("loop_runs.market_time"))?;
        Ok(Some(LoopRun {
            iteration: iteration.max(0) as u64,
            started_at: clock::parse_ts(&started).map_err(bad_row("loop_runs.started_at"))?,
            market_time,
            duration_ms: duration_ms.max(0) as u64,
            equity,
            day_start_equity,
            daily_pnl_pct,
            halted,
            orders_submitted,
            requests,
            error,
        }))
    }

    pub fn loop_run_count(&self) -> Result<i64, StateError> {
        self.conn.row("SELECT count(*) FROM loop_runs", [], |r| r.get(0)).map_err(sql("counting loop runs"))
    }
}

/// Moves `bot`'s owned position in `symbol` by `signed` at `price` — the arithmetic is
/// `ledger::apply`'s, the multiplier the instrument's — and returns the P&L realised. With
/// `reduce_only` (an exit, a closing leg) it only ever lowers the position.
fn move_owned(
    tx: &rusqlite::Transaction<'_>,
    bot: &str,
    symbol: &str,
    signed: Dec,
    price: Dec,
    reduce_only: bool,
    now: Timestamp,
) -> Result<Dec, StateError> {
    let row: Option<(String, String)> = tx
        .row(
            "SELECT qty, avg_entry_price FROM owned_positions WHERE bot = ?1 AND symbol = ?2",
            params![bot, symbol],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql("reading an owned position"))?;
    let bad = |e: crate::core::decimal::DecError| StateError::BadRow { what: "owned_positions", detail: e.to_string() };
    let before = match row {
        Some((q, a)) => {
            Some(Holding { qty: q.parse::<Dec>().map_err(bad)?, avg_entry_price: a.parse::<Dec>().map_err(bad)? })
        }
        None => None,
    };
    let fill = Fill { qty: signed, price, reduce_only };
    let applied = ledger::apply(before, fill, instrument::multiplier(symbol)).ok_or_else(|| StateError::BadRow {
        what: "owned_positions",
        detail: format!("{symbol}: {signed} at {price} is beyond the ledger's range"),
    })?;
    match applied.holding {
        None => {
            tx.run("DELETE FROM owned_positions WHERE bot = ?1 AND symbol = ?2", params![bot, symbol])
                .map_err(sql("closing an owned position"))?;
        }
        Some(h) => {
            tx.run(
                "INSERT INTO owned_positions (bot, symbol, qty, avg_entry_price, opened_at, high_water, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?5)
                 ON CONFLICT (bot, symbol) DO UPDATE SET qty = excluded.qty, avg_entry_price = excluded.avg_entry_price,
                     updated_at = excluded.updated_at",
                params![
                    bot,
                    symbol,
                    h.qty.to_string(),
                    h.avg_entry_price.to_string(),
                    clock::db_ts(now),
                    price.to_f64()
                ],
            )
            .map_err(sql("moving an owned position"))?;
        }
    }
    Ok(applied.realized)
}

/// Adds realised P&L to a bot's day (the order's trading date), creating the day's row if needed.
/// The sums are stored as REAL and rounded to nine decimals at each addition, so a day of exact
/// fills reads back as the exact decimal sum (no float noise builds up in the cents).
fn add_realized(
    tx: &rusqlite::Transaction<'_>,
    date: Option<&str>,
    bot: &str,
    realized: Dec,
    now: Timestamp,
) -> Result<(), StateError> {
    if realized.is_zero() {
        return Ok(());
    }
    let date = date.map_or_else(|| clock::trading_date(now).to_string(), str::to_string);
    tx.run(
        "INSERT INTO budgets (trading_date, bot, daily_loss_limit, max_open_risk, max_trades, max_positions,
                              realized_pnl, trades, updated_at)
         VALUES (?1, ?2, 0, 0, 0, 0, ?3, 0, ?4)
         ON CONFLICT (trading_date, bot) DO UPDATE SET realized_pnl = round(realized_pnl + excluded.realized_pnl, 9),
             updated_at = excluded.updated_at",
        params![date, bot, realized.to_f64(), clock::db_ts(now)],
    )
    .map(drop)
    .map_err(sql("recording realised P&L"))
}

/// Keeps the broker's id of one of our orders, when the answer gave one, and nothing else.
fn learn_broker_id(
    tx: &rusqlite::Transaction<'_>,
    client_order_id: &str,
    broker_order_id: Option<&str>,
) -> Result<(), StateError> {
    tx.run(
        "UPDATE orders SET broker_order_id = coalesce(?2, broker_order_id) WHERE client_order_id = ?1",
        params![client_order_id, broker_order_id],
    )
    .map(drop)
    .map_err(sql("recording an order's broker id"))
}

fn add_order_realized(tx: &rusqlite::Transaction<'_>, client_order_id: &str, realized: Dec) -> Result<(), StateError> {
    if realized.is_zero() {
        return Ok(());
    }
    tx.run(
        "UPDATE orders SET realized_pnl = round(realized_pnl + ?2, 9) WHERE client_order_id = ?1",
        params![client_order_id, realized.to_f64()],
    )
    .map(drop)
    .map_err(sql("recording an order's P&L"))
}

/// Refuses a file that is not SQLite before anything is written to it, through SQLite itself: a
/// read of the schema answers "not a database" for any other file, however short, and leaves it
/// untouched (an empty file is a new database). Not through a `std::fs::File`: closing any
/// descriptor of a file drops every POSIX lock the process holds on it, SQLite's own among them,
/// and another process (a `sqlite3` open, a `.backup`) could then checkpoint and delete the
/// `-wal` under a running daemon, which would go on writing into the deleted file.
fn check_is_sqlite(conn: &Connection, path: &Path) -> Result<(), StateError> {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())).map_err(|e| classify_open_error(path, e))
}

fn classify_open_error(path: &Path, error: rusqlite::Error) -> StateError {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => StateError::NotADatabase { path: path.to_path_buf() },
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            StateError::Corrupt { path: path.to_path_buf(), detail: error.to_string() }
        }
        _ => StateError::Open { path: path.to_path_buf(), error },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// `state.db` in a folder not made yet (`sub/`), inside a scratch folder removed at the end.
    fn temp_db(name: &str) -> crate::test_dir::TestPath {
        crate::test_dir::TestDir::new(&format!("state-{name}")).into_path("sub/state.db")
    }

    #[test]
    fn migrates_from_empty_and_reopens_with_data() {
        let path = temp_db("reopen");
        let now = ts("2026-11-25T15:00:00Z");
        {
            let s = State::open(&path).unwrap();
            s.kv_set("mode", "paper", now).unwrap();
            s.record_day_start(jiff::civil::date(2026, 11, 25), 100_000.0, "last_equity", now).unwrap();
        }
        let s = State::open(&path).unwrap();
        assert_eq!(s.user_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(s.kv_get("mode").unwrap().as_deref(), Some("paper"));
        let d = s.day_start(jiff::civil::date(2026, 11, 25)).unwrap().unwrap();
        assert_eq!(d.equity, 100_000.0);
    }

    /// An iteration that knew nothing and did nothing, at `at`.
    fn quiet_run(at: Timestamp) -> LoopRun {
        LoopRun {
            iteration: 0,
            started_at: at,
            market_time: Some(at),
            duration_ms: 3,
            equity: None,
            day_start_equity: None,
            daily_pnl_pct: None,
            halted: false,
            orders_submitted: 0,
            requests: 0,
            error: None,
        }
    }

    /// mom_AAPL owns 10 AAPL at 100, written straight into the table.
    fn own_ten_aapl(s: &State, now: Timestamp) {
        s.conn
            .execute(
                "INSERT INTO owned_positions (bot, symbol, qty, avg_entry_price, opened_at, updated_at)
                 VALUES ('mom_AAPL', 'AAPL', '10', '100', ?1, ?1)",
                [clock::db_ts(now)],
            )
            .unwrap();
    }

    #[test]
    fn every_read_sees_the_file_as_it_is_now() {
        let path = temp_db("fresh");
        let now = ts("2026-11-25T15:00:00Z");
        let s = State::open(&path).unwrap();
        own_ten_aapl(&s, now);
        assert_eq!(s.owned_positions().unwrap()[0].qty, Dec::from_int(10));
        s.set_owned_qty("mom_AAPL", "AAPL", Dec::from_int(7), now).unwrap();
        assert_eq!(s.owned_positions().unwrap()[0].qty, Dec::from_int(7));
        // Another connection's commit (as `halt` or a second process would write) is seen by the
        // next read, without waiting for the loop to look for other writers.
        let other = Connection::open(&path).unwrap();
        other.execute("UPDATE owned_positions SET qty = '3' WHERE symbol = 'AAPL'", []).unwrap();
        assert_eq!(s.owned_positions().unwrap()[0].qty, Dec::from_int(3));
        other
            .execute(
                "INSERT INTO orders (client_order_id, bot, symbol, side, qty, order_type, status, created_at, updated_at,
                     trading_date, intent)
                 VALUES ('x-1', 'mom_AAPL', 'AAPL', 'buy', '1', 'market', 'submitted', ?1, ?1, '2026-11-25', 'entry')",
                [clock::db_ts(now)],
            )
            .unwrap();
        assert_eq!(s.unfinished_orders().unwrap().len(), 1);
        assert_eq!(s.entries_on("mom_AAPL", jiff::civil::date(2026, 11, 25)).unwrap(), 1);
        other.execute("DELETE FROM owned_positions", []).unwrap();
        assert!(s.owned_positions().unwrap().is_empty());
        // The loop's look for other writers says whether one committed since the last look.
        assert!(s.notice_other_writers().unwrap());
        assert!(!s.notice_other_writers().unwrap());
        other.execute("UPDATE orders SET status = 'filled'", []).unwrap();
        assert!(s.notice_other_writers().unwrap());
        assert!(s.unfinished_orders().unwrap().is_empty());
    }

    /// The exits in flight are the unfinished exits, protective stops aside: the narrow read says
    /// what filtering every unfinished order would.
    #[test]
    fn exits_in_flight_are_unfinished_exits_that_are_not_protective_stops() {
        let mut s = State::open_memory().unwrap();
        let now = ts("2026-11-25T15:00:00Z");
        let exit = s.record_order(&order("sell", "1", "exit")).unwrap();
        s.record_order(&NewOrder { rule: Some(BROKER_STOP.into()), ..order("sell", "1", "exit") }).unwrap();
        s.record_order(&NewOrder { symbol: "MSFT".into(), ..order("buy", "1", "entry") }).unwrap();
        let done = s.record_order(&NewOrder { symbol: "QQQ".into(), ..order("sell", "1", "exit") }).unwrap();
        s.apply_order_report(&done, &OrderStatus::Canceled, Some("b-1"), Dec::ZERO, None, now).unwrap();
        let by_filter = |s: &State| -> Vec<(String, String)> {
            s.unfinished_orders()
                .unwrap()
                .into_iter()
                .filter(|o| o.intent == Intent::Exit && o.rule.as_deref() != Some(BROKER_STOP))
                .map(|o| (o.bot, o.symbol))
                .collect()
        };
        assert_eq!(s.exits_in_flight().unwrap(), vec![("mom_AAPL".to_string(), "AAPL".to_string())]);
        assert_eq!(s.exits_in_flight().unwrap(), by_filter(&s));
        s.apply_order_report(&exit, &OrderStatus::Filled, Some("b-2"), Dec::ZERO, None, now).unwrap();
        assert!(s.exits_in_flight().unwrap().is_empty());
        assert_eq!(s.exits_in_flight().unwrap(), by_filter(&s));
    }

    /// A backtest's ledger keeps its answers (`core::backtest_reads`) only while nothing was
    /// written: after each write of the loop's kinds every kept read answers what a plain read
    /// of the same database does. A ledger on a file keeps nothing.
    #[test]
    fn a_backtests_kept_reads_answer_what_a_plain_read_does_after_every_write() {
        let mut s = State::open_memory().unwrap();
        assert!(State::open(&temp_db("plain")).unwrap().kept.is_none(), "a file's ledger keeps no reads");
        let now = ts("2026-11-25T15:00:00Z");
        let date = jiff::civil::date(2026, 11, 25);
        let agree = |s: &State, after: &str| {
            assert_eq!(s.owned_positions().unwrap(), s.read_owned_positions().unwrap(), "owned after {after}");
            let plain = s.read_orders(&format!("{UNFINISHED} AND ?1 = ?1"), "").unwrap();
            let ids = |v: Vec<OrderRecord>| v.into_iter().map(|o| (o.client_order_id, o.status)).collect::<Vec<_>>();
            assert_eq!(ids(s.unfinished_orders().unwrap()), ids(plain), "unfinished after {after}");
            assert_eq!(s.exits_in_flight().unwrap(), s.read_exits_in_flight().unwrap(), "exits after {after}");
            assert_eq!(
                s.bot_day("mom_AAPL", date).unwrap(),
                s.read_bot_day("mom_AAPL", date).unwrap(),
                "day after {after}"
            );
            assert_eq!(s.day_start(date).unwrap(), s.read_day_start(date).unwrap(), "day start after {after}");
        };
        agree(&s, "nothing");
        s.record_day_start(date, 1000.0, "first_seen", now).unwrap();
        agree(&s, "the day start");
        let entry = s.record_order(&order("buy", "10", "entry")).unwrap();
        agree(&s, "an entry recorded");
        s.apply_order_report(
            &entry,
            &OrderStatus::Filled,
            Some("b-1"),
            Dec::from_int(10),
            Some(Dec::from_int(100)),
            now,
        )
        .unwrap();
        agree(&s, "its fill");
        s.record_best_price("mom_AAPL", "AAPL", 101.0, true).unwrap();
        agree(&s, "a best price");
        let exit = s.record_order(&order("sell", "10", "exit")).unwrap();
        agree(&s, "an exit recorded");
        s.apply_order_report(&exit, &OrderStatus::Filled, Some("b-2"), Dec::from_int(10), Some(Dec::from_int(90)), now)
            .unwrap();
        agree(&s, "its fill at a loss");
        assert_eq!(s.bot_day("mom_AAPL", date).unwrap(), BotDay { realized_pnl: -100.0, entries: 1 });
        assert!(s.owned_positions().unwrap().is_empty());
    }

    #[test]
    fn only_a_better_price_moves_the_best_price_of_a_long_or_a_short() {
        let now = ts("2026-11-25T15:00:00Z");
        let s = State::open_memory().unwrap();
        own_ten_aapl(&s, now);
        s.conn
            .execute(
                "INSERT INTO owned_positions (bot, symbol, qty, avg_entry_price, opened_at, high_water, updated_at)
                 VALUES ('mom_MSFT', 'MSFT', '-4', '300', ?1, 310.0, ?1)",
                [clock::db_ts(now)],
            )
            .unwrap();
        let best = |symbol: &str| s.owned_positions().unwrap().iter().find(|p| p.symbol == symbol).unwrap().high_water;
        assert_eq!(best("AAPL"), None);
        for (price, seen) in [(101.0, 101.0), (100.5, 101.0), (0.1 + 0.2 + 101.0, 0.1 + 0.2 + 101.0)] {
            s.record_best_price("mom_AAPL", "AAPL", price, true).unwrap();
            assert_eq!(best("AAPL"), Some(seen), "long at {price}");
        }
        for (price, seen) in [(305.0, 305.0), (306.0, 305.0), (299.125, 299.125)] {
            s.record_best_price("mom_MSFT", "MSFT", price, false).unwrap();
            assert_eq!(best("MSFT"), Some(seen), "short at {price}");
        }
        assert_eq!(best("AAPL"), Some(0.1 + 0.2 + 101.0), "one position's price leaves the other's");
    }

    #[test]
    fn day_start_is_never_replaced_within_the_day() {
        let path = temp_db("daystart");
        let s = State::open(&path).unwrap();
        let date = jiff::civil::date(2026, 11, 25);
        let now = ts("2026-11-25T15:00:00Z");
        s.record_day_start(date, 500.0, "first_seen", now).unwrap();
        // A small account (the Python daemon reset below $1,000) keeps its reference.
        let d = s.record_day_start(date, 900.0, "first_seen", now).unwrap();
        assert_eq!(d.equity, 500.0);
    }

    #[test]
    fn halts_set_extend_and_clear() {
        let path = temp_db("halts");
        let s = State::open(&path).unwrap();
        let h = Halt {
            reason: HaltReason::ApiFailures,
            detail: "5 failures".into(),
            since: ts("2026-11-25T15:00:00Z"),
            until: Some(ts("2026-11-25T21:30:00Z")),
        };
        assert!(s.set_halt(&h).unwrap());
        let later = Halt {
            until: Some(ts("2026-11-25T22:00:00Z")),
            detail: "6 failures".into(),
            since: ts("2026-11-25T15:05:00Z"),
            ..h.clone()
        };
        assert!(!s.set_halt(&later).unwrap());
        let earlier = Halt { until: Some(ts("2026-11-25T16:00:00Z")), ..h.clone() };
        assert!(!s.set_halt(&earlier).unwrap());
        let active = s.active_halts().unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].since, h.since, "since is kept");
        assert_eq!(active[0].until, Some(ts("2026-11-25T22:00:00Z")), "until is never shortened");
        assert!(s.clear_halt(HaltReason::ApiFailures, "auto", ts("2026-11-25T22:00:00Z")).unwrap());
        assert!(s.active_halts().unwrap().is_empty());
        assert!(!s.clear_halt(HaltReason::ApiFailures, "auto", ts("2026-11-25T22:00:00Z")).unwrap());
        // A new halt of the same reason can be set again after clearing.
        assert!(s.set_halt(&h).unwrap());
    }

    fn order(side: &str, qty: &str, intent: &str) -> NewOrder {
        NewOrder {
            bot: "mom_AAPL".into(),
            symbol: "AAPL".into(),
            side: Side::parse(side).unwrap(),
            qty: Some(qty.into()),
            notional: None,
            order_type: OrderType::Market,
            limit_price: None,
            stop_price: None,
            intent: Intent::parse(intent).unwrap(),
            rule: None,
            created_at: ts("2026-11-25T15:00:00Z"),
            trading_date: jiff::civil::date(2026, 11, 25),
            legs: Vec::new(),
        }
    }

    #[test]
    fn client_order_ids_carry_the_bot_the_date_a_random_epoch_and_a_counter_that_only_grows() {
        let path = temp_db("orders");
        let mut s = State::open(&path).unwrap();
        let date = jiff::civil::date(2026, 11, 25);
        let first = s.record_order(&order("buy", "3", "entry")).unwrap();
        let id = ClientOrderId::parse(&first).unwrap();
        assert_eq!((id.bot.as_str(), id.date, id.n), ("mom_AAPL", date, 1), "{first}");
        assert_eq!(first, format!("th-mom_AAPL-20261125-{}-1", id.epoch));
        // Another bot's order takes the next number: one counter per ledger.
        let other = s.record_order(&NewOrder { bot: "mom-QQQ".into(), ..order("buy", "1", "entry") }).unwrap();
        assert_eq!(ClientOrderId::parse(&other).unwrap(), ClientOrderId { bot: "mom-QQQ".into(), n: 2, ..id.clone() });
        // Deleting rows (a ledger that lost its last transactions) never lowers the counter.
        s.conn.execute("DELETE FROM orders", []).unwrap();
        let third = s.record_order(&order("buy", "1", "entry")).unwrap();
        assert_eq!(ClientOrderId::parse(&third).unwrap().n, 3);
        let epochs: i64 = s.conn.query_row("SELECT count(*) FROM id_epochs", [], |r| r.get(0)).unwrap();
        assert_eq!(epochs, 1, "one epoch per process, recorded with its first order");
        assert!(
            s.update_order_status(
                &third,
                &RecordStatus::Broker(OrderStatus::Accepted),
                Some("b-1"),
                ts("2026-11-25T15:00:01Z")
            )
            .unwrap()
        );
        let back = s.order(&third).unwrap().unwrap();
        assert_eq!(back.status.as_str(), "accepted");
        assert_eq!(back.broker_order_id.as_deref(), Some("b-1"));
        assert_eq!(back.qty.as_deref(), Some("1"));
        assert_eq!(s.unfinished_orders().unwrap().len(), 1);
        assert_eq!(s.entries_on("mom_AAPL", date).unwrap(), 1);
        // A restart of the daemon on the same ledger draws a new epoch; the counter goes on.
        drop(s);
        let mut s = State::open(&path).unwrap();
        let after = ClientOrderId::parse(&s.record_order(&order("buy", "1", "entry")).unwrap()).unwrap();
        assert_ne!(after.epoch, id.epoch);
        assert_eq!(after.n, 4);
    }

    #[test]
    fn two_new_ledgers_never_issue_the_same_id() {
        let mut seen = BTreeSet::new();
        for k in 0..20 {
            let path = temp_db(&format!("fresh-{k}"));
            let mut s = State::open(&path).unwrap();
            let id = s.record_order(&order("buy", "1", "entry")).unwrap();
            assert!(id.ends_with("-1"), "{id}");
            assert!(seen.insert(id.clone()), "{id} issued twice by two new ledgers");
        }
    }

    #[test]
    fn client_order_ids_parse_back_and_other_formats_do_not() {
        let id =
            ClientOrderId { bot: "a-b_c".into(), date: jiff::civil::date(2026, 1, 2), epoch: "0a1b2c3d".into(), n: 77 };
        assert_eq!(id.text(), "th-a-b_c-20260102-0a1b2c3d-77");
        assert_eq!(ClientOrderId::parse(&id.text()), Some(id));
        assert!(ClientOrderId::parse("th-mom_AAPL-20261125-1").is_none(), "the format before migration 9");
        assert!(ClientOrderId::parse("th-mom_AAPL-20261125-ABCDEFGH-1").is_none());
        assert!(ClientOrderId::parse("sim-close-3").is_none());
        let longest = ClientOrderId {
            bot: "b".repeat(32),
            n: u64::MAX,
            ..ClientOrderId::parse("th-x-20260102-0a1b2c3d-1").unwrap()
        };
        assert!(longest.text().len() <= 128, "Alpaca's limit");
    }

    #[test]
    fn a_derived_id_is_the_same_for_the_same_exit_and_never_a_drawn_one() {
        let date = jiff::civil::date(2026, 11, 25);
        let key = "crypto_core|BTC/USD|sell|0.000829|BTC/USD:0.000829:2026-11-25T15:30:00Z";
        let a = ClientOrderId::derived("crypto_core", date, key, 1);
        // Fixed across processes and builds: the hash is FNV-1a, not std's seeded one.
        assert_eq!(a, ClientOrderId::derived("crypto_core", date, key, 1));
        assert_eq!(ClientOrderId::parse(&a.text()), Some(a.clone()));
        assert!(a.is_derived() && a.epoch.len() == 8, "{}", a.text());
        assert_ne!(a.epoch, ClientOrderId::derived("crypto_core", date, &format!("{key}x"), 1).epoch);
        assert_eq!(ClientOrderId::derived("crypto_core", date, key, 2).n, 2);
        for k in 0..2000 {
            let drawn = draw_epoch(Timestamp::from_second(k).unwrap());
            assert!(!drawn.starts_with('x') && drawn.len() == 8, "{drawn}");
        }
    }

    #[test]
    fn position_rules_round_trip_and_the_last_entry_wins() {
        let path = temp_db("rules");
        let s = State::open(&path).unwrap();
        let now = ts("2026-11-25T15:00:00Z");
        assert_eq!(s.position_rules("mom_AAPL", "AAPL").unwrap(), None);
        let mut r = PositionRules {
            kind: BotKind::Momentum,
            exits: Exits {
                stop_loss_pct: 0.75,
                take_profit_pct: 1.5,
                time_stop_minutes: Some(240),
                flatten_before_close_minutes: None,
                trailing_stop_pct: Some(0.4),
                broker_stop: false,
                broker_stop_pct: None,
            },
            manage_until: Some(HhMm::parse("15:50").unwrap()),
            exit_days_before_expiry: None,
        };
        s.put_position_rules("mom_AAPL", "AAPL", &r, now).unwrap();
        assert_eq!(s.position_rules("mom_AAPL", "AAPL").unwrap().as_ref(), Some(&r));
        r.exits.stop_loss_pct = 2.0;
        r.manage_until = None;
        s.put_position_rules("mom_AAPL", "AAPL", &r, now).unwrap();
        assert_eq!(s.position_rules("mom_AAPL", "AAPL").unwrap(), Some(r));
        assert_eq!(s.position_rules("mom_AAPL", "MSFT").unwrap(), None);
    }

    #[test]
    fn an_order_sent_unrecorded_is_recorded_once_under_its_own_id() {
        let path = temp_db("record-as");
        let mut s = State::open(&path).unwrap();
        let id = ClientOrderId::derived("mom_AAPL", jiff::civil::date(2026, 11, 25), "k", 1).text();
        assert!(s.record_order_as(&id, &order("sell", "3", "exit")).unwrap());
        assert!(!s.record_order_as(&id, &order("sell", "3", "exit")).unwrap(), "a second flush is harmless");
        let back = s.order(&id).unwrap().unwrap();
        assert_eq!((back.qty.as_deref(), back.intent, back.status.as_str()), (Some("3"), Intent::Exit, "recorded"));
        // The counter was not touched: the next numbered order is still the first.
        assert_eq!(ClientOrderId::parse(&s.record_order(&order("buy", "1", "entry")).unwrap()).unwrap().n, 1);
    }

    #[test]
    fn the_record_is_committed_before_record_order_returns_and_the_everyday_level_is_restored() {
        let path = temp_db("durable");
        let mut s = State::open(&path).unwrap();
        let id = s.record_order(&order("buy", "1", "entry")).unwrap();
        // Another connection (another process, or the same file after a crash) sees it.
        let other = Connection::open(&path).unwrap();
        let n: i64 =
            other.query_row("SELECT count(*) FROM orders WHERE client_order_id = ?1", [&id], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
        let level: i64 = s.conn.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap();
        assert_eq!(level, 1, "NORMAL again after the FULL commit");
    }

    #[test]
    fn a_new_file_opened_by_many_processes_at_once_is_migrated_once() {
        let path = temp_db("race");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let path = path.to_path_buf();
                std::thread::spawn(move || State::open(&path).map(drop).map_err(|e| e.to_string()))
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
        assert_eq!(State::open(&path).unwrap().user_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn open_existing_creates_nothing() {
        let path = temp_db("existing");
        match State::open_existing(&path) {
            Err(StateError::Missing { path: p }) => assert!(p.is_absolute(), "{p:?}"),
            Err(e) => panic!("expected Missing, got {e}"),
            Ok(_) => panic!("expected Missing, got a ledger"),
        }
        assert!(!path.parent().unwrap().exists(), "not even the folder");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(State::open_existing(&path), Err(StateError::Missing { .. })), "an empty file is no ledger");
        std::fs::remove_file(&path).unwrap();
        drop(State::open(&path).unwrap());
        assert!(State::open_existing(&path).is_ok());
    }

    #[test]
    fn a_fill_without_a_price_is_not_booked_and_the_order_stays_unfinished() {
        let path = temp_db("unpriced");
        let mut s = State::open(&path).unwrap();
        let now = ts("2026-11-25T15:00:00Z");
        let d = |t: &str| t.parse::<Dec>().unwrap();
        let e = s.record_order(&order("buy", "10", "entry")).unwrap();
        assert!(s.apply_order_report(&e, &OrderStatus::Filled, Some("b1"), d("10"), None, now).unwrap().is_none());
        assert!(s.owned_positions().unwrap().is_empty(), "nothing booked at no price");
        let rec = s.order(&e).unwrap().unwrap();
        assert_eq!((rec.status.as_str(), rec.filled_qty), ("recorded", Dec::ZERO));
        assert_eq!(rec.broker_order_id.as_deref(), Some("b1"));
        assert_eq!(s.unfinished_orders().unwrap().len(), 1, "read again next iteration");
        // Once the price comes, the fill is booked, once.
        let delta =
            s.apply_order_report(&e, &OrderStatus::Filled, Some("b1"), d("10"), Some(d("101")), now).unwrap().unwrap();
        assert_eq!((delta.qty, delta.price), (d("10"), d("101")));
        assert!(
            s.apply_order_report(&e, &OrderStatus::Filled, Some("b1"), d("10"), Some(d("101")), now).unwrap().is_none()
        );
        assert_eq!(s.owned_positions().unwrap()[0].avg_entry_price, d("101"));
    }

    /// The cooldown's clock: the newest exit of the bot and symbol that filled; an exit that
    /// filled nothing, or another symbol's, does not count.
    #[test]
    fn the_last_exit_is_the_newest_that_filled_of_that_bot_and_symbol() {
        let path = temp_db("last-exit");
        let mut s = State::open(&path).unwrap();
        let d = |t: &str| t.parse::<Dec>().unwrap();
        let e = s.record_order(&order("buy", "10", "entry")).unwrap();
        s.apply_order_report(&e, &OrderStatus::Filled, Some("b1"), d("10"), Some(d("100")), ts("2026-11-25T15:00:00Z"))
            .unwrap();
        assert_eq!(s.last_exit("mom_AAPL", "AAPL").unwrap(), None);
        for (n, (qty, at)) in [("4", "2026-11-25T15:10:00Z"), ("6", "2026-11-25T15:30:00Z")].into_iter().enumerate() {
            let x = s.record_order(&order("sell", qty, "exit")).unwrap();
            let id = format!("b{}", n + 2);
            s.apply_order_report(&x, &OrderStatus::Filled, Some(&id), d(qty), Some(d("101")), ts(at)).unwrap();
        }
        let unfilled = s.record_order(&order("sell", "1", "exit")).unwrap();
        s.apply_order_report(&unfilled, &OrderStatus::Canceled, Some("b9"), d("0"), None, ts("2026-11-25T15:40:00Z"))
            .unwrap();
        let other = s.record_order(&NewOrder { symbol: "MSFT".into(), ..order("sell", "1", "exit") }).unwrap();
        s.apply_order_report(
            &other,
            &OrderStatus::Filled,
            Some("b8"),
            d("1"),
            Some(d("300")),
            ts("2026-11-25T15:50:00Z"),
        )
        .unwrap();
        assert_eq!(s.last_exit("mom_AAPL", "AAPL").unwrap(), Some(ts("2026-11-25T15:30:00Z")));
        assert_eq!(s.last_exit("mom_AAPL", "MSFT").unwrap(), Some(ts("2026-11-25T15:50:00Z")));
        assert_eq!(s.last_exit("mom_MSFT", "AAPL").unwrap(), None);
    }

    #[test]
    fn a_leg_fill_without_a_price_waits_and_nothing_is_booked_at_zero() {
        let path = temp_db("unpriced-legs");
        let mut s = State::open(&path).unwrap();
        let now = ts("2026-11-25T15:00:00Z");
        let d = |t: &str| t.parse::<Dec>().unwrap();
        let leg =
            |symbol: &str, intent: &str| LegRecord { symbol: symbol.into(), ratio: 1, position_intent: intent.into() };
        let spread = NewOrder {
            symbol: "SPY".into(),
            side: Side::Sell,
            qty: Some("1".into()),
            legs: vec![leg("SPY261218P00480000", "sell_to_open"), leg("SPY261218P00475000", "buy_to_open")],
            ..order("sell", "1", "entry")
        };
        let id = s.record_order(&spread).unwrap();
        let reports = |short: Option<&str>, long: Option<&str>| {
            vec![
                ("SPY261218P00480000".to_string(), d("1"), short.map(d)),
                ("SPY261218P00475000".to_string(), d("1"), long.map(d)),
            ]
        };
        let booked = s
            .apply_leg_reports(&id, &OrderStatus::Filled, Some("b"), d("1"), &reports(Some("2.10"), None), now)
            .unwrap();
        assert_eq!(booked.fills.len(), 1, "the priced leg is booked: {booked:?}");
        assert!(!booked.settled);
        assert_eq!(s.order(&id).unwrap().unwrap().status.as_str(), "recorded", "kept unfinished for the other leg");
        // An answer that leaves the legs out books nothing and finishes nothing.
        let booked = s.apply_leg_reports(&id, &OrderStatus::Filled, Some("b"), d("1"), &[], now).unwrap();
        assert!(booked.fills.is_empty() && !booked.settled);
        assert_eq!(s.order(&id).unwrap().unwrap().status.as_str(), "recorded");
        let booked = s
            .apply_leg_reports(&id, &OrderStatus::Filled, Some("b"), d("1"), &reports(Some("2.10"), Some("1.60")), now)
            .unwrap();
        assert_eq!(
            booked.fills.iter().map(|f| (f.symbol.as_str(), f.price)).collect::<Vec<_>>(),
            vec![("SPY261218P00475000", d("1.60"))]
        );
        assert!(booked.settled);
        assert_eq!(s.order(&id).unwrap().unwrap().status.as_str(), "filled");
        let owned = s.owned_positions().unwrap();
        assert!(owned.iter().all(|p| !p.avg_entry_price.is_zero()), "{owned:?}");
        assert_eq!(owned.len(), 2);
    }

    #[test]
    fn a_spread_reported_filled_is_final_only_when_its_legs_carry_the_fill() {
        let path = temp_db("legs-behind");
        let mut s = State::open(&path).unwrap();
        let now = ts("2026-11-25T15:00:00Z");
        let d = |t: &str| t.parse::<Dec>().unwrap();
        let leg = |symbol: &str, ratio: u32, intent: &str| LegRecord {
            symbol: symbol.into(),
            ratio,
            position_intent: intent.into(),
        };
        // Two spreads of a 1x2 ratio: the short leg carries 2 contracts a unit, the long one 4.
        let spread = NewOrder {
            symbol: "SPY".into(),
            side: Side::Sell,
            qty: Some("2".into()),
            legs: vec![leg("SPY261218P00480000", 1, "sell_to_open"), leg("SPY261218P00475000", 2, "buy_to_open")],
            ..order("sell", "2", "entry")
        };
        let id = s.record_order(&spread).unwrap();
        let report = |short: &str, long: &str, long_price: Option<&str>| {
            vec![
                ("SPY261218P00480000".to_string(), d(short), (short != "0").then(|| d("2.10"))),
                ("SPY261218P00475000".to_string(), d(long), long_price.map(d)),
            ]
        };
        // The parent says filled while its legs still show nothing: nothing booked, not final.
        let booked =
            s.apply_leg_reports(&id, &OrderStatus::Filled, Some("b"), d("2"), &report("0", "0", None), now).unwrap();
        assert!(booked.fills.is_empty() && !booked.settled, "{booked:?}");
        assert_eq!(s.order(&id).unwrap().unwrap().status.as_str(), "recorded");
        // Still not final when the parent's count is missing: `filled` means every unit ordered.
        let booked = s
            .apply_leg_reports(&id, &OrderStatus::Filled, Some("b"), d("0"), &report("2", "2", Some("1.60")), now)
            .unwrap();
        assert_eq!(booked.fills.len(), 2);
        assert!(!booked.settled, "the long leg carries 2 of its 4");
        assert_eq!(s.order(&id).unwrap().unwrap().status.as_str(), "recorded");
        let booked = s
            .apply_leg_reports(&id, &OrderStatus::Filled, Some("b"), d("2"), &report("2", "4", Some("1.60")), now)
            .unwrap();
        assert_eq!(booked.fills.iter().map(|f| f.qty).collect::<Vec<_>>(), vec![d("2")]);
        assert!(booked.settled);
        assert_eq!(s.order(&id).unwrap().unwrap().status.as_str(), "filled");
        let mut owned: Vec<(String, Dec)> =
            s.owned_positions().unwrap().iter().map(|p| (p.symbol.clone(), p.qty)).collect();
        owned.sort();
        assert_eq!(owned, vec![("SPY261218P00475000".into(), d("4")), ("SPY261218P00480000".into(), d("-2"))]);
        // A spread cancelled unfilled is final at once.
        let none = s.record_order(&spread).unwrap();
        let booked = s
            .apply_leg_reports(&none, &OrderStatus::Canceled, Some("c"), d("0"), &report("0", "0", None), now)
            .unwrap();
        assert!(booked.fills.is_empty() && booked.settled);
        assert_eq!(s.order(&none).unwrap().unwrap().status.as_str(), "canceled");
    }

    #[test]
    fn fills_move_owned_positions_once_and_realise_pnl() {
        let path = temp_db("fills");
        let mut s = State::open(&path).unwrap();
        let now = ts("2026-11-25T15:00:00Z");
        let d = |t: &str| t.parse::<Dec>().unwrap();
        let e1 = s.record_order(&order("buy", "10", "entry")).unwrap();
        // A partial fill, then the full fill, then the same report again.
        let delta =
            s.apply_order_report(&e1, &OrderStatus::PartiallyFilled, Some("b1"), d("4"), Some(d("100")), now).unwrap();
        assert_eq!(delta.unwrap().qty, d("4"));
        s.apply_order_report(&e1, &OrderStatus::Filled, Some("b1"), d("10"), Some(d("101.2")), now).unwrap();
        assert!(
            s.apply_order_report(&e1, &OrderStatus::Filled, Some("b1"), d("10"), Some(d("101.2")), now)
                .unwrap()
                .is_none()
        );
        let owned = s.owned_positions().unwrap();
        assert_eq!(owned[0].qty, d("10"));
        assert_eq!(owned[0].avg_entry_price, d("100.72"));
        assert!(s.unfinished_orders().unwrap().is_empty());
        // Sell 10 at 102: +12.8 realised, the position closes.
        let x1 = s.record_order(&order("sell", "10", "exit")).unwrap();
        let delta =
            s.apply_order_report(&x1, &OrderStatus::Filled, Some("b2"), d("10"), Some(d("102")), now).unwrap().unwrap();
        assert_eq!(delta.realized_pnl, d("12.8"), "exactly, not 12.800000000000011");
        assert!(s.owned_positions().unwrap().is_empty());
        let budgets = s.budgets(jiff::civil::date(2026, 11, 25)).unwrap().to_vec();
        assert_eq!(budgets[0].realized_pnl, 12.8, "the stored sum reads back without float noise");
    }

    #[test]
    fn an_exit_never_flips_a_position_into_a_short() {
        let path = temp_db("flip");
        let mut s = State::open(&path).unwrap();
        let now = ts("2026-11-25T15:00:00Z");
        let d = |t: &str| t.parse::<Dec>().unwrap();
        let e = s.record_order(&order("buy", "1", "entry")).unwrap();
        s.apply_order_report(&e, &OrderStatus::Filled, None, d("1"), Some(d("50")), now).unwrap();
        // Reconciliation capped it meanwhile, or the exit over-filled: either way, closed at zero.
        let x = s.record_order(&order("sell", "5", "exit")).unwrap();
        s.apply_order_report(&x, &OrderStatus::Filled, None, d("5"), Some(d("50")), now).unwrap();
        assert!(s.owned_positions().unwrap().is_empty());
        let y = s.record_order(&order("sell", "3", "exit")).unwrap();
        s.apply_order_report(&y, &OrderStatus::Filled, None, d("3"), Some(d("50")), now).unwrap();
        assert!(s.owned_positions().unwrap().is_empty(), "no short booked from an exit");
        // An entry that sells (an allowed short) does open a short.
        let z = s.record_order(&order("sell", "2", "entry")).unwrap();
        s.apply_order_report(&z, &OrderStatus::Filled, None, d("2"), Some(d("50")), now).unwrap();
        assert_eq!(s.owned_positions().unwrap()[0].qty, d("-2"));
    }

    #[test]
    fn the_best_price_since_entry_survives_a_restart_and_never_worsens() {
        let path = temp_db("best");
        let now = ts("2026-11-25T15:00:00Z");
        let d = |t: &str| t.parse::<Dec>().unwrap();
        {
            let mut s = State::open(&path).unwrap();
            let e = s.record_order(&order("buy", "10", "entry")).unwrap();
            s.apply_order_report(&e, &OrderStatus::Filled, None, d("10"), Some(d("100")), now).unwrap();
            s.record_best_price("mom_AAPL", "AAPL", 101.5, true).unwrap();
            s.record_best_price("mom_AAPL", "AAPL", 100.7, true).unwrap();
        }
        let s = State::open(&path).unwrap();
        assert_eq!(
            s.owned_positions().unwrap()[0].high_water,
            Some(101.5),
            "a trailing stop's mark outlives a restart"
        );
        // For a short the best price is the lowest.
        s.record_best_price("mom_AAPL", "AAPL", 99.0, false).unwrap();
        assert_eq!(s.owned_positions().unwrap()[0].high_water, Some(99.0));
    }

    #[test]
    fn the_final_statuses_in_sql_are_exactly_the_records_final_ones() {
        let every = [
            "recorded",
            "unknown",
            "rejected",
            "abandoned",
            "conflict",
            "new",
            "accepted",
            "pending_new",
            "accepted_for_bidding",
            "partially_filled",
            "filled",
            "done_for_day",
            "canceled",
            "expired",
            "replaced",
            "pending_cancel",
            "pending_replace",
            "stopped",
            "suspended",
            "calculated",
            "held",
            "pending_review",
        ];
        for text in every {
            assert_eq!(RecordStatus::parse(text).is_final(), FINAL_ORDER_STATUSES.contains(&text), "{text}");
        }
        assert!(FINAL_ORDER_STATUSES.iter().all(|t| every.contains(t)));
    }

    #[test]
    fn writing_an_order_builds_no_temporary_table() {
        let path = temp_db("ephemeral");
        let s = State::open(&path).unwrap();
        for q in [
            "UPDATE orders SET status = ?2, broker_order_id = coalesce(?3, broker_order_id), filled_qty = ?4,
                 updated_at = ?5 WHERE client_order_id = ?1",
            "DELETE FROM orders WHERE client_order_id = ?1",
        ] {
            let n = q.matches('?').count();
            let mut stmt = s.conn.prepare(&format!("EXPLAIN {q}")).unwrap();
            let ops: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(std::iter::repeat_n(rusqlite::types::Null, n)), |r| r.get(1))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(!ops.iter().any(|o| o == "OpenEphemeral"), "{q}: {ops:?}");
        }
    }

    #[test]
    fn unfinished_orders_are_found_by_their_index() {
        let path = temp_db("plan");
        let s = State::open(&path).unwrap();
        let words: Vec<String> = UNFINISHED.split_whitespace().map(String::from).collect();
        let finals: Vec<String> = FINAL_ORDER_STATUSES.iter().map(|s| format!("'{s}'")).collect();
        let expected: Vec<String> =
            finals.iter().flat_map(|f| ["status".into(), "<>".into(), f.clone(), "AND".into()]).collect();
        assert_eq!(words, expected[..expected.len() - 1], "UNFINISHED and FINAL_ORDER_STATUSES drifted apart");
        let index = MIGRATIONS.iter().rev().find(|m| m.contains("CREATE INDEX orders_unfinished")).unwrap();
        assert!(index.contains(UNFINISHED), "the index and the query drifted apart");
        let plan: Vec<String> = s
            .conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT client_order_id FROM orders WHERE {UNFINISHED} ORDER BY created_at"
            ))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(plan.iter().any(|p| p.contains("orders_unfinished")), "{plan:?}");
    }

    #[test]
    fn budgets_round_trip_per_date() {
        let path = temp_db("budgets");
        let s = State::open(&path).unwrap();
        let date = jiff::civil::date(2026, 11, 25);
        let b = BudgetRow {
            trading_date: date,
            bot: "mom_AAPL".into(),
            daily_loss_limit: 250.0,
            max_open_risk: 500.0,
            max_trades: 3,
            max_positions: 1,
            realized_pnl: -12.5,
            trades: 1,
        };
        s.put_budget(&b, ts("2026-11-25T15:00:00Z")).unwrap();
        assert_eq!(s.budgets(date).unwrap().to_vec(), vec![b]);
        assert!(s.budgets(jiff::civil::date(2026, 11, 26)).unwrap().is_empty());
    }

    #[test]
    fn loop_runs_are_pruned() {
        let path = temp_db("prune");
        let s = State::open(&path).unwrap();
        let run = quiet_run(ts("2026-11-25T15:00:00Z"));
        s.conn.execute_batch("BEGIN").unwrap();
        for i in 0..(LOOP_RUNS_KEPT as u64 + 2000) {
            s.insert_loop_run(&LoopRun { iteration: i, ..run.clone() }).unwrap();
        }
        s.conn.execute_batch("COMMIT").unwrap();
        assert_eq!(s.loop_run_count().unwrap(), LOOP_RUNS_KEPT);
        assert_eq!(s.last_loop_run().unwrap().unwrap().iteration, LOOP_RUNS_KEPT as u64 + 1999);
    }

    /// What only `status` reads is written to a file, and not to a backtest's ledger in memory.
    #[test]
    fn a_ledger_in_memory_keeps_no_loop_runs_or_bot_activity() {
        let at = ts("2026-11-25T15:00:00Z");
        let idle = Idle::new(crate::core::idle::Cause::NoSignal, "no signal");
        let file = State::open(&temp_db("for-status")).unwrap();
        let memory = State::open_memory().unwrap();
        for s in [&file, &memory] {
            s.insert_loop_run(&quiet_run(at)).unwrap();
            s.put_bot_activity("mom_AAPL", Some(&idle), at, at).unwrap();
        }
        assert_eq!((file.loop_run_count().unwrap(), file.bot_activity().unwrap().len()), (1, 1));
        assert_eq!((memory.loop_run_count().unwrap(), memory.bot_activity().unwrap().len()), (0, 0));
        assert_eq!((file.keeps_status_rows(), memory.keeps_status_rows()), (true, false), "and says so");
        // Its pages are small (each changed page is copied whole into the journal); the file's
        // are SQLite's default.
        let page = |s: &State| s.conn.row("PRAGMA page_size", [], |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!((page(&file), page(&memory)), (4096, 1024));
    }

    #[test]
    fn garbage_file_is_refused_and_left_untouched() {
        let path = temp_db("garbage");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let junk = b"this is not a database, it is a grocery list\n".repeat(100);
        std::fs::write(&path, &junk).unwrap();
        assert!(matches!(State::open(&path), Err(StateError::NotADatabase { .. })));
        assert!(matches!(State::open_read_only(&path), Err(StateError::NotADatabase { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), junk);
        assert!(!path.with_extension("db-wal").exists());
    }

    #[test]
    fn newer_schema_is_refused() {
        let path = temp_db("newer");
        drop(State::open(&path).unwrap());
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(State::open(&path), Err(StateError::TooNew { .. })));
        assert!(matches!(State::open_read_only(&path), Err(StateError::TooNew { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn another_programs_database_is_refused() {
        let path = temp_db("foreign");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("CREATE TABLE recipes (name TEXT)").unwrap();
        }
        assert!(matches!(State::open(&path), Err(StateError::ForeignDatabase { .. })));
    }

    #[test]
    fn read_only_needs_an_existing_file_and_cannot_write() {
        let path = temp_db("ro");
        assert!(matches!(State::open_read_only(&path), Err(StateError::Missing { .. })));
        assert!(!path.exists());
        drop(State::open(&path).unwrap());
        let ro = State::open_read_only(&path).unwrap();
        assert!(ro.kv_set("x", "y", ts("2026-11-25T15:00:00Z")).is_err());
    }
}
