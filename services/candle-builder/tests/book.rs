//! Order books without the network: snapshot replace, level set and delete, validation
//! against upstream's best bid/ask (mismatch → inconsistent + continuity record → recovery at
//! the next snapshot), event-time ordering across the two input topics, publishing rules,
//! derived fields, and a seeded comparison with a naive book.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{collections::BTreeMap, str::FromStr};

use polytape_candle_builder::book::{BookEngine, BookSettings, Skipped};
use polytape_model::book::L2Book;
use polytape_model::{
    BookLevel, BookSnapshot, BookSource, BookState, ContinuityKind, Decimal, PriceChange, Side,
};
use rand::{Rng as _, SeedableRng as _};

const TOKEN: &str = "7132104567925221259462638553270691275033272857194253228963137931245558399256";
const T0: i64 = 1_774_020_000_000;

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn level(price: &str, size: &str) -> BookLevel {
    BookLevel {
        price: dec(price),
        size: dec(size),
    }
}

fn snapshot(time_ms: i64, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> BookSnapshot {
    BookSnapshot {
        token_id: TOKEN.to_owned(),
        condition_id: "0xcond".to_owned(),
        timestamp_ms: time_ms,
        received_ms: time_ms,
        bids: bids
            .iter()
            .map(|(price, size)| level(price, size))
            .collect(),
        asks: asks
            .iter()
            .map(|(price, size)| level(price, size))
            .collect(),
        hash: None,
        tick_size: Some(dec("0.01")),
        min_order_size: None,
        neg_risk: None,
        last_trade_price: None,
        source: BookSource::Ws,
        connection_id: Some("c1".to_owned()),
        sequence: Some(0),
    }
}

fn change(
    time_ms: i64,
    side: Side,
    price: &str,
    size: &str,
    best: (&str, &str),
    sequence: i64,
) -> PriceChange {
    PriceChange {
        token_id: TOKEN.to_owned(),
        condition_id: "0xcond".to_owned(),
        side,
        price: dec(price),
        size: dec(size),
        best_bid: Some(dec(best.0)),
        best_ask: Some(dec(best.1)),
        hash: None,
        timestamp_ms: time_ms,
        received_ms: time_ms,
        connection_id: "c1".to_owned(),
        sequence,
        entry_index: 0,
    }
}

fn levels_of(state: &[BookLevel]) -> Vec<(Decimal, Decimal)> {
    state
        .iter()
        .map(|level| (level.price, level.size))
        .collect()
}

fn pairs(levels: &[(&str, &str)]) -> Vec<(Decimal, Decimal)> {
    levels
        .iter()
        .map(|(price, size)| (dec(price), dec(size)))
        .collect()
}

fn top_states(states: &[BookState]) -> Vec<&BookState> {
    states.iter().filter(|state| !state.full_depth).collect()
}

#[test]
fn order_book_table() {
    // (name, snapshot bids, snapshot asks, changes (side, price, size), expected bids, expected asks)
    type Levels<'a> = &'a [(&'a str, &'a str)];
    type Case<'a> = (
        &'a str,
        Levels<'a>,
        Levels<'a>,
        Vec<(Side, &'a str, &'a str)>,
        Levels<'a>,
        Levels<'a>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "snapshot levels are sorted best first",
            &[("0.44", "1"), ("0.45", "2"), ("0.01", "3")],
            &[("0.99", "4"), ("0.46", "5")],
            vec![],
            &[("0.45", "2"), ("0.44", "1"), ("0.01", "3")],
            &[("0.46", "5"), ("0.99", "4")],
        ),
        (
            "a change sets the absolute size of a level",
            &[("0.45", "2")],
            &[("0.46", "5")],
            vec![(Side::Buy, "0.45", "7.5"), (Side::Sell, "0.47", "1")],
            &[("0.45", "7.5")],
            &[("0.46", "5"), ("0.47", "1")],
        ),
        (
            "size 0 deletes a level; deleting a missing level is harmless",
            &[("0.45", "2"), ("0.44", "1")],
            &[("0.46", "5")],
            vec![(Side::Buy, "0.45", "0"), (Side::Sell, "0.50", "0")],
            &[("0.44", "1")],
            &[("0.46", "5")],
        ),
        (
            "zero-size snapshot levels are not levels",
            &[("0.45", "0"), ("0.44", "1")],
            &[],
            vec![],
            &[("0.44", "1")],
            &[],
        ),
    ];
    for (name, bids, asks, changes, expected_bids, expected_asks) in cases {
        let mut book = L2Book::new();
        // Whatever was there before, a snapshot replaces it.
        book.set_level(Side::Buy, 123_000, 1);
        book.apply_snapshot(&snapshot(T0, bids, asks)).unwrap();
        for (side, price, size) in changes {
            book.apply_change(&change(T0 + 1, side, price, size, ("0", "1"), 1))
                .unwrap();
        }
        let got_bids: Vec<_> = book
            .bids()
            .map(|(price, size)| (Decimal::new(price, 6), Decimal::new(size, 6)))
            .collect();
        let got_asks: Vec<_> = book
            .asks()
            .map(|(price, size)| (Decimal::new(price, 6), Decimal::new(size, 6)))
            .collect();
        assert_eq!(got_bids, pairs(expected_bids), "{name}: bids");
        assert_eq!(got_asks, pairs(expected_asks), "{name}: asks");
    }
}

