//! OHLCV candles by event time, per token and UTC-aligned interval.
//!
//! One [`CandleAggregator`] holds the state derived from one input partition of the trades
//! topic: per token, its watermark and its open windows. Trades are keyed by condition id, so
//! every trade of a token arrives on one partition, and the aggregator's outputs are a pure
//! function of that partition's records. That is what makes replays exact: the same offsets
//! produce the same keys, contents and versions.
//!
//! - **Windows**: `[open, open + length)`, `open = floor(trade time / length) · length` (UTC
//!   epoch alignment, so 1d candles start at 00:00 UTC).
//! - **Order**: trades are totally ordered by `(timestamp_ms, trade_id)` (trade ids are
//!   unique); open/close are the first/last trade in that order, exactly like ClickHouse's
//!   `argMin/argMax(price, (timestamp, trade_id))`. Arrival order never matters.
//! - **Watermark, per token**: the largest trade time seen for the token. Not per partition:
//!   many markets share a partition and the collector backfills them one after another, so a
//!   market's history routinely arrives after another market has moved far ahead; only the
//!   token's own progress says whether one of its trades is late.
//! - **Final**: a window whose `close + allowed_lateness ≤` its token's watermark is emitted
//!   once more with `is_final = true`. A token that stops trading keeps its last windows open
//!   (not final) until its next trade.
//! - **Corrections**: a final window is kept (settled) for the correction horizon
//!   (`candle_correction_horizon`, 24 h by default). A trade that arrives for it later — a
//!   fill the collector's reconciliation found late — corrects it: the candle is emitted
//!   again, complete, still final, with `revision` one higher. Only a trade older than its
//!   token's `watermark − horizon` (or than the newest window evicted for idleness, see
//!   below) is rejected as late (the pipeline dead-letters it).
//! - **Versions**: a candle's version is the offset of the input record that produced it (the
//!   last trade that changed it, or the trade of the same token whose watermark finalised it).
//!   Offsets grow within a partition, so versions grow per key, and a replay re-emits
//!   identical versions.
//! - **Eviction**: settled windows leave once `close + horizon ≤` their token's watermark; a
//!   token idle for longer than the horizon (the partition's newest trade time ahead of its
//!   own by more) loses its settled windows too, and its trades before them are rejected from
//!   then on. A token without windows keeps only its watermark and that floor (tens of
//!   bytes), because forgetting them would let a redelivered old trade reopen a window
//!   already published (a partial candle with a higher version would replace the complete
//!   one). Memory therefore holds every window with trades within the horizon, and the
//!   duplicate filter every trade id within it.
//! - **Duplicates**: a trade already counted — same `(timestamp_ms, trade_id)`, the identity of
//!   ClickHouse's `trades` table — is ignored, so redelivery never double-counts.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    str::FromStr,
    sync::Arc,
};

use polytape_model::{
    Candle, LastTrade, Side, Trade, TradeSource,
    micros::{self, UnitsError},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::hash::FxBuildHasher;

/// A candle interval: a whole number of seconds, minutes, hours or days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Interval {
    length_ms: i64,
}

/// An interval label that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a candle interval; use a positive number with s, m, h or d (e.g. 1m, 4h, 1d) that divides a day"
)]
pub struct IntervalError(String);

impl Interval {
    pub const MINUTE: Interval = Interval { length_ms: 60_000 };

    pub fn from_ms(length_ms: i64) -> Option<Interval> {
        // Dividing the day keeps every interval aligned to UTC midnight as well as the epoch.
        (length_ms > 0 && 86_400_000 % length_ms == 0 && length_ms % 1_000 == 0)
            .then_some(Interval { length_ms })
    }

    pub fn length_ms(self) -> i64 {
        self.length_ms
    }

    /// Start of the interval that contains `time_ms`.
    pub fn open_time(self, time_ms: i64) -> i64 {
        time_ms.div_euclid(self.length_ms) * self.length_ms
    }

    /// The default set: 1m, 5m, 15m, 1h, 4h, 1d.
    pub fn defaults() -> Vec<Interval> {
        ["1m", "5m", "15m", "1h", "4h", "1d"]
            .iter()
            .filter_map(|label| label.parse().ok())
            .collect()
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.length_ms / 1_000;
        for (unit, length) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
            if seconds % length == 0 {
                return write!(formatter, "{}{unit}", seconds / length);
            }
        }
        write!(formatter, "{seconds}s")
    }
}

impl FromStr for Interval {
    type Err = IntervalError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || IntervalError(text.to_owned());
        let text = text.trim();
        let split = text.len().checked_sub(1).ok_or_else(error)?;
        let (number, unit) = text.split_at(split);
        let unit_ms = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(error()),
        };
        let count: i64 = number.parse().map_err(|_| error())?;
        count
            .checked_mul(unit_ms)
            .and_then(Interval::from_ms)
            .ok_or_else(error)
    }
}

