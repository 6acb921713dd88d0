use std::{net::SocketAddr, time::Duration};

use polytape_runtime::{
    AdminEndpoint, Service, ServiceConfig,
    config::{CommonConfig, KafkaConfig, UpstreamConfig},
};
use serde::Deserialize;

/// Configuration of `polytape-collector`; see README.md, "Configuration", for every key (all
/// of them are in the shared key list, `crates/runtime/src/config/keys.rs`).
#[derive(Debug, Clone, Deserialize)]
pub struct CollectorConfig {
    #[serde(flatten)]
    pub common: CommonConfig,
    #[serde(flatten)]
    pub kafka: KafkaConfig,
    #[serde(flatten)]
    pub upstream: UpstreamConfig,
    pub collector_admin_addr: SocketAddr,
    #[serde(flatten, default)]
    pub tuning: CollectorTuning,
}

/// Collector-specific knobs, with defaults from the brief's published budgets.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CollectorTuning {
    /// How far back trades are backfilled in `run` mode.
    #[serde(with = "humantime_serde", rename = "collector_retention")]
    pub retention: Duration,
    /// Pause between polling rounds.
    #[serde(with = "humantime_serde", rename = "collector_poll_interval")]
    pub poll_interval: Duration,
    /// Length of upstream's sliding rate-limit windows.
    #[serde(with = "humantime_serde", rename = "collector_budget_window")]
    pub budget_window: Duration,
    /// Fraction of each published budget we allow ourselves.
    #[serde(rename = "collector_budget_margin")]
    pub budget_margin: f64,
    /// Markets walked at once (the token bucket, not this, sets the request rate).
    #[serde(rename = "collector_concurrency")]
    pub concurrency: usize,
    /// Rows per Data API `/trades` request (upstream allows 0..10,000).
    #[serde(rename = "collector_trades_page_size")]
    pub trades_page_size: u32,
    /// Polling stops this far behind now: upstream indexes fills with a delay (block time),
    /// and a window must not be marked covered before upstream can have all of its fills.
    #[serde(with = "humantime_serde", rename = "collector_poll_lag")]
    pub poll_lag: Duration,
    /// Every polling round re-reads this trailing window of covered time (with the same
    /// multi-market requests) for fills upstream indexed after the poll passed them; zero
    /// turns it off.
    #[serde(with = "humantime_serde", rename = "collector_reconcile_window")]
    pub reconcile_window: Duration,
    /// Pause between deep reconciliation passes over `reconcile_horizon`; zero turns them off.
    #[serde(with = "humantime_serde", rename = "collector_reconcile_interval")]
    pub reconcile_interval: Duration,
    /// How far back the deep pass looks (and how long the sent fills are remembered).
    #[serde(with = "humantime_serde", rename = "collector_reconcile_horizon")]
    pub reconcile_horizon: Duration,
    #[serde(with = "humantime_serde", rename = "collector_request_timeout")]
    pub request_timeout: Duration,
    #[serde(rename = "collector_max_attempts")]
    pub max_attempts: u32,
    /// `/prices-history` resolution in minutes.
    #[serde(rename = "collector_price_history_fidelity")]
    pub price_history_fidelity: u32,
    /// Pause between REST book snapshots (dataset `book_snapshots`, off by default).
    #[serde(with = "humantime_serde", rename = "collector_book_snapshot_interval")]
    pub book_snapshot_interval: Duration,
    /// Tokens per `POST /books` request.
    #[serde(rename = "collector_book_snapshot_batch")]
    pub book_snapshot_batch: usize,
    /// Only these token ids get REST snapshots (comma-separated; empty = every open token of
    /// the selected markets). Meant for the tokens the WS bridge does not cover.
    #[serde(
        rename = "collector_book_snapshot_tokens",
        deserialize_with = "comma_separated"
    )]
    pub book_snapshot_tokens: Vec<String>,
    /// Pause between leaderboard snapshots (kept across restarts by a checkpoint).
    #[serde(with = "humantime_serde", rename = "collector_leaderboard_interval")]
    pub leaderboard_interval: Duration,
    /// Rows read per (period, category, ordering) list; upstream serves at most 1,050
    /// (`offset` ≤ 1,000 plus a page of 50).
    #[serde(rename = "collector_leaderboard_depth")]
    pub leaderboard_depth: u32,
}

/// A comma-separated list (the shared configuration has no list type).
fn comma_separated<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    let text = String::deserialize(deserializer)?;
    Ok(text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect())
}

impl Default for CollectorTuning {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(90 * 24 * 3600),
            poll_interval: Duration::from_secs(30),
            budget_window: Duration::from_secs(10),
            budget_margin: 0.98,
            concurrency: 8,
            trades_page_size: 1000,
            poll_lag: Duration::from_secs(60),
            reconcile_window: Duration::from_secs(15 * 60),
            reconcile_interval: Duration::from_secs(3600),
            reconcile_horizon: Duration::from_secs(24 * 3600),
            request_timeout: Duration::from_secs(30),
            max_attempts: 8,
            price_history_fidelity: 60,
            book_snapshot_interval: Duration::from_secs(60),
            book_snapshot_batch: 100,
            book_snapshot_tokens: Vec::new(),
            leaderboard_interval: Duration::from_secs(3600),
            leaderboard_depth: 500,
        }
    }
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
