//! A fault run: 5xx bursts, timeouts, truncated and malformed bodies, schema drift, unknown
//! and missing fields. The collector completes, malformed records are in the DLQ with their
//! reasons, and every other fill arrives. And a run whose `/trades` pages carry rows outside
//! the requested window: they are dead-lettered and every walk still covers its window. And a
//! storm of 429s with `Retry-After`: waited out as told, nothing lost.

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use polytape_collector::{CollectorTuning, Dataset};
use polytape_model::{DeadLetter, Market, Trade};
use support::*;

const FAULTS: &str = "error@/data/trades:status=503,count=5,every=7;\
    error@/data/trades:status=500,count=3,every=5,after=40;\
    timeout@/data/trades:delay=2s,count=2,every=13;\
    malformed@/data/trades:count=3,every=11;\
    truncate@/gamma/markets:count=1;\
    error@/clob/markets:status=502,count=2;\
    drift@/data/trades:field=price,count=4,every=5;\
    drift@/data/trades:field=transactionHash,count=2,every=17,after=20;\
    extra_field@/gamma:count=0;\
    missing_optional@/gamma/markets:count=2;\
    extra_field@/data/trades:count=10";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_keep_the_collector_up_and_bad_rows_go_to_the_dlq() {
    let window = Duration::from_secs(1);
    let sim = sim(window, FAULTS).await;
    let names = topics("collector_faults").await;
    let config = config(&sim, &names, tuning(window));
    let collector = connected(&config).await;
    let options = history_backfill(&[Dataset::Markets, Dataset::Events, Dataset::Trades]);
    let summary = collector.run(options).await.unwrap();
    println!("fault run: {summary:?}");
    assert_eq!(summary.markets_complete, 200);

    let stats = truth(&sim, "/_sim/stats").await;
    let trades_stats = &stats["endpoints"]["/data/trades"];
    println!("/data/trades stats: {trades_stats}");
    let faults = trades_stats["faults"].as_object().unwrap();
    assert!(faults.len() >= 4, "faults fired: {faults:?}");
    assert_eq!(stats["totals"]["rejected_429"].as_u64().unwrap_or(0), 0);

    let letters: Vec<DeadLetter> = records(&names).await;
    let trade_letters: Vec<&DeadLetter> = letters
        .iter()
        .filter(|letter| letter.origin.starts_with("data_trades"))
        .collect();
    assert!(!trade_letters.is_empty(), "drifted rows are dead-lettered");
    for letter in &trade_letters {
        assert!(letter.error.contains("transactionHash"), "{}", letter.error);
        let row: serde_json::Value = serde_json::from_slice(&letter.payload).unwrap();
        assert!(row["transactionHash"].is_null());
    }
    let dlq_ids: HashSet<&str> = letters
        .iter()
        .map(|letter| letter.dead_letter_id.as_str())
        .collect();

    let truth_fills = truth_trade_ids(&sim).await;
    let truth_ids: HashSet<&str> = truth_fills.iter().map(|(id, _)| id.as_str()).collect();
    let trades: Vec<Trade> = records(&names).await;
    let ours: HashSet<&str> = trades.iter().map(|trade| trade.trade_id.as_str()).collect();
    assert_eq!(
        ours.difference(&truth_ids).count(),
        0,
        "price drift still yields the true ids"
    );
    let missing = truth_ids.difference(&ours).count();
    println!(
        "fills {}, arrived {}, missing {missing}, dead letters {} ({} distinct)",
        truth_ids.len(),
        ours.len(),
        letters.len(),
        dlq_ids.len()
    );
    assert!(
        missing <= trade_letters.len(),
        "only dead-lettered rows may be missing"
    );
    let markets: Vec<Market> = records(&names).await;
    let unique: HashSet<&str> = markets
        .iter()
        .map(|market| market.condition_id.as_str())
        .collect();
    assert_eq!(unique.len(), 200);
    sim.shutdown().await;
}

/// Every second `/trades` response carries a stray row stamped `timestamp: 1`, far outside the
/// window asked for. Steering a walk by the page's raw minimum timestamp ended the walk at
/// the first full page holding one (and sent the stray row as a 1970 fill); validated first,
/// the stray rows are dead-lettered with the reason, and the fills are exactly the truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_outside_the_window_are_dead_lettered_and_do_not_end_a_walk() {
    let window = Duration::from_secs(1);
    let sim = sim(window, "out_of_window@/data/trades:count=0,every=2").await;
    let names = topics("collector_out_of_window").await;
    // Smaller pages: more markets need several pages, so more walks meet a stray row mid-way.
    let config = config(
        &sim,
        &names,
        CollectorTuning {
            trades_page_size: 300,
            ..tuning(window)
        },
    );
    let collector = connected(&config).await;
    let options = history_backfill(&[Dataset::Markets, Dataset::Trades]);
    let summary = collector.run(options).await.unwrap();
    println!("out-of-window run: {summary:?}");
    assert_eq!(summary.markets_complete, 200);

    let stats = truth(&sim, "/_sim/stats").await;
    let fired = stats["endpoints"]["/data/trades"]["faults"]["out_of_window"]
        .as_u64()
        .unwrap_or(0);
    assert!(fired > 100, "stray rows served: {fired}");

    let letters: Vec<DeadLetter> = records(&names).await;
    let trade_letters: Vec<&DeadLetter> = letters
        .iter()
        .filter(|letter| letter.origin.starts_with("data_trades"))
        .collect();
    assert!(!trade_letters.is_empty(), "stray rows are dead-lettered");
    for letter in &trade_letters {
        assert!(
            letter.error.contains("outside the requested window"),
            "{}",
            letter.error
        );
        let row: serde_json::Value = serde_json::from_slice(&letter.payload).unwrap();
        assert_eq!(row["timestamp"], serde_json::json!(1));
    }

    let truth_fills = truth_trade_ids(&sim).await;
    let truth_ids: HashSet<&str> = truth_fills.iter().map(|(id, _)| id.as_str()).collect();
    let trades: Vec<Trade> = records(&names).await;
    assert!(
        trades
            .iter()
            .all(|trade| trade.timestamp_ms >= 1_000_000_000_000),
        "no stray row became a fill"
    );
    let ours: HashSet<&str> = trades.iter().map(|trade| trade.trade_id.as_str()).collect();
    let missing = truth_ids.difference(&ours).count();
    let extra = ours.difference(&truth_ids).count();
    assert_eq!(
        (missing, extra),
        (0, 0),
        "every walk covers its whole window"
    );
    assert_eq!(trades.len(), truth_fills.len(), "each fill once");
    sim.shutdown().await;
}

