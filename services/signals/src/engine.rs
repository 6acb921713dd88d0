//! The detectors wired to Polytape's records: reference data (markets, events) decides what
//! is watched; book events and trades, in event-time order, are what is judged.
//!
//! Deterministic like the detectors: the same records in the same order give the same
//! signals. Book events of one millisecond are judged together (a WebSocket message's
//! changes share a timestamp, and judging them one by one would see half-applied messages);
//! trades one by one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use polytape_kafka::merge::MergeEvent;
use polytape_model::{
    BookSnapshot, Event, Market, PriceChange, Signal, SignalKind, Trade,
    micros::{UnitsError, to_micros},
};
use serde::{Deserialize, Serialize};

use crate::{
    arbitrage::{ArbitrageDetector, ArbitrageState, ArbitrageThresholds, BookUpdate, Structure},
    price_moves::{PriceMoveDetector, PriceMoveState, PriceMoveThresholds, PriceObservation},
    signal::Rule,
    volume_spikes::{Fill, VolumeSpikeDetector, VolumeSpikeState, VolumeSpikeThresholds},
    wallets::{NewWalletDetector, NewWalletThresholds, WalletState},
};

/// Which merged input an event comes from; at equal times books go first, so a trade is
/// judged against the book of its millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SignalInput {
    BookSnapshots = 0,
    PriceChanges = 1,
    Trades = 2,
}

/// An event the engine judges, in event-time order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignalEvent {
    Snapshot(BookSnapshot),
    Change(PriceChange),
    Trade(Trade),
}

impl MergeEvent for SignalEvent {
    type Input = SignalInput;

    fn time_ms(&self) -> i64 {
        match self {
            SignalEvent::Snapshot(snapshot) => snapshot.timestamp_ms,
            SignalEvent::Change(change) => change.timestamp_ms,
            SignalEvent::Trade(trade) => trade.timestamp_ms,
        }
    }

    fn input(&self) -> SignalInput {
        match self {
            SignalEvent::Snapshot(_) => SignalInput::BookSnapshots,
            SignalEvent::Change(_) => SignalInput::PriceChanges,
            SignalEvent::Trade(_) => SignalInput::Trades,
        }
    }
}

impl SignalEvent {
    /// Checks that an event can be applied, so that what the merge releases later always
    /// does; an event that fails is dead-lettered when read.
    pub fn check(&self) -> Result<(), UnitsError> {
        match self {
            SignalEvent::Snapshot(snapshot) => polytape_model::book::check_snapshot(snapshot),
            SignalEvent::Change(change) => polytape_model::book::check_change(change),
            SignalEvent::Trade(trade) => {
                to_micros("price", trade.price)?;
                to_micros("size", trade.size)?;
                Ok(())
            }
        }
    }
}

/// The rules and thresholds of the built-in detectors.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub new_wallet: NewWalletThresholds,
    pub wallet_capacity: usize,
    pub arbitrage: ArbitrageThresholds,
    pub price_move: PriceMoveThresholds,
    pub volume_spike: VolumeSpikeThresholds,
}

impl EngineSettings {
    /// A built-in rule's version is a fingerprint of its thresholds: changing a threshold
    /// gives the rule a new version, so its signals get new ids and never overwrite the ones
    /// judged under the old thresholds.
    fn rule(rule_id: &str, thresholds: &[i64]) -> Rule {
        use sha2::{Digest as _, Sha256};
        let text: Vec<String> = thresholds.iter().map(i64::to_string).collect();
        let digest = Sha256::digest(format!("{rule_id}|{}", text.join("|")).as_bytes());
        let version = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) >> 1;
        Rule::new(rule_id, i32::try_from(version).unwrap_or(i32::MAX))
    }

    pub fn new_wallet_rule(&self) -> Rule {
        let thresholds = self.new_wallet;
        Self::rule(
            "large_trade_new_wallet",
            &[
                thresholds.min_notional,
                thresholds.max_age_ms,
                i64::try_from(thresholds.min_prior_fills).unwrap_or(i64::MAX),
            ],
        )
    }

    pub fn arbitrage_rules(&self) -> (Rule, Rule) {
        let values = [self.arbitrage.min_edge, self.arbitrage.min_size];
        (
            Self::rule("binary_arbitrage", &values),
            Self::rule("neg_risk_arbitrage", &values),
        )
    }

    pub fn volume_spike_rule(&self) -> Rule {
        let thresholds = self.volume_spike;
        Self::rule(
            "volume_spike",
            &[
                thresholds.window_ms,
                i64::from(thresholds.trailing_windows),
                thresholds.multiple,
                thresholds.min_notional,
            ],
        )
    }

    pub fn price_move_rule(&self) -> Rule {
        let thresholds = self.price_move;
        let mut fingerprint = vec![
            thresholds.min_move,
            thresholds.window_ms,
            thresholds.cooldown_ms,
        ];
        // The volatility criterion's thresholds count only when it is on: the rule (and every
        // signal id) of the default configuration stays what it was.
        if thresholds.sigmas > 0 {
            fingerprint.extend([
                thresholds.sigmas,
                thresholds.sigma_lookback_ms,
                thresholds.sigma_floor,
            ]);
        }
        Self::rule("price_move", &fingerprint)
    }
}

