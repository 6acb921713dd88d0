//! Contract tests: every example payload in the brief has the same field set (and the same
//! JSON type per field) as the simulator's own response for that endpoint, allowing only the
//! optional keys the brief documents.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Keys allowed to differ, and keys whose type may differ (nullable fields).
struct Allowance<'a> {
    extra: &'a [&'a str],
    missing: &'a [&'a str],
    nullable: &'a [&'a str],
}

const EXACT: Allowance<'static> = Allowance {
    extra: &[],
    missing: &[],
    nullable: &[],
};

fn assert_same_shape(what: &str, example: &Value, actual: &Value, allowance: &Allowance<'_>) {
    let example_object = example
        .as_object()
        .unwrap_or_else(|| panic!("{what}: example is not an object"));
    let actual_object = actual
        .as_object()
        .unwrap_or_else(|| panic!("{what}: response is not an object: {actual}"));
    let example_keys: BTreeSet<&str> = example_object.keys().map(String::as_str).collect();
    let actual_keys: BTreeSet<&str> = actual_object.keys().map(String::as_str).collect();
    let missing: Vec<&str> = example_keys
        .difference(&actual_keys)
        .copied()
        .filter(|key| !allowance.missing.contains(key))
        .collect();
    let extra: Vec<&str> = actual_keys
        .difference(&example_keys)
        .copied()
        .filter(|key| !allowance.extra.contains(key))
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: keys of the brief's example missing from the simulator: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "{what}: undocumented keys in the simulator's response: {extra:?}"
    );
    for key in example_keys.intersection(&actual_keys) {
        let (expected, got) = (
            json_type(&example_object[*key]),
            json_type(&actual_object[*key]),
        );
        if expected != got && !allowance.nullable.contains(key) {
            panic!(
                "{what}: field {key} is {got} in the simulator but {expected} upstream ({})",
                actual_object[*key]
            );
        }
    }
}

const GAMMA_MARKET: Allowance<'static> = Allowance {
    // Documented in the brief's 2.4 "additional fields" and the 2026 changes.
    extra: &[
        "feeSchedule",
        "clobRewards",
        "oneDayPriceChange",
        "oneHourPriceChange",
        "oneWeekPriceChange",
        "groupItemTitle",
        "negRiskMarketID",
        "negRiskRequestID",
        "umaResolutionStatus",
        "closedTime",
        "events",
        "version",
        "positionIds",
    ],
    // v2 rows carry positionIds instead; resolved rows have no live book.
    missing: &["clobTokenIds", "spread", "bestBid", "bestAsk"],
    nullable: &[],
};

#[tokio::test]
async fn gamma_markets_match_the_brief() {
    let sim = start(config(60, 1)).await;
    let client = client();
    let example = fixture("gamma_market");
    let mut versions = BTreeSet::new();
    for closed in ["false", "true"] {
        let rows = get_json(
            &client,
            &format!("{}/gamma/markets?limit=500&closed={closed}", sim.base_url()),
        )
        .await;
        let rows = rows.as_array().expect("bare array");
        assert!(!rows.is_empty());
        for row in rows {
            assert_same_shape("gamma /markets", &example, row, &GAMMA_MARKET);
            versions.insert(
                row.get("version")
                    .map(|version| version.to_string())
                    .unwrap_or_default(),
            );
            // JSON-encoded strings, exactly as upstream.
            for key in ["outcomes", "outcomePrices", "umaResolutionStatuses"] {
                let text = row[key].as_str().expect("string");
                assert!(
                    serde_json::from_str::<Vec<String>>(text).is_ok(),
                    "{key}: {text}"
                );
            }
            match row.get("version").and_then(Value::as_str) {
                Some("v2") => {
                    assert!(row["positionIds"].is_array() && row.get("clobTokenIds").is_none());
                }
                _ => {
                    let ids: Vec<String> =
                        serde_json::from_str(row["clobTokenIds"].as_str().expect("encoded string"))
                            .expect("json");
                    assert_eq!(ids.len(), 2);
                }
            }
            if closed == "true" {
                assert_eq!(row["umaResolutionStatus"], "resolved");
            }
        }
    }
    // Old unlabelled rows, labelled v1 rows and v2 rows all occur.
    assert_eq!(versions.len(), 3, "{versions:?}");
    let one = get_json(
        &client,
        &format!("{}/gamma/markets?limit=1", sim.base_url()),
    )
    .await;
    let id = one[0]["id"].as_str().expect("id is a string");
    let by_id = get_json(&client, &format!("{}/gamma/markets/{id}", sim.base_url())).await;
    assert_same_shape("gamma /markets/{id}", &example, &by_id, &GAMMA_MARKET);
}

