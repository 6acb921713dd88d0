//! The live world: operations applied after the history window, turned into the market
//! channel's WebSocket events, recorded per token as ground truth and broadcast to
//! connections.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use polytape_model::Side;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::book::{BookSide, MarketBook, OpOutcome, complement};
use crate::booksnap::{TokenBook, token_best_prices, token_book_from_engine};
use crate::fixed::{price_text, price_text_without_leading_zero, size_text};
use crate::ids::{random_bytes32, random_hex, random_token_id};
use crate::world::{
    EventInfo, LIVE_STREAM, LogEntry, LogKind, MarketInfo, ProtocolVersion, World, fill_drafts,
    log_outcome,
};

/// Who receives a WebSocket event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    /// Subscribers of the market's tokens (bit 0 YES, bit 1 NO).
    Tokens(u8),
    /// Subscribers of the market's tokens that enabled custom features.
    CustomTokens(u8),
    /// Every connection with custom features (`new_market`).
    AllCustom,
}

/// One market-channel event, serialised once.
#[derive(Debug)]
pub(crate) struct WsEvent {
    /// Global, gap-free sequence (the simulator's own; upstream has none on the wire).
    pub(crate) seq: u64,
    pub(crate) market: u32,
    pub(crate) event_type: &'static str,
    pub(crate) audience: Audience,
    pub(crate) json: String,
    /// For `price_change`: byte ranges of the YES and the NO entry inside `json`, so the
    /// message a subscriber of only one token receives (the other entry left out) can be cut
    /// out of the full text without storing it twice.
    pub(crate) entry_ranges: Option<[(usize, usize); 2]>,
}

impl WsEvent {
    /// The JSON a connection receives given which of the market's tokens it subscribes.
    pub(crate) fn json_for(&self, subscribed_mask: u8) -> Cow<'_, str> {
        let (Some(ranges), 1 | 2) = (self.entry_ranges, subscribed_mask) else {
            return Cow::Borrowed(&self.json);
        };
        let keep = if subscribed_mask == 1 {
            ranges[0]
        } else {
            ranges[1]
        };
        let entries_start = ranges[0].0;
        let entries_end = ranges[1].1;
        let (Some(prefix), Some(entry), Some(suffix)) = (
            self.json.get(..entries_start),
            self.json.get(keep.0..keep.1),
            self.json.get(entries_end..),
        ) else {
            return Cow::Borrowed(&self.json);
        };
        Cow::Owned(format!("{prefix}{entry}{suffix}"))
    }
}

pub(crate) type WsBatch = Arc<Vec<Arc<WsEvent>>>;

/// Live state kept inside the world lock.
pub(crate) struct LiveState {
    rng: ChaCha8Rng,
    pub(crate) operations_done: u64,
    pub(crate) last_ws_seq: u64,
    /// Cumulative activity weights of open markets, for weighted market choice.
    sampler: Vec<(f64, u32)>,
    pub(crate) lifecycle_every: u64,
    /// Every event broadcast, in order; the oldest are dropped past the capacity.
    pub(crate) ws_truth: VecDeque<Arc<WsEvent>>,
    pub(crate) ws_truth_dropped: u64,
    pub(crate) ws_truth_capacity: usize,
    /// Planted signal scenarios (`--scenarios live`).
    pub(crate) plants: Option<crate::plant::Plants>,
}

impl LiveState {
    pub(crate) fn new(
        seed: u64,
        lifecycle_every: u64,
        ws_truth_capacity: usize,
        scenario_every_ms: Option<i64>,
    ) -> LiveState {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(LIVE_STREAM);
        LiveState {
            rng,
            operations_done: 0,
            last_ws_seq: 0,
            sampler: Vec::new(),
            lifecycle_every,
            ws_truth: VecDeque::new(),
            ws_truth_dropped: 0,
            ws_truth_capacity,
            plants: scenario_every_ms.map(|every_ms| crate::plant::Plants::new(seed, every_ms)),
        }
    }
}

fn price_for_wire(units: u32, drop_leading_zero: bool) -> String {
    if drop_leading_zero {
        price_text_without_leading_zero(units)
    } else {
        price_text(units)
    }
}

