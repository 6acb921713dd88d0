//! Trades: the per-market time-ordered backfill walk, multi-market polling, dense seconds,
//! late fills (trailing window and deep reconciliation) and declared upstream gaps.

#[allow(clippy::wildcard_imports)]
use super::*;

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

    /// Walks `checkpoint.walk` like [`Self::walk`] but keeps the fills until the walk is
    /// complete, then sends them oldest first: the candle builder judges lateness per token by
    /// event time, so a market's history must not arrive newest-first. Memory is bounded: a
    /// walk that buffers more than `MAX_BUFFERED_TRADES` fills is narrowed to what is older than
    /// the oldest second it reached (those newer fills are fetched again by the next walk), so
    /// a dense market is filled in several ascending walks. The fills go out in chunks of at
    /// most an hour of event time, each checkpointed once acknowledged (see
    /// [`crate::send_chunks`]): a crash re-sends at most one chunk, with the same ids.
    pub(super) async fn walk_in_time_order(
        &self,
        condition_id: &str,
        key: &str,
        checkpoint: &mut TradeCheckpoint,
    ) -> Result<(), CollectError> {
        let Some(initial) = checkpoint.walk else {
            return Ok(());
        };
        // Fills at the covered edge second were sent by an earlier walk in this process.
        let edge_ids: HashSet<String> = {
            let edges = self.edges();
            match edges.get(condition_id) {
                Some(edge) if edge.second >= initial.from && edge.second <= initial.upper => {
                    edge.ids.clone()
                }
                _ => HashSet::new(),
            }
        };
        let mut tape = TapeWalk::new(
            condition_id,
            initial.from,
            initial.upper,
            self.tuning.trades_page_size,
        );
        // Pages share their boundary second: a fill read twice is sent once (`send_trades`
        // keeps one fill per id, and its occurrence ids are the same in both reads).
        let mut trades: Vec<Trade> = Vec::new();
        let mut refused: Vec<parse::Refused> = Vec::new();
        while let Some(upper) = tape.upper() {
            let page = self
                .trades_page(condition_id, initial.from, upper, 0)
                .await?;
            let read = tape
                .read(
                    page,
                    |rows: &[Value], window| self.read_trades(rows, window),
                    |second, offset| self.trades_page(condition_id, second, second, offset),
                )
                .await?;
            trades.extend(read.trades);
            refused.extend(read.refused);
            if let Some(upper) = tape.upper()
                && trades.len() > MAX_BUFFERED_TRADES
                && upper > initial.from
            {
                // Too dense for one walk: fill `[from, upper]` first (its fills are all older
                // than what was buffered), then the next walk takes the newer part.
                tracing::debug!(
                    condition_id,
                    buffered = trades.len(),
                    narrowed_to = upper,
                    "trades walk narrowed to keep memory bounded"
                );
                trades.clear();
                let origin = self.trades_origin(condition_id);
                self.dead_letter(
                    self.tuning.trades_api.endpoint(),
                    &origin,
                    TradeRead::dead_letters(std::mem::take(&mut refused)),
                )
                .await?;
                checkpoint.walk = Some(crate::checkpoint::Walk {
                    from: initial.from,
                    to: upper,
                    upper,
                });
                return Box::pin(self.walk_in_time_order(condition_id, key, checkpoint)).await;
            }
        }
        let mut seen: HashSet<String> = HashSet::with_capacity(trades.len());
        trades.retain(|trade| {
            !edge_ids.contains(&trade.trade_id) && seen.insert(trade.trade_id.clone())
        });
        trades.sort_by(|left, right| {
            (left.timestamp_ms, &left.trade_id).cmp(&(right.timestamp_ms, &right.trade_id))
        });
        // The seconds the walk could not read completely are declared before any chunk is
        // checkpointed past them (the declaration is idempotent: a repeat after a crash
        // carries the same continuity id).
        self.declare_dense_seconds(condition_id, tape.truncated())
            .await?;
        let mut rejected = TradeRead::dead_letters(refused);
        let chunks = crate::send_chunks::oldest_first_chunks(&trades);
        for (number, chunk) in chunks.iter().enumerate() {
            self.send_trades(
                condition_id,
                trades[chunk.clone()].to_vec(),
                std::mem::take(&mut rejected),
                &HashSet::new(),
            )
            .await?;
            // Every fill before the next chunk's first second is acknowledged, and the walk
            // read that stretch completely: the coverage moves to the second just before it
            // (holding no fill), so a crash re-sends the next chunk alone — never this chunk's
            // last second, which may lie far behind the next chunk after a quiet spell.
            let Some(next_chunk) = chunks.get(number + 1) else {
                break;
            };
            let boundary = trades[next_chunk.start].timestamp_ms.div_euclid(1_000) - 1;
            if boundary <= initial.from {
                continue;
            }
            checkpoint.walk = Some(crate::checkpoint::Walk {
                from: initial.from,
                to: boundary,
                upper: boundary,
            });
            checkpoint.finish_walk();
            checkpoint.walk = Some(crate::checkpoint::Walk {
                from: boundary,
                to: initial.to,
                upper: initial.upper,
            });
            self.checkpoints.commit(key, checkpoint).await?;
        }
        if !rejected.is_empty() {
            self.dead_letter(
                self.tuning.trades_api.endpoint(),
                &self.trades_origin(condition_id),
                rejected,
            )
            .await?;
        }
        Ok(())
    }

    /// Walks `checkpoint.walk` newest-first (see [`TapeWalk`]: each request asks for
    /// `[from, upper]` at offset 0 and the next `upper` is the oldest second of the page's valid
    /// fills, so no window ever needs the 10,000-offset cap; a second holding more than a page
    /// is read with offsets), sending and checkpointing page by page.
    pub(super) async fn walk(
        &self,
        condition_id: &str,
        key: &str,
        checkpoint: &mut TradeCheckpoint,
    ) -> Result<(), CollectError> {
        let Some(initial) = checkpoint.walk else {
            return Ok(());
        };
        // Fills at the covered edge second were sent by an earlier walk in this process; they
        // stay skipped for the whole walk (the edge second can be re-read by several pages).
        let edge_ids: HashSet<String> = {
            let edges = self.edges();
            match edges.get(condition_id) {
                Some(edge) if edge.second >= initial.from && edge.second <= initial.upper => {
                    edge.ids.clone()
                }
                _ => HashSet::new(),
            }
        };
        let mut skip = edge_ids.clone();
        let mut tape = TapeWalk::new(
            condition_id,
            initial.from,
            initial.upper,
            self.tuning.trades_page_size,
        );
        // The next page, fetched while the previous one was being produced.
        let mut prefetched: Option<Vec<Value>> = None;
        while let Some(upper) = tape.upper() {
            let page = match prefetched.take() {
                Some(rows) => rows,
                None => {
                    self.trades_page(condition_id, initial.from, upper, 0)
                        .await?
                }
            };
            let read = tape
                .read(
                    page,
                    |rows: &[Value], window| self.read_trades(rows, window),
                    |second, offset| self.trades_page(condition_id, second, second, offset),
                )
                .await?;
            let Some(next_upper) = tape.upper() else {
                // The last page; the caller records the walk as complete.
                self.send_read(condition_id, read, &skip).await?;
                self.declare_dense_seconds(condition_id, tape.truncated())
                    .await?;
                return Ok(());
            };
            // The next request depends only on where this read left the walk, so it is
            // fetched while this read is produced and checkpointed: a long walk (one market
            // alone at the end of a round) waits on one of the two, not their sum. Produce
            // order is unchanged: the next page is sent after.
            let next = TradeCheckpoint {
                walk: Some(crate::checkpoint::Walk {
                    upper: next_upper,
                    ..initial
                }),
                ..*checkpoint
            };
            let send_and_commit = async {
                let sent = self.send_read(condition_id, read, &skip).await?;
                self.checkpoints.commit(key, &next).await?;
                Ok::<Vec<Trade>, CollectError>(sent)
            };
            let (sent, next_rows) = tokio::join!(
                send_and_commit,
                self.trades_page(condition_id, initial.from, next_upper, 0)
            );
            let sent = sent?;
            *checkpoint = next;
            // Fills at `next_upper` sent now are on the next page too.
            skip = sent
                .iter()
                .filter(|trade| trade.timestamp_ms.div_euclid(1000) == next_upper)
                .map(|trade| trade.trade_id.clone())
                .chain(edge_ids.iter().cloned())
                .collect();
            prefetched = Some(next_rows?);
        }
        Ok(())
    }

    // -------------------------------------------------------------- incremental polling

    /// Whether a market only needs polling forward: covered from `from` (or earlier) up to
    /// within `POLL_CATCH_UP_S` of `to`, with no walk in progress.
    pub(super) fn caught_up(&self, condition_id: &str, from: i64, to: i64) -> bool {
        let checkpoint: TradeCheckpoint = self
            .checkpoints
            .get(&format!("trades/{condition_id}"))
            .unwrap_or_default();
        match (checkpoint.walk, checkpoint.covered) {
            (None, Some((low, high))) => low <= from && high < to && to - high <= POLL_CATCH_UP_S,
            _ => false,
        }
    }

    /// Polls caught-up markets together: one time walk over `[lower, to]` with
    /// `market=<id>,<id>,…`, so a round costs one request per chunk (plus one per `page_size`
    /// fills read) instead of one per market. `lower` is the lowest covered edge, or lower by
    /// `reconcile_window`: the same requests re-read the trailing window of covered time for
    /// fills upstream indexed after an earlier poll passed them (see `reconcile`). A fill newer
    /// than its market's coverage (`> high`, or `= high` and not among the fills sent at that
    /// second) is sent; one inside the coverage only if the ledger does not know it (late).
    /// Every market's coverage moves to `to` only after the whole walk was acknowledged; a
    /// crash mid-walk re-sends at most this walk's fills, with the same ids. A walk buffering
    /// more than `MAX_BUFFERED_TRADES` fills is narrowed: `[lower, upper]` first, then the
    /// rest.
    pub(super) async fn poll_markets(
        &self,
        condition_ids: &[String],
        to: i64,
    ) -> Result<(), CollectError> {
        let mut target = to;
        loop {
            match self.poll_walk(condition_ids, target).await? {
                Some(narrowed) => target = narrowed,
                None if target >= to => return Ok(()),
                None => target = to,
            }
        }
    }

    /// The covered markets among `condition_ids` and what a walk up to `to` reads of each:
    /// polling (`forward`) re-reads the last `reconcile_window` of their coverage and goes on
    /// past it; the deep pass re-reads `[to − reconcile_horizon, high)` (markets with nothing
    /// there are left out). Never below the coverage or the ledger's floor.
    pub(super) fn boundaries(
        &self,
        condition_ids: &[String],
        to: i64,
        forward: bool,
    ) -> HashMap<String, Boundary> {
        let back = if forward {
            self.tuning.reconcile_window
        } else {
            self.tuning.reconcile_horizon
        };
        let back = i64::try_from(back.as_secs()).unwrap_or(i64::MAX);
        let floor = lock(&self.ledger).floor();
        let edges = self.edges();
        let mut boundaries = HashMap::new();
        for condition_id in condition_ids {
            let checkpoint: TradeCheckpoint = self
                .checkpoints
                .get(&format!("trades/{condition_id}"))
                .unwrap_or_default();
            let Some((low, high)) = checkpoint.covered else {
                continue;
            };
            let read_from = if back > 0 {
                to.saturating_sub(back).max(low).max(floor).min(high)
            } else {
                high
            };
            if !forward && read_from >= high {
                continue;
            }
            let sent_at_high = edges
                .get(condition_id)
                .filter(|edge| edge.second == high)
                .map(|edge| edge.ids.clone())
                .unwrap_or_default();
            boundaries.insert(
                condition_id.clone(),
                Boundary {
                    low,
                    high,
                    read_from,
                    forward,
                    sent_at_high,
                },
            );
        }
        boundaries
    }

    /// One multi-market polling walk up to `to` (see [`Self::poll_markets`]). `Ok(Some(upper))`
    /// when it stopped to keep memory bounded, with nothing sent: `[.., upper]` comes first.
    pub(super) async fn poll_walk(
        &self,
        condition_ids: &[String],
        to: i64,
    ) -> Result<Option<i64>, CollectError> {
        // Boundaries as they are now: sending fills moves the in-memory edges, and the filter
        // must keep judging by what was covered before this walk.
        let boundaries = self.boundaries(condition_ids, to, true);
        let Some(lowest_high) = boundaries.values().map(|boundary| boundary.high).min() else {
            return Ok(None);
        };
        let lower = boundaries
            .values()
            .map(|boundary| boundary.read_from)
            .min()
            .unwrap_or(lowest_high);
        // The walk's fills are sent together at the end, so each market's fills go out in time
        // order (a catch-up walk may span more pages than the candle builder's lateness).
        let mut outgoing: HashMap<String, Outgoing> = HashMap::new();
        let walked = self
            .walk_markets(
                condition_ids,
                &boundaries,
                (lower, to),
                &mut outgoing,
                Some(lowest_high),
            )
            .await;
        match walked {
            Ok(None) => {}
            Ok(Some(narrowed)) => {
                self.forget_late(&outgoing);
                tracing::debug!(
                    markets = condition_ids.len(),
                    narrowed_to = narrowed,
                    "polling walk narrowed to keep memory bounded"
                );
                return Ok(Some(narrowed));
            }
            Err(error) => {
                self.forget_late(&outgoing);
                return Err(error);
            }
        }
        self.send_outgoing(&boundaries, outgoing).await?;
        let commits = boundaries.iter().map(|(condition_id, boundary)| {
            let checkpoint = TradeCheckpoint {
                covered: Some((boundary.low, boundary.high.max(to))),
                walk: None,
            };
            let key = format!("trades/{condition_id}");
            async move { self.checkpoints.commit(&key, &checkpoint).await }
        });
        futures::future::try_join_all(commits).await?;
        {
            let mut ledger = lock(&self.ledger);
            for (condition_id, boundary) in &boundaries {
                ledger.read_complete(condition_id, boundary.read_from, to);
            }
        }
        for (condition_id, boundary) in &boundaries {
            self.trim_edge(condition_id, boundary.high.max(to));
        }
        crate::metrics::checkpoint_lag("trades", (now_ms() / 1000 - to).max(0) as f64);
        Ok(None)
    }

    /// Walks `[lower, upper]` of `condition_ids` together (one csv filter) and sorts every
    /// page into `outgoing` ([`Self::sort_read`]). Seconds past the offset cap — a cap the
    /// markets of one request share — are re-read market by market, and a second still past it
    /// for one market is declared as an upstream gap. Polling (`narrow_above` = its lowest
    /// covered edge): past `MAX_BUFFERED_TRADES` buffered fills the walk stops at its current
    /// upper bound if that is above the edge, and returns it. The deep pass (`None`): what is
    /// buffered (late fills only) is sent mid-walk instead.
    pub(super) async fn walk_markets(
        &self,
        condition_ids: &[String],
        boundaries: &HashMap<String, Boundary>,
        (lower, upper): (i64, i64),
        outgoing: &mut HashMap<String, Outgoing>,
        narrow_above: Option<i64>,
    ) -> Result<Option<i64>, CollectError> {
        let forward = narrow_above.is_some();
        let market_list = condition_ids.join(",");
        let mut tape = TapeWalk::new(
            market_list.as_str(),
            lower,
            upper,
            self.tuning.trades_page_size,
        );
        while let Some(top) = tape.upper() {
            let page = self.trades_page(&market_list, lower, top, 0).await?;
            let read = tape
                .read(
                    page,
                    |rows: &[Value], window| self.read_trades(rows, window),
                    |second, offset| self.trades_page(&market_list, second, second, offset),
                )
                .await?;
            self.sort_read(boundaries, read, outgoing, forward);
            let buffered: usize = outgoing.values().map(|market| market.trades.len()).sum();
            if buffered > MAX_BUFFERED_TRADES
                && let Some(next) = tape.upper()
            {
                match narrow_above {
                    Some(edge) if next > edge => return Ok(Some(next)),
                    Some(_) => {}
                    None => {
                        self.send_outgoing(boundaries, std::mem::take(outgoing))
                            .await?;
                    }
                }
            }
        }
        for second in tape.truncated() {
            self.reread_dense_second(condition_ids, boundaries, *second, outgoing, forward)
                .await?;
        }
        Ok(None)
    }

    /// A second a multi-market walk could not read completely (its markets share the offset
    /// cap): each market of the walk that the second concerns is read alone, with the whole
    /// cap to itself. A second still past the cap for one market is declared.
    pub(super) async fn reread_dense_second(
        &self,
        condition_ids: &[String],
        boundaries: &HashMap<String, Boundary>,
        second: i64,
        outgoing: &mut HashMap<String, Outgoing>,
        forward: bool,
    ) -> Result<(), CollectError> {
        let concerned: Vec<&String> = condition_ids
            .iter()
            .filter(|condition_id| {
                boundaries.get(*condition_id).is_some_and(|boundary| {
                    second >= boundary.read_from && (forward || second < boundary.high)
                })
            })
            .collect();
        if let [condition_id] = condition_ids {
            // Alone already: nothing left to split.
            if !concerned.is_empty() {
                self.declare_dense_seconds(condition_id, &[second]).await?;
            }
            return Ok(());
        }
        for condition_id in concerned {
            let mut tape = TapeWalk::new(
                condition_id.as_str(),
                second,
                second,
                self.tuning.trades_page_size,
            );
            while let Some(top) = tape.upper() {
                let page = self.trades_page(condition_id, second, top, 0).await?;
                let read = tape
                    .read(
                        page,
                        |rows: &[Value], window| self.read_trades(rows, window),
                        |second, offset| self.trades_page(condition_id, second, second, offset),
                    )
                    .await?;
                // The walk's partial read of this second numbered its rows like this complete
                // one (`parse::trade_read`): what was already sorted is skipped by id.
                self.sort_read(boundaries, read, outgoing, forward);
            }
            self.declare_dense_seconds(condition_id, tape.truncated())
                .await?;
        }
        Ok(())
    }

    /// Sorts a multi-market read by market: fills newer than the market's coverage (polling
    /// only), the re-read edge second, and fills inside the coverage judged by the ledger
    /// (late ones are sent and counted, known ones skipped, see [`Verdict`]). Refused rows
    /// inside the coverage were dead-lettered when it was walked; a reconciliation does not
    /// repeat them.
    pub(super) fn sort_read(
        &self,
        boundaries: &HashMap<String, Boundary>,
        read: TradeRead,
        outgoing: &mut HashMap<String, Outgoing>,
        forward: bool,
    ) {
        let discovered_ms = now_ms();
        {
            let mut ledger = lock(&self.ledger);
            for trade in read.trades {
                // A fill of a market we did not ask for: upstream's mistake, not our data.
                let Some(boundary) = boundaries.get(&trade.condition_id) else {
                    continue;
                };
                let second = second_of(&trade);
                if second < boundary.read_from || second < boundary.low {
                    continue;
                }
                if second > boundary.high {
                    if boundary.forward {
                        outgoing
                            .entry(trade.condition_id.clone())
                            .or_default()
                            .trades
                            .push(trade);
                    }
                    continue;
                }
                if second == boundary.high
                    && (!boundary.forward || boundary.sent_at_high.contains(&trade.trade_id))
                {
                    continue;
                }
                match ledger.judge(&trade.condition_id, second, &trade.trade_id) {
                    Verdict::Known => {}
                    // The covered edge second is re-read on purpose (fills may have been added
                    // to it since it was walked, by this process or an earlier one); older
                    // covered time the ledger cannot judge was sent by an earlier walk.
                    Verdict::Unknown | Verdict::Baseline => {
                        if second == boundary.high {
                            outgoing
                                .entry(trade.condition_id.clone())
                                .or_default()
                                .trades
                                .push(trade);
                        }
                    }
                    Verdict::Late => {
                        let lateness_s = (discovered_ms - trade.timestamp_ms) as f64 / 1000.0;
                        let market = outgoing.entry(trade.condition_id.clone()).or_default();
                        market.late.push((trade.clone(), lateness_s));
                        market.trades.push(trade);
                    }
                }
            }
        }
        for refused in read.refused {
            match boundaries.get(&refused.condition_id) {
                _ if !forward => continue,
                // Inside the market's coverage: dead-lettered when it was walked.
                Some(boundary) if refused.second.is_some_and(|second| second < boundary.high) => {
                    continue;
                }
                Some(_) => {}
                None if !refused.condition_id.is_empty() => continue,
                // No market at all: it goes to the DLQ with the reason.
                None => {}
            }
            outgoing
                .entry(refused.condition_id)
                .or_default()
                .rejected
                .push((refused.payload, refused.reason));
        }
    }

    /// Sends a multi-market walk's fills and refused rows, market by market (each market's
    /// fills keep their order on its partition), and counts the late ones once acknowledged.
    pub(super) async fn send_outgoing(
        &self,
        boundaries: &HashMap<String, Boundary>,
        outgoing: HashMap<String, Outgoing>,
    ) -> Result<(), CollectError> {
        let sends = outgoing
            .into_iter()
            .map(|(condition_id, market)| async move {
                let Outgoing {
                    trades,
                    late,
                    rejected,
                } = market;
                let skip = boundaries
                    .get(&condition_id)
                    .map(|boundary| boundary.sent_at_high.clone())
                    .unwrap_or_default();
                if let Err(error) = self
                    .send_trades(&condition_id, trades, rejected, &skip)
                    .await
                {
                    let mut ledger = lock(&self.ledger);
                    for (trade, _) in &late {
                        ledger.forget(&trade.condition_id, second_of(trade), &trade.trade_id);
                    }
                    return Err(error);
                }
                if !late.is_empty() {
                    self.late_sent
                        .fetch_add(late.len() as u64, Ordering::Relaxed);
                    let lateness_s: Vec<f64> = late.iter().map(|(_, lateness)| *lateness).collect();
                    LateFillsFound {
                        condition_id: &condition_id,
                        lateness_s: &lateness_s,
                    }
                    .emit();
                }
                Ok::<(), CollectError>(())
            });
        futures::future::try_join_all(sends).await?;
        Ok(())
    }

    /// Undoes the late verdicts of fills that will not be sent (the walk failed or was
    /// narrowed), so the next re-read finds them again.
    /// The sends failed: every fill queued for them — late or not — is forgotten by the
    /// ledger, so the next read judges it anew and sends it (a queued edge-second fill the
    /// ledger remembered would otherwise read as known and never be sent).
    pub(super) fn forget_late(&self, outgoing: &HashMap<String, Outgoing>) {
        let mut ledger = lock(&self.ledger);
        for market in outgoing.values() {
            for trade in &market.trades {
                ledger.forget(&trade.condition_id, second_of(trade), &trade.trade_id);
            }
        }
    }

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

    // ---------------------------------------------------------------------- price history

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
                    let label = markets.join(",");
                    match outcome {
                        Ok(()) => {
                            complete.fetch_add(markets.len(), Ordering::Relaxed);
                        }
                        Err(CollectError::Cancelled) => {}
                        Err(error) if error.is_retryable() => {
                            if let Err(error) = self.dead_letter_page(&error).await {
                                tracing::warn!(error = %error, "cannot write a dead letter");
                            }
                            tracing::warn!(condition_ids = %label, error = %error, "trades of these markets incomplete; retried next round");
                            if let Ok(mut first) = first_incomplete.lock() {
                                first.get_or_insert_with(|| format!("{label}: {error}"));
                            }
                            if error.is_upstream() {
                                self.declare_unread(&markets, from, to, &error).await;
                            }
                        }
                        Err(error) => {
                            tracing::error!(condition_ids = %label, error = %error, "trades collection failed");
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
