//! `Dec`: an exact decimal for money and quantities, nine digits after the point.
//!
//! Why not `f64`: Alpaca sends quantities and prices as decimal strings, and a quantity read as
//! `f64` and written back can come out a hair larger than what the account holds, which turns a
//! closing sell into a short. A `Dec` read from `"0.123456789"` is sent back as exactly
//! `"0.123456789"`. Signals and indicators work in `f64` (`to_f64`); everything that becomes part
//! of an order is a `Dec`, rounded by an explicit rule (`round_down`, `round_to`).
//!
//! Owns: parsing (from strings and JSON numbers), formatting, exact add/subtract/compare and the
//! rounding rules. `FromStr` refuses more than nine decimals; reading a broker's JSON rounds them
//! (half away from zero) instead, because Alpaca does send buying power as
//! `"122011.09751111286868"` and a billionth of a dollar is not worth refusing an account over.

use std::fmt;
use std::str::FromStr;

/// Units per one: nine decimal places (Alpaca's finest crypto quantity).
const SCALE: i64 = 1_000_000_000;
const DIGITS: u32 = 9;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dec(i64);

impl Dec {
    pub const ZERO: Dec = Dec(0);
    pub const ONE: Dec = Dec(SCALE);

    /// A whole number.
    pub fn from_int(n: i64) -> Dec {
        Dec(n.saturating_mul(SCALE))
    }

    /// `units / 10^9`: for constants written in code.
    pub const fn from_nanos(units: i64) -> Dec {
        Dec(units)
    }

    /// The nearest `Dec` to a float (market data arrives as JSON numbers). `None` for NaN,
    /// infinities and values beyond about ±9.2 billion.
    pub fn from_f64(v: f64) -> Option<Dec> {
        let scaled = (v * SCALE as f64).round();
        if !scaled.is_finite() || scaled.abs() >= i64::MAX as f64 {
            return None;
        }
        Some(Dec(scaled as i64))
    }

    pub fn to_f64(self) -> f64 {
        self.0 as f64 / SCALE as f64
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn abs(self) -> Dec {
        Dec(self.0.saturating_abs())
    }

    pub fn checked_add(self, other: Dec) -> Option<Dec> {
        self.0.checked_add(other.0).map(Dec)
    }

    pub fn checked_sub(self, other: Dec) -> Option<Dec> {
        self.0.checked_sub(other.0).map(Dec)
    }

    /// Times a whole number, exactly (`None` on overflow): a strategy count times a leg's ratio.
    pub fn checked_mul_int(self, n: i64) -> Option<Dec> {
        self.0.checked_mul(n).map(Dec)
    }

    /// The exact product, rounded half away from zero to nine decimals (`None` on overflow):
    /// a price times a quantity.
    pub fn checked_mul(self, other: Dec) -> Option<Dec> {
        let wide = i128::from(self.0) * i128::from(other.0);
        i64::try_from(div_round(wide, i128::from(SCALE))).ok().map(Dec)
    }

    /// The quotient, rounded half away from zero to nine decimals (`None` on overflow or for a
    /// zero divisor): a weighted average.
    pub fn checked_div(self, other: Dec) -> Option<Dec> {
        if other.0 == 0 {
            return None;
        }
        let wide = i128::from(self.0) * i128::from(SCALE);
        i64::try_from(div_round(wide, i128::from(other.0))).ok().map(Dec)
    }

    /// Whether it has no fractional part.
    pub fn is_whole(self) -> bool {
        self.0 % SCALE == 0
    }

    /// Toward zero, to `places` decimals (0–9): the rule for quantities, so an order never asks
    /// for more than was there.
    pub fn round_down(self, places: u32) -> Dec {
        let step = step(places);
        Dec(self.0 / step * step)
    }

    /// Half away from zero, to `places` decimals (0–9): the rule for prices.
    pub fn round_to(self, places: u32) -> Dec {
        let step = step(places);
        let rem = self.0 % step;
        let base = self.0 - rem;
        if rem.abs() * 2 >= step { Dec(base + step * self.0.signum()) } else { Dec(base) }
    }
}

/// `n / d`, rounded half away from zero.
fn div_round(n: i128, d: i128) -> i128 {
    let (q, r) = (n / d, n % d);
    if r.abs() * 2 >= d.abs() { q + n.signum() * d.signum() } else { q }
}

fn step(places: u32) -> i64 {
    10_i64.pow(DIGITS - places.min(DIGITS))
}

/// Why a text is not a decimal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecError(pub String);

impl fmt::Display for DecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecError {}

impl Dec {
    /// Like `parse`, but digits past the ninth decimal are rounded half away from zero.
    pub fn parse_rounded(text: &str) -> Result<Dec, DecError> {
        let t = text.trim();
        let Some(dot) = t.find('.') else { return t.parse() };
        let keep = dot + 1 + DIGITS as usize;
        if t.len() <= keep {
            return t.parse();
        }
        let (head, tail) = t.split_at(keep);
        if !tail.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecError(format!("{text:?} is not a decimal number")));
        }
        let base: Dec = head.parse()?;
        if tail.as_bytes()[0] >= b'5' {
            let ulp = if base.is_negative() || head.starts_with('-') { Dec(-1) } else { Dec(1) };
            return base.checked_add(ulp).ok_or_else(|| DecError(format!("{text:?} is too large")));
        }
        Ok(base)
    }
}

