use std::net::SocketAddr;

use polytape_runtime::{
    AdminEndpoint, Service, ServiceConfig,
    config::{ClickHouseConfig, CommonConfig, KafkaConfig},
};
use serde::Deserialize;

/// Configuration of `polytape-sink-clickhouse`; see README.md, "Configuration", for every key.
#[derive(Debug, Clone, Deserialize)]
pub struct SinkConfig {
    #[serde(flatten)]
    pub common: CommonConfig,
    #[serde(flatten)]
    pub kafka: KafkaConfig,
    #[serde(flatten)]
    pub clickhouse: ClickHouseConfig,
    pub sink_admin_addr: SocketAddr,
    pub sink_consumer_group: String,
    pub sink_batch_max_rows: usize,
    pub sink_batch_max_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub sink_flush_interval: std::time::Duration,
}

impl ServiceConfig for SinkConfig {
    const SERVICE: Service = Service::SinkClickhouse;

    fn common(&self) -> &CommonConfig {
        &self.common
    }
}

impl SinkConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn admin_endpoint(&self) -> AdminEndpoint {
        AdminEndpoint {
            addr: self.sink_admin_addr,
            env_var: "POLYTAPE_SINK_ADMIN_ADDR",
        }
    }
}
