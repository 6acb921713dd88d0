//! The WebSocket bridge: the CLOB MARKET channel into Avro topics, gap-aware. Design:
//! README.md beside this crate.
//!
//! Library modules are tested without the network (`parse` on upstream's exact examples,
//! `validate`, `continuity`, `tokens`, `recent`, the pure parts of `state`); `connection`,
//! `bridge` and the rest of `state` are the I/O around them.

mod bridge;
mod config;
pub mod connection;
pub mod continuity;
pub mod error;
pub mod markets;
mod metrics;
pub mod publish;
pub mod recent;
pub mod state;
pub mod tokens;
pub mod validate;

pub use bridge::Bridge;
pub use config::{BridgeTuning, TokenFilterConfig, WsBridgeConfig};
use polytape_runtime::{BoxError, ServiceContext};

/// Checks the service's dependencies, registers the schemas, and spawns the bridge.
pub async fn start(config: WsBridgeConfig, context: ServiceContext) -> Result<(), BoxError> {
    polytape_kafka::check_dependencies(&config.kafka).await?;
    let bridge = Bridge::connect(&config).await?;
    let pipeline = context.readiness.register("bridge");
    let stop = context.shutdown.token();
    context.shutdown.spawn("bridge", async move {
        bridge
            .run(stop, move || pipeline.set_ready(true))
            .await
            .map_err(Into::into)
    });
    Ok(())
}
