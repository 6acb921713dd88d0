//! A set that remembers only its most recently inserted members: bounded memory for the
//! bridge's "already seen" sets, which would otherwise grow for as long as the process lives.

use std::{
    borrow::Borrow,
    collections::{HashMap, VecDeque},
    hash::Hash,
};

/// At most `capacity` members; inserting beyond that forgets the oldest insertion. Removal is
/// O(1): the insertion order keeps a generation per member, and a stale entry is skipped when
/// it reaches the front, so the order queue is never longer than `capacity` either.
#[derive(Debug)]
pub struct RecentSet<K> {
    members: HashMap<K, u64>,
    order: VecDeque<(u64, K)>,
    capacity: usize,
    next: u64,
}

impl<K: Eq + Hash + Clone> RecentSet<K> {
    pub fn new(capacity: usize) -> Self {
        Self {
            members: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            next: 0,
        }
    }

    /// Adds `key`; returns whether it was new (a member already present is left where it is).
    pub fn insert(&mut self, key: K) -> bool {
        if self.members.contains_key(&key) {
            return false;
        }
        let generation = self.next;
        self.next += 1;
        self.members.insert(key.clone(), generation);
        self.order.push_back((generation, key));
        while self.order.len() > self.capacity {
            if let Some((generation, oldest)) = self.order.pop_front()
                && self.members.get(&oldest) == Some(&generation)
            {
                self.members.remove(&oldest);
            }
        }
        true
    }

    pub fn contains<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.members.contains_key(key)
    }

    /// Forgets `key`; returns whether it was a member.
    pub fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.members.remove(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_at_most_capacity_members_oldest_forgotten_first() {
        let mut set = RecentSet::new(3);
        assert!(set.insert(1));
        assert!(!set.insert(1), "a repeat is not new");
        assert!(set.insert(2));
        assert!(set.insert(3));
        assert!(set.insert(4));
        assert_eq!(set.len(), 3);
        assert!(!set.contains(&1), "the oldest is forgotten");
        assert!(set.contains(&2) && set.contains(&3) && set.contains(&4));
        // A forgotten member is new again.
        assert!(set.insert(1));
        assert!(!set.contains(&2));
    }

    #[test]
    fn removal_and_reinsertion_keep_both_structures_bounded() {
        let mut set = RecentSet::new(2);
        for round in 0..1_000 {
            assert!(set.insert(round % 5));
            assert!(set.remove(&(round % 5)));
        }
        assert!(set.is_empty());
        assert!(set.order.len() <= 2);
        // A stale queue entry of a removed-then-reinserted member does not evict it early.
        let mut set = RecentSet::new(2);
        set.insert("a");
        set.remove(&"a");
        set.insert("b");
        set.insert("a");
        assert!(set.contains(&"a") && set.contains(&"b"));
        set.insert("c");
        assert!(!set.contains(&"b") && set.contains(&"a") && set.contains(&"c"));
    }
}
