//! The daily backup (`backup.folder` in settings.yaml).
//!
//! Owns: once per New York trading date — at the first iteration of the date, or of the process
//! when that date's copy is missing — a consistent copy of the ledger made from the daemon's own
//! connection (`State::backup_to`: SQLite's online backup, checked, one self-contained file),
//! named `trading_state-<date>.db`; and keeping the newest `backup.keep` of those, deleting older
//! ones.
//!
//! Never: stops or delays trading on a failure (a full or missing disk is logged as
//! `backup_failed` and notified, and tried again at the next trading date or start), deletes a
//! file of any other name (the copies `trading-hydra backup` names by their time are the
//! operator's), or backs up a ledger kept in memory (a backtest's).

use std::path::{Path, PathBuf};

use jiff::civil::Date;

use crate::core::config::Backup;
use crate::core::state::State;
use crate::event;
use crate::services::notify;

/// Which trading date's copy this process has made (or tried to).
#[derive(Debug, Default)]
pub struct DailyBackup {
    tried: Option<Date>,
}

impl DailyBackup {
    /// Makes `date`'s copy if it is due; logs `backup` or `backup_failed`.
    pub fn after_iteration(&mut self, state: &State, settings: &Backup, date: Date) {
        let Some(folder) = &settings.folder else { return };
        if self.tried == Some(date) || state.path() == Path::new(":memory:") {
            return;
        }
        self.tried = Some(date);
        let path = folder.join(file_name(date));
        if path.exists() {
            return;
        }
        let made = std::fs::create_dir_all(folder)
            .map_err(|e| format!("cannot create {}: {e}", folder.display()))
            .and_then(|()| state.backup_to(&path).map_err(|e| e.to_string()));
        match made {
            Ok(s) => {
                let removed = prune(folder, settings.keep);
                event!(
                    Info,
                    "backup",
                    path = s.path.display().to_string(),
                    bytes = s.bytes,
                    orders = s.orders,
                    removed = removed.len()
                );
            }
            Err(detail) => {
                event!(Error, "backup_failed", path = path.display().to_string(), detail = detail.as_str());
                notify::send(notify::Note {
                    event: "backup_failed",
                    title: "Trading Hydra: the daily backup failed".into(),
                    text: format!("{detail}; trading goes on, and the backup is tried again at the next trading date"),
                });
            }
        }
    }
}

/// `trading_state-2026-11-25.db`.
fn file_name(date: Date) -> String {
    format!("trading_state-{date}.db")
}

/// The trading date of a daily copy's file name, or `None` for any other file.
fn date_of(name: &str) -> Option<Date> {
    name.strip_prefix("trading_state-")?.strip_suffix(".db")?.parse().ok()
}

/// Deletes all but the newest `keep` daily copies in `folder`; returns those deleted. A file that
/// cannot be deleted is left (and tried again the next day).
fn prune(folder: &Path, keep: u32) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let mut daily: Vec<(Date, PathBuf)> =
        entries.filter_map(|e| e.ok()).filter_map(|e| Some((date_of(e.file_name().to_str()?)?, e.path()))).collect();
    daily.sort();
    let excess = daily.len().saturating_sub(keep as usize);
    daily.into_iter().take(excess).filter(|(_, p)| std::fs::remove_file(p).is_ok()).map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_daily_copies_are_named_by_a_date_and_pruned() {
        assert_eq!(date_of("trading_state-2026-11-25.db"), Some(jiff::civil::date(2026, 11, 25)));
        assert_eq!(date_of("trading_state-20261125T153000Z.db"), None, "a copy of `backup DEST` is the operator's");
        assert_eq!(date_of("trading_state-2026-11-25.db.partial"), None);
        assert_eq!(file_name(jiff::civil::date(2026, 1, 2)), "trading_state-2026-01-02.db");
    }

    #[test]
    fn a_day_a_copy_the_newest_kept_and_a_failure_never_stops_anything() {
        let scratch = crate::test_dir::TestDir::new("daily-backup");
        let state = State::open(&scratch.path().join("state.db")).unwrap();
        let folder = scratch.path().join("backups");
        let settings = Backup { folder: Some(folder.clone()), keep: 2 };
        let mut daily = DailyBackup::default();
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("trading_state-20261101T000000Z.db"), "the operator's").unwrap();
        for day in 23..=26 {
            daily.after_iteration(&state, &settings, jiff::civil::date(2026, 11, day));
            // The same date again: nothing more.
            daily.after_iteration(&state, &settings, jiff::civil::date(2026, 11, day));
        }
        let mut names: Vec<String> =
            std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(
            names,
            ["trading_state-2026-11-25.db", "trading_state-2026-11-26.db", "trading_state-20261101T000000Z.db"]
        );
        assert_eq!(
            State::open_read_only(&folder.join("trading_state-2026-11-26.db")).unwrap().all_orders().unwrap(),
            []
        );
        // A folder that cannot be made (a file in its way): logged, nothing else.
        let blocked = Backup { folder: Some(scratch.path().join("state.db").join("x")), keep: 2 };
        DailyBackup::default().after_iteration(&state, &blocked, jiff::civil::date(2026, 11, 27));
        assert!(state.owned_positions().unwrap().is_empty(), "the ledger works on");
    }
}
