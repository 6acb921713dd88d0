//! The Data API's trades tape in either version, behind one call: a page of the fills of some
//! markets in a window of seconds, newest first.
//!
//! - **v1** `GET /trades`: `market=<csv>`, `start`/`end`, `limit` + `offset` (offset + limit
//!   ≤ 10,000), a bare JSON array; budget [`Endpoint::DataTrades`].
//! - **v2** `GET /v2/trades`: `condition=<csv>` (at most 20), cursor pagination only (an
//!   `offset` is a 400), `limit` ≤ 1,000, the `{data, pagination}` envelope; budget
//!   [`Endpoint::DataTradesV2`]. The brief documents that `start`/`end` apply to user queries
//!   and that condition queries use a fixed 3-year window; we send them and also apply the
//!   window ourselves (rows newer than `end` are passed over, the walk stops at the first row
//!   older than `start`), so a window is read right under either reading. An offset (the
//!   collector's walk reads a second denser than a page with offsets) is reached by following
//!   the cursor past that many rows.
//!
//! Both versions give a fill the same identity ([`crate::rest::trade_row`]), so a deployment
//! can switch versions without publishing a fill twice.

use serde::Deserialize;
use serde_json::Value;

use crate::{
    Endpoint, Upstream, UpstreamError,
    rest::{self, CursorPage},
};

/// Which trades tape the collector reads (`collector_trades_api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TradesApi {
    #[default]
    V1,
    V2,
}

impl TradesApi {
    /// The budget its requests take from.
    pub fn endpoint(self) -> Endpoint {
        match self {
            TradesApi::V1 => Endpoint::DataTrades,
            TradesApi::V2 => Endpoint::DataTradesV2,
        }
    }

    /// Caught-up markets polled together in one request: v1 takes a csv (50 condition ids
    /// keep the URL near 3.4 kB), v2 at most 20.
    pub fn markets_per_request(self) -> usize {
        match self {
            TradesApi::V1 => 50,
            TradesApi::V2 => 20,
        }
    }

    /// The request's address under the Data API base URL, for requests and dead letters.
    pub fn url(self, data_url: &str) -> String {
        let base = data_url.trim_end_matches('/');
        match self {
            TradesApi::V1 => format!("{base}/trades"),
            TradesApi::V2 => format!("{base}/v2/trades"),
        }
    }
}

/// Largest v2 `limit`.
const V2_MAX_LIMIT: u32 = 1_000;

/// One page of the fills of `markets` (comma-separated condition ids) in `[start, end]`
/// (inclusive seconds), makers included, newest first: at most `page_size` rows after
/// skipping `offset`. Rows are returned raw, for [`rest::trade_read`] to validate.
#[allow(clippy::too_many_arguments)]
pub async fn trades_page(
    upstream: &Upstream,
    api: TradesApi,
    data_url: &str,
    markets: &str,
    (start, end): (i64, i64),
    offset: u32,
    page_size: u32,
) -> Result<Vec<Value>, UpstreamError> {
    let url = api.url(data_url);
    if api == TradesApi::V1 {
        let query = [
            ("market", markets.to_owned()),
            ("takerOnly", "false".to_owned()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("limit", page_size.to_string()),
            ("offset", offset.to_string()),
        ];
        return upstream
            .get_page(api.endpoint(), &url, &query, rest::array_page)
            .await;
    }
    let wanted = offset as usize + page_size as usize;
    let mut kept: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![
            ("condition", markets.to_owned()),
            ("taker_only", "false".to_owned()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("limit", page_size.min(V2_MAX_LIMIT).to_string()),
        ];
        if let Some(cursor) = cursor.take() {
            query.push(("cursor", cursor));
        }
        let page: CursorPage = upstream
            .get_page(api.endpoint(), &url, &query, rest::cursor_page)
            .await?;
        let reached_start = keep_window(page.rows, (start, end), &mut kept);
        if reached_start || kept.len() >= wanted {
            break;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(kept
        .into_iter()
        .skip(offset as usize)
        .take(page_size as usize)
        .collect())
}

/// Appends the rows of a newest-first page that lie in `[start, end]` (and those without a
/// readable timestamp: the validation refuses them with the reason); returns whether the page
/// went past `start`, where the window ends.
fn keep_window(rows: Vec<Value>, (start, end): (i64, i64), kept: &mut Vec<Value>) -> bool {
    for row in rows {
        match rest::row_timestamp_s(&row) {
            Some(second) if second > end => {}
            Some(second) if second < start => return true,
            _ => kept.push(row),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(second: i64) -> Value {
        json!({"timestamp": second})
    }

    #[test]
    fn a_window_keeps_its_rows_and_stops_past_its_start() {
        let mut kept = Vec::new();
        let reached = keep_window(
            vec![row(12), row(10), json!({"timestamp": "x"}), row(9)],
            (9, 10),
            &mut kept,
        );
        assert!(!reached);
        assert_eq!(kept, vec![row(10), json!({"timestamp": "x"}), row(9)]);
        let reached = keep_window(vec![row(9), row(8), row(9)], (9, 10), &mut kept);
        assert!(reached, "a row older than the window ends it");
        assert_eq!(kept.len(), 4, "nothing after the first older row is kept");
    }

    #[test]
    fn each_version_has_its_address_budget_and_market_limit() {
        assert_eq!(TradesApi::V1.url("http://d/"), "http://d/trades");
        assert_eq!(TradesApi::V2.url("http://d"), "http://d/v2/trades");
        assert_eq!(TradesApi::V2.endpoint(), Endpoint::DataTradesV2);
        assert_eq!(TradesApi::V2.markets_per_request(), 20);
        let parsed: TradesApi = serde_json::from_value(json!("v2")).unwrap();
        assert_eq!(parsed, TradesApi::V2);
    }
}
