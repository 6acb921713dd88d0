//! Shared by the collector's integration tests: a simulator, isolated topics, reading topics
//! back, and the simulator's ground truth.

#![allow(dead_code, unreachable_pub)]

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use polymarket_sim::{RunningSim, SimConfig};
use polytape_collector::{
    Collector, CollectorConfig, CollectorTuning, Dataset, Mode, Options, Summary,
};
use polytape_model::{Topic, TopicNames, Trade};
use polytape_test_support::stack::endpoints;
// Re-exported for the test files; not every test binary reads topics back.
#[allow(unused_imports)]
pub use polytape_test_support::topic::{read_topic, records};
use tokio_util::sync::CancellationToken;

/// 2026-01-01T00:00:00Z: the end of the simulated history.
pub const EPOCH_MS: i64 = 1_767_225_600_000;
pub const HISTORY_DAYS: u32 = 3;

pub const TOPICS: [Topic; 8] = [
    Topic::Markets,
    Topic::Events,
    Topic::Trades,
    Topic::DeadLetters,
    Topic::PriceHistory,
    Topic::BookSnapshots,
    Topic::Leaderboard,
    Topic::Continuity,
];

/// The simulator the tests share: 200 markets, `HISTORY_DAYS` of history ending at
/// `EPOCH_MS`, no live flow.
pub fn sim_config(rate_window: Duration) -> SimConfig {
    SimConfig {
        port: 0,
        rate: 0.0,
        lifecycle_every: 0,
        epoch_ms: Some(EPOCH_MS),
        markets: 200,
        history_days: HISTORY_DAYS,
        rate_window,
        ..SimConfig::default()
    }
}

pub async fn sim(rate_window: Duration, faults: &str) -> RunningSim {
    let sim = polymarket_sim::start(sim_config(rate_window))
        .await
        .unwrap();
    if !faults.is_empty() {
        sim.add_faults(faults).unwrap();
    }
    sim
}

pub async fn topics(purpose: &str) -> TopicNames {
    polytape_test_support::logs::capture_test_logs();
    let names = polytape_test_support::stack::isolated_topics(purpose);
    polytape_kafka::ensure_topics(&endpoints().kafka_brokers, &names, &TOPICS, 1)
        .await
        .unwrap();
    names
}

pub fn config(sim: &RunningSim, names: &TopicNames, tuning: CollectorTuning) -> CollectorConfig {
    let base = sim.base_url();
    CollectorConfig {
        common: polytape_test_support::config::common("info"),
        kafka: polytape_test_support::config::kafka(names),
        upstream: polytape_test_support::config::simulator_upstream(&base, sim.ws_url()),
        collector_admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        tuning,
    }
}

pub async fn truth(sim: &RunningSim, path: &str) -> serde_json::Value {
    reqwest::get(format!("{}{path}", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// One ground-truth fill (takers and makers alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruthFill {
    pub seq: u64,
    pub trade_id: String,
    pub condition_id: String,
    /// Upstream's second.
    pub second: i64,
}

/// Every ground-truth fill, in the simulator's order.
pub async fn truth_fills(sim: &RunningSim) -> Vec<TruthFill> {
    let fills = truth(sim, "/_sim/truth/fills?limit=200000").await;
    assert!(fills["next_since_seq"].is_null(), "more than 200,000 fills");
    fills["fills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|fill| TruthFill {
            seq: fill["seq"].as_u64().unwrap(),
            trade_id: fill["trade_id"].as_str().unwrap().to_owned(),
            condition_id: fill["conditionId"].as_str().unwrap().to_owned(),
            second: fill["timestamp"].as_i64().unwrap(),
        })
        .collect()
}

/// Ground-truth (trade id, condition id) of every fill.
pub async fn truth_trade_ids(sim: &RunningSim) -> Vec<(String, String)> {
    truth_fills(sim)
        .await
        .into_iter()
        .map(|fill| (fill.trade_id, fill.condition_id))
        .collect()
}

/// The ids of every fill on the trades topic.
pub async fn topic_trade_ids(names: &TopicNames) -> HashSet<String> {
    let trades: Vec<Trade> = records(names).await;
    trades.into_iter().map(|trade| trade.trade_id).collect()
}

/// A collector over `config` (not started).
pub async fn connected(config: &CollectorConfig) -> Arc<Collector> {
    Arc::new(
        Collector::connect(config, false, CancellationToken::new())
            .await
            .unwrap(),
    )
}

/// A backfill of the whole simulated history (an hour either side) for `datasets`.
pub fn history_backfill(datasets: &[Dataset]) -> Options {
    Options {
        mode: Mode::Backfill {
            from_s: EPOCH_MS / 1000 - i64::from(HISTORY_DAYS) * 86_400 - 3_600,
            to_s: EPOCH_MS / 1000 + 3_600,
        },
        datasets: datasets.iter().copied().collect(),
        ..Options::default()
    }
}

/// Fast tuning for a simulator whose rate windows are `window` long.
pub fn tuning(window: Duration) -> CollectorTuning {
    CollectorTuning {
        budget_window: window,
        request_timeout: Duration::from_secs(5),
        ..polytape_runtime::config::defaults_of::<CollectorTuning>(&[CollectorConfig::OWN_KEYS])
            .unwrap()
    }
}

/// Asserts that `trades` (a topic's records) are the truth's fills by identity: every id of
/// `truth_ids` arrives and no other id does. Each arrives once, except a fill of a market whose
/// walk the run retried (`summary.markets_retried`: the retry re-reads from the checkpoint) or
/// any fill once the producer was renewed: the only ways a copy may reach the topic, merged by
/// id downstream. On failure the message names the ids and the run's summary, the evidence a
/// rare failure leaves.
pub fn assert_fills_by_identity<'a>(
    trades: &[Trade],
    truth_ids: impl IntoIterator<Item = &'a str>,
    summary: &Summary,
) {
    let truth: std::collections::HashSet<&str> = truth_ids.into_iter().collect();
    let mut arrivals: HashMap<&str, (usize, &str)> = HashMap::new();
    for trade in trades {
        arrivals
            .entry(trade.trade_id.as_str())
            .or_insert((0, trade.condition_id.as_str()))
            .0 += 1;
    }
    let sample = |ids: &[&str]| -> String {
        let shown: Vec<&&str> = ids.iter().take(10).collect();
        format!("{} ({shown:?}…)", ids.len())
    };
    let missing: Vec<&str> = truth
        .iter()
        .copied()
        .filter(|id| !arrivals.contains_key(id))
        .collect();
    let unexpected: Vec<&str> = arrivals
        .keys()
        .copied()
        .filter(|id| !truth.contains(id))
        .collect();
    let copied: Vec<&str> = arrivals
        .iter()
        .filter(|(_, (count, _))| *count > 1)
        .map(|(id, _)| *id)
        .collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "fills missing: {}; fills not in the truth: {}; copies: {}; run: {summary:?}",
        sample(&missing),
        sample(&unexpected),
        sample(&copied),
    );
    let unexplained: Vec<&str> = copied
        .iter()
        .copied()
        .filter(|id| {
            let market = arrivals.get(id).map_or("", |(_, market)| *market);
            summary.producer_renewals == 0
                && !summary
                    .markets_retried
                    .iter()
                    .any(|retried| retried == market)
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "fills arrived more than once in markets nothing re-sent: {}; run: {summary:?}",
        sample(&unexplained)
    );
    if !copied.is_empty() {
        println!(
            "{} fills arrived twice after a re-send (merged by id downstream); run: {summary:?}",
            copied.len()
        );
    }
}