#[test]
fn a_snapshot_publishes_top_n_and_full_depth_with_derived_fields() {
    let mut engine = BookEngine::new(BookSettings {
        top_levels: 2,
        ..BookSettings::default()
    });
    let output = engine
        .apply_snapshot(&snapshot(
            T0,
            &[
                ("0.45", "10"),
                ("0.44", "20"),
                ("0.40", "30"),
                ("0.35", "40"),
            ],
            &[("0.47", "5"), ("0.48", "6"), ("0.60", "7")],
        ))
        .unwrap();
    assert!(output.gaps.is_empty());
    assert_eq!(
        output.states.len(),
        2,
        "top-N and the first full-depth state"
    );
    let top = &output.states[0];
    assert!(!top.full_depth && top.consistent);
    assert_eq!(
        levels_of(&top.bids),
        pairs(&[("0.45", "10"), ("0.44", "20")])
    );
    assert_eq!(levels_of(&top.asks), pairs(&[("0.47", "5"), ("0.48", "6")]));
    assert_eq!((top.bid_level_count, top.ask_level_count), (4, 3));
    assert_eq!(top.best_bid, Some(dec("0.45")));
    assert_eq!(top.best_ask, Some(dec("0.47")));
    assert_eq!(top.mid, Some(dec("0.46")));
    assert_eq!(top.spread, Some(dec("0.02")));
    assert_eq!(top.tick_size, Some(dec("0.01")));
    // Within 1 tick of 0.45: 0.45 and 0.44; within 5: down to 0.40; within 10: down to 0.35.
    assert_eq!(top.bid_depth_1_tick, dec("30"));
    assert_eq!(top.bid_depth_5_ticks, dec("60"));
    assert_eq!(top.bid_depth_10_ticks, dec("100"));
    assert_eq!(top.ask_depth_1_tick, dec("11"));
    assert_eq!(top.ask_depth_5_ticks, dec("11"));
    assert_eq!(top.ask_depth_10_ticks, dec("11"));
    assert_eq!(top.timestamp_ms, T0);
    let full = &output.states[1];
    assert!(full.full_depth);
    assert_eq!(full.bids.len(), 4);
    assert_eq!(full.asks.len(), 3);
}

#[test]
fn mid_is_rounded_half_even_at_scale_6() {
    let mut engine = BookEngine::new(BookSettings::default());
    let output = engine
        .apply_snapshot(&snapshot(T0, &[("0.000001", "1")], &[("0.000004", "1")]))
        .unwrap();
    // (1 + 4) / 2 = 2.5 micro → 2 (even).
    assert_eq!(output.states[0].mid, Some(dec("0.000002")));
    let output = engine
        .apply_snapshot(&snapshot(
            T0 + 1,
            &[("0.000002", "1")],
            &[("0.000005", "1")],
        ))
        .unwrap();
    // 3.5 → 4.
    assert_eq!(output.states[0].mid, Some(dec("0.000004")));
}

