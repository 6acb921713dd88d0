//! Trades: polling caught-up markets together, many per request, and sorting what the walk
//! read into new fills, late fills and fills already sent.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Collector {
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
            let read = self.read_page(&mut tape, &market_list, page).await?;
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
                let read = self.read_page(&mut tape, condition_id, page).await?;
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
}
