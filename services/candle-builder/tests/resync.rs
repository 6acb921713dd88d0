//! A book mismatch is resynced actively: the builder fetches the token's book from the CLOB
//! REST API (the simulator's `/clob/book`), publishes it to `book_snapshots` (`source =
//! REST`), reads it back like any snapshot and closes the gap within seconds, although no
//! `book` event of the token follows in the stream. Needs the stack (`cargo xtask stack up`);
//! the simulator runs in-process.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::time::{Duration, Instant};

use polytape_candle_builder::book::{BookEngine, BookSettings};
use polytape_model::{
    BookLevel, BookSnapshot, BookSource, BookState, Continuity, ContinuityKind, PriceChange,
};
use polytape_test_support::stack::isolated_topics;

const EPOCH_MS: i64 = 1_774_058_400_000;

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

/// The simulator's live events of one token as the bridge publishes them.
enum Event {
    Snapshot(BookSnapshot),
    Change(PriceChange),
}

/// Declared mismatches when `events` go through a book engine in order.
fn offline_mismatches(events: &[&Event]) -> usize {
    let mut engine = BookEngine::new(BookSettings::default());
    let mut gaps = 0;
    for event in events {
        let output = match event {
            Event::Snapshot(snapshot) => engine.apply_snapshot(snapshot),
            Event::Change(change) => engine.apply_change(change),
        }
        .unwrap();
        gaps += output
            .gaps
            .iter()
            .filter(|gap| gap.gap_end_ms.is_none())
            .count();
    }
    gaps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatch_is_resynced_from_rest_within_seconds() {
    let names = isolated_topics("resync");
    support::create_topics(&names).await;
    // Twenty markets: a lost change shows only if it moved a token's best price (negative-risk
    // legs never drift, so their tops rarely move), and a handful of markets may hold none.
    let sim = support::start_simulator(31, 20, 1, EPOCH_MS).await;
    let markets = support::get_json(&format!("{}/_sim/truth/markets", sim.base_url())).await;
    let tokens: Vec<String> = markets
        .as_array()
        .unwrap()
        .iter()
        .filter(|market| market["closed"] == serde_json::Value::Bool(false))
        .flat_map(|market| market["token_ids"].as_array().unwrap().clone())
        .map(|token| token.as_str().unwrap().to_owned())
        .collect();
    let mut per_token: Vec<(String, Vec<Event>)> = Vec::new();
    for token in &tokens {
        let book = support::get_json(&format!(
            "{}/_sim/truth/book?token_id={token}",
            sim.base_url()
        ))
        .await;
        per_token.push((
            token.clone(),
            vec![Event::Snapshot(support::bridge_snapshot(
                &book,
                "bridge-s000-g1",
                0,
            ))],
        ));
    }
    sim.advance(2_000);
    for (token, events) in &mut per_token {
        let truth = support::get_json(&format!(
            "{}/_sim/truth/ws?token_id={token}&limit=200000",
            sim.base_url()
        ))
        .await;
        for event in truth["events"].as_array().unwrap() {
            let sequence = event["seq"].as_i64().unwrap();
            match event["event_type"].as_str().unwrap() {
                "book" => events.push(Event::Snapshot(support::bridge_snapshot(
                    &event["event"],
                    "bridge-s000-g1",
                    sequence,
                ))),
                "price_change" => events.extend(
                    support::bridge_changes(&event["event"], "bridge-s000-g1", sequence)
                        .into_iter()
                        .filter(|change| &change.token_id == token)
                        .map(Event::Change),
                ),
                _ => {}
            }
        }
    }

    // A lost price change: of the first token where dropping one after its last `book` event
    // makes the engine declare a mismatch (so no later snapshot in the stream can close it).
    let mut lost = None;
    'search: for (token, events) in &per_token {
        let last_book = events
            .iter()
            .rposition(|event| matches!(event, Event::Snapshot(_)))
            .unwrap();
        for index in last_book + 1..events.len() {
            let kept: Vec<&Event> = events
                .iter()
                .enumerate()
                .filter(|(at, _)| *at != index)
                .map(|(_, event)| event)
                .collect();
            if offline_mismatches(&kept) == 1 {
                lost = Some((token.clone(), index));
                break 'search;
            }
        }
    }
    let (token, lost_index) = lost.expect("a change whose loss is detected");
    let mut snapshots = Vec::new();
    let mut changes = Vec::new();
    for (event_token, events) in per_token {
        for (index, event) in events.into_iter().enumerate() {
            if event_token == token && index == lost_index {
                continue;
            }
            match event {
                Event::Snapshot(snapshot) => snapshots.push(snapshot),
                Event::Change(change) => changes.push(change),
            }
        }
    }
    support::produce(&names, &snapshots).await;
    support::produce(&names, &changes).await;

    let clob_url = format!("{}/clob", sim.base_url());
    let started = Instant::now();
    let builder = support::start_builder_with(
        &names,
        &[
            ("POLYTAPE_CLOB_URL", &clob_url),
            ("POLYTAPE_BOOK_RESYNC_BUDGET", "50"),
        ],
    );
    // The gap is opened, then closed by the REST book.
    let closed = loop {
        let gaps: Vec<(i32, i64, Continuity)> = support::positioned_records(&names).await;
        let mismatches: Vec<Continuity> = gaps
            .into_iter()
            .map(|(_, _, gap)| gap)
            .filter(|gap| gap.kind == ContinuityKind::BookMismatch)
            .collect();
        if let Some(closed) = mismatches.iter().find(|gap| gap.gap_end_ms.is_some()) {
            assert_eq!(mismatches.len(), 2, "opened and closed: {mismatches:?}");
            assert_eq!(mismatches[0].continuity_id, closed.continuity_id);
            break closed.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the mismatch was not resynced: {mismatches:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let resynced_after = started.elapsed();
    assert_eq!(closed.token_ids, vec![token.clone()]);
    support::wait_caught_up(&names, Duration::from_secs(120));
    assert_eq!(builder.terminate(Duration::from_secs(30)), Some(0));

    // The REST book is on record like any snapshot.
    let stored: Vec<(i32, i64, BookSnapshot)> = support::positioned_records(&names).await;
    let rest: Vec<&BookSnapshot> = stored
        .iter()
        .map(|(_, _, snapshot)| snapshot)
        .filter(|snapshot| snapshot.source == BookSource::Rest)
        .collect();
    assert!(!rest.is_empty(), "a REST snapshot was published");
    assert!(
        rest.iter()
            .all(|snapshot| snapshot.token_id == token && snapshot.connection_id.is_none())
    );
    assert!(
        closed.reason.contains(&rest[0].timestamp_ms.to_string()),
        "closed by the REST book: {}",
        closed.reason
    );

    // The token's last state is consistent and equals upstream's book.
    let states: Vec<(i32, i64, BookState)> = support::positioned_records(&names).await;
    let last = support::last_book_states(states);
    let state = &last[&token];
    assert!(state.consistent);
    let book = support::get_json(&format!(
        "{}/_sim/truth/book?token_id={token}",
        sim.base_url()
    ))
    .await;
    let truth = support::bridge_snapshot(&book, "truth", 0);
    assert_eq!(
        units(&state.bids),
        units(&truth.bids).into_iter().take(50).collect::<Vec<_>>()
    );
    assert_eq!(
        units(&state.asks),
        units(&truth.asks).into_iter().take(50).collect::<Vec<_>>()
    );
    sim.shutdown().await;
    println!(
        "resync: mismatch of {token} declared and closed by a REST book {resynced_after:?} after the builder started ({} changes, {} snapshots in the stream)",
        changes.len(),
        snapshots.len()
    );
}
