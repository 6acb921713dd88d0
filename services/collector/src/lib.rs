//! The collector: REST backfill and live polling of Gamma, the Data API and CLOB into Avro topics.
//!
//! The collection pipeline (Gamma, Data API, CLOB polling and backfill) arrives with issue #5; today the service starts, checks Kafka and the Schema Registry, and serves its admin endpoints.

mod config;

pub use config::CollectorConfig;
use polytape_runtime::{BoxError, ServiceContext};

/// Checks the service's dependencies and spawns its tasks.
pub async fn start(config: CollectorConfig, context: ServiceContext) -> Result<(), BoxError> {
    polytape_kafka::check_dependencies(&config.kafka).await?;
    let pipeline = context.readiness.register("collection");
    let stop = context.shutdown.token();
    context.shutdown.spawn("collection", async move {
        pipeline.set_ready(true);
        stop.cancelled().await;
        Ok(())
    });
    Ok(())
}
