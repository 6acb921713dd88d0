//! The Kafka loop around the pure candle and book logic.
//!
//! One consumer is assigned every partition of the inputs (trades, book snapshots, price
//! changes, market lifecycle) at the offsets of the last checkpoint, or at the beginning when
//! there is none. Records are processed in batches (up to [`BATCH_MAX`] records or
//! [`BATCH_WAIT`]); after each batch the candles it changed are drained (one record per key
//! and batch) and every output is sent and acknowledged before the next batch. Every
//! checkpoint interval, and at shutdown, the state is checkpointed together with the input
//! positions it covers ([`polytape_kafka::CheckpointStore`]), and those positions are committed to the
//! consumer group (for lag monitoring; the checkpoint is what the builder resumes from).
//! No Kafka transactions are used: outputs are deterministic, so what a crash makes the
//! builder send twice is identical both times.

use backon::{ExponentialBuilder, Retryable as _, RetryableWithContext as _};
use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use polytape_codec::{AvroRecord, RecordDecoder, SchemaRegistryClient};
use polytape_kafka::{
    BatchLimits, BatchRead, CheckpointStore, HighWatermarks, RecordProducer, SharedProducer,
    create_consumer,
};
use polytape_model::{
    BookSnapshot, BookState, Candle, Continuity, DeadLetter, LastTrade, LifecycleKind,
    MarketLifecycle, PriceChange, Topic, TopicNames, Trade,
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
    CandleBuilderConfig,
    book::{BookEngine, BookEngineState, BookOutput, BookSettings, Skipped},
    candles::{
        self, AggregatorState, CandleAggregator, CandleInput, CandleSettings, Ingested, Rejected,
    },
    error::BuilderError,
    events::{
        BatchProcessed, BookEventSkipped, BookMismatch, CheckpointRetried, CheckpointWritten,
        DeadLettered, SendRetried, StateRestored, TradeSkipped,
    },
    merge::{BookEvent, BookInput, BookMerge},
    resync::Resync,
};

/// Records per batch at most.
pub const BATCH_MAX: usize = 5_000;
/// How long a batch waits for more records after its first.
pub const BATCH_WAIT: Duration = Duration::from_millis(50);
/// Inputs, in the order of [`BatchProcessed::consumed`]: the candle input first.
fn inputs(candle_input: CandleInput) -> [Topic; 4] {
    let candles = match candle_input {
        CandleInput::Trades => Topic::Trades,
        CandleInput::LastTrades => Topic::LastTrades,
    };
    [
        candles,
        Topic::BookSnapshots,
        Topic::PriceChanges,
        Topic::MarketLifecycle,
    ]
}
/// Mismatched books are fetched from REST only once the book inputs are read to within this
/// many records of their end (about one batch: the live edge).
const RESYNC_MAX_LAG: i64 = BATCH_MAX as i64;
/// Books idle for the configured time are evicted when the book clock enters a new hour.
const EVICTION_PERIOD_MS: i64 = 3_600_000;
const SOURCE: &str = "candle-builder";

/// The consumer group (per topic prefix, so isolated deployments never share offsets).
pub fn group_id(names: &TopicNames) -> String {
    format!("{}polytape-candle-builder", names.prefix())
}

/// The checkpoint topic (not in the shared topic table: it is the builder's own state).
fn checkpoint_topic(names: &TopicNames) -> String {
    format!("{}polytape.candle_builder.checkpoints.v1", names.prefix())
}

/// What a checkpoint holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedState {
    /// `(topic, partition, next offset)` of every input partition read so far.
    positions: Vec<(String, i32, i64)>,
    /// Candle state per partition of the candle input.
    candles: Vec<(i32, AggregatorState)>,
    /// The topic `candles` was derived from (absent before `candle_input` existed: trades).
    #[serde(default)]
    candle_input: Option<CandleInput>,
    books: BookEngineState,
    book_clock_ms: Option<i64>,
    /// Book events read but not yet applied (waiting for the event-time merge).
    #[serde(default)]
    book_merge: BookMerge,
}

