//! The seeded market world: wallets, events, markets, one order book per market, the fill
//! tape and the per-market log of every book change (from which the book at any instant is
//! rebuilt for `/_sim/truth/book`).
//!
//! Generation is deterministic for a given seed, market count, history length and history end:
//! every market draws from its own ChaCha8 stream, so the world is identical whether markets
//! are generated on one thread or several.

use std::collections::{BTreeMap, HashMap};

use polytape_model::Side;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::book::{BookSide, FlowProfile, MarketBook, OpOutcome, complement, flip_side};
use crate::fixed::PRICE_UNITS_PER_ONE;
use crate::ids::{random_bytes32, random_hex, random_token_id, slugify};

pub(crate) const DAY_MS: i64 = 86_400_000;
const WALLET_COUNT: u32 = 3_000;
/// Number of wallets in the pool (live operations draw from the same pool).
pub(crate) const WALLET_COUNT_PUBLIC: u32 = WALLET_COUNT;
const LAYOUT_STREAM: u64 = 1;
const WALLET_STREAM: u64 = 2;
/// Live operations draw from this stream; history streams start at `MARKET_STREAM_BASE`.
pub(crate) const LIVE_STREAM: u64 = 3;
/// Fair prices of negative-risk events (drawn after the layout, so ids do not move).
const COHERENCE_STREAM: u64 = 4;
/// Planted signal scenarios (tools/polymarket-sim/PLANTING.md).
pub(crate) const PLANT_STREAM: u64 = 5;
const MARKET_STREAM_BASE: u64 = 1_000;

/// Gamma's `version` field: absent on older rows, `"v1"` or `"v2"` on newer ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtocolVersion {
    V1Unlabelled,
    V1,
    V2,
}

#[derive(Debug, Clone)]
pub(crate) struct Wallet {
    pub(crate) address: String,
    pub(crate) name: String,
    pub(crate) pseudonym: String,
}

#[derive(Debug, Clone)]
pub(crate) struct MarketInfo {
    pub(crate) index: u32,
    pub(crate) gamma_id: String,
    pub(crate) condition_id: String,
    pub(crate) question_id: String,
    pub(crate) slug: String,
    pub(crate) question: String,
    pub(crate) description: String,
    pub(crate) outcomes: [String; 2],
    pub(crate) token_ids: [String; 2],
    pub(crate) version: ProtocolVersion,
    pub(crate) event: u32,
    pub(crate) neg_risk: bool,
    pub(crate) group_item_title: Option<String>,
    pub(crate) base_tick: u32,
    pub(crate) min_order_size: u64,
    pub(crate) fees_enabled: bool,
    pub(crate) fee_bps: u32,
    pub(crate) fee_rate: f64,
    pub(crate) fee_exponent: u32,
    pub(crate) rewards_daily_rate: Option<u32>,
    pub(crate) created_ms: i64,
    pub(crate) start_ms: i64,
    pub(crate) end_ms: i64,
    pub(crate) updated_ms: i64,
    /// Set when the market closes (resolved); live resolution sets it too.
    pub(crate) closed_ms: Option<i64>,
    pub(crate) winner: Option<u8>,
    pub(crate) activity: f64,
    pub(crate) profile: FlowProfile,
    pub(crate) initial_fair: u32,
    pub(crate) image: String,
}

impl MarketInfo {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed_ms.is_some()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct EventInfo {
    pub(crate) index: u32,
    pub(crate) id: String,
    pub(crate) slug: String,
    pub(crate) title: String,
    pub(crate) description: String,
    pub(crate) neg_risk: bool,
    pub(crate) neg_risk_market_id: Option<String>,
    pub(crate) markets: Vec<u32>,
    pub(crate) created_ms: i64,
    pub(crate) start_ms: i64,
    pub(crate) end_ms: i64,
    pub(crate) tag: (&'static str, &'static str, &'static str),
    pub(crate) series_slug: Option<String>,
    pub(crate) comment_count: u32,
    pub(crate) image: String,
}

/// One fill as the Data API tape shows it (a taker row or a maker row).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FillRecord {
    pub(crate) ts_ms: i64,
    pub(crate) market: u32,
    pub(crate) token: u8,
    pub(crate) side: Side,
    /// In the traded token's terms.
    pub(crate) price: u32,
    pub(crate) size: u64,
    pub(crate) wallet: u32,
    pub(crate) is_taker: bool,
    pub(crate) tx: u32,
}

/// One change of a market's book, in YES terms.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LogKind {
    Level {
        side: BookSide,
        price: u32,
        total: u64,
    },
    LastTrade(u32),
    Tick(u32),
    /// The market closed: no order book from here on.
    Closed,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct LogEntry {
    pub(crate) ts_ms: i64,
    pub(crate) kind: LogKind,
}

/// Cumulative taker notional of a market, for Gamma's volume fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VolumePoint {
    pub(crate) ts_ms: i64,
    /// Sum of float notionals (float artefacts included, as upstream's numbers have them).
    pub(crate) cumulative_float: f64,
    pub(crate) cumulative_micros: u128,
}

