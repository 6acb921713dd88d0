//! The checkpoint store: the builder's whole state, with the input offsets it corresponds
//! to, in a compacted Kafka topic of its own.
//!
//! A checkpoint is written only after every output derived from the inputs it covers was
//! acknowledged, so resuming from it can lose nothing; the inputs read after it are replayed,
//! and because outputs are deterministic, what they re-emit is identical to what was emitted
//! before the crash (same keys, contents and versions).
//!
//! Layout: partition 1 holds the state, JSON, in chunks of at most 512 KiB (under every
//! broker's default message limit) keyed `a-<n>` / `b-<n>`; generations alternate between
//! the two key sets so that compaction can never remove a chunk the last complete checkpoint
//! needs. Partition 0 holds manifests (key `manifest`): generation, size, SHA-256 and the
//! chunks' offsets; a manifest is written after its chunks are acknowledged, so the last
//! manifest always describes a complete checkpoint. A crash mid-write leaves the previous
//! one in place.

use std::time::Duration;

use polytape_kafka::SharedProducer;
use polytape_model::TopicNames;
use rdkafka::{
    Message as _, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer as _},
    producer::FutureRecord,
    types::RDKafkaErrorCode,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::BuilderError;

const MANIFEST_PARTITION: i32 = 0;
const CHUNK_PARTITION: i32 = 1;
const CHUNK_BYTES: usize = 512 * 1024;
const FORMAT: u32 = 1;
const TIMEOUT: Duration = Duration::from_secs(30);

/// The checkpoint topic's name (not in the shared topic table yet).
pub(crate) fn topic_name(names: &TopicNames) -> String {
    format!("{}polytape.candle_builder.checkpoints.v1", names.prefix())
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    generation: u64,
    bytes: usize,
    sha256: String,
    chunk_offsets: Vec<i64>,
}

/// A checkpoint read back.
#[derive(Debug)]
pub(crate) struct Restored {
    pub(crate) generation: u64,
    pub(crate) payload: Vec<u8>,
}

/// Writes checkpoints; see the module documentation.
pub(crate) struct CheckpointStore {
    producer: SharedProducer,
    topic: String,
    next_generation: u64,
}

impl CheckpointStore {
    /// Creates the topic if needed and reads the last complete checkpoint.
    pub(crate) async fn open(
        brokers: &str,
        names: &TopicNames,
        producer: SharedProducer,
    ) -> Result<(Self, Option<Restored>), BuilderError> {
        let topic = topic_name(names);
        ensure_topic(brokers, &topic).await?;
        let restored = {
            let brokers = brokers.to_owned();
            let topic = topic.clone();
            tokio::task::spawn_blocking(move || read_latest(&brokers, &topic))
                .await
                .map_err(|error| {
                    BuilderError::Checkpoint(format!("reader task failed: {error}"))
                })??
        };
        let next_generation = restored
            .as_ref()
            .map_or(0, |restored| restored.generation + 1);
        Ok((
            Self {
                producer,
                topic,
                next_generation,
            },
            restored,
        ))
    }

    /// Writes `payload` as the next checkpoint and waits until the broker has it all.
    /// Returns (generation, chunk count).
    pub(crate) async fn write(&mut self, payload: &[u8]) -> Result<(u64, usize), BuilderError> {
        let generation = self.next_generation;
        let slot = if generation.is_multiple_of(2) {
            "a"
        } else {
            "b"
        };
        let mut chunk_offsets = Vec::new();
        let keys: Vec<String> = (0..payload.len().div_ceil(CHUNK_BYTES).max(1))
            .map(|index| format!("{slot}-{index}"))
            .collect();
        let chunks: Vec<&[u8]> = if payload.is_empty() {
            vec![&[]]
        } else {
            payload.chunks(CHUNK_BYTES).collect()
        };
        let producer = self.producer.current();
        let sends = keys.iter().zip(&chunks).map(|(key, chunk)| {
            producer.send(
                FutureRecord::to(&self.topic)
                    .partition(CHUNK_PARTITION)
                    .key(key.as_bytes())
                    .payload(*chunk),
                TIMEOUT,
            )
        });
        for delivery in futures::future::join_all(sends).await {
            let delivery = delivery.map_err(|(source, _)| {
                BuilderError::Kafka(self.producer.delivery_error(
                    &producer,
                    "checkpoint chunk",
                    &self.topic,
                    source,
                ))
            })?;
            chunk_offsets.push(delivery.offset);
        }
        let manifest = Manifest {
            format: FORMAT,
            generation,
            bytes: payload.len(),
            sha256: hex::encode(Sha256::digest(payload)),
            chunk_offsets,
        };
        let manifest = serde_json::to_vec(&manifest).map_err(|error| {
            BuilderError::Checkpoint(format!("cannot encode the manifest: {error}"))
        })?;
        let producer = self.producer.current();
        producer
            .send(
                FutureRecord::to(&self.topic)
                    .partition(MANIFEST_PARTITION)
                    .key("manifest")
                    .payload(&manifest),
                TIMEOUT,
            )
            .await
            .map_err(|(source, _)| {
                BuilderError::Kafka(self.producer.delivery_error(
                    &producer,
                    "checkpoint manifest",
                    &self.topic,
                    source,
                ))
            })?;
        self.next_generation += 1;
        Ok((generation, chunks.len()))
    }
}

