use std::net::SocketAddr;

use polytape_runtime::{
    AdminEndpoint, Service, ServiceConfig,
    config::{CommonConfig, KafkaConfig, UpstreamConfig},
};
use serde::Deserialize;

/// Configuration of `polytape-ws-bridge`; see README.md, "Configuration", for every key.
#[derive(Debug, Clone, Deserialize)]
pub struct WsBridgeConfig {
    #[serde(flatten)]
    pub common: CommonConfig,
    #[serde(flatten)]
    pub kafka: KafkaConfig,
    #[serde(flatten)]
    pub upstream: UpstreamConfig,
    pub ws_bridge_admin_addr: SocketAddr,
    pub ws_max_assets_per_connection: u32,
}

impl ServiceConfig for WsBridgeConfig {
    const SERVICE: Service = Service::WsBridge;

    fn common(&self) -> &CommonConfig {
        &self.common
    }
}

impl WsBridgeConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn admin_endpoint(&self) -> AdminEndpoint {
        AdminEndpoint {
            addr: self.ws_bridge_admin_addr,
            env_var: "POLYTAPE_WS_BRIDGE_ADMIN_ADDR",
        }
    }
}
