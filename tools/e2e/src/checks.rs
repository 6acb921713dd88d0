//! The end-to-end checks: each compares what the pipeline stored or serves with the
//! simulator's truth, by identity, and returns a one-line summary or what differs.

#[allow(clippy::wildcard_imports)]
use super::*;

#[derive(Debug, Row, Deserialize)]
struct TradeCopies {
    trade_id: String,
    copies: u64,
}

/// Every truth fill is in `trades` exactly once (with FINAL, as the API reads it), and no
/// other trade is. With `raw_exactly_once`, also without FINAL: the sink and the collector
/// stored each row once (a clean run; after kill -9 the collector may re-send exact copies).
pub async fn check_trades(pipeline: &Pipeline, raw_exactly_once: bool) -> Result<String, String> {
    let truth = pipeline.truth_trade_ids().await;
    let stored: Vec<TradeCopies> = pipeline
        .database
        .client
        .query("SELECT trade_id, count() AS copies FROM trades FINAL GROUP BY trade_id")
        .fetch_all()
        .await
        .map_err(|error| format!("query trades: {error}"))?;
    let mut stored_ids = BTreeSet::new();
    for row in &stored {
        if row.copies != 1 {
            return Err(format!(
                "trade {} is stored {} times after FINAL",
                row.trade_id, row.copies
            ));
        }
        stored_ids.insert(row.trade_id.clone());
    }
    let missing: Vec<&String> = truth.difference(&stored_ids).collect();
    let unexpected: Vec<&String> = stored_ids.difference(&truth).collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(format!(
            "{} truth fills, {} stored: {} missing (e.g. {:?}), {} not in truth (e.g. {:?})",
            truth.len(),
            stored_ids.len(),
            missing.len(),
            missing.iter().take(3).collect::<Vec<_>>(),
            unexpected.len(),
            unexpected.iter().take(3).collect::<Vec<_>>()
        ));
    }
    if raw_exactly_once {
        let raw: u64 = pipeline
            .database
            .client
            .query("SELECT count() FROM trades")
            .fetch_one()
            .await
            .map_err(|error| format!("count trades: {error}"))?;
        if raw != truth.len() as u64 {
            return Err(format!(
                "{raw} rows in trades without FINAL for {} fills: some were stored twice",
                truth.len()
            ));
        }
    }
    pipeline.figures().fills = truth.len() as u64;
    Ok(format!("{} fills, each exactly once", truth.len()))
}

#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct CandleRow {
    pub token_id: String,
    pub interval: String,
    pub open_time: i64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    pub volume: i128,
    pub notional: i128,
    pub vwap: i128,
    pub trade_count: u64,
    pub first_trade: i64,
    pub last_trade: i64,
}

const STORED_CANDLES: &str = "
SELECT
    token_id,
    toString(interval) AS interval,
    toUnixTimestamp64Milli(open_time) AS open_time,
    open, high, low, close, volume, notional, vwap,
    toUInt64(trade_count) AS trade_count,
    toUnixTimestamp64Milli(first_trade_time) AS first_trade,
    toUnixTimestamp64Milli(last_trade_time) AS last_trade
FROM candles FINAL
ORDER BY token_id, interval, open_time";

