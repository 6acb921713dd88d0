//! Time for rate limits and expiry, injectable so tests can cross a UTC midnight without
//! waiting for one.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

/// Milliseconds since the Unix epoch, UTC.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        polytape_model::now_ms()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now_ms: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        Self {
            now_ms: Arc::new(AtomicI64::new(start_ms)),
        }
    }

    pub fn set_ms(&self, now_ms: i64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance_ms(&self, by_ms: i64) {
        self.now_ms.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

pub use polytape_model::time::{MS_PER_DAY, utc_date_text, utc_day, utc_seconds_text};

/// Milliseconds until the next UTC midnight.
pub fn ms_until_next_utc_midnight(now_ms: i64) -> i64 {
    (utc_day(now_ms) + 1) * MS_PER_DAY - now_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_midnight_is_never_now() {
        assert_eq!(ms_until_next_utc_midnight(0), MS_PER_DAY);
        assert_eq!(ms_until_next_utc_midnight(MS_PER_DAY - 1), 1);
        assert_eq!(ms_until_next_utc_midnight(1_700_000_000_000), 6_400_000);
    }
}
