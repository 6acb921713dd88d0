//! Data API (`/data/...`): the v1 trade tape (bare arrays, camelCase, float prices with
//! upstream's artefacts, seconds timestamps, offset ≤ 10,000), the v2 tape (envelope,
//! cursor-only, snake_case), the leaderboard and holders.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use polytape_model::Side;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use crate::fixed::{price_float, price_float_with_artefacts, size_float};
use crate::http::{QueryParams, error_response, json_ok, json_value};
use crate::state::SimState;
use crate::world::{DAY_MS, FillRecord, World};

const V1_MAX_LIMIT: i64 = 10_000;
const V1_MAX_OFFSET: i64 = 10_000;
const V1_DEFAULT_LIMIT: i64 = 100;
const V2_MAX_LIMIT: i64 = 1_000;
const V2_DEFAULT_LIMIT: i64 = 100;

/// Filters shared by the v1 and v2 tapes.
struct TradeFilter {
    markets: Option<Vec<u32>>,
    wallet: Option<u32>,
    side: Option<Side>,
    start_seconds: Option<i64>,
    end_seconds: Option<i64>,
    taker_only: bool,
}

impl TradeFilter {
    fn accepts(&self, fill: &FillRecord) -> bool {
        if self.taker_only && !fill.is_taker {
            return false;
        }
        if self.wallet.is_some_and(|wallet| wallet != fill.wallet) {
            return false;
        }
        if self.side.is_some_and(|side| side != fill.side) {
            return false;
        }
        let seconds = fill.ts_ms.div_euclid(1_000);
        if self.start_seconds.is_some_and(|start| seconds < start) {
            return false;
        }
        if self.end_seconds.is_some_and(|end| seconds > end) {
            return false;
        }
        true
    }
}

/// Global fill positions matching the market scope, newest first, starting strictly before
/// `before` (a global position) when given.
fn positions_newest_first<'a>(
    world: &'a World,
    markets: Option<&'a [u32]>,
    before: Option<u32>,
) -> Box<dyn Iterator<Item = u32> + 'a> {
    let limit = before.unwrap_or(u32::MAX);
    match markets {
        None => {
            let end = (world.fills.len() as u64).min(u64::from(limit)) as u32;
            Box::new((0..end).rev())
        }
        Some([single]) => {
            let positions = world
                .fills_by_market
                .get(*single as usize)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let end = positions.partition_point(|position| *position < limit);
            Box::new(positions[..end].iter().rev().copied())
        }
        Some(several) => {
            let mut merged: Vec<u32> = several
                .iter()
                .filter_map(|market| world.fills_by_market.get(*market as usize))
                .flat_map(|positions| {
                    positions
                        .iter()
                        .copied()
                        .filter(|position| *position < limit)
                })
                .collect();
            merged.sort_unstable_by(|left, right| right.cmp(left));
            Box::new(merged.into_iter())
        }
    }
}

fn wallet_index(world: &World, address: &str) -> Option<u32> {
    let lowered = address.to_ascii_lowercase();
    world
        .wallets
        .iter()
        .position(|wallet| wallet.address == lowered)
        .and_then(|position| u32::try_from(position).ok())
}

/// Parses the filters; `Err` carries the 400 message.
fn parse_filter(world: &World, params: &QueryParams, v2: bool) -> Result<TradeFilter, String> {
    let market_names: &[&str] = if v2 {
        &["condition", "condition_id", "conditionId", "market"]
    } else {
        &["market"]
    };
    let condition_ids = params.list(market_names);
    let event_ids = params.list(&["eventId", "event_id"]);
    if !condition_ids.is_empty() && !event_ids.is_empty() {
        return Err("market and eventId are mutually exclusive".to_owned());
    }
    if v2 && condition_ids.len() > 20 {
        return Err("condition accepts at most 20 values".to_owned());
    }
    let markets = if !condition_ids.is_empty() {
        Some(
            condition_ids
                .iter()
                .filter_map(|id| {
                    world
                        .condition_lookup
                        .get(&id.to_ascii_lowercase())
                        .copied()
                })
                .collect::<Vec<u32>>(),
        )
    } else if !event_ids.is_empty() {
        Some(
            event_ids
                .iter()
                .filter_map(|id| world.event_lookup.get(id))
                .filter_map(|event| world.events.get(*event as usize))
                .flat_map(|event| event.markets.iter().copied())
                .collect::<Vec<u32>>(),
        )
    } else {
        None
    };
    let wallet = match params.get(&["user"]) {
        None => None,
        Some(address) => {
            if !(address.len() == 42 && address.starts_with("0x")) {
                return Err(format!("invalid user address {address:?}"));
            }
            // An unknown wallet matches nothing.
            Some(wallet_index(world, address).unwrap_or(u32::MAX))
        }
    };
    let side = match params.get(&["side"]) {
        None => None,
        Some(text) => Some(Side::parse(text).ok_or_else(|| format!("invalid side {text:?}"))?),
    };
    let start_seconds = params
        .integer(&["start"])
        .map_err(|text| format!("invalid start {text:?}"))?;
    let end_seconds = params
        .integer(&["end"])
        .map_err(|text| format!("invalid end {text:?}"))?;
    let taker_only = params.bool(&["takerOnly", "taker_only"]).unwrap_or(true);
    Ok(TradeFilter {
        markets,
        wallet,
        side,
        start_seconds,
        end_seconds: end_seconds.filter(|end| *end > 0),
        taker_only,
    })
}

