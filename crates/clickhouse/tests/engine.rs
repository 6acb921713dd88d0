//! The `clickhouse` crate, with its default settings (LZ4, validation on), against the local
//! stack's ClickHouse (chdb behind our HTTP adapter), and the migrations against the real
//! engine. Run through `cargo xtask test` (or with `cargo xtask stack up` running).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::time::Duration;

use clickhouse::Row;
use polytape_test_support::stack::IsolatedDatabase;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
struct TradeLikeRow {
    id: u64,
    token_id: String,
    side: i8,
    /// Decimal(18, 6) as its unscaled i64.
    price: i64,
    /// Decimal(18, 6) as its unscaled i64.
    size: i64,
    /// Decimal(38, 12) as its unscaled i128.
    notional: i128,
    /// DateTime64(3, 'UTC') as milliseconds.
    timestamp: i64,
    wallet: Option<String>,
}

/// Deterministic, varied rows (long token ids, both sides, extreme decimals, nulls).
fn row(id: u64) -> TradeLikeRow {
    let price = i64::try_from(id % 999_999 + 1).unwrap();
    let size = i64::try_from(id.wrapping_mul(7_919) % 10_000_000_000).unwrap();
    TradeLikeRow {
        id,
        token_id: format!(
            "{}{id}",
            "71321045679252212594626385532706912750332728571942532289631379312455583992563"
        ),
        side: if id.is_multiple_of(2) { 1 } else { 2 },
        price,
        size,
        notional: i128::from(price) * i128::from(size),
        timestamp: 1_774_020_191_000 + i64::try_from(id).unwrap(),
        wallet: (!id.is_multiple_of(3)).then(|| format!("0x{id:040x}")),
    }
}

const TRADE_LIKE_TABLE: &str = "CREATE TABLE trades_like (
    id UInt64, token_id String, side Enum8('BUY' = 1, 'SELL' = 2),
    price Decimal(18, 6), size Decimal(18, 6), notional Decimal(38, 12),
    timestamp DateTime64(3, 'UTC'), wallet Nullable(String)
) ENGINE = MergeTree ORDER BY id";

