//! Alert rules: which signals alert which destinations.
//!
//! Signals are recorded at the detectors' thresholds whatever the rules say; a rule only
//! decides whether a signal is worth telling someone about. A rule names the signal kinds it
//! cares about, the least magnitudes of the signal's inputs (e.g. `max_edge ≥ 0.02`), a scope
//! (markets, events, tokens, wallets, tags), a cooldown per subject and the destinations it
//! alerts. Every change is a new version; every version is kept (`alert_rules` table), so what
//! a rule said at any time can be audited. Destinations are ids: their URLs and secrets live
//! in the signals service's configuration, never in a rule.

use std::str::FromStr as _;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{Signal, SignalKind};

/// The longest cooldown a rule may ask for: 7 days.
pub const MAX_COOLDOWN_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// The most entries one scope list (or the destinations) may hold.
pub const MAX_LIST_LEN: usize = 1_000;
/// The longest id (rule or destination) and the longest description.
pub const MAX_ID_LEN: usize = 64;
pub const MAX_DESCRIPTION_LEN: usize = 500;

/// Which signals a rule applies to; an empty list does not restrict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertScope {
    /// Markets (condition ids): the signal concerns at least one of them.
    pub condition_ids: Vec<String>,
    /// Events: the signal's event is one of them.
    pub event_ids: Vec<String>,
    /// Tokens: the signal concerns at least one of them.
    pub token_ids: Vec<String>,
    /// Wallets: the signal is about one of them (large trades from new wallets).
    pub wallets: Vec<String>,
    /// Gamma tags: at least one of the signal's markets carries one of them.
    pub tags: Vec<String>,
}

/// What an operator says a rule is (the body of the admin endpoints and the CLI's file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleSpec {
    #[serde(default)]
    pub description: String,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Signal kinds (`LARGE_TRADE_NEW_WALLET`, …); empty: every kind.
    #[serde(default)]
    pub kinds: Vec<SignalKind>,
    /// Least magnitude of named inputs, as decimal text (`{"max_edge": "0.02"}`). A signal
    /// without one of the named inputs does not match.
    #[serde(default)]
    pub least: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub scope: AlertScope,
    /// After alerting about a subject, stay quiet about it for this long (milliseconds of
    /// signal time).
    #[serde(default)]
    pub cooldown_ms: i64,
    /// Destination ids declared in the signals service's configuration.
    pub destinations: Vec<String>,
}

fn enabled_by_default() -> bool {
    true
}

/// One version of a rule, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRule {
    pub rule_id: String,
    /// 1 for the first version; each change adds one.
    pub version: i32,
    pub spec: AlertRuleSpec,
    pub changed_at_ms: i64,
    /// Who made the change (the admin client's label, or `cli`).
    pub changed_by: String,
    /// A random id of the change, so two writers racing for one version can tell whose won.
    pub change_id: String,
}

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid alert rule: {}", problems.join("; "))]
pub struct InvalidRule {
    pub problems: Vec<String>,
}

/// Whether `id` is a usable rule or destination id: 1 to 64 of `a-z 0-9 - _`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
        })
}

