//! Late-indexed fills (issue #23). The simulator's `late_index` fault keeps every 7th fill off
//! `/data/trades` until 30 s after its timestamp — longer than the poll lag (2 s), so polling
//! covers those seconds before the fills exist upstream. Phase 1: the trailing reconciliation
//! window (60 s) finds them. Phase 2, after a restart (a new collector over the same
//! checkpoints, with the ledger the first one persisted) with a window too short to see them
//! (3 s): the deep pass finds them, and knows what the first collector sent without counting
//! it. Phase 3: fills are indexed late while no collector runs, for seconds the stopped one had
//! covered; the restarted collector's deep pass finds them through the persisted ledger. The
//! topic ends with every truth fill exactly once, and `polytape_collector_late_fills_total`
//! counts exactly the fills indexed late, with their lateness (≥ the delay) in the histogram.

#![allow(clippy::unwrap_used)]

mod support;

use std::{collections::HashSet, sync::Arc, time::Duration};

use polymarket_sim::SimConfig;
use polytape_collector::{Collector, CollectorTuning, Dataset, Mode, Options};
use polytape_model::{Continuity, Trade, now_ms};
use support::*;
use tokio_util::sync::CancellationToken;

const EVERY: u64 = 7;
const DELAY_S: i64 = 30;
const LATE_FILLS: &str = "polytape_collector_late_fills_total";
const LATENESS: &str = "polytape_collector_late_fill_lateness_seconds";
const LEDGER_WRITES: &str = "polytape_collector_reconcile_ledger_writes_total";

/// The truth's fills as (seq, trade id).
async fn truth_fills(sim: &polymarket_sim::RunningSim) -> Vec<(u64, String)> {
    support::truth_fills(sim)
        .await
        .into_iter()
        .map(|fill| (fill.seq, fill.trade_id))
        .collect()
}

/// Fills the fault keeps off the tape for a while: the n-th fill (1-based) with n % 7 = 0.
fn late_indexed_since(fills: &[(u64, String)], first_seq: u64) -> u64 {
    fills
        .iter()
        .filter(|(seq, _)| *seq >= first_seq && (seq + 1).is_multiple_of(EVERY))
        .count() as u64
}

fn late_total() -> u64 {
    polytape_runtime::metrics::family_total(LATE_FILLS) as u64
}

/// (sample count, sample sum) of the lateness histogram.
fn lateness() -> (u64, f64) {
    prometheus::gather()
        .iter()
        .filter(|family| family.name() == LATENESS)
        .flat_map(|family| family.get_metric())
        .map(|metric| {
            let histogram = metric.get_histogram();
            (histogram.get_sample_count(), histogram.get_sample_sum())
        })
        .fold((0, 0.0), |(count, sum), (more, added)| {
            (count + more, sum + added)
        })
}

