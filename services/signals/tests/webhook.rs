//! Webhook delivery against a real HTTP receiver on a local port: every signature verifies,
//! a 500 is retried with the same idempotency key until the 200, a 429's `Retry-After` is
//! honoured, a refusal is not retried, and an unreachable destination fails at the deadline.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::post,
};
use polytape_model::{Signal, samples};
use polytape_signals::webhook::{
    self, Alert, BodyFormat, DeliveryOutcome, DeliveryStatus, Destination, IDEMPOTENCY_KEY,
    RetryPolicy, SIGNATURE, TIMESTAMP,
};

const SECRET: &str = "whsec-test-secret";

#[derive(Debug, Clone)]
struct Received {
    idempotency_key: String,
    timestamp_ms: i64,
    signature: String,
    body: Vec<u8>,
    at: std::time::Instant,
}

/// A status to answer with, and the `Retry-After` to send with it.
type Answer = (u16, Option<&'static str>);

#[derive(Clone, Default)]
struct Receiver {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    receiver.received.lock().unwrap().push(Received {
        idempotency_key: header(IDEMPOTENCY_KEY),
        timestamp_ms: header(TIMESTAMP).parse().unwrap_or(-1),
        signature: header(SIGNATURE),
        body: body.to_vec(),
        at: std::time::Instant::now(),
    });
    let (code, retry_after) = receiver
        .answers
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((200, None));
    let mut response = StatusCode::from_u16(code).unwrap().into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", seconds.parse().unwrap());
    }
    response
}

async fn start_receiver(answers: &[Answer]) -> (Receiver, SocketAddr) {
    let receiver = Receiver::default();
    receiver
        .answers
        .lock()
        .unwrap()
        .extend(answers.iter().copied());
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (receiver, addr)
}

fn destination(url: String, format: BodyFormat) -> Destination {
    Destination {
        destination_id: "test".to_owned(),
        url,
        secret: SECRET.to_owned(),
        format,
    }
}

fn fast_policy(deadline: Duration) -> RetryPolicy {
    RetryPolicy {
        attempt_timeout: Duration::from_secs(2),
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
        deadline,
    }
}

/// Delivers the sample signal, chosen by rule `arbitrage-desk` version 3, to `addr`'s `/hook`.
async fn deliver_sample(
    addr: SocketAddr,
    format: BodyFormat,
    deadline: Duration,
) -> (Signal, DeliveryOutcome) {
    let signal = samples::signal();
    let outcome = webhook::deliver(
        &reqwest::Client::new(),
        &destination(format!("http://{addr}/hook"), format),
        Alert {
            signal: &signal,
            alert_rule_id: "arbitrage-desk",
            alert_rule_version: 3,
        },
        fast_policy(deadline),
        polytape_model::now_ms,
    )
    .await;
    (signal, outcome)
}

#[tokio::test]
async fn a_500_is_retried_under_the_same_key_and_every_signature_verifies() {
    let (receiver, addr) = start_receiver(&[(500, None), (200, None)]).await;
    let (signal, outcome) = deliver_sample(addr, BodyFormat::Json, Duration::from_secs(30)).await;
    assert_eq!(outcome.status, DeliveryStatus::Delivered, "{outcome:?}");
    assert_eq!(outcome.attempts, 2);
    assert_eq!(outcome.response_code, Some(200));
    let received = receiver.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    for request in &received {
        assert_eq!(request.idempotency_key, signal.signal_id);
        assert!(
            webhook::verify(
                SECRET,
                request.timestamp_ms,
                &request.body,
                &request.signature
            ),
            "signature {} does not verify",
            request.signature
        );
        assert!(!webhook::verify(
            "another secret",
            request.timestamp_ms,
            &request.body,
            &request.signature
        ));
        assert!(!webhook::verify(
            SECRET,
            request.timestamp_ms + 1,
            &request.body,
            &request.signature
        ));
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["signal_id"], signal.signal_id.as_str());
        assert_eq!(body["alert_rule_id"], "arbitrage-desk");
        assert_eq!(body["alert_rule_version"], 3);
        assert_eq!(body["signal"]["kind"], "BINARY_ARBITRAGE");
        assert!(
            body["explanation"]
                .as_str()
                .unwrap()
                .starts_with("BINARY_ARBITRAGE ")
        );
    }
    // The same body both times; the timestamp (and so the signature) is the attempt's own.
    assert_eq!(received[0].body, received[1].body);
}

#[tokio::test]
async fn a_429_waits_for_its_retry_after() {
    let (receiver, addr) = start_receiver(&[(429, Some("1")), (200, None)]).await;
    let (signal, outcome) = deliver_sample(addr, BodyFormat::Slack, Duration::from_secs(30)).await;
    assert_eq!(outcome.status, DeliveryStatus::Delivered, "{outcome:?}");
    let received = receiver.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    let waited = received[1].at - received[0].at;
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert!(
        body["text"].as_str().unwrap().contains(&signal.subject),
        "{body}"
    );
}

#[tokio::test]
async fn a_refusal_is_not_retried() {
    let (receiver, addr) = start_receiver(&[(400, None), (200, None)]).await;
    let (_, outcome) = deliver_sample(addr, BodyFormat::Discord, Duration::from_secs(30)).await;
    assert_eq!(outcome.status, DeliveryStatus::Failed);
    assert_eq!(outcome.attempts, 1);
    assert_eq!(outcome.response_code, Some(400));
    assert_eq!(receiver.received.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreachable_destination_fails_at_the_deadline() {
    // A port bound and released: nothing listens there.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (_, outcome) = deliver_sample(addr, BodyFormat::Json, Duration::from_millis(1_500)).await;
    assert_eq!(outcome.status, DeliveryStatus::Failed, "{outcome:?}");
    assert!(outcome.attempts >= 3, "{outcome:?}");
    assert_eq!(outcome.response_code, None);
    assert!(
        outcome
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("deadline"),
        "{outcome:?}"
    );
    // No attempt starts after the deadline; the last one may end up to its timeout later.
    assert!(
        outcome.elapsed <= Duration::from_millis(1_500) + Duration::from_secs(2),
        "{outcome:?}"
    );
}
