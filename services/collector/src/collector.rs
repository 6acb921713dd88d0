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
    BookSnapshot, Continuity, DeadLetter, Event, LeaderboardEntry, Market, PricePoint, TopicNames,
    Trade, now_ms,
};
use polytape_runtime::metrics::InternalEvent as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{
    CollectorConfig,
    budget::{Budgets, Endpoint},
    checkpoint::{Checkpoints, TradeCheckpoint},
    error::CollectError,
    gaps::{self, GapCause},
    http::{RetryPolicy, Upstream},
    leaderboard::ListTally,
    metrics::{DeadLettered, GapDeclared, LateFillsFound, LeaderboardListRead, RecordsProduced},
    options::{Dataset, Mode, Options},
    parse::{self, TradeRead},
    reconcile::{Ledger, Verdict},
    tape::TapeWalk,
};

/// Fills a trades walk holds before sending them in time order (~100 MB at most).
const MAX_BUFFERED_TRADES: usize = 200_000;
/// A gap declared again (same id: a walk still failing next round) is published again only
/// once its end moved this much (5 min): at most a dozen records an hour per failing market.
const REDECLARE_AFTER_MS: i64 = 300_000;
/// Fingerprints of sent fills the reconciliation ledger holds at most (8 bytes each in a hash
/// set, ~20–40 MB); past it the ledger's horizon shortens (see `reconcile`).
const MAX_LEDGER_FILLS: usize = 2_000_000;
/// Caught-up markets polled together in one `market=a,b,…` walk (upstream takes a csv; 50
/// condition ids keep the URL near 3.4 kB).
const POLL_MARKETS_PER_REQUEST: usize = 50;
/// A market covered to within this of the round's end is polled with others; one further
/// behind (a long outage) walks alone, with checkpoints after every page.
const POLL_CATCH_UP_S: i64 = 3_600;
/// Gamma keyset pages hold at most 100 rows.
const KEYSET_LIMIT: u32 = 100;
/// Backfill rounds (retrying markets that failed) before giving up.
const BACKFILL_ROUNDS: u32 = 6;
/// `/v1/leaderboard` lists: every period and category the brief lists, by PnL and by volume.
const LEADERBOARD_PERIODS: [&str; 4] = ["DAY", "WEEK", "MONTH", "ALL"];
const LEADERBOARD_CATEGORIES: [&str; 10] = [
    "OVERALL",
    "POLITICS",
    "SPORTS",
    "CRYPTO",
    "CULTURE",
    "MENTIONS",
    "WEATHER",
    "ECONOMICS",
    "TECH",
    "FINANCE",
];
const LEADERBOARD_ORDERS: [&str; 2] = ["PNL", "VOL"];
/// Upstream serves `limit` 1..50 and `offset` 0..1000.
const LEADERBOARD_PAGE: u32 = 50;
const LEADERBOARD_MAX_OFFSET: u32 = 1_000;
/// Checkpoint key of the last complete leaderboard snapshot (its `snapshot_ms`).
const LEADERBOARD_CHECKPOINT: &str = "leaderboard";

/// What a finished run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub markets: usize,
    pub markets_complete: usize,
    pub trades: u64,
    pub markets_emitted: u64,
    pub events_emitted: u64,
    pub price_points: u64,
    pub book_snapshots: u64,
    pub leaderboard_entries: u64,
    pub dead_letters: u64,
    /// Fills found by reconciliation in time already covered, and published.
    pub late_fills: u64,
    /// Continuity records (upstream gaps) declared.
    pub gaps_declared: u64,
}

/// A market's coverage at the start of a multi-market walk (a poll, or a deep
/// reconciliation pass), and what the walk does with its fills.
#[derive(Debug)]
struct Boundary {
    low: i64,
    high: i64,
    /// The market's fills from here on are this walk's business: up to `high` they are
    /// re-read and judged against the ledger (reconciliation), above it (`forward` only) they
    /// are new.
    read_from: i64,
    /// Poll forward (send the fills newer than `high`, re-read the edge second), or only
    /// reconcile `[read_from, high)` (the deep pass; the edge second is the next poll's).
    forward: bool,
    /// Fills sent at `high` by this process (the edge), not sent again.
    sent_at_high: HashSet<String>,
}

/// What a multi-market walk sends for one market: new fills, late ones (a subset, with their
/// lateness in seconds) and refused rows.
#[derive(Debug, Default)]
struct Outgoing {
    trades: Vec<Trade>,
    late: Vec<(Trade, f64)>,
    rejected: Vec<(Vec<u8>, String)>,
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
    books: RecordProducer<BookSnapshot>,
    leaderboard: RecordProducer<LeaderboardEntry>,
    dlq: RecordProducer<DeadLetter>,
    continuity: RecordProducer<Continuity>,
    checkpoints: Checkpoints,
    /// Per market, the fills sent at its newest second; only kept while that second is the
    /// market's covered edge (see `trim_edge`), for the markets being collected.
    edges: Mutex<HashMap<String, Edge>>,
    /// Fingerprints of the fills sent over the reconciliation horizon (see `reconcile`).
    ledger: Mutex<Ledger>,
    /// Tick size per condition id, from the last markets crawl (for dust fills' prices);
    /// replaced by every crawl.
    ticks: Mutex<HashMap<String, rust_decimal::Decimal>>,
    /// Token ids per condition id, from the last markets crawl (for continuity records);
    /// replaced by every crawl.
    market_tokens: Mutex<HashMap<String, Vec<String>>>,
    /// Gaps declared by this process (id → (start s, end ms)): re-reading a dense second
    /// (every round while it is in the trailing window) does not publish it again, and a walk
    /// failing round after round is re-published only every `REDECLARE_AFTER_MS` of end.
    /// Entries leave with the reconciliation horizon.
    declared: Mutex<HashMap<String, (i64, Option<i64>)>>,
    /// (timestamp, hash) of the last REST snapshot sent per token: an unchanged book is not
    /// sent again (the WS bridge and the previous snapshot already describe it). Only the
    /// tokens of the latest snapshot are kept.
    last_books: Mutex<HashMap<String, (i64, Option<String>)>>,
    /// Open tokens of the selected markets, from the latest crawl (for the snapshot loop).
    book_tokens: Mutex<Vec<String>>,
    stop: CancellationToken,
    trades_sent: AtomicU64,
    markets_sent: AtomicU64,
    events_sent: AtomicU64,
    prices_sent: AtomicU64,
    books_sent: AtomicU64,
    leaderboard_sent: AtomicU64,
    dead_letters_sent: AtomicU64,
    late_sent: AtomicU64,
    gaps_declared: AtomicU64,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Collector").finish_non_exhaustive()
    }
}

