#![allow(clippy::unwrap_used)]
//! Keys: missing, garbage, wrong, revoked and expired keys get the error envelope with 401 or
//! 403; revocations reach other replicas at their next refresh; the admin token guards
//! `/admin/*`; the CLI prints a new key as the last line of stdout only; no key ever reaches
//! the logs. Run against the local stack (`cargo xtask test`, or the dev stack).

mod common;

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use common::{TestApi, migrated_database};
use polytape_api::clock::ManualClock;
use reqwest::Method;

/// Every log line of this test process, at debug level and above.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_logs() -> CapturedLogs {
    static LOGS: OnceLock<CapturedLogs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = CapturedLogs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
    .clone()
}

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_get_401_or_403_with_the_envelope_and_keys_never_reach_the_logs() {
    let logs = captured_logs();
    let database = migrated_database("auth").await;
    let clock = ManualClock::new(polytape_model::now_ms());
    let api = TestApi::start_with_clock(&database, Arc::new(clock.clone())).await;

    let created = api
        .admin(
            Method::POST,
            "/admin/keys",
            Some(serde_json::json!({"name": "alice", "plan": "weekly"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let key = created.body["key"].as_str().unwrap().to_owned();
    let prefix = created.body["key_prefix"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("{prefix}_")));
    assert_eq!(created.body["rps"], 10);
    assert_eq!(created.body["status"], "active");

    api.get("/v1/markets", None)
        .await
        .assert_error(401, "missing_api_key");
    api.get("/v1/markets", Some("garbage"))
        .await
        .assert_error(401, "invalid_api_key");
    let wrong_secret = format!("{prefix}_{}", "x".repeat(43));
    api.get("/v1/markets", Some(&wrong_secret))
        .await
        .assert_error(401, "invalid_api_key");

    let ok = api.get("/v1/markets", Some(&key)).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let bearer = api
        .http
        .get(format!("{}/v1/markets", api.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);

    // A weekly key expires after 7 days.
    clock.advance_ms(7 * 86_400_000 + 1);
    api.get("/v1/markets", Some(&key))
        .await
        .assert_error(403, "api_key_expired");
    clock.advance_ms(-(7 * 86_400_000 + 1));

    let rotated = api
        .admin(Method::POST, &format!("/admin/keys/{prefix}/rotate"), None)
        .await;
    assert_eq!(rotated.status, 201, "{}", rotated.text);
    let successor = rotated.body["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated.body["name"], "alice");
    api.get("/v1/markets", Some(&key))
        .await
        .assert_error(403, "api_key_revoked");
    assert_eq!(api.get("/v1/markets", Some(&successor)).await.status, 200);

    let successor_prefix = rotated.body["key_prefix"].as_str().unwrap().to_owned();
    let revoked = api
        .admin(
            Method::POST,
            &format!("/admin/keys/{successor_prefix}/revoke"),
            None,
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert_eq!(revoked.body["status"], "revoked");
    api.get("/v1/markets", Some(&successor))
        .await
        .assert_error(403, "api_key_revoked");
    api.admin(Method::POST, "/admin/keys/pt_000000000000/revoke", None)
        .await
        .assert_error(404, "not_found");
    // A revoked key cannot be rotated into a fresh one.
    api.admin(
        Method::POST,
        &format!("/admin/keys/{successor_prefix}/rotate"),
        None,
    )
    .await
    .assert_error(400, "invalid_parameter");

    let listed = api.admin(Method::GET, "/admin/keys", None).await;
    assert_eq!(listed.status, 200);
    assert!(listed.text.contains(&prefix) && !listed.text.contains(&key));
    assert!(!listed.text.contains("key_hash"));

    // The request log names the public prefix (so logging did happen) and never a key.
    let text = logs.text();
    assert!(text.contains(&prefix), "request logs were captured");
    for secret in [&key, &successor, &wrong_secret] {
        assert!(!text.contains(secret.as_str()), "a key reached the logs");
        let secret_part = &secret[prefix.len() + 1..];
        assert!(
            !text.contains(secret_part),
            "a key's secret reached the logs"
        );
    }
    api.stop();
    database.drop_database().await;
}

#[test]
fn keys_are_compared_in_constant_time() {
    // The check itself is behavioural in keys.rs's unit tests; this pins the mechanism: the
    // presented key's hash is compared with `subtle::ConstantTimeEq`, never with `==`.
    let source = include_str!("../src/keys.rs");
    assert!(source.contains("use subtle::ConstantTimeEq"));
    assert!(source.contains("presented_hash.ct_eq(&cached.hash)"));
    assert!(!source.contains("presented_hash == "));
    let admin = include_str!("../src/routes/admin.rs");
    assert!(admin.contains("secrets_equal(presented, &expected)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_another_replica_at_its_next_refresh() {
    let database = migrated_database("revoke").await;
    let replica_a = TestApi::start(&database).await;
    let replica_b = TestApi::start(&database).await;
    let key = replica_a.key("monthly", None, None).await;
    let unknown_yet = replica_b.get("/v1/markets", Some(&key)).await;
    unknown_yet.assert_error(401, "invalid_api_key");
    polytape_api::refresh_once(&replica_b.state).await.unwrap();
    assert_eq!(replica_b.get("/v1/markets", Some(&key)).await.status, 200);

    let prefix = polytape_api::keys::lookup_prefix(&key);
    replica_a
        .admin(Method::POST, &format!("/admin/keys/{prefix}/revoke"), None)
        .await;
    replica_a
        .get("/v1/markets", Some(&key))
        .await
        .assert_error(403, "api_key_revoked");
    // Until B refreshes it still has the active copy: that window is the documented bound.
    polytape_api::refresh_once(&replica_b.state).await.unwrap();
    replica_b
        .get("/v1/markets", Some(&key))
        .await
        .assert_error(403, "api_key_revoked");

    // The background refresher does the same on its own.
    let second = replica_a.key("monthly", None, None).await;
    polytape_api::refresh_once(&replica_b.state).await.unwrap();
    assert_eq!(
        replica_b.get("/v1/markets", Some(&second)).await.status,
        200
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let refresher = tokio::spawn(polytape_api::run_refresher(
        replica_b.state.clone(),
        Duration::from_millis(200),
        stop.clone(),
        None,
    ));
    let second_prefix = polytape_api::keys::lookup_prefix(&second);
    replica_a
        .admin(
            Method::POST,
            &format!("/admin/keys/{second_prefix}/revoke"),
            None,
        )
        .await;
    let mut status = 0;
    for _ in 0..100 {
        status = replica_b.get("/v1/markets", Some(&second)).await.status;
        if status == 403 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 403, "replica B never saw the revocation");
    stop.cancel();
    refresher.await.unwrap();
    replica_a.stop();
    replica_b.stop();
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_need_the_admin_token() {
    let database = migrated_database("admin").await;
    let api = TestApi::start(&database).await;
    let anonymous = common::reply(
        api.http
            .get(format!("{}/admin/keys", api.admin_base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    anonymous.assert_error(401, "invalid_admin_token");
    let wrong = common::reply(
        api.http
            .get(format!("{}/admin/keys", api.admin_base))
            .bearer_auth("not-the-admin-token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    wrong.assert_error(401, "invalid_admin_token");
    // An API key is not an admin token.
    let key = api.data_key().await;
    let with_key = common::reply(
        api.http
            .get(format!("{}/admin/keys", api.admin_base))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    with_key.assert_error(401, "invalid_admin_token");
    let bad_plan = api
        .admin(
            Method::POST,
            "/admin/keys",
            Some(serde_json::json!({"name": "x", "plan": "yearly"})),
        )
        .await;
    bad_plan.assert_error(400, "invalid_parameter");

    let without_token = polytape_api::new_state(
        database.client.clone(),
        Arc::new(polytape_api::clock::SystemClock),
        common::RETENTION_MS,
        None,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            polytape_api::admin_router(without_token, polytape_runtime::Readiness::new()),
        )
        .await
        .unwrap();
    });
    let disabled = common::reply(
        reqwest::Client::new()
            .get(format!("http://{addr}/admin/keys"))
            .bearer_auth(common::ADMIN_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    disabled.assert_error(403, "admin_disabled");
    server.abort();
    api.stop();
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_port_serves_no_admin_health_or_metrics_routes() {
    let database = migrated_database("ports").await;
    let api = TestApi::start(&database).await;
    for path in [
        "/admin/keys",
        "/admin/usage",
        "/metrics",
        "/readyz",
        "/healthz",
        "/admin/openapi.json",
    ] {
        let public = api.get(path, None).await;
        public.assert_error(404, "not_found");
        let public_with_token = common::reply(
            api.http
                .get(format!("{}{path}", api.base))
                .bearer_auth(common::ADMIN_TOKEN)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(public_with_token.status, 404, "{path} on the public port");
    }
    for path in ["/metrics", "/readyz", "/healthz"] {
        let admin = common::reply(
            api.http
                .get(format!("{}{path}", api.admin_base))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_ne!(
            admin.status, 404,
            "{path} on the admin port: {}",
            admin.text
        );
    }
    let listed = api.admin(Method::GET, "/admin/keys", None).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let admin_document = api.admin(Method::GET, "/admin/openapi.json", None).await;
    assert_eq!(admin_document.status, 200, "{}", admin_document.text);
    for path in [
        "/admin/keys",
        "/admin/keys/{key}/revoke",
        "/admin/keys/{key}/rotate",
        "/admin/usage",
    ] {
        assert!(
            admin_document.body["paths"].get(path).is_some(),
            "{path} missing from the admin document"
        );
    }
    // Every admin operation names its token and the answers before its handler.
    for (path, item) in admin_document.body["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert_eq!(
                operation["security"][0]["admin_token"],
                serde_json::json!([]),
                "{method} {path}"
            );
            for code in ["401", "403", "429", "503"] {
                assert!(
                    operation["responses"].get(code).is_some(),
                    "{method} {path} documents {code}"
                );
            }
        }
    }
    // The public document names no admin route.
    let public_document = api.get("/openapi.json", None).await;
    assert!(
        !public_document.text.contains("/admin/"),
        "the public OpenAPI document lists admin routes"
    );
    api.stop();
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_admin_token_attempts_are_rate_limited_per_address() {
    let database = migrated_database("admin_throttle").await;
    let api = TestApi::start(&database).await;
    let attempt = |token: &'static str| {
        let request = api
            .http
            .get(format!("{}/admin/keys", api.admin_base))
            .bearer_auth(token);
        async move { common::reply(request.send().await.unwrap()).await }
    };
    for _ in 0..polytape_api::routes::admin::ADMIN_FAILURES_PER_WINDOW {
        attempt("wrong-token-0123456789")
            .await
            .assert_error(401, "invalid_admin_token");
    }
    let throttled = attempt("wrong-token-0123456789").await;
    throttled.assert_error(429, "admin_throttled");
    assert!(
        throttled.header("retry-after").is_some(),
        "{:?}",
        throttled.headers
    );
    // Refused before the token is compared: the right token gets no answer either, so a
    // guesser learns nothing from trying faster.
    attempt(common::ADMIN_TOKEN)
        .await
        .assert_error(429, "admin_throttled");
    api.stop();
    database.drop_database().await;
}

const BINARY: &str = env!("CARGO_BIN_EXE_polytape-api");

fn cli_env(database: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "POLYTAPE_CLICKHOUSE_URL",
            polytape_test_support::stack::endpoints().clickhouse_url,
        ),
        ("POLYTAPE_CLICKHOUSE_DATABASE", database.to_owned()),
    ]
}

fn run_cli(args: &[&str], database: &str) -> polytape_test_support::cli::Finished {
    let environment = cli_env(database);
    let pairs: Vec<(&str, &str)> = environment
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    polytape_test_support::cli::run(std::path::Path::new(BINARY), args, &pairs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_revokes_and_rotates_and_prints_keys_only_as_the_last_line() {
    let database = migrated_database("cli").await;
    let name = database.name.clone();
    let created = tokio::task::spawn_blocking({
        let name = name.clone();
        move || {
            run_cli(
                &[
                    "keys",
                    "create",
                    "--name",
                    "bob",
                    "--plan",
                    "custom",
                    "--rps",
                    "7",
                    "--daily-cap",
                    "70",
                    "--expires-in",
                    "3d",
                ],
                &name,
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(
        created.code,
        Some(0),
        "{}{}",
        created.stdout,
        created.stderr
    );
    let key = created.stdout.lines().last().unwrap().to_owned();
    let prefix = polytape_api::keys::lookup_prefix(&key);
    assert!(key.starts_with("pt_") && key.len() > 50, "{key}");
    assert_eq!(
        created.stdout.matches(&key).count(),
        1,
        "the key is printed once"
    );
    assert!(!created.stderr.contains(&key));

    let api = TestApi::start(&database).await;
    let ok = api.get("/v1/markets", Some(&key)).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.header("x-ratelimit-limit"), Some("70"));
    assert_eq!(ok.header("x-ratelimit-rps"), Some("7"));

    let listed = tokio::task::spawn_blocking({
        let name = name.clone();
        move || run_cli(&["keys", "list"], &name)
    })
    .await
    .unwrap();
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    assert!(listed.stdout.contains(&prefix) && listed.stdout.contains("bob"));
    assert!(!listed.stdout.contains(&key));

    let rotated = tokio::task::spawn_blocking({
        let name = name.clone();
        let prefix = prefix.clone();
        move || run_cli(&["keys", "rotate", &prefix], &name)
    })
    .await
    .unwrap();
    assert_eq!(rotated.code, Some(0), "{}", rotated.stderr);
    let successor = rotated.stdout.lines().last().unwrap().to_owned();
    assert_ne!(successor, key);

    let revoked = tokio::task::spawn_blocking({
        let name = name.clone();
        let successor = successor.clone();
        move || run_cli(&["keys", "revoke", &successor], &name)
    })
    .await
    .unwrap();
    assert_eq!(revoked.code, Some(0), "{}", revoked.stderr);
    assert!(
        !revoked.stdout.contains(&successor),
        "revoke never echoes the key"
    );

    polytape_api::refresh_once(&api.state).await.unwrap();
    api.get("/v1/markets", Some(&key))
        .await
        .assert_error(403, "api_key_revoked");
    api.get("/v1/markets", Some(&successor))
        .await
        .assert_error(403, "api_key_revoked");

    let missing = tokio::task::spawn_blocking({
        let name = name.clone();
        move || run_cli(&["keys", "revoke", "pt_000000000000"], &name)
    })
    .await
    .unwrap();
    assert_eq!(missing.code, Some(1));
    assert!(
        missing
            .stderr
            .contains("no API key with prefix pt_000000000000"),
        "{}",
        missing.stderr
    );
    api.stop();
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_key_works_at_first_start_and_never_reaches_the_service_log() {
    let database = migrated_database("bootstrap").await;
    let bootstrap = "operator-chosen-bootstrap-key-0123456789abcdef";
    let addr = polytape_test_support::cli::free_local_addr();
    let mut command = std::process::Command::new(BINARY);
    for (name, _) in std::env::vars() {
        if name.starts_with("POLYTAPE_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    for (name, value) in cli_env(&database.name) {
        command.env(name, value);
    }
    command
        .env("POLYTAPE_API_ADDR", addr.to_string())
        .env(
            "POLYTAPE_API_ADMIN_ADDR",
            polytape_test_support::cli::free_local_addr().to_string(),
        )
        .env("POLYTAPE_API_BOOTSTRAP_KEY", bootstrap)
        .env("POLYTAPE_LOG_LEVEL", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().unwrap();
    let http = reqwest::Client::new();
    let mut status = 0;
    for _ in 0..300 {
        if let Ok(response) = http
            .get(format!("http://{addr}/v1/markets"))
            .header("X-API-Key", bootstrap)
            .send()
            .await
        {
            status = response.status().as_u16();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the bootstrap key is accepted");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(log.contains("bootstrap api key stored"), "{log}");
    assert!(
        !log.contains(bootstrap),
        "the bootstrap key reached the log:\n{log}"
    );
    database.drop_database().await;
}
