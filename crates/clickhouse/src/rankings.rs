//! Market rankings in ClickHouse (`market_rankings`, migration 0006): the signals service
//! computes a snapshot every interval from `trades` and `book_state`, inside ClickHouse (one
//! bounded `INSERT … SELECT`), and the API reads the latest snapshot at or before a time.
//!
//! Per market traded in the 24 hours before the snapshot time: the notional of those 24 hours
//! (`price × size`, exact, scale 12) and of the 24 hours before them, its relative change,
//! the fills, the distinct wallets, and from each of its tokens' latest book state within the
//! hour before the snapshot, the mean spread and the depth within five ticks of the top (both
//! sides, summed over tokens; the latest state is the one of the greatest `(timestamp,
//! full_depth)`, and a one-sided book's missing spread is not replaced by an older one; a
//! market without a book state in that hour reports depth 0 and no spread). Times are UTC and
//! the days are 24 hours. The computation is limited to 60 s. The score is the 24-hour notional; the rank orders by it, then
//! by condition id, so ties rank the same way in every run.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use crate::ClickHouseError;

/// One row of `market_rankings`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct RankingRow {
    pub snapshot_time: i64,
    pub condition_id: String,
    pub rank: u32,
    /// Decimal(38, 12): the 24-hour notional.
    pub score: i128,
    pub volume_24h: i128,
    pub volume_prev_24h: i128,
    /// Decimal(38, 6): `volume_24h / volume_prev_24h − 1`; none without a previous day.
    pub volume_change: Option<i128>,
    pub trades_24h: u64,
    pub wallets_24h: u64,
    /// Decimal(18, 6).
    pub spread: Option<i64>,
    /// Decimal(38, 6).
    pub depth_5_ticks: i128,
    pub computed_at: i64,
}

/// The most rows one snapshot read returns.
pub const MAX_RANKINGS: u64 = 10_000;

/// Computes (or recomputes) the snapshot at `snapshot_ms`.
pub async fn compute_snapshot(
    client: &clickhouse::Client,
    snapshot_ms: i64,
) -> Result<(), ClickHouseError> {
    client
        .query(
            "INSERT INTO market_rankings \
             WITH fromUnixTimestamp64Milli(toInt64(?), 'UTC') AS at \
             SELECT at AS snapshot_time, v.condition_id, \
                 toUInt32(row_number() OVER (ORDER BY v.volume_24h DESC, v.condition_id)) AS rank, \
                 v.volume_24h AS score, v.volume_24h, v.volume_prev_24h, \
                 if(v.volume_prev_24h > 0, \
                    toDecimal128(v.volume_24h / v.volume_prev_24h, 6) - toDecimal128(1, 6), \
                    NULL) AS volume_change, \
                 v.trades_24h, v.wallets_24h, b.mean_spread AS spread, \
                 toDecimal128(ifNull(b.depth, 0), 6) AS depth_5_ticks, \
                 now64(3) AS computed_at \
             FROM ( \
                 SELECT condition_id, \
                     sumIf(toDecimal128(price, 6) * toDecimal128(size, 6), timestamp >= at - INTERVAL 24 HOUR) AS volume_24h, \
                     sumIf(toDecimal128(price, 6) * toDecimal128(size, 6), timestamp < at - INTERVAL 24 HOUR) AS volume_prev_24h, \
                     countIf(timestamp >= at - INTERVAL 24 HOUR) AS trades_24h, \
                     uniqExactIf(proxy_wallet, timestamp >= at - INTERVAL 24 HOUR) AS wallets_24h \
                 FROM trades FINAL \
                 WHERE timestamp >= at - INTERVAL 48 HOUR AND timestamp < at \
                 GROUP BY condition_id \
                 HAVING trades_24h > 0 \
             ) AS v \
             LEFT JOIN ( \
                 SELECT market, avg(token_spread) AS mean_spread, sum(token_depth) AS depth \
                 FROM ( \
                     SELECT token_id, \
                         argMax(assumeNotNull(condition_id), (timestamp, full_depth)) AS market, \
                         argMax(tuple(spread), (timestamp, full_depth)).1 AS token_spread, \
                         argMax(toDecimal128(bid_depth_5_ticks, 6) + toDecimal128(ask_depth_5_ticks, 6), (timestamp, full_depth)) AS token_depth \
                     FROM book_state FINAL \
                     WHERE timestamp >= at - INTERVAL 1 HOUR AND timestamp < at \
                       AND condition_id IS NOT NULL \
                     GROUP BY token_id \
                 ) \
                 GROUP BY market \
             ) AS b ON b.market = v.condition_id \
             SETTINGS join_use_nulls = 1, max_execution_time = 60",
        )
        .bind(snapshot_ms)
        .execute()
        .await
        .map_err(|source| ClickHouseError::Query {
            context: "compute a market ranking snapshot".to_owned(),
            source,
        })
}

/// The latest snapshot at or before `at_ms` and within the day before it, by rank, at most
/// `limit` rows.
pub async fn snapshot_at(
    client: &clickhouse::Client,
    at_ms: i64,
    limit: u64,
) -> Result<Vec<RankingRow>, ClickHouseError> {
    client
        .query(
            "SELECT ?fields FROM market_rankings FINAL \
             WHERE snapshot_time = ( \
                 SELECT max(snapshot_time) FROM market_rankings \
                 WHERE snapshot_time <= fromUnixTimestamp64Milli(toInt64(?), 'UTC') \
                   AND snapshot_time > fromUnixTimestamp64Milli(toInt64(?), 'UTC') - INTERVAL 24 HOUR) \
             ORDER BY rank LIMIT ?",
        )
        .bind(at_ms)
        .bind(at_ms)
        .bind(limit.min(MAX_RANKINGS))
        .fetch_all()
        .await
        .map_err(|source| ClickHouseError::Query {
            context: "read a market ranking snapshot".to_owned(),
            source,
        })
}
