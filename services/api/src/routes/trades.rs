//! `/v1/trades`: fills with keyset pagination that stays exact while trades keep arriving.
//!
//! Trades are walked in `(timestamp, trade_id)` order, a total order (trade ids are unique),
//! and each page starts strictly after the last row of the previous one. The first page fixes
//! the walk's upper time bound (`to`, or the time of the first request), carried in the cursor,
//! so a walk ends even while new trades arrive, and every trade that existed when the walk
//! started is returned exactly once. Reads use `FINAL`, so a redelivered trade never shows twice.

use axum::{
    Json,
    extract::{RawQuery, State},
};
use serde::Serialize;
use utoipa::ToSchema;

use polytape_model::Side;

use polytape_clickhouse::rows::TradeRow;

use crate::{
    error::{ApiError, ErrorEnvelope},
    params::{Cursor, Exact, Params, decimal_text},
    state::AppState,
    store::{TradeFilter, TradeTotals},
};

/// One fill.
#[derive(Debug, Serialize, ToSchema)]
pub struct TradeView {
    /// Polytape's derived id (upstream has none).
    pub trade_id: String,
    pub condition_id: String,
    pub token_id: String,
    pub outcome: Option<String>,
    pub outcome_index: Option<i32>,
    /// `BUY` or `SELL`.
    pub side: String,
    #[schema(value_type = String)]
    pub price: Exact,
    #[schema(value_type = String)]
    pub size: Exact,
    pub timestamp_ms: i64,
    pub transaction_hash: String,
    pub wallet: String,
}

/// Totals over every trade matching the filters (all pages).
#[derive(Debug, Serialize, ToSchema)]
pub struct TradeAggregate {
    pub count: u64,
    /// Sum of sizes.
    pub volume: String,
    /// Sum of price × size.
    pub notional: String,
    /// notional / volume, truncated to 12 decimals; null without trades.
    pub vwap: Option<String>,
}

/// A page of trades.
#[derive(Debug, Serialize, ToSchema)]
pub struct TradesPage {
    pub data: Vec<TradeView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// With `aggregate=true`: totals over the whole filter (not just this page).
    pub aggregate: Option<TradeAggregate>,
}

const TRADE_PARAMS: &[&str] = &[
    "market",
    "token_id",
    "wallet",
    "side",
    "from",
    "to",
    "sort",
    "limit",
    "cursor",
    "aggregate",
];

/// Longest span `aggregate=true` sums over.
pub const MAX_AGGREGATE_DAYS: i64 = 31;

