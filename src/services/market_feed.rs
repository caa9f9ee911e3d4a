//! The market data the bots read each iteration, kept between iterations: quotes (refreshed
//! every third of `health.max_price_staleness_seconds`), one-minute bars (once per new minute),
//! option contracts (once per trading date) and option snapshots (once per new minute, only of
//! the chains a bot will read).
//!
//! Owns: which symbols are asked for, how often, and the answers until the next refresh.
//! Never: sends, records or decides anything; a failed fetch is the caller's `data_error`, and
//! the old answers are dropped (quotes) or kept until the next try (bars, chains).

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};

use crate::bots::{Bot, ChainSpan};
use crate::core::clock;
use crate::core::config::BotKind;
use crate::core::market_data::{Bar, BySymbol, Contracts, Quote, Snapshots};
use crate::core::state::OwnedPosition;
use crate::services::broker::{Broker, BrokerError};

/// The sorted, distinct symbols of some bots, kept from one minute to the next: a list that has
/// not changed (it changes only with the configuration) is not copied again each minute.
#[derive(Debug, Default)]
struct SymbolList(Vec<String>);

impl SymbolList {
    fn update<'a>(&mut self, wanted: impl IntoIterator<Item = &'a str>) -> &[String] {
        // Sorted and made distinct in a vector: a handful of symbols, asked for several times a
        // minute, for which a set's tree costs more than a sort (0.4 % of a backtest).
        let mut wanted: Vec<&str> = wanted.into_iter().collect();
        wanted.sort_unstable();
        wanted.dedup();
        if !self.0.iter().map(String::as_str).eq(wanted.iter().copied()) {
            self.0 = wanted.into_iter().map(str::to_string).collect();
        }
        &self.0
    }
}

/// One iteration's market data, lent to the bots (`MarketFeed::lend`, given back with
/// `MarketFeed::give_back`).
pub struct MarketData {
    pub quotes: BySymbol<Quote>,
    pub bars: BySymbol<Vec<Bar>>,
    pub contracts: Contracts,
    pub snapshots: Snapshots,
}

/// The market data kept between iterations, and when each part was fetched.
#[derive(Debug, Default)]
pub struct MarketFeed {
    /// The latest quotes and when they were fetched: refreshed every third of
    /// `health.max_price_staleness_seconds`, so they are never staler than a third of the
    /// allowance and a 1-second loop stays inside Alpaca's request budget.
    quotes: BySymbol<Quote>,
    quotes_at: Option<Timestamp>,
    /// One-minute bars of every bot's symbols, fetched once per new minute.
    bars: BySymbol<Vec<Bar>>,
    bars_minute: Option<i64>,
    /// The symbols asked for quotes and bars (stocks, crypto pairs), kept between minutes.
    quote_symbols: [SymbolList; 2],
    bar_symbols: [SymbolList; 2],
    /// Option contracts of the options bots' underlyings, fetched once per trading date.
    contracts: Contracts,
    contracts_date: Option<jiff::civil::Date>,
    /// Their option snapshots, fetched once per new minute.
    snapshots: Snapshots,
    snapshots_minute: Option<i64>,
    snapshot_roots: BTreeMap<String, ChainSpan>,
}

impl MarketFeed {
    /// Brings the quotes, bars and option chains the `bots` read up to date at `now`. A failure
    /// is returned (the first one) and the other parts are still fetched: the exits run on what
    /// is known. `may_enter` says which options bots may enter this iteration (the others need
    /// only the chains they hold legs in).
    pub fn refresh(
        &mut self,
        broker: &mut dyn Broker,
        bots: &[&dyn Bot],
        owned: &[OwnedPosition],
        may_enter: &dyn Fn(&dyn Bot) -> bool,
        max_staleness_secs: u64,
        now: Timestamp,
    ) -> Option<String> {
        let mut error = None;
        let period = SignedDuration::from_secs((max_staleness_secs / 3).max(1) as i64);
        if self.quotes_at.is_none_or(|at| now.duration_since(at) >= period || now < at) {
            match fetch_quotes(broker, bots, &mut self.quote_symbols) {
                Ok(q) => {
                    self.quotes = q;
                    self.quotes_at = Some(now);
                }
                Err(e) => {
                    error = Some(e.to_string());
                    self.quotes.clear();
                    self.quotes_at = None;
                }
            }
        }
        if let Err(e) = self.refresh_bars(broker, bots, now) {
            error.get_or_insert(e.to_string());
        }
        if let Err(e) = self.refresh_options(broker, bots, owned, may_enter, now) {
            error.get_or_insert(e.to_string());
        }
        error
    }

    /// The data, lent out for one iteration while the feed is not asked (`give_back` returns it).
    pub fn lend(&mut self) -> MarketData {
        MarketData {
            quotes: std::mem::take(&mut self.quotes),
            bars: std::mem::take(&mut self.bars),
            contracts: std::mem::take(&mut self.contracts),
            snapshots: std::mem::take(&mut self.snapshots),
        }
    }

    /// Takes back what `lend` lent.
    pub fn give_back(&mut self, data: MarketData) {
        self.quotes = data.quotes;
        self.bars = data.bars;
        self.contracts = data.contracts;
        self.snapshots = data.snapshots;
    }

