//! `/v1/orderbook`: a token's book now or as of a past time.
//!
//! Past books are rebuilt like the candle builder builds them: start from the newest full
//! picture at or before `at` (a full-depth `book_state` row, written every
//! `book_full_depth_interval`, or an upstream `book_snapshots` row, whichever is newer), then
//! replay every later snapshot (replaces the book) and price change (sets a level; size 0
//! removes it) up to `at`, in event-time order. Gaps declared in `continuity` over that span
//! are reported with the book.

use axum::{
    Json,
    extract::{RawQuery, State},
};
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use polytape_model::{Side, book::L2Book};

use super::{
    MS,
    continuity::{GapView, gap_view},
};
use polytape_clickhouse::rows::{BookStateRow, ContinuityRow};

use crate::{
    error::{ApiError, ErrorEnvelope},
    params::{Exact, Params, decimal_text, price_text},
    state::AppState,
};

/// Most book events replayed for one request (a full-depth state is written every few
/// minutes, so real replays are far smaller).
const MAX_REPLAYED_EVENTS: u64 = 1_000_000;

/// When the market of `token_id` resolved, from every source that says so: the WebSocket's
/// `market_resolved` lifecycle record (exact to the millisecond) and, should that record have
/// been lost, the market record's `closed_time` from Gamma. Gamma states that time to the
/// second only, so the resolution happened within the following second; the book is refused
/// from the end of that second on (inside it, a lost lifecycle record is covered by the
/// bridge's declared gap).
async fn resolution_ms(state: &AppState, token_id: &str) -> Result<Option<i64>, ApiError> {
    let from_lifecycle: Option<i64> = state
        .client
        .query(
            "SELECT toInt64(toUnixTimestamp64Milli(min(timestamp))) FROM market_lifecycle FINAL \
             WHERE kind = 'MARKET_RESOLVED' AND has(token_ids, ?) HAVING count() > 0",
        )
        .bind(token_id)
        .fetch_optional()
        .await?;
    if from_lifecycle.is_some() {
        return Ok(from_lifecycle);
    }
    let closed_second: Option<i64> = state
        .client
        .query(
            "SELECT toInt64(toUnixTimestamp64Milli(min(assumeNotNull(closed_time)))) FROM markets FINAL \
             WHERE has(token_ids, ?) AND closed AND closed_time IS NOT NULL HAVING count() > 0",
        )
        .bind(token_id)
        .fetch_optional()
        .await?;
    Ok(closed_second.map(|closed_ms| closed_ms - closed_ms.rem_euclid(1_000) + 999))
}

#[derive(Debug, Row, Deserialize)]
struct SnapshotRow {
    timestamp: i64,
    bid_prices: Vec<i64>,
    bid_sizes: Vec<i64>,
    ask_prices: Vec<i64>,
    ask_sizes: Vec<i64>,
}

#[derive(Debug, Row, Deserialize)]
struct ChangeRow {
    timestamp: i64,
    side: i8,
    price: i64,
    size: i64,
}

/// One price level.
#[derive(Debug, Serialize, ToSchema)]
pub struct LevelView {
    #[schema(value_type = String)]
    pub price: Exact,
    #[schema(value_type = String)]
    pub size: Exact,
}

/// A book and where it came from.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderBookResponse {
    pub token_id: String,
    /// The time asked for (`at`, or the time of the request).
    pub at_ms: i64,
    /// Event time of the last event reflected in this book.
    pub state_time_ms: i64,
    /// What the book was rebuilt from: `book_state_full_depth`, `book_snapshot`, or (when
    /// neither exists within the retention) `book_state_top_levels`; then events replayed.
    pub source: String,
    /// Event time of that base.
    pub base_time_ms: i64,
    /// Events replayed on top of the base.
    pub replayed_events: u64,
    /// Bids, best (highest) first, at most `depth`.
    pub bids: Vec<LevelView>,
    /// Asks, best (lowest) first, at most `depth`.
    pub asks: Vec<LevelView>,
    pub best_bid: Option<String>,
    pub best_ask: Option<String>,
    /// (best bid + best ask) / 2, exact.
    pub mid: Option<String>,
    pub spread: Option<String>,
    /// Whether a declared continuity gap (or a book inconsistency) covers the span from the
    /// base to `at`: the book may then differ from upstream's.
    pub gap: bool,
    /// The gaps that cover it.
    pub gaps: Vec<GapView>,
}

/// Replaces `book` with stored level columns (parallel price and size arrays).
fn replace_levels(
    book: &mut L2Book,
    bid_prices: &[i64],
    bid_sizes: &[i64],
    ask_prices: &[i64],
    ask_sizes: &[i64],
) {
    book.replace(
        bid_prices.iter().copied().zip(bid_sizes.iter().copied()),
        ask_prices.iter().copied().zip(ask_sizes.iter().copied()),
    );
}

