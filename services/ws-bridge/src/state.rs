//! The bridge's own state, in a compacted topic (`<prefix>polytape.ws_bridge.state.v1`, one
//! partition), so that a restart — after a clean stop, a crash or a `kill -9` — declares what
//! the previous process may have lost and closes what it left open. Keys, values JSON (an
//! empty payload deletes):
//!
//! * `run`: [`RunRecord`] — the previous process, whether it stopped cleanly (everything it
//!   published acknowledged, its stop gaps on record), and its *acknowledged upstream
//!   watermark*: an upstream time such that every event it read and Kafka did not acknowledge
//!   lies at or after it. Written at start (not clean), every second while it advances, and
//!   once more at the end of a clean stop.
//! * `gap/<continuity_id>`: a gap the bridge opened (the open `Continuity` record, written
//!   before the record itself is handed to Kafka); deleted once its closing record is
//!   acknowledged. The next start takes over those still present and closes them when the
//!   tokens' fresh books arrive.
//! * `token/<token_id>`: a token the bridge followed (written when first followed). Kept after
//!   the token is dropped until its last records are surely acknowledged (the watermark a
//!   minute past the drop), so a restart after a crash also declares tokens whose last
//!   records (e.g. a `market_resolved`) died with the process; deleted at a start that no
//!   longer follows it once that is declared.
//!
//! The watermark: the acknowledgement tracker settles records in publishing order, so per
//! shard the acknowledged records are a prefix of what the shard read. Every event a shard
//! read after that prefix is at or after the newest upstream time in the prefix (the same
//! rule that starts a disconnect gap at the newest time the connection read). The bridge's
//! watermark is the lowest of its shards' (a shard that has settled nothing yet counts with
//! the watermark at its creation), and never goes back.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use polytape_kafka::SharedProducer;
use polytape_model::{Continuity, now_ms};
use rdkafka::{
    error::KafkaError,
    producer::{DeliveryFuture, FutureRecord},
    types::RDKafkaErrorCode,
};
use serde::{Deserialize, Serialize};

use crate::error::BridgeError;

/// The key of the run record.
pub const RUN_KEY: &str = "run";

/// The state topic's name under a topic prefix.
pub fn state_topic(prefix: &str) -> String {
    format!("{prefix}polytape.ws_bridge.state.v1")
}

/// The key of an open gap.
pub fn gap_key(continuity_id: &str) -> String {
    format!("gap/{continuity_id}")
}

/// The key of a followed token.
pub fn token_key(token_id: &str) -> String {
    format!("token/{token_id}")
}

/// One process of the bridge, as last written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The process's random instance id (the first part of its connection ids).
    pub instance: String,
    /// When it started (our clock).
    pub started_ms: i64,
    /// Every event it read and Kafka did not acknowledge has an upstream time at or after
    /// this; `None` while not known (no shard has settled anything and there is no earlier
    /// run to inherit it from).
    pub acked_upstream_ms: Option<i64>,
    /// It stopped after every record was acknowledged and its stop gaps were on record.
    pub clean: bool,
    pub written_ms: i64,
}

/// What the state topic says about earlier processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersistedState {
    pub run: Option<RunRecord>,
    /// Gaps opened and not closed, by any earlier process.
    pub open_gaps: Vec<Continuity>,
    /// Tokens followed and not yet declared dropped.
    pub followed: BTreeSet<String>,
}

impl PersistedState {
    /// From the latest value of every key (deleted keys absent). Unreadable values are
    /// skipped with a warning: the state only ever narrows what a start declares.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        let mut state = Self::default();
        for (key, value) in entries {
            if key == RUN_KEY {
                match serde_json::from_slice::<RunRecord>(&value) {
                    Ok(run) => state.run = Some(run),
                    Err(error) => {
                        tracing::warn!(error = %error, "unreadable run record in the state topic; ignored")
                    }
                }
            } else if key.starts_with("gap/") {
                match serde_json::from_slice::<Continuity>(&value) {
                    Ok(gap) if gap.gap_end_ms.is_none() => state.open_gaps.push(gap),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(key = %key, error = %error, "unreadable gap in the state topic; ignored")
                    }
                }
            } else if let Some(token) = key.strip_prefix("token/") {
                state.followed.insert(token.to_owned());
            }
        }
        state
            .open_gaps
            .sort_by(|left, right| left.continuity_id.cmp(&right.continuity_id));
        state
    }
}

