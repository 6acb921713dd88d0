//! Webhook delivery of one signal to one destination: the body, its signature, and retries
//! until a deadline.
//!
//! Every request carries:
//! - `Idempotency-Key: <signal id>`: the same on every attempt and after a restart (ids are
//!   deterministic), so a receiver that keeps the keys it handled acts once per signal;
//! - `X-Polytape-Timestamp: <unix ms>` of the attempt;
//! - `X-Polytape-Signature: v1=<hex>`: HMAC-SHA256, keyed with the destination's secret, of
//!   `<timestamp>.<body>` (the timestamp's decimal text, a dot, the raw body bytes). A receiver
//!   recomputes it, compares in constant time, and rejects timestamps too far from its clock
//!   (replays). README.md, "Webhooks", shows how.
//!
//! Timeouts, connection errors, 429 and 5xx are retried with exponential backoff (a
//! `Retry-After` in seconds is honoured) until the policy's deadline; any other answer
//! outside 2xx fails at once (the receiver refused this body: sending it again cannot help).

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac as _};
use polytape_model::Signal;
pub use polytape_model::alerts::DeliveryStatus;
use serde::Serialize;
use sha2::Sha256;

/// The header names, in one place for senders, receivers and tests.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
pub const TIMESTAMP: &str = "X-Polytape-Timestamp";
pub const SIGNATURE: &str = "X-Polytape-Signature";

/// How a destination wants the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// The signal and its explanation (`WebhookBody`).
    Json,
    /// A Slack incoming-webhook message: `{"text": <explanation>}`.
    Slack,
    /// A Discord webhook message: `{"content": <explanation>}`.
    Discord,
}

/// Where alerts go.
#[derive(Debug, Clone)]
pub struct Destination {
    pub destination_id: String,
    pub url: String,
    /// The HMAC key; never logged.
    pub secret: String,
    pub format: BodyFormat,
}

/// A signal to deliver, with the rule that chose it for the destination.
#[derive(Debug, Clone, Copy)]
pub struct Alert<'a> {
    pub signal: &'a Signal,
    pub alert_rule_id: &'a str,
    pub alert_rule_version: i32,
}

/// The JSON body of the `Json` format.
#[derive(Debug, Serialize)]
pub struct WebhookBody<'a> {
    pub signal_id: &'a str,
    pub kind: &'static str,
    pub alert_rule_id: &'a str,
    pub alert_rule_version: i32,
    /// One line saying what happened, with the inputs and thresholds that made it fire.
    pub explanation: String,
    pub signal: &'a Signal,
}

/// One line a person reads: kind, subject, window, then every input and threshold.
pub fn explanation(signal: &Signal) -> String {
    let window = match signal.window_end_ms {
        Some(end) if end != signal.window_start_ms => format!(
            "from {} to {}",
            polytape_model::time::utc_seconds_text(signal.window_start_ms),
            polytape_model::time::utc_seconds_text(end)
        ),
        Some(_) => format!(
            "at {}",
            polytape_model::time::utc_seconds_text(signal.window_start_ms)
        ),
        None => format!(
            "open since {}",
            polytape_model::time::utc_seconds_text(signal.window_start_ms)
        ),
    };
    let values = |values: &[polytape_model::SignalValue]| {
        values
            .iter()
            .map(|value| format!("{}={}", value.name, value.value))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{} {} {window} (rule {} v{}): {}; thresholds: {}",
        signal.kind.name(),
        signal.subject,
        signal.rule_id,
        signal.rule_version,
        values(&signal.inputs),
        values(&signal.thresholds)
    )
}

/// The body bytes in `format`.
pub fn body(format: BodyFormat, alert: Alert<'_>) -> Result<Vec<u8>, serde_json::Error> {
    let explanation = explanation(alert.signal);
    match format {
        BodyFormat::Json => serde_json::to_vec(&WebhookBody {
            signal_id: &alert.signal.signal_id,
            kind: alert.signal.kind.name(),
            alert_rule_id: alert.alert_rule_id,
            alert_rule_version: alert.alert_rule_version,
            explanation,
            signal: alert.signal,
        }),
        BodyFormat::Slack => serde_json::to_vec(&serde_json::json!({ "text": explanation })),
        BodyFormat::Discord => serde_json::to_vec(&serde_json::json!({ "content": explanation })),
    }
}

