use std::{sync::Arc, time::Duration};

use polytape_codec::{AvroRecord, RecordEncoder, SchemaRegistryClient};
use polytape_model::TopicNames;
use polytape_runtime::metrics::InternalEvent as _;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

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

/// The idempotent producer a service's writers share, renewed in place when librdkafka puts
/// it in its fatal state.
///
/// A fatal state (e.g. the broker answering `OUT_OF_ORDER_SEQUENCE_NUMBER`) means the producer
/// can no longer keep its idempotence guarantee: every later send fails, so without renewal
/// the service would stay up and never write again. Our exactly-once does not rest on that
/// guarantee (record identities are deterministic and the sinks idempotent), and every send
/// is awaited: what the failed producer did not acknowledge is sent again by its caller, and
/// a copy it did write is merged downstream. So a fresh producer (a new producer id) is a
/// safe way on, and the callers' usual retry does the rest.
#[derive(Clone)]
pub struct SharedProducer {
    inner: Arc<SharedInner>,
}

struct SharedInner {
    brokers: String,
    current: std::sync::RwLock<FutureProducer>,
    /// How many times this producer was renewed: each renewal may leave copies of records
    /// the failed producer wrote but never acknowledged.
    renewals: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for SharedProducer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SharedProducer")
            .field("brokers", &self.inner.brokers)
            .finish()
    }
}

impl SharedProducer {
    /// An idempotent producer for `brokers` (see [`create_producer`]).
    pub fn connect(brokers: &str) -> Result<Self, KafkaError> {
        Ok(Self {
            inner: Arc::new(SharedInner {
                brokers: brokers.to_owned(),
                current: std::sync::RwLock::new(create_producer(brokers)?),
                renewals: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The producer to send with now (a cheap handle).
    pub fn current(&self) -> FutureProducer {
        self.inner
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many times this producer was renewed since it connected.
    pub fn renewals(&self) -> u64 {
        self.inner
            .renewals
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// After a send with `used` failed: `None` when `used` is not in the fatal state (an
    /// ordinary failure, for the caller to classify); otherwise the fatal error, with `used`
    /// replaced by a fresh producer (once, however many senders saw it fail), or
    /// [`KafkaError::ProducerFailed`] if no new producer can be made.
    pub fn recover(
        &self,
        used: &FutureProducer,
        record: &'static str,
        topic: &str,
    ) -> Option<Result<String, KafkaError>> {
        let (code, reason) = used.client().fatal_error()?;
        let described = format!("{code:?}: {reason}");
        let mut current = self
            .inner
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Another sender already replaced it: the fresh one is in place.
        if current.client().native_ptr() != used.client().native_ptr() {
            return Some(Ok(described));
        }
        match create_producer(&self.inner.brokers) {
            Ok(fresh) => {
                *current = fresh;
                self.inner
                    .renewals
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ProducerRenewed { reason: &described }.emit();
                Some(Ok(described))
            }
            Err(error) => Some(Err(KafkaError::ProducerFailed {
                record,
                topic: topic.to_owned(),
                code,
                reason: format!("{reason}; a new producer could not be made: {error}"),
            })),
        }
    }

    /// After a failure of a `record` for `topic` seen without the producer that sent it (an
    /// acknowledgement tracker): the current producer is replaced if it is in the fatal state
    /// (see [`Self::recover`]).
    pub fn renew_if_failed(
        &self,
        record: &'static str,
        topic: &str,
    ) -> Option<Result<String, KafkaError>> {
        self.recover(&self.current(), record, topic)
    }

    /// The error for a send with `used` that failed with `source`: retryable, with the
    /// producer renewed if it had failed for good (see [`SharedProducer::recover`]).
    pub fn delivery_error(
        &self,
        used: &FutureProducer,
        record: &'static str,
        topic: &str,
        source: rdkafka::error::KafkaError,
    ) -> KafkaError {
        match self.recover(used, record, topic) {
            None => KafkaError::Delivery {
                record,
                topic: topic.to_owned(),
                source,
            },
            Some(Ok(reason)) => KafkaError::ProducerRenewed {
                record,
                topic: topic.to_owned(),
                reason,
            },
            Some(Err(failed)) => failed,
        }
    }
}

/// A producer in librdkafka's fatal state was replaced by a fresh one.
struct ProducerRenewed<'a> {
    reason: &'a str,
}

impl polytape_runtime::metrics::InternalEvent for ProducerRenewed<'_> {
    fn emit(self) {
        tracing::warn!(
            reason = self.reason,
            "kafka producer failed for good; replaced by a new one, unacknowledged records are sent again"
        );
        if let Some(renewals) = PRODUCER_RENEWALS.as_ref() {
            renewals.inc();
        }
    }
}

static PRODUCER_RENEWALS: std::sync::LazyLock<Option<prometheus::IntCounter>> =
    std::sync::LazyLock::new(|| {
        polytape_runtime::metrics::counter(
            "polytape_kafka_producer_renewals_total",
            "Kafka producers replaced after librdkafka put them in its fatal state",
        )
    });

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
    producer: SharedProducer,
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
        producer: SharedProducer,
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
        let producer = self.producer.current();
        let delivery = producer
            .send(
                FutureRecord::to(&self.topic)
                    .key(key.as_bytes())
                    .payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(source, _)| {
                self.producer
                    .delivery_error(&producer, T::NAME, &self.topic, source)
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

#[cfg(test)]
mod tests {
    use rdkafka::{
        mocking::MockCluster,
        types::{RDKafkaApiKey, RDKafkaRespErr},
    };

    use super::*;

    async fn send(
        producer: &FutureProducer,
        topic: &str,
    ) -> Result<(), rdkafka::error::KafkaError> {
        producer
            .send(
                FutureRecord::to(topic).key("key").payload("value"),
                Duration::from_secs(10),
            )
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }

    /// The broker answering `OUT_OF_ORDER_SEQUENCE_NUMBER` (what the local broker did under
    /// load) puts librdkafka's idempotent producer in its fatal state: the shared producer is
    /// replaced, the error is retryable, and the next send goes through the new producer.
    #[tokio::test]
    async fn a_producer_in_the_fatal_state_is_replaced_and_the_next_send_succeeds() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("records", 1, 1).unwrap();
        let shared = SharedProducer::connect(&cluster.bootstrap_servers()).unwrap();
        let first = shared.current();
        send(&first, "records").await.unwrap();
        assert_eq!(shared.renewals(), 0);

        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
        );
        let failure = send(&first, "records").await.unwrap_err();
        assert!(
            first.client().fatal_error().is_some(),
            "librdkafka did not enter its fatal state: {failure}"
        );
        let error = shared.delivery_error(&first, "Trade", "records", failure);
        assert!(
            matches!(error, KafkaError::ProducerRenewed { .. }),
            "{error:?}"
        );
        assert!(error.is_retryable(), "{error}");
        // A second sender that saw the same failure finds the fresh producer in place.
        let second_report = shared.recover(&first, "Trade", "records");
        assert!(matches!(second_report, Some(Ok(_))), "{second_report:?}");

        let renewed = shared.current();
        assert_ne!(
            renewed.client().native_ptr(),
            first.client().native_ptr(),
            "the shared producer was replaced"
        );
        assert!(renewed.client().fatal_error().is_none());
        assert_eq!(shared.renewals(), 1, "renewed once for two senders");
        send(&renewed, "records").await.unwrap();
        // An ordinary failure is not a fatal one: nothing is replaced.
        assert!(shared.recover(&renewed, "Trade", "records").is_none());
    }
}