/// Trades of a market, token or wallet.
#[utoipa::path(
    get,
    path = "/v1/trades",
    tag = "trades",
    params(
        ("market" = Option<String>, Query, pattern = "^0x[0-9a-fA-F]{64}$", description = "Condition id; one of market, token_id or wallet is required"),
        ("token_id" = Option<String>, Query, pattern = "^[0-9]{1,80}$", description = "Outcome token id"),
        ("wallet" = Option<String>, Query, pattern = "^0x[0-9a-fA-F]{40}$", description = "Trader's proxy wallet"),
        ("side" = Option<String>, Query, description = "BUY or SELL"),
        ("from" = Option<String>, Query, description = "Trades at or after (RFC 3339 or epoch ms); must be within the retention"),
        ("to" = Option<String>, Query, description = "Trades before (exclusive; default: now)"),
        ("sort" = Option<String>, Query, description = "asc or desc (default desc: newest first)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
        ("aggregate" = Option<bool>, Query, description = "Add count, volume, notional and VWAP over the whole filter; needs `from`, at most 31 days before `to`"),
    ),
    responses(
        (status = 200, description = "A page of trades", body = TradesPage),
        (status = 400, description = "Invalid or unknown parameter, or a range older than the retention", body = ErrorEnvelope),
    ),
)]
pub async fn list_trades(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<TradesPage>, ApiError> {
    let params = Params::parse(raw.as_deref(), TRADE_PARAMS)?;
    let market = params.condition_id("market")?;
    let token_id = params.token_id("token_id")?;
    let wallet = params.wallet("wallet")?;
    if market.is_none() && token_id.is_none() && wallet.is_none() {
        return Err(ApiError::invalid(
            "one of `market`, `token_id` or `wallet` is required",
        ));
    }
    let side = params.choice("side", &["BUY", "SELL"])?;
    let descending = params.choice("sort", &["asc", "desc"])? != Some("asc");
    let limit = params.limit(100, 1000)?;
    let aggregate = params.boolean("aggregate")?.unwrap_or(false);
    let from_ms = params.time_ms("from")?;
    let to_ms = params.time_ms("to")?;
    if let Some(from) = from_ms {
        state.check_retention("from", from)?;
    }
    if let Some(to) = to_ms {
        state.check_retention("to", to)?;
    }
    if let (Some(from), Some(to)) = (from_ms, to_ms)
        && to <= from
    {
        return Err(ApiError::invalid("`to` must be after `from`"));
    }
    if aggregate {
        // Totals scan every row of the filter: bounded to a window the user names.
        let Some(from) = from_ms else {
            return Err(ApiError::invalid(format!(
                "`aggregate=true` needs `from` (and at most {MAX_AGGREGATE_DAYS} days up to `to`, default now)"
            )));
        };
        let to = to_ms.unwrap_or_else(|| state.now_ms());
        if to - from > MAX_AGGREGATE_DAYS * 86_400_000 {
            return Err(ApiError::invalid(format!(
                "`aggregate=true` covers at most {MAX_AGGREGATE_DAYS} days: narrow `from`/`to`"
            )));
        }
    }
    let (fingerprint, cursor) = params.cursor(&["limit", "cursor", "aggregate"])?;
    // The walk's upper bound: fixed by the first page (exclusive).
    let until_ms = cursor
        .as_ref()
        .map(|cursor| cursor.until_ms)
        .or(to_ms)
        .unwrap_or_else(|| state.now_ms() + 1);
    let filter = TradeFilter {
        market,
        token_id,
        wallet,
        side: side.map(str::to_owned),
        from_ms,
        until_ms,
    };
    let after = cursor.as_ref().map(Cursor::position);
    let page = state
        .store
        .trades(&filter, after.as_ref(), descending, limit)
        .await?;
    let next_cursor = page
        .last_if_more()
        .map(|last| Cursor::after(last.timestamp, &last.trade_id, until_ms, &fingerprint));
    let aggregate = if aggregate {
        Some(aggregate_view(&state.store.trade_totals(&filter).await?))
    } else {
        None
    };
    Ok(Json(TradesPage {
        data: page.rows.into_iter().map(trade_view).collect(),
        next_cursor,
        aggregate,
    }))
}

fn trade_view(row: TradeRow) -> TradeView {
    TradeView {
        trade_id: row.trade_id,
        condition_id: row.condition_id,
        token_id: row.token_id,
        outcome: row.outcome,
        outcome_index: row.outcome_index,
        side: Side::from_code(row.side)
            .unwrap_or(Side::Buy)
            .name()
            .to_owned(),
        price: Exact::price(row.price),
        size: Exact::price(row.size),
        timestamp_ms: row.timestamp,
        transaction_hash: row.transaction_hash,
        wallet: row.proxy_wallet,
    }
}

/// VWAP at scale 12, truncated: notional (scale 12) × 10^6 / volume (scale 6).
fn aggregate_view(totals: &TradeTotals) -> TradeAggregate {
    let vwap = if totals.volume > 0 {
        totals
            .notional
            .checked_mul(1_000_000)
            .map(|scaled| decimal_text(scaled / totals.volume, 12))
    } else {
        None
    };
    TradeAggregate {
        count: totals.count,
        volume: decimal_text(totals.volume, 6),
        notional: decimal_text(totals.notional, 12),
        vwap,
    }
}