#[test]
fn a_mismatch_marks_the_token_inconsistent_emits_a_gap_and_recovers_at_the_next_snapshot() {
    let mut engine = BookEngine::new(BookSettings::default());
    engine
        .apply_snapshot(&snapshot(T0, &[("0.45", "10")], &[("0.47", "5")]))
        .unwrap();
    // A valid change: new best bid 0.46.
    let ok = engine
        .apply_change(&change(
            T0 + 10,
            Side::Buy,
            "0.46",
            "1",
            ("0.46", "0.47"),
            1,
        ))
        .unwrap();
    assert!(ok.gaps.is_empty());
    assert_eq!(
        top_states(&ok.states).len(),
        1,
        "a best bid change publishes"
    );
    // Upstream says the best ask is 0.48, but the book has 0.47: a change was lost.
    let bad = engine
        .apply_change(&change(
            T0 + 20,
            Side::Buy,
            "0.44",
            "3",
            ("0.46", "0.48"),
            2,
        ))
        .unwrap();
    assert_eq!(bad.gaps.len(), 1);
    let gap = &bad.gaps[0];
    assert_eq!(gap.kind, ContinuityKind::BookMismatch);
    assert_eq!(gap.token_ids, vec![TOKEN.to_owned()]);
    assert_eq!(gap.gap_start_ms, T0 + 10);
    assert_eq!(gap.gap_end_ms, None);
    assert_eq!(gap.detected_ms, T0 + 20);
    assert_eq!(gap.source, "candle-builder");
    assert!(
        gap.reason.contains("0.47") && gap.reason.contains("0.48"),
        "{}",
        gap.reason
    );
    assert_eq!(bad.states.len(), 1);
    assert!(!bad.states[0].consistent);
    assert_eq!(engine.is_consistent(TOKEN), Some(false));

    // Further changes are not trusted: nothing is published.
    let waiting = engine
        .apply_change(&change(
            T0 + 30,
            Side::Sell,
            "0.48",
            "9",
            ("0.46", "0.48"),
            3,
        ))
        .unwrap();
    assert_eq!(waiting.skipped, Some(Skipped::Inconsistent));
    assert!(waiting.states.is_empty() && waiting.gaps.is_empty());

    // The next snapshot replaces the book and closes the gap under the same id.
    let recovered = engine
        .apply_snapshot(&snapshot(
            T0 + 40,
            &[("0.46", "1"), ("0.45", "10")],
            &[("0.48", "9")],
        ))
        .unwrap();
    assert_eq!(recovered.gaps.len(), 1);
    let closed = &recovered.gaps[0];
    assert_eq!(closed.continuity_id, gap.continuity_id);
    assert_eq!(closed.gap_end_ms, Some(T0 + 40));
    assert!(closed.detected_ms >= gap.detected_ms);
    assert!(recovered.states[0].consistent);
    assert_eq!(recovered.states[0].best_ask, Some(dec("0.48")));
    assert_eq!(engine.is_consistent(TOKEN), Some(true));
}

#[test]
fn empty_sides_are_written_as_0_and_1_upstream() {
    let mut engine = BookEngine::new(BookSettings::default());
    engine
        .apply_snapshot(&snapshot(T0, &[("0.45", "10")], &[]))
        .unwrap();
    let output = engine
        .apply_change(&change(T0 + 1, Side::Buy, "0.45", "0", ("0", "1"), 1))
        .unwrap();
    assert!(output.gaps.is_empty(), "{:?}", output.gaps);
    assert_eq!(output.states[0].best_bid, None);
    assert_eq!(output.states[0].mid, None);
}

