//! A fault run: 5xx bursts, timeouts, truncated and malformed bodies, schema drift (every
//! third `/trades` page with its prices as text: a fill, dust fills included, keeps its id
//! whatever JSON type its price comes in), unknown and missing fields. The collector completes, malformed records are in the DLQ with their
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
    drift@/data/trades:field=price,count=0,every=3;\
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
    // On failure, the fills outside the truth and the truth's fills of their transactions:
    // the evidence a rare failure leaves.
    let outside: Vec<&Trade> = trades
        .iter()
        .filter(|trade| !truth_ids.contains(trade.trade_id.as_str()))
        .collect();
    if !outside.is_empty() {
        let all = truth(&sim, "/_sim/truth/fills?limit=200000").await;
        for trade in outside.iter().take(5) {
            let siblings: Vec<&serde_json::Value> = all["fills"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|fill| {
                    fill["transactionHash"].as_str() == Some(trade.transaction_hash.as_str())
                })
                .collect();
            eprintln!("outside the truth: {trade:?}\n  truth of its transaction: {siblings:#?}");
        }
        eprintln!("truth holds {} fills", truth_ids.len());
    }
    assert_eq!(outside.len(), 0, "price drift still yields the true ids");
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
    // Every walk covers its whole window: every fill, nothing else, each once.
    assert_fills_by_identity(&trades, truth_ids, &summary);
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
    assert_fills_by_identity(&trades, truth_ids, &summary);
    let letters: Vec<DeadLetter> = records(&names).await;
    assert!(letters.is_empty(), "{letters:#?}");
    sim.shutdown().await;
}

/// A backfill upstream never lets finish (every `/trades` request answers 500) gives up after
/// its rounds with an error that names why, not only how many markets are left: the only
/// evidence a rare failure in CI leaves behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_that_cannot_finish_says_why() {
    let window = Duration::from_secs(1);
    let sim = sim(window, "error@/data/trades:status=500,count=0").await;
    let names = topics("collector_cannot_finish").await;
    let tuning = CollectorTuning {
        max_attempts: 1,
        ..tuning(window)
    };
    let collector = connected(&config(&sim, &names, tuning)).await;
    let options = history_backfill(&[Dataset::Markets, Dataset::Trades]);
    let error = collector.run(options).await.unwrap_err().to_string();
    println!("{error}");
    assert!(
        error.contains("200 of 200 markets still incomplete after"),
        "{error}"
    );
    assert!(error.contains("first in the last round: 0x"), "{error}");
    assert!(
        error.contains("500"),
        "the upstream answer is named: {error}"
    );
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

    // By identity: every truth id (each twin under its own) and no other, each once.
    let trades: Vec<Trade> = records(&names).await;
    assert_fills_by_identity(&trades, truth_counts.keys().copied(), &summary);
    println!(
        "identical fills: {} fills, {twins} identical twins, each arrived once under its own id",
        fills.len()
    );
    sim.shutdown().await;
}

/// A tick change mid-backfill (issue #23): the markets' tick, as upstream serves it, switches
/// (0.01 ↔ 0.001) between a first backfill and a second one over the same history (a re-poll,
/// fresh checkpoints, a new collector with an empty ledger). A fill's id is a function of its
/// upstream row alone, so whatever the second pass re-sends carries the id the first gave it:
/// the topic holds every truth id and no other. Stored prices equal the truth's in
/// the first pass; in the second, the (wrong) served tick may only move a dust fill's price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_change_mid_backfill_gives_no_fill_a_second_id() {
    let window = Duration::from_secs(1);
    let sim = polymarket_sim::start(polymarket_sim::SimConfig {
        markets: 60,
        ..sim_config(window)
    })
    .await
    .unwrap();
    let names = topics("collector_tick_change").await;
    let first = connected(&config(&sim, &names, tuning(window))).await;
    let options = history_backfill(&[Dataset::Markets, Dataset::Trades]);
    first.run(options.clone()).await.unwrap();

    // Upstream switches every market's tick; the fills do not change.
    sim.add_faults("tick_change@/clob/markets:count=0;tick_change@/gamma/markets:count=0")
        .unwrap();
    let trade_requests = || async {
        truth(&sim, "/_sim/stats").await["endpoints"]["/data/trades"]["requests"]
            .as_u64()
            .unwrap_or(0)
    };
    let first_pass_requests = trade_requests().await;
    // Fresh: the stored checkpoints are ignored, the whole history is read again.
    let second = std::sync::Arc::new(
        polytape_collector::Collector::connect(
            &config(&sim, &names, tuning(window)),
            true,
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap(),
    );
    second.run(options).await.unwrap();

    // The second pass re-read the history under the new ticks.
    let second_pass_requests = trade_requests().await - first_pass_requests;
    assert!(
        second_pass_requests * 2 >= first_pass_requests,
        "the re-read made {second_pass_requests} /trades requests, the first pass {first_pass_requests}"
    );

    // The fault fired: markets were published under two different ticks.
    let markets: Vec<Market> = records(&names).await;
    let mut ticks: HashMap<&str, HashSet<String>> = HashMap::new();
    for market in &markets {
        if let Some(tick) = market.tick_size {
            ticks
                .entry(market.condition_id.as_str())
                .or_default()
                .insert(tick.normalize().to_string());
        }
    }
    let switched = ticks.values().filter(|seen| seen.len() == 2).count();
    assert!(switched >= 50, "{switched} markets seen under two ticks");

    let fills = truth(&sim, "/_sim/truth/fills?limit=200000").await;
    let fills = fills["fills"].as_array().unwrap();
    let truth_price: HashMap<&str, (rust_decimal::Decimal, rust_decimal::Decimal)> = fills
        .iter()
        .map(|fill| {
            (
                fill["trade_id"].as_str().unwrap(),
                (
                    fill["price"].as_str().unwrap().parse().unwrap(),
                    fill["size"].as_str().unwrap().parse().unwrap(),
                ),
            )
        })
        .collect();
    let dust = rust_decimal::Decimal::new(1, 2);
    let dust_fills = truth_price
        .values()
        .filter(|(_, size)| *size < dust)
        .count();
    assert!(
        dust_fills > 0,
        "no dust fill in the history: the test could not fail"
    );

    // By identity: every truth id, nothing else. A re-read re-sends a fill or adopts it (see
    // the collector's ledger), but never under a second id.
    let trades: Vec<Trade> = records(&names).await;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut dust_moved = 0;
    for trade in &trades {
        let Some((price, size)) = truth_price.get(trade.trade_id.as_str()) else {
            panic!("a trade outside the truth: {trade:?}");
        };
        let count = seen.entry(trade.trade_id.as_str()).or_default();
        *count += 1;
        if trade.price != *price {
            // The topic has one partition: the first occurrence is the first pass's, read
            // under the served tick; only a re-sent dust fill may follow the switched one.
            assert!(
                *count == 2 && *size < dust,
                "{trade:?}: price {} against the truth's {price}",
                trade.price
            );
            dust_moved += 1;
        }
    }
    assert_eq!(seen.len(), truth_price.len(), "every truth fill");
    let resent = seen.values().filter(|count| **count == 2).count();
    assert!(
        seen.values().all(|count| *count <= 2),
        "a fill sent more than once a pass"
    );
    println!(
        "tick change: {} fills ({dust_fills} dust) re-read ({second_pass_requests} requests) \
         under {switched} switched ticks, {resent} re-sent, each under its one id; \
         {dust_moved} re-sent dust prices moved by the switched tick",
        truth_price.len()
    );
    sim.shutdown().await;
}
