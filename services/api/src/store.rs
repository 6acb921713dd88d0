//! Every question the API asks ClickHouse, in one place: the SQL, the order of its bound
//! values, and the rows it reads. Whole-table rows are the ones the sink writes
//! (`polytape_clickhouse::rows`); a query that reads a few columns or an aggregate declares
//! its projection here, next to the query. Route handlers validate parameters, call one
//! method and map rows to views; no SQL lives in a handler.
//!
//! Every value is bound (`?`), never formatted into the SQL, and reads use `FINAL`, so a
//! redelivered row never shows twice. The client bounds every query in time
//! (`polytape_clickhouse::client`) and the server in rows read (`max_rows_to_read`).

use clickhouse::{Row, RowOwned, RowRead, query::Query};
use serde::Deserialize;

use polytape_clickhouse::rows::{
    ApiKeyRow, BookStateRow, CandleRow, ContinuityRow, EventRow, MarketRow, SignalRow, TradeRow,
    UsageRow,
};

pub type StoreResult<T> = Result<T, clickhouse::error::Error>;

/// A time in SQL from a bound millisecond value.
const MS: &str = "fromUnixTimestamp64Milli(toInt64(?), 'UTC')";

/// At most this many gaps are reported with one book.
const GAPS_PER_BOOK: u64 = 100;

/// One bound value.
#[derive(Debug, Clone)]
enum Value {
    Text(String),
    Flag(bool),
    Millis(i64),
}

/// ` AND …` conditions with their values in the order their `?` appear.
#[derive(Debug, Clone, Default)]
struct Conditions {
    sql: String,
    values: Vec<Value>,
}

impl Conditions {
    fn push(&mut self, sql: &str, values: impl IntoIterator<Item = Value>) {
        self.sql.push_str(" AND ");
        self.sql.push_str(sql);
        self.values.extend(values);
    }

    fn bind(&self, mut query: Query) -> Query {
        for value in &self.values {
            query = match value {
                Value::Text(text) => query.bind(text),
                Value::Flag(flag) => query.bind(*flag),
                Value::Millis(ms) => query.bind(*ms),
            };
        }
        query
    }
}

/// Where a keyset walk resumes: strictly after the row with this sort key.
#[derive(Debug, Clone)]
pub struct After {
    pub time_ms: i64,
    pub id: String,
}

impl After {
    /// `(time, id)` strictly after (ascending) or before (descending) this position.
    fn condition(&self, conditions: &mut Conditions, time: &str, id: &str, descending: bool) {
        let beyond = if descending { "<" } else { ">" };
        conditions.push(
            &format!("({time} {beyond} {MS} OR ({time} = {MS} AND {id} {beyond} ?))"),
            [
                Value::Millis(self.time_ms),
                Value::Millis(self.time_ms),
                Value::Text(self.id.clone()),
            ],
        );
    }
}

/// One page of a walk: at most `limit` rows, and whether more follow.
#[derive(Debug)]
pub struct Page<T> {
    pub rows: Vec<T>,
    more: bool,
}

impl<T> Page<T> {
    /// From a fetch of `limit + 1` rows.
    fn from_fetch(mut rows: Vec<T>, limit: u32) -> Self {
        let limit = limit as usize;
        let more = rows.len() > limit;
        rows.truncate(limit);
        Self { rows, more }
    }

    /// The row the next page starts after, if there is a next page.
    pub fn last_if_more(&self) -> Option<&T> {
        if self.more { self.rows.last() } else { None }
    }
}

/// The filters of the signals list; each given one must hold.
#[derive(Debug, Default)]
pub struct SignalFilter {
    /// The kind's name (the `Enum8` compares by name).
    pub kind: Option<&'static str>,
    pub condition_id: Option<String>,
    pub token_id: Option<String>,
    /// The subject of wallet signals.
    pub wallet: Option<String>,
    pub event_id: Option<String>,
    pub rule_id: Option<String>,
}