/// What the aggregator derives, how long it waits for late trades before a window is final,
/// and how long a final window can still be corrected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandleSettings {
    intervals: Vec<Interval>,
    allowed_lateness_ms: i64,
    correction_horizon_ms: i64,
}

/// The default `candle_correction_horizon`: a day, the collector's deepest reconciliation.
pub const DEFAULT_CORRECTION_HORIZON_MS: i64 = 24 * 3_600_000;

impl CandleSettings {
    /// Intervals are sorted and deduplicated; the shortest one also holds the duplicate filter.
    /// No corrections (the horizon equals the lateness) until
    /// [`with_correction_horizon`](Self::with_correction_horizon).
    pub fn new(mut intervals: Vec<Interval>, allowed_lateness_ms: i64) -> Self {
        intervals.sort();
        intervals.dedup();
        if intervals.is_empty() {
            intervals.push(Interval::MINUTE);
        }
        let allowed_lateness_ms = allowed_lateness_ms.max(0);
        Self {
            intervals,
            allowed_lateness_ms,
            correction_horizon_ms: allowed_lateness_ms,
        }
    }

    /// Final windows can be corrected by trades up to `horizon_ms` behind their token's
    /// watermark (never less than the allowed lateness).
    #[must_use]
    pub fn with_correction_horizon(mut self, horizon_ms: i64) -> Self {
        self.correction_horizon_ms = horizon_ms.max(self.allowed_lateness_ms);
        self
    }

    pub fn correction_horizon_ms(&self) -> i64 {
        self.correction_horizon_ms
    }

    pub fn intervals(&self) -> &[Interval] {
        &self.intervals
    }

    pub fn allowed_lateness_ms(&self) -> i64 {
        self.allowed_lateness_ms
    }
}

impl Default for CandleSettings {
    fn default() -> Self {
        Self::new(Interval::defaults(), 120_000)
            .with_correction_horizon(DEFAULT_CORRECTION_HORIZON_MS)
    }
}

/// Why a trade did not go into any candle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error(
        "late: trade time {trade_ms} is before {limit_ms}, the oldest time token {token_id} can still be corrected at (its watermark {watermark_ms} minus the correction horizon of {horizon_ms} ms, or its newest window evicted for idleness)"
    )]
    Late {
        token_id: String,
        trade_ms: i64,
        watermark_ms: i64,
        horizon_ms: i64,
        limit_ms: i64,
    },
    #[error("invalid trade: {0}")]
    Invalid(String),
}

impl From<UnitsError> for Rejected {
    fn from(error: UnitsError) -> Self {
        Rejected::Invalid(error.to_string())
    }
}

/// What happened to an accepted trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Counted in its windows.
    Counted,
    /// Already counted (same time and trade id): ignored.
    Duplicate,
}

/// A trade id as a position in the total order, ordered bytewise like the id's text.
///
/// Canonical ids (32 lower-case hex characters, what `TradeIdentity` derives) are kept as
/// their 128-bit value: for equal-length lower-case hex, numeric order is bytewise order, and
/// the hot path then neither allocates nor compares strings. Any other id is kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TradeKey {
    Hex(u128),
    Text(Arc<str>),
}

impl TradeKey {
    fn of(trade_id: &str) -> TradeKey {
        match canonical_hex(trade_id) {
            Some(value) => TradeKey::Hex(value),
            None => TradeKey::Text(Arc::from(trade_id)),
        }
    }
}

impl Ord for TradeKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (TradeKey::Hex(left), TradeKey::Hex(right)) => left.cmp(right),
            (TradeKey::Text(left), TradeKey::Text(right)) => left.as_bytes().cmp(right.as_bytes()),
            // Rare (mixed id formats): compare as text.
            (TradeKey::Hex(left), TradeKey::Text(right)) => {
                format!("{left:032x}").as_bytes().cmp(right.as_bytes())
            }
            (TradeKey::Text(left), TradeKey::Hex(right)) => {
                left.as_bytes().cmp(format!("{right:032x}").as_bytes())
            }
        }
    }
}

impl PartialOrd for TradeKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

// Checkpoints keep the id's text, as before the key existed.
impl Serialize for TradeKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            TradeKey::Hex(value) => serializer.serialize_str(&format!("{value:032x}")),
            TradeKey::Text(text) => serializer.serialize_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for TradeKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| TradeKey::of(&text))
    }
}

