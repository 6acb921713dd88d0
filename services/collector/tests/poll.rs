//! `run` mode: the first round backfills the retention window, later rounds poll forward and
//! pick up fills that happen after it; the set stays exactly the truth. Once over each trades
//! tape: Data API v1 (`/trades`, offsets, 50 markets a poll request) and v2 (`/v2/trades`,
//! cursors, 20 markets a request).

#![allow(clippy::unwrap_used)]

mod support;

use std::{collections::HashSet, sync::Arc, time::Duration};

use polymarket_sim::SimConfig;
use polytape_collector::{Collector, CollectorTuning, Dataset, Mode, Options};
use polytape_polymarket::TradesApi;
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_mode_backfills_then_polls_new_fills() {
    backfills_then_polls(TradesApi::V1, "collector_poll").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_mode_on_data_api_v2_backfills_then_polls_new_fills() {
    backfills_then_polls(TradesApi::V2, "collector_poll_v2").await;
}

async fn backfills_then_polls(trades_api: TradesApi, purpose: &str) {
    let window = Duration::from_secs(1);
    // History ends at the current hour and live time starts at the wall clock, as upstream.
    let sim = polymarket_sim::start(SimConfig {
        port: 0,
        rate: 0.0,
        lifecycle_every: 0,
        markets: 60,
        history_days: 1,
        rate_window: window,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let names = topics(purpose).await;
    let config = config(
        &sim,
        &names,
        CollectorTuning {
            retention: Duration::from_secs(3 * 86_400),
            poll_interval: Duration::from_millis(500),
            poll_lag: Duration::from_secs(15),
            trades_api,
            ..tuning(window)
        },
    );
    let stop = CancellationToken::new();
    let collector = Arc::new(
        Collector::connect(&config, false, stop.clone())
            .await
            .unwrap(),
    );
    let options = Options {
        mode: Mode::Run,
        datasets: [Dataset::Markets, Dataset::Events, Dataset::Trades]
            .into_iter()
            .collect(),
        ..Options::default()
    };
    let running = tokio::spawn(collector.run(options));

    let wait_for_truth = |label: &'static str| {
        let sim = &sim;
        let names = &names;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(90);
            loop {
                let truth: HashSet<String> = truth_trade_ids(sim)
                    .await
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                let ours = topic_trade_ids(names).await;
                if ours == truth {
                    println!("{label}: {} fills", truth.len());
                    return truth.len();
                }
                assert!(ours.is_subset(&truth), "{label}: trades outside the truth");
                assert!(
                    std::time::Instant::now() < deadline,
                    "{label}: {} of {} fills after 90 s",
                    ours.len(),
                    truth.len()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let backfilled = wait_for_truth("backfill").await;
    let stats = truth(&sim, "/_sim/stats").await;
    let requests = |endpoint: &str| {
        stats["endpoints"][endpoint]["requests"]
            .as_u64()
            .unwrap_or(0)
    };
    let (v1_requests, v2_requests) = (requests("/data/trades"), requests("/data/v2/trades"));
    println!("{trades_api:?}: {v1_requests} v1 and {v2_requests} v2 trades requests");
    match trades_api {
        TradesApi::V1 => assert_eq!(v2_requests, 0),
        TradesApi::V2 => assert_eq!(v1_requests, 0),
    }
    sim.advance(3_000);
    let polled = wait_for_truth("after live operations").await;
    assert!(
        polled > backfilled,
        "live operations added fills: {backfilled} → {polled}"
    );
    stop.cancel();
    running.await.unwrap().unwrap();
    sim.shutdown().await;
}
