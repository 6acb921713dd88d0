//! Per-table buffers: each topic's messages are decoded with the writer schema named in the
//! message (fetched from the registry once per id), mapped to the table's row type, and held
//! until the batch is flushed. Each row keeps where it came from (partition, offset, raw
//! bytes), so a row ClickHouse refuses can become a dead letter like an undecodable message.
//!
//! Partitions per insert: ClickHouse refuses an insert whose rows fall into more than
//! `max_partitions_per_insert_block` partitions (default 100) with `TOO_MANY_PARTS`, which no
//! retry fixes. A backfill can span months of daily partitions, so a table's rows are split
//! into several inserts of at most [`MAX_PARTITIONS_PER_INSERT`] partitions each — only when
//! they span more than that: live data (a day or two) stays one insert, the cheapest. The
//! partition of each row is computed here from the table's `PARTITION BY` (a test keeps them
//! equal to the migrations).

use std::{collections::HashSet, ops::Range};

use clickhouse::{RowOwned, RowWrite};
use futures::future::BoxFuture;
use polytape_codec::{AvroRecord, RecordDecoder, SchemaRegistryClient};
use polytape_model::time::utc_year_month;

use polytape_clickhouse::rows::{self, MapError};

/// The most partitions one insert spans: ClickHouse's default `max_partitions_per_insert_block`.
pub const MAX_PARTITIONS_PER_INSERT: usize = 100;

/// A message that cannot become a row: why, kept for `dead_letters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
}

/// Where a message was read (its topic is the buffer's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageAt {
    pub partition: i32,
    pub offset: i64,
}

/// The unit of a time-based `PARTITION BY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// `toYYYYMMDD(column)`.
    Day,
    /// `toYYYYMM(column)`.
    Month,
}

impl Granularity {
    /// The partition a UTC millisecond time falls in (columns are DateTime64(3, 'UTC')): days
    /// since 1970-01-01, or months since year 0. Equal keys ⇔ same ClickHouse partition.
    pub fn key(self, ms: i64) -> i64 {
        let days = ms.div_euclid(86_400_000);
        match self {
            Granularity::Day => days,
            Granularity::Month => {
                let (year, month) = utc_year_month(days);
                year * 12 + month - 1
            }
        }
    }
}

/// A table's `PARTITION BY`: the unit and the column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionSpec {
    pub granularity: Granularity,
    pub column: &'static str,
}

/// A table's `PARTITION BY`, and how to read that column from a row.
pub struct PartitionBy<R> {
    pub spec: PartitionSpec,
    pub time: fn(&R) -> i64,
}

impl<R> Clone for PartitionBy<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for PartitionBy<R> {}

impl<R> PartitionBy<R> {
    /// `PARTITION BY toYYYYMMDD(column)`.
    pub fn day(column: &'static str, time: fn(&R) -> i64) -> Self {
        Self {
            spec: PartitionSpec {
                granularity: Granularity::Day,
                column,
            },
            time,
        }
    }

    /// `PARTITION BY toYYYYMM(column)`.
    pub fn month(column: &'static str, time: fn(&R) -> i64) -> Self {
        Self {
            spec: PartitionSpec {
                granularity: Granularity::Month,
                column,
            },
            time,
        }
    }

    fn key(&self, row: &R) -> i64 {
        self.spec.granularity.key((self.time)(row))
    }
}

/// One topic's buffer of rows for its table.
pub trait TableBuffer: Send {
    /// The ClickHouse table.
    fn table(&self) -> &'static str;

    /// The table's `PARTITION BY`, if any.
    fn partition_by(&self) -> Option<PartitionSpec>;

    /// Decodes and maps one message into the buffer, without waiting, when its schema id is
    /// already known (the hot path); `None` when the writer schema must be fetched first.
    fn push_cached(&mut self, at: MessageAt, payload: &[u8]) -> Option<Result<(), Rejection>>;

