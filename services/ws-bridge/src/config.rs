use std::{net::SocketAddr, time::Duration};

use polytape_runtime::{
    AdminEndpoint, Service, ServiceConfig,
    config::{CommonConfig, KafkaConfig, KeyKind, KeySpec, UpstreamConfig, ValidationReport},
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
    #[serde(flatten)]
    pub tuning: BridgeTuning,
    #[serde(flatten)]
    pub filter: TokenFilterConfig,
}

/// Heartbeat, freeze detection and reconnection knobs.
#[derive(Debug, Clone, Deserialize)]
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

/// Which markets of `polymarket.markets.v1` the bridge follows (beyond active + order book).
#[derive(Debug, Clone, Default, Deserialize)]
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

impl WsBridgeConfig {
    /// The keys only this service reads.
    pub const OWN_KEYS: &'static [KeySpec] = &[
        KeySpec::new(
            "ws_bridge_admin_addr",
            KeyKind::SocketAddr,
            "127.0.0.1:9102",
            "ws-bridge's admin listen address",
        ),
        KeySpec::new(
            "ws_max_assets_per_connection",
            KeyKind::Count {
                min: 1,
                max: 10_000,
            },
            "500",
            "token ids per WebSocket connection (lowered at run time if the server refuses with a smaller `max_assets`)",
        ),
        KeySpec::new(
            "ws_ping_interval",
            KeyKind::Duration,
            "10s",
            "how often the ws-bridge sends the text frame PING on each connection",
        ),
        KeySpec::new(
            "ws_pong_timeout",
            KeyKind::Duration,
            "30s",
            "a connection without PONG for this long is reconnected",
        ),
        KeySpec::new(
            "ws_staleness_min",
            KeyKind::Duration,
            "30s",
            "shortest silence (no data, PONGs still arriving) treated as a frozen connection",
        ),
        KeySpec::new(
            "ws_staleness_max",
            KeyKind::Duration,
            "5m",
            "longest staleness window, used for quiet token sets and before the rate is known",
        ),
        KeySpec::new(
            "ws_reconnect_min_backoff",
            KeyKind::Duration,
            "1s",
            "first delay before reconnecting (doubles per failed attempt, with jitter)",
        ),
        KeySpec::new(
            "ws_reconnect_max_backoff",
            KeyKind::Duration,
            "60s",
            "longest delay between reconnection attempts",
        ),
        KeySpec::new(
            "ws_dump_timeout",
            KeyKind::Duration,
            "10s",
            "after (re)subscribing, tokens without a `book` dump by then are fetched from REST /book",
        ),
        KeySpec::new(
            "ws_filter_tags",
            KeyKind::Text,
            "",
            "follow only markets carrying one of these tags, comma-separated (empty: any)",
        ),
        KeySpec::new(
            "ws_filter_min_volume",
            KeyKind::Count {
                min: 0,
                max: 1_000_000_000_000,
            },
            "0",
            "follow only markets with at least this volume in USDC (0: any)",
        ),
        KeySpec::new(
            "ws_filter_ids",
            KeyKind::Text,
            "",
            "follow only these condition ids and/or token ids, comma-separated (empty: every market)",
        ),
    ];
}

impl ServiceConfig for WsBridgeConfig {
    const KEYS: &'static [&'static [KeySpec]] = &[
        CommonConfig::KEYS,
        KafkaConfig::KEYS,
        UpstreamConfig::KEYS,
        Self::OWN_KEYS,
    ];
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