fn v1_trade_row(world: &World, fill: &FillRecord) -> Value {
    let market = &world.markets[fill.market as usize];
    let event_slug = world
        .event_of(market)
        .map(|event| event.slug.clone())
        .unwrap_or_default();
    let wallet = &world.wallets[fill.wallet as usize];
    json!({
        "proxyWallet": wallet.address,
        "side": fill.side.name(),
        "asset": market.token_ids[usize::from(fill.token)],
        "conditionId": market.condition_id,
        "size": size_float(fill.size),
        "price": price_float_with_artefacts(fill.price, fill.size),
        "timestamp": fill.ts_ms.div_euclid(1_000),
        "title": market.question,
        "slug": market.slug,
        "icon": market.image,
        "eventSlug": event_slug,
        "outcome": market.outcomes[usize::from(fill.token)],
        "outcomeIndex": fill.token,
        "name": wallet.name,
        "pseudonym": wallet.pseudonym,
        "bio": "",
        "profileImage": "",
        "profileImageOptimized": "",
        "transactionHash": format!("0x{}", hex::encode(world.tx_hashes[fill.tx as usize])),
    })
}

fn v2_trade_row(world: &World, fill: &FillRecord) -> Value {
    let market = &world.markets[fill.market as usize];
    let event_slug = world
        .event_of(market)
        .map(|event| event.slug.clone())
        .unwrap_or_default();
    let wallet = &world.wallets[fill.wallet as usize];
    json!({
        "proxy_wallet": wallet.address,
        "side": fill.side.name(),
        "token_id": market.token_ids[usize::from(fill.token)],
        "condition_id": market.condition_id,
        "size": size_float(fill.size),
        "price": price_float(fill.price),
        "timestamp": fill.ts_ms.div_euclid(1_000),
        "title": market.question,
        "slug": market.slug,
        "icon": market.image,
        "event_slug": event_slug,
        "outcome": market.outcomes[usize::from(fill.token)],
        "outcome_index": fill.token,
        "name": wallet.name,
        "pseudonym": wallet.pseudonym,
        "bio": "",
        "profile_image": "",
        "profile_image_optimized": "",
        "transaction_hash": format!("0x{}", hex::encode(world.tx_hashes[fill.tx as usize])),
    })
}

/// `GET /data/trades` (v1).
pub(crate) async fn trades(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let limit = match params.integer(&["limit"]) {
        Ok(limit) => limit.unwrap_or(V1_DEFAULT_LIMIT),
        Err(text) => {
            return error_response(StatusCode::BAD_REQUEST, &format!("invalid limit {text:?}"));
        }
    };
    let offset = match params.integer(&["offset"]) {
        Ok(offset) => offset.unwrap_or(0),
        Err(text) => {
            return error_response(StatusCode::BAD_REQUEST, &format!("invalid offset {text:?}"));
        }
    };
    if !(0..=V1_MAX_LIMIT).contains(&limit) {
        return error_response(StatusCode::BAD_REQUEST, "limit must be between 0 and 10000");
    }
    if !(0..=V1_MAX_OFFSET).contains(&offset) {
        return error_response(
            StatusCode::BAD_REQUEST,
            "offset must be between 0 and 10000",
        );
    }
    let shared = state.read();
    let world = &shared.world;
    let filter = match parse_filter(world, &params, false) {
        Ok(filter) => filter,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    let tape = TapeFaults::new(&state, "/data/trades");
    let rows: Vec<Value> = positions_newest_first(world, filter.markets.as_deref(), None)
        .filter(|position| !tape.hides(world, *position))
        .map(|position| &world.fills[position as usize])
        .filter(|fill| filter.accepts(fill))
        .skip(usize::try_from(offset).unwrap_or(0))
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|fill| tape.served(fill, v1_trade_row(world, fill)))
        .collect();
    tape.count(&state);
    json_ok(&Value::Array(rows))
}

/// The fill-selecting faults of one trades request: fills not indexed yet are left out (see
/// `faults::LateIndex`), poisoned fills are served broken (see `faults::Poison`), and how
/// many of each is counted in `/_sim/stats`.
struct TapeFaults {
    endpoint: &'static str,
    rules: Vec<crate::faults::LateIndex>,
    poison: Vec<crate::faults::Poison>,
    now_ms: i64,
    hidden: std::cell::Cell<u64>,
    poisoned: std::cell::Cell<u64>,
}