    /// Decodes and maps one message into the buffer, fetching its writer schema if needed.
    fn push<'a>(
        &'a mut self,
        at: MessageAt,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), Rejection>>;

    /// Rows waiting to be inserted.
    fn pending(&self) -> usize;

    /// Hands the pending rows over for insertion (the buffer starts empty again), so the next
    /// batch can be decoded while this one is inserted.
    fn take(&mut self) -> Option<Box<dyn PendingRows>>;
}

/// Rows of one table taken from its buffer, waiting for their insert.
pub trait PendingRows: Send + Sync {
    fn table(&self) -> &'static str;

    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row ranges to insert separately so that none spans more than `max_partitions`
    /// partitions of the table. Only when the rows span more than that are they reordered
    /// (stably, by partition, their sources with them); otherwise this is the one range of
    /// all rows, in their order. Deterministic: the same rows give the same ranges.
    fn split_by_partition(&mut self, max_partitions: usize) -> Vec<Range<usize>>;

    /// Inserts the rows of `rows` in one statement carrying `deduplication_token`. The rows
    /// stay, so the same rows can be retried with the same token, or fewer with another.
    fn insert<'a>(
        &'a self,
        client: &'a clickhouse::Client,
        rows: Range<usize>,
        deduplication_token: &'a str,
    ) -> BoxFuture<'a, Result<(), clickhouse::error::Error>>;

    /// The newest event time among the rows of `rows` (UTC ms), for the freshness metric.
    fn newest_event_ms(&self, rows: Range<usize>) -> Option<i64>;

    /// Where row `index` came from: its message's position and raw bytes (`None` for rows
    /// the sink made itself).
    fn source(&self, index: usize) -> Option<(MessageAt, &[u8])>;
}

/// Rows for `table` that come from no message, ready to insert (the sink's own dead letters).
pub fn pending_rows<R>(
    table: &'static str,
    rows: Vec<R>,
    event_time: fn(&R) -> i64,
) -> Box<dyn PendingRows>
where
    R: RowOwned + RowWrite + Send + Sync + 'static,
{
    Box::new(TypedRows {
        table,
        rows,
        sources: Vec::new(),
        payloads: Vec::new(),
        event_time,
        partition: None,
    })
}

/// Where one row came from; its raw bytes are `payloads[start..end]`.
#[derive(Debug, Clone, Copy)]
struct Source {
    at: MessageAt,
    start: usize,
    end: usize,
}

/// The rows of one table, typed, with their sources (empty, or one per row).
struct TypedRows<R> {
    table: &'static str,
    rows: Vec<R>,
    sources: Vec<Source>,
    /// Every row's raw message, back to back (one allocation per batch, not per row).
    payloads: Vec<u8>,
    event_time: fn(&R) -> i64,
    partition: Option<PartitionBy<R>>,
}

/// Reorders `items` so that item `i` is the old `items[order[i]]`.
fn permute<T>(items: &mut Vec<T>, order: &[usize]) {
    let mut slots: Vec<Option<T>> = std::mem::take(items).into_iter().map(Some).collect();
    *items = order
        .iter()
        .filter_map(|&index| slots.get_mut(index).and_then(Option::take))
        .collect();
}