/// A book state rebuilt from the log.
#[derive(Debug, Clone)]
pub(crate) struct BookState {
    pub(crate) bids: BTreeMap<u32, u64>,
    pub(crate) asks: BTreeMap<u32, u64>,
    pub(crate) tick: u32,
    pub(crate) last_trade: u32,
    pub(crate) ts_ms: i64,
    pub(crate) closed: bool,
}

/// World parameters.
#[derive(Debug, Clone)]
pub(crate) struct WorldParameters {
    pub(crate) seed: u64,
    pub(crate) markets: u32,
    pub(crate) history_days: u32,
    pub(crate) history_end_ms: i64,
    /// Every Nth history fill has an identical twin in its transaction (same wallet, token,
    /// side, size and price): two trades upstream lists as two identical rows (0 = none).
    pub(crate) identical_fill_every: u64,
}

pub(crate) struct World {
    pub(crate) parameters: WorldParameters,
    pub(crate) history_start_ms: i64,
    pub(crate) wallets: Vec<Wallet>,
    pub(crate) events: Vec<EventInfo>,
    pub(crate) markets: Vec<MarketInfo>,
    pub(crate) books: Vec<MarketBook>,
    pub(crate) logs: Vec<Vec<LogEntry>>,
    pub(crate) fills: Vec<FillRecord>,
    pub(crate) fills_by_market: Vec<Vec<u32>>,
    pub(crate) tx_hashes: Vec<[u8; 32]>,
    pub(crate) volume: Vec<Vec<VolumePoint>>,
    pub(crate) token_lookup: HashMap<String, (u32, u8)>,
    pub(crate) condition_lookup: HashMap<String, u32>,
    pub(crate) gamma_lookup: HashMap<String, u32>,
    pub(crate) event_lookup: HashMap<String, u32>,
    /// Timestamp of the latest change anywhere (never before the history end): Gamma's
    /// rolling statistics and `interval=` windows are computed as of this instant, so a world
    /// without live activity answers byte-identically.
    pub(crate) world_clock_ms: i64,
}

const SUBJECTS: &[&str] = &[
    "Bitcoin",
    "Ethereum",
    "Solana",
    "the Fed",
    "NVIDIA",
    "Apple",
    "Tesla",
    "the S&P 500",
    "Gold",
    "Oil",
    "the ECB",
    "Taylor Swift",
    "SpaceX",
    "OpenAI",
    "the Lakers",
    "Real Madrid",
];
const PREDICATES: &[&str] = &[
    "reach a new all-time high",
    "close above its 50-day average",
    "announce a rate cut",
    "beat earnings estimates",
    "trend number one",
    "launch before the deadline",
    "win the next game",
    "be up more than 5%",
];
const CONTESTS: &[&str] = &[
    "the 2026 World Cup",
    "the Champions League",
    "the Mayor of Springfield election",
    "Best Picture",
    "the Eurovision Song Contest",
    "the NBA Finals",
    "Time Person of the Year",
];
const CANDIDATES: &[&str] = &[
    "Brazil",
    "France",
    "Argentina",
    "Spain",
    "England",
    "Germany",
    "Alice Moreau",
    "Bob Tan",
    "Carla Diaz",
    "Dmitri Volkov",
    "Emeka Obi",
    "Fatima Khan",
    "Other",
];
const TAGS: &[(&str, &str, &str)] = &[
    ("21", "Crypto", "crypto"),
    ("2", "Politics", "politics"),
    ("1", "Sports", "sports"),
    ("120", "Finance", "finance"),
    ("596", "Culture", "culture"),
];

fn market_rng(seed: u64, market: u32) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(MARKET_STREAM_BASE + u64::from(market));
    rng
}

/// A decimal fill drafted from an operation, before it gets a global position.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FillDraft {
    pub(crate) token: u8,
    pub(crate) side: Side,
    pub(crate) price: u32,
    pub(crate) size: u64,
    pub(crate) wallet: u32,
    pub(crate) is_taker: bool,
}

