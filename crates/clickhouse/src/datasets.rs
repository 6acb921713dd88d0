//! The research datasets: which rows of which table make one UTC day of a dataset, in which
//! columns and order, and the file formats ClickHouse writes them in. The exporter (the API's
//! `export` command) streams what these queries return; nothing is converted on the way, so a
//! file holds exactly what ClickHouse holds: decimals as decimals (Parquet `DECIMAL`, text in
//! CSV, quoted text in NDJSON), times as UTC milliseconds.

use std::fmt;

/// A bound UTC millisecond time.
const MS: &str = "fromUnixTimestamp64Milli(toInt64(?), 'UTC')";

/// A dataset, one file per UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dataset {
    /// Every fill of the day (`trades`, one row per trade id), in market, token, time order.
    Trades,
    /// Every candle that opens in the day, all intervals, latest version.
    Candles,
    /// Every declared gap that overlaps the day (it may start before or end after it).
    Continuity,
}

impl Dataset {
    pub const ALL: [Dataset; 3] = [Dataset::Trades, Dataset::Candles, Dataset::Continuity];

    /// The name in paths and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Trades => "trades",
            Dataset::Candles => "candles",
            Dataset::Continuity => "continuity",
        }
    }

    pub fn from_name(name: &str) -> Option<Dataset> {
        Dataset::ALL
            .into_iter()
            .find(|dataset| dataset.name() == name)
    }

    fn table(self) -> &'static str {
        match self {
            Dataset::Trades => "trades",
            Dataset::Candles => "candles",
            Dataset::Continuity => "continuity",
        }
    }

    /// `(column, expression)` in file order. Enums are written as their names; internal
    /// columns (versions, ingestion times) are left out, so re-exporting a day whose rows did
    /// not change gives identical files.
    pub fn columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Dataset::Trades => &[
                ("trade_id", "trade_id"),
                ("condition_id", "condition_id"),
                ("token_id", "token_id"),
                ("outcome", "outcome"),
                ("outcome_index", "outcome_index"),
                ("side", "toString(side)"),
                ("price", "price"),
                ("size", "size"),
                ("timestamp", "timestamp"),
                ("transaction_hash", "transaction_hash"),
                ("proxy_wallet", "proxy_wallet"),
                ("source", "toString(source)"),
            ],
            Dataset::Candles => &[
                ("token_id", "token_id"),
                ("condition_id", "condition_id"),
                ("interval", "toString(interval)"),
                ("open_time", "open_time"),
                ("close_time", "close_time"),
                ("open", "open"),
                ("high", "high"),
                ("low", "low"),
                ("close", "close"),
                ("volume", "volume"),
                ("notional", "notional"),
                ("vwap", "vwap"),
                ("trade_count", "trade_count"),
                ("first_trade_time", "first_trade_time"),
                ("last_trade_time", "last_trade_time"),
                ("is_final", "is_final"),
                ("revision", "revision"),
            ],
            Dataset::Continuity => &[
                ("continuity_id", "continuity_id"),
                ("kind", "toString(kind)"),
                ("token_ids", "token_ids"),
                ("gap_start", "gap_start"),
                ("gap_end", "gap_end"),
                ("detected_at", "detected_at"),
                ("source", "toString(source)"),
                ("connection_id", "connection_id"),
                ("reason", "reason"),
            ],
        }
    }

    /// The time a row is placed in a day by (its minimum and maximum go in the manifest).
    pub fn time_column(self) -> &'static str {
        match self {
            Dataset::Trades => "timestamp",
            Dataset::Candles => "open_time",
            Dataset::Continuity => "gap_start",
        }
    }

    /// The row's identity order: files are sorted by it, so equal rows give equal bytes.
    fn order_by(self) -> &'static str {
        match self {
            Dataset::Trades => "condition_id, token_id, timestamp, trade_id",
            Dataset::Candles => "token_id, interval, open_time",
            Dataset::Continuity => "gap_start, continuity_id",
        }
    }

    /// Which rows belong to the day `[?, ?)` and to `filter` (only the filters it sets get a
    /// placeholder; [`Dataset::bind_day`] binds in the same order).
    fn condition(self, filter: &DayFilter) -> String {
        let mut condition = match self {
            Dataset::Trades | Dataset::Candles => {
                let column = self.time_column();
                format!("{column} >= {MS} AND {column} < {MS}")
            }
            // A gap belongs to every day it overlaps: an open gap (no end) to every day since
            // its start.
            Dataset::Continuity => {
                format!("gap_start < {MS} AND (gap_end IS NULL OR gap_end >= {MS})")
            }
        };
        if !filter.markets.is_empty() {
            condition.push_str(match self {
                Dataset::Trades => " AND has(?, condition_id)",
                Dataset::Candles => " AND has(?, ifNull(condition_id, ''))",
                // A gap is declared per token: a market's gaps are its tokens'.
                Dataset::Continuity => {
                    " AND hasAny(token_ids, (SELECT arrayFlatten(groupArray(token_ids)) \
                     FROM markets FINAL WHERE has(?, condition_id)))"
                }
            });
        }
        if !filter.tokens.is_empty() {
            condition.push_str(match self {
                Dataset::Trades | Dataset::Candles => " AND has(?, token_id)",
                Dataset::Continuity => " AND hasAny(?, token_ids)",
            });
        }
        condition
    }

    /// Binds what [`Dataset::rows_query`] and [`Dataset::summary_query`] ask for.
    pub fn bind_day(
        self,
        mut query: clickhouse::query::Query,
        start_ms: i64,
        end_ms: i64,
        filter: &DayFilter,
    ) -> clickhouse::query::Query {
        query = match self {
            Dataset::Trades | Dataset::Candles => query.bind(start_ms).bind(end_ms),
            Dataset::Continuity => query.bind(end_ms).bind(start_ms),
        };
        if !filter.markets.is_empty() {
            query = query.bind(filter.markets.as_slice());
        }
        if !filter.tokens.is_empty() {
            query = query.bind(filter.tokens.as_slice());
        }
        query
    }

    /// The rows of one day, in file order.
    pub fn rows_query(self, filter: &DayFilter) -> String {
        let columns: Vec<String> = self
            .columns()
            .iter()
            .map(|(name, expression)| format!("{expression} AS {name}"))
            .collect();
        format!(
            "SELECT {} FROM {} FINAL WHERE {} ORDER BY {}",
            columns.join(", "),
            self.table(),
            self.condition(filter),
            self.order_by()
        )
    }

    /// Row count, time range (UTC ms; 0 without rows) and a fingerprint of every value of
    /// one day (XOR of the rows' hashes, nulls included: rows are unique after `FINAL`), so
    /// a row replaced in place (a revised candle, a gap closed) shows as a change too.
    pub fn summary_query(self, filter: &DayFilter) -> String {
        let time = self.time_column();
        let values: Vec<&str> = self
            .columns()
            .iter()
            .map(|(_, expression)| *expression)
            .collect();
        format!(
            "SELECT toUInt64(count()), toInt64(ifNull(min(toUnixTimestamp64Milli({time})), 0)), \
             toInt64(ifNull(max(toUnixTimestamp64Milli({time})), 0)), \
             toUInt64(groupBitXor(cityHash64(tuple({})))) FROM {} FINAL WHERE {}",
            values.join(", "),
            self.table(),
            self.condition(filter)
        )
    }

    /// The declared gaps of one day, as a day's manifest lists them (binds as
    /// [`Dataset::bind_day`] of [`Dataset::Continuity`]).
    pub fn gaps_query(filter: &DayFilter) -> String {
        format!(
            "SELECT continuity_id, toString(kind) AS kind_name, token_ids, \
             toUnixTimestamp64Milli(gap_start) AS gap_start_ms, \
             if(gap_end IS NULL, toInt64(-1), toUnixTimestamp64Milli(assumeNotNull(gap_end))) \
             AS gap_end_ms, toString(source) AS source_name, reason \
             FROM continuity FINAL WHERE {} ORDER BY {}",
            Dataset::Continuity.condition(filter),
            Dataset::Continuity.order_by()
        )
    }
}

