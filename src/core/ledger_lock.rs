//! One daemon per ledger: an exclusive lock on a file beside the state database, held by `run`
//! for its whole life.
//!
//! Owns: the lock file (`<state db>.lock`, holding the PID of the `run` that has it) and the
//! refusal of a second `run` on the same ledger, which names the ledger and that PID. The lock is
//! the kernel's (`flock`, through std's `File::try_lock`): it ends with the process however it
//! ends, SIGKILL and power cuts included, so a stale lock file never blocks a restart.
//!
//! Never: blocks (a second `run` is refused at once, it does not wait), deletes the lock file
//! (deleting it while a daemon holds it would let a second one in), or stands in the way of the
//! commands that share a ledger with a running daemon on purpose (`status`, `halt`, `resume`).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::core::state::StateError;

/// Held while the value lives; dropping it (or the process ending) releases the ledger.
#[derive(Debug)]
pub struct LedgerLock {
    _file: File,
    path: PathBuf,
}

impl LedgerLock {
    /// The lock file of the ledger at `db`.
    pub fn path_for(db: &Path) -> PathBuf {
        let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".lock");
        db.with_file_name(name)
    }

    /// Takes the ledger at `db` for this process (creating its folder and the lock file if
    /// needed), or refuses with `StateError::InUse` naming the ledger and the holder's PID.
    pub fn acquire(db: &Path) -> Result<LedgerLock, StateError> {
        let path = LedgerLock::path_for(db);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| StateError::CreateDir { dir: dir.to_path_buf(), error })?;
        }
        let lock_error = |error| StateError::Lock { lock: path.clone(), error };
        // Not truncated on open: the holder's PID must still be there to be read.
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(lock_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // The holder writes its PID right after locking: an unreadable one is "unknown".
                let pid = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
                let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
                return Err(StateError::InUse { path: absolute(db), lock: absolute(&path), pid });
            }
            Err(TryLockError::Error(error)) => return Err(lock_error(error)),
        }
        file.set_len(0).map_err(lock_error)?;
        file.seek(SeekFrom::Start(0)).map_err(lock_error)?;
        writeln!(file, "{}", std::process::id()).map_err(lock_error)?;
        file.flush().map_err(lock_error)?;
        Ok(LedgerLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(name: &str) -> crate::test_dir::TestPath {
        crate::test_dir::TestDir::new(&format!("lock-{name}")).into_path("state/trading_state.db")
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let db = db("second");
        let first = LedgerLock::acquire(&db).unwrap();
        assert_eq!(first.path(), db.with_file_name("trading_state.db.lock"));
        assert_eq!(std::fs::read_to_string(first.path()).unwrap().trim(), std::process::id().to_string());
        match LedgerLock::acquire(&db) {
            Err(StateError::InUse { path, pid, .. }) => {
                assert!(path.is_absolute() && path.ends_with("state/trading_state.db"), "{path:?}");
                assert_eq!(pid, Some(std::process::id()));
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        // Released with its holder: the next run takes it.
        let again = LedgerLock::acquire(&db).unwrap();
        assert_eq!(std::fs::read_to_string(again.path()).unwrap().trim(), std::process::id().to_string());
    }

    #[test]
    fn a_stale_lock_file_left_by_a_dead_process_does_not_block() {
        let db = db("stale");
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        std::fs::write(LedgerLock::path_for(&db), "999999999\n").unwrap();
        let lock = LedgerLock::acquire(&db).unwrap();
        assert_eq!(std::fs::read_to_string(lock.path()).unwrap().trim(), std::process::id().to_string());
    }
}
