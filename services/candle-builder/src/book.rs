//! Order books per token: a full L2 book from `book_snapshots` (authoritative replace) and
//! `price_changes` (absolute size per level; 0 deletes), validated against the best bid/ask
//! upstream sends with every change, and published as [`BookState`].
//!
//! - **Event time**: a snapshot older than the one the book is built on is ignored; a change
//!   older than the book's snapshot is already in it and is ignored. Snapshots and changes
//!   travel on different topics, so a change can be read before the snapshot it follows: the
//!   last changes of each token (a bounded buffer, also filled before the first snapshot) are
//!   re-applied on top of a snapshot when their time is not older than the snapshot's.
//!   Changes carry absolute sizes, so re-applying one the snapshot already reflects changes
//!   nothing. A change of the snapshot's millisecond read on the snapshot's connection with
//!   an earlier sequence is in the snapshot too, and is skipped (one upstream operation
//!   stamps its changes and the following `book` with the same millisecond). If the buffer no longer holds every change newer than the snapshot, a
//!   consistent book is more current than the snapshot and the snapshot is skipped.
//! - **Connections**: event time orders one connection's events, not those of two
//!   connections. A snapshot from another WebSocket connection than the book's, read after the
//!   book's snapshot (`received_ms`, the bridge's clock), *takes over*: it is upstream's book
//!   as of its reading, whatever its time says — after an upstream restart (a new world) the
//!   new connection's dump carries the time of the book's last change, which can be older than
//!   the old world's events already applied. The book is replaced, only changes read after the
//!   snapshot are re-applied, and events of other connections read before it are stale from
//!   then on. A change of another connection than the book's that does not fit the book (or
//!   is older than its snapshot) is held, not declared: that connection's own snapshot (its
//!   subscription dump, which the fetch may deliver after the first changes) normally follows
//!   and takes over with it; if none comes within the reorder window (event time of that
//!   connection), the mismatch is declared.
//! - **Validation**: after each change the book's best bid/ask must equal the change's
//!   `best_bid`/`best_ask` (upstream writes an empty bid side as 0 and an empty ask side as 1).
//!   On a mismatch the token turns inconsistent: one [`Continuity`] record (kind
//!   `BOOK_MISMATCH`, gap open) is emitted, a state with `consistent = false` is published,
//!   and changes are not trusted until the next snapshot, which closes the gap (same
//!   continuity id, `gap_end_ms` set); the pipeline fetches one from REST
//!   ([`crate::resync`]) rather than wait for upstream's next `book`.
//! - **Publishing** (all by event time, so replays publish the same records): top-N levels on
//!   every snapshot, on every best bid/ask change, when consistency changes, and otherwise at
//!   most every `publish_interval`; a full-depth record when the event time enters a new
//!   `full_depth_interval` bucket. Versions count the token's book events, so they grow per
//!   token and a replay of the same events re-emits the same versions.

use std::collections::{HashMap, VecDeque};

use polytape_model::{
    BookLevel, BookSnapshot, BookState, Continuity, ContinuityKind, PriceChange, Side,
    book::L2Book,
    micros::{self, ONE, UnitsError},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::hash::FxBuildHasher;

/// Tick size assumed until a snapshot gives one (Polymarket's default tick).
const DEFAULT_TICK: i64 = 10_000;

/// What the book engine publishes, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookSettings {
    /// Levels per side in a regular (top-N) state.
    pub top_levels: usize,
    /// A token with activity but no significant change is published at most this often.
    pub publish_interval_ms: i64,
    /// A full-depth state is published when event time enters a new bucket of this length.
    pub full_depth_interval_ms: i64,
    /// Changes kept per token for re-applying over a snapshot read after them.
    pub reorder_window_ms: i64,
    /// Upper bound of that buffer per token (memory bound).
    pub reorder_capacity: usize,
}

impl Default for BookSettings {
    fn default() -> Self {
        Self {
            top_levels: 50,
            publish_interval_ms: 10_000,
            full_depth_interval_ms: 300_000,
            reorder_window_ms: 5_000,
            reorder_capacity: 128,
        }
    }
}

/// A change kept for re-applying over a late-read snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct RecentChange {
    time_ms: i64,
    side: Side,
    price: i64,
    size: i64,
    /// When the bridge read it: a snapshot of another connection taking over re-applies the
    /// changes read after it.
    #[serde(default)]
    received_ms: i64,
    /// Not applied: held for the snapshot of its connection (see [`TokenBook::awaiting`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    held: bool,
}