#[tokio::test]
async fn gamma_events_match_the_brief() {
    let sim = start(config(40, 1)).await;
    let client = client();
    let example = fixture("gamma_events")[0].clone();
    let event_allowance = Allowance {
        extra: &[],
        missing: &["negRiskMarketID", "seriesSlug"],
        nullable: &[],
    };
    for path in ["/gamma/events?limit=500", "/gamma/events/keyset?limit=100"] {
        let body = get_json(&client, &format!("{}{path}", sim.base_url())).await;
        let rows = if path.contains("keyset") {
            body["events"].clone()
        } else {
            body
        };
        for row in rows.as_array().expect("array") {
            assert_same_shape("gamma /events", &example, row, &event_allowance);
            for market in row["markets"].as_array().expect("nested markets") {
                assert_same_shape(
                    "gamma /events markets[]",
                    &example["markets"][0],
                    market,
                    &GAMMA_MARKET,
                );
            }
        }
    }
}

#[tokio::test]
async fn data_trades_v1_matches_the_brief() {
    let sim = start(config(20, 1)).await;
    let client = client();
    let example = fixture("data_trades")[0].clone();
    for query in ["limit=500", "limit=500&takerOnly=false"] {
        let trades = get_json(&client, &format!("{}/data/trades?{query}", sim.base_url())).await;
        let rows = trades.as_array().expect("bare array");
        assert_eq!(rows.len(), 500);
        for row in rows {
            assert_same_shape("data /trades", &example, row, &EXACT);
        }
    }
}

#[tokio::test]
async fn data_trades_v2_matches_the_brief() {
    let sim = start(config(20, 1)).await;
    let client = client();
    let v2 = get_json(
        &client,
        &format!("{}/data/v2/trades?limit=200", sim.base_url()),
    )
    .await;
    let example = fixture("data_v2_trades");
    assert_same_shape("data /v2/trades envelope", &example, &v2, &EXACT);
    assert_same_shape(
        "data /v2/trades pagination",
        &example["pagination"],
        &v2["pagination"],
        &EXACT,
    );
    assert_eq!(v2["data"].as_array().expect("data").len(), 200);
    for row in v2["data"].as_array().expect("data") {
        assert_same_shape("data /v2/trades row", &example["data"][0], row, &EXACT);
    }
}

#[tokio::test]
async fn data_leaderboard_matches_the_brief() {
    let sim = start(config(20, 1)).await;
    let client = client();
    let board = get_json(
        &client,
        &format!("{}/data/v1/leaderboard?limit=50", sim.base_url()),
    )
    .await;
    let example = fixture("data_leaderboard")[0].clone();
    assert_eq!(board.as_array().expect("array").len(), 50);
    for (position, row) in board.as_array().expect("array").iter().enumerate() {
        assert_same_shape("data /v1/leaderboard", &example, row, &EXACT);
        assert_eq!(row["rank"], (position + 1).to_string());
    }
}

#[tokio::test]
async fn data_holders_matches_the_brief() {
    let sim = start(config(20, 1)).await;
    let client = client();
    let base = sim.base_url();
    let markets = get_json(&client, &format!("{base}/_sim/truth/markets")).await;
    let condition = markets[0]["condition_id"].as_str().expect("condition");
    let holders = get_json(&client, &format!("{base}/data/holders?market={condition}")).await;
    let example = fixture("data_holders")[0].clone();
    assert_eq!(
        holders.as_array().expect("array").len(),
        2,
        "one entry per token"
    );
    for token in holders.as_array().expect("array") {
        assert_same_shape("data /holders", &example, token, &EXACT);
        assert!(!token["holders"].as_array().expect("holders").is_empty());
        for holder in token["holders"].as_array().expect("holders") {
            assert_same_shape(
                "data /holders holders[]",
                &example["holders"][0],
                holder,
                &EXACT,
            );
        }
    }
}

const CLOB_MARKET: Allowance<'static> = Allowance {
    extra: &["version"],
    missing: &[],
    nullable: &[],
};

