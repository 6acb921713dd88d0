//! Errors that stop the builder, classified so the caller knows whether retrying can help.

use polytape_codec::CodecError;
use polytape_kafka::KafkaError;

use polytape_model::micros::UnitsError;

#[derive(Debug, thiserror::Error)]
pub enum BuilderError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("kafka: cannot {context}: {source}")]
    Client {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("a derived value does not fit its schema: {0}")]
    Units(#[from] UnitsError),
    #[error("book resync: {0}")]
    Resync(String),
}

impl BuilderError {
    /// Whether the same operation may succeed later (broker or registry unavailable), as
    /// opposed to a state or configuration problem that needs a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            BuilderError::Kafka(error) => error.is_retryable(),
            BuilderError::Client { .. } => true,
            BuilderError::Codec(error) => error.is_retryable(),
            BuilderError::Checkpoint(_) | BuilderError::Units(_) | BuilderError::Resync(_) => false,
        }
    }
}