fn levels(iter: impl Iterator<Item = (i64, i64)>, depth: usize) -> Vec<LevelView> {
    iter.take(depth)
        .map(|(price, size)| LevelView {
            price: Exact::price(price),
            size: Exact::price(size),
        })
        .collect()
}

/// The order book of a token, now or as of `at`.
#[utoipa::path(
    get,
    path = "/v1/orderbook",
    tag = "books",
    params(
        ("token_id" = String, Query, pattern = "^[0-9]{1,80}$", description = "Outcome token id"),
        ("at" = Option<String>, Query, description = "Book as of this time (RFC 3339 or epoch ms; default: now); within the retention"),
        ("depth" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Levels per side (default 20)"),
    ),
    responses(
        (status = 200, description = "The book", body = OrderBookResponse),
        (status = 400, description = "Invalid or unknown parameter, or a time older than the retention", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid API key", body = ErrorEnvelope),
        (status = 403, description = "Revoked or expired API key", body = ErrorEnvelope),
        (status = 404, description = "No book known for the token at that time", body = ErrorEnvelope),
        (status = 429, description = "Rate limit or daily cap reached (see Retry-After)", body = ErrorEnvelope),
        (status = 503, description = "Data store unavailable", body = ErrorEnvelope),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn orderbook(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<OrderBookResponse>, ApiError> {
    let params = Params::parse(raw.as_deref(), &["token_id", "at", "depth"])?;
    let token_id = params
        .token_id("token_id")?
        .ok_or_else(|| ApiError::invalid("`token_id` is required"))?;
    let depth = usize::try_from(params.integer("depth", 1, 1000)?.unwrap_or(20)).unwrap_or(20);
    let at_ms = params.time_ms("at")?.unwrap_or_else(|| state.now_ms());
    state.check_retention("at", at_ms)?;
    let retention_start = state.retention_start_ms();

    // A resolved market has no order book any more (upstream removes it): serving the last
    // book known before the resolution would show liquidity that no longer exists.
    if let Some(resolved_ms) = resolution_ms(&state, &token_id).await?
        && resolved_ms <= at_ms
    {
        return Err(ApiError::not_found(format!(
            "the market of token {token_id} resolved at {resolved_ms}: there is no order book after resolution; ask for an `at` before it"
        )));
    }

    let mut book = L2Book::default();
    let mut consistent = true;

    let full_state: Option<BookStateRow> = state
        .client
        .query(&format!(
            "SELECT ?fields FROM book_state FINAL WHERE token_id = ? AND full_depth AND timestamp <= {MS} AND timestamp >= {MS} \
             ORDER BY timestamp DESC LIMIT 1"
        ))
        .bind(&token_id)
        .bind(at_ms)
        .bind(retention_start)
        .fetch_optional()
        .await?;
    let snapshot: Option<SnapshotRow> = state
        .client
        .query(&format!(
            "SELECT timestamp, bid_prices, bid_sizes, ask_prices, ask_sizes FROM book_snapshots FINAL \
             WHERE token_id = ? AND timestamp <= {MS} AND timestamp >= {MS} ORDER BY timestamp DESC LIMIT 1"
        ))
        .bind(&token_id)
        .bind(at_ms)
        .bind(retention_start)
        .fetch_optional()
        .await?;
    let (source, base_time) = match (full_state, snapshot) {
        (None, None) => {
            // No full picture within the retention: the newest top-levels state is the best
            // base there is (levels beyond its top may be missing after deletions).
            let latest: Option<BookStateRow> = state
                .client
                .query(&format!(
                    "SELECT ?fields FROM book_state FINAL WHERE token_id = ? AND timestamp <= {MS} AND timestamp >= {MS} \
                     ORDER BY timestamp DESC LIMIT 1"
                ))
                .bind(&token_id)
                .bind(at_ms)
                .bind(retention_start)
                .fetch_optional()
                .await?;
            let Some(latest) = latest else {
                return Err(ApiError::not_found(format!(
                    "no book known for token {token_id} at or before {at_ms}"
                )));
            };
            replace_levels(
                &mut book,
                &latest.bid_prices,
                &latest.bid_sizes,
                &latest.ask_prices,
                &latest.ask_sizes,
            );
            consistent = latest.consistent;
            ("book_state_top_levels", latest.timestamp)
        }
        (Some(full), Some(snapshot)) if snapshot.timestamp > full.timestamp => {
            replace_levels(
                &mut book,
                &snapshot.bid_prices,
                &snapshot.bid_sizes,
                &snapshot.ask_prices,
                &snapshot.ask_sizes,
            );
            ("book_snapshot", snapshot.timestamp)
        }
        (Some(full), _) => {
            replace_levels(
                &mut book,
                &full.bid_prices,
                &full.bid_sizes,
                &full.ask_prices,
                &full.ask_sizes,
            );
            consistent = full.consistent;
            ("book_state_full_depth", full.timestamp)
        }
        (None, Some(snapshot)) => {
            replace_levels(
                &mut book,
                &snapshot.bid_prices,
                &snapshot.bid_sizes,
                &snapshot.ask_prices,
                &snapshot.ask_sizes,
            );
            ("book_snapshot", snapshot.timestamp)
        }
    };

    // Later snapshots replace the book; changes set levels. Both in event-time order,
    // snapshots first at equal times (a snapshot is the state before that instant's changes).
    let snapshots: Vec<SnapshotRow> = state
        .client
        .query(&format!(
            "SELECT timestamp, bid_prices, bid_sizes, ask_prices, ask_sizes FROM book_snapshots FINAL \
             WHERE token_id = ? AND timestamp > {MS} AND timestamp <= {MS} ORDER BY timestamp"
        ))
        .bind(&token_id)
        .bind(base_time)
        .bind(at_ms)
        .fetch_all()
        .await?;
    let changes: Vec<ChangeRow> = state
        .client
        .query(&format!(
            "SELECT timestamp, side, price, size FROM price_changes FINAL \
             WHERE token_id = ? AND timestamp > {MS} AND timestamp <= {MS} \
             ORDER BY timestamp, connection_id, sequence, entry_index LIMIT ?"
        ))
        .bind(&token_id)
        .bind(base_time)
        .bind(at_ms)
        .bind(MAX_REPLAYED_EVENTS + 1)
        .fetch_all()
        .await?;
    if changes.len() as u64 > MAX_REPLAYED_EVENTS {
        // Replaying only part of the span would serve a wrong book without saying so.
        return Err(ApiError::invalid(format!(
            "more than {MAX_REPLAYED_EVENTS} book changes lie between the newest full picture ({base_time}) and `at`; ask for an `at` closer to a full-depth state"
        )));
    }
    let mut state_time = base_time;
    let mut replayed = 0_u64;
    let mut snapshots = snapshots.into_iter().peekable();
    for change in &changes {
        while let Some(snapshot) =
            snapshots.next_if(|snapshot| snapshot.timestamp <= change.timestamp)
        {
            replace_levels(
                &mut book,
                &snapshot.bid_prices,
                &snapshot.bid_sizes,
                &snapshot.ask_prices,
                &snapshot.ask_sizes,
            );
            replayed += 1;
        }
        // An unknown side code cannot be written by the sink (Enum8); read as a bid as before.
        let side = Side::from_code(change.side).unwrap_or(Side::Buy);
        book.set_level(side, change.price, change.size);
        state_time = change.timestamp;
        replayed += 1;
    }
    for snapshot in snapshots {
        replace_levels(
            &mut book,
            &snapshot.bid_prices,
            &snapshot.bid_sizes,
            &snapshot.ask_prices,
            &snapshot.ask_sizes,
        );
        state_time = snapshot.timestamp;
        replayed += 1;
    }
    let gaps = gaps_over(&state, &token_id, base_time, at_ms).await?;
    Ok(Json(respond(
        token_id,
        at_ms,
        state_time,
        source,
        base_time,
        replayed,
        &book,
        depth,
        gaps,
        !consistent,
    )))
}

async fn gaps_over(
    state: &AppState,
    token_id: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<GapView>, ApiError> {
    let rows: Vec<ContinuityRow> = state
        .client
        .query(&format!(
            "SELECT ?fields FROM continuity FINAL \
             WHERE has(token_ids, ?) AND gap_start <= {MS} AND (gap_end IS NULL OR gap_end >= {MS}) \
             ORDER BY gap_start, continuity_id LIMIT 100"
        ))
        .bind(token_id)
        .bind(to_ms)
        .bind(from_ms)
        .fetch_all()
        .await?;
    Ok(rows.into_iter().map(gap_view).collect())
}

#[allow(clippy::too_many_arguments)]
fn respond(
    token_id: String,
    at_ms: i64,
    state_time_ms: i64,
    source: &str,
    base_time_ms: i64,
    replayed_events: u64,
    book: &L2Book,
    depth: usize,
    gaps: Vec<GapView>,
    inconsistent: bool,
) -> OrderBookResponse {
    let best_bid = book.best_bid();
    let best_ask = book.best_ask();
    let (mid, spread) = match (best_bid, best_ask) {
        // (bid + ask) / 2 at scale 7 is exact: ×5 at one more decimal.
        (Some(bid), Some(ask)) => (
            Some(decimal_text((i128::from(bid) + i128::from(ask)) * 5, 7)),
            Some(decimal_text(i128::from(ask) - i128::from(bid), 6)),
        ),
        _ => (None, None),
    };
    OrderBookResponse {
        token_id,
        at_ms,
        state_time_ms,
        source: source.to_owned(),
        base_time_ms,
        replayed_events,
        bids: levels(book.bids(), depth),
        asks: levels(book.asks(), depth),
        best_bid: best_bid.map(price_text),
        best_ask: best_ask.map(price_text),
        mid,
        spread,
        gap: inconsistent || !gaps.is_empty(),
        gaps,
    }
}
