//! Records to Kafka without waiting on the socket: each record is encoded and handed to the
//! idempotent producer at once (so per-partition order is the order of reading), and a separate
//! task awaits the acknowledgements in order. A record the broker never acknowledges is not
//! silently lost: its token and time are collected and published as a continuity gap.
//!
//! The tracker also keeps the bridge's state (see `state`): the newest acknowledged upstream
//! time per shard, and the open gaps — an open gap is written to the state topic before its
//! record is handed over, and deleted there once its closing record is acknowledged.

use backon::{ExponentialBuilder, Retryable as _};
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use polytape_codec::{AvroRecord, RecordEncoder, SchemaRegistryClient};
use polytape_kafka::SharedProducer;
use polytape_model::{
    BestBidAsk, BookSnapshot, Continuity, ContinuityKind, DeadLetter, LastTrade, MarketLifecycle,
    PriceChange, TickSizeChange, Topic, TopicNames, now_ms,
};
use polytape_runtime::metrics::InternalEvent as _;
use rdkafka::{
    Message as _,
    error::KafkaError,
    message::OwnedMessage,
    producer::{DeliveryFuture, FutureRecord},
    types::RDKafkaErrorCode,
};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    error::BridgeError,
    metrics::{RecordFailed, RecordsAcked},
    state::{self, Progress, StateWriter},
};

/// The `source` of every continuity record and dead letter the bridge writes.
pub const SOURCE: &str = "ws-bridge";

/// Records waiting for their acknowledgement at most (backpressure on the sockets beyond).
const IN_FLIGHT_LIMIT: usize = 200_000;

/// One record for one of the bridge's topics.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Book(BookSnapshot),
    Change(PriceChange),
    Trade(LastTrade),
    Tick(TickSizeChange),
    Quote(BestBidAsk),
    Lifecycle(MarketLifecycle),
    Gap(Continuity),
    Dead(DeadLetter),
}

impl Outgoing {
    /// The token and upstream time this record describes (for declaring it lost).
    fn coverage(&self) -> Option<(&str, i64)> {
        match self {
            Outgoing::Book(record) => Some((&record.token_id, record.timestamp_ms)),
            Outgoing::Change(record) => Some((&record.token_id, record.timestamp_ms)),
            Outgoing::Trade(record) => Some((&record.token_id, record.timestamp_ms)),
            Outgoing::Tick(record) => Some((&record.token_id, record.timestamp_ms)),
            Outgoing::Quote(record) => Some((&record.token_id, record.timestamp_ms)),
            Outgoing::Lifecycle(_) | Outgoing::Gap(_) | Outgoing::Dead(_) => None,
        }
    }
}

/// Every encoder the bridge needs, registered once at start-up.
#[derive(Debug)]
pub struct Encoders {
    book: RecordEncoder<BookSnapshot>,
    change: RecordEncoder<PriceChange>,
    trade: RecordEncoder<LastTrade>,
    tick: RecordEncoder<TickSizeChange>,
    quote: RecordEncoder<BestBidAsk>,
    lifecycle: RecordEncoder<MarketLifecycle>,
    gap: RecordEncoder<Continuity>,
    dead: RecordEncoder<DeadLetter>,
}

impl Encoders {
    pub async fn register(
        registry: &SchemaRegistryClient,
        names: &TopicNames,
    ) -> Result<Self, BridgeError> {
        Ok(Self {
            book: RecordEncoder::register(registry, names).await?,
            change: RecordEncoder::register(registry, names).await?,
            trade: RecordEncoder::register(registry, names).await?,
            tick: RecordEncoder::register(registry, names).await?,
            quote: RecordEncoder::register(registry, names).await?,
            lifecycle: RecordEncoder::register(registry, names).await?,
            gap: RecordEncoder::register(registry, names).await?,
            dead: RecordEncoder::register(registry, names).await?,
        })
    }

    /// Encoders for already registered ids (benchmarks without a registry).
    pub fn with_schema_id(schema_id: u32) -> Result<Self, BridgeError> {
        Ok(Self {
            book: RecordEncoder::with_schema_id(schema_id)?,
            change: RecordEncoder::with_schema_id(schema_id)?,
            trade: RecordEncoder::with_schema_id(schema_id)?,
            tick: RecordEncoder::with_schema_id(schema_id)?,
            quote: RecordEncoder::with_schema_id(schema_id)?,
            lifecycle: RecordEncoder::with_schema_id(schema_id)?,
            gap: RecordEncoder::with_schema_id(schema_id)?,
            dead: RecordEncoder::with_schema_id(schema_id)?,
        })
    }

