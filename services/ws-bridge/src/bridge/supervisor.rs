//! The bridge's supervisor: places tokens on connection shards, restarts a shard that ends
//! (declaring its gap), follows market updates, rebalances, and queues the state topic's
//! entries; and what the stop writes once it is gone (`Ending`).

#[allow(clippy::wildcard_imports)]
use super::*;

/// What the stop needs of the supervisor once it is gone: the last state write.
pub(super) struct Ending {
    run: RunRecord,
    watermark: Option<i64>,
    /// (shard, floor) of every shard holding tokens.
    shards: Vec<(usize, Option<i64>)>,
    pending: VecDeque<state::Entry>,
    pub(super) restart_declared: bool,
}

impl Ending {
    /// Writes what is still queued and the run record (`clean` only when everything is
    /// acknowledged), with the watermark after the drain.
    pub(super) async fn write(self, writer: &StateWriter, progress: &Progress, clean: bool) {
        let Ending {
            mut run,
            watermark,
            shards,
            mut pending,
            ..
        } = self;
        run.acked_upstream_ms = state::watermark(
            watermark,
            shards
                .iter()
                .map(|(shard, floor)| state::shard_watermark(progress.settled(*shard), *floor)),
        );
        run.clean = clean;
        run.written_ms = now_ms();
        pending.push_back(state::entry(state::RUN_KEY.to_owned(), &run));
        match tokio::time::timeout(STATE_WRITE_TIMEOUT, writer.write(pending.into())).await {
            Ok(Ok(())) => {
                tracing::info!(clean, acked_upstream_ms = ?run.acked_upstream_ms, "bridge state written");
            }
            Ok(Err(error)) => {
                tracing::error!(error = %error, "cannot write the bridge state at stop; the next start declares a gap for every token");
            }
            Err(_) => {
                tracing::error!(
                    "the bridge state was not written in time at stop; the next start declares a gap for every token"
                );
            }
        }
    }
}

pub(super) struct Supervisor {
    shared: Arc<Shared>,
    cap: usize,
    set: TokenSet,
    shards: Vec<Option<ShardHandle>>,
    assignment: HashMap<String, usize>,
    pub(super) tasks: JoinSet<Result<(), BridgeError>>,
    /// Which shard each task runs.
    pub(super) task_shards: HashMap<tokio::task::Id, usize>,
    progress: Arc<Progress>,
    state: StateWriter,
    /// State entries in the order they must be written (kept when the producer's queue is
    /// full, retried at the next checkpoint).
    state_queue: VecDeque<state::Entry>,
    /// The acknowledged watermark last queued for the state topic.
    watermark: Option<i64>,
    run: RunRecord,
    plan: RestartPlan,
    /// The gap each initial shard opens first (an unclean previous stop); `None` afterwards.
    start_gap: Option<StartGap>,
    /// What earlier processes left is declared (or there was nothing to declare).
    restart_declared: bool,
    /// Tokens with a `token/` entry in the state topic.
    persisted_followed: BTreeSet<String>,
    /// Tokens no longer followed, with the newest upstream time read when they were dropped:
    /// forgotten from the state once the watermark is [`DROPPED_MARGIN_MS`] past it (their
    /// last records are acknowledged by then).
    dropped: VecDeque<(i64, String)>,
}

impl Supervisor {
    pub(super) fn new(
        shared: Arc<Shared>,
        cap: usize,
        filter: TokenFilter,
        progress: Arc<Progress>,
        state: StateWriter,
        plan: RestartPlan,
        run: RunRecord,
    ) -> Self {
        let start_gap = plan.restart_from.map(|gap_start_ms| StartGap {
            kind: ContinuityKind::Disconnect,
            gap_start_ms,
            connection_id: plan.previous_instance.clone().unwrap_or_default(),
            reason: format!(
                "bridge restarted after an unclean stop of process {}: what it had not got acknowledged by Kafka, and what upstream sent while no process was reading, may be missing",
                plan.previous_instance.as_deref().unwrap_or("?")
            ),
        });
        Self {
            shared,
            cap: cap.max(1),
            set: TokenSet::new(filter),
            shards: Vec::new(),
            assignment: HashMap::new(),
            tasks: JoinSet::new(),
            task_shards: HashMap::new(),
            progress,
            state,
            state_queue: VecDeque::new(),
            watermark: plan.floor,
            run,
            restart_declared: plan.restart_from.is_none(),
            persisted_followed: plan.previously_followed.clone(),
            start_gap,
            plan,
            dropped: VecDeque::new(),
        }
    }

