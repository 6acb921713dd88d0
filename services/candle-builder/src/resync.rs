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
//! Requests go through the Polymarket adapter's client (`polytape_polymarket::Upstream`, the
//! same `/book` rules as the collector and the ws-bridge) within a budget of
//! `book_resync_budget` requests per 10 s on the `clob_book` endpoint, one at a time. A token still inconsistent after a fetch is requested again after
//! [`FIRST_RETRY`], doubling up to [`MAX_RETRY`]; a token consistent again (or evicted) is
//! forgotten. A 404 (no book upstream: the market closed) and failures are logged and counted.

use std::{collections::HashMap, time::Duration};

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use polytape_kafka::RecordProducer;
use polytape_model::BookSnapshot;
use polytape_polymarket::{Budgets, Endpoint, RetryPolicy, Upstream, client::BookAnswer};
use polytape_runtime::metrics::InternalEvent as _;
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{book::BookEngine, events::BookResync};

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
    pending: HashMap<String, (ExponentialBackoff, Instant)>,
}

impl Resync {
    /// Starts the fetcher; `None` when the budget is 0 (resync disabled).
    pub(crate) fn start(
        clob_url: &str,
        budget_per_10s: u32,
        producer: RecordProducer<BookSnapshot>,
        stop: CancellationToken,
    ) -> Result<Option<Self>, polytape_polymarket::UpstreamError> {
        if budget_per_10s == 0 {
            return Ok(None);
        }
        // One attempt per request: the schedule above is the retry.
        let upstream = Upstream::new(
            concat!("polytape-candle-builder/", env!("CARGO_PKG_VERSION")),
            Budgets::with_budgets(
                Duration::from_secs(10),
                1.0,
                &[(Endpoint::ClobBook, budget_per_10s)],
            ),
            RetryPolicy {
                max_attempts: 1,
                request_timeout: REQUEST_TIMEOUT,
                ..RetryPolicy::default()
            },
            stop.clone(),
        )?;
        let (requests, receiver) = mpsc::unbounded_channel();
        let fetcher = Fetcher {
            upstream,
            clob_url: clob_url.to_owned(),
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
            .or_insert_with(|| (retry_delays(), Instant::now()));
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
        for (token_id, (delays, due)) in &mut self.pending {
            if *due > now {
                continue;
            }
            if self.requests.send(token_id.clone()).is_err() {
                // The fetcher stopped (shutdown; otherwise caught above at the next poll).
                return Ok(());
            }
            *due = now + delays.next().unwrap_or(MAX_RETRY);
        }
        Ok(())
    }
}

/// A token's request delays: [`FIRST_RETRY`], doubling up to [`MAX_RETRY`], never ending.
fn retry_delays() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(FIRST_RETRY)
        .with_max_delay(MAX_RETRY)
        .without_max_times()
        .build()
}

/// Fetches books one at a time within the budget and publishes them.
struct Fetcher {
    upstream: Upstream,
    clob_url: String,
    producer: RecordProducer<BookSnapshot>,
}

impl Fetcher {
    async fn run(self, mut receiver: mpsc::UnboundedReceiver<String>, stop: CancellationToken) {
        loop {
            let token_id = tokio::select! {
                () = stop.cancelled() => return,
                received = receiver.recv() => match received {
                    Some(token_id) => token_id,
                    None => return,
                },
            };
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
        let snapshot = match self.upstream.get_book(&self.clob_url, token_id).await {
            Ok(BookAnswer::Book(snapshot)) => snapshot,
            Ok(BookAnswer::NoBook) => return Ok("no_book"),
            Ok(BookAnswer::Unusable { reason, .. }) => {
                return Err(format!("unusable /book answer: {reason}"));
            }
            Err(error) => return Err(error.to_string()),
        };
        polytape_model::book::check_snapshot(&snapshot)
            .map_err(|error| format!("invalid book: {error}"))?;
        self.producer
            .send(&snapshot)
            .await
            .map_err(|error| format!("publishing the book: {error}"))?;
        Ok("published")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_asked_again_after_doubling_delays_up_to_the_cap() {
        let delays: Vec<u64> = retry_delays()
            .take(8)
            .map(|delay| delay.as_secs())
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
