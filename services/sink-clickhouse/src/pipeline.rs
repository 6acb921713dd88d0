//! The load loop: consume → decode and map into per-table buffers → insert every table →
//! store the offsets → repeat, with the insert of one batch overlapping the decoding of the
//! next (at most two batches in memory: one filling, one being inserted).
//!
//! At-least-once: a partition's offset is stored only after every row up to it is in
//! ClickHouse, so a crash replays records and never skips one. Replays are invisible to
//! queries: each insert carries a deduplication token derived from the topic/partition/offset
//! ranges it holds (an identical replayed batch is dropped at insert), and every table is a
//! ReplacingMergeTree keyed by the record's identity (any other replay collapses on merge and
//! under FINAL).
//!
//! Failed inserts are classified (`polytape_clickhouse::classify_error`). While ClickHouse is
//! unavailable or overloaded (retryable errors), the insert is retried with exponential backoff
//! and consumption pauses as soon as the next batch is full: memory stays bounded by two
//! batches. When ClickHouse refuses rows for good (a data error), the insert is bisected until
//! the refused rows stand alone (`crate::isolate`): they go to `dead_letters` with ClickHouse's
//! message and their topic/partition/offset, every other row loads, and the offsets advance.
//! Each insert (a table's rows, a partition group of them, a bisected range) carries its own
//! deterministic deduplication token, and one insert never spans more partitions than
//! ClickHouse accepts (`tables::MAX_PARTITIONS_PER_INSERT`).

use std::{
    collections::{BTreeMap, HashMap},
    ops::Range,
    time::{Duration, Instant},
};

use backon::{BackoffBuilder as _, ExponentialBuilder};
use polytape_clickhouse::{ErrorClass, classify_error};
use polytape_model::{DeadLetter, Topic, TopicNames, now_ms};
use polytape_runtime::metrics::InternalEvent as _;
use rdkafka::{Message as _, consumer::Consumer as _};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use polytape_clickhouse::rows::DeadLetterRow;

use crate::{
    isolate::{Attempt, RejectedRow, insert_isolating},
    metrics::{
        BatchFlushed, DeadLetterDropped, InsertRejected, InsertRetried, MessageConsumed,
        MessageRejected, TableInserted,
    },
    tables::{MAX_PARTITIONS_PER_INSERT, MessageAt, PendingRows, TableBuffer, pending_rows},
};

/// How batches are bounded.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Flush once this many rows are pending (all tables together).
    pub max_rows: usize,
    /// Flush once the pending messages hold this many payload bytes (bounds memory when
    /// records are large, e.g. full-depth books).
    pub max_bytes: usize,
    /// Flush at least this often, so low-volume topics land within about this long.
    pub max_wait: Duration,
}

/// The offsets a batch covers on one partition.
#[derive(Debug, Clone, Copy)]
struct OffsetRange {
    first: i64,
    last: i64,
}

/// Everything the loop needs.
pub struct Pipeline {
    pub consumer: polytape_kafka::LagReportingConsumer,
    pub client: clickhouse::Client,
    pub topic_names: TopicNames,
    pub buffers: Vec<(Topic, Box<dyn TableBuffer>)>,
    pub limits: BatchLimits,
}

impl Pipeline {
    /// Subscribes to every topic and loads until `stop`, then drains: flushes what it holds,
    /// stores and commits the offsets.
    pub async fn run(mut self, stop: CancellationToken) -> Result<(), polytape_runtime::BoxError> {
        let topics: Vec<String> = self
            .buffers
            .iter()
            .map(|(topic, _)| self.topic_names.name(*topic))
            .collect();
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&topic_refs)?;
        let buffer_of: HashMap<String, usize> = topics
            .iter()
            .cloned()
            .enumerate()
            .map(|(index, name)| (name, index))
            .collect();
        tracing::info!(topics = topics.len(), "sink consuming");

