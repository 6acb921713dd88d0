//! The collection pipeline: markets and events from Gamma merged with CLOB, trades per market
//! from the Data API walked in time windows, price history per token. Records go to Kafka
//! first; checkpoints follow once the broker acknowledged them.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use polytape_codec::SchemaRegistryClient;
use polytape_kafka::{RecordProducer, SharedProducer};
use polytape_model::{
    BookSnapshot, Continuity, DeadLetter, Event, LeaderboardEntry, Market, PricePoint, TopicNames,
    Trade, now_ms,
};
use polytape_runtime::metrics::InternalEvent as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use polytape_polymarket::{
    Budgets, Endpoint, RetryPolicy, Upstream, UpstreamError,
    rest::{self as parse, TradeRead},
};

use crate::{
    CollectorConfig,
    checkpoint::{Checkpoints, TradeCheckpoint},
    error::CollectError,
    gaps::{self, GapCause},
    leaderboard::ListTally,
    metrics::{DeadLettered, GapDeclared, LateFillsFound, LeaderboardListRead, RecordsProduced},
    options::{Dataset, Mode, Options},
    reconcile::{Ledger, Verdict},
    tape::TapeWalk,
};

mod books;
mod leaderboard;
mod markets;
mod prices;
mod trades;
mod trades_lane;
mod trades_poll;
mod trades_reconcile;
mod trades_walk;

/// Fills a trades walk holds before sending them in time order (~100 MB at most).
const MAX_BUFFERED_TRADES: usize = 200_000;
/// A gap declared again (same id: a walk still failing next round) is published again only
/// once its end moved this much (5 min): at most a dozen records an hour per failing market.
const REDECLARE_AFTER_MS: i64 = 300_000;
/// Fingerprints of sent fills the reconciliation ledger holds at most (8 bytes each in a hash
/// set, ~20–40 MB); past it the ledger's horizon shortens (see `reconcile`).
const MAX_LEDGER_FILLS: usize = 2_000_000;
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

