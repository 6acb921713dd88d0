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

pub const MS_PER_DAY: i64 = 86_400_000;

/// The UTC day number (days since 1970-01-01) of a time.
pub fn utc_day(now_ms: i64) -> i64 {
    now_ms.div_euclid(MS_PER_DAY)
}

/// Milliseconds until the next UTC midnight.
pub fn ms_until_next_utc_midnight(now_ms: i64) -> i64 {
    (utc_day(now_ms) + 1) * MS_PER_DAY - now_ms
}

/// `YYYY-MM-DD` of a day number (civil-from-days, proleptic Gregorian).
pub fn day_text(days_since_epoch: i64) -> String {
    let z = days_since_epoch + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a UTC millisecond time.
pub fn day_text_from_ms(ms: i64) -> String {
    let day = ms.div_euclid(86_400_000);
    let seconds = ms.rem_euclid(86_400_000) / 1000;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        day_text(day),
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_print_as_dates() {
        assert_eq!(day_text(0), "1970-01-01");
        assert_eq!(day_text(19_675), "2023-11-14");
        assert_eq!(day_text(20_454), "2026-01-01");
        assert_eq!(day_text_from_ms(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }
}