/// The value of a canonical trade id: exactly 32 lower-case hex characters.
///
/// Branch-free over the bytes (a profile showed a per-character loop on `u128` as most of the
/// trade path's own time): validate all 32, then fold each half into a `u64`.
fn canonical_hex(trade_id: &str) -> Option<u128> {
    let bytes: &[u8; 32] = trade_id.as_bytes().try_into().ok()?;
    let valid = bytes.iter().fold(true, |valid, byte| {
        valid & (byte.is_ascii_digit() | (b'a'..=b'f').contains(byte))
    });
    if !valid {
        return None;
    }
    // '0'..='9' are 0x30..=0x39 and 'a'..='f' are 0x61..=0x66: the low nibble, plus 9 for
    // letters (bit 6 set).
    let half = |part: &[u8]| {
        part.iter().fold(0_u64, |value, byte| {
            (value << 4) | u64::from((byte & 0x0f) + 9 * (byte >> 6))
        })
    };
    Some((u128::from(half(&bytes[..16])) << 64) | u128::from(half(&bytes[16..])))
}

/// A price with the position of its trade in the total order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Mark {
    price: i64,
    time_ms: i64,
    #[serde(rename = "trade_id")]
    trade: TradeKey,
}

impl Mark {
    fn order(&self) -> (i64, &TradeKey) {
        (self.time_ms, &self.trade)
    }
}

/// The duplicate filter of one window: `(time, trade id digest)` pairs, sorted.
///
/// A sorted vector rather than a hash set: trades arrive mostly in time order, so an insert is
/// usually an append, a lookup a binary search, and a window's first trade allocates one small
/// vector instead of a table that rehashes as it grows (this was a visible share of the trade
/// path). Checkpoints hold the same JSON array as the hash set did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
struct SeenTrades(Vec<(i64, u128)>);

impl SeenTrades {
    fn contains(&self, trade: &(i64, u128)) -> bool {
        self.0.binary_search(trade).is_ok()
    }

    fn insert(&mut self, trade: (i64, u128)) {
        if self.0.last().is_none_or(|last| *last < trade) {
            self.0.push(trade);
        } else if let Err(position) = self.0.binary_search(&trade) {
            self.0.insert(position, trade);
        }
    }
}

impl<'de> Deserialize<'de> for SeenTrades {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Written by a hash set (any order) or by this type.
        let mut trades = Vec::<(i64, u128)>::deserialize(deserializer)?;
        trades.sort_unstable();
        trades.dedup();
        Ok(SeenTrades(trades))
    }
}

/// One open window of one token and interval.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Window {
    length_ms: i64,
    open_ms: i64,
    open: Mark,
    close: Mark,
    high: i64,
    low: i64,
    volume: i128,
    notional: i128,
    trade_count: i64,
    first_ms: i64,
    last_ms: i64,
    version: i64,
    #[serde(default)]
    is_final: bool,
    /// Corrections after the window was final (trades that arrived later).
    #[serde(default, skip_serializing_if = "is_zero")]
    revision: u32,
    /// `(time, trade id digest)` of every trade counted; kept on the shortest interval's
    /// windows only (one trade is in exactly one of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seen: Option<SeenTrades>,
    #[serde(skip)]
    dirty: bool,
}

impl Window {
    fn new(length_ms: i64, open_ms: i64, mark: Mark, size: i64, notional: i128) -> Self {
        Self {
            length_ms,
            open_ms,
            high: mark.price,
            low: mark.price,
            volume: i128::from(size),
            notional,
            trade_count: 1,
            first_ms: mark.time_ms,
            last_ms: mark.time_ms,
            version: 0,
            is_final: false,
            revision: 0,
            seen: None,
            dirty: true,
            open: mark.clone(),
            close: mark,
        }
    }

    fn add(&mut self, mark: &Mark, size: i64, notional: i128) -> Result<(), UnitsError> {
        if mark.order() < self.open.order() {
            self.open = mark.clone();
        }
        if mark.order() > self.close.order() {
            self.close = mark.clone();
        }
        self.high = self.high.max(mark.price);
        self.low = self.low.min(mark.price);
        self.volume = self
            .volume
            .checked_add(i128::from(size))
            .ok_or(UnitsError::Overflow { what: "volume" })?;
        self.notional = self
            .notional
            .checked_add(notional)
            .ok_or(UnitsError::Overflow { what: "notional" })?;
        self.trade_count += 1;
        self.first_ms = self.first_ms.min(mark.time_ms);
        self.last_ms = self.last_ms.max(mark.time_ms);
        Ok(())
    }

    fn candle(
        &self,
        token_id: &str,
        condition_id: Option<&str>,
        label: &str,
    ) -> Result<Candle, UnitsError> {
        let vwap = micros::vwap_units(self.notional, self.volume)?.unwrap_or(0);
        Ok(Candle {
            token_id: token_id.to_owned(),
            condition_id: condition_id.map(str::to_owned),
            interval: label.to_owned(),
            open_time_ms: self.open_ms,
            close_time_ms: self.open_ms + self.length_ms,
            open: micros::micros_to_decimal(self.open.price),
            high: micros::micros_to_decimal(self.high),
            low: micros::micros_to_decimal(self.low),
            close: micros::micros_to_decimal(self.close.price),
            volume: micros::units_to_decimal("volume", self.volume, micros::SCALE)?,
            notional: micros::units_to_decimal("notional", self.notional, micros::NOTIONAL_SCALE)?,
            vwap: micros::units_to_decimal("vwap", vwap, micros::NOTIONAL_SCALE)?,
            trade_count: self.trade_count,
            first_trade_ms: self.first_ms,
            last_trade_ms: self.last_ms,
            version: self.version,
            is_final: self.is_final,
            revision: i32::try_from(self.revision).unwrap_or(i32::MAX),
        })
    }

