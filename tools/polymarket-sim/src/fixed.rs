//! Fixed-point prices and sizes.
//!
//! Prices are held as integer units of 0.0001 (every Polymarket tick, 0.01/0.001/0.0025/0.0001,
//! is a whole number of units) and sizes as integer micro-shares (on-chain sizes have 6
//! decimals). Both are exact decimals; integers keep the order-book engine fast enough to
//! generate days of history in well under a second. Conversion to `rust_decimal::Decimal`
//! happens only at the edges (truth endpoints, identity hashing).

use std::fmt::Write as _;

use rust_decimal::Decimal;

/// Price units per 1.0 (a price of 1 is 10_000 units).
pub(crate) const PRICE_UNITS_PER_ONE: u32 = 10_000;
/// Size micros per share.
pub(crate) const SIZE_MICROS_PER_SHARE: u64 = 1_000_000;

/// Price as an exact decimal.
pub(crate) fn price_decimal(units: u32) -> Decimal {
    Decimal::new(i64::from(units), 4).normalize()
}

/// Size as an exact decimal.
pub(crate) fn size_decimal(micros: u64) -> Decimal {
    Decimal::new(i64::try_from(micros).unwrap_or(i64::MAX), 6).normalize()
}

/// Appends `value / 10^scale` as the shortest exact decimal text ("0.45", "120.5", "5", "0").
fn push_scaled(out: &mut String, value: u64, scale: u32, drop_leading_zero: bool) {
    let divisor = 10u64.pow(scale);
    let whole = value / divisor;
    let mut fraction = value % divisor;
    if !(drop_leading_zero && whole == 0 && fraction != 0) {
        // Writing into a String cannot fail.
        let _ = write!(out, "{whole}");
    }
    if fraction == 0 {
        return;
    }
    let mut digits = scale;
    while fraction.is_multiple_of(10) {
        fraction /= 10;
        digits -= 1;
    }
    out.push('.');
    let _ = write!(out, "{fraction:0width$}", width = digits as usize);
}

/// "0.45" for 4500 units.
pub(crate) fn price_text(units: u32) -> String {
    let mut out = String::with_capacity(8);
    push_scaled(&mut out, u64::from(units), 4, false);
    out
}

/// ".45" for 4500 units (upstream's documented no-leading-zero spelling); "1" and "0" unchanged.
pub(crate) fn price_text_without_leading_zero(units: u32) -> String {
    let mut out = String::with_capacity(8);
    push_scaled(&mut out, u64::from(units), 4, true);
    out
}

/// Appends a price to a buffer (hot path of book hashing).
pub(crate) fn push_price(out: &mut String, units: u32) {
    push_scaled(out, u64::from(units), 4, false);
}

/// "120.5" for 120_500_000 micros.
pub(crate) fn size_text(micros: u64) -> String {
    let mut out = String::with_capacity(12);
    push_scaled(&mut out, micros, 6, false);
    out
}

/// Appends a size to a buffer.
pub(crate) fn push_size(out: &mut String, micros: u64) {
    push_scaled(out, micros, 6, false);
}

/// A fill price as the float upstream's Data API serves it: derived from the on-chain amounts
/// (USDC notional rounded to 6 decimals, divided by the share size), so 0.58 × 32.155171 comes
/// back as `0.5799999944021446` exactly as in the captured upstream row.
pub(crate) fn price_float_with_artefacts(units: u32, size_micros: u64) -> f64 {
    if size_micros == 0 {
        return price_float(units);
    }
    let product = u128::from(size_micros) * u128::from(units);
    let divisor = u128::from(PRICE_UNITS_PER_ONE);
    let mut notional_micros = product / divisor;
    let remainder = product % divisor;
    // Round half to even, as a decimal ledger would.
    if remainder * 2 > divisor || (remainder * 2 == divisor && notional_micros % 2 == 1) {
        notional_micros += 1;
    }
    let notional = notional_micros as f64 / SIZE_MICROS_PER_SHARE as f64;
    let size = size_micros as f64 / SIZE_MICROS_PER_SHARE as f64;
    notional / size
}

/// A price as a plain float (Gamma number fields, prices-history `p`).
pub(crate) fn price_float(units: u32) -> f64 {
    f64::from(units) / f64::from(PRICE_UNITS_PER_ONE)
}

/// A size as a float (Data API `size`).
pub(crate) fn size_float(micros: u64) -> f64 {
    micros as f64 / SIZE_MICROS_PER_SHARE as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_shortest_exact_decimals() {
        assert_eq!(price_text(4500), "0.45");
        assert_eq!(price_text(25), "0.0025");
        assert_eq!(price_text(10_000), "1");
        assert_eq!(price_text(0), "0");
        assert_eq!(price_text_without_leading_zero(4800), ".48");
        assert_eq!(price_text_without_leading_zero(10_000), "1");
        assert_eq!(size_text(120_500_000), "120.5");
        assert_eq!(size_text(32_155_171), "32.155171");
        assert_eq!(size_text(5_000_000), "5");
        assert_eq!(size_text(1), "0.000001");
        assert_eq!(price_decimal(4500).to_string(), "0.45");
        assert_eq!(size_decimal(120_500_000).to_string(), "120.5");
    }

    #[test]
    fn float_artefacts_match_upstream() {
        assert_eq!(
            price_float_with_artefacts(5800, 32_155_171),
            0.5799999944021446
        );
        assert_eq!(price_float_with_artefacts(5000, 10_000_000), 0.5);
    }
}
