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
/// The float's shortest round-trip representation is used, so `0.5799999944021446` (a price
/// stored as float32 upstream) becomes `0.580000` at scale 6 and `815.1150849999999` becomes
/// `815.115085`. Every valid Polymarket price (ticks down to 0.0001) and every on-chain size
/// (6 decimals) survives this exactly.
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
    fn timestamps() {
        assert_eq!(seconds_to_millis(1774020191), 1_774_020_191_000);
        assert_eq!(
            parse_integer_timestamp("1757908892351").unwrap(),
            1_757_908_892_351
        );
        assert!(parse_integer_timestamp("17.5").is_err());
    }
}
