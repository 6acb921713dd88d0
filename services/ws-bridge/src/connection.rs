//! One WebSocket connection (a shard of the followed tokens), as one task: connect, subscribe,
//! read and publish, heartbeat, detect silent freezes, resync tokens whose stream broke, and
//! reconnect with exponential backoff and jitter. Every interruption is declared as a gap
//! (see `continuity`) before anything else is attempted.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    hash::{BuildHasher as _, RandomState},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU32, Ordering},
    },
    time::Duration,
};

use futures::{SinkExt as _, StreamExt as _};
use polytape_model::{ContinuityKind, DeadLetter, LifecycleKind, now_ms};
use polytape_runtime::metrics::InternalEvent as _;
use rand::Rng as _;
use tokio::{
    net::TcpStream,
    sync::mpsc,
    time::{Instant, sleep, sleep_until},
};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};
use tokio_util::sync::CancellationToken;

use crate::{
    config::BridgeTuning,
    continuity::Gaps,
    error::BridgeError,
    metrics::{
        ConnectFailed, ConnectionEnded, ConnectionOpened, DeadLettered, DuplicateDropped,
        EventRead, RestBookFetched, SubscriptionRefused,
    },
    parse::{self, MarketEvent, ParseProblem, Stamp},
    publish::{Outgoing, Publisher, SOURCE},
    recent::RecentSet,
    validate::{BookChecker, Integrity},
};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a connection attempt (TCP + TLS + upgrade) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The staleness window is this many times the connection's mean gap between data frames.
const STALENESS_FACTOR: f64 = 30.0;
/// Data frames observed before the adaptive window is trusted over the maximum.
const STALENESS_WARMUP_FRAMES: u32 = 20;
/// REST `/book` requests in flight at once for missing dumps.
const REST_CONCURRENCY: usize = 16;
/// Lifecycle events remembered for dropping the copies other connections receive (they
/// arrive within moments of each other; this bounds the memory, not the window).
pub const LIFECYCLE_REMEMBERED: usize = 10_000;

/// What the supervisor asks a connection to do.
#[derive(Debug)]
pub enum Command {
    /// Follow these tokens too (subscribe without reconnecting).
    Add(Vec<String>),
    /// Stop following these tokens.
    Remove { tokens: Vec<String>, moved: bool },
    /// Tests only: make the shard's task panic, as a bug would.
    #[cfg(test)]
    Panic,
}

/// What a connection tells the supervisor.
#[derive(Debug)]
pub enum Report {
    /// The server refused a subscription on this shard.
    Refused {
        shard: usize,
        max_assets: Option<usize>,
    },
    NewMarket {
        condition_id: String,
        token_ids: Vec<String>,
    },
    MarketResolved {
        condition_id: String,
    },
}

/// What every connection shares.
pub struct Shared {
    pub publisher: Publisher,
    pub gaps: Gaps,
    pub tuning: BridgeTuning,
    pub ws_url: String,
    pub clob_url: String,
    pub http: reqwest::Client,
    /// Distinguishes this process's connection ids from any other run's.
    pub instance: String,
    /// Lifecycle events already published (`new_market` reaches every connection); the most
    /// recent [`LIFECYCLE_REMEMBERED`] only.
    pub lifecycle_seen: Mutex<RecentSet<(LifecycleKind, String, i64)>>,
    pub reports: mpsc::UnboundedSender<Report>,
    pub stop: CancellationToken,
    /// Newest upstream timestamp read on any connection: where a gap starts on a shard that
    /// has read nothing yet (upstream's clock, not ours).
    pub latest_upstream_ms: AtomicI64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Shared")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// Why a session ended.
enum SessionEnd {
    Stopped,
    Lost {
        kind: ContinuityKind,
        label: &'static str,
        detail: String,
        /// The session got its dump: the next reconnect starts the backoff over.
        healthy: bool,
        /// The gap was already declared (before anyone could resubscribe the tokens).
        declared: bool,
    },
    Failed(BridgeError),
}

/// Exponential backoff with jitter: between half and all of `min · 2^attempt`, capped.
pub fn backoff(tuning: &BridgeTuning, attempt: u32) -> Duration {
    let base = tuning
        .reconnect_min_backoff
        .saturating_mul(1_u32 << attempt.min(20))
        .min(tuning.reconnect_max_backoff);
    let factor = rand::rng().random_range(0.5..=1.0);
    base.mul_f64(factor)
}

/// Adapts the freeze threshold to the token set: busy sets are declared frozen after a short
/// silence, quiet ones only after a long one.
#[derive(Debug)]
struct Staleness {
    min: Duration,
    max: Duration,
    mean_gap_secs: f64,
    frames: u32,
    last_frame: Instant,
}

impl Staleness {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            mean_gap_secs: 0.0,
            frames: 0,
            last_frame: Instant::now(),
        }
    }

    fn observe(&mut self, now: Instant) {
        let gap = now.duration_since(self.last_frame).as_secs_f64();
        self.mean_gap_secs = if self.frames == 0 {
            gap
        } else {
            0.95 * self.mean_gap_secs + 0.05 * gap
        };
        self.frames = self.frames.saturating_add(1);
        self.last_frame = now;
    }

    fn window(&self) -> Duration {
        if self.frames < STALENESS_WARMUP_FRAMES {
            return self.max;
        }
        Duration::from_secs_f64((self.mean_gap_secs * STALENESS_FACTOR).min(1e6))
            .clamp(self.min, self.max)
    }

    fn is_stale(&self, now: Instant) -> bool {
        now.duration_since(self.last_frame) > self.window()
    }
}

