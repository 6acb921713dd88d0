//! Alert rules, test fires and deliveries in ClickHouse (`0006_alerts_rankings.sql`): one store for the
//! API's admin port and CLI, which write rules, and the signals service, which reads them and
//! records deliveries.
//!
//! Every change of a rule is a new row (`version` + 1), never an update, so the table is the
//! audit trail. A rule's current version is its row with the greatest `version`, the earliest
//! `changed_at` (then the least `change_id`) among rows of that version: of two writers racing
//! for one version, the first wins. Each writer checks after inserting that its row is the
//! current one, so the later writer is told, and both cannot believe they won.

use clickhouse::Row;
use polytape_model::{
    SignalKind,
    alerts::{AlertDelivery, AlertRule, AlertRuleSpec, AlertScope, DeliveryStatus, InvalidRule},
};
use serde::{Deserialize, Serialize};

use crate::ClickHouseError;

/// The most rules (current versions) the service and the API handle.
pub const MAX_RULES: u64 = 10_000;

/// One row of `alert_rules`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct AlertRuleRow {
    pub rule_id: String,
    pub version: i32,
    pub enabled: bool,
    pub description: String,
    pub kinds: Vec<String>,
    pub least_names: Vec<String>,
    pub least_values: Vec<String>,
    pub condition_ids: Vec<String>,
    pub event_ids: Vec<String>,
    pub token_ids: Vec<String>,
    pub wallets: Vec<String>,
    pub tags: Vec<String>,
    pub cooldown_ms: i64,
    pub destinations: Vec<String>,
    pub changed_at: i64,
    pub changed_by: String,
    pub change_id: String,
}

impl From<&AlertRule> for AlertRuleRow {
    fn from(rule: &AlertRule) -> Self {
        let spec = &rule.spec;
        let (least_names, least_values) = spec
            .least
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .unzip();
        Self {
            rule_id: rule.rule_id.clone(),
            version: rule.version,
            enabled: spec.enabled,
            description: spec.description.clone(),
            kinds: spec
                .kinds
                .iter()
                .map(|kind| kind.name().to_owned())
                .collect(),
            least_names,
            least_values,
            condition_ids: spec.scope.condition_ids.clone(),
            event_ids: spec.scope.event_ids.clone(),
            token_ids: spec.scope.token_ids.clone(),
            wallets: spec.scope.wallets.clone(),
            tags: spec.scope.tags.clone(),
            cooldown_ms: spec.cooldown_ms,
            destinations: spec.destinations.clone(),
            changed_at: rule.changed_at_ms,
            changed_by: rule.changed_by.clone(),
            change_id: rule.change_id.clone(),
        }
    }
}

impl AlertRuleRow {
    /// The rule this row stores; a kind this build does not know is skipped (a newer writer's
    /// rule still alerts on the kinds this reader knows).
    pub fn into_rule(self) -> AlertRule {
        AlertRule {
            rule_id: self.rule_id,
            version: self.version,
            spec: AlertRuleSpec {
                description: self.description,
                enabled: self.enabled,
                kinds: self
                    .kinds
                    .iter()
                    .filter_map(|name| SignalKind::from_name(name))
                    .collect(),
                least: self
                    .least_names
                    .into_iter()
                    .zip(self.least_values)
                    .collect(),
                scope: AlertScope {
                    condition_ids: self.condition_ids,
                    event_ids: self.event_ids,
                    token_ids: self.token_ids,
                    wallets: self.wallets,
                    tags: self.tags,
                },
                cooldown_ms: self.cooldown_ms,
                destinations: self.destinations,
            },
            changed_at_ms: self.changed_at,
            changed_by: self.changed_by,
            change_id: self.change_id,
        }
    }
}

/// One row of `alert_deliveries`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct AlertDeliveryRow {
    pub signal_id: String,
    pub destination_id: String,
    pub signal_kind: i8,
    pub subject: String,
    pub rule_id: String,
    pub rule_version: i32,
    /// Enum8: 1 delivered, 2 failed.
    pub status: i8,
    pub attempts: u32,
    pub signal_recorded: i64,
    pub finished: i64,
    pub delivery_ms: i64,
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub test: bool,
}

impl From<&AlertDelivery> for AlertDeliveryRow {
    fn from(delivery: &AlertDelivery) -> Self {
        Self {
            signal_id: delivery.signal_id.clone(),
            destination_id: delivery.destination_id.clone(),
            signal_kind: delivery.signal_kind.code(),
            subject: delivery.subject.clone(),
            rule_id: delivery.rule_id.clone(),
            rule_version: delivery.rule_version,
            status: delivery.status.code(),
            attempts: delivery.attempts,
            signal_recorded: delivery.signal_recorded_ms,
            finished: delivery.finished_ms,
            delivery_ms: delivery.delivery_ms,
            response_code: delivery.response_code,
            error: delivery.error.clone(),
            test: delivery.test,
        }
    }
}

