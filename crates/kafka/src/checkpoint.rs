//! Checkpoints of a stream processor's whole state, with the input offsets it corresponds to,
//! in a compacted Kafka topic of the processor's own.
//!
//! A processor writes a checkpoint only after every output derived from the inputs it covers
//! was acknowledged, so resuming from it can lose nothing; the inputs read after it are
//! replayed, and because outputs are deterministic, what they re-emit is identical to what
//! was emitted before the crash (same keys, contents and versions).
//!
//! Layout: partition 1 holds the state in chunks of at most 512 KiB (under every broker's
//! default message limit) keyed `a-<n>` / `b-<n>`; generations alternate between the two key
//! sets so that compaction can never remove a chunk the last complete checkpoint needs.
//! Partition 0 holds manifests (key `manifest`): generation, size, SHA-256 and the chunks'
//! offsets; a manifest is written after its chunks are acknowledged, so the last manifest
//! always describes a complete checkpoint. A crash mid-write leaves the previous one in place.

use std::time::Duration;

use rdkafka::{
    Message as _, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer as _},
    producer::FutureRecord,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{KafkaError, SharedProducer, compacted::ensure_compacted_topic};

const MANIFEST_PARTITION: i32 = 0;
const CHUNK_PARTITION: i32 = 1;
const CHUNK_BYTES: usize = 512 * 1024;
const FORMAT: u32 = 1;
const TIMEOUT: Duration = Duration::from_secs(30);

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
pub struct RestoredCheckpoint {
    pub generation: u64,
    pub payload: Vec<u8>,
}

/// Writes checkpoints to one topic; see the module documentation.
pub struct CheckpointStore {
    producer: SharedProducer,
    topic: String,
    next_generation: u64,
}

impl CheckpointStore {
    /// Creates `topic` if needed and reads its last complete checkpoint. `reader_group` names
    /// the (never committed) consumer group of the read, for the broker's logs.
    pub async fn open(
        brokers: &str,
        topic: String,
        reader_group: &str,
        producer: SharedProducer,
    ) -> Result<(Self, Option<RestoredCheckpoint>), KafkaError> {
        ensure_compacted_topic(brokers, &topic, 2).await?;
        let restored = {
            let brokers = brokers.to_owned();
            let read_topic = topic.clone();
            let reader_group = reader_group.to_owned();
            tokio::task::spawn_blocking(move || read_latest(&brokers, &read_topic, &reader_group))
                .await
                .map_err(|error| KafkaError::Read {
                    topic: topic.clone(),
                    reason: format!("the reader task failed: {error}"),
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

    /// The checkpoint topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes `payload` as the next checkpoint and waits until the broker has it all.
    /// Returns (generation, chunk count). A failed write may be retried: the generation moves
    /// on only once the manifest is acknowledged, so a retry rewrites the same slot.
    pub async fn write(&mut self, payload: &[u8]) -> Result<(u64, usize), KafkaError> {
        let generation = self.next_generation;
        let slot = if generation.is_multiple_of(2) {
            "a"
        } else {
            "b"
        };
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
        let mut chunk_offsets = Vec::with_capacity(chunks.len());
        for delivery in futures::future::join_all(sends).await {
            let delivery = delivery.map_err(|(source, _)| {
                self.producer
                    .delivery_error(&producer, "checkpoint chunk", &self.topic, source)
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
        let manifest = serde_json::to_vec(&manifest).map_err(|error| KafkaError::Checkpoint {
            topic: self.topic.clone(),
            reason: format!("cannot encode the manifest: {error}"),
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
                self.producer
                    .delivery_error(&producer, "checkpoint manifest", &self.topic, source)
            })?;
        self.next_generation += 1;
        Ok((generation, chunks.len()))
    }
}

/// Reads the last manifest and its chunks (blocking; run off the async workers).
fn read_latest(
    brokers: &str,
    topic: &str,
    reader_group: &str,
) -> Result<Option<RestoredCheckpoint>, KafkaError> {
    let corrupt = |reason: String| KafkaError::Checkpoint {
        topic: topic.to_owned(),
        reason,
    };
    let consumer = crate::create_reader(brokers, reader_group)?;
    let (low, high) = consumer
        .fetch_watermarks(topic, MANIFEST_PARTITION, TIMEOUT)
        .map_err(|source| read_error(topic, "watermarks", source))?;
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
        },
    )?;
    let Some(manifest) = manifest else {
        return Ok(None);
    };
    let manifest: Manifest = serde_json::from_slice(&manifest)
        .map_err(|error| corrupt(format!("unreadable manifest: {error}")))?;
    if manifest.format != FORMAT {
        return Err(corrupt(format!(
            "checkpoint format {} is not {FORMAT}; delete the topic to rebuild the state from the inputs",
            manifest.format
        )));
    }
    let (Some(first), Some(last)) = (
        manifest.chunk_offsets.iter().min().copied(),
        manifest.chunk_offsets.iter().max().copied(),
    ) else {
        return Err(corrupt("manifest without chunks".to_owned()));
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
        },
    )?;
    let mut payload = Vec::with_capacity(manifest.bytes);
    for (index, chunk) in chunks.into_iter().enumerate() {
        let chunk = chunk.ok_or_else(|| {
            corrupt(format!(
                "chunk {index} of checkpoint generation {} is missing",
                manifest.generation
            ))
        })?;
        payload.extend_from_slice(&chunk);
    }
    if payload.len() != manifest.bytes || hex::encode(Sha256::digest(&payload)) != manifest.sha256 {
        return Err(corrupt(format!(
            "checkpoint generation {} does not match its manifest's size and SHA-256",
            manifest.generation
        )));
    }
    Ok(Some(RestoredCheckpoint {
        generation: manifest.generation,
        payload,
    }))
}

fn read_error(topic: &str, what: &str, source: rdkafka::error::KafkaError) -> KafkaError {
    KafkaError::Read {
        topic: topic.to_owned(),
        reason: format!("{what}: {source}"),
    }
}

/// Reads `[from, until)` of one partition, calling `each(offset, payload)`.
fn read_range(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    from: i64,
    until: i64,
    mut each: impl FnMut(i64, &[u8]),
) -> Result<(), KafkaError> {
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(from))
        .map_err(|source| read_error(topic, "assign", source))?;
    consumer
        .assign(&assignment)
        .map_err(|source| read_error(topic, "assign", source))?;
    let deadline = std::time::Instant::now() + TIMEOUT * 4;
    let mut next = from;
    while next < until {
        if std::time::Instant::now() > deadline {
            return Err(KafkaError::ReadTimedOut {
                topic: format!("{topic}/{partition}"),
                offset: until,
                seconds: (TIMEOUT * 4).as_secs(),
            });
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.map_err(|source| read_error(topic, "read", source))?;
        next = message.offset() + 1;
        each(message.offset(), message.payload().unwrap_or_default());
    }
    Ok(())
}