impl TapeFaults {
    fn new(state: &SimState, endpoint: &'static str) -> TapeFaults {
        TapeFaults {
            endpoint,
            rules: state.faults.late_index(endpoint),
            poison: state.faults.poison(endpoint),
            now_ms: state.sim_now_ms(),
            hidden: std::cell::Cell::new(0),
            poisoned: std::cell::Cell::new(0),
        }
    }

    /// The row as served: broken when its transaction is poisoned.
    fn served(&self, fill: &FillRecord, mut row: Value) -> Value {
        if self
            .poison
            .iter()
            .any(|rule| rule.selects(u64::from(fill.tx)))
        {
            crate::faults::poison_trade_row(&mut row);
            self.poisoned.set(self.poisoned.get() + 1);
        }
        row
    }

    fn hides(&self, world: &World, position: u32) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        let timestamp_ms = world.fills[position as usize].ts_ms;
        let hidden = self
            .rules
            .iter()
            .any(|rule| rule.hides(u64::from(position), timestamp_ms, self.now_ms));
        if hidden {
            self.hidden.set(self.hidden.get() + 1);
        }
        hidden
    }

    fn count(&self, state: &SimState) {
        let hidden = self.hidden.get();
        let poisoned = self.poisoned.get();
        if hidden > 0 || poisoned > 0 {
            state.stats.endpoint(self.endpoint, |stats| {
                if hidden > 0 {
                    *stats.faults.entry("late_index").or_default() += hidden;
                }
                if poisoned > 0 {
                    *stats.faults.entry("poison").or_default() += poisoned;
                }
            });
        }
    }
}

/// A v2 error body with upstream's fields.
pub(crate) fn v2_error(
    state: &SimState,
    status: StatusCode,
    code: &str,
    message: &str,
    parameter: Option<&str>,
) -> Response {
    let trace_id = state.next_trace_id();
    let mut response = json_value(
        status,
        &json!({
            "error": message,
            "code": code,
            "retryable": matches!(status.as_u16(), 429 | 500 | 503),
            "trace_id": trace_id,
            "parameter": parameter,
        }),
    );
    // The same trace id in the header and the body.
    if let Ok(value) = trace_id.parse() {
        response.headers_mut().insert("x-trace-id", value);
    }
    response
}

fn cursor_signature(seed: u64, payload: &str) -> String {
    let digest = Sha1::digest(format!("polymarket-sim:{seed}:{payload}").as_bytes());
    hex::encode(&digest[..8])
}

fn encode_v2_cursor(seed: u64, before: u32, limit: i64, count: u64) -> String {
    let payload = URL_SAFE_NO_PAD.encode(format!(
        "{{\"v\":1,\"pos\":{before},\"limit\":{limit},\"n\":{count}}}"
    ));
    let signature = cursor_signature(seed, &payload);
    format!("{payload}.{signature}")
}

