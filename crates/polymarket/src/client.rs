//! Thin I/O to upstream: every request takes a token from its endpoint's bucket first, 429
//! and 503 honour `Retry-After`, 5xx/timeouts/transport errors and malformed bodies back off
//! exponentially with full jitter, and other 4xx are returned at once (retrying cannot help).

use std::time::Duration;

use backon::{BackoffBuilder, Retryable as _};
use polytape_model::BookSnapshot;
use polytape_runtime::metrics::InternalEvent as _;
use rand::Rng as _;
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::{
    budget::{Budgets, Endpoint},
    error::{PageError, UpstreamError},
    metrics::{BudgetWaited, RequestFinished},
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

/// `Retry-After` in seconds (the only form Polymarket sends); see
/// [`polytape_model::time::retry_after`].
pub use polytape_model::time::retry_after;

/// What `GET /book` answered.
#[derive(Debug, Clone, PartialEq)]
pub enum BookAnswer {
    Book(BookSnapshot),
    /// 404: upstream has no order book for the token.
    NoBook,
    /// An answer that is not the token's book: the reason and the body, for the DLQ.
    Unusable {
        reason: String,
        body: String,
    },
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
    /// A client for `user_agent` (the service, e.g. `polytape-collector/0.1.0`).
    pub fn new(
        user_agent: &str,
        budgets: Budgets,
        policy: RetryPolicy,
        stop: CancellationToken,
    ) -> Result<Self, UpstreamError> {
        let client = reqwest::Client::builder()
            .timeout(policy.request_timeout)
            .user_agent(user_agent)
            .build()
            .map_err(|error| UpstreamError::Client(error.to_string()))?;
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

    /// One attempt: a token, the request, the body.
    async fn attempt(
        &self,
        endpoint: Endpoint,
        url: &str,
        query: &[(&str, String)],
        json_body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, (UpstreamError, Option<Duration>)> {
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
                return Err((UpstreamError::Transport { endpoint, source }, None));
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
            Err(source) => return Err((UpstreamError::Transport { endpoint, source }, None)),
        };
        if status == StatusCode::OK {
            return Ok(body);
        }
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        Err((
            UpstreamError::Status {
                endpoint,
                status: status.as_u16(),
                body: text,
            },
            after,
        ))
    }

    /// GETs `url` and parses the body with `parse`, retrying what may succeed on a second try.
    /// A body that stays malformed through every attempt comes back as
    /// [`UpstreamError::Page`] with the body, for the DLQ.
    pub async fn get_page<T>(
        &self,
        endpoint: Endpoint,
        url: &str,
        query: &[(&str, String)],
        parse: impl Fn(&[u8]) -> Result<T, PageError>,
    ) -> Result<T, UpstreamError> {
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
    ) -> Result<T, UpstreamError> {
        self.request_page(endpoint, url, &[], Some(json_body), parse)
            .await
    }

    /// The book of one token (`GET <clob_url>/book?token_id=…`, budget [`Endpoint::ClobBook`]),
    /// read by [`crate::book`]'s rules. A 404 (no order book: the market closed, or the token
    /// is unknown) is [`BookAnswer::NoBook`], an answer that is not that token's book is
    /// [`BookAnswer::Unusable`] with the body for the DLQ.
    pub async fn get_book(
        &self,
        clob_url: &str,
        token_id: &str,
    ) -> Result<BookAnswer, UpstreamError> {
        let url = format!("{}/book", clob_url.trim_end_matches('/'));
        let query = [("token_id", token_id.to_owned())];
        let body = match self
            .get_page(Endpoint::ClobBook, &url, &query, |body| Ok(body.to_vec()))
            .await
        {
            Ok(body) => body,
            Err(UpstreamError::Status { status: 404, .. }) => return Ok(BookAnswer::NoBook),
            Err(error) => return Err(error),
        };
        let received_ms = polytape_model::now_ms();
        let body = String::from_utf8_lossy(&body).into_owned();
        match crate::book::rest_book(&body, received_ms) {
            Ok(book) if book.token_id == token_id => Ok(BookAnswer::Book(book)),
            Ok(book) => Ok(BookAnswer::Unusable {
                reason: format!(
                    "asked for the book of {token_id}, got the book of {}",
                    book.token_id
                ),
                body,
            }),
            Err(error) => Ok(BookAnswer::Unusable {
                reason: error.to_string(),
                body,
            }),
        }
    }

    async fn request_page<T>(
        &self,
        endpoint: Endpoint,
        url: &str,
        query: &[(&str, String)],
        json_body: Option<&serde_json::Value>,
        parse: impl Fn(&[u8]) -> Result<T, PageError>,
    ) -> Result<T, UpstreamError> {
        if self.stop.is_cancelled() {
            return Err(UpstreamError::Cancelled);
        }
        let read_page = || async {
            let body = self.attempt(endpoint, url, query, json_body).await?;
            parse(&body).map_err(|error| {
                (
                    UpstreamError::Page {
                        endpoint,
                        url: url.to_owned(),
                        body,
                        error,
                    },
                    None,
                )
            })
        };
        let retried = read_page
            .retry(self.policy)
            .when(|(error, _)| error.is_retryable())
            // Retry-After is the server's word (a little jitter keeps clients apart); without
            // it, the policy's full-jitter backoff. The policy's attempt limit holds either way.
            .adjust(|(_, after), backoff| {
                backoff.map(|backoff| {
                    after.map_or(backoff, |after| {
                        after + Duration::from_millis(rand::rng().random_range(0..250))
                    })
                })
            })
            .notify(|(error, _), wait| {
                tracing::debug!(endpoint = endpoint.label(), wait_ms = wait.as_millis() as u64, error = %error, "retrying upstream request");
            });
        tokio::select! {
            () = self.stop.cancelled() => Err(UpstreamError::Cancelled),
            outcome = retried => outcome.map_err(|(error, _)| error),
        }
    }
}

/// The policy's delays, one per retry: full jitter (see [`RetryPolicy::backoff`]), at most
/// `max_attempts − 1` of them.
#[derive(Debug)]
pub struct PolicyBackoff {
    policy: RetryPolicy,
    retries: u32,
}

impl Iterator for PolicyBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.retries += 1;
        (self.retries < self.policy.max_attempts).then(|| self.policy.backoff(self.retries))
    }
}

impl BackoffBuilder for RetryPolicy {
    type Backoff = PolicyBackoff;

    fn build(self) -> PolicyBackoff {
        PolicyBackoff {
            policy: self,
            retries: 0,
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
    fn the_policy_allows_max_attempts_minus_one_retries() {
        for max_attempts in [1, 2, 8] {
            let policy = RetryPolicy {
                max_attempts,
                ..RetryPolicy::default()
            };
            assert_eq!(policy.build().count(), (max_attempts - 1) as usize);
        }
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