#[test]
fn event_time_orders_snapshots_and_changes_from_two_topics() {
    let mut engine = BookEngine::new(BookSettings::default());
    engine
        .apply_snapshot(&snapshot(T0, &[("0.45", "10")], &[("0.47", "5")]))
        .unwrap();
    // A change older than the book's snapshot is already in it.
    let stale = engine
        .apply_change(&change(T0 - 1, Side::Buy, "0.40", "1", ("0.45", "0.47"), 1))
        .unwrap();
    assert_eq!(stale.skipped, Some(Skipped::StaleChange));
    // A change at T0+20 is read before the snapshot of T0+10 that precedes it upstream.
    engine
        .apply_change(&change(
            T0 + 20,
            Side::Sell,
            "0.46",
            "2",
            ("0.45", "0.46"),
            5,
        ))
        .unwrap();
    let late_snapshot = engine
        .apply_snapshot(&snapshot(
            T0 + 10,
            &[("0.45", "10"), ("0.44", "1")],
            &[("0.47", "5")],
        ))
        .unwrap();
    let top = &late_snapshot.states[0];
    assert_eq!(
        top.best_ask,
        Some(dec("0.46")),
        "the newer change is re-applied over the snapshot"
    );
    assert_eq!(
        levels_of(&top.bids),
        pairs(&[("0.45", "10"), ("0.44", "1")])
    );
    assert_eq!(top.timestamp_ms, T0 + 20);
    // A snapshot older than the current one is ignored.
    let older = engine.apply_snapshot(&snapshot(T0 + 5, &[], &[])).unwrap();
    assert_eq!(older.skipped, Some(Skipped::StaleSnapshot));
    assert_eq!(engine.book(TOKEN).unwrap().best_bid(), Some(450_000));
    // A change for a token without a snapshot changes nothing.
    let mut unknown = change(T0, Side::Buy, "0.1", "1", ("0.1", "1"), 1);
    unknown.token_id = "other".to_owned();
    assert_eq!(
        engine.apply_change(&unknown).unwrap().skipped,
        Some(Skipped::NoBook)
    );
}

#[test]
fn publishing_is_on_significant_change_or_every_interval_by_event_time() {
    let settings = BookSettings {
        publish_interval_ms: 1_000,
        full_depth_interval_ms: 60_000,
        ..BookSettings::default()
    };
    let mut engine = BookEngine::new(settings);
    let first = engine
        .apply_snapshot(&snapshot(
            T0 + 1,
            &[("0.45", "10"), ("0.40", "1")],
            &[("0.47", "5")],
        ))
        .unwrap();
    assert_eq!(first.states.len(), 2);
    // Deeper level changes, same best prices, within the interval: nothing.
    let quiet = engine
        .apply_change(&change(
            T0 + 500,
            Side::Buy,
            "0.40",
            "2",
            ("0.45", "0.47"),
            1,
        ))
        .unwrap();
    assert!(quiet.states.is_empty());
    // The interval has passed: published.
    let due = engine
        .apply_change(&change(
            T0 + 1_001,
            Side::Buy,
            "0.40",
            "3",
            ("0.45", "0.47"),
            2,
        ))
        .unwrap();
    assert_eq!(top_states(&due.states).len(), 1);
    assert_eq!(levels_of(&due.states[0].bids)[1], (dec("0.40"), dec("3")));
    // A new full-depth bucket: a full-depth state as well.
    let next_bucket = engine
        .apply_change(&change(
            T0 + 60_000,
            Side::Sell,
            "0.47",
            "6",
            ("0.45", "0.47"),
            3,
        ))
        .unwrap();
    assert!(next_bucket.states.iter().any(|state| state.full_depth));
    // Versions grow per token.
    let versions: Vec<i64> = [first.states, due.states, next_bucket.states]
        .concat()
        .iter()
        .map(|state| state.version)
        .collect();
    assert!(
        versions.windows(2).all(|pair| pair[0] <= pair[1]),
        "{versions:?}"
    );
}

#[test]
fn resolved_and_idle_tokens_are_evicted() {
    let mut engine = BookEngine::new(BookSettings::default());
    engine
        .apply_snapshot(&snapshot(T0, &[("0.45", "10")], &[]))
        .unwrap();
    let mut other = snapshot(T0 + 100_000, &[], &[]);
    other.token_id = "other".to_owned();
    engine.apply_snapshot(&other).unwrap();
    assert_eq!(engine.token_count(), 2);
    assert_eq!(engine.evict_idle(T0 + 1), 1);
    assert_eq!(engine.evict(&["other".to_owned()]), 1);
    assert_eq!(engine.token_count(), 0);
}

