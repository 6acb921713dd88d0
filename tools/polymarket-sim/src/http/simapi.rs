//! The simulator's own endpoints (`/_sim/...`): ground truth, stats, faults and live control.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use polytape_model::{TradeIdentity, identity::occurrence_trade_id};
use serde_json::{Value, json};

use crate::booksnap::{TokenBook, token_levels};
use crate::faults::{FaultRule, parse_fault_spec};
use crate::fixed::{price_decimal, size_decimal};
use crate::http::{QueryParams, error_response, json_ok, json_text};
use crate::live::Audience;
use crate::state::SimState;
use crate::world::World;

const NO_ORDERBOOK: &str = "No orderbook exists for the requested token id";

/// `poison`: the rules that serve fills broken on the trades tapes (v1 or v2).
fn poison_rules(state: &SimState) -> Vec<crate::faults::Poison> {
    let mut rules = state.faults.poison("/data/trades");
    rules.extend(state.faults.poison("/data/v2/trades"));
    rules
}

fn truth_fill_json(world: &World, seq: usize, poison: &[crate::faults::Poison]) -> Value {
    let fill = &world.fills[seq];
    let poisoned = poison.iter().any(|rule| rule.selects(u64::from(fill.tx)));
    let market = &world.markets[fill.market as usize];
    let wallet = &world.wallets[fill.wallet as usize];
    let token_id = &market.token_ids[usize::from(fill.token)];
    let transaction_hash = format!("0x{}", hex::encode(world.tx_hashes[fill.tx as usize]));
    let price = price_decimal(fill.price);
    let size = size_decimal(fill.size);
    let first_id = TradeIdentity {
        transaction_hash: &transaction_hash,
        token_id,
        side: fill.side,
        size,
        price,
        proxy_wallet: &wallet.address,
    }
    .trade_id();
    // Identical fills of one transaction are distinct trades: the k-th of them (tape order)
    // is its occurrence k. A transaction's fills are contiguous on the tape.
    let occurrence = world.fills[..seq]
        .iter()
        .rev()
        .take_while(|earlier| earlier.tx == fill.tx && earlier.ts_ms == fill.ts_ms)
        .filter(|earlier| {
            earlier.market == fill.market
                && earlier.token == fill.token
                && earlier.side == fill.side
                && earlier.size == fill.size
                && earlier.price == fill.price
                && earlier.wallet == fill.wallet
        })
        .count();
    let trade_id = occurrence_trade_id(&first_id, u32::try_from(occurrence).unwrap_or(u32::MAX));
    json!({
        "seq": seq,
        "trade_id": trade_id,
        "proxyWallet": wallet.address,
        "side": fill.side.name(),
        "asset": token_id,
        "conditionId": market.condition_id,
        "size": size.to_string(),
        "price": price.to_string(),
        "timestamp": fill.ts_ms.div_euclid(1_000),
        "timestamp_ms": fill.ts_ms,
        "title": market.question,
        "slug": market.slug,
        "eventSlug": world.event_of(market).map(|event| event.slug.clone()).unwrap_or_default(),
        "outcome": market.outcomes[usize::from(fill.token)],
        "outcomeIndex": fill.token,
        "name": wallet.name,
        "pseudonym": wallet.pseudonym,
        "transactionHash": transaction_hash,
        "is_taker": fill.is_taker,
        "poisoned": poisoned,
    })
}

/// `GET /_sim/truth/fills?market=&token_id=&taker_only=&since_seq=&limit=`: every fill
/// (taker and maker rows) in tape order.
pub(crate) async fn truth_fills(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let since = params
        .integer(&["since_seq"])
        .ok()
        .flatten()
        .unwrap_or(0)
        .max(0) as usize;
    let limit = params
        .integer(&["limit"])
        .ok()
        .flatten()
        .unwrap_or(10_000)
        .clamp(1, 200_000) as usize;
    let taker_only = params.bool(&["taker_only", "takerOnly"]).unwrap_or(false);
    let poison = poison_rules(&state);
    let shared = state.read();
    let world = &shared.world;
    let market_filter = params.get(&["market", "condition_id"]).map(|condition| {
        world
            .condition_lookup
            .get(&condition.to_ascii_lowercase())
            .copied()
            .unwrap_or(u32::MAX)
    });
    let token_filter = params.get(&["token_id"]).map(|token| {
        world
            .token_lookup
            .get(token)
            .copied()
            .unwrap_or((u32::MAX, 0))
    });
    let candidates: Box<dyn Iterator<Item = usize>> =
        match market_filter.or(token_filter.map(|(market, _)| market)) {
            Some(market) => Box::new(
                world
                    .fills_by_market
                    .get(market as usize)
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(|position| *position as usize),
            ),
            None => Box::new(0..world.fills.len()),
        };
    let mut rows = Vec::new();
    let mut next = None;
    for seq in candidates.filter(|seq| *seq >= since) {
        let fill = &world.fills[seq];
        if taker_only && !fill.is_taker {
            continue;
        }
        if let Some((_, token)) = token_filter
            && fill.token != token
        {
            continue;
        }
        if rows.len() == limit {
            next = Some(seq);
            break;
        }
        rows.push(truth_fill_json(world, seq, &poison));
    }
    json_ok(&json!({"fills": rows, "next_since_seq": next, "total_fills": world.fills.len()}))
}