/// The Data API rows of one match: one taker row per price level, one maker row per
/// (maker wallet, maker token, level). Aggregating this way keeps every row's identity tuple
/// (tx, asset, side, size, price, wallet) unique within a transaction.
pub(crate) fn fill_drafts(outcome: &OpOutcome) -> Vec<FillDraft> {
    let Some(taker) = outcome.taker else {
        return Vec::new();
    };
    let taker_yes_side = if taker.token == 0 {
        taker.side
    } else {
        flip_side(taker.side)
    };
    let maker_yes_side = flip_side(taker_yes_side);
    let mut taker_rows: Vec<FillDraft> = Vec::new();
    let mut maker_rows: Vec<FillDraft> = Vec::new();
    for matched in &outcome.matches {
        let taker_price = if taker.token == 0 {
            matched.yes_price
        } else {
            complement(matched.yes_price)
        };
        match taker_rows.iter_mut().find(|row| row.price == taker_price) {
            Some(row) => row.size += matched.size,
            None => taker_rows.push(FillDraft {
                token: taker.token,
                side: taker.side,
                price: taker_price,
                size: matched.size,
                wallet: taker.wallet,
                is_taker: true,
            }),
        }
        let maker_side = if matched.origin_token == 0 {
            maker_yes_side
        } else {
            flip_side(maker_yes_side)
        };
        let maker_price = if matched.origin_token == 0 {
            matched.yes_price
        } else {
            complement(matched.yes_price)
        };
        match maker_rows.iter_mut().find(|row| {
            row.wallet == matched.wallet
                && row.token == matched.origin_token
                && row.price == maker_price
        }) {
            Some(row) => row.size += matched.size,
            None => maker_rows.push(FillDraft {
                token: matched.origin_token,
                side: maker_side,
                price: maker_price,
                size: matched.size,
                wallet: matched.wallet,
                is_taker: false,
            }),
        }
    }
    taker_rows.extend(maker_rows);
    taker_rows
}

/// Appends an operation's book changes to a market log and stamps the book.
pub(crate) fn log_outcome(
    book: &mut MarketBook,
    outcome: &OpOutcome,
    ts_ms: i64,
    log: &mut Vec<LogEntry>,
    last_trade_before: u32,
) {
    let mut changed = false;
    for change in &outcome.changes {
        log.push(LogEntry {
            ts_ms,
            kind: LogKind::Level {
                side: change.side,
                price: change.price,
                total: change.new_total,
            },
        });
        changed = true;
    }
    if book.last_trade != last_trade_before {
        log.push(LogEntry {
            ts_ms,
            kind: LogKind::LastTrade(book.last_trade),
        });
        changed = true;
    }
    if let Some((_, new_tick)) = outcome.tick_change {
        log.push(LogEntry {
            ts_ms,
            kind: LogKind::Tick(new_tick),
        });
        changed = true;
    }
    if changed {
        book.last_change_ms = ts_ms;
    }
}

struct MarketHistory {
    book: MarketBook,
    log: Vec<LogEntry>,
    fills: Vec<(i64, FillDraft, u32)>,
    tx_hashes: Vec<[u8; 32]>,
}

fn generate_market_history(
    seed: u64,
    market: &MarketInfo,
    history_start_ms: i64,
    history_end_ms: i64,
    history_days: u32,
) -> MarketHistory {
    let mut rng = market_rng(seed, market.index);
    let dynamic_tick = market.base_tick == 100;
    let mut book = MarketBook::new(market.base_tick, dynamic_tick, market.initial_fair);
    let mut log = Vec::new();
    let mut fills = Vec::new();
    let mut tx_hashes = Vec::new();
    let seed_ts = history_start_ms;
    log.push(LogEntry {
        ts_ms: seed_ts,
        kind: LogKind::Tick(book.tick),
    });
    let mut seeding = OpOutcome::default();
    book.seed_ladder(&mut rng, WALLET_COUNT, &mut seeding);
    log_outcome(&mut book, &seeding, seed_ts, &mut log, u32::MAX);
    let window_end = market
        .closed_ms
        .unwrap_or(history_end_ms)
        .min(history_end_ms);
    let window = window_end - history_start_ms;
    if window > 0 && history_days > 0 {
        let window_days = window as f64 / DAY_MS as f64;
        let operations = (market.activity * window_days).round() as i64;
        let slot = window as f64 / operations.max(1) as f64;
        for operation in 0..operations {
            let jitter: f64 = rng.random();
            let ts_ms = history_start_ms + 1 + ((operation as f64 + jitter) * slot) as i64;
            let ts_ms = ts_ms.min(window_end);
            let last_trade_before = book.last_trade;
            let outcome = book.random_operation(&mut rng, &market.profile, WALLET_COUNT);
            log_outcome(&mut book, &outcome, ts_ms, &mut log, last_trade_before);
            let drafts = fill_drafts(&outcome);
            if drafts.is_empty() {
                continue;
            }
            let tx = u32::try_from(tx_hashes.len()).unwrap_or(u32::MAX);
            tx_hashes.push(random_bytes32(&mut rng));
            for draft in drafts {
                fills.push((ts_ms, draft, tx));
            }
        }
    }
    if let Some(closed_ms) = market.closed_ms {
        let mut closing = OpOutcome::default();
        book.clear(&mut closing);
        let last_trade_before = book.last_trade;
        if let Some(winner) = market.winner {
            book.last_trade = if winner == 0 {
                PRICE_UNITS_PER_ONE - book.tick
            } else {
                book.tick
            };
        }
        log_outcome(&mut book, &closing, closed_ms, &mut log, last_trade_before);
        log.push(LogEntry {
            ts_ms: closed_ms,
            kind: LogKind::Closed,
        });
    }
    MarketHistory {
        book,
        log,
        fills,
        tx_hashes,
    }
}

