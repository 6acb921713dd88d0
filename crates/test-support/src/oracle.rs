//! SQL oracles: what ClickHouse computes from stored rows, for tests that compare a stream
//! processor's output against it.

/// The candle oracle: every interval of the candle builder's defaults over the deduplicated
/// trades. Open and close are the first and last trade by `(timestamp, trade_id)` — the
/// builder's documented total order — volume and notional are exact decimal sums, VWAP is
/// notional / volume truncated to scale 12. Columns, in order: token_id, interval, open_time
/// (ms), open, high, low, close (Decimal(18,6) as units), volume (Decimal(38,6)), notional and
/// vwap (Decimal(38,12)), trade_count, first_trade, last_trade (ms).
pub const CANDLE_ORACLE_SQL: &str = "
SELECT
    token_id,
    interval,
    toInt64(intDiv(toUnixTimestamp64Milli(timestamp), length) * length) AS open_time,
    argMin(price, (timestamp, trade_id)) AS open,
    max(price) AS high,
    min(price) AS low,
    argMax(price, (timestamp, trade_id)) AS close,
    sum(toDecimal128(size, 6)) AS volume,
    sum(toDecimal128(price, 6) * toDecimal128(size, 6)) AS notional,
    sum(toDecimal128(price, 6) * toDecimal128(size, 6)) / sum(toDecimal128(size, 6)) AS vwap,
    count() AS trade_count,
    toUnixTimestamp64Milli(min(timestamp)) AS first_trade,
    toUnixTimestamp64Milli(max(timestamp)) AS last_trade
FROM (SELECT * FROM trades FINAL)
ARRAY JOIN
    [60000, 300000, 900000, 3600000, 14400000, 86400000] AS length,
    ['1m', '5m', '15m', '1h', '4h', '1d'] AS interval
GROUP BY token_id, interval, open_time
ORDER BY token_id, interval, open_time";
