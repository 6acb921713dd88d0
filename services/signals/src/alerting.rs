//! Which signals alert which destinations: the rules, a cooldown per rule and subject, and
//! the memory of what was alerted (so a window's closing record, or a replayed copy, does not
//! alert again). A deterministic state machine over signals in topic order: no clock, no I/O;
//! its state is checkpointed with the signal positions it covers.

use std::collections::{HashMap, HashSet, VecDeque};

use polytape_model::{Signal, alerts::AlertRule};
use serde::{Deserialize, Serialize};

/// `(signal id, destination)` pairs remembered as alerted; the oldest are forgotten first.
/// A signal's records (an open window, its closing, a replay's copy) arrive close together,
/// so a bounded memory is enough.
pub const REMEMBERED_ALERTS: usize = 100_000;

/// One delivery to make: `signal` to `destination_id`, chosen by `rule_id` at `rule_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedAlert {
    pub destination_id: String,
    pub rule_id: String,
    pub rule_version: i32,
}

/// The alerting state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AlertingState {
    /// `(rule id, subject)` → the window start of the last signal it alerted, and that
    /// signal's id.
    cooldowns: Vec<(String, String, i64, String)>,
    /// Alerted `(signal id, destination)`, oldest first.
    alerted: Vec<(String, String)>,
}

/// The decisions, with their state.
#[derive(Debug, Default)]
pub struct Alerting {
    cooldowns: HashMap<(String, String), (i64, String)>,
    /// The latest window start seen (for forgetting cooldowns long over).
    newest_window_ms: i64,
    alerted: HashSet<(String, String)>,
    alerted_order: VecDeque<(String, String)>,
}

impl Alerting {
    pub fn restore(state: AlertingState) -> Self {
        let mut alerting = Self::default();
        for (rule_id, subject, window_start_ms, signal_id) in state.cooldowns {
            alerting
                .cooldowns
                .insert((rule_id, subject), (window_start_ms, signal_id));
        }
        for pair in state.alerted {
            alerting.remember(pair);
        }
        alerting
    }

    pub fn state(&self) -> AlertingState {
        let mut cooldowns: Vec<(String, String, i64, String)> = self
            .cooldowns
            .iter()
            .map(|((rule_id, subject), (window_start_ms, signal_id))| {
                (
                    rule_id.clone(),
                    subject.clone(),
                    *window_start_ms,
                    signal_id.clone(),
                )
            })
            .collect();
        cooldowns.sort();
        AlertingState {
            cooldowns,
            alerted: self.alerted_order.iter().cloned().collect(),
        }
    }

    fn remember(&mut self, pair: (String, String)) {
        if self.alerted.insert(pair.clone()) {
            self.alerted_order.push_back(pair);
        }
        while self.alerted_order.len() > REMEMBERED_ALERTS {
            if let Some(oldest) = self.alerted_order.pop_front() {
                self.alerted.remove(&oldest);
            }
        }
    }

    /// The deliveries `signal` calls for under `rules` (sorted by rule id): each destination
    /// once, under the first matching rule (by id) that names it and is not cooling down for
    /// the signal's subject; never a destination that already had this signal.
    pub fn plan<'a>(
        &mut self,
        signal: &Signal,
        rules: &[AlertRule],
        tags_of: impl Fn(&str) -> Option<&'a [String]> + Copy,
    ) -> Vec<PlannedAlert> {
        let mut planned: Vec<PlannedAlert> = Vec::new();
        for rule in rules {
            if !rule.matches(signal, tags_of) {
                continue;
            }
            let key = (rule.rule_id.clone(), signal.subject.clone());
            let cooling = self
                .cooldowns
                .get(&key)
                .is_some_and(|(last_start, last_id)| {
                    // Either side: one subject's signals may arrive out of window order (they
                    // are keyed by id across partitions).
                    *last_id != signal.signal_id
                        && signal.window_start_ms.abs_diff(*last_start)
                            < rule.spec.cooldown_ms.unsigned_abs()
                });
            if cooling {
                continue;
            }
            let mut chose_any = false;
            for destination_id in &rule.spec.destinations {
                let pair = (signal.signal_id.clone(), destination_id.clone());
                if self.alerted.contains(&pair)
                    || planned
                        .iter()
                        .any(|alert| alert.destination_id == *destination_id)
                {
                    continue;
                }
                planned.push(PlannedAlert {
                    destination_id: destination_id.clone(),
                    rule_id: rule.rule_id.clone(),
                    rule_version: rule.version,
                });
                chose_any = true;
            }
            if chose_any && rule.spec.cooldown_ms > 0 {
                let later = self
                    .cooldowns
                    .get(&key)
                    .is_none_or(|(last_start, _)| signal.window_start_ms >= *last_start);
                if later {
                    self.cooldowns
                        .insert(key, (signal.window_start_ms, signal.signal_id.clone()));
                }
            }
        }
        for alert in &planned {
            self.remember((signal.signal_id.clone(), alert.destination_id.clone()));
        }
        self.newest_window_ms = self.newest_window_ms.max(signal.window_start_ms);
        if self.cooldowns.len() > REMEMBERED_ALERTS {
            // No cooldown lasts longer than the longest a rule may set.
            let horizon = self.newest_window_ms - polytape_model::alerts::MAX_COOLDOWN_MS;
            self.cooldowns
                .retain(|_, (last_start, _)| *last_start >= horizon);
        }
        planned
    }
}

