//! Exact fixed-point arithmetic for hot paths: the one conversion between decimals and scaled
//! integers. Prices and sizes are scale-6 decimals on every topic and Decimal(18, 6) columns in
//! ClickHouse, so books and candles work on their unscaled integers ("micros"): sums and
//! products are then plain integer operations with no rounding at all, and they convert back
//! to `Decimal` exactly at the edge.

use rust_decimal::Decimal;

/// Scale of prices and sizes.
pub const SCALE: u32 = crate::decimal::PRICE_SCALE;
/// Scale of notional (price × size) and VWAP.
pub const NOTIONAL_SCALE: u32 = crate::decimal::NOTIONAL_SCALE;
/// 10^6: one unit at scale 6.
pub const ONE: i64 = 1_000_000;

/// A value that cannot be represented exactly at a fixed scale.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitsError {
    #[error("{field} {value} has more than {scale} decimal places")]
    TooPrecise {
        field: &'static str,
        value: Decimal,
        scale: u32,
    },
    #[error("{field} {value} is out of range")]
    OutOfRange { field: &'static str, value: Decimal },
    #[error("{what} overflowed 128-bit fixed point")]
    Overflow { what: &'static str },
}

/// The unscaled scale-6 integer of `value`, exactly, or an error if it has more than 6
/// decimal places or does not fit an i64 (precision 18 on the wire).
pub fn to_micros(field: &'static str, value: Decimal) -> Result<i64, UnitsError> {
    let unscaled = to_units(field, value, SCALE)?;
    i64::try_from(unscaled).map_err(|_| UnitsError::OutOfRange { field, value })
}

/// The unscaled integer of `value` at `target` scale (≤ 28), exactly: an error if it has more
/// non-zero decimal places than that, or does not fit an i128 at that scale.
pub fn to_units(field: &'static str, value: Decimal, target: u32) -> Result<i128, UnitsError> {
    let scale = value.scale();
    let mantissa = value.mantissa();
    if scale <= target {
        return 10_i128
            .checked_pow(target - scale)
            .and_then(|factor| mantissa.checked_mul(factor))
            .ok_or(UnitsError::OutOfRange { field, value });
    }
    // More digits than the target scale: acceptable only if the extra digits are zeros.
    let factor = 10_i128.pow(scale - target);
    if mantissa % factor != 0 {
        return Err(UnitsError::TooPrecise {
            field,
            value,
            scale: target,
        });
    }
    Ok(mantissa / factor)
}

/// `units` at scale 6 as a `Decimal`.
pub fn micros_to_decimal(units: i64) -> Decimal {
    Decimal::new(units, SCALE)
}

/// `units` at `scale` as a `Decimal`; an error past the 96-bit mantissa.
pub fn units_to_decimal(
    what: &'static str,
    units: i128,
    scale: u32,
) -> Result<Decimal, UnitsError> {
    Decimal::try_from_i128_with_scale(units, scale).map_err(|_| UnitsError::Overflow { what })
}

/// VWAP at scale 12 from notional (scale 12) and volume (scale 6): notional / volume,
/// truncated toward zero, as candle.avsc documents. `None` for zero volume.
pub fn vwap_units(notional: i128, volume: i128) -> Result<Option<i128>, UnitsError> {
    if volume == 0 {
        return Ok(None);
    }
    // notional·10^-12 / (volume·10^-6) at scale 12 is notional·10^6 / volume; Rust's integer
    // division truncates toward zero, which is the documented rounding.
    let scaled = notional
        .checked_mul(i128::from(ONE))
        .ok_or(UnitsError::Overflow { what: "vwap" })?;
    Ok(Some(scaled / volume))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::str::FromStr;

    use super::*;

    #[test]
    fn micros_are_exact_or_refused() {
        let cases = [
            ("0.5", Ok(500_000)),
            ("0.000001", Ok(1)),
            ("12", Ok(12_000_000)),
            ("0.1230000", Ok(123_000)),
            ("-0.25", Ok(-250_000)),
        ];
        for (text, expected) in cases {
            assert_eq!(
                to_micros("price", Decimal::from_str(text).unwrap()),
                expected,
                "{text}"
            );
        }
        assert!(matches!(
            to_micros("price", Decimal::from_str("0.0000001").unwrap()),
            Err(UnitsError::TooPrecise { .. })
        ));
        assert!(matches!(
            to_micros(
                "size",
                Decimal::from_str("79228162514264337593543950335").unwrap()
            ),
            Err(UnitsError::OutOfRange { .. })
        ));
    }

    #[test]
    fn vwap_truncates_toward_zero() {
        // notional 1 (scale 12) / volume 3 (scale 6) = 0.333333…
        let notional = 1_000_000_000_000_i128;
        let volume = 3_000_000_i128;
        assert_eq!(vwap_units(notional, volume).unwrap(), Some(333_333_333_333));
        assert_eq!(
            vwap_units(-notional, volume).unwrap(),
            Some(-333_333_333_333)
        );
        assert_eq!(vwap_units(5, 0).unwrap(), None);
        assert_eq!(
            units_to_decimal("vwap", 333_333_333_333, 12)
                .unwrap()
                .to_string(),
            "0.333333333333"
        );
    }
}
