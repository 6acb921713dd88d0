//! The whole pipeline under a simulated world: the fidelity run and the fault runs. Each test
//! has its own world, topics, database and five service processes, and ends with the same
//! fidelity checks (see `verify`). Scale knobs: `POLYTAPE_E2E_*` (tools/e2e/README.md).
//! Run through `cargo xtask test` (it builds the binaries and brings up the stack).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::time::Duration;

use polytape_e2e::{
    GapRow, Pipeline, Scale, Service, Wiring, check_book_at, check_candles, check_dead_letters,
    check_markets_and_events, check_planted_signals, check_trades, check_ws_tables, declared_gaps,
    first_ws_book_times, instant_in, uncovered_spans,
};
use rand::{Rng as _, SeedableRng as _, seq::SliceRandom as _};

/// One world at a time. A world is five service processes and the simulator, and every world
/// shares the test stack's broker, which alone keeps about one of CI's two cores busy during
/// these runs. Two worlds at once (the test harness's default on 2 cores) starved the
/// collectors: a 300-market backfill was still walking after the 300 s the checks allow, with
/// nothing lost or doubled (CI runs of 2026-12-06). One at a time, each run has the machine the
/// checks' deadlines assume, and the suite takes about as long.
static ONE_WORLD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a run may show besides exact data.
struct Expect {
    /// Each trade row stored once even without FINAL (runs without restarts).
    raw_exactly_once: bool,
    /// Whether the run may declare continuity gaps (faults that remove WS data upstream).
    gaps_allowed: bool,
}

/// Pauses the world and checks, against the simulator's truth: every trade exactly once,
/// markets and events, candles = SQL oracle, every WebSocket table event by event, dead letters
/// = the injected bad rows (each once, nothing else), the API's order book at 20 random
/// instants, and the declared gaps.
/// Returns the moment the world was paused.
async fn verify(pipeline: &Pipeline, expect: Expect) -> i64 {
    let paused_ms = pipeline.pause_world().await;
    pipeline.assert_all_alive();
    pipeline
        .eventually("trades exactly once", Duration::from_secs(300), || {
            check_trades(pipeline, expect.raw_exactly_once)
        })
        .await;
    pipeline
        .eventually(
            "markets and events = truth",
            Duration::from_secs(120),
            || check_markets_and_events(pipeline),
        )
        .await;
    pipeline
        .eventually("candles = SQL oracle", Duration::from_secs(180), || {
            check_candles(pipeline)
        })
        .await;
    pipeline
        .eventually(
            "every WebSocket event once, or inside a declared gap",
            Duration::from_secs(120),
            || check_ws_tables(pipeline, paused_ms),
        )
        .await;
    pipeline
        .eventually(
            "dead letters = the injected bad inputs, each once",
            Duration::from_secs(120),
            || check_dead_letters(pipeline),
        )
        .await;
    verify_books(pipeline, paused_ms, expect.gaps_allowed).await;
    paused_ms
}

