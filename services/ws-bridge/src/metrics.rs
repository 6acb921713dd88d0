//! The bridge's metrics. Each event below writes its log line and its metric together, so the
//! two never drift apart.

use std::sync::OnceLock;

use polytape_model::ContinuityKind;
use polytape_runtime::metrics::{InternalEvent, counter, counter_vec, gauge};
use prometheus::{IntCounter, IntCounterVec, IntGauge};

struct Metrics {
    connections_open: IntGauge,
    records_in_flight: IntGauge,
    tokens_subscribed: IntGauge,
    events: IntCounterVec,
    records_acked: IntCounterVec,
    records_failed: IntCounterVec,
    dead_letters: IntCounterVec,
    continuity: IntCounterVec,
    reconnects: IntCounterVec,
    duplicates_dropped: IntCounter,
    rest_books: IntCounterVec,
}

/// Every metric through `polytape_runtime::metrics` (an invalid definition is logged, never a
/// panic); `None` if one could not be defined.
fn build() -> Option<Metrics> {
    Some(Metrics {
        connections_open: gauge(
            "polytape_ws_connections_open",
            "WebSocket connections currently open (one task each)",
        )?,
        records_in_flight: gauge(
            "polytape_ws_records_in_flight",
            "Records handed to the producer and not yet acknowledged or failed",
        )?,
        tokens_subscribed: gauge(
            "polytape_ws_tokens_subscribed",
            "Token ids the bridge follows across all connections",
        )?,
        events: counter_vec(
            "polytape_ws_events_total",
            "Market-channel events read, by event type",
            &["event_type"],
        )?,
        records_acked: counter_vec(
            "polytape_ws_records_acked_total",
            "Records acknowledged by Kafka, by topic",
            &["topic"],
        )?,
        records_failed: counter_vec(
            "polytape_ws_records_failed_total",
            "Records Kafka did not acknowledge (declared as continuity gaps), by topic",
            &["topic"],
        )?,
        dead_letters: counter_vec(
            "polytape_ws_dead_letters_total",
            "Frames or events sent to the DLQ, by reason",
            &["reason"],
        )?,
        continuity: counter_vec(
            "polytape_ws_continuity_total",
            "Continuity gaps opened, by kind",
            &["kind"],
        )?,
        reconnects: counter_vec(
            "polytape_ws_reconnects_total",
            "Connections ended and scheduled for reconnection, by reason",
            &["reason"],
        )?,
        duplicates_dropped: counter(
            "polytape_ws_duplicates_dropped_total",
            "Events dropped because they repeated the previous event of their token byte for byte",
        )?,
        rest_books: counter_vec(
            "polytape_ws_rest_books_total",
            "REST /book fetches for tokens whose dump was missing, by outcome",
            &["outcome"],
        )?,
    })
}

/// The metrics, or `None` if they could not be built (constant names: never in practice);
/// metrics must never stop the bridge.
fn metrics() -> Option<&'static Metrics> {
    static METRICS: OnceLock<Option<Metrics>> = OnceLock::new();
    METRICS.get_or_init(build).as_ref()
}

/// A connection finished its handshake and subscription.
pub(crate) struct ConnectionOpened<'a> {
    pub(crate) connection_id: &'a str,
    pub(crate) tokens: usize,
}

impl InternalEvent for ConnectionOpened<'_> {
    fn emit(self) {
        tracing::info!(
            connection_id = self.connection_id,
            tokens = self.tokens,
            "websocket connection open; subscribing"
        );
        if let Some(metrics) = metrics() {
            metrics.connections_open.inc();
        }
    }
}

/// An open connection ended; `reason` is a short label, `detail` the human explanation.
pub(crate) struct ConnectionEnded<'a> {
    pub(crate) connection_id: &'a str,
    pub(crate) reason: &'static str,
    pub(crate) detail: &'a str,
    pub(crate) reconnecting: bool,
}

impl InternalEvent for ConnectionEnded<'_> {
    fn emit(self) {
        if self.reconnecting {
            tracing::warn!(
                connection_id = self.connection_id,
                reason = self.reason,
                detail = self.detail,
                "websocket connection ended; reconnecting"
            );
        } else {
            tracing::info!(
                connection_id = self.connection_id,
                reason = self.reason,
                "websocket connection closed"
            );
        }
        if let Some(metrics) = metrics() {
            metrics.connections_open.dec();
            if self.reconnecting {
                metrics.reconnects.with_label_values(&[self.reason]).inc();
            }
        }
    }
}

/// A connection attempt failed before the connection was open.
pub(crate) struct ConnectFailed<'a> {
    pub(crate) shard: usize,
    pub(crate) error: &'a str,
    pub(crate) retry_in_ms: u128,
}

impl InternalEvent for ConnectFailed<'_> {
    fn emit(self) {
        tracing::warn!(
            shard = self.shard,
            error = self.error,
            retry_in_ms = self.retry_in_ms as u64,
            "websocket connection attempt failed; retrying"
        );
        if let Some(metrics) = metrics() {
            metrics
                .reconnects
                .with_label_values(&["connect_failed"])
                .inc();
        }
    }
}