fn base(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

/// A mutex's guard, poisoned or not (the maps stay usable after a panic elsewhere).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn second_of(trade: &Trade) -> i64 {
    trade.timestamp_ms.div_euclid(1000)
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
        let horizon_s = i64::try_from(tuning.reconcile_horizon.as_secs()).unwrap_or(i64::MAX);
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
            books: RecordProducer::register(producer.clone(), &registry, &names).await?,
            leaderboard: RecordProducer::register(producer.clone(), &registry, &names).await?,
            dlq: RecordProducer::register(producer.clone(), &registry, &names).await?,
            continuity: RecordProducer::register(producer.clone(), &registry, &names).await?,
            checkpoints: Checkpoints::open(
                &config.kafka.kafka_brokers,
                &config.kafka.topic_prefix,
                producer,
                fresh,
            )
            .await?,
            tuning,
            edges: Mutex::new(HashMap::new()),
            ledger: Mutex::new(Ledger::new(horizon_s, MAX_LEDGER_FILLS)),
            ticks: Mutex::new(HashMap::new()),
            market_tokens: Mutex::new(HashMap::new()),
            declared: Mutex::new(HashMap::new()),
            last_books: Mutex::new(HashMap::new()),
            book_tokens: Mutex::new(Vec::new()),
            stop,
            trades_sent: AtomicU64::new(0),
            markets_sent: AtomicU64::new(0),
            events_sent: AtomicU64::new(0),
            prices_sent: AtomicU64::new(0),
            books_sent: AtomicU64::new(0),
            leaderboard_sent: AtomicU64::new(0),
            dead_letters_sent: AtomicU64::new(0),
            late_sent: AtomicU64::new(0),
            gaps_declared: AtomicU64::new(0),
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
            book_snapshots: self.books_sent.load(Ordering::Relaxed),
            leaderboard_entries: self.leaderboard_sent.load(Ordering::Relaxed),
            dead_letters: self.dead_letters_sent.load(Ordering::Relaxed),
            late_fills: self.late_sent.load(Ordering::Relaxed),
            gaps_declared: self.gaps_declared.load(Ordering::Relaxed),
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
                DeadLetter::from_upstream(
                    "collector",
                    format!("{} {origin}", endpoint.label()),
                    error,
                    payload,
                    occurred_ms,
                )
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
        // Replaced, not merged: the maps hold what the latest crawl listed and nothing older.
        let ticks: HashMap<String, rust_decimal::Decimal> = markets
            .iter()
            .filter_map(|market| Some((market.condition_id.clone(), market.tick_size?)))
            .collect();
        *lock(&self.ticks) = ticks;
        let tokens: HashMap<String, Vec<String>> = markets
            .iter()
            .map(|market| {
                let tokens = market
                    .tokens
                    .iter()
                    .map(|token| token.token_id.clone())
                    .collect();
                (market.condition_id.clone(), tokens)
            })
            .collect();
        *lock(&self.market_tokens) = tokens;

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

    /// Validates one `/trades` read requested for `window` (inclusive seconds): fills with
    /// their final ids, and refused rows with their reasons (see `parse::trade_read`).
    fn read_trades(&self, rows: &[Value], window: (i64, i64)) -> parse::TradeRead {
        let ticks = self.ticks.lock().ok();
        parse::trade_read(rows, window, now_ms(), |condition_id| {
            ticks
                .as_ref()
                .and_then(|ticks| ticks.get(condition_id).copied())
        })
    }

    /// Sends a read's fills not in `skip` and its refused rows; see [`Self::send_trades`].
    async fn send_read(
        &self,
        condition_id: &str,
        read: TradeRead,
        skip: &HashSet<String>,
    ) -> Result<Vec<Trade>, CollectError> {
        let rejected = TradeRead::dead_letters(read.refused);
        self.send_trades(condition_id, read.trades, rejected, skip)
            .await
    }

    /// Sends trades not in `skip` (each id once) in ascending event-time order — ties by trade
    /// id, the candle builder's total order — so downstream sees each market's fills in time
    /// order, and the rejected rows to the DLQ. Returns the trades sent, after the broker
    /// acknowledged them.
    async fn send_trades(
        &self,
        condition_id: &str,
        mut trades: Vec<Trade>,
        rejected: Vec<(Vec<u8>, String)>,
        skip: &HashSet<String>,
    ) -> Result<Vec<Trade>, CollectError> {
        let mut seen: HashSet<String> = HashSet::with_capacity(trades.len());
        trades
            .retain(|trade| !skip.contains(&trade.trade_id) && seen.insert(trade.trade_id.clone()));
        trades.sort_by(|left, right| {
            (left.timestamp_ms, &left.trade_id).cmp(&(right.timestamp_ms, &right.trade_id))
        });
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
        {
            let mut ledger = lock(&self.ledger);
            for trade in &trades {
                ledger.record(&trade.condition_id, second_of(trade), &trade.trade_id);
            }
        }
        Ok(trades)
    }

    fn edges(&self) -> std::sync::MutexGuard<'_, HashMap<String, Edge>> {
        lock(&self.edges)
    }

    /// Drops a market's edge once its coverage moved past it: the ids sent at a second are
    /// only needed while that second is the covered edge the next walk re-reads.
    fn trim_edge(&self, condition_id: &str, high: i64) {
        let mut edges = self.edges();
        if edges
            .get(condition_id)
            .is_some_and(|edge| edge.second < high)
        {
            edges.remove(condition_id);
        }
    }

    /// Publishes an upstream gap of one market over `[start_s, end_s]` to the continuity
    /// topic (see `gaps`).
    async fn declare_gap(
        &self,
        cause: GapCause,
        condition_id: &str,
        span: (i64, i64),
        detail: &str,
    ) -> Result<(), CollectError> {
        let tokens = lock(&self.market_tokens)
            .get(condition_id)
            .cloned()
            .unwrap_or_default();
        let record = gaps::upstream_gap(cause, condition_id, tokens, span, now_ms(), detail);
        // Declared already with this end, or (a walk failing round after round) with an end
        // less than `REDECLARE_AFTER_MS` older: not published again.
        let end_ms = record.gap_end_ms.unwrap_or(record.gap_start_ms);
        if let Some((_, Some(declared_end))) = lock(&self.declared).get(&record.continuity_id)
            && end_ms < declared_end.saturating_add(REDECLARE_AFTER_MS)
        {
            return Ok(());
        }
        self.continuity.send(&record).await?;
        lock(&self.declared).insert(record.continuity_id.clone(), (span.0, Some(end_ms)));
        self.gaps_declared.fetch_add(1, Ordering::Relaxed);
        RecordsProduced {
            topic: self.continuity.topic(),
            count: 1,
        }
        .emit();
        GapDeclared {
            reason: cause.label(),
            condition_id,
            gap_start_ms: record.gap_start_ms,
            gap_end_ms: record.gap_end_ms.unwrap_or(record.gap_start_ms),
            detail,
        }
        .emit();
        Ok(())
    }

    /// Declares the seconds a single-market walk could not read completely.
    async fn declare_dense_seconds(
        &self,
        condition_id: &str,
        seconds: &[i64],
    ) -> Result<(), CollectError> {
        for second in seconds {
            self.declare_gap(
                GapCause::DenseSecond,
                condition_id,
                (*second, *second),
                "more fills in one second than the Data API's 10,000-offset cap returns",
            )
            .await?;
        }
        Ok(())
    }

    fn note_edge(&self, condition_id: &str, trades: &[Trade]) {
        if trades.is_empty() {
            return;
        }
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

    /// Brings a market's trades coverage to `[from, to]` (seconds). Walks that extend the
    /// coverage forward (the first one, and every later one) send their fills in ascending time
    /// order and checkpoint once acknowledged; a walk reaching further back than the coverage
    /// (a `backfill --from` older than what is stored) streams newest-first with a checkpoint
    /// per page.
    pub async fn collect_trades(
        &self,
        condition_id: &str,
        from: i64,
        to: i64,
    ) -> Result<(), CollectError> {
        let key = format!("trades/{condition_id}");
        self.register_markets(std::slice::from_ref(&condition_id.to_owned()));
        let mut checkpoint: TradeCheckpoint = self.checkpoints.get(&key).unwrap_or_default();
        while let Some(walk) = checkpoint.next_walk(from, to) {
            checkpoint.walk = Some(walk);
            let extends_backwards = checkpoint
                .covered
                .is_some_and(|(low, _)| walk.to <= low && walk.from < low);
            if extends_backwards {
                self.walk(condition_id, &key, &mut checkpoint).await?;
            } else {
                self.walk_in_time_order(condition_id, &key, &mut checkpoint)
                    .await?;
            }
            checkpoint.finish_walk();
            self.checkpoints.commit(&key, &checkpoint).await?;
        }
        if let Some((_, high)) = checkpoint.covered {
            crate::metrics::checkpoint_lag("trades", (now_ms() / 1000 - high).max(0) as f64);
            self.trim_edge(condition_id, high);
        }
        Ok(())
    }

    /// Tells the reconciliation ledger about markets it has not seen in this process, with
    /// what an earlier process may have sent of them (their checkpoint).
    fn register_markets(&self, condition_ids: &[String]) {
        let mut ledger = lock(&self.ledger);
        for condition_id in condition_ids {
            if ledger.is_registered(condition_id) {
                continue;
            }
            let checkpoint: TradeCheckpoint = self
                .checkpoints
                .get(&format!("trades/{condition_id}"))
                .unwrap_or_default();
            let sent_up_to = checkpoint
                .covered
                .map(|(_, high)| high)
                .max(checkpoint.walk.map(|walk| walk.to));
            ledger.register(condition_id, sent_up_to);
        }
    }

    /// Walks `checkpoint.walk` like [`Self::walk`] but keeps the fills until the walk is
    /// complete, then sends them oldest first: the candle builder judges lateness per token by
    /// event time, so a market's history must not arrive newest-first. Memory is bounded: a
    /// walk that buffers more than `MAX_BUFFERED_TRADES` fills is narrowed to what is older than
    /// the oldest second it reached (those newer fills are fetched again by the next walk), so
    /// a dense market is filled in several ascending walks. The fills go out in chunks of at
    /// most an hour of event time, each checkpointed once acknowledged (see
    /// [`crate::send_chunks`]): a crash re-sends at most one chunk, with the same ids.
    async fn walk_in_time_order(
        &self,
        condition_id: &str,
        key: &str,
        checkpoint: &mut TradeCheckpoint,
    ) -> Result<(), CollectError> {
        let Some(initial) = checkpoint.walk else {
            return Ok(());
        };
        // Fills at the covered edge second were sent by an earlier walk in this process.
        let edge_ids: HashSet<String> = {
            let edges = self.edges();
            match edges.get(condition_id) {
                Some(edge) if edge.second >= initial.from && edge.second <= initial.upper => {
                    edge.ids.clone()
                }
                _ => HashSet::new(),
            }
        };
        let mut tape = TapeWalk::new(
            condition_id,
            initial.from,
            initial.upper,
            self.tuning.trades_page_size,
        );
        // Pages share their boundary second: a fill read twice is sent once (`send_trades`
        // keeps one fill per id, and its occurrence ids are the same in both reads).
        let mut trades: Vec<Trade> = Vec::new();
        let mut refused: Vec<parse::Refused> = Vec::new();
        while let Some(upper) = tape.upper() {
            let page = self
                .trades_page(condition_id, initial.from, upper, 0)
                .await?;
            let read = tape
                .read(
                    page,
                    |rows: &[Value], window| self.read_trades(rows, window),
                    |second, offset| self.trades_page(condition_id, second, second, offset),
                )
                .await?;
            trades.extend(read.trades);
            refused.extend(read.refused);
            if let Some(upper) = tape.upper()
                && trades.len() > MAX_BUFFERED_TRADES
                && upper > initial.from
            {
                // Too dense for one walk: fill `[from, upper]` first (its fills are all older
                // than what was buffered), then the next walk takes the newer part.
                tracing::debug!(
                    condition_id,
                    buffered = trades.len(),
                    narrowed_to = upper,
                    "trades walk narrowed to keep memory bounded"
                );
                trades.clear();
                let origin = format!("{}/trades?market={condition_id}", self.data_url);
                self.dead_letter(
                    Endpoint::DataTrades,
                    &origin,
                    TradeRead::dead_letters(std::mem::take(&mut refused)),
                )
                .await?;
                checkpoint.walk = Some(crate::checkpoint::Walk {
                    from: initial.from,
                    to: upper,
                    upper,
                });
                return Box::pin(self.walk_in_time_order(condition_id, key, checkpoint)).await;
            }
        }
        let mut seen: HashSet<String> = HashSet::with_capacity(trades.len());
        trades.retain(|trade| {
            !edge_ids.contains(&trade.trade_id) && seen.insert(trade.trade_id.clone())
        });
        trades.sort_by(|left, right| {
            (left.timestamp_ms, &left.trade_id).cmp(&(right.timestamp_ms, &right.trade_id))
        });
        // The seconds the walk could not read completely are declared before any chunk is
        // checkpointed past them (the declaration is idempotent: a repeat after a crash
        // carries the same continuity id).
        self.declare_dense_seconds(condition_id, tape.truncated())
            .await?;
        let mut rejected = TradeRead::dead_letters(refused);
        let chunks = crate::send_chunks::oldest_first_chunks(&trades);
        for (number, chunk) in chunks.iter().enumerate() {
            self.send_trades(
                condition_id,
                trades[chunk.clone()].to_vec(),
                std::mem::take(&mut rejected),
                &HashSet::new(),
            )
            .await?;
            // Every fill before the next chunk's first second is acknowledged, and the walk
            // read that stretch completely: the coverage moves to the second just before it
            // (holding no fill), so a crash re-sends the next chunk alone — never this chunk's
            // last second, which may lie far behind the next chunk after a quiet spell.
            let Some(next_chunk) = chunks.get(number + 1) else {
                break;
            };
            let boundary = trades[next_chunk.start].timestamp_ms.div_euclid(1_000) - 1;
            if boundary <= initial.from {
                continue;
            }
            checkpoint.walk = Some(crate::checkpoint::Walk {
                from: initial.from,
                to: boundary,
                upper: boundary,
            });
            checkpoint.finish_walk();
            checkpoint.walk = Some(crate::checkpoint::Walk {
                from: boundary,
                to: initial.to,
                upper: initial.upper,
            });
            self.checkpoints.commit(key, checkpoint).await?;
        }
        if !rejected.is_empty() {
            self.dead_letter(
                Endpoint::DataTrades,
                &format!("{}/trades?market={condition_id}", self.data_url),
                rejected,
            )
            .await?;
        }
        Ok(())
    }

    /// Walks `checkpoint.walk` newest-first (see [`TapeWalk`]: each request asks for
    /// `[from, upper]` at offset 0 and the next `upper` is the oldest second of the page's valid
    /// fills, so no window ever needs the 10,000-offset cap; a second holding more than a page
    /// is read with offsets), sending and checkpointing page by page.
    async fn walk(
        &self,
        condition_id: &str,
        key: &str,
        checkpoint: &mut TradeCheckpoint,
    ) -> Result<(), CollectError> {
        let Some(initial) = checkpoint.walk else {
            return Ok(());
        };
        // Fills at the covered edge second were sent by an earlier walk in this process; they
        // stay skipped for the whole walk (the edge second can be re-read by several pages).
        let edge_ids: HashSet<String> = {
            let edges = self.edges();
            match edges.get(condition_id) {
                Some(edge) if edge.second >= initial.from && edge.second <= initial.upper => {
                    edge.ids.clone()
                }
                _ => HashSet::new(),
            }
        };
        let mut skip = edge_ids.clone();
        let mut tape = TapeWalk::new(
            condition_id,
            initial.from,
            initial.upper,
            self.tuning.trades_page_size,
        );
        // The next page, fetched while the previous one was being produced.
        let mut prefetched: Option<Vec<Value>> = None;
        while let Some(upper) = tape.upper() {
            let page = match prefetched.take() {
                Some(rows) => rows,
                None => {
                    self.trades_page(condition_id, initial.from, upper, 0)
                        .await?
                }
            };
            let read = tape
                .read(
                    page,
                    |rows: &[Value], window| self.read_trades(rows, window),
                    |second, offset| self.trades_page(condition_id, second, second, offset),
                )
                .await?;
            let Some(next_upper) = tape.upper() else {
                // The last page; the caller records the walk as complete.
                self.send_read(condition_id, read, &skip).await?;
                self.declare_dense_seconds(condition_id, tape.truncated())
                    .await?;
                return Ok(());
            };
            // The next request depends only on where this read left the walk, so it is
            // fetched while this read is produced and checkpointed: a long walk (one market
            // alone at the end of a round) waits on one of the two, not their sum. Produce
            // order is unchanged: the next page is sent after.
            let next = TradeCheckpoint {
                walk: Some(crate::checkpoint::Walk {
                    upper: next_upper,
                    ..initial
                }),
                ..*checkpoint
            };
            let send_and_commit = async {
                let sent = self.send_read(condition_id, read, &skip).await?;
                self.checkpoints.commit(key, &next).await?;
                Ok::<Vec<Trade>, CollectError>(sent)
            };
            let (sent, next_rows) = tokio::join!(
                send_and_commit,
                self.trades_page(condition_id, initial.from, next_upper, 0)
            );
            let sent = sent?;
            *checkpoint = next;
            // Fills at `next_upper` sent now are on the next page too.
            skip = sent
                .iter()
                .filter(|trade| trade.timestamp_ms.div_euclid(1000) == next_upper)
                .map(|trade| trade.trade_id.clone())
                .chain(edge_ids.iter().cloned())
                .collect();
            prefetched = Some(next_rows?);
        }
        Ok(())
    }

    // -------------------------------------------------------------- incremental polling

    /// Whether a market only needs polling forward: covered from `from` (or earlier) up to
    /// within `POLL_CATCH_UP_S` of `to`, with no walk in progress.
    fn caught_up(&self, condition_id: &str, from: i64, to: i64) -> bool {
        let checkpoint: TradeCheckpoint = self
            .checkpoints
            .get(&format!("trades/{condition_id}"))
            .unwrap_or_default();
        match (checkpoint.walk, checkpoint.covered) {
            (None, Some((low, high))) => low <= from && high < to && to - high <= POLL_CATCH_UP_S,
            _ => false,
        }
    }

    /// Polls caught-up markets together: one time walk over `[lower, to]` with
    /// `market=<id>,<id>,…`, so a round costs one request per chunk (plus one per `page_size`
    /// fills read) instead of one per market. `lower` is the lowest covered edge, or lower by
    /// `reconcile_window`: the same requests re-read the trailing window of covered time for
    /// fills upstream indexed after an earlier poll passed them (see `reconcile`). A fill newer
    /// than its market's coverage (`> high`, or `= high` and not among the fills sent at that
    /// second) is sent; one inside the coverage only if the ledger does not know it (late).
    /// Every market's coverage moves to `to` only after the whole walk was acknowledged; a
    /// crash mid-walk re-sends at most this walk's fills, with the same ids. A walk buffering
    /// more than `MAX_BUFFERED_TRADES` fills is narrowed: `[lower, upper]` first, then the
    /// rest.
    async fn poll_markets(&self, condition_ids: &[String], to: i64) -> Result<(), CollectError> {
        let mut target = to;
        loop {
            match self.poll_walk(condition_ids, target).await? {
                Some(narrowed) => target = narrowed,
                None if target >= to => return Ok(()),
                None => target = to,
            }
        }
    }

    /// The covered markets among `condition_ids` and what a walk up to `to` reads of each:
    /// polling (`forward`) re-reads the last `reconcile_window` of their coverage and goes on
    /// past it; the deep pass re-reads `[to − reconcile_horizon, high)` (markets with nothing
    /// there are left out). Never below the coverage or the ledger's floor.
    fn boundaries(
        &self,
        condition_ids: &[String],
        to: i64,
        forward: bool,
    ) -> HashMap<String, Boundary> {
        let back = if forward {
            self.tuning.reconcile_window
        } else {
            self.tuning.reconcile_horizon
        };
        let back = i64::try_from(back.as_secs()).unwrap_or(i64::MAX);
        let floor = lock(&self.ledger).floor();
        let edges = self.edges();
        let mut boundaries = HashMap::new();
        for condition_id in condition_ids {
            let checkpoint: TradeCheckpoint = self
                .checkpoints
                .get(&format!("trades/{condition_id}"))
                .unwrap_or_default();
            let Some((low, high)) = checkpoint.covered else {
                continue;
            };
            let read_from = if back > 0 {
                to.saturating_sub(back).max(low).max(floor).min(high)
            } else {
                high
            };
            if !forward && read_from >= high {
                continue;
            }
            let sent_at_high = edges
                .get(condition_id)
                .filter(|edge| edge.second == high)
                .map(|edge| edge.ids.clone())
                .unwrap_or_default();
            boundaries.insert(
                condition_id.clone(),
                Boundary {
                    low,
                    high,
                    read_from,
                    forward,
                    sent_at_high,
                },
            );
        }
        boundaries
    }

    /// One multi-market polling walk up to `to` (see [`Self::poll_markets`]). `Ok(Some(upper))`
    /// when it stopped to keep memory bounded, with nothing sent: `[.., upper]` comes first.
    async fn poll_walk(
        &self,
        condition_ids: &[String],
        to: i64,
    ) -> Result<Option<i64>, CollectError> {
        // Boundaries as they are now: sending fills moves the in-memory edges, and the filter
        // must keep judging by what was covered before this walk.
        let boundaries = self.boundaries(condition_ids, to, true);
        let Some(lowest_high) = boundaries.values().map(|boundary| boundary.high).min() else {
            return Ok(None);
        };
        let lower = boundaries
            .values()
            .map(|boundary| boundary.read_from)
            .min()
            .unwrap_or(lowest_high);
        // The walk's fills are sent together at the end, so each market's fills go out in time
        // order (a catch-up walk may span more pages than the candle builder's lateness).
        let mut outgoing: HashMap<String, Outgoing> = HashMap::new();
        let walked = self
            .walk_markets(
                condition_ids,
                &boundaries,
                (lower, to),
                &mut outgoing,
                Some(lowest_high),
            )
            .await;
        match walked {
            Ok(None) => {}
            Ok(Some(narrowed)) => {
                self.forget_late(&outgoing);
                tracing::debug!(
                    markets = condition_ids.len(),
                    narrowed_to = narrowed,
                    "polling walk narrowed to keep memory bounded"
                );
                return Ok(Some(narrowed));
            }
            Err(error) => {
                self.forget_late(&outgoing);
                return Err(error);
            }
        }
        self.send_outgoing(&boundaries, outgoing).await?;
        let commits = boundaries.iter().map(|(condition_id, boundary)| {
            let checkpoint = TradeCheckpoint {
                covered: Some((boundary.low, boundary.high.max(to))),
                walk: None,
            };
            let key = format!("trades/{condition_id}");
            async move { self.checkpoints.commit(&key, &checkpoint).await }
        });
        futures::future::try_join_all(commits).await?;
        {
            let mut ledger = lock(&self.ledger);
            for (condition_id, boundary) in &boundaries {
                ledger.read_complete(condition_id, boundary.read_from, to);
            }
        }
        for (condition_id, boundary) in &boundaries {
            self.trim_edge(condition_id, boundary.high.max(to));
        }
        crate::metrics::checkpoint_lag("trades", (now_ms() / 1000 - to).max(0) as f64);
        Ok(None)
    }

    /// Walks `[lower, upper]` of `condition_ids` together (one csv filter) and sorts every
    /// page into `outgoing` ([`Self::sort_read`]). Seconds past the offset cap — a cap the
    /// markets of one request share — are re-read market by market, and a second still past it
    /// for one market is declared as an upstream gap. Polling (`narrow_above` = its lowest
    /// covered edge): past `MAX_BUFFERED_TRADES` buffered fills the walk stops at its current
    /// upper bound if that is above the edge, and returns it. The deep pass (`None`): what is
    /// buffered (late fills only) is sent mid-walk instead.
    async fn walk_markets(
        &self,
        condition_ids: &[String],
        boundaries: &HashMap<String, Boundary>,
        (lower, upper): (i64, i64),
        outgoing: &mut HashMap<String, Outgoing>,
        narrow_above: Option<i64>,
    ) -> Result<Option<i64>, CollectError> {
        let forward = narrow_above.is_some();
        let market_list = condition_ids.join(",");
        let mut tape = TapeWalk::new(
            market_list.as_str(),
            lower,
            upper,
            self.tuning.trades_page_size,
        );
        while let Some(top) = tape.upper() {
            let page = self.trades_page(&market_list, lower, top, 0).await?;
            let read = tape
                .read(
                    page,
                    |rows: &[Value], window| self.read_trades(rows, window),
                    |second, offset| self.trades_page(&market_list, second, second, offset),
                )
                .await?;
            self.sort_read(boundaries, read, outgoing, forward);
            let buffered: usize = outgoing.values().map(|market| market.trades.len()).sum();
            if buffered > MAX_BUFFERED_TRADES
                && let Some(next) = tape.upper()
            {
                match narrow_above {
                    Some(edge) if next > edge => return Ok(Some(next)),
                    Some(_) => {}
                    None => {
                        self.send_outgoing(boundaries, std::mem::take(outgoing))
                            .await?;
                    }
                }
            }
        }
        for second in tape.truncated() {
            self.reread_dense_second(condition_ids, boundaries, *second, outgoing, forward)
                .await?;
        }
        Ok(None)
    }

    /// A second a multi-market walk could not read completely (its markets share the offset
    /// cap): each market of the walk that the second concerns is read alone, with the whole
    /// cap to itself. A second still past the cap for one market is declared.
    async fn reread_dense_second(
        &self,
        condition_ids: &[String],
        boundaries: &HashMap<String, Boundary>,
        second: i64,
        outgoing: &mut HashMap<String, Outgoing>,
        forward: bool,
    ) -> Result<(), CollectError> {
        let concerned: Vec<&String> = condition_ids
            .iter()
            .filter(|condition_id| {
                boundaries.get(*condition_id).is_some_and(|boundary| {
                    second >= boundary.read_from && (forward || second < boundary.high)
                })
            })
            .collect();
        if let [condition_id] = condition_ids {
            // Alone already: nothing left to split.
            if !concerned.is_empty() {
                self.declare_dense_seconds(condition_id, &[second]).await?;
            }
            return Ok(());
        }
        for condition_id in concerned {
            let mut tape = TapeWalk::new(
                condition_id.as_str(),
                second,
                second,
                self.tuning.trades_page_size,
            );
            while let Some(top) = tape.upper() {
                let page = self.trades_page(condition_id, second, top, 0).await?;
                let read = tape
                    .read(
                        page,
                        |rows: &[Value], window| self.read_trades(rows, window),
                        |second, offset| self.trades_page(condition_id, second, second, offset),
                    )
                    .await?;
                // The walk's partial read of this second numbered its rows like this complete
                // one (`parse::trade_read`): what was already sorted is skipped by id.
                self.sort_read(boundaries, read, outgoing, forward);
            }
            self.declare_dense_seconds(condition_id, tape.truncated())
                .await?;
        }
        Ok(())
    }

    /// Sorts a multi-market read by market: fills newer than the market's coverage (polling
    /// only), the re-read edge second, and fills inside the coverage judged by the ledger
    /// (late ones are sent and counted, known ones skipped, see [`Verdict`]). Refused rows
    /// inside the coverage were dead-lettered when it was walked; a reconciliation does not
    /// repeat them.
    fn sort_read(
        &self,
        boundaries: &HashMap<String, Boundary>,
        read: TradeRead,
        outgoing: &mut HashMap<String, Outgoing>,
        forward: bool,
    ) {
        let discovered_ms = now_ms();
        {
            let mut ledger = lock(&self.ledger);
            for trade in read.trades {
                // A fill of a market we did not ask for: upstream's mistake, not our data.
                let Some(boundary) = boundaries.get(&trade.condition_id) else {
                    continue;
                };
                let second = second_of(&trade);
                if second < boundary.read_from || second < boundary.low {
                    continue;
                }
                if second > boundary.high {
                    if boundary.forward {
                        outgoing
                            .entry(trade.condition_id.clone())
                            .or_default()
                            .trades
                            .push(trade);
                    }
                    continue;
                }
                if second == boundary.high
                    && (!boundary.forward || boundary.sent_at_high.contains(&trade.trade_id))
                {
                    continue;
                }
                match ledger.judge(&trade.condition_id, second, &trade.trade_id) {
                    Verdict::Known => {}
                    // The covered edge second is re-read on purpose (fills may have been added
                    // to it since it was walked, by this process or an earlier one); older
                    // covered time the ledger cannot judge was sent by an earlier walk.
                    Verdict::Unknown | Verdict::Baseline => {
                        if second == boundary.high {
                            outgoing
                                .entry(trade.condition_id.clone())
                                .or_default()
                                .trades
                                .push(trade);
                        }
                    }
                    Verdict::Late => {
                        let lateness_s = (discovered_ms - trade.timestamp_ms) as f64 / 1000.0;
                        let market = outgoing.entry(trade.condition_id.clone()).or_default();
                        market.late.push((trade.clone(), lateness_s));
                        market.trades.push(trade);
                    }
                }
            }
        }
        for refused in read.refused {
            match boundaries.get(&refused.condition_id) {
                _ if !forward => continue,
                // Inside the market's coverage: dead-lettered when it was walked.
                Some(boundary) if refused.second.is_some_and(|second| second < boundary.high) => {
                    continue;
                }
                Some(_) => {}
                None if !refused.condition_id.is_empty() => continue,
                // No market at all: it goes to the DLQ with the reason.
                None => {}
            }
            outgoing
                .entry(refused.condition_id)
                .or_default()
                .rejected
                .push((refused.payload, refused.reason));
        }
    }

    /// Sends a multi-market walk's fills and refused rows, market by market (each market's
    /// fills keep their order on its partition), and counts the late ones once acknowledged.
    async fn send_outgoing(
        &self,
        boundaries: &HashMap<String, Boundary>,
        outgoing: HashMap<String, Outgoing>,
    ) -> Result<(), CollectError> {
        let sends = outgoing
            .into_iter()
            .map(|(condition_id, market)| async move {
                let Outgoing {
                    trades,
                    late,
                    rejected,
                } = market;
                let skip = boundaries
                    .get(&condition_id)
                    .map(|boundary| boundary.sent_at_high.clone())
                    .unwrap_or_default();
                if let Err(error) = self
                    .send_trades(&condition_id, trades, rejected, &skip)
                    .await
                {
                    let mut ledger = lock(&self.ledger);
                    for (trade, _) in &late {
                        ledger.forget(&trade.condition_id, second_of(trade), &trade.trade_id);
                    }
                    return Err(error);
                }
                if !late.is_empty() {
                    self.late_sent
                        .fetch_add(late.len() as u64, Ordering::Relaxed);
                    let lateness_s: Vec<f64> = late.iter().map(|(_, lateness)| *lateness).collect();
                    LateFillsFound {
                        condition_id: &condition_id,
                        lateness_s: &lateness_s,
                    }
                    .emit();
                }
                Ok::<(), CollectError>(())
            });
        futures::future::try_join_all(sends).await?;
        Ok(())
    }

    /// Undoes the late verdicts of fills that will not be sent (the walk failed or was
    /// narrowed), so the next re-read finds them again.
    /// The sends failed: every fill queued for them — late or not — is forgotten by the
    /// ledger, so the next read judges it anew and sends it (a queued edge-second fill the
    /// ledger remembered would otherwise read as known and never be sent).
    fn forget_late(&self, outgoing: &HashMap<String, Outgoing>) {
        let mut ledger = lock(&self.ledger);
        for market in outgoing.values() {
            for trade in &market.trades {
                ledger.forget(&trade.condition_id, second_of(trade), &trade.trade_id);
            }
        }
    }

    /// Keeps the ledger and the edges to the markets being collected, drops the hours that
    /// left the horizon, and registers markets new to this process.
    fn prepare_ledger(&self, condition_ids: &[String]) {
        let keep: HashSet<&str> = condition_ids.iter().map(String::as_str).collect();
        let floor = {
            let mut ledger = lock(&self.ledger);
            ledger.retain_markets(|condition_id| keep.contains(condition_id));
            ledger.advance(now_ms() / 1000);
            ledger.floor()
        };
        lock(&self.declared).retain(|_, (start_s, _)| *start_s >= floor);
        self.edges()
            .retain(|condition_id, _| keep.contains(condition_id.as_str()));
        self.register_markets(condition_ids);
        crate::metrics::reconcile_ledger(lock(&self.ledger).len());
    }

    /// The deep reconciliation pass: re-reads `[to − reconcile_horizon, high)` of every
    /// covered market among `condition_ids`, 50 markets per request and through the same
    /// `/trades` budget as polling, and publishes the fills the ledger does not know — fills
    /// upstream indexed after both the poll and the trailing window had passed them. A market
    /// whose re-read fails is retried by the next pass. Returns the late fills published.
    pub async fn reconcile_round(
        &self,
        condition_ids: &[String],
        to: i64,
    ) -> Result<u64, CollectError> {
        self.prepare_ledger(condition_ids);
        let late_at_start = self.late_sent.load(Ordering::Relaxed);
        let boundaries = self.boundaries(condition_ids, to, false);
        let mut covered: Vec<String> = boundaries.keys().cloned().collect();
        covered.sort();
        let chunks: Vec<Vec<String>> = covered
            .chunks(POLL_MARKETS_PER_REQUEST)
            .map(<[String]>::to_vec)
            .collect();
        let fatal: Mutex<Option<CollectError>> = Mutex::new(None);
        futures::stream::iter(chunks)
            .for_each_concurrent(self.tuning.concurrency.max(1), |chunk| {
                let boundaries = &boundaries;
                let fatal = &fatal;
                async move {
                    if self.stop.is_cancelled() {
                        return;
                    }
                    let ranges: Vec<(i64, i64)> = chunk
                        .iter()
                        .filter_map(|condition_id| boundaries.get(condition_id))
                        .map(|boundary| (boundary.read_from, boundary.high - 1))
                        .collect();
                    let lower = ranges.iter().map(|(from, _)| *from).min().unwrap_or(0);
                    let upper = ranges.iter().map(|(_, to)| *to).max().unwrap_or(-1);
                    let mut outgoing: HashMap<String, Outgoing> = HashMap::new();
                    let walked = self
                        .walk_markets(&chunk, boundaries, (lower, upper), &mut outgoing, None)
                        .await;
                    let outcome = match walked {
                        Ok(_) => self.send_outgoing(boundaries, outgoing).await,
                        Err(error) => {
                            self.forget_late(&outgoing);
                            Err(error)
                        }
                    };
                    match outcome {
                        Ok(()) => {
                            let mut ledger = lock(&self.ledger);
                            for condition_id in &chunk {
                                if let Some(boundary) = boundaries.get(condition_id) {
                                    ledger.read_complete(
                                        condition_id,
                                        boundary.read_from,
                                        boundary.high - 1,
                                    );
                                }
                            }
                        }
                        Err(CollectError::Cancelled) => {}
                        Err(error) if error.is_retryable() => {
                            tracing::warn!(
                                markets = chunk.len(),
                                error = %error,
                                "deep reconciliation incomplete for these markets; the next pass retries"
                            );
                        }
                        Err(error) => {
                            tracing::error!(error = %error, "deep reconciliation failed");
                            lock(fatal).get_or_insert(error);
                        }
                    }
                }
            })
            .await;
        if let Some(error) = lock(&fatal).take() {
            return Err(error);
        }
        if self.stop.is_cancelled() {
            return Err(CollectError::Cancelled);
        }
        let late = self.late_sent.load(Ordering::Relaxed) - late_at_start;
        tracing::info!(
            markets = covered.len(),
            late,
            ledger = lock(&self.ledger).len(),
            "deep reconciliation pass done"
        );
        Ok(late)
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

    // ------------------------------------------------------------------- book snapshots

    /// One REST snapshot of `tokens`' books: `POST /books` in batches of
    /// `book_snapshot_batch`, each book sent unless identical (timestamp and hash) to the
    /// last one this process sent for the token. Unknown and closed tokens are skipped
    /// upstream. Snapshots are point-in-time, so there is no checkpoint: after a restart the
    /// next snapshot simply describes the books as they are then.
    pub async fn collect_books(&self, tokens: &[String]) -> Result<u64, CollectError> {
        let url = format!("{}/books", self.clob_url);
        let batch = self.tuning.book_snapshot_batch.max(1);
        let batches: Vec<Vec<String>> = tokens.chunks(batch).map(<[String]>::to_vec).collect();
        let results: Vec<Result<u64, CollectError>> = futures::stream::iter(batches)
            .map(|batch| {
                let url = &url;
                async move { self.books_batch(url, &batch).await }
            })
            .buffer_unordered(self.tuning.concurrency.max(1))
            .collect()
            .await;
        let mut sent = 0;
        for result in results {
            match result {
                Ok(count) => sent += count,
                Err(CollectError::Cancelled) => return Err(CollectError::Cancelled),
                Err(error) if error.is_retryable() => {
                    self.dead_letter_page(&error).await?;
                    tracing::warn!(error = %error, "book snapshot batch failed; the next snapshot retries");
                }
                Err(error) => return Err(error),
            }
        }
        // Tokens no longer snapshotted (resolved, or dropped from the list) are forgotten.
        let current: HashSet<&str> = tokens.iter().map(String::as_str).collect();
        lock(&self.last_books).retain(|token, _| current.contains(token.as_str()));
        Ok(sent)
    }

    async fn books_batch(&self, url: &str, tokens: &[String]) -> Result<u64, CollectError> {
        let body = Value::Array(
            tokens
                .iter()
                .map(|token| serde_json::json!({ "token_id": token }))
                .collect(),
        );
        let rows = self
            .upstream
            .post_page(Endpoint::ClobBooks, url, &body, parse::array_page)
            .await?;
        let received = now_ms();
        let mut books = Vec::with_capacity(rows.len());
        let mut rejected = Vec::new();
        for row in &rows {
            match parse::book_snapshot(row, received) {
                Ok(book) => books.push(book),
                Err(error) => rejected.push((row.to_string().into_bytes(), error.to_string())),
            }
        }
        {
            let last_books = match self.last_books.lock() {
                Ok(last_books) => last_books,
                Err(poisoned) => poisoned.into_inner(),
            };
            books.retain(|book| {
                last_books.get(&book.token_id) != Some(&(book.timestamp_ms, book.hash.clone()))
            });
        }
        self.books.send_all(&books).await?;
        self.dead_letter(Endpoint::ClobBooks, url, rejected).await?;
        {
            let mut last_books = match self.last_books.lock() {
                Ok(last_books) => last_books,
                Err(poisoned) => poisoned.into_inner(),
            };
            for book in &books {
                last_books.insert(
                    book.token_id.clone(),
                    (book.timestamp_ms, book.hash.clone()),
                );
            }
        }
        self.books_sent
            .fetch_add(books.len() as u64, Ordering::Relaxed);
        RecordsProduced {
            topic: self.books.topic(),
            count: books.len(),
        }
        .emit();
        Ok(books.len() as u64)
    }

    /// The tokens to snapshot: `collector_book_snapshot_tokens` if set (the tokens the WS
    /// bridge does not cover), else every token of the selected open markets.
    fn snapshot_tokens(&self, selected: &[Market]) -> Vec<String> {
        if !self.tuning.book_snapshot_tokens.is_empty() {
            return self.tuning.book_snapshot_tokens.clone();
        }
        selected
            .iter()
            .filter(|market| !market.closed)
            .flat_map(|market| market.tokens.iter().map(|token| token.token_id.clone()))
            .collect()
    }

    /// Snapshots the current token list every `book_snapshot_interval` until stopped.
    async fn books_loop(&self) -> Result<(), CollectError> {
        loop {
            let tokens = match self.book_tokens.lock() {
                Ok(tokens) => tokens.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            if !tokens.is_empty() {
                match self.collect_books(&tokens).await {
                    Ok(sent) => tracing::debug!(tokens = tokens.len(), sent, "book snapshot taken"),
                    Err(CollectError::Cancelled) => return Err(CollectError::Cancelled),
                    Err(error) if error.is_retryable() => {
                        tracing::warn!(error = %error, "book snapshot failed; the next one retries");
                    }
                    Err(error) => return Err(error),
                }
            }
            // Before the first crawl the list is empty: look again soon rather than a full
            // interval later.
            let pause = if tokens.is_empty() {
                Duration::from_secs(1).min(self.tuning.book_snapshot_interval)
            } else {
                self.tuning.book_snapshot_interval
            };
            tokio::select! {
                () = self.stop.cancelled() => return Err(CollectError::Cancelled),
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    // ---------------------------------------------------------------------- leaderboard

    /// One leaderboard snapshot: every (period, category, ordering) list down to
    /// `leaderboard_depth` rows, all stamped with the snapshot's start time. Skipped when the
    /// last complete snapshot (a checkpoint, committed after Kafka acknowledged every row) is
    /// younger than `leaderboard_interval`, unless `force`. Returns the rows sent.
    pub async fn collect_leaderboard(&self, force: bool) -> Result<u64, CollectError> {
        let snapshot_ms = now_ms();
        let interval_ms =
            i64::try_from(self.tuning.leaderboard_interval.as_millis()).unwrap_or(i64::MAX);
        if !force
            && let Some(last) = self.checkpoints.get::<i64>(LEADERBOARD_CHECKPOINT)
            && snapshot_ms.saturating_sub(last) < interval_ms
        {
            return Ok(0);
        }
        let lists: Vec<parse::LeaderboardList> = LEADERBOARD_PERIODS
            .iter()
            .flat_map(|period| {
                LEADERBOARD_CATEGORIES.iter().flat_map(move |category| {
                    LEADERBOARD_ORDERS
                        .iter()
                        .map(move |order_by| parse::LeaderboardList {
                            period,
                            category,
                            order_by,
                        })
                })
            })
            .collect();
        // Each list is a sequential page walk whose pages are also produced to Kafka: at the
        // Data general budget (97 pages/s) that needs more lists in flight than markets.
        let results: Vec<Result<u64, CollectError>> = futures::stream::iter(lists)
            .map(|list| async move { self.leaderboard_list(list, snapshot_ms).await })
            .buffer_unordered(self.tuning.concurrency.max(1) * 4)
            .collect()
            .await;
        let mut sent = 0;
        let mut complete = true;
        for result in results {
            match result {
                Ok(count) => sent += count,
                Err(CollectError::Cancelled) => return Err(CollectError::Cancelled),
                Err(error) if error.is_retryable() => {
                    self.dead_letter_page(&error).await?;
                    tracing::warn!(error = %error, "leaderboard list incomplete; the next snapshot retries");
                    complete = false;
                }
                Err(error) => return Err(error),
            }
        }
        if complete {
            self.checkpoints
                .commit(LEADERBOARD_CHECKPOINT, &snapshot_ms)
                .await?;
        }
        Ok(sent)
    }

    async fn leaderboard_list(
        &self,
        list: parse::LeaderboardList,
        snapshot_ms: i64,
    ) -> Result<u64, CollectError> {
        let url = format!("{}/v1/leaderboard", self.data_url);
        let depth = self
            .tuning
            .leaderboard_depth
            .min(LEADERBOARD_MAX_OFFSET + LEADERBOARD_PAGE);
        let mut offset = 0;
        let mut sent = 0;
        // Ranks shift while the list is paged: a wallet read twice keeps its first (best) row.
        let mut tally = ListTally::default();
        while offset < depth && offset <= LEADERBOARD_MAX_OFFSET {
            let limit = LEADERBOARD_PAGE.min(depth - offset);
            let query = [
                ("timePeriod", list.period.to_owned()),
                ("category", list.category.to_owned()),
                ("orderBy", list.order_by.to_owned()),
                ("limit", limit.to_string()),
                ("offset", offset.to_string()),
            ];
            let rows = self
                .upstream
                .get_page(Endpoint::DataLeaderboard, &url, &query, parse::array_page)
                .await?;
            let mut entries = Vec::with_capacity(rows.len());
            let mut rejected = Vec::new();
            for row in &rows {
                match parse::leaderboard_entry(row, list, snapshot_ms) {
                    Ok(entry) => entries.push(entry),
                    Err(error) => rejected.push((row.to_string().into_bytes(), error.to_string())),
                }
            }
            let entries = tally.admit(entries);
            self.leaderboard.send_all(&entries).await?;
            let origin = format!(
                "{url}?timePeriod={}&category={}&orderBy={}&offset={offset}",
                list.period, list.category, list.order_by
            );
            self.dead_letter(Endpoint::DataLeaderboard, &origin, rejected)
                .await?;
            self.leaderboard_sent
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
            RecordsProduced {
                topic: self.leaderboard.topic(),
                count: entries.len(),
            }
            .emit();
            sent += entries.len() as u64;
            if rows.len() < limit as usize {
                break;
            }
            offset += limit;
        }
        LeaderboardListRead {
            list: &format!("{}/{}/{}", list.period, list.category, list.order_by),
            duplicates: tally.duplicates(),
            missing_ranks: tally.missing_ranks(),
        }
        .emit();
        Ok(sent)
    }

    // ----------------------------------------------------------------------------- rounds

    /// One round over the selected markets (brings each to `[from, to]`); returns how many
    /// completed. Public for the budget benchmark, which times this phase alone.
    pub async fn trades_round(
        &self,
        condition_ids: &[String],
        from: i64,
        to: i64,
    ) -> Result<usize, CollectError> {
        let progress = crate::progress::Progress::new(condition_ids.len());
        let done = AtomicUsize::new(0);
        let complete = AtomicUsize::new(0);
        let fatal: Mutex<Option<CollectError>> = Mutex::new(None);
        let records_at_start = self.trades_sent.load(Ordering::Relaxed);
        self.prepare_ledger(condition_ids);
        // Markets already covered up to shortly before `to` are polled together, many per
        // request; the rest (new markets, backfills, long outages) walk one by one.
        let (caught_up, single): (Vec<String>, Vec<String>) = condition_ids
            .iter()
            .cloned()
            .partition(|condition_id| self.caught_up(condition_id, from, to));
        let mut work: Vec<Vec<String>> = caught_up
            .chunks(POLL_MARKETS_PER_REQUEST)
            .map(<[String]>::to_vec)
            .collect();
        work.extend(single.into_iter().map(|condition_id| vec![condition_id]));
        futures::stream::iter(work)
            .for_each_concurrent(self.tuning.concurrency.max(1), |markets| {
                let done = &done;
                let complete = &complete;
                let fatal = &fatal;
                let progress = &progress;
                async move {
                    if self.stop.is_cancelled() {
                        return;
                    }
                    let outcome = match markets.as_slice() {
                        [condition_id] if !self.caught_up(condition_id, from, to) => {
                            self.collect_trades(condition_id, from, to).await
                        }
                        _ => self.poll_markets(&markets, to).await,
                    };
                    let label = markets.join(",");
                    match outcome {
                        Ok(()) => {
                            complete.fetch_add(markets.len(), Ordering::Relaxed);
                        }
                        Err(CollectError::Cancelled) => {}
                        Err(error) if error.is_retryable() => {
                            if let Err(error) = self.dead_letter_page(&error).await {
                                tracing::warn!(error = %error, "cannot write a dead letter");
                            }
                            tracing::warn!(condition_ids = %label, error = %error, "trades of these markets incomplete; retried next round");
                            if error.is_upstream() {
                                self.declare_unread(&markets, from, to, &error).await;
                            }
                        }
                        Err(error) => {
                            tracing::error!(condition_ids = %label, error = %error, "trades collection failed");
                            if let Ok(mut fatal) = fatal.lock() {
                                fatal.get_or_insert(error);
                            }
                        }
                    }
                    let finished = done.fetch_add(markets.len(), Ordering::Relaxed) + markets.len();
                    let records = self.trades_sent.load(Ordering::Relaxed) - records_at_start;
                    progress.market_finished(finished, records);
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

    /// Declares what a failed walk left unread of each market (the unread part of its walk,
    /// from its checkpoint) as an upstream gap; the next round retries the walk, and the
    /// declaration says so.
    async fn declare_unread(
        &self,
        condition_ids: &[String],
        from: i64,
        to: i64,
        error: &CollectError,
    ) {
        let detail = format!(
            "trades walk incomplete after every retry ({error}); fills in this span may be missing until a later round reads them"
        );
        for condition_id in condition_ids {
            let checkpoint: TradeCheckpoint = self
                .checkpoints
                .get(&format!("trades/{condition_id}"))
                .unwrap_or_default();
            let Some(walk) = checkpoint.next_walk(from, to) else {
                continue;
            };
            if let Err(error) = self
                .declare_gap(
                    GapCause::WalkFailed,
                    condition_id,
                    (walk.from, walk.upper),
                    &detail,
                )
                .await
            {
                tracing::warn!(condition_id, error = %error, "cannot declare an upstream gap");
            }
        }
    }

    /// The markets `options` selects (`--markets`, `--limit`), busiest first.
    pub fn select(&self, markets: &[Market], options: &Options) -> Vec<Market> {
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
        let books = options.datasets.contains(&Dataset::BookSnapshots);
        let leaderboard = options.datasets.contains(&Dataset::Leaderboard);
        // The leaderboard alone needs no market list (and no crawl).
        let crawl = emit_markets || emit_events || trades || prices || books;
        let started_s =
            now_ms() / 1000 - i64::try_from(self.tuning.poll_lag.as_secs()).unwrap_or(0);
        match options.mode {
            Mode::Backfill { from_s, to_s } => {
                let markets = if crawl {
                    self.crawl_markets(emit_markets, emit_events).await?
                } else {
                    Vec::new()
                };
                let selected = self.select(&markets, &options);
                let ids: Vec<String> = selected
                    .iter()
                    .map(|market| market.condition_id.clone())
                    .collect();
                tracing::info!(markets = ids.len(), from_s, to_s, "backfill started");
                // Point-in-time datasets first: they describe "now", not the window.
                if books {
                    let tokens = self.snapshot_tokens(&selected);
                    let sent = self.collect_books(&tokens).await?;
                    tracing::info!(tokens = tokens.len(), sent, "book snapshot taken");
                }
                if leaderboard {
                    let sent = self.collect_leaderboard(false).await?;
                    tracing::info!(sent, "leaderboard snapshot taken");
                }
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
                let rounds = self.poll_rounds(&options, started_s, crawl, leaderboard);
                let outcome = if books {
                    // Snapshots run on their own interval beside the rounds; the first
                    // error of either ends both.
                    tokio::try_join!(rounds, self.books_loop()).map(|_| ())
                } else {
                    rounds.await
                };
                match outcome {
                    Ok(()) | Err(CollectError::Cancelled) => Ok(self.summary(0, 0)),
                    Err(error) => Err(error),
                }
            }
        }
    }

    /// `run`/`poll`: rounds until stopped (returns `Cancelled` then).
    async fn poll_rounds(
        &self,
        options: &Options,
        started_s: i64,
        crawl: bool,
        leaderboard: bool,
    ) -> Result<(), CollectError> {
        let emit_markets = options.datasets.contains(&Dataset::Markets);
        let emit_events = options.datasets.contains(&Dataset::Events);
        let trades = options.datasets.contains(&Dataset::Trades);
        let prices = options.datasets.contains(&Dataset::PriceHistory);
        let books = options.datasets.contains(&Dataset::BookSnapshots);
        let retention = i64::try_from(self.tuning.retention.as_secs()).unwrap_or(i64::MAX);
        let lag = i64::try_from(self.tuning.poll_lag.as_secs()).unwrap_or(0);
        // The first deep reconciliation one interval after start: the first round is a backfill
        // (or resumes from checkpoints), and the trailing window covers the recent past.
        let deep_interval = self.tuning.reconcile_interval;
        let mut next_deep = Instant::now() + deep_interval;
        loop {
            let now_s = now_ms() / 1000 - lag;
            let from = if options.mode == Mode::Run {
                now_s.saturating_sub(retention)
            } else {
                started_s
            };
            let round = async {
                if leaderboard {
                    self.collect_leaderboard(false).await?;
                }
                if !crawl {
                    return Ok(());
                }
                let markets = self.crawl_markets(emit_markets, emit_events).await?;
                let selected = self.select(&markets, options);
                if books {
                    let tokens = self.snapshot_tokens(&selected);
                    match self.book_tokens.lock() {
                        Ok(mut current) => *current = tokens,
                        Err(poisoned) => *poisoned.into_inner() = tokens,
                    }
                }
                if trades {
                    let ids: Vec<String> = selected
                        .iter()
                        .map(|market| market.condition_id.clone())
                        .collect();
                    self.trades_round(&ids, from, now_s).await?;
                    if !deep_interval.is_zero() && Instant::now() >= next_deep {
                        self.reconcile_round(&ids, now_s).await?;
                        next_deep = Instant::now() + deep_interval;
                    }
                }
                if prices {
                    self.prices_round(&selected, from, now_s).await?;
                }
                Ok::<(), CollectError>(())
            };
            match round.await {
                Ok(()) => {}
                Err(CollectError::Cancelled) => return Err(CollectError::Cancelled),
                Err(error) if error.is_retryable() => {
                    tracing::warn!(error = %error, "polling round failed; next round retries");
                }
                Err(error) => return Err(error),
            }
            tokio::select! {
                () = self.stop.cancelled() => return Err(CollectError::Cancelled),
                () = tokio::time::sleep(self.tuning.poll_interval) => {}
            }
        }
    }
}
