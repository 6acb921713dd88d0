//! Gamma API (`/gamma/...`): markets and events as upstream serves them, with JSON-encoded
//! string fields (`outcomes`, `outcomePrices`, `clobTokenIds`, `umaResolutionStatuses`),
//! string-vs-number fields exactly as captured, offset and keyset pagination.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::book::BookSide;
use crate::fixed::{PRICE_UNITS_PER_ONE, price_float, price_text};
use crate::http::{QueryParams, iso_date, iso_micros, iso_seconds, json_ok, json_value};
use crate::state::SimState;
use crate::world::{DAY_MS, EventInfo, MarketInfo, ProtocolVersion, World};

const MAX_LIMIT: i64 = 500;
const KEYSET_MAX_LIMIT: i64 = 100;
const DEFAULT_LIMIT: i64 = 20;

fn json_encoded_strings(items: &[String]) -> String {
    // Upstream's encoding puts a space after each comma: "[\"Yes\", \"No\"]".
    let quoted: Vec<String> = items
        .iter()
        .map(|item| Value::String(item.clone()).to_string())
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// Current Gamma-side price facts of a market (YES terms).
struct MarketPrices {
    best_bid: Option<u32>,
    best_ask: Option<u32>,
    last_trade: u32,
    liquidity_micros: u128,
}

fn market_prices(world: &World, market: &MarketInfo) -> MarketPrices {
    let Some(book) = world.books.get(market.index as usize) else {
        return MarketPrices {
            best_bid: None,
            best_ask: None,
            last_trade: market.initial_fair,
            liquidity_micros: 0,
        };
    };
    let mut liquidity_micros: u128 = 0;
    for side in [BookSide::Bid, BookSide::Ask] {
        for (price, size) in book.levels(side) {
            liquidity_micros +=
                u128::from(size) * u128::from(price) / u128::from(PRICE_UNITS_PER_ONE);
        }
    }
    MarketPrices {
        best_bid: book.best_bid(),
        best_ask: book.best_ask(),
        last_trade: book.last_trade,
        liquidity_micros,
    }
}

fn micros_text(micros: u128, decimals: u32) -> String {
    let divisor = 10u128.pow(6 - decimals);
    let value = micros / divisor;
    let scale = 10u128.pow(decimals);
    let whole = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let mut text = format!("{whole}.{fraction:0width$}", width = decimals as usize);
    while text.ends_with('0') {
        text.pop();
    }
    text
}

/// Volumes of a market as of the world clock: (total float, total micros, 24h, 1w, 1mo, 1y).
fn volumes(world: &World, market: u32) -> (f64, u128, f64, f64, f64, f64) {
    let clock = world.world_clock_ms;
    let (total_float, total_micros) = world.volume_between(market, i64::MIN, clock);
    let window = |days: i64| world.volume_between(market, clock - days * DAY_MS, clock).0;
    (
        total_float,
        total_micros,
        window(1),
        window(7),
        window(30),
        window(365),
    )
}

pub(crate) fn market_json(world: &World, market: &MarketInfo, with_events: bool) -> Value {
    let prices = market_prices(world, market);
    let closed = market.is_closed();
    let (volume_float, volume_micros, volume_day, volume_week, volume_month, volume_year) =
        volumes(world, market.index);
    let outcome_prices = match (closed, market.winner) {
        (true, Some(0)) => vec!["1".to_owned(), "0".to_owned()],
        (true, Some(_)) => vec!["0".to_owned(), "1".to_owned()],
        _ => {
            let yes = match (prices.best_bid, prices.best_ask) {
                (Some(bid), Some(ask)) => (bid + ask) / 2,
                _ => prices.last_trade,
            };
            vec![price_text(yes), price_text(PRICE_UNITS_PER_ONE - yes)]
        }
    };
    let liquidity_text = micros_text(prices.liquidity_micros, 4);
    let liquidity_float = prices.liquidity_micros as f64 / 1_000_000.0;
    let event = world.event_of(market);
    let spread = match (prices.best_bid, prices.best_ask) {
        // Crossed for the seconds of a planted binary window: a spread of 0.
        (Some(bid), Some(ask)) => price_float(ask.saturating_sub(bid)),
        _ => 1.0,
    };
    let mut row = json!({
        "id": market.gamma_id,
        "question": market.question,
        "conditionId": market.condition_id,
        "slug": market.slug,
        "resolutionSource": "",
        "endDate": iso_seconds(market.end_ms),
        "liquidity": liquidity_text,
        "startDate": iso_micros(market.start_ms),
        "image": market.image,
        "icon": market.image,
        "description": market.description,
        "outcomes": json_encoded_strings(&market.outcomes),
        "outcomePrices": json_encoded_strings(&outcome_prices),
        "volume": micros_text(volume_micros, 6),
        "active": true,
        "closed": closed,
        "marketMakerAddress": "",
        "createdAt": iso_micros(market.created_ms),
        "updatedAt": iso_micros(market.updated_ms.max(market.created_ms)),
        "new": false,
        "featured": false,
        "archived": false,
        "restricted": true,
        "groupItemThreshold": "0",
        "questionID": market.question_id,
        "enableOrderBook": true,
        "orderPriceMinTickSize": price_float(market.base_tick),
        "orderMinSize": market.min_order_size,
        "volumeNum": volume_float,
        "liquidityNum": liquidity_float,
        "endDateIso": iso_date(market.end_ms),
        "startDateIso": iso_date(market.start_ms),
        "hasReviewedDates": true,
        "volume24hr": volume_day,
        "volume1wk": volume_week,
        "volume1mo": volume_month,
        "volume1yr": volume_year,
        "volume24hrClob": volume_day,
        "volume1wkClob": volume_week,
        "volume1moClob": volume_month,
        "volume1yrClob": volume_year,
        "volumeClob": volume_float,
        "liquidityClob": liquidity_float,
        "acceptingOrders": !closed,
        "negRisk": market.neg_risk,
        "ready": false,
        "funded": false,
        "acceptingOrdersTimestamp": iso_seconds(market.start_ms),
        "cyom": false,
        "competitive": 1.0 / (1.0 + spread * 10.0),
        "pagerDutyNotificationEnabled": false,
        "approved": true,
        "rewardsMinSize": if market.rewards_daily_rate.is_some() { 50 } else { 0 },
        "rewardsMaxSpread": if market.rewards_daily_rate.is_some() { 3.5 } else { 0.0 },
        "lastTradePrice": price_float(prices.last_trade),
        "automaticallyActive": true,
        "clearBookOnStart": false,
        "showGmpSeries": false,
        "showGmpOutcome": false,
        "manualActivation": false,
        "negRiskOther": false,
        "umaResolutionStatuses": if closed { "[\"proposed\", \"resolved\"]" } else { "[]" },
        "pendingDeployment": false,
        "deploying": false,
        "rfqEnabled": false,
        "eventStartTime": iso_seconds(event.map_or(market.start_ms, |event| event.start_ms)),
        "holdingRewardsEnabled": false,
        "feesEnabled": market.fees_enabled,
        "requiresTranslation": false,
    });
    let Some(object) = row.as_object_mut() else {
        return row;
    };
    if !closed {
        object.insert("spread".to_owned(), json!(spread));
        if let Some(bid) = prices.best_bid {
            object.insert("bestBid".to_owned(), json!(price_float(bid)));
        }
        if let Some(ask) = prices.best_ask {
            object.insert("bestAsk".to_owned(), json!(price_float(ask)));
        }
        let day_ago = world.book_state_at(market.index, world.world_clock_ms - DAY_MS);
        if let Some(state) = day_ago {
            let change = price_float(prices.last_trade) - price_float(state.last_trade);
            object.insert("oneDayPriceChange".to_owned(), json!(change));
        }
    }
    match market.version {
        // Older rows carry no version at all; newer v1 rows say so.
        ProtocolVersion::V1Unlabelled => {
            object.insert(
                "clobTokenIds".to_owned(),
                json!(json_encoded_strings(&market.token_ids)),
            );
        }
        ProtocolVersion::V1 => {
            object.insert(
                "clobTokenIds".to_owned(),
                json!(json_encoded_strings(&market.token_ids)),
            );
            object.insert("version".to_owned(), json!("v1"));
        }
        ProtocolVersion::V2 => {
            object.insert("version".to_owned(), json!("v2"));
            object.insert("positionIds".to_owned(), json!(market.token_ids));
        }
    }
    if market.fees_enabled {
        object.insert(
            "feeSchedule".to_owned(),
            json!({"exponent": market.fee_exponent, "rate": market.fee_rate, "takerOnly": true, "rebateRate": 0.25}),
        );
    }
    if let Some(rate) = market.rewards_daily_rate {
        object.insert(
            "clobRewards".to_owned(),
            json!([{
                "id": (200_000 + market.index).to_string(),
                "conditionId": market.condition_id,
                "assetAddress": "0xc011a7e12a19f7b1f670d46f03b03f3342e82dfb",
                "rewardsAmount": 0,
                "rewardsDailyRate": rate,
                "startDate": iso_date(market.start_ms),
                "endDate": "2500-12-31",
            }]),
        );
    }
    if let Some(title) = &market.group_item_title {
        object.insert("groupItemTitle".to_owned(), json!(title));
    }
    if market.neg_risk
        && let Some(event) = event
        && let Some(neg_risk_id) = &event.neg_risk_market_id
    {
        object.insert("negRiskMarketID".to_owned(), json!(neg_risk_id));
        object.insert("negRiskRequestID".to_owned(), json!(market.question_id));
    }
    if closed {
        object.insert("umaResolutionStatus".to_owned(), json!("resolved"));
        if let Some(closed_ms) = market.closed_ms {
            object.insert(
                "closedTime".to_owned(),
                // Upstream writes this one in Postgres style: "2025-01-05 17:43:33+00".
                json!(iso_seconds(closed_ms).replace('T', " ").replace('Z', "+00")),
            );
        }
    }
    if with_events && let Some(event) = event {
        object.insert(
            "events".to_owned(),
            json!([event_json(world, event, false)]),
        );
    }
    row
}

pub(crate) fn event_json(world: &World, event: &EventInfo, with_markets: bool) -> Value {
    let closed = world.event_closed(event);
    let mut volume = 0.0;
    let mut volume_day = 0.0;
    let mut volume_week = 0.0;
    let mut volume_month = 0.0;
    let mut volume_year = 0.0;
    let mut liquidity = 0.0;
    for market in &event.markets {
        let (total, _, day, week, month, year) = volumes(world, *market);
        volume += total;
        volume_day += day;
        volume_week += week;
        volume_month += month;
        volume_year += year;
        if let Some(info) = world.markets.get(*market as usize) {
            liquidity += market_prices(world, info).liquidity_micros as f64 / 1_000_000.0;
        }
    }
    let updated_ms = event
        .markets
        .iter()
        .filter_map(|market| world.markets.get(*market as usize))
        .map(|market| market.updated_ms)
        .max()
        .unwrap_or(event.created_ms);
    let mut row = json!({
        "id": event.id,
        "ticker": event.slug,
        "slug": event.slug,
        "title": event.title,
        "description": event.description,
        "resolutionSource": "",
        "startDate": iso_seconds(event.start_ms),
        "creationDate": iso_seconds(event.created_ms),
        "endDate": iso_seconds(event.end_ms),
        "image": event.image,
        "icon": event.image,
        "active": true,
        "closed": closed,
        "archived": false,
        "new": false,
        "featured": false,
        "restricted": true,
        "liquidity": liquidity,
        "volume": volume,
        "openInterest": 0,
        "createdAt": iso_micros(event.created_ms),
        "updatedAt": iso_micros(updated_ms),
        "competitive": 0.9,
        "volume24hr": volume_day,
        "volume1wk": volume_week,
        "volume1mo": volume_month,
        "volume1yr": volume_year,
        "enableOrderBook": true,
        "liquidityClob": liquidity,
        "negRisk": event.neg_risk,
        "commentCount": event.comment_count,
        "series": [],
        "tags": [{"id": event.tag.0, "label": event.tag.1, "slug": event.tag.2}],
        "cyom": false,
        "showAllOutcomes": true,
        "showMarketImages": false,
        "enableNegRisk": event.neg_risk,
        "automaticallyActive": true,
        "startTime": iso_seconds(event.end_ms),
        "negRiskAugmented": false,
        "pendingDeployment": false,
        "deploying": false,
        "requiresTranslation": false,
    });
    if let Some(object) = row.as_object_mut() {
        if let Some(neg_risk_id) = &event.neg_risk_market_id {
            object.insert("negRiskMarketID".to_owned(), json!(neg_risk_id));
        }
        if let Some(series) = &event.series_slug {
            object.insert("seriesSlug".to_owned(), json!(series));
        }
        if with_markets {
            let markets: Vec<Value> = event
                .markets
                .iter()
                .filter_map(|market| world.markets.get(*market as usize))
                .map(|market| market_json(world, market, false))
                .collect();
            object.insert("markets".to_owned(), Value::Array(markets));
        }
    }
    row
}

fn validation_error(message: &str) -> Response {
    json_value(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({"type": "validation error", "error": message}),
    )
}

fn not_found(what: &str) -> Response {
    json_value(
        StatusCode::NOT_FOUND,
        &json!({"type": "not found", "error": format!("{what} not found")}),
    )
}

fn bad_request(message: &str) -> Response {
    json_value(
        StatusCode::BAD_REQUEST,
        &json!({"type": "bad request", "error": message}),
    )
}

/// Sort key of a market for `order=`.
fn market_sort_key(world: &World, market: &MarketInfo, field: &str) -> f64 {
    match field {
        "volume_num" | "volumeNum" | "volume" => volumes(world, market.index).0,
        "volume24hr" | "volume_24hr" => volumes(world, market.index).2,
        "liquidity_num" | "liquidityNum" | "liquidity" => {
            market_prices(world, market).liquidity_micros as f64
        }
        "start_date" | "startDate" => market.start_ms as f64,
        "end_date" | "endDate" => market.end_ms as f64,
        "created_at" | "createdAt" => market.created_ms as f64,
        _ => market.gamma_id.parse::<f64>().unwrap_or(0.0),
    }
}

fn order_fields(params: &QueryParams) -> Vec<String> {
    params.list(&["order"])
}

/// Filters and orders markets; `closed_default` applies when `closed` is absent.
fn select_markets(world: &World, params: &QueryParams, closed_default: Option<bool>) -> Vec<u32> {
    let closed = params.bool(&["closed"]).or(closed_default);
    let active = params.bool(&["active"]);
    let ids = params.list(&["id"]);
    let slugs = params.list(&["slug"]);
    let condition_ids: Vec<String> = params
        .list(&["condition_ids"])
        .iter()
        .map(|id| id.to_ascii_lowercase())
        .collect();
    let token_ids = params.list(&["clob_token_ids"]);
    let question_ids: Vec<String> = params
        .list(&["question_ids"])
        .iter()
        .map(|id| id.to_ascii_lowercase())
        .collect();
    let mut selected: Vec<&MarketInfo> = world
        .markets
        .iter()
        .filter(|market| closed.is_none_or(|closed| market.is_closed() == closed))
        .filter(|_| active.is_none_or(|active| active))
        .filter(|market| ids.is_empty() || ids.contains(&market.gamma_id))
        .filter(|market| slugs.is_empty() || slugs.contains(&market.slug))
        .filter(|market| condition_ids.is_empty() || condition_ids.contains(&market.condition_id))
        .filter(|market| question_ids.is_empty() || question_ids.contains(&market.question_id))
        .filter(|market| {
            token_ids.is_empty()
                || market
                    .token_ids
                    .iter()
                    .any(|token| token_ids.contains(token))
        })
        .collect();
    let fields = order_fields(params);
    let ascending = params.bool(&["ascending"]).unwrap_or(true);
    if !fields.is_empty() {
        let mut keyed: Vec<(Vec<f64>, &MarketInfo)> = selected
            .iter()
            .map(|market| {
                (
                    fields
                        .iter()
                        .map(|field| market_sort_key(world, market, field))
                        .collect(),
                    *market,
                )
            })
            .collect();
        keyed.sort_by(|(left_key, left), (right_key, right)| {
            let ordering = left_key
                .iter()
                .zip(right_key)
                .map(|(left, right)| left.total_cmp(right))
                .find(|ordering| ordering.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal);
            let ordering = if ascending {
                ordering
            } else {
                ordering.reverse()
            };
            ordering.then(left.index.cmp(&right.index))
        });
        selected = keyed.into_iter().map(|(_, market)| market).collect();
    } else if !ascending {
        selected.reverse();
    }
    selected.into_iter().map(|market| market.index).collect()
}

fn select_events(world: &World, params: &QueryParams, closed_default: Option<bool>) -> Vec<u32> {
    let closed = params.bool(&["closed"]).or(closed_default);
    let ids = params.list(&["id"]);
    let slugs = params.list(&["slug"]);
    let tag_ids = params.list(&["tag_id"]);
    let tag_slugs = params.list(&["tag_slug"]);
    let mut selected: Vec<&EventInfo> = world
        .events
        .iter()
        .filter(|event| closed.is_none_or(|closed| world.event_closed(event) == closed))
        .filter(|event| ids.is_empty() || ids.contains(&event.id))
        .filter(|event| slugs.is_empty() || slugs.contains(&event.slug))
        .filter(|event| tag_ids.is_empty() || tag_ids.iter().any(|tag| tag == event.tag.0))
        .filter(|event| tag_slugs.is_empty() || tag_slugs.iter().any(|tag| tag == event.tag.2))
        .collect();
    let fields = order_fields(params);
    let ascending = params.bool(&["ascending"]).unwrap_or(true);
    if let Some(field) = fields.first() {
        let key = |event: &EventInfo| -> f64 {
            match field.as_str() {
                "volume" | "volume_num" => event
                    .markets
                    .iter()
                    .map(|market| volumes(world, *market).0)
                    .sum(),
                "volume24hr" => event
                    .markets
                    .iter()
                    .map(|market| volumes(world, *market).2)
                    .sum(),
                "start_date" | "startDate" => event.start_ms as f64,
                "end_date" | "endDate" => event.end_ms as f64,
                _ => event.id.parse::<f64>().unwrap_or(0.0),
            }
        };
        selected.sort_by(|left, right| {
            let ordering = key(left).total_cmp(&key(right));
            let ordering = if ascending {
                ordering
            } else {
                ordering.reverse()
            };
            ordering.then(left.index.cmp(&right.index))
        });
    } else if !ascending {
        selected.reverse();
    }
    selected.into_iter().map(|event| event.index).collect()
}

fn limit_and_offset(params: &QueryParams, max: i64) -> Result<(usize, usize), Box<Response>> {
    let limit = params
        .integer(&["limit"])
        .map_err(|text| Box::new(bad_request(&format!("invalid limit {text:?}"))))?;
    let offset = params
        .integer(&["offset"])
        .map_err(|text| Box::new(bad_request(&format!("invalid offset {text:?}"))))?;
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    let offset = offset.unwrap_or(0);
    if limit < 0 || offset < 0 {
        return Err(Box::new(bad_request(
            "limit and offset must be non-negative",
        )));
    }
    // Upstream silently clamps the page size.
    Ok((
        usize::try_from(limit.min(max)).unwrap_or(0),
        usize::try_from(offset).unwrap_or(0),
    ))
}

pub(crate) async fn markets(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let (limit, offset) = match limit_and_offset(&params, MAX_LIMIT) {
        Ok(pair) => pair,
        Err(response) => return *response,
    };
    let shared = state.read();
    let world = &shared.world;
    // `/markets` honours the documented default closed=false.
    let selected = select_markets(world, &params, Some(false));
    let rows: Vec<Value> = selected
        .iter()
        .skip(offset)
        .take(limit)
        .filter_map(|market| world.markets.get(*market as usize))
        .map(|market| market_json(world, market, true))
        .collect();
    json_ok(&Value::Array(rows))
}

fn encode_keyset_cursor(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{{\"o\":{offset}}}"))
}

fn decode_keyset_cursor(cursor: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim_end_matches('=')).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    usize::try_from(value.get("o")?.as_u64()?).ok()
}

