use std::{net::SocketAddr, time::Duration};

use polytape_runtime::{
    AdminEndpoint, Service, ServiceConfig,
    config::{CommonConfig, KafkaConfig, KeyKind, KeySpec, UpstreamConfig},
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
    #[serde(flatten)]
    pub tuning: CollectorTuning,
}

/// Collector-specific knobs, with defaults from the brief's published budgets.
#[derive(Debug, Clone, Deserialize)]
pub struct CollectorTuning {
    /// How far back trades are backfilled in `run` mode.
    #[serde(with = "humantime_serde", rename = "collector_retention")]
    pub retention: Duration,
    /// Pause between polling rounds.
    #[serde(with = "humantime_serde", rename = "collector_poll_interval")]
    pub poll_interval: Duration,
    /// Least time between two crawls of the market list (and price-history rounds) in
    /// `run`/`poll`: rounds in between poll trades over the last crawl's markets, so the trades
    /// tail can be polled far more often than the whole list is read.
    #[serde(with = "humantime_serde", rename = "collector_crawl_interval")]
    pub crawl_interval: Duration,
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
    /// Which trades tape is read: Data API v1 `/trades` or v2 `/v2/trades`.
    #[serde(rename = "collector_trades_api")]
    pub trades_api: polytape_polymarket::TradesApi,
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

impl CollectorConfig {
    /// The keys only this service reads.
    pub const OWN_KEYS: &'static [KeySpec] = &[
        KeySpec::new(
            "collector_admin_addr",
            KeyKind::SocketAddr,
            "127.0.0.1:9101",
            "collector's /healthz, /readyz, /metrics listen address",
        ),
        KeySpec::new(
            "collector_retention",
            KeyKind::Duration,
            "90days",
            "how far back `run` backfills trades, e.g. `90days`",
        ),
        KeySpec::new(
            "collector_poll_interval",
            KeyKind::Duration,
            "30s",
            "pause between collector polling rounds",
        ),
        KeySpec::new(
            "collector_crawl_interval",
            KeyKind::Duration,
            "60s",
            "least time between crawls of the market list (and price-history rounds); rounds in between poll trades over the last crawl",
        ),
        KeySpec::new(
            "collector_poll_lag",
            KeyKind::Duration,
            "60s",
            "polling stops this far behind now (upstream indexes fills late)",
        ),
        KeySpec::new(
            "collector_reconcile_window",
            KeyKind::Duration,
            "15m",
            "every polling round re-reads this trailing window for fills upstream indexed late (0 = off)",
        ),
        KeySpec::new(
            "collector_reconcile_interval",
            KeyKind::Duration,
            "1h",
            "pause between deep reconciliation passes over collector_reconcile_horizon (0 = off)",
        ),
        KeySpec::new(
            "collector_reconcile_horizon",
            KeyKind::Duration,
            "24h",
            "how far back the deep reconciliation pass looks for fills indexed late",
        ),
        KeySpec::new(
            "collector_budget_window",
            KeyKind::Duration,
            "10s",
            "length of upstream's rate-limit windows",
        ),
        KeySpec::new(
            "collector_budget_margin",
            KeyKind::Fraction,
            "0.98",
            "fraction (0..1] of each published budget the collector uses",
        ),
        KeySpec::new(
            "collector_concurrency",
            KeyKind::Count { min: 1, max: 256 },
            "8",
            "markets walked at once (run/poll: walk-lane workers), and poll or reconciliation requests in flight",
        ),
        KeySpec::new(
            "collector_trades_page_size",
            KeyKind::Count {
                min: 1,
                max: 10_000,
            },
            "1000",
            "rows per Data API /trades request",
        ),
        KeySpec::new(
            "collector_trades_api",
            KeyKind::Choice(&["v1", "v2"]),
            "v1",
            "the trades tape read: Data API v1 /trades (offsets) or v2 /v2/trades (cursors, 20 markets a request); fill ids are the same in both",
        ),
        KeySpec::new(
            "collector_request_timeout",
            KeyKind::Duration,
            "30s",
            "timeout of one upstream request",
        ),
        KeySpec::new(
            "collector_max_attempts",
            KeyKind::Count { min: 1, max: 100 },
            "8",
            "attempts per upstream request",
        ),
        KeySpec::new(
            "collector_price_history_fidelity",
            KeyKind::Count {
                min: 1,
                max: 10_080,
            },
            "60",
            "/prices-history fidelity in minutes",
        ),
        KeySpec::new(
            "collector_book_snapshot_interval",
            KeyKind::Duration,
            "60s",
            "pause between REST book snapshots (dataset book_snapshots, off by default)",
        ),
        KeySpec::new(
            "collector_book_snapshot_batch",
            KeyKind::Count { min: 1, max: 500 },
            "100",
            "tokens per CLOB POST /books request",
        ),
        KeySpec::new(
            "collector_book_snapshot_tokens",
            KeyKind::Name {
                extra: ",",
                allow_empty: true,
            },
            "",
            "comma-separated token ids to snapshot over REST (empty = every open token of the selected markets); meant for tokens the WS bridge does not cover",
        ),
        KeySpec::new(
            "collector_leaderboard_interval",
            KeyKind::Duration,
            "1h",
            "pause between leaderboard snapshots",
        ),
        KeySpec::new(
            "collector_leaderboard_depth",
            KeyKind::Count { min: 1, max: 1_050 },
            "500",
            "rows read per leaderboard list (period, category, ordering)",
        ),
    ];
}

impl ServiceConfig for CollectorConfig {
    const KEYS: &'static [&'static [KeySpec]] = &[
        CommonConfig::KEYS,
        KafkaConfig::KEYS,
        UpstreamConfig::KEYS,
        Self::OWN_KEYS,
    ];
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