    /// Fetches the options bots' chains: contracts once per trading date (one request for all
    /// underlyings, from today to the furthest expiry a bot reads), snapshots once per new minute
    /// (one request per underlying), of the part of the chain the bots will read: the held legs'
    /// expiry, kind and strikes for their exits, and the entry window their signal calls for
    /// (every strike) when they may enter.
    fn refresh_options(
        &mut self,
        broker: &mut dyn Broker,
        bots: &[&dyn Bot],
        owned: &[OwnedPosition],
        may_enter: &dyn Fn(&dyn Bot) -> bool,
        now: Timestamp,
    ) -> Result<(), BrokerError> {
        let today = clock::trading_date(now);
        let mut roots = BTreeSet::new();
        let mut wanted: BTreeMap<String, ChainSpan> = BTreeMap::new();
        let mut max_days = 0;
        for bot in bots {
            if let Some((_, max)) = bot.option_days() {
                roots.extend(bot.symbols().iter().cloned());
                max_days = max_days.max(max);
                let mine: Vec<&OwnedPosition> =
                    owned.iter().filter(|p| p.bot == bot.id() && bot.watches(&p.symbol)).collect();
                // A bot that may not enter this iteration whatever its signal (`preflight`
                // refuses it) reads only the legs it holds.
                let enter = may_enter(*bot);
                for want in bot.chains_wanted(&self.bars, &mine, today) {
                    let Some(span) = want.span(enter) else { continue };
                    wanted.entry(want.root).and_modify(|s| *s = s.widen(span)).or_insert(span);
                }
            }
        }
        if roots.is_empty() {
            return Ok(());
        }
        let until = today.checked_add(jiff::Span::new().days(i64::from(max_days))).unwrap_or(today);
        let roots: Vec<String> = roots.into_iter().collect();
        if self.contracts_date != Some(today) {
            self.contracts = broker.option_contracts(&roots, today, until)?.into_iter().collect();
            self.contracts_date = Some(today);
        }
        // Snapshots only of the chains a bot will read this minute (it holds legs there, or its
        // signal calls for a spread): one request each, and none on a quiet minute.
        let minute = now.as_second().div_euclid(60);
        if self.snapshots_minute != Some(minute) || self.snapshot_roots != wanted {
            let mut snaps = Snapshots::new();
            for (root, span) in &wanted {
                snaps.append(&mut broker.option_snapshots(root, span.from, span.to, span.kind, span.strikes)?);
            }
            self.snapshots = snaps;
            self.snapshots_minute = Some(minute);
            self.snapshot_roots = wanted;
        }
        Ok(())
    }

    /// Fetches one-minute bars once per new minute: one request for every stock bot's ticker, one
    /// for every crypto pair.
    fn refresh_bars(&mut self, broker: &mut dyn Broker, bots: &[&dyn Bot], now: Timestamp) -> Result<(), BrokerError> {
        let minute = now.as_second().div_euclid(60);
        if self.bars_minute == Some(minute) {
            return Ok(());
        }
        let wanted = |crypto| of_kind(bots.iter().filter(|b| b.bars_needed() > 0), crypto);
        let need = |crypto| wanted(crypto).map(|b| b.bars_needed()).max().unwrap_or(0);
        let [stock_list, pair_list] = &mut self.bar_symbols;
        let stocks = stock_list.update(symbols_of(wanted(false)));
        let pairs = pair_list.update(symbols_of(wanted(true)));
        let mut bars = BySymbol::new();
        if !stocks.is_empty() {
            // Stocks only have bars in session: look back far enough to span a night.
            let start = now.saturating_sub(SignedDuration::from_mins(need(false) as i64 * 2 + 60)).unwrap_or(now);
            bars.extend(broker.stock_bars(stocks, "1Min", start)?);
        }
        if !pairs.is_empty() {
            let start = now.saturating_sub(SignedDuration::from_mins(need(true) as i64 + 10)).unwrap_or(now);
            bars.extend(broker.crypto_bars(pairs, "1Min", start)?);
        }
        self.bars = bars;
        self.bars_minute = Some(minute);
        Ok(())
    }
}

/// The latest quotes of every bot's symbols: one request for stocks, one for crypto pairs.
fn fetch_quotes(
    broker: &mut dyn Broker,
    bots: &[&dyn Bot],
    [stock_list, pair_list]: &mut [SymbolList; 2],
) -> Result<BySymbol<Quote>, BrokerError> {
    let stocks = stock_list.update(symbols_of(of_kind(bots.iter(), false)));
    let pairs = pair_list.update(symbols_of(of_kind(bots.iter(), true)));
    let mut quotes = BySymbol::new();
    if !stocks.is_empty() {
        quotes.extend(broker.stock_quotes(stocks)?);
    }
    if !pairs.is_empty() {
        quotes.extend(broker.crypto_quotes(pairs)?);
    }
    Ok(quotes)
}

/// Those of `bots` that trade crypto pairs (`crypto`) or stocks.
fn of_kind<'a, 'b: 'a>(
    bots: impl Iterator<Item = &'a &'b dyn Bot>,
    crypto: bool,
) -> impl Iterator<Item = &'a &'b dyn Bot> {
    bots.filter(move |b| (b.kind() == BotKind::Crypto) == crypto)
}

/// The symbols of `bots`, as they name them.
fn symbols_of<'a, 'b: 'a>(bots: impl Iterator<Item = &'a &'b dyn Bot>) -> impl Iterator<Item = &'a str> {
    bots.flat_map(|b| b.symbols().iter().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symbol_list_is_sorted_and_distinct_and_follows_a_change_of_symbols() {
        let mut list = SymbolList::default();
        assert_eq!(list.update(["QQQ", "AAPL", "QQQ"]), ["AAPL", "QQQ"]);
        let kept = list.0.as_ptr();
        assert_eq!(list.update(["AAPL", "QQQ"]), ["AAPL", "QQQ"]);
        assert_eq!(list.0.as_ptr(), kept, "the same symbols are not copied again");
        // A reload that adds or removes a symbol is asked for at the next minute.
        assert_eq!(list.update(["AAPL", "QQQ", "SPY"]), ["AAPL", "QQQ", "SPY"]);
        assert_eq!(list.update(["SPY"]), ["SPY"]);
        assert!(list.update([]).is_empty());
    }
}
