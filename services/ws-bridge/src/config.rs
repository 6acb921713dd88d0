use std::{net::SocketAddr, time::Duration};

use polytape_runtime::{
    AdminEndpoint, Service, ServiceConfig,
    config::{CommonConfig, KafkaConfig, UpstreamConfig, ValidationReport},
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
    #[serde(flatten, default)]
    pub tuning: BridgeTuning,
    #[serde(flatten, default)]
    pub filter: TokenFilterConfig,
}

/// Heartbeat, freeze detection and reconnection knobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BridgeTuning {
    #[serde(with = "humantime_serde", rename = "ws_ping_interval")]
    pub ping_interval: Duration,
    #[serde(with = "humantime_serde", rename = "ws_pong_timeout")]
    pub pong_timeout: Duration,
    /// The staleness window of a connection adapts to its token set's observed event rate,
    /// bounded by these two.
    #[serde(with = "humantime_serde", rename = "ws_staleness_min")]
    pub staleness_min: Duration,
    #[serde(with = "humantime_serde", rename = "ws_staleness_max")]
    pub staleness_max: Duration,
    #[serde(with = "humantime_serde", rename = "ws_reconnect_min_backoff")]
    pub reconnect_min_backoff: Duration,
    #[serde(with = "humantime_serde", rename = "ws_reconnect_max_backoff")]
    pub reconnect_max_backoff: Duration,
    #[serde(with = "humantime_serde", rename = "ws_dump_timeout")]
    pub dump_timeout: Duration,
}

impl Default for BridgeTuning {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(10),
            pong_timeout: Duration::from_secs(30),
            staleness_min: Duration::from_secs(30),
            staleness_max: Duration::from_secs(300),
            reconnect_min_backoff: Duration::from_secs(1),
            reconnect_max_backoff: Duration::from_secs(60),
            dump_timeout: Duration::from_secs(10),
        }
    }
}

/// Which markets of `polymarket.markets.v1` the bridge follows (beyond active + order book).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TokenFilterConfig {
    /// Comma-separated tags; a market qualifies with any of them (case-insensitive).
    #[serde(rename = "ws_filter_tags")]
    pub tags: String,
    /// Minimum market volume in USDC (0: no minimum).
    #[serde(rename = "ws_filter_min_volume")]
    pub min_volume: u64,
    /// Comma-separated condition ids and/or token ids (empty: every market).
    #[serde(rename = "ws_filter_ids")]
    pub ids: String,
}

impl ServiceConfig for WsBridgeConfig {
    const SERVICE: Service = Service::WsBridge;

    fn common(&self) -> &CommonConfig {
        &self.common
    }

    fn validate(&self, report: &mut ValidationReport<'_>) {
        if self.tuning.staleness_min > self.tuning.staleness_max {
            report.problem(
                "ws_staleness_min",
                &humantime_serde::re::humantime::format_duration(self.tuning.staleness_min)
                    .to_string(),
                "must not exceed ws_staleness_max",
            );
        }
        if self.tuning.reconnect_min_backoff > self.tuning.reconnect_max_backoff {
            report.problem(
                "ws_reconnect_min_backoff",
                &humantime_serde::re::humantime::format_duration(self.tuning.reconnect_min_backoff)
                    .to_string(),
                "must not exceed ws_reconnect_max_backoff",
            );
        }
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