/// What outlives one task of a shard: the supervisor keeps it, and a task restarted after a
/// panic continues from it (connection ids stay unique, gaps start where reading stopped).
#[derive(Debug)]
pub struct ShardClock {
    /// Newest upstream timestamp read on this shard (any session; `i64::MIN`: none yet).
    last_upstream_ms: AtomicI64,
    /// Sessions started (the `g<generation>` of connection ids).
    generation: AtomicU32,
}

impl Default for ShardClock {
    fn default() -> Self {
        Self {
            last_upstream_ms: AtomicI64::new(i64::MIN),
            generation: AtomicU32::new(0),
        }
    }
}

impl ShardClock {
    pub fn last_upstream_ms(&self) -> Option<i64> {
        match self.last_upstream_ms.load(Ordering::Relaxed) {
            i64::MIN => None,
            latest => Some(latest),
        }
    }

    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Relaxed)
    }
}

/// A gap the shard declares for its tokens before anything else (at the start after an
/// unclean stop of the previous process: closed by the shard's dumps like a reconnect gap).
#[derive(Debug, Clone)]
pub struct StartGap {
    pub kind: ContinuityKind,
    pub gap_start_ms: i64,
    pub connection_id: String,
    pub reason: String,
}

/// One shard's task: runs until stopped; never fails on upstream input.
pub async fn run_shard(
    shared: Arc<Shared>,
    shard: usize,
    tokens: BTreeSet<String>,
    commands: mpsc::UnboundedReceiver<Command>,
    clock: Arc<ShardClock>,
    start_gap: Option<StartGap>,
) -> Result<(), BridgeError> {
    let mut connection = Shard {
        shared,
        shard,
        tokens,
        commands,
        clock,
    };
    if let Some(gap) = start_gap {
        let tokens: Vec<String> = connection.tokens.iter().cloned().collect();
        if let Some(record) = connection.shared.gaps.open(
            gap.kind,
            tokens,
            gap.gap_start_ms,
            &gap.connection_id,
            gap.reason,
        ) {
            connection
                .shared
                .publisher
                .publish(Outgoing::Gap(record))
                .await?;
        }
    }
    connection.run().await
}

struct Shard {
    shared: Arc<Shared>,
    shard: usize,
    tokens: BTreeSet<String>,
    commands: mpsc::UnboundedReceiver<Command>,
    clock: Arc<ShardClock>,
}

