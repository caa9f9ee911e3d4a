//! Why a bot is not entering: the operator's first question ("why isn't it trading?").
//!
//! Owns: the causes (`Cause`, a word that changes only when the situation does: the loop logs
//! `bot_idle` when a bot's causes change, not every iteration) and `Idle`, those causes with the
//! detail in plain words and numbers ("AAPL: no signal: ROC 0.04 % below 0.20 %"). The names are
//! the text `status --json` and the ledger's `bot_activity` table show. The detail (`Detail`) may
//! be written only when it is read: a bot without a signal says why every minute, and the log and
//! the ledger read it when the causes change or every few minutes.
//!
//! Never: decides anything. The bots and the execution service say why; this only names it.

use std::fmt;
use std::sync::Arc;

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
    /// The broker blocks this kind of entry for the account (its `crypto_status` not `ACTIVE`).
    BrokerBlocks,
}

impl Cause {
    pub const ALL: [Cause; 26] = [
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
        Cause::BrokerBlocks,
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
            Cause::BrokerBlocks => "broker_blocks",
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

/// The detail of an `Idle` in words: a text, or the numbers it is written from and how, written
/// when someone reads it (`Display`). Formatting the numbers of every bot's reason every minute
/// was a twentieth of a backtest, for a text the loop reads when the causes change or a few
/// minutes have passed. Measured worth (cachegrind, the bench's 21-day backtest, 2026-12-06):
/// every detail written at once costs 5.7 % more instructions (4,118.4 M against 3,895.4 M),
/// past the 5 % an optimisation in `core/` must earn. Two details are equal when they read the
/// same.
#[derive(Clone)]
pub struct Detail(Text);

#[derive(Clone)]
enum Text {
    Fixed(&'static str),
    Owned(String),
    /// Writes the text onto the end of a string. A pure function of values it was given.
    Later(Arc<dyn Fn(&mut String) + Send + Sync>),
}

impl Detail {
    /// The text `write` writes, written only when it is read.
    pub fn later(write: impl Fn(&mut String) + Send + Sync + 'static) -> Detail {
        Detail(Text::Later(Arc::new(write)))
    }

    /// Writes the text onto the end of `out`.
    pub fn write_to(&self, out: &mut String) {
        match &self.0 {
            Text::Fixed(s) => out.push_str(s),
            Text::Owned(s) => out.push_str(s),
            Text::Later(write) => write(out),
        }
    }

    /// This text between `before` and `after`.
    pub fn within(self, before: &'static str, after: &'static str) -> Detail {
        Detail::later(move |out| {
            out.push_str(before);
            self.write_to(out);
            out.push_str(after);
        })
    }
}

impl From<&'static str> for Detail {
    fn from(s: &'static str) -> Detail {
        Detail(Text::Fixed(s))
    }
}

impl From<String> for Detail {
    fn from(s: String) -> Detail {
        Detail(Text::Owned(s))
    }
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Text::Fixed(s) => f.write_str(s),
            Text::Owned(s) => f.write_str(s),
            Text::Later(write) => {
                let mut s = String::new();
                write(&mut s);
                f.write_str(&s)
            }
        }
    }
}

impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl PartialEq for Detail {
    fn eq(&self, other: &Detail) -> bool {
        self.to_string() == other.to_string()
    }
}

/// Why a bot did not enter this iteration: its causes (distinct, in the order met) and the detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Idle {
    pub causes: Vec<Cause>,
    pub detail: Detail,
}

impl Idle {
    pub fn new(cause: Cause, detail: impl Into<Detail>) -> Idle {
        Idle { causes: vec![cause], detail: detail.into() }
    }

    /// One `Idle` for a bot of several symbols, each with its own reason: "SPY: …; QQQ: …".
    /// `None` when no symbol has one.
    pub fn of_symbols(per_symbol: Vec<(String, Idle)>) -> Option<Idle> {
        if per_symbol.is_empty() {
            return None;
        }
        let mut causes: Vec<Cause> = Vec::new();
        for c in per_symbol.iter().flat_map(|(_, idle)| &idle.causes) {
            if !causes.contains(c) {
                causes.push(*c);
            }
        }
        let detail = Detail::later(move |out| {
            for (i, (symbol, idle)) in per_symbol.iter().enumerate() {
                if i > 0 {
                    out.push_str("; ");
                }
                out.push_str(symbol);
                out.push_str(": ");
                idle.detail.write_to(out);
            }
        });
        Some(Idle { causes, detail })
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
        assert_eq!(idle.detail.to_string(), "SPY: no direction; QQQ: credit 0.42 below min 0.50; IWM: no direction");
        assert_eq!(idle.causes_text(), "no_signal,price_out_of_band");
        assert_eq!(Idle::parse_causes("no_signal,from_the_future,price_out_of_band"), idle.causes);
        assert_eq!(Idle::of_symbols(Vec::new()), None);
    }

    #[test]
    fn a_detail_written_later_reads_as_the_same_text_written_at_once() {
        let (close, ema) = (100.125_f64, 100.5_f64);
        let later = Detail::later(move |out| {
            use std::fmt::Write as _;
            let _ = write!(out, "close {close:.2} not above EMA9 {ema:.2}");
        });
        assert_eq!(later.to_string(), "close 100.12 not above EMA9 100.50");
        assert_eq!(later, Detail::from(format!("close {close:.2} not above EMA9 {ema:.2}")));
        assert_eq!(format!("{later:?}"), format!("{:?}", "close 100.12 not above EMA9 100.50"));
        assert_ne!(later, Detail::from("close 100.12"));
        let within = later.clone().within("signal up, ", "; no squeeze");
        assert_eq!(within.to_string(), "signal up, close 100.12 not above EMA9 100.50; no squeeze");
        let mut out = String::from("AAPL: ");
        Detail::from("fixed").write_to(&mut out);
        assert_eq!(out, "AAPL: fixed");
    }
}
