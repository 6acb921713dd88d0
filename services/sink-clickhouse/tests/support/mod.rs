//! What the sink's integration tests share: a pipeline over the stack, a producer of records,
//! the consumer group's committed offsets, and counts from the test's own database.

#![allow(dead_code, unreachable_pub)] // each test binary uses part of it

use std::time::Duration;

use polytape_codec::{AvroRecord, SchemaRegistryClient};
use polytape_kafka::{RecordProducer, SharedProducer};
use polytape_model::TopicNames;
use polytape_sink_clickhouse::{
    pipeline::{BatchLimits, Pipeline},
    tables::all_buffers,
};
use polytape_test_support::stack::StackEndpoints;
use tokio_util::sync::CancellationToken;

/// A pipeline of every table over `names`, consuming as `group`, writing with `client`.
pub fn pipeline(
    stack: &StackEndpoints,
    names: &TopicNames,
    client: clickhouse::Client,
    group: &str,
    limits: BatchLimits,
) -> Pipeline {
    let registry = SchemaRegistryClient::new(&stack.schema_registry_url).unwrap();
    Pipeline {
        consumer: polytape_kafka::create_lag_reporting_consumer(
            &stack.kafka_brokers,
            group,
            "sink-test",
        )
        .unwrap(),
        client,
        topic_names: names.clone(),
        buffers: all_buffers(&registry),
        limits,
    }
}

/// Runs `pipeline` until the token is cancelled; the task fails the test if the pipeline does.
pub fn spawn(pipeline: Pipeline) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { pipeline.run(stop).await.unwrap() }
    });
    (stop, task)
}

/// Batches of at most `max_rows` rows, flushed after `max_wait`.
pub fn limits(max_rows: usize, max_wait: Duration) -> BatchLimits {
    BatchLimits {
        max_rows,
        max_bytes: 1 << 26,
        max_wait,
    }
}

/// A producer of `T` records to `names`, its schema registered.
pub async fn producer<T: AvroRecord>(
    stack: &StackEndpoints,
    names: &TopicNames,
) -> RecordProducer<T> {
    let registry = SchemaRegistryClient::new(&stack.schema_registry_url).unwrap();
    RecordProducer::<T>::register(
        SharedProducer::connect(&stack.kafka_brokers).unwrap(),
        &registry,
        names,
    )
    .await
    .unwrap()
}

/// The single number `sql` selects.
pub async fn count(client: &clickhouse::Client, sql: &str) -> u64 {
    client.query(sql).fetch_one().await.unwrap()
}

// Re-exported for the test files; not every test binary uses it.
#[allow(unused_imports)]
pub use polytape_test_support::topic::committed_offsets;
