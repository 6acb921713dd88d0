//! One detected signal: which rule fired, on what subject, over which window, and the exact
//! inputs that made it fire.

use std::collections::BTreeMap;

use polytape_model::micros::micros_to_decimal;
use sha2::{Digest as _, Sha256};

/// What a signal says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignalKind {
    /// A fill at or above a notional threshold by a wallet with little or no history.
    LargeTradeFromNewWallet,
    /// Buying every YES of a negative-risk event costs less than a dollar (or selling every
    /// YES brings more than a dollar), net of fees.
    NegRiskArbitrage,
    /// Buying YES and NO of a binary market costs less than a dollar, net of fees.
    BinaryArbitrage,
    /// A token's last-trade price moved by at least a threshold within a window.
    PriceMove,
}

impl SignalKind {
    /// The stable name stored with the signal and used in rule definitions.
    pub fn code(self) -> &'static str {
        match self {
            Self::LargeTradeFromNewWallet => "large_trade_new_wallet",
            Self::NegRiskArbitrage => "neg_risk_arbitrage",
            Self::BinaryArbitrage => "binary_arbitrage",
            Self::PriceMove => "price_move",
        }
    }
}

/// The rule that fired: its id and the version of its thresholds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub rule_id: String,
    pub version: u32,
}

impl Rule {
    pub fn new(rule_id: impl Into<String>, version: u32) -> Self {
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

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

/// A signal with everything that explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    /// Deterministic: see [`Signal::id_for`].
    pub signal_id: String,
    pub kind: SignalKind,
    pub rule: Rule,
    /// What the signal is about: a wallet, a market's condition id, an event id or a token id.
    pub subject: String,
    pub condition_ids: Vec<String>,
    pub token_ids: Vec<String>,
    pub event_id: Option<String>,
    /// When the condition began (the fill's time, the window's opening, the move's start).
    pub window_start_ms: i64,
    /// When it ended; `None` while a window is still open.
    pub window_end_ms: Option<i64>,
    /// The thresholds the rule applied.
    pub thresholds: Inputs,
    /// The computed values that made it fire.
    pub inputs: Inputs,
    /// What it rests on: trade ids, or book times as `token@ms`.
    pub links: Vec<String>,
}

impl Signal {
    /// The id of the signal `rule` raises about `subject` for the window starting at
    /// `window_start_ms`: the same in every run that sees the same input, so a replay's copy
    /// of a signal replaces the first one instead of adding a second, and an open window and
    /// its closing are one signal.
    pub fn id_for(kind: SignalKind, rule: &Rule, subject: &str, window_start_ms: i64) -> String {
        let canonical = format!(
            "{}|{}|{}|{subject}|{window_start_ms}",
            kind.code(),
            rule.rule_id,
            rule.version
        );
        hex::encode(&Sha256::digest(canonical.as_bytes())[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_a_function_of_rule_subject_and_window_start() {
        let rule = Rule::new("whales", 1);
        let id = Signal::id_for(SignalKind::PriceMove, &rule, "token", 1_000);
        assert_eq!(id.len(), 32);
        assert_eq!(
            id,
            Signal::id_for(SignalKind::PriceMove, &rule, "token", 1_000)
        );
        for other in [
            Signal::id_for(SignalKind::BinaryArbitrage, &rule, "token", 1_000),
            Signal::id_for(
                SignalKind::PriceMove,
                &Rule::new("whales", 2),
                "token",
                1_000,
            ),
            Signal::id_for(
                SignalKind::PriceMove,
                &Rule::new("other", 1),
                "token",
                1_000,
            ),
            Signal::id_for(SignalKind::PriceMove, &rule, "token2", 1_000),
            Signal::id_for(SignalKind::PriceMove, &rule, "token", 1_001),
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
        let listed: Vec<(&str, &str)> = inputs.iter().collect();
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
