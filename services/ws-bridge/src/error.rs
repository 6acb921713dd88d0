//! Errors of the bridge, classified: retryable ones are handled where they happen (reconnect,
//! retry the delivery), terminal ones stop the service (exit 1).

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(transparent)]
    Kafka(#[from] polytape_kafka::KafkaError),
    #[error("schema registry: {0}")]
    Codec(#[from] polytape_codec::CodecError),
    #[error("cannot read {topic}: {source}")]
    MarketsConsumer {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot encode a {record}: {source}")]
    Encode {
        record: &'static str,
        #[source]
        source: polytape_codec::CodecError,
    },
    #[error("cannot build the REST client: {0}")]
    Upstream(#[source] polytape_polymarket::UpstreamError),
    #[error("the record pipeline is closed")]
    PipelineClosed,
    #[error("bridge state: {0}")]
    State(String),
    #[error("connection shard {shard} panicked ({message})")]
    ShardPanicked { shard: usize, message: String },
    #[error("stopped")]
    Cancelled,
}

impl BridgeError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            BridgeError::Kafka(error) => error.is_retryable(),
            BridgeError::MarketsConsumer { .. } | BridgeError::State(_) => true,
            BridgeError::Codec(_)
            | BridgeError::Encode { .. }
            | BridgeError::Upstream(_)
            | BridgeError::PipelineClosed
            | BridgeError::ShardPanicked { .. }
            | BridgeError::Cancelled => false,
        }
    }
}
