//! Query-string validation shared by every endpoint: unknown or repeated parameters are
//! refused, each value is checked for type, range and id format, with a message naming it.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The parsed query string of one request.
#[derive(Debug, Default)]
pub struct Params {
    values: Vec<(String, String)>,
}

/// Latest time accepted (year 9999), so arithmetic on times never overflows.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

impl Params {
    /// Parses `raw` and refuses any parameter not in `accepted`, or given twice.
    pub fn parse(raw: Option<&str>, accepted: &[&str]) -> Result<Self, ApiError> {
        let mut values: Vec<(String, String)> = Vec::new();
        for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            if !accepted.contains(&name.as_ref()) {
                return Err(ApiError::UnknownParameter {
                    name: name.into_owned(),
                    accepted: if accepted.is_empty() {
                        "none".to_owned()
                    } else {
                        accepted.join(", ")
                    },
                });
            }
            if values.iter().any(|(seen, _)| *seen == name) {
                return Err(ApiError::invalid(format!(
                    "`{name}` is given more than once"
                )));
            }
            values.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self { values })
    }

    /// The raw value, refusing an empty one.
    pub fn text(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.values.iter().find(|(seen, _)| seen == name) {
            None => Ok(None),
            Some((_, value)) if value.is_empty() => {
                Err(ApiError::invalid(format!("`{name}` must not be empty")))
            }
            Some((_, value)) => Ok(Some(value.as_str())),
        }
    }

    pub fn required<'a>(&'a self, name: &str) -> Result<&'a str, ApiError> {
        self.text(name)?
            .ok_or_else(|| ApiError::invalid(format!("`{name}` is required")))
    }

    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.text(name)? {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ApiError::invalid(format!(
                "`{name}` must be true or false, not {other:?}"
            ))),
        }
    }

    pub fn integer(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(text) = self.text(name)? else {
            return Ok(None);
        };
        let value: i64 = text.parse().map_err(|_| {
            ApiError::invalid(format!("`{name}` must be a whole number, not {text:?}"))
        })?;
        if value < min || value > max {
            return Err(ApiError::invalid(format!(
                "`{name}` must be between {min} and {max}, not {value}"
            )));
        }
        Ok(Some(value))
    }

    /// `limit`: default and maximum per endpoint.
    pub fn limit(&self, default: u32, max: u32) -> Result<u32, ApiError> {
        Ok(self
            .integer("limit", 1, i64::from(max))?
            .and_then(|value| u32::try_from(value).ok())
            .unwrap_or(default))
    }

    pub fn choice<'a>(&self, name: &str, allowed: &[&'a str]) -> Result<Option<&'a str>, ApiError> {
        let Some(text) = self.text(name)? else {
            return Ok(None);
        };
        allowed
            .iter()
            .find(|candidate| **candidate == text)
            .copied()
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "`{name}` must be one of {}, not {text:?}",
                    allowed.join(", ")
                ))
            })
    }

    /// A time: RFC 3339 (`2026-01-31T12:00:00Z` or with an offset, fractions allowed) or epoch ms.
    pub fn time_ms(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let Some(text) = self.text(name)? else {
            return Ok(None);
        };
        parse_time_ms(text)
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "`{name}` must be an RFC 3339 time (e.g. 2026-01-31T12:00:00Z) or epoch milliseconds, not {text:?}"
                ))
            })
    }

    pub fn condition_id(&self, name: &str) -> Result<Option<String>, ApiError> {
        self.text(name)?
            .map(|text| check_condition_id(name, text))
            .transpose()
    }

    pub fn token_id(&self, name: &str) -> Result<Option<String>, ApiError> {
        self.text(name)?
            .map(|text| check_token_id(name, text))
            .transpose()
    }

    pub fn wallet(&self, name: &str) -> Result<Option<String>, ApiError> {
        self.text(name)?
            .map(|text| {
                if text.len() == 42
                    && text.starts_with("0x")
                    && text[2..].bytes().all(|byte| byte.is_ascii_hexdigit())
                {
                    Ok(text.to_ascii_lowercase())
                } else {
                    Err(ApiError::invalid(format!(
                        "`{name}` must be an address: 0x followed by 40 hex digits"
                    )))
                }
            })
            .transpose()
    }

    /// A canonical text of the parameters except those named, for cursor fingerprints.
    pub fn fingerprint(&self, except: &[&str]) -> String {
        let mut pairs: Vec<String> = self
            .values
            .iter()
            .filter(|(name, _)| !except.contains(&name.as_str()))
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        pairs.sort();
        hex::encode(&Sha256::digest(pairs.join("&").as_bytes())[..6])
    }

    /// The fingerprint of the walk's filters (every parameter but `except`) and the `cursor`
    /// given, decoded: a cursor of a walk with other filters is refused.
    pub fn cursor(&self, except: &[&str]) -> Result<(String, Option<Cursor>), ApiError> {
        let fingerprint = self.fingerprint(except);
        let cursor = self
            .text("cursor")?
            .map(|text| Cursor::decode(text, &fingerprint))
            .transpose()?;
        Ok((fingerprint, cursor))
    }
}

