//! Corporate actions as the broker's position shows them: a split (forward, or reverse) changes
//! the quantity held by a ratio and the average price by its inverse, and keeps the cost. Read
//! as anything else, a 2-for-1 split is a 50 % loss on half the shares and the other half a
//! stranger's.
//!
//! Owns: telling a split from a trade (`split_ratio`), and what a split does to a holding
//! (`rebase`): pure functions of plain values, in exact decimals.
//!
//! Never: reads or writes anything, or takes a change it cannot explain whole for a split: a
//! partial sale, a purchase, or a cost that moved are not splits.

use crate::core::decimal::Dec;
use crate::core::ledger::Holding;

/// A split: `new` shares for every `old` (2-for-1 is `{new: 2, old: 1}`, a 1-for-10 reverse split
/// `{new: 1, old: 10}`), whole numbers so the arithmetic stays exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub new: i64,
    pub old: i64,
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-for-{}", self.new, self.old)
    }
}

impl Split {
    /// `qty` after the split, exactly (nine decimals at most).
    pub fn of_qty(self, qty: Dec) -> Option<Dec> {
        qty.checked_mul_int(self.new)?.checked_div(Dec::from_int(self.old))
    }

    /// A price after the split, exactly (nine decimals at most).
    pub fn of_price(self, price: Dec) -> Option<Dec> {
        price.checked_mul_int(self.old)?.checked_div(Dec::from_int(self.new))
    }
}

/// A split changes the count by a quarter at least (5-for-4, 4-for-5): anything closer to 1 is
/// left to the ordinary reconciliation.
const LEAST_CHANGE: f64 = 0.2;

/// The cost a split keeps, within 1 % (the broker's rounding of the new average price) and one new
/// share (cash in lieu of a fraction, for a reverse split).
const COST_TOLERANCE: f64 = 0.01;

/// The split that turns `before` (quantity, average price) into `after`, as the new quantity per
/// old share (`2` for a 2-for-1 split, `0.1` for a 1-for-10 reverse one), or `None` when the
/// change is not a split. A split is read from the average prices — their ratio, as the nearest
/// fraction of small whole numbers (up to 50 for either), since the broker rounds the new
/// average — and must explain the rest: the same side, the count changed by a quarter at least
/// and by that ratio to within one share (a reverse split pays the fraction in cash), and the
/// cost (quantity × average price) kept.
pub fn split_ratio(before: (Dec, Dec), after: (Dec, Dec)) -> Option<Split> {
    explained(before, after).filter(|s| (s.new as f64 / s.old as f64 - 1.0).abs() >= LEAST_CHANGE)
}

/// The same reading for a holding that left one symbol for another (a new ticker, often with a
/// reverse split): here an unchanged count is a plain change of name (`1-for-1`).
pub fn symbol_change(before: (Dec, Dec), after: (Dec, Dec)) -> Option<Split> {
    explained(before, after)
}

/// The split (1-for-1 included) that explains `before` → `after` whole, if one does.
fn explained(before: (Dec, Dec), after: (Dec, Dec)) -> Option<Split> {
    let ((q0, a0), (q1, a1)) = (before, after);
    if q0.is_zero() || q1.is_zero() || q0.is_negative() != q1.is_negative() || a0 <= Dec::ZERO || a1 <= Dec::ZERO {
        return None;
    }
    let split = nearest_fraction(a0.to_f64() / a1.to_f64())?;
    let expected = split.of_qty(q0.abs())?;
    let counted = (q1.abs().to_f64() - expected.to_f64()).abs() < 1.0;
    let (cost0, cost1) = (q0.abs().to_f64() * a0.to_f64(), q1.abs().to_f64() * a1.to_f64());
    let kept = (cost1 - cost0).abs() <= cost0 * COST_TOLERANCE + a1.to_f64();
    (counted && kept).then_some(split)
}

/// `x` as `n / m` with the smallest `m` up to 50 that comes within 0.2 % of it (`None`: none does).
fn nearest_fraction(x: f64) -> Option<Split> {
    if !x.is_finite() || x <= 0.0 {
        return None;
    }
    (1..=50i64).find_map(|old| {
        let new = (x * old as f64).round() as i64;
        let close = (1..=50).contains(&new) && ((new as f64 / old as f64) - x).abs() <= x * 0.002;
        close.then_some(Split { new, old })
    })
}

