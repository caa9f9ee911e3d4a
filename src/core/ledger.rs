//! The ledger's arithmetic: what one fill of one of our orders does to what a bot holds of a
//! symbol — the new holding and the P&L it realised — as a pure function of plain values, in
//! exact decimals.
//!
//! Owns: the accounting rules. A fill in the holding's direction adds to it at the weighted
//! average price (rounded half away from zero to four decimals); a fill against it realises
//! (price − average) × closed quantity × the contract multiplier (the mirror image for a short);
//! a fill that goes through zero opens the rest at its own price — unless it may only reduce (an
//! exit, a leg that closes), which never opens anything the other way: what it filled beyond the
//! holding is not booked (the daemon would otherwise "close" a short it never had).
//!
//! Never: reads or writes anything. `core::state` calls it inside the transaction that records a
//! broker's report, and books exactly what it returns.

use crate::core::decimal::Dec;

/// What a bot holds of one symbol. `qty` is negative for a short and never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holding {
    pub qty: Dec,
    pub avg_entry_price: Dec,
}

/// What newly filled of one of our orders (or of one leg).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// Signed: positive bought, negative sold.
    pub qty: Dec,
    pub price: Dec,
    /// An exit or a closing leg: it may lower the holding to zero, never open one the other way.
    pub reduce_only: bool,
}

/// What a fill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// `None`: nothing is held any more.
    pub holding: Option<Holding>,
    /// Realised on the part that reduced the holding, times the multiplier.
    pub realized: Dec,
}

/// Applies `fill` to `before` (`None`: nothing held). `multiplier` is the instrument's
/// (`core::instrument::multiplier`: 100 for an option contract). `None` only when a product is
/// beyond `Dec`'s range (about ±9.2 billion), which no real fill reaches.
pub fn apply(before: Option<Holding>, fill: Fill, multiplier: i64) -> Option<Applied> {
    let (old, avg) = before.map_or((Dec::ZERO, fill.price), |h| (h.qty, h.avg_entry_price));
    let mut new = old.checked_add(fill.qty)?;
    if fill.reduce_only && (old.is_zero() || new.is_negative() != old.is_negative()) {
        new = Dec::ZERO;
    }
    let reducing = !old.is_zero() && old.is_negative() != fill.qty.is_negative();
    let (realized, new_avg) = if reducing {
        let closed = fill.qty.abs().min(old.abs());
        let per_unit = if old.is_negative() { avg.checked_sub(fill.price)? } else { fill.price.checked_sub(avg)? };
        let realized = per_unit.checked_mul(closed)?.checked_mul_int(multiplier)?;
        let flipped = !new.is_zero() && new.is_negative() != old.is_negative();
        (realized, if flipped { fill.price } else { avg })
    } else {
        let total = old.abs().checked_add(fill.qty.abs())?;
        let cost = old.abs().checked_mul(avg)?.checked_add(fill.qty.abs().checked_mul(fill.price)?)?;
        let weighted = cost.checked_div(total).map_or(fill.price, |w| w.round_to(4));
        (Dec::ZERO, weighted)
    };
    let holding = (!new.is_zero()).then_some(Holding { qty: new, avg_entry_price: new_avg });
    Some(Applied { holding, realized })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(t: &str) -> Dec {
        t.parse().unwrap()
    }

    fn held(qty: &str, avg: &str) -> Option<Holding> {
        Some(Holding { qty: d(qty), avg_entry_price: d(avg) })
    }

    fn fill(qty: &str, price: &str) -> Fill {
        Fill { qty: d(qty), price: d(price), reduce_only: false }
    }

    fn exit(qty: &str, price: &str) -> Fill {
        Fill { reduce_only: true, ..fill(qty, price) }
    }

    #[test]
    fn buying_more_averages_the_price() {
        let a = apply(None, fill("4", "100"), 1).unwrap();
        assert_eq!(a, Applied { holding: held("4", "100"), realized: Dec::ZERO });
        let a = apply(a.holding, fill("6", "101.2"), 1).unwrap();
        assert_eq!(a.holding, held("10", "100.72"));
        // A third of a cent rounds to four decimals.
        assert_eq!(apply(held("1", "10"), fill("2", "10.01"), 1).unwrap().holding, held("3", "10.0067"));
    }

    #[test]
    fn selling_realises_exactly_with_no_float_noise() {
        // (f64: 12.800000000000011)
        let a = apply(held("10", "100.72"), exit("-10", "102"), 1).unwrap();
        assert_eq!(a, Applied { holding: None, realized: d("12.8") });
        // In floats (193.02 − 191.39) × 50 is 81.5000000000012; here it is 81.5.
        let a = apply(held("50", "191.39"), exit("-50", "193.02"), 1).unwrap();
        assert_eq!(a.realized, d("81.5"));
        let a = apply(held("2", "0.1"), exit("-1", "0.3"), 1).unwrap();
        assert_eq!((a.holding, a.realized), (held("1", "0.1"), d("0.2")));
    }

    #[test]
    fn a_short_realises_the_mirror_image() {
        let a = apply(held("-2", "50"), fill("2", "45"), 1).unwrap();
        assert_eq!(a, Applied { holding: None, realized: d("10") });
        assert_eq!(apply(held("-2", "50"), fill("1", "55"), 1).unwrap().realized, d("-5"));
    }

    #[test]
    fn an_exit_never_flips_a_holding_into_the_other_side() {
        // Over-filled (the holding was capped meanwhile): closed at zero, the excess not booked.
        let a = apply(held("1", "50"), exit("-5", "50"), 1).unwrap();
        assert_eq!(a, Applied { holding: None, realized: Dec::ZERO });
        assert_eq!(apply(None, exit("-3", "50"), 1).unwrap().holding, None, "no short from an exit");
        // An entry that sells (an allowed short) does open one.
        assert_eq!(apply(None, fill("-2", "50"), 1).unwrap().holding, held("-2", "50"));
    }

    #[test]
    fn an_entry_through_zero_opens_the_rest_at_its_price() {
        let a = apply(held("2", "40"), fill("-5", "45"), 1).unwrap();
        assert_eq!(a, Applied { holding: held("-3", "45"), realized: d("10") });
    }

    #[test]
    fn an_option_leg_realises_times_the_multiplier() {
        // Short a put for 2.10 a share, bought back at 1.60: 0.50 × 100 × 1 contract.
        let a = apply(held("-1", "2.10"), exit("1", "1.60"), 100).unwrap();
        assert_eq!(a, Applied { holding: None, realized: d("50") });
        let a = apply(held("1", "1.60"), exit("-1", "0.95"), 100).unwrap();
        assert_eq!(a.realized, d("-65"));
    }
}
