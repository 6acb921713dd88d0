//! `cargo xtask bench sink` (needs the local stack). Two ratios, each measured side by side in
//! one run, 3 rounds each:
//! - P1: the sink's own path (Avro decode → rows → RowBinary insert) from records already in
//!   memory, against a raw RowBinary bulk load of the same rows into the same ClickHouse;
//! - P2: end to end through the broker: the sink pipeline's rows/s against a bare consumer's
//!   messages/s on the same topic (the broker's own limit here).
//!
//! - and, at a steady 20k rows/s, the batch sizes and the freshness p50/p99 (insert completion
//!   minus event time, from the sink's per-row latency histogram).
//!
//! Prints one `RESULT {json}` line that the xtask reads.

#![allow(clippy::unwrap_used)] // a benchmark fails loudly

use std::time::{Duration, Instant};

use clickhouse::Client;
use polytape_clickhouse::rows::TradeRow;
use polytape_codec::{RecordEncoder, SchemaRegistryClient};
use polytape_kafka::{RecordProducer, SharedProducer, ensure_topics};
use polytape_model::{Decimal, Topic, Trade, samples};
use polytape_sink_clickhouse::{
    pipeline::{BatchLimits, Pipeline},
    tables::{
        MAX_PARTITIONS_PER_INSERT, MessageAt, PartitionBy, TableBuffer, TypedBuffer, all_buffers,
    },
};
use polytape_test_support::stack::{IsolatedDatabase, endpoints, isolated_topics, unique_name};
use rdkafka::consumer::Consumer as _;
use tokio_util::sync::CancellationToken;

const P1_ROWS: usize = 300_000;
const P2_MESSAGES: usize = 200_000;
const BATCH: usize = 100_000;
const ROUNDS: usize = 3;

fn trade(index: usize) -> Trade {
    let mut trade = samples::trade();
    trade.trade_id = format!("{index:08}");
    trade.size = Decimal::new(i64::try_from(index).unwrap() + 1, 6);
    trade.timestamp_ms =
        polytape_model::now_ms() - 3_600_000 + i64::try_from(index % 1_000_000).unwrap();
    trade
}

async fn fresh_database(purpose: &str) -> IsolatedDatabase {
    let database = IsolatedDatabase::create(purpose).await;
    polytape_clickhouse::migrate(&database.client, &database.name, 90)
        .await
        .unwrap();
    database
}

async fn raw_load(client: &Client, rows: &[TradeRow]) -> f64 {
    let started = Instant::now();
    for chunk in rows.chunks(BATCH) {
        let mut insert = client.insert::<TradeRow>("trades").await.unwrap();
        for row in chunk {
            insert.write(row).await.unwrap();
        }
        insert.end().await.unwrap();
    }
    rows.len() as f64 / started.elapsed().as_secs_f64()
}

/// The sink's own path as the pipeline runs it: each batch is decoded and mapped while the
/// previous one is inserted (one insert in flight).
async fn sink_path(client: &Client, registry: &SchemaRegistryClient, framed: &[Vec<u8>]) -> f64 {
    let mut buffer = TypedBuffer::<Trade, TradeRow>::new(registry.clone(), |row| row.timestamp)
        .partitioned_by(PartitionBy::day("timestamp", |row| row.timestamp));
    let started = Instant::now();
    let mut in_flight: Option<tokio::task::JoinHandle<()>> = None;
    for (batch, chunk) in framed.chunks(BATCH).enumerate() {
        for (index, payload) in chunk.iter().enumerate() {
            let at = MessageAt {
                partition: 0,
                offset: i64::try_from(batch * BATCH + index).unwrap(),
            };
            match buffer.push_cached(at, payload) {
                Some(outcome) => outcome.unwrap(),
                None => buffer.push(at, payload).await.unwrap(),
            }
        }
        let mut rows = buffer.take().unwrap();
        if let Some(previous) = in_flight.take() {
            previous.await.unwrap();
        }
        let client = client.clone();
        in_flight = Some(tokio::spawn(async move {
            for group in rows.split_by_partition(MAX_PARTITIONS_PER_INSERT) {
                let token = format!("bench-{batch}:{}-{}", group.start, group.end);
                rows.insert(&client, group, &token).await.unwrap();
            }
        }));
    }
    if let Some(previous) = in_flight.take() {
        previous.await.unwrap();
    }
    framed.len() as f64 / started.elapsed().as_secs_f64()
}

