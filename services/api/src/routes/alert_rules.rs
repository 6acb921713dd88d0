//! `/admin/alert-rules`: list, create, update, disable and test-fire the alert rules the signals
//! service applies (it reads them every `alert_rules_refresh`, 2 s by default, without a
//! restart). Every change is a new version; `GET /admin/alert-rules/{id}/history` is the audit
//! trail. On the admin port, behind the admin token, like the key routes.

use std::time::Duration;

use axum::{
    Json,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
};
use polytape_clickhouse::alerts::{AlertDeliveryRow, AlertTestRow, RuleChange};
use polytape_model::alerts::{AlertRule, AlertRuleSpec};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{error::ApiError, params::Params, state::AppState};

/// Who made a change: the `X-Polytape-Actor` header (an operator's name or a tool's), else
/// `admin-api`.
pub const ACTOR_HEADER: &str = "x-polytape-actor";
/// How long a test-fire request waits for the signals service's deliveries.
const TEST_FIRE_WAIT: Duration = Duration::from_secs(15);

/// One version of a rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertRuleView {
    pub rule_id: String,
    pub version: i32,
    pub changed_at_ms: i64,
    pub changed_by: String,
    /// What the rule says: `enabled`, `description`, `kinds`, `least` (input → least
    /// magnitude), `scope` (`condition_ids`, `event_ids`, `token_ids`, `wallets`, `tags`),
    /// `cooldown_ms`, `destinations`.
    #[schema(value_type = Object)]
    pub spec: AlertRuleSpec,
}

impl From<AlertRule> for AlertRuleView {
    fn from(rule: AlertRule) -> Self {
        Self {
            rule_id: rule.rule_id,
            version: rule.version,
            changed_at_ms: rule.changed_at_ms,
            changed_by: rule.changed_by,
            spec: rule.spec,
        }
    }
}

/// A new rule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRuleRequest {
    /// 1 to 64 of `a-z 0-9 - _`.
    pub rule_id: String,
    #[schema(value_type = Object)]
    pub spec: AlertRuleSpec,
}

/// A rule's next version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRuleRequest {
    /// The version the change is based on; refused with 409 if the rule moved on since.
    pub expected_version: Option<i32>,
    #[schema(value_type = Object)]
    pub spec: AlertRuleSpec,
}

/// A test fire and what came of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestFireView {
    /// The made-up signal's id (`test-…`): the `Idempotency-Key` the destinations saw.
    pub test_id: String,
    /// False if the signals service had not delivered to every destination within 15 s (the
    /// deliveries then appear in `alert_deliveries` later).
    pub complete: bool,
    pub deliveries: Vec<DeliveryView>,
}

/// One delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub destination_id: String,
    /// `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub delivery_ms: i64,
}

impl From<AlertDeliveryRow> for DeliveryView {
    fn from(row: AlertDeliveryRow) -> Self {
        Self {
            status: row.status_name().to_owned(),
            destination_id: row.destination_id,
            attempts: row.attempts,
            response_code: row.response_code,
            error: row.error,
            delivery_ms: row.delivery_ms,
        }
    }
}

fn actor(headers: &HeaderMap) -> String {
    headers
        .get(ACTOR_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|actor| !actor.is_empty())
        .map_or_else(
            || "admin-api".to_owned(),
            |actor| actor.chars().take(64).collect(),
        )
}

