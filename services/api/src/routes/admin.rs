//! `/admin/*`: key management and usage, behind `POLYTAPE_API_ADMIN_TOKEN`. Not part of the
//! public OpenAPI document (it is for operators, not clients); see the README.

use axum::{
    Json,
    extract::{Path, RawQuery, Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use clickhouse::Row;
use serde::{Deserialize, Serialize};

use crate::{
    clock::{day_text, utc_day},
    error::ApiError,
    keys::{ApiKeyRow, KeySpec, KeyStore, is_prefix, lookup_prefix},
    params::Params,
    state::AppState,
};

/// Checks the admin token (constant time) before any admin handler runs.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.admin_token.clone() else {
        return ApiError::AdminDisabled.into_response();
    };
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
        _ => ApiError::AdminUnauthorized.into_response(),
    }
}

/// A key as admins see it (never its hash).
#[derive(Debug, Serialize)]
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
#[derive(Debug, Serialize)]
pub struct CreatedKey {
    pub key: String,
    #[serde(flatten)]
    pub details: KeyView,
}

#[derive(Debug, Deserialize)]
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
    KeyStore::new(state.client.clone())
}

/// The prefix named by a path segment: a prefix, or a whole key.
fn prefix_of(text: &str) -> String {
    if is_prefix(text) {
        text.to_owned()
    } else {
        lookup_prefix(text)
    }
}

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

pub async fn list_keys(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    Params::parse(raw.as_deref(), &[])?;
    let rows = store(&state).load_all().await?;
    Ok(Json(rows.iter().map(KeyView::from).collect()))
}

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

#[derive(Debug, Row, Deserialize)]
struct UsageTotalRow {
    key_prefix: String,
    day: u16,
    requests: u64,
    rejected: u64,
}

/// Requests per key per UTC day.
#[derive(Debug, Serialize)]
pub struct UsageView {
    pub key_prefix: String,
    /// `YYYY-MM-DD`.
    pub day: String,
    pub requests: u64,
    pub rejected: u64,
}

/// `GET /admin/usage?key_prefix=&from=&to=` (days inclusive, default: the last 30 days).
pub async fn usage(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<UsageView>>, ApiError> {
    let params = Params::parse(raw.as_deref(), &["key_prefix", "from", "to"])?;
    // Usage counted on this replica but not yet written shows up too.
    state.limiter.flush_usage(&state.client).await?;
    let today = utc_day(state.now_ms());
    let to_day = params.time_ms("to")?.map_or(today, utc_day);
    let from_day = params.time_ms("from")?.map_or(today - 30, utc_day);
    let key_prefix = params.text("key_prefix")?;
    let mut sql = "SELECT key_prefix, day, sum(requests) AS requests, sum(rejected) AS rejected FROM api_usage \
                   WHERE day >= toDate(?) AND day <= toDate(?)"
        .to_owned();
    if key_prefix.is_some() {
        sql.push_str(" AND key_prefix = ?");
    }
    sql.push_str(" GROUP BY key_prefix, day ORDER BY key_prefix, day");
    let mut query = state
        .client
        .query(&sql)
        .bind(day_text(from_day.max(0)))
        .bind(day_text(to_day.max(0)));
    if let Some(prefix) = key_prefix {
        query = query.bind(prefix);
    }
    let rows: Vec<UsageTotalRow> = query.fetch_all().await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| UsageView {
                key_prefix: row.key_prefix,
                day: day_text(i64::from(row.day)),
                requests: row.requests,
                rejected: row.rejected,
            })
            .collect(),
    ))
}
