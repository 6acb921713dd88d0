//! The candle builder: OHLCV candles and order-book state derived in-stream.
//!
//! The derivations are plain structs tested without the network: [`candles::CandleAggregator`]
//! (event-time OHLCV windows per input partition, a watermark per token) and
//! [`book::BookEngine`] (L2 books per token, validated against upstream's best bid/ask).
//! [`pipeline`] is the thin Kafka loop around them, and checkpoints make the state survive
//! restarts (a [`polytape_kafka::CheckpointStore`]). The design is in README.md beside this crate.

pub mod book;
pub mod candles;
mod config;
mod error;
mod events;
mod hash;
pub mod merge;
pub mod pipeline;
pub mod resync;

pub use config::CandleBuilderConfig;
pub use error::BuilderError;
use polytape_runtime::{BoxError, ServiceContext};

/// Checks the service's dependencies and spawns the pipeline.
pub async fn start(config: CandleBuilderConfig, context: ServiceContext) -> Result<(), BoxError> {
    polytape_kafka::check_dependencies(&config.kafka).await?;
    let ready = context.readiness.register("builder");
    let stop = context.shutdown.token();
    context.shutdown.spawn("builder", async move {
        pipeline::run(config, stop, ready).await.map_err(|error| {
            let retryable = error.is_retryable();
            tracing::error!(error = %error, retryable, "candle builder stopped on an error");
            BoxError::from(error)
        })
    });
    Ok(())
}