fn best_texts(best: (Option<u32>, Option<u32>), drop_leading_zero: bool) -> (String, String) {
    // Upstream shows an empty bid side as "0" and an empty ask side as "1".
    let bid = best.0.map_or_else(
        || "0".to_owned(),
        |price| price_for_wire(price, drop_leading_zero),
    );
    let ask = best.1.map_or_else(
        || "1".to_owned(),
        |price| price_for_wire(price, drop_leading_zero),
    );
    (bid, ask)
}

fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// Renders a `book` event for one token (levels in upstream order: bids ascending, asks
/// descending), with the optional summary fields newer SDKs read.
pub(crate) fn book_event_json(token_book: &TokenBook<'_>, drop_leading_zero: bool) -> String {
    let levels = |levels: &[(u32, u64)]| {
        let items: Vec<String> = levels
            .iter()
            .map(|(price, size)| {
                format!(
                    "{{\"price\":\"{}\",\"size\":\"{}\"}}",
                    price_for_wire(*price, drop_leading_zero),
                    size_text(*size)
                )
            })
            .collect();
        format!("[{}]", items.join(","))
    };
    format!(
        "{{\"event_type\":\"book\",\"asset_id\":\"{}\",\"market\":\"{}\",\"bids\":{},\"asks\":{},\"timestamp\":\"{}\",\"hash\":\"{}\",\"min_order_size\":\"{}\",\"tick_size\":\"{}\",\"neg_risk\":{},\"last_trade_price\":\"{}\"}}",
        token_book.asset_id,
        token_book.market,
        levels(&token_book.bids),
        levels(&token_book.asks),
        token_book.timestamp_ms,
        token_book.hash(),
        token_book.min_order_size,
        price_text(token_book.tick),
        token_book.neg_risk,
        price_text(token_book.last_trade_price),
    )
}

/// The market object carried by `new_market` and `market_resolved`.
fn market_message_json(
    market: &MarketInfo,
    event: Option<&EventInfo>,
    event_type: &str,
    ts_ms: i64,
) -> String {
    let mut object = serde_json::json!({
        "id": market.gamma_id,
        "question": market.question,
        "market": market.condition_id,
        "slug": market.slug,
        "description": market.description,
        "assets_ids": market.token_ids,
        "outcomes": market.outcomes,
        "timestamp": ts_ms.to_string(),
        "event_type": event_type,
    });
    if let Some(event) = event {
        object["event_message"] = serde_json::json!({
            "id": event.id,
            "ticker": event.slug,
            "slug": event.slug,
            "title": event.title,
            "description": event.description,
        });
    }
    if event_type == "market_resolved"
        && let Some(winner) = market.winner
    {
        object["winning_asset_id"] =
            serde_json::Value::String(market.token_ids[usize::from(winner)].clone());
        object["winning_outcome"] =
            serde_json::Value::String(market.outcomes[usize::from(winner)].clone());
    }
    object.to_string()
}

impl World {
    pub(crate) fn rebuild_sampler(&mut self, live: &mut LiveState) {
        live.sampler.clear();
        let mut cumulative = 0.0;
        for market in &self.markets {
            if market.is_closed() {
                continue;
            }
            cumulative += market.activity;
            live.sampler.push((cumulative, market.index));
        }
    }

    fn pick_live_market(&self, live: &mut LiveState) -> Option<u32> {
        let total = live.sampler.last()?.0;
        let target = live.rng.random::<f64>() * total;
        let position = live
            .sampler
            .partition_point(|(cumulative, _)| *cumulative <= target);
        live.sampler
            .get(position.min(live.sampler.len() - 1))
            .map(|(_, market)| *market)
    }

    fn next_event(
        live: &mut LiveState,
        market: u32,
        event_type: &'static str,
        audience: Audience,
        json: String,
        entry_ranges: Option<[(usize, usize); 2]>,
    ) -> Arc<WsEvent> {
        live.last_ws_seq += 1;
        let event = Arc::new(WsEvent {
            seq: live.last_ws_seq,
            market,
            event_type,
            audience,
            json,
            entry_ranges,
        });
        if live.ws_truth.len() >= live.ws_truth_capacity.max(1) {
            live.ws_truth.pop_front();
            live.ws_truth_dropped += 1;
        }
        live.ws_truth.push_back(Arc::clone(&event));
        event
    }

