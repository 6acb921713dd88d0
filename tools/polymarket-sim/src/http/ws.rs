//! The CLOB market channel (`/ws/market`).
//!
//! Protocol as upstream: the first text frame subscribes (`assets_ids`, `type`,
//! `initial_dump` default true, `custom_feature_enabled` default false); later frames change
//! the subscription (`{"operation":"subscribe"|"unsubscribe","assets_ids":[…]}`); the text
//! frame `PING` is answered with the text frame `PONG`. Data frames are a single event object
//! or an array of events. The initial dump is an array of `book` events.
//!
//! A `PING` is also a barrier: every event generated before it was read is sent before the
//! `PONG`, which lets tests line the stream up with REST at one instant.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::booksnap::token_book_from_engine;
use crate::faults::FaultKind;
use crate::live::{Audience, WsBatch, book_event_json};
use crate::state::SimState;

/// Numbers the garbage frames of every connection (see `deliver`).
static GARBAGE_FRAMES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

const MAX_EVENTS_PER_FRAME: usize = 500;

pub(crate) async fn market_channel(
    State(state): State<Arc<SimState>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| async move {
        state.stats.ws(|stats| {
            stats.connections += 1;
            stats.open_connections += 1;
        });
        let mut connection = Connection::new(Arc::clone(&state), socket);
        connection.run().await;
        state
            .stats
            .ws(|stats| stats.open_connections = stats.open_connections.saturating_sub(1));
    })
}

enum Freeze {
    None,
    Until(Instant),
    Forever,
}

/// What happened to a send.
enum Flow {
    Continue,
    Close,
}

struct Connection {
    state: Arc<SimState>,
    socket: WebSocket,
    /// Per market: the sequence after which each token's events are delivered (None = not
    /// subscribed). Events up to the subscription's snapshot are already in its `book` dump.
    subscriptions: HashMap<u32, [Option<u64>; 2]>,
    /// Asset ids subscribed, known or not (the per-connection cap counts them all).
    subscribed_assets: std::collections::HashSet<String>,
    custom: bool,
    receiver: Option<broadcast::Receiver<WsBatch>>,
    events_sent: u64,
    freeze: Freeze,
    held_for_reorder: Option<String>,
}

impl Connection {
    fn new(state: Arc<SimState>, socket: WebSocket) -> Connection {
        Connection {
            state,
            socket,
            subscriptions: HashMap::new(),
            subscribed_assets: std::collections::HashSet::new(),
            custom: false,
            receiver: None,
            events_sent: 0,
            freeze: Freeze::None,
            held_for_reorder: None,
        }
    }

    async fn run(&mut self) {
        let mut closing = self.state.closing.subscribe();
        loop {
            let next_batch = async {
                match self.receiver.as_mut() {
                    Some(receiver) => receiver.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = closing.changed() => {
                    let _ = self.socket.send(Message::Close(None)).await;
                    return;
                }
                incoming = self.socket.recv() => {
                    let Some(Ok(message)) = incoming else {
                        return;
                    };
                    let flow = match message {
                        Message::Text(text) => self.on_text(text.as_str()).await,
                        Message::Close(_) => Flow::Close,
                        _ => Flow::Continue,
                    };
                    if matches!(flow, Flow::Close) {
                        return;
                    }
                }
                batch = next_batch => {
                    let flow = match batch {
                        Ok(batch) => self.forward(&[batch]).await,
                        Err(RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "websocket client lagged behind the live feed; closing");
                            self.state.stats.ws(|stats| stats.lagged_disconnects += 1);
                            Flow::Close
                        }
                        Err(RecvError::Closed) => Flow::Close,
                    };
                    if matches!(flow, Flow::Close) {
                        let _ = self.socket.send(Message::Close(None)).await;
                        return;
                    }
                }
            }
        }
    }