fn assert_clob_market(row: &Value) {
    let example = fixture("clob_market");
    assert_same_shape("clob market", &example, row, &CLOB_MARKET);
    let rates_nullable = Allowance {
        extra: &[],
        missing: &[],
        nullable: &["rates"],
    };
    assert_same_shape(
        "clob market rewards",
        &example["rewards"],
        &row["rewards"],
        &rates_nullable,
    );
    for token in row["tokens"].as_array().expect("tokens") {
        assert_same_shape("clob market tokens[]", &example["tokens"][0], token, &EXACT);
    }
}

#[tokio::test]
async fn clob_markets_matches_the_brief() {
    let sim = start(config(30, 1)).await;
    let client = client();
    let page = get_json(&client, &format!("{}/clob/markets", sim.base_url())).await;
    assert_same_shape(
        "clob /markets page",
        &fixture("clob_markets_page"),
        &page,
        &EXACT,
    );
    assert_eq!(page["data"].as_array().expect("data").len(), 30);
    for row in page["data"].as_array().expect("data") {
        assert_clob_market(row);
    }
}

#[tokio::test]
async fn clob_market_by_condition_matches_the_brief() {
    let sim = start(config(30, 1)).await;
    let client = client();
    let truth = get_json(&client, &format!("{}/_sim/truth/markets", sim.base_url())).await;
    for market in truth.as_array().expect("array") {
        let condition = market["condition_id"].as_str().expect("condition");
        let single = get_json(
            &client,
            &format!("{}/clob/markets/{condition}", sim.base_url()),
        )
        .await;
        assert_clob_market(&single);
        assert_eq!(single["condition_id"], market["condition_id"]);
    }
}

#[tokio::test]
async fn clob_book_matches_the_brief() {
    let sim = start(config(30, 1)).await;
    let client = client();
    let example = fixture("clob_book");
    for token in open_tokens(&client, &sim).await {
        let book = get_json(
            &client,
            &format!("{}/clob/book?token_id={token}", sim.base_url()),
        )
        .await;
        assert_same_shape("clob /book", &example, &book, &EXACT);
        for side in ["bids", "asks"] {
            for level in book[side].as_array().expect("levels") {
                assert_same_shape("clob /book level", &example["bids"][0], level, &EXACT);
            }
        }
    }
}

#[tokio::test]
async fn clob_books_post_matches_the_brief() {
    let sim = start(config(30, 1)).await;
    let client = client();
    let tokens = open_tokens(&client, &sim).await;
    let body: Vec<Value> = tokens
        .iter()
        .take(5)
        .map(|token| serde_json::json!({"token_id": token}))
        .collect();
    let books = post_json(
        &client,
        &format!("{}/clob/books", sim.base_url()),
        &Value::Array(body),
    )
    .await;
    assert_eq!(books.as_array().expect("array").len(), 5);
    for book in books.as_array().expect("array") {
        assert_same_shape("clob POST /books", &fixture("clob_book"), book, &EXACT);
    }
}

#[tokio::test]
async fn clob_price_and_midpoint_match_the_brief() {
    let sim = start(config(30, 1)).await;
    let client = client();
    for token in open_tokens(&client, &sim).await.iter().take(10) {
        for side in ["BUY", "SELL"] {
            let price = get_json(
                &client,
                &format!("{}/clob/price?token_id={token}&side={side}", sim.base_url()),
            )
            .await;
            assert_same_shape("clob /price", &fixture("clob_price"), &price, &EXACT);
        }
        let mid = get_json(
            &client,
            &format!("{}/clob/midpoint?token_id={token}", sim.base_url()),
        )
        .await;
        assert_same_shape("clob /midpoint", &fixture("clob_midpoint"), &mid, &EXACT);
    }
}

#[tokio::test]
async fn clob_prices_history_matches_the_brief() {
    let sim = start(config(30, 1)).await;
    let client = client();
    let example = fixture("clob_prices_history");
    for token in open_tokens(&client, &sim).await.iter().take(10) {
        let history = get_json(
            &client,
            &format!(
                "{}/clob/prices-history?market={token}&interval=1d&fidelity=60",
                sim.base_url()
            ),
        )
        .await;
        assert_same_shape("clob /prices-history", &example, &history, &EXACT);
        let points = history["history"].as_array().expect("history");
        assert_eq!(points.len(), 24);
        for point in points {
            assert_same_shape(
                "clob /prices-history point",
                &example["history"][0],
                point,
                &EXACT,
            );
        }
    }
}

