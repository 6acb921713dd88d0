//! One token bucket per upstream endpoint, sized to Polymarket's published budgets.
//!
//! Upstream enforces sliding windows per IP (Cloudflare): `N` requests per `W` (10 s). A bucket
//! with burst `B` and refill rate `r` lets through at most `B + r·W` requests in any window
//! of length `W`, so we pick `B + r·W = margin·N` with a small burst: sustained use is close
//! to the budget and no window ever exceeds it, so upstream never has to throttle us.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::Arc,
    time::{Duration, Instant},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter, clock::Clock as _};

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

/// A bucket's shape: a burst and a steady rate.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pace {
    burst: u32,
    per_second: f64,
}

impl Pace {
    /// Keeps every sliding `window` at or under `margin × budget` requests: burst + rate ×
    /// window = that allowance.
    fn for_budget(budget: u32, window: Duration, margin: f64) -> Self {
        let allowed = (f64::from(budget) * margin).max(1.0);
        // A 2 % burst smooths scheduling jitter without letting a window overshoot.
        let burst = (allowed * 0.02).floor().max(1.0);
        let per_second = ((allowed - burst).max(1.0)) / window.as_secs_f64().max(0.001);
        // The burst is at most 2 % of a u32 budget: it fits.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let burst = burst as u32;
        Self { burst, per_second }
    }

    /// The GCRA quota of this pace: one request per `1 / per_second`, `burst` at once.
    fn quota(self) -> Quota {
        let period = Duration::from_secs_f64(1.0 / self.per_second).max(Duration::from_nanos(1));
        Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN))
    }
}

/// One endpoint's bucket (governor's GCRA, which lets through at most burst + rate × W
/// requests in any window W, like a token bucket). A fresh bucket holds only its burst: a
/// restart right after a busy window must not add a full window's worth on top of it.
pub struct TokenBucket {
    pace: Pace,
    limiter: DefaultDirectRateLimiter,
}

impl std::fmt::Debug for TokenBucket {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TokenBucket")
            .field("pace", &self.pace)
            .finish_non_exhaustive()
    }
}

impl TokenBucket {
    /// A bucket that keeps every sliding `window` at or under `margin × budget` requests.
    pub fn for_budget(budget: u32, window: Duration, margin: f64) -> Self {
        let pace = Pace::for_budget(budget, window, margin);
        Self {
            pace,
            limiter: RateLimiter::direct(pace.quota()),
        }
    }

    /// Sustained requests per second this bucket allows.
    pub fn rate(&self) -> f64 {
        self.pace.per_second
    }

    /// Waits for a token; returns how long it waited.
    pub async fn acquire(&self) -> Duration {
        let started = Instant::now();
        loop {
            match self.limiter.check() {
                Ok(()) => return started.elapsed(),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.limiter.clock().now());
                    tokio::time::sleep(wait.max(Duration::from_micros(1))).await;
                }
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
    use governor::clock::FakeRelativeClock;

    use super::*;

    /// Over any window, burst + refill never exceeds margin × budget.
    #[test]
    fn no_window_exceeds_the_margin() {
        for endpoint in Endpoint::ALL {
            let budget = endpoint.published_budget();
            let pace = Pace::for_budget(budget, Duration::from_secs(10), 0.97);
            let worst = f64::from(pace.burst) + pace.per_second * 10.0;
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

    /// On a simulated clock, a 200/10 s budget at 0.97 grants its burst and then its rate:
    /// 194 in the first 10 s, never more.
    #[test]
    fn a_bucket_paces_to_its_rate() {
        let pace = Pace::for_budget(200, Duration::from_secs(10), 0.97);
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::direct_with_clock(pace.quota(), clock.clone());
        let end = Duration::from_secs(10);
        let mut granted = 0;
        let mut elapsed = Duration::ZERO;
        while elapsed < end {
            match limiter.check() {
                Ok(()) => granted += 1,
                Err(not_until) => {
                    let wait = not_until.wait_time_from(clock.now());
                    assert!(wait > Duration::ZERO, "a refusal names a wait");
                    clock.advance(wait);
                    elapsed += wait;
                }
            }
        }
        assert!((185..=195).contains(&granted), "{granted}");
        assert!(
            f64::from(granted) <= f64::from(pace.burst) + pace.per_second * 10.0 + 1.0,
            "{granted}"
        );
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