    async fn send_text(&mut self, text: String) -> Flow {
        match self.socket.send(Message::Text(text.into())).await {
            Ok(()) => {
                self.state.stats.ws(|stats| stats.frames_sent += 1);
                Flow::Continue
            }
            Err(_) => Flow::Close,
        }
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("PING") {
            // Barrier: deliver everything already generated, then PONG.
            let mut pending = Vec::new();
            if let Some(receiver) = self.receiver.as_mut() {
                loop {
                    match receiver.try_recv() {
                        Ok(batch) => pending.push(batch),
                        Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
                        Err(TryRecvError::Lagged(_)) => {
                            self.state.stats.ws(|stats| stats.lagged_disconnects += 1);
                            return Flow::Close;
                        }
                    }
                }
            }
            if !pending.is_empty() && matches!(self.forward(&pending).await, Flow::Close) {
                return Flow::Close;
            }
            let flow = self.send_text("PONG".to_owned()).await;
            self.state.stats.ws(|stats| stats.pongs_sent += 1);
            return flow;
        }
        let Ok(message) = serde_json::from_str::<Value>(trimmed) else {
            return self
                .refuse_invalid("message is neither PING nor a JSON subscription")
                .await;
        };
        let assets: Vec<String> = message
            .get("assets_ids")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let operation = message
            .get("operation")
            .and_then(Value::as_str)
            .unwrap_or("subscribe");
        if let Some(custom) = message
            .get("custom_feature_enabled")
            .and_then(Value::as_bool)
        {
            self.custom = self.custom || custom;
        }
        match operation {
            "unsubscribe" => {
                self.unsubscribe(&assets);
                Flow::Continue
            }
            "subscribe" => {
                let initial_dump = message
                    .get("initial_dump")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                self.subscribe(assets, initial_dump).await
            }
            _ => self.refuse_invalid("unknown operation").await,
        }
    }

    async fn refuse_invalid(&mut self, reason: &str) -> Flow {
        self.state.stats.ws(|stats| stats.invalid_messages += 1);
        let frame = json!({"event_type": "error", "code": "invalid_message", "error": reason});
        self.send_text(frame.to_string()).await
    }

    fn unsubscribe(&mut self, assets: &[String]) {
        let shared = self.state.read();
        for asset in assets {
            self.subscribed_assets.remove(asset);
            if let Some((market, token)) = shared.world.token_lookup.get(asset).copied()
                && let Some(tokens) = self.subscriptions.get_mut(&market)
            {
                tokens[usize::from(token)] = None;
            }
        }
    }

    async fn subscribe(&mut self, assets: Vec<String>, initial_dump: bool) -> Flow {
        let mut new_assets: Vec<String> = Vec::new();
        for asset in assets {
            if !self.subscribed_assets.contains(&asset) && !new_assets.contains(&asset) {
                new_assets.push(asset);
            }
        }
        let cap = self.state.config.ws_max_assets;
        if self.subscribed_assets.len() + new_assets.len() > cap {
            self.state
                .stats
                .ws(|stats| stats.subscriptions_refused += 1);
            let frame = json!({
                "event_type": "error",
                "code": "too_many_assets",
                "error": format!("subscription refused: at most {cap} assets per connection"),
                "max_assets": cap,
                "subscribed": self.subscribed_assets.len(),
                "requested": new_assets.len(),
            });
            return self.send_text(frame.to_string()).await;
        }
        let mut dump = Vec::new();
        {
            // Join the broadcast and snapshot under the world lock: the generator broadcasts
            // while holding it, so every event after `from_seq` reaches this receiver.
            let shared = self.state.read();
            if self.receiver.is_none() {
                self.receiver = Some(self.state.broadcaster.subscribe());
            }
            let from_seq = shared.live.last_ws_seq;
            let world = &shared.world;
            for asset in &new_assets {
                self.subscribed_assets.insert(asset.clone());
                let Some((market, token)) = world.token_lookup.get(asset).copied() else {
                    continue;
                };
                self.subscriptions.entry(market).or_insert([None, None])[usize::from(token)] =
                    Some(from_seq);
                let Some(info) = world.markets.get(market as usize) else {
                    continue;
                };
                if !initial_dump || info.is_closed() {
                    continue;
                }
                if let Some(book) = world.books.get(market as usize) {
                    let token_book = token_book_from_engine(
                        book,
                        token,
                        &info.condition_id,
                        &info.token_ids[usize::from(token)],
                        info.min_order_size,
                        info.neg_risk,
                        book.last_change_ms,
                    );
                    dump.push(book_event_json(&token_book, false));
                }
            }
        }
        if dump.is_empty() {
            return Flow::Continue;
        }
        self.state
            .stats
            .ws(|stats| stats.events_sent += dump.len() as u64);
        self.send_text(format!("[{}]", dump.join(","))).await
    }

    /// Which of a market's tokens (bit mask) this connection receives `seq` for.
    fn delivery_mask(&self, market: u32, seq: u64, mask: u8) -> u8 {
        let Some(tokens) = self.subscriptions.get(&market) else {
            return 0;
        };
        let mut delivered = 0;
        for (token, from) in tokens.iter().enumerate() {
            if mask & (1 << token) != 0 && from.is_some_and(|from_seq| seq > from_seq) {
                delivered |= 1 << token;
            }
        }
        delivered
    }

