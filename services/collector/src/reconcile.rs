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
//! **Restarts.** The ledger lives in memory: after a restart, fills an earlier process sent
//! are unknown. Each market starts with `baseline_below` = one past the newest second an
//! earlier process may have sent (its coverage when this process first touched it): an
//! unknown fill below it is *adopted* on its first complete re-read — remembered, not sent,
//! not counted — and only fills unknown after that are late. The cost is honest and bounded:
//! a fill indexed late *while no collector ran*, for a second an earlier process had already
//! covered, is adopted as if it had been sent (it is not published). Persisting the per-hour
//! counts would let a restart detect such hours; it is not done (see README, "Open work").

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    hash::{DefaultHasher, Hash as _, Hasher as _},
};

const HOUR_S: i64 = 3_600;

/// A trade id's 64-bit fingerprint (SipHash with fixed keys: stable within the process).
pub fn fingerprint(trade_id: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    trade_id.hash(&mut hasher);
    hasher.finish()
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

#[derive(Debug)]
struct MarketLedger {
    /// Seconds below this have not been read completely by this process: an unknown fill
    /// there may have been sent by an earlier one.
    baseline_below: i64,
    hours: BTreeMap<i64, HashSet<u64>>,
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
        }
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
        if !self.markets.contains_key(condition_id) {
            self.markets.insert(
                condition_id.to_owned(),
                MarketLedger {
                    baseline_below: sent_up_to.map_or(i64::MIN, |second| second.saturating_add(1)),
                    hours: BTreeMap::new(),
                },
            );
        }
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
            .or_insert_with(|| MarketLedger {
                baseline_below: i64::MIN,
                hours: BTreeMap::new(),
            });
        if market
            .hours
            .entry(hour_of(second))
            .or_default()
            .insert(fingerprint(trade_id))
        {
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
        let inserted = market
            .hours
            .entry(hour_of(second))
            .or_default()
            .insert(fingerprint(trade_id));
        if !inserted {
            return Verdict::Known;
        }
        let verdict = if second < market.baseline_below {
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
        if let Some(set) = self
            .markets
            .get_mut(condition_id)
            .and_then(|market| market.hours.get_mut(&hour_of(second)))
            && set.remove(&fingerprint(trade_id))
        {
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
    }
}

#[cfg(test)]
mod tests;