/// `candles` (latest version per key) equals the SQL oracle over `trades`, decimal for
/// decimal, for every token and interval.
pub async fn check_candles(pipeline: &Pipeline) -> Result<String, String> {
    let client = &pipeline.database.client;
    let expected: Vec<CandleRow> = client
        .query(polytape_test_support::oracle::CANDLE_ORACLE_SQL)
        .fetch_all()
        .await
        .map_err(|error| format!("oracle query: {error}"))?;
    let stored: Vec<CandleRow> = client
        .query(STORED_CANDLES)
        .fetch_all()
        .await
        .map_err(|error| format!("candles query: {error}"))?;
    if expected.is_empty() {
        return Err("the oracle has no candles yet (no trades stored)".to_owned());
    }
    let stored_by_key: HashMap<(&str, &str, i64), &CandleRow> = stored
        .iter()
        .map(|row| {
            (
                (row.token_id.as_str(), row.interval.as_str(), row.open_time),
                row,
            )
        })
        .collect();
    let mut mismatches = Vec::new();
    for row in &expected {
        match stored_by_key.get(&(row.token_id.as_str(), row.interval.as_str(), row.open_time)) {
            Some(stored) if *stored == row => {}
            Some(stored) => mismatches.push(format!("expected {row:?}, stored {stored:?}")),
            None => mismatches.push(format!("missing {row:?}")),
        }
    }
    if stored.len() != expected.len() {
        mismatches.push(format!(
            "{} candles stored, {} expected",
            stored.len(),
            expected.len()
        ));
    }
    if !mismatches.is_empty() {
        return Err(format!(
            "{} candle mismatches, e.g. {}",
            mismatches.len(),
            mismatches
                .iter()
                .take(2)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    Ok(format!("{} candles equal the oracle", expected.len()))
}

/// Markets and events in ClickHouse equal the simulator's: same ids, tokens, closed flags and
/// winners.
pub async fn check_markets_and_events(pipeline: &Pipeline) -> Result<String, String> {
    let client = &pipeline.database.client;
    let markets: Vec<polytape_clickhouse::rows::MarketRow> = client
        .query("SELECT ?fields FROM markets FINAL")
        .fetch_all()
        .await
        .map_err(|error| format!("markets query: {error}"))?;
    let truth_markets = pipeline.truth("/_sim/truth/markets").await;
    let truth_markets = truth_markets
        .as_array()
        .ok_or("truth markets not an array")?;
    let stored: HashMap<&str, &polytape_clickhouse::rows::MarketRow> = markets
        .iter()
        .map(|market| (market.condition_id.as_str(), market))
        .collect();
    let mut problems = Vec::new();
    for truth in truth_markets {
        let condition_id = truth["condition_id"].as_str().unwrap_or_default();
        let Some(market) = stored.get(condition_id) else {
            problems.push(format!("market {condition_id} missing"));
            continue;
        };
        let closed = truth["closed"].as_bool().unwrap_or_default();
        if market.closed != closed {
            problems.push(format!(
                "market {condition_id}: closed {} stored, {closed} in truth",
                market.closed
            ));
        }
        let winner = truth["winner_token_id"].as_str().map(str::to_owned);
        if closed && market.winning_token_id != winner {
            problems.push(format!(
                "market {condition_id}: winner {:?} stored, {winner:?} in truth",
                market.winning_token_id
            ));
        }
        let tokens: Vec<String> = truth["token_ids"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if market.token_ids != tokens {
            problems.push(format!("market {condition_id}: tokens differ"));
        }
    }
    if markets.len() != truth_markets.len() {
        problems.push(format!(
            "{} markets stored, {} in truth",
            markets.len(),
            truth_markets.len()
        ));
    }
    let events: Vec<polytape_clickhouse::rows::EventRow> = client
        .query("SELECT ?fields FROM events FINAL")
        .fetch_all()
        .await
        .map_err(|error| format!("events query: {error}"))?;
    let truth_events = pipeline.truth("/_sim/truth/events").await;
    let truth_events = truth_events.as_array().ok_or("truth events not an array")?;
    let stored_events: HashMap<&str, bool> = events
        .iter()
        .map(|event| (event.event_id.as_str(), event.closed))
        .collect();
    for truth in truth_events {
        let id = truth["id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| truth["id"].as_u64().map(|id| id.to_string()))
            .unwrap_or_default();
        match stored_events.get(id.as_str()) {
            None => problems.push(format!("event {id} missing")),
            Some(closed) if Some(*closed) != truth["closed"].as_bool() => {
                problems.push(format!("event {id}: closed flag differs"));
            }
            Some(_) => {}
        }
    }
    if events.len() != truth_events.len() {
        problems.push(format!(
            "{} events stored, {} in truth",
            events.len(),
            truth_events.len()
        ));
    }
    if !problems.is_empty() {
        return Err(format!(
            "{} differences, e.g. {}",
            problems.len(),
            problems
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    Ok(format!(
        "{} markets and {} events equal the truth",
        markets.len(),
        events.len()
    ))
}

#[derive(Debug, Clone, Row, Deserialize)]
pub struct GapRow {
    pub kind: String,
    pub token_ids: Vec<String>,
    pub gap_start: i64,
    pub gap_end: Option<i64>,
    pub reason: String,
    /// The service that declared it (`ws-bridge`, `candle-builder`, `collector`).
    pub source: String,
}

/// The declared gaps (continuity records).
pub async fn declared_gaps(pipeline: &Pipeline) -> Result<Vec<GapRow>, String> {
    pipeline
        .database
        .client
        .query(
            "SELECT toString(kind) AS kind, token_ids, toUnixTimestamp64Milli(gap_start) AS gap_start, \
             if(isNull(gap_end), NULL, toUnixTimestamp64Milli(assumeNotNull(gap_end))) AS gap_end, reason, \
             toString(source) AS source FROM continuity FINAL",
        )
        .fetch_all()
        .await
        .map_err(|error| format!("continuity query: {error}"))
}

/// Whether a declared gap covers `token_id` at `at_ms` (an open gap covers everything after
/// its start).
pub fn gap_covers(gaps: &[GapRow], token_id: &str, at_ms: i64) -> bool {
    gaps.iter().any(|gap| {
        (gap.token_ids.is_empty() || gap.token_ids.iter().any(|id| id == token_id))
            && gap.gap_start <= at_ms
            && gap.gap_end.is_none_or(|end| at_ms <= end)
    })
}

/// The parts of `[from_ms, to_ms)` that no declared gap covers for `token_id` (see
/// [`gap_covers`]: a gap covers its start and its end), sorted and disjoint, each `[start, end)`.
pub fn uncovered_spans(
    gaps: &[GapRow],
    token_id: &str,
    from_ms: i64,
    to_ms: i64,
) -> Vec<(i64, i64)> {
    let mut covered: Vec<(i64, i64)> = gaps
        .iter()
        .filter(|gap| gap.token_ids.is_empty() || gap.token_ids.iter().any(|id| id == token_id))
        .map(|gap| {
            (
                gap.gap_start,
                gap.gap_end.map_or(i64::MAX, |end| end.saturating_add(1)),
            )
        })
        .collect();
    covered.sort_unstable();
    let mut spans = Vec::new();
    let mut cursor = from_ms;
    for (start, end) in covered {
        if start >= to_ms {
            break;
        }
        if start > cursor {
            spans.push((cursor, start));
        }
        cursor = cursor.max(end);
        if cursor >= to_ms {
            break;
        }
    }
    if cursor < to_ms {
        spans.push((cursor, to_ms));
    }
    spans
}

/// An instant drawn uniformly from `spans` (as [`uncovered_spans`] returns them), if they hold any.
pub fn instant_in(spans: &[(i64, i64)], random: &mut impl rand::Rng) -> Option<i64> {
    let total: i64 = spans.iter().map(|(start, end)| end - start).sum();
    if total <= 0 {
        return None;
    }
    let mut offset = random.random_range(0..total);
    for (start, end) in spans {
        if offset < end - start {
            return Some(start + offset);
        }
        offset -= end - start;
    }
    None
}

/// A book side as (price, size) decimal strings normalised (no trailing zeros), best first.
fn levels(value: &serde_json::Value, descending: bool) -> Vec<(String, String)> {
    let mut levels: Vec<(polytape_model::Decimal, String)> = value
        .as_array()
        .map(|levels| {
            levels
                .iter()
                .filter_map(|level| {
                    let price = decimal_text(&level["price"])?;
                    let size = decimal_text(&level["size"])?;
                    let parsed: polytape_model::Decimal = price.parse().ok()?;
                    Some((parsed, size))
                })
                .collect()
        })
        .unwrap_or_default();
    levels.sort_by(|left, right| {
        if descending {
            right.0.cmp(&left.0)
        } else {
            left.0.cmp(&right.0)
        }
    });
    levels
        .into_iter()
        .map(|(price, size)| (price.normalize().to_string(), size))
        .collect()
}

fn decimal_text(value: &serde_json::Value) -> Option<String> {
    let text = match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Number(number) => number.to_string(),
        _ => return None,
    };
    let parsed: polytape_model::Decimal = text.parse().ok()?;
    Some(parsed.normalize().to_string())
}

/// The order book the API serves for `token_id` at `at_ms` equals the simulator's book at that
/// instant (every level, both sides). Returns whether the API flagged the instant as covered by
/// a gap — allowed only when a declared gap of the token overlaps the span the book was rebuilt
/// over; then the levels are not compared (a declared gap is allowed to be wrong).
pub async fn check_book_at(
    pipeline: &Pipeline,
    token_id: &str,
    at_ms: i64,
) -> Result<bool, String> {
    let (status, served) = pipeline
        .api(&format!(
            "/v1/orderbook?token_id={token_id}&at={at_ms}&depth=1000"
        ))
        .await;
    let truth = pipeline
        .truth(&format!("/_sim/truth/book?token_id={token_id}&at={at_ms}"))
        .await;
    let upstream_has_book = truth["bids"].is_array();
    if !upstream_has_book && status == 404 {
        // No book upstream at that instant (the market resolved), and none served.
        return Ok(false);
    }
    if status != 200 {
        return Err(format!(
            "GET /v1/orderbook {token_id} at {at_ms}: status {status}: {served}"
        ));
    }
    // A book served where upstream had none is wrong unless the API flags the instant as
    // covered by a declared gap (a resolution lost with a killed bridge, known to the second
    // only from Gamma): checked like any flagged book below.
    if served["gap"].as_bool() == Some(true) {
        // The API may only say so when a declared gap of this token overlaps the span it
        // rebuilt the book over (from its base state to `at`).
        let gaps = declared_gaps(pipeline).await?;
        let base_ms = served["base_time_ms"]
            .as_i64()
            .or_else(|| served["state_time_ms"].as_i64())
            .unwrap_or(at_ms);
        let overlapping = gaps.iter().any(|gap| {
            (gap.token_ids.is_empty() || gap.token_ids.iter().any(|id| id == token_id))
                && gap.gap_start <= at_ms
                && gap.gap_end.is_none_or(|end| end >= base_ms)
        });
        if !overlapping {
            return Err(format!(
                "the API flags {token_id} at {at_ms} (rebuilt from {base_ms}) as covered by a gap, but no continuity record of that token overlaps [{base_ms}, {at_ms}]: {}",
                served["gaps"]
            ));
        }
        return Ok(true);
    }
    if !upstream_has_book {
        return Err(format!(
            "GET /v1/orderbook {token_id} at {at_ms}: a book served without a gap, but upstream had no book then ({truth}): {served}"
        ));
    }
    let truth_bids = levels(&truth["bids"], true);
    let truth_asks = levels(&truth["asks"], false);
    let served_bids = levels(&served["bids"], true);
    let served_asks = levels(&served["asks"], false);
    if truth_bids != served_bids || truth_asks != served_asks {
        return Err(format!(
            "book of {token_id} at {at_ms}: served bids {:?} asks {:?}; truth bids {:?} asks {:?}",
            served_bids.iter().take(3).collect::<Vec<_>>(),
            served_asks.iter().take(3).collect::<Vec<_>>(),
            truth_bids.iter().take(3).collect::<Vec<_>>(),
            truth_asks.iter().take(3).collect::<Vec<_>>()
        ));
    }
    Ok(false)
}

/// Open tokens of the world (from the truth), for choosing book instants.
pub async fn open_tokens(pipeline: &Pipeline) -> Vec<String> {
    let markets = pipeline.truth("/_sim/truth/markets").await;
    markets
        .as_array()
        .map(|markets| {
            markets
                .iter()
                .filter(|market| market["closed"].as_bool() == Some(false))
                .filter_map(|market| market["token_ids"].as_array())
                .flatten()
                .filter_map(|token| token.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug, Row, Deserialize)]
struct FirstBook {
    token_id: String,
    first_ms: i64,
}

/// Per token, when its first WebSocket book snapshot was received: the bridge covers the token
/// from then on.
pub async fn first_ws_book_times(pipeline: &Pipeline) -> Vec<(String, i64)> {
    let rows: Vec<FirstBook> = pipeline
        .database
        .client
        .query(
            "SELECT token_id, toUnixTimestamp64Milli(min(received_at)) AS first_ms \
             FROM book_snapshots WHERE source = 'WS' GROUP BY token_id ORDER BY token_id",
        )
        .fetch_all()
        .await
        .unwrap_or_default();
    rows.into_iter()
        .map(|row| (row.token_id, row.first_ms))
        .collect()
}

/// The sum of every series of `name` in a Prometheus text exposition (0 when absent).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A `POLYTAPE_E2E_*` knob: the variable's value, or `default` when it is unset.
pub fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a valid number")),
        Err(_) => default,
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;

    fn gap(token_ids: &[&str], gap_start: i64, gap_end: Option<i64>) -> GapRow {
        GapRow {
            kind: "DISCONNECT".to_owned(),
            token_ids: token_ids.iter().map(|id| (*id).to_owned()).collect(),
            gap_start,
            gap_end,
            reason: String::new(),
            source: "ws-bridge".to_owned(),
        }
    }

    #[test]
    fn the_uncovered_spans_are_exactly_the_instants_no_gap_covers() {
        let gaps = [
            gap(&["a"], 10, Some(20)),
            gap(&["a", "b"], 15, Some(30)),
            gap(&["b"], 0, None),
            gap(&[], 60, Some(69)),
            gap(&["a"], 90, None),
        ];
        let spans = uncovered_spans(&gaps, "a", 0, 100);
        assert_eq!(spans, [(0, 10), (31, 60), (70, 90)]);
        assert!(uncovered_spans(&gaps, "b", 0, 100).is_empty());
        for at_ms in 0..100 {
            let inside = spans
                .iter()
                .any(|(start, end)| (*start..*end).contains(&at_ms));
            assert_eq!(inside, !gap_covers(&gaps, "a", at_ms), "{at_ms}");
        }
        let mut random = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..1_000 {
            let at_ms = instant_in(&spans, &mut random).unwrap();
            assert!(!gap_covers(&gaps, "a", at_ms), "{at_ms}");
        }
        assert_eq!(instant_in(&[], &mut random), None);
    }
}
