//! The HTTP server: routes, the budget/fault middleware, and starting/stopping a simulator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::budget::BudgetDecision;
use crate::config::SimConfig;
use crate::faults::{FaultKind, FaultSpecError, parse_fault_spec};
use crate::http::{clob, data, error_response, gamma, json_value, simapi, ws};
use crate::state::{LiveProgress, SimState, run_live_driver};

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("cannot read the listening address: {0}")]
    Address(std::io::Error),
    #[error("world generation failed: {0}")]
    Generation(String),
}

/// A simulator serving in this process.
pub struct RunningSim {
    /// The address it listens on (127.0.0.1, the configured or picked port).
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    state: Arc<SimState>,
    server: JoinHandle<()>,
    driver: JoinHandle<()>,
}

impl RunningSim {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT/ws/market`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws/market", self.addr)
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(mut self) {
        self.signal_shutdown();
        // Graceful shutdown waits for open connections; WebSockets close on the signal, and
        // anything still hanging (a throttled or `timeout`-faulted request) is cut off.
        if tokio::time::timeout(Duration::from_secs(2), &mut self.server)
            .await
            .is_err()
        {
            self.server.abort();
        }
    }

    fn signal_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = self.state.closing.send(true);
        self.driver.abort();
    }

    /// Runs `operations` live operations now (CPU work: call it from a blocking context or
    /// accept a short stall); same as `POST /_sim/advance`.
    pub fn advance(&self, operations: u64) -> LiveProgress {
        self.state.advance(operations)
    }

    /// Stops the rate-driven live driver; returns once no generation is in flight.
    pub fn pause(&self) -> LiveProgress {
        self.state.pause()
    }

    /// Restarts the rate-driven live driver.
    pub fn resume(&self) -> LiveProgress {
        self.state.resume()
    }

    /// Adds fault rules at run time (same grammar as `--faults`).
    pub fn add_faults(&self, spec: &str) -> Result<(), FaultSpecError> {
        self.state.faults.add(parse_fault_spec(spec)?, false);
        Ok(())
    }

    /// Waits until the server stops (it only stops on `shutdown` or an I/O failure).
    pub async fn wait(mut self) {
        let _ = (&mut self.server).await;
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}

/// Generates the world and starts serving on 127.0.0.1:`config.port`.
pub async fn start(config: SimConfig) -> Result<RunningSim, SimError> {
    let port = config.port;
    let started = Instant::now();
    let state = tokio::task::spawn_blocking(move || Arc::new(SimState::new(config)))
        .await
        .map_err(|error| SimError::Generation(error.to_string()))?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        markets = state.config.markets,
        history_days = state.config.history_days,
        "world generated"
    );
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|source| SimError::Bind { port, source })?;
    let addr = listener.local_addr().map_err(SimError::Address)?;
    let router = router(Arc::clone(&state));
    let (shutdown_sender, shutdown_receiver) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let serving = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = shutdown_receiver.await;
        });
        if let Err(error) = serving.await {
            tracing::error!(%error, "server stopped");
        }
    });
    let driver = tokio::spawn(run_live_driver(Arc::downgrade(&state)));
    Ok(RunningSim {
        addr,
        shutdown: Some(shutdown_sender),
        state,
        server,
        driver,
    })
}

fn router(state: Arc<SimState>) -> Router {
    let api = Router::new()
        .route("/gamma/markets", get(gamma::markets))
        .route("/gamma/markets/keyset", get(gamma::markets_keyset))
        .route("/gamma/markets/{id}", get(gamma::market_by_id))
        .route("/gamma/events", get(gamma::events))
        .route("/gamma/events/keyset", get(gamma::events_keyset))
        .route("/gamma/events/{id}", get(gamma::event_by_id))
        .route("/gamma/markets/slug/{slug}", get(gamma::market_by_slug))
        .route("/gamma/events/slug/{slug}", get(gamma::event_by_slug))
        .route("/data/trades", get(data::trades))
        .route("/data/v2/trades", get(data::trades_v2))
        .route("/data/v1/leaderboard", get(data::leaderboard))
        .route("/data/holders", get(data::holders))
        .route("/data/positions", get(data::positions))
        .route("/data/value", get(data::value))
        .route("/data/oi", get(data::open_interest))
        .route("/data/activity", get(data::activity))
        .route("/clob/markets", get(clob::markets))
        .route(
            "/clob/markets/{condition_id}",
            get(clob::market_by_condition),
        )
        .route("/clob/book", get(clob::book))
        .route("/clob/books", post(clob::books).get(clob::books_get))
        .route("/clob/simplified-markets", get(clob::simplified_markets))
        .route("/clob/sampling-markets", get(clob::sampling_markets))
        .route(
            "/clob/sampling-simplified-markets",
            get(clob::sampling_simplified_markets),
        )
        .route(
            "/clob/prices",
            get(clob::prices_get).post(clob::prices_post),
        )
        .route("/clob/midpoints", post(clob::midpoints_post))
        .route("/clob/last-trade-price", get(clob::last_trade_price))
        .route("/clob/neg-risk", get(clob::neg_risk))
        .route("/clob/fee-rate", get(clob::fee_rate))
        .route("/clob/price", get(clob::price))
        .route("/clob/midpoint", get(clob::midpoint))
        .route("/clob/spread", get(clob::spread))
        .route("/clob/tick-size", get(clob::tick_size))
        .route("/clob/prices-history", get(clob::prices_history))
        .route("/clob/time", get(clob::time))
        .route_layer(from_fn_with_state(Arc::clone(&state), api_middleware));
    let sim = Router::new()
        .route("/_sim/truth/fills", get(simapi::truth_fills))
        .route("/_sim/truth/book", get(simapi::truth_book))
        .route("/_sim/truth/markets", get(simapi::truth_markets))
        .route("/_sim/truth/events", get(simapi::truth_events))
        .route("/_sim/truth/ws", get(simapi::truth_ws))
        .route("/_sim/truth/signals", get(simapi::truth_signals))
        .route("/_sim/stats", get(simapi::stats))
        .route("/_sim/stats/reset", post(simapi::stats_reset))
        .route(
            "/_sim/faults",
            get(simapi::faults_get)
                .post(simapi::faults_post)
                .delete(simapi::faults_delete),
        )
        .route("/_sim/pause", post(simapi::pause))
        .route("/_sim/resume", post(simapi::resume))
        .route("/_sim/advance", post(simapi::advance))
        .route("/_sim/info", get(simapi::info))
        .route("/ws/market", get(ws::market_channel));
    api.merge(sim)
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "not found") })
        .with_state(state)
}

fn count_fault(state: &SimState, endpoint: &str, kind: FaultKind) {
    state.stats.endpoint(endpoint, |stats| {
        *stats.faults.entry(kind.name()).or_default() += 1
    });
}

/// Budgets, faults and stats around every upstream-shaped endpoint. Data API v2 responses all
/// carry an `x-trace-id` header, errors included, as upstream's do.
async fn api_middleware(
    State(state): State<Arc<SimState>>,
    matched: MatchedPath,
    request: Request,
    next: Next,
) -> Response {
    let is_v2 = matched.as_str().starts_with("/data/v2/");
    let mut response = api_middleware_inner(Arc::clone(&state), matched, request, next).await;
    if is_v2
        && !response.headers().contains_key("x-trace-id")
        && let Ok(value) = HeaderValue::from_str(&state.next_trace_id())
    {
        response.headers_mut().insert("x-trace-id", value);
    }
    response
}

async fn api_middleware_inner(
    state: Arc<SimState>,
    matched: MatchedPath,
    request: Request,
    next: Next,
) -> Response {
    let endpoint = matched.as_str().to_owned();
    let path = request.uri().path().to_owned();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |value| value.as_str().to_owned());
    state.stats.endpoint(&endpoint, |stats| stats.requests += 1);
    state
        .stats
        .pass_retry_gate(&endpoint, &path_and_query, Instant::now());

    match state.budgets.admit(&endpoint, Instant::now()) {
        BudgetDecision::Proceed => {}
        BudgetDecision::Throttle(delay) => {
            state.stats.endpoint(&endpoint, |stats| {
                stats.throttled += 1;
                stats.throttled_delay_ms += delay.as_millis() as u64;
            });
            tokio::time::sleep(delay).await;
        }
        BudgetDecision::Reject(retry_after) => {
            state
                .stats
                .endpoint(&endpoint, |stats| stats.rejected_429 += 1);
            let mut response = data::v2_error(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "rate limit exceeded",
                None,
            );
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
    }

    let fired = state.faults.fire_http(&path);
    let mut body_faults = Vec::new();
    for rule in &fired {
        count_fault(&state, &endpoint, rule.kind);
        match rule.kind {
            FaultKind::Error => {
                let status = StatusCode::from_u16(rule.status.unwrap_or(500))
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let body = if endpoint.starts_with("/data/v2/") {
                    serde_json::json!({"error": "injected failure", "code": if status == StatusCode::SERVICE_UNAVAILABLE { "request_timeout" } else { "internal" }, "retryable": true, "trace_id": state.next_trace_id(), "parameter": null})
                } else {
                    serde_json::json!({"error": "injected failure"})
                };
                let mut response = json_value(status, &body);
                if matches!(
                    status,
                    StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
                ) {
                    let retry_after = rule.retry_after.unwrap_or(Duration::from_secs(1));
                    let seconds =
                        (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1);
                    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                        response.headers_mut().insert(header::RETRY_AFTER, value);
                    }
                    state.stats.gate_retry(
                        &path_and_query,
                        Instant::now() + Duration::from_secs(seconds),
                    );
                }
                return response;
            }
            FaultKind::Slow => {
                tokio::time::sleep(rule.delay.unwrap_or(Duration::from_secs(1))).await
            }
            FaultKind::Timeout => {
                tokio::time::sleep(rule.delay.unwrap_or(Duration::from_secs(60))).await;
                let mut response = Response::new(Body::empty());
                *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
                return response;
            }
            other => body_faults.push((other, rule.field.clone())),
        }
    }

    let response = next.run(request).await;
    if body_faults.is_empty() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "body read failed");
    };
    let mut bytes = bytes.to_vec();
    for (kind, field) in body_faults {
        bytes = crate::faults::transform_body(kind, field.as_deref(), &bytes);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}