    fn close_ms(&self) -> i64 {
        self.open_ms + self.length_ms
    }

    /// The order of settled windows: by close time, then length.
    fn settled_key(&self) -> (i64, i64) {
        (self.close_ms(), self.length_ms)
    }
}

// Serde's `skip_serializing_if` passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// No watermark yet: nothing is late (`i64::MIN − lateness` saturates to `i64::MIN`).
const NO_WATERMARK: i64 = i64::MIN;

/// The watermark and open windows of one token.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenWindows {
    /// The token id (the map's key, shared), for the dirty list.
    #[serde(skip)]
    key: Arc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    condition_id: Option<String>,
    /// The token's largest trade time. Missing in format-1 checkpoints (partition
    /// watermarks), where [`CandleAggregator::restore`] derives it from the windows.
    #[serde(default = "no_watermark")]
    watermark_ms: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    windows: Vec<Window>,
    /// Final windows kept for corrections, sorted by [`Window::settled_key`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    settled: Vec<Window>,
    /// Trades before this time are late: the newest close of a window evicted for idleness.
    #[serde(default = "no_watermark")]
    floor_ms: i64,
    #[serde(skip)]
    dirty: bool,
    /// Whether a settled window changed since the last drain.
    #[serde(skip)]
    settled_dirty: bool,
}

impl Default for TokenWindows {
    fn default() -> Self {
        Self {
            key: Arc::from(""),
            condition_id: None,
            watermark_ms: NO_WATERMARK,
            windows: Vec::new(),
            settled: Vec::new(),
            floor_ms: NO_WATERMARK,
            dirty: false,
            settled_dirty: false,
        }
    }
}

impl TokenWindows {
    fn settled_position(&self, length_ms: i64, open_ms: i64) -> Result<usize, usize> {
        self.settled
            .binary_search_by_key(&(open_ms + length_ms, length_ms), Window::settled_key)
    }

    /// The window of `length_ms` that opens at `open_ms`, open or settled.
    fn window(&self, length_ms: i64, open_ms: i64) -> Option<&Window> {
        self.windows
            .iter()
            .find(|window| window.length_ms == length_ms && window.open_ms == open_ms)
            .or_else(|| {
                self.settled_position(length_ms, open_ms)
                    .ok()
                    .and_then(|index| self.settled.get(index))
            })
    }

    /// Moves drained final windows to the settled ones.
    fn settle_finals(&mut self) {
        if !self.windows.iter().any(|window| window.is_final) {
            return;
        }
        let (finals, open): (Vec<Window>, Vec<Window>) = std::mem::take(&mut self.windows)
            .into_iter()
            .partition(|window| window.is_final);
        self.windows = open;
        for window in finals {
            let position = self
                .settled
                .binary_search_by_key(&window.settled_key(), Window::settled_key)
                .unwrap_or_else(|position| position);
            self.settled.insert(position, window);
        }
    }

    /// Evicts settled windows that closed before `until_ms`; trades before the newest of
    /// them are late from then on.
    fn evict_settled_before(&mut self, until_ms: i64) {
        let evicted = self
            .settled
            .partition_point(|window| window.close_ms() <= until_ms);
        if evicted == 0 {
            return;
        }
        if let Some(newest) = self.settled[..evicted].iter().map(Window::close_ms).max() {
            self.floor_ms = self.floor_ms.max(newest);
        }
        self.settled.drain(..evicted);
    }

    /// Frees what a token without windows no longer needs (it keeps its watermark and floor).
    fn shrink_if_empty(&mut self) {
        if self.windows.is_empty() {
            self.windows = Vec::new();
            if self.settled.is_empty() {
                self.settled = Vec::new();
                self.condition_id = None;
            }
        }
    }
}

fn no_watermark() -> i64 {
    NO_WATERMARK
}

/// The state format written today: 2 = a watermark per token. 1 (no `format` field) had one
/// watermark per partition.
pub const STATE_FORMAT: u32 = 2;

fn legacy_format() -> u32 {
    1
}

/// The serializable state of an aggregator (checkpoints). Taken between batches, when
/// nothing is waiting to be drained.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AggregatorState {
    #[serde(default = "legacy_format")]
    format: u32,
    /// The partition's largest trade time: informational since format 2 (in format 1 it was
    /// the watermark every token was judged by).
    watermark_ms: Option<i64>,
    /// The hour of partition time of the last sweep for idle tokens.
    #[serde(default = "no_watermark")]
    swept_hour: i64,
    tokens: Vec<(String, TokenWindows)>,
}

