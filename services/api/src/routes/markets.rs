//! `/v1/markets`, `/v1/markets/{condition_id}`, `/v1/events`, `/v1/events/{id}`.

use axum::{
    Json,
    extract::{Path, RawQuery, State},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{amount_opt, price_opt};
use polytape_clickhouse::rows::{EventRow, MarketRow};

use crate::{
    error::{ApiError, ErrorEnvelope},
    params::{Cursor, Params, check_condition_id, check_event_id},
    state::AppState,
    store::ListFilter,
};

/// One outcome token of a market.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub token_id: String,
    pub outcome: Option<String>,
    /// Whether this token won, once the market resolved.
    pub winner: Option<bool>,
}

/// Trading fees in basis points.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeesView {
    pub maker_base_fee_bps: Option<i32>,
    pub taker_base_fee_bps: Option<i32>,
    pub fees_enabled: Option<bool>,
}

/// How the market resolved, if it did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResolutionView {
    pub status: Option<String>,
    pub winning_token_id: Option<String>,
}

/// A market (a condition with its outcome tokens). Decimals are exact strings; times are UTC
/// epoch milliseconds.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarketView {
    pub condition_id: String,
    pub question_id: Option<String>,
    pub gamma_market_id: Option<String>,
    pub slug: Option<String>,
    pub question: String,
    pub description: Option<String>,
    pub event_ids: Vec<String>,
    pub tokens: Vec<TokenView>,
    pub active: bool,
    pub closed: bool,
    pub archived: bool,
    pub accepting_orders: bool,
    pub enable_order_book: bool,
    pub neg_risk: bool,
    pub neg_risk_market_id: Option<String>,
    /// Minimum price increment, e.g. "0.01".
    pub tick_size: Option<String>,
    pub min_order_size: Option<String>,
    pub fees: FeesView,
    pub resolution: ResolutionView,
    pub tags: Vec<String>,
    pub start_time_ms: Option<i64>,
    pub end_time_ms: Option<i64>,
    pub created_time_ms: Option<i64>,
    pub closed_time_ms: Option<i64>,
    pub volume: Option<String>,
    pub liquidity: Option<String>,
    /// When Polytape last saw this market change.
    pub updated_at_ms: i64,
}

impl From<MarketRow> for MarketView {
    fn from(row: MarketRow) -> Self {
        let tokens = row
            .token_ids
            .iter()
            .enumerate()
            .map(|(index, token_id)| TokenView {
                token_id: token_id.clone(),
                outcome: row.token_outcomes.get(index).cloned(),
                winner: row.token_winners.get(index).copied().flatten(),
            })
            .collect();
        Self {
            condition_id: row.condition_id,
            question_id: row.question_id,
            gamma_market_id: row.gamma_market_id,
            slug: row.slug,
            question: row.question,
            description: row.description,
            event_ids: row.event_ids,
            tokens,
            active: row.active,
            closed: row.closed,
            archived: row.archived,
            accepting_orders: row.accepting_orders,
            enable_order_book: row.enable_order_book,
            neg_risk: row.neg_risk,
            neg_risk_market_id: row.neg_risk_market_id,
            tick_size: price_opt(row.tick_size),
            min_order_size: price_opt(row.min_order_size),
            fees: FeesView {
                maker_base_fee_bps: row.maker_base_fee_bps,
                taker_base_fee_bps: row.taker_base_fee_bps,
                fees_enabled: row.fees_enabled,
            },
            resolution: ResolutionView {
                status: row.resolution_status,
                winning_token_id: row.winning_token_id,
            },
            tags: row.tags,
            start_time_ms: row.start_time,
            end_time_ms: row.end_time,
            created_time_ms: row.created_time,
            closed_time_ms: row.closed_time,
            volume: amount_opt(row.volume),
            liquidity: amount_opt(row.liquidity),
            updated_at_ms: row.updated_at,
        }
    }
}

/// A page of markets.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarketsPage {
    pub data: Vec<MarketView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The filters of the markets and events lists (`event_id` for markets only).
fn list_filter(params: &Params, event_filter: bool) -> Result<ListFilter, ApiError> {
    let bounded = |name: &str, max_chars: usize| -> Result<Option<String>, ApiError> {
        match params.text(name)? {
            Some(text) if text.chars().count() > max_chars => Err(ApiError::invalid(format!(
                "`{name}` must be at most {max_chars} characters"
            ))),
            text => Ok(text.map(str::to_owned)),
        }
    };
    Ok(ListFilter {
        text: bounded("q", 200)?,
        active: params.boolean("active")?,
        closed: params.boolean("closed")?,
        tag: bounded("tag", 200)?,
        event_id: match params.text("event_id")? {
            Some(event_id) if event_filter => Some(check_event_id(event_id)?),
            _ => None,
        },
        updated_since_ms: params.time_ms("updated_since")?,
    })
}

const MARKET_PARAMS: &[&str] = &[
    "q",
    "active",
    "closed",
    "tag",
    "event_id",
    "updated_since",
    "limit",
    "cursor",
];

