//! Upstream JSON to Polytape records, one row at a time, so a bad row is rejected on its own
//! (it goes to the DLQ) and the rest of the page continues.
//!
//! Tolerated everywhere: numbers given as JSON numbers or as strings, JSON-encoded string
//! lists (`"[\"Yes\", \"No\"]"`) or real arrays, missing optional fields, unknown new fields,
//! and seconds or milliseconds where a timestamp is expected.

use std::collections::HashMap;

use polytape_model::{
    BookSnapshot, Event, LeaderboardEntry, Market, MarketToken, PricePoint, Side, Trade,
    TradeIdentity, TradeSource, content_hash, occurrence_trade_id,
    parse::{decimal_from_float, parse_decimal_text, price_from_float, round_to_price_scale},
};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

use polytape_model::time::parse_datetime_ms;

use crate::error::invalid;
pub use crate::error::{PageError, RowError};

/// Text of a field that may be a string or a number; empty strings count as absent.
fn text(row: &Value, key: &str) -> Option<String> {
    match row.get(key)? {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn required_text(row: &Value, key: &'static str) -> Result<String, RowError> {
    text(row, key).ok_or(RowError::Missing(key))
}

fn boolean(row: &Value, key: &str) -> Option<bool> {
    match row.get(key)? {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        Value::Number(number) => number.as_i64().map(|value| value != 0),
        _ => None,
    }
}

/// A decimal at the wire scale (6) from a number or a string; `Ok(None)` when absent or null.
fn decimal(row: &Value, key: &'static str) -> Result<Option<Decimal>, RowError> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => {
            let float = number
                .as_f64()
                .ok_or_else(|| invalid(key, format!("{number} is not finite")))?;
            decimal_from_float(float, 6)
                .map(Some)
                .map_err(|error| invalid(key, error.to_string()))
        }
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => parse_decimal_text(text)
            .map(|value| Some(round_to_price_scale(value)))
            .map_err(|error| invalid(key, error.to_string())),
        Some(other) => Err(invalid(key, format!("{other} is not a number"))),
    }
}

/// Like [`decimal`] but a bad value counts as absent: for optional statistics we would rather
/// keep the market than refuse it over a garbled `volume`.
fn lenient_decimal(row: &Value, key: &'static str) -> Option<Decimal> {
    decimal(row, key).ok().flatten()
}

fn integer(row: &Value, key: &str) -> Option<i64> {
    match row.get(key)? {
        Value::Number(number) => number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|float| float.fract() == 0.0)
                .map(|float| float as i64)
        }),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// Upstream timestamps are seconds (Data API, prices history) or milliseconds (CLOB); values
/// above 10^11 cannot be seconds (year 5138), so they are taken as milliseconds.
pub fn timestamp_to_ms(value: i64) -> i64 {
    if value.abs() >= 100_000_000_000 {
        value
    } else {
        value.saturating_mul(1000)
    }
}

fn date_ms(row: &Value, key: &str) -> Option<i64> {
    match row.get(key)? {
        Value::String(text) => parse_datetime_ms(text),
        Value::Number(number) => number.as_i64().map(timestamp_to_ms),
        _ => None,
    }
}