/// The book of one token with its validation and publishing state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TokenBook {
    book: L2Book,
    condition_id: Option<String>,
    tick_size: Option<i64>,
    /// Time of the snapshot the book is built on; `None` until the first snapshot.
    snapshot_ms: Option<i64>,
    /// `(connection, sequence)` of that snapshot when it came from the WebSocket: changes of
    /// the same connection and millisecond read before it are already in it.
    #[serde(default)]
    snapshot_origin: Option<(String, i64)>,
    /// `received_ms` of that snapshot: orders other connections' events against it.
    #[serde(default)]
    snapshot_received_ms: Option<i64>,
    /// A connection other than the book's whose changes did not fit the book, and the event
    /// time of the first of them: its changes are held until its own snapshot takes over, or
    /// declared a mismatch once its time passes the reorder window.
    #[serde(default)]
    awaiting: Option<(String, i64)>,
    /// Latest event time applied (never goes back: the time of published states).
    last_event_ms: i64,
    consistent: bool,
    open_gap: Option<Continuity>,
    /// Book events seen for this token: the version of its states.
    events: i64,
    last_published_ms: Option<i64>,
    last_published_best: (Option<i64>, Option<i64>),
    last_full_bucket: Option<i64>,
    recent: VecDeque<RecentChange>,
    /// Latest time of a change dropped from `recent` (by age or capacity).
    evicted_until_ms: Option<i64>,
}

/// What one book event produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BookOutput {
    pub states: Vec<BookState>,
    pub gaps: Vec<Continuity>,
    /// Why the event changed nothing, if it did not.
    pub skipped: Option<Skipped>,
}

/// Book events that are read but not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// A snapshot older than the one the book is built on.
    StaleSnapshot,
    /// A change older than the book's snapshot (the snapshot already contains it).
    StaleChange,
    /// A change for a token without a snapshot yet.
    NoBook,
    /// A change while the book waits for a snapshot after a mismatch.
    Inconsistent,
    /// A change of another connection than the book's that does not fit it, held for that
    /// connection's snapshot.
    AwaitingSnapshot,
}

/// Serializable state of a [`BookEngine`] (checkpoints).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BookEngineState {
    tokens: Vec<(String, TokenBook)>,
}

/// Books of every token the builder follows.
#[derive(Debug, Default)]
pub struct BookEngine {
    settings: BookSettings,
    tokens: HashMap<String, TokenBook, FxBuildHasher>,
}

impl BookEngine {
    pub fn new(settings: BookSettings) -> Self {
        Self {
            settings,
            tokens: HashMap::default(),
        }
    }

    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// The current book of a token.
    pub fn book(&self, token_id: &str) -> Option<&L2Book> {
        self.tokens.get(token_id).map(|token| &token.book)
    }

    /// Whether a token's book passed validation since its last snapshot.
    pub fn is_consistent(&self, token_id: &str) -> Option<bool> {
        self.tokens.get(token_id).map(|token| token.consistent)
    }