impl World {
    /// Generates the world and its history.
    pub(crate) fn generate(parameters: WorldParameters) -> World {
        let history_end_ms = parameters.history_end_ms;
        let history_start_ms = history_end_ms - i64::from(parameters.history_days) * DAY_MS;
        let wallets = generate_wallets(parameters.seed);
        let (events, mut markets) = generate_layout(&parameters, history_start_ms);
        make_negative_risk_events_coherent(parameters.seed, &events, &mut markets);

        // Per-market histories are independent streams: generate them on all cores.
        let threads = std::thread::available_parallelism()
            .map(|count| count.get())
            .unwrap_or(1)
            .clamp(1, 4);
        let mut histories: Vec<Option<MarketHistory>> = (0..markets.len()).map(|_| None).collect();
        std::thread::scope(|scope| {
            let chunk = markets.len().div_ceil(threads).max(1);
            let mut handles = Vec::new();
            for (chunk_index, chunk_markets) in markets.chunks(chunk).enumerate() {
                let seed = parameters.seed;
                let days = parameters.history_days;
                handles.push((
                    chunk_index,
                    scope.spawn(move || {
                        chunk_markets
                            .iter()
                            .map(|market| {
                                generate_market_history(
                                    seed,
                                    market,
                                    history_start_ms,
                                    history_end_ms,
                                    days,
                                )
                            })
                            .collect::<Vec<_>>()
                    }),
                ));
            }
            for (chunk_index, handle) in handles {
                if let Ok(results) = handle.join() {
                    for (offset, history) in results.into_iter().enumerate() {
                        histories[chunk_index * chunk + offset] = Some(history);
                    }
                }
            }
        });

        let mut books = Vec::with_capacity(markets.len());
        let mut logs = Vec::with_capacity(markets.len());
        let mut tx_hashes = Vec::new();
        let mut pending_fills: Vec<(i64, u32, u32, FillDraft, u32)> = Vec::new();
        for (market_index, history) in histories.into_iter().enumerate() {
            let history = history.unwrap_or_else(|| {
                // A generator thread can only fail by panicking; regenerate inline so the world
                // is still complete and identical.
                generate_market_history(
                    parameters.seed,
                    &markets[market_index],
                    history_start_ms,
                    history_end_ms,
                    parameters.history_days,
                )
            });
            let tx_offset = u32::try_from(tx_hashes.len()).unwrap_or(u32::MAX);
            tx_hashes.extend(history.tx_hashes);
            let market_u32 = u32::try_from(market_index).unwrap_or(u32::MAX);
            for (local, (ts_ms, draft, tx)) in history.fills.into_iter().enumerate() {
                let local = u32::try_from(local).unwrap_or(u32::MAX);
                pending_fills.push((ts_ms, market_u32, local, draft, tx + tx_offset));
            }
            books.push(history.book);
            logs.push(history.log);
        }
        pending_fills.sort_by_key(|(ts_ms, market, local, _, _)| (*ts_ms, *market, *local));

        let mut world = World {
            parameters,
            history_start_ms,
            wallets,
            events,
            markets,
            books,
            logs,
            fills: Vec::with_capacity(pending_fills.len()),
            fills_by_market: Vec::new(),
            tx_hashes,
            volume: Vec::new(),
            token_lookup: HashMap::new(),
            condition_lookup: HashMap::new(),
            gamma_lookup: HashMap::new(),
            event_lookup: HashMap::new(),
            world_clock_ms: history_end_ms,
        };
        world.fills_by_market = vec![Vec::new(); world.markets.len()];
        world.volume = vec![Vec::new(); world.markets.len()];
        let twin_every = world.parameters.identical_fill_every;
        for (index, (ts_ms, market, _, draft, tx)) in pending_fills.into_iter().enumerate() {
            world.push_fill(ts_ms, market, draft, tx);
            if twin_every > 0 && (index as u64 + 1).is_multiple_of(twin_every) {
                world.push_fill(ts_ms, market, draft, tx);
            }
        }
        world.rebuild_lookups();
        world
    }

    pub(crate) fn rebuild_lookups(&mut self) {
        self.token_lookup.clear();
        self.condition_lookup.clear();
        self.gamma_lookup.clear();
        self.event_lookup.clear();
        for market in &self.markets {
            for (token, token_id) in market.token_ids.iter().enumerate() {
                self.token_lookup.insert(
                    token_id.clone(),
                    (market.index, u8::try_from(token).unwrap_or(0)),
                );
            }
            self.condition_lookup
                .insert(market.condition_id.clone(), market.index);
            self.gamma_lookup
                .insert(market.gamma_id.clone(), market.index);
        }
        for event in &self.events {
            self.event_lookup.insert(event.id.clone(), event.index);
        }
    }