impl Default for AggregatorState {
    fn default() -> Self {
        Self {
            format: STATE_FORMAT,
            watermark_ms: None,
            swept_hour: NO_WATERMARK,
            tokens: Vec::new(),
        }
    }
}

impl AggregatorState {
    /// The format the state was written in (1 = partition watermarks, 2 = token watermarks).
    pub fn format(&self) -> u32 {
        self.format
    }
}

/// Candles of the tokens of one input partition. See the module documentation.
#[derive(Debug)]
pub struct CandleAggregator {
    settings: CandleSettings,
    /// The partition's largest trade time (informational: lateness is judged per token).
    watermark_ms: Option<i64>,
    /// Every token seen on the partition: open windows, or only the watermark once all its
    /// windows are final.
    tokens: HashMap<Arc<str>, TokenWindows, FxBuildHasher>,
    /// Interval labels by length, formatted once.
    labels: Vec<(i64, String)>,
    dirty: Vec<Arc<str>>,
    /// The hour of partition time of the last sweep for idle tokens' settled windows.
    swept_hour: i64,
}

/// Partition time between sweeps for idle tokens' settled windows.
const SWEEP_EVERY_MS: i64 = 3_600_000;

impl CandleAggregator {
    pub fn new(settings: CandleSettings) -> Self {
        let labels = settings
            .intervals
            .iter()
            .map(|interval| (interval.length_ms, interval.to_string()))
            .collect();
        Self {
            settings,
            labels,
            watermark_ms: None,
            tokens: HashMap::default(),
            dirty: Vec::new(),
            swept_hour: NO_WATERMARK,
        }
    }

    pub fn settings(&self) -> &CandleSettings {
        &self.settings
    }

    /// The partition's largest trade time (not a watermark any trade is judged by).
    pub fn watermark_ms(&self) -> Option<i64> {
        self.watermark_ms
    }

    /// A token's watermark: its largest trade time, if it has traded on this partition.
    pub fn token_watermark_ms(&self, token_id: &str) -> Option<i64> {
        self.tokens
            .get(token_id)
            .map(|token| token.watermark_ms)
            .filter(|watermark| *watermark != NO_WATERMARK)
    }

    /// Tokens with at least one open window.
    pub fn token_count(&self) -> usize {
        self.tokens
            .values()
            .filter(|token| !token.windows.is_empty())
            .count()
    }

    /// Every token remembered: with open windows or only a watermark.
    pub fn tracked_token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Open windows over all tokens.
    pub fn window_count(&self) -> usize {
        self.tokens.values().map(|token| token.windows.len()).sum()
    }

    /// Final windows kept for corrections over all tokens.
    pub fn settled_window_count(&self) -> usize {
        self.tokens.values().map(|token| token.settled.len()).sum()
    }

    /// Counts `trade` (read at input `offset`) and returns the candles it changed or finalised.
    pub fn apply(&mut self, trade: &Trade, offset: i64) -> Result<Vec<Candle>, Rejected> {
        self.ingest(trade, offset)?;
        self.drain().map_err(Rejected::from)
    }

    /// Counts `trade` without producing output yet; [`drain`](Self::drain) returns every candle
    /// changed since the last drain, once, at its latest version (the pipeline drains once
    /// per batch, so a burst of trades in one window yields one record).
    pub fn ingest(&mut self, trade: &Trade, offset: i64) -> Result<Ingested, Rejected> {
        let price = micros::to_micros("price", trade.price)?;
        let size = micros::to_micros("size", trade.size)?;
        if price <= 0 {
            return Err(Rejected::Invalid(format!(
                "price {} is not positive",
                trade.price
            )));
        }
        if size < 0 {
            return Err(Rejected::Invalid(format!(
                "size {} is negative",
                trade.size
            )));
        }
        let time_ms = trade.timestamp_ms;
        let trade_key = TradeKey::of(&trade.trade_id);
        let digest = match trade_key {
            TradeKey::Hex(value) => value,
            TradeKey::Text(_) => trade_digest(&trade.trade_id),
        };
        let counted = Counted {
            price,
            size,
            time_ms,
            trade_key,
            digest,
            offset,
        };
        let Self {
            settings,
            tokens,
            dirty,
            ..
        } = self;
        // One lookup for a known token (the common case).
        let ingested = match tokens.get_mut(trade.token_id.as_str()) {
            Some(token) => count_into(settings, dirty, token, trade, counted)?,
            None => {
                let key: Arc<str> = Arc::from(trade.token_id.as_str());
                let token = tokens.entry(key.clone()).or_insert_with(|| TokenWindows {
                    key,
                    ..TokenWindows::default()
                });
                count_into(settings, dirty, token, trade, counted)?
            }
        };
        if ingested == Ingested::Counted
            && self
                .watermark_ms
                .is_none_or(|watermark| time_ms > watermark)
        {
            self.watermark_ms = Some(time_ms);
            self.sweep_idle_tokens();
        }
        Ok(ingested)
    }