impl AlertDeliveryRow {
    pub fn status_name(&self) -> &'static str {
        DeliveryStatus::from_code(self.status).map_or("unknown", DeliveryStatus::name)
    }
}

/// One row of `alert_tests`: a request to test-fire a rule.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct AlertTestRow {
    pub test_id: String,
    pub rule_id: String,
    pub requested_at: i64,
    pub requested_by: String,
}

/// Why a rule change was not stored.
#[derive(Debug, thiserror::Error)]
pub enum RuleChangeError {
    #[error(transparent)]
    Invalid(#[from] InvalidRule),
    #[error("alert rule {rule_id:?} does not exist")]
    NotFound { rule_id: String },
    #[error(
        "alert rule {rule_id:?} is at version {current}, not {expected}: it changed meanwhile; read it again and retry"
    )]
    Conflict {
        rule_id: String,
        expected: i32,
        current: i32,
    },
    #[error(transparent)]
    Storage(#[from] ClickHouseError),
}

/// A change to make: the new spec of `rule_id`, by `changed_by`.
#[derive(Debug, Clone)]
pub struct RuleChange {
    pub rule_id: String,
    pub spec: AlertRuleSpec,
    pub changed_by: String,
    /// Random and unique (the caller draws it).
    pub change_id: String,
    pub now_ms: i64,
    /// The version the writer read; `None` to take whatever is current.
    pub expected_version: Option<i32>,
    /// Whether the rule must exist already (an update) rather than may (a put).
    pub must_exist: bool,
}

/// `alert_rules`, `alert_tests` and `alert_deliveries`.
#[derive(Clone)]
pub struct AlertStore {
    client: clickhouse::Client,
}

fn query_error(context: &str) -> impl FnOnce(clickhouse::error::Error) -> ClickHouseError + '_ {
    move |source| ClickHouseError::Query {
        context: context.to_owned(),
        source,
    }
}

impl AlertStore {
    pub fn new(client: clickhouse::Client) -> Self {
        Self { client }
    }

    /// The current version of every rule (disabled ones included), by rule id.
    pub async fn current_rules(&self) -> Result<Vec<AlertRule>, ClickHouseError> {
        let rows: Vec<AlertRuleRow> = self
            .client
            .query(
                "SELECT ?fields FROM alert_rules \
                 ORDER BY rule_id, version DESC, changed_at, change_id \
                 LIMIT 1 BY rule_id LIMIT ?",
            )
            .bind(MAX_RULES)
            .fetch_all()
            .await
            .map_err(query_error("read the current alert rules"))?;
        Ok(rows.into_iter().map(AlertRuleRow::into_rule).collect())
    }

    /// How many rules exist (any version, enabled or not).
    pub async fn rule_count(&self) -> Result<u64, ClickHouseError> {
        self.client
            .query("SELECT uniqExact(rule_id) FROM alert_rules")
            .fetch_one::<u64>()
            .await
            .map_err(query_error("count the alert rules"))
    }

    /// The current version of one rule.
    pub async fn current_rule(&self, rule_id: &str) -> Result<Option<AlertRule>, ClickHouseError> {
        let row: Option<AlertRuleRow> = self
            .client
            .query(
                "SELECT ?fields FROM alert_rules WHERE rule_id = ? \
                 ORDER BY version DESC, changed_at, change_id LIMIT 1",
            )
            .bind(rule_id)
            .fetch_optional()
            .await
            .map_err(query_error("read an alert rule"))?;
        Ok(row.map(AlertRuleRow::into_rule))
    }

    /// Every version of one rule, oldest first (the audit trail).
    pub async fn rule_history(&self, rule_id: &str) -> Result<Vec<AlertRule>, ClickHouseError> {
        let rows: Vec<AlertRuleRow> = self
            .client
            .query(
                "SELECT ?fields FROM alert_rules WHERE rule_id = ? \
                 ORDER BY version, changed_at, change_id LIMIT 10000",
            )
            .bind(rule_id)
            .fetch_all()
            .await
            .map_err(query_error("read an alert rule's history"))?;
        Ok(rows.into_iter().map(AlertRuleRow::into_rule).collect())
    }

