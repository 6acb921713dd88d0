//! `/admin/*`: key management and usage, behind `POLYTAPE_API_ADMIN_TOKEN`, served on the
//! internal admin port only (`api_admin_addr`). Documented in a second OpenAPI document,
//! `/admin/openapi.json` on that port, so clients never see it.

use axum::{
    Json,
    extract::{Path, RawQuery, Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    clock::{utc_date_text, utc_day},
    error::{ApiError, ErrorEnvelope},
    keys::{ApiKeyRow, KeySpec, KeyStore, is_prefix, lookup_prefix},
    params::Params,
    state::AppState,
};

/// Failed admin-token attempts one client address may make per window before it is refused
/// without the token even being compared (a guessing attacker gains nothing by trying faster).
pub const ADMIN_FAILURES_PER_WINDOW: u32 = 10;
/// The window over which failed attempts count.
pub const ADMIN_FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// Addresses remembered at most; older windows are forgotten first.
const ADMIN_FAILURE_ADDRESSES: usize = 10_000;

/// Failed admin-token attempts per client address, in fixed windows.
#[derive(Debug, Default)]
pub struct AdminFailures {
    by_address:
        std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (std::time::Instant, u32)>>,
}

impl AdminFailures {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<std::net::IpAddr, (std::time::Instant, u32)>,
    > {
        self.by_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Seconds until `address` may try again, if it used up its failures in this window.
    pub fn blocked_for(&self, address: std::net::IpAddr, now: std::time::Instant) -> Option<u64> {
        let by_address = self.lock();
        let (window_start, failures) = by_address.get(&address)?;
        let window_end = *window_start + ADMIN_FAILURE_WINDOW;
        (failures >= &ADMIN_FAILURES_PER_WINDOW && now < window_end)
            .then(|| window_end.duration_since(now).as_secs().max(1))
    }

    pub fn record_failure(&self, address: std::net::IpAddr, now: std::time::Instant) {
        let mut by_address = self.lock();
        if by_address.len() >= ADMIN_FAILURE_ADDRESSES {
            by_address.retain(|_, (start, _)| now < *start + ADMIN_FAILURE_WINDOW);
            if by_address.len() >= ADMIN_FAILURE_ADDRESSES {
                by_address.clear();
            }
        }
        let entry = by_address.entry(address).or_insert((now, 0));
        if now >= entry.0 + ADMIN_FAILURE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// Checks the admin token (constant time) before any admin handler runs; a client address
/// that failed too often in the current window is refused with 429 before any comparison.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.admin_token.clone() else {
        return ApiError::AdminDisabled.into_response();
    };
    let address = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(
            std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            |info| info.0.ip(),
        );
    let now = std::time::Instant::now();
    if let Some(retry_after_s) = state.admin_failures.blocked_for(address, now) {
        return ApiError::AdminThrottled { retry_after_s }.into_response();
    }
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .or_else(|| {
            request
                .headers()
                .get("x-admin-token")
                .and_then(|value| value.to_str().ok())
        });
    match presented {
        Some(presented) if crate::keys::secrets_equal(presented, &expected) => {
            next.run(request).await
        }
        _ => {
            state.admin_failures.record_failure(address, now);
            tracing::warn!(client = %address, "admin request with a missing or wrong token");
            ApiError::AdminUnauthorized.into_response()
        }
    }
}

/// A key as admins see it (never its hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub key_prefix: String,
    pub name: String,
    pub plan: String,
    pub status: String,
    pub rps: u32,
    pub daily_cap: u64,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

impl From<&ApiKeyRow> for KeyView {
    fn from(row: &ApiKeyRow) -> Self {
        Self {
            key_prefix: row.key_prefix.clone(),
            name: row.name.clone(),
            plan: row.plan.clone(),
            status: row.status_name().to_owned(),
            rps: row.rps,
            daily_cap: row.daily_cap,
            created_at_ms: row.created_at,
            expires_at_ms: row.expires_at,
            updated_at_ms: row.updated_at,
        }
    }
}

/// A new key: the plaintext appears here once and nowhere else.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub key: String,
    #[serde(flatten)]
    pub details: KeyView,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    pub name: String,
    pub plan: String,
    pub rps: Option<u32>,
    pub daily_cap: Option<u64>,
    /// e.g. `30d`, `12h`.
    pub expires_in: Option<String>,
}

/// Parses `30d`-style durations into milliseconds.
pub fn parse_expires_in(text: &str) -> Result<i64, ApiError> {
    let duration = humantime::parse_duration(text).map_err(|error| {
        ApiError::invalid(format!(
            "expires_in {text:?} is not a duration like 30d ({error})"
        ))
    })?;
    i64::try_from(duration.as_millis())
        .ok()
        .filter(|ms| *ms > 0)
        .ok_or_else(|| ApiError::invalid("expires_in must be positive"))
}

fn store(state: &AppState) -> KeyStore {
    KeyStore::new(state.store.clone())
}

/// The prefix named by a path segment: a prefix, or a whole key.
fn prefix_of(text: &str) -> String {
    if is_prefix(text) {
        text.to_owned()
    } else {
        lookup_prefix(text)
    }
}

#[utoipa::path(
    post,
    path = "/admin/keys",
    tag = "admin",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "The new key; its plaintext is shown here only", body = CreatedKey),
        (status = 400, description = "Invalid body", body = ErrorEnvelope),
    ),
)]
pub async fn create_key(
    State(state): State<AppState>,
    body: Result<Json<CreateKeyRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let Json(request) = body.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let spec = KeySpec {
        name: request.name,
        plan: request.plan,
        rps: request.rps,
        daily_cap: request.daily_cap,
        expires_in_ms: request
            .expires_in
            .as_deref()
            .map(parse_expires_in)
            .transpose()?,
    };
    let (key, row) = store(&state).create(&spec, state.now_ms()).await?;
    state.keys.upsert(row.clone());
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: key.plaintext,
            details: KeyView::from(&row),
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/admin/keys",
    tag = "admin",
    responses(
        (status = 200, description = "Every key (never a secret or hash)", body = Vec<KeyView>),
        (status = 400, description = "Unknown parameter", body = ErrorEnvelope),
    ),
)]
pub async fn list_keys(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    Params::parse(raw.as_deref(), &[])?;
    let rows = store(&state).load_all().await?;
    Ok(Json(rows.iter().map(KeyView::from).collect()))
}

