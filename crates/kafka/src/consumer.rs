use std::sync::LazyLock;

use prometheus::IntGaugeVec;
use rdkafka::{
    ClientContext, Offset, Statistics, TopicPartitionList,
    consumer::{CommitMode, Consumer as _, ConsumerContext, StreamConsumer},
};

use crate::{KafkaError, base_config};

static CONSUMER_LAG: LazyLock<Option<IntGaugeVec>> = LazyLock::new(|| {
    polytape_runtime::metrics::gauge_vec(
        "polytape_kafka_consumer_lag",
        "Messages between the consumer's position and the partition's high watermark",
        &["group", "topic", "partition"],
    )
});

/// A consumer context that exports each assigned partition's lag from librdkafka's statistics
/// (every 5 s) as `polytape_kafka_consumer_lag{group, topic, partition}`.
#[derive(Debug, Clone)]
pub struct LagReporting {
    group: String,
}

impl ClientContext for LagReporting {
    fn stats(&self, statistics: Statistics) {
        let Some(lag) = CONSUMER_LAG.as_ref() else {
            return;
        };
        for (topic_name, topic) in statistics.topics {
            for (partition, details) in topic.partitions {
                // Partition -1 is librdkafka's internal "unassigned" bucket; -1 lag is unknown.
                if partition < 0 || details.consumer_lag < 0 {
                    continue;
                }
                lag.with_label_values(&[
                    self.group.as_str(),
                    topic_name.as_str(),
                    &partition.to_string(),
                ])
                .set(details.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for LagReporting {}

/// A consumer as [`create_consumer`] makes, which also reports its lag per partition.
pub type LagReportingConsumer = StreamConsumer<LagReporting>;

/// [`create_consumer`] with lag reporting.
pub fn create_lag_reporting_consumer(
    brokers: &str,
    group_id: &str,
    client_id: &str,
) -> Result<LagReportingConsumer, KafkaError> {
    at_least_once_config(brokers, group_id, client_id)
        .set("statistics.interval.ms", "5000")
        .create_with_context(LagReporting {
            group: group_id.to_owned(),
        })
        .map_err(|source| KafkaError::Client {
            brokers: brokers.to_owned(),
            source,
        })
}

fn at_least_once_config(brokers: &str, group_id: &str, client_id: &str) -> rdkafka::ClientConfig {
    let mut config = base_config(brokers);
    config
        .set("group.id", group_id)
        .set("client.id", client_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("enable.partition.eof", "false");
    config
}

/// A consumer for at-least-once processing: offsets are *stored* only by the application,
/// after the records up to them are durably handled (`enable.auto.offset.store=false`), and
/// the stored offsets are committed in the background and once more at shutdown
/// ([`commit_stored_offsets`]). A crash therefore replays, and never skips, records.
pub fn create_consumer(
    brokers: &str,
    group_id: &str,
    client_id: &str,
) -> Result<StreamConsumer, KafkaError> {
    at_least_once_config(brokers, group_id, client_id)
        .create()
        .map_err(|source| KafkaError::Client {
            brokers: brokers.to_owned(),
            source,
        })
}

/// Marks everything before `next_offset` on each partition as processed; the background
/// commit picks it up.
pub fn store_processed<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    processed: impl IntoIterator<Item = (String, i32, i64)>,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut offsets = TopicPartitionList::new();
    for (topic, partition, next_offset) in processed {
        offsets.add_partition_offset(&topic, partition, Offset::Offset(next_offset))?;
    }
    consumer.store_offsets(&offsets)
}

/// Commits the stored offsets now and waits for the broker (at shutdown, after draining).
pub fn commit_stored_offsets<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
) -> Result<(), rdkafka::error::KafkaError> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit.
        Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::types::RDKafkaErrorCode::NoOffset,
        )) => Ok(()),
        other => other,
    }
}
