//! Trades: the reconciliation ledger's upkeep and the deep reconciliation pass over the
//! horizon (fills upstream indexed after the polls passed their seconds).

#[allow(clippy::wildcard_imports)]
use super::*;

impl Collector {
    /// Keeps the ledger and the edges to the markets being collected, drops the hours that
    /// left the horizon, and registers markets new to this process.
    pub(super) fn prepare_ledger(&self, condition_ids: &[String]) {
        let keep: HashSet<&str> = condition_ids.iter().map(String::as_str).collect();
        let floor = {
            let mut ledger = lock(&self.ledger);
            ledger.retain_markets(|condition_id| keep.contains(condition_id));
            ledger.advance(now_ms() / 1000);
            ledger.floor()
        };
        lock(&self.declared).retain(|_, (start_s, _)| *start_s >= floor);
        self.edges()
            .retain(|condition_id, _| keep.contains(condition_id.as_str()));
        self.register_markets(condition_ids);
        crate::metrics::reconcile_ledger(lock(&self.ledger).len());
    }

    /// Persists what the reconciliation ledger learnt since the last call (see
    /// `reconcile::Ledger::take_writes`): hours first, then the spans that answer for them, each
    /// acknowledged before the next step. Called between rounds, when no send is in flight.
    pub(super) async fn persist_ledger(&self) -> Result<(), CollectError> {
        let writes = {
            let mut ledger = lock(&self.ledger);
            ledger.take_writes(|condition_id| {
                self.checkpoints
                    .get::<TradeCheckpoint>(&format!("trades/{condition_id}"))
                    .and_then(|checkpoint| checkpoint.covered)
                    .map(|(_, high)| high)
            })
        };
        if writes.is_empty() {
            return Ok(());
        }
        let written = async {
            futures::future::try_join_all(
                writes
                    .hours
                    .iter()
                    .map(|(key, hour)| self.checkpoints.publish(key, hour.as_ref())),
            )
            .await?;
            futures::future::try_join_all(
                writes
                    .spans
                    .iter()
                    .map(|(key, span)| self.checkpoints.publish(key, span.as_ref())),
            )
            .await
        }
        .await;
        if let Err(error) = written {
            lock(&self.ledger).requeue(&writes);
            return Err(error);
        }
        crate::metrics::reconcile_ledger_written(writes.len());
        Ok(())
    }

    /// The deep reconciliation pass: re-reads `[to − reconcile_horizon, high)` of every
    /// covered market among `condition_ids`, 50 markets per request and through the same
    /// `/trades` budget as polling, and publishes the fills the ledger does not know — fills
    /// upstream indexed after both the poll and the trailing window had passed them. A market
    /// whose re-read fails is retried by the next pass. Returns the late fills published.
    pub async fn reconcile_round(
        &self,
        condition_ids: &[String],
        to: i64,
    ) -> Result<u64, CollectError> {
        self.prepare_ledger(condition_ids);
        let late_at_start = self.late_sent.load(Ordering::Relaxed);
        let boundaries = self.boundaries(condition_ids, to, false);
        let mut covered: Vec<String> = boundaries.keys().cloned().collect();
        covered.sort();
        let chunks: Vec<Vec<String>> = covered
            .chunks(self.tuning.trades_api.markets_per_request())
            .map(<[String]>::to_vec)
            .collect();
        let fatal: Mutex<Option<CollectError>> = Mutex::new(None);
        futures::stream::iter(chunks)
            .for_each_concurrent(self.tuning.concurrency.max(1), |chunk| {
                let boundaries = &boundaries;
                let fatal = &fatal;
                async move {
                    if self.stop.is_cancelled() {
                        return;
                    }
                    let ranges: Vec<(i64, i64)> = chunk
                        .iter()
                        .filter_map(|condition_id| boundaries.get(condition_id))
                        .map(|boundary| (boundary.read_from, boundary.high - 1))
                        .collect();
                    let lower = ranges.iter().map(|(from, _)| *from).min().unwrap_or(0);
                    let upper = ranges.iter().map(|(_, to)| *to).max().unwrap_or(-1);
                    let mut outgoing: HashMap<String, Outgoing> = HashMap::new();
                    let walked = self
                        .walk_markets(&chunk, boundaries, (lower, upper), &mut outgoing, None)
                        .await;
                    let outcome = match walked {
                        Ok(_) => self.send_outgoing(boundaries, outgoing).await,
                        Err(error) => {
                            self.forget_late(&outgoing);
                            Err(error)
                        }
                    };
                    match outcome {
                        Ok(()) => {
                            let mut ledger = lock(&self.ledger);
                            for condition_id in &chunk {
                                if let Some(boundary) = boundaries.get(condition_id) {
                                    ledger.read_complete(
                                        condition_id,
                                        boundary.read_from,
                                        boundary.high - 1,
                                    );
                                }
                            }
                        }
                        Err(CollectError::Cancelled) => {}
                        Err(error) if error.is_retryable() => {
                            tracing::warn!(
                                markets = chunk.len(),
                                error = %error,
                                "deep reconciliation incomplete for these markets; the next pass retries"
                            );
                            lock(&self.markets_retried).extend(chunk.iter().cloned());
                        }
                        Err(error) => {
                            tracing::error!(error = %error, "deep reconciliation failed");
                            lock(fatal).get_or_insert(error);
                        }
                    }
                }
            })
            .await;
        if let Some(error) = lock(&fatal).take() {
            return Err(error);
        }
        if self.stop.is_cancelled() {
            return Err(CollectError::Cancelled);
        }
        let late = self.late_sent.load(Ordering::Relaxed) - late_at_start;
        tracing::info!(
            markets = covered.len(),
            late,
            ledger = lock(&self.ledger).len(),
            "deep reconciliation pass done"
        );
        Ok(late)
    }
}
