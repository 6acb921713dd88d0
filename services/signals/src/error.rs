//! Errors that stop the signals service, classified so the caller knows whether retrying can
//! help.

use polytape_codec::CodecError;
use polytape_kafka::KafkaError;
use polytape_model::micros::UnitsError;

#[derive(Debug, thiserror::Error)]
pub enum SignalsError {
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
    #[error("a checked input did not apply: {0}")]
    Units(#[from] UnitsError),
    #[error(transparent)]
    ClickHouse(#[from] polytape_clickhouse::ClickHouseError),
    #[error("alerts: {0}")]
    Alerts(String),
}

impl SignalsError {
    /// Whether the same operation may succeed later (broker or registry unavailable), as
    /// opposed to a state problem that needs a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            SignalsError::Kafka(error) => error.is_retryable(),
            SignalsError::Client { .. } => true,
            SignalsError::Codec(error) => error.is_retryable(),
            SignalsError::ClickHouse(error) => error.is_retryable(),
            SignalsError::Checkpoint(_) | SignalsError::Units(_) | SignalsError::Alerts(_) => false,
        }
    }
}