impl FromStr for Dec {
    type Err = DecError;

    /// Accepts `-12`, `12.5`, `.5`, `+3`, `1e3`-free plain decimals with at most nine decimals.
    fn from_str(text: &str) -> Result<Dec, DecError> {
        let bad = || DecError(format!("{text:?} is not a decimal number"));
        let t = text.trim();
        let (neg, digits) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > DIGITS as usize {
            return Err(DecError(format!("{text:?} has more than {DIGITS} decimals")));
        }
        let whole: i64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| bad())? };
        let mut f: i64 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| bad())? };
        f *= 10_i64.pow(DIGITS - frac.len() as u32);
        let units = whole
            .checked_mul(SCALE)
            .and_then(|w| w.checked_add(f))
            .ok_or_else(|| DecError(format!("{text:?} is too large")))?;
        Ok(Dec(if neg { -units } else { units }))
    }
}

impl fmt::Display for Dec {
    /// Plain decimal, no exponent, no trailing zeros: `"12"`, `"0.5"`, `"-0.000000001"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / SCALE as u64;
        let frac = abs % SCALE as u64;
        if frac == 0 {
            write!(f, "{sign}{whole}")
        } else {
            let s = format!("{frac:09}");
            write!(f, "{sign}{whole}.{}", s.trim_end_matches('0'))
        }
    }
}

