-- Leaderboard snapshots (topic polymarket.leaderboard.v1): one row per (snapshot, period,
-- category, ordering, wallet). A time series: rows expire with the retention like the other
-- time-series tables, counted from the snapshot time. Redelivery of the same row replaces it.
CREATE TABLE IF NOT EXISTS {database}.leaderboard
(
    proxy_wallet String,
    period LowCardinality(String),
    category LowCardinality(String),
    order_by LowCardinality(String),
    rank Int32,
    user_name Nullable(String),
    x_username Nullable(String),
    profile_image Nullable(String),
    verified_badge Nullable(Bool),
    volume Nullable(Decimal(38, 6)),
    pnl Nullable(Decimal(38, 6)),
    snapshot_time DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(snapshot_time)
ORDER BY (period, category, order_by, snapshot_time, proxy_wallet)
TTL toDateTime(snapshot_time) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;
