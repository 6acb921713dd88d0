use std::net::SocketAddr;

use polytape_runtime::{
    Service, ServiceConfig,
    config::{ClickHouseConfig, CommonConfig},
};
use serde::Deserialize;

/// Configuration of `polytape-api`; see README.md, "Configuration", for every key.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiConfig {
    #[serde(flatten)]
    pub common: CommonConfig,
    #[serde(flatten)]
    pub clickhouse: ClickHouseConfig,
    pub api_addr: SocketAddr,
    #[serde(default)]
    pub api_bootstrap_key: Option<String>,
    #[serde(default)]
    pub api_admin_token: Option<String>,
}

impl ServiceConfig for ApiConfig {
    const SERVICE: Service = Service::Api;

    fn common(&self) -> &CommonConfig {
        &self.common
    }
}
