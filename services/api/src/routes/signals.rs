//! `/v1/signals`: the signals `services/signals` raised, with what explains each.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{RawQuery, State},
};
use serde::Serialize;
use utoipa::ToSchema;

use polytape_clickhouse::rows::SignalRow;
use polytape_model::SignalKind;

use crate::{
    error::{ApiError, ErrorEnvelope},
    params::{Cursor, Params, check_event_id},
    state::AppState,
    store::SignalFilter,
};

/// One signal: the rule and thresholds that fired and the exact inputs that made it fire.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignalView {
    /// Deterministic (rule + subject + window start): a window's opening and closing are one
    /// signal.
    pub signal_id: String,
    /// LARGE_TRADE_NEW_WALLET, NEG_RISK_ARBITRAGE, BINARY_ARBITRAGE, PRICE_MOVE or VOLUME_SPIKE.
    pub kind: String,
    pub rule_id: String,
    pub rule_version: i32,
    /// A wallet, a market, a negative-risk event with the window's direction, or a token.
    pub subject: String,
    pub condition_ids: Vec<String>,
    pub token_ids: Vec<String>,
    pub event_id: Option<String>,
    pub window_start_ms: i64,
    /// null while a window is still open.
    pub window_end_ms: Option<i64>,
    /// Threshold name → exact value as text.
    pub thresholds: BTreeMap<String, String>,
    /// Input name → exact value as text (decimals, integers or words).
    pub inputs: BTreeMap<String, String>,
    /// Trade ids, or book times as `token@ms`.
    pub links: Vec<String>,
}

fn signal_view(row: SignalRow) -> SignalView {
    // A code no variant has cannot be written by the sink; it reads as its number.
    let kind = SignalKind::from_code(row.kind)
        .map_or_else(|| row.kind.to_string(), |kind| kind.name().to_owned());
    SignalView {
        signal_id: row.signal_id,
        kind,
        rule_id: row.rule_id,
        rule_version: row.rule_version,
        subject: row.subject,
        condition_ids: row.condition_ids,
        token_ids: row.token_ids,
        event_id: row.event_id,
        window_start_ms: row.window_start,
        window_end_ms: row.window_end,
        thresholds: row
            .threshold_names
            .into_iter()
            .zip(row.threshold_values)
            .collect(),
        inputs: row.input_names.into_iter().zip(row.input_values).collect(),
        links: row.links,
    }
}

/// A page of signals.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignalsPage {
    pub data: Vec<SignalView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Signals whose window started in a range, oldest first.
#[utoipa::path(
    get,
    path = "/v1/signals",
    tag = "signals",
    params(
        ("kind" = Option<String>, Query, description = "LARGE_TRADE_NEW_WALLET, NEG_RISK_ARBITRAGE, BINARY_ARBITRAGE, PRICE_MOVE or VOLUME_SPIKE"),
        ("condition_id" = Option<String>, Query, pattern = "^0x[0-9a-fA-F]{64}$", description = "Only signals about this market"),
        ("token_id" = Option<String>, Query, pattern = "^[0-9]{1,80}$", description = "Only signals naming this token"),
        ("wallet" = Option<String>, Query, pattern = "^0x[0-9a-fA-F]{40}$", description = "Only signals about this wallet"),
        ("event_id" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]{1,100}$", description = "Only signals about this event"),
        ("rule_id" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]{1,100}$", description = "Only signals of this rule"),
        ("from" = Option<String>, Query, description = "Window start from (RFC 3339 or epoch ms; default: 24 h before `to`); within the retention"),
        ("to" = Option<String>, Query, description = "Window start before, exclusive (default: now)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of signals", body = SignalsPage),
        (status = 400, description = "Invalid or unknown parameter, or a range older than the retention", body = ErrorEnvelope),
    ),
)]
pub async fn signals(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<SignalsPage>, ApiError> {
    let params = Params::parse(
        raw.as_deref(),
        &[
            "kind",
            "condition_id",
            "token_id",
            "wallet",
            "event_id",
            "rule_id",
            "from",
            "to",
            "limit",
            "cursor",
        ],
    )?;
    let kind_names: Vec<&str> = SignalKind::ALL.iter().map(|kind| kind.name()).collect();
    let filter = SignalFilter {
        kind: params.choice("kind", &kind_names)?,
        condition_id: params.condition_id("condition_id")?,
        token_id: params.token_id("token_id")?,
        wallet: params.wallet("wallet")?,
        event_id: params.text("event_id")?.map(check_event_id).transpose()?,
        rule_id: params
            .text("rule_id")?
            .map(|text| {
                check_event_id(text).map_err(|_| {
                    ApiError::invalid("`rule_id` must be 1 to 100 letters, digits, `-` or `_`")
                })
            })
            .transpose()?,
    };
    let limit = params.limit(100, 1000)?;
    let (fingerprint, cursor) = params.cursor(&["limit", "cursor"])?;
    let (from_ms, to_ms) = super::last_day_range(&params, &state, cursor.as_ref())?;
    let after = cursor.as_ref().map(Cursor::position);
    let page = state
        .store
        .signals(&filter, from_ms, to_ms, after.as_ref(), limit)
        .await?;
    let next_cursor = page
        .last_if_more()
        .map(|last| Cursor::after(last.window_start, &last.signal_id, to_ms, &fingerprint));
    Ok(Json(SignalsPage {
        data: page.rows.into_iter().map(signal_view).collect(),
        next_cursor,
    }))
}
