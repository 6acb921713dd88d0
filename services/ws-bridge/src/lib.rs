//! The WebSocket bridge: the CLOB MARKET channel into Avro topics, gap-aware.
//!
//! The WebSocket pipeline arrives with issue #6; today the service starts, checks Kafka and the Schema Registry, and serves its admin endpoints.

mod config;

pub use config::WsBridgeConfig;
use polytape_runtime::{BoxError, ServiceContext};

/// Checks the service's dependencies and spawns its tasks.
pub async fn start(config: WsBridgeConfig, context: ServiceContext) -> Result<(), BoxError> {
    polytape_kafka::check_dependencies(&config.kafka).await?;
    let pipeline = context.readiness.register("bridge");
    let stop = context.shutdown.token();
    context.shutdown.spawn("bridge", async move {
        pipeline.set_ready(true);
        stop.cancelled().await;
        Ok(())
    });
    Ok(())
}