#[tokio::test]
async fn clob_time_matches_the_brief() {
    let sim = start(config(5, 0)).await;
    let (status, time) = get(&client(), &format!("{}/clob/time", sim.base_url())).await;
    assert_eq!(status, 200);
    let parsed: Value = serde_json::from_str(&time).expect("json");
    assert_eq!(json_type(&parsed), json_type(&fixture("clob_time")));
    assert!(parsed.is_u64());
}

#[tokio::test]
async fn websocket_events_match_the_brief() {
    // Tick sizes switch only on binary markets trading near 0.04 / 0.96 (negative-risk legs
    // never drift), and the lifecycle resolves binary markets as it goes: 100 markets keep
    // such a market live long enough to switch.
    let mut config = config(100, 1);
    config.lifecycle_every = 400;
    let sim = start(config).await;
    let client = client();
    let tokens = open_tokens(&client, &sim).await;
    let mut stream = ws_connect(&sim).await;
    // The brief's own subscribe example shape, with our tokens.
    let mut subscribe = fixture("ws_subscribe");
    subscribe["assets_ids"] = serde_json::json!(tokens);
    ws_send(&mut stream, &subscribe.to_string()).await;
    let mut events = frame_events(&ws_read_until_pong(&mut stream).await);
    // Run until every event type has occurred (bounded: the world is deterministic).
    for _ in 0..10 {
        advance(&client, &sim, 6_000).await;
        events.extend(frame_events(&ws_read_until_pong(&mut stream).await));
        if events
            .iter()
            .any(|event| event["event_type"] == "tick_size_change")
        {
            break;
        }
    }

    let mut seen = BTreeSet::new();
    let book_allowance = Allowance {
        extra: &[
            "min_order_size",
            "tick_size",
            "neg_risk",
            "last_trade_price",
        ],
        missing: &[],
        nullable: &[],
    };
    let entry_allowance = Allowance {
        extra: &[],
        missing: &["size", "hash", "best_bid", "best_ask"],
        nullable: &[],
    };
    let trade_allowance = Allowance {
        extra: &["transaction_hash"],
        missing: &[],
        nullable: &[],
    };
    let market_allowance = Allowance {
        extra: &[],
        missing: &["event_message"],
        nullable: &[],
    };
    for event in &events {
        let event_type = event["event_type"].as_str().expect("event_type").to_owned();
        match event_type.as_str() {
            "book" => {
                assert_same_shape("ws book", &fixture("ws_book"), event, &book_allowance);
                assert_same_shape(
                    "ws book level",
                    &fixture("ws_book")["bids"][0],
                    &event["bids"][0],
                    &EXACT,
                );
            }
            "price_change" => {
                let example = fixture("ws_price_change");
                assert_same_shape("ws price_change", &example, event, &EXACT);
                for entry in event["price_changes"].as_array().expect("entries") {
                    assert_same_shape(
                        "ws price_change entry",
                        &example["price_changes"][0],
                        entry,
                        &entry_allowance,
                    );
                }
            }
            "tick_size_change" => assert_same_shape(
                "ws tick_size_change",
                &fixture("ws_tick_size_change"),
                event,
                &EXACT,
            ),
            "last_trade_price" => assert_same_shape(
                "ws last_trade_price",
                &fixture("ws_last_trade_price"),
                event,
                &trade_allowance,
            ),
            "best_bid_ask" => assert_same_shape(
                "ws best_bid_ask",
                &fixture("ws_best_bid_ask"),
                event,
                &EXACT,
            ),
            "new_market" => {
                assert_same_shape(
                    "ws new_market",
                    &fixture("ws_new_market"),
                    event,
                    &market_allowance,
                );
                assert_same_shape(
                    "ws new_market event_message",
                    &fixture("ws_new_market")["event_message"],
                    &event["event_message"],
                    &EXACT,
                );
            }
            "market_resolved" => assert_same_shape(
                "ws market_resolved",
                &fixture("ws_market_resolved"),
                event,
                &market_allowance,
            ),
            other => panic!("unexpected event type {other}"),
        }
        seen.insert(event_type);
    }
    for expected in [
        "book",
        "price_change",
        "last_trade_price",
        "tick_size_change",
        "best_bid_ask",
        "new_market",
        "market_resolved",
    ] {
        assert!(
            seen.contains(expected),
            "no {expected} event in {} events (saw {seen:?})",
            events.len()
        );
    }
}

