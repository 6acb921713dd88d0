//! CLOB REST (`/clob/...`): market listings with base64 offset cursors, order books with
//! upstream's SHA-1 hash, prices, midpoints, price history and server time.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::book::complement;
use crate::booksnap::{token_best_prices, token_book_from_engine};
use crate::fixed::{price_decimal, price_float, price_text};
use crate::http::{QueryParams, error_response, iso_seconds, json_ok, json_text};
use crate::state::SimState;
use crate::world::{DAY_MS, LogKind, MarketInfo, World};

const PAGE_SIZE: usize = 1_000;
const END_CURSOR: &str = "LTE=";
const NO_ORDERBOOK: &str = "No orderbook exists for the requested token id";
/// Upstream returns empty history for resolved markets below this fidelity (py-clob-client#216).
const RESOLVED_MIN_FIDELITY_MINUTES: i64 = 720;

pub(crate) fn clob_market_json(world: &World, market: &MarketInfo) -> Value {
    let closed = market.is_closed();
    let event = world.event_of(market);
    let book = world.books.get(market.index as usize);
    let yes_price = book.map_or(market.initial_fair, |book| book.last_trade);
    let token_price = |token: usize| -> f64 {
        match market.winner {
            Some(winner) if closed => {
                if usize::from(winner) == token {
                    1.0
                } else {
                    0.0
                }
            }
            _ => price_float(if token == 0 {
                yes_price
            } else {
                complement(yes_price)
            }),
        }
    };
    let tokens: Vec<Value> = (0..2)
        .map(|token| {
            json!({
                "token_id": market.token_ids[token],
                "outcome": market.outcomes[token],
                "price": token_price(token),
                "winner": market.winner.is_some_and(|winner| usize::from(winner) == token),
            })
        })
        .collect();
    let rates = match market.rewards_daily_rate {
        Some(rate) => {
            json!([{"asset_address": "0xC011a7E12a19f7B1f670d46F03B03f3342E82DFB", "rewards_daily_rate": rate}])
        }
        None => Value::Null,
    };
    let mut row = json!({
        "enable_order_book": true,
        "active": true,
        "closed": closed,
        "archived": false,
        "accepting_orders": !closed,
        "accepting_order_timestamp": iso_seconds(market.start_ms),
        "minimum_order_size": market.min_order_size,
        "minimum_tick_size": price_float(book.map_or(market.base_tick, |book| book.tick)),
        "condition_id": market.condition_id,
        "question_id": market.question_id,
        "question": market.question,
        "description": market.description,
        "market_slug": market.slug,
        "end_date_iso": format!("{}T00:00:00Z", crate::http::iso_date(market.end_ms)),
        "game_start_time": Value::Null,
        "seconds_delay": 0,
        "fpmm": "",
        "maker_base_fee": market.fee_bps,
        "taker_base_fee": market.fee_bps,
        "notifications_enabled": true,
        "neg_risk": market.neg_risk,
        "neg_risk_market_id": event.and_then(|event| event.neg_risk_market_id.clone()).unwrap_or_default(),
        "neg_risk_request_id": if market.neg_risk { market.question_id.clone() } else { String::new() },
        "icon": market.image,
        "image": market.image,
        "rewards": {"rates": rates, "min_size": if market.rewards_daily_rate.is_some() { 50 } else { 0 }, "max_spread": if market.rewards_daily_rate.is_some() { 3.5 } else { 0.0 }},
        "is_50_50_outcome": false,
        "tokens": tokens,
        "tags": event.map(|event| vec![event.tag.1]).unwrap_or_default(),
    });
    if market.version == crate::world::ProtocolVersion::V2
        && let Some(object) = row.as_object_mut()
    {
        object.insert("version".to_owned(), json!("v2"));
    }
    row
}

/// `GET /clob/markets?next_cursor=`: base64(offset), 1000 per page, `LTE=` at the end.
pub(crate) async fn markets(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let offset = match params.get(&["next_cursor"]) {
        None | Some("") => 0,
        Some(END_CURSOR) => usize::MAX,
        Some(cursor) => {
            let decoded = STANDARD
                .decode(cursor)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| text.parse::<usize>().ok());
            match decoded {
                Some(offset) => offset,
                None => return error_response(StatusCode::BAD_REQUEST, "invalid next_cursor"),
            }
        }
    };
    let shared = state.read();
    let world = &shared.world;
    let total = world.markets.len();
    let start = offset.min(total);
    let data: Vec<Value> = world.markets[start..]
        .iter()
        .take(PAGE_SIZE)
        .map(|market| clob_market_json(world, market))
        .collect();
    let next = start + data.len();
    let next_cursor = if data.is_empty() || next >= total {
        END_CURSOR.to_owned()
    } else {
        STANDARD.encode(next.to_string())
    };
    json_ok(
        &json!({"limit": PAGE_SIZE, "count": data.len(), "next_cursor": next_cursor, "data": data}),
    )
}