    /// Appends a fill to the tape (fills arrive in time order).
    pub(crate) fn push_fill(&mut self, ts_ms: i64, market: u32, draft: FillDraft, tx: u32) -> u32 {
        let position = u32::try_from(self.fills.len()).unwrap_or(u32::MAX);
        self.fills.push(FillRecord {
            ts_ms,
            market,
            token: draft.token,
            side: draft.side,
            price: draft.price,
            size: draft.size,
            wallet: draft.wallet,
            is_taker: draft.is_taker,
            tx,
        });
        let market_index = market as usize;
        if let Some(positions) = self.fills_by_market.get_mut(market_index) {
            positions.push(position);
        }
        if draft.is_taker
            && let Some(points) = self.volume.get_mut(market_index)
        {
            let notional_micros =
                u128::from(draft.size) * u128::from(draft.price) / u128::from(PRICE_UNITS_PER_ONE);
            let notional_float =
                crate::fixed::size_float(draft.size) * crate::fixed::price_float(draft.price);
            let (previous_float, previous_micros) = points
                .last()
                .map(|point| (point.cumulative_float, point.cumulative_micros))
                .unwrap_or((0.0, 0));
            points.push(VolumePoint {
                ts_ms,
                cumulative_float: previous_float + notional_float,
                cumulative_micros: previous_micros + notional_micros,
            });
        }
        position
    }

    /// Taker volume of a market in `(from, to]`, as (float sum, exact micro-USDC).
    pub(crate) fn volume_between(&self, market: u32, from_ms: i64, to_ms: i64) -> (f64, u128) {
        let Some(points) = self.volume.get(market as usize) else {
            return (0.0, 0);
        };
        let cumulative_at = |ts_ms: i64| {
            let position = points.partition_point(|point| point.ts_ms <= ts_ms);
            if position == 0 {
                (0.0, 0)
            } else {
                (
                    points[position - 1].cumulative_float,
                    points[position - 1].cumulative_micros,
                )
            }
        };
        let (to_float, to_micros) = cumulative_at(to_ms);
        let (from_float, from_micros) = cumulative_at(from_ms);
        (to_float - from_float, to_micros - from_micros)
    }

    /// The book of a market as of `at_ms`, rebuilt from its log (None before the market's
    /// first book entry).
    pub(crate) fn book_state_at(&self, market: u32, at_ms: i64) -> Option<BookState> {
        let log = self.logs.get(market as usize)?;
        let end = log.partition_point(|entry| entry.ts_ms <= at_ms);
        if end == 0 {
            return None;
        }
        let info = self.markets.get(market as usize)?;
        let mut state = BookState {
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            tick: info.base_tick,
            last_trade: info.initial_fair,
            ts_ms: 0,
            closed: false,
        };
        for entry in &log[..end] {
            state.ts_ms = entry.ts_ms;
            match entry.kind {
                LogKind::Level { side, price, total } => {
                    let levels = match side {
                        BookSide::Bid => &mut state.bids,
                        BookSide::Ask => &mut state.asks,
                    };
                    if total == 0 {
                        levels.remove(&price);
                    } else {
                        levels.insert(price, total);
                    }
                }
                LogKind::LastTrade(price) => state.last_trade = price,
                LogKind::Tick(tick) => state.tick = tick,
                LogKind::Closed => state.closed = true,
            }
        }
        Some(state)
    }

    pub(crate) fn event_of(&self, market: &MarketInfo) -> Option<&EventInfo> {
        self.events.get(market.event as usize)
    }

    pub(crate) fn event_closed(&self, event: &EventInfo) -> bool {
        event.markets.iter().all(|market| {
            self.markets
                .get(*market as usize)
                .is_some_and(MarketInfo::is_closed)
        })
    }
}

fn generate_wallets(seed: u64) -> Vec<Wallet> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(WALLET_STREAM);
    const NAME_PARTS: &[&str] = &[
        "Sharp", "Willing", "Quiet", "Bold", "Lucky", "Grim", "Swift",
    ];
    const ANIMALS: &[&str] = &["Fox", "Minnow", "Otter", "Hawk", "Badger", "Heron", "Lynx"];
    (0..WALLET_COUNT)
        .map(|index| {
            let address = random_hex(&mut rng, 40);
            let named = rng.random_bool(0.15);
            let pseudonym = format!(
                "{}-{}",
                NAME_PARTS[rng.random_range(0..NAME_PARTS.len())],
                ANIMALS[rng.random_range(0..ANIMALS.len())]
            );
            Wallet {
                address,
                name: if named {
                    format!("trader{index}")
                } else {
                    String::new()
                },
                pseudonym: if named || rng.random_bool(0.5) {
                    pseudonym
                } else {
                    String::new()
                },
            }
        })
        .collect()
}

