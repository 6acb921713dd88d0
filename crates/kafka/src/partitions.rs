//! The partitions a stream processor reads, and how far each has been written.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use polytape_model::{Topic, TopicNames};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use tokio_util::sync::CancellationToken;

use crate::{KafkaError, create_client};

/// `(topic name, topic, partition)` of every partition of `inputs`; a topic that does not
/// exist is an error naming it (and what creates it).
pub async fn input_partitions(
    brokers: &str,
    names: &TopicNames,
    inputs: &[Topic],
) -> Result<Vec<(String, Topic, i32)>, KafkaError> {
    let brokers = brokers.to_owned();
    let topics: Vec<(String, Topic)> = inputs
        .iter()
        .map(|topic| (names.name(*topic), *topic))
        .collect();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = create_client(&brokers)?;
        let mut partitions = Vec::new();
        for (name, topic) in topics {
            let metadata = consumer
                .fetch_metadata(Some(&name), Duration::from_secs(10))
                .map_err(|source| KafkaError::Read {
                    topic: name.clone(),
                    reason: format!("metadata: {source}"),
                })?;
            let count = metadata
                .topics()
                .iter()
                .find(|found| found.name() == name && found.error().is_none())
                .map_or(0, |found| found.partitions().len());
            if count == 0 {
                return Err(KafkaError::MissingTopic { topic: name });
            }
            for partition in 0..i32::try_from(count).unwrap_or(i32::MAX) {
                partitions.push((name.clone(), topic, partition));
            }
        }
        Ok(partitions)
    })
    .await
    .map_err(|error| KafkaError::Read {
        topic: "metadata".to_owned(),
        reason: format!("the metadata task failed: {error}"),
    })?
}

/// High watermarks of a set of partitions, refreshed every second in the background (an
/// event-time merge needs to know which partitions still have unread records).
#[derive(Clone)]
pub struct HighWatermarks {
    highs: Arc<Mutex<HashMap<(String, i32), i64>>>,
}

impl HighWatermarks {
    /// Reads every high watermark of `partitions` once, then keeps them fresh until `stop`.
    pub async fn start(
        brokers: &str,
        partitions: Vec<(String, i32)>,
        stop: CancellationToken,
    ) -> Result<Self, KafkaError> {
        let consumer: BaseConsumer = create_client(brokers)?;
        let consumer = Arc::new(consumer);
        let watermarks = Self {
            highs: Arc::new(Mutex::new(HashMap::new())),
        };
        watermarks.refresh(&consumer, partitions.clone()).await;
        let background = watermarks.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => background.refresh(&consumer, partitions.clone()).await,
                }
            }
        });
        Ok(watermarks)
    }

    async fn refresh(&self, consumer: &Arc<BaseConsumer>, partitions: Vec<(String, i32)>) {
        let consumer = consumer.clone();
        let fetched = tokio::task::spawn_blocking(move || {
            partitions
                .into_iter()
                .filter_map(|(topic, partition)| {
                    consumer
                        .fetch_watermarks(&topic, partition, Duration::from_secs(5))
                        .ok()
                        .map(|(_, high)| ((topic, partition), high))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut highs = self
            .highs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        highs.extend(fetched);
    }

    /// The partitions of `partitions` (`(topic, input, partition)`) with records not read yet,
    /// given the next offset to read of each (`positions`; absent: 0). A partition whose end is
    /// unknown counts as a backlog.
    pub fn backlog<I: Copy>(
        &self,
        partitions: &[(String, I, i32)],
        positions: &HashMap<(String, i32), i64>,
    ) -> Vec<(I, i32)> {
        partitions
            .iter()
            .filter(|(topic, _, partition)| {
                let read = positions
                    .get(&(topic.clone(), *partition))
                    .copied()
                    .unwrap_or(0);
                self.high(topic, *partition).is_none_or(|high| read < high)
            })
            .map(|(_, input, partition)| (*input, *partition))
            .collect()
    }

    /// The ends (`(topic, partition, high watermark)`) known now of `partitions`; a partition
    /// whose end is not known yet is left out.
    pub fn ends<I>(&self, partitions: &[(String, I, i32)]) -> Vec<(String, i32, i64)> {
        partitions
            .iter()
            .filter_map(|(topic, _, partition)| {
                self.high(topic, *partition)
                    .map(|high| (topic.clone(), *partition, high))
            })
            .collect()
    }

    /// The last high watermark read of a partition; `None` before one could be read.
    pub fn high(&self, topic: &str, partition: i32) -> Option<i64> {
        let highs = self
            .highs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        highs.get(&(topic.to_owned(), partition)).copied()
    }
}