/// A list of strings given as a real array or as a JSON-encoded string of one.
fn string_list(row: &Value, key: &'static str) -> Result<Option<Vec<String>>, RowError> {
    let list = match row.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(encoded)) if encoded.trim().is_empty() => return Ok(None),
        Some(Value::String(encoded)) => serde_json::from_str::<Value>(encoded)
            .map_err(|error| invalid(key, format!("not a JSON-encoded list: {error}")))?,
        Some(other) => other.clone(),
    };
    let Value::Array(items) = list else {
        return Err(invalid(key, "not a list"));
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(text) => Ok(text),
            Value::Number(number) => Ok(number.to_string()),
            other => Err(invalid(key, format!("{other} is not a string"))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A page of a cursor-paged Data API v2 listing.
#[derive(Debug, Clone, PartialEq)]
pub struct CursorPage {
    pub rows: Vec<Value>,
    /// The cursor of the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

/// Data API v2's envelope: `{"data": [...], "pagination": {"has_more", "next_cursor", ...}}`.
#[derive(Debug, serde::Deserialize)]
struct V2Envelope {
    data: Vec<Value>,
    pagination: V2Pagination,
}

#[derive(Debug, serde::Deserialize)]
struct V2Pagination {
    has_more: bool,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// A Data API v2 page. `has_more` without a cursor is refused rather than read as the last
/// page: stopping there would end a walk early without a word.
pub fn cursor_page(body: &[u8]) -> Result<CursorPage, PageError> {
    let envelope: V2Envelope = serde_json::from_slice(body)
        .map_err(|error| PageError(format!("not a Data API v2 page: {error}")))?;
    let next_cursor = match envelope.pagination {
        V2Pagination {
            has_more: false, ..
        } => None,
        V2Pagination {
            next_cursor: Some(cursor),
            ..
        } if !cursor.trim().is_empty() => Some(cursor),
        V2Pagination { .. } => {
            return Err(PageError(
                "pagination.has_more is true but next_cursor is missing".to_owned(),
            ));
        }
    };
    Ok(CursorPage {
        rows: envelope.data,
        next_cursor,
    })
}

/// CLOB `/prices-history`: `{"history": [{"t": seconds, "p": price}, ...]}`.
pub fn history_page(body: &[u8]) -> Result<Vec<Value>, PageError> {
    #[derive(serde::Deserialize)]
    struct HistoryPage {
        history: Vec<Value>,
    }
    serde_json::from_slice::<HistoryPage>(body)
        .map(|page| page.history)
        .map_err(|error| PageError(format!("not a prices-history page: {error}")))
}

/// The rows of a page that must be a bare JSON array (Data API v1, Gamma offset listings).
pub fn array_page(body: &[u8]) -> Result<Vec<Value>, PageError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(rows)) => Ok(rows),
        Ok(other) => Err(PageError(format!(
            "expected a JSON array, got {}",
            kind_of(&other)
        ))),
        Err(error) => Err(PageError(format!("body is not JSON: {error}"))),
    }
}

/// A keyset page `{"<list_key>": [...], "next_cursor": "..."}`: the rows and the cursor
/// (absent on the last page).
pub fn keyset_page(body: &[u8], list_key: &str) -> Result<(Vec<Value>, Option<String>), PageError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| PageError(format!("body is not JSON: {error}")))?;
    let Some(Value::Array(rows)) = value.get(list_key) else {
        return Err(PageError(format!("no {list_key:?} array in the page")));
    };
    let cursor = text(&value, "next_cursor");
    Ok((rows.clone(), cursor))
}

/// A CLOB cursor page `{"limit","count","next_cursor","data":[...]}`; the cursor is `None` at
/// the end marker `LTE=` (base64 of "-1").
pub fn clob_page(body: &[u8]) -> Result<(Vec<Value>, Option<String>), PageError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| PageError(format!("body is not JSON: {error}")))?;
    let Some(Value::Array(rows)) = value.get("data") else {
        return Err(PageError("no \"data\" array in the page".to_owned()));
    };
    let cursor = text(&value, "next_cursor").filter(|cursor| cursor != "LTE=");
    Ok((rows.clone(), cursor))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Fills of at least this many shares carry a price error under half a 0.0001 step.
const DUST_SIZE: Decimal = Decimal::from_parts(1, 0, 0, false, 2);

/// The grids a dust fill's price is searched on when the market's tick is not used: every
/// tick Polymarket uses (0.01, 0.001, 0.0025, 0.0001 — 0.1 lies on the 0.01 grid), coarse
/// first, 0.001 before 0.0025. A fixed list, so the result is a function of the row alone.
const TICK_GRIDS: [Decimal; 4] = [
    Decimal::from_parts(1, 0, 0, false, 2),
    Decimal::from_parts(1, 0, 0, false, 3),
    Decimal::from_parts(25, 0, 0, false, 4),
    Decimal::from_parts(1, 0, 0, false, 4),
];

