//! Budget benchmark (`cargo xtask bench collector`): how much of each upstream budget the
//! collector uses, and whether it is ever throttled, against the simulator with upstream's
//! real 10 s sliding windows.
//!
//! Each run measures two phases alone, each on a fresh simulator: the trades backfill of
//! every market of 200 markets × 3 days (Data API `/trades`, 200 per 10 s; the binding budget
//! of a backfill) and one full-depth leaderboard snapshot (80 lists × up to 21 pages on Data
//! general, 1,000 per 10 s). The simulator computes every leaderboard page from all its fills,
//! so that phase uses a 1-day world: at 3 days its CPU, not our client, would set the pace on
//! a 2-core machine. Utilisation = requests / phase seconds / (budget / 10 s).
//! Needs the local stack (Kafka, Schema Registry). Prints one `RESULT {json}` line that the
//! xtask reads; `POLYTAPE_BENCH_RUNS` sets the number of runs (default 3).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use polymarket_sim::{RunningSim, SimConfig};
use polytape_collector::{Collector, CollectorConfig, CollectorTuning, Options};
use polytape_model::Topic;
use polytape_test_support::stack::{endpoints, isolated_topics};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// 2026-01-01T00:00:00Z, the end of the simulated history.
const EPOCH_MS: i64 = 1_767_225_600_000;
const HISTORY_DAYS: u32 = 3;
const WINDOW: Duration = Duration::from_secs(10);

struct Phase {
    requests: f64,
    seconds: f64,
    budget_per_window: f64,
    throttled: u64,
    rejected_429: u64,
}

impl Phase {
    fn utilisation(&self) -> f64 {
        self.requests / self.seconds / (self.budget_per_window / WINDOW.as_secs_f64())
    }
}

async fn stats(sim: &RunningSim) -> Value {
    reqwest::get(format!("{}/_sim/stats", sim.base_url()))
        .await
        .expect("simulator stats")
        .json()
        .await
        .expect("stats are JSON")
}

async fn reset_stats(sim: &RunningSim) {
    reqwest::Client::new()
        .post(format!("{}/_sim/stats/reset", sim.base_url()))
        .send()
        .await
        .expect("reset the simulator's stats");
}

fn phase(stats: &Value, route: &str, seconds: f64, budget_per_window: f64) -> Phase {
    let endpoint = &stats["endpoints"][route];
    Phase {
        requests: endpoint["requests"].as_f64().unwrap_or(0.0),
        seconds,
        budget_per_window,
        throttled: endpoint["throttled"].as_u64().unwrap_or(0),
        // Any 429 anywhere counts against us, not only on this route.
        rejected_429: stats["totals"]["rejected_429"].as_u64().unwrap_or(0),
    }
}

async fn start_sim(history_days: u32) -> RunningSim {
    polymarket_sim::start(SimConfig {
        port: 0,
        rate: 0.0,
        lifecycle_every: 0,
        epoch_ms: Some(EPOCH_MS),
        markets: 200,
        history_days,
        rate_window: WINDOW,
        ..SimConfig::default()
    })
    .await
    .expect("start the simulator")
}

async fn connect(sim: &RunningSim, run: usize, phase: &str) -> Arc<Collector> {
    let stack = endpoints();
    let names = isolated_topics(&format!("bench_collector_{phase}_{run}"));
    polytape_kafka::ensure_topics(
        &stack.kafka_brokers,
        &names,
        &[
            Topic::Markets,
            Topic::Events,
            Topic::Trades,
            Topic::DeadLetters,
            Topic::Leaderboard,
        ],
        1,
    )
    .await
    .expect("create the topics");
    let base = sim.base_url();
    let config = CollectorConfig {
        common: polytape_test_support::config::common("warn"),
        kafka: polytape_test_support::config::kafka(&names),
        upstream: polytape_test_support::config::simulator_upstream(&base, sim.ws_url()),
        collector_admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        tuning: CollectorTuning {
            budget_window: WINDOW,
            // Upstream's maximum: 80 lists × 21 pages, long enough to span several windows.
            leaderboard_depth: 1_050,
            ..polytape_runtime::config::defaults_of::<CollectorTuning>(&[CollectorConfig::OWN_KEYS])
                .unwrap()
        },
    };
    Arc::new(
        Collector::connect(&config, false, CancellationToken::new())
            .await
            .expect("connect the collector"),
    )
}

