//! Event-time merge of the two book inputs.
//!
//! Snapshots and price changes travel on different topics (6 and 12 partitions), and the
//! consumer fetches partitions independently: replaying a backlog, it may read thousands of a
//! token's changes before the snapshot they follow. Books need them in event order, so book
//! events are held here and released in `(timestamp, snapshot before change, partition,
//! offset)` order once no partition that still has unread records can deliver an earlier one:
//! an event is released when its time is below the times already read from every partition
//! with a backlog (times are assumed non-decreasing within a partition). A partition read up
//! to its end does not hold the merge back, so at the live edge events pass straight through.
//! During a replay every partition has a backlog, so the order is the same whatever the fetch
//! interleaving: the replay after a crash applies the events in the same order as the run
//! before it.

use std::collections::{BTreeMap, HashMap};

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

    fn input(&self) -> BookInput {
        match self {
            BookEvent::Snapshot(_) => BookInput::Snapshots,
            BookEvent::Change(_) => BookInput::Changes,
        }
    }
}

type Key = (i64, BookInput, i32, i64);

/// Held book events and the progress of every book partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BookMerge {
    #[serde(with = "entries")]
    held: BTreeMap<Key, BookEvent>,
    /// Largest event time read per partition.
    #[serde(with = "entries")]
    seen_ms: HashMap<(BookInput, i32), i64>,
}

impl BookMerge {
    pub fn new() -> Self {
        Self::default()
    }

    /// Events waiting.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Holds an event read at `offset` of `partition`.
    pub fn push(&mut self, partition: i32, offset: i64, event: BookEvent) {
        let input = event.input();
        let time_ms = event.time_ms();
        let seen = self.seen_ms.entry((input, partition)).or_insert(time_ms);
        *seen = (*seen).max(time_ms);
        self.held.insert((time_ms, input, partition, offset), event);
    }

    /// Releases, in merge order, every event no backlog partition can precede.
    /// `backlog` lists the book partitions that still have unread records.
    pub fn release(&mut self, backlog: &[(BookInput, i32)]) -> Vec<BookEvent> {
        let limit = backlog
            .iter()
            .map(|partition| self.seen_ms.get(partition).copied().unwrap_or(i64::MIN))
            .min();
        let mut released = Vec::new();
        while let Some(entry) = self.held.first_entry() {
            // A backlog partition may still deliver an event at its last time: wait for it.
            if limit.is_some_and(|limit| entry.key().0 >= limit) {
                break;
            }
            released.push(entry.remove());
        }
        released
    }
}

/// Maps with tuple keys as JSON arrays of pairs.
mod entries {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<'a, M, K, V, S>(map: &'a M, serializer: S) -> Result<S::Ok, S::Error>
    where
        &'a M: IntoIterator<Item = (&'a K, &'a V)>,
        K: Serialize + 'a,
        V: Serialize + 'a,
        S: Serializer,
    {
        serializer.collect_seq(map)
    }

    pub(super) fn deserialize<'de, M, K, V, D>(deserializer: D) -> Result<M, D::Error>
    where
        M: FromIterator<(K, V)>,
        K: Deserialize<'de>,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

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
