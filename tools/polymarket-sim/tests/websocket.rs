//! WebSocket market channel: books rebuilt from the initial dump and the `price_change`
//! stream equal CLOB `/book` and `/_sim/truth/book` for every subscribed token at several
//! instants; subscription changes, the asset cap and PING/PONG.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use rust_decimal::Decimal;
use serde_json::Value;

#[derive(Default)]
struct Rebuilt {
    books: HashMap<String, Levels>,
    last_hash: HashMap<String, String>,
    checked_entries: usize,
    prices_without_leading_zero: usize,
}

fn best_bid(levels: &Levels) -> Decimal {
    levels
        .bids
        .keys()
        .next_back()
        .copied()
        .unwrap_or(Decimal::ZERO)
}

fn best_ask(levels: &Levels) -> Decimal {
    levels.asks.keys().next().copied().unwrap_or(Decimal::ONE)
}

impl Rebuilt {
    fn apply(&mut self, event: &Value) {
        match event["event_type"].as_str().expect("event_type") {
            "book" => {
                let asset = event["asset_id"].as_str().expect("asset").to_owned();
                // Upstream order: bids ascending, asks descending (best last on both).
                let bids: Vec<Decimal> = event["bids"]
                    .as_array()
                    .expect("bids")
                    .iter()
                    .map(|level| dec(level["price"].as_str().expect("p")))
                    .collect();
                let asks: Vec<Decimal> = event["asks"]
                    .as_array()
                    .expect("asks")
                    .iter()
                    .map(|level| dec(level["price"].as_str().expect("p")))
                    .collect();
                assert!(
                    bids.windows(2).all(|pair| pair[0] < pair[1]),
                    "bids not ascending"
                );
                assert!(
                    asks.windows(2).all(|pair| pair[0] > pair[1]),
                    "asks not descending"
                );
                self.books
                    .insert(asset.clone(), Levels::from_book_json(event));
                self.last_hash
                    .insert(asset, event["hash"].as_str().expect("hash").to_owned());
            }
            "price_change" => {
                for entry in event["price_changes"].as_array().expect("entries") {
                    let asset = entry["asset_id"].as_str().expect("asset").to_owned();
                    let Some(book) = self.books.get_mut(&asset) else {
                        // Entry of a token this connection is not subscribed to.
                        panic!("price_change for unsubscribed asset {asset}");
                    };
                    let price_text = entry["price"].as_str().expect("price");
                    if price_text.starts_with('.') {
                        self.prices_without_leading_zero += 1;
                    }
                    let price = dec(price_text);
                    let size = dec(entry["size"].as_str().expect("size"));
                    let side = match entry["side"].as_str().expect("side") {
                        "BUY" => &mut book.bids,
                        "SELL" => &mut book.asks,
                        other => panic!("side {other}"),
                    };
                    if size.is_zero() {
                        side.remove(&price);
                    } else {
                        side.insert(price, size);
                    }
                    // The entry's best prices describe the book right after this entry.
                    assert_eq!(
                        best_bid(book),
                        dec(entry["best_bid"].as_str().expect("best_bid")),
                        "best_bid of {entry}"
                    );
                    assert_eq!(
                        best_ask(book),
                        dec(entry["best_ask"].as_str().expect("best_ask")),
                        "best_ask of {entry}"
                    );
                    self.checked_entries += 1;
                    self.last_hash
                        .insert(asset, entry["hash"].as_str().expect("hash").to_owned());
                }
            }
            "best_bid_ask" => {
                let asset = event["asset_id"].as_str().expect("asset");
                let book = &self.books[asset];
                assert_eq!(
                    best_bid(book),
                    dec(event["best_bid"].as_str().expect("bid"))
                );
                assert_eq!(
                    best_ask(book),
                    dec(event["best_ask"].as_str().expect("ask"))
                );
            }
            _ => {}
        }
    }
}

async fn assert_books_match(
    client: &reqwest::Client,
    base: &str,
    rebuilt: &Rebuilt,
    tokens: &[String],
    at_ms: i64,
    check_rest: bool,
) -> usize {
    let mut compared = 0;
    for token in tokens {
        let truth = get_json(
            client,
            &format!("{base}/_sim/truth/book?token_id={token}&at={at_ms}"),
        )
        .await;
        let rebuilt_book = rebuilt
            .books
            .get(token)
            .unwrap_or_else(|| panic!("no book for {token}"));
        assert_eq!(
            &Levels::from_book_json(&truth),
            rebuilt_book,
            "truth at {at_ms} differs for {token}"
        );
        if check_rest {
            let rest = get_json(client, &format!("{base}/clob/book?token_id={token}")).await;
            assert_eq!(
                &Levels::from_book_json(&rest),
                rebuilt_book,
                "/book differs for {token}"
            );
            assert_eq!(
                rest["hash"], truth["hash"],
                "/book and truth hash differ for {token}"
            );
            assert_eq!(
                rest["hash"].as_str(),
                rebuilt.last_hash.get(token).map(String::as_str),
                "last streamed hash differs from /book for {token}"
            );
            assert_eq!(
                polymarket_sim::book_hash_of_json(&rest).as_deref(),
                rest["hash"].as_str()
            );
        }
        compared += 1;
    }
    compared
}