/// 16 random bytes, hex.
pub fn random_id() -> String {
    let mut bytes = [0_u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn json_body<T>(
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, ApiError> {
    body.map(|Json(value)| value)
        .map_err(|rejection| ApiError::invalid(rejection.body_text()))
}

#[utoipa::path(
    get,
    path = "/admin/alert-rules",
    tag = "alerts",
    responses(
        (status = 200, description = "The current version of every rule, by id", body = Vec<AlertRuleView>),
        (status = 400, description = "Unknown parameter", body = crate::error::ErrorEnvelope),
    ),
)]
pub async fn list_rules(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<AlertRuleView>>, ApiError> {
    Params::parse(raw.as_deref(), &[])?;
    let rules = state.store.alerts().current_rules().await?;
    Ok(Json(rules.into_iter().map(AlertRuleView::from).collect()))
}

#[utoipa::path(
    post,
    path = "/admin/alert-rules",
    tag = "alerts",
    request_body = CreateRuleRequest,
    params(("X-Polytape-Actor" = Option<String>, Header, description = "Who makes the change (kept in the rule's history)")),
    responses(
        (status = 201, description = "The rule, at version 1", body = AlertRuleView),
        (status = 400, description = "Invalid rule (every problem listed)", body = crate::error::ErrorEnvelope),
        (status = 409, description = "A rule with this id exists", body = crate::error::ErrorEnvelope),
    ),
)]
pub async fn create_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<CreateRuleRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<AlertRuleView>), ApiError> {
    let request = json_body(body)?;
    let rule = state
        .store
        .alerts()
        .change_rule(RuleChange {
            rule_id: request.rule_id,
            spec: request.spec,
            changed_by: actor(&headers),
            change_id: random_id(),
            now_ms: state.now_ms(),
            expected_version: Some(0),
            must_exist: false,
        })
        .await?;
    tracing::info!(rule_id = %rule.rule_id, version = rule.version, changed_by = %rule.changed_by, "alert rule created");
    Ok((StatusCode::CREATED, Json(rule.into())))
}

#[utoipa::path(
    get,
    path = "/admin/alert-rules/{rule_id}",
    tag = "alerts",
    params(("rule_id" = String, Path, description = "The rule's id")),
    responses(
        (status = 200, description = "The rule's current version", body = AlertRuleView),
        (status = 404, description = "No such rule", body = crate::error::ErrorEnvelope),
    ),
)]
pub async fn get_rule(
    State(state): State<AppState>,
    Path(rule_id): Path<String>,
) -> Result<Json<AlertRuleView>, ApiError> {
    state
        .store
        .alerts()
        .current_rule(&rule_id)
        .await?
        .map(|rule| Json(rule.into()))
        .ok_or_else(|| ApiError::not_found(format!("alert rule {rule_id:?} does not exist")))
}

#[utoipa::path(
    get,
    path = "/admin/alert-rules/{rule_id}/history",
    tag = "alerts",
    params(("rule_id" = String, Path, description = "The rule's id")),
    responses(
        (status = 200, description = "Every version, oldest first: who changed what, when", body = Vec<AlertRuleView>),
        (status = 404, description = "No such rule", body = crate::error::ErrorEnvelope),
    ),
)]
pub async fn rule_history(
    State(state): State<AppState>,
    Path(rule_id): Path<String>,
) -> Result<Json<Vec<AlertRuleView>>, ApiError> {
    let history = state.store.alerts().rule_history(&rule_id).await?;
    if history.is_empty() {
        return Err(ApiError::not_found(format!(
            "alert rule {rule_id:?} does not exist"
        )));
    }
    Ok(Json(history.into_iter().map(AlertRuleView::from).collect()))
}