        let mut dead_letters: Vec<DeadLetterRow> = Vec::new();
        let mut in_flight: Option<tokio::task::JoinHandle<Option<Flushed>>> = None;
        loop {
            let mut ranges: BTreeMap<(String, i32), OffsetRange> = BTreeMap::new();
            let batch_deadline = tokio::time::Instant::now() + self.limits.max_wait;
            let mut pending = 0;
            let mut pending_bytes = 0;
            let stopping = loop {
                let received = tokio::select! {
                    () = stop.cancelled() => break true,
                    received = tokio::time::timeout_at(batch_deadline, self.consumer.recv()) => received,
                };
                let message = match received {
                    Err(_elapsed) => break false,
                    Ok(Err(error)) => {
                        tracing::warn!(error = %error, "kafka consumer error; continuing");
                        continue;
                    }
                    Ok(Ok(message)) => message,
                };
                let topic = message.topic().to_owned();
                let (partition, offset) = (message.partition(), message.offset());
                let payload = message.payload().unwrap_or_default();
                MessageConsumed {
                    topic: &topic,
                    bytes: payload.len(),
                }
                .emit();
                pending_bytes += payload.len();
                let at = MessageAt { partition, offset };
                let outcome = match buffer_of.get(&topic) {
                    Some(&index) => match self.buffers[index].1.push_cached(at, payload) {
                        Some(outcome) => outcome,
                        None => self.buffers[index].1.push(at, payload).await,
                    },
                    None => Err(crate::tables::Rejection {
                        reason: format!("topic {topic} has no table"),
                    }),
                };
                if let Err(rejection) = outcome {
                    MessageRejected {
                        topic: &topic,
                        partition,
                        offset,
                        reason: &rejection.reason,
                    }
                    .emit();
                    dead_letters.push(dead_letter_row(
                        &topic,
                        partition,
                        offset,
                        payload,
                        &rejection.reason,
                    ));
                }
                pending += 1;
                ranges
                    .entry((topic, partition))
                    .and_modify(|range| range.last = offset)
                    .or_insert(OffsetRange {
                        first: offset,
                        last: offset,
                    });
                if pending >= self.limits.max_rows || pending_bytes >= self.limits.max_bytes {
                    break false;
                }
            };

            let batch = (!ranges.is_empty()).then(|| {
                let tables: Vec<(String, Box<dyn PendingRows>)> = self
                    .buffers
                    .iter_mut()
                    .zip(&topics)
                    .filter_map(|((_, buffer), topic)| {
                        buffer.take().map(|rows| (topic.clone(), rows))
                    })
                    .collect();
                Batch {
                    tables,
                    dead_letters: std::mem::take(&mut dead_letters),
                    ranges,
                    messages: pending,
                }
            });
            // One insert in flight at a time: wait for the previous batch before starting the
            // next, so a ClickHouse outage pauses consumption after one more batch.
            if let Some(previous) = in_flight.take()
                && !finish(&self.consumer, previous).await?
            {
                return Ok(());
            }
            if let Some(batch) = batch {
                in_flight = Some(tokio::spawn(flush_batch(
                    self.client.clone(),
                    batch,
                    stop.clone(),
                )));
            }
            if stopping {
                if let Some(previous) = in_flight.take()
                    && !finish(&self.consumer, previous).await?
                {
                    return Ok(());
                }
                polytape_kafka::commit_stored_offsets(&self.consumer)?;
                tracing::info!("sink drained and committed");
                return Ok(());
            }
        }
    }
}

/// Waits for a batch's insert and stores its offsets. False if it was stopped unwritten.
async fn finish(
    consumer: &polytape_kafka::LagReportingConsumer,
    in_flight: tokio::task::JoinHandle<Option<Flushed>>,
) -> Result<bool, polytape_runtime::BoxError> {
    let Some(flushed) = in_flight.await? else {
        // Stopped while ClickHouse was failing: nothing stored, the batch replays.
        tracing::warn!("stopping with an unwritten batch; it will be consumed again at restart");
        return Ok(false);
    };
    let processed = flushed
        .ranges
        .iter()
        .map(|((topic, partition), range)| (topic.clone(), *partition, range.last + 1));
    if let Err(error) = polytape_kafka::store_processed(consumer, processed) {
        // A partition revoked in a rebalance: its new owner replays from the last committed
        // offset, and the duplicates collapse in ClickHouse.
        tracing::warn!(error = %error, "could not store offsets; the batch may be replayed");
    }
    BatchFlushed {
        rows: flushed.messages,
        partitions: flushed.ranges.len(),
    }
    .emit();
    Ok(true)
}

/// One batch: its rows per table (with the topic they were read from), the dead letters of
/// the messages that could not become rows, and the offsets it covers.
struct Batch {
    tables: Vec<(String, Box<dyn PendingRows>)>,
    dead_letters: Vec<DeadLetterRow>,
    ranges: BTreeMap<(String, i32), OffsetRange>,
    messages: usize,
}

/// A batch whose rows are all in ClickHouse (or in `dead_letters`).
struct Flushed {
    ranges: BTreeMap<(String, i32), OffsetRange>,
    messages: usize,
}

