//! Shared by the bridge's integration tests: a simulator, isolated topics with the simulator's
//! markets in `polymarket.markets.v1`, the bridge in-process, reading the topics back, the
//! simulator's ground truth, and one canonical fingerprint per event for comparing the two.

#![allow(dead_code, unreachable_pub)]

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    str::FromStr as _,
    time::{Duration, Instant},
};

use polymarket_sim::{RunningSim, SimConfig};
use polytape_model::{
    BestBidAsk, BookSnapshot, Continuity, Decimal, LastTrade, Market, MarketToken, PriceChange,
    Side, TickSizeChange, Topic, TopicNames, parse::parse_decimal_text,
};
use polytape_test_support::{
    cli::{RunningService, free_local_addr},
    stack::endpoints,
};
// Re-exported for the test files; not every test binary reads topics back.
#[allow(unused_imports)]
pub use polytape_test_support::topic::{read_topic, records};
use polytape_ws_bridge::{
    Bridge, BridgeTuning, WsBridgeConfig,
    state::{self, PersistedState},
};
use rdkafka::consumer::Consumer as _;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const DATA_TOPICS: [Topic; 5] = [
    Topic::BookSnapshots,
    Topic::PriceChanges,
    Topic::LastTrades,
    Topic::TickSizeChanges,
    Topic::BestBidAsk,
];

/// A simulator with a frozen driver (returned paused) and the sequence it was paused at.
pub async fn sim(markets: u32, rate: f64, ws_max_assets: usize) -> (RunningSim, u64) {
    let config = SimConfig {
        port: 0,
        rate,
        markets,
        history_days: 0,
        lifecycle_every: 0,
        ws_max_assets,
        ws_truth_capacity: 5_000_000,
        epoch_ms: None,
        ..SimConfig::default()
    };
    let sim = polymarket_sim::start(config).await.unwrap();
    let progress = sim.pause();
    (sim, progress.last_ws_seq)
}

