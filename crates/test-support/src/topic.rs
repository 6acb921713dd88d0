//! Reading a topic of the stack back, whole: what a test compares with the truth.

use std::{collections::HashMap, time::Duration};

use backon::{ConstantBuilder, Retryable as _};
use polytape_codec::{AvroRecord, RecordDecoder};
use polytape_model::{Topic, TopicNames};
use rdkafka::{Message as _, Offset, TopicPartitionList, consumer::Consumer as _};

use crate::stack::endpoints;

/// One message of a topic, where it stands.
#[derive(Debug, Clone)]
pub struct TopicMessage {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Every message of `topic` in (partition, offset) order, so per-key order is kept: read by
/// assignment up to the end offsets taken when the read starts.
pub fn read_topic(topic: &str, partitions: i32) -> Vec<TopicMessage> {
    read_partitions(topic, 0..partitions)
}

/// Every message of the `partitions` of `topic`, as [`read_topic`].
pub fn read_partitions(topic: &str, partitions: std::ops::Range<i32>) -> Vec<TopicMessage> {
    let consumer = crate::config::reader(&format!("read-{topic}"));
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .unwrap_or_else(|error| panic!("no watermarks for {topic}: {error}"));
        if high > low {
            remaining.insert(partition, high);
            if let Err(error) = assignment.add_partition_offset(topic, partition, Offset::Beginning)
            {
                panic!("cannot assign {topic}/{partition}: {error}");
            }
        }
    }
    let mut messages = Vec::new();
    if remaining.is_empty() {
        return messages;
    }
    if let Err(error) = consumer.assign(&assignment) {
        panic!("cannot assign {topic}: {error}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while !remaining.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic} timed out"
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                // librdkafka reports transient connection trouble (e.g. `AllBrokersDown` while
                // a connection is re-established) and recovers by itself; the deadline bounds it.
                eprintln!("reading {topic}: {error}; retrying");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        messages.push(TopicMessage {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().unwrap_or_default().to_vec(),
            payload: message.payload().unwrap_or_default().to_vec(),
        });
        if remaining
            .get(&message.partition())
            .is_some_and(|high| message.offset() >= high - 1)
        {
            remaining.remove(&message.partition());
        }
    }
    messages.sort_by_key(|message| (message.partition, message.offset));
    messages
}

/// The decoded records of `T`'s topic under `names`, in (partition, offset) order.
pub async fn records<T: AvroRecord>(names: &TopicNames) -> Vec<T> {
    positioned_records(names)
        .await
        .into_iter()
        .map(|(_, _, record)| record)
        .collect()
}

/// The decoded records of `T`'s topic under `names` with their (partition, offset), in that
/// order.
///
/// A registry that does not answer (unreachable, 429 or 5xx) is asked again for half a minute:
/// the shared development stack may be restarted by someone else mid-test, which is not what
/// the test is about. Any other decode error fails the test at once.
pub async fn positioned_records<T: AvroRecord>(names: &TopicNames) -> Vec<(i32, i64, T)> {
    let topic = names.name(T::TOPIC);
    let partitions = T::TOPIC.partitions();
    let messages = tokio::task::spawn_blocking(move || read_topic(&topic, partitions))
        .await
        .unwrap_or_else(|error| panic!("reading a topic panicked: {error}"));
    let decoder = RecordDecoder::<T>::new(crate::stack::registry());
    let mut records = Vec::with_capacity(messages.len());
    for message in messages {
        let record = (|| decoder.decode(&message.payload))
            .retry(
                ConstantBuilder::default()
                    .with_delay(Duration::from_millis(500))
                    .with_max_times(60),
            )
            .when(polytape_codec::CodecError::is_retryable)
            .notify(|error, _| eprintln!("decode failed ({error}); retrying"))
            .await
            .unwrap_or_else(|error| panic!("cannot decode a record: {error}"));
        records.push((message.partition, message.offset, record));
    }
    records
}

/// Sends `records` and waits until every one is acknowledged, the way a service does: a
/// record the broker did not acknowledge because its producer failed for good (renewed since)
/// or its delivery failed (e.g. timed out on a loaded machine) is sent again, at most twice,
/// alone — not the records already acknowledged. A copy this may leave (a delivery that
/// succeeded but was reported failed) is one the pipeline must merge anyway; a test that needs
/// none must say so. Any other error fails the test at once. Returns where each record was
/// stored, in the order given.
pub async fn send_acknowledged<T: AvroRecord>(
    producer: &polytape_kafka::RecordProducer<T>,
    records: &[T],
) -> Vec<polytape_kafka::Delivered> {
    let mut stored: Vec<Option<polytape_kafka::Delivered>> = vec![None; records.len()];
    for attempt in 0..3 {
        let pending: Vec<usize> = (0..records.len())
            .filter(|index| stored[*index].is_none())
            .collect();
        if pending.is_empty() {
            break;
        }
        let sends = pending.iter().map(|index| producer.send(&records[*index]));
        let outcomes = futures::future::join_all(sends).await;
        for (index, outcome) in pending.into_iter().zip(outcomes) {
            match outcome {
                Ok(delivered) => stored[index] = Some(delivered),
                Err(
                    error @ (polytape_kafka::KafkaError::ProducerRenewed { .. }
                    | polytape_kafka::KafkaError::Delivery { .. }),
                ) if attempt < 2 => {
                    eprintln!("send failed ({error}); sending again");
                }
                Err(error) => panic!("cannot send a record: {error}"),
            }
        }
    }
    stored.into_iter().flatten().collect()
}

/// Produces `records` to `T`'s topic under `names`, in order, with a producer of its own, and
/// waits for every acknowledgement ([`send_acknowledged`], 2 000 at a time). Returns where each
/// record was stored, in the order given.
pub async fn produce<T: AvroRecord>(
    names: &TopicNames,
    records: &[T],
) -> Vec<polytape_kafka::Delivered> {
    let producer = polytape_kafka::SharedProducer::connect(&endpoints().kafka_brokers)
        .unwrap_or_else(|error| panic!("no producer: {error}"));
    let records_producer =
        polytape_kafka::RecordProducer::<T>::register(producer, &crate::stack::registry(), names)
            .await
            .unwrap_or_else(|error| panic!("cannot register {}: {error}", T::NAME));
    let mut delivered = Vec::with_capacity(records.len());
    for chunk in records.chunks(2_000) {
        delivered.extend(send_acknowledged(&records_producer, chunk).await);
    }
    delivered
}

/// The offsets `group` committed for the partitions of `topic` (-1 where none). Blocking.
pub fn committed_offsets(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer = crate::config::reader(group);
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap_or_else(|error| panic!("cannot read {group}'s offsets on {topic}: {error}"))
        .elements()
        .iter()
        .map(|element| match element.offset() {
            Offset::Offset(offset) => offset,
            _ => -1,
        })
        .collect()
}

/// How many records of `topics` (under `names`) lie beyond what `group` committed: 0 once a
/// consumer has committed everything written so far. Blocking.
pub fn records_behind(group: &str, names: &TopicNames, topics: &[Topic]) -> i64 {
    let consumer = crate::config::reader(group);
    let mut behind = 0;
    for topic in topics {
        let name = names.name(*topic);
        let committed = committed_offsets(group, &name, topic.partitions());
        for (partition, at) in (0..topic.partitions()).zip(committed) {
            let (_, end) = consumer
                .fetch_watermarks(&name, partition, Duration::from_secs(10))
                .unwrap_or_else(|error| {
                    panic!("cannot read the end of {name}/{partition}: {error}")
                });
            behind += (end - at.max(0)).max(0);
        }
    }
    behind
}