/// A seeded random walk of snapshots and valid changes: after every event the published top-N
/// equals a naive book (a plain map per side) built from the same events.
#[test]
fn seeded_event_streams_match_a_naive_book_after_every_event() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let settings = BookSettings {
        top_levels: 5,
        publish_interval_ms: 0,
        ..BookSettings::default()
    };
    let mut engine = BookEngine::new(settings);
    let mut naive: [BTreeMap<i64, i64>; 2] = [BTreeMap::new(), BTreeMap::new()];
    let mut time = T0;
    engine.apply_snapshot(&snapshot(time, &[], &[])).unwrap();
    for sequence in 0..5_000 {
        time += rng.random_range(0..3);
        if rng.random_bool(0.01) {
            // A fresh snapshot of the naive book.
            let as_levels = |side: &BTreeMap<i64, i64>| -> Vec<BookLevel> {
                side.iter()
                    .map(|(price, size)| BookLevel {
                        price: Decimal::new(*price, 6),
                        size: Decimal::new(*size, 6),
                    })
                    .collect()
            };
            let mut fresh = snapshot(time, &[], &[]);
            fresh.bids = as_levels(&naive[0]);
            fresh.asks = as_levels(&naive[1]);
            let output = engine.apply_snapshot(&fresh).unwrap();
            assert!(output.states[0].consistent);
            continue;
        }
        // Bids below 0.5, asks above, so the book never crosses.
        let (index, side, price) = if rng.random_bool(0.5) {
            (0, Side::Buy, rng.random_range(1..50) * 10_000)
        } else {
            (1, Side::Sell, rng.random_range(51..100) * 10_000)
        };
        let size = if rng.random_bool(0.3) {
            0
        } else {
            rng.random_range(1..1_000_000_000)
        };
        if size == 0 {
            naive[index].remove(&price);
        } else {
            naive[index].insert(price, size);
        }
        let best_bid = naive[0].keys().next_back().copied().unwrap_or(0);
        let best_ask = naive[1].keys().next().copied().unwrap_or(1_000_000);
        let entry = PriceChange {
            side,
            price: Decimal::new(price, 6),
            size: Decimal::new(size, 6),
            best_bid: Some(Decimal::new(best_bid, 6)),
            best_ask: Some(Decimal::new(best_ask, 6)),
            ..change(time, side, "0.5", "1", ("0", "1"), sequence)
        };
        let output = engine.apply_change(&entry).unwrap();
        assert!(
            output.gaps.is_empty(),
            "event {sequence}: {:?}",
            output.gaps
        );
        let state = top_states(&output.states)[0];
        let expected_bids: Vec<(Decimal, Decimal)> = naive[0]
            .iter()
            .rev()
            .take(5)
            .map(|(price, size)| (Decimal::new(*price, 6), Decimal::new(*size, 6)))
            .collect();
        let expected_asks: Vec<(Decimal, Decimal)> = naive[1]
            .iter()
            .take(5)
            .map(|(price, size)| (Decimal::new(*price, 6), Decimal::new(*size, 6)))
            .collect();
        assert_eq!(levels_of(&state.bids), expected_bids, "event {sequence}");
        assert_eq!(levels_of(&state.asks), expected_asks, "event {sequence}");
        assert_eq!(state.bid_level_count as usize, naive[0].len());
        assert_eq!(state.ask_level_count as usize, naive[1].len());
    }
    // Checkpoint round trip keeps the book.
    let text = serde_json::to_string(&engine.state()).unwrap();
    let restored = BookEngine::restore(
        BookSettings::default(),
        serde_json::from_str(&text).unwrap(),
    );
    assert_eq!(restored.book(TOKEN), engine.book(TOKEN));
}

#[test]
fn changes_read_before_the_first_snapshot_are_applied_over_it() {
    let mut engine = BookEngine::new(BookSettings::default());
    let early = engine
        .apply_change(&change(T0 + 5, Side::Buy, "0.46", "3", ("0.46", "0.47"), 2))
        .unwrap();
    assert_eq!(early.skipped, Some(Skipped::NoBook));
    assert!(early.states.is_empty());
    let output = engine
        .apply_snapshot(&snapshot(T0, &[("0.45", "10")], &[("0.47", "5")]))
        .unwrap();
    assert_eq!(output.states[0].best_bid, Some(dec("0.46")));
    assert_eq!(output.states[0].version, 2, "both events counted");
}

