//! Setting and lifting halts in the ledger.
//!
//! Owns: the operations that persist a halt (`set`, `clear`), log `halt` / `resume` and hand
//! back what changed (`Change`), which callers that own a notifier post; and the halts held in
//! memory while the ledger cannot store them (`set_or_hold`, `store_held`). What a halt is and
//! how each may be lifted is `core::halt`'s.
//!
//! Never: decides whether a halt may be lifted (`halt::clears_by_itself`, `halt::resume_allowed`),
//! nor blocks exits.

use jiff::Timestamp;

use crate::core::clock;
use crate::core::halt::{Halt, HaltReason};
use crate::core::state::{State, StateError};
use crate::event;

/// What `set` or `clear` changed, worded for the operator: the caller posts it as a
/// notification (`services::notify::announce`) if it has a notifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `halt` or `resume`.
    pub event: &'static str,
    pub title: String,
    pub text: String,
}

/// Sets (or extends) a halt and logs `halt` when it is new; returns the change when it is new.
/// An existing halt of the same reason keeps its `since`; its `until` becomes the later of the
/// two (a halt is never shortened here).
pub fn set(state: &State, halt: &Halt) -> Result<Option<Change>, StateError> {
    if !state.set_halt(halt)? {
        return Ok(None);
    }
    Ok(Some(announced(halt, false)))
}

/// Logs `halt` and words the change (`held`: in memory only, the ledger took no write).
fn announced(halt: &Halt, held: bool) -> Change {
    let until = halt.until.map(clock::db_ts);
    event!(
        Warn,
        "halt",
        reason = halt.reason.as_str(),
        detail = halt.detail.as_str(),
        until = until.as_deref(),
        held_in_memory = held,
    );
    let kept = if held { "; held in memory: the state database takes no writes" } else { "" };
    Change {
        event: "halt",
        title: format!("Trading Hydra halted: {}", halt.reason),
        text: format!(
            "{} (until {}){kept}; exits of the daemon's positions go on",
            halt.detail,
            until.as_deref().unwrap_or("resumed")
        ),
    }
}

/// Like `set`, for a daemon that must halt even when the ledger cannot store it (disk full,
/// read-only, I/O error): such a halt is kept in `held` (once per reason) and stops entries all
/// the same — the caller counts `held` as active — and its change is still handed back, to be
/// announced (notifications need no disk). `store_held` writes it once the ledger takes writes.
/// The ledger's error comes back beside the change.
pub fn set_or_hold(state: &State, held: &mut Vec<Halt>, halt: &Halt) -> (Option<Change>, Option<StateError>) {
    match set(state, halt) {
        Ok(change) => (change, None),
        Err(_) if held.iter().any(|h| h.reason == halt.reason) => (None, None),
        Err(e) => {
            held.push(halt.clone());
            (Some(announced(halt, true)), Some(e))
        }
    }
}

/// Stores the halts held in memory, oldest first; each one stored leaves `held`. Stops at the
/// first the ledger still refuses.
pub fn store_held(state: &State, held: &mut Vec<Halt>) -> Result<(), StateError> {
    while let Some(h) = held.first() {
        state.set_halt(h)?;
        held.remove(0);
    }
    Ok(())
}

/// Lifts a halt and logs `resume`; returns the change when there was one. `by` says who lifted
/// it (`operator`, `auto`).
pub fn clear(state: &State, reason: HaltReason, by: &str, now: Timestamp) -> Result<Option<Change>, StateError> {
    if !state.clear_halt(reason, by, now)? {
        return Ok(None);
    }
    event!(Info, "resume", reason = reason.as_str(), by = by);
    Ok(Some(Change {
        event: "resume",
        title: format!("Trading Hydra resumed: {reason}"),
        text: format!("the {reason} halt was lifted ({by})"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn halt(reason: HaltReason, until: Option<&str>) -> Halt {
        Halt { reason, detail: "x".into(), since: ts("2026-11-25T15:00:00Z"), until: until.map(ts) }
    }

    #[test]
    fn a_halt_the_ledger_refuses_is_held_once_announced_and_stored_later() {
        let scratch = crate::test_dir::TestDir::new("halt-held");
        let dir = scratch.path().to_path_buf();
        let path = dir.join("state.db");
        let state = State::open(&path).unwrap();
        let h = halt(HaltReason::DailyLoss, Some("2026-11-26T05:00:00Z"));
        let mut held = Vec::new();
        // A read-only ledger stands for a full disk: every write fails.
        state.set_query_only(true);
        let (change, failed) = set_or_hold(&state, &mut held, &h);
        assert!(failed.is_some() && change.is_some_and(|c| c.text.contains("held in memory")));
        assert_eq!(held, vec![h.clone()]);
        let (change, _) = set_or_hold(&state, &mut held, &h);
        assert!(change.is_none() && held.len() == 1, "held and announced once");
        assert!(store_held(&state, &mut held).is_err() && held.len() == 1);
        state.set_query_only(false);
        store_held(&state, &mut held).unwrap();
        assert!(held.is_empty());
        assert_eq!(state.active_halts().unwrap(), vec![h]);
    }
}
