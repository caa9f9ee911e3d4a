//! A consistent copy of the ledger beside a running daemon (`trading-hydra backup`).
//!
//! Owns: SQLite's online backup API, run from this `State`'s own connection into a temporary
//! file beside the destination; the copy checked (`integrity_check`, the schema's version), made
//! one self-contained file (journal mode DELETE: no `-wal` beside it), fsynced, and only then
//! renamed to its name. A `cp` of the database beside a running daemon is no backup: the newest
//! rows live in the `-wal` until a checkpoint.
//!
//! Never: overwrites a file, leaves a partial copy under the destination's name, or opens the
//! source a second time from the daemon's process (closing a second descriptor of the database
//! would drop the process's SQLite locks: `State::open`'s header check).

use super::*;

/// What a backup holds, for the operator.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupSummary {
    pub path: PathBuf,
    pub bytes: u64,
    pub orders: u64,
    /// The newest order's `created_at`, if any.
    pub newest_order: Option<String>,
    pub owned_positions: u64,
    pub active_halts: u64,
}

/// The file a backup to `dest` writes: `dest` itself, or, for a folder,
/// `trading_state-<UTC time>.db` in it.
pub fn backup_path(dest: &Path, now: Timestamp) -> PathBuf {
    if dest.is_dir() {
        dest.join(format!("trading_state-{}.db", now.strftime("%Y%m%dT%H%M%SZ")))
    } else {
        dest.to_path_buf()
    }
}

impl State {
    /// Copies the ledger to `path` (a file that must not exist yet), checks the copy, and says
    /// what it holds. On any failure nothing is left at `path`.
    pub fn backup_to(&self, path: &Path) -> Result<BackupSummary, StateError> {
        let fail = |detail: String| StateError::Backup { path: path.to_path_buf(), detail };
        if path.exists() {
            return Err(fail("the file exists already; nothing was overwritten".into()));
        }
        let partial = with_suffix(path, ".partial");
        let result = self.copy_checked(&partial).and_then(|summary| {
            std::fs::rename(&partial, path).map_err(|e| format!("cannot rename the finished copy into place: {e}"))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                // The rename itself durable (best effort: not every filesystem syncs a folder).
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(summary)
        });
        match result {
            Ok(summary) => Ok(BackupSummary { path: path.to_path_buf(), ..summary }),
            Err(detail) => {
                let _ = std::fs::remove_file(&partial);
                Err(fail(detail))
            }
        }
    }

    /// The copy into `partial`, checked and fsynced; its summary (`path` filled in by the caller).
    fn copy_checked(&self, partial: &Path) -> Result<BackupSummary, String> {
        let _ = std::fs::remove_file(partial);
        let mut copy = Connection::open(partial).map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        {
            let backup = rusqlite::backup::Backup::new(&self.conn, &mut copy).map_err(|e| e.to_string())?;
            // All pages in one step: one read transaction on the ledger, so the copy is one
            // moment of it, whatever the daemon writes meanwhile (it waits, or the step is retried).
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                match backup.step(-1).map_err(|e| e.to_string())? {
                    rusqlite::backup::StepResult::Done => break,
                    _ if std::time::Instant::now() > deadline => {
                        return Err("the ledger stayed busy for 10 s; try again".into());
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        let check: String =
            copy.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(|e| format!("integrity_check: {e}"))?;
        if check != "ok" {
            return Err(format!("the copy fails integrity_check: {check}"));
        }
        let version: i64 = copy.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| e.to_string())?;
        if version != SCHEMA_VERSION {
            return Err(format!("the copy has schema version {version}, not {SCHEMA_VERSION}"));
        }
        let count = |sql: &str| copy.query_row(sql, [], |r| r.get::<_, i64>(0)).map(|n| n.max(0) as u64);
        let orders = count("SELECT count(*) FROM orders").map_err(|e| e.to_string())?;
        let owned_positions = count("SELECT count(*) FROM owned_positions").map_err(|e| e.to_string())?;
        let active_halts = count("SELECT count(*) FROM halts WHERE cleared_at IS NULL").map_err(|e| e.to_string())?;
        let newest_order: Option<String> =
            copy.query_row("SELECT max(created_at) FROM orders", [], |r| r.get(0)).map_err(|e| e.to_string())?;
        // One file, whole: no `-wal` to copy along with it.
        let mode: String =
            copy.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0)).map_err(|e| e.to_string())?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(format!("the copy stays in journal mode {mode}"));
        }
        copy.close().map_err(|(_, e)| e.to_string())?;
        let file = std::fs::File::open(partial).map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| format!("cannot flush the copy to disk: {e}"))?;
        let bytes = file.metadata().map_err(|e| e.to_string())?.len();
        Ok(BackupSummary { path: partial.to_path_buf(), bytes, orders, newest_order, owned_positions, active_halts })
    }
}
