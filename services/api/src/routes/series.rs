//! `/v1/candles` and `/v1/prices/history`: time series over a bounded number of points.

use axum::{
    Json,
    extract::{RawQuery, State},
};
use serde::Serialize;
use utoipa::ToSchema;

use polytape_clickhouse::rows::CandleRow;

use crate::{
    error::{ApiError, ErrorEnvelope},
    params::{Exact, Params, price_text},
    state::AppState,
};

/// Most points one request may cover; beyond it the request is refused, not truncated.
pub const MAX_POINTS: i64 = 10_000;

const INTERVALS: &[(&str, i64)] = &[
    ("1m", 60_000),
    ("5m", 300_000),
    ("15m", 900_000),
    ("1h", 3_600_000),
    ("4h", 14_400_000),
    ("1d", 86_400_000),
];

/// One OHLCV candle. Decimals are exact strings.
#[derive(Debug, Serialize, ToSchema)]
pub struct CandleView {
    /// Start of the interval (UTC ms, aligned to the interval).
    pub open_time_ms: i64,
    /// End of the interval (exclusive).
    pub close_time_ms: i64,
    #[schema(value_type = String)]
    pub open: Exact,
    #[schema(value_type = String)]
    pub high: Exact,
    #[schema(value_type = String)]
    pub low: Exact,
    #[schema(value_type = String)]
    pub close: Exact,
    #[schema(value_type = String)]
    pub volume: Exact,
    #[schema(value_type = String)]
    pub notional: Exact,
    /// null for filled (empty) intervals.
    #[schema(value_type = Option<String>)]
    pub vwap: Option<Exact>,
    pub trade_count: i64,
    /// The interval is closed: only a trade found late (up to the builder's correction
    /// horizon, 24 h by default) can still change it, and that is counted in `revision`.
    pub is_final: bool,
    /// Corrections after the candle was final (trades that arrived late); 0: never corrected.
    pub revision: u32,
    /// true when the candle was corrected after it was final (`revision` > 0).
    pub revised: bool,
    /// true when the interval had no trades and was filled from the previous close.
    pub filled: bool,
}

/// Candles of one token and interval.
#[derive(Debug, Serialize, ToSchema)]
pub struct CandlesResponse {
    pub token_id: String,
    pub interval: String,
    /// First interval start covered (`from` aligned down).
    pub from_ms: i64,
    /// End of the range (exclusive).
    pub to_ms: i64,
    pub fill: String,
    pub candles: Vec<CandleView>,
}

/// Resolves `from`/`to` into an aligned range, checking retention and the point budget.
fn series_range(state: &AppState, params: &Params, step_ms: i64) -> Result<(i64, i64), ApiError> {
    let from_ms = params
        .time_ms("from")?
        .ok_or_else(|| ApiError::invalid("`from` is required"))?;
    let to_ms = params.time_ms("to")?.unwrap_or_else(|| state.now_ms());
    state.check_retention("from", from_ms)?;
    if to_ms <= from_ms {
        return Err(ApiError::invalid("`to` must be after `from`"));
    }
    let start_ms = from_ms.div_euclid(step_ms) * step_ms;
    let points = (to_ms - start_ms + step_ms - 1) / step_ms;
    if points > MAX_POINTS {
        return Err(ApiError::TooManyPoints {
            message: format!(
                "the range covers {points} points; at most {MAX_POINTS} per request: narrow `from`/`to` or use a coarser step"
            ),
        });
    }
    Ok((start_ms, to_ms))
}