async fn bare_consumer(brokers: &str, topic: &str) -> f64 {
    let consumer =
        polytape_kafka::create_consumer(brokers, &unique_name("bare"), "bench-bare").unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let first = consumer.recv().await.unwrap();
    drop(first);
    let started = Instant::now();
    for _ in 1..P2_MESSAGES {
        consumer.recv().await.unwrap();
    }
    (P2_MESSAGES - 1) as f64 / started.elapsed().as_secs_f64()
}

fn consumed_bytes() -> f64 {
    polytape_runtime::metrics::family_total("polytape_sink_consumed_bytes_total")
}

fn rows_inserted() -> f64 {
    polytape_runtime::metrics::family_total("polytape_sink_rows_inserted_total")
}

async fn sink_pipeline(
    brokers: &str,
    registry: &SchemaRegistryClient,
    names: &polytape_model::TopicNames,
) -> f64 {
    let database = fresh_database("benchpipe").await;
    let pipeline = Pipeline {
        consumer: polytape_kafka::create_lag_reporting_consumer(
            brokers,
            &unique_name("pipe"),
            "bench-sink",
        )
        .unwrap(),
        client: database.client.clone(),
        topic_names: names.clone(),
        buffers: all_buffers(registry),
        limits: BatchLimits {
            max_rows: BATCH,
            max_bytes: 1 << 26,
            max_wait: Duration::from_millis(500),
        },
    };
    let before = rows_inserted();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { pipeline.run(stop).await.unwrap() }
    });
    // Timed from the first message consumed to the last row inserted, as the bare consumer is
    // timed from its first message (group join excluded on both sides).
    let consumed_before = consumed_bytes();
    while consumed_bytes() <= consumed_before {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    while rows_inserted() - before < P2_MESSAGES as f64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.cancel();
    task.await.unwrap();
    database.drop_database().await;
    P2_MESSAGES as f64 / elapsed
}

/// The `quantile` (0..1) of a Prometheus histogram, interpolated linearly inside its bucket.
fn histogram_quantile(name: &str, quantile: f64) -> (f64, f64, u64) {
    let families = prometheus::gather();
    let Some(histogram) = families
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| {
            family
                .get_metric()
                .iter()
                .map(|metric| metric.get_histogram().clone())
                .collect::<Vec<_>>()
        })
        .next()
    else {
        return (f64::NAN, f64::NAN, 0);
    };
    let count = histogram.get_sample_count();
    let mean = histogram.get_sample_sum() / count.max(1) as f64;
    let target = quantile * count as f64;
    let (mut lower_bound, mut lower_count) = (0.0, 0.0);
    for bucket in histogram.get_bucket() {
        let (upper_bound, upper_count) = (bucket.upper_bound(), bucket.cumulative_count() as f64);
        if upper_count >= target {
            let share = if upper_count > lower_count {
                (target - lower_count) / (upper_count - lower_count)
            } else {
                0.0
            };
            return (
                lower_bound + share * (upper_bound - lower_bound),
                mean,
                count,
            );
        }
        (lower_bound, lower_count) = (upper_bound, upper_count);
    }
    (lower_bound, mean, count)
}

