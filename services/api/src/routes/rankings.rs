//! `/v1/rankings`: the markets ranked by their 24-hour notional, as the signals service's
//! latest snapshot at or before a time says (every 5 minutes by default; a snapshot more than
//! a day before `at` is not looked for).

use axum::{
    Json,
    extract::{RawQuery, State},
};
use serde::Serialize;
use utoipa::ToSchema;

use polytape_clickhouse::rankings::RankingRow;

use crate::{
    error::{ApiError, ErrorEnvelope},
    params::{Params, decimal_text},
    state::AppState,
};

/// One market of a ranking snapshot. Amounts are exact decimal text.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RankingView {
    pub rank: u32,
    pub condition_id: String,
    /// The 24-hour notional (USDC): what the rank orders by.
    pub score: String,
    pub volume_24h: String,
    /// The notional of the 24 hours before those.
    pub volume_prev_24h: String,
    /// `volume_24h / volume_prev_24h − 1`; null without a previous day.
    pub volume_change: Option<String>,
    pub trades_24h: u64,
    pub wallets_24h: u64,
    /// Mean spread of the market's tokens' latest book states within the hour.
    pub spread: Option<String>,
    /// Depth within five ticks of the top, both sides, all tokens (shares).
    pub depth_5_ticks: String,
}

/// A snapshot: its time and its markets by rank.
#[derive(Debug, Serialize, ToSchema)]
pub struct RankingsPage {
    /// The snapshot's time (UTC ms); null when there is none at or before `at`.
    pub snapshot_time_ms: Option<i64>,
    pub data: Vec<RankingView>,
}

fn ranking_view(row: RankingRow) -> RankingView {
    RankingView {
        rank: row.rank,
        condition_id: row.condition_id,
        score: decimal_text(row.score, 12),
        volume_24h: decimal_text(row.volume_24h, 12),
        volume_prev_24h: decimal_text(row.volume_prev_24h, 12),
        volume_change: row.volume_change.map(|change| decimal_text(change, 6)),
        trades_24h: row.trades_24h,
        wallets_24h: row.wallets_24h,
        spread: row.spread.map(|spread| decimal_text(i128::from(spread), 6)),
        depth_5_ticks: decimal_text(row.depth_5_ticks, 6),
    }
}

/// `GET /v1/rankings?at=&limit=`.
#[utoipa::path(
    get,
    path = "/v1/rankings",
    tag = "signals",
    params(
        ("at" = Option<String>, Query, description = "The snapshot at or before this time (RFC 3339 or epoch ms; default: now)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Markets, by rank (default 100)"),
    ),
    responses(
        (status = 200, description = "The latest ranking snapshot at or before `at`", body = RankingsPage),
        (status = 400, description = "Invalid or unknown parameter, or `at` outside the retention", body = ErrorEnvelope),
    ),
)]
pub async fn rankings(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<RankingsPage>, ApiError> {
    let params = Params::parse(raw.as_deref(), &["at", "limit"])?;
    let at_ms = params.time_ms("at")?.unwrap_or_else(|| state.now_ms());
    state.check_retention("at", at_ms)?;
    let limit = params.limit(100, 1000)?;
    let rows = state
        .store
        .ranking_snapshot(at_ms, u64::from(limit))
        .await?;
    Ok(Json(RankingsPage {
        snapshot_time_ms: rows.first().map(|row| row.snapshot_time),
        data: rows.into_iter().map(ranking_view).collect(),
    }))
}
