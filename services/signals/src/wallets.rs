//! Large fills by new wallets: a fill whose notional reaches a threshold, by a wallet whose
//! first fill we know of is younger than a threshold, or that has made fewer prior fills than
//! a threshold.
//!
//! The history is our own: the fills this detector was given (restored at start from what we
//! stored, then the stream), in the order given. What it is judged on is written into every
//! signal: the time our history starts and how many wallets were forgotten to keep memory
//! bounded (a forgotten wallet looks new again). A fill seen twice (a copy on the topic) is
//! counted once: each wallet keeps the ids of its latest fills, which for the wallets this
//! rule is about — those with few fills — are all of them.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use polytape_model::{
    Signal, SignalKind, Trade,
    micros::{ONE, UnitsError, to_micros},
};

use crate::signal::{Inputs, Rule, signal_id};

/// How many of a wallet's latest fill ids are kept to recognise a copy.
const RECENT_IDS: usize = 16;

/// When a fill is large and its wallet new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewWalletThresholds {
    /// The least notional (price × size, USDC in scale-6 units) of a large fill.
    pub min_notional: i64,
    /// A wallet whose first known fill is younger than this is new.
    pub max_age_ms: i64,
    /// A wallet with fewer prior fills than this is new.
    pub min_prior_fills: u64,
}

impl Default for NewWalletThresholds {
    /// $10,000 by a wallet first seen less than a day ago or with fewer than 5 prior fills.
    fn default() -> Self {
        Self {
            min_notional: 10_000 * ONE,
            max_age_ms: 86_400_000,
            min_prior_fills: 5,
        }
    }
}

/// What we know of one wallet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct WalletHistory {
    first_seen_ms: i64,
    last_seen_ms: i64,
    fills: u64,
    /// Sum of notionals in scale-6 units.
    volume: i128,
    recent_ids: Vec<String>,
}

/// What the detector has learned: the part of it a checkpoint keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WalletState {
    /// The time our history starts (the oldest fill the detector was given).
    history_since_ms: Option<i64>,
    wallets: HashMap<String, WalletHistory>,
    /// `(last_seen_ms, wallet)`: the least recently active wallet is forgotten first.
    by_activity: BTreeSet<(i64, String)>,
    forgotten: u64,
}

/// Wallet histories, bounded in count, and the rule over them.
#[derive(Debug)]
pub struct NewWalletDetector {
    rule: Rule,
    thresholds: NewWalletThresholds,
    capacity: usize,
    state: WalletState,
}

impl NewWalletDetector {
    /// A detector keeping at most `capacity` wallets.
    pub fn new(rule: Rule, thresholds: NewWalletThresholds, capacity: usize) -> Self {
        Self {
            rule,
            thresholds,
            capacity: capacity.max(1),
            state: WalletState::default(),
        }
    }

    /// The detector with a checkpointed state; wallets over the capacity are forgotten, least
    /// recently active first.
    pub fn restore(
        rule: Rule,
        thresholds: NewWalletThresholds,
        capacity: usize,
        state: WalletState,
    ) -> Self {
        let mut detector = Self {
            state,
            ..Self::new(rule, thresholds, capacity)
        };
        detector.forget_over_capacity();
        detector
    }

    /// The state to checkpoint.
    pub fn state(&self) -> &WalletState {
        &self.state
    }

    /// Wallets held now.
    pub fn wallets(&self) -> usize {
        self.state.wallets.len()
    }

    /// Learns `trade` and returns the signal it raises, if any. A copy of a fill already
    /// learned changes nothing and raises nothing.
    pub fn observe(&mut self, trade: &Trade) -> Result<Option<Signal>, UnitsError> {
        let price = to_micros("price", trade.price)?;
        let size = to_micros("size", trade.size)?;
        let notional = i64::try_from(i128::from(price) * i128::from(size) / i128::from(ONE))
            .unwrap_or(i64::MAX);
        let history_since_ms = self
            .state
            .history_since_ms
            .map_or(trade.timestamp_ms, |since| since.min(trade.timestamp_ms));
        self.state.history_since_ms = Some(history_since_ms);

        let prior = self.state.wallets.get(&trade.proxy_wallet);
        if prior.is_some_and(|history| history.recent_ids.contains(&trade.trade_id)) {
            return Ok(None);
        }
        let signal = self.judge(trade, (price, size, notional), prior, history_since_ms);
        self.learn(trade, notional);
        Ok(signal)
    }

