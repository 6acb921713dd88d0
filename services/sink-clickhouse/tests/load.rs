//! The sink against the real stack: records of every topic, with redeliveries and garbage, end
//! up in ClickHouse exactly once (after FINAL) with identical values; undecodable input lands
//! in `dead_letters` and the rest proceeds. Run through `cargo xtask test`.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::time::Duration;

use polytape_codec::{AvroRecord, SchemaRegistryClient};
use polytape_kafka::{RecordProducer, create_producer};
use polytape_model::{Decimal, Topic, TopicNames, samples};
use polytape_test_support::stack::{
    IsolatedDatabase, StackEndpoints, endpoints, ensured_isolated_topics, unique_name,
};
use rdkafka::producer::FutureRecord;
use support::*;

const PER_TOPIC: usize = 200;

/// `count` distinct records of a type, each sent once, and the first 20 sent twice more
/// (a producer retry and a replay).
async fn produce<T: AvroRecord + Clone>(
    stack: &StackEndpoints,
    names: &TopicNames,
    records: Vec<T>,
) {
    let producer = producer::<T>(stack, names).await;
    producer.send_all(&records).await.unwrap();
    producer.send_all(&records[..20]).await.unwrap();
    producer.send_all(&records[..20]).await.unwrap();
}

fn distinct<T>(base: T, count: usize, vary: impl Fn(&mut T, usize)) -> Vec<T>
where
    T: Clone,
{
    (0..count)
        .map(|index| {
            let mut record = base.clone();
            vary(&mut record, index);
            record
        })
        .collect()
}

fn index_ms(index: usize) -> i64 {
    polytape_model::now_ms() - 3_600_000 + i64::try_from(index).unwrap()
}

