//! Issue #23: upstream restarts (the simulator restarted with the same seed, as `cargo xtask
//! down` + `cargo xtask demo` do) must not make the builder declare book mismatches.
//!
//! The restarted simulator is a *new world*: the same history, then its own live operations
//! from the history's last book on. The bridge's new connection dumps every book (`book` events
//! stamped with the time of the book's last change — a time in the history, older than the
//! previous world's live events) and the new world's changes follow. The builder must take the
//! dump as the book, ignore whatever of the old world it still reads after it, and validate the
//! new world's changes against it: no `BOOK_MISMATCH`, and every book equal to the new world's
//! truth.
//!
//! The book pipeline is driven as the Kafka loop drives it (`BookMerge` over a snapshots and a
//! changes partition, then `BookEngine`), without the network, in the interleavings the two
//! topics produce: at the live edge in production order, with the new connection's first
//! changes read before its dump, and as a backlog read in chunks (a builder restarted from an
//! older checkpoint, or from nothing). Worlds: the new world's live time after the old one's
//! (the demo: live time is the wall clock), before it (times going back, equal milliseconds
//! included), and a world whose history ends an hour later (dumps newer than the old events).
//! No stack needed: the simulator runs in-process.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::collections::BTreeMap;

use polytape_candle_builder::{
    book::{BookEngine, BookSettings, Skipped},
    merge::{BookEvent, BookInput, BookMerge},
};
use polytape_model::{BookLevel, BookSnapshot, Continuity, ContinuityKind, PriceChange};

const SEED: u64 = 23;
const MARKETS: u32 = 8;
const EPOCH_MS: i64 = 1_774_058_400_000;
/// Live operations of the first world (one simulated millisecond each) and of the second.
const FIRST_OPERATIONS: u64 = 3_000;
const SECOND_OPERATIONS: u64 = 2_000;

fn units(levels: &[BookLevel]) -> Vec<(i64, i64)> {
    levels
        .iter()
        .map(|level| {
            let price = polytape_model::micros::to_micros("price", level.price).unwrap();
            let size = polytape_model::micros::to_micros("size", level.size).unwrap();
            (price, size)
        })
        .collect()
}

/// A book's `(bids, asks)` in scale-6 units, best first.
type Sides = (Vec<(i64, i64)>, Vec<(i64, i64)>);

/// What one run of the bridge published: both topics in production order, and the truth.
struct World {
    snapshots: Vec<BookSnapshot>,
    changes: Vec<PriceChange>,
    /// Every token's book at the end of the run, `(bids, asks)` best first.
    truth: BTreeMap<String, Sides>,
}

