//! The read cache of a backtest's ledger, and of no other.
//!
//! Owns: the last answers to the reads the loop repeats most — owned positions, unfinished
//! orders, exits in flight, a bot's day, the day start — for a ledger in memory (`State::open_memory`), each
//! kept with the connection's count of changed rows when it was read (SQLite's `total_changes`:
//! any insert, update or delete of this connection on any table moves it, even one rolled back)
//! and handed out again only while that count is the same. A ledger in memory has one
//! connection and no other writer, so the count moves whenever an answer could change.
//! Worth it: the 21-day bench backtest runs 4,091.8 M instructions with it and about 5,380 M
//! without (cachegrind, docs/performance.md 2026-12-06): 24 %, far past the 5 % an
//! optimisation in `core/` must earn.
//!
//! Never: exists for a ledger on a file. `State::open` and `State::open_read_only` make none,
//! so every read of the daemon and of `status` is a plain read of the database as it is —
//! nothing a reviewer must prove current (SAFETY.md). Never kept across a write, never patched.

use std::cell::RefCell;
use std::collections::BTreeMap;

/// One read's kept answers, by key (`()` for a read without arguments), all dropped together
/// when the count of changed rows moves.
pub struct Kept<K, V>(RefCell<(u64, BTreeMap<K, V>)>);

impl<K: Ord, V: Clone> Kept<K, V> {
    pub fn new() -> Kept<K, V> {
        Kept(RefCell::new((0, BTreeMap::new())))
    }

    /// The answer kept for `key` at `changes`, or `read()`'s, kept.
    pub fn get<E>(&self, changes: u64, key: K, read: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        {
            let mut kept = self.0.borrow_mut();
            if kept.0 != changes {
                *kept = (changes, BTreeMap::new());
            }
            if let Some(v) = kept.1.get(&key) {
                return Ok(v.clone());
            }
        }
        let v = read()?;
        self.0.borrow_mut().1.insert(key, v.clone());
        Ok(v)
    }
}

impl<K: Ord, V: Clone> Default for Kept<K, V> {
    fn default() -> Self {
        Kept::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_kept_only_while_the_count_of_changes_stands() {
        let kept: Kept<&str, u32> = Kept::new();
        let mut reads = 0;
        let mut read = |v: u32| {
            reads += 1;
            Ok::<u32, ()>(v)
        };
        assert_eq!(kept.get(5, "a", || read(1)), Ok(1));
        assert_eq!(kept.get(5, "a", || read(2)), Ok(1), "kept");
        assert_eq!(kept.get(5, "b", || read(3)), Ok(3), "another key is read");
        assert_eq!(kept.get(6, "a", || read(4)), Ok(4), "a change drops every answer");
        assert_eq!(kept.get(6, "b", || read(5)), Ok(5));
        assert_eq!(kept.get(6, "a", || Err(())), Ok(4));
        assert_eq!(kept.get(7, "a", || Err(())), Err(()), "a failed read keeps nothing");
        assert_eq!(kept.get(7, "a", || read(6)), Ok(6));
        assert_eq!(reads, 5);
    }
}
