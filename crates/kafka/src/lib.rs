//! Kafka for Polytape.
//!
//! Producers are idempotent with `acks=all`: a record acknowledged by the broker is written
//! exactly once even if the producer retried. A service's writers share one [`SharedProducer`],
//! renewed in place when librdkafka puts it in its fatal state. Exactly-once across a crash comes from
//! deterministic record identities and idempotent sinks (ReplacingMergeTree), never from
//! Kafka transactions (the local broker refuses them, and production must not depend on them).

mod admin;
mod batch;
mod checkpoint;
mod compacted;
mod consumer;
pub mod merge;
mod partitions;
mod producer;

use std::time::Duration;

pub use admin::{TopicCreation, ensure_topics};
pub use batch::{BatchLimits, BatchRead, read_batch};
pub use checkpoint::{CheckpointStore, RestoredCheckpoint};
pub use compacted::{ensure_compacted_topic, read_latest_values};
pub use consumer::{
    LagReporting, LagReportingConsumer, commit_stored_offsets, create_consumer,
    create_lag_reporting_consumer, store_processed,
};
pub use partitions::{HighWatermarks, input_partitions};
pub use producer::{Delivered, RecordProducer, SharedProducer, create_producer};
use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer as _},
};

/// Errors of the Kafka helpers.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error(
        "cannot reach Kafka at {brokers} ({source}); start it with `cargo xtask stack up` or set POLYTAPE_KAFKA_BROKERS"
    )]
    Unreachable {
        brokers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot create a Kafka client for {brokers}: {source}")]
    Client {
        brokers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot create topic {topic}: {reason}")]
    TopicCreation { topic: String, reason: String },
    #[error(
        "input topic {topic} does not exist; create the topics (`cargo xtask stack up`, or the deployment's init job) or set POLYTAPE_TOPIC_PREFIX"
    )]
    MissingTopic { topic: String },
    #[error("cannot read {topic}: {reason}")]
    Read { topic: String, reason: String },
    #[error("could not read {topic} up to offset {offset} within {seconds} s")]
    ReadTimedOut {
        topic: String,
        offset: i64,
        seconds: u64,
    },
    #[error("cannot encode a {record} for {topic}: {source}")]
    Encode {
        record: &'static str,
        topic: String,
        #[source]
        source: polytape_codec::CodecError,
    },
    #[error("the broker did not acknowledge a {record} on {topic}: {source}")]
    Delivery {
        record: &'static str,
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// librdkafka put the producer in its fatal state; it was replaced by a new one, and
    /// sending again will use it.
    #[error(
        "a {record} for {topic} was not acknowledged: the producer failed for good ({reason}) and was replaced; send it again"
    )]
    ProducerRenewed {
        record: &'static str,
        topic: String,
        reason: String,
    },
    /// A checkpoint that cannot be written or read back as it was written: a person must
    /// look (or delete the checkpoint topic, so the state is rebuilt from the inputs).
    #[error("checkpoint in {topic}: {reason}")]
    Checkpoint { topic: String, reason: String },
    /// librdkafka put the producer in its fatal state and no new one could be made: only a
    /// new process can produce again.
    #[error(
        "the producer failed for good sending a {record} to {topic} ({code:?}: {reason}); the process must restart"
    )]
    ProducerFailed {
        record: &'static str,
        topic: String,
        code: rdkafka::types::RDKafkaErrorCode,
        reason: String,
    },
}

impl KafkaError {
    /// Whether trying again later may succeed (broker down, timeouts), as opposed to a record
    /// that can never be encoded or a producer that can never send again.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            KafkaError::Encode { .. }
                | KafkaError::MissingTopic { .. }
                | KafkaError::ProducerFailed { .. }
                | KafkaError::Checkpoint { .. }
        )
    }
}

/// Base librdkafka settings shared by our clients.
pub fn base_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        // Our local broker and Redpanda both speak the modern protocol; skip legacy probing.
        .set("api.version.request", "true")
        .set("log_level", "4");
    config
}

/// A client of any kind (admin, metadata consumer, …) with the base settings.
pub fn create_client<T: rdkafka::config::FromClientConfig>(brokers: &str) -> Result<T, KafkaError> {
    base_config(brokers)
        .create()
        .map_err(|source| KafkaError::Client {
            brokers: brokers.to_owned(),
            source,
        })
}

/// A consumer that reads by assignment and never commits (start-up reads of compacted
/// topics, checkpoints); `group` only names it in the broker's logs.
pub fn create_reader(brokers: &str, group: &str) -> Result<BaseConsumer, KafkaError> {
    base_config(brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|source| KafkaError::Client {
            brokers: brokers.to_owned(),
            source,
        })
}

/// Checks that the brokers answer a metadata request within `timeout`.
pub async fn check_reachable(brokers: &str, timeout: Duration) -> Result<(), KafkaError> {
    let brokers = brokers.to_owned();
    let consumer: BaseConsumer = create_client(&brokers)?;
    // librdkafka's metadata call blocks; keep it off the async workers.
    let answer =
        tokio::task::spawn_blocking(move || consumer.fetch_metadata(None, timeout).map(|_| ()))
            .await;
    match answer {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(KafkaError::Unreachable { brokers, source }),
        Err(_) => Err(KafkaError::Unreachable {
            brokers,
            source: rdkafka::error::KafkaError::Canceled,
        }),
    }
}

/// Checks, at service start, that the brokers and the Schema Registry both answer; the error
/// names the unreachable one and what to run.
pub async fn check_dependencies(
    config: &polytape_runtime::config::KafkaConfig,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    check_reachable(&config.kafka_brokers, Duration::from_secs(5)).await?;
    polytape_codec::SchemaRegistryClient::new(&config.schema_registry_url)?
        .check_reachable()
        .await?;
    Ok(())
}
