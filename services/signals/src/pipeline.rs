//! The Kafka loop around the [`Engine`].
//!
//! One consumer reads the reference inputs (markets, events) and the judged inputs (book
//! snapshots, price changes, trades). At start, the reference inputs are read up to their
//! ends before anything is judged, so what is watched does not depend on fetch timing. Judged
//! inputs go through the shared event-time merge (`polytape_kafka::merge`), so a replay judges
//! them in the same order whatever the interleaving of partitions. Records are processed in
//! batches; a batch's signals (and dead letters) are sent and acknowledged before the next.
//! Every checkpoint interval, and at shutdown, the engine's state and the merge's held events
//! are checkpointed with the input positions they cover ([`CheckpointStore`]), and those
//! positions are committed to the consumer group for lag monitoring. Signal ids are
//! deterministic, so what a crash makes the service send twice is identical both times.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use backon::{ExponentialBuilder, Retryable as _, RetryableWithContext as _};
use polytape_codec::{AvroRecord, RecordDecoder, SchemaRegistryClient};
use polytape_kafka::{
    BatchLimits, BatchRead, CheckpointStore, HighWatermarks, RecordProducer, SharedProducer,
    create_consumer,
    merge::{EventMerge, MergeEvent as _},
};
use polytape_model::{
    BookSnapshot, DeadLetter, Event, Market, PriceChange, Signal, Topic, TopicNames, Trade,
};
use polytape_runtime::{ReadinessHandle, metrics::InternalEvent as _};
use rdkafka::{
    Message as _, Offset, TopicPartitionList,
    consumer::{Consumer as _, StreamConsumer},
    message::BorrowedMessage,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{
    SignalsConfig,
    engine::{Engine, EngineState, EngineStateRef, SignalEvent, SignalInput},
    error::SignalsError,
    events::{BatchSent, CheckpointWritten, Consumed, DeadLettered, LateBookBatches, Retried},
};

/// A batch: 5 000 records at most, gathered within 50 ms of its first.
const BATCH: BatchLimits = BatchLimits {
    max_records: 5_000,
    wait: Duration::from_millis(50),
};
const SOURCE: &str = "signals";
/// How far behind the newest event read the merge releases while records come: events of
/// one instant can be on several partitions (the books of a negative-risk event's markets),
/// and at the live edge one can be read after the other (bounded out-of-orderness; see
/// `judge`).
const LATENESS_MS: i64 = 250;
/// A book partition read in a batch holds its last instant for the next read (see `judge`)
/// only while that instant is at most this far behind the newest event read: a partition
/// that lags further is not waited for (its late updates are counted, not hidden).
const BOOK_PARTITION_HOLD_MS: i64 = 2_000;
/// An event stamped further than this after it was published cannot be true (upstream's
/// clock, or a time misread): judged, it would move its token's and the merge's newest time
/// ahead, and every true event after it would look late to the detectors (a price move is
/// only told forwards in time), silently. Measured against the record's publishing time, so
/// a replay judges each record as the first reading did.
const MAX_AHEAD_OF_PUBLISHING_MS: i64 = 300_000;
/// Read at start up to their ends, then applied as read.
const REFERENCE: [Topic; 2] = [Topic::Markets, Topic::Events];
/// Judged in event-time order.
const JUDGED: [Topic; 3] = [Topic::BookSnapshots, Topic::PriceChanges, Topic::Trades];

/// The consumer group (per topic prefix, so isolated deployments never share offsets).
pub fn group_id(names: &TopicNames) -> String {
    format!("{}polytape-signals", names.prefix())
}

/// The checkpoint topic (the service's own state, not in the shared topic table).
pub fn checkpoint_topic(names: &TopicNames) -> String {
    format!("{}polytape.signals.checkpoints.v1", names.prefix())
}

fn merge_input(topic: Topic) -> Option<SignalInput> {
    match topic {
        Topic::BookSnapshots => Some(SignalInput::BookSnapshots),
        Topic::PriceChanges => Some(SignalInput::PriceChanges),
        Topic::Trades => Some(SignalInput::Trades),
        _ => None,
    }
}

/// What a checkpoint holds, as it is read back.
#[derive(Debug, Default, Deserialize)]
struct SavedState {
    /// `(topic, partition, next offset)` of every input partition read so far.
    positions: Vec<(String, i32, i64)>,
    engine: EngineState,
    /// Judged events read but not yet released by the merge.
    merge: EventMerge<SignalEvent>,
}

/// What a checkpoint holds, borrowed from the running processor ([`SavedState`]'s JSON).
#[derive(Serialize)]
struct SavedStateRef<'a> {
    positions: Vec<(String, i32, i64)>,
    engine: EngineStateRef<'a>,
    merge: &'a EventMerge<SignalEvent>,
}

