//! Upstream's per-endpoint sliding-window rate budgets (Cloudflare, per IP; every client of
//! the simulator counts as one IP).
//!
//! Over budget, v1 endpoints are throttled: the request is queued until the window has room,
//! like Cloudflare does upstream. Data API v2 endpoints answer 429 with `Retry-After` instead.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The budgets (limit per window) that apply to an endpoint key, most specific first.
pub(crate) fn budgets_for(endpoint: &str) -> Vec<(&'static str, u32)> {
    let mut budgets: Vec<(&'static str, u32)> = Vec::new();
    let specific: Option<(&'static str, u32)> = match endpoint {
        "/gamma/markets"
        | "/gamma/markets/keyset"
        | "/gamma/markets/{id}"
        | "/gamma/markets/slug/{slug}" => Some(("gamma /markets", 300)),
        "/gamma/events"
        | "/gamma/events/keyset"
        | "/gamma/events/{id}"
        | "/gamma/events/slug/{slug}" => Some(("gamma /events", 500)),
        "/data/trades" => Some(("data /trades", 200)),
        "/data/v2/trades" => Some(("data /v2/trades", 300)),
        "/data/positions" => Some(("data /positions", 150)),
        "/clob/book" => Some(("clob /book", 1_500)),
        "/clob/books" => Some(("clob /books", 500)),
        "/clob/price" => Some(("clob /price", 1_500)),
        "/clob/prices" => Some(("clob /prices", 500)),
        "/clob/midpoint" => Some(("clob /midpoint", 1_500)),
        "/clob/midpoints" => Some(("clob /midpoints", 500)),
        "/clob/prices-history" => Some(("clob /prices-history", 1_000)),
        "/clob/tick-size" => Some(("clob /tick-size", 200)),
        _ => None,
    };
    budgets.extend(specific);
    if endpoint.starts_with("/gamma/") {
        budgets.push(("gamma general", 4_000));
    } else if endpoint.starts_with("/data/v2/") {
        budgets.push(("data v2 general", 800));
    } else if endpoint.starts_with("/data/") {
        budgets.push(("data general", 1_000));
    } else if endpoint.starts_with("/clob/") {
        budgets.push(("clob general", 9_000));
    }
    budgets.push(("all general", 15_000));
    budgets
}

/// Whether over-budget requests are rejected (429) rather than delayed.
pub(crate) fn rejects_when_over_budget(endpoint: &str) -> bool {
    endpoint.starts_with("/data/v2/")
}

/// What the budget decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BudgetDecision {
    Proceed,
    /// Wait this long, then proceed.
    Throttle(Duration),
    /// Answer 429 with this Retry-After.
    Reject(Duration),
}

#[derive(Debug)]
pub(crate) struct Budgets {
    window: Duration,
    /// Per bucket: admission times (some in the future for queued requests), sorted.
    buckets: Mutex<HashMap<&'static str, VecDeque<Instant>>>,
}

impl Budgets {
    pub(crate) fn new(window: Duration) -> Budgets {
        Budgets {
            window,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn admit(&self, endpoint: &str, now: Instant) -> BudgetDecision {
        let budgets = budgets_for(endpoint);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut earliest = now;
        for (name, limit) in &budgets {
            let log = buckets.entry(name).or_default();
            while log
                .front()
                .is_some_and(|admitted| *admitted + self.window <= now)
            {
                log.pop_front();
            }
            let limit = *limit as usize;
            if log.len() >= limit {
                // Room opens when enough admissions leave the window.
                let blocking = log[log.len() - limit];
                earliest = earliest.max(blocking + self.window);
            }
        }
        if earliest > now && rejects_when_over_budget(endpoint) {
            return BudgetDecision::Reject(earliest - now);
        }
        for (name, _) in &budgets {
            let log = buckets.entry(name).or_default();
            let position = log.partition_point(|admitted| *admitted <= earliest);
            log.insert(position, earliest);
        }
        if earliest > now {
            BudgetDecision::Throttle(earliest - now)
        } else {
            BudgetDecision::Proceed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_queues_and_v2_rejects_past_the_limit() {
        let budgets = Budgets::new(Duration::from_secs(10));
        let now = Instant::now();
        for _ in 0..200 {
            assert_eq!(budgets.admit("/data/trades", now), BudgetDecision::Proceed);
        }
        assert!(
            matches!(budgets.admit("/data/trades", now), BudgetDecision::Throttle(delay) if delay == Duration::from_secs(10))
        );
        for _ in 0..300 {
            assert_eq!(
                budgets.admit("/data/v2/trades", now),
                BudgetDecision::Proceed
            );
        }
        assert!(matches!(
            budgets.admit("/data/v2/trades", now),
            BudgetDecision::Reject(_)
        ));
        let later = now + Duration::from_secs(11);
        assert_eq!(
            budgets.admit("/data/v2/trades", later),
            BudgetDecision::Proceed
        );
    }
}
