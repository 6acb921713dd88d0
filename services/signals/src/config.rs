use std::{net::SocketAddr, str::FromStr as _, time::Duration};

use polytape_model::micros::to_micros;
use polytape_runtime::{
    AdminEndpoint, Service, ServiceConfig,
    config::{ClickHouseConfig, CommonConfig, KafkaConfig, KeyKind, KeySpec, ValidationReport},
};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::{
    arbitrage::ArbitrageThresholds,
    destinations::Destinations,
    engine::EngineSettings,
    price_moves::{MIN_SIGMA_SAMPLES, PriceMoveThresholds},
    volume_spikes::VolumeSpikeThresholds,
    wallets::NewWalletThresholds,
};

/// Configuration of `polytape-signals`; see README.md, "Configuration", for every key.
/// Its own keys, with their defaults, are declared in [`SignalsConfig::OWN_KEYS`].
#[derive(Debug, Clone, Deserialize)]
pub struct SignalsConfig {
    #[serde(flatten)]
    pub common: CommonConfig,
    #[serde(flatten)]
    pub kafka: KafkaConfig,
    #[serde(flatten)]
    pub clickhouse: ClickHouseConfig,
    pub signals_admin_addr: SocketAddr,
    #[serde(with = "humantime_serde")]
    pub signals_checkpoint_interval: Duration,
    pub signal_large_trade_notional: String,
    #[serde(with = "humantime_serde")]
    pub signal_new_wallet_age: Duration,
    pub signal_new_wallet_prior_fills: u64,
    pub signal_wallet_capacity: u64,
    pub signal_arbitrage_min_edge: String,
    pub signal_arbitrage_min_size: String,
    pub signal_price_move: String,
    #[serde(with = "humantime_serde")]
    pub signal_price_move_window: Duration,
    #[serde(with = "humantime_serde")]
    pub signal_price_move_cooldown: Duration,
    pub signal_price_move_sigmas: String,
    #[serde(with = "humantime_serde")]
    pub signal_price_move_sigma_lookback: Duration,
    pub signal_price_move_sigma_floor: String,
    #[serde(with = "humantime_serde")]
    pub signal_volume_window: Duration,
    pub signal_volume_trailing_windows: u64,
    pub signal_volume_multiple: String,
    pub signal_volume_min_notional: String,
    #[serde(with = "humantime_serde")]
    pub signal_ranking_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub signal_ranking_delay: Duration,
    #[serde(default)]
    pub alert_destinations_file: Option<std::path::PathBuf>,
    #[serde(with = "humantime_serde")]
    pub alert_delivery_deadline: Duration,
    #[serde(with = "humantime_serde")]
    pub alert_rules_refresh: Duration,
}

