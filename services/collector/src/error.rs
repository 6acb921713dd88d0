//! Errors of the collector, classified: retryable ones are retried with backoff (or the
//! market is retried on the next round), terminal ones stop the collector.

use polytape_polymarket::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// Upstream failed: an answer, a transport failure or a malformed page (never `Cancelled`
    /// or a client-building error: those are [`CollectError::Cancelled`] and
    /// [`CollectError::Config`]).
    #[error(transparent)]
    Upstream(UpstreamError),
    #[error(transparent)]
    Kafka(#[from] polytape_kafka::KafkaError),
    #[error("schema registry: {0}")]
    Codec(#[from] polytape_codec::CodecError),
    #[error("checkpoints: {0}")]
    Checkpoint(String),
    #[error("{0}")]
    Config(String),
    /// A walk running beside the rounds panicked (a bug): collection stops rather than leave
    /// the market unfollowed.
    #[error("a trades walk of {0} panicked")]
    WalkPanicked(String),
    #[error("stopped")]
    Cancelled,
}

impl CollectError {
    /// Whether upstream failed (an answer, a transport failure or a malformed page), as
    /// opposed to Kafka, checkpoints or configuration: only those leave upstream time unread.
    pub fn is_upstream(&self) -> bool {
        matches!(self, CollectError::Upstream(_))
    }

    /// Whether trying again (later, or next round) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            CollectError::Upstream(error) => error.is_retryable(),
            CollectError::Kafka(error) => error.is_retryable(),
            CollectError::Checkpoint(_) => true,
            CollectError::Codec(_)
            | CollectError::Config(_)
            | CollectError::WalkPanicked(_)
            | CollectError::Cancelled => false,
        }
    }
}

impl From<UpstreamError> for CollectError {
    fn from(error: UpstreamError) -> Self {
        match error {
            UpstreamError::Client(reason) => CollectError::Config(reason),
            UpstreamError::Cancelled => CollectError::Cancelled,
            error => CollectError::Upstream(error),
        }
    }
}
