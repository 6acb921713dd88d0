//! Rows ClickHouse itself refuses, against the real engine: a row that passes our mapping but
//! that ClickHouse rejects for good (here: a `CHECK` constraint this test adds to its own
//! database, so the engine answers `VIOLATED_CONSTRAINT`, code 469) sits in the middle of a
//! batch. The sink must isolate it into `dead_letters` with ClickHouse's message and its
//! topic/partition/offset, load every other row exactly once, and move its offsets on instead
//! of retrying forever. And a backfill spanning more days than one insert may hold partitions
//! (`max_partitions_per_insert_block`, 100) loads instead of failing. Run through
//! `cargo xtask test`.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::time::Duration;

use base64::Engine as _;
use polytape_codec::{RecordDecoder, SchemaRegistryClient};
use polytape_model::{Topic, Trade, samples};
use polytape_test_support::stack::{
    IsolatedDatabase, endpoints, ensured_isolated_topics, unique_name,
};
use support::*;

const DAY_MS: i64 = 86_400_000;

fn trade(trade_id: &str, timestamp_ms: i64) -> Trade {
    let mut trade = samples::trade();
    trade.trade_id = trade_id.to_owned();
    trade.timestamp_ms = timestamp_ms;
    trade
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct StoredDeadLetter {
    dead_letter_id: String,
    source: String,
    error: String,
    payload_base64: String,
    topic: Option<String>,
    partition: Option<i32>,
    offset: Option<i64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_clickhouse_refuses_is_dead_lettered_and_the_rest_loads_exactly_once() {
    let _ = tracing_subscriber::fmt().with_env_filter("info").try_init();
    let stack = endpoints();
    let names = ensured_isolated_topics("poison").await;
    let topic = names.name(Topic::Trades);
    let database = IsolatedDatabase::migrated("poison").await;
    // A real engine refusal for one specific row, which our own mapping accepts.
    database
        .client
        .query("ALTER TABLE trades ADD CONSTRAINT no_poison CHECK trade_id != 'poison'")
        .execute()
        .await
        .unwrap();

    let registry = SchemaRegistryClient::new(&stack.schema_registry_url).unwrap();
    let producer = producer::<Trade>(&stack, &names).await;
    let now = polytape_model::now_ms();
    // 40 good trades with the poison one in the middle; one key, so one partition, in order.
    let mut trades: Vec<Trade> = (0..40)
        .map(|index| trade(&format!("good-{index:02}"), now - 3_600_000 + index))
        .collect();
    trades.insert(20, trade("poison", now - 3_600_000 + 20));
    let delivered = producer.send_all(&trades).await.unwrap();
    let poison_at = delivered[20];
    let end_offset = delivered.iter().map(|at| at.offset).max().unwrap() + 1;

    let group = unique_name("poison-group");
    let (stop, task) = spawn(pipeline(
        &stack,
        &names,
        database.client.clone(),
        &group,
        limits(1_000, Duration::from_secs(1)),
    ));
    for _ in 0..600 {
        if count(&database.client, "SELECT count() FROM trades FINAL").await == 40
            && count(&database.client, "SELECT count() FROM dead_letters FINAL").await == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    task.await.unwrap();

    // Every good row exactly once: not merely after FINAL, physically.
    assert_eq!(
        count(&database.client, "SELECT count() FROM trades").await,
        40,
        "each good row inserted once"
    );
    assert_eq!(
        count(&database.client, "SELECT uniqExact(trade_id) FROM trades").await,
        40
    );
    assert_eq!(
        count(
            &database.client,
            "SELECT count() FROM trades WHERE trade_id = 'poison'"
        )
        .await,
        0
    );

    let letters: Vec<StoredDeadLetter> = database
        .client
        .query("SELECT ?fields FROM dead_letters FINAL")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.source, "sink-clickhouse");
    assert!(
        letter.error.contains("Code: 469") && letter.error.contains("VIOLATED_CONSTRAINT"),
        "ClickHouse's own message: {}",
        letter.error
    );
    assert!(letter.error.contains("no_poison"), "{}", letter.error);
    assert_eq!(letter.topic.as_deref(), Some(topic.as_str()));
    assert_eq!(letter.partition, Some(poison_at.partition));
    assert_eq!(letter.offset, Some(poison_at.offset));
    assert_eq!(letter.dead_letter_id.len(), 32, "a digest of the origin");
    // The raw message, as for undecodable ones: it decodes back to the refused record.
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&letter.payload_base64)
        .unwrap();
    let refused: Trade = RecordDecoder::new(registry.clone())
        .decode(&payload)
        .await
        .unwrap();
    assert_eq!(refused.trade_id, "poison");

    // The offsets moved past the poison row: a restart does not meet it again.
    let committed = committed_offsets(&group, &topic, Topic::Trades.partitions());
    let partition = usize::try_from(poison_at.partition).unwrap();
    assert_eq!(committed[partition], end_offset, "{committed:?}");
    assert!(
        polytape_runtime::metrics::family_total("polytape_sink_insert_rejections_total") >= 1.0
    );

    // A second sink over the same records (a replay from offset 0) changes nothing visible:
    // same dead letter id, replaced rather than added.
    let replay_group = unique_name("replay-group");
    let (stop, task) = spawn(pipeline(
        &stack,
        &names,
        database.client.clone(),
        &replay_group,
        limits(1_000, Duration::from_secs(1)),
    ));
    for _ in 0..300 {
        let replayed = committed_offsets(&replay_group, &topic, Topic::Trades.partitions());
        if replayed[partition] == end_offset {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    task.await.unwrap();
    assert_eq!(
        count(&database.client, "SELECT count() FROM trades FINAL").await,
        40
    );
    assert_eq!(
        count(&database.client, "SELECT count() FROM dead_letters FINAL").await,
        1,
        "a redelivered dead letter is the same dead letter"
    );
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_over_more_partitions_than_one_insert_may_hold_loads() {
    let stack = endpoints();
    let names = ensured_isolated_topics("backfill").await;
    let database = IsolatedDatabase::create("backfill").await;
    // A retention longer than the backfill, so no row is expired by its TTL.
    polytape_clickhouse::migrate(&database.client, &database.name, 400)
        .await
        .unwrap();
    let producer = producer::<Trade>(&stack, &names).await;
    // 250 days of trades (daily partitions), two a day, newest first like a backfill.
    let now = polytape_model::now_ms();
    let trades: Vec<Trade> = (0..500)
        .map(|index| trade(&format!("day-{index:03}"), now - (index / 2 + 1) * DAY_MS))
        .collect();
    producer.send_all(&trades).await.unwrap();

    let (stop, task) = spawn(pipeline(
        &stack,
        &names,
        database.client.clone(),
        &unique_name("backfill-group"),
        limits(1_000, Duration::from_secs(1)),
    ));
    for _ in 0..600 {
        if count(&database.client, "SELECT count() FROM trades FINAL").await == 500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    task.await.unwrap();
    assert_eq!(
        count(&database.client, "SELECT count() FROM trades FINAL").await,
        500
    );
    assert_eq!(
        count(&database.client, "SELECT count() FROM trades").await,
        500
    );
    assert_eq!(
        count(
            &database.client,
            "SELECT uniqExact(toYYYYMMDD(timestamp)) FROM trades"
        )
        .await,
        250
    );
    assert_eq!(
        count(&database.client, "SELECT count() FROM dead_letters").await,
        0,
        "nothing refused"
    );
    database.drop_database().await;
}