/// Runs a simulator world and records what a bridge subscribed to every open token publishes:
/// the initial dump, then the live operations' `book` and `price_change` events, on one
/// connection. Live times are moved by `shift_ms` (the demo's simulator starts live time at the
/// wall clock, this one at its epoch); `received_ms` is the bridge's wall clock: the run
/// starts at `start_ms` and an event is read as soon as it happens.
async fn world(
    epoch_ms: i64,
    operations: u64,
    connection: &str,
    shift_ms: i64,
    start_ms: i64,
) -> World {
    let sim = support::start_simulator(SEED, MARKETS, 1, epoch_ms).await;
    let markets = support::get_json(&format!("{}/_sim/truth/markets", sim.base_url())).await;
    let tokens: Vec<String> = markets
        .as_array()
        .unwrap()
        .iter()
        .filter(|market| market["closed"] == serde_json::Value::Bool(false))
        .flat_map(|market| market["token_ids"].as_array().unwrap().clone())
        .map(|token| token.as_str().unwrap().to_owned())
        .collect();
    assert!(tokens.len() >= 8, "open tokens: {}", tokens.len());
    let mut snapshots = Vec::new();
    for token in &tokens {
        let book = support::get_json(&format!(
            "{}/_sim/truth/book?token_id={token}",
            sim.base_url()
        ))
        .await;
        let mut dump = support::bridge_snapshot(&book, connection, 0);
        dump.received_ms = start_ms;
        snapshots.push(dump);
    }
    sim.advance(operations);
    // (sequence, event) of every token, merged into the connection's reading order.
    let mut live: BTreeMap<(i64, usize), Event> = BTreeMap::new();
    for token in &tokens {
        let events = support::get_json(&format!(
            "{}/_sim/truth/ws?token_id={token}&limit=200000",
            sim.base_url()
        ))
        .await;
        assert_eq!(events["dropped"], 0, "the truth kept every event");
        for event in events["events"].as_array().unwrap() {
            let sequence = event["seq"].as_i64().unwrap();
            assert!(sequence > 0, "live sequences follow the dump's");
            match event["event_type"].as_str().unwrap() {
                "book" => {
                    let mut book = support::bridge_snapshot(&event["event"], connection, sequence);
                    book.timestamp_ms += shift_ms;
                    book.received_ms = book.timestamp_ms.max(start_ms);
                    live.insert((sequence, live.len()), Event::Snapshot(book));
                }
                "price_change" => {
                    for mut change in support::bridge_changes(&event["event"], connection, sequence)
                    {
                        if &change.token_id != token {
                            continue;
                        }
                        change.timestamp_ms += shift_ms;
                        change.received_ms = change.timestamp_ms.max(start_ms);
                        live.insert((sequence, live.len()), Event::Change(change));
                    }
                }
                _ => {}
            }
        }
    }
    let mut changes = Vec::new();
    for (_, event) in live {
        match event {
            Event::Snapshot(snapshot) => snapshots.push(snapshot),
            Event::Change(change) => changes.push(change),
        }
    }
    let mut truth = BTreeMap::new();
    for token in &tokens {
        let book = support::get_json(&format!(
            "{}/_sim/truth/book?token_id={token}",
            sim.base_url()
        ))
        .await;
        let book = support::bridge_snapshot(&book, "truth", 0);
        truth.insert(token.clone(), (units(&book.bids), units(&book.asks)));
    }
    sim.shutdown().await;
    assert!(changes.len() > 300, "price changes: {}", changes.len());
    World {
        snapshots,
        changes,
        truth,
    }
}

enum Event {
    Snapshot(BookSnapshot),
    Change(PriceChange),
}

/// The builder's book path: the event-time merge over one snapshots and one changes
/// partition, then the book engine, with everything the engine emitted.
struct Pipeline {
    merge: BookMerge,
    engine: BookEngine,
    next_offset: [i64; 2],
    gaps: Vec<Continuity>,
    skipped: BTreeMap<String, usize>,
    applied: usize,
}

const SNAPSHOTS: (BookInput, i32) = (BookInput::Snapshots, 0);
const CHANGES: (BookInput, i32) = (BookInput::Changes, 0);

impl Pipeline {
    fn new() -> Self {
        Self {
            merge: BookMerge::new(),
            engine: BookEngine::new(BookSettings::default()),
            next_offset: [0, 0],
            gaps: Vec::new(),
            skipped: BTreeMap::new(),
            applied: 0,
        }
    }

    fn read(&mut self, event: BookEvent) {
        let index = match event {
            BookEvent::Snapshot(_) => 0,
            BookEvent::Change(_) => 1,
        };
        let offset = self.next_offset[index];
        self.next_offset[index] += 1;
        self.merge.push(0, offset, event);
    }

    fn release(&mut self, backlog: &[(BookInput, i32)]) {
        for event in self.merge.release(backlog) {
            let output = match &event {
                BookEvent::Snapshot(snapshot) => self.engine.apply_snapshot(snapshot),
                BookEvent::Change(change) => self.engine.apply_change(change),
            }
            .unwrap();
            self.applied += 1;
            if let Some(skipped) = output.skipped {
                let reason = match skipped {
                    Skipped::StaleSnapshot => "stale_snapshot",
                    Skipped::StaleChange => "stale_change",
                    Skipped::NoBook => "no_book",
                    Skipped::Inconsistent => "inconsistent",
                    Skipped::AwaitingSnapshot => "awaiting_snapshot",
                };
                *self.skipped.entry(reason.to_owned()).or_default() += 1;
            }
            self.gaps.extend(output.gaps);
        }
    }