/// What one trades round achieved: the markets brought to its window, and why the first of
/// the others is not (an error a later round may not hit), so that a run that gives up says why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundOutcome {
    pub complete: usize,
    pub first_incomplete: Option<String>,
}

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
    /// The markets (condition ids, sorted) whose trades walk, poll or reconciliation was left
    /// incomplete by a retryable error and retried later. A retried walk re-reads from its
    /// checkpoint and may send again fills of that market it had sent: the same ids, merged
    /// downstream.
    pub markets_retried: Vec<String>,
    /// Times the Kafka producer was renewed after librdkafka's fatal state; records the
    /// failed producer wrote but never acknowledged are sent again (the same ids).
    pub producer_renewals: u64,
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
    /// See [`Summary::markets_retried`].
    markets_retried: Mutex<BTreeSet<String>>,
    /// The producer every record producer above shares (for its renewal count).
    producer: SharedProducer,
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
        let producer = SharedProducer::connect(&config.kafka.kafka_brokers)?;
        let tuning = config.tuning.clone();
        let horizon_s = i64::try_from(tuning.reconcile_horizon.as_secs()).unwrap_or(i64::MAX);
        let budgets = Budgets::new(tuning.budget_window, tuning.budget_margin);
        let policy = RetryPolicy {
            max_attempts: tuning.max_attempts.max(1),
            request_timeout: tuning.request_timeout,
            ..RetryPolicy::default()
        };
        let checkpoints = Checkpoints::open(
            &config.kafka.kafka_brokers,
            &config.kafka.topic_prefix,
            producer.clone(),
            fresh,
        )
        .await?;
        // What earlier processes sent, so a restart tells late fills from sent ones.
        let mut ledger = Ledger::new(horizon_s, MAX_LEDGER_FILLS);
        ledger.restore(checkpoints.take_prefix(crate::reconcile::LEDGER_KEY_PREFIX));
        Ok(Self {
            gamma_url: base(&config.upstream.gamma_url),
            data_url: base(&config.upstream.data_api_url),
            clob_url: base(&config.upstream.clob_url),
            upstream: Upstream::new(
                concat!("polytape-collector/", env!("CARGO_PKG_VERSION")),
                budgets,
                policy,
                stop.clone(),
            )?,
            trades: RecordProducer::register(producer.clone(), &registry, &names).await?,
            markets: RecordProducer::register(producer.clone(), &registry, &names).await?,
            events: RecordProducer::register(producer.clone(), &registry, &names).await?,
            prices: RecordProducer::register(producer.clone(), &registry, &names).await?,
            books: RecordProducer::register(producer.clone(), &registry, &names).await?,
            leaderboard: RecordProducer::register(producer.clone(), &registry, &names).await?,
            dlq: RecordProducer::register(producer.clone(), &registry, &names).await?,
            continuity: RecordProducer::register(producer.clone(), &registry, &names).await?,
            checkpoints,
            tuning,
            edges: Mutex::new(HashMap::new()),
            ledger: Mutex::new(ledger),
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
            markets_retried: Mutex::new(BTreeSet::new()),
            producer,
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
            markets_retried: lock(&self.markets_retried).iter().cloned().collect(),
            producer_renewals: self.producer.renewals(),
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
        if let CollectError::Upstream(UpstreamError::Page {
            endpoint,
            url,
            body,
            error,
        }) = error
        {
            self.dead_letter(*endpoint, url, vec![(body.clone(), error.to_string())])
                .await?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- markets and events

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
                    let mut why_incomplete = None;
                    for round in 0..BACKFILL_ROUNDS {
                        let outcome = self.trades_round(&ids, from_s, to_s).await?;
                        complete = outcome.complete;
                        why_incomplete = outcome.first_incomplete;
                        self.persist_ledger().await?;
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
                            "{} of {} markets still incomplete after {BACKFILL_ROUNDS} rounds (first in the last round: {}); rerun to resume",
                            ids.len() - complete,
                            ids.len(),
                            why_incomplete.as_deref().unwrap_or("no reason recorded")
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
        self: &Arc<Self>,
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
        // The market list of the last crawl; rounds between crawls poll trades over it.
        let mut selected: Vec<Market> = Vec::new();
        let mut next_crawl = Instant::now();
        let mut next_prices = Instant::now();
        let mut lane = trades_lane::WalkLane::new(
            self.tuning.concurrency,
            trades_lane::WalkBounds {
                lag_s: lag,
                retention_s: retention,
                fixed_from_s: (options.mode != Mode::Run).then_some(started_s),
            },
        );
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
                if Instant::now() >= next_crawl {
                    match self.crawl_markets(emit_markets, emit_events).await {
                        Ok(markets) => {
                            selected = self.select(&markets, options);
                            next_crawl = Instant::now() + self.tuning.crawl_interval;
                        }
                        // Gamma or CLOB down: the trades tail goes on over the last crawl's
                        // markets, and the next round crawls again.
                        Err(error) if error.is_retryable() && !selected.is_empty() => {
                            tracing::warn!(error = %error, "market crawl failed; polling trades over the last crawl's markets");
                        }
                        Err(error) => return Err(error),
                    }
                    if books {
                        let tokens = self.snapshot_tokens(&selected);
                        match self.book_tokens.lock() {
                            Ok(mut current) => *current = tokens,
                            Err(poisoned) => *poisoned.into_inner() = tokens,
                        }
                    }
                }
                if trades {
                    let ids: Vec<String> = selected
                        .iter()
                        .map(|market| market.condition_id.clone())
                        .collect();
                    self.tail_round(&mut lane, &ids, from, now_s).await?;
                    self.persist_ledger().await?;
                    if !deep_interval.is_zero() && Instant::now() >= next_deep {
                        // Walking markets included: the deep pass re-reads covered time
                        // (below the stored coverage), a walk reads beyond it; and the pass
                        // prepares the ledger for the markets it is given, forgetting others.
                        let with_lane = trades_lane::with_lane_markets(&ids, &lane);
                        self.reconcile_round(&with_lane, now_s).await?;
                        self.persist_ledger().await?;
                        next_deep = Instant::now() + deep_interval;
                    }
                }
                // Price history is per token (a request each): read at the crawl's pace, not
                // at every trades poll.
                if prices && Instant::now() >= next_prices {
                    self.prices_round(&selected, from, now_s).await?;
                    next_prices = Instant::now() + self.tuning.crawl_interval;
                }
                Ok::<(), CollectError>(())
            };
            match round.await {
                Ok(()) => {}
                Err(CollectError::Cancelled) => {
                    lane.drain().await;
                    return Err(CollectError::Cancelled);
                }
                Err(error) if error.is_retryable() => {
                    tracing::warn!(error = %error, "polling round failed; next round retries");
                }
                // The lane's walks are dropped with it: their checkpoints hold what was sent.
                Err(error) => return Err(error),
            }
            tokio::select! {
                () = self.stop.cancelled() => {
                    lane.drain().await;
                    return Err(CollectError::Cancelled);
                }
                () = tokio::time::sleep(self.tuning.poll_interval) => {}
            }
        }
    }
}