    /// `units`: the fill's price, size and notional in scale-6 units.
    fn judge(
        &self,
        trade: &Trade,
        (price, size, notional): (i64, i64, i64),
        prior: Option<&WalletHistory>,
        history_since_ms: i64,
    ) -> Option<Signal> {
        if notional < self.thresholds.min_notional {
            return None;
        }
        let prior_fills = prior.map_or(0, |history| history.fills);
        let age_ms = prior.map(|history| trade.timestamp_ms - history.first_seen_ms);
        let young = age_ms.is_none_or(|age| age < self.thresholds.max_age_ms);
        let few = prior_fills < self.thresholds.min_prior_fills;
        if !young && !few {
            return None;
        }
        let mut inputs = Inputs::default()
            .units("notional", notional)
            .units("price", price)
            .units("size", size)
            .integer(
                "prior_fills",
                i64::try_from(prior_fills).unwrap_or(i64::MAX),
            )
            .text("judged_on", "polytape_history")
            .integer("history_since_ms", history_since_ms)
            .integer(
                "wallets_forgotten",
                i64::try_from(self.state.forgotten).unwrap_or(i64::MAX),
            );
        if let Some(history) = prior {
            inputs = inputs
                .integer("first_seen_ms", history.first_seen_ms)
                .integer("wallet_age_ms", trade.timestamp_ms - history.first_seen_ms)
                .units(
                    "prior_volume",
                    i64::try_from(history.volume).unwrap_or(i64::MAX),
                );
        }
        // The fill is the subject of its id (a wallet may make two large fills in one
        // millisecond); the wallet is the signal's subject.
        Some(Signal {
            signal_id: signal_id(
                SignalKind::LargeTradeNewWallet,
                &self.rule,
                &trade.trade_id,
                trade.timestamp_ms,
            ),
            kind: SignalKind::LargeTradeNewWallet,
            rule_id: self.rule.rule_id.clone(),
            rule_version: self.rule.version,
            subject: trade.proxy_wallet.clone(),
            condition_ids: vec![trade.condition_id.clone()],
            token_ids: vec![trade.token_id.clone()],
            event_id: None,
            window_start_ms: trade.timestamp_ms,
            window_end_ms: Some(trade.timestamp_ms),
            thresholds: Inputs::default()
                .units("min_notional", self.thresholds.min_notional)
                .integer("max_age_ms", self.thresholds.max_age_ms)
                .integer(
                    "min_prior_fills",
                    i64::try_from(self.thresholds.min_prior_fills).unwrap_or(i64::MAX),
                )
                .into_values(),
            inputs: inputs.into_values(),
            links: vec![trade.trade_id.clone()],
        })
    }

    fn learn(&mut self, trade: &Trade, notional: i64) {
        // Taken out and put back (a move, not a copy): this runs for every fill.
        let mut history = self
            .state
            .wallets
            .remove(&trade.proxy_wallet)
            .unwrap_or_else(|| WalletHistory {
                first_seen_ms: trade.timestamp_ms,
                last_seen_ms: trade.timestamp_ms,
                ..WalletHistory::default()
            });
        self.state
            .by_activity
            .remove(&(history.last_seen_ms, trade.proxy_wallet.clone()));
        history.first_seen_ms = history.first_seen_ms.min(trade.timestamp_ms);
        history.last_seen_ms = history.last_seen_ms.max(trade.timestamp_ms);
        history.fills += 1;
        history.volume += i128::from(notional);
        if history.recent_ids.len() == RECENT_IDS {
            history.recent_ids.remove(0);
        }
        history.recent_ids.push(trade.trade_id.clone());
        self.state
            .by_activity
            .insert((history.last_seen_ms, trade.proxy_wallet.clone()));
        self.state
            .wallets
            .insert(trade.proxy_wallet.clone(), history);
        self.forget_over_capacity();
    }

    fn forget_over_capacity(&mut self) {
        while self.state.wallets.len() > self.capacity {
            let Some((_, wallet)) = self.state.by_activity.pop_first() else {
                break;
            };
            self.state.wallets.remove(&wallet);
            self.state.forgotten += 1;
        }
    }
}

#[cfg(test)]
mod tests;
