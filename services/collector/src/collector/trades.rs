//! Trades: what every trades walk shares (reading the tape, sending, edges, declared gaps and
//! dense seconds), one market's collection and a round over the markets. The walks are in
//! `trades_walk`, multi-market polling in `trades_poll`, the late-fill ledger and the deep
//! pass in `trades_reconcile`.

#[allow(clippy::wildcard_imports)]
use super::*;

/// See [`Collector::settle`].
pub(super) enum Settled {
    Complete,
    Stopped,
    Retried(String),
    Fatal(CollectError),
}

impl Collector {
    /// One page of the trades tape (`collector_trades_api`) of `markets` (comma-separated
    /// condition ids) for `[start, end]` (inclusive seconds) at `offset`, makers included.
    pub(super) async fn trades_page(
        &self,
        markets: &str,
        start: i64,
        end: i64,
        offset: u32,
    ) -> Result<Vec<Value>, CollectError> {
        polytape_polymarket::data_api::trades_page(
            &self.upstream,
            self.tuning.trades_api,
            &self.data_url,
            markets,
            (start, end),
            offset,
            self.tuning.trades_page_size,
        )
        .await
        .map_err(CollectError::from)
    }

    /// Where refused trade rows of `condition_id` came from, for their dead letters.
    pub(super) fn trades_origin(&self, condition_id: &str) -> String {
        format!(
            "{}?market={condition_id}",
            self.tuning.trades_api.url(&self.data_url)
        )
    }

    /// Validates one `/trades` read requested for `window` (inclusive seconds): fills with
    /// their final ids, and refused rows with their reasons (see `parse::trade_read`).
    pub(super) fn read_trades(&self, rows: &[Value], window: (i64, i64)) -> parse::TradeRead {
        let ticks = self.ticks.lock().ok();
        parse::trade_read(rows, window, now_ms(), |condition_id| {
            ticks
                .as_ref()
                .and_then(|ticks| ticks.get(condition_id).copied())
        })
    }

    /// Sends a read's fills not in `skip` and its refused rows; see [`Self::send_trades`].
    pub(super) async fn send_read(
        &self,
        condition_id: &str,
        read: TradeRead,
        skip: &HashSet<String>,
    ) -> Result<Vec<Trade>, CollectError> {
        let rejected = TradeRead::dead_letters(read.refused);
        self.send_trades(condition_id, read.trades, rejected, skip)
            .await
    }

    /// Sends trades not in `skip` (each id once) in ascending event-time order — ties by trade
    /// id, the candle builder's total order — so downstream sees each market's fills in time
    /// order, and the rejected rows to the DLQ. Returns the trades sent, after the broker
    /// acknowledged them.
    pub(super) async fn send_trades(
        &self,
        condition_id: &str,
        mut trades: Vec<Trade>,
        rejected: Vec<(Vec<u8>, String)>,
        skip: &HashSet<String>,
    ) -> Result<Vec<Trade>, CollectError> {
        let mut seen: HashSet<String> = HashSet::with_capacity(trades.len());
        trades
            .retain(|trade| !skip.contains(&trade.trade_id) && seen.insert(trade.trade_id.clone()));
        trades.sort_by(|left, right| {
            (left.timestamp_ms, &left.trade_id).cmp(&(right.timestamp_ms, &right.trade_id))
        });
        let origin = format!("{}/trades?market={condition_id}", self.data_url);
        self.trades.send_all(&trades).await?;
        self.dead_letter(Endpoint::DataTrades, &origin, rejected)
            .await?;
        self.trades_sent
            .fetch_add(trades.len() as u64, Ordering::Relaxed);
        RecordsProduced {
            topic: self.trades.topic(),
            count: trades.len(),
        }
        .emit();
        self.note_edge(condition_id, &trades);
        {
            let mut ledger = lock(&self.ledger);
            for trade in &trades {
                ledger.record(&trade.condition_id, second_of(trade), &trade.trade_id);
            }
        }
        Ok(trades)
    }

