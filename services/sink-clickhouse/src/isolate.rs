//! Isolating the rows ClickHouse refuses for good, so one bad row cannot stall the sink.
//!
//! An insert ClickHouse rejects permanently (a data error: see
//! `polytape_clickhouse::classify_error`) is split in halves, and each half inserted on its
//! own, recursively, until the refused rows stand alone: those become dead letters, every other
//! row is inserted exactly once. With k bad rows among n, that costs O(k·log n) inserts; a
//! batch without bad rows costs one insert, as before.
//!
//! Every insert carries its own deduplication token, derived from the token of the whole
//! insert and the row range it holds ([`range_token`]). Bisection is deterministic (same rows,
//! same verdicts → same ranges), so replaying a batch after a crash sends the same ranges with
//! the same tokens, and ClickHouse drops the ranges it already stored.
//!
//! The function is pure over its `insert` callback (no ClickHouse, no clock), which is what
//! its tests drive.

use std::{future::Future, ops::Range};

/// What one insert of a range of rows came to, retryable failures already retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The rows are in ClickHouse.
    Inserted,
    /// ClickHouse refuses these rows for good; its message.
    Rejected(String),
    /// Not inserted, and not worth going on: the sink is stopping.
    Stopped,
}

/// A row ClickHouse refused on its own: its index and ClickHouse's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    pub index: usize,
    pub message: String,
}

/// The deduplication token of the insert of `rows`, part of the insert named `token`.
pub fn range_token(token: &str, rows: &Range<usize>) -> String {
    format!("{token}:{}-{}", rows.start, rows.end)
}