/// Waits until the trades topic holds exactly the truth's ids; returns the truth.
async fn wait_for_truth(
    sim: &polymarket_sim::RunningSim,
    names: &polytape_model::TopicNames,
    label: &str,
) -> Vec<(u64, String)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let truth = truth_fills(sim).await;
        let wanted: HashSet<&String> = truth.iter().map(|(_, id)| id).collect();
        let trades: Vec<Trade> = records(names).await;
        let ours: HashSet<&String> = trades.iter().map(|trade| &trade.trade_id).collect();
        if ours == wanted {
            println!("{label}: {} fills", truth.len());
            return truth;
        }
        assert!(ours.is_subset(&wanted), "{label}: trades outside the truth");
        assert!(
            std::time::Instant::now() < deadline,
            "{label}: {} of {} fills after 90 s",
            ours.len(),
            wanted.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits for the late-fill counter to reach `expected` (it is bumped just after the broker
/// acknowledged the fills the topic already shows), then checks it stays there.
async fn expect_late_total(expected: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while late_total() < expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(late_total(), expected, "late fills counted");
}

fn options() -> Options {
    Options {
        mode: Mode::Run,
        datasets: [Dataset::Markets, Dataset::Events, Dataset::Trades]
            .into_iter()
            .collect(),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_indexed_fills_are_published_once_and_counted() {
    // The history ends at the current hour: its newest fills must be older than the delay
    // when the backfill reads them, or some would be indexed late too.
    let into_hour_ms = now_ms().rem_euclid(3_600_000);
    let settle_ms = (DELAY_S + 8) * 1000;
    if into_hour_ms < settle_ms {
        tokio::time::sleep(Duration::from_millis((settle_ms - into_hour_ms) as u64)).await;
    }
    let window = Duration::from_secs(1);
    let sim = polymarket_sim::start(SimConfig {
        port: 0,
        rate: 0.0,
        lifecycle_every: 0,
        markets: 20,
        history_days: 1,
        rate_window: window,
        // Advanced operations are stamped now, whenever the test advances.
        advance_at_wall_clock: true,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.add_faults(&format!(
        "late_index@/data/trades:delay={DELAY_S}s,every={EVERY}"
    ))
    .unwrap();
    let names = topics("collector_late_fills").await;
    let polling = CollectorTuning {
        retention: Duration::from_secs(3 * 86_400),
        poll_interval: Duration::from_millis(300),
        poll_lag: Duration::from_secs(2),
        ..tuning(window)
    };

    // Phase 1: the trailing window (60 s) finds the late fills; no deep pass.
    let first = CollectorTuning {
        reconcile_window: Duration::from_secs(60),
        reconcile_interval: Duration::ZERO,
        ..polling.clone()
    };
    let stop = CancellationToken::new();
    let collector = Arc::new(
        Collector::connect(&config(&sim, &names, first), false, stop.clone())
            .await
            .unwrap(),
    );
    let running = tokio::spawn(collector.run(options()));
    let backfilled = wait_for_truth(&sim, &names, "backfill").await;
    let late_at_start = late_total();
    assert_eq!(late_at_start, 0, "the backfill found nothing late");
    sim.advance(1_500);
    let truth = wait_for_truth(&sim, &names, "phase 1 (trailing window)").await;
    let late_1 = late_indexed_since(&truth, backfilled.len() as u64);
    assert!(late_1 > 0, "the advance made late-indexed fills");
    expect_late_total(late_1).await;
    let trades: Vec<Trade> = records(&names).await;
    assert_eq!(trades.len(), truth.len(), "every fill exactly once");
    // Coverage moves past the last fills before the restart (so the next collector re-sends
    // no edge second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    running.await.unwrap().unwrap();

    // Phase 2: a restart with a 3 s window (it re-reads [now − 5 s, now − 2 s]: a fill that
    // becomes visible 30 s after its second is outside it) and a deep pass every 3 s.
    let second = CollectorTuning {
        reconcile_window: Duration::from_secs(3),
        reconcile_interval: Duration::from_secs(3),
        reconcile_horizon: Duration::from_secs(3_600),
        ..polling
    };
    let stop = CancellationToken::new();
    let collector = Arc::new(
        Collector::connect(&config(&sim, &names, second.clone()), false, stop.clone())
            .await
            .unwrap(),
    );
    let running = tokio::spawn(collector.run(options()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    sim.advance(1_500);
    let after = wait_for_truth(&sim, &names, "phase 2 (deep pass after a restart)").await;
    let late_2 = late_indexed_since(&after, truth.len() as u64);
    assert!(late_2 > 0);
    // What the first collector sent is known to the restarted one (its persisted ledger), not
    // counted as late.
    expect_late_total(late_1 + late_2).await;
    let trades: Vec<Trade> = records(&names).await;
    assert_eq!(trades.len(), after.len(), "every fill exactly once");
    let (count, sum) = lateness();
    assert_eq!(count, late_1 + late_2);
    assert!(
        sum >= count as f64 * DELAY_S as f64,
        "each late fill was found at least {DELAY_S} s after its second ({sum} s over {count})"
    );

    // Phase 3: new fills; the collector covers their seconds and persists its ledger, then
    // stops before the late ones are indexed.
    let advanced_at = std::time::Instant::now();
    sim.advance(1_500);
    let with_late = truth_fills(&sim).await;
    let late_ids: HashSet<String> = with_late
        .iter()
        .filter(|(seq, _)| *seq >= after.len() as u64 && (seq + 1).is_multiple_of(EVERY))
        .map(|(_, id)| id.clone())
        .collect();
    assert!(!late_ids.is_empty());
    // Past the poll lag, then one more persisted round: the persisted span covers every fill
    // of the advance.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let writes = polytape_runtime::metrics::family_total(LEDGER_WRITES);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while polytape_runtime::metrics::family_total(LEDGER_WRITES) <= writes {
        assert!(
            std::time::Instant::now() < deadline,
            "no ledger persisted in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    running.await.unwrap().unwrap();
    let stopped_after = advanced_at.elapsed();
    let trades: Vec<Trade> = records(&names).await;
    assert!(
        trades
            .iter()
            .all(|trade| !late_ids.contains(&trade.trade_id)),
        "the late fills were indexed after the collector stopped ({stopped_after:?} after the advance)"
    );
    // Indexed while no collector runs; then a restart (the same tuning as phase 2).
    let visible_at = Duration::from_secs(DELAY_S as u64 + 2);
    if let Some(wait) = visible_at.checked_sub(advanced_at.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    let stop = CancellationToken::new();
    let collector = Arc::new(
        Collector::connect(&config(&sim, &names, second), false, stop.clone())
            .await
            .unwrap(),
    );
    let running = tokio::spawn(collector.run(options()));
    let last = wait_for_truth(&sim, &names, "phase 3 (indexed while stopped)").await;
    let late_3 = late_indexed_since(&last, after.len() as u64);
    assert_eq!(late_3, late_ids.len() as u64);
    expect_late_total(late_1 + late_2 + late_3).await;
    let trades: Vec<Trade> = records(&names).await;
    assert_eq!(trades.len(), last.len(), "every fill exactly once");
    let (count, sum) = lateness();
    assert_eq!(count, late_1 + late_2 + late_3);
    assert!(sum >= count as f64 * DELAY_S as f64);

    let gaps: Vec<Continuity> = records(&names).await;
    assert!(gaps.is_empty(), "nothing unreadable: {gaps:?}");
    println!(
        "late fills: {late_1} found by the trailing window, {late_2} by the deep pass, {late_3} indexed while stopped; mean lateness {:.1} s",
        sum / count as f64
    );
    stop.cancel();
    running.await.unwrap().unwrap();
    sim.shutdown().await;
}
