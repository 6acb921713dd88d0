//! Checkpoints in a compacted topic of the collector's own
//! (`<prefix>polytape.collector.checkpoints.v1`, one partition), so the collector keeps no
//! local state. Keys are `trades/<condition_id>`, `markets/<condition_id>`,
//! `events/<event_id>`; values JSON. A checkpoint is written only after the records it
//! covers were acknowledged by the broker, and `commit` returns only once the checkpoint
//! itself is acknowledged.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use polytape_kafka::SharedProducer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Serialize, de::DeserializeOwned};

use crate::error::CollectError;

/// The checkpoint topic's name under a topic prefix.
pub fn checkpoint_topic(prefix: &str) -> String {
    format!("{prefix}polytape.collector.checkpoints.v1")
}

/// Trades progress of one market, in Unix seconds (the Data API's unit).
///
/// Invariant: every fill with a timestamp in `covered` (inclusive) has been acknowledged by
/// Kafka. `walk` is a window being filled newest-first: every fill in `(upper, to]` is done,
/// the next request asks for `[from, upper]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct TradeCheckpoint {
    pub covered: Option<(i64, i64)>,
    pub walk: Option<Walk>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Walk {
    pub from: i64,
    pub to: i64,
    pub upper: i64,
}

impl TradeCheckpoint {
    /// The next window to walk so that `[from, to]` ends up covered, or `None` when it is.
    ///
    /// Windows always touch the covered range (sharing its edge second, whose fills may have
    /// grown after it was walked), so coverage stays one contiguous range: no gaps.
    pub fn next_walk(&self, from: i64, to: i64) -> Option<Walk> {
        if let Some(walk) = self.walk {
            return Some(walk);
        }
        match self.covered {
            None if from <= to => Some(Walk {
                from,
                to,
                upper: to,
            }),
            None => None,
            Some((_, high)) if to > high => Some(Walk {
                from: high,
                to,
                upper: to,
            }),
            Some((low, _)) if from < low => Some(Walk {
                from,
                to: low,
                upper: low,
            }),
            Some(_) => None,
        }
    }

    /// Records that the current walk is complete.
    pub fn finish_walk(&mut self) {
        if let Some(walk) = self.walk.take() {
            self.covered = Some(match self.covered {
                None => (walk.from, walk.to),
                Some((low, high)) => (low.min(walk.from), high.max(walk.to)),
            });
        }
    }
}

/// The checkpoint store: an in-memory map mirrored to the compacted topic.
pub struct Checkpoints {
    producer: SharedProducer,
    topic: String,
    values: Mutex<HashMap<String, serde_json::Value>>,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Checkpoints")
            .field("topic", &self.topic)
            .finish()
    }
}

impl Checkpoints {
    /// Creates the topic if needed and, unless `fresh`, reads every checkpoint in it.
    pub async fn open(
        brokers: &str,
        prefix: &str,
        producer: SharedProducer,
        fresh: bool,
    ) -> Result<Self, CollectError> {
        let topic = checkpoint_topic(prefix);
        polytape_kafka::ensure_compacted_topic(brokers, &topic, 1)
            .await
            .map_err(|error| CollectError::Checkpoint(error.to_string()))?;
        let values = if fresh {
            HashMap::new()
        } else {
            let brokers = brokers.to_owned();
            let name = topic.clone();
            tokio::task::spawn_blocking(move || read_all(&brokers, &name))
                .await
                .map_err(|error| CollectError::Checkpoint(error.to_string()))??
        };
        tracing::info!(topic = %topic, checkpoints = values.len(), fresh, "checkpoints loaded");
        Ok(Self {
            producer,
            topic,
            values: Mutex::new(values),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, serde_json::Value>> {
        match self.values.lock() {
            Ok(values) => values,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let value = self.lock().get(key).cloned()?;
        serde_json::from_value(value).ok()
    }

    /// Removes and returns the entries whose key starts with `prefix` (state another part of
    /// the collector restores and keeps itself, such as the reconciliation ledger).
    pub fn take_prefix(&self, prefix: &str) -> Vec<(String, serde_json::Value)> {
        let mut values = self.lock();
        let keys: Vec<String> = values
            .keys()
            .filter(|key| key.starts_with(prefix))
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|key| values.remove_entry(&key))
            .collect()
    }

    /// Writes one entry that the store does not keep in memory (`None` deletes the key) and
    /// waits for the broker's acknowledgement.
    pub async fn publish<T: Serialize>(
        &self,
        key: &str,
        value: Option<&T>,
    ) -> Result<(), CollectError> {
        let payload = value
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|error| CollectError::Checkpoint(error.to_string()))?;
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).key(key.as_bytes());
        if let Some(payload) = &payload {
            record = record.payload(payload);
        }
        let producer = self.producer.current();
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(error, _)| self.not_acknowledged(&producer, key, error))?;
        Ok(())
    }