pub(crate) async fn market_by_condition(
    State(state): State<Arc<SimState>>,
    Path(condition_id): Path<String>,
) -> Response {
    let shared = state.read();
    let world = &shared.world;
    match world
        .condition_lookup
        .get(&condition_id.to_ascii_lowercase())
        .and_then(|index| world.markets.get(*index as usize))
    {
        Some(market) => json_ok(&clob_market_json(world, market)),
        None => error_response(StatusCode::NOT_FOUND, "market not found"),
    }
}

/// The `/book` body of a token, or None for unknown tokens and closed markets.
pub(crate) fn book_body(world: &World, token_id: &str) -> Option<String> {
    let (market, token) = *world.token_lookup.get(token_id)?;
    let info = world.markets.get(market as usize)?;
    if info.is_closed() {
        return None;
    }
    let book = world.books.get(market as usize)?;
    let token_book = token_book_from_engine(
        book,
        token,
        &info.condition_id,
        &info.token_ids[usize::from(token)],
        info.min_order_size,
        info.neg_risk,
        book.last_change_ms,
    );
    Some(token_book.to_json())
}

fn token_param(params: &QueryParams) -> Option<String> {
    params
        .get(&["token_id", "tokenId", "asset_id"])
        .map(str::to_owned)
}

pub(crate) async fn book(State(state): State<Arc<SimState>>, RawQuery(raw): RawQuery) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let Some(token_id) = token_param(&params) else {
        return error_response(StatusCode::BAD_REQUEST, "Invalid payload");
    };
    let shared = state.read();
    match book_body(&shared.world, &token_id) {
        Some(body) => json_text(StatusCode::OK, body),
        None => error_response(StatusCode::NOT_FOUND, NO_ORDERBOOK),
    }
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenRequest {
    token_id: String,
    /// Used by `POST /prices`; the other bodies ignore it.
    #[serde(default)]
    side: Option<String>,
}

pub(crate) async fn books(
    State(state): State<Arc<SimState>>,
    Json(requests): Json<Vec<TokenRequest>>,
) -> Response {
    let shared = state.read();
    let bodies: Vec<String> = requests
        .iter()
        .filter_map(|request| book_body(&shared.world, &request.token_id))
        .collect();
    json_text(StatusCode::OK, format!("[{}]", bodies.join(",")))
}

/// Top of an open token's book, in that token's terms.
struct TokenTop {
    bid: Option<u32>,
    ask: Option<u32>,
    last: u32,
}

fn open_token(world: &World, token_id: &str) -> Option<TokenTop> {
    let (market, token) = *world.token_lookup.get(token_id)?;
    let info = world.markets.get(market as usize)?;
    if info.is_closed() {
        return None;
    }
    let book = world.books.get(market as usize)?;
    let (bid, ask) = token_best_prices(book, token);
    let last = if token == 0 {
        book.last_trade
    } else {
        complement(book.last_trade)
    };
    Some(TokenTop { bid, ask, last })
}

/// `GET /clob/price?token_id=&side=`: BUY → best bid, SELL → best ask (the price resting on
/// that side of the book).
pub(crate) async fn price(State(state): State<Arc<SimState>>, RawQuery(raw): RawQuery) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let Some(token_id) = token_param(&params) else {
        return error_response(StatusCode::BAD_REQUEST, "Invalid payload");
    };
    let side = params.get(&["side"]).map(str::to_ascii_uppercase);
    let shared = state.read();
    let Some(TokenTop { bid, ask, .. }) = open_token(&shared.world, &token_id) else {
        return error_response(StatusCode::NOT_FOUND, NO_ORDERBOOK);
    };
    let price = match side.as_deref() {
        Some("BUY") => bid,
        Some("SELL") => ask,
        _ => return error_response(StatusCode::BAD_REQUEST, "Invalid side"),
    };
    match price {
        Some(price) => json_ok(&json!({"price": price_text(price)})),
        None => error_response(StatusCode::NOT_FOUND, "No orders on that side of the book"),
    }
}

