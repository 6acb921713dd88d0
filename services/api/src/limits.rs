//! Per-key limits: a rate of the key's rps with a burst of one second's worth (governor's GCRA,
//! on the API's injectable clock) and a cap on requests per UTC day; and usage accounting per
//! key per day.
//!
//! Several replicas: each replica runs its own buckets, so behind a load balancer spreading a
//! key's requests over N replicas the key can reach up to N × rps. The daily cap is shared
//! through ClickHouse: every refresh interval a replica writes its new usage to `api_usage` and
//! reads today's total of every replica, so a key can exceed its cap by at most what the other
//! replicas accepted within one refresh interval.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use governor::{
    Quota, RateLimiter,
    clock::Clock as _,
    middleware::StateInformationMiddleware,
    state::{InMemoryState, NotKeyed},
};

use polytape_clickhouse::rows::UsageRow;

use crate::{
    clock::{Clock, MS_PER_DAY, ms_until_next_utc_midnight, utc_day},
    error::ApiError,
    keys::AuthenticatedKey,
    store::Store,
};

/// What the `X-RateLimit-*` headers say after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateInfo {
    pub daily_cap: u64,
    pub daily_remaining: u64,
    /// Unix seconds of the next UTC midnight, when the daily count resets.
    pub reset_epoch_s: i64,
    pub rps: u32,
    pub burst_remaining: u64,
}

/// governor's view of the API's clock (injectable: tests cross a UTC midnight): epoch
/// milliseconds as a `Duration`.
#[derive(Clone)]
struct BucketClock(Arc<dyn Clock>);

impl governor::clock::Clock for BucketClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.now_ms()).unwrap_or(0))
    }
}

/// One key's rate: `rps` a second, a burst of one second's worth.
struct Bucket {
    rps: u32,
    limiter: RateLimiter<NotKeyed, InMemoryState, BucketClock, StateInformationMiddleware>,
    /// Requests the burst had left after the key's last decision (the headers say it).
    remaining: u64,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Bucket")
            .field("rps", &self.rps)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl Bucket {
    fn new(rps: u32, clock: BucketClock) -> Self {
        let rate = NonZeroU32::new(rps).unwrap_or(NonZeroU32::MIN);
        Self {
            rps,
            limiter: RateLimiter::direct_with_clock(Quota::per_second(rate), clock)
                .with_middleware::<StateInformationMiddleware>(),
            remaining: u64::from(rate.get()),
        }
    }

    /// Takes one request's cell, or says how long until one is free.
    fn take(&mut self) -> Result<(), Duration> {
        match self.limiter.check() {
            Ok(snapshot) => {
                self.remaining = u64::from(snapshot.remaining_burst_capacity());
                Ok(())
            }
            Err(not_until) => {
                self.remaining = 0;
                Err(not_until.wait_time_from(self.limiter.clock().now()))
            }
        }
    }
}

#[derive(Debug, Default)]
struct KeyState {
    /// Made at the key's first request, again when its rps changes.
    bucket: Option<Bucket>,
    day: i64,
    /// Accepted by this replica today, flushed or not.
    own_accepted_today: u64,
    /// Of those, already written to `api_usage`.
    own_flushed_today: u64,
    /// Accepted today by the other replicas, as last read from `api_usage`.
    others_today: u64,
}

/// Usage not yet written, per (key prefix, UTC day).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PendingUsage {
    pub requests: u64,
    pub rejected: u64,
}

#[derive(Debug, Default)]
struct LimiterState {
    keys: HashMap<String, KeyState>,
    pending: HashMap<(String, i64), PendingUsage>,
}

/// The limits of every key on this replica.
#[derive(Debug)]
pub struct Limiter {
    clock: Arc<dyn Clock>,
    state: Mutex<LimiterState>,
}

