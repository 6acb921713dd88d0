//! Price moves: a token's last-trade price moving by at least a threshold within a window
//! (e.g. ten points in five minutes).
//!
//! The price read is the last trade's (the fills on our trades topic, or the market channel's
//! `last_trade_price`), said in every signal. A move is measured from the lowest (for a rise)
//! or highest (for a fall) price of the trailing window to the fill that completes it; the
//! window starts at that extreme, which fixes the signal's id. After a signal the token is
//! quiet for a cooldown, so one move is one signal, not one per fill that continues it.
//!
//! A second, opt-in criterion (`sigmas` > 0) fires on a move that is large for *this* token:
//! at least `sigmas` standard deviations of its trailing window-to-window price changes. The
//! token's last price in each window of `window_ms` (aligned to UTC) is its close; over the
//! trailing `sigma_lookback_ms` the changes from close to close (a window without fills keeps
//! the close before it: a change of 0) give the deviation, computed in integer scale-6 units,
//! once at least [`MIN_SIGMA_SAMPLES`] changes are known. A move fires this way when it is at
//! least `sigmas × deviation` and at least `sigma_floor` (a token whose price never moved
//! would otherwise fire on one tick). Either criterion makes one signal (same window, same id);
//! its inputs say which held (`fired_on`) and, with the variant on, the deviation and the
//! number of changes it rests on. Off by default: chance alone fires it (with normal changes a
//! three-deviation change comes about once in 370 windows per token).
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
    /// The deviations a move must reach to fire on the trailing volatility (scale-6: 3.0 =
    /// 3,000,000); 0 turns that criterion off.
    pub sigmas: i64,
    /// How far back the window-to-window changes are kept for the deviation.
    pub sigma_lookback_ms: i64,
    /// The least move the volatility criterion fires on (scale-6).
    pub sigma_floor: i64,
}

impl Default for PriceMoveThresholds {
    /// Ten points within five minutes; quiet for five minutes after; the volatility criterion
    /// off (when on: over a day, at least two points).
    fn default() -> Self {
        Self {
            min_move: 100_000,
            window_ms: 300_000,
            cooldown_ms: 300_000,
            sigmas: 0,
            sigma_lookback_ms: 86_400_000,
            sigma_floor: 20_000,
        }
    }
}

/// Window-to-window changes a deviation needs before the volatility criterion can fire.
pub const MIN_SIGMA_SAMPLES: i64 = 12;

/// A token's trailing deviation of window-to-window changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Volatility {
    /// Scale-6 units (floored).
    deviation: i64,
    /// Mean change per window (scale-6, truncated toward zero).
    mean: i64,
    samples: i64,
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
    /// (window index, last price in it) of the trailing windows before the current one, for
    /// the volatility criterion (kept only when it is on).
    #[serde(default)]
    closes: VecDeque<(i64, i64)>,
    /// The current window and its last price so far.
    #[serde(default)]
    current: Option<(i64, i64)>,
    /// The window length the closes were kept under: a restart with another length starts
    /// them over (their indices would mean other windows).
    #[serde(default)]
    closes_window_ms: i64,
}

impl TokenPrices {
    /// Moves the closes on to `window`, the window of a price at or after every earlier one:
    /// an earlier current window is closed, and closes before the lookback are dropped.
    fn roll_to(&mut self, window: i64, thresholds: &PriceMoveThresholds) {
        if self.closes_window_ms != thresholds.window_ms {
            self.closes.clear();
            self.current = None;
            self.closes_window_ms = thresholds.window_ms;
        }
        if let Some((current, close)) = self.current
            && current < window
        {
            self.closes.push_back((current, close));
            self.current = None;
        }
        let kept_windows = thresholds.sigma_lookback_ms / thresholds.window_ms.max(1);
        while self
            .closes
            .front()
            .is_some_and(|(index, _)| *index < window - kept_windows - 1)
        {
            self.closes.pop_front();
        }
    }

    /// Notes a price of the current `window` (after [`Self::roll_to`]).
    fn note_price(&mut self, window: i64, price: i64) {
        match self.current {
            Some((current, _)) if current != window => {}
            _ => self.current = Some((window, price)),
        }
    }

