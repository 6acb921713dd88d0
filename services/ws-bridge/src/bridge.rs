//! The supervisor: keeps the followed token set (markets topic, `new_market`,
//! `market_resolved`), shards it across connections under the per-connection cap (one task
//! each), moves tokens when the server turns out to allow fewer, and drains on stop.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use polytape_codec::SchemaRegistryClient;
use polytape_kafka::create_producer;
use polytape_model::{ContinuityKind, TopicNames, now_ms};
use tokio::{
    sync::mpsc,
    task::{JoinHandle, JoinSet},
};
use tokio_util::sync::CancellationToken;

use crate::{
    WsBridgeConfig,
    connection::{Command, Report, Shared, run_shard},
    continuity::Gaps,
    error::BridgeError,
    markets::{MarketUpdate, follow_markets},
    metrics,
    publish::{Encoders, Outgoing, Publisher},
    tokens::{Delta, TokenFilter, TokenSet},
};

/// How long the acknowledgement tracker may take to drain at stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

struct ShardHandle {
    commands: mpsc::UnboundedSender<Command>,
    tokens: BTreeSet<String>,
}

/// The bridge, connected to Kafka and the registry, not yet running.
pub struct Bridge {
    config: WsBridgeConfig,
    names: TopicNames,
    registry: SchemaRegistryClient,
    producer: rdkafka::producer::FutureProducer,
    encoders: Encoders,
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
    /// Registers every schema the bridge writes and creates the idempotent producer.
    pub async fn connect(config: &WsBridgeConfig) -> Result<Self, BridgeError> {
        let names = TopicNames::with_prefix(config.kafka.topic_prefix.clone());
        let registry = SchemaRegistryClient::new(&config.kafka.schema_registry_url)?;
        let producer = create_producer(&config.kafka.kafka_brokers)?;
        let encoders = Encoders::register(&registry, &names).await?;
        Ok(Self {
            config: config.clone(),
            names,
            registry,
            producer,
            encoders,
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
        } = self;
        let (publisher, tracker) = Publisher::start(producer.clone(), encoders, &names);
        let instance = format!("{:08x}", rand::random::<u32>());
        let (reports_sender, reports) = mpsc::unbounded_channel();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(BridgeError::Http)?;
        let shared = Arc::new(Shared {
            publisher: publisher.clone(),
            gaps: Gaps::new(),
            tuning: config.tuning.clone(),
            ws_url: config.upstream.clob_ws_url.clone(),
            clob_url: config.upstream.clob_url.clone(),
            http,
            instance: instance.clone(),
            lifecycle_seen: Mutex::new(HashSet::new()),
            reports: reports_sender,
            stop: stop.clone(),
            latest_upstream_ms: AtomicI64::new(i64::MIN),
        });
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
        let mut supervisor = Supervisor {
            shared: Arc::clone(&shared),
            cap: usize::try_from(config.ws_max_assets_per_connection)
                .unwrap_or(usize::MAX)
                .max(1),
            set: TokenSet::new(TokenFilter::from_config(&config.filter)),
            shards: Vec::new(),
            assignment: HashMap::new(),
            tasks: JoinSet::new(),
        };
        let outcome = supervisor
            .supervise(updates, reports, &stop, &mut markets, on_ready)
            .await;
        // Drain: connections declare their open gaps and stop; then every record is acked.
        stop.cancel();
        markets_stop.cancel();
        let mut failure = outcome.err();
        while let Some(joined) = supervisor.tasks.join_next().await {
            if let Ok(Err(error)) = joined {
                failure.get_or_insert(error);
            }
        }
        if let Some(markets) = markets
            && let Ok(Err(error)) = markets.await
        {
            failure.get_or_insert(error);
        }
        drop(supervisor);
        drop(shared);
        if tokio::time::timeout(DRAIN_TIMEOUT, tracker).await.is_err() {
            tracing::error!("kafka acknowledgements did not drain in time");
        }
        let flushed = tokio::task::spawn_blocking(move || {
            rdkafka::producer::Producer::flush(&producer, Duration::from_secs(5))
        })
        .await;
        if let Ok(Err(error)) = flushed {
            tracing::error!(error = %error, "producer flush failed at stop");
        }
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

struct Supervisor {
    shared: Arc<Shared>,
    cap: usize,
    set: TokenSet,
    shards: Vec<Option<ShardHandle>>,
    assignment: HashMap<String, usize>,
    tasks: JoinSet<Result<(), BridgeError>>,
}

impl Supervisor {
    async fn supervise(
        &mut self,
        mut updates: mpsc::Receiver<MarketUpdate>,
        mut reports: mpsc::UnboundedReceiver<Report>,
        stop: &CancellationToken,
        markets: &mut Option<JoinHandle<Result<(), BridgeError>>>,
        on_ready: impl FnOnce() + Send,
    ) -> Result<(), BridgeError> {
        // First the whole topic, so the initial shards are filled in one subscription each.
        let mut initial = Delta::default();
        loop {
            let update = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                update = updates.recv() => update,
            };
            match update {
                Some(MarketUpdate::CaughtUp) => break,
                Some(update) => initial.extend(self.market_update(update)),
                None => return markets_ended(markets).await,
            }
        }
        self.apply(initial);
        tracing::info!(
            tokens = self.assignment.len(),
            connections = self.shards.iter().flatten().count(),
            "initial token set read from the markets topic; subscribing"
        );
        on_ready();
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                update = updates.recv() => {
                    let Some(update) = update else {
                        // The markets reader ended: only a stop or a failure ends it.
                        return markets_ended(markets).await;
                    };
                    let mut delta = self.market_update(update);
                    // Apply a burst of updates as one change.
                    while let Ok(more) = updates.try_recv() {
                        delta.extend(self.market_update(more));
                    }
                    self.apply(delta);
                }
                report = reports.recv() => {
                    let Some(report) = report else { continue };
                    self.report(report).await?;
                }
                joined = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Some(Ok(Err(error))) = joined {
                        return Err(error);
                    }
                }
            }
        }
    }

    fn market_update(&mut self, update: MarketUpdate) -> Delta {
        match update {
            MarketUpdate::Upsert(market) => self.set.market(&market),
            MarketUpdate::Deleted(condition_id) => self.set.market_deleted(&condition_id),
            MarketUpdate::CaughtUp => Delta::default(),
        }
    }

    async fn report(&mut self, report: Report) -> Result<(), BridgeError> {
        match report {
            Report::NewMarket {
                condition_id,
                token_ids,
            } => {
                let delta = self.set.announced(&condition_id, &token_ids);
                self.apply(delta);
            }
            Report::MarketResolved { condition_id } => {
                let delta = self.set.resolved(&condition_id);
                self.apply(delta);
            }
            Report::Refused { shard, max_assets } => {
                let size = self
                    .shards
                    .get(shard)
                    .and_then(Option::as_ref)
                    .map_or(0, |handle| handle.tokens.len());
                // The server's cap is below ours: adopt it (or halve when it does not say).
                // A refusal reported by a shard already shrunk says nothing new.
                let new_cap = match max_assets {
                    Some(max) if max > 0 => max,
                    _ => (size / 2).max(1),
                };
                if new_cap < self.cap {
                    tracing::warn!(
                        old_cap = self.cap,
                        new_cap,
                        "lowering the per-connection asset cap to what the server accepts"
                    );
                    self.cap = new_cap;
                    self.rebalance().await?;
                }
            }
        }
        Ok(())
    }

    /// Moves tokens out of shards holding more than the cap.
    async fn rebalance(&mut self) -> Result<(), BridgeError> {
        let mut moved = Vec::new();
        for handle in self.shards.iter_mut().flatten() {
            let excess = handle.tokens.len().saturating_sub(self.cap);
            if excess == 0 {
                continue;
            }
            let tokens: Vec<String> = handle.tokens.iter().rev().take(excess).cloned().collect();
            for token in &tokens {
                handle.tokens.remove(token);
            }
            let _ = handle.commands.send(Command::Remove {
                tokens: tokens.clone(),
                moved: true,
            });
            moved.extend(tokens);
        }
        for token in &moved {
            self.assignment.remove(token);
        }
        // Declared before the new connections can dump them: nothing of these tokens is read
        // between their unsubscribe here and their dump there.
        let start = match self.shared.latest_upstream_ms.load(Ordering::Relaxed) {
            i64::MIN => now_ms(),
            latest => latest,
        };
        if let Some(record) = self.shared.gaps.open(
            ContinuityKind::SubscriptionRefused,
            moved.clone(),
            start,
            "supervisor",
            "moved to another connection: the server allows fewer assets per connection".to_owned(),
        ) {
            self.shared.publisher.publish(Outgoing::Gap(record)).await?;
        }
        self.place(moved);
        Ok(())
    }

    fn apply(&mut self, delta: Delta) {
        if delta.is_empty() {
            return;
        }
        let mut removals: HashMap<usize, Vec<String>> = HashMap::new();
        for token in delta.removed {
            if let Some(shard) = self.assignment.remove(&token) {
                removals.entry(shard).or_default().push(token);
            }
        }
        for (shard, tokens) in removals {
            if let Some(Some(handle)) = self.shards.get_mut(shard) {
                for token in &tokens {
                    handle.tokens.remove(token);
                }
                let _ = handle.commands.send(Command::Remove {
                    tokens,
                    moved: false,
                });
            }
        }
        let added: Vec<String> = delta
            .added
            .into_iter()
            .filter(|token| !self.assignment.contains_key(token))
            .collect();
        self.place(added);
        metrics::tokens_subscribed(self.assignment.len());
    }

    /// First fit into shards with room, then new shards of up to `cap` tokens each.
    fn place(&mut self, tokens: Vec<String>) {
        let mut additions: HashMap<usize, Vec<String>> = HashMap::new();
        let mut new_shards: Vec<BTreeSet<String>> = Vec::new();
        let mut pending = tokens.into_iter();
        for (index, slot) in self.shards.iter_mut().enumerate() {
            let Some(handle) = slot else { continue };
            while handle.tokens.len() < self.cap {
                let Some(token) = pending.next() else { break };
                handle.tokens.insert(token.clone());
                self.assignment.insert(token.clone(), index);
                additions.entry(index).or_default().push(token);
            }
        }
        for token in pending {
            if new_shards
                .last()
                .is_none_or(|shard| shard.len() >= self.cap)
            {
                new_shards.push(BTreeSet::new());
            }
            if let Some(shard) = new_shards.last_mut() {
                shard.insert(token);
            }
        }
        for (index, tokens) in additions {
            if let Some(Some(handle)) = self.shards.get(index) {
                let _ = handle.commands.send(Command::Add(tokens));
            }
        }
        for tokens in new_shards {
            let index = self.shards.len();
            for token in &tokens {
                self.assignment.insert(token.clone(), index);
            }
            let (commands, receiver) = mpsc::unbounded_channel();
            self.tasks.spawn(run_shard(
                Arc::clone(&self.shared),
                index,
                tokens.clone(),
                receiver,
            ));
            self.shards.push(Some(ShardHandle { commands, tokens }));
        }
    }
}