/// Markets, filtered, in condition id order.
#[utoipa::path(
    get,
    path = "/v1/markets",
    tag = "markets",
    params(
        ("q" = Option<String>, Query, description = "Text contained in the question or slug (case-insensitive)"),
        ("active" = Option<bool>, Query, description = "Only active (true) or inactive (false) markets"),
        ("closed" = Option<bool>, Query, description = "Only closed (true) or open (false) markets"),
        ("tag" = Option<String>, Query, description = "Only markets with this tag"),
        ("event_id" = Option<String>, Query, description = "Only markets of this event"),
        ("updated_since" = Option<String>, Query, description = "Only markets changed at or after this time (RFC 3339 or epoch ms)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of markets", body = MarketsPage),
        (status = 400, description = "Invalid or unknown parameter", body = ErrorEnvelope),
    ),
)]
pub async fn list_markets(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<MarketsPage>, ApiError> {
    let params = Params::parse(raw.as_deref(), MARKET_PARAMS)?;
    let limit = params.limit(100, 1000)?;
    let (fingerprint, cursor) = params.cursor(&["limit", "cursor"])?;
    let filter = list_filter(&params, true)?;
    let after = cursor.as_ref().map_or("", |cursor| cursor.id.as_str());
    let page = state.store.markets(&filter, after, limit).await?;
    let next_cursor = page
        .last_if_more()
        .map(|last| Cursor::after(0, &last.condition_id, 0, &fingerprint));
    Ok(Json(MarketsPage {
        data: page.rows.into_iter().map(MarketView::from).collect(),
        next_cursor,
    }))
}

/// One market with its tokens, outcomes, tick size, fees and resolution.
#[utoipa::path(
    get,
    path = "/v1/markets/{condition_id}",
    tag = "markets",
    params(("condition_id" = String, Path, pattern = "^0x[0-9a-fA-F]{64}$", description = "The market's condition id")),
    responses(
        (status = 200, description = "The market", body = MarketView),
        (status = 400, description = "Invalid id or unknown parameter", body = ErrorEnvelope),
        (status = 404, description = "No such market", body = ErrorEnvelope),
    ),
)]
pub async fn get_market(
    State(state): State<AppState>,
    Path(condition_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<MarketView>, ApiError> {
    Params::parse(raw.as_deref(), &[])?;
    let condition_id = check_condition_id("condition_id", &condition_id)?;
    let row = state.store.market(&condition_id).await?;
    row.map(|row| Json(MarketView::from(row)))
        .ok_or_else(|| ApiError::not_found(format!("no market {condition_id}")))
}

/// An event: a group of related markets.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub event_id: String,
    pub slug: Option<String>,
    pub ticker: Option<String>,
    pub title: String,
    pub description: Option<String>,
    pub active: bool,
    pub closed: bool,
    pub archived: bool,
    pub neg_risk: bool,
    pub start_time_ms: Option<i64>,
    pub end_time_ms: Option<i64>,
    pub created_time_ms: Option<i64>,
    pub volume: Option<String>,
    pub liquidity: Option<String>,
    pub open_interest: Option<String>,
    pub tags: Vec<String>,
    pub series_slug: Option<String>,
    pub market_condition_ids: Vec<String>,
    pub updated_at_ms: i64,
}

impl From<EventRow> for EventView {
    fn from(row: EventRow) -> Self {
        Self {
            event_id: row.event_id,
            slug: row.slug,
            ticker: row.ticker,
            title: row.title,
            description: row.description,
            active: row.active,
            closed: row.closed,
            archived: row.archived,
            neg_risk: row.neg_risk,
            start_time_ms: row.start_time,
            end_time_ms: row.end_time,
            created_time_ms: row.created_time,
            volume: amount_opt(row.volume),
            liquidity: amount_opt(row.liquidity),
            open_interest: amount_opt(row.open_interest),
            tags: row.tags,
            series_slug: row.series_slug,
            market_condition_ids: row.market_condition_ids,
            updated_at_ms: row.updated_at,
        }
    }
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsPage {
    pub data: Vec<EventView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

const EVENT_PARAMS: &[&str] = &[
    "q",
    "active",
    "closed",
    "tag",
    "updated_since",
    "limit",
    "cursor",
];

/// Events, filtered, in event id order.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "markets",
    params(
        ("q" = Option<String>, Query, description = "Text contained in the title or slug (case-insensitive)"),
        ("active" = Option<bool>, Query, description = "Only active (true) or inactive (false) events"),
        ("closed" = Option<bool>, Query, description = "Only closed (true) or open (false) events"),
        ("tag" = Option<String>, Query, description = "Only events with this tag"),
        ("updated_since" = Option<String>, Query, description = "Only events changed at or after this time (RFC 3339 or epoch ms)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of events", body = EventsPage),
        (status = 400, description = "Invalid or unknown parameter", body = ErrorEnvelope),
    ),
)]
pub async fn list_events(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<EventsPage>, ApiError> {
    let params = Params::parse(raw.as_deref(), EVENT_PARAMS)?;
    let limit = params.limit(100, 1000)?;
    let (fingerprint, cursor) = params.cursor(&["limit", "cursor"])?;
    let filter = list_filter(&params, false)?;
    let after = cursor.as_ref().map_or("", |cursor| cursor.id.as_str());
    let page = state.store.events(&filter, after, limit).await?;
    let next_cursor = page
        .last_if_more()
        .map(|last| Cursor::after(0, &last.event_id, 0, &fingerprint));
    Ok(Json(EventsPage {
        data: page.rows.into_iter().map(EventView::from).collect(),
        next_cursor,
    }))
}

/// One event with the condition ids of its markets.
#[utoipa::path(
    get,
    path = "/v1/events/{event_id}",
    tag = "markets",
    params(("event_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,100}$", description = "The event id")),
    responses(
        (status = 200, description = "The event", body = EventView),
        (status = 400, description = "Invalid id or unknown parameter", body = ErrorEnvelope),
        (status = 404, description = "No such event", body = ErrorEnvelope),
    ),
)]
pub async fn get_event(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<EventView>, ApiError> {
    Params::parse(raw.as_deref(), &[])?;
    let event_id = check_event_id(&event_id)?;
    let row = state.store.event(&event_id).await?;
    row.map(|row| Json(EventView::from(row)))
        .ok_or_else(|| ApiError::not_found(format!("no event {event_id}")))
}