    /// Every candle changed since the last drain, at its latest version; final windows are
    /// evicted after this (a token left without windows keeps only its watermark).
    pub fn drain(&mut self) -> Result<Vec<Candle>, UnitsError> {
        // Each dirty token has about one changed window per interval.
        let mut candles = Vec::with_capacity(self.dirty.len() * self.labels.len());
        for token_key in std::mem::take(&mut self.dirty) {
            let Some(token) = self.tokens.get_mut(&token_key) else {
                continue;
            };
            token.dirty = false;
            let settled_dirty = std::mem::take(&mut token.settled_dirty);
            let settled: &mut [Window] = if settled_dirty {
                &mut token.settled
            } else {
                &mut []
            };
            for window in token
                .windows
                .iter_mut()
                .chain(settled.iter_mut())
                .filter(|window| window.dirty)
            {
                window.dirty = false;
                let label = self
                    .labels
                    .iter()
                    .find(|(length_ms, _)| *length_ms == window.length_ms)
                    .map_or("", |(_, label)| label.as_str());
                candles.push(window.candle(&token_key, token.condition_id.as_deref(), label)?);
            }
            token.settle_finals();
            token.evict_settled_before(
                token
                    .watermark_ms
                    .saturating_sub(self.settings.correction_horizon_ms)
                    .max(token.floor_ms),
            );
            token.shrink_if_empty();
        }
        Ok(candles)
    }

    /// Once per hour of partition time, tokens that have not traded for longer than the
    /// horizon of partition time lose their settled windows (see the module documentation).
    /// Called per trade, on the partition's time alone, so that which trades are late stays a
    /// function of the partition's records (a replay cut into other batches agrees); windows
    /// changed since the last drain are kept until it (their floor already rejects more).
    fn sweep_idle_tokens(&mut self) {
        let Some(partition_ms) = self.watermark_ms else {
            return;
        };
        let hour = partition_ms.div_euclid(SWEEP_EVERY_MS);
        if hour <= self.swept_hour {
            return;
        }
        self.swept_hour = hour;
        let idle_before = partition_ms.saturating_sub(self.settings.correction_horizon_ms);
        for token in self.tokens.values_mut() {
            if token.settled.is_empty() || token.watermark_ms > idle_before {
                continue;
            }
            if let Some(newest) = token.settled.iter().map(Window::close_ms).max() {
                token.floor_ms = token.floor_ms.max(newest);
            }
            token.settled.retain(|window| window.dirty);
            token.shrink_if_empty();
        }
    }

    /// The state to checkpoint. Call after [`drain`](Self::drain).
    pub fn state(&self) -> AggregatorState {
        let mut tokens: Vec<(String, TokenWindows)> = self
            .tokens
            .iter()
            .map(|(key, token)| (key.to_string(), token.clone()))
            .collect();
        tokens.sort_by(|left, right| left.0.cmp(&right.0));
        AggregatorState {
            format: STATE_FORMAT,
            watermark_ms: self.watermark_ms,
            swept_hour: self.swept_hour,
            tokens,
        }
    }

    /// An aggregator continuing from a checkpointed state. Windows of intervals no longer
    /// configured are dropped.
    ///
    /// A format-1 state (one watermark per partition) is upgraded: a token's watermark is the
    /// latest trade time in its open windows, which is exact (the windows of a token's latest
    /// trade close last, so they are open whenever any of its windows is); tokens that had no
    /// open window were not kept in format 1, so they start unknown (nothing of theirs is late
    /// until their next trade).
    pub fn restore(settings: CandleSettings, state: AggregatorState) -> Self {
        let mut aggregator = Self::new(settings);
        aggregator.watermark_ms = state.watermark_ms;
        aggregator.swept_hour = state.swept_hour;
        let configured: HashSet<i64> = aggregator
            .settings
            .intervals
            .iter()
            .map(|interval| interval.length_ms)
            .collect();
        for (token_id, mut token) in state.tokens {
            if state.format < 2 || token.watermark_ms == NO_WATERMARK {
                token.watermark_ms = token
                    .windows
                    .iter()
                    .map(|window| window.last_ms)
                    .max()
                    .unwrap_or(NO_WATERMARK);
            }
            token
                .windows
                .retain(|window| configured.contains(&window.length_ms));
            token
                .settled
                .retain(|window| configured.contains(&window.length_ms));
            token.settled.sort_by_key(Window::settled_key);
            if token.windows.is_empty() && token.settled.is_empty() {
                token.condition_id = None;
                if token.watermark_ms == NO_WATERMARK {
                    continue;
                }
            }
            let key: Arc<str> = Arc::from(token_id.as_str());
            token.key = key.clone();
            // A state taken before its final windows were drained: emit them at the next
            // drain rather than never (the pipeline always drains first).
            let mut undrained = false;
            for window in token.windows.iter_mut().filter(|window| window.is_final) {
                window.dirty = true;
                undrained = true;
            }
            if undrained {
                token.dirty = true;
                aggregator.dirty.push(key.clone());
            }
            aggregator.tokens.insert(key, token);
        }
        aggregator
    }
}

