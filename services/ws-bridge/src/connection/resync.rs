//! Resynchronisation: resubscriptions settle into gaps that end at the newest book, and
//! tokens still without a dump get one from REST `/book` (the Polymarket adapter's client).

#[allow(clippy::wildcard_imports)]
use super::*;

impl Shard {
    /// Resubscriptions whose settling time passed close their gaps at the newest book they
    /// saw (those that saw none stay awaiting, for REST); returns when the next one settles.
    pub(super) async fn settle_resubscriptions(
        &mut self,
        session: &mut Session,
    ) -> Result<Option<Instant>, BridgeError> {
        let now = Instant::now();
        let settled: Vec<(String, Option<i64>)> = session
            .resubscribed
            .iter()
            .filter(|(_, resubscription)| resubscription.settles_at <= now)
            .map(|(token, resubscription)| (token.clone(), resubscription.newest_book_ms))
            .collect();
        for (token, newest_book_ms) in settled {
            session.resubscribed.remove(&token);
            let Some(book_ms) = newest_book_ms else {
                continue;
            };
            for record in self.shared.gaps.recovered(&token, Some(book_ms)) {
                self.shared.publisher.publish(Outgoing::Gap(record)).await?;
            }
        }
        Ok(session
            .resubscribed
            .values()
            .map(|resubscription| resubscription.settles_at)
            .min())
    }

    /// Resubscriptions settle, then tokens still without a book when the dump deadline
    /// passes get one from REST `/book`.
    pub(super) async fn fetch_missing_books(
        &mut self,
        session: &mut Session,
    ) -> Result<(), BridgeError> {
        session.dump_deadline = self.settle_resubscriptions(session).await?;
        // A token whose resubscription has not settled may still get its dump: REST later.
        let missing: Vec<String> = session
            .awaiting_dump
            .iter()
            .filter(|token| !session.resubscribed.contains_key(*token))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let upstream = self.shared.upstream.clone();
        let clob_url = self.shared.clob_url.clone();
        let fetches = futures::stream::iter(missing.into_iter().map(|token| {
            let upstream = upstream.clone();
            let clob_url = clob_url.clone();
            async move {
                let answer = upstream.get_book(&clob_url, &token).await;
                (token, answer)
            }
        }))
        .buffer_unordered(REST_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
        let mut retry = false;
        for (token, answer) in fetches {
            if !session.awaiting_dump.contains(&token) {
                // The dump arrived while we were fetching; it is the authority.
                continue;
            }
            match answer {
                Ok(BookAnswer::Book(mut book)) => {
                    RestBookFetched {
                        token_id: &token,
                        outcome: "book",
                    }
                    .emit();
                    // The REST book is placed in this connection's sequence: it stands in for
                    // the dump the connection did not deliver.
                    session.sequence += 1;
                    book.connection_id = Some(session.connection_id.clone());
                    book.sequence = Some(session.sequence);
                    session.awaiting_dump.remove(&token);
                    self.saw_upstream_time(book.timestamp_ms);
                    session.checker.snapshot(&book);
                    let closed = self.shared.gaps.recovered(&token, Some(book.timestamp_ms));
                    self.shared
                        .publisher
                        .publish_from(Some(self.shard), Outgoing::Book(book))
                        .await?;
                    for record in closed {
                        self.shared.publisher.publish(Outgoing::Gap(record)).await?;
                    }
                }
                Ok(BookAnswer::Unusable { reason, body }) => {
                    RestBookFetched {
                        token_id: &token,
                        outcome: "invalid",
                    }
                    .emit();
                    tracing::warn!(token_id = %token, reason = %reason, "unusable rest /book answer");
                    self.dead_letter(session, "invalid_rest_book", "unusable /book answer", body)
                        .await?;
                    retry = true;
                }
                Ok(BookAnswer::NoBook) => {
                    // No order book upstream (closed or unknown token): nothing to wait for.
                    RestBookFetched {
                        token_id: &token,
                        outcome: "no_book",
                    }
                    .emit();
                    session.awaiting_dump.remove(&token);
                    for record in self.shared.gaps.recovered(&token, None) {
                        self.shared.publisher.publish(Outgoing::Gap(record)).await?;
                    }
                }
                Err(error) => {
                    RestBookFetched {
                        token_id: &token,
                        outcome: "failed",
                    }
                    .emit();
                    tracing::debug!(token_id = %token, error = %error, "rest /book failed; retrying later");
                    retry = true;
                }
            }
        }
        if session.awaiting_dump.is_empty() {
            session.got_dump = true;
        } else if retry {
            let retry_at = Instant::now() + self.shared.tuning.dump_timeout;
            session.dump_deadline = Some(
                session
                    .dump_deadline
                    .map_or(retry_at, |deadline| deadline.min(retry_at)),
            );
        }
        Ok(())
    }
}