impl Limiter {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            state: Mutex::new(LimiterState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimiterState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits or refuses one request of `key`, counting it either way.
    pub fn admit(&self, key: &AuthenticatedKey) -> Result<RateInfo, (ApiError, RateInfo)> {
        let now_ms = self.clock.now_ms();
        let today = utc_day(now_ms);
        let mut guard = self.lock();
        let LimiterState { keys, pending } = &mut *guard;
        let state = keys.entry(key.prefix.clone()).or_insert_with(|| KeyState {
            day: today,
            ..KeyState::default()
        });
        if state.day != today {
            // A new UTC day: the daily count starts again.
            state.day = today;
            state.own_accepted_today = 0;
            state.own_flushed_today = 0;
            state.others_today = 0;
        }
        if state
            .bucket
            .as_ref()
            .is_some_and(|bucket| bucket.rps != key.rps)
        {
            state.bucket = None;
        }
        let bucket = state
            .bucket
            .get_or_insert_with(|| Bucket::new(key.rps, BucketClock(self.clock.clone())));

        let used = state.others_today + state.own_accepted_today;
        let reset_epoch_s = (today + 1) * (MS_PER_DAY / 1000);
        let usage = pending.entry((key.prefix.clone(), today)).or_default();
        let info = |used: u64, burst_remaining: u64| RateInfo {
            daily_cap: key.daily_cap,
            daily_remaining: key.daily_cap.saturating_sub(used),
            reset_epoch_s,
            rps: key.rps,
            burst_remaining,
        };
        if used >= key.daily_cap {
            usage.rejected += 1;
            let retry_after_s = ceil_seconds(ms_until_next_utc_midnight(now_ms));
            return Err((
                ApiError::DailyCapExceeded {
                    daily_cap: key.daily_cap,
                    retry_after_s,
                },
                info(used, bucket.remaining),
            ));
        }
        if let Err(wait) = bucket.take() {
            usage.rejected += 1;
            let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
            return Err((
                ApiError::RateLimited {
                    rps: key.rps,
                    retry_after_s: ceil_seconds(wait_ms).max(1),
                },
                info(used, bucket.remaining),
            ));
        }
        state.own_accepted_today += 1;
        usage.requests += 1;
        Ok(info(used + 1, bucket.remaining))
    }

    /// Takes the usage not yet written.
    fn take_pending(&self) -> HashMap<(String, i64), PendingUsage> {
        let mut state = self.lock();
        let pending = std::mem::take(&mut state.pending);
        pending
            .into_iter()
            .filter(|(_, usage)| usage.requests > 0 || usage.rejected > 0)
            .collect()
    }

    /// Puts usage back after a failed write, so it is written next time.
    fn restore_pending(&self, usage: HashMap<(String, i64), PendingUsage>) {
        let mut state = self.lock();
        for (key, counts) in usage {
            let entry = state.pending.entry(key).or_default();
            entry.requests += counts.requests;
            entry.rejected += counts.rejected;
        }
    }

    /// Writes pending usage to `api_usage`.
    pub async fn flush_usage(&self, store: &Store) -> Result<(), clickhouse::error::Error> {
        let pending = self.take_pending();
        if pending.is_empty() {
            return Ok(());
        }
        let rows: Vec<UsageRow> = pending
            .iter()
            .map(|((key_prefix, day), usage)| UsageRow {
                key_prefix: key_prefix.clone(),
                day: u16::try_from(*day).unwrap_or(u16::MAX),
                requests: usage.requests,
                rejected: usage.rejected,
            })
            .collect();
        match store.write_usage(&rows).await {
            Ok(()) => {
                let mut state = self.lock();
                for ((key_prefix, day), usage) in &pending {
                    if let Some(key) = state.keys.get_mut(key_prefix)
                        && key.day == *day
                    {
                        key.own_flushed_today += usage.requests;
                    }
                }
                Ok(())
            }
            Err(error) => {
                self.restore_pending(pending);
                Err(error)
            }
        }
    }

    /// Reads today's totals of every replica from `api_usage` (call right after
    /// [`Limiter::flush_usage`], so this replica's own share in them is exactly what it flushed).
    pub async fn read_shared_usage(&self, store: &Store) -> Result<(), clickhouse::error::Error> {
        let today = utc_day(self.clock.now_ms());
        let totals = store
            .requests_on(&crate::clock::utc_date_text(today))
            .await?;
        let mut state = self.lock();
        for total in totals {
            let key = state
                .keys
                .entry(total.key_prefix)
                .or_insert_with(|| KeyState {
                    day: today,
                    ..KeyState::default()
                });
            if key.day != today {
                // No request yet today on this replica: start its day here, so the other
                // replicas' share counts from the first request on.
                key.day = today;
                key.own_accepted_today = 0;
                key.own_flushed_today = 0;
            }
            key.others_today = total.requests.saturating_sub(key.own_flushed_today);
        }
        Ok(())
    }
}

fn ceil_seconds(ms: i64) -> u64 {
    u64::try_from((ms.max(0) + 999) / 1000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn key(rps: u32, daily_cap: u64) -> AuthenticatedKey {
        AuthenticatedKey {
            prefix: "pt_000000000000".to_owned(),
            rps,
            daily_cap,
        }
    }

    #[test]
    fn a_burst_beyond_the_bucket_is_refused_until_it_refills() {
        let clock = ManualClock::new(1_000_000);
        let limiter = Limiter::new(Arc::new(clock.clone()));
        let key = key(5, 1_000);
        for _ in 0..5 {
            assert!(limiter.admit(&key).is_ok());
        }
        let (error, info) = limiter.admit(&key).err().unwrap_or_else(|| unreachable!());
        assert!(matches!(
            error,
            ApiError::RateLimited {
                retry_after_s: 1,
                ..
            }
        ));
        assert_eq!(info.burst_remaining, 0);
        clock.advance_ms(200);
        assert!(limiter.admit(&key).is_ok(), "one token back after 1/rps");
    }

    #[test]
    fn the_daily_cap_resets_at_utc_midnight() {
        let midnight = 20_000 * MS_PER_DAY;
        let clock = ManualClock::new(midnight - 10_000);
        let limiter = Limiter::new(Arc::new(clock.clone()));
        let key = key(1_000, 3);
        for _ in 0..3 {
            assert!(limiter.admit(&key).is_ok());
        }
        let (error, _) = limiter.admit(&key).err().unwrap_or_else(|| unreachable!());
        assert!(matches!(
            error,
            ApiError::DailyCapExceeded {
                retry_after_s: 10,
                ..
            }
        ));
        clock.set_ms(midnight);
        let info = limiter.admit(&key).ok().unwrap_or_else(|| unreachable!());
        assert_eq!(info.daily_remaining, 2);
    }
}