    /// At the live edge: every record is read in production order (`(received, sequence)`)
    /// and passes straight through; the first `changes_ahead` changes are read before the
    /// snapshots (a fetch that returned the changes partition first).
    fn live_edge(&mut self, world: &World, changes_ahead: usize) {
        let (ahead, rest) = world
            .changes
            .split_at(changes_ahead.min(world.changes.len()));
        for change in ahead {
            self.read(BookEvent::Change(change.clone()));
            self.release(&[]);
        }
        let mut order: Vec<(i64, i64, u8, usize)> = world
            .snapshots
            .iter()
            .enumerate()
            .map(|(index, snapshot)| (snapshot.received_ms, snapshot.sequence.unwrap(), 0, index))
            .chain(
                rest.iter()
                    .enumerate()
                    .map(|(index, change)| (change.received_ms, change.sequence, 1, index)),
            )
            .collect();
        order.sort_unstable();
        for (_, _, kind, index) in order {
            let event = if kind == 0 {
                BookEvent::Snapshot(world.snapshots[index].clone())
            } else {
                BookEvent::Change(rest[index].clone())
            };
            self.read(event);
            self.release(&[]);
        }
    }

    /// A backlog (records already in both topics): `chunk` records at a time from each
    /// partition in turn, the changes first if `changes_first`; events are released as the
    /// merge allows, the rest once both partitions are read to their end.
    fn backlog(&mut self, worlds: &[&World], chunk: usize, changes_first: bool) {
        let snapshots: Vec<BookSnapshot> = worlds
            .iter()
            .flat_map(|world| world.snapshots.iter().cloned())
            .collect();
        let changes: Vec<PriceChange> = worlds
            .iter()
            .flat_map(|world| world.changes.iter().cloned())
            .collect();
        let (mut read_snapshots, mut read_changes) = (0, 0);
        let mut turn_changes = changes_first;
        while read_snapshots < snapshots.len() || read_changes < changes.len() {
            if turn_changes {
                for change in changes.iter().skip(read_changes).take(chunk) {
                    self.read(BookEvent::Change(change.clone()));
                }
                read_changes = (read_changes + chunk).min(changes.len());
            } else {
                for snapshot in snapshots.iter().skip(read_snapshots).take(chunk) {
                    self.read(BookEvent::Snapshot(snapshot.clone()));
                }
                read_snapshots = (read_snapshots + chunk).min(snapshots.len());
            }
            turn_changes = !turn_changes;
            let mut backlog = Vec::new();
            if read_snapshots < snapshots.len() {
                backlog.push(SNAPSHOTS);
            }
            if read_changes < changes.len() {
                backlog.push(CHANGES);
            }
            self.release(&backlog);
        }
        self.release(&[]);
    }

    fn mismatches(&self) -> Vec<&Continuity> {
        self.gaps
            .iter()
            .filter(|gap| gap.kind == ContinuityKind::BookMismatch)
            .collect()
    }

    /// Every book equals `world`'s truth and is consistent.
    fn assert_books_equal(&self, world: &World, case: &str) {
        for (token, (bids, asks)) in &world.truth {
            let book = self
                .engine
                .book(token)
                .unwrap_or_else(|| panic!("{case}: no book for {token}"));
            assert_eq!(
                &book.bids().collect::<Vec<_>>(),
                bids,
                "{case}: bids of {token}"
            );
            assert_eq!(
                &book.asks().collect::<Vec<_>>(),
                asks,
                "{case}: asks of {token}"
            );
            assert_eq!(
                self.engine.is_consistent(token),
                Some(true),
                "{case}: {token} consistent"
            );
        }
    }
}

/// The old world at the live edge, checked against its truth.
fn after_first_world(first: &World) -> Pipeline {
    let mut pipeline = Pipeline::new();
    pipeline.live_edge(first, 0);
    assert!(
        pipeline.mismatches().is_empty(),
        "the first world alone: {:?}",
        pipeline.mismatches()
    );
    pipeline.assert_books_equal(first, "first world");
    pipeline
}

