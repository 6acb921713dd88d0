//! Planted signal scenarios (issue #15): a whale trading from fresh wallets, a price move, a
//! volume spike, binary arbitrage windows (fee-free and net of fees) and a negative-risk
//! arbitrage window, planted into the live world a round at a time, and the signals they must
//! raise (`GET /_sim/truth/signals`).
//!
//! What is expected is this module's own reckoning, never the signals service's:
//! - arbitrage windows are measured on the engine's books when a scenario opens them, and
//!   close when it cancels the order that opened them;
//! - the trade rules (large trades from new wallets, price moves, volume spikes) are applied to
//!   the simulator's own fill tape, as the Data API serves it (seconds), at the signals
//!   service's default thresholds written here as numbers.
//!
//! Nothing is imported from the signals service or from any parser, so a misreading on our
//! side shows up as a difference. A scenario's markets are kept out of the random flow from
//! the moment it is planned until it ends, so what it plants is all that moves them.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use polytape_model::micros::{micros_to_decimal, units_to_decimal};
use polytape_model::{Side, SignalKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::book::{BookSide, MarketBook, OpOutcome, Taker, random_wallet};
use crate::fixed::SIZE_MICROS_PER_SHARE;
use crate::ids::random_hex;
use crate::live::{LiveState, WsEvent};
use crate::world::{MarketInfo, PLANT_STREAM, WALLET_COUNT_PUBLIC, Wallet, World};

/// The signals service's default thresholds (services/signals/src/config.rs), in scale-6
/// units of USDC, shares or price, and milliseconds.
mod thresholds {
    pub(super) const LARGE_TRADE_NOTIONAL: i128 = 10_000_000_000;
    pub(super) const NEW_WALLET_AGE_MS: i64 = 86_400_000;
    pub(super) const NEW_WALLET_PRIOR_FILLS: u64 = 5;
    pub(super) const ARBITRAGE_MIN_EDGE: i64 = 5_000;
    pub(super) const ARBITRAGE_MIN_SIZE: i64 = 1_000_000;
    pub(super) const PRICE_MOVE: i64 = 100_000;
    pub(super) const PRICE_MOVE_WINDOW_MS: i64 = 300_000;
    pub(super) const PRICE_MOVE_COOLDOWN_MS: i64 = 300_000;
    pub(super) const VOLUME_WINDOW_MS: i64 = 300_000;
    pub(super) const VOLUME_TRAILING_WINDOWS: i64 = 12;
    pub(super) const VOLUME_MULTIPLE: i128 = 5;
    pub(super) const VOLUME_MIN_NOTIONAL: i128 = 5_000_000_000;
}

/// One dollar in scale-6 units.
const ONE: i64 = 1_000_000;
/// The first round starts this long after the first live operation: long enough for a
/// pipeline started with the world to have read the history (a volume spike is judged
/// against it), short enough for a newcomer to the demo.
const FIRST_ROUND_DELAY_MS: i64 = 30_000;
/// The most one trade of a volume spike's burst is worth (scale 6): below the large-trade
/// notional (a whale is another scenario). A burst has at most eight.
const VOLUME_STEP_MAX: i128 = 9_000_000_000;
const MAX_VOLUME_BURST: i128 = 8 * VOLUME_STEP_MAX;

/// What a scenario plants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScenarioKind {
    /// A fresh wallet lifts 12,500–17,500 USDC offered by another fresh wallet.
    Whale,
    /// A binary market's YES trades up 0.12 in four steps, two seconds apart.
    PriceMove,
    /// A burst of trades in one UTC volume window, each below the large-trade notional.
    VolumeSpike,
    /// A YES ask below the best YES bid on a market without fees, for ten seconds.
    BinaryWindow,
    /// The same on a market with fees, fifteen ticks through (the edge net of fees is less).
    BinaryWindowWithFees,
    /// An ask on a negative-risk event's largest leg that brings the YES asks to 0.98.
    NegRiskWindow,
}

/// The name of every kind of scenario a round plants (`kind` in `/_sim/truth/signals`).
pub const SCENARIO_KINDS: [&str; 6] = [
    ScenarioKind::Whale.name(),
    ScenarioKind::PriceMove.name(),
    ScenarioKind::VolumeSpike.name(),
    ScenarioKind::BinaryWindow.name(),
    ScenarioKind::BinaryWindowWithFees.name(),
    ScenarioKind::NegRiskWindow.name(),
];

impl ScenarioKind {
    const fn name(self) -> &'static str {
        match self {
            Self::Whale => "whale_from_new_wallets",
            Self::PriceMove => "price_move",
            Self::VolumeSpike => "volume_spike",
            Self::BinaryWindow => "binary_window",
            Self::BinaryWindowWithFees => "binary_window_with_fees",
            Self::NegRiskWindow => "neg_risk_window",
        }
    }
}

/// An arbitrage window as the engine's books showed it when the scenario opened it.
#[derive(Debug, Clone)]
struct Window {
    kind: SignalKind,
    subject: String,
    direction: &'static str,
    opened_ms: i64,
    closed_ms: Option<i64>,
    edge: i64,
    size: i64,
    legs: usize,
}

/// One planted scenario and what it did.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    id: u32,
    kind: ScenarioKind,
    markets: Vec<u32>,
    event: Option<u32>,
    planned_ms: i64,
    started_ms: Option<i64>,
    ended_ms: Option<i64>,
    /// Why it planted nothing (the book did not allow it when its turn came).
    skipped: Option<String>,
    /// Positions on the fill tape of the trades it made.
    fills: Vec<u32>,
    windows: Vec<Window>,
    /// The order that holds a window open: (market, YES ask price, wallet).
    resting: Option<(u32, u32, u32)>,
    /// A price move's first price.
    base_price: Option<u32>,
}

#[derive(Debug, Clone)]
enum Action {
    Whale { market: u32, notional_usdc: u64 },
    PriceStep { market: u32, step: u32 },
    VolumeStep { market: u32, notional: i128 },
    OpenBinary { market: u32, ticks_through: u32 },
    OpenNegRisk { leg: u32 },
    CloseWindow,
    Release,
}

