//! The market-data words: bars, quotes, option contracts and their snapshots (with greeks), the
//! by-symbol maps they come in, and `Contracts`, a chain's contracts grouped as the options bot
//! reads them.
//!
//! Owns: these types. Prices here are `f64`: they feed signals and indicators, never an order
//! directly (see `core::decimal`).
//!
//! Never: fetches anything.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;

use crate::core::decimal::Dec;
use crate::core::instrument::OptionKind;

/// One bar of market data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub t: Timestamp,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quote {
    pub t: Timestamp,
    pub bid: f64,
    pub ask: f64,
    pub bid_size: f64,
    pub ask_size: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OptionContract {
    pub symbol: String,
    pub underlying: String,
    pub expiration: Date,
    pub kind: OptionKind,
    pub strike: Dec,
    pub multiplier: Dec,
    pub open_interest: Option<u64>,
    pub close_price: Option<Dec>,
    pub tradable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Greeks {
    pub delta: f64,
    pub gamma: f64,
    pub theta: f64,
    pub vega: f64,
    pub rho: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OptionSnapshot {
    pub quote: Option<Quote>,
    pub greeks: Option<Greeks>,
    pub implied_volatility: Option<f64>,
    /// Today's volume, from the daily bar.
    pub volume: Option<f64>,
}

/// Symbol → its bars (oldest first), quotes or snapshots.
pub type BySymbol<T> = BTreeMap<String, T>;

/// OCC symbol → the contract's snapshot.
pub type Snapshots = BTreeMap<String, OptionSnapshot>;

/// The option contracts of some underlyings, grouped by underlying and kind, each group in the
/// contracts' symbol order, with its tradable contracts by expiry and strike (`at_strike`). An
/// options bot reads one underlying's calls or puts at a time, and each short leg looks for its
/// long leg a width away: a scan of every underlying's contracts for each was a twentieth of a
/// backtest. Built once a trading date, when the contracts are listed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contracts {
    /// Underlying → its (calls, puts).
    roots: BySymbol<(Group, Group)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Group {
    contracts: Vec<OptionContract>,
    /// (expiry, strike in thousandths) → the first tradable contract there in symbol order (an
    /// adjusted contract can share an underlying, expiry and strike with the standard one).
    tradable: BTreeMap<(Date, i64), usize>,
}

/// A strike in thousandths of a dollar, as OCC symbols write it.
fn milli(strike: f64) -> i64 {
    (strike * 1000.0).round() as i64
}

impl Contracts {
    fn group(&self, underlying: &str, kind: OptionKind) -> Option<&Group> {
        let (calls, puts) = self.roots.get(underlying)?;
        Some(if kind == OptionKind::Call { calls } else { puts })
    }

    /// `underlying`'s contracts of `kind`, tradable or not, in symbol order.
    pub fn of(&self, underlying: &str, kind: OptionKind) -> &[OptionContract] {
        self.group(underlying, kind).map_or(&[], |g| g.contracts.as_slice())
    }

    /// The first tradable contract (in symbol order) of `underlying` and `kind` expiring on
    /// `expiry` at `strike`, to a thousandth of a dollar.
    pub fn at_strike(&self, underlying: &str, kind: OptionKind, expiry: Date, strike: f64) -> Option<&OptionContract> {
        let g = self.group(underlying, kind)?;
        g.tradable.get(&(expiry, milli(strike))).and_then(|&i| g.contracts.get(i))
    }
}

impl FromIterator<OptionContract> for Contracts {
    /// One contract per symbol: a symbol listed twice keeps its last listing, as a map would.
    fn from_iter<I: IntoIterator<Item = OptionContract>>(list: I) -> Contracts {
        let by_symbol: BySymbol<OptionContract> = list.into_iter().map(|c| (c.symbol.clone(), c)).collect();
        let mut roots: BySymbol<(Group, Group)> = BTreeMap::new();
        for c in by_symbol.into_values() {
            let (calls, puts) = roots.entry(c.underlying.clone()).or_default();
            let g = if c.kind == OptionKind::Call { calls } else { puts };
            if c.tradable {
                g.tradable.entry((c.expiration, milli(c.strike.to_f64()))).or_insert(g.contracts.len());
            }
            g.contracts.push(c);
        }
        Contracts { roots }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(symbol: &str, underlying: &str, kind: OptionKind, strike: i64, tradable: bool) -> OptionContract {
        OptionContract {
            symbol: symbol.into(),
            underlying: underlying.into(),
            expiration: jiff::civil::date(2026, 12, 18),
            kind,
            strike: Dec::from_int(strike),
            multiplier: Dec::from_int(100),
            open_interest: None,
            close_price: None,
            tradable,
        }
    }

    #[test]
    fn contracts_are_grouped_by_underlying_and_kind_in_symbol_order_and_a_strike_finds_the_first_tradable() {
        let (put, call) = (OptionKind::Put, OptionKind::Call);
        let expiry = jiff::civil::date(2026, 12, 18);
        let list = vec![
            contract("SPY261218P00470000", "SPY", put, 470, true),
            contract("QQQ261218P00400000", "QQQ", put, 400, true),
            contract("SPY261218C00490000", "SPY", call, 490, true),
            contract("SPY261218P00465000", "SPY", put, 465, true),
            // Two tradable at one strike: the first in symbol order (an adjusted root), though
            // listed last…
            contract("SPY261218P00460000", "SPY", put, 460, true),
            contract("SPY1261218P00460000", "SPY", put, 460, true),
            // …an untradable one passed over…
            contract("SPY1261218P00450000", "SPY", put, 450, false),
            contract("SPY261218P00450000", "SPY", put, 450, true),
            // …and a symbol listed twice keeps its last listing.
            contract("SPY261218P00455000", "SPY", put, 455, false),
            contract("SPY261218P00455000", "SPY", put, 455, true),
            contract("SPY261218P00445000", "SPY", put, 445, true),
            contract("SPY261218P00445000", "SPY", put, 445, false),
        ];
        let contracts: Contracts = list.into_iter().collect();
        let symbols = |u: &str, k| contracts.of(u, k).iter().map(|c| c.symbol.as_str()).collect::<Vec<_>>();
        assert_eq!(
            symbols("SPY", put),
            [
                "SPY1261218P00450000",
                "SPY1261218P00460000",
                "SPY261218P00445000",
                "SPY261218P00450000",
                "SPY261218P00455000",
                "SPY261218P00460000",
                "SPY261218P00465000",
                "SPY261218P00470000"
            ]
        );
        assert!(!contracts.of("SPY", put)[2].tradable, "the last listing of a symbol listed twice");
        assert_eq!(symbols("SPY", call), ["SPY261218C00490000"]);
        assert_eq!(symbols("QQQ", put), ["QQQ261218P00400000"]);
        assert!(symbols("IWM", put).is_empty());
        let at = |k: f64| contracts.at_strike("SPY", put, expiry, k).map(|c| c.symbol.as_str());
        assert_eq!(at(460.0), Some("SPY1261218P00460000"), "the first in symbol order");
        assert_eq!(at(450.0), Some("SPY261218P00450000"), "the untradable one is passed over");
        assert_eq!(at(455.0), Some("SPY261218P00455000"), "its last listing is tradable");
        assert_eq!(at(445.0), None, "its last listing is not");
        assert_eq!(at(465.0004), Some("SPY261218P00465000"), "to a thousandth");
        assert_eq!(at(475.0), None);
        assert_eq!(contracts.at_strike("SPY", put, jiff::civil::date(2026, 12, 24), 465.0), None);
    }
}