/// Records handed to the producer (positive) or settled (negative).
pub(crate) fn records_in_flight(change: i64) {
    if let Some(metrics) = metrics() {
        metrics.records_in_flight.add(change);
    }
}

/// The number of followed tokens changed.
pub(crate) fn tokens_subscribed(count: usize) {
    if let Some(metrics) = metrics() {
        metrics
            .tokens_subscribed
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

/// One event read from a socket (no log line: this is the hot path).
pub(crate) struct EventRead {
    pub(crate) event_type: &'static str,
}

impl InternalEvent for EventRead {
    fn emit(self) {
        if let Some(metrics) = metrics() {
            metrics.events.with_label_values(&[self.event_type]).inc();
        }
    }
}

/// Records the broker acknowledged.
pub(crate) struct RecordsAcked<'a> {
    pub(crate) topic: &'a str,
    pub(crate) count: u64,
}

impl InternalEvent for RecordsAcked<'_> {
    fn emit(self) {
        if let Some(metrics) = metrics() {
            metrics
                .records_acked
                .with_label_values(&[self.topic])
                .inc_by(self.count);
        }
    }
}

/// A record the broker did not acknowledge.
pub(crate) struct RecordFailed<'a> {
    pub(crate) topic: &'a str,
    pub(crate) error: &'a str,
}

impl InternalEvent for RecordFailed<'_> {
    fn emit(self) {
        tracing::error!(
            topic = self.topic,
            error = self.error,
            "kafka did not acknowledge a record; it will be declared as a continuity gap"
        );
        if let Some(metrics) = metrics() {
            metrics
                .records_failed
                .with_label_values(&[self.topic])
                .inc();
        }
    }
}

/// A frame or event went to the DLQ.
pub(crate) struct DeadLettered<'a> {
    pub(crate) connection_id: &'a str,
    pub(crate) reason: &'static str,
    pub(crate) error: &'a str,
}

impl InternalEvent for DeadLettered<'_> {
    fn emit(self) {
        tracing::warn!(
            connection_id = self.connection_id,
            reason = self.reason,
            error = self.error,
            "websocket input sent to the dlq"
        );
        if let Some(metrics) = metrics() {
            metrics.dead_letters.with_label_values(&[self.reason]).inc();
        }
    }
}

/// A continuity gap was opened (published with `gap_end_ms` unset).
pub(crate) struct GapOpened<'a> {
    pub(crate) continuity_id: &'a str,
    pub(crate) kind: ContinuityKind,
    pub(crate) tokens: usize,
    pub(crate) reason: &'a str,
}

impl InternalEvent for GapOpened<'_> {
    fn emit(self) {
        tracing::warn!(
            continuity_id = self.continuity_id,
            kind = self.kind.name(),
            tokens = self.tokens,
            reason = self.reason,
            "continuity gap opened"
        );
        if let Some(metrics) = metrics() {
            metrics
                .continuity
                .with_label_values(&[self.kind.label()])
                .inc();
        }
    }
}

/// A continuity gap was closed: every token it covers has a fresh book.
pub(crate) struct GapClosed<'a> {
    pub(crate) continuity_id: &'a str,
    pub(crate) kind: ContinuityKind,
    pub(crate) gap_start_ms: i64,
    pub(crate) gap_end_ms: i64,
}

impl InternalEvent for GapClosed<'_> {
    fn emit(self) {
        tracing::info!(
            continuity_id = self.continuity_id,
            kind = self.kind.name(),
            gap_start_ms = self.gap_start_ms,
            gap_end_ms = self.gap_end_ms,
            "continuity gap closed"
        );
    }
}

/// An event repeated its token's previous event byte for byte and was dropped.
pub(crate) struct DuplicateDropped<'a> {
    pub(crate) connection_id: &'a str,
}

impl InternalEvent for DuplicateDropped<'_> {
    fn emit(self) {
        tracing::debug!(
            connection_id = self.connection_id,
            "duplicate event dropped"
        );
        if let Some(metrics) = metrics() {
            metrics.duplicates_dropped.inc();
        }
    }
}

/// A REST `/book` fetch for a token whose dump did not arrive.
pub(crate) struct RestBookFetched<'a> {
    pub(crate) token_id: &'a str,
    pub(crate) outcome: &'static str,
}

impl InternalEvent for RestBookFetched<'_> {
    fn emit(self) {
        tracing::info!(
            token_id = self.token_id,
            outcome = self.outcome,
            "book dump missing; fetched rest /book"
        );
        if let Some(metrics) = metrics() {
            metrics.rest_books.with_label_values(&[self.outcome]).inc();
        }
    }
}

/// The server refused a subscription.
pub(crate) struct SubscriptionRefused<'a> {
    pub(crate) connection_id: &'a str,
    pub(crate) message: &'a str,
    pub(crate) max_assets: Option<usize>,
}

impl InternalEvent for SubscriptionRefused<'_> {
    fn emit(self) {
        tracing::warn!(
            connection_id = self.connection_id,
            message = self.message,
            max_assets = self.max_assets,
            "subscription refused by the server; reconnecting with a smaller token set"
        );
    }
}