#[test]
fn a_snapshot_older_than_changes_no_longer_buffered_does_not_replace_a_valid_book() {
    let settings = BookSettings {
        reorder_capacity: 2,
        ..BookSettings::default()
    };
    let mut engine = BookEngine::new(settings);
    engine
        .apply_snapshot(&snapshot(T0, &[("0.45", "10")], &[("0.47", "5")]))
        .unwrap();
    for (index, size) in ["1", "2", "3"].iter().enumerate() {
        let time = T0 + 10 + index as i64;
        engine
            .apply_change(&change(
                time,
                Side::Buy,
                "0.40",
                size,
                ("0.45", "0.47"),
                index as i64,
            ))
            .unwrap();
    }
    // Three changes after T0+5, but the buffer keeps two: re-applying would be incomplete.
    let late = engine
        .apply_snapshot(&snapshot(T0 + 5, &[("0.45", "10")], &[("0.47", "5")]))
        .unwrap();
    assert_eq!(late.skipped, Some(Skipped::StaleSnapshot));
    let book = engine.book(TOKEN).unwrap();
    assert_eq!(
        book.bids().collect::<Vec<_>>(),
        vec![(450_000, 10_000_000), (400_000, 3_000_000)]
    );
    // A snapshot newer than every change replaces the book.
    let fresh = engine
        .apply_snapshot(&snapshot(T0 + 20, &[("0.45", "1")], &[("0.47", "5")]))
        .unwrap();
    assert_eq!(fresh.skipped, None);
    assert_eq!(engine.book(TOKEN).unwrap().bid_level_count(), 1);
}

/// One upstream operation (a taker sweeping two ask levels) stamps its price changes and the
/// `book` that follows with one millisecond; the merge releases the `book` first. The changes
/// the connection sent before it are already in it and must not be validated against it.
#[test]
fn changes_of_a_snapshots_millisecond_sent_before_it_are_already_in_it() {
    let mut engine = BookEngine::new(BookSettings::default());
    let before = snapshot(
        T0,
        &[("0.40", "10")],
        &[("0.50", "5"), ("0.51", "5"), ("0.52", "5")],
    );
    engine.apply_snapshot(&before).unwrap();
    let after = BookSnapshot {
        sequence: Some(12),
        ..snapshot(T0 + 1_000, &[("0.40", "10")], &[("0.52", "5")])
    };
    let sweep = [
        change(T0 + 1_000, Side::Sell, "0.50", "0", ("0.40", "0.51"), 10),
        change(T0 + 1_000, Side::Sell, "0.51", "0", ("0.40", "0.52"), 11),
    ];
    // Snapshot first, as the merge orders a millisecond.
    let applied = engine.apply_snapshot(&after).unwrap();
    assert_eq!(applied.skipped, None);
    for entry in &sweep {
        let output = engine.apply_change(entry).unwrap();
        assert!(output.gaps.is_empty(), "no false mismatch: {output:?}");
        assert_eq!(output.skipped, Some(Skipped::StaleChange));
    }
    assert_eq!(engine.is_consistent(TOKEN), Some(true));
    // A change of the same millisecond sent after the snapshot still applies and validates.
    let later = change(T0 + 1_000, Side::Sell, "0.53", "7", ("0.40", "0.52"), 13);
    let output = engine.apply_change(&later).unwrap();
    assert_eq!(output.skipped, None);
    assert!(output.gaps.is_empty());
    // From another connection, order within the millisecond is unknown: it is validated.
    let other = PriceChange {
        connection_id: "c2".to_owned(),
        ..change(T0 + 1_000, Side::Sell, "0.52", "4", ("0.40", "0.52"), 1)
    };
    assert_eq!(engine.apply_change(&other).unwrap().skipped, None);
    assert_eq!(engine.is_consistent(TOKEN), Some(true));
}

fn on_connection(
    mut snapshot: BookSnapshot,
    connection: &str,
    sequence: i64,
    received_ms: i64,
) -> BookSnapshot {
    snapshot.connection_id = Some(connection.to_owned());
    snapshot.sequence = Some(sequence);
    snapshot.received_ms = received_ms;
    snapshot
}

fn change_on(mut change: PriceChange, connection: &str, received_ms: i64) -> PriceChange {
    connection.clone_into(&mut change.connection_id);
    change.received_ms = received_ms;
    change
}

