//! Restart mid-backfill: the built binary is killed with SIGKILL and stopped with SIGTERM at
//! several points, then run to completion; the trades topic ends with exactly the ground
//! truth's ids, no gaps, and duplicates only as exact re-sends of the same id.

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    collections::{HashMap, HashSet},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use polytape_model::{Market, Trade};
use polytape_test_support::cli::{free_local_addr, stack_env};
use support::*;

const BINARY: &str = env!("CARGO_BIN_EXE_polytape-collector");

fn spawn(sim_base: &str, prefix: &str) -> Child {
    let mut command = Command::new(BINARY);
    for (name, _) in std::env::vars() {
        if name.starts_with("POLYTAPE_") {
            command.env_remove(name);
        }
    }
    for (name, value) in stack_env() {
        command.env(name, value);
    }
    command
        .env("POLYTAPE_TOPIC_PREFIX", prefix)
        .env("POLYTAPE_GAMMA_URL", format!("{sim_base}/gamma"))
        .env("POLYTAPE_DATA_API_URL", format!("{sim_base}/data"))
        .env("POLYTAPE_CLOB_URL", format!("{sim_base}/clob"))
        .env(
            "POLYTAPE_COLLECTOR_ADMIN_ADDR",
            free_local_addr().to_string(),
        )
        .env("POLYTAPE_LOG_LEVEL", "warn")
        .args([
            "backfill",
            "--from",
            "2025-12-28T23:00:00Z",
            "--to",
            "2026-01-01T01:00:00Z",
            "--datasets",
            "markets,events,trades",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command.spawn().unwrap()
}

fn wait(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigkill_mid_backfill_resume_to_the_same_set() {
    // Upstream's 10 s windows and the collector's default budgets: a full backfill takes
    // ~16 s, so the interruptions below land in the middle of it.
    let sim = sim(Duration::from_secs(10), "").await;
    let names = topics("collector_restart").await;
    let base = sim.base_url();
    let prefix = names.prefix().to_owned();

    let trades_after = |names: &polytape_model::TopicNames| {
        let topic = names.name(polytape_model::Topic::Trades);
        read_topic(&topic, polytape_model::Topic::Trades.partitions()).len()
    };
    let mut progress = Vec::new();
    // (how long to let it run, how to stop it)
    let interruptions = [
        (Duration::from_secs(5), "kill"),
        (Duration::from_secs(4), "term"),
        (Duration::from_secs(3), "kill"),
        (Duration::from_secs(4), "term"),
    ];
    for (run_for, how) in interruptions {
        let mut child = spawn(&base, &prefix);
        std::thread::sleep(run_for);
        if how == "kill" {
            child.kill().unwrap();
            child.wait().unwrap();
        } else {
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            let code = wait(&mut child, Duration::from_secs(30));
            assert_eq!(code, Some(0), "SIGTERM drains and exits 0");
        }
        let names = names.clone();
        let messages = tokio::task::spawn_blocking(move || trades_after(&names))
            .await
            .unwrap();
        progress.push((how, messages));
    }
    let mut child = spawn(&base, &prefix);
    let code = wait(&mut child, Duration::from_secs(240));
    assert_eq!(
        code,
        Some(0),
        "the last run completes the backfill and exits 0"
    );
    println!("trades topic messages after each interruption: {progress:?}");

    let truth_fills = truth_trade_ids(&sim).await;
    let truth_ids: HashSet<&str> = truth_fills.iter().map(|(id, _)| id.as_str()).collect();
    let trades: Vec<Trade> = records(&names).await;
    let mut by_id: HashMap<&str, &Trade> = HashMap::new();
    let mut duplicates = 0;
    // Per token, the newest fill on the topic so far (a token's fills share one partition,
    // read in offset order): a re-send must lie within one send chunk of it, or the candle
    // builder could no longer tell the copy from a fill beyond its correction horizon.
    let mut newest_ms: HashMap<&str, i64> = HashMap::new();
    let mut furthest_resend_behind_ms = 0;
    for trade in &trades {
        let newest = newest_ms
            .entry(&trade.token_id)
            .or_insert(trade.timestamp_ms);
        if let Some(previous) = by_id.insert(&trade.trade_id, trade) {
            duplicates += 1;
            let mut previous = previous.clone();
            previous.ingested_ms = trade.ingested_ms;
            assert_eq!(&previous, trade, "a duplicate id must be an exact re-send");
            let behind = *newest - trade.timestamp_ms;
            furthest_resend_behind_ms = furthest_resend_behind_ms.max(behind);
            assert!(
                behind <= polytape_collector::send_chunks::CHUNK_SPAN_MS + 1_000,
                "a re-send {behind} ms behind its token's newest fill (one chunk at most)"
            );
        }
        *newest = (*newest).max(trade.timestamp_ms);
    }
    println!(
        "the furthest re-send lay {furthest_resend_behind_ms} ms behind its token's newest fill"
    );
    let ours: HashSet<&str> = by_id.keys().copied().collect();
    assert_eq!(
        ours.difference(&truth_ids).count(),
        0,
        "no trade outside the truth"
    );
    assert_eq!(truth_ids.difference(&ours).count(), 0, "no gaps");
    println!(
        "fills {}, messages {}, exact re-sends {duplicates}",
        truth_fills.len(),
        trades.len()
    );
    // Interrupted runs must have made progress that later runs kept (not started over).
    assert!(progress.windows(2).all(|pair| pair[1].1 >= pair[0].1));
    assert!(
        duplicates < truth_fills.len() / 4,
        "resumed, not restarted: {duplicates} re-sends"
    );
    let markets: Vec<Market> = records(&names).await;
    let unique: HashSet<&str> = markets
        .iter()
        .map(|market| market.condition_id.as_str())
        .collect();
    assert_eq!(unique.len(), 200);
    sim.shutdown().await;
}
