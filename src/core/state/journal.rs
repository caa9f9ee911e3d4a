//! Whether the ledger's files are still the ones this connection opened.
//!
//! Owns: the identity (device and inode) of the database file, its `-wal` journal and its `-shm`
//! index as the daemon's connection found them (`Files`), and the check that they are still there
//! and the same (`State::files_changed`): a `-wal` deleted or replaced by hand under a running
//! daemon leaves its connection writing into a file that is gone, and its newest records — the
//! orders recorded before they were sent included — are lost at its next start; and the
//! checkpoint that folds what the connection holds into the database file (`State::fold_journal`).
//!
//! Also the mark a daemon leaves beside the ledger when it finds them changed (`<state
//! db>.journal-lost`, `mark_journal_lost`): while that daemon runs, no other process may open the
//! ledger — its journal at the path is no longer the daemon's, and a second journal would be
//! written over the first — so `halt`, `resume`, `status`, `reload`, `recover` and `backup` read
//! the mark first.
//!
//! Never: opens the files it checks — it looks at them (`stat`) only: closing any descriptor of
//! the database drops the process's SQLite locks on it (see `State::open`).

use std::os::unix::fs::MetadataExt;

use super::*;

/// A file's identity: its device and inode.
type Id = (u64, u64);

/// The identities of the ledger's files when they were first seen by this connection.
#[derive(Debug, Default)]
pub(super) struct Files {
    db: Option<Id>,
    wal: std::cell::Cell<Option<Id>>,
    shm: std::cell::Cell<Option<Id>>,
}

fn id_of(path: &Path) -> Option<Id> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// `path` with `suffix` appended to its file name: the files SQLite and the daemon keep beside
/// the ledger (`-wal`, `-shm`, `.halt`, …), and a file's temporary twin (`.tmp`, `.partial`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

impl Files {
    /// The files of the ledger at `path` as they are now.
    pub(super) fn seen(path: &Path) -> Files {
        Files {
            db: id_of(path),
            wal: std::cell::Cell::new(id_of(&with_suffix(path, "-wal"))),
            shm: std::cell::Cell::new(id_of(&with_suffix(path, "-shm"))),
        }
    }
}

/// `<state db>.journal-lost`, beside the ledger.
pub fn journal_lost_mark(db: &Path) -> PathBuf {
    with_suffix(db, ".journal-lost")
}

/// Leaves the mark, with what was found (best effort: the daemon halts either way).
pub fn mark_journal_lost(db: &Path, detail: &str) -> std::io::Result<()> {
    std::fs::write(journal_lost_mark(db), detail)
}

/// What the mark says, if there is one.
pub fn journal_lost(db: &Path) -> Option<String> {
    std::fs::read_to_string(journal_lost_mark(db)).ok()
}

/// Removes the mark (a new daemon, holding the ledger's lock, opens it afresh).
pub fn clear_journal_lost(db: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(journal_lost_mark(db)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl State {
    /// Whether the ledger is a file this connection opened for writing (not one in memory, nor
    /// one opened read-only).
    pub fn on_disk(&self) -> bool {
        self.files.is_some()
    }

    /// What is wrong with the ledger's files, in the operator's words, or `None` when the
    /// database, its `-wal` and its `-shm` are the files this connection opened (a journal not
    /// there at the open is taken as it first appears). Always `None` for a ledger in memory.
    pub fn files_changed(&self) -> Option<String> {
        let files = self.files.as_ref()?;
        let db = &self.path;
        if id_of(db) != files.db {
            return Some(format!(
                "the database file {} was deleted or replaced since the daemon opened it",
                db.display()
            ));
        }
        for (suffix, seen) in [("-wal", &files.wal), ("-shm", &files.shm)] {
            let path = with_suffix(db, suffix);
            match (seen.get(), id_of(&path)) {
                (None, now) => seen.set(now),
                (Some(was), Some(now)) if was == now => {}
                (Some(_), _) => {
                    return Some(format!(
                        "the ledger's {} {} was deleted or replaced since the daemon opened it (by hand?): what the \
                         daemon writes from now on would be lost at its next start",
                        if suffix == "-wal" { "journal" } else { "shared index" },
                        path.display()
                    ));
                }
            }
        }
        None
    }

    /// Folds what this connection holds — its journal, even one deleted under it — into the
    /// database file (a full checkpoint), so it survives the connection.
    pub fn fold_journal(&self) -> Result<(), StateError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(FULL)", [], |r| r.get::<_, i64>(0))
            .map_err(sql("folding the journal into the database file"))
            .and_then(|busy| match busy {
                0 => Ok(()),
                _ => Err(StateError::BadRow {
                    what: "wal_checkpoint",
                    detail: "another connection kept the checkpoint from finishing".into(),
                }),
            })
    }
}
