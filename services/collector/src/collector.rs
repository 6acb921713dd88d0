//! The collection pipeline: markets and events from Gamma merged with CLOB, trades per market
//! from the Data API walked in time windows, price history per token. Records go to Kafka
//! first; checkpoints follow once the broker acknowledged them.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use polytape_codec::SchemaRegistryClient;
use polytape_kafka::{RecordProducer, create_producer};
use polytape_model::{
    DeadLetter, Event, Market, PricePoint, TopicNames, Trade, content_hash, now_ms,
};
use polytape_runtime::metrics::InternalEvent as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{
    CollectorConfig,
    budget::{Budgets, Endpoint},
    checkpoint::{Checkpoints, TradeCheckpoint},
    error::CollectError,
    http::{RetryPolicy, Upstream},
    metrics::{DeadLettered, RecordsProduced},
    options::{Dataset, Mode, Options},
    parse,
};

/// Data API v1 `/trades` refuses `offset + limit` beyond this.
const OFFSET_CAP: u32 = 10_000;
/// Gamma keyset pages hold at most 100 rows.
const KEYSET_LIMIT: u32 = 100;
/// Backfill rounds (retrying markets that failed) before giving up.
const BACKFILL_ROUNDS: u32 = 6;

/// What a finished run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub markets: usize,
    pub markets_complete: usize,
    pub trades: u64,
    pub markets_emitted: u64,
    pub events_emitted: u64,
    pub price_points: u64,
    pub dead_letters: u64,
}

/// Ids sent at the newest second of a market's coverage: the next poll re-reads that second
/// (fills may have been added to it since), and these are not sent again.
#[derive(Debug, Default)]
struct Edge {
    second: i64,
    ids: HashSet<String>,
}

pub struct Collector {
    gamma_url: String,
    data_url: String,
    clob_url: String,
    tuning: crate::config::CollectorTuning,
    upstream: Upstream,
    trades: RecordProducer<Trade>,
    markets: RecordProducer<Market>,
    events: RecordProducer<Event>,
    prices: RecordProducer<PricePoint>,
    dlq: RecordProducer<DeadLetter>,
    checkpoints: Checkpoints,
    edges: Mutex<HashMap<String, Edge>>,
    /// Tick size per condition id, from the last markets crawl (for dust fills' prices).
    ticks: Mutex<HashMap<String, rust_decimal::Decimal>>,
    stop: CancellationToken,
    trades_sent: AtomicU64,
    markets_sent: AtomicU64,
    events_sent: AtomicU64,
    prices_sent: AtomicU64,
    dead_letters_sent: AtomicU64,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Collector").finish_non_exhaustive()
    }
}

