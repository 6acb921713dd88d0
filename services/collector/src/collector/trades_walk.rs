//! Trades: a single market's backfill walks — sent oldest first once complete (a walk that
//! extends the coverage forward), or streamed newest first page by page (a walk reaching
//! further back than the coverage).

#[allow(clippy::wildcard_imports)]
use super::*;

impl Collector {
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
        let edge_ids = self.edge_ids(condition_id, initial.from, initial.upper);
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
            let read = self.read_page(&mut tape, condition_id, page).await?;
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
        let edge_ids = self.edge_ids(condition_id, initial.from, initial.upper);
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
            let read = self.read_page(&mut tape, condition_id, page).await?;
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
}
