//! The supervisor: keeps the followed token set (markets topic, `new_market`,
//! `market_resolved`), shards it across connections under the per-connection cap (one task
//! each), moves tokens when the server turns out to allow fewer, restarts a shard whose task
//! panicked (its tokens declared), keeps the bridge's state (see `state`), and drains on stop.
//!
//! At start it settles what earlier processes left: gaps they left open are taken over and
//! closed by this process's fresh books; after an unclean stop (crash, `kill -9`, a failed
//! drain) every token gets a `DISCONNECT` gap from the previous process's acknowledged
//! watermark, opened by its shard before the shard connects and closed by its dump like a
//! reconnect gap, and tokens it followed that this process does not follow get a gap closed
//! at once.

mod supervisor;

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use polytape_codec::SchemaRegistryClient;
use polytape_kafka::SharedProducer;
use polytape_model::{ContinuityKind, TopicNames, now_ms};
use polytape_polymarket::{Budgets, RetryPolicy, Upstream};
use tokio::{
    sync::mpsc,
    task::{JoinError, JoinHandle, JoinSet},
};
use tokio_util::sync::CancellationToken;

use self::supervisor::Supervisor;
use crate::{
    WsBridgeConfig,
    connection::{
        Command, LIFECYCLE_REMEMBERED, Report, ShardClock, Shared, StartGap, gap_start_ms,
        run_shard,
    },
    continuity::Gaps,
    error::BridgeError,
    markets::{MarketUpdate, follow_markets},
    metrics,
    publish::{Encoders, Outgoing, Publisher},
    recent::RecentSet,
    state::{self, PersistedState, Progress, RestartPlan, RunRecord, SendError, StateWriter},
    tokens::{Delta, TokenFilter, TokenSet},
};

/// How long the acknowledgement tracker may take to drain at stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);
/// How often the acknowledged watermark is checkpointed (and state entries the producer's
/// full queue refused are retried).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// A shard whose task panics is declared and restarted, at most this many times within
/// [`SHARD_RESTART_WINDOW`]; one more panic stops the bridge (exit 1; the next start declares
/// the gap).
const SHARD_RESTARTS: usize = 3;
const SHARD_RESTART_WINDOW: Duration = Duration::from_secs(600);
/// Tokens per continuity record declared at start for tokens no longer followed.
const TOKENS_PER_RECORD: usize = 500;
/// Share of the CLOB `/book` budget the REST fallback may use: the candle builder's resync
/// calls the same endpoint from the same address.
const BOOK_BUDGET_MARGIN: f64 = 0.5;

/// How long the last state write of a stop may take.
const STATE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// A dropped token is forgotten from the state once the watermark is this much upstream time
/// past the moment it was dropped: records settle in publishing order across all shards, so
/// once records read that much later are acknowledged, its last ones (published within
/// moments of the drop, by its shard) are too.
const DROPPED_MARGIN_MS: i64 = 60_000;

struct ShardHandle {
    commands: mpsc::UnboundedSender<Command>,
    tokens: BTreeSet<String>,
    clock: Arc<ShardClock>,
    /// The bridge's watermark when the shard was created: its own until it settles a record.
    floor: Option<i64>,
    /// When its task panicked lately.
    panics: VecDeque<Instant>,
}

/// The bridge, connected to Kafka and the registry, not yet running.
pub struct Bridge {
    config: WsBridgeConfig,
    names: TopicNames,
    registry: SchemaRegistryClient,
    producer: SharedProducer,
    encoders: Encoders,
    state: PersistedState,
    state_writer: StateWriter,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Bridge")
            .field("prefix", &self.names.prefix())
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// Registers every schema the bridge writes, creates the idempotent producer, and reads
    /// the bridge's state topic (created when missing).
    pub async fn connect(config: &WsBridgeConfig) -> Result<Self, BridgeError> {
        let names = TopicNames::with_prefix(config.kafka.topic_prefix.clone());
        let registry = SchemaRegistryClient::new(&config.kafka.schema_registry_url)?;
        let producer = SharedProducer::connect(&config.kafka.kafka_brokers)?;
        let encoders = Encoders::register(&registry, &names).await?;
        let state_writer = StateWriter::new(producer.clone(), state::state_topic(names.prefix()));
        let state = state::load(&config.kafka.kafka_brokers, state_writer.topic()).await?;
        Ok(Self {
            config: config.clone(),
            names,
            registry,
            producer,
            encoders,
            state,
            state_writer,
        })
    }