    /// Topic, key and framed Avro value of a record.
    pub fn encode(&self, record: &Outgoing) -> Result<(Topic, String, Vec<u8>), BridgeError> {
        fn framed<T: AvroRecord>(
            encoder: &RecordEncoder<T>,
            record: &T,
        ) -> Result<(Topic, String, Vec<u8>), BridgeError> {
            let mut payload = Vec::with_capacity(192);
            encoder
                .encode_into(record, &mut payload)
                .map_err(|source| BridgeError::Encode {
                    record: T::NAME,
                    source,
                })?;
            Ok((T::TOPIC, record.record_key(), payload))
        }
        match record {
            Outgoing::Book(record) => framed(&self.book, record),
            Outgoing::Change(record) => framed(&self.change, record),
            Outgoing::Trade(record) => framed(&self.trade, record),
            Outgoing::Tick(record) => framed(&self.tick, record),
            Outgoing::Quote(record) => framed(&self.quote, record),
            Outgoing::Lifecycle(record) => framed(&self.lifecycle, record),
            Outgoing::Gap(record) => framed(&self.gap, record),
            Outgoing::Dead(record) => framed(&self.dead, record),
        }
    }
}

enum Delivery {
    Pending(DeliveryFuture),
    Failed(String),
}

struct InFlight {
    topic: Topic,
    delivery: Delivery,
    coverage: Option<(String, i64)>,
    /// The connection shard that read it (for the acknowledged watermark).
    shard: Option<usize>,
    /// The state key of a gap this record closes: deleted once it is acknowledged.
    closes_gap: Option<String>,
}

struct Inner {
    producer: SharedProducer,
    encoders: Arc<Encoders>,
    topic_names: HashMap<Topic, String>,
    in_flight: mpsc::Sender<InFlight>,
    state: Option<StateWriter>,
}

/// Hands records to Kafka; clones share one producer and one acknowledgement tracker. The
/// tracker finishes once every clone is dropped and every record is acknowledged or failed.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Publisher").finish_non_exhaustive()
    }
}

const TOPICS: [Topic; 8] = [
    Topic::BookSnapshots,
    Topic::PriceChanges,
    Topic::LastTrades,
    Topic::TickSizeChanges,
    Topic::BestBidAsk,
    Topic::MarketLifecycle,
    Topic::Continuity,
    Topic::DeadLetters,
];

impl Publisher {
    /// A publisher and its acknowledgement tracker (await the handle after dropping every
    /// clone to drain). With a state writer, open gaps and their closing are kept in the
    /// state topic; `progress` receives the newest acknowledged upstream time per shard.
    pub fn start(
        producer: SharedProducer,
        encoders: Encoders,
        names: &TopicNames,
        state: Option<StateWriter>,
        progress: Arc<Progress>,
    ) -> (Self, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(IN_FLIGHT_LIMIT);
        let topic_names: HashMap<Topic, String> = TOPICS
            .iter()
            .map(|topic| (*topic, names.name(*topic)))
            .collect();
        let encoders = Arc::new(encoders);
        let tracker = tokio::spawn(track_acknowledgements(
            receiver,
            producer.clone(),
            Arc::clone(&encoders),
            topic_names.clone(),
            state.clone(),
            progress,
        ));
        let publisher = Self {
            inner: Arc::new(Inner {
                producer,
                encoders,
                topic_names,
                in_flight: sender,
                state,
            }),
        };
        (publisher, tracker)
    }

    /// Encodes and enqueues one record; returns once librdkafka holds it (not once acked).
    pub async fn publish(&self, record: Outgoing) -> Result<(), BridgeError> {
        self.publish_from(None, record).await
    }

    /// [`Self::publish`] for a record read by connection shard `shard`.
    pub async fn publish_from(
        &self,
        shard: Option<usize>,
        record: Outgoing,
    ) -> Result<(), BridgeError> {
        let (topic, key, payload) = self.inner.encoders.encode(&record)?;
        let coverage = record
            .coverage()
            .map(|(token, timestamp_ms)| (token.to_owned(), timestamp_ms));
        let mut closes_gap = None;
        if let (Outgoing::Gap(gap), Some(state)) = (&record, &self.inner.state) {
            let gap_key = state::gap_key(&gap.continuity_id);
            if gap.gap_end_ms.is_none() {
                // On record in the state before the gap itself: the next start closes it even
                // if this process dies before it can.
                let (key, value) = state::entry(gap_key, gap);
                match state.send(&key, value.as_deref()).await {
                    Ok(delivery) => state::watch(vec![(key, delivery)]),
                    Err(error) => {
                        tracing::warn!(key = %key, error = %error, "cannot keep an open gap in the state topic");
                    }
                }
            } else {
                closes_gap = Some(gap_key);
            }
        }
        let topic_name = self
            .inner
            .topic_names
            .get(&topic)
            .map_or("", String::as_str);
        let delivery = loop {
            let attempt = self.inner.producer.current().send_result(
                FutureRecord::to(topic_name)
                    .key(key.as_bytes())
                    .payload(&payload),
            );
            match attempt {
                Ok(future) => break Delivery::Pending(future),
                // librdkafka's queue is full: the broker is slow; wait rather than drop.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => break Delivery::Failed(error.to_string()),
            }
        };
        crate::metrics::records_in_flight(1);
        self.inner
            .in_flight
            .send(InFlight {
                topic,
                delivery,
                coverage,
                shard,
                closes_gap,
            })
            .await
            .map_err(|_| BridgeError::PipelineClosed)
    }

