//! One token bucket per upstream endpoint, sized to Polymarket's published budgets.
//!
//! Upstream enforces sliding windows per IP (Cloudflare): `N` requests per `W` (10 s). A bucket
//! with burst `B` and refill rate `r` lets through at most `B + r·W` requests in any window
//! of length `W`, so we pick `B + r·W = margin·N` with a small burst: sustained use is close
//! to the budget and no window ever exceeds it, so upstream never has to throttle us.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The upstream endpoints Polytape calls, each with its own budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// Gamma `/markets` and `/markets/keyset`: 300 per 10 s.
    GammaMarkets,
    /// Gamma `/events` and `/events/keyset`: 500 per 10 s.
    GammaEvents,
    /// Data API v1 `/trades`: 200 per 10 s.
    DataTrades,
    /// Data API v2 `/v2/trades`: 300 per 10 s.
    DataTradesV2,
    /// Data API `/v1/leaderboard` (Data general: 1,000 per 10 s).
    DataLeaderboard,
    /// CLOB `/markets` cursor walk (CLOB general: 9,000 per 10 s).
    ClobMarkets,
    /// CLOB `/prices-history`: 1,000 per 10 s.
    ClobPricesHistory,
    /// CLOB `POST /books`: 500 per 10 s.
    ClobBooks,
    /// CLOB `GET /book` (one token): 1,500 per 10 s.
    ClobBook,
}

impl Endpoint {
    pub const ALL: [Endpoint; 9] = [
        Endpoint::GammaMarkets,
        Endpoint::GammaEvents,
        Endpoint::DataTrades,
        Endpoint::DataTradesV2,
        Endpoint::DataLeaderboard,
        Endpoint::ClobMarkets,
        Endpoint::ClobPricesHistory,
        Endpoint::ClobBooks,
        Endpoint::ClobBook,
    ];

    /// Requests allowed per 10 s window (polymarket-api brief, section 1).
    pub fn published_budget(self) -> u32 {
        match self {
            Endpoint::GammaMarkets => 300,
            Endpoint::GammaEvents => 500,
            Endpoint::DataTrades => 200,
            Endpoint::DataTradesV2 => 300,
            Endpoint::DataLeaderboard => 1_000,
            Endpoint::ClobMarkets => 9_000,
            Endpoint::ClobPricesHistory => 1_000,
            Endpoint::ClobBooks => 500,
            Endpoint::ClobBook => 1_500,
        }
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::GammaMarkets => "gamma_markets",
            Endpoint::GammaEvents => "gamma_events",
            Endpoint::DataTrades => "data_trades",
            Endpoint::DataTradesV2 => "data_trades_v2",
            Endpoint::DataLeaderboard => "data_leaderboard",
            Endpoint::ClobMarkets => "clob_markets",
            Endpoint::ClobPricesHistory => "clob_prices_history",
            Endpoint::ClobBooks => "clob_books",
            Endpoint::ClobBook => "clob_book",
        }
    }
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    last: Instant,
}

/// A token bucket: `acquire` waits until a token is available.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    state: Mutex<BucketState>,
}

impl TokenBucket {
    /// A bucket that keeps every sliding `window` at or under `margin × budget` requests.
    pub fn for_budget(budget: u32, window: Duration, margin: f64) -> Self {
        let allowed = (f64::from(budget) * margin).max(1.0);
        // A 2 % burst smooths scheduling jitter without letting a window overshoot.
        let capacity = (allowed * 0.02).floor().max(1.0);
        let per_second = ((allowed - capacity).max(1.0)) / window.as_secs_f64().max(0.001);
        Self {
            capacity,
            per_second,
            state: Mutex::new(BucketState {
                // Start empty but for the burst: a restart right after a busy window must not
                // add a full window's worth on top of it.
                tokens: capacity,
                last: Instant::now(),
            }),
        }
    }

    /// Sustained requests per second this bucket allows.
    pub fn rate(&self) -> f64 {
        self.per_second
    }

