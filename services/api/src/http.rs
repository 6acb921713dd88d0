//! The middleware around `/v1/*`: authentication, limits, usage, the `X-RateLimit-*` and
//! `X-Data-Retention` headers, metrics and request logs.

use std::{sync::OnceLock, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use polytape_runtime::metrics::{counter_vec, histogram_vec};
use prometheus::{HistogramVec, IntCounterVec};

use crate::{error::ApiError, limits::RateInfo, state::AppState};

struct Metrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

fn metrics() -> Option<&'static Metrics> {
    static METRICS: OnceLock<Option<Metrics>> = OnceLock::new();
    METRICS
        .get_or_init(|| {
            Some(Metrics {
                requests: counter_vec(
                    "polytape_api_requests_total",
                    "API requests by route and status",
                    &["route", "status"],
                )?,
                duration: histogram_vec(
                    "polytape_api_request_duration_seconds",
                    "API request latency by route",
                    &["route"],
                    vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                )?,
            })
        })
        .as_ref()
}

/// The key sent in `X-API-Key`, else in `Authorization: Bearer`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get("x-api-key") {
        return Some(value.to_str().unwrap_or_default().trim());
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

fn set_rate_headers(headers: &mut HeaderMap, info: &RateInfo) {
    let pairs = [
        ("x-ratelimit-limit", info.daily_cap.to_string()),
        ("x-ratelimit-remaining", info.daily_remaining.to_string()),
        ("x-ratelimit-reset", info.reset_epoch_s.to_string()),
        ("x-ratelimit-rps", info.rps.to_string()),
        (
            "x-ratelimit-burst-remaining",
            info.burst_remaining.to_string(),
        ),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// Authenticates, applies the key's limits, then runs the handler.
pub async fn authenticated(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let outcome = match presented_key(request.headers()) {
        None => Err((ApiError::MissingApiKey, None, None)),
        Some(presented) => match state.keys.authenticate(presented, state.now_ms()) {
            Err(error) => Err((error, None, None)),
            Ok(key) => match state.limiter.admit(&key) {
                Ok(info) => Ok((key.prefix, info)),
                Err((error, info)) => Err((error, Some(key.prefix), Some(info))),
            },
        },
    };
    let (response, key_prefix) = match outcome {
        Ok((key_prefix, info)) => {
            let mut response = next.run(request).await;
            set_rate_headers(response.headers_mut(), &info);
            (response, Some(key_prefix))
        }
        Err((error, key_prefix, info)) => {
            let mut response = error.into_response();
            if let Some(info) = info {
                set_rate_headers(response.headers_mut(), &info);
            }
            (response, key_prefix)
        }
    };
    let status = response.status();
    if let Some(metrics) = metrics() {
        metrics
            .requests
            .with_label_values(&[route.as_str(), status.as_str()])
            .inc();
        metrics
            .duration
            .with_label_values(&[route.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    // Only the public prefix is ever logged, never the key.
    tracing::debug!(
        route = %route,
        status = status.as_u16(),
        key_prefix = key_prefix.as_deref().unwrap_or("-"),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

/// Adds `X-Data-Retention` to responses of endpoints that cover time (errors included).
pub async fn retention_header(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&state.retention_label()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-data-retention"), value);
    }
    response
}
