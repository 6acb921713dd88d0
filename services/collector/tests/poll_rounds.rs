//! Polling rounds after the backfill ask for many markets per request: a round's `/trades`
//! requests follow the new fills, not the number of markets, and every fill arrives once.
//! (Its own test binary: run beside `poll.rs`'s `run`-mode test, the CPU contention could
//! delay that test past its poll lag.)

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use polymarket_sim::SimConfig;
use polytape_collector::{CollectorTuning, Options};
use polytape_model::Trade;
use support::*;

/// After the backfill, a polling round asks for many markets per request: its `/trades`
/// requests follow the new fills, not the number of markets, and the set stays the truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_rounds_cost_requests_per_fills_not_per_market() {
    let window = Duration::from_secs(1);
    let now_s = || polytape_model::now_ms() / 1000;
    // Live operations of a frozen world are stamped from the simulator's start, one
    // millisecond each; the backfill stops before that, as a poll lag would upstream.
    let before_start_s = now_s() - 1;
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
    let names = topics("collector_poll_rounds").await;
    // Without the trailing reconciliation window: this test counts what polling forward
    // costs. The window re-reads the last `collector_reconcile_window` of every chunk in the
    // same requests (one more request per 1,000 fills in it; `tests/late_fills.rs`).
    let config = config(
        &sim,
        &names,
        CollectorTuning {
            reconcile_window: Duration::ZERO,
            ..tuning(window)
        },
    );
    let collector = connected(&config).await;
    let markets = collector.crawl_markets(false, false).await.unwrap();
    let ids: Vec<String> = collector
        .select(&markets, &Options::default())
        .into_iter()
        .map(|market| market.condition_id)
        .collect();
    assert_eq!(ids.len(), 60);
    let trades_requests = || async {
        truth(&sim, "/_sim/stats").await["endpoints"]["/data/trades"]["requests"]
            .as_u64()
            .unwrap_or(0)
    };
    let truth_count = || async { truth_trade_ids(&sim).await.len() };
    let from = before_start_s - 2 * 86_400;
    // How many markets a trades round up to `to` completed.
    let complete_in_round = |to: i64| {
        let (collector, ids) = (&collector, &ids);
        async move {
            collector
                .trades_round(ids, from, to)
                .await
                .unwrap()
                .complete
        }
    };

    // Round 1: the backfill, one walk per market.
    let to = before_start_s;
    assert_eq!(complete_in_round(to).await, 60);
    let backfill_requests = trades_requests().await;
    assert!(backfill_requests >= 60, "{backfill_requests}");
    assert_eq!(topic_trade_ids(&names).await.len(), truth_count().await);

    // Round 2: new fills at the wall clock; two chunk walks (50 + 10 markets).
    let progress = sim.advance(3_000);
    let fills_before = records::<Trade>(&names).await.len();
    let truth_after = truth_count().await;
    let new_fills = truth_after - fills_before;
    assert!(new_fills > 1_000, "{new_fills} new fills");
    let to = progress.world_clock_ms / 1000;
    assert!(to > before_start_s);
    let before = trades_requests().await;
    assert_eq!(complete_in_round(to).await, 60);
    let poll_requests = trades_requests().await - before;
    let trades: Vec<Trade> = records(&names).await;
    assert_eq!(trades.len(), truth_after, "every new fill exactly once");
    assert_eq!(topic_trade_ids(&names).await.len(), truth_after);
    // Per chunk, a full page can repeat at most one second of the previous page, so at most
    // two requests per 1,000 new fills, plus the last partial page: independent of the 60
    // markets a per-market poll would ask for.
    let bound = 2 * (new_fills as u64 / 1_000 + 1) + 2;
    assert!(
        poll_requests <= bound,
        "{poll_requests} requests for {new_fills} new fills (bound {bound})"
    );
    println!(
        "backfill: {backfill_requests} requests; poll round: {poll_requests} requests for {new_fills} new fills in 60 markets"
    );

    // Round 3: nothing new; one request per chunk, nothing sent.
    let to = to + 5;
    let before = trades_requests().await;
    assert_eq!(complete_in_round(to).await, 60);
    assert_eq!(trades_requests().await - before, 2);
    assert_eq!(records::<Trade>(&names).await.len(), truth_after);
    sim.shutdown().await;
}