    /// Takes a token if one is available; otherwise how long until one is.
    fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        let elapsed = now.saturating_duration_since(state.last).as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.per_second).min(self.capacity);
        state.last = now;
        // A hair of tolerance: float refills land at 0.99999999, and a wait below a
        // nanosecond would never advance the clock.
        if state.tokens >= 1.0 - 1e-6 {
            state.tokens = (state.tokens - 1.0).max(0.0);
            Ok(())
        } else {
            let wait = (1.0 - state.tokens) / self.per_second;
            Err(Duration::from_secs_f64(wait).max(Duration::from_micros(1)))
        }
    }

    /// Waits for a token; returns how long it waited.
    pub async fn acquire(&self) -> Duration {
        let started = Instant::now();
        loop {
            match self.try_take(Instant::now()) {
                Ok(()) => return started.elapsed(),
                Err(wait) => tokio::time::sleep(wait.max(Duration::from_millis(1))).await,
            }
        }
    }
}

/// The buckets of every endpoint.
#[derive(Debug, Clone)]
pub struct Budgets {
    buckets: Arc<HashMap<Endpoint, TokenBucket>>,
}

impl Budgets {
    /// Every endpoint at `margin` × its published budget per `window`.
    pub fn new(window: Duration, margin: f64) -> Self {
        Self::with_budgets(window, margin, &[])
    }

    /// Like [`Budgets::new`], with some endpoints given a smaller budget (per `window`): a
    /// service that shares an endpoint with another keeps to its own part of it.
    pub fn with_budgets(window: Duration, margin: f64, budgets: &[(Endpoint, u32)]) -> Self {
        let buckets = Endpoint::ALL
            .into_iter()
            .map(|endpoint| {
                let budget = budgets
                    .iter()
                    .find(|(overridden, _)| *overridden == endpoint)
                    .map_or(endpoint.published_budget(), |(_, budget)| {
                        (*budget).min(endpoint.published_budget())
                    });
                (endpoint, TokenBucket::for_budget(budget, window, margin))
            })
            .collect();
        Self {
            buckets: Arc::new(buckets),
        }
    }

    pub async fn acquire(&self, endpoint: Endpoint) -> Duration {
        match self.buckets.get(&endpoint) {
            Some(bucket) => bucket.acquire().await,
            None => Duration::ZERO,
        }
    }

    pub fn rate(&self, endpoint: Endpoint) -> f64 {
        self.buckets.get(&endpoint).map_or(0.0, TokenBucket::rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over any window, burst + refill never exceeds margin × budget.
    #[test]
    fn no_window_exceeds_the_margin() {
        for endpoint in Endpoint::ALL {
            let budget = endpoint.published_budget();
            let bucket = TokenBucket::for_budget(budget, Duration::from_secs(10), 0.97);
            let worst = bucket.capacity + bucket.per_second * 10.0;
            assert!(
                worst <= f64::from(budget) * 0.97 + 1e-9,
                "{endpoint:?}: {worst}"
            );
            assert!(
                worst >= f64::from(budget) * 0.95,
                "{endpoint:?} wastes budget: {worst}"
            );
        }
    }

    #[test]
    fn a_bucket_paces_to_its_rate() {
        let bucket = TokenBucket::for_budget(200, Duration::from_secs(10), 0.97);
        let start = Instant::now();
        let end = start + Duration::from_secs(10);
        let mut granted = 0;
        let mut now = start;
        for _ in 0..100_000 {
            if now >= end {
                break;
            }
            match bucket.try_take(now) {
                Ok(()) => granted += 1,
                Err(wait) => now += wait,
            }
        }
        assert!(
            now >= end,
            "simulated clock stuck at {:?} after {granted} grants: {:?}",
            now - start,
            bucket.state
        );
        assert!((185..=194).contains(&granted), "{granted}");
    }

    #[tokio::test]
    async fn acquire_waits_when_empty() {
        let bucket = TokenBucket::for_budget(10, Duration::from_secs(1), 1.0);
        // Burst of 1, then 9 per second.
        assert!(bucket.acquire().await < Duration::from_millis(20));
        let waited = bucket.acquire().await;
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
    }
}
