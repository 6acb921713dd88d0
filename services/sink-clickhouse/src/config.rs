use std::net::SocketAddr;

use polytape_runtime::{
    AdminEndpoint, Service, ServiceConfig,
    config::{ClickHouseConfig, CommonConfig, KafkaConfig, KeyKind, KeySpec},
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

impl SinkConfig {
    /// The keys only this service reads.
    pub const OWN_KEYS: &'static [KeySpec] = &[
        KeySpec::new(
            "sink_admin_addr",
            KeyKind::SocketAddr,
            "127.0.0.1:9104",
            "sink's admin listen address",
        ),
        KeySpec::new(
            "sink_consumer_group",
            KeyKind::Name {
                extra: "._-",
                allow_empty: false,
            },
            "polytape-sink-clickhouse",
            "the sink's Kafka consumer group",
        ),
        KeySpec::new(
            "sink_batch_max_rows",
            KeyKind::Count {
                min: 1,
                max: 10_000_000,
            },
            "100000",
            "flush to ClickHouse once this many rows are pending",
        ),
        KeySpec::new(
            "sink_batch_max_bytes",
            KeyKind::Count {
                min: 1024,
                max: 4_294_967_296,
            },
            "67108864",
            "flush once the pending batch holds this many bytes of Avro payload",
        ),
        KeySpec::new(
            "sink_flush_interval",
            KeyKind::Duration,
            "500ms",
            "flush at least this often, so quiet topics land promptly, e.g. `500ms`",
        ),
    ];
}

impl ServiceConfig for SinkConfig {
    const KEYS: &'static [&'static [KeySpec]] = &[
        CommonConfig::KEYS,
        KafkaConfig::KEYS,
        ClickHouseConfig::KEYS,
        Self::OWN_KEYS,
    ];
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