#[derive(Debug, Clone)]
struct Step {
    due_ms: i64,
    scenario: usize,
    action: Action,
}

/// The planting schedule, kept with the live state.
#[derive(Debug)]
pub(crate) struct Plants {
    rng: ChaCha8Rng,
    every_ms: i64,
    next_round_ms: Option<i64>,
    /// Due steps, earliest first.
    steps: VecDeque<Step>,
    /// Markets the random flow leaves alone while a scenario runs on them.
    pub(crate) reserved: HashSet<u32>,
    scenarios: Vec<Scenario>,
}

impl Plants {
    pub(crate) fn new(seed: u64, every_ms: i64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(PLANT_STREAM);
        Self {
            rng,
            every_ms: every_ms.max(60_000),
            next_round_ms: None,
            steps: VecDeque::new(),
            reserved: HashSet::new(),
            scenarios: Vec::new(),
        }
    }

    fn schedule(&mut self, due_ms: i64, scenario: usize, action: Action) {
        let at = self.steps.partition_point(|step| step.due_ms <= due_ms);
        self.steps.insert(
            at,
            Step {
                due_ms,
                scenario,
                action,
            },
        );
    }

    fn add(
        &mut self,
        kind: ScenarioKind,
        markets: Vec<u32>,
        event: Option<u32>,
        at_ms: i64,
    ) -> usize {
        self.reserved.extend(markets.iter().copied());
        self.scenarios.push(Scenario {
            id: u32::try_from(self.scenarios.len() + 1).unwrap_or(u32::MAX),
            kind,
            markets,
            event,
            planned_ms: at_ms,
            started_ms: None,
            ended_ms: None,
            skipped: None,
            fills: Vec::new(),
            windows: Vec::new(),
            resting: None,
            base_price: None,
        });
        self.scenarios.len() - 1
    }
}

/// Scale-6 units of a price in engine units (1e-4).
fn price_micros(units: u32) -> i64 {
    i64::from(units) * 100
}

/// A taker fee per share at `price` (scale 6), rounded up: the market's base rate on the
/// notional (the signals service's reading, services/signals/src/arbitrage.rs).
fn fee_per_share(price: i64, bps: u32) -> i64 {
    (price * i64::from(bps) + 9_999) / 10_000
}

fn notional_micros(price_units: u32, size_micros: u64) -> i128 {
    i128::from(price_micros(price_units)) * i128::from(size_micros) / 1_000_000
}

/// A planted trade: the way is cleared at `price` (asks at or below it and bids at or above it
/// are cancelled, as a market maker requotes), `maker` offers `size` YES there and `taker` lifts
/// exactly that. One maker, one taker, both on the YES token; the market's fair price moves
/// to the trade.
fn planted_trade(
    book: &mut MarketBook,
    price: u32,
    size: u64,
    taker: u32,
    maker: u32,
) -> OpOutcome {
    let mut outcome = OpOutcome::default();
    book.cancel_through(BookSide::Ask, price, &mut outcome);
    book.cancel_through(BookSide::Bid, price, &mut outcome);
    book.place(BookSide::Ask, price, size, maker, 0, &mut outcome);
    book.take_exact(
        BookSide::Ask,
        price,
        size,
        Taker {
            wallet: taker,
            token: 0,
            side: Side::Buy,
        },
        &mut outcome,
    );
    book.fair = price;
    outcome
}

/// A taker and a maker from the pool the random flow draws from (wallets with a history).
fn known_wallets(rng: &mut ChaCha8Rng) -> (u32, u32) {
    (
        random_wallet(rng, WALLET_COUNT_PUBLIC),
        random_wallet(rng, WALLET_COUNT_PUBLIC),
    )
}

/// Whole shares worth at least `notional` (scale 6) at `price_units`.
fn shares_for(notional: i128, price_units: u32) -> u64 {
    let price = i128::from(price_micros(price_units).max(1));
    let shares = (notional + price - 1) / price;
    u64::try_from(shares.max(1)).unwrap_or(u64::MAX) * SIZE_MICROS_PER_SHARE
}

impl World {
    /// Runs the planting due at `ts_ms` (a new round, then every due step), each step as an
    /// operation of its own stamped `ts_ms`.
    pub(crate) fn run_due_plants(
        &mut self,
        live: &mut LiveState,
        ts_ms: i64,
        events: &mut Vec<Arc<WsEvent>>,
    ) {
        let Some(mut plants) = live.plants.take() else {
            return;
        };
        let next_round_ms = *plants
            .next_round_ms
            .get_or_insert(ts_ms + FIRST_ROUND_DELAY_MS);
        if ts_ms >= next_round_ms {
            self.plan_round(&mut plants, ts_ms);
            let every = plants.every_ms;
            plants.next_round_ms =
                Some(next_round_ms + every * ((ts_ms - next_round_ms) / every + 1));
        }
        while plants
            .steps
            .front()
            .is_some_and(|step| step.due_ms <= ts_ms)
        {
            let Some(step) = plants.steps.pop_front() else {
                break;
            };
            self.execute(&mut plants, live, step, ts_ms, events);
        }
        live.plants = Some(plants);
    }

