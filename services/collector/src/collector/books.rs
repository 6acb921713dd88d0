//! REST book snapshots: `POST /books` in batches, on an interval.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Collector {
    /// One REST snapshot of `tokens`' books: `POST /books` in batches of
    /// `book_snapshot_batch`, each book sent unless identical (timestamp and hash) to the
    /// last one this process sent for the token. Unknown and closed tokens are skipped
    /// upstream. Snapshots are point-in-time, so there is no checkpoint: after a restart the
    /// next snapshot simply describes the books as they are then.
    pub async fn collect_books(&self, tokens: &[String]) -> Result<u64, CollectError> {
        let url = format!("{}/books", self.clob_url);
        let batch = self.tuning.book_snapshot_batch.max(1);
        let batches: Vec<Vec<String>> = tokens.chunks(batch).map(<[String]>::to_vec).collect();
        let results: Vec<Result<u64, CollectError>> = futures::stream::iter(batches)
            .map(|batch| {
                let url = &url;
                async move { self.books_batch(url, &batch).await }
            })
            .buffer_unordered(self.tuning.concurrency.max(1))
            .collect()
            .await;
        let mut sent = 0;
        for result in results {
            match result {
                Ok(count) => sent += count,
                Err(CollectError::Cancelled) => return Err(CollectError::Cancelled),
                Err(error) if error.is_retryable() => {
                    self.dead_letter_page(&error).await?;
                    tracing::warn!(error = %error, "book snapshot batch failed; the next snapshot retries");
                }
                Err(error) => return Err(error),
            }
        }
        // Tokens no longer snapshotted (resolved, or dropped from the list) are forgotten.
        let current: HashSet<&str> = tokens.iter().map(String::as_str).collect();
        lock(&self.last_books).retain(|token, _| current.contains(token.as_str()));
        Ok(sent)
    }

    pub(super) async fn books_batch(
        &self,
        url: &str,
        tokens: &[String],
    ) -> Result<u64, CollectError> {
        let body = Value::Array(
            tokens
                .iter()
                .map(|token| serde_json::json!({ "token_id": token }))
                .collect(),
        );
        let rows = self
            .upstream
            .post_page(Endpoint::ClobBooks, url, &body, parse::array_page)
            .await?;
        let received = now_ms();
        let mut books = Vec::with_capacity(rows.len());
        let mut rejected = Vec::new();
        for row in &rows {
            match parse::book_snapshot(row, received) {
                Ok(book) => books.push(book),
                Err(error) => rejected.push((row.to_string().into_bytes(), error.to_string())),
            }
        }
        {
            let last_books = match self.last_books.lock() {
                Ok(last_books) => last_books,
                Err(poisoned) => poisoned.into_inner(),
            };
            books.retain(|book| {
                last_books.get(&book.token_id) != Some(&(book.timestamp_ms, book.hash.clone()))
            });
        }
        self.books.send_all(&books).await?;
        self.dead_letter(Endpoint::ClobBooks, url, rejected).await?;
        {
            let mut last_books = match self.last_books.lock() {
                Ok(last_books) => last_books,
                Err(poisoned) => poisoned.into_inner(),
            };
            for book in &books {
                last_books.insert(
                    book.token_id.clone(),
                    (book.timestamp_ms, book.hash.clone()),
                );
            }
        }
        self.books_sent
            .fetch_add(books.len() as u64, Ordering::Relaxed);
        RecordsProduced {
            topic: self.books.topic(),
            count: books.len(),
        }
        .emit();
        Ok(books.len() as u64)
    }

    /// The tokens to snapshot: `collector_book_snapshot_tokens` if set (the tokens the WS
    /// bridge does not cover), else every token of the selected open markets.
    pub(super) fn snapshot_tokens(&self, selected: &[Market]) -> Vec<String> {
        if !self.tuning.book_snapshot_tokens.is_empty() {
            return self.tuning.book_snapshot_tokens.clone();
        }
        selected
            .iter()
            .filter(|market| !market.closed)
            .flat_map(|market| market.tokens.iter().map(|token| token.token_id.clone()))
            .collect()
    }

    /// Snapshots the current token list every `book_snapshot_interval` until stopped.
    pub(super) async fn books_loop(&self) -> Result<(), CollectError> {
        loop {
            let tokens = match self.book_tokens.lock() {
                Ok(tokens) => tokens.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            if !tokens.is_empty() {
                match self.collect_books(&tokens).await {
                    Ok(sent) => tracing::debug!(tokens = tokens.len(), sent, "book snapshot taken"),
                    Err(CollectError::Cancelled) => return Err(CollectError::Cancelled),
                    Err(error) if error.is_retryable() => {
                        tracing::warn!(error = %error, "book snapshot failed; the next one retries");
                    }
                    Err(error) => return Err(error),
                }
            }
            // Before the first crawl the list is empty: look again soon rather than a full
            // interval later.
            let pause = if tokens.is_empty() {
                Duration::from_secs(1).min(self.tuning.book_snapshot_interval)
            } else {
                self.tuning.book_snapshot_interval
            };
            tokio::select! {
                () = self.stop.cancelled() => return Err(CollectError::Cancelled),
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    // ---------------------------------------------------------------------- leaderboard
}