impl SignalFilter {
    fn conditions(&self) -> Conditions {
        let mut conditions = Conditions::default();
        if let Some(kind) = self.kind {
            conditions.push("kind = ?", [Value::Text(kind.to_owned())]);
        }
        if let Some(condition_id) = &self.condition_id {
            conditions.push("has(condition_ids, ?)", [Value::Text(condition_id.clone())]);
        }
        if let Some(token_id) = &self.token_id {
            conditions.push("has(token_ids, ?)", [Value::Text(token_id.clone())]);
        }
        if let Some(wallet) = &self.wallet {
            conditions.push("subject = ?", [Value::Text(wallet.clone())]);
        }
        if let Some(event_id) = &self.event_id {
            conditions.push("event_id = ?", [Value::Text(event_id.clone())]);
        }
        if let Some(rule_id) = &self.rule_id {
            conditions.push("rule_id = ?", [Value::Text(rule_id.clone())]);
        }
        conditions
    }
}

/// The filters of the markets and events lists.
#[derive(Debug, Default)]
pub struct ListFilter {
    /// Contained in the question/title or slug, case-insensitive.
    pub text: Option<String>,
    pub active: Option<bool>,
    pub closed: Option<bool>,
    pub tag: Option<String>,
    /// Markets only.
    pub event_id: Option<String>,
    pub updated_since_ms: Option<i64>,
}

impl ListFilter {
    fn conditions(&self, text_columns: &[&str]) -> Conditions {
        let mut conditions = Conditions::default();
        if let Some(text) = &self.text {
            let clauses: Vec<String> = text_columns
                .iter()
                .map(|column| format!("positionCaseInsensitiveUTF8({column}, ?) > 0"))
                .collect();
            conditions.push(
                &format!("({})", clauses.join(" OR ")),
                text_columns.iter().map(|_| Value::Text(text.clone())),
            );
        }
        for (column, flag) in [("active", self.active), ("closed", self.closed)] {
            if let Some(flag) = flag {
                conditions.push(&format!("{column} = ?"), [Value::Flag(flag)]);
            }
        }
        if let Some(tag) = &self.tag {
            conditions.push("has(tags, ?)", [Value::Text(tag.clone())]);
        }
        if let Some(event_id) = &self.event_id {
            conditions.push("has(event_ids, ?)", [Value::Text(event_id.clone())]);
        }
        if let Some(since) = self.updated_since_ms {
            conditions.push(&format!("updated_at >= {MS}"), [Value::Millis(since)]);
        }
        conditions
    }
}

/// The filter of a trades walk; `until_ms` (exclusive) is fixed by the walk's first page.
#[derive(Debug)]
pub struct TradeFilter {
    pub market: Option<String>,
    pub token_id: Option<String>,
    pub wallet: Option<String>,
    pub side: Option<String>,
    pub from_ms: Option<i64>,
    pub until_ms: i64,
}

impl TradeFilter {
    fn conditions(&self) -> Conditions {
        let mut conditions = Conditions::default();
        for (column, value) in [
            ("condition_id", &self.market),
            ("token_id", &self.token_id),
            ("proxy_wallet", &self.wallet),
            ("side", &self.side),
        ] {
            if let Some(value) = value {
                conditions.push(&format!("{column} = ?"), [Value::Text(value.clone())]);
            }
        }
        if let Some(from) = self.from_ms {
            conditions.push(&format!("timestamp >= {MS}"), [Value::Millis(from)]);
        }
        conditions.push(&format!("timestamp < {MS}"), [Value::Millis(self.until_ms)]);
        conditions
    }
}

/// Totals over a trade filter: volume at scale 6, notional at scale 12.
#[derive(Debug, Row, Deserialize)]
pub struct TradeTotals {
    pub count: u64,
    pub volume: i128,
    pub notional: i128,
}

/// The levels of an upstream book snapshot.
#[derive(Debug, Row, Deserialize)]
pub struct SnapshotLevels {
    pub timestamp: i64,
    pub bid_prices: Vec<i64>,
    pub bid_sizes: Vec<i64>,
    pub ask_prices: Vec<i64>,
    pub ask_sizes: Vec<i64>,
}

/// One level set by a price change.
#[derive(Debug, Row, Deserialize)]
pub struct LevelChange {
    pub timestamp: i64,
    /// `Side` code.
    pub side: i8,
    pub price: i64,
    pub size: i64,
}