impl Shard {
    async fn run(&mut self) -> Result<(), BridgeError> {
        let mut attempt: u32 = 0;
        loop {
            // Commands queued while disconnected change what the next session subscribes.
            while let Ok(command) = self.commands.try_recv() {
                self.apply_offline(command);
            }
            if self.shared.stop.is_cancelled() {
                return Ok(());
            }
            if self.tokens.is_empty() {
                tokio::select! {
                    () = self.shared.stop.cancelled() => return Ok(()),
                    command = self.commands.recv() => match command {
                        Some(command) => self.apply_offline(command),
                        None => return Ok(()),
                    },
                }
                continue;
            }
            let generation = self.clock.generation.fetch_add(1, Ordering::Relaxed) + 1;
            let connection_id = format!(
                "{}-s{:03}-g{}",
                self.shared.instance, self.shard, generation
            );
            let connected = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_tungstenite::connect_async(self.shared.ws_url.as_str()),
            )
            .await;
            let socket = match connected {
                Ok(Ok((socket, _))) => socket,
                Ok(Err(error)) => {
                    self.wait_backoff(&mut attempt, &error.to_string()).await;
                    continue;
                }
                Err(_) => {
                    self.wait_backoff(&mut attempt, "connection attempt timed out")
                        .await;
                    continue;
                }
            };
            let end = self.session(socket, &connection_id).await;
            match end {
                SessionEnd::Stopped => return Ok(()),
                SessionEnd::Failed(error) => return Err(error),
                SessionEnd::Lost {
                    kind,
                    label,
                    detail,
                    healthy,
                    declared,
                } => {
                    ConnectionEnded {
                        connection_id: &connection_id,
                        reason: label,
                        detail: &detail,
                        reconnecting: true,
                    }
                    .emit();
                    if !declared {
                        self.declare_gap(kind, &connection_id, detail).await?;
                    }
                    if healthy {
                        attempt = 0;
                    }
                    let delay = backoff(&self.shared.tuning, attempt);
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        () = self.shared.stop.cancelled() => return Ok(()),
                        () = sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Opens a gap for every token of this shard and publishes it.
    async fn declare_gap(
        &self,
        kind: ContinuityKind,
        connection_id: &str,
        reason: String,
    ) -> Result<(), BridgeError> {
        let tokens: Vec<String> = self.tokens.iter().cloned().collect();
        let start = self.gap_start_ms();
        match self
            .shared
            .gaps
            .open(kind, tokens, start, connection_id, reason)
        {
            Some(record) => self.shared.publisher.publish(Outgoing::Gap(record)).await,
            None => Ok(()),
        }
    }

    async fn wait_backoff(&mut self, attempt: &mut u32, error: &str) {
        let delay = backoff(&self.shared.tuning, *attempt);
        *attempt = attempt.saturating_add(1);
        ConnectFailed {
            shard: self.shard,
            error,
            retry_in_ms: delay.as_millis(),
        }
        .emit();
        tokio::select! {
            () = self.shared.stop.cancelled() => {}
            () = sleep(delay) => {}
        }
    }

    fn apply_offline(&mut self, command: Command) {
        match command {
            #[cfg(test)]
            #[allow(clippy::panic)]
            Command::Panic => panic!("shard {} asked to panic by a test", self.shard),
            Command::Add(tokens) => self.tokens.extend(tokens),
            Command::Remove { tokens, moved } => {
                for token in tokens {
                    self.tokens.remove(&token);
                    if !moved {
                        // Not followed any more: its gaps have nothing left to wait for.
                        let closed = self.shared.gaps.recovered(&token, None);
                        for record in closed {
                            // Best effort while offline: the publisher queues without the socket.
                            let publisher = self.shared.publisher.clone();
                            tokio::spawn(async move {
                                let _ = publisher.publish(Outgoing::Gap(record)).await;
                            });
                        }
                    }
                }
            }
        }
    }

    async fn session(&mut self, mut socket: Socket, connection_id: &str) -> SessionEnd {
        let tokens: Vec<String> = self.tokens.iter().cloned().collect();
        let subscribe = serde_json::json!({
            "assets_ids": tokens,
            "type": "market",
            "initial_dump": true,
            "custom_feature_enabled": true,
        });
        ConnectionOpened {
            connection_id,
            tokens: tokens.len(),
        }
        .emit();
        if let Err(error) = socket.send(Message::text(subscribe.to_string())).await {
            return SessionEnd::Lost {
                kind: ContinuityKind::Disconnect,
                label: "send_failed",
                detail: format!("subscription could not be sent: {error}"),
                healthy: false,
                declared: false,
            };
        }
        let mut session = Session {
            connection_id: connection_id.to_owned(),
            sequence: 0,
            bad_frames: 0,
            awaiting_dump: tokens.iter().cloned().collect(),
            dump_deadline: Some(Instant::now() + self.shared.tuning.dump_timeout),
            checker: BookChecker::new(),
            previous_event: None,
            hasher: RandomState::new(),
            got_dump: false,
            resubscribed: HashMap::new(),
        };
        let end = self.session_loop(&mut socket, &mut session).await;
        if matches!(end, SessionEnd::Stopped) {
            // Declared open until the next start's dumps: nothing is read meanwhile.
            let tokens: Vec<String> = self.tokens.iter().cloned().collect();
            let start = self.gap_start_ms();
            if let Some(record) = self.shared.gaps.open(
                ContinuityKind::Disconnect,
                tokens,
                start,
                connection_id,
                "bridge stopped".to_owned(),
            ) {
                let _ = self.shared.publisher.publish(Outgoing::Gap(record)).await;
            }
            let _ = socket.close(None).await;
            ConnectionEnded {
                connection_id,
                reason: "stopped",
                detail: "",
                reconnecting: false,
            }
            .emit();
        } else {
            let _ = socket.close(None).await;
        }
        end
    }

    async fn session_loop(&mut self, socket: &mut Socket, session: &mut Session) -> SessionEnd {
        let tuning = self.shared.tuning.clone();
        let tick = tuning.ping_interval.min(Duration::from_secs(1));
        let mut watchdog = tokio::time::interval(tick);
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_ping = Instant::now() + tuning.ping_interval;
        let mut awaiting_pong_since: Option<Instant> = None;
        let mut staleness = Staleness::new(tuning.staleness_min, tuning.staleness_max);
        loop {
            let dump_deadline = session.dump_deadline;
            tokio::select! {
                biased;
                () = self.shared.stop.cancelled() => return SessionEnd::Stopped,
                command = self.commands.recv() => {
                    let Some(command) = command else {
                        return SessionEnd::Stopped;
                    };
                    if let Err(end) = self.apply_online(socket, session, command).await {
                        return end;
                    }
                }
                message = socket.next() => {
                    let now = Instant::now();
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            if text.as_str().trim() == "PONG" {
                                awaiting_pong_since = None;
                                continue;
                            }
                            staleness.observe(now);
                            if let Err(end) = self.frame(socket, session, text.as_str()).await {
                                return end;
                            }
                        }
                        Some(Ok(Message::Binary(bytes))) => {
                            staleness.observe(now);
                            let text = String::from_utf8_lossy(&bytes).into_owned();
                            if let Err(error) = self
                                .dead_letter(session, "binary_frame", "binary frame on a text channel", text)
                                .await
                            {
                                return SessionEnd::Failed(error);
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            return SessionEnd::Lost {
                                kind: ContinuityKind::Disconnect,
                                label: "closed_by_server",
                                detail: format!("closed by the server ({frame:?})"),
                                healthy: session.got_dump,
                                declared: false,
                            };
                        }
                        Some(Ok(_)) => {}
                        Some(Err(error)) => {
                            return SessionEnd::Lost {
                                kind: ContinuityKind::Disconnect,
                                label: "socket_error",
                                detail: format!("socket error: {error}"),
                                healthy: session.got_dump,
                                declared: false,
                            };
                        }
                        None => {
                            return SessionEnd::Lost {
                                kind: ContinuityKind::Disconnect,
                                label: "socket_closed",
                                detail: "socket closed".to_owned(),
                                healthy: session.got_dump,
                                declared: false,
                            };
                        }
                    }
                }
                _ = watchdog.tick() => {
                    let now = Instant::now();
                    if let Some(since) = awaiting_pong_since
                        && now.duration_since(since) > tuning.pong_timeout
                    {
                        return SessionEnd::Lost {
                            kind: ContinuityKind::Disconnect,
                            label: "pong_timeout",
                            detail: format!("no PONG within {:?}", tuning.pong_timeout),
                            healthy: session.got_dump,
                            declared: false,
                        };
                    }
                    if staleness.is_stale(now) {
                        return SessionEnd::Lost {
                            kind: ContinuityKind::Freeze,
                            label: "freeze",
                            detail: format!(
                                "no data for {:?} while the connection stayed up (staleness window {:?})",
                                now.duration_since(staleness.last_frame),
                                staleness.window()
                            ),
                            healthy: session.got_dump,
                            declared: false,
                        };
                    }
                    if now >= next_ping {
                        next_ping = now + tuning.ping_interval;
                        if awaiting_pong_since.is_none() {
                            awaiting_pong_since = Some(now);
                        }
                        if let Err(error) = socket.send(Message::text("PING")).await {
                            return SessionEnd::Lost {
                                kind: ContinuityKind::Disconnect,
                                label: "send_failed",
                                detail: format!("PING could not be sent: {error}"),
                                healthy: session.got_dump,
                                declared: false,
                            };
                        }
                    }
                }
                () = async {
                    match dump_deadline {
                        Some(deadline) => sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Err(error) = self.fetch_missing_books(session).await {
                        return SessionEnd::Failed(error);
                    }
                }
            }
        }
    }

    async fn send_operation(
        socket: &mut Socket,
        operation: &str,
        tokens: &[String],
    ) -> Result<(), SessionEnd> {
        let message = if operation == "subscribe" {
            serde_json::json!({
                "operation": "subscribe",
                "assets_ids": tokens,
                "initial_dump": true,
                "custom_feature_enabled": true,
            })
        } else {
            serde_json::json!({"operation": operation, "assets_ids": tokens})
        };
        socket
            .send(Message::text(message.to_string()))
            .await
            .map_err(|error| SessionEnd::Lost {
                kind: ContinuityKind::Disconnect,
                label: "send_failed",
                detail: format!("{operation} could not be sent: {error}"),
                healthy: true,
                declared: false,
            })
    }

    async fn apply_online(
        &mut self,
        socket: &mut Socket,
        session: &mut Session,
        command: Command,
    ) -> Result<(), SessionEnd> {
        match command {
            #[cfg(test)]
            #[allow(clippy::panic)]
            Command::Panic => panic!("shard {} asked to panic by a test", self.shard),
            Command::Add(tokens) => {
                let new: Vec<String> = tokens
                    .into_iter()
                    .filter(|token| !self.tokens.contains(token))
                    .collect();
                if new.is_empty() {
                    return Ok(());
                }
                self.tokens.extend(new.iter().cloned());
                session.awaiting_dump.extend(new.iter().cloned());
                if session.dump_deadline.is_none() {
                    session.dump_deadline = Some(Instant::now() + self.shared.tuning.dump_timeout);
                }
                Self::send_operation(socket, "subscribe", &new).await
            }
            Command::Remove { tokens, moved } => {
                let removed: Vec<String> = tokens
                    .into_iter()
                    .filter(|token| self.tokens.remove(token))
                    .collect();
                for token in &removed {
                    session.checker.remove(token);
                    session.awaiting_dump.remove(token);
                    session.resubscribed.remove(token);
                    if !moved {
                        for record in self.shared.gaps.recovered(token, None) {
                            self.publish(Outgoing::Gap(record)).await?;
                        }
                    }
                }
                if removed.is_empty() {
                    return Ok(());
                }
                Self::send_operation(socket, "unsubscribe", &removed).await
            }
        }
    }

    async fn publish(&self, record: Outgoing) -> Result<(), SessionEnd> {
        self.shared
            .publisher
            .publish_from(Some(self.shard), record)
            .await
            .map_err(SessionEnd::Failed)
    }

    async fn dead_letter(
        &self,
        session: &mut Session,
        reason: &'static str,
        error: &str,
        payload: String,
    ) -> Result<(), BridgeError> {
        DeadLettered {
            connection_id: &session.connection_id,
            reason,
            error,
        }
        .emit();
        // Each occurrence is its own dead letter (the same garbage twice is two problems): the
        // origin numbers the connection's bad frames.
        session.bad_frames += 1;
        let origin = format!(
            "ws {} after sequence {}, bad frame {}",
            session.connection_id, session.sequence, session.bad_frames
        );
        self.shared
            .publisher
            .publish(Outgoing::Dead(DeadLetter::from_upstream(
                SOURCE,
                origin,
                format!("{reason}: {error}"),
                payload.into_bytes(),
                now_ms(),
            )))
            .await
    }

    fn saw_upstream_time(&mut self, timestamp_ms: i64) {
        let previous = self
            .clock
            .last_upstream_ms
            .fetch_max(timestamp_ms, Ordering::Relaxed);
        if timestamp_ms > previous {
            self.shared
                .latest_upstream_ms
                .fetch_max(timestamp_ms, Ordering::Relaxed);
        }
    }

    /// Where a gap of this shard starts (see [`gap_start_ms`]).
    fn gap_start_ms(&self) -> i64 {
        gap_start_ms(&self.shared, &self.clock)
    }

    async fn frame(
        &mut self,
        socket: &mut Socket,
        session: &mut Session,
        text: &str,
    ) -> Result<(), SessionEnd> {
        let received_ms = now_ms();
        let events = match parse::split_frame(text) {
            Ok(events) => events,
            Err(problem) => {
                return self
                    .dead_letter(
                        session,
                        "garbage_frame",
                        &problem.to_string(),
                        text.to_owned(),
                    )
                    .await
                    .map_err(SessionEnd::Failed);
            }
        };
        for raw in events {
            let hash = session.hasher.hash_one(raw);
            if session.previous_event == Some(hash) {
                // The same bytes twice in a row carry nothing new (ws_duplicate upstream):
                // every event carries its time, and books/changes are absolute.
                DuplicateDropped {
                    connection_id: &session.connection_id,
                }
                .emit();
                continue;
            }
            session.previous_event = Some(hash);
            let stamp = Stamp {
                connection_id: &session.connection_id,
                sequence: session.sequence + 1,
                received_ms,
            };
            match parse::parse_event(raw, stamp) {
                Ok(event) => self.event(socket, session, event).await?,
                Err(problem) => {
                    let reason = match problem {
                        ParseProblem::UnknownEventType(_) => "unknown_event_type",
                        _ => "invalid_event",
                    };
                    self.dead_letter(session, reason, &problem.to_string(), raw.to_owned())
                        .await
                        .map_err(SessionEnd::Failed)?;
                }
            }
        }
        Ok(())
    }

    async fn event(
        &mut self,
        socket: &mut Socket,
        session: &mut Session,
        event: MarketEvent,
    ) -> Result<(), SessionEnd> {
        EventRead {
            event_type: event.event_type(),
        }
        .emit();
        match event {
            MarketEvent::Book(book) => {
                if !self.tokens.contains(&book.token_id) {
                    return Ok(());
                }
                session.sequence += 1;
                self.saw_upstream_time(book.timestamp_ms);
                session.checker.snapshot(&book);
                if session.awaiting_dump.remove(&book.token_id) {
                    session.got_dump = session.got_dump || session.awaiting_dump.is_empty();
                }
                let closed = match session.resubscribed.get_mut(&book.token_id) {
                    // Until the resubscription settles, a book may be one the stream carried
                    // before upstream applied the unsubscribe: the gap stays open and will
                    // end at the newest book, the dump included (see `Resubscription`).
                    Some(resubscription) => {
                        resubscription.newest_book_ms =
                            resubscription.newest_book_ms.max(Some(book.timestamp_ms));
                        Vec::new()
                    }
                    None => self
                        .shared
                        .gaps
                        .recovered(&book.token_id, Some(book.timestamp_ms)),
                };
                self.publish(Outgoing::Book(book)).await?;
                for record in closed {
                    self.publish(Outgoing::Gap(record)).await?;
                }
            }
            MarketEvent::PriceChanges(mut changes) => {
                changes.retain(|change| self.tokens.contains(&change.token_id));
                if changes.is_empty() {
                    return Ok(());
                }
                session.sequence += 1;
                for change in changes {
                    self.saw_upstream_time(change.timestamp_ms);
                    let integrity = session.checker.change(&change);
                    let token = change.token_id.clone();
                    self.publish(Outgoing::Change(change)).await?;
                    self.check(socket, session, &token, integrity).await?;
                }
            }
            MarketEvent::LastTrade(trade) => {
                if !self.tokens.contains(&trade.token_id) {
                    return Ok(());
                }
                session.sequence += 1;
                self.saw_upstream_time(trade.timestamp_ms);
                let integrity = session
                    .checker
                    .event_time(&trade.token_id, trade.timestamp_ms);
                let token = trade.token_id.clone();
                self.publish(Outgoing::Trade(trade)).await?;
                self.check(socket, session, &token, integrity).await?;
            }
            MarketEvent::TickSizeChange(tick) => {
                if !self.tokens.contains(&tick.token_id) {
                    return Ok(());
                }
                session.sequence += 1;
                self.saw_upstream_time(tick.timestamp_ms);
                let integrity = session
                    .checker
                    .event_time(&tick.token_id, tick.timestamp_ms);
                let token = tick.token_id.clone();
                self.publish(Outgoing::Tick(tick)).await?;
                self.check(socket, session, &token, integrity).await?;
            }
            MarketEvent::BestBidAsk(quote) => {
                if !self.tokens.contains(&quote.token_id) {
                    return Ok(());
                }
                session.sequence += 1;
                self.saw_upstream_time(quote.timestamp_ms);
                let integrity = session
                    .checker
                    .event_time(&quote.token_id, quote.timestamp_ms);
                let token = quote.token_id.clone();
                self.publish(Outgoing::Quote(quote)).await?;
                self.check(socket, session, &token, integrity).await?;
            }
            MarketEvent::Lifecycle(lifecycle) => {
                let first_sighting = self
                    .shared
                    .lifecycle_seen
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert((
                        lifecycle.kind,
                        lifecycle.condition_id.clone(),
                        lifecycle.timestamp_ms,
                    ));
                if !first_sighting {
                    return Ok(());
                }
                session.sequence += 1;
                let report = match lifecycle.kind {
                    LifecycleKind::NewMarket => Report::NewMarket {
                        condition_id: lifecycle.condition_id.clone(),
                        token_ids: lifecycle.token_ids.clone(),
                    },
                    LifecycleKind::MarketResolved => Report::MarketResolved {
                        condition_id: lifecycle.condition_id.clone(),
                    },
                };
                self.publish(Outgoing::Lifecycle(lifecycle)).await?;
                let _ = self.shared.reports.send(report);
            }
            MarketEvent::SubscriptionRefused {
                message,
                max_assets,
            } => {
                SubscriptionRefused {
                    connection_id: &session.connection_id,
                    message: &message,
                    max_assets,
                }
                .emit();
                // Declared before the supervisor can move tokens elsewhere, so the dump that
                // another connection gets for them closes this gap.
                let detail = format!("subscription refused: {message}");
                self.declare_gap(
                    ContinuityKind::SubscriptionRefused,
                    &session.connection_id,
                    detail.clone(),
                )
                .await
                .map_err(SessionEnd::Failed)?;
                let _ = self.shared.reports.send(Report::Refused {
                    shard: self.shard,
                    max_assets,
                });
                return Err(SessionEnd::Lost {
                    kind: ContinuityKind::SubscriptionRefused,
                    label: "subscription_refused",
                    detail,
                    healthy: false,
                    declared: true,
                });
            }
            MarketEvent::ServerError { code, message } => {
                let payload =
                    serde_json::json!({"event_type": "error", "code": code, "error": message});
                self.dead_letter(session, "server_error", &message, payload.to_string())
                    .await
                    .map_err(SessionEnd::Failed)?;
            }
        }
        Ok(())
    }

    /// A token whose stream broke is resubscribed for a fresh dump, and the gap declared.
    async fn check(
        &mut self,
        socket: &mut Socket,
        session: &mut Session,
        token: &str,
        integrity: Integrity,
    ) -> Result<(), SessionEnd> {
        let Integrity::Broken {
            reason,
            valid_until_ms,
        } = integrity
        else {
            return Ok(());
        };
        if let Some(record) = self.shared.gaps.open(
            ContinuityKind::Resync,
            vec![token.to_owned()],
            valid_until_ms,
            &session.connection_id,
            reason,
        ) {
            self.publish(Outgoing::Gap(record)).await?;
        }
        session.checker.mark_resyncing(token);
        session.awaiting_dump.insert(token.to_owned());
        let settles_at = Instant::now() + self.shared.tuning.dump_timeout;
        // A second resubscription of the token opens a second window: settle after it.
        session
            .resubscribed
            .entry(token.to_owned())
            .or_insert(Resubscription {
                settles_at,
                newest_book_ms: None,
            })
            .settles_at = settles_at;
        session.dump_deadline = Some(
            session
                .dump_deadline
                .map_or(settles_at, |deadline| deadline.min(settles_at)),
        );
        let tokens = [token.to_owned()];
        Self::send_operation(socket, "unsubscribe", &tokens).await?;
        Self::send_operation(socket, "subscribe", &tokens).await
    }

    /// Resubscriptions whose settling time passed close their gaps at the newest book they
    /// saw (those that saw none stay awaiting, for REST); returns when the next one settles.
    async fn settle_resubscriptions(
        &mut self,
        session: &mut Session,
    ) -> Result<Option<Instant>, BridgeError> {
        let now = Instant::now();
        let settled: Vec<(String, Option<i64>)> = session
            .resubscribed
            .iter()
            .filter(|(_, resubscription)| resubscription.settles_at <= now)
            .map(|(token, resubscription)| (token.clone(), resubscription.newest_book_ms))
            .collect();
        for (token, newest_book_ms) in settled {
            session.resubscribed.remove(&token);
            let Some(book_ms) = newest_book_ms else {
                continue;
            };
            for record in self.shared.gaps.recovered(&token, Some(book_ms)) {
                self.shared.publisher.publish(Outgoing::Gap(record)).await?;
            }
        }
        Ok(session
            .resubscribed
            .values()
            .map(|resubscription| resubscription.settles_at)
            .min())
    }

    /// Resubscriptions settle, then tokens still without a book when the dump deadline
    /// passes get one from REST `/book`.
    async fn fetch_missing_books(&mut self, session: &mut Session) -> Result<(), BridgeError> {
        session.dump_deadline = self.settle_resubscriptions(session).await?;
        // A token whose resubscription has not settled may still get its dump: REST later.
        let missing: Vec<String> = session
            .awaiting_dump
            .iter()
            .filter(|token| !session.resubscribed.contains_key(*token))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let base = self.shared.clob_url.trim_end_matches('/').to_owned();
        let http = self.shared.http.clone();
        let fetches = futures::stream::iter(missing.into_iter().map(|token| {
            let http = http.clone();
            let url = format!("{base}/book");
            async move {
                let answer = http.get(&url).query(&[("token_id", &token)]).send().await;
                let outcome = match answer {
                    Ok(response) => {
                        let status = response.status();
                        match response.text().await {
                            Ok(body) if status.is_success() => Ok(Some(body)),
                            Ok(_) if status == reqwest::StatusCode::NOT_FOUND => Ok(None),
                            Ok(body) => Err(format!("HTTP {status}: {body}")),
                            Err(error) => Err(error.to_string()),
                        }
                    }
                    Err(error) => Err(error.to_string()),
                };
                (token, outcome)
            }
        }))
        .buffer_unordered(REST_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
        let mut retry = false;
        for (token, outcome) in fetches {
            if !session.awaiting_dump.contains(&token) {
                // The dump arrived while we were fetching; it is the authority.
                continue;
            }
            match outcome {
                Ok(Some(body)) => {
                    let stamp = Stamp {
                        connection_id: &session.connection_id,
                        sequence: session.sequence + 1,
                        received_ms: now_ms(),
                    };
                    match parse::parse_rest_book(&body, stamp) {
                        Ok(book) if book.token_id == token => {
                            RestBookFetched {
                                token_id: &token,
                                outcome: "book",
                            }
                            .emit();
                            session.sequence += 1;
                            session.awaiting_dump.remove(&token);
                            self.saw_upstream_time(book.timestamp_ms);
                            session.checker.snapshot(&book);
                            let closed =
                                self.shared.gaps.recovered(&token, Some(book.timestamp_ms));
                            self.shared
                                .publisher
                                .publish_from(Some(self.shard), Outgoing::Book(book))
                                .await?;
                            for record in closed {
                                self.shared.publisher.publish(Outgoing::Gap(record)).await?;
                            }
                        }
                        Ok(_) | Err(_) => {
                            RestBookFetched {
                                token_id: &token,
                                outcome: "invalid",
                            }
                            .emit();
                            self.dead_letter(
                                session,
                                "invalid_rest_book",
                                "unusable /book answer",
                                body,
                            )
                            .await?;
                            retry = true;
                        }
                    }
                }
                Ok(None) => {
                    // No order book upstream (closed or unknown token): nothing to wait for.
                    RestBookFetched {
                        token_id: &token,
                        outcome: "no_book",
                    }
                    .emit();
                    session.awaiting_dump.remove(&token);
                    for record in self.shared.gaps.recovered(&token, None) {
                        self.shared.publisher.publish(Outgoing::Gap(record)).await?;
                    }
                }
                Err(error) => {
                    RestBookFetched {
                        token_id: &token,
                        outcome: "failed",
                    }
                    .emit();
                    tracing::debug!(token_id = %token, error = %error, "rest /book failed; retrying later");
                    retry = true;
                }
            }
        }
        if session.awaiting_dump.is_empty() {
            session.got_dump = true;
        } else if retry {
            let retry_at = Instant::now() + self.shared.tuning.dump_timeout;
            session.dump_deadline = Some(
                session
                    .dump_deadline
                    .map_or(retry_at, |deadline| deadline.min(retry_at)),
            );
        }
        Ok(())
    }
}

/// Where a gap of a shard starts: the newest upstream time it read, else the newest any
/// connection read, else our clock (nothing read yet at all).
pub fn gap_start_ms(shared: &Shared, clock: &ShardClock) -> i64 {
    clock.last_upstream_ms().unwrap_or_else(|| {
        match shared.latest_upstream_ms.load(Ordering::Relaxed) {
            i64::MIN => now_ms(),
            latest => latest,
        }
    })
}

/// State of one connection's life.
struct Session {
    connection_id: String,
    /// Last sequence number stamped on a record of this connection (dense: 1, 2, 3, …).
    sequence: i64,
    /// Frames of this connection dead-lettered so far.
    bad_frames: u64,
    awaiting_dump: HashSet<String>,
    dump_deadline: Option<Instant>,
    checker: BookChecker,
    previous_event: Option<u64>,
    hasher: RandomState,
    got_dump: bool,
    /// Tokens resynced by unsubscribing and subscribing again, until that settles.
    resubscribed: HashMap<String, Resubscription>,
}

/// A resync in progress. Upstream drops a token's events between applying the unsubscribe
/// and sending the new subscription's dump, and a `book` the stream carried before the
/// unsubscribe (one follows every trade) cannot be told from that dump. So the gap is not
/// closed by the first book: it stays open for the dump timeout and then ends at the newest
/// book seen (the dump's time or later), so every event dropped in between lies inside it. A
/// resubscription that saw no book at all falls back to REST `/book` like a missing dump.
#[derive(Debug)]
struct Resubscription {
    settles_at: Instant,
    newest_book_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let tuning = BridgeTuning {
            reconnect_min_backoff: Duration::from_secs(1),
            reconnect_max_backoff: Duration::from_secs(60),
            ..BridgeTuning::default()
        };
        for attempt in 0..10 {
            let base = Duration::from_secs((1_u64 << attempt).min(60));
            let delay = backoff(&tuning, attempt);
            assert!(delay >= base / 2 && delay <= base, "{attempt}: {delay:?}");
        }
        assert!(backoff(&tuning, 100) <= Duration::from_secs(60));
    }

    #[test]
    fn staleness_window_follows_the_event_rate_within_bounds() {
        let mut staleness = Staleness::new(Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!(staleness.window(), Duration::from_secs(60));
        let start = staleness.last_frame;
        for index in 1..=40_u32 {
            staleness.observe(start + Duration::from_millis(u64::from(index) * 10));
        }
        // 10 ms between frames × 30 is below the minimum.
        assert_eq!(staleness.window(), Duration::from_secs(2));
        let mut quiet = Staleness::new(Duration::from_secs(2), Duration::from_secs(60));
        let start = quiet.last_frame;
        for index in 1..=40_u32 {
            quiet.observe(start + Duration::from_secs(u64::from(index) * 5));
        }
        assert_eq!(quiet.window(), Duration::from_secs(60));
    }
}