/// What `split` does to a holding: the quantity by the split (rounded down to `qty_places`
/// decimals: a reverse split pays a fraction in cash), the average price by its inverse (to four
/// decimals, as `ledger::apply` keeps it). `None` when nothing would be left, or on an overflow.
pub fn rebase(h: Holding, split: Split, qty_places: u32) -> Option<Holding> {
    let qty = split.of_qty(h.qty)?.round_down(qty_places);
    let avg = split.of_price(h.avg_entry_price)?.round_to(4);
    (!qty.is_zero()).then_some(Holding { qty, avg_entry_price: avg })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(t: &str) -> Dec {
        t.parse().unwrap()
    }

    #[test]
    fn a_split_keeps_the_cost_and_a_trade_does_not() {
        // 52 at 190 become 104 at 95: 2-for-1.
        assert_eq!(split_ratio((d("52"), d("190")), (d("104"), d("95"))), Some(Split { new: 2, old: 1 }));
        // 1-for-10, the fraction paid in cash: 52 at 9.5 become 5 at 95 (5.2 kept at cost).
        assert_eq!(split_ratio((d("52"), d("9.5")), (d("5"), d("95"))), Some(Split { new: 1, old: 10 }));
        // 3-for-2, the broker's average rounded to the cent.
        assert_eq!(split_ratio((d("51"), d("193.02")), (d("76.5"), d("128.68"))), Some(Split { new: 3, old: 2 }));
        // 1-for-3: exact, whole numbers.
        assert_eq!(split_ratio((d("30"), d("10")), (d("10"), d("30"))), Some(Split { new: 1, old: 3 }));
        // A purchase at another price, a sale, a small change, the other side: not splits.
        assert_eq!(split_ratio((d("52"), d("190")), (d("104"), d("192"))), None);
        assert_eq!(split_ratio((d("52"), d("190")), (d("26"), d("190"))), None);
        assert_eq!(split_ratio((d("52"), d("190")), (d("55"), d("180"))), None);
        assert_eq!(split_ratio((d("52"), d("190")), (d("-104"), d("95"))), None);
        assert_eq!(split_ratio((Dec::ZERO, d("190")), (d("104"), d("95"))), None);
    }

    #[test]
    fn a_new_ticker_is_a_change_of_name_with_or_without_a_split() {
        assert_eq!(symbol_change((d("52"), d("190")), (d("52"), d("190"))), Some(Split { new: 1, old: 1 }));
        assert_eq!(symbol_change((d("50"), d("2")), (d("5"), d("20"))), Some(Split { new: 1, old: 10 }));
        assert_eq!(symbol_change((d("52"), d("190")), (d("52"), d("150"))), None, "another holding");
        assert_eq!(split_ratio((d("52"), d("190")), (d("52"), d("190"))), None, "no split in one symbol");
    }

    #[test]
    fn a_rebased_holding_keeps_its_cost_and_a_reverse_split_rounds_the_quantity_down() {
        let h = Holding { qty: d("52"), avg_entry_price: d("190") };
        let split = |new, old| Split { new, old };
        assert_eq!(rebase(h, split(2, 1), 0), Some(Holding { qty: d("104"), avg_entry_price: d("95") }));
        assert_eq!(rebase(h, split(1, 10), 0), Some(Holding { qty: d("5"), avg_entry_price: d("1900") }));
        assert_eq!(rebase(Holding { qty: d("30"), avg_entry_price: d("10") }, split(1, 3), 0).unwrap().qty, d("10"));
        let short = Holding { qty: d("-10"), avg_entry_price: d("50") };
        assert_eq!(rebase(short, split(3, 1), 0), Some(Holding { qty: d("-30"), avg_entry_price: d("16.6667") }));
        assert_eq!(rebase(Holding { qty: d("5"), avg_entry_price: d("10") }, split(1, 10), 0), None);
        assert_eq!(split(3, 2).to_string(), "3-for-2");
    }
}
