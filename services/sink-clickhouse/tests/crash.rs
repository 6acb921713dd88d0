//! Crash safety: the sink binary is killed with SIGKILL at 10 random points while it loads a
//! million records; after a final restart, `count()` with FINAL equals the number of distinct
//! records and no identity appears twice. Run through `cargo xtask test`.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::{path::Path, time::Duration};

use polytape_model::{Decimal, Trade, samples};
use polytape_test_support::{
    cli::{RunningService, free_local_addr, stack_env},
    stack::{IsolatedDatabase, endpoints, ensured_isolated_topics, unique_name},
};
use rand::Rng as _;
use support::*;

const RECORDS: usize = 1_000_000;
const KILLS: usize = 10;

fn trade(index: usize) -> Trade {
    let mut trade = samples::trade();
    trade.trade_id = format!("{index:08}");
    trade.price = Decimal::new(i64::try_from(index % 999_999).unwrap() + 1, 6);
    trade.size = Decimal::new(i64::try_from(index).unwrap(), 6);
    trade.timestamp_ms = polytape_model::now_ms() - 86_400_000 + i64::try_from(index).unwrap();
    trade
}

/// Rows stored so far, duplicates included: a cheap progress probe (FINAL over a growing table
/// would compete with the inserts for the engine).
async fn rows_stored(client: &clickhouse::Client) -> u64 {
    count(client, "SELECT count() FROM trades").await
}

/// Rows the running sink says it inserted (its `polytape_sink_rows_inserted_total`, every
/// table); 0 while its admin endpoint does not answer.
fn rows_inserted(service: &RunningService) -> u64 {
    let Some((_, metrics)) = service.get("/metrics") else {
        return 0;
    };
    let total: f64 = metrics
        .lines()
        .filter(|line| line.starts_with("polytape_sink_rows_inserted_total{"))
        .filter_map(|line| line.split_whitespace().last()?.parse::<f64>().ok())
        .sum();
    // A counter of whole rows, far below 2^53.
    total as u64
}

async fn counts(client: &clickhouse::Client) -> (u64, u64) {
    let final_count = count(client, "SELECT count() FROM trades FINAL").await;
    let duplicated = count(
        client,
        "SELECT count() FROM (SELECT trade_id FROM trades FINAL GROUP BY trade_id HAVING count() > 1)",
    )
    .await;
    (final_count, duplicated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_ten_times_during_a_million_record_replay_it_ends_exactly_once() {
    let stack = endpoints();
    let names = ensured_isolated_topics("crash").await;
    let database = IsolatedDatabase::migrated("crash").await;

    let producer = producer::<Trade>(&stack, &names).await;
    for chunk_start in (0..RECORDS).step_by(50_000) {
        let chunk: Vec<Trade> = (chunk_start..(chunk_start + 50_000).min(RECORDS))
            .map(trade)
            .collect();
        producer.send_all(&chunk).await.unwrap();
    }

    let started = std::time::Instant::now();
    let binary = Path::new(env!("CARGO_BIN_EXE_polytape-sink-clickhouse"));
    let mut environment = stack_env();
    environment.extend([
        ("POLYTAPE_CLICKHOUSE_DATABASE", database.name.clone()),
        ("POLYTAPE_TOPIC_PREFIX", names.prefix().to_owned()),
        ("POLYTAPE_SINK_CONSUMER_GROUP", unique_name("crash-group")),
        ("POLYTAPE_SINK_BATCH_MAX_ROWS", "20000".to_owned()),
        ("POLYTAPE_LOG_LEVEL", "warn".to_owned()),
    ]);
    // Kill points are progress points: each run is killed once it has inserted a random number
    // of rows, so every kill lands mid-load (between inserts, or during one). Progress is the
    // run's own counter: the table's plain count() is no measure of it, since merges collapse
    // the copies a replay inserts and the count can even fall while a run loads.
    let mut random = rand::rng();
    let expected = u64::try_from(RECORDS).unwrap();
    for kill in 0..KILLS {
        let admin_addr = free_local_addr();
        let mut run_environment = environment.clone();
        run_environment.push(("POLYTAPE_SINK_ADMIN_ADDR", admin_addr.to_string()));
        let target = random.random_range(5_000..40_000);
        let service = RunningService::start(binary, &run_environment, admin_addr);
        // At most 30 s: a loaded machine slows the load, never the kill's meaning.
        for _ in 0..300 {
            if rows_inserted(&service) >= target {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(random.random_range(0..200))).await;
        let inserted = rows_inserted(&service);
        drop(service); // SIGKILL: no drain, no commit
        eprintln!(
            "kill {}: {inserted} rows inserted by this run (target {target}); {} rows stored",
            kill + 1,
            rows_stored(&database.client).await
        );
        assert!(
            inserted > 0,
            "run {} loaded nothing before its kill",
            kill + 1
        );
    }

    eprintln!("kills done after {:?}", started.elapsed());
    let admin_addr = free_local_addr();
    environment.push(("POLYTAPE_SINK_ADMIN_ADDR", admin_addr.to_string()));
    let service = RunningService::start(binary, &environment, admin_addr);
    // Replays mean more stored rows than records; wait until the consumer group is caught up
    // (no growth for 3 s after passing the record count), then judge with FINAL.
    let mut last = 0;
    let mut quiet_polls = 0;
    for _ in 0..1_200 {
        let stored = rows_stored(&database.client).await;
        quiet_polls = if stored == last && stored >= expected {
            quiet_polls + 1
        } else {
            0
        };
        if quiet_polls >= 6 {
            break;
        }
        last = stored;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(service.terminate(Duration::from_secs(30)), Some(0));
    eprintln!("caught up after {:?}", started.elapsed());

    let (final_count, duplicated) = counts(&database.client).await;
    assert_eq!(final_count, expected, "count() FINAL");
    assert_eq!(duplicated, 0, "no trade_id twice");
    let sum_size: String = database
        .client
        .query("SELECT toString(sum(size)) FROM trades FINAL")
        .fetch_one()
        .await
        .unwrap();
    let expected_sum: Decimal = (0..RECORDS).map(|index| trade(index).size).sum();
    assert_eq!(
        sum_size.parse::<Decimal>().unwrap(),
        expected_sum,
        "values intact"
    );
    database.drop_database().await;
}
