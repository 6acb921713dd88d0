//! The market-data endpoints.

pub mod admin;
pub mod alert_rules;
pub mod book;
pub mod continuity;
pub mod markets;
pub mod rankings;
pub mod series;
pub mod signals;
pub mod trades;

/// The `from`/`to` of a list that defaults to the last day: `to` defaults to the end the walk's
/// first page fixed (carried in `cursor`), else now, and `from` to a day before `to`; `from`
/// must lie within the retention and before `to`. Fixing the end keeps a slow walk's later
/// pages on the first page's range: a `to` that moved with the clock would move the default
/// `from` past rows not yet returned.
pub(crate) fn last_day_range(
    params: &crate::params::Params,
    state: &crate::state::AppState,
    cursor: Option<&crate::params::Cursor>,
) -> Result<(i64, i64), crate::error::ApiError> {
    let to_ms = match params.time_ms("to")? {
        Some(to_ms) => to_ms,
        None => cursor.map_or_else(|| state.now_ms(), |cursor| cursor.until_ms),
    };
    let from_ms = params.time_ms("from")?.unwrap_or(to_ms - 86_400_000);
    state.check_retention("from", from_ms)?;
    if to_ms <= from_ms {
        return Err(crate::error::ApiError::invalid("`to` must be after `from`"));
    }
    Ok((from_ms, to_ms))
}

/// `Decimal(18, 6)` options as text.
pub(crate) fn price_opt(unscaled: Option<i64>) -> Option<String> {
    unscaled.map(crate::params::price_text)
}

/// `Decimal(38, 6)` options as text.
pub(crate) fn amount_opt(unscaled: Option<i128>) -> Option<String> {
    unscaled.map(|value| crate::params::decimal_text(value, 6))
}