fn keyset_page(params: &QueryParams, total: usize) -> Result<(usize, usize), Box<Response>> {
    if params.has(&["offset"]) {
        return Err(Box::new(validation_error(
            "offset is not allowed on keyset endpoints",
        )));
    }
    let limit = params
        .integer(&["limit"])
        .map_err(|text| Box::new(validation_error(&format!("invalid limit {text:?}"))))?
        .unwrap_or(DEFAULT_LIMIT);
    if limit < 1 {
        return Err(Box::new(validation_error(
            "limit must be between 1 and 100",
        )));
    }
    let limit = usize::try_from(limit.min(KEYSET_MAX_LIMIT)).unwrap_or(1);
    let start = match params.get(&["after_cursor"]) {
        None | Some("") => 0,
        Some(cursor) => decode_keyset_cursor(cursor)
            .ok_or_else(|| Box::new(validation_error("invalid after_cursor")))?,
    };
    Ok((limit, start.min(total)))
}

pub(crate) async fn markets_keyset(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let shared = state.read();
    let world = &shared.world;
    let selected = select_markets(world, &params, Some(false));
    let (limit, start) = match keyset_page(&params, selected.len()) {
        Ok(page) => page,
        Err(response) => return *response,
    };
    let page: Vec<Value> = selected[start..]
        .iter()
        .take(limit)
        .filter_map(|market| world.markets.get(*market as usize))
        .map(|market| market_json(world, market, true))
        .collect();
    let mut body = json!({ "markets": page });
    // Upstream: next_cursor only when the page is full (so an exact multiple ends with one
    // empty page), omitted on the last page.
    if body["markets"]
        .as_array()
        .is_some_and(|rows| rows.len() == limit)
    {
        body["next_cursor"] = json!(encode_keyset_cursor(start + limit));
    }
    json_ok(&body)
}