/// A storm of 429s with `Retry-After: 2` on `/trades`: the collector waits as told (the
/// simulator counts every request repeated before its `Retry-After` passed), completes, and
/// every fill arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_is_waited_out_as_told_and_loses_nothing() {
    let window = Duration::from_secs(1);
    let sim = sim(
        window,
        "error@/data/trades:status=429,retry_after=2s,count=25,every=3,after=10",
    )
    .await;
    let names = topics("collector_429_storm").await;
    let config = config(&sim, &names, tuning(window));
    let collector = connected(&config).await;
    let options = history_backfill(&[Dataset::Markets, Dataset::Trades]);
    let summary = collector.run(options).await.unwrap();
    println!("429 storm run: {summary:?}");
    assert_eq!(summary.markets_complete, 200);

    let stats = truth(&sim, "/_sim/stats").await;
    let trades_stats = &stats["endpoints"]["/data/trades"];
    assert_eq!(
        trades_stats["faults"]["error"].as_u64(),
        Some(25),
        "{trades_stats}"
    );
    assert_eq!(
        trades_stats["retried_early"].as_u64(),
        Some(0),
        "a request came back before its Retry-After: {trades_stats}"
    );

    let truth_fills = truth_trade_ids(&sim).await;
    let truth_ids: HashSet<&str> = truth_fills.iter().map(|(id, _)| id.as_str()).collect();
    let trades: Vec<Trade> = records(&names).await;
    let ours: HashSet<&str> = trades.iter().map(|trade| trade.trade_id.as_str()).collect();
    assert_eq!(ours, truth_ids, "every fill, nothing else");
    assert_eq!(trades.len(), truth_fills.len(), "each fill once");
    let letters: Vec<DeadLetter> = records(&names).await;
    assert!(letters.is_empty(), "{letters:#?}");
    sim.shutdown().await;
}

/// Identical fills in one transaction (same wallet, token, side, size and price: two trades,
/// two identical rows upstream): each arrives, under an id that counts its occurrence, so
/// neither the collector's dedup nor ClickHouse's identity merges them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_fills_of_one_transaction_are_two_trades() {
    let window = Duration::from_secs(1);
    let sim = polymarket_sim::start(polymarket_sim::SimConfig {
        markets: 60,
        identical_fill_every: 41,
        ..sim_config(window)
    })
    .await
    .unwrap();
    let names = topics("collector_identical_fills").await;
    let collector = connected(&config(&sim, &names, tuning(window))).await;
    let options = history_backfill(&[Dataset::Markets, Dataset::Trades]);
    let summary = collector.run(options).await.unwrap();
    assert_eq!(summary.markets_complete, 60);

    // The truth holds identical rows (the twins), each under its own id.
    let fills = truth(&sim, "/_sim/truth/fills?limit=200000").await;
    let fills = fills["fills"].as_array().unwrap();
    let rows: HashSet<String> = fills
        .iter()
        .map(|fill| {
            [
                "transactionHash",
                "asset",
                "side",
                "size",
                "price",
                "proxyWallet",
            ]
            .map(|field| fill[field].to_string())
            .join("|")
        })
        .collect();
    let twins = fills.len() - rows.len();
    assert!(twins > 50, "{twins} identical rows");
    let mut truth_counts: HashMap<&str, usize> = HashMap::new();
    for fill in fills {
        *truth_counts
            .entry(fill["trade_id"].as_str().unwrap())
            .or_default() += 1;
    }
    assert_eq!(truth_counts.len(), fills.len(), "truth ids are distinct");

    // By identity and multiplicity: every truth id exactly once.
    let trades: Vec<Trade> = records(&names).await;
    let mut ours: HashMap<&str, usize> = HashMap::new();
    for trade in &trades {
        *ours.entry(trade.trade_id.as_str()).or_default() += 1;
    }
    assert_eq!(ours, truth_counts);
    println!(
        "identical fills: {} fills, {twins} identical twins, each arrived once under its own id",
        fills.len()
    );
    sim.shutdown().await;
}
