//! Seconds denser than the Data API's 10,000-offset cap (issue #23). The simulator stamps a
//! whole `advance` in one millisecond (`advance_spacing_us: 0`), so one second holds more
//! fills than one request filter can reach.
//!
//! * 20,000 operations: ~12,500 fills in one second over 13 markets, the busiest with ~9,400.
//!   The polling walk asks for all markets at once and its filter hits the cap; the second is
//!   re-read market by market, each under the cap: every fill arrives, nothing is declared.
//! * 40,000 more, in a later second: the busiest market alone has ~19,000 fills there. Its
//!   first 10,000 arrive, and the rest is declared: one `UPSTREAM_GAP` continuity record with
//!   its tokens and that second. Later rounds re-read the second (trailing reconciliation
//!   window) and do not declare it again.

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use polymarket_sim::SimConfig;
use polytape_collector::{Collector, Options};
use polytape_model::{Continuity, ContinuityKind, Trade, now_ms};
use support::*;
use tokio_util::sync::CancellationToken;

/// The truth's fills as (trade id, condition id, second).
async fn truth_fills(sim: &polymarket_sim::RunningSim) -> Vec<(String, String, i64)> {
    support::truth_fills(sim)
        .await
        .into_iter()
        .map(|fill| (fill.trade_id, fill.condition_id, fill.second))
        .collect()
}

/// Waits for the next wall-clock second, so the next advance has a second of its own.
async fn next_second() {
    let into_second = now_ms().rem_euclid(1000);
    tokio::time::sleep(Duration::from_millis((1_050 - into_second) as u64)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seconds_past_the_offset_cap_are_split_by_market_or_declared() {
    let window = Duration::from_secs(1);
    let sim = polymarket_sim::start(SimConfig {
        port: 0,
        rate: 0.0,
        lifecycle_every: 0,
        markets: 20,
        history_days: 0,
        rate_window: window,
        advance_at_wall_clock: true,
        advance_spacing_us: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let names = topics("collector_dense_second").await;
    let collector = Arc::new(
        Collector::connect(
            &config(&sim, &names, tuning(window)),
            false,
            CancellationToken::new(),
        )
        .await
        .unwrap(),
    );
    let markets = collector.crawl_markets(false, false).await.unwrap();
    let tokens: HashMap<String, Vec<String>> = markets
        .iter()
        .map(|market| {
            (
                market.condition_id.clone(),
                market
                    .tokens
                    .iter()
                    .map(|token| token.token_id.clone())
                    .collect(),
            )
        })
        .collect();
    let ids: Vec<String> = collector
        .select(&markets, &Options::default())
        .into_iter()
        .map(|market| market.condition_id)
        .collect();
    let from = now_ms() / 1000 - 3_600;
    // Round 1: the (empty) history; every market is then caught up and polled together.
    assert_eq!(
        collector
            .trades_round(&ids, from, now_ms() / 1000 - 1)
            .await
            .unwrap()
            .complete,
        ids.len()
    );

    // 1. One second over the cap for the request, under it for every market.
    next_second().await;
    sim.advance(20_000);
    let truth = truth_fills(&sim).await;
    let first_second = truth[0].2;
    assert!(truth.iter().all(|(_, _, second)| *second == first_second));
    let mut per_market: HashMap<&str, usize> = HashMap::new();
    for (_, market, _) in &truth {
        *per_market.entry(market).or_default() += 1;
    }
    let busiest = per_market.values().copied().max().unwrap();
    assert!(
        truth.len() > 10_000 && busiest < 10_000,
        "{} fills, busiest {busiest}",
        truth.len()
    );
    assert_eq!(
        collector
            .trades_round(&ids, from, first_second + 1)
            .await
            .unwrap()
            .complete,
        ids.len()
    );
    let trades: Vec<Trade> = records(&names).await;
    let ours: HashSet<&String> = trades.iter().map(|trade| &trade.trade_id).collect();
    let wanted: HashSet<&String> = truth.iter().map(|(id, _, _)| id).collect();
    assert_eq!(ours, wanted, "every fill of the shared dense second");
    assert_eq!(trades.len(), truth.len(), "each once");
    assert!(records::<Continuity>(&names).await.is_empty());

    // 2. A second over the cap for one market alone.
    next_second().await;
    sim.advance(40_000);
    let all = truth_fills(&sim).await;
    let dense: Vec<&(String, String, i64)> = all[truth.len()..].iter().collect();
    let second = dense[0].2;
    assert!(second > first_second && dense.iter().all(|(_, _, at)| *at == second));
    let mut per_market: HashMap<&str, usize> = HashMap::new();
    for (_, market, _) in &dense {
        *per_market.entry(market).or_default() += 1;
    }
    let (dense_market, dense_count) = per_market
        .iter()
        .max_by_key(|(_, count)| **count)
        .map(|(market, count)| ((*market).to_owned(), *count))
        .unwrap();
    assert!(dense_count > 10_000, "{dense_count}");
    for round in 0..2 {
        assert_eq!(
            collector
                .trades_round(&ids, from, second + 1 + round)
                .await
                .unwrap()
                .complete,
            ids.len()
        );
    }
    let trades: Vec<Trade> = records(&names).await;
    let ours: HashSet<&String> = trades.iter().map(|trade| &trade.trade_id).collect();
    assert_eq!(trades.len(), ours.len(), "each fill once");
    for (id, market, at) in &all {
        if *market != dense_market || *at != second {
            assert!(ours.contains(id), "fill {id} of {market} at {at} missing");
        }
    }
    let read_of_dense = trades
        .iter()
        .filter(|trade| trade.condition_id == dense_market && trade.timestamp_ms / 1000 == second)
        .count();
    assert_eq!(read_of_dense, 10_000, "what the cap lets one market read");
    let gaps: Vec<Continuity> = records(&names).await;
    assert_eq!(
        gaps.len(),
        1,
        "declared once, not again by the second round: {gaps:?}"
    );
    let gap = &gaps[0];
    assert_eq!(gap.kind, ContinuityKind::UpstreamGap);
    assert_eq!(gap.source, "collector");
    assert_eq!(gap.token_ids, tokens[&dense_market]);
    assert_eq!(
        (gap.gap_start_ms, gap.gap_end_ms),
        (second * 1000, Some(second * 1000 + 999))
    );
    assert!(gap.reason.contains(&dense_market), "{}", gap.reason);
    assert_eq!(
        polytape_runtime::metrics::family_total("polytape_collector_upstream_gaps_total"),
        1.0
    );
    println!(
        "{} fills in one second ({} of one market, {dense_count} in the next): {} sent, 1 gap",
        truth.len(),
        busiest,
        trades.len()
    );
    sim.shutdown().await;
}
