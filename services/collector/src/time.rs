//! Upstream date-times to UTC milliseconds. Gamma writes RFC 3339 with and without fractions
//! (`2025-12-30T17:10:15.861305Z`), bare dates (`2025-12-31`) and Postgres-style text
//! (`2026-05-01 12:00:00+00`); the workspace has no date crate, and these few shapes are all
//! we need.

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn digits(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses an upstream date or date-time into UTC milliseconds; `None` when it is not one.
pub fn parse_datetime_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, rest) = match text.find(['T', 't', ' ']) {
        Some(split) => (&text[..split], &text[split + 1..]),
        None => (text, ""),
    };
    let mut date_parts = date.split('-');
    let year = digits(date_parts.next()?)?;
    let month = digits(date_parts.next()?)?;
    let day = digits(date_parts.next()?)?;
    if date_parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut millis = days_from_civil(year, month, day) * 86_400_000;
    if rest.is_empty() {
        return Some(millis);
    }
    // Split the clock from the offset: `Z`, `+HH`, `+HH:MM`, `+HHMM` or `-…`.
    let (clock, offset_minutes) = if let Some(clock) = rest.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else if let Some(sign_at) = rest.rfind(['+', '-']) {
        let sign = if rest.as_bytes()[sign_at] == b'-' {
            -1
        } else {
            1
        };
        let offset = rest[sign_at + 1..].replace(':', "");
        let (hours, minutes) = match offset.len() {
            2 => (digits(&offset)?, 0),
            4 => (digits(&offset[..2])?, digits(&offset[2..])?),
            _ => return None,
        };
        (&rest[..sign_at], sign * (hours * 60 + minutes))
    } else {
        (rest, 0)
    };
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, fraction)) => (hms, Some(fraction)),
        None => (clock, None),
    };
    let mut clock_parts = hms.split(':');
    let hour = digits(clock_parts.next()?)?;
    let minute = digits(clock_parts.next()?)?;
    let second = match clock_parts.next() {
        Some(second) => digits(second)?,
        None => 0,
    };
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    millis += ((hour * 60 + minute - offset_minutes) * 60 + second) * 1000;
    if let Some(fraction) = fraction {
        let padded: String = fraction.chars().chain("000".chars()).take(3).collect();
        millis += digits(&padded)?;
    }
    Some(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_shapes() {
        let cases = [
            ("2025-12-31T17:15:00Z", Some(1_767_201_300_000)),
            ("2025-12-30T17:10:15.861305Z", Some(1_767_114_615_861)),
            ("2025-12-31", Some(1_767_139_200_000)),
            ("2026-05-01 12:00:00+00", Some(1_777_636_800_000)),
            ("2026-05-01T14:00:00+02:00", Some(1_777_636_800_000)),
            ("1970-01-01T00:00:00Z", Some(0)),
            ("", None),
            ("not a date", None),
            ("2025-13-01", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_datetime_ms(text), expected, "{text}");
        }
    }
}
