//! The CLOB market channel's wire format into Polytape records.
//!
//! A text frame is `PONG`, one JSON event object, or a JSON array of event objects. Every event
//! has `event_type`; numbers arrive as strings (prices like `".48"` included), timestamps as
//! milliseconds in strings. Parsing never panics: an event that cannot be read comes back as a
//! [`ParseProblem`] carrying its raw text for the DLQ, and the rest of the frame still counts.

use polytape_model::{
    BestBidAsk, BookSnapshot, BookSource, Decimal, LastTrade, LifecycleKind, MarketLifecycle,
    PriceChange, Side, TickSizeChange,
    decimal::PRICE_SCALE,
    parse::{parse_decimal_text, parse_integer_timestamp},
};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{book::WireBook, error::RowError, wire::lenient_text};

/// Where and when an event was read: stamped on every record made from it.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    pub connection_id: &'a str,
    pub sequence: i64,
    pub received_ms: i64,
}

/// One event of the market channel, as records.
#[derive(Debug, Clone, PartialEq)]
pub enum MarketEvent {
    Book(BookSnapshot),
    /// One record per entry, in the event's order (`entry_index` set).
    PriceChanges(Vec<PriceChange>),
    LastTrade(LastTrade),
    TickSizeChange(TickSizeChange),
    BestBidAsk(BestBidAsk),
    Lifecycle(MarketLifecycle),
    /// The server refused a subscription (too many assets on this connection).
    SubscriptionRefused {
        message: String,
        max_assets: Option<usize>,
    },
    /// Any other `error` frame from the server (e.g. `invalid_message`).
    ServerError {
        code: String,
        message: String,
    },
}

impl MarketEvent {
    /// Upstream's `event_type`, for metrics and logs.
    pub fn event_type(&self) -> &'static str {
        match self {
            MarketEvent::Book(_) => "book",
            MarketEvent::PriceChanges(_) => "price_change",
            MarketEvent::LastTrade(_) => "last_trade_price",
            MarketEvent::TickSizeChange(_) => "tick_size_change",
            MarketEvent::BestBidAsk(_) => "best_bid_ask",
            MarketEvent::Lifecycle(lifecycle) => match lifecycle.kind {
                LifecycleKind::NewMarket => "new_market",
                LifecycleKind::MarketResolved => "market_resolved",
            },
            MarketEvent::SubscriptionRefused { .. } | MarketEvent::ServerError { .. } => "error",
        }
    }
}

/// Why an event or frame was not turned into records; it goes to the DLQ with the raw text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseProblem {
    #[error("frame is neither PONG nor JSON: {0}")]
    NotJson(String),
    #[error("event is not a JSON object: {0}")]
    NotAnObject(String),
    #[error("event has no event_type")]
    MissingEventType,
    #[error("unknown event_type {0:?}")]
    UnknownEventType(String),
    #[error("{event_type}: missing field {field}")]
    MissingField {
        event_type: &'static str,
        field: &'static str,
    },
    #[error("{event_type}: field {field}: {reason}")]
    InvalidField {
        event_type: &'static str,
        field: &'static str,
        reason: String,
    },
}

/// The events of one frame, each with its raw JSON text.
pub fn split_frame(text: &str) -> Result<Vec<&str>, ParseProblem> {
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(trimmed)
            .map_err(|error| ParseProblem::NotJson(error.to_string()))?;
        return Ok(items.into_iter().map(RawValue::get).collect());
    }
    if trimmed.starts_with('{') {
        // Validate the object now so a truncated object is refused as a whole frame.
        let item: &RawValue = serde_json::from_str(trimmed)
            .map_err(|error| ParseProblem::NotJson(error.to_string()))?;
        return Ok(vec![item.get()]);
    }
    Err(ParseProblem::NotJson(
        "expected a JSON object or array".to_owned(),
    ))
}

