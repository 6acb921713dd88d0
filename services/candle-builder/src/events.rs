//! The builder's metrics and their log lines, emitted together.

use std::sync::LazyLock;

use polytape_runtime::metrics::{InternalEvent, counter, counter_vec, gauge, gauge_vec, histogram};
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

static CONSUMED: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_candle_builder_consumed_total",
        "Input records consumed, per input topic",
        &["topic"],
    )
});
static PRODUCED: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_candle_builder_produced_total",
        "Output records acknowledged, per output",
        &["output"],
    )
});
static TRADES_SKIPPED: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_candle_builder_trades_skipped_total",
        "Trades not counted: late (dead-lettered), invalid (dead-lettered) or duplicate (ignored)",
        &["reason"],
    )
});
static BOOK_EVENTS_SKIPPED: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_candle_builder_book_events_skipped_total",
        "Book events read but not applied",
        &["reason"],
    )
});
static MISMATCHES: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    counter(
        "polytape_candle_builder_book_mismatches_total",
        "Books found inconsistent with upstream's best bid/ask",
    )
});
static DEAD_LETTERS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_candle_builder_dead_letters_total",
        "Inputs sent to the DLQ, per input topic",
        &["topic"],
    )
});
static RESYNCS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_candle_builder_book_resyncs_total",
        "REST /book fetches of inconsistent books: published, no_book (404) or failed",
        &["outcome"],
    )
});
static CHECKPOINT_BYTES: LazyLock<Option<IntGauge>> = LazyLock::new(|| {
    gauge(
        "polytape_candle_builder_checkpoint_bytes",
        "Size of the last checkpoint written",
    )
});
static CHECKPOINT_SECONDS: LazyLock<Option<Histogram>> = LazyLock::new(|| {
    histogram(
        "polytape_candle_builder_checkpoint_seconds",
        "Time to write one checkpoint",
        vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
    )
});
static STATE: LazyLock<Option<IntGaugeVec>> = LazyLock::new(|| {
    gauge_vec(
        "polytape_candle_builder_state",
        "Size of the in-memory state",
        &["kind"],
    )
});

/// A batch of input was processed and its outputs acknowledged.
pub(crate) struct BatchProcessed {
    pub(crate) consumed: [(&'static str, u64); 4],
    pub(crate) candles: usize,
    pub(crate) book_states: usize,
    pub(crate) gaps: usize,
    pub(crate) dead_letters: usize,
}

impl InternalEvent for BatchProcessed {
    fn emit(self) {
        let total: u64 = self.consumed.iter().map(|(_, count)| count).sum();
        tracing::debug!(
            records = total,
            candles = self.candles,
            book_states = self.book_states,
            gaps = self.gaps,
            dead_letters = self.dead_letters,
            "batch processed and outputs acknowledged"
        );
        for (topic, count) in self.consumed {
            if let Some(metric) = CONSUMED.as_ref() {
                metric.with_label_values(&[topic]).inc_by(count);
            }
        }
        for (output, count) in [
            ("candles", self.candles),
            ("book_state", self.book_states),
            ("continuity", self.gaps),
            ("dlq", self.dead_letters),
        ] {
            if let Some(metric) = PRODUCED.as_ref() {
                metric
                    .with_label_values(&[output])
                    .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
            }
        }
    }
}

/// A trade was not counted.
pub(crate) struct TradeSkipped<'a> {
    pub(crate) reason: &'static str,
    pub(crate) detail: &'a dyn std::fmt::Display,
}

impl InternalEvent for TradeSkipped<'_> {
    fn emit(self) {
        tracing::debug!(reason = self.reason, detail = %self.detail, "trade not counted");
        if let Some(metric) = TRADES_SKIPPED.as_ref() {
            metric.with_label_values(&[self.reason]).inc();
        }
    }
}

/// A book event was read but not applied.
pub(crate) struct BookEventSkipped {
    pub(crate) reason: &'static str,
}

impl InternalEvent for BookEventSkipped {
    fn emit(self) {
        if let Some(metric) = BOOK_EVENTS_SKIPPED.as_ref() {
            metric.with_label_values(&[self.reason]).inc();
        }
    }
}

/// A book disagreed with upstream's best bid/ask.
pub(crate) struct BookMismatch<'a> {
    pub(crate) token_id: &'a str,
    pub(crate) reason: &'a str,
}