    /// Replaces a token's book with `snapshot` (unless it is older than the current one).
    pub fn apply_snapshot(&mut self, snapshot: &BookSnapshot) -> Result<BookOutput, UnitsError> {
        let mut output = BookOutput::default();
        let token = self.tokens.entry(snapshot.token_id.clone()).or_default();
        token.events += 1;
        let connection = snapshot.connection_id.as_deref();
        let book_connection = token
            .snapshot_origin
            .as_ref()
            .map(|(connection, _)| connection.as_str());
        let other_connection = token.snapshot_ms.is_some() && connection != book_connection;
        let read_after = token
            .snapshot_received_ms
            .is_none_or(|received| snapshot.received_ms > received);
        let read_before = token
            .snapshot_received_ms
            .is_some_and(|received| snapshot.received_ms < received);
        // A book of an earlier connection, read after the current connection's snapshot.
        let superseded =
            other_connection && connection.is_some() && book_connection.is_some() && read_before;
        // Another connection's book read after the book's snapshot is upstream's book as of
        // then, whatever its time: after an upstream restart the new connection's dump carries
        // the time of the new world's last change, older than the old world's events. A REST
        // book (no connection) read after the snapshot of a book known to be wrong likewise.
        let older_than_book_snapshot = token
            .snapshot_ms
            .is_some_and(|current| snapshot.timestamp_ms < current);
        let takes_over = other_connection
            && read_after
            && (connection.is_some() || (!token.consistent && older_than_book_snapshot));
        // Changes newer than the snapshot were applied already. Replacing the book is exact
        // only if every one of them is still in the buffer to be re-applied; otherwise a book
        // that passed validation is more current than the snapshot and stays.
        let buffer_complete = token
            .evicted_until_ms
            .is_none_or(|evicted| evicted < snapshot.timestamp_ms);
        let book_is_newer =
            token.consistent && token.last_event_ms > snapshot.timestamp_ms && !buffer_complete;
        if superseded || (!takes_over && (older_than_book_snapshot || book_is_newer)) {
            output.skipped = Some(Skipped::StaleSnapshot);
            return Ok(output);
        }
        token.book.apply_snapshot(snapshot)?;
        if let Some(tick) = snapshot.tick_size {
            token.tick_size = Some(micros::to_micros("tick_size", tick)?);
        }
        token.condition_id = Some(snapshot.condition_id.clone());
        token.snapshot_ms = Some(snapshot.timestamp_ms);
        token.snapshot_origin = snapshot.connection_id.clone().zip(snapshot.sequence);
        token.snapshot_received_ms = Some(snapshot.received_ms);
        token.last_event_ms = token.last_event_ms.max(snapshot.timestamp_ms);
        if takes_over {
            // What the book held was read before this snapshot on another connection: it is
            // in it (or of a world upstream no longer has). Changes read after it come after
            // it, held ones included.
            token
                .recent
                .retain(|change| change.received_ms >= snapshot.received_ms);
            token.evicted_until_ms = None;
            token.awaiting = None;
            for change in &mut token.recent {
                change.held = false;
            }
        } else {
            // Changes read before this snapshot but not older than it come after it; held
            // ones wait for their own connection's snapshot.
            token
                .recent
                .retain(|change| change.held || change.time_ms >= snapshot.timestamp_ms);
        }
        for change in &token.recent {
            if !change.held {
                token.book.set_level(change.side, change.price, change.size);
                token.last_event_ms = token.last_event_ms.max(change.time_ms);
            }
        }
        token.consistent = true;
        if let Some(mut gap) = token.open_gap.take() {
            gap.gap_end_ms = Some(snapshot.timestamp_ms.max(gap.gap_start_ms));
            // The closing record must win in ClickHouse (ReplacingMergeTree(detected_at)).
            gap.detected_ms = gap.detected_ms.max(snapshot.timestamp_ms);
            gap.reason = format!(
                "{}; recovered at the snapshot of {}",
                gap.reason, snapshot.timestamp_ms
            );
            output.gaps.push(gap);
        }
        // A takeover publishes a full-depth state too: readers that rebuild a book from the
        // newest full-depth state and the later changes (the API) start from this one.
        publish(
            &self.settings,
            &snapshot.token_id,
            token,
            true,
            takes_over,
            &mut output.states,
        );
        Ok(output)
    }

