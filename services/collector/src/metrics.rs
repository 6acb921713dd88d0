//! The collector's metrics. Each event below writes its log line and its metric together.

use std::sync::OnceLock;

use polytape_runtime::metrics::{InternalEvent, register};
use prometheus::{
    CounterVec, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
};

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
    late_fills: IntCounter,
    late_fill_lateness: Histogram,
    reconcile_ledger: IntGauge,
    upstream_gaps: IntCounterVec,
    leaderboard_missing_ranks: IntCounter,
    leaderboard_duplicates: IntCounter,
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
        late_fills: IntCounter::new(
            "polytape_collector_late_fills_total",
            "Fills found by reconciliation in time already covered (upstream indexed them after the poll passed their second), published late",
        )
        .map(register)?,
        late_fill_lateness: Histogram::with_opts(
            HistogramOpts::new(
                "polytape_collector_late_fill_lateness_seconds",
                "Discovery time minus fill timestamp of the fills found late",
            )
            .buckets(vec![
                5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1_800.0, 3_600.0, 7_200.0,
                21_600.0, 86_400.0,
            ]),
        )
        .map(register)?,
        reconcile_ledger: IntGauge::new(
            "polytape_collector_reconcile_ledger_fills",
            "Fingerprints of sent fills held for reconciliation (bounded by the horizon and a cap)",
        )
        .map(register)?,
        upstream_gaps: counter(
            "polytape_collector_upstream_gaps_total",
            "Continuity records (UPSTREAM_GAP) declared, by reason: dense_second (more fills in one second than the 10,000-offset cap returns), walk_failed (a walk incomplete after every retry)",
            &["reason"],
        )?,
        leaderboard_missing_ranks: IntCounter::new(
            "polytape_collector_leaderboard_missing_ranks_total",
            "Ranks a leaderboard list skipped because ranks shifted between its pages (the leaderboard record has no field to declare them)",
        )
        .map(register)?,
        leaderboard_duplicates: IntCounter::new(
            "polytape_collector_leaderboard_duplicate_rows_total",
            "Leaderboard rows dropped because their wallet was already read earlier in the same list and snapshot",
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

/// Fills a reconciliation found in time already covered, after the broker acknowledged them.
pub(crate) struct LateFillsFound<'a> {
    pub(crate) condition_id: &'a str,
    /// Discovery time minus fill timestamp, one per fill.
    pub(crate) lateness_s: &'a [f64],
}

impl InternalEvent for LateFillsFound<'_> {
    fn emit(self) {
        if self.lateness_s.is_empty() {
            return;
        }
        tracing::info!(
            condition_id = self.condition_id,
            fills = self.lateness_s.len(),
            max_lateness_s = self.lateness_s.iter().copied().fold(0.0, f64::max),
            "late-indexed fills found and published"
        );
        let Some(metrics) = metrics() else { return };
        metrics.late_fills.inc_by(self.lateness_s.len() as u64);
        for lateness in self.lateness_s {
            metrics.late_fill_lateness.observe(*lateness);
        }
    }
}

pub(crate) fn reconcile_ledger(fills: usize) {
    let Some(metrics) = metrics() else { return };
    metrics
        .reconcile_ledger
        .set(i64::try_from(fills).unwrap_or(i64::MAX));
}

/// A continuity record declared (after the broker acknowledged it).
pub(crate) struct GapDeclared<'a> {
    pub(crate) reason: &'static str,
    pub(crate) condition_id: &'a str,
    pub(crate) gap_start_ms: i64,
    pub(crate) gap_end_ms: i64,
    pub(crate) detail: &'a str,
}

impl InternalEvent for GapDeclared<'_> {
    fn emit(self) {
        tracing::warn!(
            reason = self.reason,
            condition_id = self.condition_id,
            gap_start_ms = self.gap_start_ms,
            gap_end_ms = self.gap_end_ms,
            detail = self.detail,
            "upstream gap declared on the continuity topic"
        );
        let Some(metrics) = metrics() else { return };
        metrics
            .upstream_gaps
            .with_label_values(&[self.reason])
            .inc();
    }
}

/// One leaderboard list of a snapshot, read page by page while its ranks may have shifted.
pub(crate) struct LeaderboardListRead<'a> {
    pub(crate) list: &'a str,
    pub(crate) duplicates: u64,
    pub(crate) missing_ranks: u64,
}

impl InternalEvent for LeaderboardListRead<'_> {
    fn emit(self) {
        if self.duplicates == 0 && self.missing_ranks == 0 {
            return;
        }
        tracing::warn!(
            list = self.list,
            duplicates = self.duplicates,
            missing_ranks = self.missing_ranks,
            "leaderboard ranks shifted while the list was paged: duplicate wallets dropped, missing ranks counted"
        );
        let Some(metrics) = metrics() else { return };
        metrics.leaderboard_duplicates.inc_by(self.duplicates);
        metrics.leaderboard_missing_ranks.inc_by(self.missing_ranks);
    }
}
