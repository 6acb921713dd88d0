//! Every WebSocket table against the simulator's WebSocket truth (`/_sim/truth/ws`), event by
//! event: each event upstream sent for a token the bridge followed is stored exactly once
//! (after FINAL, as the API reads it), unless a declared gap of that token covers its time —
//! then it may be missing, but still not doubled — and no stored row is one upstream never
//! sent. `book` events are checked for presence only: the bridge also stores the book dumps
//! that follow each subscription, which repeat states upstream sent before.

use std::collections::{BTreeMap, HashMap};

use clickhouse::Row;
use serde::Deserialize;

use crate::{GapRow, Pipeline, declared_gaps, first_ws_book_times, gap_covers};

/// One table's identity of an event: the token, its time, and what distinguishes it.
type Identity = (String, i64, String);

/// Stored rows of one WebSocket table, as (token, time, identity text).
#[derive(Debug, Row, Deserialize)]
struct StoredEvent {
    token_id: String,
    timestamp_ms: i64,
    identity: String,
}

/// The WebSocket tables compared, with the query that renders each row's identity the way
/// [`truth_identity`] renders the upstream event's. Decimals are rendered by ClickHouse
/// without trailing zeros and normalised again on both sides.
const TABLES: [(&str, &str); 5] = [
    (
        "price_change",
        "SELECT token_id, toUnixTimestamp64Milli(timestamp) AS timestamp_ms, \
         concat(toString(side), '|', toString(price), '|', toString(size), '|', ifNull(hash, '')) AS identity \
         FROM price_changes FINAL",
    ),
    (
        "last_trade_price",
        "SELECT token_id, toUnixTimestamp64Milli(timestamp) AS timestamp_ms, \
         concat(ifNull(toString(side), ''), '|', toString(price), '|', toString(size), '|', ifNull(transaction_hash, '')) AS identity \
         FROM last_trades FINAL",
    ),
    (
        "tick_size_change",
        "SELECT token_id, toUnixTimestamp64Milli(timestamp) AS timestamp_ms, \
         concat(toString(old_tick_size), '|', toString(new_tick_size)) AS identity \
         FROM tick_size_changes FINAL",
    ),
    (
        "best_bid_ask",
        "SELECT token_id, toUnixTimestamp64Milli(timestamp) AS timestamp_ms, \
         concat(ifNull(toString(best_bid), '0'), '|', ifNull(toString(best_ask), '1')) AS identity \
         FROM best_bid_ask FINAL",
    ),
    (
        "book",
        "SELECT token_id, toUnixTimestamp64Milli(timestamp) AS timestamp_ms, ifNull(hash, '') AS identity \
         FROM book_snapshots FINAL WHERE source = 'WS'",
    ),
];

/// A decimal as text, normalised (`.5`, `0.50` and `0.5` are one value).
fn decimal(text: &str) -> String {
    let padded = if text.starts_with('.') {
        format!("0{text}")
    } else {
        text.to_owned()
    };
    padded
        .parse::<polytape_model::Decimal>()
        .map_or(padded, |value| value.normalize().to_string())
}

