//! Throughput of the bridge from socket to acknowledged Kafka records, against the simulator
//! and the development stack (`cargo xtask bench ws-bridge` runs this and prints the figures).
//!
//! The simulator (its own runtime, threads `sim-*`) is driven with `advance` in chunks as fast
//! as the bridge keeps up (at most `MAX_BACKLOG_EVENTS` unread events, far below the
//! simulator's lag limit); the bridge (its own runtime, threads `bridge-*`, plus librdkafka's
//! `rdk:*` threads) reads, validates, encodes and produces with acks=all. Measured: events and
//! records per second until the last record is acknowledged, and the CPU time of the bridge's
//! threads only, as cores and as CPU per 1k events/s. One `RESULT {json}` line per run set.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use polymarket_sim::SimConfig;
use polytape_kafka::{RecordProducer, SharedProducer};
use polytape_model::{Market, MarketToken, Topic};
use polytape_test_support::stack::{endpoints, isolated_topics};
use polytape_ws_bridge::{Bridge, WsBridgeConfig};
use tokio_util::sync::CancellationToken;

const RUNS: usize = 3;
/// Live operations per run (about 1.5 events each); `POLYTAPE_WS_BENCH_OPERATIONS` overrides.
const DEFAULT_OPERATIONS_PER_RUN: u64 = 40_000;