    /// The deviation of the changes from close to close over the kept windows before
    /// `window`: a window with no fill carries the close before it (a change of 0), up to the
    /// window before `window`. `None` with fewer than [`MIN_SIGMA_SAMPLES`] changes (or sums
    /// beyond i128, which no true price reaches).
    fn volatility(&self, window: i64) -> Option<Volatility> {
        let mut samples: i128 = 0;
        let mut sum: i128 = 0;
        let mut sum_of_squares: i128 = 0;
        let mut previous: Option<(i64, i64)> = None;
        for &(index, close) in &self.closes {
            if let Some((previous_index, previous_close)) = previous {
                // Empty windows in between changed nothing: counted, never stored.
                samples += i128::from(index - previous_index - 1);
                let change = i128::from(close) - i128::from(previous_close);
                samples += 1;
                sum = sum.checked_add(change)?;
                sum_of_squares = sum_of_squares.checked_add(change.checked_mul(change)?)?;
            }
            previous = Some((index, close));
        }
        if let Some((last_index, _)) = previous {
            samples += i128::from((window - 1 - last_index).max(0));
        }
        if samples < i128::from(MIN_SIGMA_SAMPLES) {
            return None;
        }
        // Sample variance, exact in integers: (n·Σx² − (Σx)²) / (n·(n − 1)).
        let spread = samples
            .checked_mul(sum_of_squares)?
            .checked_sub(sum.checked_mul(sum)?)?;
        let variance = spread / samples.checked_mul(samples - 1)?;
        let deviation = u128::try_from(variance.max(0)).ok()?.isqrt();
        Some(Volatility {
            deviation: i64::try_from(deviation).ok()?,
            mean: i64::try_from(sum / samples).ok()?,
            samples: i64::try_from(samples).ok()?,
        })
    }
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
        // The deviation is of the windows before this price's (every fill of a window is
        // judged against the same ones).
        let volatility = if self.thresholds.sigmas > 0 {
            let window = observation
                .at_ms
                .div_euclid(self.thresholds.window_ms.max(1));
            token.roll_to(window, &self.thresholds);
            let volatility = token.volatility(window);
            token.note_price(window, observation.price);
            volatility
        } else {
            None
        };
        if observation.at_ms < token.quiet_until_ms {
            return None;
        }
        // The larger of the rise from the window's low and the fall from its high (both only
        // with a window spanning both extremes).
        let rise = low.map(|low| (observation.price - low.price, low));
        let fall = high.map(|high| (high.price - observation.price, high));
        let (size, start) = match (rise, fall) {
            (Some(rise), Some(fall)) => {
                if rise.0 >= fall.0 {
                    rise
                } else {
                    fall
                }
            }
            (Some(only), None) | (None, Some(only)) => only,
            (None, None) => return None,
        };
        let by_move = size >= self.thresholds.min_move;
        let by_sigma = volatility.is_some_and(|volatility| {
            size > 0
                && size >= self.thresholds.sigma_floor
                && i128::from(size) * 1_000_000
                    >= i128::from(self.thresholds.sigmas) * i128::from(volatility.deviation)
        });
        if !by_move && !by_sigma {
            return None;
        }
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
            thresholds: self.thresholds_fired().into_values(),
            inputs: self
                .volatility_inputs(volatility, by_move, by_sigma)
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

impl PriceMoveDetector {
    /// The thresholds a signal carries (the volatility ones only with that criterion on, so
    /// the records of the default rule stay as they were).
    fn thresholds_fired(&self) -> Inputs {
        let inputs = Inputs::default()
            .units("min_move", self.thresholds.min_move)
            .integer("window_ms", self.thresholds.window_ms)
            .integer("cooldown_ms", self.thresholds.cooldown_ms);
        if self.thresholds.sigmas == 0 {
            return inputs;
        }
        inputs
            .units("sigmas", self.thresholds.sigmas)
            .integer("sigma_lookback_ms", self.thresholds.sigma_lookback_ms)
            .units("sigma_floor", self.thresholds.sigma_floor)
    }

    /// Which criterion held and the deviation it rests on (nothing with the volatility
    /// criterion off).
    fn volatility_inputs(
        &self,
        volatility: Option<Volatility>,
        by_move: bool,
        by_sigma: bool,
    ) -> Inputs {
        if self.thresholds.sigmas == 0 {
            return Inputs::default();
        }
        let fired_on = match (by_move, by_sigma) {
            (true, true) => "move+sigma",
            (false, true) => "sigma",
            _ => "move",
        };
        let inputs = Inputs::default().text("fired_on", fired_on);
        match volatility {
            Some(volatility) => inputs
                .units("sigma", volatility.deviation)
                .units("mean_change", volatility.mean)
                .integer("sigma_samples", volatility.samples),
            None => inputs.integer("sigma_samples", 0),
        }
    }
}

#[cfg(test)]
mod tests;
