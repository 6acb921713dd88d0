//! What was sent, so fills upstream indexed late can be told apart from fills already sent.
//!
//! Polling moves a market's coverage to `now − poll_lag`; a fill the Data API indexes later
//! than that lands in covered time and a forward poll never reads it. The collector therefore
//! re-reads covered time — a trailing window every round, the whole horizon on a slower deep
//! pass — and needs, for every fill it reads there, "was this one sent?".
//!
//! Upstream has no count or "indexed since" parameter: knowing how many fills a market-hour
//! holds costs the same requests as reading them. So the re-reads diff ids as the rows go by
//! (re-walking a market-hour whose count differs would fetch rows already in hand a second
//! time). What was sent is kept here: per market and UTC hour, the 64-bit fingerprints of the
//! trade ids sent (and of those adopted as a baseline, below), for the hours inside the
//! horizon. The size of an hour's set is the "sent" count a re-read compares with. Memory is
//! bounded twice: hours older than the horizon are dropped, and past `max_ids` fingerprints the
//! oldest hours are dropped too and the horizon shortens (`floor` moves up; re-reads never go
//! below it, so a dropped hour is never mistaken for one whose fills are all late).
//!
//! **Restarts.** The ledger is persisted in the collector's checkpoint topic at the end of
//! every round (see [`Ledger::take_writes`]): per market-hour the fingerprints (key
//! `ledger/<condition_id>/<hour>`), and per market the span of seconds they answer for (key
//! `ledger/<condition_id>`: every fill an earlier process sent between `from` and `through` is
//! in them). A restarted collector restores them: an unknown fill inside a restored span is
//! late (it was indexed while no collector ran, or after the earlier process passed it), and
//! is published. Outside a restored span — the seconds an earlier process covered after its
//! last round ended (a kill mid-round), or all of them on a first start with an older
//! version — each market starts with `baseline_below` = one past the newest second an earlier
//! process may have sent (its coverage when this process first touched it): an unknown fill
//! below it is *adopted* on its first complete re-read (remembered, not sent, not counted),
//! and only fills unknown after that are late. A fill indexed late while no collector ran,
//! for a second covered after the last persisted round, is therefore still adopted; that
//! span is at most one round wide.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

const HOUR_S: i64 = 3_600;

/// Fingerprints one persisted market-hour holds at most (16 hex digits each: a 640 kB
/// message); a busier hour is not persisted and stays outside the restored span.
const MAX_PERSISTED_PER_HOUR: usize = 40_000;

/// Where the ledger's entries live in the checkpoint topic.
pub const LEDGER_KEY_PREFIX: &str = "ledger/";

/// A trade id's 64-bit fingerprint: the first 8 bytes of its SHA-256, stable across
/// processes and versions, since the ledger is persisted.
pub fn fingerprint(trade_id: &str) -> u64 {
    let digest = Sha256::digest(trade_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

fn hour_of(second: i64) -> i64 {
    second.div_euclid(HOUR_S) * HOUR_S
}

/// What a re-read fill is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Outside what the ledger answers for (older than its floor, or a market it was never
    /// told about): the caller keeps its old rule (the covered edge second is re-sent, older
    /// covered time is skipped).
    Unknown,
    /// Sent (or adopted) before: nothing to do.
    Known,
    /// First complete read of a second an earlier process may have sent: now remembered, not
    /// sent, not counted.
    Baseline,
    /// Neither sent nor adopted: upstream indexed it after the poll passed its second. It is
    /// remembered at once (a second read of it in the same walk is `Known`); send it, count it,
    /// and [`Ledger::forget`] it if the send fails.
    Late,
}

#[derive(Debug, Default)]
struct MarketLedger {
    /// Seconds below this have not been read completely by this process: an unknown fill
    /// there may have been sent by an earlier one (unless a restored span answers for it).
    baseline_below: i64,
    hours: BTreeMap<i64, HashSet<u64>>,
    /// The span an earlier process persisted (it knew every fill sent in it), until it joins
    /// the region this process answers for.
    restored: Option<(i64, i64)>,
    /// Hours whose fingerprints are not persisted (too many): never answered for after a
    /// restart.
    partial_hours: BTreeSet<i64>,
    /// Hours changed since they were last persisted.
    dirty: BTreeSet<i64>,
}

impl MarketLedger {
    fn new(baseline_below: i64) -> Self {
        Self {
            baseline_below,
            ..Self::default()
        }
    }

    /// Whether a restored span answers for `second`: an unknown fill there is late.
    fn restored_covers(&self, second: i64) -> bool {
        self.restored
            .is_some_and(|(from, through)| from <= second && second <= through)
            && !self.partial_hours.contains(&hour_of(second))
    }

    /// Joins the restored span to the region this process answers for once they touch.
    fn merge_restored(&mut self) {
        if let Some((from, through)) = self.restored
            && through.saturating_add(1) >= self.baseline_below
            && self.partial_hours.range(hour_of(from)..).next().is_none()
        {
            self.baseline_below = self.baseline_below.min(from);
            self.restored = None;
        }
    }
}

/// A market's persisted span (key `ledger/<condition_id>`): every fill sent with a second in
/// `[from, through]` is in the persisted hours, except in `partial_hours`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedSpan {
    pub from: i64,
    pub through: i64,
    #[serde(default)]
    pub partial_hours: Vec<i64>,
}