/// A time parameter: UTC milliseconds, or a date-time (`model::time`: RFC 3339 with `Z` or an
/// offset, fractions, a bare date as midnight UTC).
pub fn parse_time_ms(text: &str) -> Option<i64> {
    if !text.is_empty() && text.len() <= 15 && text.bytes().all(|byte| byte.is_ascii_digit()) {
        return text.parse::<i64>().ok().filter(|ms| *ms <= MAX_TIME_MS);
    }
    polytape_model::time::parse_datetime_ms(text).filter(|ms| (0..=MAX_TIME_MS).contains(ms))
}

pub fn check_condition_id(name: &str, text: &str) -> Result<String, ApiError> {
    if text.len() == 66
        && text.starts_with("0x")
        && text[2..].bytes().all(|byte| byte.is_ascii_hexdigit())
    {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(ApiError::invalid(format!(
            "`{name}` must be a condition id: 0x followed by 64 hex digits"
        )))
    }
}

pub fn check_token_id(name: &str, text: &str) -> Result<String, ApiError> {
    if !text.is_empty() && text.len() <= 80 && text.bytes().all(|byte| byte.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err(ApiError::invalid(format!(
            "`{name}` must be a token id: 1 to 80 decimal digits"
        )))
    }
}

pub fn check_event_id(text: &str) -> Result<String, ApiError> {
    if !text.is_empty()
        && text.len() <= 100
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    {
        Ok(text.to_owned())
    } else {
        Err(ApiError::invalid(
            "event id must be 1 to 100 letters, digits, `-` or `_`",
        ))
    }
}

/// A keyset position: the sort key of the last row returned plus what the walk is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Time component of the sort key (0 where the order has none).
    pub time_ms: i64,
    /// Identity component of the sort key.
    pub id: String,
    /// Upper time bound fixed at the first page, so a walk ends even while rows keep arriving.
    pub until_ms: i64,
    /// Fingerprint of the filters: a cursor is refused with other filters.
    pub fingerprint: String,
}

impl Cursor {
    /// The encoded cursor of the page after the row with sort key `(time_ms, id)`.
    pub fn after(time_ms: i64, id: &str, until_ms: i64, fingerprint: &str) -> String {
        Self {
            time_ms,
            id: id.to_owned(),
            until_ms,
            fingerprint: fingerprint.to_owned(),
        }
        .encode()
    }

    /// Where the walk resumes.
    pub fn position(&self) -> crate::store::After {
        crate::store::After {
            time_ms: self.time_ms,
            id: self.id.clone(),
        }
    }

