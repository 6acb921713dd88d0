use std::{net::SocketAddr, time::Duration};

use polytape_runtime::{
    Service, ServiceConfig,
    config::{ClickHouseConfig, CommonConfig, KeyKind, KeySpec, ValidationReport},
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
    pub api_admin_addr: SocketAddr,
    #[serde(default)]
    pub api_bootstrap_key: Option<String>,
    #[serde(default)]
    pub api_admin_token: Option<String>,
    #[serde(with = "humantime_serde")]
    pub api_data_retention: Duration,
    #[serde(with = "humantime_serde")]
    pub api_key_refresh_interval: Duration,
}

impl ApiConfig {
    /// The keys only this service reads.
    pub const OWN_KEYS: &'static [KeySpec] = &[
        KeySpec::new(
            "api_addr",
            KeyKind::SocketAddr,
            "127.0.0.1:8080",
            "public REST API listen address: /v1/*, /health, /openapi.json, /docs only",
        ),
        KeySpec::new(
            "api_admin_addr",
            KeyKind::SocketAddr,
            "127.0.0.1:9105",
            "internal admin listen address of the API: /healthz, /readyz, /metrics and the /admin/* key routes",
        ),
        KeySpec::secret(
            "api_bootstrap_key",
            "an API key created at first start (optional)",
        ),
        KeySpec::secret(
            "api_admin_token",
            "token for /admin/* endpoints (optional; admin API off without it)",
        ),
        KeySpec::new(
            "api_data_retention",
            KeyKind::Duration,
            "90days",
            "how far back the API serves time series (the ClickHouse TTL); older ranges are refused with a 400, e.g. `90days`",
        ),
        KeySpec::new(
            "api_key_refresh_interval",
            KeyKind::Duration,
            "2s",
            "how often each API replica reloads keys and today's usage from ClickHouse (bounds how long a revocation takes to reach it), e.g. `2s`",
        ),
    ];
}

impl ServiceConfig for ApiConfig {
    const KEYS: &'static [&'static [KeySpec]] =
        &[CommonConfig::KEYS, ClickHouseConfig::KEYS, Self::OWN_KEYS];
    const SERVICE: Service = Service::Api;

    fn common(&self) -> &CommonConfig {
        &self.common
    }

    fn validate(&self, report: &mut ValidationReport<'_>) {
        let retention_days = self.api_data_retention.as_secs() / 86_400;
        if !(1..=u64::from(polytape_clickhouse::MAX_RETENTION_DAYS)).contains(&retention_days) {
            report.problem(
                "api_data_retention",
                &humantime::format_duration(self.api_data_retention).to_string(),
                format!(
                    "must be 1 to {} days",
                    polytape_clickhouse::MAX_RETENTION_DAYS
                ),
            );
        }
        if self.api_key_refresh_interval < Duration::from_millis(100)
            || self.api_key_refresh_interval > Duration::from_secs(60)
        {
            report.problem(
                "api_key_refresh_interval",
                &humantime::format_duration(self.api_key_refresh_interval).to_string(),
                "must be between 100ms and 60s (it bounds how long a revocation takes)",
            );
        }
        if let Some(token) = &self.api_admin_token
            && token.len() < 16
        {
            report.problem("api_admin_token", token, "must be at least 16 characters");
        }
    }
}

impl ApiConfig {
    /// Retention in whole days (the migrations' unit).
    pub fn retention_days(&self) -> u32 {
        u32::try_from(self.api_data_retention.as_secs() / 86_400).unwrap_or(90)
    }
}