impl SignalsConfig {
    /// The keys only this service reads.
    pub const OWN_KEYS: &'static [KeySpec] = &[
        KeySpec::new(
            "signals_admin_addr",
            KeyKind::SocketAddr,
            "127.0.0.1:9106",
            "signals' admin listen address",
        ),
        KeySpec::new(
            "signals_checkpoint_interval",
            KeyKind::Duration,
            "5s",
            "how often the signals service checkpoints its state (wallet histories, books, open windows) with the input offsets it covers",
        ),
        KeySpec::new(
            "signal_large_trade_notional",
            KeyKind::Text,
            "10000",
            "large trade from a new wallet: the least notional (price × size, USDC) of a large fill",
        ),
        KeySpec::new(
            "signal_new_wallet_age",
            KeyKind::Duration,
            "24h",
            "large trade from a new wallet: a wallet whose first fill we know of is younger than this is new",
        ),
        KeySpec::new(
            "signal_new_wallet_prior_fills",
            KeyKind::Count {
                min: 0,
                max: 1_000_000,
            },
            "5",
            "large trade from a new wallet: a wallet with fewer prior fills than this is new",
        ),
        KeySpec::new(
            "signal_wallet_capacity",
            KeyKind::Count {
                min: 1,
                max: 100_000_000,
            },
            "1000000",
            "wallet histories kept in memory; the least recently active is forgotten first (and counted in every signal's `wallets_forgotten`)",
        ),
        KeySpec::new(
            "signal_arbitrage_min_edge",
            KeyKind::Text,
            "0.005",
            "arbitrage windows: the least edge per full set, net of taker fees (USDC), that opens a window",
        ),
        KeySpec::new(
            "signal_arbitrage_min_size",
            KeyKind::Text,
            "1",
            "arbitrage windows: the least number of full sets executable at the edge (the thinnest leg's top size)",
        ),
        KeySpec::new(
            "signal_price_move",
            KeyKind::Text,
            "0.10",
            "price moves: the least move of a token's last-trade price within the window",
        ),
        KeySpec::new(
            "signal_price_move_window",
            KeyKind::Duration,
            "5m",
            "price moves: the window a move is measured in",
        ),
        KeySpec::new(
            "signal_price_move_cooldown",
            KeyKind::Duration,
            "5m",
            "price moves: how long a token stays quiet after a signal",
        ),
        KeySpec::new(
            "signal_price_move_sigmas",
            KeyKind::Text,
            "0",
            "price moves: also fire on a move of at least this many standard deviations of the token's trailing window-to-window price changes (0 = off)",
        ),
        KeySpec::new(
            "signal_price_move_sigma_lookback",
            KeyKind::Duration,
            "24h",
            "price moves: how far back the window-to-window changes behind the deviation reach",
        ),
        KeySpec::new(
            "signal_price_move_sigma_floor",
            KeyKind::Text,
            "0.02",
            "price moves: the least move the deviation criterion fires on",
        ),
        KeySpec::new(
            "signal_volume_window",
            KeyKind::Duration,
            "5m",
            "volume spikes: the window traded notional is summed over (tumbling, aligned to UTC)",
        ),
        KeySpec::new(
            "signal_volume_trailing_windows",
            KeyKind::Count {
                min: 1,
                max: 10_000,
            },
            "12",
            "volume spikes: how many windows before the current one its trailing mean covers (quiet windows count as zero)",
        ),
        KeySpec::new(
            "signal_volume_multiple",
            KeyKind::Text,
            "5",
            "volume spikes: the least multiple of the trailing mean a window's notional must reach",
        ),
        KeySpec::new(
            "signal_volume_min_notional",
            KeyKind::Text,
            "5000",
            "volume spikes: the least notional (USDC) of a spiking window",
        ),
        KeySpec::new(
            "signal_ranking_interval",
            KeyKind::Duration,
            "5m",
            "market rankings: how often a snapshot is computed (snapshot times are multiples of it, UTC)",
        ),
        KeySpec::new(
            "signal_ranking_delay",
            KeyKind::Duration,
            "1m",
            "market rankings: how old a snapshot time must be before it is computed (fills still on their way get in)",
        ),
        KeySpec::optional(
            "alert_destinations_file",
            KeyKind::Text,
            "TOML file declaring the alert destinations rules may name (`[[destination]]` id, url, format json|slack|discord, secret); it holds secrets, so mount it from a secret (README.md, \"Alerts\")",
        ),
        KeySpec::new(
            "alert_delivery_deadline",
            KeyKind::Duration,
            "2m",
            "alerts: how long one delivery is retried (timeouts, 429, 5xx) before it is recorded as failed and dead-lettered",
        ),
        KeySpec::new(
            "alert_rules_refresh",
            KeyKind::Duration,
            "2s",
            "alerts: how often the current alert rules and pending test fires are read from ClickHouse (a rule change takes effect within this)",
        ),
    ];
}

impl ServiceConfig for SignalsConfig {
    const KEYS: &'static [&'static [KeySpec]] = &[
        CommonConfig::KEYS,
        KafkaConfig::KEYS,
        ClickHouseConfig::KEYS,
        Self::OWN_KEYS,
    ];
    const SERVICE: Service = Service::Signals;

    fn common(&self) -> &CommonConfig {
        &self.common
    }

    fn validate(&self, report: &mut ValidationReport<'_>) {
        for (key, value) in self.decimal_keys() {
            if let Err(error) = units(value) {
                report.problem(key, value, error);
            }
        }
        if let Some(path) = &self.alert_destinations_file
            && let Err(error) = Destinations::load(path)
        {
            report.problem(
                "alert_destinations_file",
                &path.display().to_string(),
                error,
            );
        }
        for (key, value) in [
            ("alert_delivery_deadline", self.alert_delivery_deadline),
            ("alert_rules_refresh", self.alert_rules_refresh),
            ("signal_ranking_interval", self.signal_ranking_interval),
            ("signal_volume_window", self.signal_volume_window),
        ] {
            if value.is_zero() {
                report.problem(key, "0s", "must be longer than zero");
            }
        }
        // The volatility criterion, when on: a window, enough of them in the lookback for a
        // deviation, and not so many that a token's closes outgrow memory.
        if units(&self.signal_price_move_sigmas).is_ok_and(|sigmas| sigmas > 0) {
            let window = millis(self.signal_price_move_window);
            let lookback = millis(self.signal_price_move_sigma_lookback);
            let shown = format!("{}s", self.signal_price_move_sigma_lookback.as_secs());
            if window <= 0 {
                report.problem(
                    "signal_price_move_window",
                    "0s",
                    "must be longer than zero when signal_price_move_sigmas is set",
                );
            } else if lookback / window < MIN_SIGMA_SAMPLES {
                report.problem(
                    "signal_price_move_sigma_lookback",
                    &shown,
                    "must hold at least 12 windows of signal_price_move_window",
                );
            } else if lookback / window > MAX_SIGMA_WINDOWS {
                report.problem(
                    "signal_price_move_sigma_lookback",
                    &shown,
                    "must hold at most 100000 windows of signal_price_move_window (memory per token)",
                );
            }
        }
    }
}