    /// Markets a single-market scenario may use, with their books: open, the only market of
    /// their event, not negative-risk, not the busiest market, not in use.
    fn free_binary_markets<'a>(
        &'a self,
        plants: &'a Plants,
    ) -> impl Iterator<Item = (&'a MarketInfo, &'a MarketBook)> + 'a {
        self.markets
            .iter()
            .filter(|market| {
                market.index != 0
                    && !market.is_closed()
                    && !market.neg_risk
                    && !plants.reserved.contains(&market.index)
                    && self
                        .events
                        .get(market.event as usize)
                        .is_some_and(|event| event.markets.len() == 1)
            })
            .filter_map(|market| {
                self.books
                    .get(market.index as usize)
                    .map(|book| (market, book))
            })
    }

    /// Open binary markets a scenario may use: quoted both ways between 0.20 and 0.70 on the
    /// 0.01 tick, not the busiest market, not in use.
    fn binary_candidates(&self, plants: &Plants) -> Vec<u32> {
        self.free_binary_markets(plants)
            .filter(|(market, book)| {
                market.base_tick == 100
                    && book.tick == 100
                    && book.best_bid().is_some_and(|bid| bid >= 2_000)
                    && book.best_ask().is_some_and(|ask| ask <= 7_000)
            })
            .map(|(market, _)| market.index)
            .collect()
    }

    /// Markets a volume spike may use: open, in an event of one market, not negative-risk,
    /// quoted both ways with a spread of at most 0.02 and an ask between 0.05 and 0.90 (the
    /// burst takes one ask level per trade, up to eight: the ladder must reach that far below
    /// 0.99; the price it moves is reckoned like any other), not the busiest, not in use, warm
    /// at `at_ms` (see [`World::volume_spike_target`]), and with a target eight trades below
    /// the large-trade notional can reach. Wider than the binary candidates: few markets are
    /// warm (their YES token traded throughout the last hour), and a round must find one
    /// whatever the time of day.
    fn volume_candidates(&self, plants: &Plants, at_ms: i64) -> Vec<u32> {
        self.free_binary_markets(plants)
            .filter(|(_, book)| match (book.best_bid(), book.best_ask()) {
                (Some(bid), Some(ask)) => {
                    ask.saturating_sub(bid) <= 200 && (500..=9_000).contains(&ask)
                }
                _ => false,
            })
            .map(|(market, _)| market.index)
            .filter(|market| {
                self.volume_spike_target(*market, at_ms)
                    .is_some_and(|target| target <= MAX_VOLUME_BURST)
            })
            .collect()
    }

    fn pick(
        rng: &mut ChaCha8Rng,
        candidates: &mut Vec<u32>,
        wanted: impl Fn(u32) -> bool,
    ) -> Option<u32> {
        let eligible: Vec<usize> = (0..candidates.len())
            .filter(|position| wanted(candidates[*position]))
            .collect();
        if eligible.is_empty() {
            return None;
        }
        let position = eligible[rng.random_range(0..eligible.len())];
        Some(candidates.swap_remove(position))
    }

    /// Plans one round: every kind on markets of its own, steps seconds apart. The volume
    /// spike's market is chosen first: it is the scarcest (it must be warm).
    fn plan_round(&mut self, plants: &mut Plants, start_ms: i64) {
        let second = 1_000;
        let mut volume_candidates = self.volume_candidates(plants, start_ms);
        let volume_market = Self::pick(&mut plants.rng, &mut volume_candidates, |_| true);
        let mut candidates = self.binary_candidates(plants);
        candidates.retain(|market| Some(*market) != volume_market);

        if let Some(market) = Self::pick(&mut plants.rng, &mut candidates, |_| true) {
            let scenario = plants.add(ScenarioKind::Whale, vec![market], None, start_ms);
            let notional_usdc = plants.rng.random_range(12_500..17_500u64);
            plants.schedule(
                start_ms,
                scenario,
                Action::Whale {
                    market,
                    notional_usdc,
                },
            );
            plants.schedule(start_ms + second, scenario, Action::Release);
        }
        if let Some(market) = Self::pick(&mut plants.rng, &mut candidates, |_| true) {
            let scenario = plants.add(ScenarioKind::PriceMove, vec![market], None, start_ms);
            for step in 0..4u32 {
                let due = start_ms + 2 * second * (1 + i64::from(step));
                plants.schedule(due, scenario, Action::PriceStep { market, step });
            }
            plants.schedule(start_ms + 9 * second, scenario, Action::Release);
        }
        if let Some(market) = volume_market {
            let scenario = plants.add(ScenarioKind::VolumeSpike, vec![market], None, start_ms);
            // Every step inside one volume window: a burst that would straddle a window's end
            // starts just after it instead (at most the burst's length later).
            let window = thresholds::VOLUME_WINDOW_MS;
            let burst = |world: &World, first_ms: i64| {
                let target = world
                    .volume_spike_target(market, first_ms)
                    .unwrap_or(thresholds::VOLUME_MIN_NOTIONAL * 13 / 10);
                // Each trade below the large-trade notional (a whale is another scenario).
                let steps = ((target / VOLUME_STEP_MAX) + 1).clamp(4, 8);
                (target / steps + 1, steps)
            };
            let mut first_ms = start_ms + second;
            let (mut per_step, mut steps) = burst(self, first_ms);
            let span = i64::try_from(steps).unwrap_or(8) * 2 * second;
            if (first_ms + span).div_euclid(window) != first_ms.div_euclid(window) {
                first_ms = (first_ms.div_euclid(window) + 1) * window + second;
                (per_step, steps) = burst(self, first_ms);
            }
            for step in 0..steps {
                let due = first_ms + i64::try_from(step).unwrap_or(0) * 2 * second;
                plants.schedule(
                    due,
                    scenario,
                    Action::VolumeStep {
                        market,
                        notional: per_step,
                    },
                );
            }
            let last = first_ms + i64::try_from(steps).unwrap_or(0) * 2 * second;
            plants.schedule(last, scenario, Action::Release);
        }
        // (kind, seconds in, ticks through the bid, whether the market charges fees): open
        // for ten seconds each.
        for (kind, opens_after, ticks_through, with_fees) in [
            (ScenarioKind::BinaryWindow, 3, 3, false),
            (ScenarioKind::BinaryWindowWithFees, 4, 15, true),
        ] {
            let Some(market) = Self::pick(&mut plants.rng, &mut candidates, |market| {
                self.markets
                    .get(market as usize)
                    .is_some_and(|info| with_fees == (info.fees_enabled && info.fee_bps > 0))
            }) else {
                continue;
            };
            let scenario = plants.add(kind, vec![market], None, start_ms);
            let opens_ms = start_ms + opens_after * second;
            plants.schedule(
                opens_ms,
                scenario,
                Action::OpenBinary {
                    market,
                    ticks_through,
                },
            );
            plants.schedule(opens_ms + 10 * second, scenario, Action::CloseWindow);
            plants.schedule(opens_ms + 11 * second, scenario, Action::Release);
        }
        let events: Vec<u32> = self
            .events
            .iter()
            .filter(|event| event.neg_risk && event.neg_risk_market_id.is_some())
            .filter(|event| {
                event.markets.iter().all(|market| {
                    !plants.reserved.contains(market)
                        && self
                            .markets
                            .get(*market as usize)
                            .is_some_and(|info| !info.is_closed() && !info.fees_enabled)
                        && self.books.get(*market as usize).is_some_and(|book| {
                            book.best_bid().is_some() && book.best_ask().is_some()
                        })
                })
            })
            .map(|event| event.index)
            .collect();
        if !events.is_empty() {
            let event = events[plants.rng.random_range(0..events.len())];
            let legs = self.events[event as usize].markets.clone();
            let leg = legs
                .iter()
                .copied()
                .max_by_key(|market| self.books.get(*market as usize).map_or(0, |book| book.fair))
                .unwrap_or(legs[0]);
            let scenario = plants.add(ScenarioKind::NegRiskWindow, legs, Some(event), start_ms);
            plants.schedule(start_ms + 5 * second, scenario, Action::OpenNegRisk { leg });
            plants.schedule(start_ms + 15 * second, scenario, Action::CloseWindow);
            plants.schedule(start_ms + 16 * second, scenario, Action::Release);
        }
        tracing::info!(
            at_ms = start_ms,
            scenarios = plants.scenarios.len(),
            "planted a round of signal scenarios"
        );
    }

    fn best_ask_of(&self, market: u32) -> Option<u32> {
        self.books
            .get(market as usize)
            .and_then(MarketBook::best_ask)
    }

    /// A wallet no one has used: appended to the pool, never drawn by the random flow.
    fn fresh_wallet(&mut self, rng: &mut ChaCha8Rng) -> u32 {
        let index = u32::try_from(self.wallets.len()).unwrap_or(u32::MAX);
        self.wallets.push(Wallet {
            address: random_hex(rng, 40),
            name: String::new(),
            pseudonym: String::new(),
        });
        index
    }

    fn planted_trade_at(
        &mut self,
        live: &mut LiveState,
        scenario: &mut Scenario,
        (market, price, size): (u32, u32, u64),
        (taker, maker): (u32, u32),
        ts_ms: i64,
        events: &mut Vec<Arc<WsEvent>>,
    ) {
        let before = self.fills.len();
        self.publish_book_operation(live, market, ts_ms, events, |book, _| {
            planted_trade(book, price, size, taker, maker)
        });
        scenario
            .fills
            .extend((before..self.fills.len()).filter_map(|position| u32::try_from(position).ok()));
    }

    fn execute(
        &mut self,
        plants: &mut Plants,
        live: &mut LiveState,
        step: Step,
        ts_ms: i64,
        events: &mut Vec<Arc<WsEvent>>,
    ) {
        let Some(mut scenario) = plants.scenarios.get(step.scenario).cloned() else {
            return;
        };
        if scenario.skipped.is_some() && !matches!(step.action, Action::Release) {
            return;
        }
        scenario.started_ms.get_or_insert(ts_ms);
        match step.action {
            Action::Whale {
                market,
                notional_usdc,
            } => {
                let Some(price) = self.best_ask_of(market) else {
                    scenario.skipped = Some("no ask to lift".to_owned());
                    return self.store(plants, step.scenario, scenario);
                };
                let size = shares_for(i128::from(notional_usdc) * i128::from(ONE), price);
                let taker = self.fresh_wallet(&mut plants.rng);
                let maker = self.fresh_wallet(&mut plants.rng);
                self.planted_trade_at(
                    live,
                    &mut scenario,
                    (market, price, size),
                    (taker, maker),
                    ts_ms,
                    events,
                );
            }
            Action::PriceStep {
                market,
                step: number,
            } => {
                let base = match scenario.base_price {
                    Some(base) => base,
                    None => {
                        let Some(ask) = self.best_ask_of(market) else {
                            scenario.skipped = Some("no ask to start from".to_owned());
                            return self.store(plants, step.scenario, scenario);
                        };
                        scenario.base_price = Some(ask);
                        ask
                    }
                };
                let price = base + 400 * number;
                let size = 20 * SIZE_MICROS_PER_SHARE;
                let wallets = known_wallets(&mut plants.rng);
                self.planted_trade_at(
                    live,
                    &mut scenario,
                    (market, price, size),
                    wallets,
                    ts_ms,
                    events,
                );
            }
            Action::VolumeStep { market, notional } => {
                let Some(price) = self.best_ask_of(market) else {
                    return self.store(plants, step.scenario, scenario);
                };
                let size = shares_for(notional, price);
                let wallets = known_wallets(&mut plants.rng);
                self.planted_trade_at(
                    live,
                    &mut scenario,
                    (market, price, size),
                    wallets,
                    ts_ms,
                    events,
                );
            }
            Action::OpenBinary {
                market,
                ticks_through,
            } => {
                self.open_binary(
                    plants,
                    live,
                    &mut scenario,
                    (market, ticks_through),
                    ts_ms,
                    events,
                );
            }
            Action::OpenNegRisk { leg } => {
                self.open_neg_risk(plants, live, &mut scenario, leg, ts_ms, events);
            }
            Action::CloseWindow => {
                if let Some((market, price, wallet)) = scenario.resting.take() {
                    self.publish_book_operation(live, market, ts_ms, events, |book, _| {
                        let mut outcome = OpOutcome::default();
                        book.cancel_wallet_at(BookSide::Ask, price, wallet, &mut outcome);
                        outcome
                    });
                    for window in &mut scenario.windows {
                        window.closed_ms = Some(ts_ms);
                    }
                    // Opened and closed in one millisecond (operations too sparse for the
                    // steps' spacing): the books never showed it, and no one can see it.
                    scenario
                        .windows
                        .retain(|window| window.closed_ms != Some(window.opened_ms));
                }
            }
            Action::Release => {
                for market in &scenario.markets {
                    plants.reserved.remove(market);
                }
                scenario.ended_ms = Some(ts_ms);
            }
        }
        self.store(plants, step.scenario, scenario);
    }

    fn store(&self, plants: &mut Plants, index: usize, scenario: Scenario) {
        if let Some(slot) = plants.scenarios.get_mut(index) {
            *slot = scenario;
        }
    }

    /// A YES ask `ticks_through` ticks below the best YES bid: YES ask + NO ask < 1 (buying
    /// both) and YES bid + NO bid > 1 (selling both) at once.
    fn open_binary(
        &mut self,
        plants: &mut Plants,
        live: &mut LiveState,
        scenario: &mut Scenario,
        (market, ticks_through): (u32, u32),
        ts_ms: i64,
        events: &mut Vec<Arc<WsEvent>>,
    ) {
        let Some(book) = self.books.get(market as usize) else {
            return;
        };
        let tick = book.tick;
        let Some(bid) = book.best_bid() else {
            scenario.skipped = Some("no bid".to_owned());
            return;
        };
        let Some(price) = bid
            .checked_sub(ticks_through * tick)
            .filter(|price| *price >= tick)
        else {
            scenario.skipped = Some("the bid is too low".to_owned());
            return;
        };
        let size = 50 * SIZE_MICROS_PER_SHARE;
        let maker = random_wallet(&mut plants.rng, WALLET_COUNT_PUBLIC);
        self.publish_book_operation(live, market, ts_ms, events, |book, _| {
            let mut outcome = OpOutcome::default();
            // Resting below the bids on purpose: a crossed book is the window.
            book.place(BookSide::Ask, price, size, maker, 1, &mut outcome);
            outcome
        });
        scenario.resting = Some((market, price, maker));
        let (Some(book), Some(info)) = (
            self.books.get(market as usize),
            self.markets.get(market as usize),
        ) else {
            return;
        };
        let fee_bps = if info.fees_enabled { info.fee_bps } else { 0 };
        let ask = price_micros(price);
        let bid_micros = price_micros(bid);
        let ask_size = i64::try_from(book.total_at(BookSide::Ask, price)).unwrap_or(i64::MAX);
        let bid_size = i64::try_from(book.total_at(BookSide::Bid, bid)).unwrap_or(i64::MAX);
        let size = ask_size.min(bid_size);
        // Buying: YES at the ask, NO at 1 − the YES bid. Selling: YES at the bid, NO at
        // 1 − the YES ask.
        let buy = ONE
            - (ask + fee_per_share(ask, fee_bps))
            - ((ONE - bid_micros) + fee_per_share(ONE - bid_micros, fee_bps));
        let sell = (bid_micros - fee_per_share(bid_micros, fee_bps))
            + ((ONE - ask) - fee_per_share(ONE - ask, fee_bps))
            - ONE;
        for (direction, edge) in [("buy_every_leg", buy), ("sell_every_leg", sell)] {
            if edge < thresholds::ARBITRAGE_MIN_EDGE || size < thresholds::ARBITRAGE_MIN_SIZE {
                continue;
            }
            scenario.windows.push(Window {
                kind: SignalKind::BinaryArbitrage,
                subject: format!("{}:{direction}", info.condition_id),
                direction,
                opened_ms: ts_ms,
                closed_ms: None,
                edge,
                size,
                legs: 2,
            });
        }
    }

    /// An ask on `leg` that brings the event's best YES asks to 0.98 (its bids at or above it
    /// cancelled first, so its own book stays uncrossed).
    fn open_neg_risk(
        &mut self,
        plants: &mut Plants,
        live: &mut LiveState,
        scenario: &mut Scenario,
        leg: u32,
        ts_ms: i64,
        events: &mut Vec<Arc<WsEvent>>,
    ) {
        let mut others = 0u32;
        let mut thinnest = i64::MAX;
        for market in scenario.markets.iter().filter(|market| **market != leg) {
            let Some((ask, size)) = self.books.get(*market as usize).and_then(|book| {
                book.best_ask()
                    .map(|ask| (ask, book.total_at(BookSide::Ask, ask)))
            }) else {
                scenario.skipped = Some("a leg has no ask".to_owned());
                return;
            };
            others += ask;
            thinnest = thinnest.min(i64::try_from(size).unwrap_or(i64::MAX));
        }
        let Some(book) = self.books.get(leg as usize) else {
            return;
        };
        let tick = book.tick.max(1);
        let Some(price) = 9_800u32
            .checked_sub(others)
            .map(|room| room / tick * tick)
            .filter(|price| *price >= tick && book.best_ask().is_some_and(|ask| *price < ask))
        else {
            scenario.skipped = Some("no room below the other legs' asks".to_owned());
            return;
        };
        let size = 40 * SIZE_MICROS_PER_SHARE;
        let maker = random_wallet(&mut plants.rng, WALLET_COUNT_PUBLIC);
        self.publish_book_operation(live, leg, ts_ms, events, |book, _| {
            let mut outcome = OpOutcome::default();
            book.cancel_through(BookSide::Bid, price, &mut outcome);
            book.place(BookSide::Ask, price, size, maker, 0, &mut outcome);
            outcome
        });
        scenario.resting = Some((leg, price, maker));
        let Some(event) = scenario
            .event
            .and_then(|event| self.events.get(event as usize))
        else {
            return;
        };
        let edge = ONE - price_micros(price + others);
        let size = thinnest.min(i64::try_from(size).unwrap_or(i64::MAX));
        if edge >= thresholds::ARBITRAGE_MIN_EDGE && size >= thresholds::ARBITRAGE_MIN_SIZE {
            scenario.windows.push(Window {
                kind: SignalKind::NegRiskArbitrage,
                subject: format!(
                    "{}:buy_every_leg",
                    event.neg_risk_market_id.clone().unwrap_or_default()
                ),
                direction: "buy_every_leg",
                opened_ms: ts_ms,
                closed_ms: None,
                edge,
                size,
                legs: scenario.markets.len(),
            });
        }
    }

    /// A token's rows on the fill tape as the Data API serves them: (seconds-floored time,
    /// price in scale 6, notional in scale 6, tape position), in tape order.
    fn token_rows(&self, market: u32, token: u8) -> Vec<(i64, i64, i128, u32)> {
        self.fills_by_market
            .get(market as usize)
            .map(|positions| {
                positions
                    .iter()
                    .filter_map(|position| {
                        let fill = self.fills.get(*position as usize)?;
                        (fill.token == token).then(|| {
                            (
                                fill.ts_ms.div_euclid(1_000) * 1_000,
                                price_micros(fill.price),
                                notional_micros(fill.price, fill.size),
                                *position,
                            )
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The notional a market's YES token must still trade in the volume window of `at_ms` to
    /// spike there, with a margin; `None` when it cannot spike there (not warm: too little
    /// history, or forgotten after a quiet spell).
    fn volume_spike_target(&self, market: u32, at_ms: i64) -> Option<i128> {
        let rows = self.token_rows(market, 0);
        let window = thresholds::VOLUME_WINDOW_MS;
        let current = at_ms.div_euclid(window) * window;
        let mut first_seen: Option<i64> = None;
        let mut last_window = i64::MIN;
        let mut trailing_sum: i128 = 0;
        let mut so_far: i128 = 0;
        let horizon = window * (thresholds::VOLUME_TRAILING_WINDOWS + 1);
        for (at, _, notional, _) in &rows {
            let row_window = at.div_euclid(window) * window;
            if row_window > current {
                break;
            }
            if first_seen.is_none() || last_window < row_window - horizon {
                first_seen = Some(*at);
            }
            last_window = row_window;
            if row_window == current {
                so_far += notional;
            } else if row_window >= current - window * thresholds::VOLUME_TRAILING_WINDOWS {
                trailing_sum += notional;
            }
        }
        let first_window = first_seen?.div_euclid(window) * window;
        let warm = last_window >= current - horizon
            && current - first_window >= window * thresholds::VOLUME_TRAILING_WINDOWS;
        if !warm {
            return None;
        }
        let mean = trailing_sum / i128::from(thresholds::VOLUME_TRAILING_WINDOWS);
        let needed = (mean * thresholds::VOLUME_MULTIPLE).max(thresholds::VOLUME_MIN_NOTIONAL);
        Some((needed * 13 / 10 - so_far).max(needed / 10))
    }

    /// The signals the round's scenarios must raise, by the rules at the default thresholds.
    fn expected_signals(&self, scenario: &Scenario) -> Vec<Value> {
        let mut expected = Vec::new();
        let role = |planted: SignalKind| {
            let main = match scenario.kind {
                ScenarioKind::Whale => SignalKind::LargeTradeNewWallet,
                ScenarioKind::PriceMove => SignalKind::PriceMove,
                ScenarioKind::VolumeSpike => SignalKind::VolumeSpike,
                ScenarioKind::BinaryWindow | ScenarioKind::BinaryWindowWithFees => {
                    SignalKind::BinaryArbitrage
                }
                ScenarioKind::NegRiskWindow => SignalKind::NegRiskArbitrage,
            };
            if planted == main {
                "planted"
            } else {
                "implied"
            }
        };
        for window in &scenario.windows {
            let mut inputs = json!({
                "direction": window.direction,
                "max_edge": decimal(window.edge),
                "size_at_max_edge": decimal(window.size),
                "legs": window.legs.to_string(),
            });
            if let Some(closed) = window.closed_ms {
                inputs["duration_ms"] = json!((closed - window.opened_ms).to_string());
            }
            expected.push(json!({
                "kind": window.kind.name(),
                "role": role(window.kind),
                "subject": window.subject,
                "window_start_ms": window.opened_ms,
                "window_end_ms": window.closed_ms,
                "inputs": inputs,
            }));
        }
        let planted: HashSet<u32> = scenario.fills.iter().copied().collect();
        if planted.is_empty() {
            return expected;
        }
        for position in &scenario.fills {
            if let Some(signal) = self.large_trade_expected(*position) {
                expected.push(with_role(signal, role(SignalKind::LargeTradeNewWallet)));
            }
        }
        for market in &scenario.markets {
            let rows = self.token_rows(*market, 0);
            let token_id = self
                .markets
                .get(*market as usize)
                .map(|info| info.token_ids[0].clone())
                .unwrap_or_default();
            let is_planted = |position: u32| planted.contains(&position);
            for signal in price_moves_ending_in(&rows, &is_planted, &token_id) {
                expected.push(with_role(signal, role(SignalKind::PriceMove)));
            }
            for signal in volume_spikes_crossed_by(&rows, &is_planted, &token_id) {
                expected.push(with_role(signal, role(SignalKind::VolumeSpike)));
            }
        }
        expected
    }

    /// A large fill by a wallet that is new by its own history on the tape.
    fn large_trade_expected(&self, position: u32) -> Option<Value> {
        let fill = self.fills.get(position as usize)?;
        let notional = notional_micros(fill.price, fill.size);
        if notional < thresholds::LARGE_TRADE_NOTIONAL {
            return None;
        }
        let at = fill.ts_ms.div_euclid(1_000) * 1_000;
        let mut prior = 0u64;
        let mut first_ms: Option<i64> = None;
        for earlier in self.fills.iter().take(position as usize) {
            if earlier.wallet == fill.wallet {
                prior += 1;
                first_ms.get_or_insert(earlier.ts_ms.div_euclid(1_000) * 1_000);
            }
        }
        let young = first_ms.is_none_or(|first| at - first < thresholds::NEW_WALLET_AGE_MS);
        if !young && prior >= thresholds::NEW_WALLET_PRIOR_FILLS {
            return None;
        }
        let wallet = self.wallets.get(fill.wallet as usize)?;
        Some(json!({
            "kind": SignalKind::LargeTradeNewWallet.name(),
            "subject": wallet.address,
            "window_start_ms": at,
            "window_end_ms": at,
            "inputs": {
                "notional": decimal_wide(notional),
                "price": decimal(price_micros(fill.price)),
                "size": decimal(i64::try_from(fill.size).unwrap_or(i64::MAX)),
                "prior_fills": prior.to_string(),
            },
        }))
    }

    /// The signals the rest of the world raises by the same rules: every token's price moves
    /// and volume spikes, and every large fill of a new wallet, that no scenario planted.
    fn baseline_signals(&self, planted: &HashSet<u32>) -> Vec<Value> {
        let mut found = Vec::new();
        let not_planted = |position: u32| !planted.contains(&position);
        for market in &self.markets {
            for token in 0..2u8 {
                let rows = self.token_rows(market.index, token);
                let token_id = &market.token_ids[usize::from(token)];
                found.extend(price_moves_ending_in(&rows, &not_planted, token_id));
                found.extend(volume_spikes_crossed_by(&rows, &not_planted, token_id));
            }
        }
        // Large fills: rare, so each one's wallet history is looked up on its own.
        for (position, fill) in self.fills.iter().enumerate() {
            let Ok(position) = u32::try_from(position) else {
                break;
            };
            if planted.contains(&position)
                || notional_micros(fill.price, fill.size) < thresholds::LARGE_TRADE_NOTIONAL
            {
                continue;
            }
            found.extend(self.large_trade_expected(position));
        }
        found
            .into_iter()
            .map(|signal| with_role(signal, "baseline"))
            .collect()
    }

    /// `GET /_sim/truth/signals`: the scenarios planted so far and, for each one ended, the
    /// signals it must raise; and the signals the rest of the world raises (`baseline`).
    pub(crate) fn truth_signals(&self, live: &LiveState) -> Value {
        let Some(plants) = &live.plants else {
            return json!({"enabled": false, "scenarios": []});
        };
        let scenarios: Vec<Value> = plants
            .scenarios
            .iter()
            .map(|scenario| {
                let state = if scenario.skipped.is_some() {
                    "skipped"
                } else if scenario.ended_ms.is_some() {
                    "done"
                } else {
                    "running"
                };
                let expected = if state == "done" {
                    self.expected_signals(scenario)
                } else {
                    Vec::new()
                };
                let condition_ids: Vec<&str> = scenario
                    .markets
                    .iter()
                    .filter_map(|market| self.markets.get(*market as usize))
                    .map(|info| info.condition_id.as_str())
                    .collect();
                json!({
                    "id": scenario.id,
                    "kind": scenario.kind.name(),
                    "state": state,
                    "skipped": scenario.skipped,
                    "planned_ms": scenario.planned_ms,
                    "started_ms": scenario.started_ms,
                    "ended_ms": scenario.ended_ms,
                    "condition_ids": condition_ids,
                    "event_id": scenario.event.and_then(|event| self.events.get(event as usize)).map(|event| event.id.clone()),
                    "expected": expected,
                })
            })
            .collect();
        let planted: HashSet<u32> = plants
            .scenarios
            .iter()
            .flat_map(|scenario| scenario.fills.iter().copied())
            .collect();
        json!({
            "enabled": true,
            "baseline": self.baseline_signals(&planted),
            "thresholds": {
                "large_trade_notional": decimal_wide(thresholds::LARGE_TRADE_NOTIONAL),
                "new_wallet_age_ms": thresholds::NEW_WALLET_AGE_MS,
                "new_wallet_prior_fills": thresholds::NEW_WALLET_PRIOR_FILLS,
                "arbitrage_min_edge": decimal(thresholds::ARBITRAGE_MIN_EDGE),
                "arbitrage_min_size": decimal(thresholds::ARBITRAGE_MIN_SIZE),
                "price_move": decimal(thresholds::PRICE_MOVE),
                "price_move_window_ms": thresholds::PRICE_MOVE_WINDOW_MS,
                "price_move_cooldown_ms": thresholds::PRICE_MOVE_COOLDOWN_MS,
                "volume_window_ms": thresholds::VOLUME_WINDOW_MS,
                "volume_trailing_windows": thresholds::VOLUME_TRAILING_WINDOWS,
                "volume_multiple": thresholds::VOLUME_MULTIPLE.to_string(),
                "volume_min_notional": decimal_wide(thresholds::VOLUME_MIN_NOTIONAL),
            },
            "scenarios": scenarios,
        })
    }
}

fn with_role(mut signal: Value, role: &str) -> Value {
    signal["role"] = json!(role);
    signal
}

/// Scale-6 units as a decimal with six places, as the signals service writes its inputs
/// (the model's own conversion).
fn decimal(units: i64) -> String {
    micros_to_decimal(units).to_string()
}

fn decimal_wide(units: i128) -> String {
    units_to_decimal("expected input", units, 6)
        .map_or_else(|_| units.to_string(), |value| value.to_string())
}

/// Price moves of a token's last-trade price whose end is a planted fill: the rule applied to
/// the whole tape of the token (moves before the scenario set its cooldown).
fn price_moves_ending_in(
    rows: &[(i64, i64, i128, u32)],
    wanted: &dyn Fn(u32) -> bool,
    token_id: &str,
) -> Vec<Value> {
    let mut found = Vec::new();
    let mut points: VecDeque<(i64, i64)> = VecDeque::new();
    let mut quiet_until = 0i64;
    for (at, price, _, position) in rows {
        while points
            .front()
            .is_some_and(|(point_at, _)| *point_at < at - thresholds::PRICE_MOVE_WINDOW_MS)
        {
            points.pop_front();
        }
        // The earliest of the lowest and of the highest prices: where the move started.
        let low = points
            .iter()
            .copied()
            .min_by_key(|(point_at, point_price)| (*point_price, *point_at));
        let high = points
            .iter()
            .copied()
            .max_by_key(|(point_at, point_price)| (*point_price, -*point_at));
        points.push_back((*at, *price));
        if *at < quiet_until {
            continue;
        }
        let rise = low.filter(|(_, low)| price - low >= thresholds::PRICE_MOVE);
        let fall = high.filter(|(_, high)| high - price >= thresholds::PRICE_MOVE);
        let start = match (rise, fall) {
            (Some(low), Some(high)) => {
                if price - low.1 >= high.1 - price {
                    low
                } else {
                    high
                }
            }
            (Some(start), None) | (None, Some(start)) => start,
            (None, None) => continue,
        };
        quiet_until = at + thresholds::PRICE_MOVE_COOLDOWN_MS;
        if !wanted(*position) {
            continue;
        }
        found.push(json!({
            "kind": SignalKind::PriceMove.name(),
            "subject": token_id,
            "window_start_ms": start.0,
            "window_end_ms": at,
            "inputs": {
                "price_basis": "last_trade",
                "from_price": decimal(start.1),
                "to_price": decimal(*price),
                "move": decimal(price - start.1),
            },
        }));
    }
    found
}

/// Volume spikes of a token whose crossing fill is a planted one: the rule applied to the
/// whole tape of the token (tumbling UTC windows, the trailing mean over the windows before,
/// quiet ones as zero, warm-up, forgetting after a quiet spell, once per window).
fn volume_spikes_crossed_by(
    rows: &[(i64, i64, i128, u32)],
    wanted: &dyn Fn(u32) -> bool,
    token_id: &str,
) -> Vec<Value> {
    let window = thresholds::VOLUME_WINDOW_MS;
    let windows = thresholds::VOLUME_TRAILING_WINDOWS;
    let mut found = Vec::new();
    let mut first_seen = i64::MIN;
    let mut current = i64::MIN;
    let mut notional: i128 = 0;
    let mut fills: u64 = 0;
    let mut trailing: VecDeque<i128> = VecDeque::new();
    let mut fired: Option<i64> = None;
    for (at, _, row_notional, position) in rows {
        let row_window = at.div_euclid(window) * window;
        if current == i64::MIN || current < row_window - window * (windows + 1) {
            // First seen, or forgotten after a quiet spell longer than the trailing windows.
            first_seen = *at;
            current = row_window;
            notional = 0;
            fills = 0;
            trailing.clear();
            fired = None;
        }
        if row_window > current {
            let passed = (row_window - current) / window;
            trailing.push_back(notional);
            for _ in 0..(passed - 1).min(windows) {
                trailing.push_back(0);
            }
            while trailing.len() > windows as usize {
                trailing.pop_front();
            }
            current = row_window;
            notional = 0;
            fills = 0;
        }
        notional += row_notional;
        fills += 1;
        let first_window = first_seen.div_euclid(window) * window;
        let warm = trailing.len() == windows as usize && current - first_window >= window * windows;
        if !warm || fired == Some(current) {
            continue;
        }
        let sum: i128 = trailing.iter().sum();
        let above_mean = notional * i128::from(windows) >= thresholds::VOLUME_MULTIPLE * sum;
        if notional < thresholds::VOLUME_MIN_NOTIONAL || !above_mean {
            continue;
        }
        fired = Some(current);
        if !wanted(*position) {
            continue;
        }
        let mut inputs = json!({
            "trailing_mean": decimal_wide(sum / i128::from(windows)),
            "crossed_ms": at.to_string(),
        });
        // The Data API serves seconds: the order of a second's rows is the reader's, so the
        // notional and count at the crossing are known only when every row of the crossing
        // second is the same size.
        let same_second: Vec<i128> = rows
            .iter()
            .filter(|(row_at, ..)| row_at == at)
            .map(|(_, _, row_notional, _)| *row_notional)
            .collect();
        if same_second.iter().all(|other| other == row_notional) {
            inputs["notional"] = json!(decimal_wide(notional));
            inputs["fills"] = json!(fills.to_string());
        }
        found.push(json!({
            "kind": SignalKind::VolumeSpike.name(),
            "subject": token_id,
            "window_start_ms": current,
            "window_end_ms": current + window,
            "inputs": inputs,
        }));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::WorldParameters;

    /// The end-to-end run's world (seed 11, 300 markets, a day of history) at 16 times of day:
    /// every round finds a market for every kind. The volume spike once shared the binary
    /// candidates, of which one was warm, and lost it to the whale or the price move in about
    /// one run in five.
    #[test]
    fn a_round_finds_a_market_for_every_kind_at_any_time_of_day() {
        for step in 0..16i64 {
            let history_end_ms = 1_796_694_000_000 + step * 5_432_109;
            let mut world = World::generate(WorldParameters {
                seed: 11,
                markets: 300,
                history_days: 1,
                history_end_ms,
                identical_fill_every: 0,
            });
            let mut plants = Plants::new(11, 180_000);
            let start_ms = history_end_ms + FIRST_ROUND_DELAY_MS;
            let warm = world.volume_candidates(&plants, start_ms).len();
            assert!(
                warm >= 5,
                "{warm} warm markets for a volume spike at {history_end_ms}"
            );
            world.plan_round(&mut plants, start_ms);
            let kinds: Vec<ScenarioKind> = plants.scenarios.iter().map(|s| s.kind).collect();
            for kind in [
                ScenarioKind::Whale,
                ScenarioKind::PriceMove,
                ScenarioKind::VolumeSpike,
                ScenarioKind::BinaryWindow,
                ScenarioKind::BinaryWindowWithFees,
                ScenarioKind::NegRiskWindow,
            ] {
                assert!(
                    kinds.contains(&kind),
                    "no {} at {history_end_ms}: {kinds:?}",
                    kind.name()
                );
            }
        }
    }
}