pub(crate) async fn events(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let (limit, offset) = match limit_and_offset(&params, MAX_LIMIT) {
        Ok(pair) => pair,
        Err(response) => return *response,
    };
    let shared = state.read();
    let world = &shared.world;
    // Upstream quirk (polymarket-cli#71): without `closed`, closed events are returned too,
    // although the docs say the default is false.
    let selected = select_events(world, &params, None);
    let rows: Vec<Value> = selected
        .iter()
        .skip(offset)
        .take(limit)
        .filter_map(|event| world.events.get(*event as usize))
        .map(|event| event_json(world, event, true))
        .collect();
    json_ok(&Value::Array(rows))
}

pub(crate) async fn events_keyset(
    State(state): State<Arc<SimState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = QueryParams::parse(raw.as_deref());
    let shared = state.read();
    let world = &shared.world;
    let selected = select_events(world, &params, Some(false));
    let (limit, start) = match keyset_page(&params, selected.len()) {
        Ok(page) => page,
        Err(response) => return *response,
    };
    let page: Vec<Value> = selected[start..]
        .iter()
        .take(limit)
        .filter_map(|event| world.events.get(*event as usize))
        .map(|event| event_json(world, event, true))
        .collect();
    let full = page.len() == limit;
    let mut body = json!({ "events": page });
    if full {
        body["next_cursor"] = json!(encode_keyset_cursor(start + limit));
    }
    json_ok(&body)
}