/// The price of a fill from the Data API's float, which is `round6(price × size) / size`.
///
/// For fills of 0.01 shares or more, the nearest 0.0001 point is exact. For dust fills the
/// float can be off by more than that (`0.000742` shares at `0.64` reads `0.6402…`), so the
/// price is the nearest point of a tick grid that reproduces the same rounded notional: the
/// market's tick first when given, then [`TICK_GRIDS`].
///
/// With `tick = None` the result depends on the row alone: that is the fill's *identity
/// price* (see [`trade_row`]). With the market's tick it can be closer to the truth for the
/// dustiest fills (0.0025-tick markets below ~0.002 shares), and that is the price stored.
pub fn fill_price(
    reported: f64,
    size: Decimal,
    tick: Option<Decimal>,
) -> Result<Decimal, RowError> {
    let nearest =
        price_from_float(reported).map_err(|error| invalid("price", error.to_string()))?;
    if size >= DUST_SIZE || size <= Decimal::ZERO {
        return Ok(nearest);
    }
    let exact =
        decimal_from_float(reported, 12).map_err(|error| invalid("price", error.to_string()))?;
    let notional = |price: Decimal| {
        (price * size).round_dp_with_strategy(6, RoundingStrategy::MidpointNearestEven)
    };
    let target = notional(exact);
    let grids = tick
        .filter(|tick| *tick > Decimal::ZERO)
        .into_iter()
        .chain(TICK_GRIDS);
    for grid in grids {
        let candidate = ((exact / grid).round() * grid).normalize();
        if candidate > Decimal::ZERO && candidate <= Decimal::ONE && notional(candidate) == target {
            return Ok(candidate);
        }
    }
    Ok(nearest)
}

/// A price given as a float (v1, with artefacts) or as text (schema drift).
fn trade_price(row: &Value, size: Decimal, tick: Option<Decimal>) -> Result<Decimal, RowError> {
    let price = match row.get("price") {
        Some(Value::Number(number)) => {
            let float = number
                .as_f64()
                .ok_or_else(|| invalid("price", "not finite"))?;
            fill_price(float, size, tick)?
        }
        // Text is read as the number it writes and recovered like a float: one fill's price
        // must not depend on the JSON type it came in (schema drift on v1, text on v2), or a
        // dust fill, whose price is recovered from its notional, would get a second id.
        Some(Value::String(text)) => {
            let float = text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|float| float.is_finite())
                .ok_or_else(|| invalid("price", format!("{text:?} is not a number")))?;
            fill_price(float, size, tick)?
        }
        None | Some(Value::Null) => return Err(RowError::Missing("price")),
        Some(other) => return Err(invalid("price", format!("{other} is not a number"))),
    };
    if price <= Decimal::ZERO || price > Decimal::ONE {
        return Err(invalid("price", format!("{price} is outside (0, 1]")));
    }
    Ok(price)
}

/// One Data API trade row: v1 `/trades` (camelCase) or v2 `/v2/trades` (snake_case), float
/// size/price, seconds timestamp; see [`TradeFieldNames`].
///
/// The trade id is [`TradeIdentity`]: `(transactionHash, asset, side, size, price, proxyWallet)`
/// — the only combination that tells apart the fills of one transaction — for the first row
/// with that tuple; [`trade_read`] numbers identical rows of one read.
///
/// `tick` is the market's tick size when known: it disambiguates dust fills' *stored* price.
/// The id never depends on it — it hashes the identity price, [`fill_price`] without a tick —
/// because the tick is market state that changes between polls (the dynamic 0.01 ↔ 0.001 tick)
/// and one fill must keep one id. For fills of 0.01 shares or more both prices are the nearest
/// 0.0001 point (ids unchanged from before); they can differ only for the dustiest fills.
pub fn trade_row(row: &Value, ingested_ms: i64, tick: Option<Decimal>) -> Result<Trade, RowError> {
    if !row.is_object() {
        return Err(RowError::NotAnObject);
    }
    let names = TradeFieldNames::of(row);
    let proxy_wallet = required_text(row, names.wallet)?.to_ascii_lowercase();
    let side_text = required_text(row, "side")?;
    let side = Side::parse(&side_text).ok_or_else(|| invalid("side", side_text.clone()))?;
    let token_id = required_text(row, names.token)?;
    if !token_id.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(invalid(
            names.token,
            format!("{token_id:?} is not a decimal token id"),
        ));
    }
    let condition_id = required_text(row, names.condition)?.to_ascii_lowercase();
    let size = decimal(row, "size")?.ok_or(RowError::Missing("size"))?;
    if size <= Decimal::ZERO {
        return Err(invalid("size", format!("{size} is not positive")));
    }
    let identity_price = trade_price(row, size, None)?;
    let price = match tick {
        Some(_) => trade_price(row, size, tick)?,
        None => identity_price,
    };
    let timestamp = integer(row, "timestamp").ok_or(RowError::Missing("timestamp"))?;
    if timestamp <= 0 {
        return Err(invalid("timestamp", timestamp.to_string()));
    }
    let transaction_hash = required_text(row, names.transaction)?.to_ascii_lowercase();
    let trade_id = TradeIdentity {
        transaction_hash: &transaction_hash,
        token_id: &token_id,
        side,
        size,
        price: identity_price,
        proxy_wallet: &proxy_wallet,
    }
    .trade_id();
    Ok(Trade {
        trade_id,
        condition_id,
        token_id,
        outcome: text(row, "outcome"),
        outcome_index: integer(row, names.outcome_index)
            .filter(|index| *index != UNLABELED_OUTCOME_INDEX)
            .and_then(|index| i32::try_from(index).ok()),
        side,
        price,
        size,
        timestamp_ms: timestamp_to_ms(timestamp),
        transaction_hash,
        proxy_wallet,
        source: names.source,
        ingested_ms,
    })
}

