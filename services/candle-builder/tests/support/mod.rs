//! Shared by the integration tests that run the builder against the stack: topics, producing
//! and reading records, waiting for the builder to catch up, and a seeded market history.

#![allow(dead_code)] // each test binary uses a different part

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    time::{Duration, Instant},
};

use polytape_candle_builder::pipeline::group_id;
use polytape_codec::AvroRecord;
use polytape_kafka::ensure_topics;
use polytape_model::{
    BookLevel, BookSnapshot, BookSource, Decimal, PriceChange, Side, Topic, TopicNames, Trade,
    TradeIdentity, TradeSource,
};
// Re-exported for the test files; not every test binary uses each.
use polytape_test_support::{
    cli::{RunningService, free_local_addr, stack_env},
    stack::endpoints,
    topic::{read_partitions, records_behind},
};
#[allow(unused_imports)]
pub(crate) use polytape_test_support::{
    stack::registry,
    topic::{positioned_records, produce},
};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_polytape-candle-builder");

/// Every topic the builder reads or writes.
pub(crate) const TOPICS: [Topic; 9] = [
    Topic::Trades,
    Topic::LastTrades,
    Topic::BookSnapshots,
    Topic::PriceChanges,
    Topic::MarketLifecycle,
    Topic::Candles,
    Topic::BookState,
    Topic::Continuity,
    Topic::DeadLetters,
];

/// Every topic a builder may read (`trades` or `last_trades` by `candle_input`; the other
/// stays empty).
pub(crate) const INPUTS: [Topic; 5] = [
    Topic::Trades,
    Topic::LastTrades,
    Topic::BookSnapshots,
    Topic::PriceChanges,
    Topic::MarketLifecycle,
];

pub(crate) async fn create_topics(names: &TopicNames) {
    ensure_topics(&endpoints().kafka_brokers, names, &TOPICS, 1)
        .await
        .unwrap();
}

/// The builder running against the stack under `names`' prefix.
pub(crate) fn start_builder(names: &TopicNames) -> RunningService {
    start_builder_with(names, &[])
}