    /// Applies `count` live operations; operation `k` (counted since live start) is stamped
    /// `timestamp_of(k)`. Returns the WebSocket events in order.
    pub(crate) fn run_live_operations(
        &mut self,
        live: &mut LiveState,
        count: u64,
        timestamp_of: &dyn Fn(u64) -> i64,
    ) -> Vec<Arc<WsEvent>> {
        let mut events = Vec::new();
        for _ in 0..count {
            let operation = live.operations_done;
            live.operations_done += 1;
            let ts_ms = timestamp_of(operation).max(self.world_clock_ms);
            self.world_clock_ms = ts_ms;
            if live.lifecycle_every > 0
                && operation > 0
                && operation.is_multiple_of(live.lifecycle_every)
            {
                self.lifecycle_step(live, ts_ms, operation / live.lifecycle_every, &mut events);
                continue;
            }
            self.run_due_plants(live, ts_ms, &mut events);
            let Some(market) = self.pick_live_market(live) else {
                continue;
            };
            // A scenario's markets move only as it plants.
            if live
                .plants
                .as_ref()
                .is_some_and(|plants| plants.reserved.contains(&market))
            {
                continue;
            }
            self.live_book_operation(live, market, ts_ms, &mut events);
        }
        events
    }

    fn live_book_operation(
        &mut self,
        live: &mut LiveState,
        market: u32,
        ts_ms: i64,
        events: &mut Vec<Arc<WsEvent>>,
    ) {
        let Some(profile) = self.markets.get(market as usize).map(|info| info.profile) else {
            return;
        };
        self.publish_book_operation(live, market, ts_ms, events, |book, rng| {
            book.random_operation(rng, &profile, crate::world::WALLET_COUNT_PUBLIC)
        });
    }