/// A wallet with fills in market 0 (the busy one), from the truth.
async fn busy_wallet(client: &reqwest::Client, base: &str) -> (String, String) {
    let markets = get_json(client, &format!("{base}/_sim/truth/markets")).await;
    let condition = markets[0]["condition_id"]
        .as_str()
        .expect("condition")
        .to_owned();
    let fills = get_json(
        client,
        &format!("{base}/_sim/truth/fills?market={condition}&limit=1"),
    )
    .await;
    (
        fills["fills"][0]["proxyWallet"]
            .as_str()
            .expect("wallet")
            .to_owned(),
        condition,
    )
}

#[tokio::test]
async fn data_activity_positions_value_oi_match_the_brief() {
    let sim = start(config(20, 1)).await;
    let client = client();
    let base = sim.base_url();
    let (wallet, condition) = busy_wallet(&client, &base).await;
    let activity = get_json(
        &client,
        &format!("{base}/data/activity?user={wallet}&limit=500"),
    )
    .await;
    assert!(!activity.as_array().expect("array").is_empty());
    for row in activity.as_array().expect("array") {
        assert_same_shape("data /activity", &fixture("data_activity")[0], row, &EXACT);
        assert_eq!(row["type"], "TRADE");
        assert_eq!(row["proxyWallet"], wallet.as_str());
    }
    let positions = get_json(
        &client,
        &format!("{base}/data/positions?user={wallet}&sizeThreshold=0"),
    )
    .await;
    assert!(!positions.as_array().expect("array").is_empty());
    for row in positions.as_array().expect("array") {
        assert_same_shape(
            "data /positions",
            &fixture("data_positions")[0],
            row,
            &EXACT,
        );
    }
    let value = get_json(&client, &format!("{base}/data/value?user={wallet}")).await;
    assert_same_shape("data /value", &fixture("data_value")[0], &value[0], &EXACT);
    let oi = get_json(&client, &format!("{base}/data/oi?market={condition}")).await;
    assert_same_shape("data /oi", &fixture("data_oi")[0], &oi[0], &EXACT);
    assert_eq!(oi[0]["market"], condition.as_str());
    let global = get_json(&client, &format!("{base}/data/oi")).await;
    assert_eq!(global[0]["market"], "GLOBAL");
}

#[tokio::test]
async fn clob_small_endpoints_match_the_brief() {
    let sim = start(config(20, 1)).await;
    let client = client();
    let base = sim.base_url();
    let tokens = open_tokens(&client, &sim).await;
    for token in tokens.iter().take(6) {
        for (path, name) in [
            ("spread", "clob_spread"),
            ("last-trade-price", "clob_last_trade_price"),
            ("tick-size", "clob_tick_size"),
            ("neg-risk", "clob_neg_risk"),
            ("fee-rate", "clob_fee_rate"),
        ] {
            let body = get_json(&client, &format!("{base}/clob/{path}?token_id={token}")).await;
            assert_same_shape(&format!("clob /{path}"), &fixture(name), &body, &EXACT);
        }
    }
    let request: Vec<Value> = tokens
        .iter()
        .take(4)
        .map(|token| serde_json::json!({"token_id": token, "side": "BUY"}))
        .collect();
    let prices = post_json(
        &client,
        &format!("{base}/clob/prices"),
        &Value::Array(request.clone()),
    )
    .await;
    assert_eq!(prices.as_object().expect("map").len(), 4);
    for value in prices.as_object().expect("map").values() {
        assert_same_shape(
            "clob POST /prices",
            &fixture("clob_prices_post")["1"],
            value,
            &EXACT,
        );
    }
    let mids = post_json(
        &client,
        &format!("{base}/clob/midpoints"),
        &Value::Array(request),
    )
    .await;
    assert_eq!(mids.as_object().expect("map").len(), 4);
    for value in mids.as_object().expect("map").values() {
        assert_eq!(
            json_type(value),
            json_type(&fixture("clob_midpoints_post")["1"])
        );
    }
    let simplified = get_json(&client, &format!("{base}/clob/simplified-markets")).await;
    let keys: BTreeSet<&str> = simplified["data"][0]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "condition_id",
        "tokens",
        "rewards",
        "active",
        "closed",
        "archived",
        "accepting_orders",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, expected);
    let sampling = get_json(&client, &format!("{base}/clob/sampling-markets")).await;
    for row in sampling["data"].as_array().expect("data") {
        assert_clob_market(row);
        assert!(
            row["rewards"]["rates"].is_array(),
            "sampling markets have rewards"
        );
    }
}