impl<R> PendingRows for TypedRows<R>
where
    R: RowOwned + RowWrite + Send + Sync + 'static,
{
    fn table(&self) -> &'static str {
        self.table
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn split_by_partition(&mut self, max_partitions: usize) -> Vec<Range<usize>> {
        let all = 0..self.rows.len();
        let Some(partition) = self.partition else {
            return vec![all];
        };
        let max_partitions = max_partitions.max(1);
        // Rows mostly arrive in time order: comparing with the previous row's partition skips
        // nearly every set lookup. Stop counting once past the limit.
        let mut seen = HashSet::new();
        let mut previous = None;
        let mut too_many = false;
        for row in &self.rows {
            let key = partition.key(row);
            if previous != Some(key) {
                previous = Some(key);
                seen.insert(key);
                if seen.len() > max_partitions {
                    too_many = true;
                    break;
                }
            }
        }
        if !too_many {
            return vec![all];
        }

        let mut order: Vec<usize> = all.clone().collect();
        // Stable: rows of one partition keep their order.
        order.sort_by_cached_key(|&index| self.rows.get(index).map(|row| partition.key(row)));
        permute(&mut self.rows, &order);
        if !self.sources.is_empty() {
            permute(&mut self.sources, &order);
        }
        let mut ranges = Vec::new();
        let mut start = 0;
        let mut partitions = 0;
        let mut previous = None;
        for (index, row) in self.rows.iter().enumerate() {
            let key = partition.key(row);
            if previous != Some(key) {
                if partitions == max_partitions {
                    ranges.push(start..index);
                    start = index;
                    partitions = 0;
                }
                partitions += 1;
                previous = Some(key);
            }
        }
        ranges.push(start..self.rows.len());
        ranges
    }

    fn insert<'a>(
        &'a self,
        client: &'a clickhouse::Client,
        rows: Range<usize>,
        deduplication_token: &'a str,
    ) -> BoxFuture<'a, Result<(), clickhouse::error::Error>> {
        Box::pin(async move {
            let Some(rows) = self.rows.get(rows.clone()) else {
                return Err(clickhouse::error::Error::Custom(format!(
                    "rows {rows:?} of {} are out of range ({} rows)",
                    self.table,
                    self.rows.len()
                )));
            };
            let mut insert = client
                .insert::<R>(self.table)
                .await?
                .with_setting("insert_deduplication_token", deduplication_token);
            for row in rows {
                insert.write(row).await?;
            }
            insert.end().await?;
            crate::metrics::observe_row_latencies(
                self.table,
                polytape_model::now_ms(),
                rows.iter().map(self.event_time),
            );
            Ok(())
        })
    }

    fn newest_event_ms(&self, rows: Range<usize>) -> Option<i64> {
        self.rows.get(rows)?.iter().map(self.event_time).max()
    }

    fn source(&self, index: usize) -> Option<(MessageAt, &[u8])> {
        let source = self.sources.get(index)?;
        Some((source.at, self.payloads.get(source.start..source.end)?))
    }
}

/// The buffer of one record type `T` loaded into rows `R`.
pub struct TypedBuffer<T, R> {
    table: &'static str,
    decoder: RecordDecoder<T>,
    rows: Vec<R>,
    sources: Vec<Source>,
    payloads: Vec<u8>,
    event_time: fn(&R) -> i64,
    partition: Option<PartitionBy<R>>,
}

impl<T, R> TypedBuffer<T, R>
where
    T: AvroRecord,
    R: TryFrom<T, Error = MapError> + RowOwned + RowWrite + Send + Sync + 'static,
{
    /// A buffer for a table without `PARTITION BY`.
    pub fn new(registry: SchemaRegistryClient, event_time: fn(&R) -> i64) -> Self {
        Self {
            table: T::TOPIC.table(),
            decoder: RecordDecoder::new(registry),
            rows: Vec::new(),
            sources: Vec::new(),
            payloads: Vec::new(),
            event_time,
            partition: None,
        }
    }

    /// The table's `PARTITION BY`.
    pub fn partitioned_by(mut self, partition: PartitionBy<R>) -> Self {
        self.partition = Some(partition);
        self
    }
}

impl<T, R> TypedBuffer<T, R>
where
    T: AvroRecord,
    R: TryFrom<T, Error = MapError> + RowOwned + RowWrite + Send + Sync + 'static,
{
    fn push_decoded(
        &mut self,
        decoded: Result<T, polytape_codec::CodecError>,
        at: MessageAt,
        payload: &[u8],
    ) -> Result<(), Rejection> {
        let record = decoded.map_err(|error| Rejection {
            reason: format!("cannot decode: {error}"),
        })?;
        let row = R::try_from(record).map_err(|error| Rejection {
            reason: format!("cannot map to {}: {error}", self.table),
        })?;
        self.rows.push(row);
        let start = self.payloads.len();
        self.payloads.extend_from_slice(payload);
        self.sources.push(Source {
            at,
            start,
            end: self.payloads.len(),
        });
        Ok(())
    }
}