#[derive(Debug, Default)]
struct Outputs {
    candles: Vec<Candle>,
    states: Vec<BookState>,
    gaps: Vec<Continuity>,
    dead: Vec<DeadLetter>,
}

struct Decoders {
    trades: RecordDecoder<Trade>,
    last_trades: RecordDecoder<LastTrade>,
    snapshots: RecordDecoder<BookSnapshot>,
    changes: RecordDecoder<PriceChange>,
    lifecycle: RecordDecoder<MarketLifecycle>,
}

struct Producers {
    candles: RecordProducer<Candle>,
    states: RecordProducer<BookState>,
    gaps: RecordProducer<Continuity>,
    dead: RecordProducer<DeadLetter>,
}

/// One input record, as much as processing needs.
struct Input<'a> {
    topic: &'a str,
    kind: Topic,
    partition: i32,
    offset: i64,
    /// The record's Kafka timestamp: the deterministic "when" of its dead letter.
    timestamp_ms: i64,
    payload: &'a [u8],
}

/// The derived state and the outputs of the current batch.
struct Builder {
    candle_settings: CandleSettings,
    candle_input: CandleInput,
    candles: BTreeMap<i32, CandleAggregator>,
    books: BookEngine,
    book_merge: BookMerge,
    book_clock_ms: Option<i64>,
    idle_eviction_ms: i64,
    positions: HashMap<(String, i32), i64>,
    outputs: Outputs,
    consumed: [u64; 4],
    /// Tokens found inconsistent since the last resync poll.
    mismatched: Vec<String>,
}

impl Builder {
    fn new(
        candle_settings: CandleSettings,
        candle_input: CandleInput,
        book_settings: BookSettings,
        idle_eviction_ms: i64,
        mut saved: SavedState,
    ) -> Self {
        let saved_input = saved.candle_input.unwrap_or(CandleInput::Trades);
        if saved_input != candle_input {
            // Partitions and offsets of another topic: that candle state means nothing here.
            // The new input is read from its beginning (no position for it was saved).
            tracing::warn!(
                saved = saved_input.label(),
                configured = candle_input.label(),
                "the candle input changed since the checkpoint; its candle state is dropped"
            );
            saved.candles.clear();
        }
        let candles = saved
            .candles
            .into_iter()
            .map(|(partition, state)| {
                if state.format() < candles::STATE_FORMAT {
                    // Documented upgrade path: token watermarks derived from the open windows.
                    tracing::warn!(
                        partition,
                        format = state.format(),
                        "upgrading a candle checkpoint with one watermark per partition to one per token; tokens without open windows start without a watermark"
                    );
                }
                (
                    partition,
                    CandleAggregator::restore(candle_settings.clone(), state),
                )
            })
            .collect();
        Self {
            candles,
            books: BookEngine::restore(book_settings, saved.books),
            book_merge: saved.book_merge,
            book_clock_ms: saved.book_clock_ms,
            idle_eviction_ms,
            positions: saved
                .positions
                .into_iter()
                .map(|(topic, partition, offset)| ((topic, partition), offset))
                .collect(),
            outputs: Outputs::default(),
            consumed: [0; 4],
            mismatched: Vec::new(),
            candle_settings,
            candle_input,
        }
    }

    fn saved_state(&self) -> SavedState {
        let mut positions: Vec<(String, i32, i64)> = self
            .positions
            .iter()
            .map(|((topic, partition), offset)| (topic.clone(), *partition, *offset))
            .collect();
        positions.sort();
        SavedState {
            positions,
            candles: self
                .candles
                .iter()
                .map(|(partition, aggregator)| (*partition, aggregator.state()))
                .collect(),
            candle_input: Some(self.candle_input),
            books: self.books.state(),
            book_clock_ms: self.book_clock_ms,
            book_merge: self.book_merge.clone(),
        }
    }