/// Which topic candles are built from (`candle_input`): one per deployment, never both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandleInput {
    /// `polymarket.trades.v1`: every fill (taker and maker rows) from the collector.
    Trades,
    /// `polymarket.last_trades.v1`: the WebSocket's `last_trade_price` events, one per taker
    /// row (no maker rows), live only. Consuming both would count a taker fill twice.
    LastTrades,
}

impl CandleInput {
    pub fn label(self) -> &'static str {
        match self {
            CandleInput::Trades => "trades",
            CandleInput::LastTrades => "last_trades",
        }
    }
}

impl FromStr for CandleInput {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "trades" => Ok(CandleInput::Trades),
            "last_trades" => Ok(CandleInput::LastTrades),
            other => Err(format!(
                "`{other}` is not a candle input; use `trades` or `last_trades`"
            )),
        }
    }
}

/// A `last_trade_price` event as the trade the aggregator counts.
///
/// The event has no trade id, so one is derived (32 hex characters, like `TradeIdentity`'s):
/// from `(transaction hash, token, side, size, price)` when the hash is present — the taker
/// row's identity without the wallet, which the event does not carry, so a re-read of the same
/// event on another connection is the same trade — else from `(connection, sequence)`. Ties on
/// time are broken by that id, as by the trade id for `trades`.
pub fn trade_from_last_trade(last_trade: &LastTrade) -> Trade {
    let mut hasher = Sha256::new();
    match &last_trade.transaction_hash {
        Some(transaction_hash) => {
            let side = match last_trade.side {
                Some(Side::Buy) => "BUY",
                Some(Side::Sell) => "SELL",
                None => "",
            };
            for part in [
                "last_trade",
                &transaction_hash.to_ascii_lowercase(),
                &last_trade.token_id,
                side,
                &last_trade.size.normalize().to_string(),
                &last_trade.price.normalize().to_string(),
            ] {
                hasher.update(part.as_bytes());
                hasher.update([0]);
            }
        }
        None => {
            for part in [
                "last_trade_at",
                &last_trade.connection_id,
                &last_trade.sequence.to_string(),
            ] {
                hasher.update(part.as_bytes());
                hasher.update([0]);
            }
        }
    }
    let digest = hasher.finalize();
    Trade {
        trade_id: hex::encode(&digest[..16]),
        condition_id: last_trade.condition_id.clone(),
        token_id: last_trade.token_id.clone(),
        outcome: None,
        outcome_index: None,
        side: last_trade.side.unwrap_or(Side::Buy),
        price: last_trade.price,
        size: last_trade.size,
        timestamp_ms: last_trade.timestamp_ms,
        transaction_hash: last_trade.transaction_hash.clone().unwrap_or_default(),
        proxy_wallet: String::new(),
        // Not published: only the candle fields of this record are used.
        source: TradeSource::DataApiV2,
        ingested_ms: last_trade.received_ms,
    }
}

/// A validated trade, ready to count.
struct Counted {
    price: i64,
    size: i64,
    time_ms: i64,
    trade_key: TradeKey,
    digest: u128,
    offset: i64,
}

