//! The service's metrics and their log lines, emitted together.

use std::sync::LazyLock;

use polytape_runtime::metrics::{InternalEvent, counter, counter_vec, gauge_vec, histogram};
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGaugeVec};

static CONSUMED: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_signals_consumed_total",
        "Input records consumed, per input topic",
        &["topic"],
    )
});
static PRODUCED: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_signals_produced_total",
        "Signal records acknowledged, per kind (window signals count their opening and closing)",
        &["kind"],
    )
});
static DEAD_LETTERS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_signals_dead_letters_total",
        "Inputs sent to the DLQ, per input topic",
        &["topic"],
    )
});
static LATE_BOOK_BATCHES: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    counter(
        "polytape_signals_late_book_batches_total",
        "Batches of book updates applied after their instant was judged (an arbitrage window may have been judged on a partly applied message)",
    )
});
static STATE: LazyLock<Option<IntGaugeVec>> = LazyLock::new(|| {
    gauge_vec(
        "polytape_signals_state",
        "Size of the in-memory state: wallets, markets, held (merge) events, checkpoint bytes",
        &["kind"],
    )
});
static CHECKPOINT_SECONDS: LazyLock<Option<Histogram>> = LazyLock::new(|| {
    histogram(
        "polytape_signals_checkpoint_seconds",
        "Time to write one checkpoint",
        vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
    )
});

/// Input records consumed from one topic.
pub(crate) struct Consumed<'a> {
    pub(crate) topic: &'a str,
}

impl InternalEvent for Consumed<'_> {
    fn emit(self) {
        if let Some(metric) = CONSUMED.as_ref() {
            metric.with_label_values(&[self.topic]).inc();
        }
    }
}

/// A batch's signals and dead letters were acknowledged.
pub(crate) struct BatchSent<'a> {
    pub(crate) signals: &'a [polytape_model::Signal],
    pub(crate) dead_letters: usize,
}

impl InternalEvent for BatchSent<'_> {
    fn emit(self) {
        for signal in self.signals {
            tracing::info!(
                signal_id = %signal.signal_id,
                kind = signal.kind.name(),
                subject = %signal.subject,
                window_start_ms = signal.window_start_ms,
                closed = signal.window_end_ms.is_some(),
                "signal"
            );
            if let Some(metric) = PRODUCED.as_ref() {
                metric.with_label_values(&[signal.kind.name()]).inc();
            }
        }
        if self.dead_letters > 0 {
            tracing::debug!(dead_letters = self.dead_letters, "dead letters sent");
        }
    }
}

/// An input could not be used and went to the DLQ.
pub(crate) struct DeadLettered<'a> {
    pub(crate) topic: &'a str,
    pub(crate) origin: &'a str,
    pub(crate) reason: &'a str,
}

impl InternalEvent for DeadLettered<'_> {
    fn emit(self) {
        tracing::warn!(
            topic = self.topic,
            origin = self.origin,
            reason = self.reason,
            "input dead-lettered"
        );
        if let Some(metric) = DEAD_LETTERS.as_ref() {
            metric.with_label_values(&[self.topic]).inc();
        }
    }
}

/// A send or checkpoint failed and will be tried again.
pub(crate) struct Retried<'a> {
    pub(crate) what: &'static str,
    pub(crate) error: &'a dyn std::fmt::Display,
    pub(crate) retry_in: std::time::Duration,
}

impl InternalEvent for Retried<'_> {
    fn emit(self) {
        tracing::warn!(what = self.what, error = %self.error, retry_in = ?self.retry_in, "retrying");
    }
}

/// A checkpoint was written.
pub(crate) struct CheckpointWritten {
    pub(crate) generation: u64,
    pub(crate) bytes: usize,
    pub(crate) seconds: f64,
    pub(crate) wallets: usize,
    pub(crate) markets: usize,
    pub(crate) held: usize,
}

impl InternalEvent for CheckpointWritten {
    fn emit(self) {
        tracing::debug!(
            generation = self.generation,
            bytes = self.bytes,
            seconds = self.seconds,
            "checkpoint written"
        );
        if let Some(metric) = CHECKPOINT_SECONDS.as_ref() {
            metric.observe(self.seconds);
        }
        if let Some(metric) = STATE.as_ref() {
            for (kind, value) in [
                ("wallets", self.wallets),
                ("markets", self.markets),
                ("held_events", self.held),
                ("checkpoint_bytes", self.bytes),
            ] {
                metric
                    .with_label_values(&[kind])
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
    }
}

static DELIVERIES: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_signals_alert_deliveries_total",
        "Alert deliveries ended, per destination and status (delivered, failed)",
        &["destination", "status"],
    )
});
static DELIVERY_LATENCY: LazyLock<Option<Histogram>> = LazyLock::new(|| {
    histogram(
        "polytape_signals_alert_latency_seconds",
        "From a signal's record to the end of its delivery (test fires excluded)",
        vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 120.0],
    )
});
static RULES: LazyLock<Option<IntGaugeVec>> = LazyLock::new(|| {
    gauge_vec(
        "polytape_signals_alert_rules",
        "Current alert rules, enabled or disabled",
        &["state"],
    )
});

/// An alert delivery ended.
pub(crate) struct AlertDelivered<'a> {
    pub(crate) delivery: &'a polytape_model::alerts::AlertDelivery,
}

impl InternalEvent for AlertDelivered<'_> {
    fn emit(self) {
        let delivery = self.delivery;
        let status = delivery.status.name();
        if delivery.status == polytape_model::alerts::DeliveryStatus::Delivered {
            tracing::info!(
                signal_id = %delivery.signal_id,
                destination = %delivery.destination_id,
                rule_id = %delivery.rule_id,
                attempts = delivery.attempts,
                test = delivery.test,
                "alert delivered"
            );
        } else {
            tracing::warn!(
                signal_id = %delivery.signal_id,
                destination = %delivery.destination_id,
                rule_id = %delivery.rule_id,
                attempts = delivery.attempts,
                error = delivery.error.as_deref().unwrap_or(""),
                test = delivery.test,
                "alert delivery failed"
            );
        }
        if let Some(metric) = DELIVERIES.as_ref() {
            metric
                .with_label_values(&[delivery.destination_id.as_str(), status])
                .inc();
        }
        if !delivery.test
            && let Some(metric) = DELIVERY_LATENCY.as_ref()
        {
            let millis = delivery
                .finished_ms
                .saturating_sub(delivery.signal_recorded_ms);
            metric.observe(millis.max(0) as f64 / 1000.0);
        }
    }
}

/// The alert rules were read.
pub(crate) struct RulesLoaded<'a> {
    pub(crate) rules: &'a [polytape_model::alerts::AlertRule],
}

impl InternalEvent for RulesLoaded<'_> {
    fn emit(self) {
        let enabled = self.rules.iter().filter(|rule| rule.spec.enabled).count();
        tracing::debug!(rules = self.rules.len(), enabled, "alert rules read");
        if let Some(metric) = RULES.as_ref() {
            for (state, count) in [
                ("enabled", enabled),
                ("disabled", self.rules.len() - enabled),
            ] {
                metric
                    .with_label_values(&[state])
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
    }
}

/// Book updates came after their instant was judged.
pub(crate) struct LateBookBatches {
    pub(crate) batches: u64,
}

impl InternalEvent for LateBookBatches {
    fn emit(self) {
        if self.batches == 0 {
            return;
        }
        tracing::warn!(
            batches = self.batches,
            "book updates came after their instant was judged"
        );
        if let Some(metric) = LATE_BOOK_BATCHES.as_ref() {
            metric.inc_by(self.batches);
        }
    }
}
