//! Alerts end to end: rules written through the API's admin routes (in-process, on the test's
//! own ClickHouse database), the signals service binary on the test's own topics, and real
//! HTTP receivers. Shows: every signature verifies; a 500 is retried with the same
//! idempotency key until the 200; an unreachable destination ends in a `failed` delivery row
//! and a dead letter; a signal no rule chooses alerts nobody; a rule changed through the API
//! takes effect on the running service within 5 s; a test fire reaches the destination; a
//! disabled rule stops alerting.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use polytape_clickhouse::alerts::{AlertDeliveryRow, AlertStore};
use polytape_model::{DeadLetter, Signal, SignalKind, SignalValue, TopicNames};
use polytape_signals::webhook::{self, IDEMPOTENCY_KEY, SIGNATURE, TIMESTAMP};
use polytape_test_support::{
    cli::{RunningService, config_file, free_local_addr, stack_env},
    stack::{IsolatedDatabase, ensured_isolated_topics},
    topic::{produce, records},
};
use serde_json::json;

const SECRET: &str = "whsec-alerts-test-secret";
const ADMIN_TOKEN: &str = "admin-token-for-the-alerts-test";

/// What the receiver saw: per idempotency key, every attempt's signature check.
#[derive(Clone, Default)]
struct Receiver {
    attempts: Arc<Mutex<HashMap<String, Vec<bool>>>>,
    /// Answer 500 to each key's first attempt.
    fail_first: bool,
}

/// Answers 500 to the first attempt of each key (if asked to), then 200; checks every
/// signature.
async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let timestamp_ms: i64 = header(TIMESTAMP).parse().unwrap_or(-1);
    let verified = webhook::verify(SECRET, timestamp_ms, &body, &header(SIGNATURE));
    let mut attempts = receiver.attempts.lock().unwrap();
    let seen = attempts.entry(header(IDEMPOTENCY_KEY)).or_default();
    seen.push(verified);
    if receiver.fail_first && seen.len() == 1 {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    addr
}

/// A signal of `kind` with one input, produced by "the detectors" (here: the test).
fn signal(id: &str, kind: SignalKind, subject: &str, inputs: &[(&str, &str)]) -> Signal {
    let now = polytape_model::now_ms();
    Signal {
        signal_id: id.to_owned(),
        kind,
        rule_id: "builtin".to_owned(),
        rule_version: 1,
        subject: subject.to_owned(),
        condition_ids: vec!["0xmarket".to_owned()],
        token_ids: vec!["token-yes".to_owned()],
        event_id: None,
        window_start_ms: now,
        window_end_ms: Some(now),
        thresholds: Vec::new(),
        inputs: inputs
            .iter()
            .map(|(name, value)| SignalValue {
                name: (*name).to_owned(),
                value: (*value).to_owned(),
            })
            .collect(),
        links: Vec::new(),
    }
}

struct Admin {
    client: reqwest::Client,
    base: String,
}

impl Admin {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .header("X-Polytape-Actor", "alerts-test");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }
}

async fn deliveries(store: &AlertStore, signal_id: &str) -> Vec<AlertDeliveryRow> {
    store.deliveries_of(signal_id).await.unwrap()
}