impl PersistedSpan {
    /// An empty span: what is tracked for a key whose content is unknown, so the next writes
    /// replace or delete it.
    fn matching_nothing() -> Self {
        Self {
            from: 0,
            through: -1,
            partial_hours: Vec::new(),
        }
    }
}

/// A persisted market-hour (key `ledger/<condition_id>/<hour>`): the fingerprints, sorted, 16
/// hex digits each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedHour {
    pub ids: String,
}

impl PersistedHour {
    fn encode(set: &HashSet<u64>) -> Self {
        let mut sorted: Vec<u64> = set.iter().copied().collect();
        sorted.sort_unstable();
        let bytes: Vec<u8> = sorted.iter().flat_map(|id| id.to_be_bytes()).collect();
        Self {
            ids: hex::encode(bytes),
        }
    }

    fn decode(&self) -> Option<HashSet<u64>> {
        let bytes = hex::decode(&self.ids).ok()?;
        if bytes.len() % 8 != 0 {
            return None;
        }
        Some(
            bytes
                .chunks_exact(8)
                .map(|chunk| {
                    let mut id = [0u8; 8];
                    id.copy_from_slice(chunk);
                    u64::from_be_bytes(id)
                })
                .collect(),
        )
    }
}

/// What was read back from the checkpoint topic for one market.
#[derive(Debug, Default)]
struct RestoredMarket {
    span: Option<PersistedSpan>,
    hours: BTreeMap<i64, HashSet<u64>>,
    /// Hours whose entry could not be read: not answered for.
    unreadable_hours: BTreeSet<i64>,
}

/// The checkpoint-topic writes that bring the persisted ledger up to date: `hours` first
/// (upserts and deletions), then `spans` (a span is written only once the hours it answers
/// for are acknowledged). `None` deletes the key (a tombstone).
#[derive(Debug, Default, PartialEq)]
pub struct LedgerWrites {
    pub hours: Vec<(String, Option<PersistedHour>)>,
    pub spans: Vec<(String, Option<PersistedSpan>)>,
}

impl LedgerWrites {
    pub fn is_empty(&self) -> bool {
        self.hours.is_empty() && self.spans.is_empty()
    }

    pub fn len(&self) -> usize {
        self.hours.len() + self.spans.len()
    }
}

fn span_key(condition_id: &str) -> String {
    format!("{LEDGER_KEY_PREFIX}{condition_id}")
}

fn hour_key(condition_id: &str, hour: i64) -> String {
    format!("{LEDGER_KEY_PREFIX}{condition_id}/{hour}")
}

/// Fingerprints of the fills sent, per market and UTC hour, over the horizon.
#[derive(Debug)]
pub struct Ledger {
    horizon_s: i64,
    max_ids: usize,
    /// The ledger answers for seconds at or after this (an hour boundary).
    floor: i64,
    total: usize,
    markets: HashMap<String, MarketLedger>,
    /// Read back from the checkpoint topic, for markets not yet registered.
    restored: HashMap<String, RestoredMarket>,
    /// What the checkpoint topic holds: per market its hours, and its span.
    persisted_hours: HashMap<String, BTreeSet<i64>>,
    persisted_spans: HashMap<String, PersistedSpan>,
}