#[utoipa::path(
    put,
    path = "/admin/alert-rules/{rule_id}",
    tag = "alerts",
    request_body = UpdateRuleRequest,
    params(
        ("rule_id" = String, Path, description = "The rule's id"),
        ("X-Polytape-Actor" = Option<String>, Header, description = "Who makes the change (kept in the rule's history)"),
    ),
    responses(
        (status = 200, description = "The rule's new version", body = AlertRuleView),
        (status = 400, description = "Invalid rule (every problem listed)", body = crate::error::ErrorEnvelope),
        (status = 404, description = "No such rule", body = crate::error::ErrorEnvelope),
        (status = 409, description = "The rule changed since `expected_version`", body = crate::error::ErrorEnvelope),
    ),
)]
pub async fn update_rule(
    State(state): State<AppState>,
    Path(rule_id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<UpdateRuleRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<AlertRuleView>, ApiError> {
    let request = json_body(body)?;
    let rule = state
        .store
        .alerts()
        .change_rule(RuleChange {
            rule_id,
            spec: request.spec,
            changed_by: actor(&headers),
            change_id: random_id(),
            now_ms: state.now_ms(),
            expected_version: request.expected_version,
            must_exist: true,
        })
        .await?;
    tracing::info!(rule_id = %rule.rule_id, version = rule.version, changed_by = %rule.changed_by, "alert rule updated");
    Ok(Json(rule.into()))
}

#[utoipa::path(
    post,
    path = "/admin/alert-rules/{rule_id}/disable",
    tag = "alerts",
    params(
        ("rule_id" = String, Path, description = "The rule's id"),
        ("X-Polytape-Actor" = Option<String>, Header, description = "Who makes the change (kept in the rule's history)"),
    ),
    responses(
        (status = 200, description = "The rule's new, disabled version", body = AlertRuleView),
        (status = 404, description = "No such rule", body = crate::error::ErrorEnvelope),
    ),
)]
pub async fn disable_rule(
    State(state): State<AppState>,
    Path(rule_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<AlertRuleView>, ApiError> {
    let rule = state
        .store
        .alerts()
        .disable_rule(&rule_id, actor(&headers), random_id(), state.now_ms())
        .await?;
    tracing::info!(rule_id = %rule.rule_id, version = rule.version, changed_by = %rule.changed_by, "alert rule disabled");
    Ok(Json(rule.into()))
}

#[utoipa::path(
    post,
    path = "/admin/alert-rules/{rule_id}/test",
    tag = "alerts",
    params(
        ("rule_id" = String, Path, description = "The rule's id"),
        ("X-Polytape-Actor" = Option<String>, Header, description = "Who asks (kept with the test)"),
    ),
    responses(
        (status = 200, description = "The signals service delivered a made-up signal to each of the rule's destinations (or gave up): the outcomes", body = TestFireView),
        (status = 202, description = "Requested; not every delivery had ended within 15 s (see `alert_deliveries`)", body = TestFireView),
        (status = 404, description = "No such rule", body = crate::error::ErrorEnvelope),
    ),
)]
pub async fn test_rule(
    State(state): State<AppState>,
    Path(rule_id): Path<String>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<TestFireView>), ApiError> {
    let alerts = state.store.alerts();
    let Some(rule) = alerts.current_rule(&rule_id).await? else {
        return Err(ApiError::not_found(format!(
            "alert rule {rule_id:?} does not exist"
        )));
    };
    let view = fire_test(&alerts, &rule, actor(&headers), state.now_ms()).await?;
    let status = if view.complete {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(view)))
}

/// Asks the signals service to deliver a made-up signal to each of `rule`'s destinations and
/// waits up to 15 s for the outcomes (the admin route and the CLI).
pub async fn fire_test(
    alerts: &polytape_clickhouse::alerts::AlertStore,
    rule: &AlertRule,
    requested_by: String,
    now_ms: i64,
) -> Result<TestFireView, polytape_clickhouse::ClickHouseError> {
    let test_id = format!("test-{}", random_id());
    alerts
        .request_test(&AlertTestRow {
            test_id: test_id.clone(),
            rule_id: rule.rule_id.clone(),
            requested_at: now_ms,
            requested_by,
        })
        .await?;
    let started = tokio::time::Instant::now();
    let mut deliveries = Vec::new();
    while started.elapsed() < TEST_FIRE_WAIT {
        tokio::time::sleep(Duration::from_millis(250)).await;
        deliveries = alerts.deliveries_of(&test_id).await?;
        if deliveries.len() >= rule.spec.destinations.len() {
            break;
        }
    }
    Ok(TestFireView {
        test_id,
        complete: deliveries.len() >= rule.spec.destinations.len(),
        deliveries: deliveries.into_iter().map(DeliveryView::from).collect(),
    })
}
