-- dead_letters keyed by its id alone (issue #23).
--
-- Version 1 ordered dead_letters by (occurred_at, dead_letter_id) and partitioned it by
-- toYYYYMM(occurred_at). occurred_at is when a service wrote the letter, so every redelivery of
-- the same bad message made a new identity and FINAL showed it once per redelivery. Now:
-- * ORDER BY dead_letter_id: the id comes from the input's identity (the sink's own letters:
--   topic/partition/offset), so a redelivered letter replaces the earlier one.
-- * No PARTITION BY: ReplacingMergeTree only merges rows of the same partition, and two copies
--   of a letter written at different times could fall into different months. Dead letters are
--   few, so one partition costs nothing.
-- * The TTL still counts from occurred_at, row by row in merges (ttl_only_drop_parts would
--   rarely find a whole part expired in a single partition). A copy that expires before its
--   twin is harmless.
-- * The retention is the one the table has now (the retention_days_of placeholder: what an
--   operator set with `migrate --retention-days` is kept; the migration's retention_days when
--   the table is new).
--
-- CREATE OR REPLACE … AS SELECT builds the new table from the rows of the old one and swaps
-- it in atomically (Atomic databases: the default); running it again (an interrupted
-- migration) rebuilds the same table from the same rows.
CREATE OR REPLACE TABLE {database}.dead_letters
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
ORDER BY dead_letter_id
TTL toDateTime(occurred_at) + INTERVAL {retention_days_of:dead_letters} DAY
SETTINGS non_replicated_deduplication_window = 1000
AS SELECT * FROM {database}.dead_letters;