    /// Applies one level change and validates the book against it.
    pub fn apply_change(&mut self, change: &PriceChange) -> Result<BookOutput, UnitsError> {
        let mut output = BookOutput::default();
        let price = micros::to_micros("price", change.price)?;
        let size = micros::to_micros("size", change.size)?;
        let expected_bid = change
            .best_bid
            .map(|bid| micros::to_micros("best_bid", bid))
            .transpose()?;
        let expected_ask = change
            .best_ask
            .map(|ask| micros::to_micros("best_ask", ask))
            .transpose()?;
        if !self.tokens.contains_key(change.token_id.as_str()) {
            // A change read before the token's first snapshot is kept for it.
            self.tokens
                .insert(change.token_id.clone(), TokenBook::default());
        }
        let Some(token) = self.tokens.get_mut(change.token_id.as_str()) else {
            return Ok(output);
        };
        token.events += 1;
        // Upstream stamps every event of one operation with one millisecond (a trade's price
        // changes, then the `book` of the taker's token), and the merge releases a snapshot
        // before the changes of its millisecond: the connection's sequence tells which of
        // those the snapshot already reflects. Validating them against the later book would
        // declare a false mismatch.
        let contained_in_snapshot = token.snapshot_ms == Some(change.timestamp_ms)
            && token
                .snapshot_origin
                .as_ref()
                .is_some_and(|(connection, sequence)| {
                    *connection == change.connection_id && change.sequence < *sequence
                });
        // Event time orders one connection's events; another connection's are ordered against
        // the book's snapshot by when the bridge read them.
        let other_connection = token
            .snapshot_origin
            .as_ref()
            .is_some_and(|(connection, _)| *connection != change.connection_id);
        let read_before_snapshot = other_connection
            && token
                .snapshot_received_ms
                .is_some_and(|received| change.received_ms < received);
        let older_than_snapshot = token
            .snapshot_ms
            .is_some_and(|snapshot_ms| change.timestamp_ms < snapshot_ms);
        if contained_in_snapshot
            || read_before_snapshot
            || (older_than_snapshot && !other_connection)
        {
            output.skipped = Some(Skipped::StaleChange);
            return Ok(output);
        }
        let recent = RecentChange {
            time_ms: change.timestamp_ms,
            side: change.side,
            price,
            size,
            received_ms: change.received_ms,
            held: false,
        };
        token.recent.push_back(recent);
        let horizon = change
            .timestamp_ms
            .saturating_sub(self.settings.reorder_window_ms);
        while token.recent.len() > self.settings.reorder_capacity
            || token
                .recent
                .front()
                .is_some_and(|old| old.time_ms < horizon)
        {
            let over_capacity = token.recent.len() > self.settings.reorder_capacity;
            if let Some(evicted) = token.recent.pop_front() {
                if evicted.held
                    && over_capacity
                    && let Some((_, since_ms)) = token.awaiting.as_mut()
                {
                    // Its connection's snapshot could no longer re-apply every held change:
                    // the next change of that connection declares the mismatch.
                    *since_ms = i64::MIN;
                }
                token.evicted_until_ms = Some(
                    token
                        .evicted_until_ms
                        .map_or(evicted.time_ms, |until| until.max(evicted.time_ms)),
                );
            }
        }
        if token.snapshot_ms.is_none() {
            output.skipped = Some(Skipped::NoBook);
            return Ok(output);
        }
        if !token.consistent {
            output.skipped = Some(Skipped::Inconsistent);
            return Ok(output);
        }
        let valid_until_ms = token.last_event_ms;
        if let Some((connection, since_ms)) = &token.awaiting
            && *connection == change.connection_id
        {
            if change.timestamp_ms <= since_ms.saturating_add(self.settings.reorder_window_ms) {
                hold_last(token);
                output.skipped = Some(Skipped::AwaitingSnapshot);
                return Ok(output);
            }
            // Its own snapshot did not come: the book does not match what it sends.
            let reason = if *since_ms == i64::MIN {
                format!(
                    "changes of connection {} do not fit the book and more of them came before a snapshot of that connection than the reorder buffer holds ({})",
                    change.connection_id, self.settings.reorder_capacity
                )
            } else {
                format!(
                    "changes of connection {} since {since_ms} do not fit the book and no snapshot of that connection came within {} ms",
                    change.connection_id, self.settings.reorder_window_ms
                )
            };
            token.awaiting = None;
            token.last_event_ms = token.last_event_ms.max(change.timestamp_ms);
            for held in &mut token.recent {
                held.held = false;
            }
            declare_mismatch(
                &self.settings,
                change,
                token,
                valid_until_ms,
                reason,
                &mut output,
            );
            return Ok(output);
        }
        if older_than_snapshot {
            // Another connection's change older than the book's snapshot but read after it:
            // a connection lagging behind, or a new world whose times went back. Only its
            // own snapshot can tell.
            if token.awaiting.is_none() {
                token.awaiting = Some((change.connection_id.clone(), change.timestamp_ms));
                hold_last(token);
                output.skipped = Some(Skipped::AwaitingSnapshot);
            } else {
                output.skipped = Some(Skipped::StaleChange);
            }
            return Ok(output);
        }
        let previous_size = token.book.size(change.side, price);
        token.book.set_level(change.side, price, size);

        // Upstream writes an empty bid side as 0 and an empty ask side as 1.
        let expected_bid = expected_bid.map(|bid| (bid > 0).then_some(bid));
        let expected_ask = expected_ask.map(|ask| (ask < ONE).then_some(ask));
        let bid_ok = expected_bid.is_none_or(|bid| bid == token.book.best_bid());
        let ask_ok = expected_ask.is_none_or(|ask| ask == token.book.best_ask());
        if !(bid_ok && ask_ok) {
            if other_connection && token.awaiting.is_none() {
                // Another connection's change that does not fit the book: its snapshot (the
                // subscription dump, which the fetch can deliver after its first changes) is
                // expected to take over with it.
                token.book.set_level(change.side, price, previous_size);
                token.awaiting = Some((change.connection_id.clone(), change.timestamp_ms));
                hold_last(token);
                output.skipped = Some(Skipped::AwaitingSnapshot);
                return Ok(output);
            }
            let reason = format!(
                "book mismatch after price change (sequence {}, entry {}): book best bid/ask {}/{}, upstream says {}/{}",
                change.sequence,
                change.entry_index,
                price_text(token.book.best_bid()),
                price_text(token.book.best_ask()),
                expected_bid.map_or_else(|| "-".to_owned(), price_text),
                expected_ask.map_or_else(|| "-".to_owned(), price_text),
            );
            token.last_event_ms = token.last_event_ms.max(change.timestamp_ms);
            declare_mismatch(
                &self.settings,
                change,
                token,
                valid_until_ms,
                reason,
                &mut output,
            );
            return Ok(output);
        }
        token.last_event_ms = token.last_event_ms.max(change.timestamp_ms);
        publish(
            &self.settings,
            &change.token_id,
            token,
            false,
            false,
            &mut output.states,
        );
        Ok(output)
    }

