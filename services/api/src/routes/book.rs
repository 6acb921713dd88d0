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
use serde::Serialize;
use utoipa::ToSchema;

use polytape_model::{Side, book::L2Book};

use super::continuity::{GapView, gap_view};
use polytape_clickhouse::rows::BookStateRow;

use crate::{
    error::{ApiError, ErrorEnvelope},
    params::{Exact, Params, decimal_text, price_text},
    state::AppState,
    store::SnapshotLevels,
};

/// Most book events replayed for one request (a full-depth state is written every few
/// minutes, so real replays are far smaller).
const MAX_REPLAYED_EVENTS: u64 = 1_000_000;

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

/// A book replaced by a snapshot's levels.
fn replace_levels(book: &mut L2Book, levels: &SnapshotLevels) {
    book.replace(
        levels
            .bid_prices
            .iter()
            .copied()
            .zip(levels.bid_sizes.iter().copied()),
        levels
            .ask_prices
            .iter()
            .copied()
            .zip(levels.ask_sizes.iter().copied()),
    );
}

/// The newest full picture a replay starts from.
struct Base {
    source: &'static str,
    levels: SnapshotLevels,
    consistent: bool,
}

impl Base {
    fn snapshot(levels: SnapshotLevels) -> Self {
        Self {
            source: "book_snapshot",
            levels,
            consistent: true,
        }
    }

    fn state(row: BookStateRow, source: &'static str) -> Self {
        Self {
            source,
            consistent: row.consistent,
            levels: SnapshotLevels {
                timestamp: row.timestamp,
                bid_prices: row.bid_prices,
                bid_sizes: row.bid_sizes,
                ask_prices: row.ask_prices,
                ask_sizes: row.ask_sizes,
            },
        }
    }
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
        (status = 404, description = "No book known for the token at that time", body = ErrorEnvelope),
    ),
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
    if let Some(resolved_ms) = state.store.resolution_ms(&token_id).await?
        && resolved_ms <= at_ms
    {
        return Err(ApiError::not_found(format!(
            "the market of token {token_id} resolved at {resolved_ms}: there is no order book after resolution; ask for an `at` before it"
        )));
    }

    let store = &state.store;
    let full_state = store
        .newest_book_state(&token_id, at_ms, retention_start, true)
        .await?;
    let snapshot = store
        .newest_snapshot(&token_id, at_ms, retention_start)
        .await?;
    let base = match (full_state, snapshot) {
        (Some(full), Some(snapshot)) if snapshot.timestamp > full.timestamp => {
            Base::snapshot(snapshot)
        }
        (Some(full), _) => Base::state(full, "book_state_full_depth"),
        (None, Some(snapshot)) => Base::snapshot(snapshot),
        (None, None) => {
            // No full picture within the retention: the newest top-levels state is the best
            // base there is (levels beyond its top may be missing after deletions).
            let latest = store
                .newest_book_state(&token_id, at_ms, retention_start, false)
                .await?
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "no book known for token {token_id} at or before {at_ms}"
                    ))
                })?;
            Base::state(latest, "book_state_top_levels")
        }
    };
    let base_time = base.levels.timestamp;
    let mut book = L2Book::default();
    replace_levels(&mut book, &base.levels);

    // Later snapshots replace the book; changes set levels. Both in event-time order,
    // snapshots first at equal times (a snapshot is the state before that instant's changes).
    let snapshots = store.snapshots_between(&token_id, base_time, at_ms).await?;
    let changes = store
        .changes_between(&token_id, base_time, at_ms, MAX_REPLAYED_EVENTS + 1)
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
            replace_levels(&mut book, &snapshot);
            replayed += 1;
        }
        // An unknown side code cannot be written by the sink (Enum8); read as a bid as before.
        let side = Side::from_code(change.side).unwrap_or(Side::Buy);
        book.set_level(side, change.price, change.size);
        state_time = change.timestamp;
        replayed += 1;
    }
    for snapshot in snapshots {
        replace_levels(&mut book, &snapshot);
        state_time = snapshot.timestamp;
        replayed += 1;
    }
    let gaps = store
        .gaps_of_book(&token_id, base_time, at_ms)
        .await?
        .into_iter()
        .map(gap_view)
        .collect();
    Ok(Json(respond(
        token_id,
        at_ms,
        state_time,
        base.source,
        base_time,
        replayed,
        &book,
        depth,
        gaps,
        !base.consistent,
    )))
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
