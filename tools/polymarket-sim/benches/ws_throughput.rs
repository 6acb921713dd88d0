//! WebSocket throughput to one client: events per second from the market channel, measured
//! end to end (world generation, serialisation, framing, socket, client-side JSON parsing).
//!
//! `cargo bench -p polymarket-sim --bench ws_throughput` — prints the figures; not a test.
//! Two modes: `burst` drives the world as fast as it goes (POST /_sim/advance) and `paced`
//! runs the live driver at a high `--rate`.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use polymarket_sim::SimConfig;
use serde::de::IgnoredAny;
use tokio_tungstenite::tungstenite::Message;

const MEASURE_FOR: Duration = Duration::from_secs(8);

async fn open_tokens(base: &str) -> Vec<String> {
    let markets: serde_json::Value = reqwest::get(format!("{base}/_sim/truth/markets"))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    markets
        .as_array()
        .expect("array")
        .iter()
        .filter(|market| market["closed"] == false)
        .flat_map(|market| {
            market["token_ids"]
                .as_array()
                .expect("tokens")
                .iter()
                .map(|token| token.as_str().expect("str").to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Counts events in a frame (an object or an array of objects), parsing it like a client.
fn count_events(text: &str) -> u64 {
    if text.starts_with('[') {
        serde_json::from_str::<Vec<IgnoredAny>>(text)
            .map(|items| items.len() as u64)
            .unwrap_or(0)
    } else {
        u64::from(serde_json::from_str::<IgnoredAny>(text).is_ok())
    }
}

async fn run(mode: &str, rate: f64) {
    let config = SimConfig {
        seed: 7,
        markets: 200,
        history_days: 1,
        rate,
        port: 0,
        epoch_ms: Some(1_780_000_000_000),
        lifecycle_every: 0,
        ws_truth_capacity: 10_000,
        ..SimConfig::default()
    };
    let sim = polymarket_sim::start(config).await.expect("start");
    let base = sim.base_url();
    let tokens = open_tokens(&base).await;
    let (mut stream, _) = tokio_tungstenite::connect_async(sim.ws_url())
        .await
        .expect("connect");
    let subscribe = serde_json::json!({"assets_ids": tokens, "type": "market", "custom_feature_enabled": true, "initial_dump": false});
    stream
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .expect("subscribe");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let driver = if mode == "burst" {
        let base = base.clone();
        Some(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let sent = client
                    .post(format!("{base}/_sim/advance"))
                    .json(&serde_json::json!({"operations": 5_000}))
                    .send()
                    .await;
                if sent.is_err() {
                    return;
                }
            }
        }))
    } else {
        None
    };

    let started = Instant::now();
    let mut events = 0u64;
    let mut frames = 0u64;
    let mut bytes = 0u64;
    while started.elapsed() < MEASURE_FOR {
        match tokio::time::timeout(Duration::from_secs(2), stream.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                frames += 1;
                bytes += text.len() as u64;
                events += count_events(text.as_str());
            }
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(driver) = driver {
        driver.abort();
    }
    let stats: serde_json::Value = reqwest::get(format!("{base}/_sim/stats"))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    println!(
        "ws_throughput mode={mode} rate={rate}: {:.0} events/s to one client ({events} events, {frames} frames, {:.1} MB/s, {:.1}s; lagged disconnects {})",
        events as f64 / elapsed,
        bytes as f64 / elapsed / 1_000_000.0,
        elapsed,
        stats["ws"]["lagged_disconnects"]
    );
    sim.shutdown().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        run("burst", 0.0).await;
        run("paced", 30_000.0).await;
    });
}
