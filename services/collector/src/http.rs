//! Thin I/O to upstream: every request takes a token from its endpoint's bucket first, 429
//! and 503 honour `Retry-After`, 5xx/timeouts/transport errors and malformed bodies back off
//! exponentially with full jitter, and other 4xx are returned at once (retrying cannot help).

use std::time::Duration;

use polytape_runtime::metrics::InternalEvent as _;
use rand::Rng as _;
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::{
    budget::{Budgets, Endpoint},
    error::CollectError,
    metrics::{BudgetWaited, RequestFinished},
    parse::PageError,
};

/// Backoff settings.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in `[0, min(cap, base·2^attempt)]`, at least 10 ms so a burst of
    /// failures can never turn into a tight loop.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.cap);
        let millis = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(10);
        Duration::from_millis(rand::rng().random_range(10..=millis))
    }
}

/// `Retry-After` in seconds (the only form Polymarket sends), capped so a bogus value cannot
/// park the collector for hours.
pub fn retry_after(value: Option<&str>) -> Option<Duration> {
    let seconds: f64 = value?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(300.0)))
}

/// The upstream client.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: reqwest::Client,
    budgets: Budgets,
    policy: RetryPolicy,
    stop: CancellationToken,
}

impl Upstream {
    pub fn new(
        budgets: Budgets,
        policy: RetryPolicy,
        stop: CancellationToken,
    ) -> Result<Self, CollectError> {
        let client = reqwest::Client::builder()
            .timeout(policy.request_timeout)
            .user_agent(concat!("polytape-collector/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| {
                CollectError::Config(format!("cannot build the HTTP client: {error}"))
            })?;
        for endpoint in Endpoint::ALL {
            crate::metrics::budget_rate(endpoint, budgets.rate(endpoint));
        }
        Ok(Self {
            client,
            budgets,
            policy,
            stop,
        })
    }

    async fn pause(&self, wait: Duration) -> Result<(), CollectError> {
        tokio::select! {
            () = self.stop.cancelled() => Err(CollectError::Cancelled),
            () = tokio::time::sleep(wait) => Ok(()),
        }
    }

    /// One attempt: a token, the request, the body.
    async fn attempt(
        &self,
        endpoint: Endpoint,
        url: &str,
        query: &[(&str, String)],
        json_body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, (CollectError, Option<Duration>)> {
        let waited = self.budgets.acquire(endpoint).await;
        BudgetWaited {
            endpoint,
            seconds: waited.as_secs_f64(),
        }
        .emit();
        let request = match json_body {
            Some(json_body) => self.client.post(url).query(query).json(json_body),
            None => self.client.get(url).query(query),
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(source) => {
                RequestFinished {
                    endpoint,
                    status: None,
                }
                .emit();
                return Err((CollectError::Transport { endpoint, source }, None));
            }
        };
        let status = response.status();
        RequestFinished {
            endpoint,
            status: Some(status.as_u16()),
        }
        .emit();
        let after = retry_after(
            response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok()),
        );
        let body = match response.bytes().await {
            Ok(body) => body.to_vec(),
            Err(source) => return Err((CollectError::Transport { endpoint, source }, None)),
        };
        if status == StatusCode::OK {
            return Ok(body);
        }
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        Err((
            CollectError::Status {
                endpoint,
                status: status.as_u16(),
                body: text,
            },
            after,
        ))
    }

    /// GETs `url` and parses the body with `parse`, retrying what may succeed on a second try.
    /// A body that stays malformed through every attempt comes back as
    /// [`CollectError::Page`] with the body, for the DLQ.
    pub async fn get_page<T>(
        &self,
        endpoint: Endpoint,
        url: &str,
        query: &[(&str, String)],
        parse: impl Fn(&[u8]) -> Result<T, PageError>,
    ) -> Result<T, CollectError> {
        self.request_page(endpoint, url, query, None, parse).await
    }

    /// POSTs `json_body` to `url` (CLOB `POST /books`), with the same retries as
    /// [`Upstream::get_page`]: the batch endpoints only read, so a retry is safe.
    pub async fn post_page<T>(
        &self,
        endpoint: Endpoint,
        url: &str,
        json_body: &serde_json::Value,
        parse: impl Fn(&[u8]) -> Result<T, PageError>,
    ) -> Result<T, CollectError> {
        self.request_page(endpoint, url, &[], Some(json_body), parse)
            .await
    }

    async fn request_page<T>(
        &self,
        endpoint: Endpoint,
        url: &str,
        query: &[(&str, String)],
        json_body: Option<&serde_json::Value>,
        parse: impl Fn(&[u8]) -> Result<T, PageError>,
    ) -> Result<T, CollectError> {
        let mut attempt = 0;
        loop {
            if self.stop.is_cancelled() {
                return Err(CollectError::Cancelled);
            }
            let (error, after) = match self.attempt(endpoint, url, query, json_body).await {
                Ok(body) => match parse(&body) {
                    Ok(parsed) => return Ok(parsed),
                    Err(error) => (
                        CollectError::Page {
                            endpoint,
                            url: url.to_owned(),
                            body,
                            error,
                        },
                        None,
                    ),
                },
                Err(failure) => failure,
            };
            attempt += 1;
            if !error.is_retryable() || attempt >= self.policy.max_attempts {
                return Err(error);
            }
            let wait = match after {
                // Retry-After is the server's word; a little jitter keeps clients apart.
                Some(after) => after + Duration::from_millis(rand::rng().random_range(0..250)),
                None => self.policy.backoff(attempt),
            };
            tracing::debug!(endpoint = endpoint.label(), attempt, wait_ms = wait.as_millis() as u64, error = %error, "retrying upstream request");
            self.pause(wait).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_and_capped() {
        assert_eq!(retry_after(Some("1")), Some(Duration::from_secs(1)));
        assert_eq!(
            retry_after(Some(" 2.5 ")),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(retry_after(Some("99999")), Some(Duration::from_secs(300)));
        assert_eq!(retry_after(Some("soon")), None);
        assert_eq!(retry_after(None), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_never_spins() {
        let policy = RetryPolicy::default();
        for attempt in 0..20 {
            let wait = policy.backoff(attempt);
            assert!(wait >= Duration::from_millis(10));
            assert!(wait <= policy.cap);
        }
        let ceiling_at_3 = policy.base * 8;
        assert!((0..100).all(|_| policy.backoff(3) <= ceiling_at_3));
    }
}