    async fn process(&mut self, decoders: &Decoders, input: Input<'_>) -> Result<(), BuilderError> {
        match input.kind {
            Topic::Trades => {
                self.consumed[0] += 1;
                if let Some(trade) = self.decode(&decoders.trades, &input).await? {
                    self.apply_trade(&trade, &input);
                }
            }
            Topic::LastTrades => {
                self.consumed[0] += 1;
                if let Some(last_trade) = self.decode(&decoders.last_trades, &input).await? {
                    self.apply_trade(&candles::trade_from_last_trade(&last_trade), &input);
                }
            }
            Topic::BookSnapshots => {
                self.consumed[1] += 1;
                if let Some(snapshot) = self.decode(&decoders.snapshots, &input).await? {
                    // Checked now, so that what the merge releases later always applies.
                    match polytape_model::book::check_snapshot(&snapshot) {
                        Ok(()) => self.book_merge.push(
                            input.partition,
                            input.offset,
                            BookEvent::Snapshot(snapshot),
                        ),
                        Err(error) => {
                            self.dead_letter(&input, format!("invalid book snapshot: {error}"))
                        }
                    }
                }
            }
            Topic::PriceChanges => {
                self.consumed[2] += 1;
                if let Some(change) = self.decode(&decoders.changes, &input).await? {
                    match polytape_model::book::check_change(&change) {
                        Ok(()) => self.book_merge.push(
                            input.partition,
                            input.offset,
                            BookEvent::Change(change),
                        ),
                        Err(error) => {
                            self.dead_letter(&input, format!("invalid price change: {error}"))
                        }
                    }
                }
            }
            Topic::MarketLifecycle => {
                self.consumed[3] += 1;
                if let Some(event) = self.decode(&decoders.lifecycle, &input).await?
                    && event.kind == LifecycleKind::MarketResolved
                {
                    // Candle windows of a resolved market close by themselves (watermark);
                    // its books will never change again.
                    self.books.evict(&event.token_ids);
                }
            }
            _ => {}
        }
        match self
            .positions
            .get_mut(&(input.topic.to_owned(), input.partition))
        {
            Some(position) => *position = input.offset + 1,
            None => {
                self.positions
                    .insert((input.topic.to_owned(), input.partition), input.offset + 1);
            }
        }
        Ok(())
    }

    /// Decodes an input; undecodable input is dead-lettered (`None`), a registry outage is
    /// an error (retrying later can succeed).
    async fn decode<T: AvroRecord>(
        &mut self,
        decoder: &RecordDecoder<T>,
        input: &Input<'_>,
    ) -> Result<Option<T>, BuilderError> {
        match decoder.decode(input.payload).await {
            Ok(record) => Ok(Some(record)),
            Err(error) if error.is_retryable() => Err(error.into()),
            Err(error) => {
                self.dead_letter(input, format!("undecodable {}: {error}", T::NAME));
                Ok(None)
            }
        }
    }

    fn apply_trade(&mut self, trade: &Trade, input: &Input<'_>) {
        let aggregator = self
            .candles
            .entry(input.partition)
            .or_insert_with(|| CandleAggregator::new(self.candle_settings.clone()));
        match aggregator.ingest(trade, input.offset) {
            Ok(Ingested::Counted) => {}
            Ok(Ingested::Duplicate) => TradeSkipped {
                reason: "duplicate",
                detail: &trade.trade_id,
            }
            .emit(),
            Err(rejected) => {
                let reason = match rejected {
                    Rejected::Late { .. } => "late",
                    Rejected::Invalid(_) => "invalid",
                };
                TradeSkipped {
                    reason,
                    detail: &rejected,
                }
                .emit();
                self.dead_letter(input, rejected.to_string());
            }
        }
    }

    /// Applies the book events the merge releases (see [`crate::merge`]).
    fn apply_book_events(&mut self, backlog: &[(BookInput, i32)]) {
        for event in self.book_merge.release(backlog) {
            let event_ms = event.time_ms();
            let applied = match &event {
                BookEvent::Snapshot(snapshot) => self.books.apply_snapshot(snapshot),
                BookEvent::Change(change) => self.books.apply_change(change),
            };
            self.book_output(applied, event_ms);
        }
    }

