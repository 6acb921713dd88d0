//! OHLCV candles by event time, per token and UTC-aligned interval.
//!
//! One [`CandleAggregator`] holds the state derived from one input partition of the trades
//! topic: the partition's watermark and the open windows of its tokens. Trades are keyed by
//! condition id, so every trade of a token arrives on one partition, in order, and the
//! aggregator's outputs are a pure function of that partition's records. That is what makes
//! replays exact: the same offsets produce the same keys, contents and versions.
//!
//! - **Windows**: `[open, open + length)`, `open = floor(trade time / length) · length` (UTC
//!   epoch alignment, so 1d candles start at 00:00 UTC).
//! - **Order**: trades are totally ordered by `(timestamp_ms, trade_id)` (trade ids are
//!   unique); open/close are the first/last trade in that order, exactly like ClickHouse's
//!   `argMin/argMax(price, (timestamp, trade_id))`. Arrival order never matters.
//! - **Watermark**: the largest trade time seen on the partition. A trade older than
//!   `watermark − allowed_lateness` is late and rejected (the pipeline dead-letters it); any
//!   other trade updates its windows, and the corrected candles are re-emitted.
//! - **Final**: a window whose `close + allowed_lateness ≤ watermark` can receive no more
//!   trades; it is emitted once more with `is_final = true` and then evicted.
//! - **Versions**: a candle's version is the offset of the input record that produced it (the
//!   last trade that changed it, or the trade whose watermark finalised it). Offsets grow
//!   within a partition, so versions grow per key, and a replay re-emits identical versions.
//! - **Duplicates**: a trade already counted — same `(timestamp_ms, trade_id)`, the identity of
//!   ClickHouse's `trades` table — is ignored, so redelivery never double-counts.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    str::FromStr,
    sync::Arc,
};

use polytape_model::{Candle, Trade};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{
    hash::FxBuildHasher,
    units::{self, UnitsError},
};

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

/// What the aggregator derives, and how long it waits for late trades.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandleSettings {
    intervals: Vec<Interval>,
    allowed_lateness_ms: i64,
}

impl CandleSettings {
    /// Intervals are sorted and deduplicated; the shortest one also holds the duplicate filter.
    pub fn new(mut intervals: Vec<Interval>, allowed_lateness_ms: i64) -> Self {
        intervals.sort();
        intervals.dedup();
        if intervals.is_empty() {
            intervals.push(Interval::MINUTE);
        }
        Self {
            intervals,
            allowed_lateness_ms: allowed_lateness_ms.max(0),
        }
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
    }
}

/// Why a trade did not go into any candle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error(
        "late: trade time {trade_ms} is more than the allowed lateness of {allowed_lateness_ms} ms behind the partition watermark {watermark_ms}"
    )]
    Late {
        trade_ms: i64,
        watermark_ms: i64,
        allowed_lateness_ms: i64,
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

/// A price with the position of its trade in the total order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Mark {
    price: i64,
    time_ms: i64,
    #[serde(with = "arc_str")]
    trade_id: Arc<str>,
}

impl Mark {
    fn order(&self) -> (i64, &str) {
        (self.time_ms, &self.trade_id)
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
    /// `(time, trade id digest)` of every trade counted; kept on the shortest interval's
    /// windows only (one trade is in exactly one of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seen: Option<HashSet<(i64, u128), FxBuildHasher>>,
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
        let vwap = units::vwap_units(self.notional, self.volume)?.unwrap_or(0);
        Ok(Candle {
            token_id: token_id.to_owned(),
            condition_id: condition_id.map(str::to_owned),
            interval: label.to_owned(),
            open_time_ms: self.open_ms,
            close_time_ms: self.open_ms + self.length_ms,
            open: units::micros_to_decimal(self.open.price),
            high: units::micros_to_decimal(self.high),
            low: units::micros_to_decimal(self.low),
            close: units::micros_to_decimal(self.close.price),
            volume: units::units_to_decimal("volume", self.volume, units::SCALE)?,
            notional: units::units_to_decimal("notional", self.notional, units::NOTIONAL_SCALE)?,
            vwap: units::units_to_decimal("vwap", vwap, units::NOTIONAL_SCALE)?,
            trade_count: self.trade_count,
            first_trade_ms: self.first_ms,
            last_trade_ms: self.last_ms,
            version: self.version,
            is_final: self.is_final,
        })
    }
}