/// Which markets and tokens a dataset is narrowed to (empty: all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayFilter {
    pub markets: Vec<String>,
    pub tokens: Vec<String>,
}

impl fmt::Display for Dataset {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// A file format of the datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetFormat {
    /// Parquet, zstd-compressed by ClickHouse; decimals as `DECIMAL`, times as UTC
    /// millisecond timestamps.
    Parquet,
    /// CSV with a header row, gzip; decimals as exact text, times ISO 8601 UTC with ms.
    Csv,
    /// One JSON object per line, gzip; decimals as exact text (quoted), times as in CSV.
    Ndjson,
}

impl DatasetFormat {
    pub const ALL: [DatasetFormat; 3] = [
        DatasetFormat::Parquet,
        DatasetFormat::Csv,
        DatasetFormat::Ndjson,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DatasetFormat::Parquet => "parquet",
            DatasetFormat::Csv => "csv",
            DatasetFormat::Ndjson => "ndjson",
        }
    }

    pub fn from_name(name: &str) -> Option<DatasetFormat> {
        DatasetFormat::ALL
            .into_iter()
            .find(|format| format.name() == name)
    }

    /// The file name's extension.
    pub fn extension(self) -> &'static str {
        match self {
            DatasetFormat::Parquet => "parquet",
            DatasetFormat::Csv => "csv.gz",
            DatasetFormat::Ndjson => "ndjson.gz",
        }
    }

    /// Whether the exporter gzips what ClickHouse sends (Parquet compresses itself).
    pub fn gzipped(self) -> bool {
        !matches!(self, DatasetFormat::Parquet)
    }

    /// ClickHouse's name of the output format.
    pub fn clickhouse_format(self) -> &'static str {
        match self {
            DatasetFormat::Parquet => "Parquet",
            DatasetFormat::Csv => "CSVWithNames",
            DatasetFormat::Ndjson => "JSONEachRow",
        }
    }

    /// The output settings that make the file exact and reproducible.
    pub fn settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            DatasetFormat::Parquet => &[
                ("output_format_parquet_compression_method", "zstd"),
                ("output_format_parquet_string_as_string", "1"),
                // One writer thread: row groups then depend on the rows only.
                ("output_format_parquet_parallel_encoding", "0"),
                ("max_threads", "1"),
            ],
            DatasetFormat::Csv => &[
                ("date_time_output_format", "iso"),
                ("output_format_decimal_trailing_zeros", "0"),
                ("max_threads", "1"),
            ],
            DatasetFormat::Ndjson => &[
                ("date_time_output_format", "iso"),
                ("output_format_decimal_trailing_zeros", "0"),
                ("output_format_json_quote_decimals", "1"),
                ("output_format_json_quote_64bit_integers", "0"),
                ("max_threads", "1"),
            ],
        }
    }
}

impl fmt::Display for DatasetFormat {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_bound_and_names_round_trip() {
        let narrowed = DayFilter {
            markets: vec!["0xa".to_owned()],
            tokens: vec!["1".to_owned()],
        };
        for dataset in Dataset::ALL {
            assert_eq!(Dataset::from_name(dataset.name()), Some(dataset));
            // The day's bounds, then one array per filter set.
            for query in [
                dataset.rows_query(&narrowed),
                dataset.summary_query(&narrowed),
            ] {
                assert_eq!(query.matches('?').count(), 4, "{query}");
            }
            let all = DayFilter::default();
            assert_eq!(dataset.rows_query(&all).matches('?').count(), 2);
        }
        assert_eq!(Dataset::gaps_query(&narrowed).matches('?').count(), 4);
        for format in DatasetFormat::ALL {
            assert_eq!(DatasetFormat::from_name(format.name()), Some(format));
        }
    }
}