/// OHLCV candles; `fill=previous` fills intervals without trades from the previous close.
#[utoipa::path(
    get,
    path = "/v1/candles",
    tag = "prices",
    params(
        ("token_id" = String, Query, pattern = "^[0-9]{1,80}$", description = "Outcome token id"),
        ("interval" = String, Query, description = "1m, 5m, 15m, 1h, 4h or 1d"),
        ("from" = String, Query, description = "Range start (RFC 3339 or epoch ms), aligned down to the interval; within the retention"),
        ("to" = Option<String>, Query, description = "Range end, exclusive (default: now)"),
        ("fill" = Option<String>, Query, description = "none (default) or previous"),
    ),
    responses(
        (status = 200, description = "The candles, oldest first", body = CandlesResponse),
        (status = 400, description = "Invalid or unknown parameter, more than 10000 points, or a range older than the retention", body = ErrorEnvelope),
    ),
)]
pub async fn candles(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<CandlesResponse>, ApiError> {
    let params = Params::parse(
        raw.as_deref(),
        &["token_id", "interval", "from", "to", "fill"],
    )?;
    let token_id = params
        .token_id("token_id")?
        .ok_or_else(|| ApiError::invalid("`token_id` is required"))?;
    let labels: Vec<&str> = INTERVALS.iter().map(|(label, _)| *label).collect();
    let interval = params
        .choice("interval", &labels)?
        .ok_or_else(|| ApiError::invalid("`interval` is required (1m, 5m, 15m, 1h, 4h or 1d)"))?;
    let step_ms = INTERVALS
        .iter()
        .find(|(label, _)| *label == interval)
        .map_or(60_000, |(_, length)| *length);
    let fill_previous = params.choice("fill", &["none", "previous"])? == Some("previous");
    let (start_ms, to_ms) = series_range(&state, &params, step_ms)?;

    let rows = state
        .store
        .candles(&token_id, interval, start_ms, to_ms)
        .await?;

    let candles = if fill_previous {
        // The close before the range seeds the fill; only within the retention window.
        let previous_close = state
            .store
            .close_before(&token_id, interval, start_ms, state.retention_start_ms())
            .await?;
        fill_candles(rows, previous_close, start_ms, to_ms, step_ms)
    } else {
        rows.into_iter().map(candle_view).collect()
    };
    Ok(Json(CandlesResponse {
        token_id,
        interval: interval.to_owned(),
        from_ms: start_ms,
        to_ms,
        fill: if fill_previous { "previous" } else { "none" }.to_owned(),
        candles,
    }))
}

fn candle_view(row: CandleRow) -> CandleView {
    CandleView {
        open_time_ms: row.open_time,
        close_time_ms: row.close_time,
        open: Exact::price(row.open),
        high: Exact::price(row.high),
        low: Exact::price(row.low),
        close: Exact::price(row.close),
        volume: Exact {
            unscaled: row.volume,
            scale: 6,
        },
        notional: Exact {
            unscaled: row.notional,
            scale: 12,
        },
        vwap: Some(Exact {
            unscaled: row.vwap,
            scale: 12,
        }),
        trade_count: row.trade_count,
        is_final: row.is_final,
        revision: row.revision,
        revised: row.revision > 0,
        filled: false,
    }
}

/// Every interval of the range: stored candles as they are, empty intervals after the first
/// known close as flat candles at that close (none before any close is known).
fn fill_candles(
    rows: Vec<CandleRow>,
    mut previous_close: Option<i64>,
    start_ms: i64,
    to_ms: i64,
    step_ms: i64,
) -> Vec<CandleView> {
    let mut rows = rows.into_iter().peekable();
    let mut filled = Vec::new();
    let mut open_time = start_ms;
    while open_time < to_ms {
        if rows.peek().is_some_and(|row| row.open_time == open_time) {
            if let Some(row) = rows.next() {
                previous_close = Some(row.close);
                filled.push(candle_view(row));
            }
        } else if let Some(close) = previous_close {
            let price = Exact::price(close);
            let zero = Exact {
                unscaled: 0,
                scale: 0,
            };
            filled.push(CandleView {
                open_time_ms: open_time,
                close_time_ms: open_time + step_ms,
                open: price,
                high: price,
                low: price,
                close: price,
                volume: zero,
                notional: zero,
                vwap: None,
                trade_count: 0,
                is_final: true,
                revision: 0,
                revised: false,
                filled: true,
            });
        }
        open_time += step_ms;
    }
    filled
}

/// One price point.
#[derive(Debug, Serialize, ToSchema)]
pub struct PricePointView {
    /// Bucket start, UTC ms.
    pub t: i64,
    /// The last price seen in the bucket.
    pub p: String,
}

/// A token's price history.
#[derive(Debug, Serialize, ToSchema)]
pub struct PriceHistoryResponse {
    pub token_id: String,
    pub fidelity_minutes: i64,
    pub from_ms: i64,
    pub to_ms: i64,
    pub history: Vec<PricePointView>,
}

/// Price history from upstream's price series, one point per `fidelity` minutes (the last
/// price in each bucket).
#[utoipa::path(
    get,
    path = "/v1/prices/history",
    tag = "prices",
    params(
        ("token_id" = String, Query, pattern = "^[0-9]{1,80}$", description = "Outcome token id"),
        ("from" = String, Query, description = "Range start (RFC 3339 or epoch ms); within the retention"),
        ("to" = Option<String>, Query, description = "Range end, exclusive (default: now)"),
        ("fidelity" = Option<i64>, Query, minimum = 1, maximum = 1440, description = "Minutes per point (default 1)"),
    ),
    responses(
        (status = 200, description = "The points, oldest first", body = PriceHistoryResponse),
        (status = 400, description = "Invalid or unknown parameter, more than 10000 points, or a range older than the retention", body = ErrorEnvelope),
    ),
)]
pub async fn price_history(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<PriceHistoryResponse>, ApiError> {
    let params = Params::parse(raw.as_deref(), &["token_id", "from", "to", "fidelity"])?;
    let token_id = params
        .token_id("token_id")?
        .ok_or_else(|| ApiError::invalid("`token_id` is required"))?;
    let fidelity_minutes = params.integer("fidelity", 1, 1440)?.unwrap_or(1);
    let step_ms = fidelity_minutes * 60_000;
    let (start_ms, to_ms) = series_range(&state, &params, step_ms)?;
    let rows = state
        .store
        .price_buckets(&token_id, step_ms, start_ms, to_ms)
        .await?;
    Ok(Json(PriceHistoryResponse {
        token_id,
        fidelity_minutes,
        from_ms: start_ms,
        to_ms,
        history: rows
            .into_iter()
            .map(|row| PricePointView {
                t: row.bucket_ms,
                p: price_text(row.price),
            })
            .collect(),
    }))
}