struct Decoders {
    markets: RecordDecoder<Market>,
    events: RecordDecoder<Event>,
    snapshots: RecordDecoder<BookSnapshot>,
    changes: RecordDecoder<PriceChange>,
    trades: RecordDecoder<Trade>,
}

struct Producers {
    signals: RecordProducer<Signal>,
    dead: RecordProducer<DeadLetter>,
}

/// One input record, as much as processing needs.
struct Input<'a> {
    topic: &'a str,
    kind: Topic,
    partition: i32,
    offset: i64,
    timestamp_ms: i64,
    payload: &'a [u8],
}

/// The engine, the merge, the input positions and the outputs of the current batch.
struct Processor {
    engine: Engine,
    merge: EventMerge<SignalEvent>,
    positions: HashMap<(String, i32), i64>,
    /// The book partitions read in the current batch (see [`Processor::judge`]).
    book_partitions_read: Vec<(SignalInput, i32)>,
    signals: Vec<Signal>,
    dead: Vec<DeadLetter>,
}

impl Processor {
    fn saved_state(&self) -> SavedStateRef<'_> {
        let mut positions: Vec<(String, i32, i64)> = self
            .positions
            .iter()
            .map(|((topic, partition), offset)| (topic.clone(), *partition, *offset))
            .collect();
        positions.sort();
        SavedStateRef {
            positions,
            engine: self.engine.state(),
            merge: &self.merge,
        }
    }

    fn position(&self, topic: &str, partition: i32) -> i64 {
        self.positions
            .get(&(topic.to_owned(), partition))
            .copied()
            .unwrap_or(0)
    }

    async fn process(&mut self, decoders: &Decoders, input: Input<'_>) -> Result<(), SignalsError> {
        Consumed {
            topic: input.kind.default_name(),
        }
        .emit();
        if !input.payload.is_empty() {
            match input.kind {
                Topic::Markets => {
                    if let Some(market) = self.decode(&decoders.markets, &input).await? {
                        let closed = self.engine.market(market);
                        self.signals.extend(closed);
                    }
                }
                Topic::Events => {
                    if let Some(event) = self.decode(&decoders.events, &input).await? {
                        let closed = self.engine.event(&event);
                        self.signals.extend(closed);
                    }
                }
                Topic::BookSnapshots => {
                    if let Some(snapshot) = self.decode(&decoders.snapshots, &input).await? {
                        self.hold(&input, SignalEvent::Snapshot(snapshot));
                    }
                }
                Topic::PriceChanges => {
                    if let Some(change) = self.decode(&decoders.changes, &input).await? {
                        self.hold(&input, SignalEvent::Change(change));
                    }
                }
                Topic::Trades => {
                    if let Some(trade) = self.decode(&decoders.trades, &input).await? {
                        self.hold(&input, SignalEvent::Trade(trade));
                    }
                }
                _ => {}
            }
        }
        self.positions
            .insert((input.topic.to_owned(), input.partition), input.offset + 1);
        Ok(())
    }

    /// Holds a judged event for the merge once it is known to apply; otherwise dead-letters it.
    fn hold(&mut self, input: &Input<'_>, event: SignalEvent) {
        let ahead_ms = event.time_ms().saturating_sub(input.timestamp_ms);
        if input.timestamp_ms > 0 && ahead_ms > MAX_AHEAD_OF_PUBLISHING_MS {
            self.dead_letter(
                input,
                format!(
                    "{} stamped {ahead_ms} ms after it was published (at most {MAX_AHEAD_OF_PUBLISHING_MS} ms)",
                    input.kind.default_name()
                ),
            );
            return;
        }
        match event.check() {
            Ok(()) => {
                let merged = (event.input(), input.partition);
                if merged.0 != SignalInput::Trades && !self.book_partitions_read.contains(&merged) {
                    self.book_partitions_read.push(merged);
                }
                self.merge.push(input.partition, input.offset, event);
            }
            Err(error) => self.dead_letter(
                input,
                format!("invalid {}: {error}", input.kind.default_name()),
            ),
        }
    }

    /// Decodes an input; undecodable input is dead-lettered (`None`), a registry outage is
    /// an error (retrying later can succeed).
    async fn decode<T: AvroRecord>(
        &mut self,
        decoder: &RecordDecoder<T>,
        input: &Input<'_>,
    ) -> Result<Option<T>, SignalsError> {
        match decoder.decode(input.payload).await {
            Ok(record) => Ok(Some(record)),
            Err(error) if error.is_retryable() => Err(error.into()),
            Err(error) => {
                self.dead_letter(input, format!("undecodable {}: {error}", T::NAME));
                Ok(None)
            }
        }
    }

    fn dead_letter(&mut self, input: &Input<'_>, reason: String) {
        let letter = DeadLetter::from_message(
            SOURCE,
            input.topic,
            input.partition,
            input.offset,
            reason,
            input.payload.to_vec(),
            input.timestamp_ms,
        );
        DeadLettered {
            topic: input.kind.default_name(),
            origin: &letter.origin,
            reason: &letter.error,
        }
        .emit();
        self.dead.push(letter);
    }

    /// Judges what the merge releases (`backlog`: the judged partitions with unread records).
    /// While records come, the latest [`LATENESS_MS`] of event time stay held (more of their
    /// instant may be on another partition), and so does the last instant read of every book
    /// partition this batch read (within [`BOOK_PARTITION_HOLD_MS`] of the newest): the
    /// entries of one upstream message are adjacent on one partition (the book topics are
    /// keyed by market), but a batch can end between two of them, and the high watermarks
    /// that tell a backlog are up to a second old, so the rest may be the next record read.
    /// Once the inputs are quiet (`quiet`), everything goes, and the last instant of book
    /// updates is judged too.
    fn judge(&mut self, backlog: &[(SignalInput, i32)], quiet: bool) -> Result<(), SignalsError> {
        let released = if quiet {
            self.merge.release(backlog)
        } else {
            let recent = self.merge.newest_ms().map_or(i64::MIN, |newest| {
                newest.saturating_sub(BOOK_PARTITION_HOLD_MS)
            });
            let mut unsettled = backlog.to_vec();
            unsettled.extend(self.book_partitions_read.iter().filter(|partition| {
                !backlog.contains(partition)
                    && self
                        .merge
                        .seen_ms(partition)
                        .is_some_and(|seen| seen >= recent)
            }));
            self.merge.release_settled(&unsettled, LATENESS_MS)
        };
        self.book_partitions_read.clear();
        if !released.is_empty() {
            self.signals.extend(self.engine.apply(&released)?);
            LateBookBatches {
                batches: self.engine.take_late_book_batches(),
            }
            .emit();
        }
        // The pending instant is complete once the inputs are quiet, or once the merge has
        // read past it by the lateness (its other half would have been released with it):
        // records that never release a later book instant (trades, reference updates) must
        // not hold it back.
        let settled = self
            .merge
            .newest_ms()
            .map(|newest| newest.saturating_sub(LATENESS_MS));
        let pending_settled = self
            .engine
            .pending_at_ms()
            .zip(settled)
            .is_some_and(|(pending, settled)| pending < settled);
        if quiet || pending_settled {
            let judged = self.engine.judge_pending();
            self.signals.extend(judged);
        }
        Ok(())
    }

    /// Sends the batch's signals and dead letters and waits for the broker.
    async fn flush(&mut self, producers: &Producers) -> Result<(), SignalsError> {
        let (signals, dead) = (&self.signals, &self.dead);
        let send_all = || async {
            futures::try_join!(
                producers.signals.send_all(signals),
                producers.dead.send_all(dead),
            )
        };
        // 5 retries of a retryable failure, 1 s doubling to 16 s, then the service stops (and
        // is restarted from its checkpoint).
        send_all
            .retry(retry_policy())
            .when(|error| error.is_retryable())
            .notify(|error, retry_in| {
                Retried {
                    what: "send",
                    error,
                    retry_in,
                }
                .emit();
            })
            .await?;
        BatchSent {
            signals: &self.signals,
            dead_letters: self.dead.len(),
        }
        .emit();
        self.signals.clear();
        self.dead.clear();
        Ok(())
    }

    async fn checkpoint(
        &self,
        store: &mut CheckpointStore,
        consumer: &StreamConsumer,
    ) -> Result<(), SignalsError> {
        let started = Instant::now();
        let saved = self.saved_state();
        let payload = serde_json::to_vec(&saved).map_err(|error| {
            SignalsError::Checkpoint(format!("cannot encode the state: {error}"))
        })?;
        let (generation, _) = write_checkpoint(store, &payload).await?;
        if let Err(error) = polytape_kafka::store_processed(consumer, saved.positions) {
            tracing::warn!(error = %error, "could not store the checkpointed offsets in the consumer group");
        }
        let (wallets, markets) = self.engine.sizes();
        CheckpointWritten {
            generation,
            bytes: payload.len(),
            seconds: started.elapsed().as_secs_f64(),
            wallets,
            markets,
            held: self.merge.held(),
        }
        .emit();
        Ok(())
    }
}

