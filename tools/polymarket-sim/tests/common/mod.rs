//! Shared helpers: start a simulator on port 0 and talk to it over real HTTP / WebSocket.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::str::FromStr;

use futures::{SinkExt, StreamExt};
use polymarket_sim::{RunningSim, SimConfig};
use rust_decimal::Decimal;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// A fixed history end so every run of a test sees the same world.
pub(crate) const EPOCH_MS: i64 = 1_780_000_000_000;

pub(crate) fn config(markets: u32, history_days: u32) -> SimConfig {
    SimConfig {
        seed: 7,
        markets,
        history_days,
        rate: 0.0,
        port: 0,
        epoch_ms: Some(EPOCH_MS),
        lifecycle_every: 0,
        ..SimConfig::default()
    }
}

pub(crate) async fn start(config: SimConfig) -> RunningSim {
    polymarket_sim::start(config)
        .await
        .expect("simulator starts")
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("http client")
}

pub(crate) async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let response = client.get(url).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

pub(crate) async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let (status, body) = get(client, url).await;
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|error| panic!("{url}: {error}: {body}"))
}

pub(crate) async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    let response = client.post(url).json(body).send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    assert_eq!(status, 200, "{url}: {text}");
    serde_json::from_str(&text).expect("json")
}

pub(crate) async fn advance(client: &reqwest::Client, sim: &RunningSim, operations: u64) -> Value {
    post_json(
        client,
        &format!("{}/_sim/advance", sim.base_url()),
        &serde_json::json!({"operations": operations}),
    )
    .await
}

pub(crate) fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/brief/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// Open token ids of the world (from the truth endpoint).
pub(crate) async fn open_tokens(client: &reqwest::Client, sim: &RunningSim) -> Vec<String> {
    let markets = get_json(client, &format!("{}/_sim/truth/markets", sim.base_url())).await;
    markets
        .as_array()
        .expect("array")
        .iter()
        .filter(|market| market["closed"] == Value::Bool(false))
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

pub(crate) fn dec(text: &str) -> Decimal {
    polytape_model::parse::parse_decimal_text(text)
        .unwrap_or_else(|_| Decimal::from_str(text).expect("decimal"))
}

/// A book as price → size maps (exact decimals), from `/book`-shaped JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Levels {
    pub(crate) bids: BTreeMap<Decimal, Decimal>,
    pub(crate) asks: BTreeMap<Decimal, Decimal>,
}

impl Levels {
    pub(crate) fn from_book_json(book: &Value) -> Levels {
        let side = |key: &str| -> BTreeMap<Decimal, Decimal> {
            book[key]
                .as_array()
                .expect("levels")
                .iter()
                .map(|level| {
                    (
                        dec(level["price"].as_str().expect("price")),
                        dec(level["size"].as_str().expect("size")),
                    )
                })
                .collect()
        };
        Levels {
            bids: side("bids"),
            asks: side("asks"),
        }
    }
}

pub(crate) type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn ws_connect(sim: &RunningSim) -> WsStream {
    let (stream, _) = tokio_tungstenite::connect_async(sim.ws_url())
        .await
        .expect("ws connect");
    stream
}

pub(crate) async fn ws_send(stream: &mut WsStream, text: &str) {
    stream
        .send(Message::Text(text.to_owned().into()))
        .await
        .expect("ws send");
}

/// Reads text frames until `PONG` (sending `PING` first): every frame before it.
pub(crate) async fn ws_read_until_pong(stream: &mut WsStream) -> Vec<String> {
    ws_send(stream, "PING").await;
    let mut frames = Vec::new();
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(60), stream.next())
            .await
            .expect("no PONG within a minute")
            .expect("stream open")
            .expect("frame");
        if let Message::Text(text) = message {
            if text.as_str() == "PONG" {
                return frames;
            }
            frames.push(text.as_str().to_owned());
        }
    }
}

/// Splits frames (object or array) into events.
pub(crate) fn frame_events(frames: &[String]) -> Vec<Value> {
    let mut events = Vec::new();
    for frame in frames {
        match serde_json::from_str::<Value>(frame)
            .unwrap_or_else(|error| panic!("{error}: {frame}"))
        {
            Value::Array(items) => events.extend(items),
            other => events.push(other),
        }
    }
    events
}
