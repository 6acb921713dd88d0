//! HTTP plumbing shared by the API modules: multi-valued query parsing and JSON responses.

pub(crate) mod clob;
pub(crate) mod data;
pub(crate) mod gamma;
pub(crate) mod simapi;
pub(crate) mod ws;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A query string with repeated keys (`id=1&id=2`), bracket keys (`id[]=1`) and csv values.
#[derive(Debug, Default, Clone)]
pub(crate) struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl QueryParams {
    pub(crate) fn parse(raw: Option<&str>) -> QueryParams {
        let pairs = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(key, value)| (key.trim_end_matches("[]").to_owned(), value.into_owned()))
            .collect();
        QueryParams { pairs }
    }

    /// The first value of any of the given names (aliases: snake and camel case).
    pub(crate) fn get(&self, names: &[&str]) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| names.contains(&key.as_str()))
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn has(&self, names: &[&str]) -> bool {
        self.get(names).is_some()
    }

    /// Every value of the names, csv-split, empty items dropped.
    pub(crate) fn list(&self, names: &[&str]) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(key, _)| names.contains(&key.as_str()))
            .flat_map(|(_, value)| {
                value
                    .split(',')
                    .map(|item| item.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .filter(|item| !item.is_empty())
            .collect()
    }

    /// A boolean parameter: Some(true/false) when present and parseable.
    pub(crate) fn bool(&self, names: &[&str]) -> Option<bool> {
        match self.get(names)?.to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        }
    }

    /// An integer parameter: Ok(None) when absent, Err(text) when present but not an integer.
    pub(crate) fn integer(&self, names: &[&str]) -> Result<Option<i64>, String> {
        match self.get(names) {
            None => Ok(None),
            Some(text) => text
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| text.to_owned()),
        }
    }
}

/// A JSON body (already serialised) with a status.
pub(crate) fn json_text(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub(crate) fn json_value(status: StatusCode, value: &serde_json::Value) -> Response {
    json_text(status, value.to_string())
}

pub(crate) fn json_ok(value: &serde_json::Value) -> Response {
    json_value(StatusCode::OK, value)
}

/// `{"error": message}` with a status (Gamma, Data v1 and CLOB error shape).
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    json_value(status, &serde_json::json!({ "error": message }))
}

/// Milliseconds to an RFC 3339 UTC text with microseconds, like Gamma's `createdAt`.
pub(crate) fn iso_micros(ms: i64) -> String {
    let seconds = ms.div_euclid(1_000);
    let millis = ms.rem_euclid(1_000);
    let time =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    let base = humantime::format_rfc3339_seconds(time).to_string();
    // "2025-12-30T17:01:49Z" → "2025-12-30T17:01:49.027000Z"
    format!("{}.{:03}000Z", base.trim_end_matches('Z'), millis)
}

/// Milliseconds to RFC 3339 seconds (`"2025-12-31T17:15:00Z"`).
pub(crate) fn iso_seconds(ms: i64) -> String {
    let seconds = ms.div_euclid(1_000);
    let time =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Milliseconds to a date (`"2025-12-31"`).
pub(crate) fn iso_date(ms: i64) -> String {
    iso_seconds(ms).chars().take(10).collect()
}
