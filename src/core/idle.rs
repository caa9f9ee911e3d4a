//! Why a bot is not entering: the operator's first question ("why isn't it trading?").
//!
//! Owns: the causes (`Cause`, a word that changes only when the situation does: the loop logs
//! `bot_idle` when a bot's causes change, not every iteration) and `Idle`, those causes with the
//! detail in plain words and numbers ("AAPL: no signal: ROC 0.04 % below 0.20 %"). The names are
//! the text `status --json` and the ledger's `bot_activity` table show.
//!
//! Never: decides anything. The bots and the execution service say why; this only names it.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// Halted, unsure of state, or a step failed (fail-closed): no bot enters.
    EntriesStopped,
    OutsideWindow,
    MarketClosed,
    StaleData,
    NoBudget,
    LossShareUsed,
    MaxTrades,
    MaxOrdersPerMinute,
    /// Not yet the bars or the quote its signal reads.
    NoData,
    NoSignal,
    /// A signal, but no contract of the chain fits its rules.
    NoContract,
    /// Contracts fit, but not for a credit (or debit) inside the strategy's band.
    PriceOutOfBand,
    /// Its budget or the cash buys less than one unit.
    TooSmall,
    Holding,
    MaxPositions,
    InFlight,
    CoolingDown,
    NoQuote,
    LimitTooFar,
    CashReserve,
    BuyingPower,
    OpenRisk,
    Unsure,
    /// Its signal is one of the Python daemon's placeholders: it never enters.
    Placeholder,
    /// It left the configuration: its positions get their stored exit rules, nothing new.
    ExitsOnly,
}

impl Cause {
    pub const ALL: [Cause; 25] = [
        Cause::EntriesStopped,
        Cause::OutsideWindow,
        Cause::MarketClosed,
        Cause::StaleData,
        Cause::NoBudget,
        Cause::LossShareUsed,
        Cause::MaxTrades,
        Cause::MaxOrdersPerMinute,
        Cause::NoData,
        Cause::NoSignal,
        Cause::NoContract,
        Cause::PriceOutOfBand,
        Cause::TooSmall,
        Cause::Holding,
        Cause::MaxPositions,
        Cause::InFlight,
        Cause::CoolingDown,
        Cause::NoQuote,
        Cause::LimitTooFar,
        Cause::CashReserve,
        Cause::BuyingPower,
        Cause::OpenRisk,
        Cause::Unsure,
        Cause::Placeholder,
        Cause::ExitsOnly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::EntriesStopped => "entries_stopped",
            Cause::OutsideWindow => "outside_window",
            Cause::MarketClosed => "market_closed",
            Cause::StaleData => "stale_data",
            Cause::NoBudget => "no_budget",
            Cause::LossShareUsed => "loss_share_used",
            Cause::MaxTrades => "max_trades",
            Cause::MaxOrdersPerMinute => "max_orders_per_minute",
            Cause::NoData => "no_data",
            Cause::NoSignal => "no_signal",
            Cause::NoContract => "no_contract",
            Cause::PriceOutOfBand => "price_out_of_band",
            Cause::TooSmall => "too_small",
            Cause::Holding => "holding",
            Cause::MaxPositions => "max_positions",
            Cause::InFlight => "in_flight",
            Cause::CoolingDown => "cooling_down",
            Cause::NoQuote => "no_quote",
            Cause::LimitTooFar => "limit_too_far",
            Cause::CashReserve => "cash_reserve",
            Cause::BuyingPower => "buying_power",
            Cause::OpenRisk => "open_risk",
            Cause::Unsure => "unsure",
            Cause::Placeholder => "placeholder",
            Cause::ExitsOnly => "exits_only",
        }
    }

    pub fn parse(text: &str) -> Option<Cause> {
        Cause::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a bot did not enter this iteration: its causes (distinct, in the order met) and the detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Idle {
    pub causes: Vec<Cause>,
    pub detail: String,
}

impl Idle {
    pub fn new(cause: Cause, detail: impl Into<String>) -> Idle {
        Idle { causes: vec![cause], detail: detail.into() }
    }

    /// One `Idle` for a bot of several symbols, each with its own reason: "SPY: …; QQQ: …".
    /// `None` when no symbol has one.
    pub fn of_symbols(per_symbol: Vec<(String, Idle)>) -> Option<Idle> {
        let mut causes: Vec<Cause> = Vec::new();
        let mut detail = String::new();
        for (symbol, idle) in &per_symbol {
            for c in &idle.causes {
                if !causes.contains(c) {
                    causes.push(*c);
                }
            }
            if !detail.is_empty() {
                detail.push_str("; ");
            }
            detail.push_str(symbol);
            detail.push_str(": ");
            detail.push_str(&idle.detail);
        }
        (!per_symbol.is_empty()).then_some(Idle { causes, detail })
    }

    /// The causes as the ledger and the log write them: `no_signal,price_out_of_band`.
    pub fn causes_text(&self) -> String {
        self.causes.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",")
    }

    /// The causes read back from `causes_text`; an unknown word (a newer build's) is skipped.
    pub fn parse_causes(text: &str) -> Vec<Cause> {
        text.split(',').filter_map(Cause::parse).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_reads_back_from_its_name() {
        for c in Cause::ALL {
            assert_eq!(Cause::parse(c.as_str()), Some(c));
        }
        let names: std::collections::BTreeSet<&str> = Cause::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), Cause::ALL.len(), "names are distinct");
    }

    #[test]
    fn a_bot_of_several_symbols_says_each_ones_reason_and_its_distinct_causes() {
        let idle = Idle::of_symbols(vec![
            ("SPY".into(), Idle::new(Cause::NoSignal, "no direction")),
            ("QQQ".into(), Idle::new(Cause::PriceOutOfBand, "credit 0.42 below min 0.50")),
            ("IWM".into(), Idle::new(Cause::NoSignal, "no direction")),
        ])
        .unwrap();
        assert_eq!(idle.causes, vec![Cause::NoSignal, Cause::PriceOutOfBand]);
        assert_eq!(idle.detail, "SPY: no direction; QQQ: credit 0.42 below min 0.50; IWM: no direction");
        assert_eq!(idle.causes_text(), "no_signal,price_out_of_band");
        assert_eq!(Idle::parse_causes("no_signal,from_the_future,price_out_of_band"), idle.causes);
        assert_eq!(Idle::of_symbols(Vec::new()), None);
    }
}