/// What a start does about the earlier processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPlan {
    /// The previous process did not stop cleanly: every token it or this one follows gets a
    /// gap from here (its acknowledged watermark, else its start).
    pub restart_from: Option<i64>,
    /// The previous process's instance id (named in the restart gaps).
    pub previous_instance: Option<String>,
    /// The acknowledged watermark this process inherits (its first shards' floor).
    pub floor: Option<i64>,
    /// Gaps left open, to take over.
    pub adopted: Vec<Continuity>,
    /// Tokens an earlier process followed.
    pub previously_followed: BTreeSet<String>,
}

impl RestartPlan {
    pub fn new(state: &PersistedState) -> Self {
        let restart_from = match &state.run {
            Some(run) if !run.clean => Some(run.acked_upstream_ms.unwrap_or(run.started_ms)),
            _ => None,
        };
        let floor = state
            .run
            .as_ref()
            .and_then(|run| run.acked_upstream_ms)
            .or(restart_from);
        Self {
            restart_from,
            previous_instance: state.run.as_ref().map(|run| run.instance.clone()),
            floor,
            adopted: state.open_gaps.clone(),
            previously_followed: state.followed.clone(),
        }
    }

    /// Tokens an earlier process followed and this one does not, once its initial set is
    /// known: declared (after an unclean stop) and then forgotten.
    pub fn dropped(&self, followed_now: &BTreeSet<String>) -> Vec<String> {
        self.previously_followed
            .difference(followed_now)
            .cloned()
            .collect()
    }
}

/// The bridge's acknowledged watermark from its shards' (`None` for a shard with tokens that
/// has neither settled a record nor inherited a floor), never below `previous`. Shards
/// without tokens are not passed.
pub fn watermark(
    previous: Option<i64>,
    shards: impl IntoIterator<Item = Option<i64>>,
) -> Option<i64> {
    let mut lowest: Option<i64> = None;
    for shard in shards {
        let Some(value) = shard else {
            return previous;
        };
        lowest = Some(lowest.map_or(value, |lowest| lowest.min(value)));
    }
    match (previous, lowest) {
        (Some(previous), Some(lowest)) => Some(previous.max(lowest)),
        (previous, lowest) => previous.or(lowest),
    }
}

/// A shard's acknowledged watermark: the newest upstream time it settled, never below the
/// floor it was created with.
pub fn shard_watermark(settled: Option<i64>, floor: Option<i64>) -> Option<i64> {
    match (settled, floor) {
        (Some(settled), Some(floor)) => Some(settled.max(floor)),
        (settled, floor) => settled.or(floor),
    }
}

/// The newest upstream time of the acknowledged records of each shard (written by the
/// acknowledgement tracker, read by the supervisor's checkpoints).
#[derive(Debug, Default)]
pub struct Progress {
    settled: Mutex<HashMap<usize, i64>>,
}

impl Progress {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, i64>> {
        self.settled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Folds a batch of settled times in (and empties it).
    pub fn advance(&self, batch: &mut HashMap<usize, i64>) {
        if batch.is_empty() {
            return;
        }
        let mut settled = self.lock();
        for (shard, timestamp_ms) in batch.drain() {
            let entry = settled.entry(shard).or_insert(timestamp_ms);
            *entry = (*entry).max(timestamp_ms);
        }
    }

