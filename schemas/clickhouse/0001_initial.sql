-- Polytape ClickHouse schema, version 1.
--
-- Placeholders filled in by `polytape-sink-clickhouse migrate`:
--   {database}        target database (POLYTAPE_CLICKHOUSE_DATABASE, default polymarket)
--   {retention_days}  TTL of every time-series table (default 90)
--
-- Conventions:
-- * One table per topic, named after it without prefix and version.
-- * Prices and sizes are Decimal(18, 6); sums are Decimal(38, 6) and notional Decimal(38, 12):
--   exactly the Avro decimals on the topics, no floating point anywhere.
-- * Times are DateTime64(3, 'UTC'): the Avro timestamp-millis values.
-- * Every table the sink loads is a ReplacingMergeTree whose ORDER BY is the record's identity,
--   so a redelivered record never shows twice in queries that use FINAL (or argMax by version).
--   non_replicated_deduplication_window additionally lets a replayed insert block, sent with
--   the same insert_deduplication_token, be dropped at insert time.
-- * Time-series tables have TTL <event time> + {retention_days} days and daily or monthly
--   partitions; ttl_only_drop_parts drops whole expired parts cheaply.

CREATE TABLE IF NOT EXISTS {database}.markets
(
    condition_id String,
    question_id Nullable(String),
    gamma_market_id Nullable(String),
    event_ids Array(String),
    slug Nullable(String),
    question String,
    description Nullable(String),
    protocol_version LowCardinality(Nullable(String)),
    token_ids Array(String),
    token_outcomes Array(String),
    token_winners Array(Nullable(Bool)),
    active Bool,
    closed Bool,
    archived Bool,
    accepting_orders Bool,
    enable_order_book Bool,
    neg_risk Bool,
    neg_risk_market_id Nullable(String),
    tick_size Nullable(Decimal(18, 6)),
    min_order_size Nullable(Decimal(18, 6)),
    maker_base_fee_bps Nullable(Int32),
    taker_base_fee_bps Nullable(Int32),
    fees_enabled Nullable(Bool),
    tags Array(String),
    start_time Nullable(DateTime64(3, 'UTC')),
    end_time Nullable(DateTime64(3, 'UTC')),
    created_time Nullable(DateTime64(3, 'UTC')),
    closed_time Nullable(DateTime64(3, 'UTC')),
    resolution_status Nullable(String),
    winning_token_id Nullable(String),
    volume Nullable(Decimal(38, 6)),
    liquidity Nullable(Decimal(38, 6)),
    upstream_updated_at Nullable(DateTime64(3, 'UTC')),
    content_hash String,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY condition_id
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {database}.events
(
    event_id String,
    slug Nullable(String),
    ticker Nullable(String),
    title String,
    description Nullable(String),
    active Bool,
    closed Bool,
    archived Bool,
    neg_risk Bool,
    start_time Nullable(DateTime64(3, 'UTC')),
    end_time Nullable(DateTime64(3, 'UTC')),
    created_time Nullable(DateTime64(3, 'UTC')),
    volume Nullable(Decimal(38, 6)),
    liquidity Nullable(Decimal(38, 6)),
    open_interest Nullable(Decimal(38, 6)),
    tags Array(String),
    series_slug Nullable(String),
    market_condition_ids Array(String),
    upstream_updated_at Nullable(DateTime64(3, 'UTC')),
    content_hash String,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY event_id
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {database}.trades
(
    trade_id String,
    condition_id String,
    token_id String,
    outcome Nullable(String),
    outcome_index Nullable(Int32),
    side Enum8('BUY' = 1, 'SELL' = 2),
    price Decimal(18, 6),
    size Decimal(18, 6),
    timestamp DateTime64(3, 'UTC'),
    transaction_hash String,
    proxy_wallet String,
    source Enum8('DATA_API_V1' = 1, 'DATA_API_V2' = 2),
    ingested_at DateTime64(3, 'UTC'),
    INDEX trades_wallet proxy_wallet TYPE bloom_filter GRANULARITY 4,
    INDEX trades_token token_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (condition_id, token_id, timestamp, trade_id)
TTL toDateTime(timestamp) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS {database}.book_snapshots
(
    token_id String,
    condition_id String,
    timestamp DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    bid_prices Array(Decimal(18, 6)),
    bid_sizes Array(Decimal(18, 6)),
    ask_prices Array(Decimal(18, 6)),
    ask_sizes Array(Decimal(18, 6)),
    hash Nullable(String),
    tick_size Nullable(Decimal(18, 6)),
    min_order_size Nullable(Decimal(18, 6)),
    neg_risk Nullable(Bool),
    last_trade_price Nullable(Decimal(18, 6)),
    source Enum8('WS' = 1, 'REST' = 2),
    connection_id String,
    sequence Int64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (token_id, timestamp, source, connection_id, sequence)
TTL toDateTime(timestamp) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS {database}.price_changes
(
    token_id String,
    condition_id String,
    side Enum8('BUY' = 1, 'SELL' = 2),
    price Decimal(18, 6),
    size Decimal(18, 6),
    best_bid Nullable(Decimal(18, 6)),
    best_ask Nullable(Decimal(18, 6)),
    hash Nullable(String),
    timestamp DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    connection_id String,
    sequence Int64,
    entry_index Int32
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (token_id, timestamp, connection_id, sequence, entry_index)
TTL toDateTime(timestamp) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS {database}.last_trades
(
    token_id String,
    condition_id String,
    price Decimal(18, 6),
    size Decimal(18, 6),
    side Nullable(Enum8('BUY' = 1, 'SELL' = 2)),
    fee_rate_bps Nullable(Int32),
    transaction_hash Nullable(String),
    timestamp DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    connection_id String,
    sequence Int64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (token_id, timestamp, connection_id, sequence)
TTL toDateTime(timestamp) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS {database}.tick_size_changes
(
    token_id String,
    condition_id String,
    old_tick_size Decimal(18, 6),
    new_tick_size Decimal(18, 6),
    timestamp DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    connection_id String,
    sequence Int64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (token_id, timestamp, connection_id, sequence)
TTL toDateTime(timestamp) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS {database}.best_bid_ask
(
    token_id String,
    condition_id String,
    best_bid Nullable(Decimal(18, 6)),
    best_ask Nullable(Decimal(18, 6)),
    spread Nullable(Decimal(18, 6)),
    timestamp DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    connection_id String,
    sequence Int64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (token_id, timestamp, connection_id, sequence)
TTL toDateTime(timestamp) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS {database}.market_lifecycle
(
    kind Enum8('NEW_MARKET' = 1, 'MARKET_RESOLVED' = 2),
    condition_id String,
    gamma_market_id Nullable(String),
    question Nullable(String),
    slug Nullable(String),
    token_ids Array(String),
    outcomes Array(String),
    event_id Nullable(String),
    winning_token_id Nullable(String),
    winning_outcome Nullable(String),
    timestamp DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    connection_id String,
    sequence Int64
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (condition_id, kind, timestamp)
TTL toDateTime(timestamp) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS {database}.price_history
(
    token_id String,
    timestamp DateTime64(3, 'UTC'),
    price Decimal(18, 6),
    fidelity_minutes Int32,
    fetched_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(fetched_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (token_id, fidelity_minutes, timestamp)
TTL toDateTime(timestamp) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS {database}.candles
(
    token_id String,
    condition_id Nullable(String),
    interval LowCardinality(String),
    open_time DateTime64(3, 'UTC'),
    close_time DateTime64(3, 'UTC'),
    open Decimal(18, 6),
    high Decimal(18, 6),
    low Decimal(18, 6),
    close Decimal(18, 6),
    volume Decimal(38, 6),
    notional Decimal(38, 12),
    vwap Decimal(38, 12),
    trade_count Int64,
    first_trade_time DateTime64(3, 'UTC'),
    last_trade_time DateTime64(3, 'UTC'),
    version Int64,
    is_final Bool
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(open_time)
ORDER BY (token_id, interval, open_time)
TTL toDateTime(open_time) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS {database}.book_state
(
    token_id String,
    condition_id Nullable(String),
    timestamp DateTime64(3, 'UTC'),
    bid_prices Array(Decimal(18, 6)),
    bid_sizes Array(Decimal(18, 6)),
    ask_prices Array(Decimal(18, 6)),
    ask_sizes Array(Decimal(18, 6)),
    full_depth Bool,
    bid_level_count Int32,
    ask_level_count Int32,
    best_bid Nullable(Decimal(18, 6)),
    best_ask Nullable(Decimal(18, 6)),
    mid Nullable(Decimal(18, 6)),
    spread Nullable(Decimal(18, 6)),
    tick_size Nullable(Decimal(18, 6)),
    bid_depth_1_tick Decimal(18, 6),
    bid_depth_5_ticks Decimal(18, 6),
    bid_depth_10_ticks Decimal(18, 6),
    ask_depth_1_tick Decimal(18, 6),
    ask_depth_5_ticks Decimal(18, 6),
    ask_depth_10_ticks Decimal(18, 6),
    consistent Bool,
    version Int64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (token_id, timestamp, full_depth)
TTL toDateTime(timestamp) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS {database}.continuity
(
    continuity_id String,
    kind Enum8('DISCONNECT' = 1, 'FREEZE' = 2, 'SUBSCRIPTION_REFUSED' = 3, 'RESYNC' = 4, 'BOOK_MISMATCH' = 5, 'UPSTREAM_GAP' = 6, 'OTHER' = 7),
    token_ids Array(String),
    gap_start DateTime64(3, 'UTC'),
    gap_end Nullable(DateTime64(3, 'UTC')),
    detected_at DateTime64(3, 'UTC'),
    source LowCardinality(String),
    connection_id String,
    reason String,
    INDEX continuity_tokens token_ids TYPE bloom_filter GRANULARITY 1
)
ENGINE = ReplacingMergeTree(detected_at)
PARTITION BY toYYYYMM(gap_start)
ORDER BY continuity_id
TTL toDateTime(gap_start) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {database}.dead_letters
(
    dead_letter_id String,
    source LowCardinality(String),
    origin String,
    error String,
    payload_base64 String,
    topic Nullable(String),
    partition Nullable(Int32),
    offset Nullable(Int64),
    occurred_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, dead_letter_id)
TTL toDateTime(occurred_at) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

-- API keys: only a hash of each key is stored; key_prefix is the public part used for lookup.
CREATE TABLE IF NOT EXISTS {database}.api_keys
(
    key_prefix String,
    key_hash String,
    name String,
    plan LowCardinality(String),
    status Enum8('active' = 1, 'revoked' = 2),
    rps UInt32,
    daily_cap UInt64,
    created_at DateTime64(3, 'UTC'),
    expires_at Nullable(DateTime64(3, 'UTC')),
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY key_prefix;

-- Requests per key per UTC day; kept 400 days for billing, beyond the data retention.
CREATE TABLE IF NOT EXISTS {database}.api_usage
(
    key_prefix String,
    day Date,
    requests UInt64,
    rejected UInt64
)
ENGINE = SummingMergeTree
ORDER BY (key_prefix, day)
TTL day + INTERVAL 400 DAY;
