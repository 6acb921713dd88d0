//! Declared upstream gaps: time the collector could not read for a market, published to
//! `polymarket.continuity.v1` (`kind = UPSTREAM_GAP`, `source = "collector"`) so downstream
//! knows the market's trades there may be incomplete.
//!
//! Two causes: a second holding more fills than one request filter reaches under the Data
//! API's 10,000-offset cap (after re-reading it market by market), and a walk still failing
//! after every retry. The id is a digest of the cause, the market and the gap's start, so a
//! re-declaration (the same dense second read again, the same walk failing again next round
//! with a later end) is the same record downstream: ClickHouse keeps the one with the latest
//! `detected_ms`, i.e. the latest span.

use polytape_model::{Continuity, ContinuityKind};
use sha2::{Digest as _, Sha256};

/// Source of the collector's continuity records.
pub const SOURCE: &str = "collector";

/// Why a span is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapCause {
    /// More fills in one second than the offset cap returns for one market.
    DenseSecond,
    /// A market's walk incomplete after every retry (retried next round).
    WalkFailed,
}

impl GapCause {
    pub fn label(self) -> &'static str {
        match self {
            GapCause::DenseSecond => "dense_second",
            GapCause::WalkFailed => "walk_failed",
        }
    }
}

/// The continuity record for `[start_s, end_s]` (inclusive seconds) of one market.
pub fn upstream_gap(
    cause: GapCause,
    condition_id: &str,
    token_ids: Vec<String>,
    (start_s, end_s): (i64, i64),
    detected_ms: i64,
    detail: &str,
) -> Continuity {
    let gap_start_ms = start_s.saturating_mul(1000);
    let identity = format!("{SOURCE}|{}|{condition_id}|{gap_start_ms}", cause.label());
    Continuity {
        continuity_id: hex::encode(&Sha256::digest(identity.as_bytes())[..16]),
        kind: ContinuityKind::UpstreamGap,
        token_ids,
        gap_start_ms,
        gap_end_ms: Some(end_s.max(start_s).saturating_mul(1000).saturating_add(999)),
        detected_ms,
        source: SOURCE.to_owned(),
        connection_id: None,
        reason: format!("{}: {detail} (market {condition_id})", cause.label()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_is_identified_by_cause_market_and_start() {
        let tokens = vec!["1".to_owned(), "2".to_owned()];
        let first = upstream_gap(
            GapCause::WalkFailed,
            "0xabc",
            tokens.clone(),
            (100, 160),
            5,
            "503",
        );
        assert_eq!(first.kind, ContinuityKind::UpstreamGap);
        assert_eq!(first.source, "collector");
        assert_eq!(first.token_ids, tokens);
        assert_eq!(
            (first.gap_start_ms, first.gap_end_ms),
            (100_000, Some(160_999))
        );
        assert_eq!(first.continuity_id.len(), 32);
        // The same walk failing again next round, with a later end: the same record.
        let again = upstream_gap(
            GapCause::WalkFailed,
            "0xabc",
            tokens.clone(),
            (100, 190),
            9,
            "503",
        );
        assert_eq!(again.continuity_id, first.continuity_id);
        // Another cause, market or start: another record.
        for other in [
            upstream_gap(
                GapCause::DenseSecond,
                "0xabc",
                tokens.clone(),
                (100, 100),
                5,
                "x",
            ),
            upstream_gap(
                GapCause::WalkFailed,
                "0xabd",
                tokens.clone(),
                (100, 160),
                5,
                "x",
            ),
            upstream_gap(GapCause::WalkFailed, "0xabc", tokens, (101, 160), 5, "x"),
        ] {
            assert_ne!(other.continuity_id, first.continuity_id);
        }
    }
}
