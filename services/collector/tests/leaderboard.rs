//! Leaderboard snapshots: every (period, category, ordering) list the brief names, paged down
//! to the configured depth, equals the simulator's `/v1/leaderboard`; a second run within the
//! interval sends nothing (the snapshot checkpoint).

#![allow(clippy::unwrap_used)]

mod support;

use std::{collections::BTreeMap, time::Duration};

use polytape_collector::{CollectorTuning, Dataset, Mode, Options};
use polytape_model::LeaderboardEntry;
use polytape_polymarket::rest as parse;
use support::*;

const PERIODS: [&str; 4] = ["DAY", "WEEK", "MONTH", "ALL"];
const CATEGORIES: [&str; 10] = [
    "OVERALL",
    "POLITICS",
    "SPORTS",
    "CRYPTO",
    "CULTURE",
    "MENTIONS",
    "WEATHER",
    "ECONOMICS",
    "TECH",
    "FINANCE",
];
const ORDERS: [&str; 2] = ["PNL", "VOL"];
const DEPTH: u32 = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_equals_upstream_down_to_the_depth() {
    let window = Duration::from_secs(1);
    let sim = sim(window, "").await;
    let names = topics("collector_leaderboard").await;
    let tuning = CollectorTuning {
        leaderboard_depth: DEPTH,
        ..tuning(window)
    };
    let config = config(&sim, &names, tuning);
    let options = Options {
        mode: Mode::Backfill {
            from_s: EPOCH_MS / 1000 - 3_600,
            to_s: EPOCH_MS / 1000,
        },
        datasets: [Dataset::Leaderboard].into_iter().collect(),
        ..Options::default()
    };
    let collector = connected(&config).await;
    let summary = collector.run(options.clone()).await.unwrap();
    println!("{summary:?}");

    let entries: Vec<LeaderboardEntry> = records(&names).await;
    let snapshot_ms = entries[0].snapshot_ms;
    assert!(entries.iter().all(|entry| entry.snapshot_ms == snapshot_ms));
    let mut collected: BTreeMap<(String, String, String), Vec<LeaderboardEntry>> = BTreeMap::new();
    for entry in entries.clone() {
        collected
            .entry((
                entry.period.clone(),
                entry.category.clone(),
                entry.order_by.clone(),
            ))
            .or_default()
            .push(entry);
    }
    assert_eq!(
        collected.len(),
        PERIODS.len() * CATEGORIES.len() * ORDERS.len()
    );
    let mut expected_total = 0;
    for period in PERIODS {
        for category in CATEGORIES {
            for order_by in ORDERS {
                let list = parse::LeaderboardList {
                    period,
                    category,
                    order_by,
                };
                let mut expected = Vec::new();
                for offset in (0..DEPTH).step_by(50) {
                    let limit = 50.min(DEPTH - offset);
                    let rows = truth(
                        &sim,
                        &format!(
                            "/data/v1/leaderboard?timePeriod={period}&category={category}&orderBy={order_by}&limit={limit}&offset={offset}"
                        ),
                    )
                    .await;
                    for row in rows.as_array().unwrap() {
                        expected.push(parse::leaderboard_entry(row, list, snapshot_ms).unwrap());
                    }
                }
                let mut got = collected
                    .remove(&(period.to_owned(), category.to_owned(), order_by.to_owned()))
                    .unwrap();
                got.sort_by_key(|entry| entry.rank);
                assert_eq!(got, expected, "{period} {category} {order_by}");
                assert!(
                    got.iter()
                        .enumerate()
                        .all(|(index, entry)| entry.rank as usize == index + 1)
                );
                expected_total += expected.len();
            }
        }
    }
    assert_eq!(entries.len(), expected_total);
    assert_eq!(summary.leaderboard_entries as usize, expected_total);
    assert!(expected_total >= 80 * 50, "{expected_total} rows");
    println!("{expected_total} leaderboard rows in 80 lists equal upstream");

    // Within the interval, the checkpoint says the snapshot is recent: nothing is sent.
    let again = connected(&config).await;
    let summary = again.run(options).await.unwrap();
    assert_eq!(summary.leaderboard_entries, 0);
    assert_eq!(
        records::<LeaderboardEntry>(&names).await.len(),
        expected_total
    );
    sim.shutdown().await;
}
