//! The collector's metrics. Each event below writes its log line and its metric together.

use std::sync::LazyLock;

use polytape_polymarket::Endpoint;
use polytape_runtime::metrics::{InternalEvent, counter, counter_vec, define, gauge, histogram};
use prometheus::{GaugeVec, Histogram, IntCounter, IntCounterVec, IntGauge, Opts};

static RECORDS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_collector_records_total",
        "Records acknowledged by Kafka, by topic",
        &["topic"],
    )
});
static DEAD_LETTERS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_collector_dead_letters_total",
        "Upstream rows or pages sent to the DLQ, by endpoint",
        &["endpoint"],
    )
});
static CHECKPOINT_LAG: LazyLock<Option<GaugeVec>> = LazyLock::new(|| {
    let name = "polytape_collector_checkpoint_lag_seconds";
    define(
        name,
        GaugeVec::new(
            Opts::new(
                name,
                "Now minus the least advanced market's covered-until time, by dataset",
            ),
            &["dataset"],
        ),
    )
});
static MARKETS_TOTAL: LazyLock<Option<IntGauge>> = LazyLock::new(|| {
    gauge(
        "polytape_collector_backfill_markets_total",
        "Markets in the current trades backfill",
    )
});
static MARKETS_DONE: LazyLock<Option<IntGauge>> = LazyLock::new(|| {
    gauge(
        "polytape_collector_backfill_markets_done",
        "Markets whose trades backfill is complete",
    )
});
static LATE_FILLS: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    counter(
        "polytape_collector_late_fills_total",
        "Fills found by reconciliation in time already covered (upstream indexed them after the poll passed their second), published late",
    )
});
static LATE_FILL_LATENESS: LazyLock<Option<Histogram>> = LazyLock::new(|| {
    histogram(
        "polytape_collector_late_fill_lateness_seconds",
        "Discovery time minus fill timestamp of the fills found late",
        vec![
            5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1_800.0, 3_600.0, 7_200.0, 21_600.0,
            86_400.0,
        ],
    )
});
static RECONCILE_LEDGER: LazyLock<Option<IntGauge>> = LazyLock::new(|| {
    gauge(
        "polytape_collector_reconcile_ledger_fills",
        "Fingerprints of sent fills held for reconciliation (bounded by the horizon and a cap)",
    )
});
static RECONCILE_LEDGER_WRITES: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    counter(
        "polytape_collector_reconcile_ledger_writes_total",
        "Reconciliation ledger entries (market-hours and spans) written to the checkpoint topic, so a restart knows what was sent",
    )
});
static UPSTREAM_GAPS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_collector_upstream_gaps_total",
        "Continuity records (UPSTREAM_GAP) declared, by reason: dense_second (more fills in one second than the 10,000-offset cap returns), walk_failed (a walk incomplete after every retry)",
        &["reason"],
    )
});
static LEADERBOARD_MISSING_RANKS: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    counter(
        "polytape_collector_leaderboard_missing_ranks_total",
        "Ranks a leaderboard list skipped because ranks shifted between its pages (the leaderboard record has no field to declare them)",
    )
});
static LEADERBOARD_DUPLICATES: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    counter(
        "polytape_collector_leaderboard_duplicate_rows_total",
        "Leaderboard rows dropped because their wallet was already read earlier in the same list and snapshot",
    )
});

/// Registers every metric at start, so the series exist (at 0) before their first event.
pub(crate) fn register_all() {
    LazyLock::force(&RECORDS);
    LazyLock::force(&DEAD_LETTERS);
    LazyLock::force(&CHECKPOINT_LAG);
    LazyLock::force(&MARKETS_TOTAL);
    LazyLock::force(&MARKETS_DONE);
    LazyLock::force(&LATE_FILLS);
    LazyLock::force(&LATE_FILL_LATENESS);
    LazyLock::force(&RECONCILE_LEDGER);
    LazyLock::force(&RECONCILE_LEDGER_WRITES);
    LazyLock::force(&UPSTREAM_GAPS);
    LazyLock::force(&LEADERBOARD_MISSING_RANKS);
    LazyLock::force(&LEADERBOARD_DUPLICATES);
}

/// Records acknowledged by the broker.
pub(crate) struct RecordsProduced<'a> {
    pub(crate) topic: &'a str,
    pub(crate) count: usize,
}

impl InternalEvent for RecordsProduced<'_> {
    fn emit(self) {
        if let Some(records) = RECORDS.as_ref() {
            records
                .with_label_values(&[self.topic])
                .inc_by(self.count as u64);
        }
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
        if let Some(dead_letters) = DEAD_LETTERS.as_ref() {
            dead_letters
                .with_label_values(&[self.endpoint.label()])
                .inc();
        }
    }
}

pub(crate) fn checkpoint_lag(dataset: &str, seconds: f64) {
    if let Some(checkpoint_lag) = CHECKPOINT_LAG.as_ref() {
        checkpoint_lag.with_label_values(&[dataset]).set(seconds);
    }
}

pub(crate) fn backfill_progress(done: usize, total: usize) {
    if let Some(markets_total) = MARKETS_TOTAL.as_ref() {
        markets_total.set(i64::try_from(total).unwrap_or(i64::MAX));
    }
    if let Some(markets_done) = MARKETS_DONE.as_ref() {
        markets_done.set(i64::try_from(done).unwrap_or(i64::MAX));
    }
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
        if let Some(late_fills) = LATE_FILLS.as_ref() {
            late_fills.inc_by(self.lateness_s.len() as u64);
        }
        if let Some(late_fill_lateness) = LATE_FILL_LATENESS.as_ref() {
            for lateness in self.lateness_s {
                late_fill_lateness.observe(*lateness);
            }
        }
    }
}

pub(crate) fn reconcile_ledger(fills: usize) {
    if let Some(reconcile_ledger) = RECONCILE_LEDGER.as_ref() {
        reconcile_ledger.set(i64::try_from(fills).unwrap_or(i64::MAX));
    }
}

pub(crate) fn reconcile_ledger_written(entries: usize) {
    if let Some(writes) = RECONCILE_LEDGER_WRITES.as_ref() {
        writes.inc_by(entries as u64);
    }
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
        if let Some(upstream_gaps) = UPSTREAM_GAPS.as_ref() {
            upstream_gaps.with_label_values(&[self.reason]).inc();
        }
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
        if let Some(duplicates) = LEADERBOARD_DUPLICATES.as_ref() {
            duplicates.inc_by(self.duplicates);
        }
        if let Some(missing_ranks) = LEADERBOARD_MISSING_RANKS.as_ref() {
            missing_ranks.inc_by(self.missing_ranks);
        }
    }
}
