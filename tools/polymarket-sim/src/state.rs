//! Shared simulator state: the world behind one lock, the live driver, the clock, and the
//! budget/fault/stat machinery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::budget::Budgets;
use crate::config::SimConfig;
use crate::faults::FaultBook;
use crate::live::{LiveState, WsBatch};
use crate::stats::Stats;
use crate::world::{World, WorldParameters};

const HOUR_MS: i64 = 3_600_000;

/// The world and its live state, guarded together so a WebSocket subscription can snapshot
/// books and join the broadcast at one consistent instant.
pub(crate) struct Shared {
    pub(crate) world: World,
    pub(crate) live: LiveState,
}

struct DriverState {
    paused: bool,
    anchor: Instant,
    anchor_operations: u64,
}

pub(crate) struct SimState {
    pub(crate) config: SimConfig,
    shared: RwLock<Shared>,
    pub(crate) broadcaster: broadcast::Sender<WsBatch>,
    pub(crate) stats: Stats,
    pub(crate) faults: FaultBook,
    pub(crate) budgets: Budgets,
    started: Instant,
    pub(crate) live_start_ms: i64,
    driver: Mutex<DriverState>,
    trace_counter: AtomicU64,
    /// Set when the simulator shuts down: WebSocket connections close so the server can stop.
    pub(crate) closing: tokio::sync::watch::Sender<bool>,
}

fn wall_clock_ms() -> i64 {
    polytape_model::now_ms()
}

/// What the live driver has done so far.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct LiveProgress {
    /// Whether the rate-driven driver is paused.
    pub paused: bool,
    /// Live operations applied since start.
    pub operations: u64,
    /// Sequence of the last WebSocket event generated (the simulator's own numbering).
    pub last_ws_seq: u64,
    /// Timestamp of the latest change in the world (never before the history end).
    pub world_clock_ms: i64,
    /// Simulated now (`/clob/time`, in ms).
    pub sim_now_ms: i64,
}

