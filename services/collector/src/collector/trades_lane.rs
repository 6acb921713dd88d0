//! Trades in `run` and `poll`: every round polls the live tail of the markets that are caught
//! up, while markets far behind (the first backfill, a new market, one back from a long
//! outage) walk in a lane beside the rounds, `concurrency` at a time, busiest first. Before, a
//! round waited for every walk: with a 90-day backfill, a market walked in the first minute
//! was not polled again for hours, and one new market's walk held back every market's tail.
//!
//! A market is in one place at a time: walking in the lane (its stored checkpoint is behind,
//! so no round polls it) or polled by the rounds. The deep reconciliation pass covers every
//! market, walking ones included: it re-reads time below the stored coverage, a forward walk
//! reads beyond it (and giving the pass only the settled markets made it forget the others'
//! ledger: `tests/late_fills.rs` lost its late fills after a restart). A walk's failure is settled like a round's (retried by a later round,
//! declared when upstream failed); a walk that fails for good, or panics, stops collection.

#[allow(clippy::wildcard_imports)]
use super::*;

use tokio::{sync::Semaphore, task::JoinSet};

use super::trades::Settled;
use crate::progress::Progress;

/// One walk's end: the market and what its walk came to.
type WalkEnd = (String, Result<(), CollectError>);

/// The walks running beside the rounds.
pub(super) struct WalkLane {
    tasks: JoinSet<WalkEnd>,
    /// Walking markets, with the bounds their walk was started with.
    walking: HashMap<String, (i64, i64)>,
    permits: Arc<Semaphore>,
    /// The current backlog (from the first walk the lane takes on until it is empty again):
    /// its progress, walks finished, and the records sent when it began.
    backlog: Option<(Progress, usize, u64)>,
}

impl WalkLane {
    pub(super) fn new(concurrency: usize) -> Self {
        Self {
            tasks: JoinSet::new(),
            walking: HashMap::new(),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            backlog: None,
        }
    }

    pub(super) fn is_walking(&self, condition_id: &str) -> bool {
        self.walking.contains_key(condition_id)
    }

    /// Waits for every walk to end (after a stop: they end at their next request).
    pub(super) async fn drain(&mut self) {
        while self.tasks.join_next().await.is_some() {}
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
        self.prepare_ledger(condition_ids);
        let (caught_up, behind): (Vec<String>, Vec<String>) = condition_ids
            .iter()
            .filter(|condition_id| !lane.is_walking(condition_id))
            .cloned()
            .partition(|condition_id| self.caught_up(condition_id, from, to));
        self.start_walks(lane, behind, from, to);
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

    /// Starts a walk for each market of `behind`, in order (the market list is busiest first;
    /// the lane's permits are handed out first come, first served).
    fn start_walks(self: &Arc<Self>, lane: &mut WalkLane, behind: Vec<String>, from: i64, to: i64) {
        if behind.is_empty() {
            return;
        }
        match &lane.backlog {
            Some((progress, _, _)) => progress.add_total(behind.len()),
            None => {
                tracing::info!(
                    markets = behind.len(),
                    "trades walks started beside the live tail"
                );
                lane.backlog = Some((
                    Progress::new(behind.len()),
                    0,
                    self.trades_sent.load(Ordering::Relaxed),
                ));
            }
        }
        for condition_id in behind {
            lane.walking.insert(condition_id.clone(), (from, to));
            let collector = Arc::clone(self);
            let permits = Arc::clone(&lane.permits);
            lane.tasks.spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return (condition_id, Err(CollectError::Cancelled));
                };
                if collector.stop.is_cancelled() {
                    return (condition_id, Err(CollectError::Cancelled));
                }
                let outcome = collector.collect_trades(&condition_id, from, to).await;
                (condition_id, outcome)
            });
        }
    }

    /// Settles every walk that ended since the last round.
    async fn settle_ended_walks(&self, lane: &mut WalkLane) -> Result<(), CollectError> {
        while let Some(joined) = lane.tasks.try_join_next() {
            let (condition_id, outcome) = match joined {
                Ok(ended) => ended,
                Err(error) => {
                    // Which market is lost with the task; a panic is a bug, so stop.
                    tracing::error!(error = %error, "a trades walk task ended abnormally");
                    return Err(CollectError::WalkPanicked(error.to_string()));
                }
            };
            let (from, to) = lane.walking.remove(&condition_id).unwrap_or((0, 0));
            let markets = [condition_id];
            if let Settled::Fatal(error) = self.settle(&markets, from, to, outcome).await {
                return Err(error);
            }
            if let Some((progress, finished, records_at_start)) = &mut lane.backlog {
                *finished += 1;
                let records = self.trades_sent.load(Ordering::Relaxed) - *records_at_start;
                progress.market_finished(*finished, records);
            }
            if lane.walking.is_empty() {
                lane.backlog = None;
            }
        }
        Ok(())
    }
}