/// Inserts every table's rows: retryable failures are retried with backoff, rows ClickHouse
/// refuses for good are isolated and written to `dead_letters` (after the tables, with the
/// batch's own dead letters). `None` if stopped before all of that was done: the batch is
/// replayed, and every insert that did succeed is recognised by its token.
async fn flush_batch(
    client: clickhouse::Client,
    batch: Batch,
    stop: CancellationToken,
) -> Option<Flushed> {
    let Batch {
        mut tables,
        mut dead_letters,
        ranges,
        messages,
    } = batch;
    let batch_token = batch_token(&ranges);
    for (topic, rows) in &mut tables {
        let table = rows.table();
        let token = format!("{batch_token}:{table}");
        // Usually one group; more only when the rows span more partitions than one insert
        // may (a backfill).
        let groups = rows.split_by_partition(MAX_PARTITIONS_PER_INSERT);
        let rows: &dyn PendingRows = rows.as_ref();
        for group in groups {
            let rejected = insert_isolating(group, &token, |range, token| {
                insert_settled(&client, rows, range, token, &stop)
            })
            .await?;
            for RejectedRow { index, message } in rejected {
                let reason = format!("ClickHouse refused the row for {table}: {message}");
                let Some((at, payload)) = rows.source(index) else {
                    DeadLetterDropped {
                        table,
                        reason: &reason,
                    }
                    .emit();
                    continue;
                };
                MessageRejected {
                    topic,
                    partition: at.partition,
                    offset: at.offset,
                    reason: &reason,
                }
                .emit();
                dead_letters.push(dead_letter_row(
                    topic,
                    at.partition,
                    at.offset,
                    payload,
                    &reason,
                ));
            }
        }
    }
    if !dead_letters.is_empty() {
        let letters = pending_rows("dead_letters", dead_letters, |row| row.occurred_at);
        // Distinct from the token of the dead-letter topic's own rows in the same batch.
        let token = format!("{batch_token}:dead_letters:sink");
        let rejected = insert_isolating(0..letters.len(), &token, |range, token| {
            insert_settled(&client, letters.as_ref(), range, token, &stop)
        })
        .await?;
        for RejectedRow { message, .. } in rejected {
            // Nowhere left to put it: say so loudly and move on rather than stall.
            DeadLetterDropped {
                table: "dead_letters",
                reason: &message,
            }
            .emit();
        }
    }
    Some(Flushed { ranges, messages })
}

/// Inserts `range` of `rows` until ClickHouse takes it ([`Attempt::Inserted`]) or refuses it
/// for good ([`Attempt::Rejected`], with ClickHouse's message); any other failure is retried
/// with exponential backoff and jitter (200 ms … 15 s), the same rows under the same token.
/// [`Attempt::Stopped`] if the sink stops while waiting to retry.
async fn insert_settled(
    client: &clickhouse::Client,
    rows: &dyn PendingRows,
    range: Range<usize>,
    token: String,
    stop: &CancellationToken,
) -> Attempt {
    let table = rows.table();
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(15))
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let started = Instant::now();
        let error = match rows.insert(client, range.clone(), &token).await {
            Ok(()) => {
                TableInserted {
                    table,
                    rows: range.len(),
                    seconds: started.elapsed().as_secs_f64(),
                    freshness_ms: rows
                        .newest_event_ms(range.clone())
                        .map(|newest| now_ms() - newest),
                }
                .emit();
                return Attempt::Inserted;
            }
            Err(error) => error,
        };
        if classify_error(&error) == ErrorClass::Permanent {
            let message = server_message(&error);
            InsertRejected {
                table,
                rows: range.len(),
                message: &message,
            }
            .emit();
            return Attempt::Rejected(message);
        }
        let retry_in = delays.next().unwrap_or(Duration::from_secs(15));
        InsertRetried {
            table,
            error: &error,
            retry_in,
        }
        .emit();
        tokio::select! {
            () = stop.cancelled() => return Attempt::Stopped,
            () = tokio::time::sleep(retry_in) => {}
        }
    }
}

/// ClickHouse's own message for a server error (`Code: NNN. DB::Exception: …`), else the
/// client's description.
fn server_message(error: &clickhouse::error::Error) -> String {
    match error {
        clickhouse::error::Error::BadResponse(message) => message.clone(),
        other => other.to_string(),
    }
}

/// A token naming exactly the records of this batch: the same offsets give the same token.
fn batch_token(ranges: &BTreeMap<(String, i32), OffsetRange>) -> String {
    let mut hasher = Sha256::new();
    for ((topic, partition), range) in ranges {
        hasher.update(format!("{topic}/{partition}/{}-{};", range.first, range.last).as_bytes());
    }
    hex::encode(&hasher.finalize()[..16])
}

/// The dead-letter row of a message the sink could not load. Its id depends only on where the
/// message was read (topic/partition/offset), so a redelivery replaces it (`dead_letters` is
/// keyed by the id alone); `occurred_at` is when this happened.
fn dead_letter_row(
    topic: &str,
    partition: i32,
    offset: i64,
    payload: &[u8],
    reason: &str,
) -> DeadLetterRow {
    DeadLetterRow::from_letter(DeadLetter::from_message(
        "sink-clickhouse",
        topic,
        partition,
        offset,
        reason.to_owned(),
        payload.to_vec(),
        now_ms(),
    ))
}