impl SimState {
    pub(crate) fn new(config: SimConfig) -> SimState {
        let wall_now = wall_clock_ms();
        let history_end_ms = config
            .epoch_ms
            .unwrap_or(wall_now - wall_now.rem_euclid(HOUR_MS));
        let live_start_ms = match config.epoch_ms {
            Some(epoch) => epoch,
            None => wall_now.max(history_end_ms),
        };
        let world = World::generate(WorldParameters {
            seed: config.seed,
            markets: config.markets,
            history_days: config.history_days,
            history_end_ms,
            identical_fill_every: config.identical_fill_every,
        });
        let mut live = LiveState::new(
            config.seed,
            config.lifecycle_every,
            config.ws_truth_capacity,
            config
                .scenario_every
                .map(|every| i64::try_from(every.as_millis()).unwrap_or(i64::MAX)),
        );
        let mut world = world;
        world.rebuild_sampler(&mut live);
        let (broadcaster, _) = broadcast::channel(8_192);
        let now = Instant::now();
        SimState {
            faults: FaultBook::new(config.faults.clone()),
            budgets: Budgets::new(config.rate_window),
            config,
            shared: RwLock::new(Shared { world, live }),
            broadcaster,
            stats: Stats::default(),
            started: now,
            live_start_ms,
            driver: Mutex::new(DriverState {
                paused: false,
                anchor: now,
                anchor_operations: 0,
            }),
            trace_counter: AtomicU64::new(0),
            closing: tokio::sync::watch::channel(false).0,
        }
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Shared> {
        self.shared
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Shared> {
        self.shared
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Simulated now: live start plus wall time elapsed, times `--speed`.
    pub(crate) fn sim_now_ms(&self) -> i64 {
        let elapsed = self.started.elapsed().as_secs_f64() * 1_000.0 * self.config.speed;
        self.live_start_ms + elapsed as i64
    }

    pub(crate) fn next_trace_id(&self) -> String {
        let counter = self.trace_counter.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{:016x}", self.config.seed, counter)
    }

    fn timestamp_of_operation(&self, operation: u64) -> i64 {
        if self.config.rate > 0.0 {
            let offset = operation as f64 * 1_000.0 * self.config.speed / self.config.rate;
            self.live_start_ms + offset as i64
        } else {
            // A frozen world driven by POST /_sim/advance: one millisecond per operation
            // (`advance_spacing_us`).
            self.live_start_ms + self.advance_offset_ms(operation)
        }
    }

    /// Milliseconds from the first of `operations` advanced operations to the last.
    fn advance_offset_ms(&self, operations: u64) -> i64 {
        let micros = u128::from(operations) * u128::from(self.config.advance_spacing_us);
        i64::try_from(micros / 1_000).unwrap_or(i64::MAX)
    }

    /// Runs `count` live operations and broadcasts their events. The broadcast happens under
    /// the world lock, so a subscriber that snapshots under the lock sees every later event.
    /// `from_now`: stamp them from simulated now, `advance_spacing_us` apart (an `advance`
    /// with `advance_at_wall_clock`), instead of by their operation number.
    fn generate(&self, count: u64, from_now: bool) {
        if count == 0 {
            return;
        }
        let now_ms = self.sim_now_ms();
        let mut shared = self.write();
        let Shared { world, live } = &mut *shared;
        let first = live.operations_done;
        let events = world.run_live_operations(live, count, &|operation| {
            if from_now {
                now_ms.saturating_add(self.advance_offset_ms(operation - first))
            } else {
                self.timestamp_of_operation(operation)
            }
        });
        if !events.is_empty() {
            // No receivers is fine: nobody is subscribed.
            let _ = self.broadcaster.send(Arc::new(events));
        }
    }

    fn progress_locked(&self, driver: &DriverState) -> LiveProgress {
        let shared = self.read();
        LiveProgress {
            paused: driver.paused,
            operations: shared.live.operations_done,
            last_ws_seq: shared.live.last_ws_seq,
            world_clock_ms: shared.world.world_clock_ms,
            sim_now_ms: self.sim_now_ms(),
        }
    }

    pub(crate) fn progress(&self) -> LiveProgress {
        let driver = self
            .driver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.progress_locked(&driver)
    }

    /// Stops the live driver; returns once no generation is in flight.
    pub(crate) fn pause(&self) -> LiveProgress {
        let mut driver = self
            .driver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        driver.paused = true;
        self.progress_locked(&driver)
    }

    pub(crate) fn resume(&self) -> LiveProgress {
        let mut driver = self
            .driver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        driver.paused = false;
        driver.anchor = Instant::now();
        driver.anchor_operations = self.read().live.operations_done;
        self.progress_locked(&driver)
    }

    /// Runs `operations` live operations now, whatever the rate or pause state.
    pub(crate) fn advance(&self, operations: u64) -> LiveProgress {
        let mut driver = self
            .driver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generate(
            operations,
            self.config.advance_at_wall_clock && self.config.rate <= 0.0,
        );
        driver.anchor = Instant::now();
        driver.anchor_operations = self.read().live.operations_done;
        self.progress_locked(&driver)
    }

    /// One tick of the live driver: catch up with `--rate`.
    fn drive_once(&self) {
        if self.config.rate <= 0.0 {
            return;
        }
        let driver = self
            .driver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if driver.paused {
            return;
        }
        let elapsed = driver.anchor.elapsed().as_secs_f64();
        let target = driver.anchor_operations + (elapsed * self.config.rate) as u64;
        let done = self.read().live.operations_done;
        // Bounded per tick so readers never wait long for the lock.
        let due = target.saturating_sub(done).min(20_000);
        self.generate(due, false);
        drop(driver);
    }
}

/// Runs the live driver until the state is dropped by everyone else.
pub(crate) async fn run_live_driver(state: std::sync::Weak<SimState>) {
    let mut interval = tokio::time::interval(Duration::from_millis(5));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        // Generation is CPU work under a std lock: keep it off the async workers.
        let result = tokio::task::spawn_blocking(move || state.drive_once()).await;
        if result.is_err() {
            tracing::warn!("live driver tick panicked");
        }
    }
}
