//! Backfill of 200 markets × 3 days against the in-process simulator and the stack (isolated
//! topics): every ground-truth fill is in the trades topic exactly once by derived id
//! (including the market with > 10,000 fills), every market and event once; a second run over
//! the same checkpoints sends nothing new. Once over each trades tape: Data API v1 (`/trades`,
//! time windows and offsets) and v2 (`/v2/trades`, cursors).

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use polytape_collector::{CollectorTuning, Dataset, Mode, Options};
use polytape_model::{Event, Market, Trade};
use polytape_polymarket::TradesApi;
use support::*;

fn backfill_options() -> Options {
    Options {
        mode: Mode::Backfill {
            from_s: EPOCH_MS / 1000 - i64::from(HISTORY_DAYS) * 86_400 - 3_600,
            to_s: EPOCH_MS / 1000 + 3_600,
        },
        datasets: [Dataset::Markets, Dataset::Events, Dataset::Trades]
            .into_iter()
            .collect(),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_matches_the_ground_truth_exactly_once_and_resumes_to_nothing() {
    backfill_matches_the_truth(TradesApi::V1, "collector_backfill").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_api_v2_backfill_matches_the_ground_truth_exactly_once() {
    backfill_matches_the_truth(TradesApi::V2, "collector_backfill_v2").await;
}

async fn backfill_matches_the_truth(trades_api: TradesApi, purpose: &str) {
    let window = Duration::from_secs(1);
    let sim = sim(window, "").await;
    let names = topics(purpose).await;
    let config = config(
        &sim,
        &names,
        CollectorTuning {
            trades_api,
            ..tuning(window)
        },
    );

    let started = Instant::now();
    let collector = connected(&config).await;
    let summary = collector.run(backfill_options()).await.unwrap();
    let elapsed = started.elapsed();
    println!("first backfill: {summary:?} in {elapsed:?}");
    assert_eq!(summary.markets, 200);
    assert_eq!(summary.markets_complete, 200);
    assert_eq!(summary.dead_letters, 0);

    // Trades: exactly the truth, each id once, each id's record identical.
    let truth_fills = truth_trade_ids(&sim).await;
    let trades: Vec<Trade> = records(&names).await;
    let mut by_id: HashMap<&str, &Trade> = HashMap::new();
    for trade in &trades {
        if let Some(previous) = by_id.insert(&trade.trade_id, trade) {
            let mut previous = previous.clone();
            previous.ingested_ms = trade.ingested_ms;
            assert_eq!(&previous, trade, "a duplicate id must be an exact re-send");
        }
    }
    let truth_ids: HashSet<&str> = truth_fills.iter().map(|(id, _)| id.as_str()).collect();
    let ours: HashSet<&str> = by_id.keys().copied().collect();
    assert_eq!(truth_ids.len(), truth_fills.len(), "truth ids are unique");
    let missing = truth_ids.difference(&ours).count();
    let extra = ours.difference(&truth_ids).count();
    if missing + extra > 0 {
        let fills = truth(&sim, "/_sim/truth/fills?limit=200000").await;
        for fill in fills["fills"].as_array().unwrap() {
            if !ours.contains(fill["trade_id"].as_str().unwrap()) {
                let hash = fill["transactionHash"].as_str().unwrap();
                let mine: Vec<_> = trades
                    .iter()
                    .filter(|trade| {
                        trade.transaction_hash == hash
                            && !truth_ids.contains(trade.trade_id.as_str())
                    })
                    .collect();
                println!("missing {fill}\n  ours: {mine:?}");
            }
        }
    }
    assert_eq!((missing, extra), (0, 0), "trades differ from the truth");
    assert_eq!(
        trades.len(),
        truth_fills.len(),
        "no duplicates in one clean run"
    );
    // Each market's fills arrive oldest first (ties by id): the candle builder judges lateness
    // per token by event time, so a backfill must not be sent newest-first.
    let mut last_per_market: HashMap<&str, (i64, &str)> = HashMap::new();
    for trade in &trades {
        let position = (trade.timestamp_ms, trade.trade_id.as_str());
        if let Some(previous) = last_per_market.insert(&trade.condition_id, position) {
            assert!(
                previous <= position,
                "market {}: fill {position:?} was sent after {previous:?}",
                trade.condition_id
            );
        }
    }
    let mut per_market: HashMap<&str, usize> = HashMap::new();
    for (_, market) in &truth_fills {
        *per_market.entry(market.as_str()).or_default() += 1;
    }
    let busiest = per_market.values().max().copied().unwrap();
    assert!(busiest > 10_000, "the busiest market has {busiest} fills");
    println!(
        "fills: {} (busiest market {busiest}), trades topic messages: {}",
        truth_fills.len(),
        trades.len()
    );

    // Markets and events: once each.
    let truth_markets = truth(&sim, "/_sim/truth/markets").await;
    let truth_events = truth(&sim, "/_sim/truth/events").await;
    let markets: Vec<Market> = records(&names).await;
    let events: Vec<Event> = records(&names).await;
    let market_ids: HashSet<&str> = markets
        .iter()
        .map(|market| market.condition_id.as_str())
        .collect();
    assert_eq!(markets.len(), truth_markets.as_array().unwrap().len());
    assert_eq!(market_ids.len(), markets.len());
    assert_eq!(events.len(), truth_events.as_array().unwrap().len());
    for expected in truth_markets.as_array().unwrap() {
        let market = markets
            .iter()
            .find(|market| market.condition_id == expected["condition_id"].as_str().unwrap())
            .unwrap();
        let tokens: Vec<&str> = market
            .tokens
            .iter()
            .map(|token| token.token_id.as_str())
            .collect();
        let expected_tokens: Vec<&str> = expected["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap())
            .collect();
        assert_eq!(tokens, expected_tokens, "{}", market.condition_id);
        assert_eq!(market.closed, expected["closed"].as_bool().unwrap());
        assert_eq!(
            market.winning_token_id.as_deref(),
            expected["winner_token_id"].as_str()
        );
        assert_eq!(
            market.event_ids,
            [expected["event_id"]
                .to_string()
                .trim_matches('"')
                .to_owned()]
        );
    }

    // A second run over the same checkpoints: nothing to send.
    let again = connected(&config).await;
    let summary = again.run(backfill_options()).await.unwrap();
    println!("second backfill: {summary:?}");
    assert_eq!(
        (
            summary.trades,
            summary.markets_emitted,
            summary.events_emitted
        ),
        (0, 0, 0)
    );
    sim.shutdown().await;
}
