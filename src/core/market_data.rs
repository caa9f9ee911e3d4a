//! The market-data words: bars, quotes, option contracts and their snapshots (with greeks), and
//! the by-symbol map they come in.
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