/// Parses one event (the raw JSON of an object) into records stamped with `stamp`.
pub fn parse_event(raw: &str, stamp: Stamp<'_>) -> Result<MarketEvent, ParseProblem> {
    let wire: WireEvent = serde_json::from_str(raw).map_err(|error| {
        if raw.trim_start().starts_with('{') {
            ParseProblem::InvalidField {
                event_type: "event",
                field: "(object)",
                reason: error.to_string(),
            }
        } else {
            ParseProblem::NotAnObject(error.to_string())
        }
    })?;
    let Some(event_type) = wire.event_type.as_deref() else {
        return Err(ParseProblem::MissingEventType);
    };
    match event_type {
        "book" => book(raw, stamp).map(MarketEvent::Book),
        "price_change" => price_changes(wire, stamp).map(MarketEvent::PriceChanges),
        "last_trade_price" => last_trade(wire, stamp).map(MarketEvent::LastTrade),
        "tick_size_change" => tick_size_change(wire, stamp).map(MarketEvent::TickSizeChange),
        "best_bid_ask" => best_bid_ask(wire, stamp).map(MarketEvent::BestBidAsk),
        "new_market" => lifecycle(wire, stamp, LifecycleKind::NewMarket),
        "market_resolved" => lifecycle(wire, stamp, LifecycleKind::MarketResolved),
        "error" => Ok(server_error(wire)),
        other => Err(ParseProblem::UnknownEventType(other.to_owned())),
    }
}