fn flow_profile(hot: bool, near_extreme: bool) -> FlowProfile {
    if near_extreme {
        return FlowProfile {
            place_probability: 0.5,
            cancel_probability: 0.3,
            drift_probability: 0.15,
        };
    }
    if hot {
        FlowProfile {
            place_probability: 0.45,
            cancel_probability: 0.27,
            drift_probability: 0.03,
        }
    } else {
        FlowProfile {
            place_probability: 0.5,
            cancel_probability: 0.33,
            drift_probability: 0.03,
        }
    }
}

fn generate_layout(
    parameters: &WorldParameters,
    history_start_ms: i64,
) -> (Vec<EventInfo>, Vec<MarketInfo>) {
    let mut rng = ChaCha8Rng::seed_from_u64(parameters.seed);
    rng.set_stream(LAYOUT_STREAM);
    let history_end_ms = parameters.history_end_ms;
    let total = parameters.markets;
    let mut events: Vec<EventInfo> = Vec::new();
    let mut markets: Vec<MarketInfo> = Vec::new();
    let mut next_gamma_id: u64 = 1_000_000 + rng.random_range(0..50_000u64);
    let mut next_event_id: u64 = 100_000 + rng.random_range(0..20_000u64);
    while (markets.len() as u32) < total {
        let remaining = total - markets.len() as u32;
        let first = markets.is_empty();
        // The first event is a single, very busy crypto up/down market: it must carry more than
        // 10,000 taker fills in three days so collectors prove they walk past the Data API's
        // 10,000-offset cap.
        let neg_risk = !first && remaining >= 3 && rng.random_bool(0.35);
        let market_count = if neg_risk {
            rng.random_range(3..=6u32).min(remaining)
        } else {
            1
        };
        let event_index = events.len() as u32;
        let event_id = next_event_id.to_string();
        next_event_id += rng.random_range(1..40u64);
        let tag = if first {
            TAGS[0]
        } else {
            TAGS[rng.random_range(0..TAGS.len())]
        };
        let created_ms =
            history_start_ms - rng.random_range(1..60i64) * DAY_MS - rng.random_range(0..DAY_MS);
        // About a fifth of events are already resolved; with history they close inside the
        // window, so their fills are part of the backfill.
        let closed = !first && rng.random_bool(0.2);
        let closed_ms = closed.then(|| {
            if parameters.history_days == 0 {
                history_end_ms - rng.random_range(1..10i64) * DAY_MS
            } else {
                let span = history_end_ms - history_start_ms;
                history_start_ms + span / 3 + rng.random_range(0..(span / 2).max(1))
            }
        });
        let end_ms = closed_ms.unwrap_or(history_end_ms + rng.random_range(1..90i64) * DAY_MS);
        let (title, contest) = if first {
            ("Bitcoin Up or Down - hourly".to_owned(), String::new())
        } else if neg_risk {
            let contest = CONTESTS[rng.random_range(0..CONTESTS.len())].to_owned();
            (format!("Who will win {contest}?"), contest)
        } else {
            let subject = SUBJECTS[rng.random_range(0..SUBJECTS.len())];
            let predicate = PREDICATES[rng.random_range(0..PREDICATES.len())];
            (format!("Will {subject} {predicate}?"), String::new())
        };
        let slug = format!("{}-{}", slugify(&title), event_id);
        let neg_risk_market_id = neg_risk.then(|| random_hex(&mut rng, 64));
        let winner_market = closed.then(|| rng.random_range(0..market_count));
        let mut event = EventInfo {
            index: event_index,
            id: event_id,
            slug: slug.clone(),
            title: title.clone(),
            description: format!("This event is about: {title}"),
            neg_risk,
            neg_risk_market_id: neg_risk_market_id.clone(),
            markets: Vec::new(),
            created_ms,
            start_ms: created_ms + 600_000,
            end_ms,
            tag,
            series_slug: first.then(|| "btc-up-or-down-hourly".to_owned()),
            comment_count: rng.random_range(0..200),
            image: format!(
                "https://polymarket-upload.s3.us-east-2.amazonaws.com/{}.png",
                slugify(tag.1)
            ),
        };
        for position in 0..market_count {
            let index = markets.len() as u32;
            let gamma_id = next_gamma_id.to_string();
            next_gamma_id += rng.random_range(1..30u64);
            let (question, outcomes, group_item_title) = if first {
                (
                    "Bitcoin Up or Down - hourly, 12PM ET".to_owned(),
                    ["Up".to_owned(), "Down".to_owned()],
                    None,
                )
            } else if neg_risk {
                let candidate = CANDIDATES[(position as usize
                    + rng.random_range(0..CANDIDATES.len()))
                    % CANDIDATES.len()];
                (
                    format!("Will {candidate} win {contest}?"),
                    ["Yes".to_owned(), "No".to_owned()],
                    Some(candidate.to_owned()),
                )
            } else {
                (title.clone(), ["Yes".to_owned(), "No".to_owned()], None)
            };
            let version = if first {
                ProtocolVersion::V1
            } else {
                match rng.random_range(0..4u32) {
                    0 => ProtocolVersion::V2,
                    1 => ProtocolVersion::V1Unlabelled,
                    _ => ProtocolVersion::V1,
                }
            };
            let base_tick = if first {
                100
            } else {
                match rng.random_range(0..10u32) {
                    0..=6 => 100,
                    7 | 8 => 10,
                    _ => 25,
                }
            };
            let fees_enabled = first || rng.random_bool(0.3);
            // Some markets trade around 0.96 / 0.04, where upstream switches the tick size, so
            // `tick_size_change` events occur regularly.
            let extreme_start =
                !first && base_tick == 100 && (index % 8 == 3 || rng.random_bool(0.08));
            let initial_fair = if extreme_start {
                if rng.random_bool(0.5) { 9_600 } else { 400 }
            } else {
                round_to_grid(rng.random_range(1_000..9_000u32), base_tick)
            };
            // Activity: a Zipf-like spread of operations per day, the first market far busiest.
            let rank = f64::from(index.max(1));
            let activity = if first {
                20_000.0
            } else {
                40.0 + 2_500.0 / rank.powf(0.7)
            };
            let winner = winner_market.map(|winner_position| {
                if neg_risk {
                    if winner_position == position { 0 } else { 1 }
                } else {
                    rng.random_range(0..2u8)
                }
            });
            let market_created = created_ms + i64::from(position) * 1_000;
            markets.push(MarketInfo {
                index,
                gamma_id,
                condition_id: random_hex(&mut rng, 64),
                question_id: random_hex(&mut rng, 64),
                slug: format!("{}-{}", slugify(&question), index),
                description: format!(
                    "This market will resolve to \"{}\" if {}. Otherwise it resolves to \"{}\".",
                    outcomes[0],
                    question.trim_end_matches('?').to_lowercase(),
                    outcomes[1]
                ),
                question,
                outcomes,
                token_ids: [random_token_id(&mut rng), random_token_id(&mut rng)],
                version,
                event: event_index,
                neg_risk,
                group_item_title,
                base_tick,
                min_order_size: if rng.random_bool(0.8) { 5 } else { 15 },
                fees_enabled,
                fee_bps: if fees_enabled { 1000 } else { 0 },
                fee_rate: if fees_enabled {
                    0.02 * f64::from(rng.random_range(1..=3u32))
                } else {
                    0.0
                },
                fee_exponent: rng.random_range(1..=2),
                rewards_daily_rate: rng
                    .random_bool(0.3)
                    .then(|| rng.random_range(1..50u32) * 10),
                created_ms: market_created,
                start_ms: market_created + 300_000,
                end_ms,
                updated_ms: closed_ms.unwrap_or(history_end_ms),
                closed_ms,
                winner,
                activity,
                profile: flow_profile(first, extreme_start),
                initial_fair,
                image: event.image.clone(),
            });
            event.markets.push(index);
        }
        events.push(event);
    }
    (events, markets)
}

