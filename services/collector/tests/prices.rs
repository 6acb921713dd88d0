//! Price history: every point of `/prices-history` for the selected markets' tokens, once;
//! a second run over the checkpoints sends nothing.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use polytape_collector::{Dataset, Mode, Options};
use polytape_model::{Market, PricePoint};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_history_points_arrive_once() {
    let window = Duration::from_secs(1);
    let sim = sim(window, "").await;
    let names = topics("collector_prices").await;
    let config = config(&sim, &names, tuning(window));
    let from_s = EPOCH_MS / 1000 - i64::from(HISTORY_DAYS) * 86_400;
    let to_s = EPOCH_MS / 1000;
    let options = Options {
        mode: Mode::Backfill { from_s, to_s },
        datasets: [Dataset::Markets, Dataset::PriceHistory]
            .into_iter()
            .collect(),
        limit: Some(5),
        ..Options::default()
    };
    let collector = connected(&config).await;
    let summary = collector.run(options.clone()).await.unwrap();
    println!("{summary:?}");

    let markets: Vec<Market> = records(&names).await;
    let mut selected: Vec<&Market> = markets.iter().collect();
    selected.sort_by(|left, right| left.condition_id.cmp(&right.condition_id));
    let mut expected = 0;
    for market in selected.iter().take(5) {
        for token in &market.tokens {
            let history = truth(
                &sim,
                &format!(
                    "/clob/prices-history?market={}&startTs={from_s}&endTs={to_s}&fidelity=60",
                    token.token_id
                ),
            )
            .await;
            expected += history["history"].as_array().unwrap().len();
        }
    }
    let points: Vec<PricePoint> = records(&names).await;
    assert!(expected > 0);
    assert_eq!(points.len(), expected);
    assert_eq!(summary.price_points as usize, expected);

    let again = connected(&config).await;
    let summary = again.run(options).await.unwrap();
    assert_eq!(summary.price_points, 0);
    sim.shutdown().await;
}