    /// Applies one operation to a market's book (`operate`, random or planted), records it
    /// (log, fills) and turns it into the market channel's events, as upstream sends them.
    pub(crate) fn publish_book_operation(
        &mut self,
        live: &mut LiveState,
        market: u32,
        ts_ms: i64,
        events: &mut Vec<Arc<WsEvent>>,
        operate: impl FnOnce(&mut MarketBook, &mut ChaCha8Rng) -> OpOutcome,
    ) {
        let market_index = market as usize;
        let Some(info) = self.markets.get(market_index) else {
            return;
        };
        let condition_id = info.condition_id.clone();
        let token_ids = info.token_ids.clone();
        let min_order_size = info.min_order_size;
        let neg_risk = info.neg_risk;
        let fee_bps = info.fee_bps;
        let Some(book) = self.books.get_mut(market_index) else {
            return;
        };
        let best_before = [token_best_prices(book, 0), token_best_prices(book, 1)];
        let last_trade_before = book.last_trade;
        let outcome = operate(book, &mut live.rng);
        if outcome.changes.is_empty() && outcome.tick_change.is_none() {
            return;
        }
        let Some(log) = self.logs.get_mut(market_index) else {
            return;
        };
        log_outcome(book, &outcome, ts_ms, log, last_trade_before);

        // Replay the level changes one at a time so every price_change carries the best
        // prices and hash of the book right after its own change.
        for change in outcome.changes.iter().rev() {
            book.set_total_for_replay(change.side, change.price, change.old_total);
        }
        if let Some((old_tick, new_tick)) = outcome.tick_change {
            for token in 0..2u8 {
                let json = format!(
                    "{{\"event_type\":\"tick_size_change\",\"asset_id\":\"{}\",\"market\":\"{}\",\"old_tick_size\":\"{}\",\"new_tick_size\":\"{}\",\"timestamp\":\"{}\"}}",
                    token_ids[usize::from(token)],
                    condition_id,
                    price_text(old_tick),
                    price_text(new_tick),
                    ts_ms
                );
                events.push(Self::next_event(
                    live,
                    market,
                    "tick_size_change",
                    Audience::Tokens(1 << token),
                    json,
                    None,
                ));
            }
        }
        for change in &outcome.changes {
            book.set_total_for_replay(change.side, change.price, change.new_total);
            let seq_hint = live.last_ws_seq + 1;
            let drop_leading_zero = seq_hint % 9 == 4;
            let entries: Vec<String> = (0..2u8)
                .map(|token| {
                    price_change_entry(
                        book,
                        token,
                        &token_ids,
                        &condition_id,
                        min_order_size,
                        neg_risk,
                        ts_ms,
                        change.side,
                        change.price,
                        change.new_total,
                        drop_leading_zero,
                    )
                })
                .collect();
            let wrap = |inner: &str| {
                format!(
                    "{{\"market\":\"{condition_id}\",\"price_changes\":[{inner}],\"timestamp\":\"{ts_ms}\",\"event_type\":\"price_change\"}}"
                )
            };
            let full = wrap(&entries.join(","));
            // Entries start right after `"price_changes":[`; the second follows a comma.
            let first_start = full
                .find("\"price_changes\":[")
                .map_or(0, |at| at + "\"price_changes\":[".len());
            let first_end = first_start + entries[0].len();
            let second_start = first_end + 1;
            let ranges = [
                (first_start, first_end),
                (second_start, second_start + entries[1].len()),
            ];
            events.push(Self::next_event(
                live,
                market,
                "price_change",
                Audience::Tokens(0b11),
                full,
                Some(ranges),
            ));
        }

        let drafts = fill_drafts(&outcome);
        if !drafts.is_empty() {
            let tx_hash = random_bytes32(&mut live.rng);
            let tx = u32::try_from(self.tx_hashes.len()).unwrap_or(u32::MAX);
            self.tx_hashes.push(tx_hash);
            let tx_text = format!("0x{}", hex::encode(tx_hash));
            let mut taker_token = None;
            for draft in drafts {
                self.push_fill(ts_ms, market, draft, tx);
                if !draft.is_taker {
                    continue;
                }
                taker_token = Some(draft.token);
                let drop_leading_zero = (live.last_ws_seq + 1) % 7 == 3;
                let json = format!(
                    "{{\"asset_id\":\"{}\",\"event_type\":\"last_trade_price\",\"fee_rate_bps\":\"{}\",\"market\":\"{}\",\"price\":\"{}\",\"side\":\"{}\",\"size\":\"{}\",\"timestamp\":\"{}\",\"transaction_hash\":\"{}\"}}",
                    token_ids[usize::from(draft.token)],
                    fee_bps,
                    condition_id,
                    price_for_wire(draft.price, drop_leading_zero),
                    draft.side.name(),
                    size_text(draft.size),
                    ts_ms,
                    tx_text,
                );
                let mask = 1u8 << draft.token;
                events.push(Self::next_event(
                    live,
                    market,
                    "last_trade_price",
                    Audience::Tokens(mask),
                    json,
                    None,
                ));
            }
            // Upstream also sends a `book` when a trade affects the book.
            if let (Some(token), Some(book)) = (taker_token, self.books.get(market_index)) {
                let token_book = token_book_from_engine(
                    book,
                    token,
                    &condition_id,
                    &token_ids[usize::from(token)],
                    min_order_size,
                    neg_risk,
                    ts_ms,
                );
                let json = book_event_json(&token_book, false);
                events.push(Self::next_event(
                    live,
                    market,
                    "book",
                    Audience::Tokens(1 << token),
                    json,
                    None,
                ));
            }
        }

        if let Some(book) = self.books.get(market_index) {
            for token in 0..2u8 {
                let best_after = token_best_prices(book, token);
                if best_after == best_before[usize::from(token)] {
                    continue;
                }
                let (bid, ask) = best_texts(best_after, false);
                let spread = match best_after {
                    (Some(bid), Some(ask)) => price_text(ask.saturating_sub(bid)),
                    _ => "1".to_owned(),
                };
                let json = format!(
                    "{{\"event_type\":\"best_bid_ask\",\"market\":\"{}\",\"asset_id\":\"{}\",\"best_bid\":\"{}\",\"best_ask\":\"{}\",\"spread\":\"{}\",\"timestamp\":\"{}\"}}",
                    condition_id,
                    token_ids[usize::from(token)],
                    bid,
                    ask,
                    spread,
                    ts_ms
                );
                events.push(Self::next_event(
                    live,
                    market,
                    "best_bid_ask",
                    Audience::CustomTokens(1 << token),
                    json,
                    None,
                ));
            }
        }
    }