/// Normalises the decimal fields of a `|`-joined identity (the text fields are kept).
fn normalised(identity: &str) -> String {
    identity
        .split('|')
        .map(|field| {
            if field.starts_with(|character: char| character.is_ascii_digit() || character == '.')
                && !field.starts_with("0x")
            {
                decimal(field)
            } else {
                field.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("|")
}

fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The identities one upstream event gives `token_id`, per table.
fn truth_identity(
    token_id: &str,
    event_type: &str,
    event: &serde_json::Value,
) -> Vec<(&'static str, String)> {
    match event_type {
        "price_change" => event["price_changes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| text(&entry["asset_id"]) == token_id)
            .map(|entry| {
                (
                    "price_change",
                    format!(
                        "{}|{}|{}|{}",
                        text(&entry["side"]),
                        text(&entry["price"]),
                        text(&entry["size"]),
                        text(&entry["hash"])
                    ),
                )
            })
            .collect(),
        "last_trade_price" => vec![(
            "last_trade_price",
            format!(
                "{}|{}|{}|{}",
                text(&event["side"]),
                text(&event["price"]),
                text(&event["size"]),
                text(&event["transaction_hash"])
            ),
        )],
        "tick_size_change" => vec![(
            "tick_size_change",
            format!(
                "{}|{}",
                text(&event["old_tick_size"]),
                text(&event["new_tick_size"])
            ),
        )],
        "best_bid_ask" => vec![(
            "best_bid_ask",
            format!("{}|{}", text(&event["best_bid"]), text(&event["best_ask"])),
        )],
        "book" => vec![("book", text(&event["hash"]))],
        _ => Vec::new(),
    }
}

/// Counts per table of what the check found.
#[derive(Debug, Default)]
struct Tally {
    exact: u64,
    missing_in_gaps: u64,
}

/// See the module documentation. Events from one second after the token's first WebSocket
/// book (the bridge follows it from then) until `paused_ms` are compared.
pub async fn check_ws_tables(pipeline: &Pipeline, paused_ms: i64) -> Result<String, String> {
    let gaps = declared_gaps(pipeline).await?;
    let followed: HashMap<String, i64> = first_ws_book_times(pipeline).await.into_iter().collect();
    if followed.is_empty() {
        return Err("no WebSocket book reached ClickHouse".to_owned());
    }
    // Per token, the span compared: after its first book, up to the pause (and after what the
    // simulator's bounded truth log still holds).
    let mut spans: HashMap<String, (i64, i64)> = HashMap::new();
    let mut truth: BTreeMap<(&'static str, Identity), u64> = BTreeMap::new();
    for (token_id, first_ms) in &followed {
        let answer = pipeline
            .truth(&format!("/_sim/truth/ws?token_id={token_id}&limit=200000"))
            .await;
        let events = answer["events"].as_array().cloned().unwrap_or_default();
        let mut from_ms = first_ms + 1_000;
        if answer["dropped"].as_u64().unwrap_or(0) > 0 {
            let oldest = events
                .iter()
                .filter_map(|event| text(&event["event"]["timestamp"]).parse::<i64>().ok())
                .min();
            from_ms = from_ms.max(oldest.map_or(i64::MAX, |oldest| oldest + 1));
        }
        spans.insert(token_id.clone(), (from_ms, paused_ms));
        for event in &events {
            let Ok(timestamp_ms) = text(&event["event"]["timestamp"]).parse::<i64>() else {
                continue;
            };
            if timestamp_ms < from_ms || timestamp_ms > paused_ms {
                continue;
            }
            let event_type = event["event_type"].as_str().unwrap_or_default();
            for (table, identity) in truth_identity(token_id, event_type, &event["event"]) {
                *truth
                    .entry((
                        table,
                        (token_id.clone(), timestamp_ms, normalised(&identity)),
                    ))
                    .or_default() += 1;
            }
        }
    }
    let mut stored: BTreeMap<(&'static str, Identity), u64> = BTreeMap::new();
    for (table, query) in TABLES {
        let rows: Vec<StoredEvent> = pipeline
            .database
            .client
            .query(query)
            .fetch_all()
            .await
            .map_err(|error| format!("query {table}: {error}"))?;
        for row in rows {
            let Some((from_ms, until_ms)) = spans.get(&row.token_id) else {
                continue;
            };
            if row.timestamp_ms < *from_ms || row.timestamp_ms > *until_ms {
                continue;
            }
            *stored
                .entry((
                    table,
                    (row.token_id, row.timestamp_ms, normalised(&row.identity)),
                ))
                .or_default() += 1;
        }
    }
    let tallies = compare(&truth, &stored, &gaps)?;
    let mut figures = pipeline.figures();
    figures.ws_events = tallies
        .iter()
        .map(|(table, tally)| ((*table).to_owned(), tally.exact))
        .collect();
    figures.ws_missing_in_gaps = tallies
        .iter()
        .map(|(table, tally)| ((*table).to_owned(), tally.missing_in_gaps))
        .collect();
    Ok(tallies
        .iter()
        .map(|(table, tally)| {
            format!(
                "{table}: {} exactly once, {} missing inside declared gaps",
                tally.exact, tally.missing_in_gaps
            )
        })
        .collect::<Vec<_>>()
        .join("; "))
}

fn compare(
    truth: &BTreeMap<(&'static str, Identity), u64>,
    stored: &BTreeMap<(&'static str, Identity), u64>,
    gaps: &[GapRow],
) -> Result<BTreeMap<&'static str, Tally>, String> {
    let mut tallies: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, expected) in truth {
        let (table, (token_id, timestamp_ms, identity)) = key;
        let got = stored.get(key).copied().unwrap_or(0);
        let tally = tallies.entry(table).or_default();
        // Book dumps after a subscription repeat states upstream sent: presence is what counts.
        let doubled = *table != "book" && got > *expected;
        if doubled {
            problems.push(format!(
                "{table} of {token_id} at {timestamp_ms} ({identity}) stored {got} times, sent {expected}"
            ));
        } else if got < (*expected).min(if *table == "book" { 1 } else { u64::MAX }) {
            if gap_covers(gaps, token_id, *timestamp_ms) {
                tally.missing_in_gaps += expected - got;
            } else {
                problems.push(format!(
                    "{table} of {token_id} at {timestamp_ms} ({identity}) stored {got} times, sent {expected}, and no declared gap covers it"
                ));
            }
        } else {
            tally.exact += 1;
        }
    }
    for (key, got) in stored {
        let (table, (token_id, timestamp_ms, identity)) = key;
        if *table != "book" && !truth.contains_key(key) {
            problems.push(format!(
                "{table} of {token_id} at {timestamp_ms} ({identity}) stored {got} times, never sent upstream"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "{} WebSocket rows differ from the truth, e.g.: {}",
            problems.len(),
            problems
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    Ok(tallies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(table: &'static str, at: i64, identity: &str) -> (&'static str, Identity) {
        (table, ("t".to_owned(), at, normalised(identity)))
    }

    fn gap(start: i64, end: i64) -> GapRow {
        GapRow {
            kind: "DISCONNECT".to_owned(),
            token_ids: vec!["t".to_owned()],
            gap_start: start,
            gap_end: Some(end),
            reason: String::new(),
            source: "ws-bridge".to_owned(),
        }
    }

    #[test]
    fn decimals_compare_by_value_and_hashes_stay_text() {
        assert_eq!(normalised("BUY|.50|10.000000|0x0a"), "BUY|0.5|10|0x0a");
        assert_eq!(normalised("0.5|1"), normalised("0.500000|1.0"));
    }

    #[test]
    fn missing_is_allowed_only_inside_a_gap_and_doubled_or_invented_never() {
        let truth = BTreeMap::from([
            (key("price_change", 10, "BUY|0.5|1|h"), 1),
            (key("price_change", 20, "BUY|0.5|2|h"), 1),
        ]);
        let exact = truth.clone();
        assert!(compare(&truth, &exact, &[]).is_ok());
        let without_second = BTreeMap::from([(key("price_change", 10, "BUY|0.5|1|h"), 1)]);
        assert!(compare(&truth, &without_second, &[]).is_err());
        assert!(compare(&truth, &without_second, &[gap(15, 25)]).is_ok());
        let doubled = BTreeMap::from([
            (key("price_change", 10, "BUY|0.5|1|h"), 2),
            (key("price_change", 20, "BUY|0.5|2|h"), 1),
        ]);
        assert!(compare(&truth, &doubled, &[gap(0, 30)]).is_err());
        let mut invented = exact.clone();
        invented.insert(key("price_change", 30, "SELL|0.4|1|h"), 1);
        assert!(compare(&truth, &invented, &[]).is_err());
        // Books: a dump repeating a state is fine; a state never stored is not.
        let books = BTreeMap::from([(key("book", 10, "h1"), 1)]);
        assert!(compare(&books, &BTreeMap::from([(key("book", 10, "h1"), 3)]), &[]).is_ok());
        assert!(compare(&books, &BTreeMap::new(), &[]).is_err());
    }
}