/// `v1=<hex HMAC-SHA256(secret, "<timestamp_ms>." + body)>`.
pub fn signature(secret: &str, timestamp_ms: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp_ms.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `signature` is the one `secret` gives for this timestamp and body (constant time),
/// as a receiver checks it.
pub fn verify(secret: &str, timestamp_ms: i64, body: &[u8], signature: &str) -> bool {
    let Some(hex_text) = signature.strip_prefix("v1=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_text) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(timestamp_ms.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// When to try again and when to give up.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Each attempt's limit (connect, send, answer).
    pub attempt_timeout: Duration,
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// No attempt starts after this much time since the first.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    /// 10 s per attempt; 1 s doubling to 60 s between attempts; give up after 10 minutes.
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(10),
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            deadline: Duration::from_secs(600),
        }
    }
}

/// What a delivery did, for the `alert_deliveries` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// From the first attempt's start to the last attempt's end.
    pub elapsed: Duration,
    /// The last HTTP status received (none if no attempt got an answer).
    pub response_code: Option<u16>,
    /// Why the last attempt failed (none when delivered).
    pub error: Option<String>,
}

enum Attempt {
    Delivered(u16),
    Retry {
        code: Option<u16>,
        after: Option<Duration>,
        error: String,
    },
    Refused(u16),
}

/// Delivers `alert` to `destination`; `now_ms` stamps each attempt (the wall clock in the
/// service, a fixed clock in tests).
pub async fn deliver(
    client: &reqwest::Client,
    destination: &Destination,
    alert: Alert<'_>,
    policy: RetryPolicy,
    now_ms: impl Fn() -> i64,
) -> DeliveryOutcome {
    let started = Instant::now();
    let body = match body(destination.format, alert) {
        Ok(body) => body,
        Err(error) => {
            return DeliveryOutcome {
                status: DeliveryStatus::Failed,
                attempts: 0,
                elapsed: Duration::ZERO,
                response_code: None,
                error: Some(format!("cannot encode the body: {error}")),
            };
        }
    };
    let mut attempts = 0;
    let mut delay = policy.first_delay;
    loop {
        attempts += 1;
        let timestamp_ms = now_ms();
        let request = client
            .post(&destination.url)
            .timeout(policy.attempt_timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_KEY, alert.signal.signal_id.as_str())
            .header(TIMESTAMP, timestamp_ms.to_string())
            .header(
                SIGNATURE,
                signature(&destination.secret, timestamp_ms, &body),
            )
            .body(body.clone());
        let attempt = match request.send().await {
            Ok(response) => {
                let code = response.status().as_u16();
                if response.status().is_success() {
                    Attempt::Delivered(code)
                } else if code == 429 || response.status().is_server_error() {
                    Attempt::Retry {
                        code: Some(code),
                        after: polytape_model::time::retry_after(
                            response
                                .headers()
                                .get(reqwest::header::RETRY_AFTER)
                                .and_then(|value| value.to_str().ok()),
                        ),
                        error: format!("answered {code}"),
                    }
                } else {
                    Attempt::Refused(code)
                }
            }
            // Timeouts, refused connections, resets: the destination may come back. The URL
            // is left out of the text: for Slack and Discord it is the secret.
            Err(error) => Attempt::Retry {
                code: None,
                after: None,
                error: error_chain(&error.without_url()),
            },
        };
        let (code, after, error) = match attempt {
            Attempt::Delivered(code) => {
                return DeliveryOutcome {
                    status: DeliveryStatus::Delivered,
                    attempts,
                    elapsed: started.elapsed(),
                    response_code: Some(code),
                    error: None,
                };
            }
            Attempt::Refused(code) => {
                return DeliveryOutcome {
                    status: DeliveryStatus::Failed,
                    attempts,
                    elapsed: started.elapsed(),
                    response_code: Some(code),
                    error: Some(format!("refused with {code}")),
                };
            }
            Attempt::Retry { code, after, error } => (code, after, error),
        };
        let wait = after.unwrap_or(delay).min(policy.max_delay);
        if started.elapsed() + wait > policy.deadline {
            return DeliveryOutcome {
                status: DeliveryStatus::Failed,
                attempts,
                elapsed: started.elapsed(),
                response_code: code,
                error: Some(format!("{error}; gave up at the deadline")),
            };
        }
        tokio::time::sleep(wait).await;
        delay = (delay * 2).min(policy.max_delay);
    }
}

/// An error with its sources, in one line (reqwest's own text omits the cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
