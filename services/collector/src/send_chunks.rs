//! How a walk sent oldest first is cut into sends, each checkpointed once acknowledged.
//!
//! A walk buffers a market's window and sends it oldest first, so the candle builder sees each
//! token's fills in time order. If the whole window went out in one send and the process died
//! before the checkpoint, the next process would send the window again from its oldest fill —
//! after the newest had already moved the candle builder's watermark for those tokens. Copies
//! more than its correction horizon (24 h) behind that watermark can no longer be recognised as
//! copies there and are dead-lettered as late: false alarms, one per fill of a long backfill.
//! Cut into sends of at most [`CHUNK_SPAN_MS`] of event time (and [`CHUNK_FILLS`] fills), each
//! checkpointed, a crash re-sends at most one chunk, and every copy lies within an hour of the
//! newest fill sent before it: well inside the horizon, where copies are recognised.

use std::ops::Range;

use polytape_model::Trade;

/// Event time one chunk spans at most (unless one second alone spans more fills).
pub const CHUNK_SPAN_MS: i64 = 3_600_000;

/// Fills in one chunk at most (unless one second alone holds more).
pub const CHUNK_FILLS: usize = 20_000;

/// Cuts fills sorted by time into consecutive ranges that never split a second (so a chunk's
/// last second is complete when its checkpoint says so), each spanning at most
/// [`CHUNK_SPAN_MS`] from its first fill and holding at most [`CHUNK_FILLS`] fills — except a
/// single second that alone exceeds them, which is one chunk.
pub fn oldest_first_chunks(trades: &[Trade]) -> Vec<Range<usize>> {
    let second = |index: usize| trades[index].timestamp_ms.div_euclid(1_000);
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < trades.len() {
        let first_ms = trades[start].timestamp_ms;
        let mut end = start + 1;
        while end < trades.len() {
            let same_second = second(end) == second(end - 1);
            let fits =
                trades[end].timestamp_ms - first_ms <= CHUNK_SPAN_MS && end - start < CHUNK_FILLS;
            if !same_second && !fits {
                break;
            }
            end += 1;
        }
        // A second cut by the limits above (they are checked fill by fill) is taken whole:
        // `same_second` kept the loop going until the second changed.
        chunks.push(start..end);
        start = end;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade_at(timestamp_ms: i64) -> Trade {
        let mut trade = polytape_model::samples::trade();
        trade.timestamp_ms = timestamp_ms;
        trade
    }

    #[test]
    fn chunks_span_at_most_an_hour_and_never_split_a_second() {
        // Three fills a minute over three hours, three of them in one second at each hour mark.
        let mut times: Vec<i64> = (0..180).map(|minute| minute * 60_000).collect();
        times.extend([3_600_000, 3_600_000 + 400, 7_200_000 + 999]);
        times.sort_unstable();
        let trades: Vec<Trade> = times.iter().map(|time| trade_at(*time)).collect();
        let chunks = oldest_first_chunks(&trades);
        assert_eq!(
            chunks.iter().map(|chunk| chunk.len()).sum::<usize>(),
            trades.len()
        );
        for pair in chunks.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "consecutive");
            let last = trades[pair[0].end - 1].timestamp_ms.div_euclid(1_000);
            let next = trades[pair[1].start].timestamp_ms.div_euclid(1_000);
            assert!(last < next, "a second is never split");
        }
        for chunk in &chunks {
            let span = trades[chunk.end - 1].timestamp_ms - trades[chunk.start].timestamp_ms;
            assert!(span <= CHUNK_SPAN_MS + 999, "{span}");
        }
        assert_eq!(chunks.len(), 3);
    }

    #[test]
    fn a_second_denser_than_a_chunk_is_one_chunk() {
        let trades: Vec<Trade> = (0..CHUNK_FILLS + 5).map(|_| trade_at(1_000)).collect();
        assert_eq!(oldest_first_chunks(&trades), vec![0..CHUNK_FILLS + 5]);
        assert!(oldest_first_chunks(&[]).is_empty());
    }
}
