//! The book test against the stack: seeded snapshot/delta streams go through the builder
//! binary; every consistent book state it publishes equals the true book (top-N) at that
//! instant, the final state of every token equals the true final book, and a forced mismatch
//! produces a continuity record that is closed at the token's next snapshot.
//! Run through `cargo xtask test` (or with `cargo xtask stack up` running).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::time::Duration;

use polytape_model::{BookLevel, BookState, Continuity, ContinuityKind};
use polytape_test_support::stack::isolated_topics;

fn units(levels: &[BookLevel]) -> Vec<(i64, i64)> {
    levels
        .iter()
        .map(|level| {
            let price = polytape_candle_builder::units::to_micros("price", level.price).unwrap();
            let size = polytape_candle_builder::units::to_micros("size", level.size).unwrap();
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

    let states: Vec<(i32, i64, BookState)> = support::read_records(&names).await;
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

    let gaps: Vec<(i32, i64, Continuity)> = support::read_records(&names).await;
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