    /// Sends one record outside the in-order tracking and waits for its acknowledgement (for
    /// the few records whose acknowledgement something else waits on).
    pub async fn publish_and_wait(&self, record: &Outgoing) -> Result<(), BridgeError> {
        let (topic, key, payload) = self.inner.encoders.encode(record)?;
        let topic_name = self
            .inner
            .topic_names
            .get(&topic)
            .map_or("", String::as_str);
        let send = |producer: rdkafka::producer::FutureProducer| {
            let record = FutureRecord::to(topic_name)
                .key(key.as_bytes())
                .payload(&payload);
            async move {
                producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .map(|_| ())
                    .map_err(|(error, _)| error)
            }
        };
        let shared = &self.inner.producer;
        let used = shared.current();
        let Err(error) = send(used.clone()).await else {
            return Ok(());
        };
        let not_acknowledged = |error: &dyn std::fmt::Display| {
            BridgeError::State(format!(
                "a record for {topic_name} was not acknowledged: {error}"
            ))
        };
        match shared.recover(&used, "ws record", topic_name) {
            // A producer in librdkafka's fatal state refuses everything: the fresh one sends.
            Some(Ok(_)) => send(shared.current())
                .await
                .map_err(|error| not_acknowledged(&error)),
            Some(Err(failed)) => Err(not_acknowledged(&failed)),
            None => Err(not_acknowledged(&error)),
        }
    }
}

/// Lost records of one token: their time range and count.
#[derive(Debug, Clone, Copy)]
struct Lost {
    first_ms: i64,
    last_ms: i64,
    count: u64,
}

async fn track_acknowledgements(
    mut in_flight: mpsc::Receiver<InFlight>,
    producer: SharedProducer,
    encoders: Arc<Encoders>,
    topic_names: HashMap<Topic, String>,
    state: Option<StateWriter>,
    progress: Arc<Progress>,
) {
    let mut acked: HashMap<Topic, u64> = HashMap::new();
    // Newest acknowledged upstream time per shard since `progress` was last updated.
    let mut settled_times: HashMap<usize, i64> = HashMap::new();
    let mut lost: BTreeMap<String, Lost> = BTreeMap::new();
    let mut last_error = String::new();
    // Records of `lost` that were re-sent (the rest are lost).
    let mut resent: u64 = 0;
    // Records settled since the in-flight gauge was last updated.
    let mut settled: i64 = 0;
    let label = |topic: Topic| topic_names.get(&topic).map_or("", String::as_str);
    while let Some(record) = in_flight.recv().await {
        let outcome = match record.delivery {
            Delivery::Pending(future) => match future.await {
                Ok(Ok(_)) => Ok(true),
                // The broker refused the record (e.g. a storage error): send the same bytes
                // again. It then lands after later records of its partition, so the interval
                // is still declared below.
                Ok(Err((error, message))) => {
                    let error = error.to_string();
                    // A producer in librdkafka's fatal state refuses everything from now on:
                    // it is replaced, and the re-send below goes through the new one.
                    if let Some(Err(failed)) =
                        producer.renew_if_failed("ws record", label(record.topic))
                    {
                        tracing::error!(error = %failed, "kafka producer failed for good and cannot be replaced");
                    }
                    match resend(&producer, &message).await {
                        Ok(()) => Ok(false),
                        Err(again) => Err(format!("{error}; re-sending failed: {again}")),
                    }
                }
                Err(_) => Err("delivery cancelled".to_owned()),
            },
            Delivery::Failed(error) => Err(error),
        };
        if outcome.is_ok() {
            if let (Some(shard), Some((_, timestamp_ms))) = (record.shard, &record.coverage) {
                let entry = settled_times.entry(shard).or_insert(*timestamp_ms);
                *entry = (*entry).max(*timestamp_ms);
            }
            if let (Some(key), Some(state)) = (&record.closes_gap, &state) {
                match state.send(key, None).await {
                    Ok(delivery) => state::watch(vec![(key.clone(), delivery)]),
                    Err(error) => {
                        tracing::warn!(key = %key, error = %error, "cannot delete a closed gap from the state topic");
                    }
                }
            }
        }
        let irregular = match outcome {
            Ok(true) => {
                *acked.entry(record.topic).or_default() += 1;
                false
            }
            Ok(false) => {
                *acked.entry(record.topic).or_default() += 1;
                if record.coverage.is_some() {
                    resent += 1;
                }
                last_error =
                    "re-sent after Kafka refused them; they may be out of order in their partition"
                        .to_owned();
                true
            }
            Err(error) => {
                RecordFailed {
                    topic: label(record.topic),
                    error: &error,
                }
                .emit();
                last_error = error;
                true
            }
        };
        settled += 1;
        // Progress is visible while the queue stays busy, not only when it drains.
        if settled >= 1_000 || in_flight.is_empty() {
            crate::metrics::records_in_flight(-settled);
            settled = 0;
            flush_acked(&mut acked, &topic_names);
            progress.advance(&mut settled_times);
        }
        if irregular && let Some((token, timestamp_ms)) = record.coverage {
            let entry = lost.entry(token).or_insert(Lost {
                first_ms: timestamp_ms,
                last_ms: timestamp_ms,
                count: 0,
            });
            entry.first_ms = entry.first_ms.min(timestamp_ms);
            entry.last_ms = entry.last_ms.max(timestamp_ms);
            entry.count += 1;
        }
        if in_flight.is_empty() && !lost.is_empty() {
            declare_lost(
                &producer,
                &encoders,
                &topic_names,
                &mut lost,
                resent,
                &last_error,
            )
            .await;
            resent = 0;
        }
    }
    crate::metrics::records_in_flight(-settled);
    flush_acked(&mut acked, &topic_names);
    progress.advance(&mut settled_times);
    if !lost.is_empty() {
        declare_lost(
            &producer,
            &encoders,
            &topic_names,
            &mut lost,
            resent,
            &last_error,
        )
        .await;
    }
}