/// Issue #23: upstream restarted as a new world. The new connection's dump carries the time
/// of the new book's last change, older than the old world's events; read after them, it is
/// the book. What the old connection sent before it is stale from then on.
#[test]
fn another_connections_book_read_later_takes_over_whatever_its_time() {
    let mut engine = BookEngine::new(BookSettings::default());
    engine
        .apply_snapshot(&snapshot(T0 + 100, &[("0.45", "10")], &[("0.47", "5")]))
        .unwrap();
    engine
        .apply_change(&change(
            T0 + 200,
            Side::Buy,
            "0.46",
            "1",
            ("0.46", "0.47"),
            1,
        ))
        .unwrap();
    // The new world: its dump is stamped T0 (older), read at T0 + 60 s.
    let dump = on_connection(
        snapshot(T0, &[("0.30", "4")], &[("0.35", "2")]),
        "c2",
        0,
        T0 + 60_000,
    );
    let output = engine.apply_snapshot(&dump).unwrap();
    assert_eq!(output.skipped, None, "the dump replaces the book");
    assert!(output.gaps.is_empty());
    assert!(
        output.states.iter().any(|state| state.full_depth),
        "a full-depth state for readers rebuilding from one"
    );
    let top = top_states(&output.states)[0];
    assert_eq!(top.best_bid, Some(dec("0.30")));
    assert_eq!(top.best_ask, Some(dec("0.35")));
    assert_eq!(top.timestamp_ms, T0 + 200, "published times never go back");
    // The old connection's events read before the dump but merged after it are stale.
    let old_change = engine
        .apply_change(&change(T0 + 300, Side::Sell, "0.47", "0", ("0.46", "1"), 2))
        .unwrap();
    assert_eq!(old_change.skipped, Some(Skipped::StaleChange));
    let old_book = engine
        .apply_snapshot(&snapshot(T0 + 300, &[("0.46", "1")], &[]))
        .unwrap();
    assert_eq!(old_book.skipped, Some(Skipped::StaleSnapshot));
    // The new world's changes validate against its dump.
    let new_change = engine
        .apply_change(&change_on(
            change(T0 + 70_000, Side::Buy, "0.31", "1", ("0.31", "0.35"), 1),
            "c2",
            T0 + 70_000,
        ))
        .unwrap();
    assert!(new_change.gaps.is_empty(), "{new_change:?}");
    assert_eq!(engine.book(TOKEN).unwrap().best_bid(), Some(310_000));
    assert_eq!(engine.is_consistent(TOKEN), Some(true));
}

/// A new connection's first changes can be read before its dump (two topics): one that does
/// not fit the old book waits for the dump, which takes over and re-applies it.
#[test]
fn another_connections_change_that_does_not_fit_waits_for_its_snapshot() {
    let mut engine = BookEngine::new(BookSettings::default());
    engine
        .apply_snapshot(&snapshot(T0, &[("0.45", "10")], &[("0.47", "5")]))
        .unwrap();
    let early = change_on(
        change(T0 + 1_000, Side::Buy, "0.31", "1", ("0.31", "0.35"), 2),
        "c2",
        T0 + 1_000,
    );
    let held = engine.apply_change(&early).unwrap();
    assert_eq!(held.skipped, Some(Skipped::AwaitingSnapshot));
    assert!(held.gaps.is_empty() && held.states.is_empty());
    assert_eq!(
        engine.book(TOKEN).unwrap().best_bid(),
        Some(450_000),
        "not applied"
    );
    let dump = on_connection(
        snapshot(T0 - 5_000, &[("0.30", "4")], &[("0.35", "2")]),
        "c2",
        1,
        T0 + 1_000,
    );
    let output = engine.apply_snapshot(&dump).unwrap();
    assert!(output.gaps.is_empty());
    assert_eq!(
        engine.book(TOKEN).unwrap().bids().collect::<Vec<_>>(),
        vec![(310_000, 1_000_000), (300_000, 4_000_000)],
        "the held change is applied over its connection's dump"
    );
    assert_eq!(engine.is_consistent(TOKEN), Some(true));
}