    pub(super) async fn supervise(
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
        self.start_gap = None;
        self.settle_earlier_processes().await?;
        tracing::info!(
            tokens = self.assignment.len(),
            connections = self.shards.iter().flatten().count(),
            "initial token set read from the markets topic; subscribing"
        );
        on_ready();
        let mut checkpoint = tokio::time::interval(CHECKPOINT_INTERVAL);
        checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                joined = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    if let Some(joined) = joined {
                        self.shard_ended(joined).await?;
                    }
                }
                _ = checkpoint.tick() => self.checkpoint(),
            }
        }
    }

    /// Once the initial token set is placed: gaps left open for tokens nobody follows now
    /// are closed (nothing will bring them a book), and after an unclean stop the tokens the
    /// previous process followed and this one does not get a gap closed at once. Those
    /// tokens are then forgotten from the state.
    async fn settle_earlier_processes(&mut self) -> Result<(), BridgeError> {
        let followed: BTreeSet<String> = self.assignment.keys().cloned().collect();
        // No upstream time is known yet: our clock ends these gaps.
        let now = now_ms();
        for token in self.shared.gaps.open_tokens() {
            if followed.contains(&token) {
                continue;
            }
            for record in self.shared.gaps.recovered(&token, Some(now)) {
                self.shared.publisher.publish(Outgoing::Gap(record)).await?;
            }
        }
        let dropped = self.plan.dropped(&followed);
        let mut declared = true;
        if let Some(gap_start_ms) = self.plan.restart_from {
            let connection_id = self.plan.previous_instance.clone().unwrap_or_default();
            for tokens in dropped.chunks(TOKENS_PER_RECORD) {
                let Some(record) = Gaps::closed(
                    ContinuityKind::Disconnect,
                    tokens.to_vec(),
                    gap_start_ms,
                    now,
                    &connection_id,
                    format!(
                        "bridge restarted after an unclean stop of process {connection_id}, which followed these tokens and this process does not: what it had not got acknowledged by Kafka may be missing"
                    ),
                ) else {
                    continue;
                };
                // Acknowledged before the tokens are forgotten from the state.
                if let Err(error) = self
                    .shared
                    .publisher
                    .publish_and_wait(&Outgoing::Gap(record))
                    .await
                {
                    tracing::error!(error = %error, "cannot declare the tokens the previous process followed; kept for the next start");
                    declared = false;
                    break;
                }
            }
        }
        if declared {
            for token in dropped {
                self.persisted_followed.remove(&token);
                self.state_queue.push_back((state::token_key(&token), None));
            }
        }
        self.restart_declared = declared;
        self.flush_state();
        Ok(())
    }

    /// Queues the acknowledged watermark when it advanced, forgets dropped tokens it passed,
    /// and hands queued state entries to the producer.
    fn checkpoint(&mut self) {
        if self.restart_declared {
            let shards: Vec<Option<i64>> = self
                .shards
                .iter()
                .enumerate()
                .filter_map(|(index, slot)| {
                    let handle = slot.as_ref()?;
                    (!handle.tokens.is_empty())
                        .then(|| state::shard_watermark(self.progress.settled(index), handle.floor))
                })
                .collect();
            let watermark = state::watermark(self.watermark, shards);
            if watermark != self.watermark {
                self.watermark = watermark;
                self.run.acked_upstream_ms = watermark;
                self.run.written_ms = now_ms();
                self.state_queue
                    .push_back(state::entry(state::RUN_KEY.to_owned(), &self.run));
            }
            if let Some(watermark) = watermark {
                while self.dropped.front().is_some_and(|(dropped_at, _)| {
                    dropped_at.saturating_add(DROPPED_MARGIN_MS) < watermark
                }) {
                    let Some((_, token)) = self.dropped.pop_front() else {
                        break;
                    };
                    if !self.assignment.contains_key(&token)
                        && self.persisted_followed.remove(&token)
                    {
                        self.state_queue.push_back((state::token_key(&token), None));
                    }
                }
            }
        }
        self.flush_state();
    }

    /// Hands queued state entries to the producer in order, up to a full queue.
    fn flush_state(&mut self) {
        let mut deliveries = Vec::new();
        while let Some((key, payload)) = self.state_queue.front() {
            match self.state.try_send(key, payload.as_deref()) {
                Ok(delivery) => {
                    deliveries.push((key.clone(), delivery));
                    self.state_queue.pop_front();
                }
                Err(SendError::QueueFull) => break,
                Err(SendError::Failed(error)) => {
                    tracing::warn!(key = %key, error = %error, "cannot write a state entry; skipped");
                    self.state_queue.pop_front();
                }
            }
        }
        state::watch(deliveries);
    }

    /// What the stop writes once the supervisor is gone.
    pub(super) fn ending(&mut self) -> Ending {
        Ending {
            run: self.run.clone(),
            watermark: self.watermark,
            shards: self
                .shards
                .iter()
                .enumerate()
                .filter_map(|(index, slot)| {
                    let handle = slot.as_ref()?;
                    (!handle.tokens.is_empty()).then_some((index, handle.floor))
                })
                .collect(),
            pending: std::mem::take(&mut self.state_queue),
            restart_declared: self.restart_declared,
        }
    }

    /// A shard's task ended. Only a stop ends one normally; an error stops the bridge; a
    /// panic (a bug: the task never fails on input) is declared for the shard's tokens and
    /// the shard restarted with the same tokens — unless it keeps panicking, then the bridge
    /// stops (exit 1) and the next start declares the rest.
    async fn shard_ended(
        &mut self,
        joined: Result<(tokio::task::Id, Result<(), BridgeError>), JoinError>,
    ) -> Result<(), BridgeError> {
        match joined {
            Ok((id, Ok(()))) => {
                self.task_shards.remove(&id);
                Ok(())
            }
            Ok((id, Err(error))) => {
                if let Some(shard) = self.task_shards.remove(&id) {
                    tracing::error!(shard, error = %error, "a connection task failed; stopping the bridge");
                    self.declare_dead_shard(shard, format!("connection task failed: {error}"))
                        .await?;
                }
                Err(error)
            }
            Err(join_error) => {
                let Some(shard) = self.task_shards.remove(&join_error.id()) else {
                    return Ok(());
                };
                if !join_error.is_panic() {
                    return Ok(());
                }
                let message = panic_message(join_error);
                let restart = self.may_restart(shard);
                tracing::error!(
                    shard,
                    panic = %message,
                    restarting = restart,
                    "a connection task panicked; its tokens are declared"
                );
                let what = if restart {
                    "restarted"
                } else {
                    "panicked too often; the bridge stops"
                };
                self.declare_dead_shard(
                    shard,
                    format!("connection task panicked ({message}); {what}"),
                )
                .await?;
                if !restart {
                    return Err(BridgeError::ShardPanicked { shard, message });
                }
                self.respawn(shard);
                Ok(())
            }
        }
    }

    /// Opens a gap for every token of a shard whose task died, from the newest upstream time
    /// it read (closed by the restarted task's dump, or by the next start's).
    async fn declare_dead_shard(
        &mut self,
        shard: usize,
        reason: String,
    ) -> Result<(), BridgeError> {
        let Some(Some(handle)) = self.shards.get(shard) else {
            return Ok(());
        };
        let tokens: Vec<String> = handle.tokens.iter().cloned().collect();
        let start = gap_start_ms(&self.shared, &handle.clock);
        let connection_id = format!(
            "{}-s{shard:03}-g{}",
            self.shared.instance,
            handle.clock.generation()
        );
        if let Some(record) = self.shared.gaps.open(
            ContinuityKind::Disconnect,
            tokens,
            start,
            &connection_id,
            reason,
        ) {
            self.shared.publisher.publish(Outgoing::Gap(record)).await?;
        }
        Ok(())
    }

    /// Whether a shard that just panicked may be restarted (and counts the panic).
    fn may_restart(&mut self, shard: usize) -> bool {
        let Some(Some(handle)) = self.shards.get_mut(shard) else {
            return false;
        };
        let now = Instant::now();
        while handle
            .panics
            .front()
            .is_some_and(|at| now.duration_since(*at) > SHARD_RESTART_WINDOW)
        {
            handle.panics.pop_front();
        }
        if handle.panics.len() >= SHARD_RESTARTS {
            return false;
        }
        handle.panics.push_back(now);
        true
    }

    /// A new task for a shard whose task died: same tokens, same clock (connection ids go on
    /// from its generation), a new command channel.
    fn respawn(&mut self, shard: usize) {
        let Some(Some(handle)) = self.shards.get_mut(shard) else {
            return;
        };
        let (commands, receiver) = mpsc::unbounded_channel();
        handle.commands = commands;
        let task = self.tasks.spawn(run_shard(
            Arc::clone(&self.shared),
            shard,
            handle.tokens.clone(),
            receiver,
            Arc::clone(&handle.clock),
            None,
        ));
        self.task_shards.insert(task.id(), shard);
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

    /// Moves tokens out of shards holding more than the cap, a whole market at a time.
    async fn rebalance(&mut self) -> Result<(), BridgeError> {
        let mut moved = Vec::new();
        // The shards markets leave: they do not take them back (an unsubscribe and a
        // resubscribe on one connection would declare a gap for nothing).
        let mut sources: BTreeSet<usize> = BTreeSet::new();
        for (index, handle) in self
            .shards
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| slot.as_mut().map(|handle| (index, handle)))
        {
            let excess = handle.tokens.len().saturating_sub(self.cap);
            if excess == 0 {
                continue;
            }
            let mut leaving: Vec<String> = Vec::new();
            for group in self
                .set
                .group_by_market(handle.tokens.iter().cloned())
                .into_iter()
                .rev()
            {
                if leaving.len() >= excess {
                    break;
                }
                leaving.extend(group);
            }
            for token in &leaving {
                handle.tokens.remove(token);
            }
            sources.insert(index);
            let _ = handle.commands.send(Command::Remove {
                tokens: leaving.clone(),
                moved: true,
            });
            moved.extend(leaving);
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
        let groups = self.set.group_by_market(moved);
        self.place_avoiding(groups, &sources);
        Ok(())
    }

    fn apply(&mut self, delta: Delta) {
        if delta.is_empty() {
            return;
        }
        let mut removals: HashMap<usize, Vec<String>> = HashMap::new();
        // Upstream's clock when the tokens are dropped (`i64::MIN`: nothing read yet).
        let dropped_at = self.shared.latest_upstream_ms.load(Ordering::Relaxed);
        for token in delta.removed {
            if let Some(shard) = self.assignment.remove(&token) {
                self.dropped.push_back((dropped_at, token.clone()));
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
        let added = delta
            .added
            .into_iter()
            .filter(|token| !self.assignment.contains_key(token));
        let groups = self.set.group_by_market(added);
        self.place(groups);
        metrics::tokens_subscribed(self.assignment.len());
    }

    /// Records in the state that `tokens` are followed (once per token).
    fn remember(&mut self, tokens: &[String]) {
        for token in tokens {
            if self.persisted_followed.insert(token.clone()) {
                self.state_queue
                    .push_back((state::token_key(token), Some(b"{}".to_vec())));
            }
        }
        self.flush_state();
    }

    /// Places each group of tokens (a market's) whole: first fit into a shard with room for
    /// all of it, then new shards of up to `cap` tokens each. A market that upstream sends one
    /// message about (a YES book change and its NO complement) is then read on one connection,
    /// whole; only a group larger than the cap itself is split.
    fn place(&mut self, groups: Vec<Vec<String>>) {
        self.place_avoiding(groups, &BTreeSet::new());
    }

    /// [`Self::place`], never into the shards of `avoid`.
    fn place_avoiding(&mut self, groups: Vec<Vec<String>>, avoid: &BTreeSet<usize>) {
        let tokens: Vec<String> = groups.iter().flatten().cloned().collect();
        self.remember(&tokens);
        let mut additions: HashMap<usize, Vec<String>> = HashMap::new();
        let mut new_shards: Vec<BTreeSet<String>> = Vec::new();
        let pieces = groups
            .into_iter()
            .flat_map(|group| {
                group
                    .chunks(self.cap)
                    .map(<[String]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>();
        for piece in pieces {
            let existing = self
                .shards
                .iter_mut()
                .enumerate()
                .find_map(|(index, slot)| {
                    slot.as_mut()
                        .filter(|handle| {
                            !avoid.contains(&index) && handle.tokens.len() + piece.len() <= self.cap
                        })
                        .map(|handle| (index, handle))
                });
            if let Some((index, handle)) = existing {
                for token in &piece {
                    handle.tokens.insert(token.clone());
                    self.assignment.insert(token.clone(), index);
                }
                additions.entry(index).or_default().extend(piece);
                continue;
            }
            // First fit among the new shards too.
            match new_shards
                .iter_mut()
                .find(|shard| shard.len() + piece.len() <= self.cap)
            {
                Some(shard) => shard.extend(piece),
                None => new_shards.push(piece.into_iter().collect()),
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
            let clock = Arc::new(ShardClock::default());
            let (commands, receiver) = mpsc::unbounded_channel();
            let task = self.tasks.spawn(run_shard(
                Arc::clone(&self.shared),
                index,
                tokens.clone(),
                receiver,
                Arc::clone(&clock),
                self.start_gap.clone(),
            ));
            self.task_shards.insert(task.id(), index);
            self.shards.push(Some(ShardHandle {
                commands,
                tokens,
                clock,
                floor: self.watermark,
                panics: VecDeque::new(),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use polytape_model::TopicNames;

    use super::*;
    use crate::config::BridgeTuning;

    /// A supervisor whose Kafka is unreachable (records queue in librdkafka) and whose
    /// connections cannot connect (they retry every few milliseconds).
    fn supervisor() -> Supervisor {
        let producer = SharedProducer::connect("127.0.0.1:1").unwrap();
        let (publisher, _tracker) = Publisher::start(
            producer.clone(),
            Encoders::with_schema_id(1).unwrap(),
            &TopicNames::default(),
            None,
            Arc::new(Progress::default()),
        );
        let (reports, _) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            publisher,
            gaps: Gaps::new(),
            tuning: BridgeTuning {
                reconnect_min_backoff: Duration::from_millis(5),
                reconnect_max_backoff: Duration::from_millis(20),
                ..polytape_runtime::config::defaults_of(&[crate::config::WsBridgeConfig::OWN_KEYS])
                    .unwrap()
            },
            ws_url: "ws://127.0.0.1:1/".to_owned(),
            clob_url: "http://127.0.0.1:1".to_owned(),
            upstream: Upstream::new(
                "test",
                Budgets::new(Duration::from_secs(10), 0.5),
                RetryPolicy::default(),
                CancellationToken::new(),
            )
            .expect("a client"),
            instance: "test".to_owned(),
            lifecycle_seen: Mutex::new(RecentSet::new(10)),
            reports,
            stop: CancellationToken::new(),
            latest_upstream_ms: AtomicI64::new(i64::MIN),
        });
        let plan = RestartPlan::new(&PersistedState::default());
        Supervisor::new(
            shared,
            10,
            TokenFilter::default(),
            Arc::new(Progress::default()),
            StateWriter::new(producer, "state".to_owned()),
            plan,
            state::run_record("test", 0, None, false),
        )
    }

    async fn panic_shard(
        supervisor: &mut Supervisor,
        shard: usize,
    ) -> Result<(tokio::task::Id, Result<(), BridgeError>), JoinError> {
        let handle = supervisor.shards[shard].as_ref().unwrap();
        handle.commands.send(Command::Panic).unwrap();
        tokio::time::timeout(
            Duration::from_secs(30),
            supervisor.tasks.join_next_with_id(),
        )
        .await
        .expect("the shard did not panic")
        .expect("no task")
    }

    #[tokio::test]
    async fn a_panicking_shard_is_declared_and_restarted_until_it_panics_too_often() {
        let mut supervisor = supervisor();
        let shared = Arc::clone(&supervisor.shared);
        supervisor.apply(Delta {
            added: vec!["a".to_owned(), "b".to_owned()],
            removed: Vec::new(),
        });
        assert_eq!(supervisor.tasks.len(), 1);
        for round in 1..=SHARD_RESTARTS {
            let joined = panic_shard(&mut supervisor, 0).await;
            assert!(joined.as_ref().is_err_and(JoinError::is_panic));
            supervisor.shard_ended(joined).await.unwrap();
            assert!(shared.gaps.is_open_for("a") && shared.gaps.is_open_for("b"));
            assert_eq!(shared.gaps.open_count(), round, "one gap per panic");
            assert_eq!(supervisor.tasks.len(), 1, "the shard was restarted");
            assert_eq!(
                supervisor.task_shards.values().copied().collect::<Vec<_>>(),
                [0]
            );
            let handle = supervisor.shards[0].as_ref().unwrap();
            assert_eq!(handle.tokens.len(), 2, "with the same tokens");
        }
        let joined = panic_shard(&mut supervisor, 0).await;
        let outcome = supervisor.shard_ended(joined).await;
        assert!(
            matches!(outcome, Err(BridgeError::ShardPanicked { shard: 0, .. })),
            "{outcome:?}"
        );
        assert_eq!(shared.gaps.open_count(), SHARD_RESTARTS + 1);
        shared.stop.cancel();
    }

    #[tokio::test]
    async fn new_tokens_are_remembered_once_and_dropped_ones_forgotten_after_the_watermark() {
        let mut supervisor = supervisor();
        supervisor.apply(Delta {
            added: vec!["a".to_owned(), "b".to_owned()],
            removed: Vec::new(),
        });
        supervisor.apply(Delta {
            added: vec!["a".to_owned()],
            removed: Vec::new(),
        });
        assert_eq!(supervisor.persisted_followed.len(), 2);
        supervisor
            .shared
            .latest_upstream_ms
            .store(1_000, Ordering::Relaxed);
        supervisor.apply(Delta {
            added: Vec::new(),
            removed: vec!["a".to_owned()],
        });
        assert_eq!(supervisor.dropped.len(), 1);
        // The watermark has not passed the drop by the margin: kept.
        supervisor.progress.advance(&mut HashMap::from([(0, 900)]));
        supervisor.checkpoint();
        assert!(supervisor.persisted_followed.contains("a"));
        supervisor
            .progress
            .advance(&mut HashMap::from([(0, 1_000 + DROPPED_MARGIN_MS)]));
        supervisor.checkpoint();
        assert_eq!(supervisor.watermark, Some(1_000 + DROPPED_MARGIN_MS));
        assert!(supervisor.persisted_followed.contains("a"));
        supervisor
            .progress
            .advance(&mut HashMap::from([(0, 1_001 + DROPPED_MARGIN_MS)]));
        supervisor.checkpoint();
        assert!(!supervisor.persisted_followed.contains("a"));
        assert!(supervisor.persisted_followed.contains("b"));
        supervisor.shared.stop.cancel();
    }

    /// Shard 0 reports the server's refusal of more than `max_assets` per connection, and
    /// the rebalance it causes ends.
    async fn server_refuses_more_than(supervisor: &mut Supervisor, max_assets: usize) {
        tokio::time::timeout(
            Duration::from_secs(30),
            supervisor.report(Report::Refused {
                shard: 0,
                max_assets: Some(max_assets),
            }),
        )
        .await
        .expect("the rebalance finished")
        .unwrap();
    }

    /// The shard of every token of each market, asserting they are one.
    fn shard_of_each_market(supervisor: &Supervisor, markets: &[(String, Vec<String>)]) {
        for (market, tokens) in markets {
            let shards: BTreeSet<usize> = tokens
                .iter()
                .map(|token| supervisor.assignment[token])
                .collect();
            assert_eq!(shards.len(), 1, "{market} is split over shards {shards:?}");
        }
    }

    #[tokio::test]
    async fn a_markets_tokens_share_one_connection_when_placed_and_when_moved() {
        let mut supervisor = supervisor();
        // Token ids that sort apart from their market's: placed in token order, markets 4 and
        // 5 would straddle the first shard (cap 10) and the second.
        let markets: Vec<(String, Vec<String>)> = (0..6)
            .map(|index| {
                (
                    format!("0xm{index}"),
                    vec![format!("t{index}"), format!("u{index}")],
                )
            })
            .collect();
        let mut delta = Delta::default();
        for (market, tokens) in &markets {
            delta.extend(supervisor.set.announced(market, tokens));
        }
        supervisor.apply(delta);
        assert_eq!(supervisor.assignment.len(), 12);
        shard_of_each_market(&supervisor, &markets);
        // A three-token market arriving later: the first shard is full, so it joins the
        // second, whole.
        let third = (
            "0xm6".to_owned(),
            vec!["a6".to_owned(), "b6".to_owned(), "c6".to_owned()],
        );
        let delta = supervisor.set.announced(&third.0, &third.1);
        supervisor.apply(delta);
        let mut all = markets.clone();
        all.push(third);
        shard_of_each_market(&supervisor, &all);
        // The server allows 3 assets per connection: markets move whole.
        server_refuses_more_than(&mut supervisor, 3).await;
        assert!(
            supervisor
                .shards
                .iter()
                .flatten()
                .all(|handle| handle.tokens.len() <= 3)
        );
        shard_of_each_market(&supervisor, &all);
        supervisor.shared.stop.cancel();
    }

    #[tokio::test]
    async fn a_lowered_cap_never_moves_a_market_back_onto_the_shard_it_left() {
        let mut supervisor = supervisor();
        let markets: Vec<(String, Vec<String>)> = [
            ("0xa", vec!["a1", "a2"]),
            ("0xb", vec!["b1", "b2", "b3"]),
            ("0xc", vec!["c1"]),
            ("0xd", vec!["d1", "d2", "d3", "d4"]),
        ]
        .into_iter()
        .map(|(market, tokens)| {
            (
                market.to_owned(),
                tokens.into_iter().map(str::to_owned).collect(),
            )
        })
        .collect();
        let mut delta = Delta::default();
        for (market, tokens) in &markets {
            delta.extend(supervisor.set.announced(market, tokens));
        }
        supervisor.apply(delta);
        assert_eq!(supervisor.shards[0].as_ref().unwrap().tokens.len(), 10);
        // Cap 3: 0xd, 0xc and 0xb leave shard 0 (whole markets, 8 tokens for an excess of 7);
        // 0xc (one token) would fit back beside 0xa, and must not.
        server_refuses_more_than(&mut supervisor, 3).await;
        let first: Vec<&String> = supervisor.shards[0]
            .as_ref()
            .unwrap()
            .tokens
            .iter()
            .collect();
        assert_eq!(first, ["a1", "a2"]);
        // 0xd has more tokens than the cap: the only market split.
        shard_of_each_market(&supervisor, &markets[..3]);
        supervisor.shared.stop.cancel();
    }
}
