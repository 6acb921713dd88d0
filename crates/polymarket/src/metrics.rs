//! The upstream client's metrics, the same in every service that calls Polymarket.

use std::sync::LazyLock;

use polytape_runtime::metrics::{InternalEvent, counter_vec, define};
use prometheus::{CounterVec, GaugeVec, IntCounterVec, Opts};

use crate::budget::Endpoint;

static REQUESTS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_upstream_requests_total",
        "Upstream requests by endpoint and HTTP status (status \"error\" = no response)",
        &["endpoint", "status"],
    )
});
static RATE_LIMITED: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "polytape_upstream_rate_limited_total",
        "Upstream 429 responses (throttling our budgets should never trigger)",
        &["endpoint"],
    )
});
static BUDGET_WAIT: LazyLock<Option<CounterVec>> = LazyLock::new(|| {
    let name = "polytape_upstream_budget_wait_seconds_total";
    define(
        name,
        CounterVec::new(
            Opts::new(name, "Seconds spent waiting on the endpoint's token bucket"),
            &["endpoint"],
        ),
    )
});
static BUDGET_RATE: LazyLock<Option<GaugeVec>> = LazyLock::new(|| {
    let name = "polytape_upstream_budget_requests_per_second";
    define(
        name,
        GaugeVec::new(
            Opts::new(
                name,
                "Sustained request rate the endpoint's token bucket allows; utilisation = rate(requests_total) / this",
            ),
            &["endpoint"],
        ),
    )
});

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
        if let Some(requests) = REQUESTS.as_ref() {
            requests
                .with_label_values(&[self.endpoint.label(), &status])
                .inc();
        }
        if self.status == Some(429) {
            tracing::warn!(
                endpoint = self.endpoint.label(),
                "upstream rate limited us (429)"
            );
            if let Some(rate_limited) = RATE_LIMITED.as_ref() {
                rate_limited
                    .with_label_values(&[self.endpoint.label()])
                    .inc();
            }
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
        if let Some(budget_wait) = BUDGET_WAIT.as_ref() {
            budget_wait
                .with_label_values(&[self.endpoint.label()])
                .inc_by(self.seconds);
        }
    }
}

/// Publishes the configured bucket rate (for utilisation dashboards).
pub(crate) fn budget_rate(endpoint: Endpoint, per_second: f64) {
    if let Some(budget_rate) = BUDGET_RATE.as_ref() {
        budget_rate
            .with_label_values(&[endpoint.label()])
            .set(per_second);
    }
}
