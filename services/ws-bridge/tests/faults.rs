//! Fault runs against the simulator's WebSocket faults: disconnects, silent freezes (PONG still
//! answered), garbage frames, duplicated and reordered events, refused subscriptions. In every
//! run the bridge stays up; every truth event missing from the topics lies inside a declared
//! gap of its token; nothing is published twice or invented; every injected interruption has
//! a closed continuity record; and the books rebuilt from the topics equal the simulator's.

#![allow(clippy::unwrap_used)]

mod support;

use std::{collections::BTreeMap, time::Duration};

use polymarket_sim::RunningSim;
use polytape_model::{Continuity, ContinuityKind, DeadLetter, Topic, TopicNames};
use support::*;

/// What a fault run found, for the test's own assertions.
struct Outcome {
    gaps: Vec<Continuity>,
    missing_events: usize,
    truth_events: usize,
    connections: usize,
    paused_ms: i64,
}

/// Starts a paused simulator, follows `tokens_wanted` tokens, injects `faults` once every dump
/// is in, runs live for `seconds`, then checks the topics against the truth.
async fn fault_run(
    purpose: &str,
    faults: &str,
    tokens_wanted: usize,
    cap: u32,
    sim_cap: usize,
    seconds: u64,
    detect_freezes: bool,
) -> (RunningSim, TopicNames, Outcome) {
    let (sim, since_seq) = sim(200, 150.0, sim_cap).await;
    let open = open_markets(&sim).await;
    let followed = take_tokens(&open, tokens_wanted);
    let tokens: Vec<String> = followed
        .iter()
        .flat_map(|(_, tokens)| tokens.clone())
        .collect();
    let names = topics(purpose).await;
    let records: Vec<_> = followed
        .iter()
        .map(|(condition_id, tokens)| market_record(condition_id, tokens, false))
        .collect();
    publish_markets(&names, &records).await;
    let mut tuning = fast_tuning();
    if !detect_freezes {
        // No freeze injected: a loaded machine's scheduling hiccups must not look like one.
        tuning.staleness_min = Duration::from_secs(60);
        tuning.staleness_max = Duration::from_secs(60);
    }
    let bridge = RunningBridge::start(&config(&sim, &names, cap, tuning)).await;
    wait_for_records(
        &names,
        &[Topic::BookSnapshots],
        i64::try_from(tokens.len()).unwrap(),
        Duration::from_secs(120),
    )
    .await;
    if !faults.is_empty() {
        sim.add_faults(faults).unwrap();
    }
    sim.resume();
    for _ in 0..seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            bridge.is_running(),
            "the bridge stopped during the fault run"
        );
    }
    // Faults off, a little more live time so every broken token resyncs, then quiet.
    reqwest::Client::new()
        .delete(format!("{}/_sim/faults", sim.base_url()))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    sim.pause();
    // From here the simulator is silent, so the bridge may (rightly) call its connections
    // frozen: gaps detected from now on are artifacts of the pause, not of the faults.
    let paused_ms = polytape_model::now_ms();
    wait_until_quiet(&names, &DATA_TOPICS, Duration::from_millis(1500)).await;
    assert!(bridge.is_running(), "the bridge stopped");
    bridge.stop().await;
    let mut outcome = check_against_truth(&sim, &names, &tokens, since_seq).await;
    outcome.paused_ms = paused_ms;
    (sim, names, outcome)
}

/// The checks every fault run shares (see the module comment).
async fn check_against_truth(
    sim: &RunningSim,
    names: &TopicNames,
    tokens: &[String],
    since_seq: u64,
) -> Outcome {
    let check =
        support::check_against_truth(sim, names, tokens, since_seq, &TruthScope::everything())
            .await;
    Outcome {
        gaps: check.gaps,
        missing_events: check.missing_events,
        truth_events: check.truth_events,
        connections: check.connections,
        paused_ms: i64::MAX,
    }
}

fn closed_gaps(outcome: &Outcome, kind: ContinuityKind) -> Vec<&Continuity> {
    outcome
        .gaps
        .iter()
        .filter(|gap| gap.kind == kind && gap.reason != "bridge stopped")
        .filter(|gap| gap.gap_end_ms.is_some() || gap.detected_ms < outcome.paused_ms)
        .inspect(|gap| {
            let end = gap
                .gap_end_ms
                .unwrap_or_else(|| panic!("gap never closed: {gap:?}"));
            assert!(gap.gap_start_ms <= end, "{gap:?}");
            assert!(!gap.token_ids.is_empty());
            assert_eq!(gap.source, "ws-bridge");
        })
        .collect()
}

