//! One detected signal: which rule fired, on what subject, over which window, and the exact
//! inputs that made it fire.

use std::collections::BTreeMap;

use polytape_model::{SignalKind, SignalValue, micros::micros_to_decimal};
use sha2::{Digest as _, Sha256};

/// The rule that fired: its id and the version of its thresholds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub rule_id: String,
    pub version: i32,
}

impl Rule {
    pub fn new(rule_id: impl Into<String>, version: i32) -> Self {
        Self {
            rule_id: rule_id.into(),
            version,
        }
    }
}

/// Named values, kept as exact decimal text in name order (so a record's bytes are a function
/// of its values alone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs(BTreeMap<String, String>);

impl Inputs {
    /// A price, size or edge in scale-6 units, written as a decimal.
    pub fn units(mut self, name: &str, units: i64) -> Self {
        self.0
            .insert(name.to_owned(), micros_to_decimal(units).to_string());
        self
    }

    /// A count, or a time in UTC milliseconds.
    pub fn integer(mut self, name: &str, value: i64) -> Self {
        self.0.insert(name.to_owned(), value.to_string());
        self
    }

    /// A word (e.g. which price a rule reads, or why a window closed).
    pub fn text(mut self, name: &str, value: &str) -> Self {
        self.0.insert(name.to_owned(), value.to_owned());
        self
    }

    /// The values in name order, as the record carries them.
    pub fn into_values(self) -> Vec<SignalValue> {
        self.0
            .into_iter()
            .map(|(name, value)| SignalValue { name, value })
            .collect()
    }
}

/// The id of the signal of `kind` that `rule` raises about `subject` for the window starting
/// at `window_start_ms`: the first 16 bytes, hex, of
/// `sha256(kind | rule id | rule version | subject | window start)`. The same in every run that
/// sees the same input, so a replay's copy of a signal replaces the first one instead of
/// adding a second, and an open window and its closing are one signal.
pub fn signal_id(kind: SignalKind, rule: &Rule, subject: &str, window_start_ms: i64) -> String {
    let canonical = format!(
        "{}|{}|{}|{subject}|{window_start_ms}",
        kind.name(),
        rule.rule_id,
        rule.version
    );
    hex::encode(&Sha256::digest(canonical.as_bytes())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_a_function_of_rule_subject_and_window_start() {
        let rule = Rule::new("whales", 1);
        let id = signal_id(SignalKind::PriceMove, &rule, "token", 1_000);
        assert_eq!(id.len(), 32);
        assert_eq!(id, signal_id(SignalKind::PriceMove, &rule, "token", 1_000));
        for other in [
            signal_id(SignalKind::BinaryArbitrage, &rule, "token", 1_000),
            signal_id(
                SignalKind::PriceMove,
                &Rule::new("whales", 2),
                "token",
                1_000,
            ),
            signal_id(
                SignalKind::PriceMove,
                &Rule::new("other", 1),
                "token",
                1_000,
            ),
            signal_id(SignalKind::PriceMove, &rule, "token2", 1_000),
            signal_id(SignalKind::PriceMove, &rule, "token", 1_001),
        ] {
            assert_ne!(id, other);
        }
    }

    #[test]
    fn inputs_are_exact_decimal_text_in_name_order() {
        let inputs = Inputs::default()
            .units("edge", 20_000)
            .units("ask", 480_000)
            .integer("opened_ms", 1_767_225_600_000)
            .text("price", "last_trade");
        let values = inputs.into_values();
        let listed: Vec<(&str, &str)> = values
            .iter()
            .map(|value| (value.name.as_str(), value.value.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                ("ask", "0.480000"),
                ("edge", "0.020000"),
                ("opened_ms", "1767225600000"),
                ("price", "last_trade"),
            ]
        );
    }
}