/// Data API v2's `outcome_index` for an unlabeled outcome.
const UNLABELED_OUTCOME_INDEX: i64 = 999;

/// The names of a trade row's fields that differ between Data API v1 `/trades` (camelCase)
/// and v2 `/v2/trades` (snake_case); side, size, price, timestamp and outcome are named alike.
/// The two give the same fill the same [`TradeIdentity`], so switching versions never
/// publishes a fill twice.
struct TradeFieldNames {
    wallet: &'static str,
    token: &'static str,
    condition: &'static str,
    transaction: &'static str,
    outcome_index: &'static str,
    source: TradeSource,
}

impl TradeFieldNames {
    const V1: Self = Self {
        wallet: "proxyWallet",
        token: "asset",
        condition: "conditionId",
        transaction: "transactionHash",
        outcome_index: "outcomeIndex",
        source: TradeSource::DataApiV1,
    };
    const V2: Self = Self {
        wallet: "proxy_wallet",
        token: "token_id",
        condition: "condition_id",
        transaction: "transaction_hash",
        outcome_index: "outcome_index",
        source: TradeSource::DataApiV2,
    };

    /// v2 rows name the token `token_id`, v1 rows `asset`; a row with neither is read as v1
    /// (and refused for its missing `asset`).
    fn of(row: &Value) -> &'static Self {
        if row.get("asset").is_none() && row.get("token_id").is_some() {
            &Self::V2
        } else {
            &Self::V1
        }
    }
}

/// A `/trades` row refused by [`trade_read`], for the DLQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The row's raw JSON.
    pub payload: Vec<u8>,
    pub reason: String,
    /// The row's `conditionId`, lower-cased (empty when it has none).
    pub condition_id: String,
    /// The row's second when it is readable and inside the requested window; `None` for rows
    /// outside it or without a readable timestamp.
    pub second: Option<i64>,
}

/// One read of the `/trades` tape — a page, or every page of one second — validated.
#[derive(Debug, Default)]
pub struct TradeRead {
    /// Valid fills inside the requested window, in upstream order, with their final ids.
    pub trades: Vec<Trade>,
    pub refused: Vec<Refused>,
    /// The oldest second among `trades`: only valid fills inside the window steer a walk.
    pub oldest: Option<i64>,
    /// The oldest in-window second among the refused rows (a walk falls back on it only when
    /// a full page holds no valid fill at all).
    pub oldest_refused: Option<i64>,
}

impl TradeRead {
    /// Appends another read (of other rows) to this one.
    pub fn extend(&mut self, other: TradeRead) {
        self.trades.extend(other.trades);
        self.refused.extend(other.refused);
        self.oldest = min_some(self.oldest, other.oldest);
        self.oldest_refused = min_some(self.oldest_refused, other.oldest_refused);
    }

    /// The refused rows as the DLQ takes them: (payload, reason).
    pub fn dead_letters(refused: Vec<Refused>) -> Vec<(Vec<u8>, String)> {
        refused
            .into_iter()
            .map(|refused| (refused.payload, refused.reason))
            .collect()
    }
}

fn min_some(left: Option<i64>, right: Option<i64>) -> Option<i64> {
    match (left, right) {
        (Some(left), Some(right)) => Some(left.min(right)),
        (left, right) => left.or(right),
    }
}

