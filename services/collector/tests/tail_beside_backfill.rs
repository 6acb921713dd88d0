//! `run` mode: markets far behind walk beside the rounds, so the live tail of the markets
//! already walked is polled while the others are still backfilling. Every `/data/trades`
//! request is slowed to 400 ms and the walks go one at a time, so the backfill of 40 markets
//! takes at least 16 s; live fills placed once the first walk has ended must arrive before
//! the last history fill does. (With a round that waited for every walk, no live fill could
//! reach the topic before the whole history had.) In the end the topic holds exactly the
//! truth.

#![allow(clippy::unwrap_used)]

mod support;

use std::{collections::HashSet, time::Duration};

use polymarket_sim::SimConfig;
use polytape_collector::{Collector, CollectorTuning, Dataset, Mode, Options};
use polytape_model::Trade;
use support::*;
use tokio_util::sync::CancellationToken;

async fn truth_ids(sim: &polymarket_sim::RunningSim) -> HashSet<String> {
    truth_trade_ids(sim)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_fills_of_walked_markets_arrive_while_others_still_backfill() {
    let window = Duration::from_secs(1);
    // History ends at the current hour and live time starts at the wall clock, as upstream.
    let sim = polymarket_sim::start(SimConfig {
        port: 0,
        rate: 0.0,
        lifecycle_every: 0,
        markets: 40,
        history_days: 1,
        rate_window: window,
        // Live fills stamped when they are made: after the first round's end, so no walk of
        // that round can read them.
        advance_at_wall_clock: true,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.add_faults("slow@/data/trades:delay=400ms,count=0")
        .unwrap();
    let history = truth_ids(&sim).await;
    let names = topics("collector_tail_beside_backfill").await;
    let config = config(
        &sim,
        &names,
        CollectorTuning {
            retention: Duration::from_secs(3 * 86_400),
            poll_interval: Duration::from_millis(300),
            poll_lag: Duration::from_secs(1),
            crawl_interval: Duration::from_secs(60),
            concurrency: 1,
            ..tuning(window)
        },
    );
    let stop = CancellationToken::new();
    let collector = std::sync::Arc::new(
        Collector::connect(&config, false, stop.clone())
            .await
            .unwrap(),
    );
    let options = Options {
        mode: Mode::Run,
        datasets: [Dataset::Trades].into_iter().collect(),
        ..Options::default()
    };
    let running = tokio::spawn(collector.run(options));

    // The first walk has ended once fills reach the topic (a walk sends when complete).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while topic_trade_ids(&names).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no walk ended in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sim.advance(400);
    let everything = truth_ids(&sim).await;
    let live: HashSet<&String> = everything.difference(&history).collect();
    assert!(!live.is_empty(), "the live operations made no fill");

    // The first live fill arrives while history is still missing.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let ours = topic_trade_ids(&names).await;
        assert!(
            ours.is_subset(&everything),
            "fills outside the truth: {:?}",
            ours.difference(&everything).take(3).collect::<Vec<_>>()
        );
        let live_arrived = ours.iter().filter(|id| live.contains(id)).count();
        if live_arrived > 0 {
            let history_missing = history.difference(&ours).count();
            println!(
                "first live fills: {live_arrived} arrived with {history_missing} of {} history fills still to come",
                history.len()
            );
            assert!(
                history_missing > 0,
                "live fills arrived only after the whole backfill"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no live fill in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // And in the end exactly the truth, each fill once.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let trades: Vec<Trade> = records(&names).await;
        let ours: HashSet<String> = trades.iter().map(|trade| trade.trade_id.clone()).collect();
        if ours == everything {
            assert_eq!(trades.len(), ours.len(), "a fill was sent twice");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} fills after 180 s",
            ours.len(),
            everything.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.cancel();
    running.await.unwrap().unwrap();
    sim.shutdown().await;
}
