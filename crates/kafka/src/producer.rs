use std::{sync::Arc, time::Duration};

use polytape_codec::{AvroRecord, RecordEncoder, SchemaRegistryClient};
use polytape_model::TopicNames;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::{KafkaError, base_config};

/// An idempotent producer (`enable.idempotence`, `acks=all`): retries inside librdkafka never
/// duplicate or reorder records of a partition.
pub fn create_producer(brokers: &str) -> Result<FutureProducer, KafkaError> {
    base_config(brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("message.timeout.ms", "120000")
        .set("queue.buffering.max.kbytes", "262144")
        .create()
        .map_err(|source| KafkaError::Client {
            brokers: brokers.to_owned(),
            source,
        })
}

/// Where the broker stored an acknowledged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// Produces one record type to its topic, encoded with its registered schema and keyed by
/// [`AvroRecord::record_key`].
#[derive(Clone)]
pub struct RecordProducer<T> {
    producer: FutureProducer,
    topic: Arc<str>,
    encoder: Arc<RecordEncoder<T>>,
}

impl<T> std::fmt::Debug for RecordProducer<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RecordProducer")
            .field("topic", &self.topic)
            .finish()
    }
}

impl<T: AvroRecord> RecordProducer<T> {
    /// Registers `T`'s schema (once per start-up) and returns a producer for its topic.
    pub async fn register(
        producer: FutureProducer,
        registry: &SchemaRegistryClient,
        topic_names: &TopicNames,
    ) -> Result<Self, polytape_codec::CodecError> {
        let encoder = RecordEncoder::<T>::register(registry, topic_names).await?;
        Ok(Self {
            producer,
            topic: topic_names.name(T::TOPIC).into(),
            encoder: Arc::new(encoder),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends one record and waits for the broker's acknowledgement.
    pub async fn send(&self, record: &T) -> Result<Delivered, KafkaError> {
        let payload = self
            .encoder
            .encode(record)
            .map_err(|source| KafkaError::Encode {
                record: T::NAME,
                topic: self.topic.to_string(),
                source,
            })?;
        let key = record.record_key();
        let delivery = self
            .producer
            .send(
                FutureRecord::to(&self.topic)
                    .key(key.as_bytes())
                    .payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(source, _)| KafkaError::Delivery {
                record: T::NAME,
                topic: self.topic.to_string(),
                source,
            })?;
        Ok(Delivered {
            partition: delivery.partition,
            offset: delivery.offset,
        })
    }

    /// Sends records concurrently (librdkafka batches them) and waits until every one is
    /// acknowledged. Order within a partition is kept by the idempotent producer.
    pub async fn send_all(&self, records: &[T]) -> Result<Vec<Delivered>, KafkaError> {
        let sends = records.iter().map(|record| self.send(record));
        futures::future::join_all(sends).await.into_iter().collect()
    }
}