/// Upstream's event object: every field any event type uses, all optional, numbers accepted as
/// strings or JSON numbers. Unknown fields are ignored (upstream adds fields over time).
#[derive(Debug, Default, Deserialize)]
struct WireEvent {
    #[serde(default, deserialize_with = "lenient_text")]
    event_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    asset_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    market: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    timestamp: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    hash: Option<String>,
    #[serde(default)]
    price_changes: Option<Vec<WireEntry>>,
    /// The pre-2025-09-15 `price_change` shape (old captures).
    #[serde(default)]
    changes: Option<Vec<WireEntry>>,
    #[serde(default, deserialize_with = "lenient_text")]
    price: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    size: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    side: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    fee_rate_bps: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    transaction_hash: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    old_tick_size: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    new_tick_size: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    best_bid: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    best_ask: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    spread: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    id: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    question: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    slug: Option<String>,
    #[serde(default)]
    assets_ids: Option<Vec<String>>,
    #[serde(default)]
    outcomes: Option<serde_json::Value>,
    #[serde(default)]
    event_message: Option<WireEventMessage>,
    #[serde(default, deserialize_with = "lenient_text")]
    winning_asset_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    winning_outcome: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    code: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    error: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    max_assets: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireEntry {
    #[serde(default, deserialize_with = "lenient_text")]
    asset_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    price: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    size: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    side: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    hash: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    best_bid: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    best_ask: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireEventMessage {
    #[serde(default, deserialize_with = "lenient_text")]
    id: Option<String>,
}

fn required(
    value: Option<String>,
    event_type: &'static str,
    field: &'static str,
) -> Result<String, ParseProblem> {
    match value {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(ParseProblem::MissingField { event_type, field }),
    }
}

/// An exact decimal that fits the wire scale (never rounded: a value with more digits than
/// Polymarket uses is refused rather than altered).
fn decimal(
    text: &str,
    event_type: &'static str,
    field: &'static str,
) -> Result<Decimal, ParseProblem> {
    let value = parse_decimal_text(text).map_err(|error| ParseProblem::InvalidField {
        event_type,
        field,
        reason: error.to_string(),
    })?;
    let value = value.normalize();
    if value.scale() > PRICE_SCALE {
        return Err(ParseProblem::InvalidField {
            event_type,
            field,
            reason: format!("{text:?} has more than {PRICE_SCALE} decimals"),
        });
    }
    Ok(value)
}

fn optional_decimal(
    text: Option<&str>,
    event_type: &'static str,
    field: &'static str,
) -> Result<Option<Decimal>, ParseProblem> {
    match text {
        None => Ok(None),
        Some(text) if text.trim().is_empty() => Ok(None),
        Some(text) => decimal(text, event_type, field).map(Some),
    }
}

fn timestamp(value: Option<String>, event_type: &'static str) -> Result<i64, ParseProblem> {
    let text = required(value, event_type, "timestamp")?;
    parse_integer_timestamp(&text).map_err(|error| ParseProblem::InvalidField {
        event_type,
        field: "timestamp",
        reason: error.to_string(),
    })
}

fn side(text: &str, event_type: &'static str) -> Result<Side, ParseProblem> {
    Side::parse(text).ok_or_else(|| ParseProblem::InvalidField {
        event_type,
        field: "side",
        reason: format!("{text:?} is neither BUY nor SELL"),
    })
}

/// A `book` event, by [`crate::book`]'s rules (the same as a REST `/book`), stamped as read
/// from this connection.
fn book(raw: &str, stamp: Stamp<'_>) -> Result<BookSnapshot, ParseProblem> {
    let book_problem = |error: RowError| match error {
        RowError::Missing(field) => ParseProblem::MissingField {
            event_type: "book",
            field,
        },
        RowError::Invalid { field, reason } => ParseProblem::InvalidField {
            event_type: "book",
            field,
            reason,
        },
        RowError::NotAnObject => ParseProblem::NotAnObject("book".to_owned()),
    };
    let mut book = WireBook::from_text(raw)
        .and_then(|wire| wire.into_snapshot(stamp.received_ms))
        .map_err(book_problem)?;
    book.source = BookSource::Ws;
    book.connection_id = Some(stamp.connection_id.to_owned());
    book.sequence = Some(stamp.sequence);
    Ok(book)
}

fn price_changes(wire: WireEvent, stamp: Stamp<'_>) -> Result<Vec<PriceChange>, ParseProblem> {
    const KIND: &str = "price_change";
    let condition_id = required(wire.market, KIND, "market")?.to_ascii_lowercase();
    let timestamp_ms = timestamp(wire.timestamp, KIND)?;
    // New shape: per-entry asset ids, hashes and best bid/ask. Legacy shape: one asset id and
    // hash for the whole event, no best bid/ask.
    let (entries, legacy) = match (wire.price_changes, wire.changes) {
        (Some(entries), _) => (entries, false),
        (None, Some(entries)) => (entries, true),
        (None, None) => {
            return Err(ParseProblem::MissingField {
                event_type: KIND,
                field: "price_changes",
            });
        }
    };
    let mut records = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let token_id = if legacy {
            entry.asset_id.or_else(|| wire.asset_id.clone())
        } else {
            entry.asset_id
        };
        let token_id = required(token_id, KIND, "asset_id")?;
        let price = required(entry.price, KIND, "price")?;
        let size = required(entry.size, KIND, "size")?;
        let side_text = required(entry.side, KIND, "side")?;
        let hash = if legacy {
            entry.hash.or_else(|| wire.hash.clone())
        } else {
            entry.hash
        };
        records.push(PriceChange {
            token_id,
            condition_id: condition_id.clone(),
            side: side(&side_text, KIND)?,
            price: decimal(&price, KIND, "price")?,
            size: decimal(&size, KIND, "size")?,
            best_bid: optional_decimal(entry.best_bid.as_deref(), KIND, "best_bid")?,
            best_ask: optional_decimal(entry.best_ask.as_deref(), KIND, "best_ask")?,
            hash: hash.filter(|hash| !hash.is_empty()),
            timestamp_ms,
            received_ms: stamp.received_ms,
            connection_id: stamp.connection_id.to_owned(),
            sequence: stamp.sequence,
            entry_index: i32::try_from(index).unwrap_or(i32::MAX),
        });
    }
    Ok(records)
}

fn last_trade(wire: WireEvent, stamp: Stamp<'_>) -> Result<LastTrade, ParseProblem> {
    const KIND: &str = "last_trade_price";
    let price = required(wire.price, KIND, "price")?;
    let size = required(wire.size, KIND, "size")?;
    let fee_rate_bps = match wire.fee_rate_bps.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<i32>()
                .map_err(|_| ParseProblem::InvalidField {
                    event_type: KIND,
                    field: "fee_rate_bps",
                    reason: format!("{text:?} is not an integer"),
                })?,
        ),
    };
    Ok(LastTrade {
        token_id: required(wire.asset_id, KIND, "asset_id")?,
        condition_id: required(wire.market, KIND, "market")?.to_ascii_lowercase(),
        price: decimal(&price, KIND, "price")?,
        size: decimal(&size, KIND, "size")?,
        side: match wire.side.as_deref() {
            None | Some("") => None,
            Some(text) => Some(side(text, KIND)?),
        },
        fee_rate_bps,
        transaction_hash: wire.transaction_hash.filter(|hash| !hash.is_empty()),
        timestamp_ms: timestamp(wire.timestamp, KIND)?,
        received_ms: stamp.received_ms,
        connection_id: stamp.connection_id.to_owned(),
        sequence: stamp.sequence,
    })
}

