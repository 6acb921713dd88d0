//! The sink's metrics and their log lines, emitted together.

use std::sync::LazyLock;

use polytape_runtime::metrics::{
    InternalEvent, counter, counter_vec, gauge_vec, histogram, histogram_vec,
};
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec};

static ROWS_INSERTED: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_sink_rows_inserted_total",
        "Rows inserted into ClickHouse",
        &["table"],
    )
});
static BYTES_CONSUMED: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_sink_consumed_bytes_total",
        "Avro payload bytes consumed from Kafka",
        &["topic"],
    )
});
static INSERT_SECONDS: LazyLock<Option<HistogramVec>> = LazyLock::new(|| {
    histogram_vec(
        "polytape_sink_insert_seconds",
        "Latency of one table insert",
        &["table"],
        vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ],
    )
});
static BATCH_ROWS: LazyLock<Option<Histogram>> = LazyLock::new(|| {
    histogram(
        "polytape_sink_batch_rows",
        "Rows per flushed batch (all tables)",
        prometheus::exponential_buckets(1.0, 4.0, 10).unwrap_or_default(),
    )
});
static INSERT_RETRIES: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    counter(
        "polytape_sink_insert_retries_total",
        "Failed inserts retried with backoff",
    )
});
static INSERT_REJECTIONS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_sink_insert_rejections_total",
        "Inserts ClickHouse refused for good (bad data), each then bisected",
        &["table"],
    )
});
static DEAD_LETTERS_DROPPED: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_sink_dead_letters_dropped_total",
        "Rows ClickHouse refused that could not be kept in dead_letters either",
        &["table"],
    )
});
static DEAD_LETTERS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_sink_dead_letters_total",
        "Messages that could not be loaded, kept in dead_letters",
        &["topic"],
    )
});
static FRESHNESS_SECONDS: LazyLock<Option<IntGaugeVec>> = LazyLock::new(|| {
    gauge_vec(
        "polytape_sink_freshness_milliseconds",
        "Now minus the event time of the newest row inserted, per table",
        &["table"],
    )
});
static ROW_LATENCY_SECONDS: LazyLock<Option<HistogramVec>> = LazyLock::new(|| {
    histogram_vec(
        "polytape_sink_row_latency_seconds",
        "Insert completion time minus each row's event time (freshness distribution)",
        &["table"],
        vec![
            0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
            30.0, 60.0,
        ],
    )
});

/// Records each inserted row's latency (insert completion − event time).
pub(crate) fn observe_row_latencies(
    table: &'static str,
    now_ms: i64,
    event_times: impl Iterator<Item = i64>,
) {
    let Some(latencies) = ROW_LATENCY_SECONDS.as_ref() else {
        return;
    };
    let histogram = latencies.with_label_values(&[table]);
    for event_ms in event_times {
        histogram.observe((now_ms - event_ms).max(0) as f64 / 1000.0);
    }
}

/// A message was consumed.
pub(crate) struct MessageConsumed<'a> {
    pub(crate) topic: &'a str,
    pub(crate) bytes: usize,
}

impl InternalEvent for MessageConsumed<'_> {
    fn emit(self) {
        if let Some(metric) = BYTES_CONSUMED.as_ref() {
            metric
                .with_label_values(&[self.topic])
                .inc_by(u64::try_from(self.bytes).unwrap_or(u64::MAX));
        }
    }
}

/// A table insert succeeded.
pub(crate) struct TableInserted {
    pub(crate) table: &'static str,
    pub(crate) rows: usize,
    pub(crate) seconds: f64,
    pub(crate) freshness_ms: Option<i64>,
}

impl InternalEvent for TableInserted {
    fn emit(self) {
        tracing::debug!(
            table = self.table,
            rows = self.rows,
            seconds = self.seconds,
            "rows inserted"
        );
        if let Some(metric) = ROWS_INSERTED.as_ref() {
            metric
                .with_label_values(&[self.table])
                .inc_by(u64::try_from(self.rows).unwrap_or(u64::MAX));
        }
        if let Some(metric) = INSERT_SECONDS.as_ref() {
            metric
                .with_label_values(&[self.table])
                .observe(self.seconds);
        }
        if let Some(freshness) = self.freshness_ms
            && let Some(metric) = FRESHNESS_SECONDS.as_ref()
        {
            metric.with_label_values(&[self.table]).set(freshness);
        }
    }
}

/// A batch was flushed (all tables) and its offsets stored.
pub(crate) struct BatchFlushed {
    pub(crate) rows: usize,
    pub(crate) partitions: usize,
}

impl InternalEvent for BatchFlushed {
    fn emit(self) {
        tracing::debug!(
            rows = self.rows,
            partitions = self.partitions,
            "batch flushed and offsets stored"
        );
        if let Some(metric) = BATCH_ROWS.as_ref() {
            metric.observe(self.rows as f64);
        }
    }
}

/// An insert failed and will be retried.
pub(crate) struct InsertRetried<'a> {
    pub(crate) table: &'static str,
    pub(crate) error: &'a dyn std::fmt::Display,
    pub(crate) retry_in: std::time::Duration,
}

impl InternalEvent for InsertRetried<'_> {
    fn emit(self) {
        tracing::warn!(
            table = self.table,
            error = %self.error,
            retry_in = ?self.retry_in,
            "clickhouse insert failed; consumption paused, retrying the same batch"
        );
        if let Some(metric) = INSERT_RETRIES.as_ref() {
            metric.inc();
        }
    }
}

/// A message could not be decoded or mapped.
pub(crate) struct MessageRejected<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) reason: &'a str,
}

impl InternalEvent for MessageRejected<'_> {
    fn emit(self) {
        tracing::warn!(
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            reason = self.reason,
            "message sent to dead_letters"
        );
        if let Some(metric) = DEAD_LETTERS.as_ref() {
            metric.with_label_values(&[self.topic]).inc();
        }
    }
}

/// ClickHouse refused an insert for good (a data error): its rows are bisected to isolate the
/// refused ones.
pub(crate) struct InsertRejected<'a> {
    pub(crate) table: &'static str,
    pub(crate) rows: usize,
    pub(crate) message: &'a str,
}

impl InternalEvent for InsertRejected<'_> {
    fn emit(self) {
        tracing::warn!(
            table = self.table,
            rows = self.rows,
            error = self.message,
            "clickhouse refused the rows for good; isolating the refused ones for dead_letters"
        );
        if let Some(metric) = INSERT_REJECTIONS.as_ref() {
            metric.with_label_values(&[self.table]).inc();
        }
    }
}

/// A row ClickHouse refused could not be kept in `dead_letters` either (a dead letter refused
/// itself, or a row with no message to point at): it is only in this log line.
pub(crate) struct DeadLetterDropped<'a> {
    pub(crate) table: &'static str,
    pub(crate) reason: &'a str,
}

impl InternalEvent for DeadLetterDropped<'_> {
    fn emit(self) {
        tracing::error!(
            table = self.table,
            reason = self.reason,
            "a row clickhouse refused could not be kept in dead_letters; dropped"
        );
        if let Some(metric) = DEAD_LETTERS_DROPPED.as_ref() {
            metric.with_label_values(&[self.table]).inc();
        }
    }
}
