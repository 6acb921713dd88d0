//! Trades in `run` and `poll`: every round polls the live tail of the markets that are caught
//! up, while markets far behind (the first backfill, a new market, one back from a long
//! outage) are walked in a lane beside the rounds. Before, a round waited for every walk: with
//! a 90-day backfill, a market walked in the first minute was not polled again for hours, and
//! one new market's walk held back every market's tail.
//!
//! The lane is a queue and `concurrency` workers. A worker takes the next market and walks it
//! to now (the bounds are read when the walk starts, so a market queued behind hours of
//! backfill is walked to the present, not to when it was queued), reports how it ended and
//! takes the next; workers end when the queue is empty. Only the workers hold walks in
//! memory, whatever the length of the queue.
//!
//! A market is in one place at a time: queued or walking in the lane (its stored checkpoint
//! is behind, so no round polls it) or polled by the rounds. The deep reconciliation pass
//! covers every market, lane ones included: it re-reads time below the stored coverage, a
//! forward walk reads beyond it (and giving the pass only the settled markets made it forget
//! the others' ledger: `tests/late_fills.rs` lost its late fills after a restart). A walk's
//! failure is settled like a round's (retried by a later round, declared when upstream
//! failed); a walk that fails for good, or a worker that panics, stops collection.

#[allow(clippy::wildcard_imports)]
use super::*;

use std::collections::VecDeque;

use tokio::{sync::mpsc, task::JoinSet};

use super::trades::Settled;
use crate::progress::Progress;

/// How a walk ended: the market, the bounds it was walked to, and the outcome.
type WalkEnd = (String, (i64, i64), Result<(), CollectError>);

/// The trades coverage a walk starting now aims at (`[from, to]`, seconds).
#[derive(Debug, Clone, Copy)]
pub(super) struct WalkBounds {
    /// Coverage stops this far behind now (`collector_poll_lag`).
    pub(super) lag_s: i64,
    /// `run`: coverage reaches back this far from `to` (`collector_retention`).
    pub(super) retention_s: i64,
    /// `poll`: coverage starts here instead (the start time).
    pub(super) fixed_from_s: Option<i64>,
}

impl WalkBounds {
    fn now(self) -> (i64, i64) {
        let to = now_ms() / 1000 - self.lag_s;
        let from = self
            .fixed_from_s
            .unwrap_or_else(|| to.saturating_sub(self.retention_s));
        (from, to)
    }
}

/// What the workers share: the queue, and every market queued or being walked.
#[derive(Default)]
struct LaneQueue {
    waiting: VecDeque<String>,
    in_lane: HashSet<String>,
}

/// The walks running beside the rounds.
pub(super) struct WalkLane {
    queue: Arc<Mutex<LaneQueue>>,
    workers: JoinSet<()>,
    concurrency: usize,
    bounds: WalkBounds,
    ends: mpsc::UnboundedReceiver<WalkEnd>,
    end_sender: mpsc::UnboundedSender<WalkEnd>,
    /// The current backlog (from the first market the lane takes on until it is empty
    /// again): its progress, walks finished, and the records sent when it began.
    backlog: Option<(Progress, usize, u64)>,
}

impl WalkLane {
    pub(super) fn new(concurrency: usize, bounds: WalkBounds) -> Self {
        let (end_sender, ends) = mpsc::unbounded_channel();
        Self {
            queue: Arc::new(Mutex::new(LaneQueue::default())),
            workers: JoinSet::new(),
            concurrency: concurrency.max(1),
            bounds,
            ends,
            end_sender,
            backlog: None,
        }
    }

    /// Whether the market is queued or being walked.
    pub(super) fn holds(&self, condition_id: &str) -> bool {
        lock(&self.queue).in_lane.contains(condition_id)
    }

    /// Every market queued or being walked.
    pub(super) fn markets(&self) -> Vec<String> {
        lock(&self.queue).in_lane.iter().cloned().collect()
    }

    /// Waits for the workers to end (after a stop: each ends at its next request, and takes
    /// no new market).
    pub(super) async fn drain(&mut self) {
        while let Some(joined) = self.workers.join_next().await {
            if let Err(error) = joined {
                tracing::error!(error = %error, "a trades walk worker ended abnormally while stopping");
            }
        }
    }
}

