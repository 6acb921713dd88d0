//! The two book inputs in event-time order.
//!
//! Snapshots and price changes travel on different topics (6 and 12 partitions), and the
//! consumer fetches partitions independently: replaying a backlog, it may read thousands of a
//! token's changes before the snapshot they follow. Books need them in event order, so book
//! events go through the shared [`EventMerge`] (`polytape_kafka::merge`): released in
//! `(timestamp, snapshot before change, partition, offset)` order once no partition with
//! unread records can deliver an earlier one.

use polytape_kafka::merge::{EventMerge, MergeEvent};
use polytape_model::{BookSnapshot, PriceChange};
use serde::{Deserialize, Serialize};

/// Which book input a partition belongs to; snapshots sort first at equal times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BookInput {
    Snapshots = 0,
    Changes = 1,
}

/// A book event waiting for its turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BookEvent {
    Snapshot(BookSnapshot),
    Change(PriceChange),
}

impl BookEvent {
    pub fn time_ms(&self) -> i64 {
        match self {
            BookEvent::Snapshot(snapshot) => snapshot.timestamp_ms,
            BookEvent::Change(change) => change.timestamp_ms,
        }
    }
}

impl MergeEvent for BookEvent {
    type Input = BookInput;

    fn time_ms(&self) -> i64 {
        BookEvent::time_ms(self)
    }

    fn input(&self) -> BookInput {
        match self {
            BookEvent::Snapshot(_) => BookInput::Snapshots,
            BookEvent::Change(_) => BookInput::Changes,
        }
    }
}

/// Held book events and the progress of every book partition.
pub type BookMerge = EventMerge<BookEvent>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use polytape_model::samples;

    use super::*;

    fn change(time_ms: i64) -> BookEvent {
        BookEvent::Change(PriceChange {
            timestamp_ms: time_ms,
            ..samples::price_change()
        })
    }

    fn snapshot(time_ms: i64) -> BookEvent {
        BookEvent::Snapshot(BookSnapshot {
            timestamp_ms: time_ms,
            ..samples::book_snapshot()
        })
    }

    fn times(events: &[BookEvent]) -> Vec<i64> {
        events.iter().map(BookEvent::time_ms).collect()
    }

    #[test]
    fn backlog_partitions_hold_back_later_events_and_ties_put_snapshots_first() {
        let mut merge = BookMerge::new();
        let backlog = [(BookInput::Snapshots, 0), (BookInput::Changes, 3)];
        // Changes read far ahead of the snapshots.
        for (offset, time) in [10, 20, 30, 40].into_iter().enumerate() {
            merge.push(3, offset as i64, change(time));
        }
        assert!(
            merge.release(&backlog).is_empty(),
            "nothing read from the snapshots yet"
        );
        merge.push(0, 0, snapshot(20));
        assert_eq!(times(&merge.release(&backlog)), [10]);
        merge.push(0, 1, snapshot(35));
        let released = merge.release(&backlog);
        assert_eq!(times(&released), [20, 20, 30]);
        assert!(
            matches!(released[0], BookEvent::Snapshot(_)),
            "snapshot first at equal times"
        );
        // The snapshot partition reached its end: it no longer holds anything back.
        assert_eq!(times(&merge.release(&[(BookInput::Changes, 3)])), [35]);
        assert_eq!(times(&merge.release(&[])), [40]);
        assert_eq!(merge.held(), 0);
    }

    #[test]
    fn held_events_survive_a_checkpoint() {
        let mut merge = BookMerge::new();
        merge.push(1, 7, change(5));
        merge.push(2, 8, snapshot(6));
        let text = serde_json::to_string(&merge).unwrap();
        let mut restored: BookMerge = serde_json::from_str(&text).unwrap();
        assert_eq!(times(&restored.release(&[])), [5, 6]);
    }
}