    /// Every `lifecycle_every` operations: alternately resolve an open single-market event and
    /// list a brand-new market (custom-feature events `market_resolved` / `new_market`).
    fn lifecycle_step(
        &mut self,
        live: &mut LiveState,
        ts_ms: i64,
        step: u64,
        events: &mut Vec<Arc<WsEvent>>,
    ) {
        if step % 2 == 1 {
            // A market a planted scenario is running on is left alone (its expected signals
            // assume only the scenario moves it).
            let reserved = |market: u32| {
                live.plants
                    .as_ref()
                    .is_some_and(|plants| plants.reserved.contains(&market))
            };
            let candidates: Vec<u32> = self
                .markets
                .iter()
                .filter(|market| {
                    market.index != 0
                        && !reserved(market.index)
                        && !market.is_closed()
                        && self
                            .events
                            .get(market.event as usize)
                            .is_some_and(|event| event.markets.len() == 1)
                })
                .map(|market| market.index)
                .collect();
            if candidates.is_empty() {
                return;
            }
            let market = candidates[live.rng.random_range(0..candidates.len())];
            self.resolve_market(live, market, ts_ms, events);
        } else {
            self.list_new_market(live, ts_ms, events);
        }
    }

    fn resolve_market(
        &mut self,
        live: &mut LiveState,
        market: u32,
        ts_ms: i64,
        events: &mut Vec<Arc<WsEvent>>,
    ) {
        let market_index = market as usize;
        let winner = live.rng.random_range(0..2u8);
        let (Some(book), Some(log)) = (
            self.books.get_mut(market_index),
            self.logs.get_mut(market_index),
        ) else {
            return;
        };
        let mut closing = OpOutcome::default();
        book.clear(&mut closing);
        let last_trade_before = book.last_trade;
        book.last_trade = if winner == 0 {
            10_000 - book.tick
        } else {
            book.tick
        };
        log_outcome(book, &closing, ts_ms, log, last_trade_before);
        log.push(LogEntry {
            ts_ms,
            kind: LogKind::Closed,
        });
        if let Some(info) = self.markets.get_mut(market_index) {
            info.closed_ms = Some(ts_ms);
            info.winner = Some(winner);
            info.updated_ms = ts_ms;
        }
        self.rebuild_sampler(live);
        if let Some(info) = self.markets.get(market_index) {
            let json = market_message_json(
                info,
                self.events.get(info.event as usize),
                "market_resolved",
                ts_ms,
            );
            events.push(Self::next_event(
                live,
                market,
                "market_resolved",
                Audience::CustomTokens(0b11),
                json,
                None,
            ));
        }
    }