pub(crate) async fn midpoint(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let Some(token_id) = token_param(&params) else {
        return error_response(StatusCode::BAD_REQUEST, "Invalid payload");
    };
    let shared = state.read();
    let Some(TokenTop { bid, ask, last }) = open_token(&shared.world, &token_id) else {
        return error_response(StatusCode::NOT_FOUND, NO_ORDERBOOK);
    };
    let mid = match (bid, ask) {
        (Some(bid), Some(ask)) => {
            ((price_decimal(bid) + price_decimal(ask)) / Decimal::TWO).normalize()
        }
        _ => price_decimal(last),
    };
    json_ok(&json!({"mid": mid.to_string()}))
}

pub(crate) async fn spread(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let Some(token_id) = token_param(&params) else {
        return error_response(StatusCode::BAD_REQUEST, "Invalid payload");
    };
    let shared = state.read();
    match open_token(&shared.world, &token_id) {
        Some(TokenTop {
            bid: Some(bid),
            ask: Some(ask),
            ..
        // A planted binary window crosses the book for seconds (an ask through the bid):
        // its spread reads as 0, never a subtraction below zero.
        }) => json_ok(&json!({"spread": price_text(ask.saturating_sub(bid))})),
        Some(_) => json_ok(&json!({"spread": "1"})),
        None => error_response(StatusCode::NOT_FOUND, NO_ORDERBOOK),
    }
}

pub(crate) async fn tick_size(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let Some(token_id) = token_param(&params) else {
        return error_response(StatusCode::BAD_REQUEST, "Invalid payload");
    };
    let shared = state.read();
    let world = &shared.world;
    match world
        .token_lookup
        .get(&token_id)
        .and_then(|(market, _)| world.books.get(*market as usize))
    {
        Some(book) => json_ok(&json!({"minimum_tick_size": price_float(book.tick)})),
        None => error_response(StatusCode::NOT_FOUND, "market not found"),
    }
}

pub(crate) async fn time(State(state): State<Arc<SimState>>) -> Response {
    json_text(
        StatusCode::OK,
        state.sim_now_ms().div_euclid(1_000).to_string(),
    )
}

/// `GET /clob/prices-history`: `{"history":[{"t":seconds,"p":float}]}`; `p` is the token's
/// last trade price at `t`.
pub(crate) async fn prices_history(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let Some(token_id) = params.get(&["market", "token_id"]).map(str::to_owned) else {
        return error_response(StatusCode::BAD_REQUEST, "market (token id) is required");
    };
    let fidelity_minutes = match params.integer(&["fidelity"]) {
        Ok(fidelity) => fidelity.unwrap_or(1).max(1),
        Err(_) => return error_response(StatusCode::BAD_REQUEST, "invalid fidelity"),
    };
    let shared = state.read();
    let world = &shared.world;
    let Some((market, token)) = world.token_lookup.get(&token_id).copied() else {
        return json_ok(&json!({"history": []}));
    };
    let Some(info) = world.markets.get(market as usize) else {
        return json_ok(&json!({"history": []}));
    };
    // Windows are computed as of the world clock, so a world without live activity answers
    // byte-identically whenever it is asked.
    let clock_seconds = world.world_clock_ms.div_euclid(1_000);
    let (start_seconds, end_seconds) = match (
        params.integer(&["startTs"]),
        params.integer(&["endTs"]),
        params.get(&["interval"]),
    ) {
        (Ok(Some(start)), end, _) => (start, end.ok().flatten().unwrap_or(clock_seconds)),
        (_, _, Some(interval)) => {
            let span_seconds = match interval {
                "1m" => 30 * DAY_MS / 1_000,
                "1w" => 7 * DAY_MS / 1_000,
                "1d" => DAY_MS / 1_000,
                "6h" => 6 * 3_600,
                "1h" => 3_600,
                "max" | "all" => {
                    clock_seconds - world.history_start_ms.div_euclid(1_000) + DAY_MS / 1_000
                }
                _ => return error_response(StatusCode::BAD_REQUEST, "invalid interval"),
            };
            (clock_seconds - span_seconds, clock_seconds)
        }
        _ => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "interval or startTs/endTs is required",
            );
        }
    };
    if info.is_closed() && fidelity_minutes < RESOLVED_MIN_FIDELITY_MINUTES {
        return json_ok(&json!({"history": []}));
    }
    let step = fidelity_minutes * 60;
    let first = start_seconds.div_euclid(step) * step
        + if start_seconds.rem_euclid(step) == 0 {
            0
        } else {
            step
        };
    let log = world
        .logs
        .get(market as usize)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut position = 0usize;
    let mut last_trade: Option<u32> = None;
    let mut closed_at: Option<i64> = None;
    let mut points = Vec::new();
    let mut t = first;
    while t <= end_seconds && points.len() < 100_000 {
        let t_ms = t * 1_000;
        while position < log.len() && log[position].ts_ms <= t_ms {
            match log[position].kind {
                LogKind::LastTrade(price) => last_trade = Some(price),
                LogKind::Closed => closed_at = Some(log[position].ts_ms),
                _ => {}
            }
            position += 1;
        }
        if closed_at.is_some() {
            break;
        }
        if let Some(price) = last_trade {
            let token_price = if token == 0 { price } else { complement(price) };
            points.push(json!({"t": t, "p": price_float(token_price)}));
        }
        t += step;
    }
    json_ok(&json!({"history": points}))
}

