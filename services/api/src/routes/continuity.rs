//! `/v1/continuity`: declared gaps (disconnects, freezes, mismatches…) over a range.

use axum::{
    Json,
    extract::{RawQuery, State},
};
use serde::Serialize;
use utoipa::ToSchema;

use polytape_model::ContinuityKind;

use polytape_clickhouse::rows::ContinuityRow;

use crate::{
    error::{ApiError, ErrorEnvelope},
    params::{Cursor, Params},
    state::AppState,
};

/// One declared gap: data in `[gap_start_ms, gap_end_ms)` may be missing or wrong.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GapView {
    pub continuity_id: String,
    /// DISCONNECT, FREEZE, SUBSCRIPTION_REFUSED, RESYNC, BOOK_MISMATCH, UPSTREAM_GAP or OTHER.
    pub kind: String,
    pub token_ids: Vec<String>,
    pub gap_start_ms: i64,
    /// null while the gap is still open.
    pub gap_end_ms: Option<i64>,
    pub detected_at_ms: i64,
    pub source: String,
    pub reason: String,
}

pub(crate) fn gap_view(row: ContinuityRow) -> GapView {
    let kind = ContinuityKind::from_code(row.kind).unwrap_or(ContinuityKind::Other);
    GapView {
        continuity_id: row.continuity_id,
        kind: kind.name().to_owned(),
        token_ids: row.token_ids,
        gap_start_ms: row.gap_start,
        gap_end_ms: row.gap_end,
        detected_at_ms: row.detected_at,
        source: row.source,
        reason: row.reason,
    }
}

/// A page of gaps.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContinuityPage {
    pub data: Vec<GapView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Gaps overlapping a range, optionally of one token, oldest first.
#[utoipa::path(
    get,
    path = "/v1/continuity",
    tag = "continuity",
    params(
        ("token_id" = Option<String>, Query, pattern = "^[0-9]{1,80}$", description = "Only gaps that name this token"),
        ("from" = Option<String>, Query, description = "Range start (RFC 3339 or epoch ms; default: 24 h before `to`); within the retention"),
        ("to" = Option<String>, Query, description = "Range end, exclusive (default: now)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of gaps", body = ContinuityPage),
        (status = 400, description = "Invalid or unknown parameter, or a range older than the retention", body = ErrorEnvelope),
    ),
)]
pub async fn continuity(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ContinuityPage>, ApiError> {
    let params = Params::parse(
        raw.as_deref(),
        &["token_id", "from", "to", "limit", "cursor"],
    )?;
    let token_id = params.token_id("token_id")?;
    let limit = params.limit(100, 1000)?;
    let (fingerprint, cursor) = params.cursor(&["limit", "cursor"])?;
    let (from_ms, to_ms) = super::last_day_range(&params, &state, cursor.as_ref())?;
    let after = cursor.as_ref().map(Cursor::position);
    let page = state
        .store
        .gaps(token_id.as_deref(), from_ms, to_ms, after.as_ref(), limit)
        .await?;
    let next_cursor = page
        .last_if_more()
        .map(|last| Cursor::after(last.gap_start, &last.continuity_id, to_ms, &fingerprint));
    Ok(Json(ContinuityPage {
        data: page.rows.into_iter().map(gap_view).collect(),
        next_cursor,
    }))
}