fn decode_v2_cursor(seed: u64, cursor: &str) -> Option<(u32, i64, u64)> {
    let (payload, signature) = cursor.split_once('.')?;
    if cursor_signature(seed, payload) != signature {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    Some((
        u32::try_from(value.get("pos")?.as_u64()?).ok()?,
        value.get("limit")?.as_i64()?,
        value.get("n")?.as_u64()?,
    ))
}

/// `GET /data/v2/trades`: cursor-only, `{data, pagination}`.
pub(crate) async fn trades_v2(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    if params.has(&["offset"]) {
        return v2_error(
            &state,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "offset pagination is not supported; use cursor",
            Some("offset"),
        );
    }
    let requested_limit = match params.integer(&["limit"]) {
        Ok(limit) => limit.unwrap_or(V2_DEFAULT_LIMIT),
        Err(_) => {
            return v2_error(
                &state,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "invalid limit",
                Some("limit"),
            );
        }
    };
    if !(1..=V2_MAX_LIMIT).contains(&requested_limit) {
        return v2_error(
            &state,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "limit must be between 1 and 1000",
            Some("limit"),
        );
    }
    let cursor = match params.get(&["cursor", "next_cursor", "after_cursor"]) {
        None | Some("") => None,
        Some(text) => match decode_v2_cursor(state.config.seed, text) {
            Some(cursor) => Some(cursor),
            None => {
                return v2_error(
                    &state,
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "invalid cursor",
                    Some("cursor"),
                );
            }
        },
    };
    // The cursor's page size wins over `limit` after the first page.
    let (before, limit, count_before) = match cursor {
        Some((before, limit, count)) => (Some(before), limit, count),
        None => (None, requested_limit, 0),
    };
    let shared = state.read();
    let world = &shared.world;
    let filter = match parse_filter(world, &params, true) {
        Ok(filter) => filter,
        Err(message) => {
            return v2_error(
                &state,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &message,
                None,
            );
        }
    };
    let page_size = usize::try_from(limit).unwrap_or(100);
    let tape = TapeFaults::new(&state, "/data/v2/trades");
    let mut page: Vec<u32> = positions_newest_first(world, filter.markets.as_deref(), before)
        .filter(|position| !tape.hides(world, *position))
        .filter(|position| filter.accepts(&world.fills[*position as usize]))
        .take(page_size + 1)
        .collect();
    let has_more = page.len() > page_size;
    page.truncate(page_size);
    let rows: Vec<Value> = page
        .iter()
        .map(|position| {
            let fill = &world.fills[*position as usize];
            tape.served(fill, v2_trade_row(world, fill))
        })
        .collect();
    tape.count(&state);
    let returned = count_before + rows.len() as u64;
    let next_cursor = match (has_more, page.last()) {
        (true, Some(last)) => {
            Value::String(encode_v2_cursor(state.config.seed, *last, limit, returned))
        }
        _ => Value::Null,
    };
    let mut response = json_ok(&json!({
        "data": rows,
        "pagination": {"limit": limit, "offset": count_before, "has_more": has_more, "next_cursor": next_cursor},
    }));
    if let Ok(value) = state.next_trace_id().parse() {
        response.headers_mut().insert("x-trace-id", value);
    }
    response
}

/// `GET /data/v1/leaderboard`.
pub(crate) async fn leaderboard(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let limit = params.integer(&["limit"]).ok().flatten().unwrap_or(25);
    let offset = params.integer(&["offset"]).ok().flatten().unwrap_or(0);
    if !(1..=50).contains(&limit) || !(0..=1_000).contains(&offset) {
        return error_response(
            StatusCode::BAD_REQUEST,
            "limit must be 1..50 and offset 0..1000",
        );
    }
    let by_volume = params
        .get(&["orderBy"])
        .is_some_and(|order| order.eq_ignore_ascii_case("VOL"));
    let shared = state.read();
    let world = &shared.world;
    let clock = world.world_clock_ms;
    let since = match params
        .get(&["timePeriod"])
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("DAY") => clock - DAY_MS,
        Some("WEEK") => clock - 7 * DAY_MS,
        Some("MONTH") => clock - 30 * DAY_MS,
        _ => i64::MIN,
    };
    // Per wallet: traded volume, cash flow and positions (valued at the last trade price).
    let mut volume: BTreeMap<u32, f64> = BTreeMap::new();
    let mut cash: BTreeMap<u32, f64> = BTreeMap::new();
    let mut positions: BTreeMap<(u32, u32, u8), f64> = BTreeMap::new();
    for fill in world.fills.iter().filter(|fill| fill.ts_ms >= since) {
        let notional = size_float(fill.size) * price_float(fill.price);
        *volume.entry(fill.wallet).or_default() += notional;
        let signed = if fill.side == Side::Buy { 1.0 } else { -1.0 };
        *cash.entry(fill.wallet).or_default() -= signed * notional;
        *positions
            .entry((fill.wallet, fill.market, fill.token))
            .or_default() += signed * size_float(fill.size);
    }
    let mut pnl: BTreeMap<u32, f64> = cash;
    for ((wallet, market, token), shares) in positions {
        let Some(book) = world.books.get(market as usize) else {
            continue;
        };
        let yes_price = price_float(book.last_trade);
        let price = if token == 0 {
            yes_price
        } else {
            1.0 - yes_price
        };
        *pnl.entry(wallet).or_default() += shares * price;
    }
    let user = params.get(&["user"]).map(str::to_ascii_lowercase);
    let mut ranked: Vec<(u32, f64, f64)> = volume
        .iter()
        .map(|(wallet, volume)| (*wallet, *volume, pnl.get(wallet).copied().unwrap_or(0.0)))
        .collect();
    ranked.sort_by(|left, right| {
        let (left_key, right_key) = if by_volume {
            (left.1, right.1)
        } else {
            (left.2, right.2)
        };
        right_key.total_cmp(&left_key).then(left.0.cmp(&right.0))
    });
    let rows: Vec<Value> = ranked
        .iter()
        .enumerate()
        .filter(|(_, (wallet, _, _))| {
            user.as_ref()
                .is_none_or(|user| *user == world.wallets[*wallet as usize].address)
        })
        .skip(usize::try_from(offset).unwrap_or(0))
        .take(usize::try_from(limit).unwrap_or(25))
        .map(|(rank, (wallet, volume, pnl))| {
            let info = &world.wallets[*wallet as usize];
            json!({
                "rank": (rank + 1).to_string(),
                "proxyWallet": info.address,
                "userName": info.name,
                "vol": volume,
                "pnl": pnl,
                "profileImage": "",
                "xUsername": "",
                "verifiedBadge": false,
            })
        })
        .collect();
    json_ok(&Value::Array(rows))
}

