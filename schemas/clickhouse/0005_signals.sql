-- Signals (topic polymarket.signals.v1, services/signals): one row per signal id. A window's
-- opening (no end, revision 0) and its closing (revision 1) carry the same id, so the closed
-- record replaces the open one; a replay's copy replaces its original. Thresholds and inputs
-- are parallel name/value arrays of exact text (`input_values[indexOf(input_names, 'max_edge')]`).
-- The id fixes the kind and the window start, so the sorting key dedupes by id alone. The
-- retention is the one the trades table has (an operator may have changed it since the
-- first migration), so a table added later keeps the database's retention.
CREATE TABLE IF NOT EXISTS {database}.signals
(
    signal_id String,
    kind Enum8('LARGE_TRADE_NEW_WALLET' = 1, 'NEG_RISK_ARBITRAGE' = 2, 'BINARY_ARBITRAGE' = 3, 'PRICE_MOVE' = 4),
    rule_id LowCardinality(String),
    rule_version Int32,
    subject String,
    condition_ids Array(String),
    token_ids Array(String),
    event_id Nullable(String),
    window_start DateTime64(3, 'UTC'),
    window_end Nullable(DateTime64(3, 'UTC')),
    threshold_names Array(String),
    threshold_values Array(String),
    input_names Array(String),
    input_values Array(String),
    links Array(String),
    revision UInt8,
    INDEX signals_markets condition_ids TYPE bloom_filter GRANULARITY 1,
    INDEX signals_tokens token_ids TYPE bloom_filter GRANULARITY 1
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(window_start)
ORDER BY (kind, window_start, signal_id)
TTL toDateTime(window_start) + INTERVAL {retention_days_of:trades} DAY
SETTINGS non_replicated_deduplication_window = 1000;