    pub fn settled(&self, shard: usize) -> Option<i64> {
        self.lock().get(&shard).copied()
    }
}

/// One write to the state topic: a key and its JSON value, or `None` to delete it.
pub type Entry = (String, Option<Vec<u8>>);

/// The JSON entry of a serializable value.
pub fn entry<T: Serialize>(key: String, value: &T) -> Entry {
    // Our own plain structs: serializing them cannot fail.
    let payload = serde_json::to_vec(value).unwrap_or_default();
    (key, Some(payload))
}

/// Why an entry was not handed to the producer.
#[derive(Debug)]
pub enum SendError {
    /// librdkafka's queue is full: try again later.
    QueueFull,
    Failed(String),
}

/// Writes to the state topic through the bridge's producer (same idempotent producer, so
/// writes of one key keep the order in which they were handed over).
#[derive(Clone)]
pub struct StateWriter {
    producer: SharedProducer,
    topic: Arc<str>,
}

impl std::fmt::Debug for StateWriter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("StateWriter")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl StateWriter {
    pub fn new(producer: SharedProducer, topic: String) -> Self {
        Self {
            producer,
            topic: topic.into(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Hands one entry to the producer without waiting.
    pub fn try_send(&self, key: &str, payload: Option<&[u8]>) -> Result<DeliveryFuture, SendError> {
        let record = || {
            let record = FutureRecord::<str, [u8]>::to(&self.topic).key(key);
            match payload {
                Some(payload) => record.payload(payload),
                None => record,
            }
        };
        let producer = self.producer.current();
        match producer.send_result(record()) {
            Ok(delivery) => Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(SendError::QueueFull)
            }
            Err((error, _)) => match self.producer.recover(&producer, "state entry", &self.topic) {
                // A producer in librdkafka's fatal state refuses everything: the fresh one
                // takes the entry.
                Some(Ok(_)) => self
                    .producer
                    .current()
                    .send_result(record())
                    .map_err(|(error, _)| SendError::Failed(error.to_string())),
                Some(Err(failed)) => Err(SendError::Failed(failed.to_string())),
                None => Err(SendError::Failed(error.to_string())),
            },
        }
    }

    /// Hands one entry to the producer, waiting while its queue is full.
    pub async fn send(&self, key: &str, payload: Option<&[u8]>) -> Result<DeliveryFuture, String> {
        loop {
            match self.try_send(key, payload) {
                Ok(delivery) => return Ok(delivery),
                Err(SendError::QueueFull) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(SendError::Failed(error)) => return Err(error),
            }
        }
    }

    /// Writes `entries` in order and waits for every acknowledgement.
    pub async fn write(&self, entries: Vec<Entry>) -> Result<(), String> {
        let mut deliveries = Vec::with_capacity(entries.len());
        for (key, payload) in &entries {
            deliveries.push((key, self.send(key, payload.as_deref()).await?));
        }
        for (key, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => {
                    // The next write goes through a fresh producer if this one failed for good.
                    if let Some(Err(failed)) =
                        self.producer.renew_if_failed("state entry", &self.topic)
                    {
                        return Err(format!("state {key} not acknowledged: {error}; {failed}"));
                    }
                    return Err(format!("state {key} not acknowledged: {error}"));
                }
                Err(_) => return Err(format!("state {key}: delivery cancelled")),
            }
        }
        Ok(())
    }
}

/// Logs the failures among deliveries of state entries, in the background (a lost entry only
/// makes the next start declare more, or close a gap again).
pub fn watch(deliveries: Vec<(String, DeliveryFuture)>) {
    if deliveries.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for (key, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => {
                    tracing::warn!(key = %key, error = %error, "a state entry was not acknowledged");
                }
                Err(_) => tracing::warn!(key = %key, "a state entry's delivery was cancelled"),
            }
        }
    });
}

/// Creates the state topic if needed and reads it whole.
pub async fn load(brokers: &str, topic: &str) -> Result<PersistedState, BridgeError> {
    polytape_kafka::ensure_compacted_topic(brokers, topic, 1)
        .await
        .map_err(|error| BridgeError::State(error.to_string()))?;
    let brokers = brokers.to_owned();
    let name = topic.to_owned();
    let entries = tokio::task::spawn_blocking(move || read_all(&brokers, &name))
        .await
        .map_err(|error| BridgeError::State(error.to_string()))??;
    let state = PersistedState::from_entries(entries);
    tracing::info!(
        topic = %topic,
        previous_run = ?state.run,
        open_gaps = state.open_gaps.len(),
        followed = state.followed.len(),
        "bridge state loaded"
    );
    Ok(state)
}

/// Reads the topic whole: the latest value per key.
pub fn read_all(brokers: &str, topic: &str) -> Result<HashMap<String, Vec<u8>>, BridgeError> {
    polytape_kafka::read_latest_values(brokers, topic, "polytape-ws-bridge-state-reader")
        .map_err(|error| BridgeError::State(error.to_string()))
}

/// A run record of this process, written now.
pub fn run_record(
    instance: &str,
    started_ms: i64,
    acked_upstream_ms: Option<i64>,
    clean: bool,
) -> RunRecord {
    RunRecord {
        instance: instance.to_owned(),
        started_ms,
        acked_upstream_ms,
        clean,
        written_ms: now_ms(),
    }
}

#[cfg(test)]
mod tests {
    use polytape_model::ContinuityKind;

    use super::*;

    fn gap(id: &str, end: Option<i64>) -> Continuity {
        Continuity {
            continuity_id: id.into(),
            kind: ContinuityKind::Disconnect,
            token_ids: vec!["a".into()],
            gap_start_ms: 100,
            gap_end_ms: end,
            detected_ms: 1,
            source: "ws-bridge".into(),
            connection_id: Some("c".into()),
            reason: "bridge stopped".into(),
        }
    }