/// The last price of one time bucket.
#[derive(Debug, Row, Deserialize)]
pub struct PriceBucket {
    pub bucket_ms: i64,
    pub price: i64,
}

/// Requests and rejections of one key on one UTC day.
#[derive(Debug, Row, Deserialize)]
pub struct UsageTotal {
    pub key_prefix: String,
    /// Days since 1970-01-01.
    pub day: u16,
    pub requests: u64,
    pub rejected: u64,
}

/// Requests of one key today, over every replica.
#[derive(Debug, Row, Deserialize)]
pub struct DayTotal {
    pub key_prefix: String,
    pub requests: u64,
}

/// The API's view of ClickHouse.
#[derive(Debug, Clone)]
pub struct Store {
    client: clickhouse::Client,
}

impl Store {
    pub fn new(client: clickhouse::Client) -> Self {
        Self { client }
    }

    /// The latest market ranking snapshot at or before `at_ms`, by rank.
    pub async fn ranking_snapshot(
        &self,
        at_ms: i64,
        limit: u64,
    ) -> Result<Vec<polytape_clickhouse::rankings::RankingRow>, polytape_clickhouse::ClickHouseError>
    {
        polytape_clickhouse::rankings::snapshot_at(&self.client, at_ms, limit).await
    }

    /// Alert rules, test fires and deliveries, on the same client (and its limits).
    pub fn alerts(&self) -> polytape_clickhouse::alerts::AlertStore {
        polytape_clickhouse::alerts::AlertStore::new(self.client.clone())
    }

    /// Markets matching `filter`, in condition id order, after `after_id` ("" for the first).
    pub async fn markets(
        &self,
        filter: &ListFilter,
        after_id: &str,
        limit: u32,
    ) -> StoreResult<Page<MarketRow>> {
        let conditions = filter.conditions(&["question", "ifNull(slug, '')"]);
        self.list("markets", "condition_id", &conditions, after_id, limit)
            .await
    }

    pub async fn market(&self, condition_id: &str) -> StoreResult<Option<MarketRow>> {
        self.one("markets", "condition_id", condition_id).await
    }

    /// Events matching `filter`, in event id order, after `after_id` ("" for the first).
    pub async fn events(
        &self,
        filter: &ListFilter,
        after_id: &str,
        limit: u32,
    ) -> StoreResult<Page<EventRow>> {
        let conditions = filter.conditions(&["title", "ifNull(slug, '')"]);
        self.list("events", "event_id", &conditions, after_id, limit)
            .await
    }

    pub async fn event(&self, event_id: &str) -> StoreResult<Option<EventRow>> {
        self.one("events", "event_id", event_id).await
    }

    /// A page of a table keyed by one id column, in id order.
    async fn list<R: RowOwned + RowRead>(
        &self,
        table: &str,
        id_column: &str,
        conditions: &Conditions,
        after_id: &str,
        limit: u32,
    ) -> StoreResult<Page<R>> {
        let sql = format!(
            "SELECT ?fields FROM {table} FINAL WHERE {id_column} > ?{} ORDER BY {id_column} LIMIT ?",
            conditions.sql
        );
        let query = conditions.bind(self.client.query(&sql).bind(after_id));
        let rows = query.bind(limit + 1).fetch_all().await?;
        Ok(Page::from_fetch(rows, limit))
    }

    /// The row of a table keyed by one id column.
    async fn one<R: RowOwned + RowRead>(
        &self,
        table: &str,
        id_column: &str,
        id: &str,
    ) -> StoreResult<Option<R>> {
        self.client
            .query(&format!(
                "SELECT ?fields FROM {table} FINAL WHERE {id_column} = ? LIMIT 1"
            ))
            .bind(id)
            .fetch_optional()
            .await
    }