pub async fn get_json(sim: &RunningSim, path: &str) -> Value {
    reqwest::get(format!("{}{path}", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Open markets of the simulator as (condition id, token ids), in index order.
pub async fn open_markets(sim: &RunningSim) -> Vec<(String, Vec<String>)> {
    let truth = get_json(sim, "/_sim/truth/markets").await;
    let rows = truth
        .as_array()
        .or_else(|| truth["markets"].as_array())
        .unwrap()
        .clone();
    rows.iter()
        .filter(|market| !market["closed"].as_bool().unwrap_or(true))
        .map(|market| {
            (
                market["condition_id"].as_str().unwrap().to_owned(),
                market["token_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|token| token.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

/// Whole markets until at least `tokens` tokens.
pub fn take_tokens(markets: &[(String, Vec<String>)], tokens: usize) -> Vec<(String, Vec<String>)> {
    let mut taken = Vec::new();
    let mut count = 0;
    for market in markets {
        if count >= tokens {
            break;
        }
        count += market.1.len();
        taken.push(market.clone());
    }
    taken
}

pub fn market_record(condition_id: &str, tokens: &[String], closed: bool) -> Market {
    Market {
        condition_id: condition_id.to_owned(),
        question_id: None,
        gamma_market_id: None,
        event_ids: Vec::new(),
        slug: None,
        question: format!("market {condition_id}"),
        description: None,
        protocol_version: None,
        tokens: tokens
            .iter()
            .enumerate()
            .map(|(index, token)| MarketToken {
                token_id: token.clone(),
                outcome: if index == 0 { "Yes" } else { "No" }.to_owned(),
                outcome_index: i32::try_from(index).unwrap(),
                winner: None,
            })
            .collect(),
        active: true,
        closed,
        archived: false,
        accepting_orders: !closed,
        enable_order_book: true,
        neg_risk: false,
        neg_risk_market_id: None,
        tick_size: None,
        min_order_size: None,
        maker_base_fee_bps: None,
        taker_base_fee_bps: None,
        fees_enabled: None,
        tags: Vec::new(),
        start_ms: None,
        end_ms: None,
        created_ms: None,
        closed_ms: None,
        resolution_status: None,
        winning_token_id: None,
        volume: None,
        liquidity: None,
        upstream_updated_ms: None,
        content_hash: String::new(),
        updated_ms: 0,
    }
}

pub async fn topics(purpose: &str) -> TopicNames {
    polytape_test_support::stack::ensured_isolated_topics(purpose).await
}

/// Publishes market records to the isolated markets topic.
pub async fn publish_markets(names: &TopicNames, markets: &[Market]) {
    polytape_test_support::topic::produce(names, markets).await;
}

/// The production tuning, from the declared defaults.
pub fn production_tuning() -> BridgeTuning {
    polytape_runtime::config::defaults_of(&[WsBridgeConfig::OWN_KEYS]).unwrap()
}

/// Test tuning: second-scale heartbeats so faults are seen quickly.
pub fn fast_tuning() -> BridgeTuning {
    BridgeTuning {
        ping_interval: Duration::from_secs(1),
        pong_timeout: Duration::from_secs(5),
        staleness_min: Duration::from_secs(2),
        staleness_max: Duration::from_secs(4),
        reconnect_min_backoff: Duration::from_millis(100),
        reconnect_max_backoff: Duration::from_secs(2),
        dump_timeout: Duration::from_secs(3),
    }
}

pub fn config(
    sim: &RunningSim,
    names: &TopicNames,
    cap: u32,
    tuning: BridgeTuning,
) -> WsBridgeConfig {
    let base = sim.base_url();
    WsBridgeConfig {
        common: polytape_test_support::config::common("info"),
        kafka: polytape_test_support::config::kafka(names),
        upstream: polytape_test_support::config::simulator_upstream(&base, sim.ws_url()),
        ws_bridge_admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ws_max_assets_per_connection: cap,
        tuning,
        filter: polytape_runtime::config::defaults_of(&[WsBridgeConfig::OWN_KEYS]).unwrap(),
    }
}

/// The bridge running in-process.
pub struct RunningBridge {
    pub stop: CancellationToken,
    pub task: JoinHandle<Result<(), polytape_ws_bridge::error::BridgeError>>,
}

impl RunningBridge {
    pub async fn start(config: &WsBridgeConfig) -> Self {
        let bridge = Bridge::connect(config).await.unwrap();
        let stop = CancellationToken::new();
        let (ready_sender, ready) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(bridge.run(stop.clone(), move || {
            let _ = ready_sender.send(());
        }));
        tokio::time::timeout(Duration::from_secs(60), ready)
            .await
            .expect("the bridge did not read the markets topic in time")
            .unwrap();
        Self { stop, task }
    }

    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stops the bridge and waits for its drain; panics if it failed.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the bridge did not drain in time")
            .unwrap()
            .unwrap();
    }
}

/// The bridge's binary running `config` as a separate process (a test can kill it with
/// SIGKILL: dropping the value does).
pub async fn start_binary(config: &WsBridgeConfig) -> RunningService {
    let millis = |duration: Duration| format!("{}ms", duration.as_millis());
    let tuning = &config.tuning;
    let admin_addr = free_local_addr();
    let environment: Vec<(&'static str, String)> = vec![
        ("POLYTAPE_KAFKA_BROKERS", config.kafka.kafka_brokers.clone()),
        (
            "POLYTAPE_SCHEMA_REGISTRY_URL",
            config.kafka.schema_registry_url.clone(),
        ),
        ("POLYTAPE_TOPIC_PREFIX", config.kafka.topic_prefix.clone()),
        ("POLYTAPE_GAMMA_URL", config.upstream.gamma_url.clone()),
        (
            "POLYTAPE_DATA_API_URL",
            config.upstream.data_api_url.clone(),
        ),
        ("POLYTAPE_CLOB_URL", config.upstream.clob_url.clone()),
        ("POLYTAPE_CLOB_WS_URL", config.upstream.clob_ws_url.clone()),
        ("POLYTAPE_WS_BRIDGE_ADMIN_ADDR", admin_addr.to_string()),
        (
            "POLYTAPE_WS_MAX_ASSETS_PER_CONNECTION",
            config.ws_max_assets_per_connection.to_string(),
        ),
        ("POLYTAPE_WS_PING_INTERVAL", millis(tuning.ping_interval)),
        ("POLYTAPE_WS_PONG_TIMEOUT", millis(tuning.pong_timeout)),
        ("POLYTAPE_WS_STALENESS_MIN", millis(tuning.staleness_min)),
        ("POLYTAPE_WS_STALENESS_MAX", millis(tuning.staleness_max)),
        (
            "POLYTAPE_WS_RECONNECT_MIN_BACKOFF",
            millis(tuning.reconnect_min_backoff),
        ),
        (
            "POLYTAPE_WS_RECONNECT_MAX_BACKOFF",
            millis(tuning.reconnect_max_backoff),
        ),
        ("POLYTAPE_WS_DUMP_TIMEOUT", millis(tuning.dump_timeout)),
        ("POLYTAPE_LOG_LEVEL", "warn".to_owned()),
    ];
    tokio::task::spawn_blocking(move || {
        RunningService::start(
            std::path::Path::new(env!("CARGO_BIN_EXE_polytape-ws-bridge")),
            &environment,
            admin_addr,
        )
    })
    .await
    .unwrap()
}

/// What the bridge's state topic holds now.
pub async fn bridge_state(names: &TopicNames) -> PersistedState {
    let brokers = endpoints().kafka_brokers;
    let topic = state::state_topic(names.prefix());
    let entries = tokio::task::spawn_blocking(move || state::read_all(&brokers, &topic))
        .await
        .unwrap()
        .unwrap();
    PersistedState::from_entries(entries)
}

/// Sum of the high watermarks of `topics`.
pub fn total_records(names: &TopicNames, topics: &[Topic]) -> i64 {
    let consumer = polytape_test_support::config::reader("watermarks");
    topics
        .iter()
        .map(|topic| {
            let name = names.name(*topic);
            (0..topic.partitions())
                .map(|partition| {
                    consumer
                        .fetch_watermarks(&name, partition, Duration::from_secs(10))
                        .unwrap()
                        .1
                })
                .sum::<i64>()
        })
        .sum()
}

pub async fn total_records_async(names: &TopicNames, topics: &[Topic]) -> i64 {
    let names = names.clone();
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || total_records(&names, &topics))
        .await
        .unwrap()
}

/// Waits until `topics` hold at least `count` records.
pub async fn wait_for_records(names: &TopicNames, topics: &[Topic], count: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let total = total_records_async(names, topics).await;
        if total >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {total} of {count} records after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `topics` stop growing for `quiet`.
pub async fn wait_until_quiet(names: &TopicNames, topics: &[Topic], quiet: Duration) {
    let mut last = total_records_async(names, topics).await;
    let mut since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let total = total_records_async(names, topics).await;
        if total != last {
            last = total;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
        assert!(Instant::now() < deadline, "topics never went quiet");
    }
}

fn dec(text: &str) -> Decimal {
    parse_decimal_text(text).unwrap().normalize()
}

fn text<'a>(event: &'a Value, field: &str) -> &'a str {
    event[field].as_str().unwrap_or("")
}

/// What one record (or one truth event of one token) says, independent of how it travelled.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub String);

impl Fingerprint {
    pub fn is_book(&self) -> bool {
        self.0.starts_with("book|")
    }
}

/// Fingerprint of a truth event (the JSON a single-token subscriber received).
pub fn truth_fingerprint(event: &Value) -> Fingerprint {
    let timestamp = text(event, "timestamp");
    let print = match text(event, "event_type") {
        "book" => format!("book|{timestamp}|{}", text(event, "hash")),
        "price_change" => {
            let entries = event["price_changes"].as_array().unwrap();
            assert_eq!(entries.len(), 1, "truth is per token: {event}");
            let entry = &entries[0];
            format!(
                "pc|{timestamp}|{}|{}|{}|{}",
                Side::parse(text(entry, "side")).unwrap().name(),
                dec(text(entry, "price")),
                dec(text(entry, "size")),
                text(entry, "hash")
            )
        }
        "last_trade_price" => format!(
            "lt|{timestamp}|{}|{}|{}|{}",
            Side::parse(text(event, "side")).unwrap().name(),
            dec(text(event, "price")),
            dec(text(event, "size")),
            text(event, "transaction_hash")
        ),
        "tick_size_change" => format!(
            "tick|{timestamp}|{}|{}",
            dec(text(event, "old_tick_size")),
            dec(text(event, "new_tick_size"))
        ),
        "best_bid_ask" => format!(
            "bba|{timestamp}|{}|{}",
            dec(text(event, "best_bid")),
            dec(text(event, "best_ask"))
        ),
        other => format!("{other}|{timestamp}"),
    };
    Fingerprint(print)
}

/// One data record as the tests compare it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub token_id: String,
    pub connection_id: String,
    pub sequence: i64,
    pub entry_index: i32,
    pub timestamp_ms: i64,
    pub fingerprint: Fingerprint,
    pub book: Option<BookSnapshot>,
    pub change: Option<PriceChange>,
}

fn norm(value: Decimal) -> Decimal {
    value.normalize()
}

/// Every data record of the bridge's topics, by token, in (connection, sequence) order.
pub async fn seen_by_token(names: &TopicNames) -> BTreeMap<String, Vec<Seen>> {
    let mut seen: Vec<Seen> = Vec::new();
    for book in records::<BookSnapshot>(names).await {
        seen.push(Seen {
            token_id: book.token_id.clone(),
            connection_id: book.connection_id.clone().unwrap_or_default(),
            sequence: book.sequence.unwrap_or(-1),
            entry_index: 0,
            timestamp_ms: book.timestamp_ms,
            fingerprint: Fingerprint(format!(
                "book|{}|{}",
                book.timestamp_ms,
                book.hash.clone().unwrap_or_default()
            )),
            book: Some(book),
            change: None,
        });
    }
    for change in records::<PriceChange>(names).await {
        seen.push(Seen {
            token_id: change.token_id.clone(),
            connection_id: change.connection_id.clone(),
            sequence: change.sequence,
            entry_index: change.entry_index,
            timestamp_ms: change.timestamp_ms,
            fingerprint: Fingerprint(format!(
                "pc|{}|{}|{}|{}|{}",
                change.timestamp_ms,
                change.side.name(),
                norm(change.price),
                norm(change.size),
                change.hash.clone().unwrap_or_default()
            )),
            book: None,
            change: Some(change),
        });
    }
    for trade in records::<LastTrade>(names).await {
        seen.push(Seen {
            token_id: trade.token_id.clone(),
            connection_id: trade.connection_id.clone(),
            sequence: trade.sequence,
            entry_index: 0,
            timestamp_ms: trade.timestamp_ms,
            fingerprint: Fingerprint(format!(
                "lt|{}|{}|{}|{}|{}",
                trade.timestamp_ms,
                trade.side.map_or("", Side::name),
                norm(trade.price),
                norm(trade.size),
                trade.transaction_hash.clone().unwrap_or_default()
            )),
            book: None,
            change: None,
        });
    }
    for tick in records::<TickSizeChange>(names).await {
        seen.push(Seen {
            token_id: tick.token_id.clone(),
            connection_id: tick.connection_id.clone(),
            sequence: tick.sequence,
            entry_index: 0,
            timestamp_ms: tick.timestamp_ms,
            fingerprint: Fingerprint(format!(
                "tick|{}|{}|{}",
                tick.timestamp_ms,
                norm(tick.old_tick_size),
                norm(tick.new_tick_size)
            )),
            book: None,
            change: None,
        });
    }
    for quote in records::<BestBidAsk>(names).await {
        seen.push(Seen {
            token_id: quote.token_id.clone(),
            connection_id: quote.connection_id.clone(),
            sequence: quote.sequence,
            entry_index: 0,
            timestamp_ms: quote.timestamp_ms,
            fingerprint: Fingerprint(format!(
                "bba|{}|{}|{}",
                quote.timestamp_ms,
                quote.best_bid.map(norm).unwrap_or_default(),
                quote.best_ask.map(norm).unwrap_or_default()
            )),
            book: None,
            change: None,
        });
    }
    let mut by_token: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
    for record in seen {
        by_token
            .entry(record.token_id.clone())
            .or_default()
            .push(record);
    }
    for records in by_token.values_mut() {
        records.sort_by_key(|record| {
            (
                connection_order(&record.connection_id),
                record.sequence,
                record.entry_index,
            )
        });
    }
    by_token
}

/// Connection ids are `<instance>-s<shard>-g<generation>`: a token's connections follow each
/// other by generation (a token stays on its shard unless the cap changes).
pub fn connection_order(connection_id: &str) -> (u64, String) {
    let generation = connection_id
        .rsplit_once("-g")
        .and_then(|(_, generation)| generation.parse().ok())
        .unwrap_or(0);
    (generation, connection_id.to_owned())
}

/// The data events of a token after `since_seq`, as fingerprints with their upstream times.
pub async fn truth_events(
    sim: &RunningSim,
    token: &str,
    since_seq: u64,
) -> Vec<(i64, Fingerprint)> {
    truth_events_between(sim, token, since_seq, None).await
}

/// The simulator's newest WebSocket event sequence (without pausing it).
pub async fn last_ws_seq(sim: &RunningSim, any_token: &str) -> u64 {
    let truth = get_json(
        sim,
        &format!(
            "/_sim/truth/ws?token_id={any_token}&since_seq={}&limit=1",
            u64::MAX / 2
        ),
    )
    .await;
    truth["last_ws_seq"].as_u64().unwrap()
}

/// [`truth_events`] with sequences in `(since_seq, until_seq]` only.
pub async fn truth_events_between(
    sim: &RunningSim,
    token: &str,
    since_seq: u64,
    until_seq: Option<u64>,
) -> Vec<(i64, Fingerprint)> {
    let truth = get_json(
        sim,
        &format!("/_sim/truth/ws?token_id={token}&since_seq={since_seq}&limit=200000"),
    )
    .await;
    assert_eq!(truth["dropped"].as_u64(), Some(0), "truth ring overflowed");
    truth["events"]
        .as_array()
        .unwrap()
        .iter()
        // Lifecycle events go to the lifecycle topic (keyed by market), compared separately.
        .filter(|event| {
            event["event_type"] != "market_resolved" && event["event_type"] != "new_market"
        })
        .filter(|event| {
            until_seq.is_none_or(|until| event["seq"].as_u64().is_some_and(|seq| seq <= until))
        })
        .map(|event| {
            let event = &event["event"];
            let timestamp = text(event, "timestamp").parse::<i64>().unwrap();
            (timestamp, truth_fingerprint(event))
        })
        .collect()
}

/// A book rebuilt from the records: snapshots replace, changes set levels (0 removes).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Levels {
    pub bids: BTreeMap<Decimal, Decimal>,
    pub asks: BTreeMap<Decimal, Decimal>,
}

pub fn rebuild(records: &[Seen]) -> Levels {
    let mut levels = Levels::default();
    for record in records {
        if let Some(book) = &record.book {
            levels.bids = book
                .bids
                .iter()
                .map(|level| (norm(level.price), norm(level.size)))
                .collect();
            levels.asks = book
                .asks
                .iter()
                .map(|level| (norm(level.price), norm(level.size)))
                .collect();
        }
        if let Some(change) = &record.change {
            let side = match change.side {
                Side::Buy => &mut levels.bids,
                Side::Sell => &mut levels.asks,
            };
            if change.size.is_zero() {
                side.remove(&norm(change.price));
            } else {
                side.insert(norm(change.price), norm(change.size));
            }
        }
    }
    levels
}

/// The simulator's current book of a token.
pub async fn truth_book(sim: &RunningSim, token: &str) -> Option<Levels> {
    let response = reqwest::get(format!(
        "{}/_sim/truth/book?token_id={token}",
        sim.base_url()
    ))
    .await
    .unwrap();
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return None;
    }
    let book: Value = response.json().await.unwrap();
    let side = |name: &str| -> BTreeMap<Decimal, Decimal> {
        book[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|level| (dec(text(level, "price")), dec(text(level, "size"))))
            .collect()
    };
    Some(Levels {
        bids: side("bids"),
        asks: side("asks"),
    })
}

pub async fn continuity(names: &TopicNames) -> Vec<Continuity> {
    records::<Continuity>(names).await
}

/// The latest record per continuity id (the closing one when there is one).
pub fn latest_gaps(records: Vec<Continuity>) -> Vec<Continuity> {
    let mut latest: BTreeMap<String, Continuity> = BTreeMap::new();
    for record in records {
        let keep = latest
            .get(&record.continuity_id)
            .is_none_or(|existing| record.detected_ms >= existing.detected_ms);
        if keep {
            latest.insert(record.continuity_id.clone(), record);
        }
    }
    latest.into_values().collect()
}

pub fn dec_of(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

/// What [`check_against_truth`] compares.
pub struct TruthScope<'a> {
    /// Truth events up to this sequence only (a token no longer followed afterwards).
    pub until_seq: Option<u64>,
    /// The records the book is rebuilt from for comparison with the simulator's (`None`:
    /// no comparison).
    pub rebuild_from: Option<&'a (dyn Fn(&Seen) -> bool + Sync)>,
}

fn every_record(_: &Seen) -> bool {
    true
}

impl TruthScope<'_> {
    /// Every event since the start, the book rebuilt from every record.
    pub fn everything() -> Self {
        Self {
            until_seq: None,
            rebuild_from: Some(&every_record),
        }
    }
}

/// What [`check_against_truth`] found.
pub struct TruthCheck {
    /// The latest record of every declared gap.
    pub gaps: Vec<Continuity>,
    pub missing_events: usize,
    pub truth_events: usize,
    pub connections: usize,
}

/// The checks every run against the simulator shares: every record of `tokens` is an event
/// the simulator sent (never twice); every truth event missing from the topics lies inside a
/// declared gap of its token; and the book rebuilt from the records equals the simulator's.
pub async fn check_against_truth(
    sim: &RunningSim,
    names: &TopicNames,
    tokens: &[String],
    since_seq: u64,
    scope: &TruthScope<'_>,
) -> TruthCheck {
    let seen = seen_by_token(names).await;
    let gaps = latest_gaps(continuity(names).await);
    let mut missing_events = 0;
    let mut truth_total = 0;
    let mut connections = std::collections::BTreeSet::new();
    for token in tokens {
        let records = seen.get(token).map(Vec::as_slice).unwrap_or_default();
        for record in records {
            connections.insert(record.connection_id.clone());
        }
        let truth = truth_events_between(sim, token, since_seq, scope.until_seq).await;
        truth_total += truth.len();
        let mut unmatched: HashMap<&Fingerprint, Vec<i64>> = HashMap::new();
        for (timestamp, print) in &truth {
            unmatched.entry(print).or_default().push(*timestamp);
        }
        for record in records {
            match unmatched.get_mut(&record.fingerprint) {
                Some(times) if !times.is_empty() => {
                    times.pop();
                }
                // Dumps (and REST books) are snapshots the truth stream does not list.
                _ if record.fingerprint.is_book() => {}
                // Events after `until_seq` are not compared.
                _ if scope.until_seq.is_some() => {}
                _ => panic!(
                    "{token}: record {:?} on {} #{} is not an event the simulator sent (or is a duplicate)",
                    record.fingerprint, record.connection_id, record.sequence
                ),
            }
        }
        for (print, times) in unmatched {
            for timestamp in times {
                missing_events += 1;
                let covered = gaps.iter().any(|gap| {
                    gap.token_ids.contains(token)
                        && gap.gap_start_ms <= timestamp
                        && gap.gap_end_ms.is_none_or(|end| timestamp <= end)
                });
                assert!(
                    covered,
                    "{token}: {print:?} at {timestamp} is missing and no gap declares it; gaps: {gaps:#?}"
                );
            }
        }
        if let Some(rebuild_from) = scope.rebuild_from
            && let Some(truth_book) = truth_book(sim, token).await
        {
            let records: Vec<Seen> = records
                .iter()
                .filter(|record| rebuild_from(record))
                .cloned()
                .collect();
            assert_eq!(
                rebuild(&records),
                truth_book,
                "{token}: the book rebuilt from the topics differs from the simulator's"
            );
        }
    }
    TruthCheck {
        gaps,
        missing_events,
        truth_events: truth_total,
        connections: connections.len(),
    }
}