/// `GET /data/holders`.
pub(crate) async fn holders(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let condition_ids = params.list(&["market"]);
    if condition_ids.is_empty() {
        return error_response(StatusCode::BAD_REQUEST, "market is required");
    }
    let limit = params.integer(&["limit"]).ok().flatten().unwrap_or(20);
    if !(0..=20).contains(&limit) {
        return error_response(StatusCode::BAD_REQUEST, "limit must be between 0 and 20");
    }
    let min_balance = params
        .get(&["minBalance"])
        .and_then(|text| text.parse::<f64>().ok())
        .unwrap_or(1.0);
    let shared = state.read();
    let world = &shared.world;
    let mut tokens_out = Vec::new();
    for condition_id in condition_ids {
        let Some(market) = world
            .condition_lookup
            .get(&condition_id.to_ascii_lowercase())
            .copied()
        else {
            continue;
        };
        let info = &world.markets[market as usize];
        let mut balances: [BTreeMap<u32, i128>; 2] = [BTreeMap::new(), BTreeMap::new()];
        for position in world
            .fills_by_market
            .get(market as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let fill = &world.fills[*position as usize];
            let signed = if fill.side == Side::Buy {
                i128::from(fill.size)
            } else {
                -i128::from(fill.size)
            };
            *balances[usize::from(fill.token)]
                .entry(fill.wallet)
                .or_default() += signed;
        }
        for (token, token_balances) in balances.iter().enumerate() {
            let mut holders: Vec<(u32, f64)> = token_balances
                .iter()
                .map(|(wallet, micros)| (*wallet, *micros as f64 / 1_000_000.0))
                .filter(|(_, amount)| *amount >= min_balance)
                .collect();
            holders.sort_by(|left, right| right.1.total_cmp(&left.1).then(left.0.cmp(&right.0)));
            let rows: Vec<Value> = holders
                .iter()
                .take(usize::try_from(limit).unwrap_or(20))
                .map(|(wallet, amount)| {
                    let wallet_info = &world.wallets[*wallet as usize];
                    json!({
                        "proxyWallet": wallet_info.address,
                        "bio": "",
                        "asset": info.token_ids[token],
                        "pseudonym": wallet_info.pseudonym,
                        "amount": amount,
                        "displayUsernamePublic": !wallet_info.name.is_empty(),
                        "outcomeIndex": token,
                        "name": wallet_info.name,
                        "profileImage": "",
                        "profileImageOptimized": "",
                        "verified": false,
                    })
                })
                .collect();
            tokens_out.push(json!({"token": info.token_ids[token], "holders": rows}));
        }
    }
    json_ok(&Value::Array(tokens_out))
}

/// A wallet's holding of one token, from its fills.
#[derive(Debug, Default, Clone, Copy)]
struct Holding {
    net_micros: i128,
    bought_micros: u128,
    bought_cost: f64,
    sold_proceeds: f64,
}

fn holdings_of(
    world: &World,
    wallet: u32,
    markets: Option<&[u32]>,
) -> BTreeMap<(u32, u8), Holding> {
    let mut holdings: BTreeMap<(u32, u8), Holding> = BTreeMap::new();
    for position in positions_newest_first(world, markets, None) {
        let fill = &world.fills[position as usize];
        if fill.wallet != wallet {
            continue;
        }
        let holding = holdings.entry((fill.market, fill.token)).or_default();
        let notional = size_float(fill.size) * price_float(fill.price);
        match fill.side {
            Side::Buy => {
                holding.net_micros += i128::from(fill.size);
                holding.bought_micros += u128::from(fill.size);
                holding.bought_cost += notional;
            }
            Side::Sell => {
                holding.net_micros -= i128::from(fill.size);
                holding.sold_proceeds += notional;
            }
        }
    }
    holdings
}

/// The current price of a token: 1/0 once resolved, else the last trade.
fn current_price(world: &World, market: u32, token: u8) -> f64 {
    let Some(info) = world.markets.get(market as usize) else {
        return 0.0;
    };
    if let Some(winner) = info.winner.filter(|_| info.is_closed()) {
        return if winner == token { 1.0 } else { 0.0 };
    }
    let yes = world
        .books
        .get(market as usize)
        .map_or(0.5, |book| price_float(book.last_trade));
    if token == 0 { yes } else { 1.0 - yes }
}

fn markets_scope(world: &World, params: &QueryParams) -> Option<Vec<u32>> {
    let condition_ids = params.list(&["market"]);
    let event_ids = params.list(&["eventId"]);
    if !condition_ids.is_empty() {
        return Some(
            condition_ids
                .iter()
                .filter_map(|id| {
                    world
                        .condition_lookup
                        .get(&id.to_ascii_lowercase())
                        .copied()
                })
                .collect(),
        );
    }
    if !event_ids.is_empty() {
        return Some(
            event_ids
                .iter()
                .filter_map(|id| world.event_lookup.get(id))
                .filter_map(|event| world.events.get(*event as usize))
                .flat_map(|event| event.markets.iter().copied())
                .collect(),
        );
    }
    None
}