    pub(super) fn edges(&self) -> std::sync::MutexGuard<'_, HashMap<String, Edge>> {
        lock(&self.edges)
    }

    /// The ids sent at a market's covered edge second when that second lies in
    /// `[from, upper]`: an earlier walk in this process sent them, and a walk re-reading that
    /// second skips them.
    pub(super) fn edge_ids(&self, condition_id: &str, from: i64, upper: i64) -> HashSet<String> {
        match self.edges().get(condition_id) {
            Some(edge) if edge.second >= from && edge.second <= upper => edge.ids.clone(),
            _ => HashSet::new(),
        }
    }

    /// Moves `tape` on with `page`, its offset-0 page, validated; a second denser than a page
    /// is read whole with offsets (see [`TapeWalk::read`]). `markets` as in
    /// [`Self::trades_page`].
    pub(super) async fn read_page(
        &self,
        tape: &mut TapeWalk,
        markets: &str,
        page: Vec<Value>,
    ) -> Result<TradeRead, CollectError> {
        tape.read(
            page,
            |rows: &[Value], window| self.read_trades(rows, window),
            |second, offset| self.trades_page(markets, second, second, offset),
        )
        .await
    }

    /// Drops a market's edge once its coverage moved past it: the ids sent at a second are
    /// only needed while that second is the covered edge the next walk re-reads.
    pub(super) fn trim_edge(&self, condition_id: &str, high: i64) {
        let mut edges = self.edges();
        if edges
            .get(condition_id)
            .is_some_and(|edge| edge.second < high)
        {
            edges.remove(condition_id);
        }
    }

    /// Publishes an upstream gap of one market over `[start_s, end_s]` to the continuity
    /// topic (see `gaps`).
    pub(super) async fn declare_gap(
        &self,
        cause: GapCause,
        condition_id: &str,
        span: (i64, i64),
        detail: &str,
    ) -> Result<(), CollectError> {
        let tokens = lock(&self.market_tokens)
            .get(condition_id)
            .cloned()
            .unwrap_or_default();
        let record = gaps::upstream_gap(cause, condition_id, tokens, span, now_ms(), detail);
        // Declared already with this end, or (a walk failing round after round) with an end
        // less than `REDECLARE_AFTER_MS` older: not published again.
        let end_ms = record.gap_end_ms.unwrap_or(record.gap_start_ms);
        if let Some((_, Some(declared_end))) = lock(&self.declared).get(&record.continuity_id)
            && end_ms < declared_end.saturating_add(REDECLARE_AFTER_MS)
        {
            return Ok(());
        }
        self.continuity.send(&record).await?;
        lock(&self.declared).insert(record.continuity_id.clone(), (span.0, Some(end_ms)));
        self.gaps_declared.fetch_add(1, Ordering::Relaxed);
        RecordsProduced {
            topic: self.continuity.topic(),
            count: 1,
        }
        .emit();
        GapDeclared {
            reason: cause.label(),
            condition_id,
            gap_start_ms: record.gap_start_ms,
            gap_end_ms: record.gap_end_ms.unwrap_or(record.gap_start_ms),
            detail,
        }
        .emit();
        Ok(())
    }

    /// Declares the seconds a single-market walk could not read completely.
    pub(super) async fn declare_dense_seconds(
        &self,
        condition_id: &str,
        seconds: &[i64],
    ) -> Result<(), CollectError> {
        for second in seconds {
            self.declare_gap(
                GapCause::DenseSecond,
                condition_id,
                (*second, *second),
                "more fills in one second than the Data API's 10,000-offset cap returns",
            )
            .await?;
        }
        Ok(())
    }

    pub(super) fn note_edge(&self, condition_id: &str, trades: &[Trade]) {
        if trades.is_empty() {
            return;
        }
        let mut edges = self.edges();
        let edge = edges.entry(condition_id.to_owned()).or_default();
        for trade in trades {
            let second = trade.timestamp_ms.div_euclid(1000);
            if second > edge.second {
                edge.second = second;
                edge.ids.clear();
            }
            if second == edge.second {
                edge.ids.insert(trade.trade_id.clone());
            }
        }
    }

    /// Brings a market's trades coverage to `[from, to]` (seconds). Walks that extend the
    /// coverage forward (the first one, and every later one) send their fills in ascending time
    /// order and checkpoint once acknowledged; a walk reaching further back than the coverage
    /// (a `backfill --from` older than what is stored) streams newest-first with a checkpoint
    /// per page.
    pub async fn collect_trades(
        &self,
        condition_id: &str,
        from: i64,
        to: i64,
    ) -> Result<(), CollectError> {
        let key = format!("trades/{condition_id}");
        self.register_markets(std::slice::from_ref(&condition_id.to_owned()));
        let mut checkpoint: TradeCheckpoint = self.checkpoints.get(&key).unwrap_or_default();
        while let Some(walk) = checkpoint.next_walk(from, to) {
            checkpoint.walk = Some(walk);
            let extends_backwards = checkpoint
                .covered
                .is_some_and(|(low, _)| walk.to <= low && walk.from < low);
            if extends_backwards {
                self.walk(condition_id, &key, &mut checkpoint).await?;
            } else {
                self.walk_in_time_order(condition_id, &key, &mut checkpoint)
                    .await?;
            }
            checkpoint.finish_walk();
            self.checkpoints.commit(&key, &checkpoint).await?;
        }
        if let Some((_, high)) = checkpoint.covered {
            crate::metrics::checkpoint_lag("trades", (now_ms() / 1000 - high).max(0) as f64);
            self.trim_edge(condition_id, high);
        }
        Ok(())
    }

    /// Tells the reconciliation ledger about markets it has not seen in this process, with
    /// what an earlier process may have sent of them (their checkpoint).
    pub(super) fn register_markets(&self, condition_ids: &[String]) {
        let mut ledger = lock(&self.ledger);
        for condition_id in condition_ids {
            if ledger.is_registered(condition_id) {
                continue;
            }
            let checkpoint: TradeCheckpoint = self
                .checkpoints
                .get(&format!("trades/{condition_id}"))
                .unwrap_or_default();
            let sent_up_to = checkpoint
                .covered
                .map(|(_, high)| high)
                .max(checkpoint.walk.map(|walk| walk.to));
            ledger.register(condition_id, sent_up_to);
        }
    }

    /// One round over the selected markets (brings each to `[from, to]`): how many completed,
    /// and why the first incomplete one is. Public for the budget benchmark, which times this
    /// phase alone.
    pub async fn trades_round(
        &self,
        condition_ids: &[String],
        from: i64,
        to: i64,
    ) -> Result<RoundOutcome, CollectError> {
        let progress = crate::progress::Progress::new(condition_ids.len());
        let done = AtomicUsize::new(0);
        let complete = AtomicUsize::new(0);
        let fatal: Mutex<Option<CollectError>> = Mutex::new(None);
        let first_incomplete: Mutex<Option<String>> = Mutex::new(None);
        let records_at_start = self.trades_sent.load(Ordering::Relaxed);
        self.prepare_ledger(condition_ids);
        // Markets already covered up to shortly before `to` are polled together, many per
        // request; the rest (new markets, backfills, long outages) walk one by one.
        let (caught_up, single): (Vec<String>, Vec<String>) = condition_ids
            .iter()
            .cloned()
            .partition(|condition_id| self.caught_up(condition_id, from, to));
        let mut work: Vec<Vec<String>> = caught_up
            .chunks(self.tuning.trades_api.markets_per_request())
            .map(<[String]>::to_vec)
            .collect();
        work.extend(single.into_iter().map(|condition_id| vec![condition_id]));
        futures::stream::iter(work)
            .for_each_concurrent(self.tuning.concurrency.max(1), |markets| {
                let done = &done;
                let complete = &complete;
                let fatal = &fatal;
                let first_incomplete = &first_incomplete;
                let progress = &progress;
                async move {
                    if self.stop.is_cancelled() {
                        return;
                    }
                    let outcome = match markets.as_slice() {
                        [condition_id] if !self.caught_up(condition_id, from, to) => {
                            self.collect_trades(condition_id, from, to).await
                        }
                        _ => self.poll_markets(&markets, to).await,
                    };
                    match self.settle(&markets, from, to, outcome).await {
                        Settled::Complete => {
                            complete.fetch_add(markets.len(), Ordering::Relaxed);
                        }
                        Settled::Stopped => {}
                        Settled::Retried(why) => {
                            if let Ok(mut first) = first_incomplete.lock() {
                                first.get_or_insert(why);
                            }
                        }
                        Settled::Fatal(error) => {
                            if let Ok(mut fatal) = fatal.lock() {
                                fatal.get_or_insert(error);
                            }
                        }
                    }
                    let finished = done.fetch_add(markets.len(), Ordering::Relaxed) + markets.len();
                    let records = self.trades_sent.load(Ordering::Relaxed) - records_at_start;
                    progress.market_finished(finished, records);
                }
            })
            .await;
        if let Some(error) = fatal.lock().ok().and_then(|mut fatal| fatal.take()) {
            return Err(error);
        }
        if self.stop.is_cancelled() {
            return Err(CollectError::Cancelled);
        }
        Ok(RoundOutcome {
            complete: complete.into_inner(),
            first_incomplete: first_incomplete.into_inner().ok().flatten(),
        })
    }

    /// What the walk or poll of `markets` came to: complete; stopped; incomplete for a reason
    /// worth retrying (dead-lettered, the markets noted as retried and, for an upstream
    /// failure, what stays unread declared as a gap; the next round retries); or failed for
    /// good (the caller stops collecting).
    pub(super) async fn settle(
        &self,
        markets: &[String],
        from: i64,
        to: i64,
        outcome: Result<(), CollectError>,
    ) -> Settled {
        let label = markets.join(",");
        match outcome {
            Ok(()) => Settled::Complete,
            Err(CollectError::Cancelled) => Settled::Stopped,
            Err(error) if error.is_retryable() => {
                if let Err(error) = self.dead_letter_page(&error).await {
                    tracing::warn!(error = %error, "cannot write a dead letter");
                }
                tracing::warn!(condition_ids = %label, error = %error, "trades of these markets incomplete; retried next round");
                lock(&self.markets_retried).extend(markets.iter().cloned());
                if error.is_upstream() {
                    self.declare_unread(markets, from, to, &error).await;
                }
                Settled::Retried(format!("{label}: {error}"))
            }
            Err(error) => {
                tracing::error!(condition_ids = %label, error = %error, "trades collection failed");
                Settled::Fatal(error)
            }
        }
    }

    /// Declares what a failed walk left unread of each market (the unread part of its walk,
    /// from its checkpoint) as an upstream gap; the next round retries the walk, and the
    /// declaration says so.
    pub(super) async fn declare_unread(
        &self,
        condition_ids: &[String],
        from: i64,
        to: i64,
        error: &CollectError,
    ) {
        let detail = format!(
            "trades walk incomplete after every retry ({error}); fills in this span may be missing until a later round reads them"
        );
        for condition_id in condition_ids {
            let checkpoint: TradeCheckpoint = self
                .checkpoints
                .get(&format!("trades/{condition_id}"))
                .unwrap_or_default();
            let Some(walk) = checkpoint.next_walk(from, to) else {
                continue;
            };
            if let Err(error) = self
                .declare_gap(
                    GapCause::WalkFailed,
                    condition_id,
                    (walk.from, walk.upper),
                    &detail,
                )
                .await
            {
                tracing::warn!(condition_id, error = %error, "cannot declare an upstream gap");
            }
        }
    }
}