impl Ledger {
    /// A ledger remembering `horizon_s` seconds of sent fills, at most `max_ids` of them.
    pub fn new(horizon_s: i64, max_ids: usize) -> Self {
        Self {
            horizon_s: horizon_s.max(0),
            max_ids: max_ids.max(1),
            floor: i64::MIN,
            total: 0,
            markets: HashMap::new(),
            restored: HashMap::new(),
            persisted_hours: HashMap::new(),
            persisted_spans: HashMap::new(),
        }
    }

    /// Takes what an earlier process persisted (the checkpoint topic's `ledger/` entries, keys
    /// with the prefix); it is applied to each market when the market is registered. Entries
    /// that cannot be read are left out, so their seconds are adopted as after a restart
    /// without a ledger, never trusted.
    pub fn restore(&mut self, entries: impl IntoIterator<Item = (String, serde_json::Value)>) {
        for (key, value) in entries {
            let Some(rest) = key.strip_prefix(LEDGER_KEY_PREFIX) else {
                continue;
            };
            match rest.split_once('/') {
                None => {
                    let span = serde_json::from_value::<PersistedSpan>(value).ok();
                    // The key is in the topic either way (an unreadable span is an empty one,
                    // overwritten or deleted by the next writes).
                    self.persisted_spans.insert(
                        rest.to_owned(),
                        span.clone().unwrap_or_else(PersistedSpan::matching_nothing),
                    );
                    self.restored.entry(rest.to_owned()).or_default().span = span;
                }
                Some((condition_id, hour)) => {
                    let Ok(hour) = hour.parse::<i64>() else {
                        continue;
                    };
                    self.persisted_hours
                        .entry(condition_id.to_owned())
                        .or_default()
                        .insert(hour);
                    let market = self.restored.entry(condition_id.to_owned()).or_default();
                    match serde_json::from_value::<PersistedHour>(value)
                        .ok()
                        .and_then(|persisted| persisted.decode())
                    {
                        Some(ids) => {
                            market.hours.insert(hour, ids);
                        }
                        None => {
                            market.unreadable_hours.insert(hour);
                        }
                    }
                }
            }
        }
        let spans = self
            .restored
            .values()
            .filter(|market| market.span.is_some())
            .count();
        tracing::info!(markets = spans, "reconciliation ledger restored");
    }

    /// The oldest second the ledger answers for: re-reads start at or after it.
    pub fn floor(&self) -> i64 {
        self.floor
    }