/// Validates the rows of one `/trades` read requested for `[window.0, window.1]` (inclusive
/// seconds) into fills and refusals.
///
/// *Validation first.* A row whose timestamp is unreadable, or readable but outside the
/// requested window, is refused with the reason like any invalid row; it is not a fill of this
/// window and must not steer the walk that asked for it (see `tape::TapeWalk`).
///
/// *Identical rows.* Two fills of one wallet in one transaction with equal side, size and
/// price are two identical upstream rows and two trades. The k-th valid row (0-based, in
/// upstream order) whose [`TradeIdentity`] repeats an earlier row's **in this read** gets
/// [`occurrence_trade_id`]`(id, k)`; the first keeps the plain id. Why that is stable: the
/// rows of one transaction share one timestamp second, and a read is either a page of
/// `[from, upper]` at offset 0 — which holds every row of each second it covers except the
/// oldest one, of which it holds the first rows in upstream order — or every page of one
/// second (a second denser than a page, read with offsets, numbered over all its pages
/// together). So a read sees either all the identical rows of a transaction, or the first c₁
/// of its c; it numbers them 0..c₁ and a complete read 0..c, identically, since identical rows
/// are interchangeable. The walks re-read the boundary second and skip the ids already sent
/// (the edge sets and `skip`): the occurrence ids a partial read sent are exactly the first
/// ones a complete read derives, so the skip by id sends each occurrence once. Counting across
/// reads instead (a page and the next, which share a second) would number re-read rows again.
///
/// `tick_of` gives a market's tick size by condition id (for dust fills' stored prices).
pub fn trade_read(
    rows: &[Value],
    window: (i64, i64),
    ingested_ms: i64,
    tick_of: impl Fn(&str) -> Option<Decimal>,
) -> TradeRead {
    let (start, end) = window;
    let mut read = TradeRead::default();
    let mut occurrences: HashMap<String, u32> = HashMap::new();
    for row in rows {
        let condition_id = row
            .get(TradeFieldNames::of(row).condition)
            .and_then(Value::as_str)
            .map(|id| id.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let second = row_timestamp_s(row).filter(|second| (start..=end).contains(second));
        let parsed = trade_row(row, ingested_ms, tick_of(&condition_id)).and_then(|trade| {
            let trade_second = trade.timestamp_ms.div_euclid(1000);
            if (start..=end).contains(&trade_second) {
                Ok(trade)
            } else {
                Err(invalid(
                    "timestamp",
                    format!(
                        "second {trade_second} is outside the requested window [{start}, {end}]"
                    ),
                ))
            }
        });
        match parsed {
            Ok(mut trade) => {
                let trade_second = trade.timestamp_ms.div_euclid(1000);
                let seen = occurrences.entry(trade.trade_id.clone()).or_insert(0);
                if *seen > 0 {
                    trade.trade_id = occurrence_trade_id(&trade.trade_id, *seen);
                }
                *seen += 1;
                read.oldest = min_some(read.oldest, Some(trade_second));
                read.trades.push(trade);
            }
            Err(error) => {
                read.oldest_refused = min_some(read.oldest_refused, second);
                read.refused.push(Refused {
                    payload: row.to_string().into_bytes(),
                    reason: error.to_string(),
                    condition_id,
                    second,
                });
            }
        }
    }
    read
}

/// One point of CLOB `/prices-history` (`{"t": seconds, "p": float}`).
pub fn price_point(
    row: &Value,
    token_id: &str,
    fidelity_minutes: i32,
    fetched_ms: i64,
) -> Result<PricePoint, RowError> {
    let t = integer(row, "t").ok_or(RowError::Missing("t"))?;
    let price = match row.get("p") {
        Some(Value::Number(number)) => number
            .as_f64()
            .ok_or_else(|| invalid("p", "not finite"))
            .and_then(|float| {
                price_from_float(float).map_err(|error| invalid("p", error.to_string()))
            })?,
        Some(Value::String(text)) => parse_decimal_text(text)
            .map(round_to_price_scale)
            .map_err(|error| invalid("p", error.to_string()))?,
        _ => return Err(RowError::Missing("p")),
    };
    Ok(PricePoint {
        token_id: token_id.to_owned(),
        timestamp_ms: timestamp_to_ms(t),
        price,
        fidelity_minutes,
        fetched_ms,
    })
}

/// One CLOB book (an element of `POST /books`), as a REST snapshot, by [`crate::book`]'s
/// rules.
pub fn book_snapshot(row: &Value, received_ms: i64) -> Result<BookSnapshot, RowError> {
    crate::book::WireBook::from_value(row)?.into_snapshot(received_ms)
}

/// Which leaderboard list a row came from (the request's parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderboardList {
    pub period: &'static str,
    pub category: &'static str,
    pub order_by: &'static str,
}

