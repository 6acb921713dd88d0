//! Turning upstream text and numbers into exact values.
//!
//! Polymarket sends prices and sizes as decimal strings on CLOB (`".48"` occurs), as JSON
//! numbers with binary floating-point artefacts on the Data API (`0.5799999944021446`), and
//! timestamps as seconds or milliseconds, as numbers or strings. These helpers are the one
//! place where such text becomes a `Decimal` or UTC milliseconds.

use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::decimal::PRICE_SCALE;

/// Why upstream text is not a usable number.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("empty text where a decimal was expected")]
    Empty,
    #[error("{text:?} is not a decimal number")]
    NotADecimal { text: String },
    #[error("{value} is not a finite number")]
    NotFinite { value: String },
    #[error("{text:?} is not an integer timestamp")]
    NotATimestamp { text: String },
}

/// Parses a decimal as upstream writes it: `"0.48"`, `".48"`, `"5"`, `"1e-3"`, with surrounding
/// whitespace tolerated. Never goes through floating point.
pub fn parse_decimal_text(text: &str) -> Result<Decimal, ParseError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ParseError::Empty);
    }
    let parsed = if trimmed.contains(['e', 'E']) {
        Decimal::from_scientific(trimmed)
    } else {
        Decimal::from_str(trimmed)
    };
    parsed.map_err(|_| ParseError::NotADecimal {
        text: trimmed.to_owned(),
    })
}

/// Converts a JSON float from upstream to the decimal it stands for, rounded half-even to
/// `scale` fractional digits.
///
/// The float's shortest round-trip representation is used, so `815.1150849999999` becomes
/// `815.115085` at scale 6. Sizes (6 decimals on chain) survive this exactly. Prices do not
/// always: the Data API derives a fill's price from the USDC amount (rounded to 6 decimals)
/// divided by the size, so a dust fill's price can be off in the 5th decimal. Use
/// [`price_from_float`] for prices.
pub fn decimal_from_float(value: f64, scale: u32) -> Result<Decimal, ParseError> {
    if !value.is_finite() {
        return Err(ParseError::NotFinite {
            value: value.to_string(),
        });
    }
    let shortest = format!("{value}");
    let decimal = parse_decimal_text(&shortest)?;
    Ok(decimal
        .round_dp_with_strategy(scale, RoundingStrategy::MidpointNearestEven)
        .normalize())
}

/// Finest grid every Polymarket tick size lies on (0.1, 0.01, 0.001, 0.0001, 0.0025).
pub const PRICE_GRID_DECIMALS: u32 = 4;

/// A price from an upstream float (Data API trades, price history): the nearest point of the
/// 0.0001 grid every valid tick lies on, so `0.5799999944021446` is `0.58`. Exact as long as
/// upstream's error stays under half a grid step (true for fills of more than ~0.01 shares).
pub fn price_from_float(value: f64) -> Result<Decimal, ParseError> {
    decimal_from_float(value, PRICE_GRID_DECIMALS)
}

/// Rounds an exact decimal to the wire scale of prices and sizes (half-even), for values that
/// arrive as text with more digits than the schema keeps.
pub fn round_to_price_scale(value: Decimal) -> Decimal {
    value
        .round_dp_with_strategy(PRICE_SCALE, RoundingStrategy::MidpointNearestEven)
        .normalize()
}

/// Unix seconds to UTC milliseconds.
pub fn seconds_to_millis(seconds: i64) -> i64 {
    seconds.saturating_mul(1000)
}

/// Parses an integer timestamp given as text (CLOB sends milliseconds as strings).
pub fn parse_integer_timestamp(text: &str) -> Result<i64, ParseError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| ParseError::NotATimestamp {
            text: text.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn upstream_decimal_texts_parse_exactly() {
        let cases = [
            ("0.48", "0.48"),
            (".48", "0.48"),
            ("5", "5"),
            (" 120.5 ", "120.5"),
            ("0.0025", "0.0025"),
            ("1e-3", "0.001"),
            ("2500", "2500"),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_decimal_text(text).unwrap(), dec(expected), "{text}");
        }
    }

    #[test]
    fn garbage_is_refused_with_the_text() {
        assert_eq!(parse_decimal_text(""), Err(ParseError::Empty));
        assert_eq!(
            parse_decimal_text("abc"),
            Err(ParseError::NotADecimal { text: "abc".into() })
        );
        assert!(parse_decimal_text("NaN").is_err());
    }

    #[test]
    fn float_artefacts_round_to_the_value_they_stand_for() {
        let cases = [
            (0.5799999944021446, 6, "0.58"),
            (815.1150849999999, 6, "815.115085"),
            (32.155171, 6, "32.155171"),
            (0.0115, 6, "0.0115"),
            (1.0, 6, "1"),
            (0.0000005, 6, "0"),
            (0.0000015, 6, "0.000002"),
        ];
        for (float, scale, expected) in cases {
            assert_eq!(
                decimal_from_float(float, scale).unwrap(),
                dec(expected),
                "{float}"
            );
        }
        assert!(decimal_from_float(f64::NAN, 6).is_err());
        assert!(decimal_from_float(f64::INFINITY, 6).is_err());
    }

    #[test]
    fn prices_snap_to_the_finest_tick_grid() {
        // 0.5833 × 0.012345 shares = 0.0072008385 USDC, stored as 0.007201; 0.007201 / 0.012345
        // is what the Data API reports for that dust fill.
        let reported = 0.007201 / 0.012345;
        assert_ne!(decimal_from_float(reported, 6).unwrap(), dec("0.5833"));
        assert_eq!(price_from_float(reported).unwrap(), dec("0.5833"));
        assert_eq!(price_from_float(0.5799999944021446).unwrap(), dec("0.58"));
        assert_eq!(price_from_float(0.0025).unwrap(), dec("0.0025"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(seconds_to_millis(1774020191), 1_774_020_191_000);
        assert_eq!(
            parse_integer_timestamp("1757908892351").unwrap(),
            1_757_908_892_351
        );
        assert!(parse_integer_timestamp("17.5").is_err());
    }
}