async fn one_run(run: usize) -> (Phase, Phase) {
    let sim = start_sim(HISTORY_DAYS).await;
    let collector = connect(&sim, run, "trades").await;
    let markets = collector
        .crawl_markets(false, false)
        .await
        .expect("crawl markets");
    let ids: Vec<String> = collector
        .select(&markets, &Options::default())
        .into_iter()
        .map(|market| market.condition_id)
        .collect();

    // Let every window of the crawl pass, so each phase starts on an idle budget.
    tokio::time::sleep(WINDOW).await;
    reset_stats(&sim).await;
    let started = Instant::now();
    let complete = collector
        .trades_round(
            &ids,
            EPOCH_MS / 1000 - i64::from(HISTORY_DAYS) * 86_400 - 3_600,
            EPOCH_MS / 1000 + 3_600,
        )
        .await
        .expect("trades backfill");
    let trades_seconds = started.elapsed().as_secs_f64();
    assert_eq!(
        complete.complete,
        ids.len(),
        "every market's backfill completes ({:?})",
        complete.first_incomplete
    );
    let trades = phase(&stats(&sim).await, "/data/trades", trades_seconds, 200.0);
    sim.shutdown().await;

    let sim = start_sim(1).await;
    let collector = connect(&sim, run, "leaderboard").await;
    reset_stats(&sim).await;
    let started = Instant::now();
    let rows = collector
        .collect_leaderboard(true)
        .await
        .expect("leaderboard snapshot");
    let leaderboard_seconds = started.elapsed().as_secs_f64();
    let leaderboard = phase(
        &stats(&sim).await,
        "/data/v1/leaderboard",
        leaderboard_seconds,
        1_000.0,
    );
    eprintln!(
        "run {run}: /data/trades {:.0} requests in {:.1} s = {:.3} of budget (throttled {}, 429 {}); \
         /data/v1/leaderboard {:.0} requests ({rows} rows) in {:.1} s = {:.3} of budget (throttled {}, 429 {})",
        trades.requests,
        trades.seconds,
        trades.utilisation(),
        trades.throttled,
        trades.rejected_429,
        leaderboard.requests,
        leaderboard.seconds,
        leaderboard.utilisation(),
        leaderboard.throttled,
        leaderboard.rejected_429,
    );
    sim.shutdown().await;
    (trades, leaderboard)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("POLYTAPE_BENCH_RUNS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(3)
        .max(1);
    let mut results = Vec::new();
    for run in 0..runs {
        results.push(one_run(run).await);
    }
    let series =
        |pick: &dyn Fn(&(Phase, Phase)) -> f64| -> Vec<f64> { results.iter().map(pick).collect() };
    let result = json!({
        "trades_utilisation": series(&|(trades, _)| trades.utilisation()),
        "trades_requests_per_s": series(&|(trades, _)| trades.requests / trades.seconds),
        "trades_throttled": series(&|(trades, _)| trades.throttled as f64),
        "trades_429": series(&|(trades, _)| trades.rejected_429 as f64),
        "leaderboard_utilisation": series(&|(_, board)| board.utilisation()),
        "leaderboard_requests_per_s": series(&|(_, board)| board.requests / board.seconds),
        "leaderboard_throttled": series(&|(_, board)| board.throttled as f64),
        "leaderboard_429": series(&|(_, board)| board.rejected_429 as f64),
    });
    println!("RESULT {result}");
}
