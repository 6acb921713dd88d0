//! Restarts (issue #23). A bridge killed with SIGKILL loses what librdkafka had not got
//! acknowledged, and upstream goes on while no process reads: the next start declares, for
//! every token, a gap from the killed process's acknowledged watermark (its state topic)
//! until the token's fresh book. A bridge stopped gracefully leaves its stop gaps open: the
//! next start closes them with its fresh books. In both, every truth event missing from the
//! topics lies inside a declared gap of its token, and nothing stays open but the last stop's.

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use polymarket_sim::RunningSim;
use polytape_model::{BookSnapshot, Continuity, ContinuityKind, Topic, TopicNames};
use polytape_ws_bridge::BridgeTuning;
use support::*;

/// The instance part of a connection id (`<instance>-s<shard>-g<generation>`).
fn instance_of(connection_id: &str) -> &str {
    connection_id.split('-').next().unwrap_or_default()
}

/// Fast heartbeats, but no freeze detection: the simulator is paused at times.
fn tuning() -> BridgeTuning {
    BridgeTuning {
        staleness_min: Duration::from_secs(60),
        staleness_max: Duration::from_secs(60),
        ..fast_tuning()
    }
}

/// Publishes the followed markets; returns their tokens.
async fn follow(names: &TopicNames, markets: &[(String, Vec<String>)]) -> Vec<String> {
    let records: Vec<_> = markets
        .iter()
        .map(|(condition_id, tokens)| market_record(condition_id, tokens, false))
        .collect();
    publish_markets(names, &records).await;
    markets
        .iter()
        .flat_map(|(_, tokens)| tokens.clone())
        .collect()
}