/// What the engine has learned: everything a checkpoint keeps, as it is read back (written
/// from an [`EngineStateRef`]).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EngineState {
    wallets: WalletState,
    arbitrage: ArbitrageState,
    price_moves: PriceMoveState,
    /// Absent from checkpoints written before volume spikes existed.
    #[serde(default)]
    volume_spikes: VolumeSpikeState,
    /// Markets by condition id.
    markets: BTreeMap<String, Market>,
    /// Negative-risk events: their markets' condition ids.
    neg_risk_events: BTreeMap<String, Vec<String>>,
}

/// [`EngineState`] borrowed from a running engine: a checkpoint serializes it without copying
/// the state (same fields, same JSON).
#[derive(Debug, Serialize)]
pub struct EngineStateRef<'a> {
    wallets: &'a WalletState,
    arbitrage: &'a ArbitrageState,
    price_moves: &'a PriceMoveState,
    volume_spikes: &'a VolumeSpikeState,
    markets: &'a BTreeMap<String, Market>,
    neg_risk_events: &'a BTreeMap<String, Vec<String>>,
}

/// The detectors and the reference data deciding what they watch.
pub struct Engine {
    wallets: NewWalletDetector,
    arbitrage: ArbitrageDetector,
    price_moves: PriceMoveDetector,
    volume_spikes: VolumeSpikeDetector,
    markets: BTreeMap<String, Market>,
    neg_risk_events: BTreeMap<String, Vec<String>>,
    /// Negative-risk events of each market.
    events_of_market: HashMap<String, BTreeSet<String>>,
}

impl Engine {
    pub fn new(settings: &EngineSettings, state: EngineState) -> Self {
        let (binary_rule, neg_risk_rule) = settings.arbitrage_rules();
        let mut events_of_market: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (event_id, condition_ids) in &state.neg_risk_events {
            for condition_id in condition_ids {
                events_of_market
                    .entry(condition_id.clone())
                    .or_default()
                    .insert(event_id.clone());
            }
        }
        Self {
            wallets: NewWalletDetector::restore(
                settings.new_wallet_rule(),
                settings.new_wallet,
                settings.wallet_capacity,
                state.wallets,
            ),
            arbitrage: ArbitrageDetector::restore(
                binary_rule,
                neg_risk_rule,
                settings.arbitrage,
                state.arbitrage,
            ),
            price_moves: PriceMoveDetector::restore(
                settings.price_move_rule(),
                settings.price_move,
                state.price_moves,
            ),
            volume_spikes: VolumeSpikeDetector::restore(
                settings.volume_spike_rule(),
                settings.volume_spike,
                state.volume_spikes,
            ),
            markets: state.markets,
            neg_risk_events: state.neg_risk_events,
            events_of_market,
        }
    }

