//! The collector's metrics. Each event below writes its log line and its metric together.

use std::sync::OnceLock;

use polytape_runtime::metrics::{InternalEvent, register};
use prometheus::{CounterVec, GaugeVec, IntCounterVec, IntGauge, Opts};

use crate::budget::Endpoint;

struct Metrics {
    requests: IntCounterVec,
    rate_limited: IntCounterVec,
    budget_wait: CounterVec,
    budget_rate: GaugeVec,
    records: IntCounterVec,
    dead_letters: IntCounterVec,
    checkpoint_lag: GaugeVec,
    markets_total: IntGauge,
    markets_done: IntGauge,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let counter = |name: &str, help: &str, labels: &[&str]| {
        IntCounterVec::new(Opts::new(name, help), labels).map(register)
    };
    let gauge = |name: &str, help: &str, labels: &[&str]| {
        GaugeVec::new(Opts::new(name, help), labels).map(register)
    };
    Ok(Metrics {
        requests: counter(
            "polytape_collector_requests_total",
            "Upstream requests by endpoint and HTTP status (status \"error\" = no response)",
            &["endpoint", "status"],
        )?,
        rate_limited: counter(
            "polytape_collector_rate_limited_total",
            "Upstream 429 responses (throttling we should never trigger)",
            &["endpoint"],
        )?,
        budget_wait: CounterVec::new(
            Opts::new(
                "polytape_collector_budget_wait_seconds_total",
                "Seconds spent waiting on the endpoint's token bucket",
            ),
            &["endpoint"],
        )
        .map(register)?,
        budget_rate: gauge(
            "polytape_collector_budget_requests_per_second",
            "Sustained request rate the endpoint's token bucket allows; utilisation = rate(requests_total) / this",
            &["endpoint"],
        )?,
        records: counter(
            "polytape_collector_records_total",
            "Records acknowledged by Kafka, by topic",
            &["topic"],
        )?,
        dead_letters: counter(
            "polytape_collector_dead_letters_total",
            "Upstream rows or pages sent to the DLQ, by endpoint",
            &["endpoint"],
        )?,
        checkpoint_lag: gauge(
            "polytape_collector_checkpoint_lag_seconds",
            "Now minus the least advanced market's covered-until time, by dataset",
            &["dataset"],
        )?,
        markets_total: IntGauge::new(
            "polytape_collector_backfill_markets_total",
            "Markets in the current trades backfill",
        )
        .map(register)?,
        markets_done: IntGauge::new(
            "polytape_collector_backfill_markets_done",
            "Markets whose trades backfill is complete",
        )
        .map(register)?,
    })
}

/// The metrics, or `None` if they could not be built (constant names: never in practice);
/// metrics must never stop collection.
fn metrics() -> Option<&'static Metrics> {
    static METRICS: OnceLock<Option<Metrics>> = OnceLock::new();
    METRICS.get_or_init(|| build().ok()).as_ref()
}

/// One upstream response (or transport failure).
pub(crate) struct RequestFinished {
    pub(crate) endpoint: Endpoint,
    pub(crate) status: Option<u16>,
}

impl InternalEvent for RequestFinished {
    fn emit(self) {
        let status = self
            .status
            .map_or_else(|| "error".to_owned(), |status| status.to_string());
        let Some(metrics) = metrics() else { return };
        metrics
            .requests
            .with_label_values(&[self.endpoint.label(), &status])
            .inc();
        if self.status == Some(429) {
            tracing::warn!(
                endpoint = self.endpoint.label(),
                "upstream rate limited us (429)"
            );
            metrics
                .rate_limited
                .with_label_values(&[self.endpoint.label()])
                .inc();
        }
    }
}

/// Time spent waiting for a token.
pub(crate) struct BudgetWaited {
    pub(crate) endpoint: Endpoint,
    pub(crate) seconds: f64,
}

impl InternalEvent for BudgetWaited {
    fn emit(self) {
        let Some(metrics) = metrics() else { return };
        metrics
            .budget_wait
            .with_label_values(&[self.endpoint.label()])
            .inc_by(self.seconds);
    }
}

/// Publishes the configured bucket rate (for utilisation dashboards).
pub(crate) fn budget_rate(endpoint: Endpoint, per_second: f64) {
    let Some(metrics) = metrics() else { return };
    metrics
        .budget_rate
        .with_label_values(&[endpoint.label()])
        .set(per_second);
}

/// Records acknowledged by the broker.
pub(crate) struct RecordsProduced<'a> {
    pub(crate) topic: &'a str,
    pub(crate) count: usize,
}

impl InternalEvent for RecordsProduced<'_> {
    fn emit(self) {
        let Some(metrics) = metrics() else { return };
        metrics
            .records
            .with_label_values(&[self.topic])
            .inc_by(self.count as u64);
    }
}

/// A row or page refused and sent to the DLQ.
pub(crate) struct DeadLettered<'a> {
    pub(crate) endpoint: Endpoint,
    pub(crate) error: &'a str,
}

impl InternalEvent for DeadLettered<'_> {
    fn emit(self) {
        tracing::warn!(
            endpoint = self.endpoint.label(),
            error = self.error,
            "upstream record sent to the dlq"
        );
        let Some(metrics) = metrics() else { return };
        metrics
            .dead_letters
            .with_label_values(&[self.endpoint.label()])
            .inc();
    }
}

pub(crate) fn checkpoint_lag(dataset: &str, seconds: f64) {
    let Some(metrics) = metrics() else { return };
    metrics
        .checkpoint_lag
        .with_label_values(&[dataset])
        .set(seconds);
}

pub(crate) fn backfill_progress(done: usize, total: usize) {
    let Some(metrics) = metrics() else { return };
    metrics
        .markets_total
        .set(i64::try_from(total).unwrap_or(i64::MAX));
    metrics
        .markets_done
        .set(i64::try_from(done).unwrap_or(i64::MAX));
}
