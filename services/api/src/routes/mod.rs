//! The market-data endpoints.

pub mod admin;
pub mod book;
pub mod continuity;
pub mod markets;
pub mod series;
pub mod trades;

/// `Decimal(18, 6)` options as text.
pub(crate) fn price_opt(unscaled: Option<i64>) -> Option<String> {
    unscaled.map(crate::params::price_text)
}

/// `Decimal(38, 6)` options as text.
pub(crate) fn amount_opt(unscaled: Option<i128>) -> Option<String> {
    unscaled.map(|value| crate::params::decimal_text(value, 6))
}
