use std::net::SocketAddr;

use polytape_runtime::{
    AdminEndpoint, Service, ServiceConfig,
    config::{CommonConfig, KafkaConfig},
};
use serde::Deserialize;

/// Configuration of `polytape-candle-builder`; see README.md, "Configuration", for every key.
#[derive(Debug, Clone, Deserialize)]
pub struct CandleBuilderConfig {
    #[serde(flatten)]
    pub common: CommonConfig,
    #[serde(flatten)]
    pub kafka: KafkaConfig,
    pub candle_builder_admin_addr: SocketAddr,
}

impl ServiceConfig for CandleBuilderConfig {
    const SERVICE: Service = Service::CandleBuilder;

    fn common(&self) -> &CommonConfig {
        &self.common
    }
}

impl CandleBuilderConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn admin_endpoint(&self) -> AdminEndpoint {
        AdminEndpoint {
            addr: self.candle_builder_admin_addr,
            env_var: "POLYTAPE_CANDLE_BUILDER_ADMIN_ADDR",
        }
    }
}