/// ... but only for the reorder window: without its snapshot, the mismatch is declared, and a
/// REST book read later closes it even if its time is older than the book's snapshot.
#[test]
fn another_connections_changes_without_a_snapshot_are_declared_after_the_window() {
    let mut engine = BookEngine::new(BookSettings::default());
    engine
        .apply_snapshot(&snapshot(T0, &[("0.45", "10")], &[("0.47", "5")]))
        .unwrap();
    let first = change_on(
        change(T0 + 1_000, Side::Buy, "0.31", "1", ("0.31", "0.35"), 2),
        "c2",
        T0 + 1_000,
    );
    assert_eq!(
        engine.apply_change(&first).unwrap().skipped,
        Some(Skipped::AwaitingSnapshot)
    );
    let within = change_on(
        change(T0 + 6_000, Side::Buy, "0.32", "1", ("0.32", "0.35"), 3),
        "c2",
        T0 + 6_000,
    );
    assert_eq!(
        engine.apply_change(&within).unwrap().skipped,
        Some(Skipped::AwaitingSnapshot)
    );
    let after = change_on(
        change(T0 + 6_001, Side::Buy, "0.33", "1", ("0.33", "0.35"), 4),
        "c2",
        T0 + 6_001,
    );
    let declared = engine.apply_change(&after).unwrap();
    assert_eq!(declared.gaps.len(), 1, "{declared:?}");
    assert_eq!(declared.gaps[0].kind, ContinuityKind::BookMismatch);
    assert!(
        declared.gaps[0]
            .reason
            .contains("no snapshot of that connection"),
        "{}",
        declared.gaps[0].reason
    );
    assert_eq!(engine.is_consistent(TOKEN), Some(false));
    // The REST resync: read later, stamped with upstream's last change (here older than the
    // book's snapshot, as after an upstream restart).
    let rest = BookSnapshot {
        source: BookSource::Rest,
        connection_id: None,
        sequence: None,
        received_ms: T0 + 10_000,
        ..snapshot(T0 - 1, &[("0.33", "1"), ("0.30", "4")], &[("0.35", "2")])
    };
    let recovered = engine.apply_snapshot(&rest).unwrap();
    assert_eq!(recovered.skipped, None);
    assert_eq!(recovered.gaps.len(), 1);
    assert!(recovered.gaps[0].gap_end_ms.unwrap() >= recovered.gaps[0].gap_start_ms);
    assert_eq!(engine.is_consistent(TOKEN), Some(true));
    assert_eq!(engine.book(TOKEN).unwrap().best_bid(), Some(330_000));
    // Changes of the live connection validate against it.
    let next = change_on(
        change(T0 + 11_000, Side::Buy, "0.34", "1", ("0.34", "0.35"), 5),
        "c2",
        T0 + 11_000,
    );
    assert!(engine.apply_change(&next).unwrap().gaps.is_empty());
    assert_eq!(engine.is_consistent(TOKEN), Some(true));
}

/// Held changes the reorder buffer can no longer keep could not all be re-applied over their
/// connection's snapshot: the wait ends and the mismatch is declared.
#[test]
fn held_changes_beyond_the_reorder_buffer_end_the_wait() {
    let mut engine = BookEngine::new(BookSettings {
        reorder_capacity: 2,
        ..BookSettings::default()
    });
    engine
        .apply_snapshot(&snapshot(T0, &[("0.45", "10")], &[("0.47", "5")]))
        .unwrap();
    let mut outputs = Vec::new();
    for (index, price) in ["0.31", "0.32", "0.33"].iter().enumerate() {
        let sequence = i64::try_from(index).unwrap() + 2;
        let time = T0 + 100 + sequence;
        outputs.push(
            engine
                .apply_change(&change_on(
                    change(time, Side::Buy, price, "1", (price, "0.35"), sequence),
                    "c2",
                    time,
                ))
                .unwrap(),
        );
    }
    assert!(
        outputs[..2]
            .iter()
            .all(|output| output.skipped == Some(Skipped::AwaitingSnapshot))
    );
    // The third evicts the first held one.
    assert_eq!(outputs[2].gaps.len(), 1, "{:?}", outputs[2]);
    assert!(outputs[2].gaps[0].reason.contains("reorder buffer"));
    assert_eq!(engine.is_consistent(TOKEN), Some(false));
}