/// Produces `rate` trades per second for `seconds` while the sink runs with its default batch
/// limits; returns (freshness p50 ms, freshness p99 ms, mean batch rows).
async fn steady_rate(
    brokers: &str,
    registry: &SchemaRegistryClient,
    rate: usize,
    seconds: usize,
) -> (f64, f64, f64) {
    let names = isolated_topics("steady");
    ensure_topics(brokers, &names, &[Topic::Trades], 1)
        .await
        .unwrap();
    let database = fresh_database("benchsteady").await;
    let pipeline = Pipeline {
        consumer: polytape_kafka::create_lag_reporting_consumer(
            brokers,
            &unique_name("steady"),
            "bench-steady",
        )
        .unwrap(),
        client: database.client.clone(),
        topic_names: names.clone(),
        buffers: all_buffers(registry),
        limits: BatchLimits {
            max_rows: 100_000,
            max_bytes: 1 << 26,
            max_wait: Duration::from_millis(500),
        },
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { pipeline.run(stop).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_secs(5)).await; // group join
    let producer = RecordProducer::<Trade>::register(
        SharedProducer::connect(brokers).unwrap(),
        registry,
        &names,
    )
    .await
    .unwrap();
    let tick = Duration::from_millis(50);
    let per_tick = rate / 20;
    let mut next = tokio::time::Instant::now();
    for tick_number in 0..seconds * 20 {
        let batch: Vec<Trade> = (0..per_tick)
            .map(|offset| {
                let mut trade = trade(tick_number * per_tick + offset);
                trade.timestamp_ms = polytape_model::now_ms();
                trade
            })
            .collect();
        producer.send_all(&batch).await.unwrap();
        next += tick;
        tokio::time::sleep_until(next).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    task.await.unwrap();
    database.drop_database().await;
    let (p50, _, _) = histogram_quantile("polytape_sink_row_latency_seconds", 0.50);
    let (p99, _, _) = histogram_quantile("polytape_sink_row_latency_seconds", 0.99);
    let (_, mean_batch, _) = histogram_quantile("polytape_sink_batch_rows", 0.5);
    (p50 * 1000.0, p99 * 1000.0, mean_batch)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let stack = endpoints();
        let registry = SchemaRegistryClient::new(&stack.schema_registry_url).unwrap();
        // First, while the process-wide latency and batch histograms hold nothing else.
        let (p50_ms, p99_ms, mean_batch_rows) = steady_rate(&stack.kafka_brokers, &registry, 20_000, 20).await;
        eprintln!("steady 20k rows/s: freshness p50 {p50_ms:.0} ms, p99 {p99_ms:.0} ms, mean batch {mean_batch_rows:.0} rows");
        let names = isolated_topics("bench");
        ensure_topics(&stack.kafka_brokers, &names, &[Topic::Trades], 1)
            .await
            .unwrap();
        let encoder = RecordEncoder::<Trade>::register(&registry, &names)
            .await
            .unwrap();

        let trades: Vec<Trade> = (0..P1_ROWS).map(trade).collect();
        let framed: Vec<Vec<u8>> = trades
            .iter()
            .map(|trade| encoder.encode(trade).unwrap())
            .collect();
        let rows: Vec<TradeRow> = trades
            .iter()
            .cloned()
            .map(|trade| TradeRow::try_from(trade).unwrap())
            .collect();
        let (mut p1_sink, mut p1_raw) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let database = fresh_database("benchraw").await;
            p1_raw.push(raw_load(&database.client, &rows).await);
            database.drop_database().await;
            let database = fresh_database("benchsink").await;
            p1_sink.push(sink_path(&database.client, &registry, &framed).await);
            database.drop_database().await;
            eprintln!(
                "p1 round {}: sink {:.0} rows/s, raw {:.0} rows/s",
                round + 1,
                p1_sink[round],
                p1_raw[round]
            );
        }

        let producer = RecordProducer::<Trade>::register(
            SharedProducer::connect(&stack.kafka_brokers).unwrap(),
            &registry,
            &names,
        )
        .await
        .unwrap();
        for chunk in trades[..P2_MESSAGES].chunks(50_000) {
            producer.send_all(chunk).await.unwrap();
        }
        let topic = names.name(Topic::Trades);
        let (mut p2_sink, mut p2_consumer) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            p2_consumer.push(bare_consumer(&stack.kafka_brokers, &topic).await);
            p2_sink.push(sink_pipeline(&stack.kafka_brokers, &registry, &names).await);
            eprintln!(
                "p2 round {}: sink {:.0} rows/s, bare consumer {:.0} msgs/s",
                round + 1,
                p2_sink[round],
                p2_consumer[round]
            );
        }
        let result = serde_json::json!({
            "steady_rate_rows_per_s": 20_000, "freshness_p50_ms": p50_ms, "freshness_p99_ms": p99_ms,
            "mean_batch_rows": mean_batch_rows,
            "p1_sink_rows_per_s": p1_sink, "p1_raw_rows_per_s": p1_raw,
            "p2_sink_rows_per_s": p2_sink, "p2_consumer_msgs_per_s": p2_consumer,
            "batch_rows": BATCH, "p1_rows": P1_ROWS, "p2_messages": P2_MESSAGES,
        });
        println!("RESULT {result}");
    });
}
