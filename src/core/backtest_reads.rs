//! The read cache of a backtest's ledger, and of no other.
//!
//! Owns: the last answers to the reads the loop repeats most — owned positions, unfinished
//! orders, exits in flight, a bot's day, the day start — for a ledger in memory
//! (`State::open_memory`), each kept with the count of rows changed, so far, in the tables that
//! read reads (`Changes`, counted by SQLite's update hook for every row inserted, updated or
//! deleted, even in a transaction later rolled back) and handed out again only while that count
//! is the same. A ledger in memory has one connection and no other writer, so the count moves
//! whenever an answer could change; a best price written every minute (`owned_positions`) no
//! longer drops a bot's day or the unfinished orders.
//! Worth it (cachegrind, the bench's 21-day backtest, docs/performance.md 2026-12-06): counted
//! per table, 3,691.8 M instructions against 4,103.8 M with one count for the whole ledger
//! (SQLite's `total_changes`, 375da40), and about 5,380 M without any cache (02f0c0e): far past
//! the 5 % an optimisation in `core/` must earn.
//!
//! Never: exists for a ledger on a file. `State::open` and `State::open_read_only` make none,
//! so every read of the daemon and of `status` is a plain read of the database as it is —
//! nothing a reviewer must prove current (SAFETY.md). Never kept across a write to a table the
//! read reads, never patched. (SQLite calls no update hook for a `DELETE` without `WHERE` — its
//! truncate optimisation — which the ledger never sends to the tables below.)

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The tables the kept reads read, by the names the schema gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Orders,
    OwnedPositions,
    Budgets,
    DayStartEquity,
}

impl Table {
    const ALL: [Table; 4] = [Table::Orders, Table::OwnedPositions, Table::Budgets, Table::DayStartEquity];

    fn name(self) -> &'static str {
        match self {
            Table::Orders => "orders",
            Table::OwnedPositions => "owned_positions",
            Table::Budgets => "budgets",
            Table::DayStartEquity => "day_start_equity",
        }
    }
}

/// Rows changed in each of those tables since the ledger was opened. Shared with the update hook
/// of its connection, which SQLite may call from inside any statement (hence atomics, though one
/// thread does it all).
#[derive(Debug, Clone, Default)]
pub struct Changes(Arc<[AtomicU64; 4]>);

impl Changes {
    /// Notes a changed row of `table`; a table no kept read reads is not counted.
    pub fn note(&self, table: &str) {
        if let Some(t) = Table::ALL.iter().find(|t| t.name() == table) {
            self.0[*t as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A count that moves whenever a row of one of `tables` changes.
    pub fn of(&self, tables: &[Table]) -> u64 {
        tables.iter().map(|t| self.0[*t as usize].load(Ordering::Relaxed)).sum()
    }
}

/// One read's kept answers, by key (`()` for a read without arguments), all dropped together
/// when the count of changed rows of the tables it reads moves.
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

    #[test]
    fn a_tables_count_moves_with_its_own_rows_only() {
        let changes = Changes::default();
        let (orders, day) = (changes.of(&[Table::Orders]), changes.of(&[Table::Budgets, Table::Orders]));
        changes.note("owned_positions");
        changes.note("loop_runs");
        assert_eq!(changes.of(&[Table::Orders]), orders, "another table's row leaves it");
        assert_eq!(changes.of(&[Table::Budgets, Table::Orders]), day);
        changes.note("orders");
        assert_ne!(changes.of(&[Table::Orders]), orders);
        assert_ne!(changes.of(&[Table::Budgets, Table::Orders]), day);
        let day = changes.of(&[Table::Budgets, Table::Orders]);
        changes.note("budgets");
        assert_ne!(changes.of(&[Table::Budgets, Table::Orders]), day, "either of a read's tables moves it");
    }
}