impl Collector {
    /// One `run`/`poll` round of trades over `condition_ids` (to `[from, to]`): settles the
    /// walks that ended, hands the markets far behind to the lane, and polls the caught-up
    /// ones together. An error that must stop collection is returned.
    pub(super) async fn tail_round(
        self: &Arc<Self>,
        lane: &mut WalkLane,
        condition_ids: &[String],
        from: i64,
        to: i64,
    ) -> Result<(), CollectError> {
        self.settle_ended_walks(lane).await?;
        // The lane's markets too: one the crawl no longer lists must keep its ledger while
        // its walk still sends.
        self.prepare_ledger(&with_lane_markets(condition_ids, lane));
        let mut caught_up = Vec::new();
        let mut behind = Vec::new();
        for condition_id in condition_ids {
            if lane.holds(condition_id) {
                continue;
            }
            if self.caught_up(condition_id, from, to) {
                caught_up.push(condition_id.clone());
            } else if self.needs_walk(condition_id, from, to) {
                behind.push(condition_id.clone());
            }
            // Neither: covered up to `to` already (a round within the same second).
        }
        self.start_walks(lane, behind);
        let fatal: Mutex<Option<CollectError>> = Mutex::new(None);
        let chunks: Vec<Vec<String>> = caught_up
            .chunks(self.tuning.trades_api.markets_per_request())
            .map(<[String]>::to_vec)
            .collect();
        futures::stream::iter(chunks)
            .for_each_concurrent(self.tuning.concurrency.max(1), |markets| {
                let fatal = &fatal;
                async move {
                    if self.stop.is_cancelled() {
                        return;
                    }
                    let outcome = self.poll_markets(&markets, to).await;
                    if let Settled::Fatal(error) = self.settle(&markets, from, to, outcome).await
                        && let Ok(mut fatal) = fatal.lock()
                    {
                        fatal.get_or_insert(error);
                    }
                }
            })
            .await;
        if let Some(error) = fatal.lock().ok().and_then(|mut fatal| fatal.take()) {
            return Err(error);
        }
        if self.stop.is_cancelled() {
            return Err(CollectError::Cancelled);
        }
        Ok(())
    }

    /// Whether a market's checkpoint leaves part of `[from, to]` to walk.
    fn needs_walk(&self, condition_id: &str, from: i64, to: i64) -> bool {
        let checkpoint: TradeCheckpoint = self
            .checkpoints
            .get(&format!("trades/{condition_id}"))
            .unwrap_or_default();
        checkpoint.next_walk(from, to).is_some()
    }

    /// Queues the markets of `behind` in order (the market list is busiest first) and starts
    /// workers up to `concurrency` while markets wait. Called every round: a worker that found
    /// the queue empty just before more markets came is replaced here.
    fn start_walks(self: &Arc<Self>, lane: &mut WalkLane, behind: Vec<String>) {
        self.queue_walks(lane, behind);
        let waiting = !lock(&lane.queue).waiting.is_empty();
        while waiting && lane.workers.len() < lane.concurrency {
            let collector = Arc::clone(self);
            let queue = Arc::clone(&lane.queue);
            let ends = lane.end_sender.clone();
            let bounds = lane.bounds;
            lane.workers.spawn(async move {
                collector.walk_worker(&queue, bounds, &ends).await;
            });
        }
    }

    fn queue_walks(&self, lane: &mut WalkLane, behind: Vec<String>) {
        let added = {
            let mut queue = lock(&lane.queue);
            let mut added = 0;
            for condition_id in behind {
                if queue.in_lane.insert(condition_id.clone()) {
                    queue.waiting.push_back(condition_id);
                    added += 1;
                }
            }
            added
        };
        if added == 0 {
            return;
        }
        match &lane.backlog {
            Some((progress, _, _)) => progress.add_total(added),
            None => {
                tracing::info!(markets = added, "trades walks queued beside the live tail");
                lane.backlog = Some((
                    Progress::new(added),
                    0,
                    self.trades_sent.load(Ordering::Relaxed),
                ));
            }
        }
    }

    /// One worker: walks queued markets one after the other, to now, until the queue is
    /// empty or collection stops.
    async fn walk_worker(
        &self,
        queue: &Mutex<LaneQueue>,
        bounds: WalkBounds,
        ends: &mpsc::UnboundedSender<WalkEnd>,
    ) {
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            let Some(condition_id) = lock(queue).waiting.pop_front() else {
                return;
            };
            let (from, to) = bounds.now();
            let outcome = self.collect_trades(&condition_id, from, to).await;
            // The receiver lives as long as the lane; a send fails only once it is gone.
            if ends.send((condition_id, (from, to), outcome)).is_err() {
                return;
            }
        }
    }

    /// Settles every walk that ended since the last round, and finds workers that panicked.
    async fn settle_ended_walks(&self, lane: &mut WalkLane) -> Result<(), CollectError> {
        while let Some(joined) = lane.workers.try_join_next() {
            if let Err(error) = joined {
                tracing::error!(error = %error, "a trades walk worker ended abnormally");
                return Err(CollectError::WalkPanicked(error.to_string()));
            }
        }
        while let Ok((condition_id, (from, to), outcome)) = lane.ends.try_recv() {
            lock(&lane.queue).in_lane.remove(&condition_id);
            let markets = [condition_id];
            if let Settled::Fatal(error) = self.settle(&markets, from, to, outcome).await {
                return Err(error);
            }
            if let Some((progress, finished, records_at_start)) = &mut lane.backlog {
                *finished += 1;
                let records = self.trades_sent.load(Ordering::Relaxed) - *records_at_start;
                progress.market_finished(*finished, records);
            }
            if lock(&lane.queue).in_lane.is_empty() {
                lane.backlog = None;
            }
        }
        Ok(())
    }
}

/// `condition_ids` and the lane's markets, once each.
pub(super) fn with_lane_markets(condition_ids: &[String], lane: &WalkLane) -> Vec<String> {
    let mut all = condition_ids.to_vec();
    let listed: HashSet<&String> = condition_ids.iter().collect();
    let extra: Vec<String> = lane
        .markets()
        .into_iter()
        .filter(|condition_id| !listed.contains(condition_id))
        .collect();
    all.extend(extra);
    all
}
