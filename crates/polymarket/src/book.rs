//! CLOB order books: `GET /book`, each element of `POST /books`, and the market channel's
//! `book` event have one shape, so they have one wire type and one rule set here. The collector,
//! the ws-bridge (stream and REST fallback) and the candle builder's resync all go through
//! [`WireBook::into_snapshot`], so one upstream book is one `BookSnapshot`, byte for byte,
//! whoever read it.
//!
//! The rules:
//! - `asset_id` (decimal digits) and `market` are required; condition ids are lower-cased
//!   (upstream writes hex in lower case, but a 0x-hex id is case-insensitive);
//! - `timestamp` is required and positive: milliseconds, or seconds (a value below 10^11
//!   cannot be milliseconds of this century, see [`crate::rest::timestamp_to_ms`]);
//! - levels are exact decimals with at most [`PRICE_SCALE`] places (never rounded: a value
//!   finer than Polymarket's grid is refused, not altered), a price in (0, 1] and a positive
//!   size; both sides must be present (possibly empty): a book without one is truncated, not
//!   one-sided; upstream serves bids ascending and asks
//!   descending (best last), records are best-first on both sides;
//! - the optional statistics (`tick_size`, `min_order_size`, `last_trade_price`, `neg_risk`)
//!   are kept when readable and dropped when not: the levels are the data, and a garbled
//!   statistic must not cost the whole book.

use polytape_model::{
    BookLevel, BookSnapshot, BookSource, Decimal, decimal::PRICE_SCALE, parse::parse_decimal_text,
};
use serde::Deserialize;

use crate::{
    error::{RowError, invalid},
    rest::timestamp_to_ms,
    wire::{WireLevel, lenient_text},
};

/// An order book as upstream writes it; unknown fields (`event_type`, new ones) are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct WireBook {
    #[serde(default, deserialize_with = "lenient_text")]
    asset_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    market: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    timestamp: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    hash: Option<String>,
    /// Read as JSON first so a side of the wrong shape is refused naming the side.
    #[serde(default)]
    bids: Option<serde_json::Value>,
    #[serde(default)]
    asks: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "lenient_text")]
    tick_size: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    min_order_size: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    neg_risk: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    last_trade_price: Option<String>,
}

impl WireBook {
    /// Reads a book from JSON text (a `GET /book` body, a `book` event).
    pub fn from_text(text: &str) -> Result<Self, RowError> {
        if !text.trim_start().starts_with('{') {
            return Err(RowError::NotAnObject);
        }
        serde_json::from_str(text).map_err(|error| invalid("(object)", error.to_string()))
    }

    /// Reads a book from a parsed JSON value (an element of a `POST /books` answer).
    pub fn from_value(value: &serde_json::Value) -> Result<Self, RowError> {
        if !value.is_object() {
            return Err(RowError::NotAnObject);
        }
        Self::deserialize(value).map_err(|error| invalid("(object)", error.to_string()))
    }

    /// The book as a REST snapshot (`source = REST`, no connection); the market channel sets
    /// its own provenance on the result.
    pub fn into_snapshot(self, received_ms: i64) -> Result<BookSnapshot, RowError> {
        let token_id = present(self.asset_id).ok_or(RowError::Missing("asset_id"))?;
        if !token_id.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(invalid(
                "asset_id",
                format!("{token_id:?} is not a decimal token id"),
            ));
        }
        let condition_id = present(self.market)
            .ok_or(RowError::Missing("market"))?
            .to_ascii_lowercase();
        let timestamp_text = present(self.timestamp).ok_or(RowError::Missing("timestamp"))?;
        let timestamp = integer(&timestamp_text)
            .filter(|timestamp| *timestamp > 0)
            .ok_or_else(|| invalid("timestamp", format!("{timestamp_text:?}")))?;
        let mut bids = levels(self.bids, "bids")?;
        let mut asks = levels(self.asks, "asks")?;
        bids.sort_by_key(|level| std::cmp::Reverse(level.price));
        asks.sort_by_key(|level| level.price);
        Ok(BookSnapshot {
            token_id,
            condition_id,
            timestamp_ms: timestamp_to_ms(timestamp),
            received_ms,
            bids,
            asks,
            hash: present(self.hash),
            tick_size: optional_decimal(self.tick_size),
            min_order_size: optional_decimal(self.min_order_size),
            neg_risk: present(self.neg_risk).and_then(|text| {
                match text.to_ascii_lowercase().as_str() {
                    "true" | "1" => Some(true),
                    "false" | "0" => Some(false),
                    _ => None,
                }
            }),
            last_trade_price: optional_decimal(self.last_trade_price),
            source: BookSource::Rest,
            connection_id: None,
            sequence: None,
        })
    }
}

/// A `GET /book` body as a REST snapshot.
pub fn rest_book(body: &str, received_ms: i64) -> Result<BookSnapshot, RowError> {
    WireBook::from_text(body)?.into_snapshot(received_ms)
}

/// Trimmed text; empty counts as absent.
fn present(text: Option<String>) -> Option<String> {
    let text = text?;
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

fn integer(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().or_else(|| {
        text.parse::<f64>()
            .ok()
            .filter(|float| float.is_finite() && float.fract() == 0.0)
            .map(|float| float as i64)
    })
}

/// An exact decimal on Polymarket's grid: at most [`PRICE_SCALE`] places.
fn exact_decimal(text: &str, field: &'static str) -> Result<Decimal, RowError> {
    let value = parse_decimal_text(text)
        .map_err(|error| invalid(field, error.to_string()))?
        .normalize();
    if value.scale() > PRICE_SCALE {
        return Err(invalid(
            field,
            format!("{text:?} has more than {PRICE_SCALE} decimals"),
        ));
    }
    Ok(value)
}

fn optional_decimal(text: Option<String>) -> Option<Decimal> {
    exact_decimal(&present(text)?, "statistic").ok()
}

fn levels(wire: Option<serde_json::Value>, side: &'static str) -> Result<Vec<BookLevel>, RowError> {
    let wire = match wire {
        None | Some(serde_json::Value::Null) => return Err(RowError::Missing(side)),
        Some(wire) => Vec::<WireLevel>::deserialize(wire)
            .map_err(|error| invalid(side, format!("not a list of levels: {error}")))?,
    };
    let mut levels = Vec::with_capacity(wire.len());
    for level in wire {
        let price = present(level.price).ok_or(RowError::Missing("price"))?;
        let size = present(level.size).ok_or(RowError::Missing("size"))?;
        let side_error = |error: RowError| invalid(side, error.to_string());
        let price = exact_decimal(&price, "price").map_err(side_error)?;
        let size = exact_decimal(&size, "size").map_err(side_error)?;
        if price <= Decimal::ZERO || price > Decimal::ONE {
            return Err(invalid(side, format!("price {price} is outside (0, 1]")));
        }
        if size <= Decimal::ZERO {
            return Err(invalid(side, format!("size {size} is not positive")));
        }
        levels.push(BookLevel { price, size });
    }
    Ok(levels)
}