impl serde::Serialize for Dec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Dec {
    /// A JSON string (`"103820.56"`, how Alpaca sends money) or a JSON number.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dec, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Dec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal number as a string or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dec, E> {
                Dec::parse_rounded(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Dec, E> {
                v.checked_mul(SCALE).map(Dec).ok_or_else(|| E::custom(format!("{v} is too large")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Dec, E> {
                i64::try_from(v)
                    .ok()
                    .and_then(|v| v.checked_mul(SCALE))
                    .map(Dec)
                    .ok_or_else(|| E::custom(format!("{v} is too large")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Dec, E> {
                Dec::from_f64(v).ok_or_else(|| E::custom(format!("{v} is not a usable number")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Dec {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_exactly() {
        for s in ["0", "12", "0.5", "103820.56", "-2478", "0.123456789", "-0.000000001", "9000000000"] {
            assert_eq!(d(s).to_string(), s);
        }
        assert_eq!(d("100.0").to_string(), "100");
        assert_eq!(d(".5").to_string(), "0.5");
        assert_eq!(d("+3.10").to_string(), "3.1");
        assert_eq!(d("0.1234567890").to_string(), "0.123456789");
    }

    #[test]
    fn refuses_what_it_cannot_hold() {
        for s in ["", "-", ".", "1e3", "abc", "1.2.3", "0.1234567891", "99999999999", "NaN", "--1"] {
            assert!(s.parse::<Dec>().is_err(), "{s}");
        }
    }

    #[test]
    fn a_quantity_read_and_sent_back_is_the_same() {
        // What f64 would do: 0.1 + 0.2 style drift. Dec keeps the exact text.
        let held = d("0.123456789");
        assert_eq!(held.round_down(9), held);
        assert_eq!(held.to_string(), "0.123456789");
        assert_eq!(d("3").checked_sub(d("0.000000001")).unwrap().to_string(), "2.999999999");
    }

    #[test]
    fn rounding_rules() {
        assert_eq!(d("12.345").round_to(2), d("12.35"));
        assert_eq!(d("-12.345").round_to(2), d("-12.35"));
        assert_eq!(d("12.344").round_to(2), d("12.34"));
        assert_eq!(d("7.9").round_down(0), d("7"));
        assert_eq!(d("-7.9").round_down(0), d("-7"));
        assert_eq!(d("0.99999").round_down(4), d("0.9999"));
        assert!(d("5").is_whole() && !d("5.5").is_whole());
    }

    #[test]
    fn broker_text_with_more_than_nine_decimals_is_rounded() {
        assert_eq!(Dec::parse_rounded("122011.09751111286868").unwrap(), d("122011.097511113"));
        assert_eq!(Dec::parse_rounded("0.1234567894").unwrap(), d("0.123456789"));
        assert_eq!(Dec::parse_rounded("-0.1234567895").unwrap(), d("-0.12345679"));
        assert_eq!(Dec::parse_rounded("-0.0000000005").unwrap(), d("-0.000000001"));
        assert_eq!(Dec::parse_rounded("12").unwrap(), d("12"));
        assert!(Dec::parse_rounded("1.0000000001x").is_err());
        assert!(d("1") < Dec::parse_rounded("1.0000000005").unwrap());
    }

    #[test]
    fn json_strings_and_numbers() {
        let v: Vec<Dec> = serde_json::from_str(r#"["1.5", 2, 839, 0.25, "-3"]"#).unwrap();
        assert_eq!(v, vec![d("1.5"), d("2"), d("839"), d("0.25"), d("-3")]);
        assert!(serde_json::from_str::<Dec>(r#""x""#).is_err());
        assert_eq!(serde_json::to_string(&d("0.5")).unwrap(), r#""0.5""#);
    }

    #[test]
    fn products_and_quotients_are_exact_then_rounded_half_away() {
        let d = |t: &str| t.parse::<Dec>().unwrap();
        assert_eq!(d("81.62").checked_mul(d("3")), Some(d("244.86")));
        assert_eq!(d("0.1").checked_mul(d("0.2")), Some(d("0.02")), "no float noise");
        assert_eq!(d("60210.5").checked_mul(d("0.000829")), Some(d("49.9145045")));
        assert_eq!(d("-1.5").checked_mul(d("0.000000001")), Some(d("-0.000000002")), "half away from zero");
        assert_eq!(d("1007.2").checked_div(d("10")), Some(d("100.72")));
        assert_eq!(d("1").checked_div(d("3")), Some(d("0.333333333")));
        assert_eq!(d("2").checked_div(d("3")), Some(d("0.666666667")));
        assert_eq!(d("-2").checked_div(d("3")), Some(d("-0.666666667")));
        assert_eq!(d("1").checked_div(Dec::ZERO), None);
        assert_eq!(d("9000000000").checked_mul(d("9000000000")), None, "overflow is None, never a wrap");
    }
}