    /// Tokens whose book is waiting for a snapshot after a mismatch.
    pub fn inconsistent_tokens(&self) -> Vec<String> {
        let mut tokens: Vec<String> = self
            .tokens
            .iter()
            .filter(|(_, token)| token.snapshot_ms.is_some() && !token.consistent)
            .map(|(token_id, _)| token_id.clone())
            .collect();
        tokens.sort();
        tokens
    }

    /// Forgets the books of resolved markets' tokens.
    pub fn evict(&mut self, token_ids: &[String]) -> usize {
        token_ids
            .iter()
            .filter(|token_id| self.tokens.remove(token_id.as_str()).is_some())
            .count()
    }

    /// Forgets books without an event since `before_ms` (event time).
    pub fn evict_idle(&mut self, before_ms: i64) -> usize {
        let count = self.tokens.len();
        self.tokens
            .retain(|_, token| token.last_event_ms >= before_ms);
        count - self.tokens.len()
    }

    pub fn state(&self) -> BookEngineState {
        let mut tokens: Vec<(String, TokenBook)> = self
            .tokens
            .iter()
            .map(|(token_id, token)| (token_id.clone(), token.clone()))
            .collect();
        tokens.sort_by(|left, right| left.0.cmp(&right.0));
        BookEngineState { tokens }
    }

    pub fn restore(settings: BookSettings, state: BookEngineState) -> Self {
        Self {
            settings,
            tokens: state.tokens.into_iter().collect(),
        }
    }
}

fn price_text(price: Option<i64>) -> String {
    price.map_or_else(
        || "none".to_owned(),
        |units| micros::micros_to_decimal(units).to_string(),
    )
}

/// Marks the token inconsistent: one open `BOOK_MISMATCH` gap and one state with
/// `consistent = false`; changes are not applied until the next snapshot.
fn declare_mismatch(
    settings: &BookSettings,
    change: &PriceChange,
    token: &mut TokenBook,
    valid_until_ms: i64,
    reason: String,
    output: &mut BookOutput,
) {
    token.consistent = false;
    let identity = format!(
        "candle-builder|book_mismatch|{}|{}|{}|{}",
        change.token_id, change.connection_id, change.sequence, change.entry_index
    );
    let digest = Sha256::digest(identity.as_bytes());
    let gap = Continuity {
        continuity_id: hex::encode(&digest[..16]),
        kind: ContinuityKind::BookMismatch,
        token_ids: vec![change.token_id.clone()],
        gap_start_ms: valid_until_ms,
        gap_end_ms: None,
        detected_ms: change.timestamp_ms,
        source: "candle-builder".to_owned(),
        connection_id: Some(change.connection_id.clone()),
        reason: format!("{reason}; waiting for the next snapshot"),
    };
    token.open_gap = Some(gap.clone());
    output.gaps.push(gap);
    publish(
        settings,
        &change.token_id,
        token,
        true,
        false,
        &mut output.states,
    );
}

