//! Active resync of books found inconsistent.
//!
//! A `BOOK_MISMATCH` means the book no longer follows upstream, and the next `book` event may be
//! far away (upstream sends one after a trade of the token as taker, or on a resubscription).
//! So the builder fetches the token's book itself: `GET <clob_url>/book?token_id=…`, published
//! to `book_snapshots` as a `BookSnapshot` with `source = REST` (no connection), exactly as the
//! collector's REST snapshots are. It is then read like any snapshot — stored, replayable — and
//! closes the gap through the normal path (a snapshot read after the book's, replacing a book
//! known to be wrong whatever its time, see [`crate::book`]).
//!
//! Requests obey a token bucket of `book_resync_budget` requests per 10 s (burst: a tenth of
//! it), one at a time. A token still inconsistent after a fetch is requested again after
//! [`FIRST_RETRY`], doubling up to [`MAX_RETRY`]; a token consistent again (or evicted) is
//! forgotten. A 404 (no book upstream: the market closed) and failures are logged and counted.
//!
//! This module is deliberately self-contained (its own minimal client and parser) until the
//! upstream clients of the collector and the ws-bridge are shared.

use std::{collections::HashMap, time::Duration};

use polytape_kafka::RecordProducer;
use polytape_model::{
    BookLevel, BookSnapshot, BookSource, Decimal, decimal::PRICE_SCALE, parse::parse_decimal_text,
};
use polytape_runtime::metrics::InternalEvent as _;
use serde_json::Value;
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    book::{self, BookEngine},
    events::BookResync,
};

/// Wait before asking again for a token whose book is still inconsistent.
pub const FIRST_RETRY: Duration = Duration::from_secs(10);
/// Longest wait between two requests for one token.
pub const MAX_RETRY: Duration = Duration::from_secs(300);
/// Timeout of one `/book` request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests for the tokens to resync, with their retry schedule (owned by the pipeline loop).
#[derive(Debug)]
pub(crate) struct Resync {
    requests: mpsc::UnboundedSender<String>,
    /// The fetcher task: it only ends at shutdown; ending otherwise (a panic) stops the builder.
    fetcher: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
    /// Token → (requests so far, when to ask again).
    pending: HashMap<String, (u32, Instant)>,
}

impl Resync {
    /// Starts the fetcher; `None` when the budget is 0 (resync disabled).
    pub(crate) fn start(
        clob_url: &str,
        budget_per_10s: u32,
        producer: RecordProducer<BookSnapshot>,
        stop: CancellationToken,
    ) -> Result<Option<Self>, reqwest::Error> {
        if budget_per_10s == 0 {
            return Ok(None);
        }
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!(
                "polytape-candle-builder/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        let (requests, receiver) = mpsc::unbounded_channel();
        let fetcher = Fetcher {
            client,
            url: format!("{}/book", clob_url.trim_end_matches('/')),
            bucket: TokenBucket::per_10s(budget_per_10s),
            producer,
        };
        let fetcher = tokio::spawn(fetcher.run(receiver, stop.clone()));
        Ok(Some(Self {
            requests,
            fetcher,
            stop,
            pending: HashMap::new(),
        }))
    }

    /// A token's book was found inconsistent: fetch it at the next [`Resync::poll`].
    pub(crate) fn mismatched(&mut self, token_id: &str) {
        self.pending
            .entry(token_id.to_owned())
            .or_insert_with(|| (0, Instant::now()));
    }

    /// Tokens due are requested (again); tokens whose book is consistent again (or gone) are
    /// forgotten.
    /// An error when the fetcher ended without a shutdown (it panicked): resync would be off
    /// without a word, so the builder stops instead (and is restarted).
    pub(crate) fn poll(&mut self, books: &BookEngine) -> Result<(), String> {
        if self.fetcher.is_finished() && !self.stop.is_cancelled() {
            return Err("the REST book fetcher ended unexpectedly".to_owned());
        }
        let now = Instant::now();
        self.pending
            .retain(|token_id, _| books.is_consistent(token_id) == Some(false));
        for (token_id, (attempts, due)) in &mut self.pending {
            if *due > now {
                continue;
            }
            if self.requests.send(token_id.clone()).is_err() {
                // The fetcher stopped (shutdown; otherwise caught above at the next poll).
                return Ok(());
            }
            let backoff = FIRST_RETRY
                .saturating_mul(1_u32 << (*attempts).min(10))
                .min(MAX_RETRY);
            *attempts = attempts.saturating_add(1);
            *due = now + backoff;
        }
        Ok(())
    }
}

/// Fetches books one at a time within the budget and publishes them.
struct Fetcher {
    client: reqwest::Client,
    url: String,
    bucket: TokenBucket,
    producer: RecordProducer<BookSnapshot>,
}

impl Fetcher {
    async fn run(mut self, mut receiver: mpsc::UnboundedReceiver<String>, stop: CancellationToken) {
        loop {
            let token_id = tokio::select! {
                () = stop.cancelled() => return,
                received = receiver.recv() => match received {
                    Some(token_id) => token_id,
                    None => return,
                },
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.bucket.acquire() => {}
            }
            let outcome = self.resync(&token_id).await;
            BookResync {
                token_id: &token_id,
                outcome: match &outcome {
                    Ok(outcome) => outcome,
                    Err(_) => "failed",
                },
                error: outcome.as_ref().err(),
            }
            .emit();
        }
    }

