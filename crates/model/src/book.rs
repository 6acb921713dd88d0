//! The one L2 order book: price → size in micros (scale-6 units), sizes always positive. The
//! candle builder keeps one per token, the ws-bridge checks the stream against one, the API
//! replays one from stored snapshots and changes, and the tests' oracles rebuild one.
//!
//! A snapshot replaces the book; a change sets one level to an absolute size (0 deletes it).
//! Best bid is the highest bid, best ask the lowest ask; iterators run best first.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    BookLevel, BookSnapshot, PriceChange, Side,
    micros::{UnitsError, to_micros},
};

/// An L2 book in scale-6 units (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct L2Book {
    bids: BTreeMap<i64, i64>,
    asks: BTreeMap<i64, i64>,
}

impl L2Book {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the whole book with the snapshot's levels. Levels of size 0 are dropped; a
    /// price listed twice keeps its last size. On error (a value not exact at scale 6) the book
    /// is unchanged.
    pub fn apply_snapshot(&mut self, snapshot: &BookSnapshot) -> Result<(), UnitsError> {
        let bids = levels(&snapshot.bids)?;
        let asks = levels(&snapshot.asks)?;
        self.bids = bids;
        self.asks = asks;
        Ok(())
    }

    /// Replaces the whole book with levels already in units, e.g. stored `(price, size)`
    /// columns. Levels of size 0 or less are dropped.
    pub fn replace(
        &mut self,
        bids: impl IntoIterator<Item = (i64, i64)>,
        asks: impl IntoIterator<Item = (i64, i64)>,
    ) {
        self.bids = bids.into_iter().filter(|(_, size)| *size > 0).collect();
        self.asks = asks.into_iter().filter(|(_, size)| *size > 0).collect();
    }

    /// Sets one level to the change's absolute size (0 deletes it).
    pub fn apply_change(&mut self, change: &PriceChange) -> Result<(), UnitsError> {
        let price = to_micros("price", change.price)?;
        let size = to_micros("size", change.size)?;
        self.set_level(change.side, price, size);
        Ok(())
    }

    /// Sets `side`'s level at `price` to `size` units (0 or less deletes it).
    pub fn set_level(&mut self, side: Side, price: i64, size: i64) {
        let levels = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        if size > 0 {
            levels.insert(price, size);
        } else {
            levels.remove(&price);
        }
    }

    /// Size of `side`'s level at `price` (0 if there is none).
    pub fn size(&self, side: Side, price: i64) -> i64 {
        let levels = match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        };
        levels.get(&price).copied().unwrap_or(0)
    }

    pub fn best_bid(&self) -> Option<i64> {
        self.bids.keys().next_back().copied()
    }

    pub fn best_ask(&self) -> Option<i64> {
        self.asks.keys().next().copied()
    }

    /// Bids best first (descending price).
    pub fn bids(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.bids.iter().rev().map(|(price, size)| (*price, *size))
    }

    /// Asks best first (ascending price).
    pub fn asks(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.asks.iter().map(|(price, size)| (*price, *size))
    }

    pub fn bid_level_count(&self) -> usize {
        self.bids.len()
    }

    pub fn ask_level_count(&self) -> usize {
        self.asks.len()
    }

    /// Total bid size at prices within `ticks` ticks of the best bid, inclusive
    /// (`price ≥ best − ticks·tick`).
    pub fn bid_depth(&self, ticks: i64, tick: i64) -> i64 {
        let Some(best) = self.best_bid() else {
            return 0;
        };
        self.bids
            .range(best.saturating_sub(ticks.saturating_mul(tick))..)
            .map(|(_, size)| *size)
            .fold(0_i64, i64::saturating_add)
    }

    /// Total ask size at prices within `ticks` ticks of the best ask, inclusive.
    pub fn ask_depth(&self, ticks: i64, tick: i64) -> i64 {
        let Some(best) = self.best_ask() else {
            return 0;
        };
        self.asks
            .range(..=best.saturating_add(ticks.saturating_mul(tick)))
            .map(|(_, size)| *size)
            .fold(0_i64, i64::saturating_add)
    }
}

/// Checks that every value of a snapshot is exact at scale 6 (so applying it cannot fail).
pub fn check_snapshot(snapshot: &BookSnapshot) -> Result<(), UnitsError> {
    levels(&snapshot.bids)?;
    levels(&snapshot.asks)?;
    if let Some(tick) = snapshot.tick_size {
        to_micros("tick_size", tick)?;
    }
    Ok(())
}

/// Checks that every value of a change is exact at scale 6 (so applying it cannot fail).
pub fn check_change(change: &PriceChange) -> Result<(), UnitsError> {
    to_micros("price", change.price)?;
    to_micros("size", change.size)?;
    for (field, value) in [("best_bid", change.best_bid), ("best_ask", change.best_ask)] {
        if let Some(value) = value {
            to_micros(field, value)?;
        }
    }
    Ok(())
}

fn levels(levels: &[BookLevel]) -> Result<BTreeMap<i64, i64>, UnitsError> {
    let mut map = BTreeMap::new();
    for level in levels {
        let price = to_micros("price", level.price)?;
        let size = to_micros("size", level.size)?;
        if size > 0 {
            map.insert(price, size);
        } else {
            map.remove(&price);
        }
    }
    Ok(map)
}