/// Writes one checkpoint, retrying what may succeed again like the outputs; the generation
/// moves on only once the manifest is acknowledged, so a retry rewrites the same slot.
pub(crate) async fn write_checkpoint<'a>(
    store: &'a mut CheckpointStore,
    payload: &[u8],
) -> Result<(u64, usize), SignalsError> {
    let write = |store: &'a mut CheckpointStore| async {
        let written = store.write(payload).await;
        (store, written)
    };
    let (_, written) = write
        .retry(retry_policy())
        .context(store)
        .when(|error| error.is_retryable())
        .notify(|error, retry_in| {
            Retried {
                what: "checkpoint",
                error,
                retry_in,
            }
            .emit();
        })
        .await;
    Ok(written?)
}

/// 5 retries of a retryable failure, 1 s doubling to 16 s; then the service stops (and is
/// restarted from its checkpoint).
pub(crate) fn retry_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(16))
        .with_max_times(5)
}

/// `partitions` assigned at their next offsets in `positions` (from the beginning when absent).
pub(crate) fn assignment<I>(
    partitions: &[(String, I, i32)],
    positions: &HashMap<(String, i32), i64>,
) -> Result<TopicPartitionList, SignalsError> {
    let mut list = TopicPartitionList::new();
    for (topic, _, partition) in partitions {
        let offset = positions
            .get(&(topic.clone(), *partition))
            .map_or(Offset::Beginning, |next| Offset::Offset(*next));
        list.add_partition_offset(topic, *partition, offset)
            .map_err(|source| SignalsError::Client {
                context: format!("assign {topic}/{partition}"),
                source,
            })?;
    }
    Ok(list)
}