    /// Stores `change` as the rule's next version and returns it; refuses an invalid spec, a
    /// stale `expected_version`, and a change that lost a race for its version.
    pub async fn change_rule(&self, change: RuleChange) -> Result<AlertRule, RuleChangeError> {
        change.spec.validate()?;
        if !polytape_model::alerts::is_valid_id(&change.rule_id) {
            return Err(InvalidRule {
                problems: vec![format!(
                    "rule id {:?} is not an id (1 to {} of a-z 0-9 - _)",
                    change.rule_id,
                    polytape_model::alerts::MAX_ID_LEN
                )],
            }
            .into());
        }
        let current = self.current_rule(&change.rule_id).await?;
        let current_version = current.as_ref().map_or(0, |rule| rule.version);
        if current.is_none() && self.rule_count().await? >= MAX_RULES {
            return Err(InvalidRule {
                problems: vec![format!(
                    "there are {MAX_RULES} rules already, the most the service handles; change or reuse one"
                )],
            }
            .into());
        }
        if change.must_exist && current.is_none() {
            return Err(RuleChangeError::NotFound {
                rule_id: change.rule_id,
            });
        }
        if let Some(expected) = change.expected_version
            && expected != current_version
        {
            return Err(RuleChangeError::Conflict {
                rule_id: change.rule_id,
                expected,
                current: current_version,
            });
        }
        let rule = AlertRule {
            rule_id: change.rule_id,
            version: current_version + 1,
            spec: change.spec,
            changed_at_ms: change.now_ms,
            changed_by: change.changed_by,
            change_id: change.change_id,
        };
        let mut insert = self
            .client
            .insert::<AlertRuleRow>("alert_rules")
            .await
            .map_err(query_error("store an alert rule"))?;
        insert
            .write(&AlertRuleRow::from(&rule))
            .await
            .map_err(query_error("store an alert rule"))?;
        insert
            .end()
            .await
            .map_err(query_error("store an alert rule"))?;
        // Another writer may have stored the same version meanwhile: only one row is current.
        match self.current_rule(&rule.rule_id).await? {
            Some(winner) if winner.change_id == rule.change_id => Ok(rule),
            winner => Err(RuleChangeError::Conflict {
                rule_id: rule.rule_id,
                expected: current_version,
                current: winner.map_or(0, |winner| winner.version),
            }),
        }
    }

    /// Stores the next version of `rule_id`, disabled (the rest of its spec unchanged).
    pub async fn disable_rule(
        &self,
        rule_id: &str,
        changed_by: String,
        change_id: String,
        now_ms: i64,
    ) -> Result<AlertRule, RuleChangeError> {
        let Some(current) = self.current_rule(rule_id).await? else {
            return Err(RuleChangeError::NotFound {
                rule_id: rule_id.to_owned(),
            });
        };
        let mut spec = current.spec;
        spec.enabled = false;
        self.change_rule(RuleChange {
            rule_id: rule_id.to_owned(),
            spec,
            changed_by,
            change_id,
            now_ms,
            expected_version: Some(current.version),
            must_exist: true,
        })
        .await
    }

    /// Asks the signals service to test-fire `rule_id`.
    pub async fn request_test(&self, test: &AlertTestRow) -> Result<(), ClickHouseError> {
        let mut insert = self
            .client
            .insert::<AlertTestRow>("alert_tests")
            .await
            .map_err(query_error("store a test fire"))?;
        insert
            .write(test)
            .await
            .map_err(query_error("store a test fire"))?;
        insert.end().await.map_err(query_error("store a test fire"))
    }

    /// Test fires requested at or after `since_ms` that have no delivery yet, oldest first.
    pub async fn pending_tests(&self, since_ms: i64) -> Result<Vec<AlertTestRow>, ClickHouseError> {
        self.client
            .query(
                "SELECT ?fields FROM alert_tests \
                 WHERE requested_at >= fromUnixTimestamp64Milli(?) \
                 AND test_id NOT IN (SELECT signal_id FROM alert_deliveries WHERE test) \
                 ORDER BY requested_at, test_id LIMIT 100",
            )
            .bind(since_ms)
            .fetch_all()
            .await
            .map_err(query_error("read pending test fires"))
    }

    /// Records deliveries.
    pub async fn write_deliveries(
        &self,
        deliveries: &[AlertDelivery],
    ) -> Result<(), ClickHouseError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .client
            .insert::<AlertDeliveryRow>("alert_deliveries")
            .await
            .map_err(query_error("record alert deliveries"))?;
        for delivery in deliveries {
            insert
                .write(&AlertDeliveryRow::from(delivery))
                .await
                .map_err(query_error("record alert deliveries"))?;
        }
        insert
            .end()
            .await
            .map_err(query_error("record alert deliveries"))
    }

    /// The deliveries of one signal (or test fire), latest row per destination.
    pub async fn deliveries_of(
        &self,
        signal_id: &str,
    ) -> Result<Vec<AlertDeliveryRow>, ClickHouseError> {
        self.client
            .query(
                "SELECT ?fields FROM alert_deliveries FINAL WHERE signal_id = ? \
                 ORDER BY destination_id LIMIT 1000",
            )
            .bind(signal_id)
            .fetch_all()
            .await
            .map_err(query_error("read alert deliveries"))
    }
}
