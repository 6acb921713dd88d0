//! A market's walk still failing after every retry is declared (issue #23): with one attempt
//! per request, the first three `/data/trades` requests of a backfill answer 500, so three
//! markets' walks fail in the first round. Each gets one `UPSTREAM_GAP` continuity record over
//! what its walk left unread (the whole window: nothing of it was covered yet), with its
//! tokens; the next round reads them, and the trades end up exactly the truth.

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use polymarket_sim::SimConfig;
use polytape_collector::{CollectorTuning, Dataset, Mode, Options};
use polytape_model::{Continuity, ContinuityKind, Market, Trade};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_failing_after_every_retry_is_declared_then_retried() {
    let window = Duration::from_secs(1);
    let sim = polymarket_sim::start(SimConfig {
        port: 0,
        rate: 0.0,
        lifecycle_every: 0,
        epoch_ms: Some(EPOCH_MS),
        markets: 10,
        history_days: 1,
        rate_window: window,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.add_faults("error@/data/trades:status=500,count=3")
        .unwrap();
    let names = topics("collector_walk_gaps").await;
    let config = config(
        &sim,
        &names,
        CollectorTuning {
            max_attempts: 1,
            ..tuning(window)
        },
    );
    let collector = connected(&config).await;
    let from_s = EPOCH_MS / 1000 - 86_400;
    let to_s = EPOCH_MS / 1000;
    let summary = collector
        .run(Options {
            mode: Mode::Backfill { from_s, to_s },
            datasets: [Dataset::Markets, Dataset::Trades].into_iter().collect(),
            ..Options::default()
        })
        .await
        .unwrap();
    assert_eq!(summary.markets_complete, 10, "{summary:?}");
    assert_eq!(summary.gaps_declared, 3, "{summary:?}");
    assert_eq!(
        summary.markets_retried.len(),
        3,
        "the markets whose walk failed: {summary:?}"
    );

    let tokens: HashMap<String, Vec<String>> = records::<Market>(&names)
        .await
        .into_iter()
        .map(|market| {
            let tokens = market
                .tokens
                .into_iter()
                .map(|token| token.token_id)
                .collect();
            (market.condition_id, tokens)
        })
        .collect();
    let gaps: Vec<Continuity> = records(&names).await;
    assert_eq!(gaps.len(), 3, "{gaps:?}");
    let declared: HashSet<&String> = gaps.iter().map(|gap| &gap.continuity_id).collect();
    assert_eq!(declared.len(), 3, "one record per market");
    for gap in &gaps {
        assert_eq!(gap.kind, ContinuityKind::UpstreamGap);
        assert_eq!(gap.source, "collector");
        assert_eq!(
            (gap.gap_start_ms, gap.gap_end_ms),
            (from_s * 1000, Some(to_s * 1000 + 999)),
            "the unread window"
        );
        assert!(gap.reason.starts_with("walk_failed"), "{}", gap.reason);
        let market = tokens
            .iter()
            .find(|(condition_id, _)| gap.reason.contains(condition_id.as_str()))
            .map(|(_, tokens)| tokens)
            .unwrap();
        assert_eq!(&gap.token_ids, market);
    }
    let trades: Vec<Trade> = records(&names).await;
    let ours: HashSet<String> = trades.iter().map(|trade| trade.trade_id.clone()).collect();
    let truth: HashSet<String> = truth_trade_ids(&sim)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ours, truth, "the next round read them");
    assert_eq!(trades.len(), truth.len());
    sim.shutdown().await;
}
