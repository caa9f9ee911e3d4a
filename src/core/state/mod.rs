//! The SQLite state database: what must survive a restart or a crash, by table.
//!
//! Owns: opening a ledger (`open`, `open_existing`, `open_read_only`, `open_memory`) and the
//! connection every read and write goes through, with its statement cache (`Cached`); the error
//! every ledger operation returns (`StateError`); and, one file each, what is stored: the schema
//! and its migrations (`schema`), orders and their legs with our client order ids, and each fill
//! booked from them with its price and time (`orders`),
//! positions (`positions`), halts (`halts`), day starts and budgets (`budgets`), and the rows kept
//! for the operator (`status_rows`). Which writes are fsynced before they return is `durably`'s
//! (an order recorded before it is sent, a halt). Timestamps are stored as fixed-width UTC text
//! (`clock::db_ts`), so text order is time order and a person can read them with `sqlite3`.
//! Every read of a ledger on a file is a plain read of the file as it is now: nothing is kept
//! between calls, so no answer can be stale. A backtest's ledger is the same schema in memory
//! (`open_memory`), which keeps its own answers until its next write (`core::backtest_reads`) and
//! writes no loop runs and no bot activity (a third of its statements a minute, for a ledger
//! nobody will look at).
//!
//! Never: overwrites, "repairs" or migrates a file it does not recognise. A file that is not
//! SQLite, fails its integrity check, belongs to another program or comes from a newer version of
//! this daemon is refused untouched; and the file is opened through SQLite only, so no closed
//! descriptor drops SQLite's locks. (Whether another process may use the file is
//! `ledger_lock`'s.)

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use rusqlite::hooks::Action;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::core::backtest_reads::{Changes, Kept, Table};
use crate::core::clock::{self, HhMm};
use crate::core::config::{BotKind, Exits};
use crate::core::decimal::Dec;
use crate::core::halt::{Halt, HaltReason};
use crate::core::idle::{Cause, Idle};
use crate::core::instrument;
use crate::core::ledger::{self, Fill, Holding};
use crate::core::order::{BROKER_STOP, Intent, OrderStatus, OrderType, RecordStatus, Side};
use orders::SCRATCH_EPOCH;

mod backup;
mod budgets;
mod halts;
mod journal;
mod orders;
mod positions;
mod schema;
mod status_rows;
mod transfers;

#[cfg(test)]
mod tests;

pub use backup::{BackupSummary, backup_path};
pub use budgets::{BotDay, BudgetRow, DayStart};
pub use journal::{clear_journal_lost, journal_lost, journal_lost_mark, mark_journal_lost, with_suffix};
pub use orders::{ClientOrderId, FillDelta, FillRecord, FillTime, LegBooking, LegRecord, NewOrder, OrderRecord};
pub use positions::{BrokerPositionRow, OwnedPosition, PositionRules};
pub use schema::{FINAL_ORDER_STATUSES, SCHEMA_VERSION};
pub use status_rows::{BotActivity, LOOP_RUNS_KEPT, LoopRun};
pub use transfers::TransferRow;

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
    /// A backup could not be made (`State::backup_to`); nothing is left at `path`.
    Backup {
        path: PathBuf,
        detail: String,
    },
    /// A row that this code cannot read back (edited by hand, or written by a buggy version).
    BadRow {
        what: &'static str,
        detail: String,
    },
}