/// `GET /_sim/truth/book?token_id=&at=<ms>`: the book as CLOB `/book` would have served it at
/// that instant (default: now).
pub(crate) async fn truth_book(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let Some(token_id) = params.get(&["token_id"]).map(str::to_owned) else {
        return error_response(StatusCode::BAD_REQUEST, "token_id is required");
    };
    let at = params.integer(&["at"]).ok().flatten().unwrap_or(i64::MAX);
    let shared = state.read();
    let world = &shared.world;
    let Some((market, token)) = world.token_lookup.get(&token_id).copied() else {
        return error_response(StatusCode::NOT_FOUND, NO_ORDERBOOK);
    };
    let Some(info) = world.markets.get(market as usize) else {
        return error_response(StatusCode::NOT_FOUND, NO_ORDERBOOK);
    };
    let Some(book) = world.book_state_at(market, at) else {
        return error_response(StatusCode::NOT_FOUND, NO_ORDERBOOK);
    };
    if book.closed {
        return error_response(StatusCode::NOT_FOUND, NO_ORDERBOOK);
    }
    let yes_bids: Vec<(u32, u64)> = book.bids.into_iter().collect();
    let yes_asks: Vec<(u32, u64)> = book.asks.into_iter().collect();
    let (bids, asks) = token_levels(&yes_bids, &yes_asks, token);
    let token_book = TokenBook {
        market: &info.condition_id,
        asset_id: &info.token_ids[usize::from(token)],
        timestamp_ms: book.ts_ms,
        bids,
        asks,
        min_order_size: info.min_order_size,
        tick: book.tick,
        neg_risk: info.neg_risk,
        last_trade_price: if token == 0 {
            book.last_trade
        } else {
            crate::book::complement(book.last_trade)
        },
    };
    json_text(StatusCode::OK, token_book.to_json())
}

pub(crate) async fn truth_markets(State(state): State<Arc<SimState>>) -> Response {
    let shared = state.read();
    let world = &shared.world;
    let rows: Vec<Value> = world
        .markets
        .iter()
        .map(|market| {
            let positions = world.fills_by_market.get(market.index as usize).map(Vec::as_slice).unwrap_or(&[]);
            let taker_fills = positions.iter().filter(|position| world.fills[**position as usize].is_taker).count();
            json!({
                "index": market.index,
                "gamma_id": market.gamma_id,
                "condition_id": market.condition_id,
                "question_id": market.question_id,
                "slug": market.slug,
                "question": market.question,
                "version": match market.version {
                    crate::world::ProtocolVersion::V1Unlabelled => Value::Null,
                    crate::world::ProtocolVersion::V1 => json!("v1"),
                    crate::world::ProtocolVersion::V2 => json!("v2"),
                },
                "token_ids": market.token_ids,
                "outcomes": market.outcomes,
                "event_id": world.event_of(market).map(|event| event.id.clone()),
                "neg_risk": market.neg_risk,
                "base_tick_size": price_decimal(market.base_tick).to_string(),
                "current_tick_size": world.books.get(market.index as usize).map(|book| price_decimal(book.tick).to_string()),
                "min_order_size": market.min_order_size.to_string(),
                "fees_enabled": market.fees_enabled,
                "fee_rate_bps": market.fee_bps,
                "closed": market.is_closed(),
                "closed_ms": market.closed_ms,
                "winner_token_id": market.winner.map(|winner| market.token_ids[usize::from(winner)].clone()),
                "created_ms": market.created_ms,
                "fills": positions.len(),
                "taker_fills": taker_fills,
            })
        })
        .collect();
    json_ok(&Value::Array(rows))
}