/// Sends a refused record's bytes again, a few times (after a first pause: the broker just
/// refused it).
async fn resend(producer: &SharedProducer, message: &OwnedMessage) -> Result<(), String> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let send = || async {
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(message.topic())
            .key(message.key().unwrap_or_default())
            .payload(message.payload().unwrap_or_default());
        producer
            .current()
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error.to_string())
    };
    send.retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(400))
            .with_max_times(2),
    )
    .await
}

fn flush_acked(acked: &mut HashMap<Topic, u64>, topic_names: &HashMap<Topic, String>) {
    for (topic, count) in acked.drain() {
        RecordsAcked {
            topic: topic_names.get(&topic).map_or("", String::as_str),
            count,
        }
        .emit();
    }
}

/// Publishes one continuity record covering records the broker refused, and waits for it.
async fn declare_lost(
    producer: &SharedProducer,
    encoders: &Encoders,
    topic_names: &HashMap<Topic, String>,
    lost: &mut BTreeMap<String, Lost>,
    resent: u64,
    last_error: &str,
) {
    let count: u64 = lost.values().map(|lost| lost.count).sum();
    let resent = resent.min(count);
    let reason = if resent == count {
        format!("{count} records were {last_error}")
    } else {
        format!(
            "{} records were not acknowledged by Kafka ({resent} more were re-sent and may be out of order): {last_error}",
            count - resent
        )
    };
    let gap_start_ms = lost.values().map(|lost| lost.first_ms).min().unwrap_or(0);
    let gap_end_ms = lost.values().map(|lost| lost.last_ms).max().unwrap_or(0);
    let token_ids: Vec<String> = std::mem::take(lost).into_keys().collect();
    let detected_ms = now_ms();
    let identity = format!("lost|{detected_ms}|{gap_start_ms}|{}", token_ids.join(","));
    let record = Continuity {
        continuity_id: crate::continuity::identity(&identity),
        kind: ContinuityKind::Other,
        token_ids,
        gap_start_ms,
        gap_end_ms: Some(gap_end_ms),
        detected_ms,
        source: SOURCE.to_owned(),
        connection_id: None,
        reason,
    };
    let Ok((_, key, payload)) = encoders.encode(&Outgoing::Gap(record)) else {
        return;
    };
    let topic = topic_names
        .get(&Topic::Continuity)
        .map_or("", String::as_str);
    // The broker just failed us; try a few times, then leave the loss in the logs.
    let send = || async {
        producer
            .current()
            .send(
                FutureRecord::to(topic)
                    .key(key.as_bytes())
                    .payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    };
    let sent = send
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_secs(1))
                .with_max_delay(Duration::from_secs(16))
                .with_max_times(4),
        )
        .notify(|error, retry_in| {
            tracing::error!(error = %error, retry_in_ms = retry_in.as_millis() as u64, "cannot publish the lost-records continuity record; retrying");
        })
        .await;
    if let Err(error) = sent {
        tracing::error!(error = %error, "gave up publishing the lost-records continuity record");
    }
}