#[tokio::test]
async fn rebuilt_books_equal_rest_and_truth_at_several_instants() {
    let sim = start(config(24, 1)).await;
    let client = client();
    let base = sim.base_url();
    let tokens = open_tokens(&client, &sim).await;
    assert!(tokens.len() >= 20);
    let mut stream = ws_connect(&sim).await;
    let subscribe =
        serde_json::json!({"assets_ids": tokens, "type": "market", "custom_feature_enabled": true});
    ws_send(&mut stream, &subscribe.to_string()).await;
    let dump = ws_read_until_pong(&mut stream).await;
    assert_eq!(dump.len(), 1, "the initial dump is one frame");
    assert!(dump[0].starts_with('['), "the initial dump is an array");
    let mut rebuilt = Rebuilt::default();
    for event in frame_events(&dump) {
        assert_eq!(event["event_type"], "book");
        rebuilt.apply(&event);
    }
    assert_eq!(rebuilt.books.len(), tokens.len());
    let info = get_json(&client, &format!("{base}/_sim/info")).await;
    let mut clock = info["progress"]["world_clock_ms"].as_i64().expect("clock");
    assert_books_match(&client, &base, &rebuilt, &tokens, clock, true).await;

    let mut compared = 0;
    let mut intermediate_checks = 0;
    let mut array_frames = 0;
    let mut object_frames = 0;
    for round in 0..5u64 {
        let progress = advance(&client, &sim, 1_500 + round * 500).await;
        let frames = ws_read_until_pong(&mut stream).await;
        array_frames += frames.iter().filter(|frame| frame.starts_with('[')).count();
        object_frames += frames.iter().filter(|frame| frame.starts_with('{')).count();
        let events = frame_events(&frames);
        assert!(!events.is_empty());
        // An instant inside the round: snapshot all books just before the first event after it.
        let timestamps: Vec<i64> = events
            .iter()
            .map(|event| {
                event["timestamp"]
                    .as_str()
                    .expect("ts")
                    .parse::<i64>()
                    .expect("ms")
            })
            .collect();
        assert!(
            timestamps.windows(2).all(|pair| pair[0] <= pair[1]),
            "timestamps go backwards"
        );
        let middle = timestamps[timestamps.len() / 2];
        let mut snapshot: Option<Rebuilt> = None;
        for (event, ts) in events.iter().zip(&timestamps) {
            if snapshot.is_none() && *ts > middle {
                snapshot = Some(Rebuilt {
                    books: rebuilt.books.clone(),
                    ..Rebuilt::default()
                });
            }
            rebuilt.apply(event);
        }
        if let Some(snapshot) = snapshot {
            assert_books_match(&client, &base, &snapshot, &tokens, middle, false).await;
            intermediate_checks += 1;
        }
        clock = progress["world_clock_ms"].as_i64().expect("clock");
        compared += assert_books_match(&client, &base, &rebuilt, &tokens, clock, true).await;
    }
    assert_eq!(compared, tokens.len() * 5);
    assert!(intermediate_checks >= 4);
    assert!(
        rebuilt.checked_entries > 1_000,
        "{}",
        rebuilt.checked_entries
    );
    assert!(
        rebuilt.prices_without_leading_zero > 0,
        "no \".48\"-style price seen"
    );
    assert!(array_frames > 0 && object_frames + array_frames > 1);
}

