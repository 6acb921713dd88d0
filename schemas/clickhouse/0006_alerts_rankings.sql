-- Alerts (services/signals; rules written by the API's admin port and its CLI), and the
-- volume-spike signal kind.

-- A new signal kind: an Enum8 gains a value (existing rows keep theirs; a metadata change).
ALTER TABLE {database}.signals MODIFY COLUMN kind Enum8('LARGE_TRADE_NEW_WALLET' = 1, 'NEG_RISK_ARBITRAGE' = 2, 'BINARY_ARBITRAGE' = 3, 'PRICE_MOVE' = 4, 'VOLUME_SPIKE' = 5);

--
-- alert_rules: every version of every rule, kept (the audit trail: who changed what, when).
-- A rule's current version is its row of the greatest version, the earliest of that version
-- (changed_at, then change_id): two writers racing for one version both keep their row, the
-- first wins and the second is told. No TTL: rules
-- are few and their history is the audit.
CREATE TABLE IF NOT EXISTS {database}.alert_rules
(
    rule_id String,
    version Int32,
    enabled Bool,
    description String,
    kinds Array(LowCardinality(String)),
    least_names Array(String),
    least_values Array(String),
    condition_ids Array(String),
    event_ids Array(String),
    token_ids Array(String),
    wallets Array(String),
    tags Array(String),
    cooldown_ms Int64,
    destinations Array(String),
    changed_at DateTime64(3, 'UTC'),
    changed_by String,
    change_id String
)
ENGINE = MergeTree
ORDER BY (rule_id, version, changed_at, change_id);

-- alert_deliveries: one row per (signal, destination). A replay that delivers a signal again
-- (same Idempotency-Key) replaces its row with the later attempt's. Test fires have `test`
-- set and a signal id starting with `test-`.
CREATE TABLE IF NOT EXISTS {database}.alert_deliveries
(
    signal_id String,
    destination_id LowCardinality(String),
    signal_kind Enum8('LARGE_TRADE_NEW_WALLET' = 1, 'NEG_RISK_ARBITRAGE' = 2, 'BINARY_ARBITRAGE' = 3, 'PRICE_MOVE' = 4, 'VOLUME_SPIKE' = 5),
    subject String,
    rule_id LowCardinality(String),
    rule_version Int32,
    status Enum8('delivered' = 1, 'failed' = 2),
    attempts UInt32,
    signal_recorded DateTime64(3, 'UTC'),
    finished DateTime64(3, 'UTC'),
    delivery_ms Int64,
    response_code Nullable(UInt16),
    error Nullable(String),
    test Bool
)
ENGINE = ReplacingMergeTree(finished)
PARTITION BY toYYYYMM(signal_recorded)
ORDER BY (signal_id, destination_id)
TTL toDateTime(signal_recorded) + INTERVAL {retention_days_of:trades} DAY;

-- alert_tests: test-fire requests; the signals service fires each once (a delivery row with
-- the test's id says it did) and ignores requests older than ten minutes.
CREATE TABLE IF NOT EXISTS {database}.alert_tests
(
    test_id String,
    rule_id String,
    requested_at DateTime64(3, 'UTC'),
    requested_by String
)
ENGINE = MergeTree
ORDER BY (requested_at, test_id)
TTL toDateTime(requested_at) + INTERVAL 7 DAY;

-- market_rankings (services/signals, every `signal_ranking_interval`): one snapshot per
-- interval-aligned time, a row per market traded in the 24 hours before it. The score is the
-- 24-hour notional; the other figures stand beside it for other orders. Recomputing a
-- snapshot (a restart, late trades) replaces its rows.
CREATE TABLE IF NOT EXISTS {database}.market_rankings
(
    snapshot_time DateTime64(3, 'UTC'),
    condition_id String,
    rank UInt32,
    score Decimal(38, 12),
    volume_24h Decimal(38, 12),
    volume_prev_24h Decimal(38, 12),
    volume_change Nullable(Decimal(38, 6)),
    trades_24h UInt64,
    wallets_24h UInt64,
    spread Nullable(Decimal(18, 6)),
    depth_5_ticks Decimal(38, 6),
    computed_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(snapshot_time)
ORDER BY (snapshot_time, condition_id)
TTL toDateTime(snapshot_time) + INTERVAL {retention_days_of:trades} DAY;