impl AlertRuleSpec {
    /// Every problem at once (an operator fixes a rule in one go).
    pub fn validate(&self) -> Result<(), InvalidRule> {
        let mut problems = Vec::new();
        if self.description.len() > MAX_DESCRIPTION_LEN {
            problems.push(format!("description: at most {MAX_DESCRIPTION_LEN} bytes"));
        }
        for (name, value) in &self.least {
            if name.is_empty() || name.len() > MAX_ID_LEN {
                problems.push(format!(
                    "least: input name {name:?} must have 1 to {MAX_ID_LEN} bytes"
                ));
            }
            match Decimal::from_str(value) {
                Ok(decimal) if decimal.is_sign_negative() => {
                    problems.push(format!(
                        "least.{name}: {value:?} is negative (a least magnitude is ≥ 0)"
                    ));
                }
                Ok(_) => {}
                Err(_) => problems.push(format!("least.{name}: {value:?} is not a decimal")),
            }
        }
        if !(0..=MAX_COOLDOWN_MS).contains(&self.cooldown_ms) {
            problems.push(format!(
                "cooldown_ms: {} is outside 0..={MAX_COOLDOWN_MS}",
                self.cooldown_ms
            ));
        }
        if self.destinations.is_empty() {
            problems.push("destinations: name at least one".to_owned());
        }
        let mut seen = std::collections::BTreeSet::new();
        for destination in &self.destinations {
            if !seen.insert(destination) {
                problems.push(format!("destinations: {destination:?} is named twice"));
            }
            if !is_valid_id(destination) {
                problems.push(format!(
                    "destinations: {destination:?} is not an id (1 to {MAX_ID_LEN} of a-z 0-9 - _)"
                ));
            }
        }
        for (name, list) in [
            ("kinds", self.kinds.len()),
            ("least", self.least.len()),
            ("destinations", self.destinations.len()),
            ("scope.condition_ids", self.scope.condition_ids.len()),
            ("scope.event_ids", self.scope.event_ids.len()),
            ("scope.token_ids", self.scope.token_ids.len()),
            ("scope.wallets", self.scope.wallets.len()),
            ("scope.tags", self.scope.tags.len()),
        ] {
            if list > MAX_LIST_LEN {
                problems.push(format!("{name}: at most {MAX_LIST_LEN} entries"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidRule { problems })
        }
    }
}

impl AlertRule {
    /// Whether this rule chooses `signal`: enabled, of a listed kind, every named input at
    /// least its magnitude, and within the scope. `tags_of` gives a market's tags.
    pub fn matches<'a>(
        &self,
        signal: &Signal,
        tags_of: impl Fn(&str) -> Option<&'a [String]>,
    ) -> bool {
        let spec = &self.spec;
        if !spec.enabled {
            return false;
        }
        if !spec.kinds.is_empty() && !spec.kinds.contains(&signal.kind) {
            return false;
        }
        for (name, least) in &spec.least {
            let (Some(value), Ok(least)) = (signal.input(name), Decimal::from_str(least)) else {
                return false;
            };
            match Decimal::from_str(value) {
                Ok(value) if value.abs() >= least => {}
                _ => return false,
            }
        }
        let scope = &spec.scope;
        let any_of = |wanted: &[String], present: &[String]| {
            wanted.is_empty() || present.iter().any(|item| wanted.contains(item))
        };
        if !any_of(&scope.condition_ids, &signal.condition_ids)
            || !any_of(&scope.token_ids, &signal.token_ids)
        {
            return false;
        }
        if !scope.event_ids.is_empty()
            && !signal
                .event_id
                .as_ref()
                .is_some_and(|event| scope.event_ids.contains(event))
        {
            return false;
        }
        // Only a large trade from a new wallet is about a wallet (its subject).
        let about_a_listed_wallet = signal.kind == SignalKind::LargeTradeNewWallet
            && scope.wallets.contains(&signal.subject);
        if !scope.wallets.is_empty() && !about_a_listed_wallet {
            return false;
        }
        if !scope.tags.is_empty()
            && !signal.condition_ids.iter().any(|condition_id| {
                tags_of(condition_id)
                    .is_some_and(|tags| tags.iter().any(|tag| scope.tags.contains(tag)))
            })
        {
            return false;
        }
        true
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Delivered,
    /// Refused (a 4xx other than 429), or still failing at the deadline.
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 2] = [DeliveryStatus::Delivered, DeliveryStatus::Failed];

    pub fn name(self) -> &'static str {
        match self {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// The `alert_deliveries.status` Enum8 code.
    pub fn code(self) -> i8 {
        match self {
            DeliveryStatus::Delivered => 1,
            DeliveryStatus::Failed => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.code() == code)
    }
}

/// One signal's delivery to one destination (an `alert_deliveries` row). A signal alerts a
/// destination once, under the first matching rule in id order; a test fire is a delivery of
/// a made-up signal whose id starts with `test-`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertDelivery {
    /// The `Idempotency-Key` the destination saw.
    pub signal_id: String,
    pub destination_id: String,
    pub signal_kind: SignalKind,
    pub subject: String,
    pub rule_id: String,
    pub rule_version: i32,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// When the signal's record was produced (its Kafka timestamp) and when the delivery
    /// ended: their difference is the signal-to-webhook latency.
    pub signal_recorded_ms: i64,
    pub finished_ms: i64,
    /// From the first attempt's start to the last attempt's end.
    pub delivery_ms: i64,
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub test: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SignalValue;

    fn signal(kind: SignalKind, inputs: &[(&str, &str)]) -> Signal {
        Signal {
            signal_id: "s".to_owned(),
            kind,
            rule_id: "builtin".to_owned(),
            rule_version: 1,
            subject: "0xwallet".to_owned(),
            condition_ids: vec!["0xmarket".to_owned()],
            token_ids: vec!["t1".to_owned()],
            event_id: Some("e1".to_owned()),
            window_start_ms: 0,
            window_end_ms: None,
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

    fn rule(spec: AlertRuleSpec) -> AlertRule {
        AlertRule {
            rule_id: "r".to_owned(),
            version: 1,
            spec,
            changed_at_ms: 0,
            changed_by: "test".to_owned(),
            change_id: "c".to_owned(),
        }
    }

    fn spec() -> AlertRuleSpec {
        AlertRuleSpec {
            description: String::new(),
            enabled: true,
            kinds: Vec::new(),
            least: Default::default(),
            scope: AlertScope::default(),
            cooldown_ms: 0,
            destinations: vec!["ops".to_owned()],
        }
    }

    fn no_tags(_: &str) -> Option<&'static [String]> {
        None
    }

    #[test]
    fn kinds_and_least_magnitudes_choose() {
        let move_down = signal(SignalKind::PriceMove, &[("move", "-0.15")]);
        let mut wanted = spec();
        wanted.least.insert("move".to_owned(), "0.15".to_owned());
        assert!(rule(wanted.clone()).matches(&move_down, no_tags));
        wanted
            .least
            .insert("move".to_owned(), "0.150001".to_owned());
        assert!(!rule(wanted.clone()).matches(&move_down, no_tags));
        wanted.least.clear();
        wanted.least.insert("max_edge".to_owned(), "0".to_owned());
        assert!(
            !rule(wanted.clone()).matches(&move_down, no_tags),
            "a missing input does not match"
        );
        wanted.least.clear();
        wanted.kinds = vec![SignalKind::BinaryArbitrage];
        assert!(!rule(wanted.clone()).matches(&move_down, no_tags));
        wanted.kinds.push(SignalKind::PriceMove);
        assert!(rule(wanted.clone()).matches(&move_down, no_tags));
        wanted.enabled = false;
        assert!(!rule(wanted).matches(&move_down, no_tags));
    }

    #[test]
    fn scopes_restrict() {
        let whale = signal(SignalKind::LargeTradeNewWallet, &[]);
        let tags = vec!["politics".to_owned()];
        let tags_of = |market: &str| (market == "0xmarket").then_some(tags.as_slice());
        type Case = (fn(&mut AlertScope), bool);
        let cases: [Case; 10] = [
            (
                |scope| scope.condition_ids = vec!["0xmarket".to_owned()],
                true,
            ),
            (
                |scope| scope.condition_ids = vec!["0xother".to_owned()],
                false,
            ),
            (|scope| scope.token_ids = vec!["t1".to_owned()], true),
            (|scope| scope.token_ids = vec!["t2".to_owned()], false),
            (|scope| scope.event_ids = vec!["e1".to_owned()], true),
            (|scope| scope.event_ids = vec!["e2".to_owned()], false),
            (|scope| scope.wallets = vec!["0xwallet".to_owned()], true),
            (|scope| scope.wallets = vec!["0xother".to_owned()], false),
            (|scope| scope.tags = vec!["politics".to_owned()], true),
            (|scope| scope.tags = vec!["sports".to_owned()], false),
        ];
        for (index, (set, expected)) in cases.into_iter().enumerate() {
            let mut wanted = spec();
            set(&mut wanted.scope);
            assert_eq!(
                rule(wanted).matches(&whale, tags_of),
                expected,
                "case {index}"
            );
        }
    }

    #[test]
    fn validation_reports_every_problem() {
        let mut wrong = spec();
        wrong.least.insert("max_edge".to_owned(), "two".to_owned());
        wrong.least.insert("move".to_owned(), "-1".to_owned());
        wrong.cooldown_ms = -1;
        wrong.destinations = vec!["Ops Team".to_owned()];
        let problems = wrong.validate().map_err(|invalid| invalid.problems.len());
        assert_eq!(problems, Err(4));
        assert_eq!(spec().validate(), Ok(()));
        assert!(is_valid_id("ops-team_2"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("Ops"));
    }

    #[test]
    fn specs_read_from_json_with_defaults_and_refuse_unknown_fields() {
        let parsed: AlertRuleSpec = serde_json::from_str(
            r#"{"kinds":["NEG_RISK_ARBITRAGE"],"least":{"max_edge":"0.02"},"destinations":["ops"]}"#,
        )
        .map_err(|error| error.to_string())
        .unwrap_or_else(|error| panic!("{error}"));
        assert!(parsed.enabled);
        assert_eq!(parsed.kinds, [SignalKind::NegRiskArbitrage]);
        assert!(
            serde_json::from_str::<AlertRuleSpec>(r#"{"destinations":["ops"],"colour":1}"#)
                .is_err()
        );
    }
}