/// Marks the change just buffered as held for its connection's snapshot.
fn hold_last(token: &mut TokenBook) {
    if let Some(last) = token.recent.back_mut() {
        last.held = true;
    }
}

/// Publishes the token's state if the publishing rules say so.
fn publish(
    settings: &BookSettings,
    token_id: &str,
    token: &mut TokenBook,
    force: bool,
    force_full_depth: bool,
    out: &mut Vec<BookState>,
) {
    let now = token.last_event_ms;
    let best = (token.book.best_bid(), token.book.best_ask());
    let due = token
        .last_published_ms
        .is_none_or(|last| now >= last.saturating_add(settings.publish_interval_ms));
    // Snapshots and mismatches force a record (a mismatch is published once, with
    // consistent = false; changes are skipped until the next snapshot).
    if force || (token.consistent && (best != token.last_published_best || due)) {
        out.push(state_of(settings, token_id, token, false));
        token.last_published_ms = Some(now);
        token.last_published_best = best;
    }
    let bucket = now.div_euclid(settings.full_depth_interval_ms.max(1));
    if token.consistent
        && (force_full_depth || token.last_full_bucket.is_none_or(|last| bucket > last))
    {
        out.push(state_of(settings, token_id, token, true));
        token.last_full_bucket = Some(
            token
                .last_full_bucket
                .map_or(bucket, |last| last.max(bucket)),
        );
    }
}

fn book_levels(levels: impl Iterator<Item = (i64, i64)>, limit: usize) -> Vec<BookLevel> {
    levels
        .take(limit)
        .map(|(price, size)| BookLevel {
            price: micros::micros_to_decimal(price),
            size: micros::micros_to_decimal(size),
        })
        .collect()
}

/// Mid of two scale-6 prices, rounded half-even to scale 6 (exact for any tick ≥ 0.000002).
fn mid_units(bid: i64, ask: i64) -> i64 {
    let sum = bid + ask;
    let half = sum.div_euclid(2);
    if sum.rem_euclid(2) == 0 || half % 2 == 0 {
        half
    } else {
        half + 1
    }
}

fn state_of(
    settings: &BookSettings,
    token_id: &str,
    token: &TokenBook,
    full_depth: bool,
) -> BookState {
    let book = &token.book;
    let limit = if full_depth {
        usize::MAX
    } else {
        settings.top_levels
    };
    let tick = token
        .tick_size
        .filter(|tick| *tick > 0)
        .unwrap_or(DEFAULT_TICK);
    let best_bid = book.best_bid();
    let best_ask = book.best_ask();
    let (mid, spread) = match (best_bid, best_ask) {
        (Some(bid), Some(ask)) => (Some(mid_units(bid, ask)), Some(ask - bid)),
        _ => (None, None),
    };
    let decimal = |units: Option<i64>| units.map(micros::micros_to_decimal);
    BookState {
        token_id: token_id.to_owned(),
        condition_id: token.condition_id.clone(),
        timestamp_ms: token.last_event_ms,
        bids: book_levels(book.bids(), limit),
        asks: book_levels(book.asks(), limit),
        full_depth,
        bid_level_count: i32::try_from(book.bid_level_count()).unwrap_or(i32::MAX),
        ask_level_count: i32::try_from(book.ask_level_count()).unwrap_or(i32::MAX),
        best_bid: decimal(best_bid),
        best_ask: decimal(best_ask),
        mid: decimal(mid),
        spread: decimal(spread),
        tick_size: decimal(token.tick_size),
        bid_depth_1_tick: micros::micros_to_decimal(book.bid_depth(1, tick)),
        bid_depth_5_ticks: micros::micros_to_decimal(book.bid_depth(5, tick)),
        bid_depth_10_ticks: micros::micros_to_decimal(book.bid_depth(10, tick)),
        ask_depth_1_tick: micros::micros_to_decimal(book.ask_depth(1, tick)),
        ask_depth_5_ticks: micros::micros_to_decimal(book.ask_depth(5, tick)),
        ask_depth_10_ticks: micros::micros_to_decimal(book.ask_depth(10, tick)),
        consistent: token.consistent,
        version: token.events,
    }
}
