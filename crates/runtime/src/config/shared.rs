//! Configuration sections shared by several services, each with its keys. A service's config
//! struct flattens the sections it uses and lists their keys in its `ServiceConfig::KEYS`.

use std::time::Duration;

use serde::Deserialize;

use super::keys::{KeyKind, KeySpec, http_url};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured on a terminal.
    Pretty,
    /// One JSON object per line, for containers.
    Json,
}

/// Keys every service reads.
#[derive(Debug, Clone, Deserialize)]
pub struct CommonConfig {
    pub log_format: LogFormat,
    pub log_level: String,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl CommonConfig {
    pub const KEYS: &'static [KeySpec] = &[
        KeySpec::new(
            "log_format",
            KeyKind::Choice(&["pretty", "json"]),
            "pretty",
            "`pretty` (human, local) or `json` (containers)",
        ),
        KeySpec::new(
            "log_level",
            KeyKind::LogFilter,
            "info",
            "tracing filter, e.g. `info` or `info,polytape_collector=debug`; `RUST_LOG` wins",
        ),
        KeySpec::new(
            "shutdown_timeout",
            KeyKind::Duration,
            "30s",
            "how long draining may take after SIGTERM",
        ),
    ];
}

/// Kafka and Schema Registry.
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaConfig {
    pub kafka_brokers: String,
    pub schema_registry_url: String,
    pub topic_prefix: String,
}

impl KafkaConfig {
    pub const KEYS: &'static [KeySpec] = &[
        KeySpec::new(
            "kafka_brokers",
            KeyKind::HostPorts,
            "127.0.0.1:9092",
            "Kafka bootstrap servers, comma-separated host:port",
        ),
        KeySpec::new(
            "schema_registry_url",
            http_url("http://127.0.0.1:8081"),
            "http://127.0.0.1:8081",
            "Confluent-compatible Schema Registry base URL",
        ),
        KeySpec::new(
            "topic_prefix",
            KeyKind::Name {
                extra: "._-",
                allow_empty: true,
            },
            "",
            "prefix before every topic name (isolated deployments and tests)",
        ),
    ];
}

/// ClickHouse's HTTP interface.
#[derive(Debug, Clone, Deserialize)]
pub struct ClickHouseConfig {
    pub clickhouse_url: String,
    pub clickhouse_database: String,
    #[serde(default)]
    pub clickhouse_user: Option<String>,
    #[serde(default)]
    pub clickhouse_password: Option<String>,
}

impl ClickHouseConfig {
    pub const KEYS: &'static [KeySpec] = &[
        KeySpec::new(
            "clickhouse_url",
            http_url("http://127.0.0.1:8123"),
            "http://127.0.0.1:8123",
            "ClickHouse HTTP interface base URL",
        ),
        KeySpec::new(
            "clickhouse_database",
            KeyKind::Name {
                extra: "_",
                allow_empty: false,
            },
            "polymarket",
            "ClickHouse database",
        ),
        KeySpec::optional("clickhouse_user", KeyKind::Text, "ClickHouse user"),
        KeySpec::secret("clickhouse_password", "ClickHouse password"),
    ];
}

/// CLOB REST base URL: the collector's CLOB datasets, the ws-bridge's `/book` fallback and the
/// candle builder's resync.
pub const CLOB_URL: KeySpec = KeySpec::new(
    "clob_url",
    http_url("https://clob.polymarket.com"),
    "https://clob.polymarket.com",
    "CLOB REST base URL (may carry a path prefix)",
);

/// Polymarket's public APIs. Base URLs may carry a path prefix (the simulator serves every
/// API under one port: http://127.0.0.1:8900/gamma, …).
#[derive(Debug, Clone, Deserialize)]
pub struct UpstreamConfig {
    pub gamma_url: String,
    pub data_api_url: String,
    pub clob_url: String,
    pub clob_ws_url: String,
}

impl UpstreamConfig {
    pub const KEYS: &'static [KeySpec] = &[
        KeySpec::new(
            "gamma_url",
            http_url("https://gamma-api.polymarket.com"),
            "https://gamma-api.polymarket.com",
            "Gamma API base URL (may carry a path prefix)",
        ),
        KeySpec::new(
            "data_api_url",
            http_url("https://data-api.polymarket.com"),
            "https://data-api.polymarket.com",
            "Data API base URL (may carry a path prefix)",
        ),
        CLOB_URL,
        KeySpec::new(
            "clob_ws_url",
            KeyKind::Url {
                schemes: &["ws", "wss"],
                example: "wss://ws-subscriptions-clob.polymarket.com/ws/market",
            },
            "wss://ws-subscriptions-clob.polymarket.com/ws/market",
            "CLOB market-channel WebSocket URL",
        ),
    ];
}