    pub fn encode(&self) -> String {
        let text = format!(
            "v1\n{}\n{}\n{}\n{}",
            self.time_ms, self.until_ms, self.fingerprint, self.id
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    /// Decodes `cursor` and checks that it belongs to a walk with these filters.
    pub fn decode(text: &str, fingerprint: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::invalid("`cursor` is not a cursor this endpoint returned");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = text.splitn(5, '\n');
        if parts.next() != Some("v1") {
            return Err(invalid());
        }
        let time_ms = parts
            .next()
            .and_then(|part| part.parse().ok())
            .ok_or_else(invalid)?;
        let until_ms = parts
            .next()
            .and_then(|part| part.parse().ok())
            .ok_or_else(invalid)?;
        let seen_fingerprint = parts.next().ok_or_else(invalid)?;
        let id = parts.next().ok_or_else(invalid)?.to_owned();
        if seen_fingerprint != fingerprint {
            return Err(ApiError::invalid(
                "`cursor` belongs to a request with other filters; start again without a cursor",
            ));
        }
        Ok(Self {
            time_ms,
            id,
            until_ms,
            fingerprint: fingerprint.to_owned(),
        })
    }
}

/// An exact decimal: an unscaled integer and its scale. Displays (and serializes, as a JSON
/// string) without trailing zeros, writing straight into the output: large responses (a day
/// of candles) format thousands of decimals without an allocation each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exact {
    pub unscaled: i128,
    pub scale: u32,
}

impl Exact {
    /// Decimal(18, 6).
    pub fn price(unscaled: i64) -> Self {
        Self {
            unscaled: i128::from(unscaled),
            scale: 6,
        }
    }
}

impl std::fmt::Display for Exact {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Scales are at most 38 (Decimal128), so the divisor fits a u128.
        let divisor = 10_u128.pow(self.scale.min(38));
        let magnitude = self.unscaled.unsigned_abs();
        let whole = magnitude / divisor;
        let mut fraction = magnitude % divisor;
        let mut digits = self.scale.min(38) as usize;
        while digits > 0 && fraction.is_multiple_of(10) {
            fraction /= 10;
            digits -= 1;
        }
        if self.unscaled < 0 {
            formatter.write_str("-")?;
        }
        write!(formatter, "{whole}")?;
        if digits > 0 {
            write!(formatter, ".{fraction:0digits$}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for Exact {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// An exact decimal from its unscaled integer, as text without trailing zeros.
pub fn decimal_text(unscaled: i128, scale: u32) -> String {
    Exact { unscaled, scale }.to_string()
}

/// Decimal(18, 6) as text.
pub fn price_text(unscaled: i64) -> String {
    decimal_text(i128::from(unscaled), 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_exactly() {
        assert_eq!(decimal_text(580_000, 6), "0.58");
        assert_eq!(decimal_text(32_155_171, 6), "32.155171");
        assert_eq!(decimal_text(100_000_000, 6), "100");
        assert_eq!(decimal_text(-5, 6), "-0.000005");
        assert_eq!(decimal_text(0, 12), "0");
        assert_eq!(decimal_text(166_666_666_666, 12), "0.166666666666");
        assert_eq!(decimal_text(-1_500_000, 6), "-1.5");
        assert_eq!(
            decimal_text(i128::MAX, 12),
            "170141183460469231731687303.715884105727"
        );
        assert_eq!(
            serde_json::to_string(&Exact::price(580_000))
                .ok()
                .as_deref(),
            Some("\"0.58\"")
        );
    }

    #[test]
    fn times_are_rfc3339_utc_or_epoch_ms() {
        assert_eq!(parse_time_ms("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(
            parse_time_ms("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_time_ms("2023-11-14T22:13:20.5Z"),
            Some(1_700_000_000_500)
        );
        assert_eq!(
            parse_time_ms("2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_time_ms("2023-11-14T21:13:20.5-01:00"),
            Some(1_700_000_000_500)
        );
        assert_eq!(parse_time_ms("yesterday"), None);
        // Offsets as RFC 9557 bounds them (jiff): below 26 hours.
        assert_eq!(parse_time_ms("2023-11-14T22:13:20+26:00"), None);
        assert_eq!(parse_time_ms("2023-11-14T22:13:20+00:60"), None);
        assert_eq!(parse_time_ms("99999999999999999999"), None);
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        assert!(matches!(
            Params::parse(Some("limit=5&colour=red"), &["limit"]),
            Err(ApiError::UnknownParameter { .. })
        ));
        assert!(Params::parse(Some("limit=5&limit=6"), &["limit"]).is_err());
        let params = Params::parse(Some("limit=5"), &["limit"])
            .ok()
            .unwrap_or_default();
        assert_eq!(params.limit(100, 1000).ok(), Some(5));
    }

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_filters() {
        let cursor = Cursor {
            time_ms: 5,
            id: "abc".to_owned(),
            until_ms: 9,
            fingerprint: "f".to_owned(),
        };
        assert_eq!(
            Cursor::decode(&cursor.encode(), "f").ok(),
            Some(cursor.clone())
        );
        assert!(Cursor::decode(&cursor.encode(), "g").is_err());
        assert!(Cursor::decode("!!", "f").is_err());
    }
}