#[tokio::test]
async fn subscriptions_change_without_reconnecting() {
    let sim = start(config(12, 0)).await;
    let client = client();
    let tokens = open_tokens(&client, &sim).await;
    let mut stream = ws_connect(&sim).await;
    ws_send(
        &mut stream,
        &serde_json::json!({"assets_ids": [tokens[0], tokens[1]], "type": "market"}).to_string(),
    )
    .await;
    let dump = frame_events(&ws_read_until_pong(&mut stream).await);
    assert_eq!(dump.len(), 2);
    ws_send(
        &mut stream,
        &serde_json::json!({"operation": "subscribe", "assets_ids": [tokens[2], tokens[3]]})
            .to_string(),
    )
    .await;
    let second = frame_events(&ws_read_until_pong(&mut stream).await);
    let dumped: Vec<&str> = second
        .iter()
        .map(|event| event["asset_id"].as_str().expect("asset"))
        .collect();
    assert_eq!(dumped, vec![tokens[2].as_str(), tokens[3].as_str()]);
    ws_send(
        &mut stream,
        &serde_json::json!({"operation": "unsubscribe", "assets_ids": [tokens[0], tokens[1]]})
            .to_string(),
    )
    .await;
    ws_send(&mut stream, &serde_json::json!({"operation": "subscribe", "assets_ids": [tokens[4]], "initial_dump": false}).to_string()).await;
    advance(&client, &sim, 3_000).await;
    let events = frame_events(&ws_read_until_pong(&mut stream).await);
    let mut per_asset: BTreeMap<String, usize> = BTreeMap::new();
    for event in &events {
        assert_ne!(event["event_type"], "book_dump");
        let assets: Vec<String> = match event["price_changes"].as_array() {
            Some(entries) => entries
                .iter()
                .map(|entry| entry["asset_id"].as_str().expect("asset").to_owned())
                .collect(),
            None => vec![event["asset_id"].as_str().expect("asset").to_owned()],
        };
        for asset in assets {
            *per_asset.entry(asset).or_default() += 1;
        }
    }
    assert!(
        !per_asset.contains_key(&tokens[0]) && !per_asset.contains_key(&tokens[1]),
        "unsubscribed tokens still streamed"
    );
    assert!(
        per_asset
            .keys()
            .all(|asset| [&tokens[2], &tokens[3], &tokens[4]].contains(&asset))
    );
    assert!(per_asset.contains_key(&tokens[2]));
}

#[tokio::test]
async fn the_asset_cap_refuses_with_an_error_frame() {
    let mut config = config(12, 0);
    config.ws_max_assets = 5;
    let sim = start(config).await;
    let client = client();
    let tokens = open_tokens(&client, &sim).await;
    let mut stream = ws_connect(&sim).await;
    ws_send(
        &mut stream,
        &serde_json::json!({"assets_ids": tokens[..4], "type": "market", "initial_dump": false})
            .to_string(),
    )
    .await;
    assert!(ws_read_until_pong(&mut stream).await.is_empty());
    ws_send(
        &mut stream,
        &serde_json::json!({"operation": "subscribe", "assets_ids": tokens[4..6]}).to_string(),
    )
    .await;
    let frames = ws_read_until_pong(&mut stream).await;
    assert_eq!(frames.len(), 1);
    let error: Value = serde_json::from_str(&frames[0]).expect("json");
    assert_eq!(error["event_type"], "error");
    assert_eq!(error["code"], "too_many_assets");
    assert_eq!(error["max_assets"], 5);
    assert_eq!(error["requested"], 2);
    let stats = get_json(&client, &format!("{}/_sim/stats", sim.base_url())).await;
    assert_eq!(stats["ws"]["subscriptions_refused"], 1);
    assert_eq!(stats["ws"]["pongs_sent"], 2);
}

/// The events of some frames, each as its JSON text (a frame is one event or an array).
fn events_of(frames: &[String]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|frame| serde_json::from_str::<Value>(frame).ok())
        .flat_map(|value| match value {
            Value::Array(events) => events,
            event => vec![event],
        })
        .map(|event| event.to_string())
        .collect()
}

/// A `ws_reorder` that is the last firing of every rule still delivers the event it held
/// back (after the next one), even when it held the last event of a delivery: two
/// connections on one token, one reordered, receive the same events.
#[tokio::test]
async fn the_last_reordered_event_is_still_delivered_once_the_rules_are_spent() {
    let sim = start(config(12, 0)).await;
    let client = client();
    let tokens = open_tokens(&client, &sim).await;
    let base = sim.base_url();
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut stream = ws_connect(&sim).await;
        ws_send(
            &mut stream,
            &serde_json::json!({"assets_ids": tokens[..1], "type": "market", "initial_dump": false})
                .to_string(),
        )
        .await;
        ws_read_until_pong(&mut stream).await;
        streams.push(stream);
    }
    post_json(
        &client,
        &format!("{base}/_sim/faults"),
        &serde_json::json!({"spec": "ws_reorder:count=1"}),
    )
    .await;
    // One operation at a time: each delivery is small, so the held event can be the last.
    for _ in 0..300 {
        advance(&client, &sim, 1).await;
    }
    let mut received = Vec::new();
    for stream in &mut streams {
        let mut events = events_of(&ws_read_until_pong(stream).await);
        assert!(events.len() > 10, "{} events", events.len());
        events.sort();
        received.push(events);
    }
    let stats = get_json(&client, &format!("{base}/_sim/stats")).await;
    assert_eq!(stats["ws"]["faults"]["ws_reorder"], 1);
    assert_eq!(
        received[0], received[1],
        "both connections received the same events"
    );
}

