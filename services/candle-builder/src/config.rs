use std::{net::SocketAddr, time::Duration};

use polytape_runtime::{
    AdminEndpoint, Service, ServiceConfig,
    config::{CLOB_URL, CommonConfig, KafkaConfig, KeyKind, KeySpec, ValidationReport},
};
use serde::Deserialize;

use crate::{
    book::BookSettings,
    candles::{CandleInput, CandleSettings, Interval},
};

/// Configuration of `polytape-candle-builder`; see README.md, "Configuration", for every key.
/// Its own keys, with their defaults, are declared in [`CandleBuilderConfig::OWN_KEYS`].
#[derive(Debug, Clone, Deserialize)]
pub struct CandleBuilderConfig {
    #[serde(flatten)]
    pub common: CommonConfig,
    #[serde(flatten)]
    pub kafka: KafkaConfig,
    pub candle_builder_admin_addr: SocketAddr,
    /// Candle intervals, comma-separated (`1m,5m,15m,1h,4h,1d`).
    pub candle_intervals: String,
    /// How far behind its token's watermark a window waits for trades before it is final.
    #[serde(with = "humantime_serde")]
    pub candle_allowed_lateness: Duration,
    /// How long a final candle can still be corrected by a trade that arrives later.
    #[serde(with = "humantime_serde")]
    pub candle_correction_horizon: Duration,
    /// The topic candles are built from: `trades` or `last_trades` (never both).
    pub candle_input: String,
    /// Levels per side in a regular book state.
    pub book_top_levels: u32,
    /// Event-time period of book states for a token without significant change.
    #[serde(with = "humantime_serde")]
    pub book_publish_interval: Duration,
    /// Event-time period of full-depth book states.
    #[serde(with = "humantime_serde")]
    pub book_full_depth_interval: Duration,
    /// Books without an event for this long (event time) are evicted.
    #[serde(with = "humantime_serde")]
    pub book_idle_eviction: Duration,
    /// How often the state is checkpointed (wall time).
    #[serde(with = "humantime_serde")]
    pub candle_builder_checkpoint_interval: Duration,
    /// CLOB REST base URL: books found inconsistent are fetched from `<clob_url>/book`.
    pub clob_url: String,
    /// REST `/book` requests per 10 s for those fetches; 0 disables them.
    pub book_resync_budget: u32,
}

impl CandleBuilderConfig {
    /// The keys only this service reads.
    pub const OWN_KEYS: &'static [KeySpec] = &[
        KeySpec::new(
            "candle_builder_admin_addr",
            KeyKind::SocketAddr,
            "127.0.0.1:9103",
            "candle-builder's admin listen address",
        ),
        KeySpec::new(
            "candle_intervals",
            KeyKind::Text,
            "1m,5m,15m,1h,4h,1d",
            "candle intervals, comma-separated (number + s/m/h/d dividing a day), e.g. `1m,5m,15m,1h,4h,1d`",
        ),
        KeySpec::new(
            "candle_allowed_lateness",
            KeyKind::Duration,
            "2m",
            "how far behind its token's watermark (the token's largest trade time) a window waits for trades before it is final",
        ),
        KeySpec::new(
            "candle_correction_horizon",
            KeyKind::Duration,
            "24h",
            "how long a final candle can still be corrected by a trade found late (re-emitted complete with `revision` one higher); older trades go to the DLQ as late; at least the allowed lateness",
        ),
        KeySpec::new(
            "candle_input",
            KeyKind::Choice(&["trades", "last_trades"]),
            "trades",
            "the topic candles are built from: `trades` (every fill, from the collector) or `last_trades` (the WebSocket's taker rows only, live); one per deployment, never both (a taker fill would count twice)",
        ),
        KeySpec::new(
            "book_top_levels",
            KeyKind::Count {
                min: 1,
                max: 10_000,
            },
            "50",
            "levels per side in a regular book_state record",
        ),
        KeySpec::new(
            "book_publish_interval",
            KeyKind::Duration,
            "10s",
            "event-time period of book_state records without a best bid/ask change",
        ),
        KeySpec::new(
            "book_full_depth_interval",
            KeyKind::Duration,
            "5m",
            "event-time period of full-depth book_state records",
        ),
        KeySpec::new(
            "book_idle_eviction",
            KeyKind::Duration,
            "24h",
            "books without events for this long (event time) are evicted",
        ),
        KeySpec::new(
            "candle_builder_checkpoint_interval",
            KeyKind::Duration,
            "5s",
            "how often the candle builder checkpoints its state",
        ),
        KeySpec::new(
            "book_resync_budget",
            KeyKind::Count { min: 0, max: 1_500 },
            "50",
            "CLOB REST `/book` requests per 10 s the candle builder may spend fetching the books it found inconsistent (BOOK_MISMATCH); 0 disables the resync",
        ),
    ];
}

impl ServiceConfig for CandleBuilderConfig {
    const KEYS: &'static [&'static [KeySpec]] = &[
        CommonConfig::KEYS,
        KafkaConfig::KEYS,
        &[CLOB_URL],
        Self::OWN_KEYS,
    ];
    const SERVICE: Service = Service::CandleBuilder;

    fn common(&self) -> &CommonConfig {
        &self.common
    }

    fn validate(&self, report: &mut ValidationReport<'_>) {
        if let Err(error) = self.intervals() {
            report.problem("candle_intervals", &self.candle_intervals, error);
        }
        if let Err(error) = self.candle_input.parse::<CandleInput>() {
            report.problem("candle_input", &self.candle_input, error);
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl CandleBuilderConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn admin_endpoint(&self) -> AdminEndpoint {
        AdminEndpoint {
            addr: self.candle_builder_admin_addr,
            env_var: "POLYTAPE_CANDLE_BUILDER_ADMIN_ADDR",
        }
    }

    /// The configured intervals.
    pub fn intervals(&self) -> Result<Vec<Interval>, crate::candles::IntervalError> {
        self.candle_intervals
            .split(',')
            .filter(|label| !label.trim().is_empty())
            .map(str::parse)
            .collect()
    }

    pub fn candle_settings(&self) -> CandleSettings {
        CandleSettings::new(
            self.intervals().unwrap_or_else(|_| Interval::defaults()),
            millis(self.candle_allowed_lateness),
        )
        .with_correction_horizon(millis(self.candle_correction_horizon))
    }

    /// The configured candle input (validated at start-up; `trades` otherwise).
    pub fn candle_input(&self) -> CandleInput {
        self.candle_input.parse().unwrap_or(CandleInput::Trades)
    }

    pub fn book_settings(&self) -> BookSettings {
        BookSettings {
            top_levels: usize::try_from(self.book_top_levels)
                .unwrap_or(usize::MAX)
                .max(1),
            publish_interval_ms: millis(self.book_publish_interval),
            full_depth_interval_ms: millis(self.book_full_depth_interval).max(1),
            ..BookSettings::default()
        }
    }

    pub fn book_idle_eviction_ms(&self) -> i64 {
        millis(self.book_idle_eviction)
    }
}