/// What to do when the ledger is there but this user may not open it: the service's files are
/// its user's only (`UMask=0077`).
const PERMISSION_HINT: &str = "; the service's ledger is readable by its user only: run this as it \
     (sudo -u trading-hydra trading-hydra …, in the service's WorkingDirectory) or as root";

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let untouched = "nothing was changed; move the file aside or point system.state_db_path elsewhere";
        match self {
            StateError::CreateDir { dir, error } => {
                write!(f, "cannot create the state folder {}: {error}", dir.display())
            }
            StateError::Inspect { path, error } => {
                write!(f, "cannot read the state database {}: {error}", path.display())?;
                if error.kind() == std::io::ErrorKind::PermissionDenied {
                    f.write_str(PERMISSION_HINT)?;
                }
                Ok(())
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
            StateError::Open { path, error } => {
                write!(f, "cannot open the state database {}: {error}", path.display())?;
                let denied = matches!(
                    error.sqlite_error_code(),
                    Some(
                        rusqlite::ErrorCode::CannotOpen
                            | rusqlite::ErrorCode::ReadOnly
                            | rusqlite::ErrorCode::PermissionDenied
                    )
                );
                if denied && path.exists() {
                    f.write_str(PERMISSION_HINT)?;
                }
                Ok(())
            }
            StateError::Migrate { path, error } => write!(
                f,
                "cannot upgrade the state database {} (rolled back, nothing changed): {error}",
                path.display()
            ),
            StateError::Sql { what, error } => write!(f, "state database error while {what}: {error}"),
            StateError::Backup { path, detail } => {
                write!(f, "cannot back up the ledger to {}: {detail}; nothing was left there", path.display())
            }
            StateError::BadRow { what, detail } => {
                write!(f, "state database holds a row this build cannot read ({what}): {detail}")
            }
        }
    }
}

impl std::error::Error for StateError {}

/// The reads a backtest's ledger keeps (`core::backtest_reads`).
#[derive(Default)]
struct BacktestReads {
    /// Rows changed per table, counted by the connection's update hook.
    changes: Changes,
    owned: Kept<(), Vec<OwnedPosition>>,
    unfinished: Kept<(), Vec<OrderRecord>>,
    exits: Kept<(), Vec<(String, String)>>,
    days: Kept<(String, Date), BotDay>,
    day_start: Kept<Date, Option<DayStart>>,
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
    /// The ledger's files as the daemon's connection opened them (`files_changed`); `None` for
    /// a ledger in memory and one opened read-only.
    files: Option<journal::Files>,
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
        State { conn, path, durable, epoch, others: std::cell::Cell::new(0), kept: None, for_status: true, files: None }
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
        state.files = Some(journal::Files::seen(path));
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
        let mut conn = Connection::open_in_memory().map_err(|error| StateError::Open { path: path.clone(), error })?;
        tune(&conn, &path)?;
        // Small pages, set before the schema makes any: every page a transaction changes is first
        // copied whole into the in-memory rollback journal, and the ledger's rows are small (4 KiB
        // pages: 4.5 % of a backtest's instructions went to those copies; 1 KiB: 3.6 % fewer).
        conn.pragma_update(None, "page_size", 1024).map_err(|error| StateError::Open { path: path.clone(), error })?;
        let changes = Changes::default();
        let counted = changes.clone();
        conn.update_hook(Some(move |_: Action, _: &str, table: &str, _: i64| counted.note(table)))
            .map_err(|error| StateError::Open { path: path.clone(), error })?;
        let mut state = State::with(conn, path, false, Some(SCRATCH_EPOCH.to_string()));
        state.for_status = false;
        state.kept = Some(BacktestReads { changes, ..BacktestReads::default() });
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

    /// `read()`: a plain read of the database. Only a backtest's ledger in memory answers from
    /// its `slot` instead, what it kept for `key` since the last change to a row of the `tables`
    /// `read` reads (`core::backtest_reads`).
    fn read_or_kept<K: Ord, V: Clone>(
        &self,
        slot: fn(&BacktestReads) -> &Kept<K, V>,
        tables: &[Table],
        key: K,
        read: impl FnOnce() -> Result<V, StateError>,
    ) -> Result<V, StateError> {
        match &self.kept {
            None => read(),
            Some(kept) => slot(kept).get(kept.changes.of(tables), key, read),
        }
    }

    /// Makes every write fail (SQLite's `query_only`), as a full disk would: for tests.
    #[cfg(test)]
    pub(crate) fn set_query_only(&self, on: bool) {
        self.conn.pragma_update(None, "query_only", on).unwrap();
    }
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