pub(crate) async fn market_by_id(
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
) -> Response {
    let shared = state.read();
    let world = &shared.world;
    match world
        .gamma_lookup
        .get(&id)
        .and_then(|index| world.markets.get(*index as usize))
    {
        Some(market) => json_ok(&market_json(world, market, true)),
        None => not_found("market"),
    }
}

pub(crate) async fn event_by_id(
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
) -> Response {
    let shared = state.read();
    let world = &shared.world;
    match world
        .event_lookup
        .get(&id)
        .and_then(|index| world.events.get(*index as usize))
    {
        Some(event) => json_ok(&event_json(world, event, true)),
        None => not_found("event"),
    }
}

pub(crate) async fn market_by_slug(
    State(state): State<Arc<SimState>>,
    Path(slug): Path<String>,
) -> Response {
    let shared = state.read();
    let world = &shared.world;
    match world.markets.iter().find(|market| market.slug == slug) {
        Some(market) => json_ok(&market_json(world, market, true)),
        None => not_found("market"),
    }
}

pub(crate) async fn event_by_slug(
    State(state): State<Arc<SimState>>,
    Path(slug): Path<String>,
) -> Response {
    let shared = state.read();
    let world = &shared.world;
    match world.events.iter().find(|event| event.slug == slug) {
        Some(event) => json_ok(&event_json(world, event, true)),
        None => not_found("event"),
    }
}