/// Every gap declared in a run whose only faults were kills is explained by one: a bridge
/// gap spans an instant the bridge was killed at (from the last upstream time it published
/// to its first fresh book after the restart); book mismatches are checked against those
/// (see `verify_books`); no other service may declare anything, and each gap is stored once.
/// (Dead letters are checked in `verify`: exactly the poisoned rows, each once.)
/// (A freeze declared once the world is paused is no fault either: see `is_pause_freeze`.)
async fn assert_gaps_explained_by_kills(
    pipeline: &Pipeline,
    bridge_kills_ms: &[i64],
    paused_ms: i64,
) {
    let gaps: Vec<GapRow> = declared_gaps(pipeline).await.unwrap();
    let unexplained: Vec<&GapRow> = gaps
        .iter()
        .filter(|gap| gap.kind != "BOOK_MISMATCH")
        .filter(|gap| !is_pause_freeze(gap, paused_ms))
        .filter(|gap| {
            gap.source != "ws-bridge"
                || !bridge_kills_ms.iter().any(|killed_ms| {
                    gap.gap_start <= *killed_ms && gap.gap_end.is_none_or(|end| end >= *killed_ms)
                })
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "{} gap(s) that no kill of the bridge (at {bridge_kills_ms:?}) explains: {unexplained:?}",
        unexplained.len()
    );
    let copies: Vec<(String, u64)> = pipeline
        .database
        .client
        .query("SELECT continuity_id, count() FROM continuity FINAL GROUP BY continuity_id HAVING count() > 1")
        .fetch_all()
        .await
        .unwrap();
    assert!(
        copies.is_empty(),
        "continuity records stored more than once: {copies:?}"
    );
    eprintln!(
        "[e2e] {} gaps, each explained by one of {} bridge kills or a mismatch it caused",
        gaps.len(),
        bridge_kills_ms.len()
    );
}

/// The last upstream event before the pause is at most this much older than the pause.
const BEFORE_PAUSE_MS: i64 = 2_000;

/// A gap that is not a fault: once the world is paused for the checks, upstream sends nothing,
/// and a bridge that hears nothing for its staleness window (30 s; the checks take longer than
/// that on a loaded machine) rightly declares a freeze from the last upstream time it read —
/// just before the pause — on. Such a gap hides nothing: the world sent nothing after it.
fn is_pause_freeze(gap: &GapRow, paused_ms: i64) -> bool {
    gap.source == "ws-bridge"
        && gap.kind == "FREEZE"
        && gap.gap_start >= paused_ms - BEFORE_PAUSE_MS
}

async fn verify_books(pipeline: &Pipeline, paused_ms: i64, gaps_allowed: bool) {
    let gaps = declared_gaps(pipeline).await.unwrap();
    if !gaps_allowed {
        let faults: Vec<&GapRow> = gaps
            .iter()
            .filter(|gap| !is_pause_freeze(gap, paused_ms))
            .collect();
        assert!(
            faults.is_empty(),
            "a run without upstream faults declared gaps: {faults:?}"
        );
    }
    let mut kinds: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for gap in &gaps {
        *kinds.entry(gap.kind.as_str()).or_default() += 1;
    }
    eprintln!("[e2e] declared gaps by kind: {kinds:?}");
    pipeline.figures.lock().unwrap().gaps = kinds
        .iter()
        .map(|(kind, count)| ((*kind).to_owned(), *count as u64))
        .collect();
    // A book mismatch means our books differed from upstream's: allowed only where data was
    // lost upstream of the candle builder, i.e. where the bridge declared a gap of its own
    // (disconnect, freeze, restart…) for that token, starting within [the cause's start, its
    // end + 60 s] (the candle builder reads the two book topics independently). One with no
    // such cause is a wrong book of ours.
    let unexplained: Vec<_> = gaps
        .iter()
        .filter(|gap| gap.kind == "BOOK_MISMATCH")
        .filter(|mismatch| {
            !gaps.iter().any(|cause| {
                cause.source == "ws-bridge"
                    && cause
                        .token_ids
                        .iter()
                        .any(|token| mismatch.token_ids.contains(token))
                    && cause.gap_start <= mismatch.gap_start
                    && cause
                        .gap_end
                        .is_none_or(|end| end + 60_000 >= mismatch.gap_start)
            })
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "{} BOOK_MISMATCH gap(s) that no other declared gap of their tokens explains: {unexplained:?}",
        unexplained.len()
    );
    let first_ws_books = first_ws_book_times(pipeline).await;
    assert!(
        !first_ws_books.is_empty(),
        "no WebSocket book snapshot reached ClickHouse"
    );
    let mut random = rand::rngs::StdRng::seed_from_u64(paused_ms as u64);
    let mut candidates = first_ws_books.clone();
    candidates.shuffle(&mut random);
    let mut compared = 0;
    let mut skipped_in_gaps = 0;
    for (token_id, first_ms) in candidates.iter().cycle().take(200) {
        if compared == 20 {
            break;
        }
        // Instants before any gap the pause itself may cause (see `is_pause_freeze`).
        let latest_ms = paused_ms - BEFORE_PAUSE_MS;
        let start = first_ms + 1_000;
        if start >= latest_ms {
            continue;
        }
        // Drawn outside the token's declared gaps: after several bridge kills on a loaded
        // machine, the gaps can cover most of the run, and drawing over the whole run and
        // skipping what they cover found too few instants to compare (13 of 20 in 200 draws).
        let spans = uncovered_spans(&gaps, token_id, start, latest_ms);
        let Some(at_ms) = instant_in(&spans, &mut random) else {
            skipped_in_gaps += 1;
            continue;
        };
        match check_book_at(pipeline, token_id, at_ms).await {
            Ok(false) => compared += 1,
            Ok(true) if gaps_allowed => skipped_in_gaps += 1,
            Ok(true) => panic!(
                "the API flags {token_id} at {at_ms} as covered by a gap in a run without gaps"
            ),
            Err(problem) => panic!("{problem}"),
        }
    }
    assert_eq!(
        compared, 20,
        "could not find 20 instants outside declared gaps ({skipped_in_gaps} skipped)"
    );
    // A market resolved during the live phase has no book after its resolution, upstream and
    // in the API alike.
    let markets = pipeline.truth("/_sim/truth/markets").await;
    let resolved_live = markets.as_array().unwrap().iter().find(|market| {
        market["closed"].as_bool() == Some(true)
            && market["closed_ms"]
                .as_i64()
                .is_some_and(|closed| closed > pipeline.live_started_ms && closed < paused_ms)
    });
    if let Some(market) = resolved_live {
        let token_id = market["token_ids"][0].as_str().unwrap();
        let after = market["closed_ms"].as_i64().unwrap() + 1_000;
        match check_book_at(pipeline, token_id, after.min(paused_ms)).await {
            Ok(_) => eprintln!("[e2e] no order book after the resolution of {token_id}: ok"),
            Err(problem) => panic!("{problem}"),
        }
    }
    eprintln!(
        "[e2e] order book via the API = truth at {compared} random instants outside declared gaps ({skipped_in_gaps} draws skipped: a token with no time outside its gaps, or an instant the API flags)"
    );
}

/// Lets the world run live for the scale's duration, checking that no service died.
async fn run_live(pipeline: &Pipeline, duration: Duration) {
    let step = Duration::from_secs(5);
    let mut elapsed = Duration::ZERO;
    while elapsed < duration {
        tokio::time::sleep(step).await;
        elapsed += step;
        pipeline.assert_all_alive();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_world_through_all_six_services_is_reproduced_exactly() {
    let _world = ONE_WORLD_AT_A_TIME.lock().await;
    let scale = Scale::from_env();
    // Signal scenarios planted once, 30 s into the live phase (a round ends within 35 s): the
    // signals service must find each, and raise nothing the rules do not raise on the tape.
    let pipeline = Pipeline::start_wired(
        "e2e_fidelity",
        scale.clone(),
        Wiring {
            signals: true,
            ..Wiring::default()
        },
        |config| config.scenario_every = Some(Duration::from_secs(3_600)),
    )
    .await;
    run_live(&pipeline, scale.live.max(Duration::from_secs(75))).await;
    verify(
        &pipeline,
        Expect {
            raw_exactly_once: true,
            gaps_allowed: false,
        },
    )
    .await;
    pipeline
        .eventually(
            "signals = the planted scenarios' (recall 100 %), nothing else",
            Duration::from_secs(180),
            || check_planted_signals(&pipeline),
        )
        .await;
    pipeline.report("fidelity", "none", "no fault");
    pipeline.shut_down().await;
}

/// Bad input the kill matrix carries: the simulator serves the fills of every 150th
/// transaction with an impossible price on every read of `/data/trades`.
const POISONED_ROWS: &str = "poison@/data/trades:every=150";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_each_service_at_random_points_loses_and_duplicates_nothing() {
    let _world = ONE_WORLD_AT_A_TIME.lock().await;
    let scale = Scale::from_env();
    let kills_per_service = polytape_e2e::knob("POLYTAPE_E2E_KILLS", 5_u32);
    // Bad input throughout: the fills of one transaction in 150 are served broken on every
    // read (history and live), so the collector dead-letters them while being killed, and
    // re-reads them after each restart; `dead_letters` must still hold each exactly once.
    let pipeline = Pipeline::start("e2e_kill9", scale.clone(), |config| {
        config.faults = polymarket_sim::parse_fault_spec(POISONED_ROWS).unwrap();
    })
    .await;
    let seed = polytape_model::now_ms() as u64;
    eprintln!("[e2e] kill matrix: {kills_per_service} kill -9 per service, seed {seed}");
    let mut random = rand::rngs::StdRng::seed_from_u64(seed);
    let mut bridge_kills_ms = Vec::new();
    for round in 0..kills_per_service {
        let mut order = Service::PIPELINE.to_vec();
        order.shuffle(&mut random);
        for service in order {
            // Killed once the service has made a random amount of progress since it (re)started
            // (records published, rows inserted, candles produced), so kills land mid-batch,
            // mid-walk and mid-stream rather than at idle moments; the API has no progress of
            // its own and is killed after a random pause.
            let progress = pipeline
                .kill9_after_progress(service, random.random_range(1..400), &mut random)
                .await;
            if service == Service::WsBridge {
                bridge_kills_ms.push(polytape_model::now_ms());
            }
            eprintln!(
                "[e2e] round {round}: kill -9 {} after {progress}",
                service.binary()
            );
            tokio::time::sleep(Duration::from_millis(random.random_range(200..2_000))).await;
            let restarting = std::time::Instant::now();
            pipeline.restart(service).await;
            pipeline.record_recovery(
                format!("{} restarted → ready", service.binary()),
                restarting.elapsed(),
            );
            pipeline.assert_all_alive();
        }
    }
    run_live(&pipeline, Duration::from_secs(10)).await;
    let paused_ms = verify(
        &pipeline,
        Expect {
            // Re-sends after a kill are exact copies (same id), deduplicated by FINAL.
            raw_exactly_once: false,
            // A killed bridge misses live events: it must declare them.
            gaps_allowed: true,
        },
    )
    .await;
    assert_gaps_explained_by_kills(&pipeline, &bridge_kills_ms, paused_ms).await;
    let poisoned_served =
        pipeline.truth("/_sim/stats").await["endpoints"]["/data/trades"]["faults"]["poison"]
            .as_u64()
            .unwrap_or(0);
    pipeline.report(
        "kill_matrix",
        "kill -9 at progress-triggered points; poisoned trades rows",
        &format!(
            "{} kills ({kills_per_service} per service); {poisoned_served} poisoned rows served",
            kills_per_service as usize * Service::PIPELINE.len()
        ),
    );
    pipeline.shut_down().await;
}

/// REST faults: 5xx bursts, timeouts, malformed bodies, schema drift, unknown fields.
const REST_FAULTS: &str = "error@/data/trades:status=503,count=5;\
     error@/gamma:status=502,count=3;\
     timeout@/clob/markets:delay=3s,count=2;\
     malformed@/data/trades:count=2;\
     drift@/data/trades:field=price,count=3;\
     extra_field@/gamma/events:count=2";

/// WebSocket faults: disconnects, a 30 s silent freeze, garbage frames, duplicates, reordering.
const WS_FAULTS: &str = "ws_disconnect:after=300,count=2;\
     ws_freeze:after=150,duration=30s,count=1;\
     ws_garbage:every=250,count=5;\
     ws_duplicate:every=150,count=10;\
     ws_reorder:every=170,count=10";

/// Runs a world with `faults` injected from the start, then the fidelity checks; with WebSocket
/// faults, also checks that every injected interruption is declared, by kind.
async fn run_with_faults(purpose: &str, faults: &str, websocket_faults: bool) {
    let scale = Scale::from_env();
    // The bridge detects a silent freeze after its staleness window (30 s at least by default);
    // a shorter window here lets a 30 s freeze be detected and declared. A freeze shorter than
    // the window is undetectable by timing (see services/ws-bridge/README.md).
    // Only where WebSocket faults are injected: with REST faults alone no gap may be declared,
    // and a 5 s window would call a shard's quiet spell on a loaded 2-core machine a freeze.
    let environment = if websocket_faults {
        vec![("POLYTAPE_WS_STALENESS_MIN", "5s".to_owned())]
    } else {
        Vec::new()
    };
    let pipeline = Pipeline::start_wired(
        purpose,
        scale.clone(),
        Wiring {
            environment,
            ..Wiring::default()
        },
        |_| {},
    )
    .await;
    pipeline.sim.add_faults(faults).unwrap();
    run_live(&pipeline, scale.live.max(Duration::from_secs(60))).await;
    verify(
        &pipeline,
        Expect {
            raw_exactly_once: false,
            // REST faults are retried or dead-lettered: nothing is lost, nothing to declare.
            gaps_allowed: websocket_faults,
        },
    )
    .await;
    if websocket_faults {
        let fired = pipeline.truth("/_sim/stats").await["ws"]["faults"].clone();
        let declared: Vec<String> = declared_gaps(&pipeline)
            .await
            .unwrap()
            .into_iter()
            .map(|gap| gap.kind)
            .collect();
        for (fault, kind) in [("ws_freeze", "FREEZE"), ("ws_disconnect", "DISCONNECT")] {
            let times = fired[fault].as_u64().unwrap_or(0);
            let records = declared.iter().filter(|declared| *declared == kind).count();
            eprintln!("[e2e] {fault}: fired {times}, {kind} gaps declared {records}");
            assert!(
                times == 0 || records > 0,
                "{fault} fired {times} times but no {kind} gap was declared ({declared:?})"
            );
        }
        assert!(
            fired["ws_freeze"].as_u64().unwrap_or(0) > 0,
            "the freeze never fired: raise POLYTAPE_E2E_LIVE_SECS or lower its `after`"
        );
    }
    let stats = pipeline.truth("/_sim/stats").await;
    let mut rest_fired: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for endpoint in stats["endpoints"]
        .as_object()
        .into_iter()
        .flat_map(|map| map.values())
    {
        for (kind, times) in endpoint["faults"].as_object().into_iter().flatten() {
            *rest_fired.entry(kind.as_str()).or_default() += times.as_u64().unwrap_or(0);
        }
    }
    let injected = format!(
        "REST {}; WebSocket {}",
        serde_json::to_string(&rest_fired).unwrap(),
        stats["ws"]["faults"]
    );
    pipeline.report(purpose, faults, &injected);
    pipeline.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_faults_5xx_timeouts_malformed_and_drift_leave_the_data_exact() {
    let _world = ONE_WORLD_AT_A_TIME.lock().await;
    run_with_faults("e2e_rest_faults", REST_FAULTS, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_disconnects_freezes_and_garbage_are_declared_and_books_reconverge() {
    let _world = ONE_WORLD_AT_A_TIME.lock().await;
    run_with_faults("e2e_ws_faults", WS_FAULTS, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_fault_at_once_leaves_the_data_exact_and_gaps_declared() {
    let _world = ONE_WORLD_AT_A_TIME.lock().await;
    run_with_faults(
        "e2e_all_faults",
        &format!("{REST_FAULTS};{WS_FAULTS}"),
        true,
    )
    .await;
}

/// How long the API takes to answer a trades query (status, time), with a client bound well
/// beyond the API's own request timeout so that the API's bound is what is seen.
async fn timed_trades_query(pipeline: &Pipeline, market: &str) -> (Option<u16>, Duration) {
    let started = std::time::Instant::now();
    let answer = pipeline
        .http
        .get(format!(
            "{}/v1/trades?market={market}&limit=10",
            pipeline.api_url
        ))
        .header("X-API-Key", &pipeline.api_key)
        .timeout(Duration::from_secs(180))
        .send()
        .await;
    (
        answer.ok().map(|response| response.status().as_u16()),
        started.elapsed(),
    )
}

/// ClickHouse refusing connections for 60 s, then accepting them and never answering (a
/// stopped process) for 60 s: the sink holds and catches up, the API answers 503 within its
/// own bound while ClickHouse hangs instead of hanging with it, and the data stays exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_outage_of_60_seconds_is_caught_up_without_loss() {
    let _world = ONE_WORLD_AT_A_TIME.lock().await;
    let scale = Scale::from_env();
    let pipeline = Pipeline::start("e2e_clickhouse_outage", scale.clone(), |_| {}).await;
    run_live(&pipeline, Duration::from_secs(10)).await;
    eprintln!("[e2e] clickhouse endpoint down for 60 s");
    pipeline.clickhouse_proxy.set_up(false);
    run_live(&pipeline, Duration::from_secs(60)).await;
    pipeline.clickhouse_proxy.set_up(true);
    let took = pipeline.time_to_all_ready().await;
    pipeline.record_recovery("ClickHouse refusing 60 s, back → every service ready", took);
    run_live(&pipeline, Duration::from_secs(10)).await;

    let market: String = pipeline
        .database
        .client
        .query("SELECT condition_id FROM trades LIMIT 1")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(timed_trades_query(&pipeline, &market).await.0, Some(200));
    eprintln!("[e2e] clickhouse hanging (accepts, never answers) for 60 s");
    let hang = Duration::from_secs(60);
    pipeline.clickhouse_proxy.set_frozen(true);
    let frozen_at = std::time::Instant::now();
    let (query_during_hang, ()) = tokio::join!(
        async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            timed_trades_query(&pipeline, &market).await
        },
        run_live(&pipeline, hang),
    );
    let thawed_after = frozen_at.elapsed();
    pipeline.clickhouse_proxy.set_frozen(false);
    let (status, took_during_hang) = query_during_hang;
    eprintln!(
        "[e2e] a trades query during the hang answered {status:?} after {took_during_hang:?}"
    );
    assert_eq!(
        status,
        Some(503),
        "the API answers a query ClickHouse never answers with 503"
    );
    assert!(
        Duration::from_secs(5) + took_during_hang < thawed_after,
        "the API answered before ClickHouse came back ({took_during_hang:?} after asking, thawed {thawed_after:?} after the hang began), not with it"
    );
    let thawed = std::time::Instant::now();
    loop {
        let (status, _) = timed_trades_query(&pipeline, &market).await;
        if status == Some(200) {
            break;
        }
        assert!(
            thawed.elapsed() < Duration::from_secs(300),
            "the API never answered again after the hang"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "[e2e] the API answered 200 again {:?} after ClickHouse was thawed",
        thawed.elapsed()
    );
    pipeline.record_recovery(
        "ClickHouse hanging 60 s, back → API answers 200",
        thawed.elapsed(),
    );
    let took = thawed.elapsed() + pipeline.time_to_all_ready().await;
    pipeline.record_recovery("ClickHouse hanging 60 s, back → every service ready", took);
    pipeline.record_recovery(
        format!(
            "API request while ClickHouse hangs → answered {}",
            status.unwrap_or_default()
        ),
        took_during_hang,
    );
    run_live(&pipeline, Duration::from_secs(10)).await;
    verify(
        &pipeline,
        Expect {
            raw_exactly_once: true,
            gaps_allowed: false,
        },
    )
    .await;
    pipeline.report(
        "clickhouse_outage",
        "ClickHouse refusing connections 60 s, then hanging (accepting, never answering) 60 s",
        "1 outage, 1 hang",
    );
    pipeline.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_for_30_seconds_is_ridden_out_without_loss() {
    let _world = ONE_WORLD_AT_A_TIME.lock().await;
    let scale = Scale::from_env();
    let pipeline = Pipeline::start_wired(
        "e2e_broker_outage",
        scale.clone(),
        Wiring {
            private_broker: true,
            ..Wiring::default()
        },
        |_| {},
    )
    .await;
    run_live(&pipeline, Duration::from_secs(15)).await;
    let broker = pipeline.private_broker.as_ref().unwrap();
    eprintln!("[e2e] broker stopped for 30 s");
    broker.stop();
    run_live(&pipeline, Duration::from_secs(30)).await;
    broker.resume().await;
    let took = pipeline.time_to_all_ready().await;
    pipeline.record_recovery("broker stopped 30 s, back → every service ready", took);
    run_live(&pipeline, Duration::from_secs(15)).await;
    verify(
        &pipeline,
        Expect {
            // Producers retry what the dead broker never acknowledged: exact copies may land.
            raw_exactly_once: false,
            // The bridge keeps its sockets (only its produce path stalls); nothing upstream is
            // lost, so no gap may be declared either.
            gaps_allowed: false,
        },
    )
    .await;
    pipeline.report(
        "broker_outage",
        "broker killed and restarted after 30 s",
        "1 stop",
    );
    pipeline.shut_down().await;
}