/// One Data API `/v1/leaderboard` row: `rank` is a string upstream, `vol`/`pnl` floats.
pub fn leaderboard_entry(
    row: &Value,
    list: LeaderboardList,
    snapshot_ms: i64,
) -> Result<LeaderboardEntry, RowError> {
    if !row.is_object() {
        return Err(RowError::NotAnObject);
    }
    let proxy_wallet = required_text(row, "proxyWallet")?.to_ascii_lowercase();
    if !proxy_wallet.starts_with("0x") || proxy_wallet.len() != 42 {
        return Err(invalid(
            "proxyWallet",
            format!("{proxy_wallet:?} is not a 0x address"),
        ));
    }
    let rank = integer(row, "rank").ok_or(RowError::Missing("rank"))?;
    let rank = i32::try_from(rank)
        .ok()
        .filter(|rank| *rank >= 1)
        .ok_or_else(|| invalid("rank", rank.to_string()))?;
    Ok(LeaderboardEntry {
        proxy_wallet,
        period: list.period.to_owned(),
        category: list.category.to_owned(),
        order_by: list.order_by.to_owned(),
        rank,
        user_name: text(row, "userName"),
        x_username: text(row, "xUsername"),
        profile_image: text(row, "profileImage"),
        verified_badge: boolean(row, "verifiedBadge"),
        volume: decimal(row, "vol")?,
        pnl: decimal(row, "pnl")?,
        snapshot_ms,
    })
}

/// CLOB market parameters from `GET /markets` (cursor walk), merged into Gamma's market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClobMarket {
    pub condition_id: String,
    /// (token id, outcome, winner)
    pub tokens: Vec<(String, String, Option<bool>)>,
    pub min_order_size: Option<Decimal>,
    pub tick_size: Option<Decimal>,
    pub maker_base_fee_bps: Option<i32>,
    pub taker_base_fee_bps: Option<i32>,
    pub neg_risk: Option<bool>,
    pub accepting_orders: Option<bool>,
    pub tags: Vec<String>,
}

pub fn clob_market(row: &Value) -> Result<ClobMarket, RowError> {
    if !row.is_object() {
        return Err(RowError::NotAnObject);
    }
    let condition_id = required_text(row, "condition_id")?.to_ascii_lowercase();
    let tokens = match row.get("tokens") {
        Some(Value::Array(tokens)) => tokens
            .iter()
            .filter_map(|token| {
                let token_id = text(token, "token_id")?;
                Some((
                    token_id,
                    text(token, "outcome").unwrap_or_default(),
                    boolean(token, "winner"),
                ))
            })
            .collect(),
        _ => Vec::new(),
    };
    let fee = |key| integer(row, key).and_then(|bps| i32::try_from(bps).ok());
    Ok(ClobMarket {
        condition_id,
        tokens,
        min_order_size: lenient_decimal(row, "minimum_order_size"),
        tick_size: lenient_decimal(row, "minimum_tick_size"),
        maker_base_fee_bps: fee("maker_base_fee"),
        taker_base_fee_bps: fee("taker_base_fee"),
        neg_risk: boolean(row, "neg_risk"),
        accepting_orders: boolean(row, "accepting_orders"),
        tags: string_list(row, "tags").ok().flatten().unwrap_or_default(),
    })
}

