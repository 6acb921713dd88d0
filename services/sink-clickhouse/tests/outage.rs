//! ClickHouse outage: the sink reaches ClickHouse through a proxy that goes dark for 60 s
//! mid-stream. During the outage the sink holds its offsets and stops consuming once the batch in
//! flight and one more are buffered; afterwards it catches up with zero loss and no duplicates. Run through
//! `cargo xtask test`.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{net::SocketAddr, time::Duration};

use polytape_codec::SchemaRegistryClient;
use polytape_kafka::{RecordProducer, SharedProducer};
use polytape_model::{Decimal, Topic, Trade, samples};
use polytape_sink_clickhouse::{
    pipeline::{BatchLimits, Pipeline},
    tables::all_buffers,
};
use polytape_test_support::{
    proxy::SwitchableProxy,
    stack::{IsolatedDatabase, endpoints, ensured_isolated_topics, unique_name},
};
use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer as _},
};
use tokio_util::sync::CancellationToken;

const OUTAGE: Duration = Duration::from_secs(60);
const MAX_ROWS: usize = 2_000;

fn trade(index: usize) -> Trade {
    let mut trade = samples::trade();
    trade.trade_id = format!("{index:06}");
    trade.size = Decimal::new(i64::try_from(index).unwrap() + 1, 6);
    trade.timestamp_ms = polytape_model::now_ms() - 3_600_000 + i64::try_from(index).unwrap();
    trade
}

async fn stored(client: &clickhouse::Client) -> u64 {
    client
        .query("SELECT count() FROM trades")
        .fetch_one()
        .await
        .unwrap()
}

fn consumed_bytes() -> f64 {
    polytape_runtime::metrics::family_total("polytape_sink_consumed_bytes_total")
}

fn committed_offsets(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = polytape_kafka::base_config(brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|element| match element.offset() {
            Offset::Offset(offset) => offset,
            _ => -1,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_outage_holds_offsets_bounds_memory_and_loses_nothing() {
    let stack = endpoints();
    let names = ensured_isolated_topics("outage").await;
    let topic = names.name(Topic::Trades);
    let database = IsolatedDatabase::migrated("outage").await;
    let clickhouse_addr: SocketAddr = stack
        .clickhouse_url
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let proxy = SwitchableProxy::start(clickhouse_addr).await;

    let registry = SchemaRegistryClient::new(&stack.schema_registry_url).unwrap();
    let producer = RecordProducer::<Trade>::register(
        SharedProducer::connect(&stack.kafka_brokers).unwrap(),
        &registry,
        &names,
    )
    .await
    .unwrap();
    let before: Vec<Trade> = (0..10_000).map(trade).collect();
    producer.send_all(&before).await.unwrap();

    let group = unique_name("outage-group");
    let mut proxied = database.config.clone();
    proxied.clickhouse_url = format!("http://{}", proxy.addr);
    let pipeline = Pipeline {
        consumer: polytape_kafka::create_lag_reporting_consumer(
            &stack.kafka_brokers,
            &group,
            "outage-test",
        )
        .unwrap(),
        client: polytape_clickhouse::client(&proxied),
        topic_names: names.clone(),
        buffers: all_buffers(&registry),
        limits: BatchLimits {
            max_rows: MAX_ROWS,
            max_bytes: 1 << 26,
            max_wait: Duration::from_millis(200),
        },
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { pipeline.run(stop).await.unwrap() }
    });
    while stored(&database.client).await < 10_000 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the background commit catch up with the stored offsets.
    tokio::time::sleep(Duration::from_secs(2)).await;

    proxy.set_up(false);
    let after: Vec<Trade> = (10_000..40_000).map(trade).collect();
    producer.send_all(&after).await.unwrap();
    // Give the sink time to fill its one batch and hit the outage.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rows_at_outage = stored(&database.client).await;
    let offsets_at_outage = committed_offsets(
        &stack.kafka_brokers,
        &group,
        &topic,
        Topic::Trades.partitions(),
    );
    let consumed_at_outage = consumed_bytes();
    tokio::time::sleep(OUTAGE - Duration::from_secs(5)).await;
    assert_eq!(
        stored(&database.client).await,
        rows_at_outage,
        "nothing written during the outage"
    );
    assert_eq!(
        committed_offsets(
            &stack.kafka_brokers,
            &group,
            &topic,
            Topic::Trades.partitions()
        ),
        offsets_at_outage,
        "offsets held during the outage"
    );
    assert_eq!(
        consumed_bytes(),
        consumed_at_outage,
        "consumption paused: memory bounded by the batch in flight and one more"
    );
    let buffered = u64::try_from(MAX_ROWS).unwrap();
    assert!(
        rows_at_outage <= 10_000 + buffered,
        "at most one more batch slipped in before the cut"
    );

    proxy.set_up(true);
    let total = 40_000;
    for _ in 0..1_200 {
        if stored(&database.client).await >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    task.await.unwrap();
    let distinct: u64 = database
        .client
        .query("SELECT count() FROM trades FINAL")
        .fetch_one()
        .await
        .unwrap();
    let duplicated: u64 = database
        .client
        .query("SELECT count() FROM (SELECT trade_id FROM trades FINAL GROUP BY trade_id HAVING count() > 1)")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(distinct, total, "zero loss");
    assert_eq!(duplicated, 0);
    database.drop_database().await;
}
