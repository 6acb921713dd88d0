//! The order-book engine of one market.
//!
//! A market has one canonical book, kept in YES-token terms: bids and asks at integer price
//! units, each level a FIFO queue of resting orders plus an aggregate total. The NO token's
//! book is the mirror (YES bid at p ⇔ NO ask at 1−p), so one order change is one level change
//! that shows up on both tokens. Orders are placed, cancelled and matched (taker orders are
//! fill-and-kill); every operation reports its level changes in order, with the total before
//! and after, so the live feed can replay them one by one.

use std::collections::{BTreeMap, VecDeque};

use polytape_model::Side;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::fixed::{PRICE_UNITS_PER_ONE, SIZE_MICROS_PER_SHARE};

/// Which side of the canonical (YES) book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum BookSide {
    Bid,
    Ask,
}

impl BookSide {
    fn index(self) -> usize {
        match self {
            BookSide::Bid => 0,
            BookSide::Ask => 1,
        }
    }

    pub(crate) fn opposite(self) -> BookSide {
        match self {
            BookSide::Bid => BookSide::Ask,
            BookSide::Ask => BookSide::Bid,
        }
    }

    /// The side of the same level as seen on the NO token (YES bid ⇔ NO ask).
    pub(crate) fn mirrored(self) -> BookSide {
        self.opposite()
    }

    /// Upstream's side name for orders resting on this side (BUY rests on bids).
    pub(crate) fn order_side(self) -> Side {
        match self {
            BookSide::Bid => Side::Buy,
            BookSide::Ask => Side::Sell,
        }
    }
}

/// Flips BUY and SELL.
pub(crate) fn flip_side(side: Side) -> Side {
    match side {
        Side::Buy => Side::Sell,
        Side::Sell => Side::Buy,
    }
}

/// The complement price (1 − p) in units.
pub(crate) fn complement(price: u32) -> u32 {
    PRICE_UNITS_PER_ONE.saturating_sub(price)
}

#[derive(Debug, Clone)]
struct RestingOrder {
    wallet: u32,
    remaining: u64,
    /// Token the order was placed on (0 = YES, 1 = NO); a BUY NO at q rests as a YES ask at 1−q.
    origin_token: u8,
}

/// One aggregate level change, in YES terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LevelChange {
    pub(crate) side: BookSide,
    pub(crate) price: u32,
    pub(crate) old_total: u64,
    pub(crate) new_total: u64,
}

/// A maker order (or part of one) matched by a taker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MakerMatch {
    pub(crate) wallet: u32,
    pub(crate) origin_token: u8,
    /// Execution price in YES terms.
    pub(crate) yes_price: u32,
    pub(crate) size: u64,
}

/// The taker of a match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Taker {
    pub(crate) wallet: u32,
    /// Token the taker traded (0 = YES, 1 = NO).
    pub(crate) token: u8,
    /// Side on that token.
    pub(crate) side: Side,
}

/// Everything one operation did.
#[derive(Debug, Default)]
pub(crate) struct OpOutcome {
    pub(crate) changes: Vec<LevelChange>,
    pub(crate) taker: Option<Taker>,
    pub(crate) matches: Vec<MakerMatch>,
    /// (old tick, new tick) in units.
    pub(crate) tick_change: Option<(u32, u32)>,
}

/// How busy a market is and how its order flow looks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlowProfile {
    pub(crate) place_probability: f64,
    pub(crate) cancel_probability: f64,
    /// Probability that the fair price moves by one tick on an operation.
    pub(crate) drift_probability: f64,
}

/// The canonical book of one market.
#[derive(Debug, Clone)]
pub(crate) struct MarketBook {
    /// Aggregate size per level; index 0 bids, 1 asks. This is what books and hashes show.
    totals: [BTreeMap<u32, u64>; 2],
    queues: [BTreeMap<u32, VecDeque<RestingOrder>>; 2],
    pub(crate) tick: u32,
    /// Whether the tick moves between 0.01 and 0.001 near the extremes (upstream's
    /// `tick_size_change`).
    pub(crate) dynamic_tick: bool,
    pub(crate) fair: u32,
    /// Last trade price in YES terms.
    pub(crate) last_trade: u32,
    pub(crate) last_change_ms: i64,
}