fn operations_per_run() -> u64 {
    std::env::var("POLYTAPE_WS_BENCH_OPERATIONS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(DEFAULT_OPERATIONS_PER_RUN)
}
const CHUNK_OPERATIONS: u64 = 500;
const MAX_BACKLOG_EVENTS: f64 = 6_000.0;

/// CPU seconds of this process's threads whose name starts with one of `prefixes`.
fn thread_cpu_seconds(prefixes: &[&str]) -> f64 {
    let ticks_per_second = 100.0; // CLK_TCK on Linux
    let mut total = 0.0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !prefixes.iter().any(|prefix| name.starts_with(prefix)) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        let Some((_, after_name)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        total += (utime + stime) / ticks_per_second;
    }
    total
}

fn counter(name: &str) -> f64 {
    polytape_runtime::metrics::family_total(name)
}

fn market(condition_id: &str, tokens: &[String]) -> Market {
    Market {
        condition_id: condition_id.to_owned(),
        question_id: None,
        gamma_market_id: None,
        event_ids: Vec::new(),
        slug: None,
        question: condition_id.to_owned(),
        description: None,
        protocol_version: None,
        tokens: tokens
            .iter()
            .enumerate()
            .map(|(index, token)| MarketToken {
                token_id: token.clone(),
                outcome: format!("o{index}"),
                outcome_index: i32::try_from(index).unwrap(),
                winner: None,
            })
            .collect(),
        active: true,
        closed: false,
        archived: false,
        accepting_orders: true,
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

struct RunFigures {
    events: f64,
    records: f64,
    seconds: f64,
    cpu_seconds: f64,
    lagged: u64,
}

fn one_run(
    sim_runtime: &tokio::runtime::Runtime,
    bridge_runtime: &tokio::runtime::Runtime,
    run: usize,
) -> RunFigures {
    let sim = sim_runtime
        .block_on(polymarket_sim::start(SimConfig {
            port: 0,
            rate: 0.0,
            markets: 300,
            history_days: 0,
            lifecycle_every: 0,
            ws_max_assets: 10_000,
            ws_truth_capacity: 1_000,
            epoch_ms: None,
            seed: 7 + run as u64,
            ..SimConfig::default()
        }))
        .unwrap();
    let base = sim.base_url();
    let stats_url = format!("{base}/_sim/stats");
    let markets: serde_json::Value = sim_runtime
        .block_on(async {
            reqwest::get(format!("{base}/_sim/truth/markets"))
                .await?
                .json()
                .await
        })
        .unwrap();
    let rows = markets
        .as_array()
        .or_else(|| markets["markets"].as_array())
        .unwrap()
        .clone();
    let open: Vec<Market> = rows
        .iter()
        .filter(|row| !row["closed"].as_bool().unwrap_or(true))
        .map(|row| {
            let tokens: Vec<String> = row["token_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|token| token.as_str().unwrap().to_owned())
                .collect();
            market(row["condition_id"].as_str().unwrap(), &tokens)
        })
        .collect();
    let token_count: usize = open.iter().map(|market| market.tokens.len()).sum();
    let stack = endpoints();
    let names = isolated_topics("ws_bench");
    bridge_runtime.block_on(async {
        polytape_kafka::ensure_topics(&stack.kafka_brokers, &names, &Topic::ALL, 1)
            .await
            .unwrap();
        let registry =
            polytape_codec::SchemaRegistryClient::new(&stack.schema_registry_url).unwrap();
        let producer = SharedProducer::connect(&stack.kafka_brokers).unwrap();
        RecordProducer::<Market>::register(producer, &registry, &names)
            .await
            .unwrap()
            .send_all(&open)
            .await
            .unwrap();
    });
    let config = WsBridgeConfig {
        common: polytape_test_support::config::common("warn"),
        kafka: polytape_test_support::config::kafka(&names),
        upstream: polytape_test_support::config::simulator_upstream(&base, sim.ws_url()),
        ws_bridge_admin_addr: "127.0.0.1:0".parse().unwrap(),
        ws_max_assets_per_connection: 250,
        tuning: polytape_runtime::config::defaults_of(&[WsBridgeConfig::OWN_KEYS]).unwrap(),
        filter: polytape_runtime::config::defaults_of(&[WsBridgeConfig::OWN_KEYS]).unwrap(),
    };
    let stop = CancellationToken::new();
    let events_before = counter("polytape_ws_events_total");
    let acked_before = counter("polytape_ws_records_acked_total");
    let bridge = bridge_runtime.block_on(Bridge::connect(&config)).unwrap();
    let task = bridge_runtime.spawn(bridge.run(stop.clone(), || {}));
    // The initial dumps (one book per token) are read and acknowledged before measuring.
    let deadline = Instant::now() + Duration::from_secs(120);
    while counter("polytape_ws_records_acked_total") - acked_before < token_count as f64 {
        assert!(Instant::now() < deadline, "initial dumps not acknowledged");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats_before: serde_json::Value = sim_runtime
        .block_on(async { reqwest::get(&stats_url).await?.json().await })
        .unwrap();
    let sent_before = stats_before["ws"]["events_sent"].as_f64().unwrap();
    let events_start = counter("polytape_ws_events_total");
    let acked_start = counter("polytape_ws_records_acked_total");
    let cpu_start = thread_cpu_seconds(&["bridge-", "rdk:"]);
    let started = Instant::now();
    let mut operations = 0;
    while operations < operations_per_run() {
        let progress = sim.advance(CHUNK_OPERATIONS);
        operations += CHUNK_OPERATIONS;
        // Keep the backlog bounded: roughly 1.5 events per operation.
        let generated = progress.operations as f64 * 1.5;
        while generated - (counter("polytape_ws_events_total") - events_before) > MAX_BACKLOG_EVENTS
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let stats: serde_json::Value = sim_runtime
        .block_on(async { reqwest::get(&stats_url).await?.json().await })
        .unwrap();
    let sent = stats["ws"]["events_sent"].as_f64().unwrap() - sent_before;
    // Done when every sent event was read and nothing is waiting for an acknowledgement.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let read = counter("polytape_ws_events_total") - events_start;
        if read >= sent && counter("polytape_ws_records_in_flight") == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the bridge stalled");
        std::thread::sleep(Duration::from_millis(1));
    }
    let finished = Instant::now();
    let last_acked = counter("polytape_ws_records_acked_total");
    let seconds = finished.duration_since(started).as_secs_f64();
    let cpu_seconds = thread_cpu_seconds(&["bridge-", "rdk:"]) - cpu_start;
    let records = last_acked - acked_start;
    let lagged = stats["ws"]["lagged_disconnects"].as_u64().unwrap_or(0);
    stop.cancel();
    bridge_runtime.block_on(task).unwrap().unwrap();
    sim_runtime.block_on(sim.shutdown());
    RunFigures {
        events: sent,
        records,
        seconds,
        cpu_seconds,
        lagged,
    }
}

fn main() {
    let sim_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sim-worker")
        .enable_all()
        .build()
        .unwrap();
    let bridge_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bridge-worker")
        .enable_all()
        .build()
        .unwrap();
    let mut events_per_s = Vec::new();
    let mut records_per_s = Vec::new();
    let mut cores = Vec::new();
    let mut cpu_per_1k = Vec::new();
    let mut lagged = 0;
    for run in 0..RUNS {
        let figures = one_run(&sim_runtime, &bridge_runtime, run);
        let rate = figures.events / figures.seconds;
        let used = figures.cpu_seconds / figures.seconds;
        eprintln!(
            "run {run}: {:.0} events ({:.0} records) in {:.2} s = {rate:.0} events/s; bridge CPU {used:.2} cores",
            figures.events, figures.records, figures.seconds
        );
        events_per_s.push(rate);
        records_per_s.push(figures.records / figures.seconds);
        cores.push(used);
        cpu_per_1k.push(used / (rate / 1000.0));
        lagged += figures.lagged;
    }
    let result = serde_json::json!({
        "events_per_s": events_per_s,
        "records_per_s": records_per_s,
        "bridge_cpu_cores": cores,
        "cpu_cores_per_1k_events_per_s": cpu_per_1k,
        "lagged_disconnects": lagged,
        "operations_per_run": operations_per_run(),
    });
    println!("RESULT {result}");
}
