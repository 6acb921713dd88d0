//! The oracle test: a seeded simulator-shaped trade history goes through the builder binary
//! (real broker and registry); the candle topic, latest version per key, must equal ClickHouse
//! SQL (`argMin/argMax`, `sum`, `count`) over the same trades in the stack's real ClickHouse,
//! decimal for decimal, for every token and interval. The deliberately late fills must be in
//! the DLQ (and are not in the oracle's input: they are not part of any candle).
//! Run through `cargo xtask test` (or with `cargo xtask stack up` running).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Duration,
};

use clickhouse::Row;
use polytape_model::{Candle, DeadLetter, Decimal, Side, TradeSource};
use polytape_test_support::stack::{IsolatedDatabase, isolated_topics};
use serde::{Deserialize, Serialize};

#[derive(Debug, Row, Serialize)]
struct TradeRow {
    trade_id: String,
    condition_id: String,
    token_id: String,
    outcome: Option<String>,
    outcome_index: Option<i32>,
    side: i8,
    price: i64,
    size: i64,
    timestamp: i64,
    transaction_hash: String,
    proxy_wallet: String,
    source: i8,
    ingested_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
struct OracleRow {
    token_id: String,
    interval: String,
    open_time: i64,
    open: i64,
    high: i64,
    low: i64,
    close: i64,
    volume: i128,
    notional: i128,
    vwap: i128,
    trade_count: u64,
    first_trade: i64,
    last_trade: i64,
}

fn units(value: Decimal, scale: u32) -> i128 {
    let mut scaled = value;
    scaled.rescale(scale);
    assert_eq!(scaled, value, "{value} has more than {scale} decimals");
    scaled.mantissa()
}

fn as_row(candle: &Candle) -> OracleRow {
    OracleRow {
        token_id: candle.token_id.clone(),
        interval: candle.interval.clone(),
        open_time: candle.open_time_ms,
        open: i64::try_from(units(candle.open, 6)).unwrap(),
        high: i64::try_from(units(candle.high, 6)).unwrap(),
        low: i64::try_from(units(candle.low, 6)).unwrap(),
        close: i64::try_from(units(candle.close, 6)).unwrap(),
        volume: units(candle.volume, 6),
        notional: units(candle.notional, 12),
        vwap: units(candle.vwap, 12),
        trade_count: u64::try_from(candle.trade_count).unwrap(),
        first_trade: candle.first_trade_ms,
        last_trade: candle.last_trade_ms,
    }
}

/// The oracle: every interval of the builder's defaults, over the deduplicated trades.
const ORACLE: &str = "
SELECT
    token_id,
    interval,
    toInt64(intDiv(toUnixTimestamp64Milli(timestamp), length) * length) AS open_time,
    argMin(price, (timestamp, trade_id)) AS open,
    max(price) AS high,
    min(price) AS low,
    argMax(price, (timestamp, trade_id)) AS close,
    sum(toDecimal128(size, 6)) AS volume,
    sum(toDecimal128(price, 6) * toDecimal128(size, 6)) AS notional,
    sum(toDecimal128(price, 6) * toDecimal128(size, 6)) / sum(toDecimal128(size, 6)) AS vwap,
    count() AS trade_count,
    toUnixTimestamp64Milli(min(timestamp)) AS first_trade,
    toUnixTimestamp64Milli(max(timestamp)) AS last_trade
FROM (SELECT * FROM trades FINAL)
ARRAY JOIN
    [60000, 300000, 900000, 3600000, 14400000, 86400000] AS length,
    ['1m', '5m', '15m', '1h', '4h', '1d'] AS interval
GROUP BY token_id, interval, open_time
ORDER BY token_id, interval, open_time";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candles_equal_the_clickhouse_oracle_for_every_token_and_interval() {
    let names = isolated_topics("oracle");
    support::create_topics(&names).await;
    // 2026-03-19T22:00Z for 27 hours: two UTC days, every interval boundary kind.
    let history = support::trade_history(42, 20, 15_000, 1_773_957_600_000, 27 * 3_600_000);
    let delivered = support::produce(&names, &history.trades).await;
    assert!(
        history.late.len() >= 10,
        "the history has late fills: {}",
        history.late.len()
    );