    /// Fingerprints held.
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Fills remembered for a market in the hour holding `second` (the "sent" count a re-read
    /// of that market-hour compares with).
    pub fn count(&self, condition_id: &str, second: i64) -> usize {
        self.markets
            .get(condition_id)
            .and_then(|market| market.hours.get(&hour_of(second)))
            .map_or(0, HashSet::len)
    }

    /// First contact with a market in this process; `sent_up_to` is the newest second an
    /// earlier process may have sent fills of (its coverage, or the end of a walk it left in
    /// progress), `None` if none. Later calls change nothing.
    pub fn register(&mut self, condition_id: &str, sent_up_to: Option<i64>) {
        if self.markets.contains_key(condition_id) {
            return;
        }
        let mut market =
            MarketLedger::new(sent_up_to.map_or(i64::MIN, |second| second.saturating_add(1)));
        if let Some(restored) = self.restored.remove(condition_id)
            && let Some(span) = restored.span
        {
            let from = span.from.max(self.floor);
            for (hour, ids) in restored.hours {
                if hour >= hour_of(from) && hour <= span.through {
                    self.total += ids.len();
                    market.hours.insert(hour, ids);
                }
            }
            market.partial_hours = span
                .partial_hours
                .iter()
                .copied()
                .chain(restored.unreadable_hours)
                .collect();
            if from <= span.through {
                market.restored = Some((from, span.through));
            }
            market.merge_restored();
        }
        self.markets.insert(condition_id.to_owned(), market);
        self.enforce_cap();
    }

    pub fn is_registered(&self, condition_id: &str) -> bool {
        self.markets.contains_key(condition_id)
    }

    /// Forgets markets no longer collected (a market seen again later is registered anew,
    /// with its coverage then as the baseline).
    pub fn retain_markets(&mut self, keep: impl Fn(&str) -> bool) {
        let mut dropped = 0;
        self.markets.retain(|condition_id, market| {
            let keep = keep(condition_id);
            if !keep {
                dropped += market.hours.values().map(HashSet::len).sum::<usize>();
            }
            keep
        });
        self.total -= dropped;
    }

    /// Drops the hours that left the horizon as of `now_s`.
    pub fn advance(&mut self, now_s: i64) {
        let floor = hour_of(now_s.saturating_sub(self.horizon_s));
        if floor > self.floor {
            self.drop_below(floor);
        }
    }

    fn drop_below(&mut self, floor: i64) {
        self.floor = floor;
        let mut dropped = 0;
        for market in self.markets.values_mut() {
            let kept = market.hours.split_off(&floor);
            dropped += market.hours.values().map(HashSet::len).sum::<usize>();
            market.hours = kept;
            market.partial_hours = market.partial_hours.split_off(&floor);
            market.dirty = market.dirty.split_off(&floor);
        }
        self.total -= dropped;
    }

    /// Over `max_ids`: the oldest hours go and the horizon shortens accordingly.
    fn enforce_cap(&mut self) {
        while self.total > self.max_ids {
            let Some(oldest) = self
                .markets
                .values()
                .filter_map(|market| market.hours.keys().next().copied())
                .min()
            else {
                return;
            };
            tracing::warn!(
                held = self.total,
                max = self.max_ids,
                floor = oldest + HOUR_S,
                "reconciliation ledger full; its horizon is shortened to keep memory bounded"
            );
            self.drop_below(oldest + HOUR_S);
        }
    }

    /// Remembers a fill that was sent (acknowledged by the broker).
    pub fn record(&mut self, condition_id: &str, second: i64, trade_id: &str) {
        if second < self.floor {
            return;
        }
        let market = self
            .markets
            .entry(condition_id.to_owned())
            .or_insert_with(|| MarketLedger::new(i64::MIN));
        let hour = hour_of(second);
        if market
            .hours
            .entry(hour)
            .or_default()
            .insert(fingerprint(trade_id))
        {
            market.dirty.insert(hour);
            self.total += 1;
            self.enforce_cap();
        }
    }

    /// Judges a fill re-read inside its market's coverage (see [`Verdict`]).
    pub fn judge(&mut self, condition_id: &str, second: i64, trade_id: &str) -> Verdict {
        if second < self.floor {
            return Verdict::Unknown;
        }
        let Some(market) = self.markets.get_mut(condition_id) else {
            return Verdict::Unknown;
        };
        let hour = hour_of(second);
        let inserted = market
            .hours
            .entry(hour)
            .or_default()
            .insert(fingerprint(trade_id));
        if !inserted {
            return Verdict::Known;
        }
        market.dirty.insert(hour);
        let verdict = if second < market.baseline_below && !market.restored_covers(second) {
            Verdict::Baseline
        } else {
            Verdict::Late
        };
        self.total += 1;
        self.enforce_cap();
        verdict
    }

    /// Undoes [`Verdict::Late`] for a fill whose send failed, so the next re-read finds it
    /// again.
    pub fn forget(&mut self, condition_id: &str, second: i64, trade_id: &str) {
        let hour = hour_of(second);
        if let Some(market) = self.markets.get_mut(condition_id)
            && let Some(set) = market.hours.get_mut(&hour)
            && set.remove(&fingerprint(trade_id))
        {
            market.dirty.insert(hour);
            self.total -= 1;
        }
    }

    /// Records that `[from, to]` of a market was read completely: the baseline region grows
    /// down to `from` when the read touches it (unknown fills there are late from now on).
    pub fn read_complete(&mut self, condition_id: &str, from: i64, to: i64) {
        if let Some(market) = self.markets.get_mut(condition_id)
            && from < market.baseline_below
            && to.saturating_add(1) >= market.baseline_below
        {
            market.baseline_below = from;
        }
        if let Some(market) = self.markets.get_mut(condition_id) {
            market.merge_restored();
        }
    }

    /// The writes that bring the persisted ledger up to date, given each market's covered
    /// high (every fill up to it acknowledged). Call it when no send is in flight (between
    /// rounds): the spans written claim every fill sent up to their `through`. What it returns
    /// is taken as persisted; if writing it fails, call [`Ledger::mark_all_dirty`].
    pub fn take_writes(&mut self, covered_high: impl Fn(&str) -> Option<i64>) -> LedgerWrites {
        let mut writes = LedgerWrites::default();
        let floor = self.floor;
        for (condition_id, market) in &mut self.markets {
            let persisted = self
                .persisted_hours
                .entry(condition_id.clone())
                .or_default();
            // Hours gone (below the floor, or emptied) leave the topic.
            let gone: Vec<i64> = persisted
                .iter()
                .copied()
                .filter(|hour| market.hours.get(hour).is_none_or(HashSet::is_empty))
                .collect();
            for hour in gone {
                persisted.remove(&hour);
                writes.hours.push((hour_key(condition_id, hour), None));
            }
            for hour in std::mem::take(&mut market.dirty) {
                let Some(set) = market.hours.get(&hour).filter(|set| !set.is_empty()) else {
                    continue;
                };
                if set.len() > MAX_PERSISTED_PER_HOUR {
                    market.partial_hours.insert(hour);
                    if persisted.remove(&hour) {
                        writes.hours.push((hour_key(condition_id, hour), None));
                    }
                    continue;
                }
                persisted.insert(hour);
                writes.hours.push((
                    hour_key(condition_id, hour),
                    Some(PersistedHour::encode(set)),
                ));
            }
            let span = covered_high(condition_id).and_then(|through| {
                let from = market.baseline_below.max(floor);
                (from <= through).then(|| PersistedSpan {
                    from,
                    through,
                    partial_hours: market
                        .partial_hours
                        .range(hour_of(from)..=through)
                        .copied()
                        .collect(),
                })
            });
            let current = self.persisted_spans.get(condition_id);
            match span {
                Some(span) if current != Some(&span) => {
                    self.persisted_spans
                        .insert(condition_id.clone(), span.clone());
                    writes.spans.push((span_key(condition_id), Some(span)));
                }
                Some(_) => {}
                None => {
                    if self.persisted_spans.remove(condition_id).is_some() {
                        writes.spans.push((span_key(condition_id), None));
                    }
                }
            }
        }
        // Markets no longer held: their entries leave the topic, except those restored for a
        // market not registered yet whose span is still inside the horizon.
        let held = |condition_id: &str| {
            self.markets.contains_key(condition_id)
                || self.restored.get(condition_id).is_some_and(|restored| {
                    restored
                        .span
                        .as_ref()
                        .is_some_and(|span| span.through >= floor)
                })
        };
        let orphan_hours: Vec<String> = self
            .persisted_hours
            .keys()
            .filter(|condition_id| !held(condition_id))
            .cloned()
            .collect();
        let orphan_spans: Vec<String> = self
            .persisted_spans
            .keys()
            .filter(|condition_id| !held(condition_id))
            .cloned()
            .collect();
        for condition_id in orphan_hours {
            if let Some(hours) = self.persisted_hours.remove(&condition_id) {
                for hour in hours {
                    writes.hours.push((hour_key(&condition_id, hour), None));
                }
            }
            self.restored.remove(&condition_id);
        }
        for condition_id in orphan_spans {
            self.persisted_spans.remove(&condition_id);
            self.restored.remove(&condition_id);
            writes.spans.push((span_key(&condition_id), None));
        }
        writes
    }

    /// After `writes` failed (all or some of them): each is made again by the next
    /// [`Ledger::take_writes`].
    pub fn requeue(&mut self, writes: &LedgerWrites) {
        for (key, _) in &writes.hours {
            let Some((condition_id, hour)) = key
                .strip_prefix(LEDGER_KEY_PREFIX)
                .and_then(|rest| rest.split_once('/'))
                .and_then(|(condition_id, hour)| Some((condition_id, hour.parse::<i64>().ok()?)))
            else {
                continue;
            };
            // Tracked as in the topic: rewritten if still held, deleted if not.
            self.persisted_hours
                .entry(condition_id.to_owned())
                .or_default()
                .insert(hour);
            if let Some(market) = self.markets.get_mut(condition_id) {
                market.dirty.insert(hour);
            }
        }
        for (key, _) in &writes.spans {
            if let Some(condition_id) = key.strip_prefix(LEDGER_KEY_PREFIX) {
                // A span that matches nothing: rewritten, or deleted, next time.
                self.persisted_spans
                    .insert(condition_id.to_owned(), PersistedSpan::matching_nothing());
            }
        }
    }
}

#[cfg(test)]
mod tests;
