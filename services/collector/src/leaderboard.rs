//! One leaderboard list of a snapshot is read page by page (`limit` 50, `offset` …), and the
//! ranks can shift between two pages: a wallet that moved down one place between the reads
//! appears on both pages, and the wallet that moved up past the page boundary appears on
//! neither. A row's identity is `(snapshot_ms, period, category, order_by, proxy_wallet)`, so
//! a wallet twice in one list would be one row downstream with whichever rank arrived last.
//!
//! [`ListTally`] keeps each wallet's first row in the list (the pages are read in rank order,
//! so the first is the best rank) and counts the ranks no kept row carries. The leaderboard
//! record has no field for them (`schemas/avro/leaderboard.avsc`), so they are logged and
//! counted (`polytape_collector_leaderboard_missing_ranks_total`) rather than declared in the
//! snapshot.

use std::collections::{BTreeSet, HashSet};

use polytape_model::LeaderboardEntry;

/// Wallets and ranks of one list read so far.
#[derive(Debug, Default)]
pub struct ListTally {
    wallets: HashSet<String>,
    ranks: BTreeSet<i32>,
    duplicates: u64,
}

impl ListTally {
    /// The entries of the next page whose wallet was not read earlier in the list (in page
    /// order); the others are counted as duplicates.
    pub fn admit(&mut self, entries: Vec<LeaderboardEntry>) -> Vec<LeaderboardEntry> {
        entries
            .into_iter()
            .filter(|entry| {
                if self.wallets.insert(entry.proxy_wallet.clone()) {
                    self.ranks.insert(entry.rank);
                    true
                } else {
                    self.duplicates += 1;
                    false
                }
            })
            .collect()
    }

    /// Rows dropped because their wallet was already in the list.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Ranks in `1..=` the highest rank kept that no kept row carries.
    pub fn missing_ranks(&self) -> u64 {
        let Some(highest) = self.ranks.last().copied() else {
            return 0;
        };
        let present = self.ranks.range(1..=highest).count() as u64;
        u64::try_from(highest).unwrap_or(0).saturating_sub(present)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(wallet: u32, rank: i32) -> LeaderboardEntry {
        LeaderboardEntry {
            proxy_wallet: format!("0x{wallet:040x}"),
            period: "DAY".to_owned(),
            category: "OVERALL".to_owned(),
            order_by: "PNL".to_owned(),
            rank,
            user_name: None,
            x_username: None,
            profile_image: None,
            verified_badge: None,
            volume: None,
            pnl: None,
            snapshot_ms: 1,
        }
    }

    /// Page 1 read ranks 1–3 (wallets 1, 2, 3); then wallet 2 fell to rank 5, so page 2
    /// (ranks 4–6) holds wallets 5, 2, 6 — wallet 4, now rank 3, was never read.
    #[test]
    fn a_wallet_read_twice_keeps_its_first_rank_and_the_skipped_rank_is_counted() {
        let mut tally = ListTally::default();
        let first = tally.admit(vec![entry(1, 1), entry(2, 2), entry(3, 3)]);
        assert_eq!(first.len(), 3);
        let second = tally.admit(vec![entry(5, 4), entry(2, 5), entry(6, 6)]);
        let kept: Vec<(String, i32)> = second
            .iter()
            .map(|entry| (entry.proxy_wallet.clone(), entry.rank))
            .collect();
        assert_eq!(
            kept,
            vec![(format!("0x{:040x}", 5), 4), (format!("0x{:040x}", 6), 6)]
        );
        assert_eq!(tally.duplicates(), 1);
        assert_eq!(
            tally.missing_ranks(),
            1,
            "rank 5 is nobody's in the snapshot"
        );
    }

    #[test]
    fn a_steady_list_has_nothing_to_report() {
        let mut tally = ListTally::default();
        assert_eq!(tally.missing_ranks(), 0);
        tally.admit((1..=50).map(|rank| entry(rank as u32, rank)).collect());
        tally.admit((51..=80).map(|rank| entry(rank as u32, rank)).collect());
        assert_eq!((tally.duplicates(), tally.missing_ranks()), (0, 0));
        // A refused row (dead-lettered) leaves its rank missing too.
        let mut tally = ListTally::default();
        tally.admit(vec![entry(1, 1), entry(3, 3)]);
        assert_eq!(tally.missing_ranks(), 1);
    }
}
