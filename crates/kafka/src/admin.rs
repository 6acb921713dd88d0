use std::time::Duration;

use polytape_model::{CleanupPolicy, Topic, TopicNames, topic::DELETE_RETENTION_MS};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    types::RDKafkaErrorCode,
};

use crate::KafkaError;

/// What `ensure_topics` did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicCreation {
    Created(String),
    AlreadyExisted(String),
}

/// Creates `topics` (names with the deployment's prefix) with the partition counts and
/// cleanup policies of the topic table. Existing topics are left as they are.
pub async fn ensure_topics(
    brokers: &str,
    names: &TopicNames,
    topics: &[Topic],
    replication: i32,
) -> Result<Vec<TopicCreation>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = crate::create_client(brokers)?;
    let topic_names: Vec<String> = topics.iter().map(|topic| names.name(*topic)).collect();
    let retention = DELETE_RETENTION_MS.to_string();
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .zip(&topic_names)
        .map(|(topic, name)| {
            let new_topic = NewTopic::new(
                name,
                topic.partitions(),
                TopicReplication::Fixed(replication),
            )
            .set("cleanup.policy", topic.cleanup_policy().as_str());
            match topic.cleanup_policy() {
                CleanupPolicy::Delete => new_topic.set("retention.ms", &retention),
                CleanupPolicy::Compact => new_topic,
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|source| KafkaError::Unreachable {
            brokers: brokers.to_owned(),
            source,
        })?;
    let mut outcome = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(name) => outcome.push(TopicCreation::Created(name)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                outcome.push(TopicCreation::AlreadyExisted(name))
            }
            Err((name, code)) => {
                return Err(KafkaError::TopicCreation {
                    topic: name,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(outcome)
}