    /// Trades in `(timestamp, trade_id)` order (a total order: trade ids are unique).
    pub async fn trades(
        &self,
        filter: &TradeFilter,
        after: Option<&After>,
        descending: bool,
        limit: u32,
    ) -> StoreResult<Page<TradeRow>> {
        let mut conditions = filter.conditions();
        if let Some(after) = after {
            after.condition(&mut conditions, "timestamp", "trade_id", descending);
        }
        let order = if descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT ?fields FROM trades FINAL WHERE 1{} \
             ORDER BY timestamp {order}, trade_id {order} LIMIT ?",
            conditions.sql
        );
        let rows = conditions
            .bind(self.client.query(&sql))
            .bind(limit + 1)
            .fetch_all()
            .await?;
        Ok(Page::from_fetch(rows, limit))
    }

    /// Count, volume and notional over every trade of `filter`.
    pub async fn trade_totals(&self, filter: &TradeFilter) -> StoreResult<TradeTotals> {
        let conditions = filter.conditions();
        let sql = format!(
            "SELECT count() AS count, sum(toDecimal128(size, 6)) AS volume, \
             sum(toDecimal128(price, 6) * toDecimal128(size, 6)) AS notional \
             FROM trades FINAL WHERE 1{}",
            conditions.sql
        );
        conditions.bind(self.client.query(&sql)).fetch_one().await
    }

    /// Gaps overlapping `[from_ms, to_ms)`, in `(gap_start, continuity_id)` order.
    pub async fn gaps(
        &self,
        token_id: Option<&str>,
        from_ms: i64,
        to_ms: i64,
        after: Option<&After>,
        limit: u32,
    ) -> StoreResult<Page<ContinuityRow>> {
        let mut conditions = Conditions::default();
        if let Some(token_id) = token_id {
            conditions.push("has(token_ids, ?)", [Value::Text(token_id.to_owned())]);
        }
        if let Some(after) = after {
            after.condition(&mut conditions, "gap_start", "continuity_id", false);
        }
        let sql = format!(
            "SELECT ?fields FROM continuity FINAL \
             WHERE gap_start < {MS} AND (gap_end IS NULL OR gap_end >= {MS}){} \
             ORDER BY gap_start, continuity_id LIMIT ?",
            conditions.sql
        );
        let query = self.client.query(&sql).bind(to_ms).bind(from_ms);
        let rows = conditions.bind(query).bind(limit + 1).fetch_all().await?;
        Ok(Page::from_fetch(rows, limit))
    }

    /// Signals whose window started in `[from_ms, to_ms)` and that `filter` keeps, in
    /// `(window_start, signal_id)` order.
    pub async fn signals(
        &self,
        filter: &SignalFilter,
        from_ms: i64,
        to_ms: i64,
        after: Option<&After>,
        limit: u32,
    ) -> StoreResult<Page<SignalRow>> {
        let mut conditions = filter.conditions();
        if let Some(after) = after {
            after.condition(&mut conditions, "window_start", "signal_id", false);
        }
        let sql = format!(
            "SELECT ?fields FROM signals FINAL \
             WHERE window_start >= {MS} AND window_start < {MS}{} \
             ORDER BY window_start, signal_id LIMIT ?",
            conditions.sql
        );
        let query = self.client.query(&sql).bind(from_ms).bind(to_ms);
        let rows = conditions.bind(query).bind(limit + 1).fetch_all().await?;
        Ok(Page::from_fetch(rows, limit))
    }

    /// The first gaps of `token_id` overlapping `[from_ms, to_ms]` (both ends included: a
    /// book at `to_ms` is affected by a gap starting then).
    pub async fn gaps_of_book(
        &self,
        token_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<ContinuityRow>> {
        self.client
            .query(&format!(
                "SELECT ?fields FROM continuity FINAL \
                 WHERE has(token_ids, ?) AND gap_start <= {MS} AND (gap_end IS NULL OR gap_end >= {MS}) \
                 ORDER BY gap_start, continuity_id LIMIT ?"
            ))
            .bind(token_id)
            .bind(to_ms)
            .bind(from_ms)
            .bind(GAPS_PER_BOOK)
            .fetch_all()
            .await
    }

    /// When the market of `token_id` resolved: the `MARKET_RESOLVED` lifecycle event, else
    /// the end of the second of the market's `closed_time` (Gamma's precision).
    pub async fn resolution_ms(&self, token_id: &str) -> StoreResult<Option<i64>> {
        let from_lifecycle: Option<i64> = self
            .client
            .query(
                "SELECT toInt64(toUnixTimestamp64Milli(min(timestamp))) FROM market_lifecycle FINAL \
                 WHERE kind = 'MARKET_RESOLVED' AND has(token_ids, ?) HAVING count() > 0",
            )
            .bind(token_id)
            .fetch_optional()
            .await?;
        if from_lifecycle.is_some() {
            return Ok(from_lifecycle);
        }
        let closed_ms: Option<i64> = self
            .client
            .query(
                "SELECT toInt64(toUnixTimestamp64Milli(min(assumeNotNull(closed_time)))) FROM markets FINAL \
                 WHERE has(token_ids, ?) AND closed AND closed_time IS NOT NULL HAVING count() > 0",
            )
            .bind(token_id)
            .fetch_optional()
            .await?;
        Ok(closed_ms.map(|closed_ms| closed_ms - closed_ms.rem_euclid(1_000) + 999))
    }

    /// The newest book state of `token_id` in `[not_before_ms, at_ms]`, full-depth ones only
    /// if `full_depth_only`.
    pub async fn newest_book_state(
        &self,
        token_id: &str,
        at_ms: i64,
        not_before_ms: i64,
        full_depth_only: bool,
    ) -> StoreResult<Option<BookStateRow>> {
        let depth = if full_depth_only {
            " AND full_depth"
        } else {
            ""
        };
        self.client
            .query(&format!(
                "SELECT ?fields FROM book_state FINAL \
                 WHERE token_id = ?{depth} AND timestamp <= {MS} AND timestamp >= {MS} \
                 ORDER BY timestamp DESC LIMIT 1"
            ))
            .bind(token_id)
            .bind(at_ms)
            .bind(not_before_ms)
            .fetch_optional()
            .await
    }

    /// The newest upstream snapshot of `token_id` in `[not_before_ms, at_ms]`.
    pub async fn newest_snapshot(
        &self,
        token_id: &str,
        at_ms: i64,
        not_before_ms: i64,
    ) -> StoreResult<Option<SnapshotLevels>> {
        self.client
            .query(&format!(
                "SELECT timestamp, bid_prices, bid_sizes, ask_prices, ask_sizes FROM book_snapshots FINAL \
                 WHERE token_id = ? AND timestamp <= {MS} AND timestamp >= {MS} ORDER BY timestamp DESC LIMIT 1"
            ))
            .bind(token_id)
            .bind(at_ms)
            .bind(not_before_ms)
            .fetch_optional()
            .await
    }

    /// The snapshots of `token_id` in `(after_ms, until_ms]`, oldest first.
    pub async fn snapshots_between(
        &self,
        token_id: &str,
        after_ms: i64,
        until_ms: i64,
    ) -> StoreResult<Vec<SnapshotLevels>> {
        self.client
            .query(&format!(
                "SELECT timestamp, bid_prices, bid_sizes, ask_prices, ask_sizes FROM book_snapshots FINAL \
                 WHERE token_id = ? AND timestamp > {MS} AND timestamp <= {MS} ORDER BY timestamp"
            ))
            .bind(token_id)
            .bind(after_ms)
            .bind(until_ms)
            .fetch_all()
            .await
    }

    /// The price changes of `token_id` in `(after_ms, until_ms]` in the order upstream sent
    /// them, at most `max` (ask for one more than you accept to see that there are more).
    pub async fn changes_between(
        &self,
        token_id: &str,
        after_ms: i64,
        until_ms: i64,
        max: u64,
    ) -> StoreResult<Vec<LevelChange>> {
        self.client
            .query(&format!(
                "SELECT timestamp, side, price, size FROM price_changes FINAL \
                 WHERE token_id = ? AND timestamp > {MS} AND timestamp <= {MS} \
                 ORDER BY timestamp, connection_id, sequence, entry_index LIMIT ?"
            ))
            .bind(token_id)
            .bind(after_ms)
            .bind(until_ms)
            .bind(max)
            .fetch_all()
            .await
    }

    /// The candles of `token_id` and `interval` opening in `[start_ms, to_ms)`, oldest first.
    pub async fn candles(
        &self,
        token_id: &str,
        interval: &str,
        start_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<CandleRow>> {
        self.client
            .query(&format!(
                "SELECT ?fields FROM candles FINAL \
                 WHERE token_id = ? AND interval = ? AND open_time >= {MS} AND open_time < {MS} \
                 ORDER BY open_time"
            ))
            .bind(token_id)
            .bind(interval)
            .bind(start_ms)
            .bind(to_ms)
            .fetch_all()
            .await
    }

    /// The close of the newest candle opening in `[not_before_ms, before_ms)`.
    pub async fn close_before(
        &self,
        token_id: &str,
        interval: &str,
        before_ms: i64,
        not_before_ms: i64,
    ) -> StoreResult<Option<i64>> {
        self.client
            .query(&format!(
                "SELECT close FROM candles FINAL \
                 WHERE token_id = ? AND interval = ? AND open_time < {MS} AND open_time >= {MS} \
                 ORDER BY open_time DESC LIMIT 1"
            ))
            .bind(token_id)
            .bind(interval)
            .bind(before_ms)
            .bind(not_before_ms)
            .fetch_optional()
            .await
    }

    /// The last price of each `step_ms` bucket of `[start_ms, to_ms)` that has one.
    pub async fn price_buckets(
        &self,
        token_id: &str,
        step_ms: i64,
        start_ms: i64,
        to_ms: i64,
    ) -> StoreResult<Vec<PriceBucket>> {
        self.client
            .query(&format!(
                "SELECT intDiv(toUnixTimestamp64Milli(timestamp), toInt64(?)) * toInt64(?) AS bucket_ms, \
                 argMax(price, timestamp) AS price \
                 FROM price_history FINAL WHERE token_id = ? AND timestamp >= {MS} AND timestamp < {MS} \
                 GROUP BY bucket_ms ORDER BY bucket_ms"
            ))
            .bind(step_ms)
            .bind(step_ms)
            .bind(token_id)
            .bind(start_ms)
            .bind(to_ms)
            .fetch_all()
            .await
    }

    /// Every API key, the newest version of each.
    pub async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRow>> {
        self.client
            .query("SELECT ?fields FROM api_keys FINAL ORDER BY created_at, key_prefix")
            .fetch_all()
            .await
    }

    pub async fn api_key(&self, prefix: &str) -> StoreResult<Option<ApiKeyRow>> {
        self.one("api_keys", "key_prefix", prefix).await
    }

    /// Stores a key's row (a newer `updated_at` replaces the key's older rows).
    pub async fn write_api_key(&self, row: &ApiKeyRow) -> StoreResult<()> {
        let mut insert = self.client.insert::<ApiKeyRow>("api_keys").await?;
        insert.write(row).await?;
        insert.end().await
    }

    /// Adds usage counts (`api_usage` sums them per key and day).
    pub async fn write_usage(&self, rows: &[UsageRow]) -> StoreResult<()> {
        let mut insert = self.client.insert::<UsageRow>("api_usage").await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await
    }

    /// Each key's requests on `day` (`YYYY-MM-DD`), over every replica.
    pub async fn requests_on(&self, day: &str) -> StoreResult<Vec<DayTotal>> {
        self.client
            .query(
                "SELECT key_prefix, sum(requests) AS requests FROM api_usage \
                 WHERE day = toDate(?) GROUP BY key_prefix",
            )
            .bind(day)
            .fetch_all()
            .await
    }

    /// Usage per key per day over `[from_day, to_day]` (`YYYY-MM-DD`), of one key or all.
    pub async fn usage(
        &self,
        from_day: &str,
        to_day: &str,
        key_prefix: Option<&str>,
    ) -> StoreResult<Vec<UsageTotal>> {
        let key_sql = if key_prefix.is_some() {
            " AND key_prefix = ?"
        } else {
            ""
        };
        let mut query = self
            .client
            .query(&format!(
                "SELECT key_prefix, day, sum(requests) AS requests, sum(rejected) AS rejected FROM api_usage \
                 WHERE day >= toDate(?) AND day <= toDate(?){key_sql} \
                 GROUP BY key_prefix, day ORDER BY key_prefix, day"
            ))
            .bind(from_day)
            .bind(to_day);
        if let Some(prefix) = key_prefix {
            query = query.bind(prefix);
        }
        query.fetch_all().await
    }
}
