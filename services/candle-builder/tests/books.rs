//! The book test against the stack: seeded snapshot/delta streams go through the builder
//! binary; every consistent book state it publishes equals the true book (top-N) at that
//! instant, the final state of every token equals the true final book, and a forced mismatch
//! produces a continuity record that is closed at the token's next snapshot. Then the same
//! against the simulator's truth: the book events a ws-bridge would publish for its live
//! operations, checked after every sequence against `/_sim/truth/book?at=`.
//! Run through `cargo xtask test` (or with `cargo xtask stack up` running).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use polytape_model::{BookLevel, BookSnapshot, BookState, Continuity, ContinuityKind, PriceChange};
use polytape_test_support::stack::isolated_topics;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_books_equal_the_truth_and_a_mismatch_is_declared_and_recovered() {
    let names = isolated_topics("books");
    support::create_topics(&names).await;
    let history = support::book_history(3, 12, 4_000, 1_774_020_000_000);
    support::produce(&names, &history.snapshots).await;
    support::produce(&names, &history.changes).await;

    let builder = support::start_builder(&names);
    support::wait_caught_up(&names, Duration::from_secs(300));
    assert_eq!(builder.terminate(Duration::from_secs(30)), Some(0));

    let states: Vec<(i32, i64, BookState)> = support::positioned_records(&names).await;
    assert!(states.len() > 150, "states published: {}", states.len());
    let mut compared = 0;
    for (_, _, state) in &states {
        if !state.consistent {
            continue;
        }
        let (bids, asks) = &history.truth[&(state.token_id.clone(), state.timestamp_ms)];
        let limit = if state.full_depth { usize::MAX } else { 50 };
        let expected_bids: Vec<(i64, i64)> = bids.iter().take(limit).copied().collect();
        let expected_asks: Vec<(i64, i64)> = asks.iter().take(limit).copied().collect();
        assert_eq!(
            units(&state.bids),
            expected_bids,
            "bids of {} at {}",
            state.token_id,
            state.timestamp_ms
        );
        assert_eq!(
            units(&state.asks),
            expected_asks,
            "asks of {} at {}",
            state.token_id,
            state.timestamp_ms
        );
        assert_eq!(usize::try_from(state.bid_level_count).unwrap(), bids.len());
        assert_eq!(usize::try_from(state.ask_level_count).unwrap(), asks.len());
        compared += 1;
    }
    let last = support::last_book_states(states.clone());
    assert_eq!(last.len(), history.expected.len());
    for (token, (bids, asks)) in &history.expected {
        let state = &last[token];
        assert!(state.consistent, "{token} ends consistent");
        assert_eq!(&units(&state.bids), bids, "final bids of {token}");
        assert_eq!(&units(&state.asks), asks, "final asks of {token}");
    }

    let gaps: Vec<(i32, i64, Continuity)> = support::positioned_records(&names).await;
    let mismatches: Vec<&Continuity> = gaps
        .iter()
        .map(|(_, _, gap)| gap)
        .filter(|gap| gap.kind == ContinuityKind::BookMismatch)
        .collect();
    assert_eq!(mismatches.len(), 2, "opened and closed: {mismatches:?}");
    assert_eq!(mismatches[0].continuity_id, mismatches[1].continuity_id);
    assert_eq!(
        mismatches[0].token_ids,
        vec![history.mismatched_token.clone()]
    );
    assert_eq!(mismatches[0].gap_end_ms, None);
    let closed_at = mismatches[1].gap_end_ms.unwrap();
    assert!(closed_at >= mismatches[0].detected_ms);
    // The inconsistent state was published once, and the token was consistent again from the
    // recovering snapshot on.
    let token_states: Vec<&BookState> = states
        .iter()
        .map(|(_, _, state)| state)
        .filter(|state| state.token_id == history.mismatched_token)
        .collect();
    assert_eq!(
        token_states
            .iter()
            .filter(|state| !state.consistent)
            .count(),
        1
    );
    assert!(
        token_states
            .iter()
            .any(|state| state.consistent && state.timestamp_ms >= closed_at)
    );
    println!(
        "books: {compared} consistent states equal the truth at their instant; mismatch declared and recovered"
    );
}