/// Runs the service until `stop` is cancelled; then it checkpoints and returns.
pub async fn run(
    config: SignalsConfig,
    stop: CancellationToken,
    ready: ReadinessHandle,
) -> Result<(), SignalsError> {
    let brokers = config.kafka.kafka_brokers.clone();
    let names = TopicNames::with_prefix(config.kafka.topic_prefix.clone());
    let reference = polytape_kafka::input_partitions(&brokers, &names, &REFERENCE).await?;
    let judged = polytape_kafka::input_partitions(&brokers, &names, &JUDGED).await?;

    let registry = SchemaRegistryClient::new(&config.kafka.schema_registry_url)?;
    let producer = SharedProducer::connect(&brokers)?;
    let producers = Producers {
        signals: RecordProducer::register(producer.clone(), &registry, &names).await?,
        dead: RecordProducer::register(producer.clone(), &registry, &names).await?,
    };
    let decoders = Decoders {
        markets: RecordDecoder::new(registry.clone()),
        events: RecordDecoder::new(registry.clone()),
        snapshots: RecordDecoder::new(registry.clone()),
        changes: RecordDecoder::new(registry.clone()),
        trades: RecordDecoder::new(registry.clone()),
    };

    let (mut store, restored) = CheckpointStore::open(
        &brokers,
        checkpoint_topic(&names),
        "polytape-signals-checkpoint-reader",
        producer.clone(),
    )
    .await?;
    let (saved, generation) = match restored {
        Some(restored) => {
            let saved: SavedState = serde_json::from_slice(&restored.payload).map_err(|error| {
                SignalsError::Checkpoint(format!(
                    "checkpoint generation {} does not parse: {error}",
                    restored.generation
                ))
            })?;
            (saved, Some(restored.generation))
        }
        None => (SavedState::default(), None),
    };
    let mut processor = Processor {
        engine: Engine::new(&config.engine_settings(), saved.engine),
        merge: saved.merge,
        positions: saved
            .positions
            .into_iter()
            .map(|(topic, partition, offset)| ((topic, partition), offset))
            .collect(),
        book_partitions_read: Vec::new(),
        signals: Vec::new(),
        dead: Vec::new(),
    };
    tracing::info!(
        generation,
        held = processor.merge.held(),
        "signals state restored"
    );

    let all: Vec<(String, Topic, i32)> = reference.iter().chain(&judged).cloned().collect();
    let kinds: HashMap<String, Topic> = all
        .iter()
        .map(|(name, topic, _)| (name.clone(), *topic))
        .collect();
    let watermarks = HighWatermarks::start(
        &brokers,
        all.iter()
            .map(|(topic, _, partition)| (topic.clone(), *partition))
            .collect(),
        stop.clone(),
    )
    .await?;
    let merged: Vec<(String, SignalInput, i32)> = judged
        .iter()
        .filter_map(|(name, topic, partition)| {
            merge_input(*topic).map(|input| (name.clone(), input, *partition))
        })
        .collect();

    let consumer = create_consumer(&brokers, &group_id(&names), "polytape-signals")?;
    // The reference inputs first, up to the ends they have now.
    consumer
        .assign(&assignment(&reference, &processor.positions)?)
        .map_err(|source| SignalsError::Client {
            context: "assign the reference partitions".to_owned(),
            source,
        })?;
    let reference_ends = watermarks.ends(&reference);
    while reference_ends
        .iter()
        .any(|(topic, partition, high)| processor.position(topic, *partition) < *high)
    {
        let received = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            received = consumer.recv() => received,
        };
        match received {
            Ok(message) => handle(&mut processor, &decoders, &kinds, &message).await?,
            Err(error) => tracing::warn!(error = %error, "kafka consumer error; continuing"),
        }
    }
    processor.flush(&producers).await?;
    tracing::info!(
        markets = processor.engine.sizes().1,
        "reference inputs read; judging books and trades"
    );
    consumer
        .assign(&assignment(&all, &processor.positions)?)
        .map_err(|source| SignalsError::Client {
            context: "assign the input partitions".to_owned(),
            source,
        })?;
    ready.set_ready(true);

    let checkpoint_every = config.signals_checkpoint_interval;
    let mut last_checkpoint = Instant::now();
    let mut dirty = false;
    loop {
        let idle_wait = if processor.merge.held() > 0 || processor.engine.pending_at_ms().is_some()
        {
            BATCH.wait * 4
        } else {
            checkpoint_every
        };
        // Quiet only when the wait ran out with nothing to read (a consumer error returns at
        // once with no records: that is no proof that nothing more is on its way).
        let (records, quiet) =
            match polytape_kafka::read_batch(&consumer, &stop, idle_wait, BATCH).await {
                BatchRead::Stopped => break,
                BatchRead::Idle => (Vec::new(), true),
                BatchRead::Records(records) => (records, false),
            };
        for message in &records {
            handle(&mut processor, &decoders, &kinds, message).await?;
        }
        let received_any = !records.is_empty();
        if received_any || processor.merge.held() > 0 || processor.engine.pending_at_ms().is_some()
        {
            let backlog = watermarks.backlog(&merged, &processor.positions);
            // Quiet inputs: what is held is complete as far as anyone can tell.
            processor.judge(&backlog, quiet)?;
            processor.flush(&producers).await?;
            dirty = true;
        }
        if dirty && last_checkpoint.elapsed() >= checkpoint_every {
            processor.checkpoint(&mut store, &consumer).await?;
            last_checkpoint = Instant::now();
            dirty = false;
        }
    }

    // Drain: everything released was flushed at the end of its batch; checkpoint it (held
    // events are in the checkpoint too).
    if dirty {
        processor.checkpoint(&mut store, &consumer).await?;
    }
    if let Err(error) = polytape_kafka::commit_stored_offsets(&consumer) {
        tracing::warn!(error = %error, "could not commit the consumer group's offsets at shutdown");
    }
    tracing::info!("signals stopped after the final checkpoint");
    Ok(())
}

async fn handle(
    processor: &mut Processor,
    decoders: &Decoders,
    kinds: &HashMap<String, Topic>,
    message: &BorrowedMessage<'_>,
) -> Result<(), SignalsError> {
    let topic = message.topic();
    let Some(kind) = kinds.get(topic).copied() else {
        return Ok(());
    };
    let input = Input {
        topic,
        kind,
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
        payload: message.payload().unwrap_or_default(),
    };
    processor.process(decoders, input).await
}

#[cfg(test)]
mod tests;
