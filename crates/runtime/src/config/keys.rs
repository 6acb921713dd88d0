//! Every configuration key of every Polytape service, in one list. One `.env` serves all
//! services in compose, so a service ignores keys that belong to another service, and warns
//! about `POLYTAPE_…` variables that no service knows (a typo is then visible in the logs).

/// A Polytape service binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Collector,
    WsBridge,
    CandleBuilder,
    SinkClickhouse,
    Api,
}

impl Service {
    pub fn binary_name(self) -> &'static str {
        match self {
            Service::Collector => "polytape-collector",
            Service::WsBridge => "polytape-ws-bridge",
            Service::CandleBuilder => "polytape-candle-builder",
            Service::SinkClickhouse => "polytape-sink-clickhouse",
            Service::Api => "polytape-api",
        }
    }

    /// The short name used in logs, metrics and dead letters.
    pub fn short_name(self) -> &'static str {
        match self {
            Service::Collector => "collector",
            Service::WsBridge => "ws-bridge",
            Service::CandleBuilder => "candle-builder",
            Service::SinkClickhouse => "sink-clickhouse",
            Service::Api => "api",
        }
    }
}

/// What values a key accepts; the loader checks every effective value against it, so each
/// problem names its key.
#[derive(Debug, Clone, Copy)]
pub enum KeyKind {
    Text,
    /// An absolute URL with one of these schemes; the example goes in the error message.
    Url {
        schemes: &'static [&'static str],
        example: &'static str,
    },
    /// `ip:port`.
    SocketAddr,
    /// Comma-separated `host:port` pairs.
    HostPorts,
    /// A humantime duration such as `30s` or `5m`.
    Duration,
    /// A whole number in `min..=max`.
    Count {
        min: u64,
        max: u64,
    },
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A number in (0, 1].
    Fraction,
    /// A tracing filter directive.
    LogFilter,
    /// Letters, digits and these extra characters (may be empty when `allow_empty`).
    Name {
        extra: &'static str,
        allow_empty: bool,
    },
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// Name in a TOML file; the environment variable is `POLYTAPE_` + the upper-cased name.
    pub name: &'static str,
    pub services: &'static [Service],
    pub kind: KeyKind,
    pub doc: &'static str,
    /// Secrets are never printed back in error messages.
    pub secret: bool,
}

impl KeySpec {
    pub fn env_var(&self) -> String {
        format!("POLYTAPE_{}", self.name.to_ascii_uppercase())
    }

    pub fn applies_to(&self, service: Service) -> bool {
        self.services.contains(&service)
    }
}

use Service::*;

const EVERY_SERVICE: &[Service] = &[Collector, WsBridge, CandleBuilder, SinkClickhouse, Api];
const KAFKA_SERVICES: &[Service] = &[Collector, WsBridge, CandleBuilder, SinkClickhouse];
const CLICKHOUSE_SERVICES: &[Service] = &[SinkClickhouse, Api];
const REST_UPSTREAM_SERVICES: &[Service] = &[Collector, WsBridge, CandleBuilder];

const fn key(
    name: &'static str,
    services: &'static [Service],
    kind: KeyKind,
    doc: &'static str,
) -> KeySpec {
    KeySpec {
        name,
        services,
        kind,
        doc,
        secret: false,
    }
}

const fn secret(name: &'static str, services: &'static [Service], doc: &'static str) -> KeySpec {
    KeySpec {
        name,
        services,
        kind: KeyKind::Text,
        doc,
        secret: true,
    }
}

const HTTP: &[&str] = &["http", "https"];
const fn http_url(example: &'static str) -> KeyKind {
    KeyKind::Url {
        schemes: HTTP,
        example,
    }
}

