//! Restart safety: the same inputs go to two isolated deployments. One builder runs
//! uninterrupted; the other is killed with SIGKILL (kill -9) at 10 random points while the
//! inputs are still being produced, and restarted each time. The final candles (latest version
//! per key, versions included), the final book state of every token, the continuity records
//! and the dead letters must be identical.
//! Run through `cargo xtask test` (or with `cargo xtask stack up` running).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use polytape_model::{BookState, Candle, Continuity, DeadLetter, TopicNames};
use polytape_test_support::stack::isolated_topics;
use rand::{Rng as _, SeedableRng as _};

struct Final {
    candles: BTreeMap<String, Candle>,
    books: BTreeMap<String, BookState>,
    gaps: BTreeMap<String, Continuity>,
    /// (input partition, offset, reason): the ids differ, as they include the topic prefix.
    dead: BTreeSet<(i32, i64, String)>,
}

async fn final_outputs(names: &TopicNames) -> Final {
    let candles = support::latest_candles(support::positioned_records(names).await);
    let states: Vec<(i32, i64, BookState)> = support::positioned_records(names).await;
    // The last regular (top-N) state per token; full-depth records are periodic extras.
    let books = support::last_book_states(
        states
            .into_iter()
            .filter(|(_, _, state)| !state.full_depth)
            .collect(),
    );
    let mut gaps = BTreeMap::new();
    for (_, _, gap) in support::positioned_records::<Continuity>(names).await {
        // What ClickHouse keeps: the highest detected_ms per id.
        let keep = gaps
            .get(&gap.continuity_id)
            .is_none_or(|kept: &Continuity| gap.detected_ms >= kept.detected_ms);
        if keep {
            gaps.insert(gap.continuity_id.clone(), gap);
        }
    }
    let dead = support::positioned_records::<DeadLetter>(names)
        .await
        .into_iter()
        .map(|(_, _, letter)| {
            (
                letter.partition.unwrap(),
                letter.offset.unwrap(),
                letter.error,
            )
        })
        .collect();
    Final {
        candles,
        books,
        gaps,
        dead,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_ten_random_points_changes_nothing() {
    let mut trades = support::trade_history(11, 12, 40_000, 1_773_957_600_000, 20 * 3_600_000);
    // The history's hour-late fills are corrections of final candles; a few copies moved 26 h
    // back, delivered last, lie beyond the 24 h correction horizon: the dead letters.
    let beyond_horizon: Vec<_> = trades
        .trades
        .iter()
        .step_by(997)
        .map(|trade| {
            let mut old = trade.clone();
            old.trade_id = format!("{}-beyond-horizon", trade.trade_id);
            old.timestamp_ms -= 26 * 3_600_000;
            old
        })
        .collect();
    trades.trades.extend(beyond_horizon);
    let books = support::book_history(11, 16, 20_000, 1_773_957_600_000);

    // Uninterrupted.
    let calm = isolated_topics("restart_calm");
    support::create_topics(&calm).await;
    support::produce(&calm, &trades.trades).await;
    support::produce(&calm, &books.snapshots).await;
    support::produce(&calm, &books.changes).await;
    let builder = support::start_builder(&calm);
    support::wait_caught_up(&calm, Duration::from_secs(600));
    assert_eq!(builder.terminate(Duration::from_secs(30)), Some(0));
    let expected = final_outputs(&calm).await;

    // Killed ten times while the inputs arrive in 20 slices.
    let killed = isolated_topics("restart_killed");
    support::create_topics(&killed).await;
    let producing = {
        let killed = killed.clone();
        let trades = trades.trades.clone();
        // Book events arrive as upstream emits them: in event-time order across both topics.
        let mut book_events: Vec<(i64, u8, usize)> = books
            .snapshots
            .iter()
            .enumerate()
            .map(|(index, snapshot)| (snapshot.timestamp_ms, 0, index))
            .chain(
                books
                    .changes
                    .iter()
                    .enumerate()
                    .map(|(index, change)| (change.timestamp_ms, 1, index)),
            )
            .collect();
        book_events.sort();
        let (snapshots, changes) = (books.snapshots.clone(), books.changes.clone());
        tokio::spawn(async move {
            let slices = 20;
            for slice in 0..slices {
                let part =
                    |length: usize| (length * slice / slices)..(length * (slice + 1) / slices);
                support::produce(&killed, &trades[part(trades.len())]).await;
                for run in
                    book_events[part(book_events.len())].chunk_by(|left, right| left.1 == right.1)
                {
                    if run[0].1 == 0 {
                        let records: Vec<_> = run
                            .iter()
                            .map(|(_, _, index)| snapshots[*index].clone())
                            .collect();
                        support::produce(&killed, &records).await;
                    } else {
                        let records: Vec<_> = run
                            .iter()
                            .map(|(_, _, index)| changes[*index].clone())
                            .collect();
                        support::produce(&killed, &records).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        })
    };
    // The newest checkpoint's generation (the topic is compacted: older manifests may be gone,
    // the newest never is).
    let newest_generation = || {
        let killed = killed.clone();
        async move {
            tokio::task::spawn_blocking(move || support::checkpoint_generations(&killed))
                .await
                .unwrap()
                .last()
                .copied()
        }
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(rand::random());
    let mut builder = support::start_builder(&killed);
    let mut newest_before_kills = Vec::new();
    for kill in 0..10 {
        // The builder checkpoints every 5 s: some instances die before their first checkpoint,
        // others after one or more (and some, by chance, while writing one).
        let after = Duration::from_millis(rng.random_range(500..9_000));
        tokio::time::sleep(after).await;
        newest_before_kills.push(newest_generation().await);
        drop(builder); // SIGKILL: no drain, no final checkpoint, no commit
        println!("kill -9 #{} after {after:?}", kill + 1);
        builder = support::start_builder(&killed);
    }
    producing.await.unwrap();
    support::wait_caught_up(&killed, Duration::from_secs(600));
    assert_eq!(builder.terminate(Duration::from_secs(30)), Some(0));
    let got = final_outputs(&killed).await;
    // Every instance resumed from its predecessor's last checkpoint: the newest generation,
    // read before every kill and at the end, never goes back (an instance that started from
    // nothing would begin again at 0, and it lives at most 9 s: two checkpoints).
    newest_before_kills.push(newest_generation().await);
    let generations: Vec<u64> = newest_before_kills.iter().flatten().copied().collect();
    assert!(
        generations.windows(2).all(|pair| pair[0] <= pair[1]),
        "newest generation before each kill and at the end: {newest_before_kills:?}"
    );
    assert!(
        generations.last().is_some_and(|last| *last >= 5),
        "newest generation before each kill and at the end: {newest_before_kills:?}"
    );

    assert!(
        expected.candles.len() > 10_000,
        "candles: {}",
        expected.candles.len()
    );
    assert_eq!(got.candles.len(), expected.candles.len(), "candle keys");
    for (key, candle) in &expected.candles {
        assert_eq!(got.candles.get(key), Some(candle), "candle {key}");
    }
    assert_eq!(got.books.len(), expected.books.len());
    for (token, state) in &expected.books {
        assert_eq!(got.books.get(token), Some(state), "book state of {token}");
    }
    assert_eq!(got.gaps, expected.gaps, "continuity records");
    // One dead letter per fill beyond the horizon (and possibly other rejections).
    assert!(
        expected.dead.len() >= 40,
        "dead letters: {}",
        expected.dead.len()
    );
    assert_eq!(got.dead, expected.dead, "dead letters");
    println!(
        "restart: {} candles, {} book states, {} gaps, {} dead letters identical after 10 kills; checkpoint generations {generations:?}",
        expected.candles.len(),
        expected.books.len(),
        expected.gaps.len(),
        expected.dead.len()
    );
}
