//! Errors of the collector, classified: retryable ones are retried with backoff (or the
//! market is retried on the next round), terminal ones stop the collector.

use crate::{budget::Endpoint, parse::PageError};

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{endpoint:?} answered HTTP {status}: {body}")]
    Status {
        endpoint: Endpoint,
        status: u16,
        body: String,
    },
    #[error("{endpoint:?} request failed: {source}")]
    Transport {
        endpoint: Endpoint,
        #[source]
        source: reqwest::Error,
    },
    #[error("{endpoint:?} page is malformed: {error}")]
    Page {
        endpoint: Endpoint,
        url: String,
        body: Vec<u8>,
        error: PageError,
    },
    #[error(transparent)]
    Kafka(#[from] polytape_kafka::KafkaError),
    #[error("schema registry: {0}")]
    Codec(#[from] polytape_codec::CodecError),
    #[error("checkpoints: {0}")]
    Checkpoint(String),
    #[error("{0}")]
    Config(String),
    #[error("stopped")]
    Cancelled,
}

impl CollectError {
    /// Whether upstream failed (an answer, a transport failure or a malformed page), as
    /// opposed to Kafka, checkpoints or configuration: only those leave upstream time unread.
    pub fn is_upstream(&self) -> bool {
        matches!(
            self,
            CollectError::Status { .. }
                | CollectError::Transport { .. }
                | CollectError::Page { .. }
        )
    }

    /// Whether trying again (later, or next round) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            CollectError::Status { status, .. } => {
                *status == 429 || *status == 408 || *status >= 500
            }
            CollectError::Transport { .. } | CollectError::Page { .. } => true,
            CollectError::Kafka(error) => error.is_retryable(),
            CollectError::Checkpoint(_) => true,
            CollectError::Codec(_) | CollectError::Config(_) | CollectError::Cancelled => false,
        }
    }
}
