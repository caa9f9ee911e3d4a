//! The ledger's schema: its migrations (`PRAGMA user_version`), the integrity and version checks
//! a file passes before anything is written to it, and the SQL words every table shares
//! (`UNFINISHED`, `FINAL_ORDER_STATUSES`).
//!
//! Never: migrates a file it does not recognise, or one from a newer build.

use super::*;

/// The schema version this code writes. Migration `n` (1-based) lifts a database from `n - 1`.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) const MIGRATIONS: &[&str] = &[
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
    // 16: deposits and withdrawals (the broker's account activities), each once, so the day's P&L
    // is measured without them (`services::transfers`).
    "CREATE TABLE transfers (
         id           TEXT PRIMARY KEY,             -- the broker's activity id
         trading_date TEXT NOT NULL,                -- the New York date whose P&L it is taken out of
         kind         TEXT NOT NULL,                -- CSD, CSW or JNLC
         amount       TEXT NOT NULL,                -- exact decimal: + into the account, - out of it
         at           TEXT NOT NULL,
         recorded_at  TEXT NOT NULL
     );",
    // 17: each fill as it was booked (a multi-leg order's by leg), with its price and time, so a
    // round trip is read back with both its fills (`core::round_trip`); and the price each order
    // was decided at, which its fills' slippage is measured from.
    "CREATE TABLE fills (
         id              INTEGER PRIMARY KEY,
         client_order_id TEXT NOT NULL REFERENCES orders(client_order_id),
         symbol          TEXT NOT NULL,          -- the leg's symbol for a multi-leg order
         qty             TEXT NOT NULL,          -- exact decimal, signed: + bought, - sold
         price           TEXT NOT NULL,          -- exact decimal, per share, coin or contract
         realized_pnl    TEXT NOT NULL,          -- exact decimal, on the part that reduced a position
         at              TEXT NOT NULL           -- the broker's fill time, else when it was booked
     );
     CREATE INDEX fills_by_order ON fills(client_order_id);
     ALTER TABLE orders ADD COLUMN ref_price TEXT;",
    // 18: the newest order found at the end of an index of creation times (`newest_order_at`, with
    // each check for lost orders), and a bot's filled exits of a day by their time (`exits_on`, in
    // each day's report), instead of by scans of every order (or every order of the bot) ever
    // sent: both grew with the ledger, and a year's backtest spent a fifth of its time in them.
    // The second is partial on the filled exits, word for word `EXITS_ON`'s condition: a partial
    // index on every exit was taken for the exits in flight instead of `orders_unfinished`, a scan
    // of every exit each minute.
    "CREATE INDEX orders_by_created ON orders(created_at);
     CREATE INDEX orders_filled_exits ON orders(bot, updated_at)
     WHERE intent = 'exit' AND filled_qty IS NOT NULL AND filled_qty <> '0';",
];

/// An order not in a final status, as the index `orders_unfinished` says it (word for word: SQLite
/// uses a partial index only for a query that repeats its condition), over `FINAL_ORDER_STATUSES`
/// (a test holds the three together).
pub(super) const UNFINISHED: &str =
    "status <> 'filled' AND status <> 'canceled' AND status <> 'expired' AND status <> 'replaced'
       AND status <> 'rejected' AND status <> 'done_for_day' AND status <> 'abandoned' AND status <> 'conflict'";

/// Order statuses after which nothing more happens to an order. Besides the broker's own:
/// `rejected` (refused before or when sent), `abandoned` (recorded, then never found at the
/// broker: the process died between recording and sending) and `conflict` (the broker holds
/// another order under this id: ours was never placed, and the stranger is never booked).
pub const FINAL_ORDER_STATUSES: &[&str] =
    &["filled", "canceled", "expired", "replaced", "rejected", "done_for_day", "abandoned", "conflict"];

impl State {
    pub(super) fn user_version(&self) -> Result<i64, StateError> {
        self.conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| classify_open_error(&self.path, e))
    }

    pub(super) fn check_integrity(&self) -> Result<(), StateError> {
        let verdict: String = self
            .conn
            .pragma_query_value(None, "quick_check", |r| r.get(0))
            .map_err(|e| classify_open_error(&self.path, e))?;
        if verdict != "ok" {
            return Err(StateError::Corrupt { path: self.path.clone(), detail: verdict });
        }
        Ok(())
    }

    pub(super) fn check_version(&self) -> Result<(), StateError> {
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
    pub(super) fn migrate(&mut self) -> Result<(), StateError> {
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
}