async fn count_final(client: &clickhouse::Client, table: &str) -> u64 {
    count(client, &format!("SELECT count() FROM {table} FINAL")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_topic_lands_exactly_once_with_identical_values() {
    let stack = endpoints();
    let names = ensured_isolated_topics("sinkload").await;
    let database = IsolatedDatabase::migrated("sinkload").await;

    let trades = distinct(samples::trade(), PER_TOPIC, |trade, index| {
        trade.trade_id = format!("trade-{index:04}");
        trade.price = Decimal::new(i64::try_from(index).unwrap() + 1, 6);
        trade.size = Decimal::new(123_456_789 + i64::try_from(index).unwrap(), 6);
        trade.timestamp_ms = index_ms(index);
    });
    produce(&stack, &names, trades.clone()).await;
    let n = PER_TOPIC;
    produce(
        &stack,
        &names,
        distinct(samples::market(), n, |m, i| {
            m.condition_id = format!("0xm{i}")
        }),
    )
    .await;
    produce(
        &stack,
        &names,
        distinct(samples::event(), n, |e, i| e.event_id = format!("{i}")),
    )
    .await;
    produce(
        &stack,
        &names,
        distinct(samples::book_snapshot(), n, |b, i| {
            b.timestamp_ms = index_ms(i)
        }),
    )
    .await;
    produce(
        &stack,
        &names,
        distinct(samples::price_change(), n, |c, i| {
            c.sequence = i64::try_from(i).unwrap();
            c.timestamp_ms = index_ms(i);
        }),
    )
    .await;
    produce(
        &stack,
        &names,
        distinct(samples::last_trade(), n, |t, i| {
            t.sequence = i64::try_from(i).unwrap();
            t.timestamp_ms = index_ms(i);
        }),
    )
    .await;
    produce(
        &stack,
        &names,
        distinct(samples::tick_size_change(), n, |t, i| {
            t.sequence = i64::try_from(i).unwrap();
            t.timestamp_ms = index_ms(i);
        }),
    )
    .await;
    produce(
        &stack,
        &names,
        distinct(samples::best_bid_ask(), n, |q, i| {
            q.sequence = i64::try_from(i).unwrap();
            q.timestamp_ms = index_ms(i);
        }),
    )
    .await;
    produce(
        &stack,
        &names,
        distinct(samples::market_lifecycle(), n, |l, i| {
            l.condition_id = format!("0xl{i}");
            l.timestamp_ms = index_ms(i);
        }),
    )
    .await;
    produce(
        &stack,
        &names,
        distinct(samples::price_point(), n, |p, i| {
            p.timestamp_ms = index_ms(i)
        }),
    )
    .await;
    // Recent times throughout: anything older than the 90-day TTL is (rightly) dropped.
    let candles = distinct(samples::candle(), n, |c, i| {
        c.open_time_ms = index_ms(0) / 60_000 * 60_000 + 60_000 * i64::try_from(i).unwrap()
    });
    produce(&stack, &names, candles.clone()).await;
    produce(
        &stack,
        &names,
        distinct(samples::book_state(), n, |s, i| {
            s.timestamp_ms = index_ms(i)
        }),
    )
    .await;
    produce(
        &stack,
        &names,
        distinct(samples::continuity(), n, |g, i| {
            g.continuity_id = format!("gap-{i}");
            g.gap_start_ms = index_ms(i);
        }),
    )
    .await;
    produce(
        &stack,
        &names,
        distinct(samples::dead_letter(), n, |d, i| {
            d.dead_letter_id = format!("dl-{i}");
            d.occurred_ms = index_ms(i);
        }),
    )
    .await;
    produce(
        &stack,
        &names,
        distinct(samples::leaderboard_entry(), n, |entry, i| {
            entry.proxy_wallet = format!("0x{i:040x}");
            entry.snapshot_ms = index_ms(i);
        }),
    )
    .await;
    produce(
        &stack,
        &names,
        distinct(samples::signal(), n, |signal, i| {
            signal.signal_id = format!("signal-{i}");
            signal.window_start_ms = index_ms(i);
            signal.window_end_ms = Some(index_ms(i) + 2_500);
        }),
    )
    .await;
    // Garbage on the trades topic: not Avro at all.
    let producer = create_producer(&stack.kafka_brokers).unwrap();
    producer
        .send(
            FutureRecord::to(&names.name(Topic::Trades))
                .key("x")
                .payload("not avro"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    let (stop, task) = spawn(pipeline(
        &stack,
        &names,
        database.client.clone(),
        &unique_name("sink"),
        limits(500, Duration::from_millis(200)),
    ));
    // Wait for the slowest table; the garbage message becomes one extra dead letter.
    let expected_dead_letters = u64::try_from(n).unwrap() + 1;
    for _ in 0..600 {
        if count_final(&database.client, "trades").await == u64::try_from(n).unwrap()
            && count_final(&database.client, "dead_letters").await == expected_dead_letters
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the remaining batches land and a statistics interval pass, then stop (drain, commit).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let lag_series: Vec<(String, i64)> = prometheus::gather()
        .iter()
        .filter(|family| family.name() == "polytape_kafka_consumer_lag")
        .flat_map(|family| family.get_metric().to_vec())
        .filter(|metric| {
            metric
                .get_label()
                .iter()
                .any(|label| label.value() == names.name(Topic::Trades))
        })
        .map(|metric| {
            (
                format!("{:?}", metric.get_label()),
                metric.get_gauge().get_value() as i64,
            )
        })
        .collect();
    assert!(
        !lag_series.is_empty(),
        "consumer lag is exported per partition"
    );
    assert!(
        lag_series.iter().all(|(_, lag)| *lag == 0),
        "caught up: {lag_series:?}"
    );
    stop.cancel();
    task.await.unwrap();

    for topic in Topic::ALL {
        let expected = if topic == Topic::DeadLetters {
            expected_dead_letters
        } else {
            u64::try_from(n).unwrap()
        };
        assert_eq!(
            count_final(&database.client, topic.table()).await,
            expected,
            "{} after FINAL",
            topic.table()
        );
    }
    // Without FINAL the redeliveries may still be visible until merges; the identity keys are unique.
    let duplicated: u64 = database
        .client
        .query("SELECT count() FROM (SELECT trade_id FROM trades FINAL GROUP BY trade_id HAVING count() > 1)")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(duplicated, 0);

    // Values identical: exact decimals and millisecond times, read back as text.
    let stored: Vec<(String, String, String, i64)> = database
        .client
        .query("SELECT trade_id, toString(price), toString(size), toUnixTimestamp64Milli(timestamp) FROM trades FINAL ORDER BY trade_id")
        .fetch_all()
        .await
        .unwrap();
    for (trade, (trade_id, price, size, timestamp)) in trades.iter().zip(&stored) {
        assert_eq!(&trade.trade_id, trade_id);
        assert_eq!(
            price.parse::<Decimal>().unwrap(),
            trade.price,
            "{trade_id} price"
        );
        assert_eq!(
            size.parse::<Decimal>().unwrap(),
            trade.size,
            "{trade_id} size"
        );
        assert_eq!(*timestamp, trade.timestamp_ms);
    }
    let candle: (String, String, String, u64) = database
        .client
        .query("SELECT toString(notional), toString(vwap), toString(volume), count() FROM candles FINAL WHERE open_time = fromUnixTimestamp64Milli(?) GROUP BY notional, vwap, volume")
        .bind(candles[7].open_time_ms)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(candle.0.parse::<Decimal>().unwrap(), candles[7].notional);
    assert_eq!(candle.1.parse::<Decimal>().unwrap(), candles[7].vwap);
    assert_eq!(candle.2.parse::<Decimal>().unwrap(), candles[7].volume);
    let garbage: (String, Option<i64>) = database
        .client
        .query("SELECT error, offset FROM dead_letters FINAL WHERE source = 'sink-clickhouse' AND topic = ?")
        .bind(names.name(Topic::Trades))
        .fetch_one()
        .await
        .unwrap();
    assert!(garbage.0.contains("cannot decode"), "{}", garbage.0);
    assert!(garbage.1.is_some(), "the dead letter names its offset");
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_older_than_the_retention_are_gone_after_optimize_final() {
    let stack = endpoints();
    let names = ensured_isolated_topics("sinkttl").await;
    let database = IsolatedDatabase::migrated("sinkttl").await;
    // Expired parts are otherwise dropped in the background right after the insert; pausing
    // TTL merges lets the test see both rows land first.
    database
        .client
        .query("SYSTEM STOP TTL MERGES trades")
        .execute()
        .await
        .unwrap();
    let registry = SchemaRegistryClient::new(&stack.schema_registry_url).unwrap();
    let day = 86_400_000;
    let mut old = samples::trade();
    old.trade_id = "old".into();
    old.timestamp_ms = polytape_model::now_ms() - 91 * day;
    let mut young = samples::trade();
    young.trade_id = "young".into();
    young.timestamp_ms = polytape_model::now_ms() - 89 * day;
    let producer = RecordProducer::register(
        polytape_kafka::SharedProducer::connect(&stack.kafka_brokers).unwrap(),
        &registry,
        &names,
    )
    .await
    .unwrap();
    producer.send_all(&[old, young]).await.unwrap();

    let (stop, task) = spawn(pipeline(
        &stack,
        &names,
        database.client.clone(),
        &unique_name("sink"),
        limits(500, Duration::from_millis(200)),
    ));
    for _ in 0..300 {
        if count_final(&database.client, "trades").await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    task.await.unwrap();
    assert_eq!(
        count_final(&database.client, "trades").await,
        2,
        "both rows loaded"
    );

    database
        .client
        .query("SYSTEM START TTL MERGES trades")
        .execute()
        .await
        .unwrap();
    database
        .client
        .query("OPTIMIZE TABLE trades FINAL")
        .execute()
        .await
        .unwrap();
    let remaining: Vec<String> = database
        .client
        .query("SELECT trade_id FROM trades FINAL")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(remaining, vec!["young"]);
    database.drop_database().await;
}
