//! Configuration groups shared by several services. A service's config struct flattens the
//! groups it uses and adds its own keys.

use std::time::Duration;

use serde::Deserialize;

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

/// Kafka and Schema Registry.
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaConfig {
    pub kafka_brokers: String,
    pub schema_registry_url: String,
    pub topic_prefix: String,
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

/// Polymarket's public APIs. Base URLs may carry a path prefix (the simulator serves every
/// API under one port: http://127.0.0.1:8900/gamma, …).
#[derive(Debug, Clone, Deserialize)]
pub struct UpstreamConfig {
    pub gamma_url: String,
    pub data_api_url: String,
    pub clob_url: String,
    pub clob_ws_url: String,
}
