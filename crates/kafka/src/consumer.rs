use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer as _, StreamConsumer},
};

use crate::{KafkaError, base_config};

/// A consumer for at-least-once processing: offsets are *stored* only by the application,
/// after the records up to them are durably handled (`enable.auto.offset.store=false`), and
/// the stored offsets are committed in the background and once more at shutdown
/// ([`commit_stored_offsets`]). A crash therefore replays, and never skips, records.
pub fn create_consumer(
    brokers: &str,
    group_id: &str,
    client_id: &str,
) -> Result<StreamConsumer, KafkaError> {
    base_config(brokers)
        .set("group.id", group_id)
        .set("client.id", client_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|source| KafkaError::Client {
            brokers: brokers.to_owned(),
            source,
        })
}

/// Marks everything before `next_offset` on each partition as processed; the background
/// commit picks it up.
pub fn store_processed(
    consumer: &StreamConsumer,
    processed: impl IntoIterator<Item = (String, i32, i64)>,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut offsets = TopicPartitionList::new();
    for (topic, partition, next_offset) in processed {
        offsets.add_partition_offset(&topic, partition, Offset::Offset(next_offset))?;
    }
    consumer.store_offsets(&offsets)
}

/// Commits the stored offsets now and waits for the broker (at shutdown, after draining).
pub fn commit_stored_offsets(consumer: &StreamConsumer) -> Result<(), rdkafka::error::KafkaError> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit.
        Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::types::RDKafkaErrorCode::NoOffset,
        )) => Ok(()),
        other => other,
    }
}