/// Counts a trade into its token's windows (see [`CandleAggregator::ingest`]).
fn count_into(
    settings: &CandleSettings,
    dirty: &mut Vec<Arc<str>>,
    token: &mut TokenWindows,
    trade: &Trade,
    counted: Counted,
) -> Result<Ingested, Rejected> {
    let Counted {
        price,
        size,
        time_ms,
        trade_key,
        digest,
        offset,
    } = counted;
    let lateness = settings.allowed_lateness_ms;
    let horizon = settings.correction_horizon_ms;
    // The token's own watermark: another token of the partition being ahead (a market
    // backfilled before this one) says nothing about this one.
    let limit_ms = token
        .watermark_ms
        .saturating_sub(horizon)
        .max(token.floor_ms);
    if time_ms < limit_ms {
        return Err(Rejected::Late {
            token_id: trade.token_id.clone(),
            trade_ms: time_ms,
            watermark_ms: token.watermark_ms,
            horizon_ms: horizon,
            limit_ms,
        });
    }
    let notional = i128::from(price) * i128::from(size);
    if token.condition_id.is_none() {
        token.condition_id = Some(trade.condition_id.clone());
    }

    // The duplicate filter lives on the shortest interval's window.
    let shortest = settings.intervals[0];
    let shortest_open = shortest.open_time(time_ms);
    if let Some(window) = token.window(shortest.length_ms, shortest_open)
        && window
            .seen
            .as_ref()
            .is_some_and(|seen| seen.contains(&(time_ms, digest)))
    {
        return Ok(Ingested::Duplicate);
    }

    let mark = Mark {
        price,
        time_ms,
        trade: trade_key,
    };
    for interval in &settings.intervals {
        let open_ms = interval.open_time(time_ms);
        let length_ms = interval.length_ms;
        let open_index = token
            .windows
            .iter()
            .position(|window| window.length_ms == length_ms && window.open_ms == open_ms);
        let window = match open_index {
            Some(index) => {
                let window = &mut token.windows[index];
                window.add(&mark, size, notional)?;
                if window.is_final {
                    // Final but not drained yet: a correction all the same, so that the count
                    // does not depend on where batches end.
                    window.revision = window.revision.saturating_add(1);
                }
                window
            }
            None => match token.settled_position(length_ms, open_ms) {
                // A trade for a window already published final: a correction.
                Ok(index) => {
                    token.settled_dirty = true;
                    let window = &mut token.settled[index];
                    window.add(&mark, size, notional)?;
                    window.revision = window.revision.saturating_add(1);
                    window
                }
                Err(position) => {
                    let mut window = Window::new(length_ms, open_ms, mark.clone(), size, notional);
                    if open_ms + length_ms + lateness <= token.watermark_ms {
                        // Its time was final before its first trade arrived: it is published
                        // final, as a correction of the empty window.
                        window.is_final = true;
                        window.revision = 1;
                        token.settled_dirty = true;
                        token.settled.insert(position, window);
                        &mut token.settled[position]
                    } else {
                        token.windows.push(window);
                        let last = token.windows.len() - 1;
                        &mut token.windows[last]
                    }
                }
            },
        };
        window.version = offset;
        window.dirty = true;
        if length_ms == shortest.length_ms {
            window
                .seen
                .get_or_insert_with(SeenTrades::default)
                .insert((time_ms, digest));
        }
    }
    if time_ms > token.watermark_ms {
        token.watermark_ms = time_ms;
        // A token has a handful of open windows (about one per interval), so scanning
        // them when its watermark moves is cheaper than any deadline index.
        for window in &mut token.windows {
            if !window.is_final && window.open_ms + window.length_ms + lateness <= time_ms {
                window.is_final = true;
                window.version = offset;
                window.dirty = true;
            }
        }
    }
    if !token.dirty {
        token.dirty = true;
        dirty.push(token.key.clone());
    }
    Ok(Ingested::Counted)
}

/// A 128-bit digest of a trade id for the duplicate filter: the id's value when it is
/// canonical (32 lower-case hex characters), else the first 16 bytes of its SHA-256 (so ids
/// that differ only in case stay different trades, as in ClickHouse).
fn trade_digest(trade_id: &str) -> u128 {
    if let Some(value) = canonical_hex(trade_id) {
        return value;
    }
    let hash = Sha256::digest(trade_id.as_bytes());
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    u128::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_duplicate_filter_reads_a_hash_set_written_in_any_order() {
        // Checkpoints written before the sorted vector hold the hash set's arbitrary order.
        let seen: SeenTrades = serde_json::from_str("[[5,9],[3,7],[5,1],[3,7]]").unwrap();
        assert_eq!(seen.0, vec![(3, 7), (5, 1), (5, 9)]);
        assert!(seen.contains(&(5, 1)) && !seen.contains(&(4, 1)));
        let mut seen = seen;
        seen.insert((4, 2));
        seen.insert((6, 0));
        seen.insert((5, 1));
        assert_eq!(seen.0, vec![(3, 7), (4, 2), (5, 1), (5, 9), (6, 0)]);
        assert_eq!(
            serde_json::to_string(&seen).unwrap(),
            "[[3,7],[4,2],[5,1],[5,9],[6,0]]"
        );
    }

    #[test]
    fn canonical_hex_is_exactly_lower_case_hex_of_32_characters() {
        for text in [
            "0123456789abcdef0123456789abcdef",
            "ffffffffffffffffffffffffffffffff",
            "00000000000000000000000000000000",
            "9a3c0f77e21d4b5a8c6e0d1f2a3b4c5d",
        ] {
            assert_eq!(
                canonical_hex(text),
                Some(u128::from_str_radix(text, 16).unwrap()),
                "{text}"
            );
        }
        for text in [
            "0123456789ABCDEF0123456789abcdef",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "0123456789abcdef0123456789abcdeg",
            "+123456789abcdef0123456789abcdef",
            "0x23456789abcdef0123456789abcdef",
            "",
        ] {
            assert_eq!(canonical_hex(text), None, "{text}");
        }
    }
}