/// One Gamma market row (from `/markets`, `/markets/keyset` or an event's `markets[]`).
/// `content_hash` and `updated_ms` are filled by [`finish_market`].
pub fn gamma_market(row: &Value) -> Result<Market, RowError> {
    if !row.is_object() {
        return Err(RowError::NotAnObject);
    }
    let condition_id = required_text(row, "conditionId")?.to_ascii_lowercase();
    if !condition_id.starts_with("0x") || condition_id.len() < 3 {
        return Err(invalid(
            "conditionId",
            format!("{condition_id:?} is not 0x-hex"),
        ));
    }
    // v2 markets carry `positionIds` (a real array); v1 `clobTokenIds` (a JSON-encoded string).
    let token_ids = match string_list(row, "positionIds")? {
        Some(ids) => ids,
        None => string_list(row, "clobTokenIds")?.unwrap_or_default(),
    };
    let outcomes = string_list(row, "outcomes")?.unwrap_or_default();
    if !outcomes.is_empty() && outcomes.len() != token_ids.len() && !token_ids.is_empty() {
        return Err(invalid(
            "outcomes",
            format!("{} outcomes for {} tokens", outcomes.len(), token_ids.len()),
        ));
    }
    let closed = boolean(row, "closed").unwrap_or(false);
    let prices = string_list(row, "outcomePrices")
        .ok()
        .flatten()
        .unwrap_or_default();
    // A resolved market pays 1 on the winner: `outcomePrices` `["1", "0"]`.
    let winner_index = if closed {
        let ones: Vec<usize> = prices
            .iter()
            .enumerate()
            .filter(|(_, price)| parse_decimal_text(price).is_ok_and(|price| price == Decimal::ONE))
            .map(|(index, _)| index)
            .collect();
        (ones.len() == 1).then(|| ones[0])
    } else {
        None
    };
    let tokens: Vec<MarketToken> = token_ids
        .iter()
        .enumerate()
        .map(|(index, token_id)| MarketToken {
            token_id: token_id.clone(),
            outcome: outcomes.get(index).cloned().unwrap_or_default(),
            outcome_index: i32::try_from(index).unwrap_or(i32::MAX),
            winner: winner_index.map(|winner| winner == index),
        })
        .collect();
    let winning_token_id = winner_index.and_then(|index| token_ids.get(index).cloned());
    let resolution_status = text(row, "umaResolutionStatus").or_else(|| {
        string_list(row, "umaResolutionStatuses")
            .ok()
            .flatten()
            .and_then(|statuses| statuses.last().cloned())
    });
    let event_ids = match row.get("events") {
        Some(Value::Array(events)) => events
            .iter()
            .filter_map(|event| text(event, "id"))
            .collect(),
        _ => Vec::new(),
    };
    Ok(Market {
        condition_id,
        question_id: text(row, "questionID").map(|id| id.to_ascii_lowercase()),
        gamma_market_id: text(row, "id"),
        event_ids,
        slug: text(row, "slug"),
        question: text(row, "question").unwrap_or_default(),
        description: text(row, "description"),
        protocol_version: text(row, "version"),
        tokens,
        active: boolean(row, "active").unwrap_or(false),
        closed,
        archived: boolean(row, "archived").unwrap_or(false),
        accepting_orders: boolean(row, "acceptingOrders").unwrap_or(false),
        enable_order_book: boolean(row, "enableOrderBook").unwrap_or(false),
        neg_risk: boolean(row, "negRisk").unwrap_or(false),
        neg_risk_market_id: text(row, "negRiskMarketID"),
        tick_size: lenient_decimal(row, "orderPriceMinTickSize"),
        min_order_size: lenient_decimal(row, "orderMinSize"),
        maker_base_fee_bps: None,
        taker_base_fee_bps: None,
        fees_enabled: boolean(row, "feesEnabled"),
        tags: Vec::new(),
        start_ms: date_ms(row, "startDate"),
        end_ms: date_ms(row, "endDate"),
        created_ms: date_ms(row, "createdAt"),
        closed_ms: date_ms(row, "closedTime"),
        resolution_status,
        winning_token_id,
        volume: lenient_decimal(row, "volumeNum").or_else(|| lenient_decimal(row, "volume")),
        liquidity: lenient_decimal(row, "liquidityNum")
            .or_else(|| lenient_decimal(row, "liquidity")),
        upstream_updated_ms: date_ms(row, "updatedAt"),
        content_hash: String::new(),
        updated_ms: 0,
    })
}

