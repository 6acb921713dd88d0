//! The REST API for paying users: API keys, plans, rate limits and the market-data endpoints.
//!
//! Every `/v1/*` request is authenticated against an in-memory copy of `api_keys` (refreshed
//! from ClickHouse every `api_key_refresh_interval`), passes the key's token bucket and daily
//! cap, and is answered from ClickHouse with bound parameters and `FINAL` reads. The OpenAPI
//! document is generated from the handlers (`/openapi.json`) and rendered at `/docs`.

pub mod cli;
pub mod clock;
mod config;
pub mod docs;
pub mod error;
pub mod export;
pub mod http;
pub mod keys;
pub mod limits;
pub mod openapi;
pub mod params;
pub mod routes;
pub mod state;
pub mod store;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{StatusCode, header},
    middleware::from_fn_with_state,
    response::{Html, IntoResponse},
    routing::{get, post},
};
pub use config::ApiConfig;
use polytape_runtime::{BoxError, Readiness, ReadinessHandle, ServiceContext};
use tokio_util::sync::CancellationToken;

use crate::{
    clock::{Clock, SystemClock},
    keys::{KeyCache, KeyError, KeyStore},
    limits::Limiter,
    routes::{admin, alert_rules, book, continuity, markets, rankings, series, signals, trades},
    state::AppState,
    store::Store,
};

/// State for a replica talking to `client`.
pub fn new_state(
    client: clickhouse::Client,
    clock: Arc<dyn Clock>,
    retention_ms: i64,
    admin_token: Option<String>,
) -> AppState {
    AppState {
        store: Store::new(client),
        limiter: Arc::new(Limiter::new(clock.clone())),
        clock,
        keys: Arc::new(KeyCache::new()),
        retention_ms,
        admin_token: admin_token.map(Arc::from),
        admin_failures: Arc::default(),
    }
}

/// The public port: the keyed `/v1/*` and the open `/health`, `/openapi.json`, `/docs` —
/// nothing else. Every request is bounded in time, body size and concurrency.
pub fn router(state: AppState) -> Router {
    let timed = Router::new()
        .route("/v1/trades", get(trades::list_trades))
        .route("/v1/candles", get(series::candles))
        .route("/v1/orderbook", get(book::orderbook))
        .route("/v1/prices/history", get(series::price_history))
        .route("/v1/continuity", get(continuity::continuity))
        .route("/v1/signals", get(signals::signals))
        .route("/v1/rankings", get(rankings::rankings))
        .route_layer(from_fn_with_state(state.clone(), http::retention_header));
    let keyed = Router::new()
        .route("/v1/markets", get(markets::list_markets))
        .route("/v1/markets/{condition_id}", get(markets::get_market))
        .route("/v1/events", get(markets::list_events))
        .route("/v1/events/{event_id}", get(markets::get_event))
        .merge(timed)
        .route_layer(from_fn_with_state(state.clone(), http::authenticated));
    let spec = Arc::new(openapi::openapi_json());
    let page = Arc::new(docs::render(
        &serde_json::from_str(&spec).unwrap_or_default(),
    ));
    let public = Router::new()
        .merge(keyed)
        .route("/health", get(|| async { "ok\n" }))
        .route(
            "/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        spec.to_string(),
                    )
                }
            }),
        )
        .route(
            "/docs",
            get(move || {
                let page = page.clone();
                async move { Html(page.to_string()) }
            }),
        )
        .with_state(state);
    with_fallbacks(bounded(public))
}

/// The internal admin port: `/healthz`, `/readyz`, `/metrics` like every service's, and the
/// key administration `/admin/*` behind the admin token. Never exposed publicly.
pub fn admin_router(state: AppState, readiness: Readiness) -> Router {
    let admin = Router::new()
        .route("/admin/keys", get(admin::list_keys).post(admin::create_key))
        .route("/admin/keys/{key}/revoke", post(admin::revoke_key))
        .route("/admin/keys/{key}/rotate", post(admin::rotate_key))
        .route("/admin/usage", get(admin::usage))
        .route(
            "/admin/alert-rules",
            get(alert_rules::list_rules).post(alert_rules::create_rule),
        )
        .route(
            "/admin/alert-rules/{rule_id}",
            get(alert_rules::get_rule).put(alert_rules::update_rule),
        )
        .route(
            "/admin/alert-rules/{rule_id}/history",
            get(alert_rules::rule_history),
        )
        .route(
            "/admin/alert-rules/{rule_id}/disable",
            post(alert_rules::disable_rule),
        )
        .route(
            "/admin/alert-rules/{rule_id}/test",
            post(alert_rules::test_rule),
        )
        .route(
            "/admin/openapi.json",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    openapi::admin_openapi_json(),
                )
            }),
        )
        .route_layer(from_fn_with_state(state.clone(), admin::require_admin))
        .with_state(state);
    with_fallbacks(bounded(
        admin.merge(polytape_runtime::admin::admin_router(readiness)),
    ))
}

/// Most time one request may take, end to end; ClickHouse queries have their own, shorter
/// `max_execution_time` so the user gets ClickHouse's reason rather than this timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest one ClickHouse query of the API may run (ClickHouse's `max_execution_time`);
/// past it the request answers 400 `query_too_large`.
pub const QUERY_TIME_LIMIT_SECONDS: u64 = 20;
/// Most rows one ClickHouse query of the API may read (`max_rows_to_read`), likewise.
pub const QUERY_ROW_LIMIT: u64 = 200_000_000;
/// Most requests one replica works on at once; more wait (bounded by the timeout).
pub const MAX_CONCURRENT_REQUESTS: usize = 256;
/// Largest request body accepted (the admin POST routes take small JSON objects).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