#[cfg(test)]
mod tests {
    use polytape_model::{
        SignalKind,
        alerts::{AlertRuleSpec, AlertScope},
    };

    use super::*;

    fn signal(id: &str, subject: &str, start_ms: i64) -> Signal {
        Signal {
            signal_id: id.to_owned(),
            kind: SignalKind::PriceMove,
            rule_id: "price-move".to_owned(),
            rule_version: 1,
            subject: subject.to_owned(),
            condition_ids: vec!["0xm".to_owned()],
            token_ids: vec![subject.to_owned()],
            event_id: None,
            window_start_ms: start_ms,
            window_end_ms: Some(start_ms),
            thresholds: Vec::new(),
            inputs: Vec::new(),
            links: Vec::new(),
        }
    }

    fn rule(id: &str, cooldown_ms: i64, destinations: &[&str]) -> AlertRule {
        AlertRule {
            rule_id: id.to_owned(),
            version: 3,
            spec: AlertRuleSpec {
                description: String::new(),
                enabled: true,
                kinds: Vec::new(),
                least: Default::default(),
                scope: AlertScope::default(),
                cooldown_ms,
                destinations: destinations.iter().map(|id| (*id).to_owned()).collect(),
            },
            changed_at_ms: 0,
            changed_by: "test".to_owned(),
            change_id: id.to_owned(),
        }
    }

    fn no_tags(_: &str) -> Option<&'static [String]> {
        None
    }

    fn destinations(planned: &[PlannedAlert]) -> Vec<(&str, &str)> {
        planned
            .iter()
            .map(|alert| (alert.destination_id.as_str(), alert.rule_id.as_str()))
            .collect()
    }

    #[test]
    fn each_destination_once_under_the_first_rule_naming_it() {
        let mut alerting = Alerting::default();
        let rules = [rule("a", 0, &["ops"]), rule("b", 0, &["ops", "chat"])];
        let planned = alerting.plan(&signal("s1", "t", 0), &rules, no_tags);
        assert_eq!(destinations(&planned), [("ops", "a"), ("chat", "b")]);
        // The same signal again (a window's closing, a replay's copy): nothing.
        assert!(
            alerting
                .plan(&signal("s1", "t", 0), &rules, no_tags)
                .is_empty()
        );
    }

    #[test]
    fn cooldown_is_per_rule_and_subject_in_signal_time_and_survives_a_restore() {
        let mut alerting = Alerting::default();
        let rules = [rule("a", 1_000, &["ops"])];
        assert_eq!(
            alerting.plan(&signal("s1", "t", 0), &rules, no_tags).len(),
            1
        );
        assert!(
            alerting
                .plan(&signal("s2", "t", 999), &rules, no_tags)
                .is_empty()
        );
        assert_eq!(
            alerting
                .plan(&signal("s3", "u", 999), &rules, no_tags)
                .len(),
            1,
            "another subject"
        );
        let mut restored = Alerting::restore(alerting.state());
        assert!(
            restored
                .plan(&signal("s1", "t", 0), &rules, no_tags)
                .is_empty()
        );
        assert!(
            restored
                .plan(&signal("s4", "t", 500), &rules, no_tags)
                .is_empty()
        );
        assert_eq!(
            restored
                .plan(&signal("s5", "t", 1_000), &rules, no_tags)
                .len(),
            1
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut alerting = Alerting::default();
        let rules = [rule("a", 0, &["ops"])];
        for index in 0..REMEMBERED_ALERTS + 10 {
            let id = format!("s{index}");
            alerting.plan(&signal(&id, &id, 0), &rules, no_tags);
        }
        assert_eq!(alerting.state().alerted.len(), REMEMBERED_ALERTS);
        // The oldest were forgotten: their replay would alert again (same Idempotency-Key).
        assert_eq!(
            alerting.plan(&signal("s0", "s0", 0), &rules, no_tags).len(),
            1
        );
    }
}