/// Windows of the volatility lookback at most: a token keeps a close per window with fills.
const MAX_SIGMA_WINDOWS: i64 = 100_000;

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A non-negative decimal in scale-6 units.
fn units(text: &str) -> Result<i64, String> {
    let value = Decimal::from_str(text.trim())
        .map_err(|error| format!("not a decimal number ({error})"))?;
    if value.is_sign_negative() {
        return Err("must not be negative".to_owned());
    }
    to_micros("threshold", value).map_err(|error| error.to_string())
}

impl SignalsConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn admin_endpoint(&self) -> AdminEndpoint {
        AdminEndpoint {
            addr: self.signals_admin_addr,
            env_var: "POLYTAPE_SIGNALS_ADMIN_ADDR",
        }
    }

    /// The declared destinations (the file was read and checked at start-up; an empty set
    /// without one).
    pub fn destinations(&self) -> Destinations {
        self.alert_destinations_file
            .as_deref()
            .and_then(|path| Destinations::load(path).ok())
            .unwrap_or_default()
    }

    fn decimal_keys(&self) -> [(&'static str, &str); 8] {
        [
            (
                "signal_large_trade_notional",
                &self.signal_large_trade_notional,
            ),
            ("signal_arbitrage_min_edge", &self.signal_arbitrage_min_edge),
            ("signal_arbitrage_min_size", &self.signal_arbitrage_min_size),
            ("signal_price_move", &self.signal_price_move),
            ("signal_price_move_sigmas", &self.signal_price_move_sigmas),
            (
                "signal_price_move_sigma_floor",
                &self.signal_price_move_sigma_floor,
            ),
            ("signal_volume_multiple", &self.signal_volume_multiple),
            (
                "signal_volume_min_notional",
                &self.signal_volume_min_notional,
            ),
        ]
    }

    /// The detectors' settings (the decimals were validated at start-up; 0 otherwise).
    pub fn engine_settings(&self) -> EngineSettings {
        let units_of = |text: &str| units(text).unwrap_or(0);
        EngineSettings {
            new_wallet: NewWalletThresholds {
                min_notional: units_of(&self.signal_large_trade_notional),
                max_age_ms: millis(self.signal_new_wallet_age),
                min_prior_fills: self.signal_new_wallet_prior_fills,
            },
            wallet_capacity: usize::try_from(self.signal_wallet_capacity).unwrap_or(usize::MAX),
            arbitrage: ArbitrageThresholds {
                min_edge: units_of(&self.signal_arbitrage_min_edge),
                min_size: units_of(&self.signal_arbitrage_min_size),
            },
            price_move: PriceMoveThresholds {
                min_move: units_of(&self.signal_price_move),
                window_ms: millis(self.signal_price_move_window),
                cooldown_ms: millis(self.signal_price_move_cooldown),
                sigmas: units_of(&self.signal_price_move_sigmas),
                sigma_lookback_ms: millis(self.signal_price_move_sigma_lookback),
                sigma_floor: units_of(&self.signal_price_move_sigma_floor),
            },
            volume_spike: VolumeSpikeThresholds {
                window_ms: millis(self.signal_volume_window).max(1),
                trailing_windows: u32::try_from(self.signal_volume_trailing_windows)
                    .unwrap_or(u32::MAX),
                multiple: units_of(&self.signal_volume_multiple),
                min_notional: units_of(&self.signal_volume_min_notional),
            },
        }
    }
}