/// Waits until the simulator has sent `events` more WebSocket events after `since_seq`.
async fn wait_for_upstream_events(sim: &RunningSim, token: &str, since_seq: u64, events: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while last_ws_seq(sim, token).await < since_seq + events {
        assert!(
            Instant::now() < deadline,
            "the simulator sent fewer than {events} events in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `topics` hold `more` records beyond what they hold now.
async fn wait_for_more_records(names: &TopicNames, more: i64) {
    let now = total_records_async(names, &DATA_TOPICS).await;
    wait_for_records(names, &DATA_TOPICS, now + more, Duration::from_secs(120)).await;
}

/// Waits until `done` holds for the latest record of every gap.
async fn wait_for_gaps(
    names: &TopicNames,
    what: &str,
    done: impl Fn(&[Continuity]) -> bool,
) -> Vec<Continuity> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let gaps = latest_gaps(continuity(names).await);
        if done(&gaps) {
            return gaps;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within 120 s; gaps: {gaps:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The first book each token got from a process other than `earlier`.
async fn first_fresh_books(
    names: &TopicNames,
    earlier: &BTreeSet<String>,
) -> std::collections::BTreeMap<String, i64> {
    let mut first = std::collections::BTreeMap::new();
    for (token, records) in seen_by_token(names).await {
        if let Some(book) = records.iter().find(|record| {
            record.book.is_some() && !earlier.contains(instance_of(&record.connection_id))
        }) {
            first.insert(token, book.timestamp_ms);
        }
    }
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_bridge_is_declared_by_the_next_start_until_fresh_books() {
    let (sim, since_seq) = sim(200, 150.0, 500).await;
    let followed = take_tokens(&open_markets(&sim).await, 40);
    let names = topics("ws_restart_kill").await;
    let tokens = follow(&names, &followed).await;
    let config = config(&sim, &names, 10, tuning());

    // The first process is the binary, killed with SIGKILL while the simulator is live.
    let process = start_binary(&config).await;
    wait_for_records(
        &names,
        &[Topic::BookSnapshots],
        i64::try_from(tokens.len()).unwrap(),
        Duration::from_secs(120),
    )
    .await;
    sim.resume();
    wait_for_more_records(&names, 200).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while bridge_state(&names)
        .await
        .run
        .is_none_or(|run| run.acked_upstream_ms.is_none())
    {
        assert!(
            Instant::now() < deadline,
            "no acknowledged watermark in the state topic"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_for_more_records(&names, 50).await;
    tokio::task::spawn_blocking(move || drop(process))
        .await
        .unwrap();
    let killed_seq = last_ws_seq(&sim, &tokens[0]).await;
    let killed = bridge_state(&names).await;
    let killed_run = killed.run.clone().unwrap();
    assert!(!killed_run.clean, "{killed_run:?}");
    let watermark = killed_run.acked_upstream_ms.unwrap();
    assert_eq!(killed.followed, tokens.iter().cloned().collect());
    let earlier: BTreeSet<String> = records::<BookSnapshot>(&names)
        .await
        .iter()
        .filter_map(|book| book.connection_id.as_deref())
        .map(|connection_id| instance_of(connection_id).to_owned())
        .collect();
    assert_eq!(earlier, BTreeSet::from([killed_run.instance.clone()]));
    let is_restart_gap = |gap: &Continuity| gap.reason.contains("unclean stop");
    assert!(
        !latest_gaps(continuity(&names).await)
            .iter()
            .any(is_restart_gap),
        "a first start declares nothing"
    );

    // Upstream goes on while nobody reads; one market closes meanwhile, so the next process
    // does not follow it (its last events died with the killed one or were never read).
    wait_for_upstream_events(&sim, &tokens[0], killed_seq, 300).await;
    let (closed_id, closed_tokens) = followed[0].clone();
    publish_markets(&names, &[market_record(&closed_id, &closed_tokens, true)]).await;
    let still_followed: Vec<String> = tokens
        .iter()
        .filter(|token| !closed_tokens.contains(token))
        .cloned()
        .collect();
    let restart_seq = last_ws_seq(&sim, &tokens[0]).await;

    let bridge = RunningBridge::start(&config).await;
    wait_for_gaps(&names, "every token declared and its gap closed", |gaps| {
        let restart: Vec<&Continuity> = gaps.iter().filter(|gap| is_restart_gap(gap)).collect();
        let declared: BTreeSet<&String> = restart.iter().flat_map(|gap| &gap.token_ids).collect();
        tokens.iter().all(|token| declared.contains(token))
            && restart.iter().all(|gap| gap.gap_end_ms.is_some())
    })
    .await;
    wait_for_more_records(&names, 100).await;
    sim.pause();
    wait_until_quiet(&names, &DATA_TOPICS, Duration::from_millis(1500)).await;
    bridge.stop().await;

    let gaps = latest_gaps(continuity(&names).await);
    let restart: Vec<&Continuity> = gaps.iter().filter(|gap| is_restart_gap(gap)).collect();
    for gap in &restart {
        assert_eq!(gap.kind, ContinuityKind::Disconnect, "{gap:?}");
        assert_eq!(gap.source, "ws-bridge");
        assert_eq!(
            gap.connection_id.as_deref(),
            Some(killed_run.instance.as_str())
        );
        assert_eq!(
            gap.gap_start_ms, watermark,
            "from the killed process's acknowledged watermark"
        );
        assert!(gap.gap_end_ms.unwrap() >= gap.gap_start_ms);
    }
    // Followed again: closed by the token's fresh book.
    let fresh = first_fresh_books(&names, &earlier).await;
    for token in &still_followed {
        let book_ms = fresh[token];
        assert!(
            restart
                .iter()
                .any(|gap| gap.token_ids.contains(token) && gap.gap_end_ms.unwrap() >= book_ms),
            "{token}: no restart gap reaches its fresh book at {book_ms}"
        );
    }
    // No longer followed: declared and closed at once.
    for token in &closed_tokens {
        assert!(
            !fresh.contains_key(token),
            "{token} is not followed any more"
        );
        assert!(restart.iter().any(|gap| gap.token_ids.contains(token)));
    }
    let open: Vec<&Continuity> = gaps.iter().filter(|gap| gap.gap_end_ms.is_none()).collect();
    assert!(
        open.iter().all(|gap| gap.reason == "bridge stopped"
            && gap
                .connection_id
                .as_deref()
                .is_some_and(|id| !earlier.contains(instance_of(id)))),
        "only the last stop's gaps stay open: {open:#?}"
    );

    // Against the truth: what the kill and the downtime lost is declared; the books rebuilt
    // from the new process's records equal the simulator's.
    let from_new_process = |record: &Seen| !earlier.contains(instance_of(&record.connection_id));
    let check = check_against_truth(
        &sim,
        &names,
        &still_followed,
        since_seq,
        &TruthScope {
            until_seq: None,
            rebuild_from: Some(&from_new_process),
        },
    )
    .await;
    assert!(
        check.missing_events > 0,
        "the kill and the downtime lost nothing?"
    );
    check_against_truth(
        &sim,
        &names,
        &closed_tokens,
        since_seq,
        &TruthScope {
            until_seq: Some(restart_seq),
            rebuild_from: None,
        },
    )
    .await;

    // The state after the clean stop: clean, only its stop gaps open, the dropped market's
    // tokens forgotten.
    let state = bridge_state(&names).await;
    let run = state.run.unwrap();
    assert!(run.clean, "{run:?}");
    assert_ne!(run.instance, killed_run.instance);
    assert!(run.acked_upstream_ms.unwrap() >= watermark);
    assert!(
        state
            .open_gaps
            .iter()
            .all(|gap| gap.reason == "bridge stopped"),
        "{:#?}",
        state.open_gaps
    );
    assert_eq!(state.followed, still_followed.iter().cloned().collect());
    eprintln!(
        "kill -9: watermark {watermark}, {} restart gaps, {} of {} truth events missing (all declared)",
        restart.len(),
        check.missing_events,
        check.truth_events
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_left_open_by_a_graceful_stop_are_closed_by_the_next_start() {
    let (sim, since_seq) = sim(200, 150.0, 500).await;
    let followed = take_tokens(&open_markets(&sim).await, 20);
    let names = topics("ws_restart_clean").await;
    let tokens = follow(&names, &followed).await;
    let config = config(&sim, &names, 10, tuning());

    let first = RunningBridge::start(&config).await;
    wait_for_records(
        &names,
        &[Topic::BookSnapshots],
        i64::try_from(tokens.len()).unwrap(),
        Duration::from_secs(120),
    )
    .await;
    sim.resume();
    wait_for_more_records(&names, 100).await;
    first.stop().await;
    let stopped_seq = last_ws_seq(&sim, &tokens[0]).await;

    let stopped = bridge_state(&names).await;
    let stopped_run = stopped.run.clone().unwrap();
    assert!(stopped_run.clean, "{stopped_run:?}");
    // (A record the shared broker refused would add a closed `OTHER` gap: not a stop gap.)
    let stop_gaps: Vec<Continuity> = latest_gaps(continuity(&names).await)
        .into_iter()
        .filter(|gap| gap.reason == "bridge stopped")
        .collect();
    assert!(!stop_gaps.is_empty());
    for gap in &stop_gaps {
        assert_eq!(gap.gap_end_ms, None, "{gap:?}");
    }
    let declared: BTreeSet<String> = stop_gaps
        .iter()
        .flat_map(|gap| gap.token_ids.clone())
        .collect();
    assert_eq!(declared, tokens.iter().cloned().collect());
    let ids = |gaps: &[Continuity]| -> BTreeSet<String> {
        gaps.iter().map(|gap| gap.continuity_id.clone()).collect()
    };
    assert_eq!(
        ids(&stopped.open_gaps),
        ids(&stop_gaps),
        "kept in the state"
    );

    // Upstream goes on while nobody reads.
    wait_for_upstream_events(&sim, &tokens[0], stopped_seq, 300).await;
    let earlier = BTreeSet::from([stopped_run.instance.clone()]);
    let second = RunningBridge::start(&config).await;
    let stop_ids = ids(&stop_gaps);
    wait_for_gaps(&names, "the stop gaps closed", |gaps| {
        gaps.iter()
            .filter(|gap| stop_ids.contains(&gap.continuity_id))
            .all(|gap| gap.gap_end_ms.is_some())
    })
    .await;
    wait_for_more_records(&names, 50).await;
    sim.pause();
    wait_until_quiet(&names, &DATA_TOPICS, Duration::from_millis(1500)).await;
    second.stop().await;

    let gaps = latest_gaps(continuity(&names).await);
    assert!(
        gaps.iter().all(|gap| !gap.reason.contains("unclean stop")),
        "a clean stop needs no restart gap"
    );
    let fresh = first_fresh_books(&names, &earlier).await;
    for opened in &stop_gaps {
        let closed = gaps
            .iter()
            .find(|gap| gap.continuity_id == opened.continuity_id)
            .unwrap();
        assert_eq!(closed.gap_start_ms, opened.gap_start_ms);
        assert!(closed.detected_ms > opened.detected_ms);
        let end = closed.gap_end_ms.unwrap();
        for token in &opened.token_ids {
            assert!(
                end >= fresh[token],
                "{token}: closed at {end}, before its fresh book at {}",
                fresh[token]
            );
        }
    }
    let from_new_process = |record: &Seen| !earlier.contains(instance_of(&record.connection_id));
    let check = check_against_truth(
        &sim,
        &names,
        &tokens,
        since_seq,
        &TruthScope {
            until_seq: None,
            rebuild_from: Some(&from_new_process),
        },
    )
    .await;
    assert!(check.missing_events > 0, "the downtime lost nothing?");

    let state = bridge_state(&names).await;
    assert!(state.run.unwrap().clean);
    let still_open = ids(&state.open_gaps);
    assert!(
        still_open.is_disjoint(&stop_ids),
        "closed gaps are deleted from the state"
    );
    assert!(
        state
            .open_gaps
            .iter()
            .all(|gap| gap.reason == "bridge stopped")
    );
    eprintln!(
        "graceful stop: {} stop gaps closed by the next start; {} of {} truth events missing (all declared)",
        stop_gaps.len(),
        check.missing_events,
        check.truth_events
    );
    sim.shutdown().await;
}
