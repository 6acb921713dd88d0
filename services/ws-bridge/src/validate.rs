//! A light order book per token, kept only to notice when the stream stopped describing
//! upstream's book: after every `price_change` entry our best bid/ask must equal the entry's
//! `best_bid`/`best_ask` (an empty bid side is written `0`, an empty ask side `1`), and a
//! token's event times never go backwards. Either failure means events were lost or reordered
//! on the way; the connection then resyncs the token (fresh `book` dump) and declares the gap.
//! There are no sequence numbers upstream, so this is the only in-stream integrity check.

use std::collections::HashMap;

use polytape_model::{
    BookSnapshot, Decimal, PriceChange,
    book::L2Book,
    micros::{ONE, to_micros},
};

/// Why a token's stream is no longer trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    Consistent,
    /// The token was already waiting for a fresh book; nothing new to report.
    AlreadyResyncing,
    /// A problem that needs a resync; the text is the continuity record's reason.
    Broken {
        reason: String,
        /// Upstream time up to which the token's stream was verified.
        valid_until_ms: i64,
    },
}

#[derive(Debug, Default)]
struct TokenBook {
    book: L2Book,
    has_snapshot: bool,
    resyncing: bool,
    last_event_ms: i64,
}

/// The validation books of one connection's tokens.
#[derive(Debug, Default)]
pub struct BookChecker {
    books: HashMap<String, TokenBook>,
}

/// A decimal as integer millionths; `None` beyond scale 6 or out of range.
fn micros(value: Decimal) -> Option<i64> {
    to_micros("value", value).ok()
}