pub(crate) async fn truth_events(State(state): State<Arc<SimState>>) -> Response {
    let shared = state.read();
    let world = &shared.world;
    let rows: Vec<Value> = world
        .events
        .iter()
        .map(|event| {
            json!({
                "id": event.id,
                "slug": event.slug,
                "title": event.title,
                "neg_risk": event.neg_risk,
                "closed": world.event_closed(event),
                "market_condition_ids": event.markets.iter().filter_map(|market| world.markets.get(*market as usize)).map(|market| market.condition_id.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json_ok(&Value::Array(rows))
}

/// `GET /_sim/truth/ws?token_id=&since_seq=&limit=`: the market-channel events a subscriber of
/// that token was sent (before any injected fault), in order.
pub(crate) async fn truth_ws(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let Some(token_id) = params.get(&["token_id"]).map(str::to_owned) else {
        return error_response(StatusCode::BAD_REQUEST, "token_id is required");
    };
    let since = params
        .integer(&["since_seq"])
        .ok()
        .flatten()
        .unwrap_or(0)
        .max(0) as u64;
    let limit = params
        .integer(&["limit"])
        .ok()
        .flatten()
        .unwrap_or(10_000)
        .clamp(1, 200_000) as usize;
    let shared = state.read();
    let Some((market, token)) = shared.world.token_lookup.get(&token_id).copied() else {
        return error_response(StatusCode::NOT_FOUND, "unknown token_id");
    };
    let mut events = Vec::new();
    for event in shared
        .live
        .ws_truth
        .iter()
        .filter(|event| event.seq > since && event.market == market)
    {
        let mask = match event.audience {
            Audience::Tokens(mask) | Audience::CustomTokens(mask) => mask,
            Audience::AllCustom => 0,
        };
        if mask & (1 << token) == 0 {
            continue;
        }
        let parsed: Value =
            serde_json::from_str(&event.json_for(1 << token)).unwrap_or(Value::Null);
        events.push(json!({"seq": event.seq, "event_type": event.event_type, "event": parsed}));
        if events.len() == limit {
            break;
        }
    }
    json_ok(&json!({
        "token_id": token_id,
        "events": events,
        "dropped": shared.live.ws_truth_dropped,
        "oldest_retained_seq": shared.live.ws_truth.front().map(|event| event.seq),
        "last_ws_seq": shared.live.last_ws_seq,
    }))
}

pub(crate) async fn stats(State(state): State<Arc<SimState>>) -> Response {
    json_ok(&state.stats.snapshot())
}

pub(crate) async fn stats_reset(State(state): State<Arc<SimState>>) -> Response {
    state.stats.reset();
    json_ok(&state.stats.snapshot())
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct FaultsRequest {
    #[serde(default)]
    spec: Option<String>,
    #[serde(default)]
    rules: Vec<FaultRule>,
    #[serde(default)]
    replace: bool,
}

pub(crate) async fn faults_get(State(state): State<Arc<SimState>>) -> Response {
    json_ok(&json!({"rules": state.faults.describe()}))
}

pub(crate) async fn faults_post(
    State(state): State<Arc<SimState>>,
    Json(request): Json<FaultsRequest>,
) -> Response {
    let mut rules = request.rules;
    if let Some(spec) = request.spec {
        match parse_fault_spec(&spec) {
            Ok(parsed) => rules.extend(parsed),
            Err(error) => return error_response(StatusCode::BAD_REQUEST, &error.to_string()),
        }
    }
    tracing::info!(
        rules = rules.len(),
        replace = request.replace,
        "fault rules added"
    );
    state.faults.add(rules, request.replace);
    json_ok(&json!({"rules": state.faults.describe()}))
}

pub(crate) async fn faults_delete(State(state): State<Arc<SimState>>) -> Response {
    state.faults.clear();
    json_ok(&json!({"rules": []}))
}

pub(crate) async fn pause(State(state): State<Arc<SimState>>) -> Response {
    let progress = tokio::task::spawn_blocking(move || state.pause()).await;
    match progress {
        Ok(progress) => json_ok(&json!(progress)),
        Err(_) => error_response(StatusCode::INTERNAL_SERVER_ERROR, "pause failed"),
    }
}

pub(crate) async fn resume(State(state): State<Arc<SimState>>) -> Response {
    json_ok(&json!(state.resume()))
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct AdvanceRequest {
    operations: u64,
}

pub(crate) async fn advance(
    State(state): State<Arc<SimState>>,
    Json(request): Json<AdvanceRequest>,
) -> Response {
    let progress =
        tokio::task::spawn_blocking(move || state.advance(request.operations.min(10_000_000)))
            .await;
    match progress {
        Ok(progress) => json_ok(&json!(progress)),
        Err(_) => error_response(StatusCode::INTERNAL_SERVER_ERROR, "advance failed"),
    }
}

pub(crate) async fn info(State(state): State<Arc<SimState>>) -> Response {
    let (history_start_ms, history_end_ms, markets, events, fills) = {
        let shared = state.read();
        (
            shared.world.history_start_ms,
            shared.world.parameters.history_end_ms,
            shared.world.markets.len(),
            shared.world.events.len(),
            shared.world.fills.len(),
        )
    };
    json_ok(&json!({
        "seed": state.config.seed,
        "markets": markets,
        "events": events,
        "fills": fills,
        "history_days": state.config.history_days,
        "history_start_ms": history_start_ms,
        "history_end_ms": history_end_ms,
        "live_start_ms": state.live_start_ms,
        "rate": state.config.rate,
        "speed": state.config.speed,
        "ws_max_assets": state.config.ws_max_assets,
        "rate_window_ms": state.config.rate_window.as_millis() as u64,
        "progress": state.progress(),
    }))
}

/// The planted signal scenarios and, for each one ended, the signals it must raise
/// (`--scenarios live`; tools/polymarket-sim/PLANTING.md).
pub(crate) async fn truth_signals(State(state): State<Arc<SimState>>) -> Response {
    let shared = state.read();
    json_ok(&shared.world.truth_signals(&shared.live))
}