fn required_wallet(world: &World, params: &QueryParams) -> Result<u32, Box<Response>> {
    match params.get(&["user"]) {
        None => Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            "user is required",
        ))),
        Some(address) if address.len() == 42 && address.starts_with("0x") => {
            Ok(wallet_index(world, address).unwrap_or(u32::MAX))
        }
        Some(address) => Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            &format!("invalid user address {address:?}"),
        ))),
    }
}

/// `GET /data/positions?user=` (v1).
pub(crate) async fn positions(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let limit = params.integer(&["limit"]).ok().flatten().unwrap_or(100);
    let offset = params.integer(&["offset"]).ok().flatten().unwrap_or(0);
    if !(0..=500).contains(&limit) || !(0..=10_000).contains(&offset) {
        return error_response(
            StatusCode::BAD_REQUEST,
            "limit must be 0..500 and offset 0..10000",
        );
    }
    let threshold = params
        .get(&["sizeThreshold"])
        .and_then(|text| text.parse::<f64>().ok())
        .unwrap_or(1.0);
    let shared = state.read();
    let world = &shared.world;
    let wallet = match required_wallet(world, &params) {
        Ok(wallet) => wallet,
        Err(response) => return *response,
    };
    let scope = markets_scope(world, &params);
    let address = world
        .wallets
        .get(wallet as usize)
        .map(|info| info.address.clone())
        .unwrap_or_default();
    let rows: Vec<Value> = holdings_of(world, wallet, scope.as_deref())
        .into_iter()
        .filter(|(_, holding)| holding.net_micros as f64 / 1_000_000.0 >= threshold)
        .skip(usize::try_from(offset).unwrap_or(0))
        .take(usize::try_from(limit).unwrap_or(100))
        .map(|((market, token), holding)| {
            let info = &world.markets[market as usize];
            let size = holding.net_micros as f64 / 1_000_000.0;
            let bought = holding.bought_micros as f64 / 1_000_000.0;
            let average = if bought > 0.0 { holding.bought_cost / bought } else { 0.0 };
            let current = current_price(world, market, token);
            let initial_value = size * average;
            let current_value = size * current;
            let event = world.event_of(info);
            let opposite = usize::from(1 - token);
            json!({
                "proxyWallet": address,
                "asset": info.token_ids[usize::from(token)],
                "conditionId": info.condition_id,
                "size": size,
                "avgPrice": average,
                "initialValue": initial_value,
                "currentValue": current_value,
                "cashPnl": current_value - initial_value,
                "percentPnl": if initial_value > 0.0 { (current_value - initial_value) / initial_value * 100.0 } else { 0.0 },
                "totalBought": bought,
                "realizedPnl": 0.0,
                "percentRealizedPnl": 0.0,
                "curPrice": current,
                "redeemable": info.is_closed(),
                "mergeable": false,
                "title": info.question,
                "slug": info.slug,
                "icon": info.image,
                "eventSlug": event.map(|event| event.slug.clone()).unwrap_or_default(),
                "eventId": event.map(|event| event.id.clone()).unwrap_or_default(),
                "outcome": info.outcomes[usize::from(token)],
                "outcomeIndex": token,
                "oppositeOutcome": info.outcomes[opposite],
                "oppositeAsset": info.token_ids[opposite],
                "endDate": crate::http::iso_date(info.end_ms),
                "negativeRisk": info.neg_risk,
            })
        })
        .collect();
    json_ok(&Value::Array(rows))
}

/// `GET /data/value?user=` → `[{"user","value"}]`.
pub(crate) async fn value(State(state): State<Arc<SimState>>, RawQuery(raw): RawQuery) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let shared = state.read();
    let world = &shared.world;
    let wallet = match required_wallet(world, &params) {
        Ok(wallet) => wallet,
        Err(response) => return *response,
    };
    let scope = markets_scope(world, &params);
    let total: f64 = holdings_of(world, wallet, scope.as_deref())
        .into_iter()
        .filter(|(_, holding)| holding.net_micros > 0)
        .map(|((market, token), holding)| {
            holding.net_micros as f64 / 1_000_000.0 * current_price(world, market, token)
        })
        .sum();
    let address = params
        .get(&["user"])
        .unwrap_or_default()
        .to_ascii_lowercase();
    json_ok(&json!([{"user": address, "value": total}]))
}

/// `GET /data/oi?market=csv` → `[{"market","value"}]`; without `market`, one `"GLOBAL"` row.
/// Open interest = shares of YES held (positive balances), valued at $1 per pair.
pub(crate) async fn open_interest(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let shared = state.read();
    let world = &shared.world;
    let market_oi = |market: u32| -> f64 {
        let mut balances: BTreeMap<u32, i128> = BTreeMap::new();
        for position in world
            .fills_by_market
            .get(market as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let fill = &world.fills[*position as usize];
            if fill.token != 0 {
                continue;
            }
            let signed = if fill.side == Side::Buy {
                i128::from(fill.size)
            } else {
                -i128::from(fill.size)
            };
            *balances.entry(fill.wallet).or_default() += signed;
        }
        balances
            .values()
            .filter(|balance| **balance > 0)
            .map(|balance| *balance as f64 / 1_000_000.0)
            .sum()
    };
    match markets_scope(world, &params) {
        Some(markets) => {
            let rows: Vec<Value> = markets
                .iter()
                .filter_map(|market| world.markets.get(*market as usize))
                .map(|info| json!({"market": info.condition_id, "value": market_oi(info.index)}))
                .collect();
            json_ok(&Value::Array(rows))
        }
        None => {
            let total: f64 = world.markets.iter().map(|info| market_oi(info.index)).sum();
            json_ok(&json!([{"market": "GLOBAL", "value": total}]))
        }
    }
}

