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

    /// Decodes and maps one message into the buffer.
    fn push<'a>(&'a mut self, payload: &'a [u8]) -> BoxFuture<'a, Result<(), Rejection>>;

    /// Rows waiting to be inserted.
    fn pending(&self) -> usize;

    /// Inserts every pending row in one statement carrying `deduplication_token`. On error the
    /// rows stay pending, so the same batch (same token) is retried.
    fn flush<'a>(
        &'a mut self,
        client: &'a clickhouse::Client,
        deduplication_token: &'a str,
    ) -> BoxFuture<'a, Result<usize, clickhouse::error::Error>>;

    /// The newest event time among the rows inserted by the last flush (UTC ms), for the
    /// freshness metric.
    fn newest_event_ms(&self) -> Option<i64>;
}

/// The buffer of one record type `T` loaded into rows `R`.
pub struct TypedBuffer<T, R> {
    table: &'static str,
    decoder: RecordDecoder<T>,
    rows: Vec<R>,
    event_time: fn(&R) -> i64,
    newest_event_ms: Option<i64>,
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
            newest_event_ms: None,
        }
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

    fn push<'a>(&'a mut self, payload: &'a [u8]) -> BoxFuture<'a, Result<(), Rejection>> {
        Box::pin(async move {
            let record = self
                .decoder
                .decode(payload)
                .await
                .map_err(|error| Rejection {
                    reason: format!("cannot decode: {error}"),
                })?;
            let row = R::try_from(record).map_err(|error| Rejection {
                reason: format!("cannot map to {}: {error}", self.table),
            })?;
            self.rows.push(row);
            Ok(())
        })
    }

    fn pending(&self) -> usize {
        self.rows.len()
    }

    fn flush<'a>(
        &'a mut self,
        client: &'a clickhouse::Client,
        deduplication_token: &'a str,
    ) -> BoxFuture<'a, Result<usize, clickhouse::error::Error>> {
        Box::pin(async move {
            if self.rows.is_empty() {
                return Ok(0);
            }
            let mut insert = client
                .insert::<R>(self.table)
                .await?
                .with_setting("insert_deduplication_token", deduplication_token);
            for row in &self.rows {
                insert.write(row).await?;
            }
            insert.end().await?;
            let inserted = self.rows.len();
            self.newest_event_ms = self.rows.iter().map(self.event_time).max();
            crate::metrics::observe_row_latencies(
                self.table,
                polytape_model::now_ms(),
                self.rows.iter().map(self.event_time),
            );
            self.rows.clear();
            Ok(inserted)
        })
    }

    fn newest_event_ms(&self) -> Option<i64> {
        self.newest_event_ms
    }
}

/// A buffer for every topic, keyed by the topic it reads.
pub fn all_buffers(
    registry: &SchemaRegistryClient,
) -> Vec<(polytape_model::Topic, Box<dyn TableBuffer>)> {
    use polytape_model::{
        BestBidAsk, BookSnapshot, BookState, Candle, Continuity, DeadLetter, Event, LastTrade,
        Market, MarketLifecycle, PriceChange, PricePoint, TickSizeChange, Topic, Trade,
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
    ]
}
