//! Declared gaps. Every interruption (disconnect, freeze, refused subscription, resync) is
//! published to `polymarket.continuity.v1` twice under one `continuity_id`:
//!
//! 1. at once, with `gap_end_ms` unset: from `gap_start_ms` on, these tokens may be incomplete
//!    (published before reconnecting, so the gap is on record even if the bridge dies next);
//! 2. once every token of the gap has an authoritative book again (its `book` dump after
//!    resubscribing, or a REST `/book`), with `gap_end_ms` set and a later `detected_ms`
//!    (ClickHouse keeps the row with the highest `detected_ms`).
//!
//! Bounds are upstream (event) times, the clock downstream reasons in: `gap_start_ms` is the
//! newest upstream timestamp read before the interruption (events at that millisecond may be
//! missing too), `gap_end_ms` the newest timestamp of the books that ended it (never before
//! the start). Every event upstream sent for a gap's token and the bridge did not publish has a
//! timestamp within `[gap_start_ms, gap_end_ms]`.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use polytape_model::{Continuity, ContinuityKind, now_ms};
use polytape_runtime::metrics::InternalEvent as _;
use sha2::{Digest as _, Sha256};

use crate::{
    metrics::{GapClosed, GapOpened},
    publish::SOURCE,
};

/// A stable 32-hex-character id for a gap.
pub fn identity(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

#[derive(Debug)]
struct OpenGap {
    record: Continuity,
    remaining: HashSet<String>,
    end_ms: i64,
}

#[derive(Debug, Default)]
struct Registry {
    open: HashMap<String, OpenGap>,
    by_token: HashMap<String, Vec<String>>,
}

/// The open gaps of the whole bridge (tokens move between connections, so this is shared).
#[derive(Debug, Default)]
pub struct Gaps {
    registry: Mutex<Registry>,
    /// Makes ids unique even for two gaps of one connection opened in the same millisecond.
    serial: AtomicU64,
}

impl Gaps {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens a gap for `tokens` from `gap_start_ms`; returns the record to publish now.
    pub fn open(
        &self,
        kind: ContinuityKind,
        tokens: Vec<String>,
        gap_start_ms: i64,
        connection_id: &str,
        reason: String,
    ) -> Option<Continuity> {
        if tokens.is_empty() {
            return None;
        }
        let detected_ms = now_ms();
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let continuity_id = identity(&format!(
            "{kind:?}|{connection_id}|{gap_start_ms}|{detected_ms}|{serial}|{}|{}",
            tokens.len(),
            tokens.first().map_or("", String::as_str)
        ));
        let record = Continuity {
            continuity_id: continuity_id.clone(),
            kind,
            token_ids: tokens.clone(),
            gap_start_ms,
            gap_end_ms: None,
            detected_ms,
            source: SOURCE.to_owned(),
            connection_id: Some(connection_id.to_owned()),
            reason,
        };
        GapOpened {
            continuity_id: &continuity_id,
            kind,
            tokens: tokens.len(),
            reason: &record.reason,
        }
        .emit();
        let mut registry = self.lock();
        for token in &tokens {
            registry
                .by_token
                .entry(token.clone())
                .or_default()
                .push(continuity_id.clone());
        }
        registry.open.insert(
            continuity_id,
            OpenGap {
                record: record.clone(),
                remaining: tokens.into_iter().collect(),
                end_ms: gap_start_ms,
            },
        );
        Some(record)
    }

    /// Takes over a gap an earlier process of the bridge opened and did not close (read back
    /// from the bridge's state topic): it is closed like any other, under its own id, once
    /// every token has a fresh book. Returns whether it was taken (not closed, not known yet).
    pub fn adopt(&self, record: Continuity) -> bool {
        if record.gap_end_ms.is_some() || record.token_ids.is_empty() {
            return false;
        }
        let mut registry = self.lock();
        if registry.open.contains_key(&record.continuity_id) {
            return false;
        }
        for token in &record.token_ids {
            registry
                .by_token
                .entry(token.clone())
                .or_default()
                .push(record.continuity_id.clone());
        }
        registry.open.insert(
            record.continuity_id.clone(),
            OpenGap {
                remaining: record.token_ids.iter().cloned().collect(),
                end_ms: record.gap_start_ms,
                record,
            },
        );
        true
    }

    /// A gap declared and closed at once (`[gap_start_ms, gap_end_ms]`, nothing to wait for);
    /// not registered.
    pub fn closed(
        kind: ContinuityKind,
        tokens: Vec<String>,
        gap_start_ms: i64,
        gap_end_ms: i64,
        connection_id: &str,
        reason: String,
    ) -> Option<Continuity> {
        if tokens.is_empty() {
            return None;
        }
        let detected_ms = now_ms();
        let continuity_id = identity(&format!(
            "{kind:?}|{connection_id}|{gap_start_ms}|{gap_end_ms}|{detected_ms}|{}|{}",
            tokens.len(),
            tokens.first().map_or("", String::as_str)
        ));
        GapOpened {
            continuity_id: &continuity_id,
            kind,
            tokens: tokens.len(),
            reason: &reason,
        }
        .emit();
        let gap_end_ms = gap_end_ms.max(gap_start_ms);
        GapClosed {
            continuity_id: &continuity_id,
            kind,
            gap_start_ms,
            gap_end_ms,
        }
        .emit();
        Some(Continuity {
            continuity_id,
            kind,
            token_ids: tokens,
            gap_start_ms,
            gap_end_ms: Some(gap_end_ms),
            detected_ms,
            source: SOURCE.to_owned(),
            connection_id: Some(connection_id.to_owned()),
            reason,
        })
    }

    /// The tokens of every open gap.
    pub fn open_tokens(&self) -> Vec<String> {
        self.lock().by_token.keys().cloned().collect()
    }

    /// A token has an authoritative book as of `book_ms` (`None`: it has no book upstream, or
    /// it is no longer followed); returns the gaps this closed.
    pub fn recovered(&self, token_id: &str, book_ms: Option<i64>) -> Vec<Continuity> {
        let mut registry = self.lock();
        if registry.by_token.is_empty() {
            return Vec::new();
        }
        let Some(ids) = registry.by_token.remove(token_id) else {
            return Vec::new();
        };
        let mut closed = Vec::new();
        for id in ids {
            let Some(gap) = registry.open.get_mut(&id) else {
                continue;
            };
            gap.remaining.remove(token_id);
            if let Some(book_ms) = book_ms {
                gap.end_ms = gap.end_ms.max(book_ms);
            }
            if gap.remaining.is_empty()
                && let Some(gap) = registry.open.remove(&id)
            {
                let mut record = gap.record;
                record.gap_end_ms = Some(gap.end_ms.max(record.gap_start_ms));
                record.detected_ms = now_ms().max(record.detected_ms + 1);
                GapClosed {
                    continuity_id: &record.continuity_id,
                    kind: record.kind,
                    gap_start_ms: record.gap_start_ms,
                    gap_end_ms: gap.end_ms,
                }
                .emit();
                closed.push(record);
            }
        }
        closed
    }

    /// Whether `token_id` is inside an open gap.
    pub fn is_open_for(&self, token_id: &str) -> bool {
        self.lock().by_token.contains_key(token_id)
    }

    /// Open gaps (for tests and status).
    pub fn open_count(&self) -> usize {
        self.lock().open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_closes_when_its_last_token_recovers_with_the_newest_book_time() {
        let gaps = Gaps::new();
        let opened = gaps
            .open(
                ContinuityKind::Disconnect,
                vec!["a".into(), "b".into()],
                100,
                "c1",
                "closed by server".into(),
            )
            .unwrap();
        assert_eq!(opened.gap_end_ms, None);
        assert!(gaps.recovered("a", Some(150)).is_empty());
        assert!(gaps.recovered("x", Some(150)).is_empty());
        let closed = gaps.recovered("b", Some(120));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].continuity_id, opened.continuity_id);
        assert_eq!(closed[0].gap_end_ms, Some(150));
        assert!(closed[0].detected_ms > opened.detected_ms);
        assert_eq!(gaps.open_count(), 0);
    }

    #[test]
    fn a_book_older_than_the_start_never_ends_a_gap_before_it_began() {
        let gaps = Gaps::new();
        gaps.open(
            ContinuityKind::Freeze,
            vec!["a".into()],
            500,
            "c1",
            "stale".into(),
        );
        let closed = gaps.recovered("a", Some(400));
        assert_eq!(closed[0].gap_end_ms, Some(500));
        gaps.open(
            ContinuityKind::Resync,
            vec!["a".into()],
            700,
            "c1",
            "mismatch".into(),
        );
        assert_eq!(gaps.recovered("a", None)[0].gap_end_ms, Some(700));
    }

    #[test]
    fn an_adopted_gap_closes_under_its_own_id_when_its_tokens_have_books() {
        let earlier = Gaps::new();
        let left_open = earlier
            .open(
                ContinuityKind::Disconnect,
                vec!["a".into(), "b".into()],
                1_000,
                "old-s000-g1",
                "bridge stopped".into(),
            )
            .unwrap();
        let gaps = Gaps::new();
        assert!(gaps.adopt(left_open.clone()));
        assert!(!gaps.adopt(left_open.clone()), "adopted once");
        let mut closed_record = left_open.clone();
        closed_record.gap_end_ms = Some(1_500);
        assert!(
            !gaps.adopt(closed_record),
            "a closed gap has nothing to wait for"
        );
        let mut open_tokens = gaps.open_tokens();
        open_tokens.sort();
        assert_eq!(open_tokens, ["a", "b"]);
        assert!(gaps.recovered("a", Some(2_000)).is_empty());
        let closed = gaps.recovered("b", Some(2_100));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].continuity_id, left_open.continuity_id);
        assert_eq!(closed[0].gap_start_ms, 1_000);
        assert_eq!(closed[0].gap_end_ms, Some(2_100));
        assert!(closed[0].detected_ms > left_open.detected_ms);
        assert_eq!(gaps.open_count(), 0);
    }

    #[test]
    fn a_gap_declared_closed_never_ends_before_it_starts() {
        let record = Gaps::closed(
            ContinuityKind::Disconnect,
            vec!["a".into()],
            900,
            800,
            "old",
            "gone".into(),
        )
        .unwrap();
        assert_eq!(record.gap_end_ms, Some(900));
        assert!(
            Gaps::closed(
                ContinuityKind::Other,
                Vec::new(),
                1,
                2,
                "old",
                String::new()
            )
            .is_none()
        );
    }
}