/// Every interleaving of the second world after the first; each must end on the second
/// world's books without a mismatch.
fn check_restart(first: &World, second: &World, world_name: &str) {
    let mut failures = Vec::new();
    let mut cases: Vec<(String, Pipeline)> = Vec::new();
    for changes_ahead in [0, 5, 40] {
        let mut pipeline = after_first_world(first);
        pipeline.live_edge(second, changes_ahead);
        cases.push((
            format!("{world_name}, live edge, {changes_ahead} changes read before the dump"),
            pipeline,
        ));
    }
    for (chunk, changes_first) in [(50, false), (50, true), (7, true)] {
        let mut pipeline = after_first_world(first);
        pipeline.backlog(&[second], chunk, changes_first);
        cases.push((
            format!(
                "{world_name}, backlog after the first world (chunks of {chunk}, {} first)",
                if changes_first {
                    "changes"
                } else {
                    "snapshots"
                }
            ),
            pipeline,
        ));
        // A builder without a checkpoint reads both worlds from the beginning.
        let mut pipeline = Pipeline::new();
        pipeline.backlog(&[first, second], chunk, changes_first);
        cases.push((
            format!(
                "{world_name}, both worlds from the beginning (chunks of {chunk}, {} first)",
                if changes_first {
                    "changes"
                } else {
                    "snapshots"
                }
            ),
            pipeline,
        ));
    }
    for (case, pipeline) in &cases {
        let mismatches = pipeline.mismatches();
        if !mismatches.is_empty() {
            failures.push(format!(
                "{case}: {} BOOK_MISMATCH records, first: {}",
                mismatches.len(),
                mismatches[0].reason
            ));
            continue;
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pipeline.assert_books_equal(second, case);
        }));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "book differs".to_owned());
            failures.push(message.lines().next().unwrap_or_default().to_owned());
        } else {
            println!(
                "{case}: {} events released, skipped {:?}, no mismatch, books = the new world's truth",
                pipeline.applied, pipeline.skipped
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} interleavings failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The demo's restart: same seed and history; the new world's live time starts at the wall
/// clock, after the old world's last event, but its dumps carry the (older) time of each
/// book's last change in the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_upstream_with_later_live_time_causes_no_mismatch() {
    let first = world(EPOCH_MS, FIRST_OPERATIONS, "bridge-1-s000-g1", 0, EPOCH_MS).await;
    let last_old_ms = first
        .changes
        .iter()
        .map(|change| change.timestamp_ms)
        .max()
        .unwrap();
    let restart_ms = last_old_ms + 60_000;
    let second = world(
        EPOCH_MS,
        SECOND_OPERATIONS,
        "bridge-2-s000-g1",
        restart_ms - EPOCH_MS,
        restart_ms,
    )
    .await;
    assert!(
        second
            .snapshots
            .iter()
            .take(first.truth.len())
            .all(|dump| dump.timestamp_ms <= EPOCH_MS),
        "the new world's dumps carry history times"
    );
    check_restart(&first, &second, "later live time");
}

/// The same world restarted with its live time going back: the new world's events carry the
/// very milliseconds the old world's had (a simulator whose clock runs fast, or a restart
/// with an earlier clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_upstream_with_times_going_back_causes_no_mismatch() {
    let first = world(EPOCH_MS, FIRST_OPERATIONS, "bridge-1-s000-g1", 0, EPOCH_MS).await;
    let restart_ms = EPOCH_MS + i64::try_from(FIRST_OPERATIONS).unwrap() + 60_000;
    let second = world(
        EPOCH_MS,
        SECOND_OPERATIONS,
        "bridge-2-s000-g1",
        0,
        restart_ms,
    )
    .await;
    check_restart(&first, &second, "times going back");
}

/// A restart in a later hour: the new world's history ends an hour later, so its dumps are
/// mostly newer than the old world's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_upstream_with_a_later_history_causes_no_mismatch() {
    let first = world(EPOCH_MS, FIRST_OPERATIONS, "bridge-1-s000-g1", 0, EPOCH_MS).await;
    let epoch = EPOCH_MS + 3_600_000;
    let second = world(epoch, SECOND_OPERATIONS, "bridge-2-s000-g1", 0, epoch).await;
    check_restart(&first, &second, "later history");
}