impl MarketBook {
    pub(crate) fn new(tick: u32, dynamic_tick: bool, fair: u32) -> MarketBook {
        let fair = round_to_tick(fair, tick).clamp(tick * 2, PRICE_UNITS_PER_ONE - tick * 2);
        MarketBook {
            totals: [BTreeMap::new(), BTreeMap::new()],
            queues: [BTreeMap::new(), BTreeMap::new()],
            tick,
            dynamic_tick,
            fair,
            last_trade: fair,
            last_change_ms: 0,
        }
    }

    pub(crate) fn best_bid(&self) -> Option<u32> {
        self.totals[0].keys().next_back().copied()
    }

    pub(crate) fn best_ask(&self) -> Option<u32> {
        self.totals[1].keys().next().copied()
    }

    /// Levels of one side in YES terms, ascending by price.
    pub(crate) fn levels(
        &self,
        side: BookSide,
    ) -> impl DoubleEndedIterator<Item = (u32, u64)> + '_ {
        self.totals[side.index()]
            .iter()
            .map(|(price, size)| (*price, *size))
    }

    pub(crate) fn level_count(&self, side: BookSide) -> usize {
        self.totals[side.index()].len()
    }

    /// Sets an aggregate total without touching the order queues: used only to rewind and
    /// replay an operation's changes one at a time for the live feed.
    pub(crate) fn set_total_for_replay(&mut self, side: BookSide, price: u32, total: u64) {
        if total == 0 {
            self.totals[side.index()].remove(&price);
        } else {
            self.totals[side.index()].insert(price, total);
        }
    }

    /// Removes every order (market closed).
    pub(crate) fn clear(&mut self, outcome: &mut OpOutcome) {
        for side in [BookSide::Bid, BookSide::Ask] {
            let prices: Vec<(u32, u64)> = self.levels(side).collect();
            for (price, total) in prices {
                outcome.changes.push(LevelChange {
                    side,
                    price,
                    old_total: total,
                    new_total: 0,
                });
            }
            self.totals[side.index()].clear();
            self.queues[side.index()].clear();
        }
    }

    fn record_total(&mut self, side: BookSide, price: u32, outcome: &mut OpOutcome) {
        let new_total: u64 = self.queues[side.index()]
            .get(&price)
            .map(|queue| queue.iter().map(|order| order.remaining).sum())
            .unwrap_or(0);
        let old_total = self.totals[side.index()].get(&price).copied().unwrap_or(0);
        if new_total == old_total {
            return;
        }
        if new_total == 0 {
            self.totals[side.index()].remove(&price);
            self.queues[side.index()].remove(&price);
        } else {
            self.totals[side.index()].insert(price, new_total);
        }
        outcome.changes.push(LevelChange {
            side,
            price,
            old_total,
            new_total,
        });
    }

    /// Places a resting order (the caller guarantees it does not cross).
    pub(crate) fn place(
        &mut self,
        side: BookSide,
        price: u32,
        size: u64,
        wallet: u32,
        origin_token: u8,
        outcome: &mut OpOutcome,
    ) {
        self.queues[side.index()]
            .entry(price)
            .or_default()
            .push_back(RestingOrder {
                wallet,
                remaining: size,
                origin_token,
            });
        self.record_total(side, price, outcome);
    }

    /// Seeds a fresh book with a ladder around the fair price.
    pub(crate) fn seed_ladder(
        &mut self,
        rng: &mut ChaCha8Rng,
        wallets: u32,
        outcome: &mut OpOutcome,
    ) {
        for distance in 1..=8u32 {
            for side in [BookSide::Bid, BookSide::Ask] {
                let Some(price) = self.price_at_distance(side, distance) else {
                    continue;
                };
                let size = random_size(rng, 20, 800);
                let wallet = random_wallet(rng, wallets);
                let origin = rng.random_range(0..2u8);
                self.place(side, price, size, wallet, origin, outcome);
            }
        }
    }

    fn price_at_distance(&self, side: BookSide, distance: u32) -> Option<u32> {
        let offset = distance.checked_mul(self.tick)?;
        let price = match side {
            BookSide::Bid => self.fair.checked_sub(offset)?,
            BookSide::Ask => self.fair.checked_add(offset)?,
        };
        if price < self.tick || price > PRICE_UNITS_PER_ONE - self.tick {
            return None;
        }
        Some(price)
    }

    /// One random operation: place, cancel or take, with fair-price drift and tick changes.
    pub(crate) fn random_operation(
        &mut self,
        rng: &mut ChaCha8Rng,
        profile: &FlowProfile,
        wallets: u32,
    ) -> OpOutcome {
        let mut outcome = OpOutcome::default();
        if rng.random_bool(profile.drift_probability) {
            self.drift(rng);
        }
        let roll: f64 = rng.random();
        let thin_side = [BookSide::Bid, BookSide::Ask]
            .into_iter()
            .find(|side| self.level_count(*side) < 3);
        if let Some(side) = thin_side {
            self.place_passive(rng, side, wallets, &mut outcome);
        } else if roll < profile.place_probability {
            let side = if rng.random_bool(0.5) {
                BookSide::Bid
            } else {
                BookSide::Ask
            };
            self.place_passive(rng, side, wallets, &mut outcome);
        } else if roll < profile.place_probability + profile.cancel_probability {
            self.cancel_random(rng, &mut outcome);
        } else {
            self.take(rng, wallets, &mut outcome);
        }
        self.maybe_change_tick(&mut outcome);
        outcome
    }

    fn drift(&mut self, rng: &mut ChaCha8Rng) {
        let up = if self.last_trade > self.fair {
            rng.random_bool(0.55)
        } else {
            rng.random_bool(0.45)
        };
        let low = self.tick * 2;
        let high = PRICE_UNITS_PER_ONE - self.tick * 2;
        let moved = if up {
            self.fair.saturating_add(self.tick)
        } else {
            self.fair.saturating_sub(self.tick)
        };
        self.fair = moved.clamp(low, high);
    }

    fn place_passive(
        &mut self,
        rng: &mut ChaCha8Rng,
        side: BookSide,
        wallets: u32,
        outcome: &mut OpOutcome,
    ) {
        // Geometric-ish distance from fair: most orders near the touch, a few far out.
        let mut distance = 1u32;
        while distance < 12 && rng.random_bool(0.6) {
            distance += 1;
        }
        let Some(mut price) = self.price_at_distance(side, distance) else {
            return;
        };
        // Never cross: a passive order stays one tick behind the opposite touch.
        match side {
            BookSide::Bid => {
                if let Some(best_ask) = self.best_ask()
                    && price >= best_ask
                {
                    let Some(below) = best_ask.checked_sub(self.tick) else {
                        return;
                    };
                    price = below;
                }
            }
            BookSide::Ask => {
                if let Some(best_bid) = self.best_bid()
                    && price <= best_bid
                {
                    price = best_bid + self.tick;
                }
            }
        }
        if price < self.tick || price > PRICE_UNITS_PER_ONE - self.tick {
            return;
        }
        let size = random_size(rng, 5, 500);
        let wallet = random_wallet(rng, wallets);
        let origin = rng.random_range(0..2u8);
        self.place(side, price, size, wallet, origin, outcome);
    }

    fn cancel_random(&mut self, rng: &mut ChaCha8Rng, outcome: &mut OpOutcome) {
        let side = if rng.random_bool(0.5) {
            BookSide::Bid
        } else {
            BookSide::Ask
        };
        let levels = self.queues[side.index()].len();
        if levels == 0 {
            return;
        }
        // The level farthest from the fair price (a deep one, or a stale one the price moved
        // away from) is cancelled more often, which keeps books a realistic depth and lets
        // them follow the fair price.
        let level_position = if rng.random_bool(0.4) {
            let distance = |position: usize| {
                self.queues[side.index()]
                    .keys()
                    .nth(position)
                    .map_or(0, |price| price.abs_diff(self.fair))
            };
            if distance(0) >= distance(levels - 1) {
                0
            } else {
                levels - 1
            }
        } else {
            rng.random_range(0..levels)
        };
        let Some(price) = self.queues[side.index()]
            .keys()
            .nth(level_position)
            .copied()
        else {
            return;
        };
        if let Some(queue) = self.queues[side.index()].get_mut(&price)
            && !queue.is_empty()
        {
            let order_position = rng.random_range(0..queue.len());
            if rng.random_bool(0.8) {
                queue.remove(order_position);
            } else if let Some(order) = queue.get_mut(order_position) {
                // Partial cancel (size reduction).
                order.remaining = (order.remaining / 2).max(SIZE_MICROS_PER_SHARE);
            }
        }
        self.record_total(side, price, outcome);
    }

    fn take(&mut self, rng: &mut ChaCha8Rng, wallets: u32, outcome: &mut OpOutcome) {
        // Which side of the YES book the taker consumes.
        let buys_yes = if self.fair > self.last_trade {
            rng.random_bool(0.56)
        } else {
            rng.random_bool(0.44)
        };
        let consumed = if buys_yes {
            BookSide::Ask
        } else {
            BookSide::Bid
        };
        let Some(touch) = (match consumed {
            BookSide::Ask => self.best_ask(),
            BookSide::Bid => self.best_bid(),
        }) else {
            return;
        };
        let sweep_ticks = if rng.random_bool(0.8) {
            0
        } else {
            rng.random_range(1..4u32)
        };
        let limit = match consumed {
            BookSide::Ask => touch.saturating_add(sweep_ticks * self.tick),
            BookSide::Bid => touch.saturating_sub(sweep_ticks * self.tick),
        };
        let wanted = random_size(rng, 5, 300);
        let taker_wallet = random_wallet(rng, wallets);
        let taker_token = rng.random_range(0..2u8);
        // A YES buyer is a BUY on YES or a SELL on NO.
        let yes_side = if buys_yes { Side::Buy } else { Side::Sell };
        let taker_side = if taker_token == 0 {
            yes_side
        } else {
            flip_side(yes_side)
        };
        self.take_exact(
            consumed,
            limit,
            wanted,
            Taker {
                wallet: taker_wallet,
                token: taker_token,
                side: taker_side,
            },
            outcome,
        );
    }

    /// A fill-and-kill taker order consuming `consumed` up to the `limit` price for at most
    /// `wanted` (micro-shares), in price-time priority.
    pub(crate) fn take_exact(
        &mut self,
        consumed: BookSide,
        limit: u32,
        mut wanted: u64,
        taker: Taker,
        outcome: &mut OpOutcome,
    ) {
        outcome.taker = Some(taker);
        while wanted > 0 {
            let next_level = match consumed {
                BookSide::Ask => self.queues[1].keys().next().copied(),
                BookSide::Bid => self.queues[0].keys().next_back().copied(),
            };
            let Some(price) = next_level else {
                break;
            };
            let crosses = match consumed {
                BookSide::Ask => price <= limit,
                BookSide::Bid => price >= limit,
            };
            if !crosses {
                break;
            }
            if let Some(queue) = self.queues[consumed.index()].get_mut(&price) {
                while wanted > 0 {
                    let Some(front) = queue.front_mut() else {
                        break;
                    };
                    let matched = front.remaining.min(wanted);
                    front.remaining -= matched;
                    wanted -= matched;
                    outcome.matches.push(MakerMatch {
                        wallet: front.wallet,
                        origin_token: front.origin_token,
                        yes_price: price,
                        size: matched,
                    });
                    if front.remaining == 0 {
                        queue.pop_front();
                    }
                }
            }
            self.record_total(consumed, price, outcome);
            self.last_trade = price;
        }
        if outcome.matches.is_empty() {
            outcome.taker = None;
        }
    }

    /// Cancels every order of `side` at `bound` or beyond it towards the other side (bids at
    /// or above it, asks at or below it): clears the way for an order at `bound` that must
    /// not cross, or must be alone at its price.
    pub(crate) fn cancel_through(&mut self, side: BookSide, bound: u32, outcome: &mut OpOutcome) {
        let prices: Vec<u32> = match side {
            BookSide::Bid => self.queues[0]
                .range(bound..)
                .map(|(price, _)| *price)
                .collect(),
            BookSide::Ask => self.queues[1]
                .range(..=bound)
                .map(|(price, _)| *price)
                .collect(),
        };
        for price in prices {
            if let Some(queue) = self.queues[side.index()].get_mut(&price) {
                queue.clear();
            }
            self.record_total(side, price, outcome);
        }
    }

    /// Cancels the orders `wallet` rests at `price` on `side`.
    pub(crate) fn cancel_wallet_at(
        &mut self,
        side: BookSide,
        price: u32,
        wallet: u32,
        outcome: &mut OpOutcome,
    ) {
        if let Some(queue) = self.queues[side.index()].get_mut(&price) {
            queue.retain(|order| order.wallet != wallet);
        }
        self.record_total(side, price, outcome);
    }

    /// The aggregate size resting at `price` on `side`.
    pub(crate) fn total_at(&self, side: BookSide, price: u32) -> u64 {
        self.totals[side.index()].get(&price).copied().unwrap_or(0)
    }

    fn maybe_change_tick(&mut self, outcome: &mut OpOutcome) {
        if !self.dynamic_tick {
            return;
        }
        let bid = self.best_bid().unwrap_or(self.fair);
        let ask = self.best_ask().unwrap_or(self.fair);
        // Upstream switches to the finer tick while the book trades beyond 0.96 / below 0.04.
        let extreme = bid < 400 || ask > 9600;
        let old = self.tick;
        if self.tick == 100 && extreme {
            self.tick = 10;
        } else if self.tick == 10 && !extreme {
            self.tick = 100;
            self.fair = round_to_tick(self.fair, 100);
        }
        if old != self.tick {
            outcome.tick_change = Some((old, self.tick));
        }
    }
}

