//! The one place where date/time text becomes UTC milliseconds and back (with `jiff`).
//!
//! Upstream writes RFC 3339 with and without fractions (`2025-12-30T17:10:15.861305Z`), bare
//! dates (`2025-12-31`, midnight UTC), Postgres-style text (`2026-05-01 12:00:00+00`) and, now
//! and then, a date-time with no offset (read as UTC). API clients send RFC 3339.

use jiff::{
    Timestamp,
    civil::{Date, DateTime},
    tz::TimeZone,
};

/// Milliseconds in a UTC day.
pub const MS_PER_DAY: i64 = 86_400_000;

/// Parses a date or date-time into UTC milliseconds; `None` when it is not one. Fractions
/// finer than a millisecond are truncated.
pub fn parse_datetime_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(timestamp) = text.parse::<Timestamp>() {
        return Some(timestamp.as_millisecond());
    }
    let civil = match text.parse::<DateTime>() {
        Ok(date_time) => date_time,
        // A bare date: `DateTime` wants a clock, `Date` does not.
        Err(_) => text
            .parse::<Date>()
            .ok()?
            .to_datetime(jiff::civil::Time::midnight()),
    };
    civil
        .to_zoned(TimeZone::UTC)
        .ok()
        .map(|zoned| zoned.timestamp().as_millisecond())
}

/// The UTC day number (days since 1970-01-01) of a time.
pub fn utc_day(ms: i64) -> i64 {
    ms.div_euclid(MS_PER_DAY)
}

fn utc_datetime(ms: i64) -> Option<DateTime> {
    Timestamp::from_millisecond(ms)
        .ok()
        .map(|timestamp| timestamp.to_zoned(TimeZone::UTC).datetime())
}

/// `YYYY-MM-DD` of a UTC day number (`""` outside jiff's range, years -9999 to 9999).
pub fn utc_date_text(day: i64) -> String {
    day.checked_mul(MS_PER_DAY)
        .and_then(utc_datetime)
        .map_or_else(String::new, |date_time| date_time.date().to_string())
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a UTC millisecond time (`""` outside jiff's range).
pub fn utc_seconds_text(ms: i64) -> String {
    utc_datetime(ms).map_or_else(String::new, |date_time| {
        format!("{}Z", date_time.strftime("%Y-%m-%dT%H:%M:%S"))
    })
}

/// The UTC year and month (1–12) of a day number.
pub fn utc_year_month(day: i64) -> (i64, i64) {
    day.checked_mul(MS_PER_DAY)
        .and_then(utc_datetime)
        .map_or((1970, 1), |date_time| {
            (i64::from(date_time.year()), i64::from(date_time.month()))
        })
}

/// An HTTP `Retry-After` given in seconds (the form Polymarket and most webhook receivers
/// send), capped at 300 s so a bogus value cannot park a caller for hours; `None` for an
/// absent or unparsable value (an HTTP date is not read).
pub fn retry_after(value: Option<&str>) -> Option<std::time::Duration> {
    let seconds: f64 = value?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| std::time::Duration::from_secs_f64(seconds.min(300.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_and_client_shapes() {
        let cases = [
            ("2025-12-31T17:15:00Z", Some(1_767_201_300_000)),
            ("2025-12-30T17:10:15.861305Z", Some(1_767_114_615_861)),
            ("2025-12-31", Some(1_767_139_200_000)),
            ("2026-05-01 12:00:00+00", Some(1_777_636_800_000)),
            ("2026-05-01T14:00:00+02:00", Some(1_777_636_800_000)),
            ("2026-05-01T14:00:00+0200", Some(1_777_636_800_000)),
            ("2026-05-01T12:00:00", Some(1_777_636_800_000)),
            ("2023-11-14T22:13:20.5Z", Some(1_700_000_000_500)),
            ("1970-01-01T00:00:00Z", Some(0)),
            (" 2025-12-31 ", Some(1_767_139_200_000)),
            ("", None),
            ("not a date", None),
            ("2025-13-01", None),
            ("2025-02-30", None),
            ("2025-12-31T25:00:00Z", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_datetime_ms(text), expected, "{text:?}");
        }
    }

    #[test]
    fn days_and_months_print_as_dates() {
        assert_eq!(utc_date_text(0), "1970-01-01");
        assert_eq!(utc_date_text(19_675), "2023-11-14");
        assert_eq!(utc_date_text(20_454), "2026-01-01");
        assert_eq!(utc_date_text(-1), "1969-12-31");
        assert_eq!(utc_seconds_text(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_day(1_700_000_000_000), 19_675);
        assert_eq!(utc_day(-1), -1);
        assert_eq!(utc_year_month(0), (1970, 1));
        assert_eq!(utc_year_month(20_454 - 1), (2025, 12));
        assert_eq!(utc_year_month(20_454 + 59), (2026, 3));
    }
}