/// The builder with extra configuration (`POLYTAPE_…` variables).
pub(crate) fn start_builder_with(
    names: &TopicNames,
    extra: &[(&'static str, &str)],
) -> RunningService {
    let admin = free_local_addr();
    let mut environment = stack_env();
    // No REST resync unless a test asks for one (with its own `POLYTAPE_CLOB_URL`): the
    // default upstream is the real Polymarket.
    environment.push(("POLYTAPE_BOOK_RESYNC_BUDGET", "0".to_owned()));
    for (name, value) in extra {
        environment.push((*name, (*value).to_owned()));
    }
    environment.push(("POLYTAPE_TOPIC_PREFIX", names.prefix().to_owned()));
    environment.push(("POLYTAPE_CANDLE_BUILDER_ADMIN_ADDR", admin.to_string()));
    environment.push(("POLYTAPE_LOG_LEVEL", "warn".to_owned()));
    RunningService::start(Path::new(BINARY), &environment, admin)
}

/// Waits until the builder's committed offsets reach the end of every input partition.
pub(crate) fn wait_caught_up(names: &TopicNames, timeout: Duration) {
    wait_caught_up_on(names, &INPUTS, timeout);
}

/// Waits until the builder's committed offsets reach the end of every partition of `inputs`.
pub(crate) fn wait_caught_up_on(names: &TopicNames, inputs: &[Topic], timeout: Duration) {
    let group = group_id(names);
    let deadline = Instant::now() + timeout;
    loop {
        let behind = records_behind(&group, names, inputs);
        if behind == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the builder is still {behind} records behind after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Latest candle per key (highest version; the later record on a tie).
pub(crate) fn latest_candles(
    records: Vec<(i32, i64, polytape_model::Candle)>,
) -> BTreeMap<String, polytape_model::Candle> {
    let mut latest: BTreeMap<String, polytape_model::Candle> = BTreeMap::new();
    for (_, _, candle) in records {
        let key = candle.record_key();
        if latest
            .get(&key)
            .is_none_or(|existing| candle.version >= existing.version)
        {
            latest.insert(key, candle);
        }
    }
    latest
}

/// Last book state per token in log order (what compaction keeps).
pub(crate) fn last_book_states(
    records: Vec<(i32, i64, polytape_model::BookState)>,
) -> BTreeMap<String, polytape_model::BookState> {
    records
        .into_iter()
        .map(|(_, _, state)| (state.token_id.clone(), state))
        .collect()
}

fn dec(units: i64) -> Decimal {
    Decimal::new(units, 6)
}

fn hex_id(rng: &mut ChaCha8Rng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// A seeded market history in the shape the simulator serves: markets with two outcome
/// tokens, fills grouped in transactions (ties on time), prices on the tick, sizes with 6
/// decimals; delivered out of order within the lateness, with some redeliveries and a few
/// deliberately late fills (one hour behind), in arrival order.
pub(crate) struct History {
    pub(crate) trades: Vec<Trade>,
    /// Indexes (in `trades`) of the deliberately late ones.
    pub(crate) late: Vec<usize>,
}

pub(crate) fn trade_history(
    seed: u64,
    markets: usize,
    fills: usize,
    start_ms: i64,
    span_ms: i64,
) -> History {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let market_ids: Vec<(String, [String; 2], i64)> = (0..markets)
        .map(|_| {
            let condition = format!("0x{}", hex_id(&mut rng, 32));
            let tokens =
                [0, 1].map(|_| format!("{}", rng.random_range(10_u128.pow(37)..10_u128.pow(38))));
            let tick = if rng.random_bool(0.5) { 10_000 } else { 1_000 };
            (condition, tokens, tick)
        })
        .collect();
    let mut fair: Vec<i64> = (0..markets)
        .map(|_| rng.random_range(100_000..900_000))
        .collect();
    let wallets: Vec<String> = (0..50)
        .map(|_| format!("0x{}", hex_id(&mut rng, 20)))
        .collect();
    // Two fills per transaction on average.
    let step = (span_ms / i64::try_from(fills).unwrap()).max(1) * 4;
    let mut clock = start_ms;
    // (arrival key, sequence, trade, deliberately late)
    let mut arrivals: Vec<(i64, usize, Trade, bool)> = Vec::new();
    // About `fills` fills over the whole span (the loop runs to the end of the span, so a
    // fill delivered an hour late always has an hour of later fills ahead of it).
    while clock < start_ms + span_ms {
        clock += rng.random_range(0..step);
        let market = rng.random_range(0..markets);
        let (condition, tokens, tick) = &market_ids[market];
        fair[market] = (fair[market] + rng.random_range(-20_000..=20_000)).clamp(20_000, 980_000);
        let tx = format!("0x{}", hex_id(&mut rng, 32));
        for _ in 0..rng.random_range(1..=3) {
            let outcome = rng.random_range(0..2_usize);
            let yes = (fair[market] + rng.random_range(-5..=5) * tick) / tick * tick;
            let price =
                if outcome == 0 { yes } else { 1_000_000 - yes }.clamp(*tick, 1_000_000 - tick);
            let size = rng.random_range(1..200_000_000_i64);
            let side = if rng.random_bool(0.5) {
                Side::Buy
            } else {
                Side::Sell
            };
            let wallet = &wallets[rng.random_range(0..wallets.len())];
            let trade_id = TradeIdentity {
                transaction_hash: &tx,
                token_id: &tokens[outcome],
                side,
                size: dec(size),
                price: dec(price),
                proxy_wallet: wallet,
            }
            .trade_id();
            let trade = Trade {
                trade_id,
                condition_id: condition.clone(),
                token_id: tokens[outcome].clone(),
                outcome: Some(if outcome == 0 { "Yes" } else { "No" }.to_owned()),
                outcome_index: Some(i32::try_from(outcome).unwrap()),
                side,
                price: dec(price),
                size: dec(size),
                timestamp_ms: clock,
                transaction_hash: tx.clone(),
                proxy_wallet: wallet.clone(),
                source: TradeSource::DataApiV2,
                ingested_ms: clock + 5_000,
            };
            let late = clock + 3_700_000 < start_ms + span_ms && rng.random_bool(0.005);
            let delay = if late {
                3_600_000
            } else if rng.random_bool(0.1) {
                rng.random_range(0..60_000)
            } else {
                0
            };
            let sequence = arrivals.len();
            if !late && rng.random_bool(0.02) {
                // Redelivered within the lateness (a collector re-poll).
                arrivals.push((
                    clock + delay + rng.random_range(0..30_000),
                    sequence,
                    trade.clone(),
                    false,
                ));
            }
            arrivals.push((clock + delay, arrivals.len(), trade, late));
        }
    }
    arrivals.sort_by_key(|(arrival, sequence, _, _)| (*arrival, *sequence));
    let late = arrivals
        .iter()
        .enumerate()
        .filter(|(_, (_, _, _, late))| *late)
        .map(|(index, _)| index)
        .collect();
    History {
        trades: arrivals.into_iter().map(|(_, _, trade, _)| trade).collect(),
        late,
    }
}

/// Book events for `tokens`: a snapshot each, valid changes (best bid/ask as upstream sends
/// them), a snapshot every ~200 events, one forced mismatch on the first token followed by a
/// recovering snapshot, and a final snapshot of every token. Returns the snapshots, the
/// changes, and the expected final book per token (bids best first, asks best first).
/// Bids and asks, best first, as (price, size) in scale-6 units.
pub(crate) type Sides = (Vec<(i64, i64)>, Vec<(i64, i64)>);

pub(crate) struct BookHistory {
    pub(crate) snapshots: Vec<BookSnapshot>,
    pub(crate) changes: Vec<PriceChange>,
    pub(crate) expected: HashMap<String, Sides>,
    /// The true book (all levels) of a token right after its event at a time.
    pub(crate) truth: HashMap<(String, i64), Sides>,
    pub(crate) mismatched_token: String,
}

fn sides(book: &[BTreeMap<i64, i64>; 2]) -> Sides {
    (
        book[0]
            .iter()
            .rev()
            .map(|(price, size)| (*price, *size))
            .collect(),
        book[1]
            .iter()
            .map(|(price, size)| (*price, *size))
            .collect(),
    )
}

pub(crate) fn book_history(
    seed: u64,
    token_count: usize,
    events: usize,
    start_ms: i64,
) -> BookHistory {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tokens: Vec<String> = (0..token_count)
        .map(|index| format!("{}{index:03}", 7_000_000_000_000_u64 + seed))
        .collect();
    let mut books: Vec<[BTreeMap<i64, i64>; 2]> =
        vec![[BTreeMap::new(), BTreeMap::new()]; token_count];
    let mut snapshots = Vec::new();
    let mut changes = Vec::new();
    let mut sequence = 0_i64;
    let snapshot_of = |token: &str, book: &[BTreeMap<i64, i64>; 2], time: i64| BookSnapshot {
        token_id: token.to_owned(),
        condition_id: format!("0xcond{token}"),
        timestamp_ms: time,
        received_ms: time,
        bids: book[0]
            .iter()
            .rev()
            .map(|(price, size)| BookLevel {
                price: dec(*price),
                size: dec(*size),
            })
            .collect(),
        asks: book[1]
            .iter()
            .map(|(price, size)| BookLevel {
                price: dec(*price),
                size: dec(*size),
            })
            .collect(),
        hash: None,
        tick_size: Some(dec(10_000)),
        min_order_size: None,
        neg_risk: None,
        last_trade_price: None,
        source: BookSource::Ws,
        connection_id: Some("conn-1".to_owned()),
        sequence: None,
    };
    let mut truth = HashMap::new();
    let mut time = start_ms;
    for (index, token) in tokens.iter().enumerate() {
        for _ in 0..5 {
            books[index][0].insert(
                rng.random_range(1..50) * 10_000,
                rng.random_range(1..1_000) * 1_000_000,
            );
            books[index][1].insert(
                rng.random_range(51..100) * 10_000,
                rng.random_range(1..1_000) * 1_000_000,
            );
        }
        snapshots.push(snapshot_of(token, &books[index], time));
        truth.insert((token.clone(), time), sides(&books[index]));
    }
    let mismatch_at = events / 2;
    for event in 0..events {
        time += rng.random_range(1..50);
        let index = rng.random_range(0..token_count);
        if event % 200 == 199 {
            snapshots.push(snapshot_of(&tokens[index], &books[index], time));
            truth.insert((tokens[index].clone(), time), sides(&books[index]));
            continue;
        }
        let (side_index, side, price) = if rng.random_bool(0.5) {
            (0, Side::Buy, rng.random_range(1..50) * 10_000)
        } else {
            (1, Side::Sell, rng.random_range(51..100) * 10_000)
        };
        let size = if rng.random_bool(0.3) {
            0
        } else {
            rng.random_range(1..1_000) * 1_000_000
        };
        let index = if event == mismatch_at { 0 } else { index };
        if size == 0 {
            books[index][side_index].remove(&price);
        } else {
            books[index][side_index].insert(price, size);
        }
        let best_bid = books[index][0].keys().next_back().copied().unwrap_or(0);
        let mut best_ask = books[index][1].keys().next().copied().unwrap_or(1_000_000);
        if event == mismatch_at {
            // Upstream's best ask disagrees with every book built from the stream.
            best_ask = 999_999;
        }
        sequence += 1;
        changes.push(PriceChange {
            token_id: tokens[index].clone(),
            condition_id: format!("0xcond{}", tokens[index]),
            side,
            price: dec(price),
            size: dec(size),
            best_bid: Some(dec(best_bid)),
            best_ask: Some(dec(best_ask)),
            hash: None,
            timestamp_ms: time,
            received_ms: time,
            connection_id: "conn-1".to_owned(),
            sequence,
            entry_index: 0,
        });
        truth.insert((tokens[index].clone(), time), sides(&books[index]));
    }
    time += 1_000;
    let mut expected = HashMap::new();
    for (index, token) in tokens.iter().enumerate() {
        snapshots.push(snapshot_of(token, &books[index], time));
        truth.insert((token.clone(), time), sides(&books[index]));
        expected.insert(
            token.clone(),
            (
                books[index][0]
                    .iter()
                    .rev()
                    .map(|(price, size)| (*price, *size))
                    .collect(),
                books[index][1]
                    .iter()
                    .map(|(price, size)| (*price, *size))
                    .collect(),
            ),
        );
    }
    BookHistory {
        snapshots,
        changes,
        expected,
        truth,
        mismatched_token: tokens[0].clone(),
    }
}

/// Generations of the checkpoint manifests, in the order they were written.
pub(crate) fn checkpoint_generations(names: &TopicNames) -> Vec<u64> {
    let topic = format!("{}polytape.candle_builder.checkpoints.v1", names.prefix());
    read_partitions(&topic, 0..1)
        .into_iter()
        .map(|message| {
            let manifest: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
            manifest["generation"].as_u64().unwrap()
        })
        .collect()
}

/// The simulator (`tools/polymarket-sim`) in-process, frozen (`rate 0`): its history is fixed
/// by the seed and the epoch, and live operations run only when a test advances it.
pub(crate) async fn start_simulator(
    seed: u64,
    markets: u32,
    history_days: u32,
    epoch_ms: i64,
) -> polymarket_sim::RunningSim {
    polymarket_sim::start(polymarket_sim::SimConfig {
        seed,
        markets,
        history_days,
        rate: 0.0,
        port: 0,
        epoch_ms: Some(epoch_ms),
        lifecycle_every: 0,
        ..Default::default()
    })
    .await
    .unwrap()
}

pub(crate) async fn get_json(url: &str) -> serde_json::Value {
    let response = reqwest::get(url).await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

fn text_field<'a>(row: &'a serde_json::Value, key: &str) -> &'a str {
    row.get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("{key} missing in {row}"))
}

/// An exact decimal from the wire (`".48"` included), normalised as the services store it.
fn wire_decimal(text: &str) -> Decimal {
    polytape_model::parse::parse_decimal_text(text)
        .unwrap_or_else(|error| panic!("{text:?}: {error}"))
        .normalize()
}

/// Every fill of the simulator's tape (`/_sim/truth/fills`, taker and maker rows), oldest
/// first.
pub(crate) async fn simulator_fills(sim: &polymarket_sim::RunningSim) -> Vec<serde_json::Value> {
    let mut fills = Vec::new();
    let mut since = 0_u64;
    loop {
        let page = get_json(&format!(
            "{}/_sim/truth/fills?since_seq={since}&limit=200000",
            sim.base_url()
        ))
        .await;
        fills.extend(page["fills"].as_array().unwrap().iter().cloned());
        match page["next_since_seq"].as_u64() {
            Some(next) => since = next,
            None => return fills,
        }
    }
}

/// A truth fill as the collector publishes it (`services/collector/src/parse.rs`,
/// `trade_row` with `takerOnly=false`): wallet, condition and transaction lower-cased, the
/// timestamp in whole seconds (the Data API's resolution) as ms, the trade id derived from the
/// identity tuple. Price and size are the truth's exact decimals, which is what the
/// collector's float recovery yields (its own tests prove that part).
pub(crate) fn collector_trade(fill: &serde_json::Value, ingested_ms: i64) -> Trade {
    let side_text = text_field(fill, "side");
    let side = Side::parse(side_text).unwrap_or_else(|| panic!("side {side_text}"));
    let token_id = text_field(fill, "asset").to_owned();
    let proxy_wallet = text_field(fill, "proxyWallet").to_ascii_lowercase();
    let transaction_hash = text_field(fill, "transactionHash").to_ascii_lowercase();
    let price = wire_decimal(text_field(fill, "price"));
    let size = wire_decimal(text_field(fill, "size"));
    let trade_id = TradeIdentity {
        transaction_hash: &transaction_hash,
        token_id: &token_id,
        side,
        size,
        price,
        proxy_wallet: &proxy_wallet,
    }
    .trade_id();
    assert_eq!(
        trade_id,
        text_field(fill, "trade_id"),
        "the derived id is the truth's"
    );
    Trade {
        trade_id,
        condition_id: text_field(fill, "conditionId").to_ascii_lowercase(),
        token_id,
        outcome: fill
            .get("outcome")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
        outcome_index: fill
            .get("outcomeIndex")
            .and_then(serde_json::Value::as_i64)
            .map(|index| i32::try_from(index).unwrap()),
        side,
        price,
        size,
        timestamp_ms: fill["timestamp"].as_i64().unwrap() * 1_000,
        transaction_hash,
        proxy_wallet,
        source: TradeSource::DataApiV1,
        ingested_ms,
    }
}

fn wire_levels(book: &serde_json::Value, key: &str) -> Vec<BookLevel> {
    book[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|level| BookLevel {
            price: wire_decimal(text_field(level, "price")),
            size: wire_decimal(text_field(level, "size")),
        })
        .collect()
}

/// A CLOB `book` (WS event or `/book` JSON) as the ws-bridge publishes it
/// (`services/ws-bridge/src/parse.rs`): best first on both sides, exact decimals, stamped with
/// the connection and its sequence.
pub(crate) fn bridge_snapshot(
    book: &serde_json::Value,
    connection_id: &str,
    sequence: i64,
) -> BookSnapshot {
    let mut bids = wire_levels(book, "bids");
    let mut asks = wire_levels(book, "asks");
    bids.sort_by_key(|level| std::cmp::Reverse(level.price));
    asks.sort_by_key(|level| level.price);
    let timestamp_ms: i64 = text_field(book, "timestamp").parse().unwrap();
    let optional = |key: &str| {
        book.get(key)
            .and_then(serde_json::Value::as_str)
            .filter(|text| !text.is_empty())
            .map(wire_decimal)
    };
    BookSnapshot {
        token_id: text_field(book, "asset_id").to_owned(),
        condition_id: text_field(book, "market").to_owned(),
        timestamp_ms,
        received_ms: timestamp_ms,
        bids,
        asks,
        hash: book
            .get("hash")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
        tick_size: optional("tick_size"),
        min_order_size: optional("min_order_size"),
        neg_risk: book.get("neg_risk").and_then(serde_json::Value::as_bool),
        last_trade_price: optional("last_trade_price"),
        source: BookSource::Ws,
        connection_id: Some(connection_id.to_owned()),
        sequence: Some(sequence),
    }
}

/// A `price_change` event as the ws-bridge publishes it: one record per entry.
pub(crate) fn bridge_changes(
    event: &serde_json::Value,
    connection_id: &str,
    sequence: i64,
) -> Vec<PriceChange> {
    let timestamp_ms: i64 = text_field(event, "timestamp").parse().unwrap();
    let condition_id = text_field(event, "market").to_owned();
    event["price_changes"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let side_text = text_field(entry, "side");
            PriceChange {
                token_id: text_field(entry, "asset_id").to_owned(),
                condition_id: condition_id.clone(),
                side: Side::parse(side_text).unwrap_or_else(|| panic!("side {side_text}")),
                price: wire_decimal(text_field(entry, "price")),
                size: wire_decimal(text_field(entry, "size")),
                best_bid: entry
                    .get("best_bid")
                    .and_then(serde_json::Value::as_str)
                    .map(wire_decimal),
                best_ask: entry
                    .get("best_ask")
                    .and_then(serde_json::Value::as_str)
                    .map(wire_decimal),
                hash: entry
                    .get("hash")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned),
                timestamp_ms,
                received_ms: timestamp_ms,
                connection_id: connection_id.to_owned(),
                sequence,
                entry_index: i32::try_from(index).unwrap(),
            }
        })
        .collect()
}