/// Rounds a price to the nearest multiple of the tick.
pub(crate) fn round_to_tick(price: u32, tick: u32) -> u32 {
    if tick == 0 {
        return price;
    }
    ((price + tick / 2) / tick) * tick
}

/// A random order size in micro-shares between `low` and `high` shares: mostly whole or cent
/// sizes, sometimes full 6-decimal on-chain sizes.
pub(crate) fn random_size(rng: &mut ChaCha8Rng, low: u64, high: u64) -> u64 {
    let shares = rng.random_range(low..=high);
    let roll: f64 = rng.random();
    let fraction = if roll < 0.5 {
        0
    } else if roll < 0.85 {
        rng.random_range(0..100u64) * 10_000
    } else {
        rng.random_range(0..SIZE_MICROS_PER_SHARE)
    };
    shares * SIZE_MICROS_PER_SHARE + fraction
}

/// A wallet index skewed towards a few very active wallets.
pub(crate) fn random_wallet(rng: &mut ChaCha8Rng, wallets: u32) -> u32 {
    let uniform: f64 = rng.random();
    let skewed = uniform * uniform * uniform;
    ((skewed * f64::from(wallets)) as u32).min(wallets.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn operations_keep_the_book_uncrossed_and_totals_consistent() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut book = MarketBook::new(100, true, 5000);
        let mut seed = OpOutcome::default();
        book.seed_ladder(&mut rng, 100, &mut seed);
        let profile = FlowProfile {
            place_probability: 0.5,
            cancel_probability: 0.3,
            drift_probability: 0.05,
        };
        let mut fills = 0;
        for _ in 0..20_000 {
            let outcome = book.random_operation(&mut rng, &profile, 100);
            fills += outcome.matches.len();
            if let (Some(bid), Some(ask)) = (book.best_bid(), book.best_ask()) {
                assert!(bid < ask, "crossed book {bid} >= {ask}");
            }
            for change in &outcome.changes {
                let shown = book.totals[change.side.index()]
                    .get(&change.price)
                    .copied()
                    .unwrap_or(0);
                let queued: u64 = book.queues[change.side.index()]
                    .get(&change.price)
                    .map(|queue| queue.iter().map(|order| order.remaining).sum())
                    .unwrap_or(0);
                assert_eq!(shown, queued);
            }
        }
        assert!(fills > 1000, "only {fills} fills");
    }
}