/// Inserts `rows` through `insert(range, token)`, bisecting every range ClickHouse rejects
/// until the rejected rows are single; returns those (in index order), or `None` if `insert`
/// reported [`Attempt::Stopped`] (nothing more is attempted; what was inserted stays, and a
/// replay re-sends it under the same tokens).
pub async fn insert_isolating<F, Fut>(
    rows: Range<usize>,
    token: &str,
    mut insert: F,
) -> Option<Vec<RejectedRow>>
where
    F: FnMut(Range<usize>, String) -> Fut,
    Fut: Future<Output = Attempt>,
{
    let mut rejected = Vec::new();
    // Ranges still to insert, the next one last: halves are pushed right then left, so rows
    // are attempted (and rejected rows reported) in index order.
    let mut pending = vec![rows];
    while let Some(range) = pending.pop() {
        if range.is_empty() {
            continue;
        }
        let range_token = range_token(token, &range);
        match insert(range.clone(), range_token).await {
            Attempt::Inserted => {}
            Attempt::Stopped => return None,
            Attempt::Rejected(message) if range.len() == 1 => rejected.push(RejectedRow {
                index: range.start,
                message,
            }),
            Attempt::Rejected(_) => {
                let middle = range.start + range.len() / 2;
                pending.push(middle..range.end);
                pending.push(range.start..middle);
            }
        }
    }
    Some(rejected)
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, collections::BTreeSet};

    use super::*;

    /// A fake ClickHouse: refuses any insert holding one of `bad`, records what it stored and
    /// every insert it was sent.
    struct FakeTable {
        bad: BTreeSet<usize>,
        stored: RefCell<Vec<usize>>,
        inserts: RefCell<Vec<(Range<usize>, String)>>,
    }

    impl FakeTable {
        fn new(bad: &[usize]) -> Self {
            Self {
                bad: bad.iter().copied().collect(),
                stored: RefCell::default(),
                inserts: RefCell::default(),
            }
        }

        fn insert(&self, range: Range<usize>, token: String) -> std::future::Ready<Attempt> {
            self.inserts.borrow_mut().push((range.clone(), token));
            if let Some(bad) = range.clone().find(|row| self.bad.contains(row)) {
                return std::future::ready(Attempt::Rejected(format!(
                    "Code: 469. DB::Exception: Constraint violated at row {bad}. (VIOLATED_CONSTRAINT)"
                )));
            }
            self.stored.borrow_mut().extend(range);
            std::future::ready(Attempt::Inserted)
        }

        async fn load(&self, rows: Range<usize>) -> Vec<RejectedRow> {
            insert_isolating(rows, "batch:trades", |range, token| {
                self.insert(range, token)
            })
            .await
            .unwrap_or_else(|| panic!("never stopped"))
        }
    }

    fn sorted(mut rows: Vec<usize>) -> Vec<usize> {
        rows.sort_unstable();
        rows
    }

    #[tokio::test]
    async fn one_bad_row_is_isolated_and_every_other_row_stored_exactly_once() {
        for (rows, bad) in [
            (1000, 500),
            (1000, 0),
            (1000, 999),
            (1, 0),
            (2, 1),
            (37, 18),
        ] {
            let table = FakeTable::new(&[bad]);
            let rejected = table.load(0..rows).await;
            assert_eq!(rejected.len(), 1, "{rows} rows, bad {bad}");
            assert_eq!(rejected[0].index, bad);
            assert!(rejected[0].message.contains("VIOLATED_CONSTRAINT"));
            let expected: Vec<usize> = (0..rows).filter(|row| *row != bad).collect();
            assert_eq!(sorted(table.stored.take()), expected, "each good row once");
            // Bisection: about two inserts per halving, not one per row.
            let inserts = table.inserts.borrow().len();
            assert!(
                inserts <= 2 * (rows.ilog2() as usize + 1) + 1,
                "{inserts} inserts"
            );
        }
    }

    #[tokio::test]
    async fn several_bad_rows_come_back_in_order_and_the_rest_loads() {
        let bad = [3, 4, 250, 251, 252, 999];
        let table = FakeTable::new(&bad);
        let rejected = table.load(0..1000).await;
        let indexes: Vec<usize> = rejected.iter().map(|row| row.index).collect();
        assert_eq!(indexes, bad);
        let expected: Vec<usize> = (0..1000).filter(|row| !bad.contains(row)).collect();
        assert_eq!(sorted(table.stored.take()), expected);
    }

    #[tokio::test]
    async fn a_clean_batch_is_one_insert_and_every_row_bad_is_every_row_rejected() {
        let clean = FakeTable::new(&[]);
        assert!(clean.load(0..1000).await.is_empty());
        assert_eq!(
            *clean.inserts.borrow(),
            vec![(0..1000, "batch:trades:0-1000".to_owned())]
        );

        let all: Vec<usize> = (10..20).collect();
        let poisoned = FakeTable::new(&all);
        let rejected = poisoned.load(10..20).await;
        assert_eq!(
            rejected.iter().map(|row| row.index).collect::<Vec<_>>(),
            all
        );
        assert!(poisoned.stored.borrow().is_empty());
    }

    #[tokio::test]
    async fn every_insert_has_its_own_token_and_a_replay_sends_the_same_ones() {
        let first = FakeTable::new(&[7, 300]);
        first.load(0..512).await;
        let replay = FakeTable::new(&[7, 300]);
        replay.load(0..512).await;
        assert_eq!(*first.inserts.borrow(), *replay.inserts.borrow());
        let inserts = first.inserts.borrow();
        let tokens: BTreeSet<&String> = inserts.iter().map(|(_, token)| token).collect();
        assert_eq!(tokens.len(), inserts.len(), "no token used twice");
        for (range, token) in inserts.iter() {
            assert_eq!(*token, range_token("batch:trades", range));
        }
    }

    #[tokio::test]
    async fn stopping_ends_the_bisection_without_a_verdict() {
        let attempts = RefCell::new(0);
        let outcome = insert_isolating(0..100, "t", |range, _| {
            *attempts.borrow_mut() += 1;
            std::future::ready(if range.len() == 100 {
                Attempt::Rejected("Code: 6.".to_owned())
            } else {
                Attempt::Stopped
            })
        })
        .await;
        assert_eq!(outcome, None);
        assert_eq!(*attempts.borrow(), 2, "nothing attempted after the stop");
    }

    #[tokio::test]
    async fn an_empty_range_inserts_nothing() {
        let table = FakeTable::new(&[]);
        assert!(table.load(5..5).await.is_empty());
        assert!(table.inserts.borrow().is_empty());
    }
}