/// Waits until `signal_id` has `count` delivery rows (up to `timeout`).
async fn wait_for_deliveries(
    store: &AlertStore,
    signal_id: &str,
    count: usize,
    timeout: Duration,
) -> Vec<AlertDeliveryRow> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = deliveries(store, signal_id).await;
        if rows.len() >= count || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn start_service(
    names: &TopicNames,
    database: &IsolatedDatabase,
    destinations: &Path,
) -> RunningService {
    let admin = free_local_addr();
    let mut environment = stack_env();
    environment.push(("POLYTAPE_TOPIC_PREFIX", names.prefix().to_owned()));
    environment.push(("POLYTAPE_CLICKHOUSE_DATABASE", database.name.clone()));
    environment.push(("POLYTAPE_SIGNALS_ADMIN_ADDR", admin.to_string()));
    environment.push((
        "POLYTAPE_ALERT_DESTINATIONS_FILE",
        destinations.display().to_string(),
    ));
    environment.push(("POLYTAPE_ALERT_DELIVERY_DEADLINE", "3s".to_owned()));
    environment.push(("POLYTAPE_SIGNALS_CHECKPOINT_INTERVAL", "1s".to_owned()));
    environment.push(("POLYTAPE_LOG_LEVEL", "warn".to_owned()));
    RunningService::start(
        Path::new(env!("CARGO_BIN_EXE_polytape-signals")),
        &environment,
        admin,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_from_the_api_choose_alerts_that_are_signed_retried_recorded_and_dead_lettered() {
    let database = IsolatedDatabase::migrated("signals_alerts").await;
    let names = ensured_isolated_topics("signals_alerts").await;
    let store = AlertStore::new(database.client.clone());

    let receiver = Receiver {
        fail_first: true,
        ..Receiver::default()
    };
    let hook = serve(
        Router::new()
            .route("/hook", post(receive))
            .with_state(receiver.clone()),
    )
    .await;
    // Nothing listens there: every attempt is refused until the 3 s deadline.
    let unreachable = free_local_addr();
    let destinations = config_file(&format!(
        r#"
[[destination]]
id = "ops"
url = "http://{hook}/hook"
secret = "{SECRET}"

[[destination]]
id = "void"
url = "http://{unreachable}/hook"
secret = "{SECRET}"
"#
    ));

    let state = polytape_api::new_state(
        database.client.clone(),
        Arc::new(polytape_api::clock::SystemClock),
        90 * 86_400_000,
        Some(ADMIN_TOKEN.to_owned()),
    );
    let api = serve(polytape_api::admin_router(
        state,
        polytape_runtime::Readiness::new(),
    ))
    .await;
    let admin = Admin {
        client: reqwest::Client::new(),
        base: format!("http://{api}"),
    };
    let (status, created) = admin
        .send(
            reqwest::Method::POST,
            "/admin/alert-rules",
            Some(json!({"rule_id": "whales", "spec": {"kinds": ["LARGE_TRADE_NEW_WALLET"], "destinations": ["ops"]}})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["version"], 1);
    let (status, created) = admin
        .send(
            reqwest::Method::POST,
            "/admin/alert-rules",
            Some(json!({"rule_id": "moves", "spec": {"kinds": ["PRICE_MOVE"], "least": {"move": "0.2"}, "destinations": ["void"]}})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, refused) = admin
        .send(
            reqwest::Method::POST,
            "/admin/alert-rules",
            Some(json!({"rule_id": "moves", "spec": {"destinations": ["ops"]}})),
        )
        .await;
    assert_eq!(
        status, 409,
        "an existing id is not created twice: {refused}"
    );
    let (status, refused) = admin
        .send(
            reqwest::Method::POST,
            "/admin/alert-rules",
            Some(
                json!({"rule_id": "Bad Id", "spec": {"least": {"move": "x"}, "destinations": []}}),
            ),
        )
        .await;
    assert_eq!(status, 400, "{refused}");

    let service = start_service(&names, &database, destinations.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    while service
        .get("/readyz")
        .is_none_or(|(status, _)| status != 200)
    {
        assert!(Instant::now() < deadline, "the service never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A whale (ops answers 500, then 200), a big move (void is unreachable), a small move (no
    // rule chooses it).
    let whale = signal(
        "sig-whale",
        SignalKind::LargeTradeNewWallet,
        "0xfresh",
        &[("notional", "25000")],
    );
    let big_move = signal(
        "sig-big-move",
        SignalKind::PriceMove,
        "token-yes",
        &[("move", "-0.25")],
    );
    let small_move = signal(
        "sig-small-move",
        SignalKind::PriceMove,
        "token-no",
        &[("move", "0.1")],
    );
    produce(
        &names,
        &[whale.clone(), big_move.clone(), small_move.clone()],
    )
    .await;

    let rows = wait_for_deliveries(&store, "sig-whale", 1, Duration::from_secs(30)).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(
        (
            row.destination_id.as_str(),
            row.status_name(),
            row.attempts,
            row.response_code,
            row.rule_id.as_str()
        ),
        ("ops", "delivered", 2, Some(200), "whales")
    );
    {
        let attempts = receiver.attempts.lock().unwrap();
        assert_eq!(
            attempts.get("sig-whale"),
            Some(&vec![true, true]),
            "one key, two attempts, both signed"
        );
    }

    let rows = wait_for_deliveries(&store, "sig-big-move", 1, Duration::from_secs(30)).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(
        (
            row.destination_id.as_str(),
            row.status_name(),
            row.response_code
        ),
        ("void", "failed", None)
    );
    assert!(row.attempts >= 2, "retried until the deadline: {row:?}");
    let letters: Vec<DeadLetter> = records(&names).await;
    let letter = letters
        .iter()
        .find(|letter| letter.error.contains("alert to void failed"))
        .unwrap_or_else(|| panic!("no dead letter for the failed delivery: {letters:?}"));
    assert_eq!(letter.source, "signals-alerts");

    assert!(
        deliveries(&store, "sig-small-move").await.is_empty(),
        "no rule chose the small move"
    );

    // The rule changed through the API: from 0.05 up, to ops. Probes go out every 250 ms until
    // one alerts; the first that does was produced within 5 s of the change.
    let (status, updated) = admin
        .send(
            reqwest::Method::PUT,
            "/admin/alert-rules/moves",
            Some(json!({"expected_version": 1, "spec": {"kinds": ["PRICE_MOVE"], "least": {"move": "0.05"}, "destinations": ["ops"]}})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["version"], 2);
    let changed = Instant::now();
    let mut probes: Vec<(String, Duration)> = Vec::new();
    let mut first_alerted = None;
    while first_alerted.is_none() && changed.elapsed() < Duration::from_secs(20) {
        let id = format!("probe-{}", probes.len());
        produce(
            &names,
            &[signal(&id, SignalKind::PriceMove, &id, &[("move", "0.1")])],
        )
        .await;
        probes.push((id, changed.elapsed()));
        tokio::time::sleep(Duration::from_millis(250)).await;
        for (id, produced_after) in &probes {
            if !deliveries(&store, id).await.is_empty() {
                first_alerted = Some(*produced_after);
                break;
            }
        }
    }
    let took =
        first_alerted.unwrap_or_else(|| panic!("no probe alerted within 20 s of the change"));
    println!("the changed rule alerted a probe produced {took:?} after the change");
    assert!(
        took <= Duration::from_secs(5),
        "the change took {took:?} to apply"
    );

    // A test fire through the API reaches ops (500, then 200) and says so.
    let (status, fired) = admin
        .send(
            reqwest::Method::POST,
            "/admin/alert-rules/whales/test",
            None,
        )
        .await;
    assert_eq!(status, 200, "{fired}");
    assert_eq!(fired["deliveries"][0]["status"], "delivered", "{fired}");
    let test_id = fired["test_id"].as_str().unwrap_or_default().to_owned();
    assert!(test_id.starts_with("test-"));
    assert_eq!(
        receiver.attempts.lock().unwrap().get(&test_id),
        Some(&vec![true, true])
    );

    // Disabled: a later whale alerts nobody (checked after the refresh interval twice over).
    let (status, disabled) = admin
        .send(
            reqwest::Method::POST,
            "/admin/alert-rules/whales/disable",
            None,
        )
        .await;
    assert_eq!(status, 200, "{disabled}");
    assert_eq!(disabled["version"], 2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    produce(
        &names,
        &[signal(
            "sig-whale-2",
            SignalKind::LargeTradeNewWallet,
            "0xfresh2",
            &[],
        )],
    )
    .await;
    // The probe after it shows the alerter has read past it.
    produce(
        &names,
        &[signal(
            "probe-last",
            SignalKind::PriceMove,
            "probe-last",
            &[("move", "0.1")],
        )],
    )
    .await;
    assert_eq!(
        wait_for_deliveries(&store, "probe-last", 1, Duration::from_secs(30))
            .await
            .len(),
        1
    );
    assert!(
        deliveries(&store, "sig-whale-2").await.is_empty(),
        "a disabled rule alerted"
    );

    let (status, history) = admin
        .send(
            reqwest::Method::GET,
            "/admin/alert-rules/whales/history",
            None,
        )
        .await;
    assert_eq!(status, 200);
    let versions: Vec<(i64, bool, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|version| {
            (
                version["version"].as_i64().unwrap_or_default(),
                version["spec"]["enabled"].as_bool().unwrap_or_default(),
                version["changed_by"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        [
            (1, true, "alerts-test".to_owned()),
            (2, false, "alerts-test".to_owned())
        ]
    );

    assert_eq!(service.terminate(Duration::from_secs(30)), Some(0));
    {
        let attempts = receiver.attempts.lock().unwrap();
        assert!(
            attempts.values().flatten().all(|verified| *verified),
            "every signature verifies"
        );
    }
    database.drop_database().await;
}

/// Waits until the service says it is ready (its alerter has read the rules and fixed where it
/// starts).
async fn wait_ready(service: &RunningService) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while service
        .get("/readyz")
        .is_none_or(|(status, _)| status != 200)
    {
        assert!(Instant::now() < deadline, "the service never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_alerting_loses_no_alert_and_uses_no_other_key() {
    let database = IsolatedDatabase::migrated("signals_alerts_kill").await;
    let names = ensured_isolated_topics("signals_alerts_kill").await;
    let store = AlertStore::new(database.client.clone());
    let receiver = Receiver::default();
    let hook = serve(
        Router::new()
            .route("/hook", post(receive))
            .with_state(receiver.clone()),
    )
    .await;
    let destinations = config_file(&format!(
        "[[destination]]\nid = \"ops\"\nurl = \"http://{hook}/hook\"\nsecret = \"{SECRET}\"\n"
    ));
    let spec = serde_json::from_value(json!({"destinations": ["ops"]})).unwrap();
    store
        .change_rule(polytape_clickhouse::alerts::RuleChange {
            rule_id: "everything".to_owned(),
            spec,
            changed_by: "test".to_owned(),
            change_id: "c1".to_owned(),
            now_ms: polytape_model::now_ms(),
            expected_version: Some(0),
            must_exist: false,
        })
        .await
        .unwrap();

    let mut service = start_service(&names, &database, destinations.path());
    wait_ready(&service).await;
    // 400 signals in 20 slices, while the service is killed with SIGKILL at random points.
    let produced: Vec<String> = (0..400).map(|index| format!("sig-{index:03}")).collect();
    let producing = {
        let names = names.clone();
        let produced = produced.clone();
        tokio::spawn(async move {
            for slice in produced.chunks(20) {
                let signals: Vec<Signal> = slice
                    .iter()
                    .map(|id| signal(id, SignalKind::PriceMove, id, &[("move", "0.2")]))
                    .collect();
                produce(&names, &signals).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    for kill in 0..5 {
        let after = Duration::from_millis(300 + rand::random_range(0..1_500));
        tokio::time::sleep(after).await;
        drop(service); // SIGKILL: no drain, no final checkpoint
        println!("kill -9 #{} after {after:?}", kill + 1);
        service = start_service(&names, &database, destinations.path());
    }
    producing.await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let received = receiver.attempts.lock().unwrap().len();
        if received >= produced.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(service.terminate(Duration::from_secs(30)), Some(0));
    let attempts = receiver.attempts.lock().unwrap().clone();
    let mut keys: Vec<&String> = attempts.keys().collect();
    keys.sort();
    let expected: Vec<&String> = produced.iter().collect();
    assert_eq!(
        keys, expected,
        "every signal alerted, under its own id and no other key"
    );
    let repeated = attempts.values().filter(|seen| seen.len() > 1).count();
    println!(
        "{repeated} of {} signals delivered more than once (same key)",
        produced.len()
    );
    assert!(attempts.values().flatten().all(|verified| *verified));
    for id in ["sig-000", "sig-199", "sig-399"] {
        let rows = deliveries(&store, id).await;
        assert_eq!(rows.len(), 1, "{id}: {rows:?}");
        assert_eq!(rows[0].status_name(), "delivered");
    }
    database.drop_database().await;
}