async fn insert_rows(client: &clickhouse::Client, ids: std::ops::Range<u64>) {
    let mut insert = client.insert::<TradeLikeRow>("trades_like").await.unwrap();
    for id in ids {
        insert.write(&row(id)).await.unwrap();
    }
    insert.end().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_rows_round_trip_identically_with_default_client_settings() {
    let database = IsolatedDatabase::create("million").await;
    let client = &database.client;
    client.query(TRADE_LIKE_TABLE).execute().await.unwrap();

    const ROWS: u64 = 1_000_000;
    insert_rows(client, 0..ROWS).await;

    let mut cursor = client
        .query("SELECT ?fields FROM trades_like ORDER BY id")
        .fetch::<TradeLikeRow>()
        .unwrap();
    let mut expected_id = 0;
    while let Some(fetched) = cursor.next().await.unwrap() {
        assert_eq!(fetched, row(expected_id), "row {expected_id}");
        expected_id += 1;
    }
    assert_eq!(expected_id, ROWS);

    // The server agrees on the decimals, not just our round trip.
    let (sum_price, max_notional): (i128, i128) = client
        .query("SELECT sum(price), max(notional) FROM trades_like")
        .fetch_one()
        .await
        .unwrap();
    let expected_sum: i128 = (0..ROWS).map(|id| i128::from(row(id).price)).sum();
    let expected_max = (0..ROWS).map(|id| row(id).notional).max().unwrap();
    assert_eq!(sum_price, expected_sum);
    assert_eq!(max_notional, expected_max);
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_readers_stay_correct() {
    let database = IsolatedDatabase::create("concurrent").await;
    database
        .client
        .query(TRADE_LIKE_TABLE)
        .execute()
        .await
        .unwrap();

    const WRITERS: u64 = 4;
    const ROWS_PER_WRITER: u64 = 25_000;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let client = database.client.clone();
        tasks.push(tokio::spawn(async move {
            let start = writer * ROWS_PER_WRITER;
            for batch in 0..5 {
                let from = start + batch * (ROWS_PER_WRITER / 5);
                insert_rows(&client, from..from + ROWS_PER_WRITER / 5).await;
            }
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..8 {
        let client = database.client.clone();
        readers.push(tokio::spawn(async move {
            let mut last_count = 0;
            for _ in 0..10 {
                let (count, distinct): (u64, u64) = client
                    .query("SELECT count(), uniqExact(id) FROM trades_like")
                    .fetch_one()
                    .await
                    .unwrap();
                // Inserts are atomic per block: never a duplicate, never going backwards.
                assert_eq!(count, distinct);
                assert!(count >= last_count && count <= WRITERS * ROWS_PER_WRITER);
                last_count = count;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    for task in tasks.into_iter().chain(readers) {
        task.await.unwrap();
    }
    let (count, sum_size): (u64, i128) = database
        .client
        .query("SELECT count(), sum(size) FROM trades_like")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(count, WRITERS * ROWS_PER_WRITER);
    assert_eq!(
        sum_size,
        (0..WRITERS * ROWS_PER_WRITER)
            .map(|id| i128::from(row(id).size))
            .sum::<i128>()
    );
    database.drop_database().await;
}

#[tokio::test]
async fn an_sql_exception_surfaces_with_the_servers_message() {
    let database = IsolatedDatabase::create("exception").await;
    let error = database
        .client
        .query("SELECT count() FROM table_that_does_not_exist")
        .fetch_one::<u64>()
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("UNKNOWN_TABLE") && message.contains("table_that_does_not_exist"),
        "{message}"
    );

    let syntax = database
        .client
        .query("SELEC 1")
        .execute()
        .await
        .unwrap_err()
        .to_string();
    assert!(syntax.contains("SYNTAX_ERROR"), "{syntax}");
    database.drop_database().await;
}

#[derive(Debug, Row, Deserialize, PartialEq)]
struct TableDefinition {
    name: String,
    create_table_query: String,
}

async fn table_definitions(client: &clickhouse::Client, database: &str) -> Vec<TableDefinition> {
    client
        .query(
            "SELECT name, create_table_query FROM system.tables WHERE database = ? ORDER BY name",
        )
        .bind(database)
        .fetch_all()
        .await
        .unwrap()
}

#[tokio::test]
async fn migrations_applied_twice_leave_the_same_schema() {
    let database = IsolatedDatabase::create("migrate").await;
    let client = &database.client;
    let first = polytape_clickhouse::migrate(client, &database.name, 90)
        .await
        .unwrap();
    let every: Vec<u32> = polytape_clickhouse::MIGRATIONS
        .iter()
        .map(|migration| migration.version)
        .collect();
    assert_eq!(first.applied, every);
    let after_first = table_definitions(client, &database.name).await;

    let second = polytape_clickhouse::migrate(client, &database.name, 90)
        .await
        .unwrap();
    assert!(second.applied.is_empty());
    assert_eq!(second.already_applied, every);
    assert_eq!(table_definitions(client, &database.name).await, after_first);

    let mut names: Vec<&str> = after_first
        .iter()
        .map(|table| table.name.as_str())
        .collect();
    names.retain(|name| *name != "schema_migrations");
    let mut expected = polytape_clickhouse::expected_tables();
    expected.sort_unstable();
    assert_eq!(names, expected);
    for table in &after_first {
        if polytape_clickhouse::is_time_series_table(&table.name) {
            assert!(
                table.create_table_query.contains("toIntervalDay(90)"),
                "{}",
                table.create_table_query
            );
        }
    }
    database.drop_database().await;
}

#[tokio::test]
async fn rows_older_than_the_retention_are_gone_after_optimize_final() {
    let database = IsolatedDatabase::create("ttl").await;
    let client = &database.client;
    polytape_clickhouse::migrate(client, &database.name, 90)
        .await
        .unwrap();

    let insert = "INSERT INTO trades (trade_id, condition_id, token_id, side, price, size, timestamp, transaction_hash, proxy_wallet, source, ingested_at)
        VALUES (?, 'c', 't', 'BUY', 0.5, 10, now64(3) - toIntervalDay(?), '0x', '0x', 'DATA_API_V1', now64(3))";
    // Expired parts are otherwise dropped in the background right after the insert; pausing
    // TTL merges lets the test see that the old row really was stored first.
    client
        .query("SYSTEM STOP TTL MERGES trades")
        .execute()
        .await
        .unwrap();
    client
        .query(insert)
        .bind("old")
        .bind(91)
        .execute()
        .await
        .unwrap();
    client
        .query(insert)
        .bind("young")
        .bind(89)
        .execute()
        .await
        .unwrap();
    let before: Vec<String> = client
        .query("SELECT trade_id FROM trades ORDER BY trade_id")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(before, vec!["old", "young"]);

    client
        .query("SYSTEM START TTL MERGES trades")
        .execute()
        .await
        .unwrap();
    client
        .query("OPTIMIZE TABLE trades FINAL")
        .execute()
        .await
        .unwrap();
    let after: Vec<String> = client
        .query("SELECT trade_id FROM trades ORDER BY trade_id")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(after, vec!["young"]);
    database.drop_database().await;
}

#[tokio::test]
async fn retention_can_be_changed_on_existing_tables() {
    let database = IsolatedDatabase::create("retention").await;
    let client = &database.client;
    polytape_clickhouse::migrate(client, &database.name, 90)
        .await
        .unwrap();
    polytape_clickhouse::set_retention(client, &database.name, 30)
        .await
        .unwrap();
    for table in table_definitions(client, &database.name).await {
        if polytape_clickhouse::is_time_series_table(&table.name) {
            assert!(
                table.create_table_query.contains("toIntervalDay(30)"),
                "{}",
                table.create_table_query
            );
        }
    }
    // A 45-day-old row is now past retention.
    client
        .query(
            "INSERT INTO trades (trade_id, condition_id, token_id, side, price, size, timestamp, transaction_hash, proxy_wallet, source, ingested_at)
             VALUES ('t', 'c', 't', 'BUY', 0.5, 10, now64(3) - toIntervalDay(45), '0x', '0x', 'DATA_API_V1', now64(3))",
        )
        .execute()
        .await
        .unwrap();
    client
        .query("OPTIMIZE TABLE trades FINAL")
        .execute()
        .await
        .unwrap();
    let remaining: u64 = client
        .query("SELECT count() FROM trades")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(remaining, 0);
    database.drop_database().await;
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct DeadLetterLike {
    dead_letter_id: String,
    source: String,
    origin: String,
    error: String,
    payload_base64: String,
    topic: Option<String>,
    partition: Option<i32>,
    offset: Option<i64>,
    /// DateTime64(3, 'UTC') as milliseconds.
    occurred_at: i64,
}

const DAY_MS: i64 = 86_400_000;

fn dead_letter(id: &str, occurred_at: i64) -> DeadLetterLike {
    DeadLetterLike {
        dead_letter_id: id.to_owned(),
        source: "sink-clickhouse".to_owned(),
        origin: format!("polymarket.trades.v1/0/{id}"),
        error: "cannot decode".to_owned(),
        payload_base64: "e30=".to_owned(),
        topic: Some("polymarket.trades.v1".to_owned()),
        partition: Some(0),
        offset: Some(7),
        occurred_at,
    }
}

async fn insert_dead_letters(client: &clickhouse::Client, letters: &[DeadLetterLike]) {
    // One insert per letter: separate parts, as separate redeliveries would make.
    for letter in letters {
        let mut insert = client
            .insert::<DeadLetterLike>("dead_letters")
            .await
            .unwrap();
        insert.write(letter).await.unwrap();
        insert.end().await.unwrap();
    }
}

async fn copies_per_id(client: &clickhouse::Client) -> Vec<(String, u64)> {
    client
        .query("SELECT dead_letter_id, count() FROM dead_letters FINAL GROUP BY dead_letter_id ORDER BY dead_letter_id")
        .fetch_all()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dead_letter_written_twice_at_different_times_is_one_row_after_final() {
    let database = IsolatedDatabase::create("deadletterid").await;
    let client = &database.client;
    polytape_clickhouse::migrate(client, &database.name, 90)
        .await
        .unwrap();
    let now = polytape_model::now_ms();
    // 40 days apart: always in different calendar months, which the old monthly partitions
    // kept apart forever.
    insert_dead_letters(
        client,
        &[
            dead_letter("a", now - 40 * DAY_MS),
            dead_letter("b", now - DAY_MS),
            dead_letter("a", now),
        ],
    )
    .await;
    assert_eq!(
        copies_per_id(client).await,
        vec![("a".to_owned(), 1), ("b".to_owned(), 1)]
    );
    client
        .query("OPTIMIZE TABLE dead_letters FINAL")
        .execute()
        .await
        .unwrap();
    let physical: u64 = client
        .query("SELECT count() FROM dead_letters")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(physical, 2, "merged away, not only hidden by FINAL");
    database.drop_database().await;
}

#[tokio::test]
async fn upgrading_dead_letters_keeps_its_rows_and_retention() {
    let database = IsolatedDatabase::create("deadletterupgrade").await;
    let client = &database.client;
    let before = polytape_clickhouse::migrate_to_version(client, &database.name, 90, 2)
        .await
        .unwrap();
    assert_eq!(before.applied, vec![1, 2]);
    polytape_clickhouse::set_retention(client, &database.name, 60)
        .await
        .unwrap();
    let now = polytape_model::now_ms();
    insert_dead_letters(
        client,
        &[
            dead_letter("a", now - 40 * DAY_MS),
            dead_letter("a", now),
            dead_letter("b", now - DAY_MS),
        ],
    )
    .await;
    // The old layout: two identities for one letter.
    let old: u64 = client
        .query("SELECT count() FROM dead_letters FINAL")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(old, 3);

    // The sink's start-up migration passes the default retention: the one set stays.
    let upgrade = polytape_clickhouse::migrate(client, &database.name, 90)
        .await
        .unwrap();
    let from_third: Vec<u32> = polytape_clickhouse::MIGRATIONS
        .iter()
        .map(|migration| migration.version)
        .filter(|version| *version >= 3)
        .collect();
    assert_eq!(upgrade.applied, from_third);
    assert_eq!(
        copies_per_id(client).await,
        vec![("a".to_owned(), 1), ("b".to_owned(), 1)]
    );
    let definition = table_definitions(client, &database.name)
        .await
        .into_iter()
        .find(|table| table.name == "dead_letters")
        .unwrap()
        .create_table_query;
    assert!(definition.contains("toIntervalDay(60)"), "{definition}");
    // A table a later migration adds takes the retention the database has, not the default.
    let signals = table_definitions(client, &database.name)
        .await
        .into_iter()
        .find(|table| table.name == "signals")
        .unwrap()
        .create_table_query;
    assert!(signals.contains("toIntervalDay(60)"), "{signals}");
    assert!(
        definition.contains("ORDER BY dead_letter_id"),
        "{definition}"
    );
    assert!(!definition.contains("PARTITION BY"), "{definition}");
    let letter: (String, Option<String>, Option<i64>) = client
        .query("SELECT error, topic, offset FROM dead_letters FINAL WHERE dead_letter_id = 'b'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        letter,
        (
            "cannot decode".to_owned(),
            Some("polymarket.trades.v1".to_owned()),
            Some(7)
        ),
        "rows copied column for column"
    );
    database.drop_database().await;
}

#[tokio::test]
async fn the_engines_own_refusals_are_classified() {
    use polytape_clickhouse::{ErrorClass, classify_error};

    let database = IsolatedDatabase::create("classify").await;
    let client = &database.client;
    client
        .query(
            "CREATE TABLE priced (price Decimal(18, 6), day DateTime64(3, 'UTC'),
             CONSTRAINT price_below_one CHECK price < 1)
             ENGINE = MergeTree PARTITION BY toYYYYMMDD(day) ORDER BY day",
        )
        .execute()
        .await
        .unwrap();
    let violated = client
        .query("INSERT INTO priced VALUES (0.5, now64(3)), (2, now64(3))")
        .execute()
        .await
        .unwrap_err();
    assert!(
        violated.to_string().contains("VIOLATED_CONSTRAINT"),
        "{violated}"
    );
    assert_eq!(classify_error(&violated), ErrorClass::Permanent);

    let too_many_partitions = client
        .query("INSERT INTO priced SELECT 0.5, now64(3) - toIntervalDay(number) FROM numbers(150)")
        .execute()
        .await
        .unwrap_err();
    assert!(
        too_many_partitions.to_string().contains("TOO_MANY_PARTS"),
        "{too_many_partitions}"
    );
    assert_eq!(classify_error(&too_many_partitions), ErrorClass::Retryable);

    let missing = client
        .query("INSERT INTO no_such_table VALUES (1)")
        .execute()
        .await
        .unwrap_err();
    assert_eq!(classify_error(&missing), ErrorClass::Retryable);
    database.drop_database().await;
}
