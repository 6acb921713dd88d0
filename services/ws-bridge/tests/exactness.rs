//! Exactness against the simulator: many tokens sharded over several connections (a small
//! per-connection cap forces the sharding), the simulator running live; afterwards every WS
//! event the simulator sent for every token is in the topics exactly once and in the token's
//! order (compared with `/_sim/truth/ws`), and the number of events the bridge published equals
//! what `/_sim/stats` says it sent.
//!
//! Scale and duration come from the environment so the same test is the soak:
//! `POLYTAPE_WS_SOAK_TOKENS` (default 400), `POLYTAPE_WS_SOAK_SECS` (default 20),
//! `POLYTAPE_WS_SOAK_RATE` (live operations per second, default 200),
//! `POLYTAPE_WS_SOAK_CAP` (assets per connection, default tokens / 5). The run:
//! `POLYTAPE_WS_SOAK_TOKENS=2000 POLYTAPE_WS_SOAK_SECS=600 POLYTAPE_WS_SOAK_RATE=50
//! POLYTAPE_WS_SOAK_CAP=500` (4 connections).

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant},
};

use polytape_model::{DeadLetter, Topic};
use support::*;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_exactly_once_in_token_order() {
    let tokens_wanted = usize::try_from(env_number("POLYTAPE_WS_SOAK_TOKENS", 400)).unwrap();
    let seconds = env_number("POLYTAPE_WS_SOAK_SECS", 20);
    let rate = env_number("POLYTAPE_WS_SOAK_RATE", 200);
    let cap = env_number("POLYTAPE_WS_SOAK_CAP", (tokens_wanted as u64).div_ceil(5));
    // Enough markets that the open ones hold the tokens wanted (a fifth are resolved).
    let markets = u32::try_from(tokens_wanted * 7 / 10 + 20).unwrap();
    let (sim, since_seq) = sim(markets, rate as f64, 10_000).await;
    let open = open_markets(&sim).await;
    let followed = take_tokens(&open, tokens_wanted);
    let tokens: Vec<String> = followed
        .iter()
        .flat_map(|(_, tokens)| tokens.clone())
        .collect();
    assert!(
        tokens.len() >= tokens_wanted,
        "the simulator has only {} open tokens",
        tokens.len()
    );

    let names = topics("ws_exact").await;
    let records: Vec<_> = followed
        .iter()
        .map(|(condition_id, tokens)| market_record(condition_id, tokens, false))
        .collect();
    publish_markets(&names, &records).await;
    // Production heartbeats; the staleness window is out of the way because the simulator is
    // silent (paused) while the truth of thousands of tokens is fetched at the end, which the
    // bridge would rightly call a freeze.
    let tuning = polytape_ws_bridge::BridgeTuning {
        staleness_min: Duration::from_secs(3600),
        staleness_max: Duration::from_secs(3600),
        ..production_tuning()
    };
    let config = config(&sim, &names, u32::try_from(cap).unwrap(), tuning);
    let bridge = RunningBridge::start(&config).await;
    // Every token's initial dump is in before the world moves.
    wait_for_records(
        &names,
        &[Topic::BookSnapshots],
        i64::try_from(tokens.len()).unwrap(),
        Duration::from_secs(120),
    )
    .await;

    // One task and one live connection per shard of at most `cap` tokens.
    let shards = tokens.len().div_ceil(usize::try_from(cap).unwrap());
    assert_eq!(
        polytape_runtime::metrics::family_total("polytape_ws_connections_open"),
        shards as f64
    );
    sim.resume();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(bridge.is_running(), "the bridge stopped during the run");
    }
    let progress = sim.pause();
    eprintln!(
        "live run: {} operations, last ws seq {} ({} s)",
        progress.operations,
        progress.last_ws_seq,
        started.elapsed().as_secs()
    );

    // Truth per token, then wait until every event is in the topics.
    let mut truth: BTreeMap<String, Vec<Fingerprint>> = BTreeMap::new();
    for token in &tokens {
        let events = truth_events(&sim, token, since_seq).await;
        truth.insert(
            token.clone(),
            events.into_iter().map(|(_, print)| print).collect(),
        );
    }
    let truth_records: usize = truth.values().map(Vec::len).sum();
    let expected = i64::try_from(truth_records + tokens.len()).unwrap();
    wait_for_records(&names, &DATA_TOPICS, expected, Duration::from_secs(180)).await;
    bridge.stop().await;
    assert_eq!(
        polytape_runtime::metrics::family_total("polytape_ws_connections_open"),
        0.0
    );

    let seen = seen_by_token(&names).await;
    let mut connections: BTreeSet<String> = BTreeSet::new();
    let mut events_by_connection: HashMap<String, BTreeSet<i64>> = HashMap::new();
    for token in &tokens {
        let records = seen.get(token).map(Vec::as_slice).unwrap_or_default();
        let token_connections: BTreeSet<&str> = records
            .iter()
            .map(|record| record.connection_id.as_str())
            .collect();
        assert_eq!(
            token_connections.len(),
            1,
            "token {token} moved between connections: {token_connections:?}"
        );
        for record in records {
            connections.insert(record.connection_id.clone());
            events_by_connection
                .entry(record.connection_id.clone())
                .or_default()
                .insert(record.sequence);
        }
        let (dump, stream) = records.split_first().expect("no records for a token");
        assert!(
            dump.fingerprint.is_book(),
            "{token}: first record is not the dump"
        );
        let stream: Vec<&Fingerprint> = stream.iter().map(|record| &record.fingerprint).collect();
        let expected: Vec<&Fingerprint> = truth[token].iter().collect();
        assert_eq!(
            stream.len(),
            expected.len(),
            "{token}: {} records for {} truth events",
            stream.len(),
            expected.len()
        );
        for (index, (got, want)) in stream.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "{token}: event {index} differs");
        }
    }
    assert!(
        connections.len() >= 4,
        "only {} connections for {} tokens at cap {cap}",
        connections.len(),
        tokens.len()
    );
    // Sequences are dense per connection: no event lost between socket and topics.
    for (connection, sequences) in &events_by_connection {
        let last = *sequences.last().unwrap();
        assert_eq!(
            i64::try_from(sequences.len()).unwrap(),
            last,
            "{connection}: sequence numbers have holes"
        );
    }

    // The simulator's own count of events sent equals the events the bridge published.
    let stats = get_json(&sim, "/_sim/stats").await;
    let published_events: usize = events_by_connection.values().map(BTreeSet::len).sum();
    assert_eq!(
        stats["ws"]["events_sent"].as_u64().unwrap(),
        u64::try_from(published_events).unwrap(),
        "simulator stats {stats}"
    );
    assert_eq!(stats["ws"]["subscriptions_refused"].as_u64(), Some(0));
    assert_eq!(stats["ws"]["lagged_disconnects"].as_u64(), Some(0));

    // Nothing was interrupted but the final stop, and nothing was refused as bad input.
    let gaps = latest_gaps(continuity(&names).await);
    let unexpected: Vec<_> = gaps
        .iter()
        .filter(|gap| gap.reason != "bridge stopped")
        .collect();
    assert!(unexpected.is_empty(), "unexpected gaps: {unexpected:?}");
    assert!(records_of_dlq(&names).await.is_empty());
    eprintln!(
        "exactness: {} tokens, {} connections, {} truth events, {} events published",
        tokens.len(),
        connections.len(),
        truth_records,
        published_events
    );
    sim.shutdown().await;
}

async fn records_of_dlq(names: &polytape_model::TopicNames) -> Vec<DeadLetter> {
    support::records::<DeadLetter>(names).await
}
