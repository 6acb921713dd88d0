//! The live world: the rate-driven driver streams without any explicit advance, and the
//! lifecycle lists new markets and resolves old ones consistently across Gamma, CLOB, the
//! WebSocket and the truth.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn the_rate_driven_world_streams_on_its_own() {
    let mut config = config(20, 0);
    config.rate = 2_000.0;
    let sim = start(config).await;
    let client = client();
    let tokens = open_tokens(&client, &sim).await;
    let mut stream = ws_connect(&sim).await;
    ws_send(
        &mut stream,
        &serde_json::json!({"assets_ids": tokens, "type": "market", "initial_dump": false})
            .to_string(),
    )
    .await;
    // Liveness only: a generous bound, nothing asserted about speed.
    let mut events = 0usize;
    while events < 500 {
        let message = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("live events")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = message {
            events += frame_events(&[text.as_str().to_owned()]).len();
        }
    }
    let paused = post_json(
        &client,
        &format!("{}/_sim/pause", sim.base_url()),
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(paused["paused"], true);
    let operations = paused["operations"].as_u64().expect("operations");
    assert!(operations > 0);
    // Paused: nothing more is generated.
    let again = get_json(&client, &format!("{}/_sim/info", sim.base_url())).await;
    assert_eq!(again["progress"]["operations"].as_u64(), Some(operations));
    let resumed = post_json(
        &client,
        &format!("{}/_sim/resume", sim.base_url()),
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(resumed["paused"], false);
    // Live fills land on the tape after the history.
    let fills = get_json(
        &client,
        &format!("{}/_sim/truth/fills?limit=200000", sim.base_url()),
    )
    .await;
    let live_fills = fills["fills"]
        .as_array()
        .expect("fills")
        .iter()
        .filter(|fill| fill["timestamp_ms"].as_i64() >= Some(EPOCH_MS))
        .count();
    assert!(live_fills > 0);
}

#[tokio::test]
async fn lifecycle_lists_and_resolves_markets_everywhere() {
    let mut config = config(20, 1);
    config.lifecycle_every = 100;
    let sim = start(config).await;
    let client = client();
    let base = sim.base_url();
    let before = get_json(&client, &format!("{base}/_sim/truth/markets"))
        .await
        .as_array()
        .expect("array")
        .clone();
    let tokens = open_tokens(&client, &sim).await;
    let mut stream = ws_connect(&sim).await;
    ws_send(&mut stream, &serde_json::json!({"assets_ids": tokens, "type": "market", "initial_dump": false, "custom_feature_enabled": true}).to_string()).await;
    ws_read_until_pong(&mut stream).await;
    advance(&client, &sim, 450).await;
    let events = frame_events(&ws_read_until_pong(&mut stream).await);
    let resolved: Vec<&Value> = events
        .iter()
        .filter(|event| event["event_type"] == "market_resolved")
        .collect();
    let listed: Vec<&Value> = events
        .iter()
        .filter(|event| event["event_type"] == "new_market")
        .collect();
    assert_eq!(resolved.len(), 2, "operations 100 and 300 resolve");
    assert_eq!(listed.len(), 2, "operations 200 and 400 list");

    let after = get_json(&client, &format!("{base}/_sim/truth/markets"))
        .await
        .as_array()
        .expect("array")
        .clone();
    assert_eq!(after.len(), before.len() + 2);
    for event in &resolved {
        let condition = event["market"].as_str().expect("market");
        let truth = after
            .iter()
            .find(|market| market["condition_id"] == condition)
            .expect("in truth");
        assert_eq!(truth["closed"], true);
        assert_eq!(truth["winner_token_id"], event["winning_asset_id"]);
        let token = event["assets_ids"][0].as_str().expect("token");
        assert_eq!(
            get(&client, &format!("{base}/clob/book?token_id={token}"))
                .await
                .0,
            404
        );
        let gamma = get_json(
            &client,
            &format!("{base}/gamma/markets?condition_ids={condition}&closed=true"),
        )
        .await;
        assert_eq!(gamma[0]["closed"], true);
        let winner_index = event["assets_ids"]
            .as_array()
            .expect("ids")
            .iter()
            .position(|id| *id == event["winning_asset_id"])
            .expect("winner");
        let expected_prices = if winner_index == 0 {
            "[\"1\", \"0\"]"
        } else {
            "[\"0\", \"1\"]"
        };
        assert_eq!(gamma[0]["outcomePrices"], expected_prices);
        let clob = get_json(&client, &format!("{base}/clob/markets/{condition}")).await;
        assert_eq!(clob["closed"], true);
        assert_eq!(clob["tokens"][winner_index]["winner"], true);
    }
    for event in &listed {
        let condition = event["market"].as_str().expect("market");
        let gamma = get_json(
            &client,
            &format!("{base}/gamma/markets?condition_ids={condition}"),
        )
        .await;
        assert_eq!(gamma.as_array().expect("array").len(), 1);
        assert_eq!(gamma[0]["version"], "v2");
        assert_eq!(gamma[0]["positionIds"], event["assets_ids"]);
        let token = event["assets_ids"][0].as_str().expect("token");
        let book = get_json(&client, &format!("{base}/clob/book?token_id={token}")).await;
        assert!(!book["bids"].as_array().expect("bids").is_empty());
        let truth = get_json(&client, &format!("{base}/_sim/truth/book?token_id={token}")).await;
        assert_eq!(truth, book);
    }
}

#[tokio::test]
async fn shutdown_closes_websockets_and_stops_serving() {
    let mut config = config(6, 0);
    config.rate = 100.0;
    let sim = start(config).await;
    let base = sim.base_url();
    let client = client();
    let tokens = open_tokens(&client, &sim).await;
    let mut stream = ws_connect(&sim).await;
    ws_send(
        &mut stream,
        &serde_json::json!({"assets_ids": tokens, "type": "market"}).to_string(),
    )
    .await;
    ws_read_until_pong(&mut stream).await;
    sim.shutdown().await;
    let mut closed = false;
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await
    {
        if matches!(message, Ok(Message::Close(_)) | Err(_)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the websocket stayed open after shutdown");
    assert!(
        client
            .get(format!("{base}/clob/time"))
            .send()
            .await
            .is_err(),
        "still serving after shutdown"
    );
}

#[tokio::test]
async fn speed_compresses_simulated_time() {
    let mut config = config(6, 0);
    config.rate = 1_000.0;
    config.speed = 60.0;
    let sim = start(config).await;
    let client = client();
    let base = sim.base_url();
    let paused = post_json(
        &client,
        &format!("{base}/_sim/pause"),
        &serde_json::json!({}),
    )
    .await;
    let before = paused["operations"].as_u64().expect("operations");
    let advanced = advance(&client, &sim, 100).await;
    assert_eq!(advanced["operations"].as_u64(), Some(before + 100));
    // Operation k is stamped epoch + k · 1000 · speed / rate = epoch + 60·k ms.
    let last = i64::try_from(before + 99).expect("small");
    assert_eq!(
        advanced["world_clock_ms"].as_i64(),
        Some(EPOCH_MS + 60 * last)
    );
    let fills = get_json(&client, &format!("{base}/_sim/truth/fills?limit=200000")).await;
    for fill in fills["fills"].as_array().expect("fills") {
        let ts = fill["timestamp_ms"].as_i64().expect("ms");
        assert_eq!(
            (ts - EPOCH_MS).rem_euclid(60),
            0,
            "live fill stamped off the 60 ms grid: {ts}"
        );
    }
}

#[tokio::test]
async fn the_library_api_drives_the_world_in_process() {
    let mut config = config(6, 0);
    config.rate = 500.0;
    let sim = start(config).await;
    let paused = sim.pause();
    assert!(paused.paused);
    let advanced = sim.advance(250);
    assert_eq!(advanced.operations, paused.operations + 250);
    assert!(advanced.last_ws_seq > paused.last_ws_seq);
    sim.add_faults("error@/clob/time:status=502,count=1")
        .expect("valid spec");
    assert!(sim.add_faults("bogus").is_err());
    let client = client();
    assert_eq!(
        get(&client, &format!("{}/clob/time", sim.base_url()))
            .await
            .0,
        502
    );
    assert_eq!(
        get(&client, &format!("{}/clob/time", sim.base_url()))
            .await
            .0,
        200
    );
    assert!(!sim.resume().paused);
    assert_eq!(sim.addr.ip().to_string(), "127.0.0.1");
}