/// The open windows of one token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TokenWindows {
    condition_id: Option<String>,
    windows: Vec<Window>,
    #[serde(skip)]
    dirty: bool,
}

/// The serializable state of an aggregator (checkpoints). Taken between batches, when
/// nothing is waiting to be drained.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AggregatorState {
    watermark_ms: Option<i64>,
    tokens: Vec<(String, TokenWindows)>,
}

/// Candles of the tokens of one input partition. See the module documentation.
#[derive(Debug)]
pub struct CandleAggregator {
    settings: CandleSettings,
    watermark_ms: Option<i64>,
    tokens: HashMap<Arc<str>, TokenWindows, FxBuildHasher>,
    /// `(close + allowed lateness, token, interval length, open)`: when each window turns final.
    /// `(close + allowed lateness, sequence) → (token, interval length, open)`: when each
    /// window turns final (the sequence keeps keys unique and cheap to compare).
    deadlines: BTreeMap<(i64, u64), (Arc<str>, i64, i64)>,
    next_deadline: u64,
    /// Interval labels by length, formatted once.
    labels: Vec<(i64, String)>,
    dirty: Vec<Arc<str>>,
}

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
            deadlines: BTreeMap::new(),
            next_deadline: 0,
            dirty: Vec::new(),
        }
    }

    pub fn settings(&self) -> &CandleSettings {
        &self.settings
    }

    /// The partition's watermark: the largest trade time seen.
    pub fn watermark_ms(&self) -> Option<i64> {
        self.watermark_ms
    }

    /// Tokens with at least one open window.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Open windows over all tokens.
    pub fn window_count(&self) -> usize {
        self.tokens.values().map(|token| token.windows.len()).sum()
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
        let price = units::to_micros("price", trade.price)?;
        let size = units::to_micros("size", trade.size)?;
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
        let lateness = self.settings.allowed_lateness_ms;
        if let Some(watermark_ms) = self.watermark_ms
            && time_ms < watermark_ms.saturating_sub(lateness)
        {
            return Err(Rejected::Late {
                trade_ms: time_ms,
                watermark_ms,
                allowed_lateness_ms: lateness,
            });
        }
        let notional = i128::from(price) * i128::from(size);
        let digest = trade_digest(&trade.trade_id);

        let token_key: Arc<str> = match self.tokens.get_key_value(trade.token_id.as_str()) {
            Some((key, _)) => key.clone(),
            None => Arc::from(trade.token_id.as_str()),
        };
        let token = self.tokens.entry(token_key.clone()).or_default();
        if token.condition_id.is_none() {
            token.condition_id = Some(trade.condition_id.clone());
        }

        // The duplicate filter lives on the shortest interval's window.
        let shortest = self.settings.intervals[0];
        let shortest_open = shortest.open_time(time_ms);
        if let Some(window) = token.windows.iter().find(|window| {
            window.length_ms == shortest.length_ms && window.open_ms == shortest_open
        }) && window
            .seen
            .as_ref()
            .is_some_and(|seen| seen.contains(&(time_ms, digest)))
        {
            return Ok(Ingested::Duplicate);
        }

        let mark = Mark {
            price,
            time_ms,
            trade_id: Arc::from(trade.trade_id.as_str()),
        };
        for interval in &self.settings.intervals {
            let open_ms = interval.open_time(time_ms);
            let length_ms = interval.length_ms;
            let window = match token
                .windows
                .iter_mut()
                .position(|window| window.length_ms == length_ms && window.open_ms == open_ms)
            {
                Some(index) => {
                    let window = &mut token.windows[index];
                    window.add(&mark, size, notional)?;
                    window
                }
                None => {
                    let deadline = open_ms + length_ms + lateness;
                    self.deadlines.insert(
                        (deadline, self.next_deadline),
                        (token_key.clone(), length_ms, open_ms),
                    );
                    self.next_deadline += 1;
                    token.windows.push(Window::new(
                        length_ms,
                        open_ms,
                        mark.clone(),
                        size,
                        notional,
                    ));
                    let last = token.windows.len() - 1;
                    &mut token.windows[last]
                }
            };
            window.version = offset;
            window.dirty = true;
            if length_ms == shortest.length_ms {
                window
                    .seen
                    .get_or_insert_with(HashSet::default)
                    .insert((time_ms, digest));
            }
        }
        if !token.dirty {
            token.dirty = true;
            self.dirty.push(token_key);
        }

        if self
            .watermark_ms
            .is_none_or(|watermark| time_ms > watermark)
        {
            self.watermark_ms = Some(time_ms);
            self.finalize_until(time_ms, offset);
        }
        Ok(Ingested::Counted)
    }

    /// Marks final every window whose deadline the watermark reached.
    fn finalize_until(&mut self, watermark_ms: i64, offset: i64) {
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > watermark_ms {
                break;
            }
            let (token_key, length_ms, open_ms) = entry.remove();
            let Some(token) = self.tokens.get_mut(&token_key) else {
                continue;
            };
            if let Some(window) = token
                .windows
                .iter_mut()
                .find(|window| window.length_ms == length_ms && window.open_ms == open_ms)
            {
                window.is_final = true;
                window.version = offset;
                window.dirty = true;
            }
            if !token.dirty {
                token.dirty = true;
                self.dirty.push(token_key);
            }
        }
    }

    /// Every candle changed since the last drain, at its latest version; final windows are
    /// evicted after this, and tokens without windows with them.
    pub fn drain(&mut self) -> Result<Vec<Candle>, UnitsError> {
        // Each dirty token has about one changed window per interval.
        let mut candles = Vec::with_capacity(self.dirty.len() * self.labels.len());
        for token_key in std::mem::take(&mut self.dirty) {
            let Some(token) = self.tokens.get_mut(&token_key) else {
                continue;
            };
            token.dirty = false;
            for window in token.windows.iter_mut().filter(|window| window.dirty) {
                window.dirty = false;
                let label = self
                    .labels
                    .iter()
                    .find(|(length_ms, _)| *length_ms == window.length_ms)
                    .map_or("", |(_, label)| label.as_str());
                candles.push(window.candle(&token_key, token.condition_id.as_deref(), label)?);
            }
            token.windows.retain(|window| !window.is_final);
            if token.windows.is_empty() {
                self.tokens.remove(&token_key);
            }
        }
        Ok(candles)
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
            watermark_ms: self.watermark_ms,
            tokens,
        }
    }

    /// An aggregator continuing from a checkpointed state. Windows of intervals no longer
    /// configured are dropped.
    pub fn restore(settings: CandleSettings, state: AggregatorState) -> Self {
        let mut aggregator = Self::new(settings);
        aggregator.watermark_ms = state.watermark_ms;
        let lateness = aggregator.settings.allowed_lateness_ms;
        let configured: HashSet<i64> = aggregator
            .settings
            .intervals
            .iter()
            .map(|interval| interval.length_ms)
            .collect();
        for (token_id, mut token) in state.tokens {
            token
                .windows
                .retain(|window| configured.contains(&window.length_ms));
            if token.windows.is_empty() {
                continue;
            }
            let key: Arc<str> = Arc::from(token_id.as_str());
            for window in &token.windows {
                aggregator.deadlines.insert(
                    (
                        window.open_ms + window.length_ms + lateness,
                        aggregator.next_deadline,
                    ),
                    (key.clone(), window.length_ms, window.open_ms),
                );
                aggregator.next_deadline += 1;
            }
            aggregator.tokens.insert(key, token);
        }
        aggregator
    }
}

/// A 128-bit digest of a trade id for the duplicate filter: the id itself when it is the
/// canonical 32 hex characters, else the first 16 bytes of its SHA-256.
fn trade_digest(trade_id: &str) -> u128 {
    if trade_id.len() == 32
        && let Ok(value) = u128::from_str_radix(trade_id, 16)
    {
        return value;
    }
    let hash = Sha256::digest(trade_id.as_bytes());
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    u128::from_be_bytes(bytes)
}

mod arc_str {
    use std::sync::Arc;

    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Arc<str>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Arc<str>, D::Error> {
        String::deserialize(deserializer).map(Arc::from)
    }
}