    fn list_new_market(
        &mut self,
        live: &mut LiveState,
        ts_ms: i64,
        events: &mut Vec<Arc<WsEvent>>,
    ) {
        let index = u32::try_from(self.markets.len()).unwrap_or(u32::MAX);
        let event_index = u32::try_from(self.events.len()).unwrap_or(u32::MAX);
        let rng = &mut live.rng;
        let strike = rng.random_range(10..40u32) * 10;
        let title = format!("Will NVIDIA (NVDA) close above ${strike} this week?");
        let gamma_id = (2_000_000 + u64::from(index) * 3).to_string();
        let event_id = (300_000 + u64::from(event_index)).to_string();
        let slug = format!("nvda-above-{strike}-live-{index}");
        let event = EventInfo {
            index: event_index,
            id: event_id,
            slug: format!("nvda-above-live-{event_index}"),
            title: title.clone(),
            description: format!("This event is about: {title}"),
            neg_risk: false,
            neg_risk_market_id: None,
            markets: vec![index],
            created_ms: ts_ms,
            start_ms: ts_ms,
            end_ms: ts_ms + 7 * crate::world::DAY_MS,
            tag: ("120", "Finance", "finance"),
            series_slug: None,
            comment_count: 0,
            image: "https://polymarket-upload.s3.us-east-2.amazonaws.com/finance.png".to_owned(),
        };
        let initial_fair = crate::book::round_to_tick(rng.random_range(2_000..8_000u32), 100);
        let info = MarketInfo {
            index,
            gamma_id,
            condition_id: random_hex(rng, 64),
            question_id: random_hex(rng, 64),
            slug,
            question: title.clone(),
            description: format!("This market will resolve to \"Yes\" if {title}"),
            outcomes: ["Yes".to_owned(), "No".to_owned()],
            token_ids: [random_token_id(rng), random_token_id(rng)],
            version: ProtocolVersion::V2,
            event: event_index,
            neg_risk: false,
            group_item_title: None,
            base_tick: 100,
            min_order_size: 5,
            fees_enabled: false,
            fee_bps: 0,
            fee_rate: 0.0,
            fee_exponent: 1,
            rewards_daily_rate: None,
            created_ms: ts_ms,
            start_ms: ts_ms,
            end_ms: ts_ms + 7 * crate::world::DAY_MS,
            updated_ms: ts_ms,
            closed_ms: None,
            winner: None,
            activity: 300.0,
            profile: crate::book::FlowProfile {
                place_probability: 0.5,
                cancel_probability: 0.33,
                drift_probability: 0.03,
            },
            initial_fair,
            image: event.image.clone(),
        };
        let mut book = MarketBook::new(100, true, initial_fair);
        let mut log = vec![LogEntry {
            ts_ms,
            kind: LogKind::Tick(100),
        }];
        let mut seeding = OpOutcome::default();
        book.seed_ladder(rng, crate::world::WALLET_COUNT_PUBLIC, &mut seeding);
        log_outcome(&mut book, &seeding, ts_ms, &mut log, u32::MAX);
        self.events.push(event);
        self.markets.push(info);
        self.books.push(book);
        self.logs.push(log);
        self.fills_by_market.push(Vec::new());
        self.volume.push(Vec::new());
        self.rebuild_lookups();
        self.rebuild_sampler(live);
        if let Some(info) = self.markets.last() {
            let json = market_message_json(info, self.events.last(), "new_market", ts_ms);
            events.push(Self::next_event(
                live,
                index,
                "new_market",
                Audience::AllCustom,
                json,
                None,
            ));
        }
    }
}

#[allow(clippy::too_many_arguments)] // one call site; the values are all distinct facts of one entry
fn price_change_entry(
    book: &MarketBook,
    token: u8,
    token_ids: &[String; 2],
    condition_id: &str,
    min_order_size: u64,
    neg_risk: bool,
    ts_ms: i64,
    yes_side: BookSide,
    yes_price: u32,
    new_total: u64,
    drop_leading_zero: bool,
) -> String {
    let asset_id = &token_ids[usize::from(token)];
    let (side, price): (Side, u32) = if token == 0 {
        (yes_side.order_side(), yes_price)
    } else {
        (yes_side.mirrored().order_side(), complement(yes_price))
    };
    let token_book = token_book_from_engine(
        book,
        token,
        condition_id,
        asset_id,
        min_order_size,
        neg_risk,
        ts_ms,
    );
    let (best_bid, best_ask) = best_texts(token_best_prices(book, token), drop_leading_zero);
    format!(
        "{{\"asset_id\":{},\"price\":\"{}\",\"size\":\"{}\",\"side\":\"{}\",\"hash\":\"{}\",\"best_bid\":\"{}\",\"best_ask\":\"{}\"}}",
        json_string(asset_id),
        price_for_wire(price, drop_leading_zero),
        size_text(new_total),
        side.name(),
        token_book.hash(),
        best_bid,
        best_ask,
    )
}