/// Adds CLOB's trading parameters (they are the ones the matching engine enforces) and the
/// per-token winner flags to a Gamma market.
pub fn merge_clob(market: &mut Market, clob: &ClobMarket) {
    if market.tokens.is_empty() {
        market.tokens = clob
            .tokens
            .iter()
            .enumerate()
            .map(|(index, (token_id, outcome, winner))| MarketToken {
                token_id: token_id.clone(),
                outcome: outcome.clone(),
                outcome_index: i32::try_from(index).unwrap_or(i32::MAX),
                winner: *winner,
            })
            .collect();
    } else {
        for token in &mut market.tokens {
            if let Some((_, outcome, winner)) =
                clob.tokens.iter().find(|(id, _, _)| *id == token.token_id)
            {
                if token.outcome.is_empty() {
                    token.outcome = outcome.clone();
                }
                if winner.is_some() && market.closed {
                    token.winner = *winner;
                }
            }
        }
    }
    if market.closed
        && let Some(winner) = market
            .tokens
            .iter()
            .find(|token| token.winner == Some(true))
    {
        market.winning_token_id = Some(winner.token_id.clone());
    }
    market.min_order_size = clob.min_order_size.or(market.min_order_size);
    market.tick_size = clob.tick_size.or(market.tick_size);
    market.maker_base_fee_bps = clob.maker_base_fee_bps;
    market.taker_base_fee_bps = clob.taker_base_fee_bps;
    if let Some(neg_risk) = clob.neg_risk {
        market.neg_risk = neg_risk;
    }
    if market.tags.is_empty() {
        market.tags = clob.tags.clone();
    }
}

/// Fills `content_hash` (over everything but the hash and `updated_ms`) and `updated_ms`.
pub fn finish_market(mut market: Market, now_ms: i64) -> Market {
    market.event_ids.sort();
    market.event_ids.dedup();
    market.content_hash = String::new();
    market.updated_ms = 0;
    let canonical = serde_json::to_vec(&market).unwrap_or_default();
    market.content_hash = content_hash(&canonical);
    market.updated_ms = now_ms;
    market
}

/// One Gamma event row (`/events`, `/events/keyset`), with its nested markets' condition ids.
pub fn gamma_event(row: &Value, now_ms: i64) -> Result<Event, RowError> {
    if !row.is_object() {
        return Err(RowError::NotAnObject);
    }
    let event_id = required_text(row, "id")?;
    let mut market_condition_ids: Vec<String> = match row.get("markets") {
        Some(Value::Array(markets)) => markets
            .iter()
            .filter_map(|market| text(market, "conditionId"))
            .map(|id| id.to_ascii_lowercase())
            .collect(),
        _ => Vec::new(),
    };
    market_condition_ids.sort();
    market_condition_ids.dedup();
    let tags = match row.get("tags") {
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(|tag| text(tag, "label").or_else(|| text(tag, "slug")))
            .collect(),
        _ => Vec::new(),
    };
    let mut event = Event {
        event_id,
        slug: text(row, "slug"),
        ticker: text(row, "ticker"),
        title: required_text(row, "title")?,
        description: text(row, "description"),
        active: boolean(row, "active").unwrap_or(false),
        closed: boolean(row, "closed").unwrap_or(false),
        archived: boolean(row, "archived").unwrap_or(false),
        neg_risk: boolean(row, "negRisk")
            .or_else(|| boolean(row, "enableNegRisk"))
            .unwrap_or(false),
        start_ms: date_ms(row, "startDate"),
        end_ms: date_ms(row, "endDate"),
        created_ms: date_ms(row, "creationDate").or_else(|| date_ms(row, "createdAt")),
        volume: lenient_decimal(row, "volume"),
        liquidity: lenient_decimal(row, "liquidity"),
        open_interest: lenient_decimal(row, "openInterest"),
        tags,
        series_slug: text(row, "seriesSlug"),
        market_condition_ids,
        upstream_updated_ms: date_ms(row, "updatedAt"),
        content_hash: String::new(),
        updated_ms: 0,
    };
    let canonical = serde_json::to_vec(&event).unwrap_or_default();
    event.content_hash = content_hash(&canonical);
    event.updated_ms = now_ms;
    Ok(event)
}

/// Condition id → event ids, from the events' nested markets (Gamma's market rows only carry
/// `events[]` sometimes).
pub fn event_index(events: &[Event]) -> HashMap<String, Vec<String>> {
    let mut index: HashMap<String, Vec<String>> = HashMap::new();
    for event in events {
        for condition_id in &event.market_condition_ids {
            index
                .entry(condition_id.clone())
                .or_default()
                .push(event.event_id.clone());
        }
    }
    index
}

/// A row's timestamp in seconds if it has a readable one, valid row or not: where a refused
/// row sits on the tape (a walk never steers by it unless it is inside the requested window;
/// see [`trade_read`] and `tape::TapeWalk`).
pub fn row_timestamp_s(row: &Value) -> Option<i64> {
    integer(row, "timestamp").map(|value| timestamp_to_ms(value).div_euclid(1000))
}

#[cfg(test)]
mod tests;
