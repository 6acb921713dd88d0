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

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use futures::{SinkExt as _, StreamExt as _};
use polytape_model::{ContinuityKind, DeadLetter, LifecycleKind, now_ms};
use polytape_runtime::metrics::InternalEvent as _;
use tokio::{
    net::TcpStream,
    sync::mpsc,
    time::{Instant, sleep, sleep_until},
};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};
use tokio_util::sync::CancellationToken;

use polytape_polymarket::{
    Upstream,
    client::BookAnswer,
    market_channel::{self as parse, MarketEvent, ParseProblem, Stamp},
};

use crate::{
    config::BridgeTuning,
    continuity::Gaps,
    error::BridgeError,
    metrics::{
        ConnectFailed, ConnectionEnded, ConnectionOpened, DeadLettered, DuplicateDropped,
        EventRead, RestBookFetched, SubscriptionRefused,
    },
    publish::{Outgoing, Publisher, SOURCE},
    recent::RecentSet,
    validate::{BookChecker, Integrity},
};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

mod events;
mod resync;
mod session;

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
    /// The budgeted upstream client, for the REST `/book` fallback.
    pub upstream: Upstream,
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

/// Reconnection delays, never ending: the n-th between half and all of
/// `min · 2^n` capped at `max` (backon adds a jitter of up to one step to half-size steps).
pub fn reconnect_delays(tuning: &BridgeTuning) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(tuning.reconnect_min_backoff / 2)
        .with_max_delay(tuning.reconnect_max_backoff / 2)
        .with_jitter()
        .without_max_times()
        .build()
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
        let mut delays = reconnect_delays(&self.shared.tuning);
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
                    self.wait_backoff(&mut delays, &error.to_string()).await;
                    continue;
                }
                Err(_) => {
                    self.wait_backoff(&mut delays, "connection attempt timed out")
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
                        delays = reconnect_delays(&self.shared.tuning);
                    }
                    let delay = delays
                        .next()
                        .unwrap_or(self.shared.tuning.reconnect_max_backoff);
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

    async fn wait_backoff(&mut self, delays: &mut ExponentialBackoff, error: &str) {
        let delay = delays
            .next()
            .unwrap_or(self.shared.tuning.reconnect_max_backoff);
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
            ..polytape_runtime::config::defaults_of(&[crate::config::WsBridgeConfig::OWN_KEYS])
                .unwrap()
        };
        let mut delays = reconnect_delays(&tuning);
        for attempt in 0..100 {
            let base = Duration::from_secs((1_u64 << attempt.min(20)).min(60));
            let delay = delays.next().unwrap();
            assert!(delay >= base / 2 && delay <= base, "{attempt}: {delay:?}");
        }
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