impl<T, R> TableBuffer for TypedBuffer<T, R>
where
    T: AvroRecord,
    R: TryFrom<T, Error = MapError> + RowOwned + RowWrite + Send + Sync + 'static,
{
    fn table(&self) -> &'static str {
        self.table
    }

    fn partition_by(&self) -> Option<PartitionSpec> {
        self.partition.map(|partition| partition.spec)
    }

    fn push_cached(&mut self, at: MessageAt, payload: &[u8]) -> Option<Result<(), Rejection>> {
        let decoded = match self.decoder.decode_cached(payload) {
            Ok(Some(record)) => Ok(record),
            Ok(None) => return None,
            Err(error) => Err(error),
        };
        Some(self.push_decoded(decoded, at, payload))
    }

    fn push<'a>(
        &'a mut self,
        at: MessageAt,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), Rejection>> {
        Box::pin(async move {
            let decoded = self.decoder.decode(payload).await;
            self.push_decoded(decoded, at, payload)
        })
    }

    fn pending(&self) -> usize {
        self.rows.len()
    }

    fn take(&mut self) -> Option<Box<dyn PendingRows>> {
        if self.rows.is_empty() {
            return None;
        }
        Some(Box::new(TypedRows {
            table: self.table,
            rows: std::mem::take(&mut self.rows),
            sources: std::mem::take(&mut self.sources),
            payloads: std::mem::take(&mut self.payloads),
            event_time: self.event_time,
            partition: self.partition,
        }))
    }
}

