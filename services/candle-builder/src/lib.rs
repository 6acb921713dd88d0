//! The candle builder: OHLCV candles and order-book state derived in-stream.
//!
//! Candle and book-state derivation arrives with issue #7; today the service starts, checks Kafka and the Schema Registry, and serves its admin endpoints.

mod config;

pub use config::CandleBuilderConfig;
use polytape_runtime::{BoxError, ServiceContext};

/// Checks the service's dependencies and spawns its tasks.
pub async fn start(config: CandleBuilderConfig, context: ServiceContext) -> Result<(), BoxError> {
    polytape_kafka::check_dependencies(&config.kafka).await?;
    let pipeline = context.readiness.register("builder");
    let stop = context.shutdown.token();
    context.shutdown.spawn("builder", async move {
        pipeline.set_ready(true);
        stop.cancelled().await;
        Ok(())
    });
    Ok(())
}
