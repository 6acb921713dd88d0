//! Counters of everything the simulator did to its clients, for `GET /_sim/stats`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct EndpointStats {
    pub(crate) requests: u64,
    /// Requests delayed by the sliding-window budget (v1 endpoints, Cloudflare-style).
    pub(crate) throttled: u64,
    /// Total delay added by throttling, in milliseconds.
    pub(crate) throttled_delay_ms: u64,
    /// Requests answered 429 + Retry-After (v2 endpoints).
    pub(crate) rejected_429: u64,
    /// Requests repeated (same path and query) before the `Retry-After` an injected 429 or
    /// 503 gave them had passed.
    pub(crate) retried_early: u64,
    /// Injected faults by kind.
    pub(crate) faults: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct WsStats {
    pub(crate) connections: u64,
    pub(crate) open_connections: u64,
    pub(crate) frames_sent: u64,
    pub(crate) events_sent: u64,
    pub(crate) pongs_sent: u64,
    pub(crate) subscriptions_refused: u64,
    pub(crate) invalid_messages: u64,
    /// Connections closed because the client fell too far behind the live feed.
    pub(crate) lagged_disconnects: u64,
    pub(crate) faults: BTreeMap<&'static str, u64>,
    /// Every garbage frame sent (`ws_garbage`), each unique: the bad input a client must
    /// dead-letter, once each.
    pub(crate) garbage_frames: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
struct StatsInner {
    endpoints: BTreeMap<String, EndpointStats>,
    ws: WsStats,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    inner: Mutex<StatsInner>,
    /// Requests (path and query) told to retry after an instant, until they come back.
    retry_gates: Mutex<HashMap<String, Instant>>,
}

impl Stats {
    pub(crate) fn endpoint(&self, key: &str, update: impl FnOnce(&mut EndpointStats)) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        update(inner.endpoints.entry(key.to_owned()).or_default());
    }

    /// `request` (path and query) was told not to come back before `not_before`.
    pub(crate) fn gate_retry(&self, request: &str, not_before: Instant) {
        self.retry_gates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(request.to_owned(), not_before);
    }

    /// Counts `request` as retried early if it comes back before its gate; a request that
    /// comes back opens its gate.
    pub(crate) fn pass_retry_gate(&self, endpoint: &str, request: &str, now: Instant) {
        let gate = self
            .retry_gates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(request);
        if gate.is_some_and(|not_before| now < not_before) {
            self.endpoint(endpoint, |stats| stats.retried_early += 1);
        }
    }

    pub(crate) fn ws(&self, update: impl FnOnce(&mut WsStats)) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        update(&mut inner.ws);
    }

    pub(crate) fn snapshot(&self) -> serde_json::Value {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut totals = EndpointStats::default();
        for stats in inner.endpoints.values() {
            totals.requests += stats.requests;
            totals.throttled += stats.throttled;
            totals.throttled_delay_ms += stats.throttled_delay_ms;
            totals.rejected_429 += stats.rejected_429;
            totals.retried_early += stats.retried_early;
            for (kind, count) in &stats.faults {
                *totals.faults.entry(kind).or_default() += count;
            }
        }
        serde_json::json!({
            "endpoints": inner.endpoints,
            "totals": totals,
            "ws": inner.ws,
        })
    }

    pub(crate) fn reset(&self) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let open = inner.ws.open_connections;
        *inner = StatsInner::default();
        inner.ws.open_connections = open;
    }
}