impl BookChecker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets a token (unsubscribed).
    pub fn remove(&mut self, token_id: &str) {
        self.books.remove(token_id);
    }

    /// Whether the token waits for a fresh book.
    pub fn is_resyncing(&self, token_id: &str) -> bool {
        self.books.get(token_id).is_some_and(|book| book.resyncing)
    }

    /// Marks a token as waiting for a fresh book (a resync was requested).
    pub fn mark_resyncing(&mut self, token_id: &str) {
        self.books.entry(token_id.to_owned()).or_default().resyncing = true;
    }

    /// A `book` replaces the token's book and ends any resync.
    pub fn snapshot(&mut self, snapshot: &BookSnapshot) {
        let book = self.books.entry(snapshot.token_id.clone()).or_default();
        // The parser admits only levels exact at scale 6, so this cannot fail in practice; a
        // book that could not be represented is checked against nothing until the next one.
        book.has_snapshot = book.book.apply_snapshot(snapshot).is_ok();
        book.resyncing = false;
        book.last_event_ms = book.last_event_ms.max(snapshot.timestamp_ms);
    }

    /// Checks that a non-book event of the token does not go back in time.
    pub fn event_time(&mut self, token_id: &str, timestamp_ms: i64) -> Integrity {
        let book = self.books.entry(token_id.to_owned()).or_default();
        if book.resyncing {
            return Integrity::AlreadyResyncing;
        }
        if timestamp_ms < book.last_event_ms {
            let valid_until_ms = book.last_event_ms;
            book.resyncing = true;
            return Integrity::Broken {
                reason: format!(
                    "event time went back from {} to {timestamp_ms}: events reordered or lost",
                    book.last_event_ms
                ),
                valid_until_ms,
            };
        }
        book.last_event_ms = timestamp_ms;
        Integrity::Consistent
    }

    /// Applies one `price_change` entry and checks the top of book against it.
    pub fn change(&mut self, change: &PriceChange) -> Integrity {
        // A lost event lies after the last one verified, not after this one: the gap starts
        // there.
        let verified_until_ms = self
            .books
            .get(&change.token_id)
            .map_or(change.timestamp_ms, |book| book.last_event_ms);
        let time_check = self.event_time(&change.token_id, change.timestamp_ms);
        if time_check != Integrity::Consistent {
            return time_check;
        }
        let Some(book) = self.books.get_mut(&change.token_id) else {
            return Integrity::Consistent;
        };
        let (Some(price), Some(size)) = (micros(change.price), micros(change.size)) else {
            return Integrity::Consistent;
        };
        book.book.set_level(change.side, price, size);
        if !book.has_snapshot {
            // Nothing to compare with before the first book.
            return Integrity::Consistent;
        }
        let best_bid = book.book.best_bid().unwrap_or(0);
        let best_ask = book.book.best_ask().unwrap_or(ONE);
        let expected_bid = change.best_bid.and_then(micros);
        let expected_ask = change.best_ask.and_then(micros);
        let bid_ok = expected_bid.is_none_or(|expected| expected == best_bid);
        let ask_ok = expected_ask.is_none_or(|expected| expected == best_ask);
        if bid_ok && ask_ok {
            return Integrity::Consistent;
        }
        book.resyncing = true;
        Integrity::Broken {
            reason: format!(
                "book mismatch after price_change: ours {}/{} vs upstream {}/{}",
                Decimal::new(best_bid, 6).normalize(),
                Decimal::new(best_ask, 6).normalize(),
                change
                    .best_bid
                    .map_or("-".to_owned(), |value| value.to_string()),
                change
                    .best_ask
                    .map_or("-".to_owned(), |value| value.to_string()),
            ),
            valid_until_ms: verified_until_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use polytape_model::{BookLevel, BookSource, Side};

    use super::*;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn snapshot(bids: &[(&str, &str)], asks: &[(&str, &str)], timestamp_ms: i64) -> BookSnapshot {
        let level = |(price, size): &(&str, &str)| BookLevel {
            price: dec(price),
            size: dec(size),
        };
        BookSnapshot {
            token_id: "t".into(),
            condition_id: "m".into(),
            timestamp_ms,
            received_ms: 0,
            bids: bids.iter().map(level).collect(),
            asks: asks.iter().map(level).collect(),
            hash: None,
            tick_size: None,
            min_order_size: None,
            neg_risk: None,
            last_trade_price: None,
            source: BookSource::Ws,
            connection_id: None,
            sequence: None,
        }
    }

    fn change(side: Side, price: &str, size: &str, bid: &str, ask: &str, ts: i64) -> PriceChange {
        PriceChange {
            token_id: "t".into(),
            condition_id: "m".into(),
            side,
            price: dec(price),
            size: dec(size),
            best_bid: Some(dec(bid)),
            best_ask: Some(dec(ask)),
            hash: None,
            timestamp_ms: ts,
            received_ms: 0,
            connection_id: "c".into(),
            sequence: 1,
            entry_index: 0,
        }
    }

    #[test]
    fn consistent_changes_pass_and_empty_sides_read_as_zero_and_one() {
        let mut checker = BookChecker::new();
        checker.snapshot(&snapshot(&[("0.48", "30")], &[("0.52", "25")], 10));
        let steps = [
            change(Side::Buy, "0.49", "5", "0.49", "0.52", 11),
            change(Side::Buy, "0.49", "0", "0.48", "0.52", 12),
            change(Side::Buy, "0.48", "0", "0", "0.52", 13),
            change(Side::Sell, "0.52", "0", "0", "1", 13),
        ];
        for step in &steps {
            assert_eq!(checker.change(step), Integrity::Consistent, "{step:?}");
        }
    }

    #[test]
    fn a_lost_change_shows_as_a_mismatch_then_waits_for_a_book() {
        let mut checker = BookChecker::new();
        checker.snapshot(&snapshot(&[("0.48", "30")], &[("0.52", "25")], 10));
        // Upstream added a bid at 0.50 we never saw, then changed 0.49.
        let broken = checker.change(&change(Side::Buy, "0.49", "5", "0.5", "0.52", 12));
        // The lost change happened after the snapshot at 10: the gap starts there.
        assert!(matches!(
            broken,
            Integrity::Broken {
                valid_until_ms: 10,
                ..
            }
        ));
        assert!(checker.is_resyncing("t"));
        assert_eq!(
            checker.change(&change(Side::Buy, "0.47", "5", "0.5", "0.52", 13)),
            Integrity::AlreadyResyncing
        );
        checker.snapshot(&snapshot(&[("0.50", "1")], &[("0.52", "25")], 14));
        assert_eq!(
            checker.change(&change(Side::Buy, "0.49", "5", "0.5", "0.52", 15)),
            Integrity::Consistent
        );
    }

    #[test]
    fn time_going_back_is_a_reorder() {
        let mut checker = BookChecker::new();
        assert_eq!(checker.event_time("t", 20), Integrity::Consistent);
        assert_eq!(checker.event_time("t", 20), Integrity::Consistent);
        assert!(matches!(
            checker.event_time("t", 19),
            Integrity::Broken {
                valid_until_ms: 20,
                ..
            }
        ));
    }
}