async fn ensure_topic(brokers: &str, topic: &str) -> Result<(), BuilderError> {
    let client_error = |source| BuilderError::Client {
        context: format!("create the checkpoint topic {topic}"),
        source,
    };
    let admin: AdminClient<DefaultClientContext> = polytape_kafka::base_config(brokers)
        .create()
        .map_err(client_error)?;
    let new_topic =
        NewTopic::new(topic, 2, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(client_error)?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(BuilderError::Checkpoint(format!(
                    "cannot create topic {name}: {code}"
                )));
            }
        }
    }
    Ok(())
}

/// Reads the last manifest and its chunks (blocking; run off the async workers).
fn read_latest(brokers: &str, topic: &str) -> Result<Option<Restored>, BuilderError> {
    let client_error = |source| BuilderError::Client {
        context: format!("read the checkpoint topic {topic}"),
        source,
    };
    let consumer: BaseConsumer = polytape_kafka::base_config(brokers)
        .set("group.id", "polytape-candle-builder-checkpoint-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(client_error)?;

    let (low, high) = consumer
        .fetch_watermarks(topic, MANIFEST_PARTITION, TIMEOUT)
        .map_err(client_error)?;
    if high <= low {
        return Ok(None);
    }
    let mut manifest: Option<Vec<u8>> = None;
    read_range(
        &consumer,
        topic,
        MANIFEST_PARTITION,
        low,
        high,
        |_, payload| {
            manifest = Some(payload.to_vec());
            true
        },
    )?;
    let Some(manifest) = manifest else {
        return Ok(None);
    };
    let manifest: Manifest = serde_json::from_slice(&manifest)
        .map_err(|error| BuilderError::Checkpoint(format!("unreadable manifest: {error}")))?;
    if manifest.format != FORMAT {
        return Err(BuilderError::Checkpoint(format!(
            "checkpoint format {} is not {FORMAT}; delete topic {topic} to rebuild the state from the inputs",
            manifest.format
        )));
    }

    let (Some(first), Some(last)) = (
        manifest.chunk_offsets.iter().min().copied(),
        manifest.chunk_offsets.iter().max().copied(),
    ) else {
        return Err(BuilderError::Checkpoint(
            "manifest without chunks".to_owned(),
        ));
    };
    let mut chunks: Vec<Option<Vec<u8>>> = vec![None; manifest.chunk_offsets.len()];
    read_range(
        &consumer,
        topic,
        CHUNK_PARTITION,
        first,
        last + 1,
        |offset, payload| {
            if let Some(index) = manifest
                .chunk_offsets
                .iter()
                .position(|wanted| *wanted == offset)
            {
                chunks[index] = Some(payload.to_vec());
            }
            true
        },
    )?;
    let mut payload = Vec::with_capacity(manifest.bytes);
    for (index, chunk) in chunks.into_iter().enumerate() {
        let chunk = chunk.ok_or_else(|| {
            BuilderError::Checkpoint(format!(
                "chunk {index} of checkpoint generation {} is missing from {topic}",
                manifest.generation
            ))
        })?;
        payload.extend_from_slice(&chunk);
    }
    if payload.len() != manifest.bytes || hex::encode(Sha256::digest(&payload)) != manifest.sha256 {
        return Err(BuilderError::Checkpoint(format!(
            "checkpoint generation {} in {topic} does not match its manifest's size and SHA-256",
            manifest.generation
        )));
    }
    Ok(Some(Restored {
        generation: manifest.generation,
        payload,
    }))
}

/// Reads `[from, until)` of one partition, calling `each(offset, payload)`.
fn read_range(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    from: i64,
    until: i64,
    mut each: impl FnMut(i64, &[u8]) -> bool,
) -> Result<(), BuilderError> {
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(from))
        .map_err(|source| BuilderError::Client {
            context: format!("assign {topic}/{partition}"),
            source,
        })?;
    consumer
        .assign(&assignment)
        .map_err(|source| BuilderError::Client {
            context: format!("assign {topic}/{partition}"),
            source,
        })?;
    let deadline = std::time::Instant::now() + TIMEOUT * 4;
    let mut next = from;
    while next < until {
        if std::time::Instant::now() > deadline {
            return Err(BuilderError::Checkpoint(format!(
                "timed out reading {topic}/{partition} at offset {next} of {until}"
            )));
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.map_err(|source| BuilderError::Client {
            context: format!("read {topic}/{partition}"),
            source,
        })?;
        next = message.offset() + 1;
        if !each(message.offset(), message.payload().unwrap_or_default()) {
            break;
        }
    }
    Ok(())
}