    /// The state to checkpoint; it reads back as an [`EngineState`].
    pub fn state(&self) -> EngineStateRef<'_> {
        EngineStateRef {
            wallets: self.wallets.state(),
            arbitrage: self.arbitrage.state(),
            price_moves: self.price_moves.state(),
            volume_spikes: self.volume_spikes.state(),
            markets: &self.markets,
            neg_risk_events: &self.neg_risk_events,
        }
    }

    /// Wallets and markets held, for the state gauge.
    pub fn sizes(&self) -> (usize, usize) {
        (self.wallets.wallets(), self.markets.len())
    }

    /// Learns a market: an open binary market with a known fee is watched for YES + NO
    /// windows (a closed one, or one whose fee became unknown, no longer is), and the
    /// negative-risk events it belongs to are looked at again. Returns the windows this
    /// closes, at the record's `updated_ms`.
    pub fn market(&mut self, market: Market) -> Vec<Signal> {
        let at_ms = market.updated_ms;
        let mut closed = match Structure::binary(&market).filter(|_| !market.closed) {
            Some(structure) => self.arbitrage.watch(structure, at_ms),
            None => {
                self.arbitrage
                    .unwatch(SignalKind::BinaryArbitrage, &market.condition_id, at_ms)
            }
        };
        let condition_id = market.condition_id.clone();
        self.markets.insert(condition_id.clone(), market);
        let events: Vec<String> = self
            .events_of_market
            .get(&condition_id)
            .map(|events| events.iter().cloned().collect())
            .unwrap_or_default();
        for event_id in events {
            closed.extend(self.watch_neg_risk_event(&event_id, at_ms));
        }
        closed
    }

    /// Learns an event: a negative-risk event is watched while every one of its markets is
    /// known and open (a subset of its outcomes always looks like an arbitrage). Returns the
    /// windows this closes, at the record's `updated_ms`.
    pub fn event(&mut self, event: &Event) -> Vec<Signal> {
        if !event.neg_risk {
            return Vec::new();
        }
        let mut condition_ids = event.market_condition_ids.clone();
        condition_ids.sort();
        condition_ids.dedup();
        if let Some(previous) = self.neg_risk_events.get(&event.event_id) {
            for condition_id in previous {
                if let Some(events) = self.events_of_market.get_mut(condition_id) {
                    events.remove(&event.event_id);
                }
            }
        }
        for condition_id in &condition_ids {
            self.events_of_market
                .entry(condition_id.clone())
                .or_default()
                .insert(event.event_id.clone());
        }
        self.neg_risk_events
            .insert(event.event_id.clone(), condition_ids);
        self.watch_neg_risk_event(&event.event_id, event.updated_ms)
    }

    fn watch_neg_risk_event(&mut self, event_id: &str, at_ms: i64) -> Vec<Signal> {
        let Some(condition_ids) = self.neg_risk_events.get(event_id) else {
            return Vec::new();
        };
        let markets: Vec<&Market> = condition_ids
            .iter()
            .filter_map(|condition_id| self.markets.get(condition_id))
            .collect();
        let subject = markets
            .iter()
            .find_map(|market| market.neg_risk_market_id.clone())
            .unwrap_or_else(|| event_id.to_owned());
        // Every outcome known, negative-risk and trading: a closed outcome's YES cannot be
        // bought, and a missing one would make the rest look like an arbitrage.
        let complete = markets.len() == condition_ids.len()
            && markets.len() >= 2
            && markets
                .iter()
                .all(|market| market.neg_risk && !market.closed);
        let structure = complete
            .then(|| Structure::neg_risk(&subject, &markets))
            .flatten();
        match structure {
            Some(mut structure) => {
                structure.event_id = Some(event_id.to_owned());
                self.arbitrage.watch(structure, at_ms)
            }
            None => self
                .arbitrage
                .unwatch(SignalKind::NegRiskArbitrage, &subject, at_ms),
        }
    }

    /// Judges the instant of book updates the arbitrage detector holds back (the input went
    /// quiet; see [`ArbitrageDetector::apply`]).
    pub fn judge_pending(&mut self) -> Vec<Signal> {
        self.arbitrage.judge_pending()
    }

    /// Batches of book updates that came after their instant was judged, since last asked.
    pub fn take_late_book_batches(&mut self) -> u64 {
        self.arbitrage.take_late_batches()
    }

    /// The time of the book updates waiting to be judged.
    pub fn pending_at_ms(&self) -> Option<i64> {
        self.arbitrage.pending_at_ms()
    }

    /// Judges events released by the merge, in their order.
    pub fn apply(&mut self, events: &[SignalEvent]) -> Result<Vec<Signal>, UnitsError> {
        let mut signals = Vec::new();
        let mut index = 0;
        while let Some(event) = events.get(index) {
            match event {
                SignalEvent::Trade(trade) => {
                    signals.extend(self.trade(trade)?);
                    index += 1;
                }
                SignalEvent::Snapshot(_) | SignalEvent::Change(_) => {
                    // Every book event of this millisecond, judged together.
                    let time_ms = event.time_ms();
                    let mut updates = Vec::new();
                    while let Some(next) = events.get(index) {
                        let update = match next {
                            SignalEvent::Snapshot(snapshot) if next.time_ms() == time_ms => {
                                BookUpdate::Snapshot(snapshot)
                            }
                            SignalEvent::Change(change) if next.time_ms() == time_ms => {
                                BookUpdate::Change(change)
                            }
                            _ => break,
                        };
                        updates.push(update);
                        index += 1;
                    }
                    signals.extend(self.arbitrage.apply(&updates)?);
                }
            }
        }
        Ok(signals)
    }

    fn trade(&mut self, trade: &Trade) -> Result<Vec<Signal>, UnitsError> {
        let mut signals = Vec::new();
        signals.extend(self.wallets.observe(trade)?);
        let price = to_micros("price", trade.price)?;
        let size = to_micros("size", trade.size)?;
        signals.extend(self.price_moves.observe(PriceObservation {
            token_id: &trade.token_id,
            condition_id: &trade.condition_id,
            at_ms: trade.timestamp_ms,
            price,
            link: &trade.trade_id,
        }));
        signals.extend(self.volume_spikes.observe(Fill {
            token_id: &trade.token_id,
            condition_id: &trade.condition_id,
            at_ms: trade.timestamp_ms,
            notional: i128::from(price) * i128::from(size) / 1_000_000,
            link: &trade.trade_id,
        }));
        Ok(signals)
    }
}

#[cfg(test)]
mod tests;