    async fn forward(&mut self, batches: &[WsBatch]) -> Flow {
        let mut texts: Vec<String> = Vec::new();
        for batch in batches {
            for event in batch.iter() {
                let text = match event.audience {
                    Audience::Tokens(mask) => {
                        let delivered = self.delivery_mask(event.market, event.seq, mask);
                        if delivered == 0 {
                            continue;
                        }
                        event.json_for(delivered)
                    }
                    Audience::CustomTokens(mask) => {
                        if !self.custom {
                            continue;
                        }
                        let delivered = self.delivery_mask(event.market, event.seq, mask);
                        if delivered == 0 {
                            continue;
                        }
                        event.json_for(delivered)
                    }
                    Audience::AllCustom => {
                        if !self.custom || self.receiver.is_none() {
                            continue;
                        }
                        std::borrow::Cow::Borrowed(event.json.as_str())
                    }
                };
                texts.push(text.into_owned());
            }
        }
        if texts.is_empty() {
            return Flow::Continue;
        }
        self.deliver(texts).await
    }

    /// Applies WebSocket faults and sends the events as frames.
    async fn deliver(&mut self, texts: Vec<String>) -> Flow {
        let faults_active = self.state.faults.has_ws_rules();
        let new_events = texts.len() as u64;
        let mut frame: Vec<String> = Vec::with_capacity(texts.len());
        let mut disconnect = false;
        let mut garbage_frames = 0u32;
        for text in texts {
            match self.freeze {
                Freeze::Forever => continue,
                Freeze::Until(until) if Instant::now() < until => continue,
                Freeze::Until(_) => self.freeze = Freeze::None,
                Freeze::None => {}
            }
            if !faults_active {
                frame.push(text);
                // An event held back by the last `ws_reorder` goes out after this one, even
                // once every rule is spent: holding it for good would drop an event the truth
                // says was sent, with no disconnect to explain it.
                if let Some(held) = self.held_for_reorder.take() {
                    frame.push(held);
                }
                continue;
            }
            let fired = self.state.faults.fire_ws(self.events_sent + 1);
            let mut emit = vec![text];
            for rule in &fired {
                self.state
                    .stats
                    .ws(|stats| *stats.faults.entry(rule.kind.name()).or_default() += 1);
                match rule.kind {
                    FaultKind::WsDisconnect => disconnect = true,
                    FaultKind::WsFreeze => {
                        self.freeze = match rule.duration {
                            Some(duration) => Freeze::Until(Instant::now() + duration),
                            None => Freeze::Forever,
                        };
                        emit.clear();
                    }
                    FaultKind::WsGarbage => garbage_frames += 1,
                    FaultKind::WsDuplicate => {
                        if let Some(first) = emit.first().cloned() {
                            emit.push(first);
                        }
                    }
                    FaultKind::WsReorder => {
                        // Hold this event back; it goes out after the next one.
                        if let Some(previous) = self.held_for_reorder.take() {
                            emit.push(previous);
                        } else {
                            self.held_for_reorder = emit.pop();
                        }
                    }
                    _ => {}
                }
            }
            if fired.iter().all(|rule| rule.kind != FaultKind::WsReorder)
                && let Some(held) = self.held_for_reorder.take()
            {
                emit.push(held);
            }
            self.events_sent += 1;
            frame.extend(emit);
            if disconnect {
                break;
            }
        }
        for _ in 0..garbage_frames {
            // Numbered, so that each garbage frame is its own bad input, told apart by its
            // text (a NUL first: neither PONG nor JSON).
            let number = GARBAGE_FRAMES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let text = format!("\u{0}garbage#{number}{{\"event_type\":\"bo");
            if matches!(self.send_text(text.clone()).await, Flow::Close) {
                return Flow::Close;
            }
            self.state.stats.ws(|stats| stats.garbage_frames.push(text));
        }
        let event_count = frame.len() as u64;
        if !faults_active {
            self.events_sent += new_events;
        }
        for chunk in frame.chunks(MAX_EVENTS_PER_FRAME) {
            let text = if chunk.len() == 1 {
                chunk[0].clone()
            } else {
                format!("[{}]", chunk.join(","))
            };
            if matches!(self.send_text(text).await, Flow::Close) {
                return Flow::Close;
            }
        }
        self.state
            .stats
            .ws(|stats| stats.events_sent += event_count);
        if disconnect {
            let _ = self.socket.send(Message::Close(None)).await;
            return Flow::Close;
        }
        Flow::Continue
    }
}
