//! The signals service against the stack: a world with planted signals (see
//! `support::world`) goes to isolated topics, and the service must find every planted signal,
//! with its window bounds and inputs, and nothing else; killed with SIGKILL at random points
//! while the world arrives, it must end with the same signals (after FINAL) as a run that was
//! never interrupted. Run through `cargo xtask test` (or with `cargo xtask stack up` running).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::{collections::BTreeMap, time::Duration};

use polytape_model::{DeadLetter, Signal, Topic, TopicNames};
use polytape_test_support::stack::ensured_isolated_topics;
use rand::{Rng as _, SeedableRng as _};

use support::{Planted, World};

async fn produce_judged(names: &TopicNames, world: &World) {
    support::produce(names, &world.snapshots).await;
    support::produce(names, &world.changes).await;
    support::produce(names, &world.trades).await;
}

/// Every planted signal, found exactly once, closed, with its bounds and inputs; and nothing
/// else.
fn assert_found_exactly(planted: &[Planted], found: &BTreeMap<String, Signal>) {
    let mut unexpected: Vec<&Signal> = Vec::new();
    let mut matched = vec![0; planted.len()];
    for signal in found.values() {
        let position = planted.iter().position(|planted| {
            planted.kind == signal.kind
                && planted.subject == signal.subject
                && planted.window_start_ms == signal.window_start_ms
        });
        match position {
            Some(index) => {
                matched[index] += 1;
                let expected = &planted[index];
                assert_eq!(
                    signal.window_end_ms,
                    Some(expected.window_end_ms),
                    "window end of {expected:?}"
                );
                for (name, value) in &expected.inputs {
                    assert_eq!(
                        signal.input(name),
                        Some(value.as_str()),
                        "input {name} of {expected:?} in {signal:?}"
                    );
                }
            }
            None => unexpected.push(signal),
        }
    }
    assert!(
        unexpected.is_empty(),
        "signals nobody planted: {unexpected:#?}"
    );
    for (planted, count) in planted.iter().zip(&matched) {
        assert_eq!(*count, 1, "found {count} times: {planted:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_every_planted_signal_with_its_inputs_and_nothing_else() {
    let world = support::world(20, 4_000, 60, 3);
    let names = ensured_isolated_topics("signals_planted").await;
    support::produce_reference(&names, &world).await;
    produce_judged(&names, &world).await;
    // Bad input among it: a whale fill stamped an hour after it was published. Judged, it
    // would be a signal nobody planted (and make every later fill of its token look late).
    let future = support::whale_from_the_future(&world);
    support::produce(&names, std::slice::from_ref(&future)).await;
    let service = support::start_service(&names);
    support::wait_caught_up(&names, &service, Duration::from_secs(300));
    assert_eq!(service.terminate(Duration::from_secs(30)), Some(0));
    let found = support::final_signals(&names).await;
    assert_found_exactly(&world.planted, &found);
    // The inputs' dead letters (alert rules live in the stack's shared database, so a demo
    // run on this stack can leave rules whose alerts are dead-lettered here too).
    let dead: Vec<DeadLetter> = polytape_test_support::topic::records::<DeadLetter>(&names)
        .await
        .into_iter()
        .filter(|letter| {
            letter
                .origin
                .starts_with(&format!("{}/", names.name(Topic::Trades)))
        })
        .collect();
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert!(
        dead[0].error.contains("after it was published"),
        "{}",
        dead[0].error
    );
    let payload = String::from_utf8_lossy(&dead[0].payload);
    assert!(payload.contains(&future.trade_id), "{payload}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_changes_no_signal() {
    let world = support::world(40, 40_000, 240, 20);

    // Uninterrupted.
    let calm = ensured_isolated_topics("signals_calm").await;
    support::produce_reference(&calm, &world).await;
    produce_judged(&calm, &world).await;
    let service = support::start_service(&calm);
    support::wait_caught_up(&calm, &service, Duration::from_secs(600));
    assert_eq!(service.terminate(Duration::from_secs(30)), Some(0));
    let expected = support::final_signals(&calm).await;
    assert_found_exactly(&world.planted, &expected);
    assert_eq!(expected.len(), 80);

    // Killed at random points while the books and trades arrive in 12 slices of event time.
    let killed = ensured_isolated_topics("signals_killed").await;
    support::produce_reference(&killed, &world).await;
    let producing = {
        let killed = killed.clone();
        let (snapshots, changes, trades) = (
            world.snapshots.clone(),
            world.changes.clone(),
            world.trades.clone(),
        );
        tokio::spawn(async move {
            let first_ms = trades.first().map_or(0, |trade| trade.timestamp_ms);
            let last_ms = trades.last().map_or(0, |trade| trade.timestamp_ms) + 1;
            let slices = 12;
            support::produce(&killed, &snapshots).await;
            for slice in 0..slices {
                let from = first_ms + (last_ms - first_ms) * slice / slices;
                let until = first_ms + (last_ms - first_ms) * (slice + 1) / slices;
                let within = |at: i64| at >= from && at < until;
                let slice_changes: Vec<_> = changes
                    .iter()
                    .filter(|change| within(change.timestamp_ms))
                    .cloned()
                    .collect();
                let slice_trades: Vec<_> = trades
                    .iter()
                    .filter(|trade| within(trade.timestamp_ms))
                    .cloned()
                    .collect();
                support::produce(&killed, &slice_changes).await;
                support::produce(&killed, &slice_trades).await;
                tokio::time::sleep(Duration::from_millis(600)).await;
            }
        })
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(rand::random());
    let mut service = support::start_service(&killed);
    for kill in 0..6 {
        // The service checkpoints every second: some instances die before their first
        // checkpoint, others after several (and some while writing one).
        let after = Duration::from_millis(rng.random_range(300..3_000));
        tokio::time::sleep(after).await;
        drop(service); // SIGKILL: no drain, no final checkpoint, no commit
        println!("kill -9 #{} after {after:?}", kill + 1);
        service = support::start_service(&killed);
    }
    producing.await.unwrap();
    support::wait_caught_up(&killed, &service, Duration::from_secs(600));
    assert_eq!(service.terminate(Duration::from_secs(30)), Some(0));
    let got = support::final_signals(&killed).await;
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "signal ids"
    );
    for (id, signal) in &expected {
        assert_eq!(got.get(id), Some(signal), "signal {id}");
    }
}
