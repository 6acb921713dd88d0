//! The followed markets come from the compacted `polymarket.markets.v1`: read whole from the
//! beginning at start (compaction keeps the latest record per market), then followed live.
//! Nothing is committed: every start rebuilds the set from the topic.

use std::time::Duration;

use polytape_codec::{RecordDecoder, SchemaRegistryClient};
use polytape_model::{DeadLetter, Market, Topic, TopicNames, now_ms};
use rdkafka::{
    Message as _, Offset, TopicPartitionList,
    consumer::{Consumer as _, StreamConsumer},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    error::BridgeError,
    publish::{Outgoing, Publisher, SOURCE},
};

/// What the markets topic says.
#[derive(Debug)]
pub enum MarketUpdate {
    Upsert(Box<Market>),
    Deleted(String),
    /// Everything present at start-up has been read.
    CaughtUp,
}

fn consumer_error(topic: &str, source: rdkafka::error::KafkaError) -> BridgeError {
    BridgeError::MarketsConsumer {
        topic: topic.to_owned(),
        source,
    }
}

/// Reads the markets topic into `updates` until stopped.
pub async fn follow_markets(
    brokers: String,
    registry: SchemaRegistryClient,
    names: TopicNames,
    instance: String,
    publisher: Publisher,
    updates: mpsc::Sender<MarketUpdate>,
    stop: CancellationToken,
) -> Result<(), BridgeError> {
    let topic = names.name(Topic::Markets);
    let consumer: StreamConsumer = polytape_kafka::base_config(&brokers)
        .set("group.id", format!("polytape-ws-bridge-markets-{instance}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|source| consumer_error(&topic, source))?;
    // The topic's partitions and their ends at start-up (blocking calls: off the workers).
    let (consumer, ends) = {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map_err(|source| consumer_error(&topic, source))?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .flat_map(|entry| entry.partitions().iter().map(|partition| partition.id()))
                .collect();
            let mut ends = Vec::new();
            for partition in &partitions {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, *partition, Duration::from_secs(10))
                    .map_err(|source| consumer_error(&topic, source))?;
                ends.push((*partition, low, high));
            }
            Ok::<_, BridgeError>((consumer, ends))
        })
        .await
        .map_err(|_| BridgeError::PipelineClosed)??
    };
    if ends.is_empty() {
        tracing::warn!(topic = %topic, "the markets topic has no partitions (not created?); following no tokens until restart");
    }
    let mut assignment = TopicPartitionList::new();
    for (partition, _, _) in &ends {
        assignment
            .add_partition_offset(&topic, *partition, Offset::Beginning)
            .map_err(|source| consumer_error(&topic, source))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|source| consumer_error(&topic, source))?;
    // Partitions still to read up to their start-up end.
    let mut behind: Vec<(i32, i64)> = ends
        .iter()
        .filter(|(_, low, high)| high > low)
        .map(|(partition, _, high)| (*partition, *high))
        .collect();
    let decoder = RecordDecoder::<Market>::new(registry);
    if behind.is_empty() && updates.send(MarketUpdate::CaughtUp).await.is_err() {
        return Ok(());
    }
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(error = %error, topic = %topic, "markets consumer error; continuing");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let partition = message.partition();
        let offset = message.offset();
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        let update = match message.payload() {
            None => Some(MarketUpdate::Deleted(key)),
            Some(payload) => match decoder.decode(payload).await {
                Ok(market) => Some(MarketUpdate::Upsert(Box::new(market))),
                Err(error) => {
                    let letter = DeadLetter::from_message(
                        SOURCE,
                        &topic,
                        partition,
                        offset,
                        format!("cannot decode a market (key {key}): {error}"),
                        payload.to_vec(),
                        now_ms(),
                    );
                    tracing::warn!(topic = %topic, partition, offset, error = %error, "undecodable market sent to the dlq");
                    publisher.publish(Outgoing::Dead(letter)).await?;
                    None
                }
            },
        };
        if let Some(update) = update
            && updates.send(update).await.is_err()
        {
            return Ok(());
        }
        if !behind.is_empty() {
            behind.retain(|(behind_partition, end)| {
                !(*behind_partition == partition && offset + 1 >= *end)
            });
            if behind.is_empty() && updates.send(MarketUpdate::CaughtUp).await.is_err() {
                return Ok(());
            }
        }
    }
}