    fn book_output(
        &mut self,
        applied: Result<BookOutput, polytape_model::micros::UnitsError>,
        event_ms: i64,
    ) {
        let output = match applied {
            Ok(output) => output,
            Err(error) => {
                // Events are checked before they are held, so this is a bug, not bad input.
                tracing::error!(error = %error, "a checked book event did not apply; skipped");
                return;
            }
        };
        if let Some(skipped) = output.skipped {
            BookEventSkipped {
                reason: match skipped {
                    Skipped::StaleSnapshot => "stale_snapshot",
                    Skipped::StaleChange => "stale_change",
                    Skipped::NoBook => "no_book",
                    Skipped::Inconsistent => "inconsistent",
                    Skipped::AwaitingSnapshot => "awaiting_snapshot",
                },
            }
            .emit();
        }
        for gap in &output.gaps {
            if gap.gap_end_ms.is_none() {
                let token_id = gap.token_ids.first().map_or("", String::as_str);
                BookMismatch {
                    token_id,
                    reason: &gap.reason,
                }
                .emit();
                self.mismatched.push(token_id.to_owned());
            }
        }
        self.outputs.states.extend(output.states);
        self.outputs.gaps.extend(output.gaps);
        // Idle books are evicted by event time, when the book clock enters a new hour, so a
        // replay evicts at the same points.
        let previous = self.book_clock_ms;
        if previous.is_none_or(|clock| event_ms > clock) {
            self.book_clock_ms = Some(event_ms);
            if let Some(previous) = previous
                && previous.div_euclid(EVICTION_PERIOD_MS) < event_ms.div_euclid(EVICTION_PERIOD_MS)
            {
                self.books
                    .evict_idle(event_ms.saturating_sub(self.idle_eviction_ms));
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
        self.outputs.dead.push(letter);
    }

    /// Drains the candles of the batch and sends every output, waiting for the broker.
    async fn flush(&mut self, producers: &Producers) -> Result<(), BuilderError> {
        for aggregator in self.candles.values_mut() {
            self.outputs.candles.extend(aggregator.drain()?);
        }
        let outputs = &self.outputs;
        // 5 retries of a retryable failure, 1 s doubling to 16 s, then the builder stops (and
        // is restarted from its checkpoint).
        let send_all = || async {
            futures::try_join!(
                producers.candles.send_all(&outputs.candles),
                producers.states.send_all(&outputs.states),
                producers.gaps.send_all(&outputs.gaps),
                producers.dead.send_all(&outputs.dead),
            )
        };
        send_all
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_secs(1))
                    .with_max_delay(Duration::from_secs(16))
                    .with_max_times(5),
            )
            .when(|error| error.is_retryable())
            .notify(|error, retry_in| SendRetried { error, retry_in }.emit())
            .await?;
        BatchProcessed {
            consumed: [
                (self.candle_input.label(), self.consumed[0]),
                ("book_snapshots", self.consumed[1]),
                ("price_changes", self.consumed[2]),
                ("market_lifecycle", self.consumed[3]),
            ],
            candles: outputs.candles.len(),
            book_states: outputs.states.len(),
            gaps: outputs.gaps.len(),
            dead_letters: outputs.dead.len(),
        }
        .emit();
        self.outputs = Outputs::default();
        self.consumed = [0; 4];
        Ok(())
    }

    async fn checkpoint<'a>(
        &self,
        store: &'a mut CheckpointStore,
        consumer: &StreamConsumer,
    ) -> Result<(), BuilderError> {
        let started = Instant::now();
        let saved = self.saved_state();
        let payload = serde_json::to_vec(&saved).map_err(|error| {
            BuilderError::Checkpoint(format!("cannot encode the state: {error}"))
        })?;
        // A write that may succeed again (the producer renewed after librdkafka's fatal state,
        // a broker timeout) is retried like the outputs, not turned into a stop: the generation
        // moves on only once the manifest is acknowledged, so a retry rewrites the same slot.
        let write = |store: &'a mut CheckpointStore| async {
            let written = store.write(&payload).await;
            (store, written)
        };
        let (_, written) = write
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_secs(1))
                    .with_max_delay(Duration::from_secs(16))
                    .with_max_times(5),
            )
            .context(store)
            .when(|error| error.is_retryable())
            .notify(|error, retry_in| CheckpointRetried { error, retry_in }.emit())
            .await;
        let (generation, chunks) = written?;
        // The group's offsets follow the checkpoint, for lag monitoring.
        let stored = polytape_kafka::store_processed(consumer, saved.positions.iter().cloned());
        if let Err(error) = stored {
            tracing::warn!(error = %error, "could not store the checkpointed offsets in the consumer group");
        }
        CheckpointWritten {
            generation,
            bytes: payload.len(),
            chunks,
            seconds: started.elapsed().as_secs_f64(),
            candle_tokens: self
                .candles
                .values()
                .map(CandleAggregator::token_count)
                .sum(),
            open_windows: self
                .candles
                .values()
                .map(CandleAggregator::window_count)
                .sum(),
            books: self.books.token_count(),
        }
        .emit();
        Ok(())
    }
}