#[utoipa::path(
    post,
    path = "/admin/keys/{key}/revoke",
    tag = "admin",
    params(("key" = String, Path, description = "The key's public prefix (`pt_<12 hex>`) or the whole key")),
    responses(
        (status = 200, description = "The revoked key", body = KeyView),
        (status = 404, description = "No such key", body = ErrorEnvelope),
    ),
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    Path(key_or_prefix): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let row = store(&state)
        .revoke(&prefix_of(&key_or_prefix), state.now_ms())
        .await?;
    state.keys.upsert(row.clone());
    Ok(Json(KeyView::from(&row)))
}

#[utoipa::path(
    post,
    path = "/admin/keys/{key}/rotate",
    tag = "admin",
    params(("key" = String, Path, description = "The key's public prefix (`pt_<12 hex>`) or the whole key")),
    responses(
        (status = 201, description = "The successor key (the old one is revoked); its plaintext is shown here only", body = CreatedKey),
        (status = 404, description = "No such key", body = ErrorEnvelope),
        (status = 400, description = "The key cannot be rotated (e.g. already revoked)", body = ErrorEnvelope),
    ),
)]
pub async fn rotate_key(
    State(state): State<AppState>,
    Path(key_or_prefix): Path<String>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let prefix = prefix_of(&key_or_prefix);
    let store = store(&state);
    let (key, row) = store.rotate(&prefix, state.now_ms()).await?;
    state.keys.upsert(row.clone());
    if let Some(old) = store.find(&prefix).await? {
        state.keys.upsert(old);
    }
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: key.plaintext,
            details: KeyView::from(&row),
        }),
    ))
}

/// Requests per key per UTC day.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    pub key_prefix: String,
    /// `YYYY-MM-DD`.
    pub day: String,
    pub requests: u64,
    pub rejected: u64,
}

/// `GET /admin/usage?key_prefix=&from=&to=` (days inclusive, default: the last 30 days).
#[utoipa::path(
    get,
    path = "/admin/usage",
    tag = "admin",
    params(
        ("key_prefix" = Option<String>, Query, description = "Only this key"),
        ("from" = Option<String>, Query, description = "First day (RFC 3339 or epoch ms; default: 30 days ago)"),
        ("to" = Option<String>, Query, description = "Last day, inclusive (default: today, UTC)"),
    ),
    responses(
        (status = 200, description = "Requests and rejections per key per UTC day", body = Vec<UsageView>),
        (status = 400, description = "Invalid or unknown parameter", body = ErrorEnvelope),
    ),
)]
pub async fn usage(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<UsageView>>, ApiError> {
    let params = Params::parse(raw.as_deref(), &["key_prefix", "from", "to"])?;
    // Usage counted on this replica but not yet written shows up too.
    state.limiter.flush_usage(&state.store).await?;
    let today = utc_day(state.now_ms());
    let to_day = params.time_ms("to")?.map_or(today, utc_day);
    let from_day = params.time_ms("from")?.map_or(today - 30, utc_day);
    let key_prefix = params.text("key_prefix")?;
    let rows = state
        .store
        .usage(
            &utc_date_text(from_day.max(0)),
            &utc_date_text(to_day.max(0)),
            key_prefix,
        )
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| UsageView {
                key_prefix: row.key_prefix,
                day: utc_date_text(i64::from(row.day)),
                requests: row.requests,
                rejected: row.rejected,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use std::{net::IpAddr, time::Instant};

    use super::*;

    #[test]
    fn an_address_is_refused_after_its_failures_until_the_window_ends() {
        let failures = AdminFailures::default();
        let attacker: IpAddr = "10.0.0.1".parse().unwrap();
        let operator: IpAddr = "10.0.0.2".parse().unwrap();
        let start = Instant::now();
        for _ in 0..ADMIN_FAILURES_PER_WINDOW {
            assert_eq!(failures.blocked_for(attacker, start), None);
            failures.record_failure(attacker, start);
        }
        assert_eq!(failures.blocked_for(attacker, start), Some(60));
        // Another address is not affected.
        assert_eq!(failures.blocked_for(operator, start), None);
        // After the window the attacker may try again.
        assert_eq!(
            failures.blocked_for(attacker, start + ADMIN_FAILURE_WINDOW),
            None
        );
    }
}