/// `GET /clob/last-trade-price?token_id=` → `{"price","side"}`: the latest taker trade of the
/// market, in this token's terms.
pub(crate) async fn last_trade_price(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let Some(token_id) = token_param(&params) else {
        return error_response(StatusCode::BAD_REQUEST, "Invalid payload");
    };
    let shared = state.read();
    let world = &shared.world;
    let Some((market, token)) = world.token_lookup.get(&token_id).copied() else {
        return error_response(StatusCode::NOT_FOUND, "market not found");
    };
    let latest = world
        .fills_by_market
        .get(market as usize)
        .and_then(|positions| {
            positions
                .iter()
                .rev()
                .map(|position| &world.fills[*position as usize])
                .find(|fill| fill.is_taker)
        });
    match latest {
        Some(fill) if fill.token == token => {
            json_ok(&json!({"price": price_text(fill.price), "side": fill.side.name()}))
        }
        Some(fill) => json_ok(&json!({
            "price": price_text(complement(fill.price)),
            "side": crate::book::flip_side(fill.side).name(),
        })),
        None => json_ok(&json!({"price": "0.5", "side": ""})),
    }
}

pub(crate) async fn neg_risk(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let shared = state.read();
    let world = &shared.world;
    match token_param(&params)
        .and_then(|token| world.token_lookup.get(&token).copied())
        .and_then(|(market, _)| world.markets.get(market as usize))
    {
        Some(market) => json_ok(&json!({"neg_risk": market.neg_risk})),
        None => error_response(StatusCode::NOT_FOUND, "market not found"),
    }
}

pub(crate) async fn fee_rate(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let shared = state.read();
    let world = &shared.world;
    match token_param(&params)
        .and_then(|token| world.token_lookup.get(&token).copied())
        .and_then(|(market, _)| world.markets.get(market as usize))
    {
        Some(market) => json_ok(&json!({"base_fee": market.fee_bps})),
        None => error_response(StatusCode::NOT_FOUND, "market not found"),
    }
}

/// `POST /clob/prices` body `[{"token_id","side"}]` → `{"<id>": {"BUY": 0.5}}` (numbers);
/// `GET /clob/prices` → every open token with both sides.
pub(crate) async fn prices_post(
    State(state): State<Arc<SimState>>,
    Json(requests): Json<Vec<TokenRequest>>,
) -> Response {
    let shared = state.read();
    let mut out = serde_json::Map::new();
    for request in &requests {
        let Some(top) = open_token(&shared.world, &request.token_id) else {
            continue;
        };
        let side = request
            .side
            .clone()
            .unwrap_or_else(|| "BUY".to_owned())
            .to_ascii_uppercase();
        let price = if side == "SELL" { top.ask } else { top.bid };
        let entry = out
            .entry(request.token_id.clone())
            .or_insert_with(|| json!({}));
        if let (Some(price), Some(object)) = (price, entry.as_object_mut()) {
            object.insert(side, json!(price_float(price)));
        }
    }
    json_ok(&Value::Object(out))
}