/// Runs the builder until `stop` is cancelled; then it checkpoints and returns.
pub async fn run(
    config: CandleBuilderConfig,
    stop: CancellationToken,
    ready: ReadinessHandle,
) -> Result<(), BuilderError> {
    let brokers = config.kafka.kafka_brokers.clone();
    let names = TopicNames::with_prefix(config.kafka.topic_prefix.clone());
    let candle_input = config.candle_input();
    let partitions =
        polytape_kafka::input_partitions(&brokers, &names, &inputs(candle_input)).await?;

    let registry = SchemaRegistryClient::new(&config.kafka.schema_registry_url)?;
    let producer = SharedProducer::connect(&brokers)?;
    let producers = Producers {
        candles: RecordProducer::register(producer.clone(), &registry, &names).await?,
        states: RecordProducer::register(producer.clone(), &registry, &names).await?,
        gaps: RecordProducer::register(producer.clone(), &registry, &names).await?,
        dead: RecordProducer::register(producer.clone(), &registry, &names).await?,
    };
    let decoders = Decoders {
        trades: RecordDecoder::new(registry.clone()),
        last_trades: RecordDecoder::new(registry.clone()),
        snapshots: RecordDecoder::new(registry.clone()),
        changes: RecordDecoder::new(registry.clone()),
        lifecycle: RecordDecoder::new(registry.clone()),
    };

    let mut resync = Resync::start(
        &config.clob_url,
        config.book_resync_budget,
        RecordProducer::register(producer.clone(), &registry, &names).await?,
        stop.clone(),
    )
    .map_err(|error| BuilderError::Resync(format!("cannot create the REST client: {error}")))?;

    let (mut store, restored) = CheckpointStore::open(
        &brokers,
        checkpoint_topic(&names),
        "polytape-candle-builder-checkpoint-reader",
        producer.clone(),
    )
    .await?;
    let (saved, generation, bytes) = match restored {
        Some(restored) => {
            let saved: SavedState = serde_json::from_slice(&restored.payload).map_err(|error| {
                BuilderError::Checkpoint(format!(
                    "checkpoint generation {} does not parse: {error}",
                    restored.generation
                ))
            })?;
            (saved, Some(restored.generation), restored.payload.len())
        }
        None => (SavedState::default(), None, 0),
    };
    let mut builder = Builder::new(
        config.candle_settings(),
        candle_input,
        config.book_settings(),
        config.book_idle_eviction_ms(),
        saved,
    );

    let consumer = create_consumer(&brokers, &group_id(&names), "polytape-candle-builder")?;
    let mut assignment = TopicPartitionList::new();
    for (topic, _, partition) in &partitions {
        let offset = builder
            .positions
            .get(&(topic.clone(), *partition))
            .map_or(Offset::Beginning, |next| Offset::Offset(*next));
        assignment
            .add_partition_offset(topic, *partition, offset)
            .map_err(|source| BuilderError::Client {
                context: format!("assign {topic}/{partition}"),
                source,
            })?;
    }
    consumer
        .assign(&assignment)
        .map_err(|source| BuilderError::Client {
            context: "assign the input partitions".to_owned(),
            source,
        })?;
    StateRestored {
        generation,
        bytes,
        partitions: partitions.len(),
    }
    .emit();
    let kinds: HashMap<String, Topic> = partitions
        .iter()
        .map(|(name, topic, _)| (name.clone(), *topic))
        .collect();
    let book_partitions: Vec<(String, BookInput, i32)> = partitions
        .iter()
        .filter_map(|(name, topic, partition)| match topic {
            Topic::BookSnapshots => Some((name.clone(), BookInput::Snapshots, *partition)),
            Topic::PriceChanges => Some((name.clone(), BookInput::Changes, *partition)),
            _ => None,
        })
        .collect();
    let watermarks = HighWatermarks::start(
        &brokers,
        book_partitions
            .iter()
            .map(|(topic, _, partition)| (topic.clone(), *partition))
            .collect(),
        stop.clone(),
    )
    .await?;
    // Books restored inconsistent are resynced like new mismatches.
    builder
        .mismatched
        .extend(builder.books.inconsistent_tokens());
    ready.set_ready(true);

    let checkpoint_every = config.candle_builder_checkpoint_interval;
    let mut last_checkpoint = Instant::now();
    let mut dirty_since_checkpoint = false;
    loop {
        // Wait for the first record of a batch, or for the stop signal.
        let idle_wait = if builder.book_merge.held() > 0 {
            BATCH_WAIT * 4
        } else {
            checkpoint_every
        };
        let limits = BatchLimits {
            max_records: BATCH_MAX,
            wait: BATCH_WAIT,
        };
        let records = match polytape_kafka::read_batch(&consumer, &stop, idle_wait, limits).await {
            BatchRead::Stopped => break,
            BatchRead::Idle => Vec::new(),
            BatchRead::Records(records) => records,
        };
        for message in &records {
            handle(&mut builder, &decoders, &kinds, message).await?;
        }
        let received_any = !records.is_empty();
        // After a batch, or idle with held events (partitions may have reached their ends
        // since the last batch).
        if received_any || builder.book_merge.held() > 0 {
            let backlog = watermarks.backlog(&book_partitions, &builder.positions);
            builder.apply_book_events(&backlog);
            builder.flush(&producers).await?;
            dirty_since_checkpoint = true;
        }
        if let Some(resync) = resync.as_mut() {
            for token_id in builder.mismatched.drain(..) {
                resync.mismatched(&token_id);
            }
            // While catching up, later snapshots of the stream may still close the gap (and a
            // REST book, stamped with upstream's current time, would apply only at the end).
            if book_lag(&builder, &book_partitions, &watermarks) <= RESYNC_MAX_LAG {
                resync.poll(&builder.books).map_err(BuilderError::Resync)?;
            }
        } else {
            builder.mismatched.clear();
        }
        if dirty_since_checkpoint && last_checkpoint.elapsed() >= checkpoint_every {
            builder.checkpoint(&mut store, &consumer).await?;
            last_checkpoint = Instant::now();
            dirty_since_checkpoint = false;
        }
    }

    // Drain: everything consumed was flushed at the end of its batch; checkpoint it.
    if dirty_since_checkpoint {
        builder.checkpoint(&mut store, &consumer).await?;
    }
    if let Err(error) = polytape_kafka::commit_stored_offsets(&consumer) {
        tracing::warn!(error = %error, "could not commit the consumer group's offsets at shutdown");
    }
    tracing::info!("candle builder stopped after its final checkpoint");
    Ok(())
}

async fn handle(
    builder: &mut Builder,
    decoders: &Decoders,
    kinds: &HashMap<String, Topic>,
    message: &BorrowedMessage<'_>,
) -> Result<(), BuilderError> {
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
    if input.payload.is_empty() {
        // A tombstone or empty record carries nothing to derive from; just move past it.
        builder
            .positions
            .insert((topic.to_owned(), input.partition), input.offset + 1);
        return Ok(());
    }
    builder.process(decoders, input).await
}

/// Unread records of the book partitions (partitions of unknown end not counted).
fn book_lag(
    builder: &Builder,
    partitions: &[(String, BookInput, i32)],
    watermarks: &HighWatermarks,
) -> i64 {
    partitions
        .iter()
        .filter_map(|(topic, _, partition)| {
            let read = builder
                .positions
                .get(&(topic.clone(), *partition))
                .copied()
                .unwrap_or(0);
            watermarks
                .high(topic, *partition)
                .map(|high| (high - read).max(0))
        })
        .sum()
}