/// All keys. Defaults are in `defaults.toml` beside this crate's sources.
pub const KEYS: &[KeySpec] = &[
    key(
        "kafka_brokers",
        KAFKA_SERVICES,
        KeyKind::HostPorts,
        "Kafka bootstrap servers, comma-separated host:port",
    ),
    key(
        "schema_registry_url",
        KAFKA_SERVICES,
        http_url("http://127.0.0.1:8081"),
        "Confluent-compatible Schema Registry base URL",
    ),
    key(
        "topic_prefix",
        KAFKA_SERVICES,
        KeyKind::Name {
            extra: "._-",
            allow_empty: true,
        },
        "prefix before every topic name (isolated deployments and tests)",
    ),
    key(
        "log_format",
        EVERY_SERVICE,
        KeyKind::Choice(&["pretty", "json"]),
        "`pretty` (human, local) or `json` (containers)",
    ),
    key(
        "log_level",
        EVERY_SERVICE,
        KeyKind::LogFilter,
        "tracing filter, e.g. `info` or `info,polytape_collector=debug`; RUST_LOG wins",
    ),
    key(
        "shutdown_timeout",
        EVERY_SERVICE,
        KeyKind::Duration,
        "how long draining may take after SIGTERM, e.g. `30s`",
    ),
    key(
        "clickhouse_url",
        CLICKHOUSE_SERVICES,
        http_url("http://127.0.0.1:8123"),
        "ClickHouse HTTP interface base URL",
    ),
    key(
        "clickhouse_database",
        CLICKHOUSE_SERVICES,
        KeyKind::Name {
            extra: "_",
            allow_empty: false,
        },
        "ClickHouse database",
    ),
    key(
        "clickhouse_user",
        CLICKHOUSE_SERVICES,
        KeyKind::Text,
        "ClickHouse user (optional)",
    ),
    secret(
        "clickhouse_password",
        CLICKHOUSE_SERVICES,
        "ClickHouse password (optional)",
    ),
    key(
        "gamma_url",
        &[Collector],
        http_url("https://gamma-api.polymarket.com"),
        "Gamma API base URL (may carry a path prefix)",
    ),
    key(
        "data_api_url",
        &[Collector],
        http_url("https://data-api.polymarket.com"),
        "Data API base URL (may carry a path prefix)",
    ),
    key(
        "clob_url",
        REST_UPSTREAM_SERVICES,
        http_url("https://clob.polymarket.com"),
        "CLOB REST base URL (may carry a path prefix)",
    ),
    key(
        "clob_ws_url",
        &[WsBridge],
        KeyKind::Url {
            schemes: &["ws", "wss"],
            example: "wss://ws-subscriptions-clob.polymarket.com/ws/market",
        },
        "CLOB market-channel WebSocket URL",
    ),
    key(
        "collector_admin_addr",
        &[Collector],
        KeyKind::SocketAddr,
        "collector's /healthz, /readyz, /metrics listen address",
    ),
    key(
        "collector_retention",
        &[Collector],
        KeyKind::Duration,
        "how far back `run` backfills trades, e.g. `90days`",
    ),
    key(
        "collector_poll_interval",
        &[Collector],
        KeyKind::Duration,
        "pause between collector polling rounds",
    ),
    key(
        "collector_poll_lag",
        &[Collector],
        KeyKind::Duration,
        "polling stops this far behind now (upstream indexes fills late)",
    ),
    key(
        "collector_reconcile_window",
        &[Collector],
        KeyKind::Duration,
        "every polling round re-reads this trailing window for fills upstream indexed late (0 = off)",
    ),
    key(
        "collector_reconcile_interval",
        &[Collector],
        KeyKind::Duration,
        "pause between deep reconciliation passes over collector_reconcile_horizon (0 = off)",
    ),
    key(
        "collector_reconcile_horizon",
        &[Collector],
        KeyKind::Duration,
        "how far back the deep reconciliation pass looks for fills indexed late",
    ),
    key(
        "collector_budget_window",
        &[Collector],
        KeyKind::Duration,
        "length of upstream's rate-limit windows",
    ),
    key(
        "collector_budget_margin",
        &[Collector],
        KeyKind::Fraction,
        "fraction (0..1] of each published budget the collector uses",
    ),
    key(
        "collector_concurrency",
        &[Collector],
        KeyKind::Count { min: 1, max: 256 },
        "markets walked at once",
    ),
    key(
        "collector_trades_page_size",
        &[Collector],
        KeyKind::Count {
            min: 1,
            max: 10_000,
        },
        "rows per Data API /trades request",
    ),
    key(
        "collector_request_timeout",
        &[Collector],
        KeyKind::Duration,
        "timeout of one upstream request",
    ),
    key(
        "collector_max_attempts",
        &[Collector],
        KeyKind::Count { min: 1, max: 100 },
        "attempts per upstream request",
    ),
    key(
        "collector_price_history_fidelity",
        &[Collector],
        KeyKind::Count {
            min: 1,
            max: 10_080,
        },
        "/prices-history fidelity in minutes",
    ),
    key(
        "collector_book_snapshot_interval",
        &[Collector],
        KeyKind::Duration,
        "pause between REST book snapshots (dataset book_snapshots, off by default)",
    ),
    key(
        "collector_book_snapshot_batch",
        &[Collector],
        KeyKind::Count { min: 1, max: 500 },
        "tokens per CLOB POST /books request",
    ),
    key(
        "collector_book_snapshot_tokens",
        &[Collector],
        KeyKind::Name {
            extra: ",",
            allow_empty: true,
        },
        "comma-separated token ids to snapshot over REST (empty = every open token of the selected markets); meant for tokens the WS bridge does not cover",
    ),
    key(
        "collector_leaderboard_interval",
        &[Collector],
        KeyKind::Duration,
        "pause between leaderboard snapshots",
    ),
    key(
        "collector_leaderboard_depth",
        &[Collector],
        KeyKind::Count { min: 1, max: 1_050 },
        "rows read per leaderboard list (period, category, ordering)",
    ),
    key(
        "ws_bridge_admin_addr",
        &[WsBridge],
        KeyKind::SocketAddr,
        "ws-bridge's admin listen address",
    ),
    key(
        "candle_builder_admin_addr",
        &[CandleBuilder],
        KeyKind::SocketAddr,
        "candle-builder's admin listen address",
    ),
    key(
        "sink_admin_addr",
        &[SinkClickhouse],
        KeyKind::SocketAddr,
        "sink's admin listen address",
    ),
    key(
        "api_addr",
        &[Api],
        KeyKind::SocketAddr,
        "public REST API listen address: /v1/*, /health, /openapi.json, /docs only",
    ),
    key(
        "api_admin_addr",
        &[Api],
        KeyKind::SocketAddr,
        "internal admin listen address of the API: /healthz, /readyz, /metrics and the /admin/* key routes",
    ),
    secret(
        "api_bootstrap_key",
        &[Api],
        "an API key created at first start (optional)",
    ),
    secret(
        "api_admin_token",
        &[Api],
        "token for /admin/* endpoints (optional; admin API off without it)",
    ),
    key(
        "api_data_retention",
        &[Api],
        KeyKind::Duration,
        "how far back the API serves time series (the ClickHouse TTL); older ranges are refused with a 400, e.g. `90days`",
    ),
    key(
        "api_key_refresh_interval",
        &[Api],
        KeyKind::Duration,
        "how often each API replica reloads keys and today's usage from ClickHouse (bounds how long a revocation takes to reach it), e.g. `2s`",
    ),
    key(
        "sink_consumer_group",
        &[SinkClickhouse],
        KeyKind::Name {
            extra: "._-",
            allow_empty: false,
        },
        "the sink's Kafka consumer group",
    ),
    key(
        "sink_batch_max_rows",
        &[SinkClickhouse],
        KeyKind::Count {
            min: 1,
            max: 10_000_000,
        },
        "flush to ClickHouse once this many rows are pending",
    ),
    key(
        "sink_batch_max_bytes",
        &[SinkClickhouse],
        KeyKind::Count {
            min: 1024,
            max: 4_294_967_296,
        },
        "flush once the pending batch holds this many bytes of Avro payload",
    ),
    key(
        "sink_flush_interval",
        &[SinkClickhouse],
        KeyKind::Duration,
        "flush at least this often, so quiet topics land promptly, e.g. `500ms`",
    ),
    key(
        "candle_intervals",
        &[CandleBuilder],
        KeyKind::Text,
        "candle intervals, comma-separated (number + s/m/h/d dividing a day), e.g. `1m,5m,15m,1h,4h,1d`",
    ),
    key(
        "candle_allowed_lateness",
        &[CandleBuilder],
        KeyKind::Duration,
        "how far behind its token's watermark (the token's largest trade time) a window waits for trades before it is final",
    ),
    key(
        "candle_correction_horizon",
        &[CandleBuilder],
        KeyKind::Duration,
        "how long a final candle can still be corrected by a trade found late (re-emitted complete with `revision` one higher); older trades go to the DLQ as late; at least the allowed lateness",
    ),
    key(
        "candle_input",
        &[CandleBuilder],
        KeyKind::Choice(&["trades", "last_trades"]),
        "the topic candles are built from: `trades` (every fill, from the collector) or `last_trades` (the WebSocket's taker rows only, live); one per deployment, never both (a taker fill would count twice)",
    ),
    key(
        "book_top_levels",
        &[CandleBuilder],
        KeyKind::Count {
            min: 1,
            max: 10_000,
        },
        "levels per side in a regular book_state record",
    ),
    key(
        "book_publish_interval",
        &[CandleBuilder],
        KeyKind::Duration,
        "event-time period of book_state records without a best bid/ask change",
    ),
    key(
        "book_full_depth_interval",
        &[CandleBuilder],
        KeyKind::Duration,
        "event-time period of full-depth book_state records",
    ),
    key(
        "book_idle_eviction",
        &[CandleBuilder],
        KeyKind::Duration,
        "books without events for this long (event time) are evicted",
    ),
    key(
        "candle_builder_checkpoint_interval",
        &[CandleBuilder],
        KeyKind::Duration,
        "how often the candle builder checkpoints its state",
    ),
    key(
        "book_resync_budget",
        &[CandleBuilder],
        KeyKind::Count { min: 0, max: 1_500 },
        "CLOB REST `/book` requests per 10 s the candle builder may spend fetching the books it found inconsistent (BOOK_MISMATCH); 0 disables the resync",
    ),
    key(
        "ws_max_assets_per_connection",
        &[WsBridge],
        KeyKind::Count {
            min: 1,
            max: 10_000,
        },
        "token ids per WebSocket connection",
    ),
    key(
        "ws_ping_interval",
        &[WsBridge],
        KeyKind::Duration,
        "how often the ws-bridge sends the text frame PING on each connection",
    ),
    key(
        "ws_pong_timeout",
        &[WsBridge],
        KeyKind::Duration,
        "a connection without PONG for this long is reconnected",
    ),
    key(
        "ws_staleness_min",
        &[WsBridge],
        KeyKind::Duration,
        "shortest silence (no data, PONGs still arriving) treated as a frozen connection",
    ),
    key(
        "ws_staleness_max",
        &[WsBridge],
        KeyKind::Duration,
        "longest staleness window, used for quiet token sets and before the rate is known",
    ),
    key(
        "ws_reconnect_min_backoff",
        &[WsBridge],
        KeyKind::Duration,
        "first delay before reconnecting (doubles per failed attempt, with jitter)",
    ),
    key(
        "ws_reconnect_max_backoff",
        &[WsBridge],
        KeyKind::Duration,
        "longest delay between reconnection attempts",
    ),
    key(
        "ws_dump_timeout",
        &[WsBridge],
        KeyKind::Duration,
        "after (re)subscribing, tokens without a `book` dump by then are fetched from REST /book",
    ),
    key(
        "ws_filter_tags",
        &[WsBridge],
        KeyKind::Text,
        "follow only markets carrying one of these tags, comma-separated (empty: any)",
    ),
    key(
        "ws_filter_min_volume",
        &[WsBridge],
        KeyKind::Count {
            min: 0,
            max: 1_000_000_000_000,
        },
        "follow only markets with at least this volume in USDC (0: any)",
    ),
    key(
        "ws_filter_ids",
        &[WsBridge],
        KeyKind::Text,
        "follow only these condition ids and/or token ids, comma-separated (empty: every market)",
    ),
];

/// `POLYTAPE_…` variables that are not configuration keys but are read elsewhere (tests, the
/// dev tool); they are not reported as unknown.
pub const OTHER_ENV_VARS: &[&str] = &[
    "POLYTAPE_BLESS",
    "POLYTAPE_CI_TARGET_DIR",
    "POLYTAPE_FAULT_PANIC_TASK",
    "POLYTAPE_TEST_STACK",
    "POLYTAPE_TOOLS_DIR",
];

pub fn find_key(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|spec| spec.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_default_or_is_optional() {
        let defaults: toml::Table = toml::from_str(super::super::DEFAULTS).unwrap();
        let optional = [
            "clickhouse_user",
            "clickhouse_password",
            "api_bootstrap_key",
            "api_admin_token",
        ];
        for spec in KEYS {
            assert!(
                defaults.contains_key(spec.name) || optional.contains(&spec.name),
                "{} has no default",
                spec.name
            );
        }
        for name in defaults.keys() {
            assert!(
                find_key(name).is_some(),
                "default {name} is not a declared key"
            );
        }
    }
}