#[tokio::test]
async fn websocket_faults_are_injected_and_counted() {
    let sim = start(config(12, 0)).await;
    let client = client();
    let tokens = open_tokens(&client, &sim).await;
    let base = sim.base_url();
    post_json(&client, &format!("{base}/_sim/faults"), &serde_json::json!({"spec": "ws_duplicate:every=10,count=3;ws_garbage:after=5,count=2;ws_reorder:after=50,count=1"})).await;
    let mut stream = ws_connect(&sim).await;
    ws_send(
        &mut stream,
        &serde_json::json!({"assets_ids": tokens, "type": "market", "initial_dump": false})
            .to_string(),
    )
    .await;
    ws_read_until_pong(&mut stream).await;
    advance(&client, &sim, 500).await;
    let frames = ws_read_until_pong(&mut stream).await;
    let garbage = frames
        .iter()
        .filter(|frame| serde_json::from_str::<Value>(frame).is_err())
        .count();
    assert_eq!(garbage, 2);
    let stats = get_json(&client, &format!("{base}/_sim/stats")).await;
    assert_eq!(stats["ws"]["faults"]["ws_duplicate"], 3);
    assert_eq!(stats["ws"]["faults"]["ws_garbage"], 2);
    assert_eq!(stats["ws"]["faults"]["ws_reorder"], 1);

    // A silent freeze: data stops, PONG still answered.
    post_json(
        &client,
        &format!("{base}/_sim/faults"),
        &serde_json::json!({"spec": "ws_freeze:count=1", "replace": true}),
    )
    .await;
    advance(&client, &sim, 500).await;
    let frozen = ws_read_until_pong(&mut stream).await;
    assert!(frozen.is_empty(), "data after a freeze: {}", frozen.len());
    advance(&client, &sim, 500).await;
    assert!(ws_read_until_pong(&mut stream).await.is_empty());

    // A disconnect closes the socket.
    let mut second = ws_connect(&sim).await;
    post_json(
        &client,
        &format!("{base}/_sim/faults"),
        &serde_json::json!({"spec": "ws_disconnect:after=3", "replace": true}),
    )
    .await;
    ws_send(
        &mut second,
        &serde_json::json!({"assets_ids": tokens, "type": "market", "initial_dump": false})
            .to_string(),
    )
    .await;
    advance(&client, &sim, 500).await;
    use futures::StreamExt;
    let mut closed = false;
    while let Ok(Some(message)) =
        tokio::time::timeout(std::time::Duration::from_secs(30), second.next()).await
    {
        match message {
            Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "connection not closed by ws_disconnect");
    let stats = get_json(&client, &format!("{base}/_sim/stats")).await;
    assert_eq!(stats["ws"]["faults"]["ws_freeze"], 1);
    assert_eq!(stats["ws"]["faults"]["ws_disconnect"], 1);
}

#[tokio::test]
async fn truth_ws_equals_what_a_subscriber_received() {
    let sim = start(config(16, 1)).await;
    let client = client();
    let base = sim.base_url();
    let tokens = open_tokens(&client, &sim).await;
    // One connection on a single token (its price_change carries only that token's entry),
    // one on both tokens of the same market.
    let single = tokens[0].clone();
    let mut single_stream = ws_connect(&sim).await;
    ws_send(&mut single_stream, &serde_json::json!({"assets_ids": [single], "type": "market", "custom_feature_enabled": true}).to_string()).await;
    let dump = frame_events(&ws_read_until_pong(&mut single_stream).await);
    assert_eq!(dump.len(), 1);
    let mut both_stream = ws_connect(&sim).await;
    ws_send(&mut both_stream, &serde_json::json!({"assets_ids": [tokens[0], tokens[1]], "type": "market", "initial_dump": false}).to_string()).await;
    ws_read_until_pong(&mut both_stream).await;
    advance(&client, &sim, 3_000).await;
    let received = frame_events(&ws_read_until_pong(&mut single_stream).await);
    let truth = get_json(
        &client,
        &format!("{base}/_sim/truth/ws?token_id={single}&limit=200000"),
    )
    .await;
    let truth_events: Vec<Value> = truth["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|entry| entry["event"].clone())
        .collect();
    assert!(received.len() > 50, "{}", received.len());
    assert_eq!(received, truth_events);
    for event in &received {
        if let Some(entries) = event["price_changes"].as_array() {
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0]["asset_id"], single.as_str());
        }
    }
    let both = frame_events(&ws_read_until_pong(&mut both_stream).await);
    let pairs = both
        .iter()
        .filter(|event| {
            event["price_changes"]
                .as_array()
                .is_some_and(|entries| entries.len() == 2)
        })
        .count();
    assert!(pairs > 0, "a subscriber of both tokens gets both entries");
    assert!(
        both.iter()
            .all(|event| event["event_type"] != "best_bid_ask"),
        "custom events without custom features"
    );
}