/// One book event of a token as the bridge publishes it, in the builder's per-token order
/// (time, snapshot before change, offset).
enum SimEvent {
    Snapshot(BookSnapshot),
    Change(PriceChange),
}

impl SimEvent {
    fn time_ms(&self) -> i64 {
        match self {
            SimEvent::Snapshot(snapshot) => snapshot.timestamp_ms,
            SimEvent::Change(change) => change.timestamp_ms,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_books_equal_the_truth_after_every_sequence() {
    let names = isolated_topics("simbooks");
    support::create_topics(&names).await;
    let sim = support::start_simulator(13, 8, 1, 1_774_058_400_000).await;
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

    // What a bridge subscribed to each token publishes: the initial `book`, then the live
    // events of the simulator's operations (one connection per token; the truth's sequence
    // is the order the connection received them in).
    let mut snapshots = Vec::new();
    let mut changes = Vec::new();
    let mut events: BTreeMap<String, Vec<SimEvent>> = BTreeMap::new();
    for token in &tokens {
        let book = support::get_json(&format!(
            "{}/_sim/truth/book?token_id={token}",
            sim.base_url()
        ))
        .await;
        let snapshot = support::bridge_snapshot(&book, &format!("sim-{token}"), 0);
        events
            .entry(token.clone())
            .or_default()
            .push(SimEvent::Snapshot(snapshot.clone()));
        snapshots.push(snapshot);
    }
    sim.advance(3_000);
    for token in &tokens {
        let connection = format!("sim-{token}");
        let truth = support::get_json(&format!(
            "{}/_sim/truth/ws?token_id={token}&limit=200000",
            sim.base_url()
        ))
        .await;
        assert_eq!(truth["dropped"], 0, "the truth kept every event");
        for event in truth["events"].as_array().unwrap() {
            let sequence = event["seq"].as_i64().unwrap();
            let token_events = events.entry(token.clone()).or_default();
            match event["event_type"].as_str().unwrap() {
                "book" => {
                    let snapshot = support::bridge_snapshot(&event["event"], &connection, sequence);
                    token_events.push(SimEvent::Snapshot(snapshot.clone()));
                    snapshots.push(snapshot);
                }
                "price_change" => {
                    for change in support::bridge_changes(&event["event"], &connection, sequence) {
                        assert_eq!(&change.token_id, token);
                        token_events.push(SimEvent::Change(change.clone()));
                        changes.push(change);
                    }
                }
                _ => {}
            }
        }
    }
    // Then a reconnect: the bridge resubscribes and gets each token's `book` again (the book
    // states are published on significant change, so this is what makes every token's last
    // state its final book).
    for token in &tokens {
        let book = support::get_json(&format!(
            "{}/_sim/truth/book?token_id={token}",
            sim.base_url()
        ))
        .await;
        let snapshot = support::bridge_snapshot(&book, &format!("sim-{token}"), i64::MAX);
        events
            .entry(token.clone())
            .or_default()
            .push(SimEvent::Snapshot(snapshot.clone()));
        snapshots.push(snapshot);
    }
    assert!(changes.len() > 500, "price changes: {}", changes.len());
    support::produce(&names, &snapshots).await;
    support::produce(&names, &changes).await;

    // A token's state version counts its book events in the builder's order; the states to
    // compare are those that reflect a whole millisecond (one simulator operation stamps all
    // its events with one millisecond, and the truth at that instant includes all of them):
    // published by the last event of the millisecond, or by one after which only changes the
    // connection sent before an already applied snapshot of that millisecond remain.
    let mut sequence_ends: BTreeSet<(String, i64)> = BTreeSet::new();
    for (token, token_events) in &mut events {
        // Stable: per topic, a token's records are in production order.
        token_events.sort_by_key(|event| (event.time_ms(), matches!(event, SimEvent::Change(_))));
        let mut covered_sequence = i64::MIN;
        for (index, event) in token_events.iter().enumerate() {
            if index > 0 && token_events[index - 1].time_ms() != event.time_ms() {
                covered_sequence = i64::MIN;
            }
            if let SimEvent::Snapshot(snapshot) = event {
                covered_sequence = covered_sequence.max(snapshot.sequence.unwrap());
            }
            let rest_covered = token_events[index + 1..]
                .iter()
                .take_while(|later| later.time_ms() == event.time_ms())
                .all(|later| {
                    matches!(later, SimEvent::Change(change) if change.sequence < covered_sequence)
                });
            if rest_covered {
                sequence_ends.insert((token.clone(), i64::try_from(index + 1).unwrap()));
            }
        }
    }

    let builder = support::start_builder(&names);
    support::wait_caught_up(&names, Duration::from_secs(300));
    assert_eq!(builder.terminate(Duration::from_secs(30)), Some(0));

    let states: Vec<(i32, i64, BookState)> = support::positioned_records(&names).await;
    let mut compared = 0;
    for (_, _, state) in &states {
        assert!(
            state.consistent,
            "{} is consistent at {} (no false mismatch)",
            state.token_id, state.timestamp_ms
        );
        if !sequence_ends.contains(&(state.token_id.clone(), state.version)) {
            continue;
        }
        let book = support::get_json(&format!(
            "{}/_sim/truth/book?token_id={}&at={}",
            sim.base_url(),
            state.token_id,
            state.timestamp_ms
        ))
        .await;
        let truth = support::bridge_snapshot(&book, "truth", 0);
        let limit = if state.full_depth { usize::MAX } else { 50 };
        let expected_bids: Vec<(i64, i64)> = units(&truth.bids).into_iter().take(limit).collect();
        let expected_asks: Vec<(i64, i64)> = units(&truth.asks).into_iter().take(limit).collect();
        let context = format!(
            "{} at {} (version {})",
            state.token_id, state.timestamp_ms, state.version
        );
        assert_eq!(units(&state.bids), expected_bids, "bids of {context}");
        assert_eq!(units(&state.asks), expected_asks, "asks of {context}");
        assert_eq!(
            usize::try_from(state.bid_level_count).unwrap(),
            truth.bids.len(),
            "{context}"
        );
        assert_eq!(
            usize::try_from(state.ask_level_count).unwrap(),
            truth.asks.len(),
            "{context}"
        );
        compared += 1;
    }
    assert!(
        compared * 10 > states.len() * 9,
        "states compared with the truth: {compared} of {}",
        states.len()
    );
    // Every token's last published state is its book at the end of the run.
    let published = states.len();
    let last = support::last_book_states(states);
    for token in &tokens {
        let state = &last[token];
        let book = support::get_json(&format!(
            "{}/_sim/truth/book?token_id={token}",
            sim.base_url()
        ))
        .await;
        let truth = support::bridge_snapshot(&book, "truth", 0);
        assert_eq!(
            units(&state.bids),
            units(&truth.bids).into_iter().take(50).collect::<Vec<_>>(),
            "final bids of {token}"
        );
        assert_eq!(
            units(&state.asks),
            units(&truth.asks).into_iter().take(50).collect::<Vec<_>>(),
            "final asks of {token}"
        );
    }
    let gaps: Vec<(i32, i64, Continuity)> = support::positioned_records(&names).await;
    assert!(
        gaps.iter()
            .all(|(_, _, gap)| gap.kind != ContinuityKind::BookMismatch),
        "no mismatch on a faithful stream: {gaps:?}"
    );
    sim.shutdown().await;
    println!(
        "simulator books: {compared} of {published} states equal /_sim/truth/book at their instant over {} tokens, {} changes, {} snapshots",
        tokens.len(),
        changes.len(),
        snapshots.len()
    );
}