    /// Fetches and publishes one book; the outcome's label.
    async fn resync(&self, token_id: &str) -> Result<&'static str, String> {
        let response = self
            .client
            .get(&self.url)
            .query(&[("token_id", token_id)])
            .send()
            .await
            .map_err(|error| format!("GET {}: {error}", self.url))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|error| format!("reading the /book answer: {error}"))?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok("no_book");
        }
        if !status.is_success() {
            let excerpt: String = body.chars().take(200).collect();
            return Err(format!("HTTP {status}: {excerpt}"));
        }
        let received_ms = now_ms();
        let snapshot = parse_rest_book(&body, token_id, received_ms)?;
        book::check_snapshot(&snapshot).map_err(|error| format!("invalid book: {error}"))?;
        self.producer
            .send(&snapshot)
            .await
            .map_err(|error| format!("publishing the book: {error}"))?;
        Ok("published")
    }
}

fn now_ms() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

/// A token bucket: `rate` tokens per second, at most `capacity` saved up.
#[derive(Debug)]
struct TokenBucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// `budget` requests per 10 s, a burst of a tenth of it (at least one).
    fn per_10s(budget: u32) -> Self {
        let rate = f64::from(budget.max(1)) / 10.0;
        let capacity = rate.max(1.0);
        Self {
            capacity,
            rate,
            tokens: capacity,
            refilled: Instant::now(),
        }
    }

    async fn acquire(&mut self) {
        loop {
            let now = Instant::now();
            let elapsed = now.duration_since(self.refilled).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
            self.refilled = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                return;
            }
            let wait = (1.0 - self.tokens) / self.rate;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

/// Parses a CLOB `/book` answer into the record the collector and the ws-bridge make of it:
/// levels best first on both sides (upstream serves bids ascending and asks descending),
/// exact decimals (at most 6 places), `timestamp_ms` upstream's, `source = REST`, no
/// connection.
///
/// The collector (`parse::book_snapshot`) and the ws-bridge (`parse::parse_rest_book`) each
/// have one; neither is reachable without depending on another service, so this is the third,
/// to be unified with the shared upstream client.
pub fn parse_rest_book(
    body: &str,
    token_id: &str,
    received_ms: i64,
) -> Result<BookSnapshot, String> {
    let row: Value =
        serde_json::from_str(body).map_err(|error| format!("the /book answer: {error}"))?;
    let text = |key: &str| -> Option<String> {
        match row.get(key)? {
            Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        }
    };
    let asset_id = text("asset_id").ok_or("the /book answer has no asset_id")?;
    if asset_id != token_id {
        return Err(format!(
            "asked for the book of {token_id}, got the book of {asset_id}"
        ));
    }
    let condition_id = text("market").ok_or("the /book answer has no market")?;
    let timestamp_ms: i64 = text("timestamp")
        .and_then(|timestamp| timestamp.parse().ok())
        .filter(|timestamp| *timestamp > 0)
        .ok_or("the /book answer has no timestamp in milliseconds")?;
    let decimal = |field: &str, value: &Value| -> Result<Decimal, String> {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            other => return Err(format!("{field}: {other} is not a number")),
        };
        let value = parse_decimal_text(&text)
            .map_err(|error| format!("{field}: {error}"))?
            .normalize();
        if value.scale() > PRICE_SCALE {
            return Err(format!(
                "{field}: {text:?} has more than {PRICE_SCALE} decimals"
            ));
        }
        Ok(value)
    };
    let optional = |key: &str| -> Result<Option<Decimal>, String> {
        match row.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
            Some(value) => decimal(key, value).map(Some),
        }
    };
    let side = |key: &str| -> Result<Vec<BookLevel>, String> {
        let Some(Value::Array(levels)) = row.get(key) else {
            return Err(format!("the /book answer has no {key} list"));
        };
        levels
            .iter()
            .map(|level| {
                let price = level
                    .get("price")
                    .ok_or_else(|| format!("a level of {key} has no price"))?;
                let size = level
                    .get("size")
                    .ok_or_else(|| format!("a level of {key} has no size"))?;
                Ok(BookLevel {
                    price: decimal("price", price)?,
                    size: decimal("size", size)?,
                })
            })
            .collect()
    };
    let mut bids = side("bids")?;
    let mut asks = side("asks")?;
    bids.sort_by_key(|level| std::cmp::Reverse(level.price));
    asks.sort_by_key(|level| level.price);
    let neg_risk = match row.get("neg_risk") {
        Some(Value::Bool(flag)) => Some(*flag),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => Some(true),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    };
    Ok(BookSnapshot {
        token_id: asset_id,
        condition_id,
        timestamp_ms,
        received_ms,
        bids,
        asks,
        hash: text("hash"),
        tick_size: optional("tick_size")?,
        min_order_size: optional("min_order_size")?,
        neg_risk,
        last_trade_price: optional("last_trade_price")?,
        source: BookSource::Rest,
        connection_id: None,
        sequence: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::str::FromStr as _;

    use super::*;

    /// The brief's `/book` example (polymarket-api.md 4.3).
    const EXAMPLE: &str = r#"{"market": "0x747dc809fb79e1b05be09c42d6179459a58de2ef3e40f02484a4e1260f741f75",
 "asset_id": "107505882767731489358349912513945399560393482969656700824895970500493757150417",
 "timestamp": "1759420800123", "hash": "32400f1a5df2379ab4e7b79bac275d9312494339",
 "bids": [{"price": "0.01", "size": "2500"}, {"price": "0.44", "size": "120.5"}, {"price": "0.45", "size": "100"}],
 "asks": [{"price": "0.99", "size": "900"}, {"price": "0.47", "size": "80"}, {"price": ".46", "size": "150"}],
 "min_order_size": "5", "tick_size": "0.01", "neg_risk": false, "last_trade_price": "0.45"}"#;
    const TOKEN: &str =
        "107505882767731489358349912513945399560393482969656700824895970500493757150417";

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn a_rest_book_becomes_a_best_first_rest_snapshot() {
        let snapshot = parse_rest_book(EXAMPLE, TOKEN, 42).unwrap();
        assert_eq!(snapshot.token_id, TOKEN);
        assert_eq!(snapshot.timestamp_ms, 1_759_420_800_123);
        assert_eq!(snapshot.received_ms, 42);
        let prices =
            |levels: &[BookLevel]| levels.iter().map(|level| level.price).collect::<Vec<_>>();
        assert_eq!(
            prices(&snapshot.bids),
            [dec("0.45"), dec("0.44"), dec("0.01")]
        );
        assert_eq!(
            prices(&snapshot.asks),
            [dec("0.46"), dec("0.47"), dec("0.99")]
        );
        assert_eq!(snapshot.bids[1].size, dec("120.5"));
        assert_eq!(snapshot.tick_size, Some(dec("0.01")));
        assert_eq!(snapshot.neg_risk, Some(false));
        assert_eq!(snapshot.source, BookSource::Rest);
        assert_eq!(snapshot.connection_id, None);
        assert_eq!(
            snapshot.hash.as_deref(),
            Some("32400f1a5df2379ab4e7b79bac275d9312494339")
        );
        assert!(book::check_snapshot(&snapshot).is_ok());
    }

    #[test]
    fn a_wrong_or_malformed_book_is_refused() {
        assert!(
            parse_rest_book(EXAMPLE, "1", 0)
                .unwrap_err()
                .contains("got the book of")
        );
        assert!(parse_rest_book("{}", TOKEN, 0).is_err());
        let seven_places = EXAMPLE.replace("\"120.5\"", "\"120.5000001\"");
        assert!(
            parse_rest_book(&seven_places, TOKEN, 0)
                .unwrap_err()
                .contains("more than 6 decimals")
        );
    }

    #[tokio::test]
    async fn the_bucket_spends_the_budget_evenly() {
        let mut bucket = TokenBucket::per_10s(100);
        let started = Instant::now();
        for _ in 0..10 {
            bucket.acquire().await;
        }
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "a burst of 10"
        );
        for _ in 0..3 {
            bucket.acquire().await;
        }
        // Then 10 per second.
        assert!(
            started.elapsed() >= Duration::from_millis(290),
            "{:?}",
            started.elapsed()
        );
    }
}
