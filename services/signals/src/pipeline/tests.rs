#![allow(clippy::unwrap_used)]

use polytape_model::{BookLevel, Side, SignalKind, samples};

use super::*;
use crate::test_support::{dec, market, price_change, settings};

fn processor() -> Processor {
    Processor {
        engine: Engine::new(&settings(), EngineState::default()),
        merge: EventMerge::new(),
        positions: HashMap::new(),
        book_partitions_read: Vec::new(),
        signals: Vec::new(),
        dead: Vec::new(),
    }
}

fn level(price: &str, size: &str) -> BookLevel {
    BookLevel {
        price: dec(price),
        size: dec(size),
    }
}

fn snapshot(token_id: &str, at_ms: i64, bid: &str, ask: &str) -> SignalEvent {
    SignalEvent::Snapshot(BookSnapshot {
        token_id: token_id.to_owned(),
        timestamp_ms: at_ms,
        bids: vec![level(bid, "10")],
        asks: vec![level(ask, "40")],
        ..samples::book_snapshot()
    })
}

fn change(token_id: &str, at_ms: i64, side: Side, price: &str, size: &str) -> SignalEvent {
    SignalEvent::Change(price_change(token_id, at_ms, side, price, size))
}

/// Reads `event` as the next record of `partition`, as `process` does once it is decoded.
fn read(processor: &mut Processor, partition: i32, event: SignalEvent) {
    let kind = match event.input() {
        SignalInput::BookSnapshots => Topic::BookSnapshots,
        SignalInput::PriceChanges => Topic::PriceChanges,
        SignalInput::Trades => Topic::Trades,
    };
    let topic = kind.default_name();
    let offset = processor.position(topic, partition);
    let input = Input {
        topic,
        kind,
        partition,
        offset,
        timestamp_ms: 0,
        payload: &[],
    };
    processor.hold(&input, event);
    processor
        .positions
        .insert((topic.to_owned(), partition), offset + 1);
}

/// A processor watching the binary markets `names`, the books of market `i` read at 1,000
/// from partition `i` (asks 0.52 + 0.50: no window) and judged.
fn booked(names: &[&str]) -> Processor {
    let mut processor = processor();
    for (partition, name) in (0..).zip(names) {
        processor.engine.market(market(name));
        let (yes, no) = (format!("{name}-yes"), format!("{name}-no"));
        read(
            &mut processor,
            partition,
            snapshot(&yes, 1_000, "0.47", "0.52"),
        );
        read(
            &mut processor,
            partition,
            snapshot(&no, 1_000, "0.45", "0.50"),
        );
    }
    processor.judge(&[], true).unwrap();
    assert_eq!(processor.signals, []);
    processor
}

#[test]
fn a_batch_that_ends_inside_an_upstream_message_leaves_its_instant_to_the_next_read() {
    let mut processor = booked(&["m", "other"]);

    // One upstream message at 2,000 moves both of m's tokens (YES ask 0.45, NO ask 0.58: 1.03),
    // its two records adjacent on partition 0. The batch ends after the first, and it also
    // read partition 1 up to 2,400: 2,000 is older than the merge's lateness, and no backlog
    // is known (the high watermarks are a second old). Half of the message alone (0.45 +
    // 0.50) would be a window no complete book ever showed.
    read(
        &mut processor,
        0,
        change("m-yes", 2_000, Side::Sell, "0.45", "40"),
    );
    read(
        &mut processor,
        1,
        change("other-yes", 2_400, Side::Buy, "0.40", "5"),
    );
    processor.judge(&[], false).unwrap();
    assert_eq!(processor.signals, []);
    assert_eq!(
        processor.engine.pending_at_ms(),
        None,
        "nothing of 2,000 judged yet"
    );

    // The next batch reads the message's second half, then the inputs move on.
    read(
        &mut processor,
        0,
        change("m-no", 2_000, Side::Sell, "0.58", "40"),
    );
    read(
        &mut processor,
        0,
        change("m-no", 2_000, Side::Sell, "0.50", "0"),
    );
    processor.judge(&[], false).unwrap();
    read(
        &mut processor,
        1,
        change("other-yes", 2_600, Side::Buy, "0.41", "5"),
    );
    processor.judge(&[], false).unwrap();
    processor.judge(&[], true).unwrap();

    let windows: Vec<&Signal> = processor
        .signals
        .iter()
        .filter(|signal| signal.kind == SignalKind::BinaryArbitrage)
        .collect();
    assert_eq!(
        windows,
        Vec::<&Signal>::new(),
        "the message was judged whole"
    );
    assert_eq!(processor.engine.take_late_book_batches(), 0);
    assert_eq!(processor.merge.held(), 0);
}

#[test]
fn a_book_partition_that_lags_or_whose_records_are_refused_holds_nothing_back() {
    let mut processor = booked(&["m"]);
    // Partition 1 delivers only a refused change (finer than a micro: dead-lettered, never
    // merged); partition 2 is read 5 s behind partition 0.
    read(
        &mut processor,
        1,
        change("m-yes", 9_000, Side::Sell, "0.52", "0.0000001"),
    );
    read(
        &mut processor,
        2,
        change("m-no", 4_000, Side::Sell, "0.50", "40"),
    );
    read(
        &mut processor,
        0,
        change("m-yes", 9_000, Side::Buy, "0.40", "5"),
    );
    processor.judge(&[], false).unwrap();
    assert_eq!(processor.dead.len(), 1, "the refused change");
    // Only partition 0's last instant (and the lateness) holds: 4,000 is judged.
    assert_eq!(processor.merge.held(), 1);
    assert_eq!(processor.engine.pending_at_ms(), None);
}
