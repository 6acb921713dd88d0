//! `new_market` and `market_resolved` on the channel: each is published once to
//! `polymarket.market_lifecycle.v1` (every connection receives `new_market`), a new market's
//! tokens are subscribed without reconnecting (their dump, then exactly the simulator's events
//! since), and a resolved market's tokens are dropped.

#![allow(clippy::unwrap_used)]

mod support;

use std::{collections::BTreeMap, time::Duration};

use polymarket_sim::SimConfig;
use polytape_model::{LifecycleKind, MarketLifecycle, Topic};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_markets_are_followed_and_resolved_ones_dropped() {
    let sim = polymarket_sim::start(SimConfig {
        port: 0,
        rate: 200.0,
        markets: 60,
        history_days: 0,
        lifecycle_every: 150,
        ws_truth_capacity: 5_000_000,
        epoch_ms: None,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let since_seq = sim.pause().last_ws_seq;
    let open = open_markets(&sim).await;
    let tokens: usize = open.iter().map(|(_, tokens)| tokens.len()).sum();
    let names = topics("ws_lifecycle").await;
    let markets: Vec<_> = open
        .iter()
        .map(|(condition_id, tokens)| market_record(condition_id, tokens, false))
        .collect();
    publish_markets(&names, &markets).await;
    // Three connections (at first), so `new_market` arrives three times.
    let cap = u32::try_from(tokens.div_ceil(3)).unwrap() + 1;
    let bridge = RunningBridge::start(&config(&sim, &names, cap, production_tuning())).await;
    wait_for_records(
        &names,
        &[Topic::BookSnapshots],
        i64::try_from(tokens).unwrap(),
        Duration::from_secs(60),
    )
    .await;
    sim.resume();
    tokio::time::sleep(Duration::from_secs(12)).await;
    sim.pause();
    wait_until_quiet(&names, &DATA_TOPICS, Duration::from_millis(1500)).await;
    bridge.stop().await;

    let lifecycle = records::<MarketLifecycle>(&names).await;
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for record in &lifecycle {
        *seen
            .entry((format!("{:?}", record.kind), record.condition_id.clone()))
            .or_default() += 1;
    }
    assert!(
        seen.values().all(|count| *count == 1),
        "a lifecycle event was published twice: {seen:?}"
    );
    let listed: Vec<&MarketLifecycle> = lifecycle
        .iter()
        .filter(|record| record.kind == LifecycleKind::NewMarket)
        .collect();
    let resolved: Vec<&MarketLifecycle> = lifecycle
        .iter()
        .filter(|record| record.kind == LifecycleKind::MarketResolved)
        .collect();
    assert!(
        !listed.is_empty() && !resolved.is_empty(),
        "no lifecycle events: {lifecycle:?}"
    );
    let by_token = seen_by_token(&names).await;
    // No connection was ever replaced (new markets may open one more when the others are full).
    let connections: std::collections::BTreeSet<&str> = by_token
        .values()
        .flatten()
        .map(|record| record.connection_id.as_str())
        .collect();
    assert!(
        connections.iter().all(|id| id.ends_with("-g1")),
        "{connections:?}"
    );
    let stats = get_json(&sim, "/_sim/stats").await;
    assert_eq!(
        stats["ws"]["connections"].as_u64(),
        Some(connections.len() as u64),
        "{stats}"
    );
    for market in &listed {
        assert_eq!(market.token_ids.len(), 2);
        for token in &market.token_ids {
            let records = by_token
                .get(token)
                .unwrap_or_else(|| panic!("new market token {token} was not followed"));
            let (dump, stream) = records.split_first().unwrap();
            assert!(dump.fingerprint.is_book());
            let truth: Vec<Fingerprint> = truth_events(&sim, token, since_seq)
                .await
                .into_iter()
                .map(|(_, print)| print)
                .collect();
            let got: Vec<&Fingerprint> = stream.iter().map(|record| &record.fingerprint).collect();
            let tail: Vec<&Fingerprint> = truth[truth.len() - got.len()..].iter().collect();
            assert_eq!(got, tail, "{token}");
        }
    }
    for market in &resolved {
        // Nothing of a resolved market is published after its resolution.
        for token in &market.token_ids {
            if let Some(records) = by_token.get(token) {
                assert!(
                    records
                        .iter()
                        .all(|record| record.timestamp_ms <= market.timestamp_ms),
                    "{token} has records after its resolution"
                );
            }
        }
    }
    eprintln!(
        "lifecycle: {} listed, {} resolved, {} lifecycle records",
        listed.len(),
        resolved.len(),
        lifecycle.len()
    );
    sim.shutdown().await;
}
