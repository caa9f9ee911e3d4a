//! A halt delivered through a file beside the ledger (`<state db>.halt`): the operator's brake
//! when the ledger itself cannot be written (its journal deleted, the disk full or read-only).
//!
//! Owns: the file's place and form (JSON: the reason's detail and since when), writing it whole
//! (a temporary file renamed into place, fsynced), reading it, and removing it. `trading-hydra
//! halt` writes it only when the ledger refuses the halt; the daemon reads it every iteration and
//! counts it as a `manual` halt for as long as it is there; `trading-hydra resume` removes it.
//!
//! Never: lifts a halt by itself, or lets a file it cannot read pass for no halt: a damaged one
//! is a halt too (fail closed).

use std::path::{Path, PathBuf};

use jiff::Timestamp;

use crate::core::clock;
use crate::core::halt::{Halt, HaltReason};
use crate::core::state::with_suffix;

/// `<state db>.halt`, beside the ledger.
pub fn path(db: &Path) -> PathBuf {
    with_suffix(db, ".halt")
}

/// Writes the halt file for `db`: whole or not at all.
pub fn write(db: &Path, detail: &str, since: Timestamp) -> std::io::Result<PathBuf> {
    use std::io::Write;
    let target = path(db);
    let tmp = with_suffix(&target, ".tmp");
    let body = serde_json::json!({"reason": "manual", "detail": detail, "since": clock::db_ts(since)});
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(body.to_string().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &target)?;
    Ok(target)
}

/// The halt the file holds, `None` when there is none. A file that cannot be read or parsed is a
/// halt all the same, its detail saying so.
pub fn read(db: &Path, now: Timestamp) -> Option<Halt> {
    let p = path(db);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            return Some(manual(
                format!("the halt file {} cannot be read ({e}); it halts all the same", p.display()),
                now,
            ));
        }
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let since = v["since"].as_str().and_then(|t| clock::parse_ts(t).ok());
    match (v["detail"].as_str(), since) {
        (Some(detail), Some(since)) => {
            Some(Halt { reason: HaltReason::Manual, detail: detail.to_string(), since, until: None })
        }
        _ => Some(manual(format!("the halt file {} is damaged ({text:?}); it halts all the same", p.display()), now)),
    }
}

fn manual(detail: String, since: Timestamp) -> Halt {
    Halt { reason: HaltReason::Manual, detail, since, until: None }
}

/// Removes the halt file; `true` when there was one.
pub fn remove(db: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(path(db)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_halt_file_round_trips_and_a_damaged_one_still_halts() {
        let scratch = crate::test_dir::TestDir::new("halt-file");
        let db = scratch.path().join("state.db");
        let now: Timestamp = "2026-11-25T15:00:00Z".parse().unwrap();
        assert_eq!(read(&db, now), None);
        let written = write(&db, "going on holiday", now).unwrap();
        assert_eq!(written, scratch.path().join("state.db.halt"));
        let h = read(&db, now).unwrap();
        assert_eq!((h.reason, h.detail.as_str(), h.since), (HaltReason::Manual, "going on holiday", now));
        std::fs::write(&written, "{not json").unwrap();
        assert!(read(&db, now).unwrap().detail.contains("damaged"));
        assert!(remove(&db).unwrap());
        assert!(!remove(&db).unwrap());
        assert_eq!(read(&db, now), None);
    }
}