/// Upstream's negative-risk events are priced coherently: exactly one outcome wins, so the
/// fair prices of an event's YES tokens add up to 1. Independent fairs (as drawn by the
/// layout) made the sum of best asks fall below 1 for long stretches, a baseline world full of
/// arbitrage no market maker would leave there. Each event's fairs are drawn from a flat
/// Dirichlet on the 0.01 grid (every leg at least 0.02; the rounding residue goes to the
/// largest leg, so the sum is exactly 1), and its legs do not drift: every bid then stays below
/// its fair and every ask above it, so the best asks add up to more than 1 and the best bids to
/// less, at every instant. Arbitrage appears only where a scenario plants it.
fn make_negative_risk_events_coherent(seed: u64, events: &[EventInfo], markets: &mut [MarketInfo]) {
    const GRID: u32 = 100;
    const LEAST: u32 = 2 * GRID;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(COHERENCE_STREAM);
    let near_extreme = flow_profile(false, true);
    // Legs that were to trade near 0.04 / 0.96 (where upstream switches the tick size) lose
    // that here; as many binary markets take it over, so tick size changes stay as common.
    let mut extremes_owed = 0usize;
    for event in events.iter().filter(|event| event.neg_risk) {
        let legs = event.markets.len();
        if legs == 0 || legs as u32 * LEAST > PRICE_UNITS_PER_ONE {
            continue;
        }
        // A flat Dirichlet: normalised unit exponentials.
        let draws: Vec<f64> = (0..legs)
            .map(|_| -(1.0 - rng.random::<f64>()).ln())
            .collect();
        let total: f64 = draws.iter().sum();
        let mut fairs: Vec<u32> = draws
            .iter()
            .map(|draw| {
                let units = (draw / total * f64::from(PRICE_UNITS_PER_ONE)) as u32;
                crate::book::round_to_tick(units, GRID).max(LEAST)
            })
            .collect();
        let sum: u32 = fairs.iter().sum();
        let largest = (0..legs).max_by_key(|leg| fairs[*leg]).unwrap_or(0);
        fairs[largest] = (fairs[largest] + PRICE_UNITS_PER_ONE).saturating_sub(sum);
        for (market_index, fair) in event.markets.iter().zip(fairs) {
            if let Some(market) = markets.get_mut(*market_index as usize) {
                if market.profile.drift_probability == near_extreme.drift_probability {
                    extremes_owed += 1;
                }
                market.initial_fair = fair;
                market.profile.drift_probability = 0.0;
            }
        }
    }
    for market in markets.iter_mut() {
        if extremes_owed == 0 {
            break;
        }
        let binary_and_calm = market.index != 0
            && market.closed_ms.is_none()
            && !market.neg_risk
            && market.base_tick == 100
            && market.profile.drift_probability != near_extreme.drift_probability;
        if binary_and_calm {
            market.initial_fair = if rng.random_bool(0.5) { 9_600 } else { 400 };
            market.profile = near_extreme;
            extremes_owed -= 1;
        }
    }
}