pub(crate) async fn prices_get(State(state): State<Arc<SimState>>) -> Response {
    let shared = state.read();
    let world = &shared.world;
    let mut out = serde_json::Map::new();
    for market in world.markets.iter().filter(|market| !market.is_closed()) {
        for token_id in &market.token_ids {
            if let Some(top) = open_token(world, token_id) {
                let mut sides = serde_json::Map::new();
                if let Some(bid) = top.bid {
                    sides.insert("BUY".to_owned(), json!(price_float(bid)));
                }
                if let Some(ask) = top.ask {
                    sides.insert("SELL".to_owned(), json!(price_float(ask)));
                }
                out.insert(token_id.clone(), Value::Object(sides));
            }
        }
    }
    json_ok(&Value::Object(out))
}

/// `POST /clob/midpoints` body `[{"token_id"}]` → `{"<id>": "0.455"}`.
pub(crate) async fn midpoints_post(
    State(state): State<Arc<SimState>>,
    Json(requests): Json<Vec<TokenRequest>>,
) -> Response {
    let shared = state.read();
    let mut out = serde_json::Map::new();
    for request in &requests {
        let Some(top) = open_token(&shared.world, &request.token_id) else {
            continue;
        };
        let mid = match (top.bid, top.ask) {
            (Some(bid), Some(ask)) => {
                ((price_decimal(bid) + price_decimal(ask)) / Decimal::TWO).normalize()
            }
            _ => price_decimal(top.last),
        };
        out.insert(request.token_id.clone(), json!(mid.to_string()));
    }
    json_ok(&Value::Object(out))
}

/// `GET /clob/books?token_ids=a,b` (the query variant some SDKs use).
pub(crate) async fn books_get(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let shared = state.read();
    let bodies: Vec<String> = params
        .list(&["token_ids", "token_id"])
        .iter()
        .filter_map(|token| book_body(&shared.world, token))
        .collect();
    json_text(StatusCode::OK, format!("[{}]", bodies.join(",")))
}

fn cursor_offset(params: &QueryParams) -> Result<usize, Box<Response>> {
    match params.get(&["next_cursor"]) {
        None | Some("") => Ok(0),
        Some(END_CURSOR) => Ok(usize::MAX),
        Some(cursor) => STANDARD
            .decode(cursor)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse::<usize>().ok())
            .ok_or_else(|| {
                Box::new(error_response(
                    StatusCode::BAD_REQUEST,
                    "invalid next_cursor",
                ))
            }),
    }
}

fn simplified_market_json(world: &World, market: &MarketInfo) -> Value {
    let full = clob_market_json(world, market);
    json!({
        "condition_id": full["condition_id"],
        "tokens": full["tokens"],
        "rewards": full["rewards"],
        "active": full["active"],
        "closed": full["closed"],
        "archived": full["archived"],
        "accepting_orders": full["accepting_orders"],
    })
}

async fn listing(
    state: &SimState,
    raw: Option<&str>,
    sampling: bool,
    simplified: bool,
) -> Response {
    let params = QueryParams::parse(raw);
    let offset = match cursor_offset(&params) {
        Ok(offset) => offset,
        Err(response) => return *response,
    };
    let shared = state.read();
    let world = &shared.world;
    // Sampling = markets currently eligible for liquidity rewards.
    let selected: Vec<&MarketInfo> = world
        .markets
        .iter()
        .filter(|market| !sampling || (market.rewards_daily_rate.is_some() && !market.is_closed()))
        .collect();
    let total = selected.len();
    let start = offset.min(total);
    let data: Vec<Value> = selected[start..]
        .iter()
        .take(PAGE_SIZE)
        .map(|market| {
            if simplified {
                simplified_market_json(world, market)
            } else {
                clob_market_json(world, market)
            }
        })
        .collect();
    let next = start + data.len();
    let next_cursor = if data.is_empty() || next >= total {
        END_CURSOR.to_owned()
    } else {
        STANDARD.encode(next.to_string())
    };
    json_ok(
        &json!({"limit": PAGE_SIZE, "count": data.len(), "next_cursor": next_cursor, "data": data}),
    )
}

pub(crate) async fn simplified_markets(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    listing(&state, raw.as_deref(), false, true).await
}

pub(crate) async fn sampling_markets(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    listing(&state, raw.as_deref(), true, false).await
}

pub(crate) async fn sampling_simplified_markets(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    listing(&state, raw.as_deref(), true, true).await
}