    /// Runs until `stop`; `on_ready` is called once the initial subscriptions are under way.
    pub async fn run(
        self,
        stop: CancellationToken,
        on_ready: impl FnOnce() + Send,
    ) -> Result<(), BridgeError> {
        let Bridge {
            config,
            names,
            registry,
            producer,
            encoders,
            state,
            state_writer,
        } = self;
        let plan = RestartPlan::new(&state);
        let instance = format!("{:08x}", rand::random::<u32>());
        let started_ms = now_ms();
        // Not clean from here until the drain is complete: a kill from now on is declared by
        // the next start. Acknowledged before anything is published.
        let run = state::run_record(&instance, started_ms, plan.floor, false);
        state_writer
            .write(vec![state::entry(state::RUN_KEY.to_owned(), &run)])
            .await
            .map_err(BridgeError::State)?;
        if let Some(restart_from) = plan.restart_from {
            tracing::warn!(
                restart_from,
                previous_instance = ?plan.previous_instance,
                "the previous process did not stop cleanly; every token gets a gap from its acknowledged watermark until its fresh book"
            );
        }
        let progress = Arc::new(Progress::default());
        let (publisher, tracker) = Publisher::start(
            producer.clone(),
            encoders,
            &names,
            Some(state_writer.clone()),
            Arc::clone(&progress),
        );
        let (reports_sender, reports) = mpsc::unbounded_channel();
        // The REST `/book` fallback keeps to its own budget; a failed request is retried by the
        // session at its next dump deadline, not here, so it never holds the read loop.
        let upstream = Upstream::new(
            concat!("polytape-ws-bridge/", env!("CARGO_PKG_VERSION")),
            Budgets::new(Duration::from_secs(10), BOOK_BUDGET_MARGIN),
            RetryPolicy {
                max_attempts: 1,
                request_timeout: Duration::from_secs(10),
                ..RetryPolicy::default()
            },
            stop.clone(),
        )
        .map_err(BridgeError::Upstream)?;
        let shared = Arc::new(Shared {
            publisher: publisher.clone(),
            gaps: Gaps::new(),
            tuning: config.tuning.clone(),
            ws_url: config.upstream.clob_ws_url.clone(),
            clob_url: config.upstream.clob_url.clone(),
            upstream,
            instance: instance.clone(),
            lifecycle_seen: Mutex::new(RecentSet::new(LIFECYCLE_REMEMBERED)),
            reports: reports_sender,
            stop: stop.clone(),
            latest_upstream_ms: AtomicI64::new(i64::MIN),
        });
        let adopted = plan
            .adopted
            .iter()
            .filter(|gap| shared.gaps.adopt((*gap).clone()))
            .count();
        if adopted > 0 {
            tracing::info!(
                adopted,
                "taking over gaps an earlier process left open; fresh books close them"
            );
        }
        let (updates_sender, updates) = mpsc::channel(10_000);
        let markets_stop = stop.child_token();
        let mut markets = Some(tokio::spawn(follow_markets(
            config.kafka.kafka_brokers.clone(),
            registry,
            names,
            instance,
            publisher.clone(),
            updates_sender,
            markets_stop.clone(),
        )));
        drop(publisher);
        let mut supervisor = Supervisor::new(
            Arc::clone(&shared),
            usize::try_from(config.ws_max_assets_per_connection).unwrap_or(usize::MAX),
            TokenFilter::from_config(&config.filter),
            Arc::clone(&progress),
            state_writer.clone(),
            plan,
            run,
        );
        let outcome = supervisor
            .supervise(updates, reports, &stop, &mut markets, on_ready)
            .await;
        // Drain: connections declare their open gaps and stop; then every record is acked.
        stop.cancel();
        markets_stop.cancel();
        let mut failure = outcome.err();
        while let Some(joined) = supervisor.tasks.join_next_with_id().await {
            match joined {
                Ok((_, Ok(()))) => {}
                Ok((_, Err(error))) => {
                    failure.get_or_insert(error);
                }
                Err(join_error) if join_error.is_panic() => {
                    // Its tokens have no stop gap: the stop is not clean, the next start
                    // declares them.
                    let shard = supervisor
                        .task_shards
                        .get(&join_error.id())
                        .copied()
                        .unwrap_or(usize::MAX);
                    failure.get_or_insert(BridgeError::ShardPanicked {
                        shard,
                        message: panic_message(join_error),
                    });
                }
                Err(_) => {}
            }
        }
        if let Some(markets) = markets
            && let Ok(Err(error)) = markets.await
        {
            failure.get_or_insert(error);
        }
        let ending = supervisor.ending();
        drop(supervisor);
        drop(shared);
        // A tracker that panicked did not drain: the stop must not count as clean.
        let drained = matches!(
            tokio::time::timeout(DRAIN_TIMEOUT, tracker).await,
            Ok(Ok(()))
        );
        if !drained {
            tracing::error!("kafka acknowledgements did not drain in time");
        }
        let flushed = tokio::task::spawn_blocking(move || {
            rdkafka::producer::Producer::flush(&producer.current(), Duration::from_secs(5))
        })
        .await;
        let flushed_ok = matches!(flushed, Ok(Ok(())));
        if let Ok(Err(error)) = flushed {
            tracing::error!(error = %error, "producer flush failed at stop");
        }
        let clean = ending.restart_declared
            && drained
            && flushed_ok
            && matches!(failure, None | Some(BridgeError::Cancelled));
        ending.write(&state_writer, &progress, clean).await;
        match failure {
            Some(BridgeError::Cancelled) | None => Ok(()),
            Some(error) => Err(error),
        }
    }
}

/// The markets reader's outcome once its channel closed: its error, or a stop.
async fn markets_ended(
    markets: &mut Option<JoinHandle<Result<(), BridgeError>>>,
) -> Result<(), BridgeError> {
    match markets.take() {
        Some(handle) => match handle.await {
            Ok(outcome) => outcome,
            Err(_) => Err(BridgeError::PipelineClosed),
        },
        None => Ok(()),
    }
}

/// What a panic said, for the logs and the gap's reason.
fn panic_message(join_error: JoinError) -> String {
    match join_error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned()),
        Err(join_error) => join_error.to_string(),
    }
}
