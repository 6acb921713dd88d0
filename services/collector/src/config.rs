use std::net::SocketAddr;

use polytape_runtime::{
    AdminEndpoint, Service, ServiceConfig,
    config::{CommonConfig, KafkaConfig, UpstreamConfig},
};
use serde::Deserialize;

/// Configuration of `polytape-collector`; see README.md, "Configuration", for every key.
#[derive(Debug, Clone, Deserialize)]
pub struct CollectorConfig {
    #[serde(flatten)]
    pub common: CommonConfig,
    #[serde(flatten)]
    pub kafka: KafkaConfig,
    #[serde(flatten)]
    pub upstream: UpstreamConfig,
    pub collector_admin_addr: SocketAddr,
}

impl ServiceConfig for CollectorConfig {
    const SERVICE: Service = Service::Collector;

    fn common(&self) -> &CommonConfig {
        &self.common
    }
}

impl CollectorConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn admin_endpoint(&self) -> AdminEndpoint {
        AdminEndpoint {
            addr: self.collector_admin_addr,
            env_var: "POLYTAPE_COLLECTOR_ADMIN_ADDR",
        }
    }
}