fn base(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

impl Collector {
    /// Registers the schemas, opens the checkpoints and builds the upstream client.
    pub async fn connect(
        config: &CollectorConfig,
        fresh: bool,
        stop: CancellationToken,
    ) -> Result<Self, CollectError> {
        let names = TopicNames::with_prefix(config.kafka.topic_prefix.clone());
        let registry = SchemaRegistryClient::new(&config.kafka.schema_registry_url)?;
        let producer = create_producer(&config.kafka.kafka_brokers)?;
        let tuning = config.tuning.clone();
        let budgets = Budgets::new(tuning.budget_window, tuning.budget_margin);
        let policy = RetryPolicy {
            max_attempts: tuning.max_attempts.max(1),
            request_timeout: tuning.request_timeout,
            ..RetryPolicy::default()
        };
        Ok(Self {
            gamma_url: base(&config.upstream.gamma_url),
            data_url: base(&config.upstream.data_api_url),
            clob_url: base(&config.upstream.clob_url),
            upstream: Upstream::new(budgets, policy, stop.clone())?,
            trades: RecordProducer::register(producer.clone(), &registry, &names).await?,
            markets: RecordProducer::register(producer.clone(), &registry, &names).await?,
            events: RecordProducer::register(producer.clone(), &registry, &names).await?,
            prices: RecordProducer::register(producer.clone(), &registry, &names).await?,
            dlq: RecordProducer::register(producer.clone(), &registry, &names).await?,
            checkpoints: Checkpoints::open(
                &config.kafka.kafka_brokers,
                &config.kafka.topic_prefix,
                producer,
                fresh,
            )
            .await?,
            tuning,
            edges: Mutex::new(HashMap::new()),
            ticks: Mutex::new(HashMap::new()),
            stop,
            trades_sent: AtomicU64::new(0),
            markets_sent: AtomicU64::new(0),
            events_sent: AtomicU64::new(0),
            prices_sent: AtomicU64::new(0),
            dead_letters_sent: AtomicU64::new(0),
        })
    }

    fn summary(&self, markets: usize, complete: usize) -> Summary {
        Summary {
            markets,
            markets_complete: complete,
            trades: self.trades_sent.load(Ordering::Relaxed),
            markets_emitted: self.markets_sent.load(Ordering::Relaxed),
            events_emitted: self.events_sent.load(Ordering::Relaxed),
            price_points: self.prices_sent.load(Ordering::Relaxed),
            dead_letters: self.dead_letters_sent.load(Ordering::Relaxed),
        }
    }

    /// Sends refused rows or pages to the DLQ. The id is a digest of origin and payload, so
    /// the same bad row fetched twice is one dead letter downstream.
    async fn dead_letter(
        &self,
        endpoint: Endpoint,
        origin: &str,
        rejected: Vec<(Vec<u8>, String)>,
    ) -> Result<(), CollectError> {
        if rejected.is_empty() {
            return Ok(());
        }
        let occurred_ms = now_ms();
        let letters: Vec<DeadLetter> = rejected
            .into_iter()
            .map(|(payload, error)| {
                DeadLettered {
                    endpoint,
                    error: &error,
                }
                .emit();
                let mut identity = origin.as_bytes().to_vec();
                identity.push(b'\n');
                identity.extend_from_slice(&payload);
                DeadLetter {
                    dead_letter_id: content_hash(&identity)[..32].to_owned(),
                    source: "collector".to_owned(),
                    origin: format!("{} {origin}", endpoint.label()),
                    error,
                    payload,
                    topic: None,
                    partition: None,
                    offset: None,
                    occurred_ms,
                }
            })
            .collect();
        self.dlq.send_all(&letters).await?;
        self.dead_letters_sent
            .fetch_add(letters.len() as u64, Ordering::Relaxed);
        RecordsProduced {
            topic: self.dlq.topic(),
            count: letters.len(),
        }
        .emit();
        Ok(())
    }

    /// A page that stayed malformed through every retry goes to the DLQ whole.
    async fn dead_letter_page(&self, error: &CollectError) -> Result<(), CollectError> {
        if let CollectError::Page {
            endpoint,
            url,
            body,
            error,
        } = error
        {
            self.dead_letter(*endpoint, url, vec![(body.clone(), error.to_string())])
                .await?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- markets and events

    /// Every row of a Gamma listing: the keyset endpoint (preferred), or the offset listing
    /// when keyset pagination is unavailable. Open and closed rows both (`closed` defaults
    /// to false upstream).
    async fn gamma_rows(
        &self,
        endpoint: Endpoint,
        path: &str,
        list_key: &str,
    ) -> Result<Vec<Value>, CollectError> {
        let mut rows = Vec::new();
        for closed in ["false", "true"] {
            match self.gamma_keyset(endpoint, path, list_key, closed).await {
                Ok(found) => rows.extend(found),
                Err(CollectError::Status { status, .. })
                    if matches!(status, 404 | 422 | 501 | 503) =>
                {
                    tracing::warn!(
                        path,
                        status,
                        "keyset listing unavailable; using offset pagination"
                    );
                    rows.extend(self.gamma_offset(endpoint, path, closed).await?);
                }
                Err(error) => return Err(error),
            }
        }
        Ok(rows)
    }

    async fn gamma_keyset(
        &self,
        endpoint: Endpoint,
        path: &str,
        list_key: &str,
        closed: &str,
    ) -> Result<Vec<Value>, CollectError> {
        let url = format!("{}{path}/keyset", self.gamma_url);
        let mut rows = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![
                ("limit", KEYSET_LIMIT.to_string()),
                ("closed", closed.to_owned()),
            ];
            if let Some(cursor) = &cursor {
                query.push(("after_cursor", cursor.clone()));
            }
            let (page, next) = self
                .upstream
                .get_page(endpoint, &url, &query, |body| {
                    parse::keyset_page(body, list_key)
                })
                .await?;
            rows.extend(page);
            match next {
                Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                _ => return Ok(rows),
            }
        }
    }

    async fn gamma_offset(
        &self,
        endpoint: Endpoint,
        path: &str,
        closed: &str,
    ) -> Result<Vec<Value>, CollectError> {
        const LIMIT: usize = 500;
        let url = format!("{}{path}", self.gamma_url);
        let mut rows = Vec::new();
        loop {
            let query = [
                ("limit", LIMIT.to_string()),
                ("offset", rows.len().to_string()),
                ("closed", closed.to_owned()),
            ];
            let page = self
                .upstream
                .get_page(endpoint, &url, &query, parse::array_page)
                .await?;
            let short = page.len() < LIMIT;
            rows.extend(page);
            if short {
                return Ok(rows);
            }
        }
    }

    /// The CLOB `/markets` cursor walk (every market ever; cursor `MA==` … `LTE=`).
    async fn clob_markets(&self) -> Result<HashMap<String, parse::ClobMarket>, CollectError> {
        let url = format!("{}/markets", self.clob_url);
        let mut markets = HashMap::new();
        let mut cursor = "MA==".to_owned();
        let mut rejected = Vec::new();
        loop {
            let query = [("next_cursor", cursor.clone())];
            let (rows, next) = self
                .upstream
                .get_page(Endpoint::ClobMarkets, &url, &query, parse::clob_page)
                .await?;
            for row in rows {
                match parse::clob_market(&row) {
                    Ok(market) => {
                        markets.insert(market.condition_id.clone(), market);
                    }
                    Err(error) => rejected.push((row.to_string().into_bytes(), error.to_string())),
                }
            }
            match next {
                Some(next) if next != cursor => cursor = next,
                _ => break,
            }
        }
        self.dead_letter(Endpoint::ClobMarkets, &url, rejected)
            .await?;
        Ok(markets)
    }

    /// Crawls events and markets, emits those whose content changed, and returns every market.
    pub async fn crawl_markets(
        &self,
        emit_markets: bool,
        emit_events: bool,
    ) -> Result<Vec<Market>, CollectError> {
        let now = now_ms();
        let event_rows = self
            .gamma_rows(Endpoint::GammaEvents, "/events", "events")
            .await?;
        let mut events = Vec::new();
        let mut rejected = Vec::new();
        for row in event_rows {
            match parse::gamma_event(&row, now) {
                Ok(event) => events.push(event),
                Err(error) => rejected.push((row.to_string().into_bytes(), error.to_string())),
            }
        }
        let origin = format!("{}/events/keyset", self.gamma_url);
        self.dead_letter(Endpoint::GammaEvents, &origin, rejected)
            .await?;
        // The same event can appear in both the open and the closed walk while it changes.
        let mut unique_events: HashMap<String, Event> = HashMap::new();
        for event in events {
            unique_events.insert(event.event_id.clone(), event);
        }
        let events: Vec<Event> = unique_events.into_values().collect();

        let market_rows = self
            .gamma_rows(Endpoint::GammaMarkets, "/markets", "markets")
            .await?;
        let clob = self.clob_markets().await?;
        let event_index = parse::event_index(&events);
        let mut markets: HashMap<String, Market> = HashMap::new();
        let mut rejected = Vec::new();
        for row in market_rows {
            match parse::gamma_market(&row) {
                Ok(mut market) => {
                    if let Some(clob) = clob.get(&market.condition_id) {
                        parse::merge_clob(&mut market, clob);
                    }
                    if let Some(event_ids) = event_index.get(&market.condition_id) {
                        market.event_ids.extend(event_ids.iter().cloned());
                    }
                    let market = parse::finish_market(market, now);
                    markets.insert(market.condition_id.clone(), market);
                }
                Err(error) => rejected.push((row.to_string().into_bytes(), error.to_string())),
            }
        }
        let origin = format!("{}/markets/keyset", self.gamma_url);
        self.dead_letter(Endpoint::GammaMarkets, &origin, rejected)
            .await?;
        let mut markets: Vec<Market> = markets.into_values().collect();
        markets.sort_by(|left, right| left.condition_id.cmp(&right.condition_id));
        if let Ok(mut ticks) = self.ticks.lock() {
            for market in &markets {
                if let Some(tick) = market.tick_size {
                    ticks.insert(market.condition_id.clone(), tick);
                }
            }
        }

        if emit_events {
            let changed: Vec<Event> = events
                .into_iter()
                .filter(|event| {
                    self.changed(&format!("events/{}", event.event_id), &event.content_hash)
                })
                .collect();
            self.events.send_all(&changed).await?;
            self.events_sent
                .fetch_add(changed.len() as u64, Ordering::Relaxed);
            RecordsProduced {
                topic: self.events.topic(),
                count: changed.len(),
            }
            .emit();
            self.commit_hashes(changed.iter().map(|event| {
                (
                    format!("events/{}", event.event_id),
                    event.content_hash.clone(),
                )
            }))
            .await?;
        }
        if emit_markets {
            let changed: Vec<Market> = markets
                .iter()
                .filter(|market| {
                    self.changed(
                        &format!("markets/{}", market.condition_id),
                        &market.content_hash,
                    )
                })
                .cloned()
                .collect();
            self.markets.send_all(&changed).await?;
            self.markets_sent
                .fetch_add(changed.len() as u64, Ordering::Relaxed);
            RecordsProduced {
                topic: self.markets.topic(),
                count: changed.len(),
            }
            .emit();
            self.commit_hashes(changed.iter().map(|market| {
                (
                    format!("markets/{}", market.condition_id),
                    market.content_hash.clone(),
                )
            }))
            .await?;
        }
        Ok(markets)
    }

    fn changed(&self, key: &str, hash: &str) -> bool {
        self.checkpoints.get::<String>(key).as_deref() != Some(hash)
    }

    async fn commit_hashes(
        &self,
        hashes: impl Iterator<Item = (String, String)>,
    ) -> Result<(), CollectError> {
        let hashes: Vec<(String, String)> = hashes.collect();
        let commits = hashes
            .iter()
            .map(|(key, hash)| self.checkpoints.commit(key, hash));
        futures::future::try_join_all(commits).await?;
        Ok(())
    }

    // ---------------------------------------------------------------------------- trades

    /// One `/trades` request for `[start, end]` (inclusive seconds), makers included.
    async fn trades_page(
        &self,
        condition_id: &str,
        start: i64,
        end: i64,
        offset: u32,
    ) -> Result<Vec<Value>, CollectError> {
        let url = format!("{}/trades", self.data_url);
        let query = [
            ("market", condition_id.to_owned()),
            ("takerOnly", "false".to_owned()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("limit", self.tuning.trades_page_size.to_string()),
            ("offset", offset.to_string()),
        ];
        self.upstream
            .get_page(Endpoint::DataTrades, &url, &query, parse::array_page)
            .await
    }

    /// Parses a page, sends new trades (not in `skip`) and rejected rows, and returns the
    /// trades sent. Returns only after the broker acknowledged both.
    async fn produce_rows(
        &self,
        condition_id: &str,
        rows: &[Value],
        skip: &HashSet<String>,
    ) -> Result<Vec<Trade>, CollectError> {
        let ingested = now_ms();
        let tick = self
            .ticks
            .lock()
            .ok()
            .and_then(|ticks| ticks.get(condition_id).copied());
        let mut trades = Vec::with_capacity(rows.len());
        let mut rejected = Vec::new();
        for row in rows {
            match parse::trade_v1(row, ingested, tick) {
                Ok(trade) if skip.contains(&trade.trade_id) => {}
                Ok(trade) => trades.push(trade),
                Err(error) => rejected.push((row.to_string().into_bytes(), error.to_string())),
            }
        }
        let origin = format!("{}/trades?market={condition_id}", self.data_url);
        self.trades.send_all(&trades).await?;
        self.dead_letter(Endpoint::DataTrades, &origin, rejected)
            .await?;
        self.trades_sent
            .fetch_add(trades.len() as u64, Ordering::Relaxed);
        RecordsProduced {
            topic: self.trades.topic(),
            count: trades.len(),
        }
        .emit();
        self.note_edge(condition_id, &trades);
        Ok(trades)
    }

    fn edges(&self) -> std::sync::MutexGuard<'_, HashMap<String, Edge>> {
        match self.edges.lock() {
            Ok(edges) => edges,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn note_edge(&self, condition_id: &str, trades: &[Trade]) {
        let mut edges = self.edges();
        let edge = edges.entry(condition_id.to_owned()).or_default();
        for trade in trades {
            let second = trade.timestamp_ms.div_euclid(1000);
            if second > edge.second {
                edge.second = second;
                edge.ids.clear();
            }
            if second == edge.second {
                edge.ids.insert(trade.trade_id.clone());
            }
        }
    }

    /// Brings a market's trades coverage to `[from, to]` (seconds). Checkpoints after every
    /// acknowledged page.
    pub async fn collect_trades(
        &self,
        condition_id: &str,
        from: i64,
        to: i64,
    ) -> Result<(), CollectError> {
        let key = format!("trades/{condition_id}");
        let mut checkpoint: TradeCheckpoint = self.checkpoints.get(&key).unwrap_or_default();
        while let Some(walk) = checkpoint.next_walk(from, to) {
            checkpoint.walk = Some(walk);
            self.walk(condition_id, &key, &mut checkpoint).await?;
            checkpoint.finish_walk();
            self.checkpoints.commit(&key, &checkpoint).await?;
        }
        if let Some((_, high)) = checkpoint.covered {
            crate::metrics::checkpoint_lag("trades", (now_ms() / 1000 - high).max(0) as f64);
        }
        Ok(())
    }

    /// Walks `checkpoint.walk` newest-first. Each request asks for `[from, upper]` at offset 0
    /// and the next `upper` is the oldest second of the page, so no window ever needs the
    /// 10,000-offset cap; a second holding more than a page is read with offsets.
    async fn walk(
        &self,
        condition_id: &str,
        key: &str,
        checkpoint: &mut TradeCheckpoint,
    ) -> Result<(), CollectError> {
        let page_size = self.tuning.trades_page_size.clamp(1, OFFSET_CAP);
        // Fills at the covered edge second were sent by an earlier walk in this process.
        let mut skip: HashSet<String> = {
            let edges = self.edges();
            match (edges.get(condition_id), checkpoint.walk) {
                (Some(edge), Some(walk))
                    if edge.second >= walk.from && edge.second <= walk.upper =>
                {
                    edge.ids.clone()
                }
                _ => HashSet::new(),
            }
        };
        loop {
            let Some(walk) = checkpoint.walk else {
                return Ok(());
            };
            if walk.upper < walk.from {
                return Ok(());
            }
            let rows = self
                .trades_page(condition_id, walk.from, walk.upper, 0)
                .await?;
            let full = rows.len() >= page_size as usize;
            let oldest = rows.iter().filter_map(parse::row_timestamp_s).min();
            let sent = self.produce_rows(condition_id, &rows, &skip).await?;
            if !full {
                return Ok(());
            }
            let next_upper = match oldest {
                Some(oldest) if oldest < walk.upper => {
                    skip = sent
                        .iter()
                        .filter(|trade| trade.timestamp_ms.div_euclid(1000) == oldest)
                        .map(|trade| trade.trade_id.clone())
                        .collect();
                    // Rows at `oldest` already skipped in this request stay skipped.
                    oldest
                }
                _ => {
                    // A whole page within one second: read that second with offsets.
                    self.drain_second(condition_id, walk.upper, page_size, &skip)
                        .await?;
                    skip.clear();
                    walk.upper - 1
                }
            };
            checkpoint.walk = Some(crate::checkpoint::Walk {
                upper: next_upper,
                ..walk
            });
            self.checkpoints.commit(key, &*checkpoint).await?;
        }
    }

    async fn drain_second(
        &self,
        condition_id: &str,
        second: i64,
        page_size: u32,
        skip: &HashSet<String>,
    ) -> Result<(), CollectError> {
        let mut offset = page_size;
        while offset + page_size <= OFFSET_CAP {
            let rows = self
                .trades_page(condition_id, second, second, offset)
                .await?;
            self.produce_rows(condition_id, &rows, skip).await?;
            if rows.len() < page_size as usize {
                return Ok(());
            }
            offset += page_size;
        }
        tracing::error!(
            condition_id,
            second,
            "more fills in one second than the offset cap allows; the rest of that second is unreachable upstream"
        );
        Ok(())
    }

    // ---------------------------------------------------------------------- price history

    /// Points of each token's `/prices-history` newer than its checkpoint.
    pub async fn collect_prices(
        &self,
        token_id: &str,
        from: i64,
        to: i64,
    ) -> Result<(), CollectError> {
        let key = format!("prices/{token_id}");
        let last: Option<i64> = self.checkpoints.get(&key);
        let start = last.map_or(from, |last| last + 1);
        if start > to {
            return Ok(());
        }
        let fidelity = self.tuning.price_history_fidelity.max(1);
        let url = format!("{}/prices-history", self.clob_url);
        let query = [
            ("market", token_id.to_owned()),
            ("startTs", start.to_string()),
            ("endTs", to.to_string()),
            ("fidelity", fidelity.to_string()),
        ];
        let rows = self
            .upstream
            .get_page(Endpoint::ClobPricesHistory, &url, &query, |body| {
                let value: Value = serde_json::from_slice(body)
                    .map_err(|error| parse::PageError(format!("body is not JSON: {error}")))?;
                match value.get("history") {
                    Some(Value::Array(rows)) => Ok(rows.clone()),
                    _ => Err(parse::PageError("no \"history\" array".to_owned())),
                }
            })
            .await?;
        let fetched = now_ms();
        let mut points = Vec::new();
        let mut rejected = Vec::new();
        for row in &rows {
            match parse::price_point(
                row,
                token_id,
                i32::try_from(fidelity).unwrap_or(i32::MAX),
                fetched,
            ) {
                Ok(point) => points.push(point),
                Err(error) => rejected.push((row.to_string().into_bytes(), error.to_string())),
            }
        }
        self.prices.send_all(&points).await?;
        self.dead_letter(Endpoint::ClobPricesHistory, &url, rejected)
            .await?;
        self.prices_sent
            .fetch_add(points.len() as u64, Ordering::Relaxed);
        RecordsProduced {
            topic: self.prices.topic(),
            count: points.len(),
        }
        .emit();
        // Only points up to the last one seen are final: later ones may still be added.
        if let Some(newest) = points.iter().map(|point| point.timestamp_ms / 1000).max() {
            self.checkpoints.commit(&key, &newest).await?;
        }
        Ok(())
    }

    // ----------------------------------------------------------------------------- rounds

    /// One round over the selected markets; returns how many completed.
    async fn trades_round(
        &self,
        condition_ids: &[String],
        from: i64,
        to: i64,
    ) -> Result<usize, CollectError> {
        let total = condition_ids.len();
        let done = AtomicUsize::new(0);
        let complete = AtomicUsize::new(0);
        let started = Instant::now();
        let fatal: Mutex<Option<CollectError>> = Mutex::new(None);
        let records_at_start = self.trades_sent.load(Ordering::Relaxed);
        futures::stream::iter(condition_ids.to_vec())
            .for_each_concurrent(self.tuning.concurrency.max(1), |condition_id| {
                let done = &done;
                let complete = &complete;
                let fatal = &fatal;
                async move {
                    if self.stop.is_cancelled() {
                        return;
                    }
                    match self.collect_trades(&condition_id, from, to).await {
                        Ok(()) => {
                            complete.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(CollectError::Cancelled) => {}
                        Err(error) if error.is_retryable() => {
                            if let Err(error) = self.dead_letter_page(&error).await {
                                tracing::warn!(error = %error, "cannot write a dead letter");
                            }
                            tracing::warn!(condition_id = %condition_id, error = %error, "trades of this market incomplete; retried next round");
                        }
                        Err(error) => {
                            tracing::error!(condition_id = %condition_id, error = %error, "trades collection failed");
                            if let Ok(mut fatal) = fatal.lock() {
                                fatal.get_or_insert(error);
                            }
                        }
                    }
                    let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                    crate::metrics::backfill_progress(finished, total);
                    if finished.is_multiple_of(20) || finished == total {
                        let elapsed = started.elapsed().as_secs_f64().max(0.001);
                        let records = self.trades_sent.load(Ordering::Relaxed) - records_at_start;
                        let eta = elapsed / finished as f64 * (total - finished) as f64;
                        tracing::info!(
                            markets_done = finished,
                            markets_total = total,
                            records,
                            records_per_second = (records as f64 / elapsed).round(),
                            eta_seconds = eta.round(),
                            "trades progress"
                        );
                    }
                }
            })
            .await;
        if let Some(error) = fatal.lock().ok().and_then(|mut fatal| fatal.take()) {
            return Err(error);
        }
        if self.stop.is_cancelled() {
            return Err(CollectError::Cancelled);
        }
        Ok(complete.into_inner())
    }

    fn select(&self, markets: &[Market], options: &Options) -> Vec<Market> {
        let wanted: HashSet<String> = options
            .markets
            .iter()
            .map(|id| id.trim().to_ascii_lowercase())
            .collect();
        let mut selected: Vec<Market> = markets
            .iter()
            .filter(|market| wanted.is_empty() || wanted.contains(&market.condition_id))
            .cloned()
            .collect();
        if let Some(limit) = options.limit {
            selected.truncate(limit);
        }
        // Busiest first (volume as the proxy): a long market walk started last would leave
        // the budget idle while it finishes alone.
        selected.sort_by(|left, right| {
            right
                .volume
                .unwrap_or_default()
                .cmp(&left.volume.unwrap_or_default())
                .then_with(|| left.condition_id.cmp(&right.condition_id))
        });
        selected
    }

    async fn prices_round(
        &self,
        markets: &[Market],
        from: i64,
        to: i64,
    ) -> Result<(), CollectError> {
        let tokens: Vec<String> = markets
            .iter()
            .flat_map(|market| market.tokens.iter().map(|token| token.token_id.clone()))
            .collect();
        let results: Vec<Result<(), CollectError>> = futures::stream::iter(tokens)
            .map(|token| async move { self.collect_prices(&token, from, to).await })
            .buffer_unordered(self.tuning.concurrency.max(1))
            .collect()
            .await;
        for result in results {
            match result {
                Ok(()) => {}
                Err(CollectError::Cancelled) => return Err(CollectError::Cancelled),
                Err(error) if error.is_retryable() => {
                    self.dead_letter_page(&error).await?;
                    tracing::warn!(error = %error, "price history incomplete; retried next round");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Runs `options.mode` until done (backfill) or stopped (run, poll).
    pub async fn run(self: Arc<Self>, options: Options) -> Result<Summary, CollectError> {
        let emit_markets = options.datasets.contains(&Dataset::Markets);
        let emit_events = options.datasets.contains(&Dataset::Events);
        let trades = options.datasets.contains(&Dataset::Trades);
        let prices = options.datasets.contains(&Dataset::PriceHistory);
        let started_s =
            now_ms() / 1000 - i64::try_from(self.tuning.poll_lag.as_secs()).unwrap_or(0);
        match options.mode {
            Mode::Backfill { from_s, to_s } => {
                let markets = self.crawl_markets(emit_markets, emit_events).await?;
                let selected = self.select(&markets, &options);
                let ids: Vec<String> = selected
                    .iter()
                    .map(|market| market.condition_id.clone())
                    .collect();
                tracing::info!(markets = ids.len(), from_s, to_s, "backfill started");
                let mut complete = 0;
                if trades {
                    for round in 0..BACKFILL_ROUNDS {
                        complete = self.trades_round(&ids, from_s, to_s).await?;
                        if complete == ids.len() {
                            break;
                        }
                        let wait = Duration::from_secs(2u64.pow(round.min(5)));
                        tracing::warn!(
                            complete,
                            total = ids.len(),
                            wait_s = wait.as_secs(),
                            "some markets incomplete; another round"
                        );
                        tokio::select! {
                            () = self.stop.cancelled() => return Err(CollectError::Cancelled),
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                    if complete < ids.len() {
                        return Err(CollectError::Checkpoint(format!(
                            "{} of {} markets still incomplete after {BACKFILL_ROUNDS} rounds; rerun to resume",
                            ids.len() - complete,
                            ids.len()
                        )));
                    }
                }
                if prices {
                    self.prices_round(&selected, from_s, to_s).await?;
                }
                let summary = self.summary(ids.len(), complete);
                tracing::info!(?summary, "backfill complete");
                Ok(summary)
            }
            Mode::Run | Mode::Poll => {
                let retention = i64::try_from(self.tuning.retention.as_secs()).unwrap_or(i64::MAX);
                let lag = i64::try_from(self.tuning.poll_lag.as_secs()).unwrap_or(0);
                loop {
                    let now_s = now_ms() / 1000 - lag;
                    let from = if options.mode == Mode::Run {
                        now_s.saturating_sub(retention)
                    } else {
                        started_s
                    };
                    let round = async {
                        let markets = self.crawl_markets(emit_markets, emit_events).await?;
                        let selected = self.select(&markets, &options);
                        if trades {
                            let ids: Vec<String> = selected
                                .iter()
                                .map(|market| market.condition_id.clone())
                                .collect();
                            self.trades_round(&ids, from, now_s).await?;
                        }
                        if prices {
                            self.prices_round(&selected, from, now_s).await?;
                        }
                        Ok::<(), CollectError>(())
                    };
                    match round.await {
                        Ok(()) => {}
                        Err(CollectError::Cancelled) => return Ok(self.summary(0, 0)),
                        Err(error) if error.is_retryable() => {
                            tracing::warn!(error = %error, "polling round failed; next round retries");
                        }
                        Err(error) => return Err(error),
                    }
                    tokio::select! {
                        () = self.stop.cancelled() => return Ok(self.summary(0, 0)),
                        () = tokio::time::sleep(self.tuning.poll_interval) => {}
                    }
                }
            }
        }
    }
}
