//! Price history: `/prices-history` per token, checkpointed per token.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Collector {
    /// Points of each token's `/prices-history` newer than its checkpoint.
    pub async fn collect_prices(
        &self,
        token_id: &str,
        from: i64,
        to: i64,
    ) -> Result<(), CollectError> {
        let key = format!("prices/{token_id}");
        let last: Option<i64> = self.checkpoints.get(&key);
        let start = last.map_or(from, |last| last + 1);
        if start > to {
            return Ok(());
        }
        let fidelity = self.tuning.price_history_fidelity.max(1);
        let url = format!("{}/prices-history", self.clob_url);
        let query = [
            ("market", token_id.to_owned()),
            ("startTs", start.to_string()),
            ("endTs", to.to_string()),
            ("fidelity", fidelity.to_string()),
        ];
        let rows = self
            .upstream
            .get_page(
                Endpoint::ClobPricesHistory,
                &url,
                &query,
                parse::history_page,
            )
            .await?;
        let fetched = now_ms();
        let mut points = Vec::new();
        let mut rejected = Vec::new();
        for row in &rows {
            match parse::price_point(
                row,
                token_id,
                i32::try_from(fidelity).unwrap_or(i32::MAX),
                fetched,
            ) {
                Ok(point) => points.push(point),
                Err(error) => rejected.push((row.to_string().into_bytes(), error.to_string())),
            }
        }
        self.prices.send_all(&points).await?;
        self.dead_letter(Endpoint::ClobPricesHistory, &url, rejected)
            .await?;
        self.prices_sent
            .fetch_add(points.len() as u64, Ordering::Relaxed);
        RecordsProduced {
            topic: self.prices.topic(),
            count: points.len(),
        }
        .emit();
        // Only points up to the last one seen are final: later ones may still be added.
        if let Some(newest) = points.iter().map(|point| point.timestamp_ms / 1000).max() {
            self.checkpoints.commit(&key, &newest).await?;
        }
        Ok(())
    }

    // ------------------------------------------------------------------- book snapshots

    pub(super) async fn prices_round(
        &self,
        markets: &[Market],
        from: i64,
        to: i64,
    ) -> Result<(), CollectError> {
        let tokens: Vec<String> = markets
            .iter()
            .flat_map(|market| market.tokens.iter().map(|token| token.token_id.clone()))
            .collect();
        let results: Vec<Result<(), CollectError>> = futures::stream::iter(tokens)
            .map(|token| async move { self.collect_prices(&token, from, to).await })
            .buffer_unordered(self.tuning.concurrency.max(1))
            .collect()
            .await;
        for result in results {
            match result {
                Ok(()) => {}
                Err(CollectError::Cancelled) => return Err(CollectError::Cancelled),
                Err(error) if error.is_retryable() => {
                    self.dead_letter_page(&error).await?;
                    tracing::warn!(error = %error, "price history incomplete; retried next round");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}