fn round_to_grid(price: u32, tick: u32) -> u32 {
    crate::book::round_to_tick(price, tick).max(tick)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters(days: u32) -> WorldParameters {
        WorldParameters {
            seed: 7,
            markets: 40,
            history_days: days,
            history_end_ms: 1_780_000_000_000,
            identical_fill_every: 0,
        }
    }

    #[test]
    fn the_busy_market_passes_the_data_api_offset_cap_in_three_days() {
        let world = World::generate(parameters(3));
        let taker_fills = world.fills_by_market[0]
            .iter()
            .filter(|position| world.fills[**position as usize].is_taker)
            .count();
        assert!(taker_fills > 10_000, "{taker_fills}");
    }

    #[test]
    fn the_log_rebuilds_the_engine_book() {
        let world = World::generate(parameters(1));
        for market in &world.markets {
            let state = world.book_state_at(market.index, i64::MAX).unwrap();
            let book = &world.books[market.index as usize];
            assert_eq!(state.closed, market.is_closed());
            let bids: Vec<(u32, u64)> = state.bids.into_iter().collect();
            let engine_bids: Vec<(u32, u64)> = book.levels(BookSide::Bid).collect();
            assert_eq!(bids, engine_bids);
            assert_eq!(state.tick, book.tick);
            assert_eq!(state.last_trade, book.last_trade);
            assert_eq!(state.ts_ms, book.last_change_ms);
        }
    }

    #[test]
    fn negative_risk_events_never_offer_arbitrage_of_their_own() {
        let world = World::generate(WorldParameters {
            markets: 200,
            ..parameters(2)
        });
        let mut judged = 0;
        for event in world.events.iter().filter(|event| event.neg_risk) {
            let fairs: u32 = event
                .markets
                .iter()
                .map(|market| world.markets[*market as usize].initial_fair)
                .sum();
            assert_eq!(fairs, PRICE_UNITS_PER_ONE, "event {}", event.id);
            // Every ten minutes of history, while every leg is open and quoted both ways.
            let mut at_ms = world.history_start_ms;
            while at_ms <= world.parameters.history_end_ms {
                at_ms += 600_000;
                let states: Option<Vec<BookState>> = event
                    .markets
                    .iter()
                    .map(|market| world.book_state_at(*market, at_ms))
                    .collect();
                let Some(states) = states else { continue };
                let quoted = states
                    .iter()
                    .all(|state| !state.closed && !state.bids.is_empty() && !state.asks.is_empty());
                if !quoted {
                    continue;
                }
                let asks: u32 = states.iter().filter_map(|s| s.asks.keys().next()).sum();
                let bids: u32 = states
                    .iter()
                    .filter_map(|s| s.bids.keys().next_back())
                    .sum();
                assert!(
                    asks > PRICE_UNITS_PER_ONE,
                    "event {} at {at_ms}: asks {asks}",
                    event.id
                );
                assert!(
                    bids < PRICE_UNITS_PER_ONE,
                    "event {} at {at_ms}: bids {bids}",
                    event.id
                );
                judged += 1;
            }
        }
        assert!(judged > 100, "only {judged} instants judged");
    }

    #[test]
    fn generation_is_deterministic() {
        let first = World::generate(parameters(1));
        let second = World::generate(parameters(1));
        assert_eq!(first.fills.len(), second.fills.len());
        assert_eq!(first.tx_hashes, second.tx_hashes);
        assert_eq!(first.markets[3].token_ids, second.markets[3].token_ids);
    }
}