impl InternalEvent for BookMismatch<'_> {
    fn emit(self) {
        tracing::warn!(
            token_id = self.token_id,
            reason = self.reason,
            "book mismatch; waiting for the next snapshot (or the REST resync)"
        );
        if let Some(metric) = MISMATCHES.as_ref() {
            metric.inc();
        }
    }
}

/// An inconsistent book was fetched from the CLOB REST API (or that failed).
pub(crate) struct BookResync<'a> {
    pub(crate) token_id: &'a str,
    pub(crate) outcome: &'static str,
    pub(crate) error: Option<&'a String>,
}

impl InternalEvent for BookResync<'_> {
    fn emit(self) {
        match self.error {
            Some(error) => tracing::warn!(
                token_id = self.token_id,
                error = %error,
                "book resync failed; retrying later while the book is inconsistent"
            ),
            None if self.outcome == "no_book" => tracing::info!(
                token_id = self.token_id,
                "book resync: upstream has no book for the token (market closed?)"
            ),
            None => tracing::info!(
                token_id = self.token_id,
                "book resync: REST book published to book_snapshots"
            ),
        }
        if let Some(metric) = RESYNCS.as_ref() {
            metric.with_label_values(&[self.outcome]).inc();
        }
    }
}

/// An input went to the DLQ.
pub(crate) struct DeadLettered<'a> {
    pub(crate) topic: &'static str,
    pub(crate) origin: &'a str,
    pub(crate) reason: &'a str,
}

impl InternalEvent for DeadLettered<'_> {
    fn emit(self) {
        tracing::debug!(
            origin = self.origin,
            reason = self.reason,
            "input sent to the dlq"
        );
        if let Some(metric) = DEAD_LETTERS.as_ref() {
            metric.with_label_values(&[self.topic]).inc();
        }
    }
}

/// A checkpoint was written and the input offsets it covers were stored.
pub(crate) struct CheckpointWritten {
    pub(crate) generation: u64,
    pub(crate) bytes: usize,
    pub(crate) chunks: usize,
    pub(crate) seconds: f64,
    pub(crate) candle_tokens: usize,
    pub(crate) open_windows: usize,
    pub(crate) books: usize,
}

impl InternalEvent for CheckpointWritten {
    fn emit(self) {
        tracing::debug!(
            generation = self.generation,
            bytes = self.bytes,
            chunks = self.chunks,
            seconds = self.seconds,
            "checkpoint written"
        );
        if let Some(metric) = CHECKPOINT_BYTES.as_ref() {
            metric.set(i64::try_from(self.bytes).unwrap_or(i64::MAX));
        }
        if let Some(metric) = CHECKPOINT_SECONDS.as_ref() {
            metric.observe(self.seconds);
        }
        for (kind, value) in [
            ("candle_tokens", self.candle_tokens),
            ("open_windows", self.open_windows),
            ("books", self.books),
        ] {
            if let Some(metric) = STATE.as_ref() {
                metric
                    .with_label_values(&[kind])
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
    }
}

/// The state was restored from a checkpoint at start-up (or there was none).
pub(crate) struct StateRestored {
    pub(crate) generation: Option<u64>,
    pub(crate) bytes: usize,
    pub(crate) partitions: usize,
}

impl InternalEvent for StateRestored {
    fn emit(self) {
        match self.generation {
            Some(generation) => tracing::info!(
                generation,
                bytes = self.bytes,
                partitions = self.partitions,
                "state restored from checkpoint; resuming at its offsets"
            ),
            None => tracing::info!(
                partitions = self.partitions,
                "no checkpoint; consuming the inputs from the beginning"
            ),
        }
    }
}

/// A produce failed and the batch is sent again (outputs are deterministic, so a resend
/// is idempotent downstream).
/// Writing a checkpoint failed in a way that may succeed again; it is written again.
pub(crate) struct CheckpointRetried<'a> {
    pub(crate) error: &'a dyn std::fmt::Display,
    pub(crate) retry_in: std::time::Duration,
}

impl InternalEvent for CheckpointRetried<'_> {
    fn emit(self) {
        tracing::warn!(error = %self.error, retry_in = ?self.retry_in, "writing the checkpoint failed; writing it again");
    }
}

pub(crate) struct SendRetried<'a> {
    pub(crate) error: &'a dyn std::fmt::Display,
    pub(crate) retry_in: std::time::Duration,
}

impl InternalEvent for SendRetried<'_> {
    fn emit(self) {
        tracing::warn!(error = %self.error, retry_in = ?self.retry_in, "sending outputs failed; retrying the batch");
    }
}