fn tick_size_change(wire: WireEvent, stamp: Stamp<'_>) -> Result<TickSizeChange, ParseProblem> {
    const KIND: &str = "tick_size_change";
    let old = required(wire.old_tick_size, KIND, "old_tick_size")?;
    let new = required(wire.new_tick_size, KIND, "new_tick_size")?;
    Ok(TickSizeChange {
        token_id: required(wire.asset_id, KIND, "asset_id")?,
        condition_id: required(wire.market, KIND, "market")?.to_ascii_lowercase(),
        old_tick_size: decimal(&old, KIND, "old_tick_size")?,
        new_tick_size: decimal(&new, KIND, "new_tick_size")?,
        timestamp_ms: timestamp(wire.timestamp, KIND)?,
        received_ms: stamp.received_ms,
        connection_id: stamp.connection_id.to_owned(),
        sequence: stamp.sequence,
    })
}

fn best_bid_ask(wire: WireEvent, stamp: Stamp<'_>) -> Result<BestBidAsk, ParseProblem> {
    const KIND: &str = "best_bid_ask";
    Ok(BestBidAsk {
        token_id: required(wire.asset_id, KIND, "asset_id")?,
        condition_id: required(wire.market, KIND, "market")?.to_ascii_lowercase(),
        best_bid: optional_decimal(wire.best_bid.as_deref(), KIND, "best_bid")?,
        best_ask: optional_decimal(wire.best_ask.as_deref(), KIND, "best_ask")?,
        spread: optional_decimal(wire.spread.as_deref(), KIND, "spread")?,
        timestamp_ms: timestamp(wire.timestamp, KIND)?,
        received_ms: stamp.received_ms,
        connection_id: stamp.connection_id.to_owned(),
        sequence: stamp.sequence,
    })
}

/// `outcomes` is a real array on the WS (Gamma sends a JSON-encoded string; accept both).
fn outcomes(value: Option<serde_json::Value>) -> Vec<String> {
    let value = match value {
        Some(serde_json::Value::String(text)) => {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
        }
        Some(other) => other,
        None => serde_json::Value::Null,
    };
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn lifecycle(
    wire: WireEvent,
    stamp: Stamp<'_>,
    kind: LifecycleKind,
) -> Result<MarketEvent, ParseProblem> {
    let event_type = match kind {
        LifecycleKind::NewMarket => "new_market",
        LifecycleKind::MarketResolved => "market_resolved",
    };
    Ok(MarketEvent::Lifecycle(MarketLifecycle {
        kind,
        condition_id: required(wire.market, event_type, "market")?.to_ascii_lowercase(),
        gamma_market_id: wire.id,
        question: wire.question,
        slug: wire.slug,
        token_ids: wire.assets_ids.unwrap_or_default(),
        outcomes: outcomes(wire.outcomes),
        event_id: wire.event_message.and_then(|message| message.id),
        winning_token_id: wire.winning_asset_id,
        winning_outcome: wire.winning_outcome,
        timestamp_ms: timestamp(wire.timestamp, event_type)?,
        received_ms: stamp.received_ms,
        connection_id: Some(stamp.connection_id.to_owned()),
        sequence: Some(stamp.sequence),
    }))
}

fn server_error(wire: WireEvent) -> MarketEvent {
    let code = wire.code.unwrap_or_default();
    let message = wire.error.unwrap_or_default();
    if code == "too_many_assets" {
        MarketEvent::SubscriptionRefused {
            message,
            max_assets: wire
                .max_assets
                .and_then(|text| text.trim().parse::<usize>().ok()),
        }
    } else {
        MarketEvent::ServerError { code, message }
    }
}

#[cfg(test)]
mod tests;