    let builder = support::start_builder(&names);
    support::wait_caught_up(&names, Duration::from_secs(300));
    assert_eq!(builder.terminate(Duration::from_secs(30)), Some(0));

    let candles = support::latest_candles(support::read_records::<Candle>(&names).await);
    let dead: Vec<(i32, i64, DeadLetter)> = support::read_records(&names).await;

    // Exactly the deliberately late fills were dead-lettered, as late.
    let position_of: HashMap<(i32, i64), usize> = delivered
        .iter()
        .enumerate()
        .map(|(index, delivery)| ((delivery.partition, delivery.offset), index))
        .collect();
    let dead_indexes: BTreeSet<usize> = dead
        .iter()
        .map(|(_, _, letter)| {
            assert!(letter.error.starts_with("late:"), "{}", letter.error);
            assert_eq!(letter.source, "candle-builder");
            position_of[&(letter.partition.unwrap(), letter.offset.unwrap())]
        })
        .collect();
    assert_eq!(
        dead_indexes,
        history.late.iter().copied().collect::<BTreeSet<_>>()
    );

    // The same trades, without the dead-lettered ones, into ClickHouse (duplicates included:
    // the table's identity and FINAL remove them, as in production).
    let database = IsolatedDatabase::create("oracle").await;
    // The history is in March 2026: keep it past the default 90-day TTL.
    polytape_clickhouse::migrate(&database.client, &database.name, 3_650)
        .await
        .unwrap();
    let mut insert = database.client.insert::<TradeRow>("trades").await.unwrap();
    for (index, trade) in history.trades.iter().enumerate() {
        if dead_indexes.contains(&index) {
            continue;
        }
        insert
            .write(&TradeRow {
                trade_id: trade.trade_id.clone(),
                condition_id: trade.condition_id.clone(),
                token_id: trade.token_id.clone(),
                outcome: trade.outcome.clone(),
                outcome_index: trade.outcome_index,
                side: if trade.side == Side::Buy { 1 } else { 2 },
                price: i64::try_from(units(trade.price, 6)).unwrap(),
                size: i64::try_from(units(trade.size, 6)).unwrap(),
                timestamp: trade.timestamp_ms,
                transaction_hash: trade.transaction_hash.clone(),
                proxy_wallet: trade.proxy_wallet.clone(),
                source: if trade.source == TradeSource::DataApiV1 {
                    1
                } else {
                    2
                },
                ingested_at: trade.ingested_ms,
            })
            .await
            .unwrap();
    }
    insert.end().await.unwrap();

    let oracle: Vec<OracleRow> = database.client.query(ORACLE).fetch_all().await.unwrap();
    let expected: BTreeMap<(String, String, i64), OracleRow> = oracle
        .into_iter()
        .map(|row| {
            (
                (row.token_id.clone(), row.interval.clone(), row.open_time),
                row,
            )
        })
        .collect();
    let got: BTreeMap<(String, String, i64), OracleRow> = candles
        .values()
        .map(|candle| {
            let row = as_row(candle);
            (
                (row.token_id.clone(), row.interval.clone(), row.open_time),
                row,
            )
        })
        .collect();
    let tokens: BTreeSet<&String> = expected.keys().map(|(token, _, _)| token).collect();
    assert!(tokens.len() >= 30, "tokens: {}", tokens.len());
    let mut differences = Vec::new();
    for key in expected.keys().chain(got.keys()).collect::<BTreeSet<_>>() {
        if expected.get(key) != got.get(key) {
            differences.push(format!(
                "{key:?}:\n  oracle  {:?}\n  builder {:?}",
                expected.get(key),
                got.get(key)
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} candles differ; first:\n{}",
        differences.len(),
        expected.len(),
        differences
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!(
        "oracle: {} candles over {} tokens equal ClickHouse; {} trades ({} late, dead-lettered)",
        expected.len(),
        tokens.len(),
        history.trades.len(),
        dead_indexes.len()
    );
    database.drop_database().await;
}