async fn ws_stats(sim: &RunningSim) -> serde_json::Value {
    get_json(sim, "/_sim/stats").await["ws"].clone()
}

fn fault_count(stats: &serde_json::Value, kind: &str) -> u64 {
    stats["faults"][kind].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_and_silent_freezes_are_declared_and_books_reconverge() {
    let (sim, _names, outcome) = fault_run(
        "ws_disconnect",
        "ws_disconnect:after=150,count=3;ws_freeze:after=400,count=1",
        120,
        30,
        500,
        15,
        true,
    )
    .await;
    let stats = ws_stats(&sim).await;
    let disconnects = fault_count(&stats, "ws_disconnect");
    let freezes = fault_count(&stats, "ws_freeze");
    assert_eq!(
        (disconnects, freezes),
        (3, 1),
        "faults not injected: {stats}"
    );
    let declared_disconnects = closed_gaps(&outcome, ContinuityKind::Disconnect);
    let declared_freezes = closed_gaps(&outcome, ContinuityKind::Freeze);
    assert!(
        declared_disconnects.len() as u64 >= disconnects,
        "{} disconnect gaps for {disconnects} disconnects",
        declared_disconnects.len()
    );
    assert!(
        !declared_freezes.is_empty(),
        "the silent freeze was not detected"
    );
    assert!(outcome.missing_events > 0, "the faults lost nothing?");
    assert!(outcome.connections >= 4);
    eprintln!(
        "disconnects: {} truth events, {} missing (all inside declared gaps), gaps: {} disconnect, {} freeze",
        outcome.truth_events,
        outcome.missing_events,
        declared_disconnects.len(),
        declared_freezes.len()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_duplicates_and_reordering_never_stop_the_bridge() {
    let (sim, names, outcome) = fault_run(
        "ws_garbage",
        // Reorders are limited: the simulator holds a reordered event until the connection's
        // next event, and one still held when the faults are removed is never sent at all.
        "ws_garbage:every=97,count=0;ws_duplicate:every=89,count=0;ws_reorder:every=61,count=12",
        120,
        30,
        500,
        15,
        false,
    )
    .await;
    let stats = ws_stats(&sim).await;
    let garbage = fault_count(&stats, "ws_garbage");
    let duplicates = fault_count(&stats, "ws_duplicate");
    let reorders = fault_count(&stats, "ws_reorder");
    assert!(
        garbage > 0 && duplicates > 0 && reorders > 0,
        "faults not injected: {stats}"
    );
    // Every garbage frame sent is in the DLQ with its raw text, once; nothing else is.
    let letters = records::<DeadLetter>(&names).await;
    let mut sent: Vec<String> = stats["garbage_frames"]
        .as_array()
        .expect("the simulator lists the garbage frames it sent")
        .iter()
        .map(|text| text.as_str().expect("a garbage frame's text").to_owned())
        .collect();
    let mut dead_lettered: Vec<String> = letters
        .iter()
        .inspect(|letter| assert_eq!(letter.source, "ws-bridge", "{letter:?}"))
        .map(|letter| String::from_utf8_lossy(&letter.payload).into_owned())
        .collect();
    sent.sort();
    dead_lettered.sort();
    assert_eq!(
        dead_lettered, sent,
        "dead letters vs the garbage frames sent"
    );
    assert_eq!(letters.len() as u64, garbage, "{letters:#?}");
    // Reordered events of one token were noticed and resynced; whatever they cost is declared.
    let resyncs = closed_gaps(&outcome, ContinuityKind::Resync);
    for kind in [ContinuityKind::Disconnect, ContinuityKind::Freeze] {
        assert!(
            closed_gaps(&outcome, kind).is_empty(),
            "no {kind:?} was injected"
        );
    }
    eprintln!(
        "garbage/duplicates/reorder: {garbage} garbage frames, {duplicates} duplicates, {reorders} reorders; {} truth events, {} missing (inside {} resync gaps)",
        outcome.truth_events,
        outcome.missing_events,
        resyncs.len()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subscription_lowers_the_cap_and_every_token_is_followed() {
    // The server accepts 25 assets per connection; the bridge is configured for 40.
    let (sim, _names, outcome) = fault_run("ws_refused", "", 120, 40, 25, 5, false).await;
    let stats = ws_stats(&sim).await;
    assert!(
        stats["subscriptions_refused"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    let refused = closed_gaps(&outcome, ContinuityKind::SubscriptionRefused);
    assert!(!refused.is_empty(), "the refusal was not declared");
    // 120 tokens at 25 per connection.
    assert!(
        outcome.connections >= 5,
        "{} connections",
        outcome.connections
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markets_are_added_and_removed_live_without_reconnecting() {
    let (sim, since_seq) = sim(200, 150.0, 500).await;
    let open = open_markets(&sim).await;
    let initial = take_tokens(&open, 40);
    let later: Vec<_> = open[initial.len()..initial.len() + 10].to_vec();
    let names = topics("ws_live_set").await;
    let records: Vec<_> = initial
        .iter()
        .map(|(condition_id, tokens)| market_record(condition_id, tokens, false))
        .collect();
    publish_markets(&names, &records).await;
    // Production staleness: the simulator is paused while the dumps arrive.
    let bridge = RunningBridge::start(&config(&sim, &names, 100, production_tuning())).await;
    let initial_tokens: usize = initial.iter().map(|(_, tokens)| tokens.len()).sum();
    wait_for_records(
        &names,
        &[Topic::BookSnapshots],
        i64::try_from(initial_tokens).unwrap(),
        Duration::from_secs(60),
    )
    .await;
    sim.resume();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Ten markets listed, the first one closed.
    let mut changes: Vec<_> = later
        .iter()
        .map(|(condition_id, tokens)| market_record(condition_id, tokens, false))
        .collect();
    let (closed_id, closed_tokens) = initial[0].clone();
    changes.push(market_record(&closed_id, &closed_tokens, true));
    publish_markets(&names, &changes).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    sim.pause();
    wait_until_quiet(&names, &DATA_TOPICS, Duration::from_millis(1500)).await;
    bridge.stop().await;

    let stats = ws_stats(&sim).await;
    assert_eq!(
        stats["connections"].as_u64(),
        Some(1),
        "a reconnect happened: {stats}"
    );
    let seen = seen_by_token(&names).await;
    // Added tokens: a dump, then exactly the truth's last events from the subscription on.
    for (_, tokens) in &later {
        for token in tokens {
            let records = &seen[token];
            let (dump, stream) = records.split_first().unwrap();
            assert!(dump.fingerprint.is_book());
            let truth: Vec<Fingerprint> = truth_events(&sim, token, since_seq)
                .await
                .into_iter()
                .map(|(_, print)| print)
                .collect();
            let got: Vec<&Fingerprint> = stream.iter().map(|record| &record.fingerprint).collect();
            assert!(got.len() <= truth.len());
            let tail: Vec<&Fingerprint> = truth[truth.len() - got.len()..].iter().collect();
            assert_eq!(
                got, tail,
                "{token}: not the truth's events since subscribing"
            );
        }
    }
    // Removed tokens: a prefix of the truth, then nothing.
    let mut removed_truth = 0;
    let mut removed_seen = 0;
    for token in &closed_tokens {
        let records = seen.get(token).cloned().unwrap_or_default();
        let stream: Vec<Fingerprint> = records
            .iter()
            .skip(1)
            .map(|record| record.fingerprint.clone())
            .collect();
        let truth: Vec<Fingerprint> = truth_events(&sim, token, since_seq)
            .await
            .into_iter()
            .map(|(_, print)| print)
            .collect();
        assert_eq!(stream, truth[..stream.len()], "{token}");
        removed_truth += truth.len();
        removed_seen += stream.len();
    }
    let gaps: BTreeMap<String, Continuity> = latest_gaps(continuity(&names).await)
        .into_iter()
        .filter(|gap| gap.reason != "bridge stopped")
        .map(|gap| (gap.continuity_id.clone(), gap))
        .collect();
    assert!(gaps.is_empty(), "{gaps:#?}");
    eprintln!(
        "live set: removed market's tokens saw {removed_seen} of {removed_truth} truth events"
    );
    sim.shutdown().await;
}