fn bounded(router: Router) -> Router {
    router
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            MAX_CONCURRENT_REQUESTS,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
}

fn with_fallbacks(router: Router) -> Router {
    router
        .fallback(|| async {
            error::envelope(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see /docs",
            )
        })
        .method_not_allowed_fallback(|| async {
            error::envelope(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed; see /docs",
            )
            .into_response()
        })
}

/// Why a refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot write or read usage: {0}")]
    Usage(#[from] clickhouse::error::Error),
}

/// One refresh: write this replica's pending usage, reload every key, read today's usage of
/// every replica.
pub async fn refresh_once(state: &AppState) -> Result<(), RefreshError> {
    state.limiter.flush_usage(&state.store).await?;
    let rows = KeyStore::new(state.store.clone()).load_all().await?;
    state.keys.replace(rows);
    state.limiter.read_shared_usage(&state.store).await?;
    Ok(())
}

/// Refreshes every `interval` until `stop`, then writes the last usage. `readiness` (when
/// given) turns false once refreshes have failed for longer than [`stale_after`], so a replica
/// that can no longer see revocations is taken out of rotation instead of serving stale keys.
pub async fn run_refresher(
    state: AppState,
    interval: Duration,
    stop: CancellationToken,
    readiness: Option<ReadinessHandle>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_success = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => match refresh_once(&state).await {
                Ok(()) => {
                    last_success = tokio::time::Instant::now();
                    if let Some(readiness) = &readiness {
                        readiness.set_ready(true);
                    }
                }
                Err(error) => {
                    let stale = last_success.elapsed() > stale_after(interval);
                    tracing::warn!(error = %error, stale, "key and usage refresh failed; serving with the last known keys");
                    if stale && let Some(readiness) = &readiness {
                        readiness.set_ready(false);
                    }
                }
            },
        }
    }
    if let Err(error) = state.limiter.flush_usage(&state.store).await {
        tracing::warn!(error = %error, "could not write the last usage at shutdown");
    }
}

/// How long refreshes may fail before the replica reports itself not ready: ten intervals,
/// at least 30 s (a ClickHouse restart should not take every replica out at once).
pub fn stale_after(interval: Duration) -> Duration {
    (interval * 10).max(Duration::from_secs(30))
}

/// Checks ClickHouse, applies migrations, stores the bootstrap key, loads keys, binds the API
/// port and serves.
pub async fn start(config: ApiConfig, context: ServiceContext) -> Result<(), BoxError> {
    let migrations_client = polytape_clickhouse::client(&config.clickhouse);
    polytape_clickhouse::check_reachable(
        &migrations_client,
        &config.clickhouse.clickhouse_url,
        Duration::from_secs(5),
    )
    .await?;
    // Idempotent, like the sink's start: the API can start first on an empty server.
    polytape_clickhouse::migrate(
        &migrations_client,
        &config.clickhouse.clickhouse_database,
        config.retention_days(),
    )
    .await?;
    // ClickHouse stops a request's query past this itself, so the user gets ClickHouse's
    // reason (400 `query_too_large`) before the router's own REQUEST_TIMEOUT; likewise for a
    // query that would read too many rows.
    let client = migrations_client
        .with_setting("max_execution_time", QUERY_TIME_LIMIT_SECONDS.to_string())
        .with_setting("max_rows_to_read", QUERY_ROW_LIMIT.to_string());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let retention_ms = i64::try_from(config.api_data_retention.as_millis()).unwrap_or(i64::MAX);
    let state = new_state(
        client,
        clock.clone(),
        retention_ms,
        config.api_admin_token.clone(),
    );
    if let Some(bootstrap) = &config.api_bootstrap_key {
        KeyStore::new(state.store.clone())
            .ensure_bootstrap(bootstrap, clock.now_ms())
            .await?;
    }
    refresh_once(&state).await?;
    tracing::info!(keys = state.keys.len(), "api keys loaded");

    let listener = tokio::net::TcpListener::bind(config.api_addr).await.map_err(|error| {
        format!(
            "cannot listen on {} for the API ({error}); set POLYTAPE_API_ADDR to a free address",
            config.api_addr
        )
    })?;
    let admin_listener = tokio::net::TcpListener::bind(config.api_admin_addr)
        .await
        .map_err(|error| {
            format!(
                "cannot listen on {} for the admin endpoints ({error}); set POLYTAPE_API_ADMIN_ADDR to a free address",
                config.api_admin_addr
            )
        })?;
    let public = router(state.clone());
    let admin = admin_router(state.clone(), context.readiness.clone());
    let serving = context.readiness.register("http");
    let keys_fresh = context.readiness.register("keys");
    keys_fresh.set_ready(true);
    let refresher_stop = context.shutdown.token();
    let interval = config.api_key_refresh_interval;
    context.shutdown.spawn("key-refresher", async move {
        run_refresher(state, interval, refresher_stop, Some(keys_fresh)).await;
        Ok(())
    });
    let stop = context.shutdown.token();
    context.shutdown.spawn("admin-server", async move {
        tracing::info!(addr = %admin_listener.local_addr()?, "admin endpoints listening");
        axum::serve(
            admin_listener,
            admin.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await?;
        Ok(())
    });
    let stop = context.shutdown.token();
    context.shutdown.spawn("http", async move {
        tracing::info!(addr = %listener.local_addr()?, "api listening");
        serving.set_ready(true);
        axum::serve(listener, public)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await?;
        Ok(())
    });
    Ok(())
}