/// A buffer for every topic, keyed by the topic it reads; partitioned as its table (see the
/// migrations under `schemas/clickhouse/`).
pub fn all_buffers(
    registry: &SchemaRegistryClient,
) -> Vec<(polytape_model::Topic, Box<dyn TableBuffer>)> {
    use polytape_model::{
        BestBidAsk, BookSnapshot, BookState, Candle, Continuity, DeadLetter, Event, LastTrade,
        LeaderboardEntry, Market, MarketLifecycle, PriceChange, PricePoint, Signal, TickSizeChange,
        Topic, Trade,
    };
    use rows::*;

    fn buffer<T, R>(
        registry: &SchemaRegistryClient,
        event_time: fn(&R) -> i64,
        partition: Option<PartitionBy<R>>,
    ) -> (Topic, Box<dyn TableBuffer>)
    where
        T: AvroRecord,
        R: TryFrom<T, Error = MapError> + RowOwned + RowWrite + Send + Sync + 'static,
    {
        let mut buffer = TypedBuffer::<T, R>::new(registry.clone(), event_time);
        buffer.partition = partition;
        (T::TOPIC, Box::new(buffer))
    }

    vec![
        buffer::<Market, MarketRow>(registry, |row| row.updated_at, None),
        buffer::<Event, EventRow>(registry, |row| row.updated_at, None),
        buffer::<Trade, TradeRow>(
            registry,
            |row| row.timestamp,
            Some(PartitionBy::day("timestamp", |row| row.timestamp)),
        ),
        buffer::<BookSnapshot, BookSnapshotRow>(
            registry,
            |row| row.timestamp,
            Some(PartitionBy::day("timestamp", |row| row.timestamp)),
        ),
        buffer::<PriceChange, PriceChangeRow>(
            registry,
            |row| row.timestamp,
            Some(PartitionBy::day("timestamp", |row| row.timestamp)),
        ),
        buffer::<LastTrade, LastTradeRow>(
            registry,
            |row| row.timestamp,
            Some(PartitionBy::day("timestamp", |row| row.timestamp)),
        ),
        buffer::<TickSizeChange, TickSizeChangeRow>(
            registry,
            |row| row.timestamp,
            Some(PartitionBy::month("timestamp", |row| row.timestamp)),
        ),
        buffer::<BestBidAsk, BestBidAskRow>(
            registry,
            |row| row.timestamp,
            Some(PartitionBy::day("timestamp", |row| row.timestamp)),
        ),
        buffer::<MarketLifecycle, MarketLifecycleRow>(
            registry,
            |row| row.timestamp,
            Some(PartitionBy::month("timestamp", |row| row.timestamp)),
        ),
        buffer::<PricePoint, PricePointRow>(
            registry,
            |row| row.timestamp,
            Some(PartitionBy::month("timestamp", |row| row.timestamp)),
        ),
        buffer::<Candle, CandleRow>(
            registry,
            |row| row.last_trade_time,
            Some(PartitionBy::month("open_time", |row| row.open_time)),
        ),
        buffer::<BookState, BookStateRow>(
            registry,
            |row| row.timestamp,
            Some(PartitionBy::day("timestamp", |row| row.timestamp)),
        ),
        buffer::<Continuity, ContinuityRow>(
            registry,
            |row| row.detected_at,
            Some(PartitionBy::month("gap_start", |row| row.gap_start)),
        ),
        // Not partitioned since migration 3 (identity = dead_letter_id alone).
        buffer::<DeadLetter, DeadLetterRow>(registry, |row| row.occurred_at, None),
        buffer::<LeaderboardEntry, LeaderboardRow>(
            registry,
            |row| row.snapshot_time,
            Some(PartitionBy::month("snapshot_time", |row| row.snapshot_time)),
        ),
        buffer::<Signal, SignalRow>(
            registry,
            |row| row.window_start,
            Some(PartitionBy::month("window_start", |row| row.window_start)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use polytape_clickhouse::rows::TradeRow;

    const DAY: i64 = 86_400_000;

    #[test]
    fn partition_keys_follow_utc_days_and_calendar_months() {
        let cases = [
            (1_709_251_199_999_i64, 2024, 2),
            (1_709_251_200_000, 2024, 3),
            (0, 1970, 1),
            (978_264_000_000, 2000, 12),
            (-1, 1969, 12),
            (4_107_542_400_000, 2100, 3),
        ];
        for (ms, year, month) in cases {
            assert_eq!(utc_year_month(ms.div_euclid(DAY)), (year, month), "{ms}");
            assert_eq!(Granularity::Month.key(ms), year * 12 + month - 1, "{ms}");
        }
        assert_eq!(Granularity::Day.key(1_709_251_199_999), 19_782);
        assert_eq!(Granularity::Day.key(1_709_251_200_000), 19_783);
        assert_eq!(Granularity::Day.key(-1), -1);
        // Every day of a leap year lands in the right month, months in order.
        let start = 1_704_067_200_000; // 2024-01-01
        let months: Vec<i64> = (0..366)
            .map(|day| Granularity::Month.key(start + day * DAY))
            .collect();
        assert!(
            months
                .windows(2)
                .all(|pair| pair[1] - pair[0] <= 1 && pair[1] >= pair[0])
        );
        assert_eq!(months.iter().collect::<BTreeSet<_>>().len(), 12);
        assert_eq!(
            months.iter().filter(|key| **key == 2024 * 12 + 1).count(),
            29
        );
    }

    /// The partitioning of every buffer is its table's `PARTITION BY` after all migrations.
    #[test]
    fn buffers_partition_as_their_tables() {
        let registry = SchemaRegistryClient::new("http://127.0.0.1:1")
            .unwrap_or_else(|error| panic!("a registry client needs no server: {error}"));
        let definitions = polytape_clickhouse::latest_table_definitions("db", 90);
        for (topic, buffer) in all_buffers(&registry) {
            let table = topic.table();
            let definition = definitions
                .get(table)
                .unwrap_or_else(|| panic!("no CREATE for {table}"));
            let expected = definition.lines().find_map(|line| {
                let expression = line.trim().strip_prefix("PARTITION BY ")?;
                let (function, column) = expression.strip_suffix(')')?.split_once('(')?;
                let granularity = match function {
                    "toYYYYMMDD" => Granularity::Day,
                    "toYYYYMM" => Granularity::Month,
                    other => panic!("{table}: unexpected PARTITION BY {other}"),
                };
                Some((granularity, column.to_owned()))
            });
            let actual = buffer
                .partition_by()
                .map(|spec| (spec.granularity, spec.column.to_owned()));
            assert_eq!(actual, expected, "{table}");
        }
    }

    fn trade(index: usize, timestamp: i64) -> TradeRow {
        TradeRow {
            trade_id: format!("{index:05}"),
            condition_id: "c".to_owned(),
            token_id: "t".to_owned(),
            outcome: None,
            outcome_index: None,
            side: 1,
            price: 500_000,
            size: 1_000_000,
            timestamp,
            transaction_hash: "0x".to_owned(),
            proxy_wallet: "0x".to_owned(),
            source: 1,
            ingested_at: timestamp,
        }
    }

    /// Trades at the given times, each with a source naming its index as offset and payload.
    fn pending_trades(times: &[i64]) -> TypedRows<TradeRow> {
        let mut rows = TypedRows {
            table: "trades",
            rows: Vec::new(),
            sources: Vec::new(),
            payloads: Vec::new(),
            event_time: |row: &TradeRow| row.timestamp,
            partition: Some(PartitionBy::day("timestamp", |row: &TradeRow| {
                row.timestamp
            })),
        };
        for (index, time) in times.iter().enumerate() {
            rows.rows.push(trade(index, *time));
            let start = rows.payloads.len();
            rows.payloads
                .extend_from_slice(format!("{index:05}").as_bytes());
            rows.sources.push(Source {
                at: MessageAt {
                    partition: 0,
                    offset: i64::try_from(index).unwrap_or_default(),
                },
                start,
                end: rows.payloads.len(),
            });
        }
        rows
    }

    #[test]
    fn rows_within_the_partition_limit_stay_one_insert_in_their_order() {
        let start = 1_704_067_200_000;
        let times: Vec<i64> = (0..1_000).map(|i| start + (i % 100) * DAY + i).collect();
        let mut rows = pending_trades(&times);
        assert_eq!(
            rows.split_by_partition(MAX_PARTITIONS_PER_INSERT),
            vec![0..1_000]
        );
        let ids: Vec<&str> = rows.rows.iter().map(|row| row.trade_id.as_str()).collect();
        let expected: Vec<String> = (0..1_000).map(|i| format!("{i:05}")).collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn rows_over_more_partitions_are_grouped_into_inserts_within_the_limit() {
        let start = 1_704_067_200_000;
        // 250 days, interleaved (a backfill of several tokens), 4 rows per day.
        let times: Vec<i64> = (0..1_000)
            .map(|i| start + ((i * 37) % 250) * DAY + i)
            .collect();
        let mut rows = pending_trades(&times);
        let ranges = rows.split_by_partition(MAX_PARTITIONS_PER_INSERT);
        assert_eq!(ranges, vec![0..400, 400..800, 800..1_000]);
        for range in &ranges {
            let days: BTreeSet<i64> = rows.rows[range.clone()]
                .iter()
                .map(|row| Granularity::Day.key(row.timestamp))
                .collect();
            assert!(days.len() <= MAX_PARTITIONS_PER_INSERT);
        }
        // Every row once, still with its own source (offset and payload moved with it).
        let mut offsets = BTreeSet::new();
        for (index, row) in rows.rows.iter().enumerate() {
            let (at, payload) = rows
                .source(index)
                .unwrap_or_else(|| panic!("source {index}"));
            assert_eq!(payload, row.trade_id.as_bytes());
            assert_eq!(format!("{:05}", at.offset), row.trade_id);
            assert!(offsets.insert(at.offset));
        }
        assert_eq!(offsets.len(), 1_000);
        // Stable within a partition, and the same rows always split the same way.
        let again = pending_trades(&times).split_by_partition(MAX_PARTITIONS_PER_INSERT);
        assert_eq!(again, ranges);
        for pair in rows.rows.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if Granularity::Day.key(a.timestamp) == Granularity::Day.key(b.timestamp) {
                assert!(a.trade_id < b.trade_id, "arrival order kept within a day");
            }
        }
    }

    #[test]
    fn unpartitioned_rows_are_one_insert() {
        let mut rows = pending_trades(&[0, 400 * DAY, 800 * DAY]);
        rows.partition = None;
        assert_eq!(rows.split_by_partition(1), vec![0..3]);
        let mut empty = pending_trades(&[]);
        assert_eq!(empty.split_by_partition(100), vec![0..0]);
        assert_eq!(empty.newest_event_ms(0..0), None);
    }
}
