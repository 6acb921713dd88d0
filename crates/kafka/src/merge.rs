//! Event-time merge of input partitions.
//!
//! A consumer fetches partitions independently: replaying a backlog, it may read thousands of
//! one partition's records before another's earlier ones. A processor whose state depends on
//! the order across partitions (a book needs its snapshot before the changes that follow it;
//! a wallet's first trade may be on any partition) holds its events here and takes them in
//! `(time, input, partition, offset)` order once no partition that still has unread records
//! can deliver an earlier one: an event is released when its time is below the times already
//! read from every partition with a backlog (times are assumed non-decreasing within a
//! partition). A partition read up to its end does not hold the merge back, so at the live
//! edge events pass straight through. During a replay every partition has a backlog, so the
//! order is the same whatever the fetch interleaving: the replay after a crash applies the
//! events in the same order as the run before it.

use std::{
    collections::{BTreeMap, HashMap},
    hash::Hash,
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// An event that can be merged: its time and the input (topic) it was read from. At equal
/// times, events of the smaller input come first.
pub trait MergeEvent {
    type Input: Copy + Ord + Hash + std::fmt::Debug + Serialize + DeserializeOwned;

    fn time_ms(&self) -> i64;
    fn input(&self) -> Self::Input;
}

type Key<I> = (i64, I, i32, i64);

/// Held events and the progress of every input partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(
    serialize = "E: Serialize",
    deserialize = "E: serde::de::DeserializeOwned"
))]
pub struct EventMerge<E: MergeEvent> {
    #[serde(with = "polytape_model::pairs")]
    held: BTreeMap<Key<E::Input>, E>,
    /// Largest event time read per partition.
    #[serde(with = "polytape_model::pairs")]
    seen_ms: HashMap<(E::Input, i32), i64>,
}

impl<E: MergeEvent> Default for EventMerge<E> {
    fn default() -> Self {
        Self {
            held: BTreeMap::new(),
            seen_ms: HashMap::new(),
        }
    }
}

impl<E: MergeEvent> EventMerge<E> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Events waiting.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The newest event time read from any partition.
    pub fn newest_ms(&self) -> Option<i64> {
        self.seen_ms.values().max().copied()
    }

    /// The newest event time read from one partition.
    pub fn seen_ms(&self, partition: &(E::Input, i32)) -> Option<i64> {
        self.seen_ms.get(partition).copied()
    }

    /// Holds an event read at `offset` of `partition`.
    pub fn push(&mut self, partition: i32, offset: i64, event: E) {
        let input = event.input();
        let time_ms = event.time_ms();
        let seen = self.seen_ms.entry((input, partition)).or_insert(time_ms);
        *seen = (*seen).max(time_ms);
        self.held.insert((time_ms, input, partition, offset), event);
    }

    /// Releases, in merge order, every event no backlog partition can precede.
    /// `backlog` lists the partitions that still have unread records.
    pub fn release(&mut self, backlog: &[(E::Input, i32)]) -> Vec<E> {
        self.release_until(backlog, None)
    }

    /// [`EventMerge::release`], holding back as well every event not more than `lateness_ms`
    /// older than the newest event read from any partition. At the live edge a partition read
    /// to its end does not hold the merge back, but a record of the same instant (the other
    /// token of one upstream message) may still be on its way to it: bounded out-of-orderness.
    /// What this holds back is released by a later read, or by [`EventMerge::release`] once
    /// the inputs are quiet.
    pub fn release_settled(&mut self, backlog: &[(E::Input, i32)], lateness_ms: i64) -> Vec<E> {
        let settled = self
            .newest_ms()
            .map(|newest| newest.saturating_sub(lateness_ms));
        self.release_until(backlog, settled)
    }

    fn release_until(&mut self, backlog: &[(E::Input, i32)], settled: Option<i64>) -> Vec<E> {
        let limit = backlog
            .iter()
            .map(|partition| self.seen_ms.get(partition).copied().unwrap_or(i64::MIN))
            .chain(settled)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Event(i64);

    impl MergeEvent for Event {
        type Input = u8;

        fn time_ms(&self) -> i64 {
            self.0
        }

        fn input(&self) -> u8 {
            0
        }
    }

    fn times(events: &[Event]) -> Vec<i64> {
        events.iter().map(|event| event.0).collect()
    }

    #[test]
    fn settled_release_holds_the_latest_instants_back_until_later_ones_are_read() {
        let mut merge = EventMerge::new();
        merge.push(0, 1, Event(1_000));
        merge.push(0, 2, Event(1_100));
        // Partition 1 has nothing unread (no backlog): the plain release would take both.
        // Within 250 ms of the newest read (1,100), both may still have siblings on the way.
        assert_eq!(times(&merge.release_settled(&[], 250)), Vec::<i64>::new());
        // The other token of 1,000 arrives late on partition 1, then time moves on.
        merge.push(1, 1, Event(1_000));
        merge.push(0, 3, Event(1_300));
        assert_eq!(times(&merge.release_settled(&[], 250)), [1_000, 1_000]);
        // Quiet inputs: everything goes.
        assert_eq!(times(&merge.release(&[])), [1_100, 1_300]);
        // A backlog partition still bounds the release as before (it may deliver more at its
        // last time, 1,500); without it, the lateness does (3,000 − 250).
        merge.push(0, 4, Event(2_000));
        merge.push(1, 2, Event(1_500));
        merge.push(0, 5, Event(3_000));
        assert_eq!(
            times(&merge.release_settled(&[(0, 1)], 250)),
            Vec::<i64>::new()
        );
        assert_eq!(
            times(&merge.release_settled(&[(0, 0)], 250)),
            [1_500, 2_000]
        );
    }
}