/// `GET /data/activity?user=` (v1): the wallet's fills as `TRADE` rows, newest first.
pub(crate) async fn activity(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let limit = params.integer(&["limit"]).ok().flatten().unwrap_or(100);
    let offset = params.integer(&["offset"]).ok().flatten().unwrap_or(0);
    if !(0..=500).contains(&limit) || !(0..=10_000).contains(&offset) {
        return error_response(
            StatusCode::BAD_REQUEST,
            "limit must be 0..500 and offset 0..10000",
        );
    }
    let types = params.list(&["type"]);
    if !types.is_empty() && !types.iter().any(|kind| kind.eq_ignore_ascii_case("TRADE")) {
        return json_ok(&json!([]));
    }
    let ascending = params
        .get(&["sortDirection"])
        .is_some_and(|direction| direction.eq_ignore_ascii_case("ASC"));
    let shared = state.read();
    let world = &shared.world;
    let wallet = match required_wallet(world, &params) {
        Ok(wallet) => wallet,
        Err(response) => return *response,
    };
    let mut filter = match parse_filter(world, &params, false) {
        Ok(filter) => filter,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    filter.taker_only = false;
    filter.wallet = Some(wallet);
    let mut positions: Vec<u32> = positions_newest_first(world, filter.markets.as_deref(), None)
        .filter(|position| filter.accepts(&world.fills[*position as usize]))
        .collect();
    if ascending {
        positions.reverse();
    }
    let rows: Vec<Value> = positions
        .iter()
        .skip(usize::try_from(offset).unwrap_or(0))
        .take(usize::try_from(limit).unwrap_or(100))
        .map(|position| {
            let fill = &world.fills[*position as usize];
            let mut row = v1_trade_row(world, fill);
            if let Some(object) = row.as_object_mut() {
                object.insert("type".to_owned(), json!("TRADE"));
                object.insert(
                    "usdcSize".to_owned(),
                    json!(size_float(fill.size) * price_float(fill.price)),
                );
                object.insert("price".to_owned(), json!(price_float(fill.price)));
            }
            row
        })
        .collect();
    json_ok(&Value::Array(rows))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

    use crate::{RunningSim, SimConfig, start};

    /// Six markets, no history, no live operations of its own: a test advances it by hand,
    /// stamping operations at the wall clock.
    async fn small_world_stepped_by_hand() -> RunningSim {
        start(SimConfig {
            port: 0,
            rate: 0.0,
            markets: 6,
            history_days: 0,
            lifecycle_every: 0,
            advance_at_wall_clock: true,
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts")
    }

    async fn get(client: &reqwest::Client, url: String) -> Value {
        let response = client.get(&url).send().await.expect("request");
        assert_eq!(response.status().as_u16(), 200, "{url}");
        response.json().await.expect("json")
    }

    /// `late_index`: every Nth fill of the tape is missing from `/data/trades` until its
    /// timestamp plus the delay, then served like any other; the truth lists it all along, and
    /// the other tapes (here v2, not targeted) are unaffected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn late_indexed_fills_appear_after_their_delay_and_the_truth_has_them_all() {
        let sim = small_world_stepped_by_hand().await;
        sim.add_faults("late_index@/data/trades:delay=4s,every=5")
            .expect("spec");
        let base = sim.base_url();
        let client = reqwest::Client::new();
        let before = get(&client, format!("{base}/_sim/truth/fills?limit=1")).await;
        let first_seq = before["total_fills"].as_u64().expect("total_fills");
        sim.advance(500);
        let truth = get(&client, format!("{base}/_sim/truth/fills?limit=200000")).await;
        let fills = truth["fills"].as_array().expect("fills");
        // The advanced operations' fills are stamped from now (older ones, if the world
        // starts with any, are long visible).
        let recent: Vec<&Value> = fills
            .iter()
            .filter(|fill| fill["seq"].as_u64().expect("seq") >= first_seq)
            .collect();
        assert!(recent.len() >= 20, "{} recent fills", recent.len());
        let late = recent
            .iter()
            .filter(|fill| (fill["seq"].as_u64().expect("seq") + 1).is_multiple_of(5))
            .count();
        let newest_ms = recent
            .iter()
            .map(|fill| fill["timestamp_ms"].as_i64().expect("timestamp_ms"))
            .max()
            .expect("a fill");
        assert!(
            newest_ms < polytape_model::now_ms() + 2_000,
            "stamped 1 ms apart from now"
        );
        let v1 = format!("{base}/data/trades?takerOnly=false&limit=10000");
        let served = get(&client, v1.clone()).await;
        assert_eq!(
            served.as_array().expect("array").len(),
            fills.len() - late,
            "every 5th fill is not indexed yet"
        );
        let v2 = get(
            &client,
            format!("{base}/data/v2/trades?taker_only=false&limit=1000"),
        )
        .await;
        assert_eq!(v2["data"].as_array().expect("data").len(), fills.len());
        let stats = get(&client, format!("{base}/_sim/stats")).await;
        assert_eq!(
            stats["endpoints"]["/data/trades"]["faults"]["late_index"].as_u64(),
            Some(late as u64)
        );

        // Once the delay passed, the tape holds every fill.
        let wait_ms = newest_ms + 4_200 - polytape_model::now_ms();
        tokio::time::sleep(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))).await;
        let served = get(&client, v1).await;
        assert_eq!(served.as_array().expect("array").len(), fills.len());
        let again = get(&client, format!("{base}/_sim/truth/fills?limit=200000")).await;
        assert_eq!(again["fills"], truth["fills"], "the truth is unchanged");
        sim.shutdown().await;
    }
    /// `poison`: the fills of every 7th transaction are served broken (price 1.5) on every
    /// read of the targeted tape, all fills of a transaction alike; the truth marks exactly
    /// those fills, and the other tape (v2, not targeted) serves them intact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn poisoned_transactions_are_served_broken_on_every_read_and_marked_in_the_truth() {
        let sim = small_world_stepped_by_hand().await;
        sim.add_faults("poison@/data/trades:every=7").expect("spec");
        let base = sim.base_url();
        let client = reqwest::Client::new();
        sim.advance(500);
        let truth = get(&client, format!("{base}/_sim/truth/fills?limit=200000")).await;
        let fills = truth["fills"].as_array().expect("fills");
        let key = |row: &Value, hash: &str, asset: &str, wallet: &str| {
            format!(
                "{}|{}|{}|{}|{}",
                row[hash].as_str().expect("hash"),
                row[asset].as_str().expect("asset"),
                row[wallet].as_str().expect("wallet"),
                row["side"].as_str().expect("side"),
                row["timestamp"].as_i64().expect("timestamp"),
            )
        };
        let mut poisoned_truth = std::collections::BTreeMap::<String, usize>::new();
        let mut by_transaction = std::collections::BTreeMap::<&str, Vec<bool>>::new();
        for fill in fills {
            let poisoned = fill["poisoned"].as_bool().expect("poisoned");
            by_transaction
                .entry(fill["transactionHash"].as_str().expect("hash"))
                .or_default()
                .push(poisoned);
            if poisoned {
                *poisoned_truth
                    .entry(key(fill, "transactionHash", "asset", "proxyWallet"))
                    .or_default() += 1;
            }
        }
        let poisoned_count: usize = poisoned_truth.values().sum();
        assert!(
            poisoned_count >= 10 && poisoned_count < fills.len() / 3,
            "{poisoned_count} of {} fills poisoned",
            fills.len()
        );
        assert!(
            by_transaction
                .values()
                .all(|fates| fates.iter().all(|fate| *fate == fates[0])),
            "a transaction's fills are poisoned together"
        );
        let v1 = format!("{base}/data/trades?takerOnly=false&limit=10000");
        for _read in 0..2 {
            let served = get(&client, v1.clone()).await;
            let rows = served.as_array().expect("array");
            assert_eq!(rows.len(), fills.len(), "a poisoned fill is served, broken");
            let mut poisoned_served = std::collections::BTreeMap::<String, usize>::new();
            for row in rows {
                let price = row["price"].as_f64().expect("a number");
                if price > 1.0 {
                    assert_eq!(price, 1.5);
                    *poisoned_served
                        .entry(key(row, "transactionHash", "asset", "proxyWallet"))
                        .or_default() += 1;
                } else {
                    assert!(price > 0.0, "{row}");
                }
            }
            assert_eq!(poisoned_served, poisoned_truth, "every read, the same rows");
        }
        let v2 = get(
            &client,
            format!("{base}/data/v2/trades?taker_only=false&limit=1000"),
        )
        .await;
        assert!(
            v2["data"]
                .as_array()
                .expect("data")
                .iter()
                .all(|row| row["price"].as_f64().is_some_and(|price| price <= 1.0)),
            "the untargeted tape is intact"
        );
        let stats = get(&client, format!("{base}/_sim/stats")).await;
        assert_eq!(
            stats["endpoints"]["/data/trades"]["faults"]["poison"].as_u64(),
            Some(2 * poisoned_count as u64)
        );
        sim.shutdown().await;
    }
}