    fn json<T: Serialize>(value: &T) -> Vec<u8> {
        serde_json::to_vec(value).unwrap()
    }

    #[test]
    fn state_entries_round_trip_and_garbage_is_skipped() {
        let run = run_record("abcd", 5, Some(42), false);
        let state = PersistedState::from_entries([
            (RUN_KEY.to_owned(), json(&run)),
            (gap_key("g2"), json(&gap("g2", None))),
            (gap_key("g1"), json(&gap("g1", None))),
            (gap_key("g3"), json(&gap("g3", Some(200)))),
            (gap_key("g4"), b"not json".to_vec()),
            (token_key("t1"), b"{}".to_vec()),
            ("unknown".to_owned(), b"{}".to_vec()),
        ]);
        assert_eq!(state.run, Some(run));
        let ids: Vec<&str> = state
            .open_gaps
            .iter()
            .map(|gap| gap.continuity_id.as_str())
            .collect();
        assert_eq!(ids, ["g1", "g2"]);
        assert_eq!(state.followed, BTreeSet::from(["t1".to_owned()]));
    }

    #[test]
    fn only_an_unclean_previous_run_is_declared_from_its_watermark_or_start() {
        // First start ever: nothing to declare, nothing inherited.
        let plan = RestartPlan::new(&PersistedState::default());
        assert_eq!((plan.restart_from, plan.floor), (None, None));
        // Killed with a watermark: from the watermark.
        let mut state = PersistedState {
            run: Some(run_record("prev", 10, Some(500), false)),
            ..PersistedState::default()
        };
        let plan = RestartPlan::new(&state);
        assert_eq!((plan.restart_from, plan.floor), (Some(500), Some(500)));
        assert_eq!(plan.previous_instance.as_deref(), Some("prev"));
        // Killed before any shard settled a record: from its start.
        state.run = Some(run_record("prev", 10, None, false));
        let plan = RestartPlan::new(&state);
        assert_eq!((plan.restart_from, plan.floor), (Some(10), Some(10)));
        // Stopped cleanly: nothing declared, the watermark inherited; its open gaps adopted.
        state.run = Some(run_record("prev", 10, Some(700), true));
        state.open_gaps = vec![gap("g1", None)];
        let plan = RestartPlan::new(&state);
        assert_eq!((plan.restart_from, plan.floor), (None, Some(700)));
        assert_eq!(plan.adopted.len(), 1);
    }

    #[test]
    fn dropped_tokens_are_those_followed_before_and_not_now() {
        let state = PersistedState {
            followed: BTreeSet::from(["a".to_owned(), "b".to_owned(), "c".to_owned()]),
            ..PersistedState::default()
        };
        let plan = RestartPlan::new(&state);
        let now = BTreeSet::from(["b".to_owned(), "d".to_owned()]);
        assert_eq!(plan.dropped(&now), ["a", "c"]);
    }

    #[test]
    fn the_watermark_is_the_lowest_shard_never_going_back() {
        assert_eq!(watermark(None, []), None);
        assert_eq!(watermark(Some(5), []), Some(5));
        assert_eq!(watermark(None, [Some(30), Some(20), Some(40)]), Some(20));
        // A shard that knows nothing holds the watermark where it was.
        assert_eq!(watermark(Some(10), [Some(30), None]), Some(10));
        assert_eq!(watermark(None, [Some(30), None]), None);
        // Never back (a shard refilled after being empty has an old settled time).
        assert_eq!(watermark(Some(25), [Some(30), Some(20)]), Some(25));
        assert_eq!(shard_watermark(Some(3), Some(7)), Some(7));
        assert_eq!(shard_watermark(Some(9), Some(7)), Some(9));
        assert_eq!(shard_watermark(None, Some(7)), Some(7));
        assert_eq!(shard_watermark(Some(3), None), Some(3));
        assert_eq!(shard_watermark(None, None), None);
    }

    #[test]
    fn progress_keeps_the_newest_settled_time_per_shard() {
        let progress = Progress::default();
        let mut batch = HashMap::from([(0, 100), (1, 50)]);
        progress.advance(&mut batch);
        assert!(batch.is_empty());
        progress.advance(&mut HashMap::from([(0, 90), (1, 60)]));
        assert_eq!(progress.settled(0), Some(100));
        assert_eq!(progress.settled(1), Some(60));
        assert_eq!(progress.settled(2), None);
    }
}
