//! Per-table buffers: each topic's messages are decoded with the writer schema named in the
//! message (fetched from the registry once per id), mapped to the table's row type, and held
//! until the batch is flushed in one RowBinary insert.

use clickhouse::{RowOwned, RowWrite};
use futures::future::BoxFuture;
use polytape_codec::{AvroRecord, RecordDecoder, SchemaRegistryClient};

use crate::rows::{self, MapError};

/// A message that cannot become a row: why, kept for `dead_letters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
}

/// One topic's buffer of rows for its table.
pub trait TableBuffer: Send {
    /// The ClickHouse table.
    fn table(&self) -> &'static str;

    /// Decodes and maps one message into the buffer, without waiting, when its schema id is
    /// already known (the hot path); `None` when the writer schema must be fetched first.
    fn push_cached(&mut self, payload: &[u8]) -> Option<Result<(), Rejection>>;

    /// Decodes and maps one message into the buffer, fetching its writer schema if needed.
    fn push<'a>(&'a mut self, payload: &'a [u8]) -> BoxFuture<'a, Result<(), Rejection>>;

    /// Rows waiting to be inserted.
    fn pending(&self) -> usize;

    /// Hands the pending rows over for insertion (the buffer starts empty again), so the next
    /// batch can be decoded while this one is inserted.
    fn take(&mut self) -> Option<Box<dyn PendingRows>>;
}

/// Rows of one table taken from its buffer, waiting for their insert.
pub trait PendingRows: Send {
    fn table(&self) -> &'static str;

    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts every row in one statement carrying `deduplication_token`. On error the rows
    /// stay, so the same rows (same token) are retried.
    fn flush<'a>(
        &'a mut self,
        client: &'a clickhouse::Client,
        deduplication_token: &'a str,
    ) -> BoxFuture<'a, Result<(), clickhouse::error::Error>>;

    /// The newest event time among the rows (UTC ms), for the freshness metric.
    fn newest_event_ms(&self) -> Option<i64>;
}

/// Rows for `table`, ready to insert (e.g. the sink's own dead letters).
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
        event_time,
    })
}

/// The rows of one table, typed.
struct TypedRows<R> {
    table: &'static str,
    rows: Vec<R>,
    event_time: fn(&R) -> i64,
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

    fn flush<'a>(
        &'a mut self,
        client: &'a clickhouse::Client,
        deduplication_token: &'a str,
    ) -> BoxFuture<'a, Result<(), clickhouse::error::Error>> {
        Box::pin(async move {
            let mut insert = client
                .insert::<R>(self.table)
                .await?
                .with_setting("insert_deduplication_token", deduplication_token);
            for row in &self.rows {
                insert.write(row).await?;
            }
            insert.end().await?;
            crate::metrics::observe_row_latencies(
                self.table,
                polytape_model::now_ms(),
                self.rows.iter().map(self.event_time),
            );
            Ok(())
        })
    }

    fn newest_event_ms(&self) -> Option<i64> {
        self.rows.iter().map(self.event_time).max()
    }
}

/// The buffer of one record type `T` loaded into rows `R`.
pub struct TypedBuffer<T, R> {
    table: &'static str,
    decoder: RecordDecoder<T>,
    rows: Vec<R>,
    event_time: fn(&R) -> i64,
}

impl<T, R> TypedBuffer<T, R>
where
    T: AvroRecord,
    R: TryFrom<T, Error = MapError> + RowOwned + RowWrite + Send + Sync + 'static,
{
    pub fn new(registry: SchemaRegistryClient, event_time: fn(&R) -> i64) -> Self {
        Self {
            table: T::TOPIC.table(),
            decoder: RecordDecoder::new(registry),
            rows: Vec::new(),
            event_time,
        }
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
    ) -> Result<(), Rejection> {
        let record = decoded.map_err(|error| Rejection {
            reason: format!("cannot decode: {error}"),
        })?;
        let row = R::try_from(record).map_err(|error| Rejection {
            reason: format!("cannot map to {}: {error}", self.table),
        })?;
        self.rows.push(row);
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

    fn push_cached(&mut self, payload: &[u8]) -> Option<Result<(), Rejection>> {
        let decoded = match self.decoder.decode_cached(payload) {
            Ok(Some(record)) => Ok(record),
            Ok(None) => return None,
            Err(error) => Err(error),
        };
        Some(self.push_decoded(decoded))
    }

    fn push<'a>(&'a mut self, payload: &'a [u8]) -> BoxFuture<'a, Result<(), Rejection>> {
        Box::pin(async move {
            let decoded = self.decoder.decode(payload).await;
            self.push_decoded(decoded)
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
            event_time: self.event_time,
        }))
    }
}

/// A buffer for every topic, keyed by the topic it reads.
pub fn all_buffers(
    registry: &SchemaRegistryClient,
) -> Vec<(polytape_model::Topic, Box<dyn TableBuffer>)> {
    use polytape_model::{
        BestBidAsk, BookSnapshot, BookState, Candle, Continuity, DeadLetter, Event, LastTrade,
        LeaderboardEntry, Market, MarketLifecycle, PriceChange, PricePoint, TickSizeChange, Topic,
        Trade,
    };
    use rows::*;

    fn buffer<T, R>(
        registry: &SchemaRegistryClient,
        event_time: fn(&R) -> i64,
    ) -> (Topic, Box<dyn TableBuffer>)
    where
        T: AvroRecord,
        R: TryFrom<T, Error = MapError> + RowOwned + RowWrite + Send + Sync + 'static,
    {
        (
            T::TOPIC,
            Box::new(TypedBuffer::<T, R>::new(registry.clone(), event_time)),
        )
    }

    vec![
        buffer::<Market, MarketRow>(registry, |row| row.updated_at),
        buffer::<Event, EventRow>(registry, |row| row.updated_at),
        buffer::<Trade, TradeRow>(registry, |row| row.timestamp),
        buffer::<BookSnapshot, BookSnapshotRow>(registry, |row| row.timestamp),
        buffer::<PriceChange, PriceChangeRow>(registry, |row| row.timestamp),
        buffer::<LastTrade, LastTradeRow>(registry, |row| row.timestamp),
        buffer::<TickSizeChange, TickSizeChangeRow>(registry, |row| row.timestamp),
        buffer::<BestBidAsk, BestBidAskRow>(registry, |row| row.timestamp),
        buffer::<MarketLifecycle, MarketLifecycleRow>(registry, |row| row.timestamp),
        buffer::<PricePoint, PricePointRow>(registry, |row| row.timestamp),
        buffer::<Candle, CandleRow>(registry, |row| row.last_trade_time),
        buffer::<BookState, BookStateRow>(registry, |row| row.timestamp),
        buffer::<Continuity, ContinuityRow>(registry, |row| row.detected_at),
        buffer::<DeadLetter, DeadLetterRow>(registry, |row| row.occurred_at),
        buffer::<LeaderboardEntry, LeaderboardRow>(registry, |row| row.snapshot_time),
    ]
}
