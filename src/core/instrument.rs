//! Instruments: what a symbol names — a stock, a crypto pair or an option contract — and what
//! follows from that (the asset class, the contract multiplier, an OCC symbol's parts).
//!
//! Owns: `AssetClass::of`, the one place a symbol's text decides its class (a `/` is a crypto
//! pair, an OCC symbol an option, anything else a stock), the multiplier, the OCC symbol as a
//! struct, and the crypto symbol forms (`BTCUSD` at Alpaca's positions, `BTC/USD` everywhere else).
//!
//! Never: talks to a broker or knows a price.

use jiff::civil::Date;

use crate::core::decimal::Dec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AssetClass {
    UsEquity,
    Crypto,
    UsOption,
    /// Anything else (or `""`, as multi-leg parents report).
    Other,
}

impl AssetClass {
    pub fn parse(text: &str) -> AssetClass {
        match text {
            "us_equity" => AssetClass::UsEquity,
            "crypto" => AssetClass::Crypto,
            "us_option" => AssetClass::UsOption,
            _ => AssetClass::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AssetClass::UsEquity => "us_equity",
            AssetClass::Crypto => "crypto",
            AssetClass::UsOption => "us_option",
            AssetClass::Other => "other",
        }
    }
}

impl AssetClass {
    /// The class of an order symbol: a crypto pair (`BTC/USD`), an option contract (an OCC
    /// symbol), else a stock.
    pub fn of(symbol: &str) -> AssetClass {
        if symbol.contains('/') {
            AssetClass::Crypto
        } else if OccSymbol::parse(symbol).is_some() {
            AssetClass::UsOption
        } else {
            AssetClass::UsEquity
        }
    }
}

/// Units delivered per contract: option prices are per share and a standard contract delivers
/// 100; everything else trades one for one.
pub fn multiplier(symbol: &str) -> i64 {
    if AssetClass::of(symbol) == AssetClass::UsOption { OPTION_MULTIPLIER } else { 1 }
}

/// Shares per standard option contract.
pub const OPTION_MULTIPLIER: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    Call,
    Put,
}

impl OptionKind {
    /// `call` or `put`, as Alpaca's option endpoints spell it.
    pub fn word(self) -> &'static str {
        match self {
            OptionKind::Call => "call",
            OptionKind::Put => "put",
        }
    }
}

/// An OCC option symbol's parts: root + `YYMMDD` + `C`/`P` + strike × 1000 on eight digits
/// (`SPY261218P00480000` = SPY, 2026-12-18, put, 480).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OccSymbol {
    pub root: String,
    pub expiry: Date,
    pub kind: OptionKind,
    pub strike: Dec,
}

impl OccSymbol {
    /// The parts of an OCC symbol, or `None` when it is not one.
    pub fn parse(symbol: &str) -> Option<OccSymbol> {
        if symbol.len() < 16 || !symbol.is_ascii() {
            return None;
        }
        let (root, rest) = symbol.split_at(symbol.len() - 15);
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        let (date, rest) = rest.split_at(6);
        let (cp, strike) = rest.split_at(1);
        if root.is_empty() || !digits(date) || !digits(strike) {
            return None;
        }
        let kind = match cp {
            "C" => OptionKind::Call,
            "P" => OptionKind::Put,
            _ => return None,
        };
        let year: i16 = 2000 + date[0..2].parse::<i16>().ok()?;
        let expiry = Date::new(year, date[2..4].parse().ok()?, date[4..6].parse().ok()?).ok()?;
        let milli: i64 = strike.parse().ok()?;
        Some(OccSymbol { root: root.to_string(), expiry, kind, strike: Dec::from_nanos(milli * 1_000_000) })
    }

    /// The symbol's text.
    pub fn text(&self) -> String {
        let cp = if self.kind == OptionKind::Call { 'C' } else { 'P' };
        let milli = (self.strike.to_f64() * 1000.0).round().max(0.0) as u64;
        let e = self.expiry;
        format!("{}{:02}{:02}{:02}{cp}{milli:08}", self.root, i64::from(e.year()).rem_euclid(100), e.month(), e.day())
    }
}

/// The OCC symbol of a contract (`OccSymbol::text`).
pub fn occ_symbol(root: &str, expiry: Date, kind: OptionKind, strike: Dec) -> String {
    OccSymbol { root: root.to_string(), expiry, kind, strike }.text()
}

/// `BTCUSD` (how crypto positions are keyed) → `BTC/USD` (how orders and data name it). Other
/// symbols pass through. Only USD, USDT, USDC and BTC quotes are recognised.
pub fn crypto_pair_symbol(position_symbol: &str) -> String {
    if position_symbol.contains('/') {
        return position_symbol.to_string();
    }
    for quote in ["USDT", "USDC", "USD", "BTC"] {
        if let Some(base) = position_symbol.strip_suffix(quote)
            && !base.is_empty()
        {
            return format!("{base}/{quote}");
        }
    }
    position_symbol.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occ_symbols_round_trip() {
        let d = jiff::civil::date(2026, 12, 18);
        let s = occ_symbol("SPY", d, OptionKind::Put, Dec::from_int(480));
        assert_eq!(s, "SPY261218P00480000");
        let parts = OccSymbol { root: "SPY".into(), expiry: d, kind: OptionKind::Put, strike: Dec::from_int(480) };
        assert_eq!(OccSymbol::parse(&s), Some(parts));
        let half: Dec = "192.5".parse().unwrap();
        assert_eq!(OccSymbol::parse(&occ_symbol("AAPL", d, OptionKind::Call, half)).unwrap().strike, half);
        assert_eq!(OccSymbol::parse("AAPL"), None);
        assert_eq!(OccSymbol::parse("SPY261218X00480000"), None);
    }

    #[test]
    fn the_symbol_text_pads_as_the_formatter_does() {
        for (y, m, d, strike) in
            [(2026, 1, 2, "0.5"), (2030, 12, 31, "480"), (2100, 7, 9, "123456.789"), (2009, 3, 4, "0")]
        {
            let o = OccSymbol {
                root: "QQQ".into(),
                expiry: jiff::civil::date(y, m, d),
                kind: OptionKind::Call,
                strike: strike.parse().unwrap(),
            };
            let milli = (o.strike.to_f64() * 1000.0).round() as u64;
            assert_eq!(o.text(), format!("QQQ{:02}{m:02}{d:02}C{milli:08}", y % 100));
        }
        // A strike beyond eight digits keeps every digit, as `{:08}` would.
        let big =
            OccSymbol { strike: "123456.789".parse().unwrap(), ..OccSymbol::parse("SPY261218P00480000").unwrap() };
        assert_eq!(big.text(), "SPY261218P123456789");
    }

    #[test]
    fn the_class_and_multiplier_come_from_the_symbol() {
        assert_eq!(AssetClass::of("BTC/USD"), AssetClass::Crypto);
        assert_eq!(AssetClass::of("SPY261218P00480000"), AssetClass::UsOption);
        assert_eq!(AssetClass::of("AAPL"), AssetClass::UsEquity);
        assert_eq!((multiplier("SPY261218P00480000"), multiplier("AAPL"), multiplier("BTC/USD")), (100, 1, 1));
    }

    #[test]
    fn crypto_symbols_get_their_slash() {
        assert_eq!(crypto_pair_symbol("BTCUSD"), "BTC/USD");
        assert_eq!(crypto_pair_symbol("ETHUSDT"), "ETH/USDT");
        assert_eq!(crypto_pair_symbol("ETHBTC"), "ETH/BTC");
        assert_eq!(crypto_pair_symbol("BTC/USD"), "BTC/USD");
    }
}
