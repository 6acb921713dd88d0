//! Small compacted internal topics of one partition that a service reads whole at start (the
//! collector's checkpoints, the ws-bridge's state): created if missing, then read from the
//! beginning to the high watermark, the latest value per key winning.

use std::{collections::HashMap, time::Duration};

use rdkafka::{
    Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::Consumer as _,
    message::Message as _,
    types::RDKafkaErrorCode,
};

use crate::KafkaError;

/// Longest a whole read may take before it fails (a broker that stalls mid-read).
const READ_DEADLINE: Duration = Duration::from_secs(120);

/// Creates `topic` (compacted, with `partitions` partitions) unless it exists.
pub async fn ensure_compacted_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = crate::create_client(brokers)?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|error| KafkaError::TopicCreation {
            topic: topic.to_owned(),
            reason: error.to_string(),
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::TopicCreation {
                    topic: name,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Reads partition 0 of `topic` from the beginning to its high watermark: the latest payload
/// per key (an empty payload deletes the key). Blocking: call it from `spawn_blocking`.
/// `reader_group` names the (never committed) consumer group, for the broker's logs.
pub fn read_latest_values(
    brokers: &str,
    topic: &str,
    reader_group: &str,
) -> Result<HashMap<String, Vec<u8>>, KafkaError> {
    let failed = |what: &str, source: rdkafka::error::KafkaError| KafkaError::Read {
        topic: topic.to_owned(),
        reason: format!("{what}: {source}"),
    };
    let consumer = crate::create_reader(brokers, reader_group)?;
    let mut values = HashMap::new();
    let mut watermarks = Err(rdkafka::error::KafkaError::Canceled);
    // A topic created a moment ago may need a metadata round before its watermarks answer.
    for _ in 0..20 {
        watermarks = consumer.fetch_watermarks(topic, 0, Duration::from_secs(5));
        if watermarks.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let (low, high) = watermarks.map_err(|error| failed("watermarks", error))?;
    if high <= low {
        return Ok(values);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|error| failed("assign", error))?;
    consumer
        .assign(&assignment)
        .map_err(|error| failed("assign", error))?;
    let deadline = std::time::Instant::now() + READ_DEADLINE;
    while std::time::Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.map_err(|error| failed("read", error))?;
        if let Some(key) = message.key() {
            let key = String::from_utf8_lossy(key).into_owned();
            match message.payload() {
                Some(payload) if !payload.is_empty() => {
                    values.insert(key, payload.to_vec());
                }
                _ => {
                    values.remove(&key);
                }
            }
        }
        if message.offset() >= high - 1 {
            return Ok(values);
        }
    }
    Err(KafkaError::ReadTimedOut {
        topic: topic.to_owned(),
        offset: high,
        seconds: READ_DEADLINE.as_secs(),
    })
}
