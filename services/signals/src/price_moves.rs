//! Price moves: a token's last-trade price moving by at least a threshold within a window
//! (e.g. ten points in five minutes).
//!
//! The price read is the last trade's (the fills on our trades topic, or the market channel's
//! `last_trade_price`), said in every signal. A move is measured from the lowest (for a rise)
//! or highest (for a fall) price of the trailing window to the fill that completes it; the
//! window starts at that extreme, which fixes the signal's id. After a signal the token is
//! quiet for a cooldown, so one move is one signal, not one per fill that continues it.
//!
//! Moves are judged in time order. A fill older than the newest seen (a late or replayed
//! copy's neighbour) joins the window in its place, so later moves are measured against it,
//! but raises nothing itself: a move is only ever told forwards in time. A fill older than the
//! newest seen minus the window is too late to matter and is skipped.

use std::collections::{HashMap, VecDeque};

use polytape_model::{Signal, SignalKind};
use serde::{Deserialize, Serialize};

use crate::signal::{Inputs, Rule, signal_id};

/// When a move fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceMoveThresholds {
    /// The least move, in scale-6 units of price (0.10 = 100,000).
    pub min_move: i64,
    pub window_ms: i64,
    pub cooldown_ms: i64,
}

impl Default for PriceMoveThresholds {
    /// Ten points within five minutes; quiet for five minutes after.
    fn default() -> Self {
        Self {
            min_move: 100_000,
            window_ms: 300_000,
            cooldown_ms: 300_000,
        }
    }
}

/// One observed price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Point {
    at_ms: i64,
    price: i64,
    link: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TokenPrices {
    points: VecDeque<Point>,
    newest_ms: i64,
    quiet_until_ms: i64,
}

/// A last-trade price of a token, as the detector reads it.
#[derive(Debug, Clone, Copy)]
pub struct PriceObservation<'a> {
    pub token_id: &'a str,
    pub condition_id: &'a str,
    pub at_ms: i64,
    /// Scale-6 units.
    pub price: i64,
    /// What the price rests on (a trade id).
    pub link: &'a str,
}

/// What the detector has learned: the part of it a checkpoint keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PriceMoveState {
    tokens: HashMap<String, TokenPrices>,
}

/// Trailing prices per token and the rule over them.
#[derive(Debug)]
pub struct PriceMoveDetector {
    rule: Rule,
    thresholds: PriceMoveThresholds,
    state: PriceMoveState,
}

impl PriceMoveDetector {
    pub fn new(rule: Rule, thresholds: PriceMoveThresholds) -> Self {
        Self {
            rule,
            thresholds,
            state: PriceMoveState::default(),
        }
    }

    /// The detector with a checkpointed state.
    pub fn restore(rule: Rule, thresholds: PriceMoveThresholds, state: PriceMoveState) -> Self {
        Self {
            state,
            ..Self::new(rule, thresholds)
        }
    }

    /// The state to checkpoint.
    pub fn state(&self) -> &PriceMoveState {
        &self.state
    }

    /// Learns one price and returns the move it completes, if any.
    pub fn observe(&mut self, observation: PriceObservation<'_>) -> Option<Signal> {
        let window_ms = self.thresholds.window_ms;
        let token = self
            .state
            .tokens
            .entry(observation.token_id.to_owned())
            .or_default();
        let late = !token.points.is_empty() && observation.at_ms < token.newest_ms;
        if late && observation.at_ms < token.newest_ms - window_ms {
            return None;
        }
        token.newest_ms = token.newest_ms.max(observation.at_ms);
        let horizon = token.newest_ms - window_ms;
        while token
            .points
            .front()
            .is_some_and(|point| point.at_ms < horizon)
        {
            token.points.pop_front();
        }
        let point = Point {
            at_ms: observation.at_ms,
            price: observation.price,
            link: observation.link.to_owned(),
        };
        if late {
            // In time order (after the points of its own millisecond), for later moves.
            let at = token
                .points
                .partition_point(|other| other.at_ms <= observation.at_ms);
            token.points.insert(at, point);
            return None;
        }
        // The extremes of the window before this price (the earliest on ties: the move's
        // start is where the price first stood). Points are in time order and all within the
        // window, since this price is the newest.
        let low = token
            .points
            .iter()
            .min_by_key(|point| (point.price, point.at_ms))
            .cloned();
        let high = token
            .points
            .iter()
            .max_by_key(|point| (point.price, -point.at_ms))
            .cloned();
        token.points.push_back(point);
        if observation.at_ms < token.quiet_until_ms {
            return None;
        }
        let rise = low.filter(|low| observation.price - low.price >= self.thresholds.min_move);
        let fall = high.filter(|high| high.price - observation.price >= self.thresholds.min_move);
        // Both at once only with a window spanning both extremes: the larger move is told.
        let start = match (rise, fall) {
            (Some(low), Some(high)) => {
                if observation.price - low.price >= high.price - observation.price {
                    low
                } else {
                    high
                }
            }
            (Some(start), None) | (None, Some(start)) => start,
            (None, None) => return None,
        };
        token.quiet_until_ms = observation.at_ms + self.thresholds.cooldown_ms;
        let subject = observation.token_id.to_owned();
        Some(Signal {
            signal_id: signal_id(SignalKind::PriceMove, &self.rule, &subject, start.at_ms),
            kind: SignalKind::PriceMove,
            rule_id: self.rule.rule_id.clone(),
            rule_version: self.rule.version,
            subject,
            condition_ids: vec![observation.condition_id.to_owned()],
            token_ids: vec![observation.token_id.to_owned()],
            event_id: None,
            window_start_ms: start.at_ms,
            window_end_ms: Some(observation.at_ms),
            thresholds: Inputs::default()
                .units("min_move", self.thresholds.min_move)
                .integer("window_ms", self.thresholds.window_ms)
                .integer("cooldown_ms", self.thresholds.cooldown_ms)
                .into_values(),
            inputs: Inputs::default()
                .text("price_basis", "last_trade")
                .units("from_price", start.price)
                .units("to_price", observation.price)
                .units("move", observation.price - start.price)
                .integer("from_ms", start.at_ms)
                .integer("to_ms", observation.at_ms)
                .into_values(),
            links: vec![start.link, observation.link.to_owned()],
        })
    }
}

#[cfg(test)]
mod tests;