    /// A write the broker did not acknowledge (retryable; if the producer failed for good, it
    /// is replaced first, see [`SharedProducer`]).
    fn not_acknowledged(
        &self,
        used: &FutureProducer,
        key: &str,
        error: rdkafka::error::KafkaError,
    ) -> CollectError {
        let error = self
            .producer
            .delivery_error(used, "checkpoint", &self.topic, error);
        match error {
            polytape_kafka::KafkaError::ProducerFailed { .. } => CollectError::Kafka(error),
            _ => CollectError::Checkpoint(format!("checkpoint {key} not acknowledged: {error}")),
        }
    }

    /// Writes one checkpoint and waits for the broker's acknowledgement.
    pub async fn commit<T: Serialize>(&self, key: &str, value: &T) -> Result<(), CollectError> {
        let json = serde_json::to_value(value)
            .map_err(|error| CollectError::Checkpoint(error.to_string()))?;
        let payload = serde_json::to_vec(&json)
            .map_err(|error| CollectError::Checkpoint(error.to_string()))?;
        let producer = self.producer.current();
        producer
            .send(
                FutureRecord::to(&self.topic)
                    .key(key.as_bytes())
                    .payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(error, _)| self.not_acknowledged(&producer, key, error))?;
        self.lock().insert(key.to_owned(), json);
        Ok(())
    }
}

/// Reads the topic whole: the latest checkpoint per key (values that are not JSON are skipped).
fn read_all(
    brokers: &str,
    topic: &str,
) -> Result<HashMap<String, serde_json::Value>, CollectError> {
    let values =
        polytape_kafka::read_latest_values(brokers, topic, "polytape-collector-checkpoint-reader")
            .map_err(|error| CollectError::Checkpoint(error.to_string()))?;
    Ok(values
        .into_iter()
        .filter_map(|(key, payload)| Some((key, serde_json::from_slice(&payload).ok()?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_cover_the_target_without_gaps() {
        let mut checkpoint = TradeCheckpoint::default();
        // First backfill: the whole window.
        let walk = checkpoint.next_walk(100, 200);
        assert_eq!(
            walk,
            Some(Walk {
                from: 100,
                to: 200,
                upper: 200
            })
        );
        checkpoint.walk = walk;
        // Interrupted half way: resume from where it stopped.
        checkpoint.walk = Some(Walk {
            from: 100,
            to: 200,
            upper: 150,
        });
        assert_eq!(checkpoint.next_walk(100, 200), checkpoint.walk);
        checkpoint.finish_walk();
        assert_eq!(checkpoint.covered, Some((100, 200)));
        assert_eq!(checkpoint.next_walk(100, 200), None);
        // Polling forward re-reads the edge second.
        assert_eq!(
            checkpoint.next_walk(100, 260),
            Some(Walk {
                from: 200,
                to: 260,
                upper: 260
            })
        );
        // Extending backwards.
        assert_eq!(
            checkpoint.next_walk(50, 200),
            Some(Walk {
                from: 50,
                to: 100,
                upper: 100
            })
        );
        checkpoint.walk = checkpoint.next_walk(50, 200);
        checkpoint.finish_walk();
        assert_eq!(checkpoint.covered, Some((50, 200)));
    }

    #[test]
    fn checkpoints_round_trip_as_json() {
        let checkpoint = TradeCheckpoint {
            covered: Some((1, 2)),
            walk: Some(Walk {
                from: 2,
                to: 9,
                upper: 5,
            }),
        };
        let json = serde_json::to_value(checkpoint).unwrap();
        assert_eq!(
            serde_json::from_value::<TradeCheckpoint>(json).unwrap(),
            checkpoint
        );
    }
}
