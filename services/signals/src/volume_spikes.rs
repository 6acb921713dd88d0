//! Volume spikes: a token's traded notional within a window reaching a multiple of its
//! trailing mean for such windows, and at least a minimum notional (the markets that are
//! suddenly busy).
//!
//! Windows are tumbling, aligned to multiples of the window length in UTC milliseconds, so a
//! window's start is a function of the fill's time and fixes the signal's id. The trailing
//! mean is over the `trailing_windows` windows before the current one, quiet windows counting
//! as zero; a token is judged only once it has that much history (it was first seen at least
//! that many windows ago), so a token's first busy hour is not a spike against nothing. The
//! signal fires on the fill that crosses both thresholds — early, not when the window ends —
//! and once per token and window.
//!
//! Fills are judged in time order. A fill of a window before the token's current one (a late
//! fill) is not counted: spikes are told forwards in time only.

use std::collections::{HashMap, VecDeque};

use polytape_model::{Signal, SignalKind};
use serde::{Deserialize, Serialize};

use crate::signal::{Inputs, Rule, signal_id};

/// When a spike fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeSpikeThresholds {
    pub window_ms: i64,
    /// Windows the trailing mean is taken over.
    pub trailing_windows: u32,
    /// The least multiple of the trailing mean, in scale-6 units (5× = 5,000,000).
    pub multiple: i64,
    /// The least notional in the window, scale-6 units of USDC.
    pub min_notional: i64,
}

impl Default for VolumeSpikeThresholds {
    /// Five times the mean of the twelve five-minute windows before, and at least 5,000 USDC.
    fn default() -> Self {
        Self {
            window_ms: 300_000,
            trailing_windows: 12,
            multiple: 5_000_000,
            min_notional: 5_000_000_000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TokenVolume {
    first_seen_ms: i64,
    window_start_ms: i64,
    /// Notional of the current window (scale-6 units), and its fills.
    notional: i128,
    fills: u64,
    /// Notional of the windows before the current one, oldest first, at most
    /// `trailing_windows`.
    trailing: VecDeque<i128>,
    /// The window a spike was told for.
    fired_window_ms: Option<i64>,
}

/// One fill, as the detector reads it.
#[derive(Debug, Clone, Copy)]
pub struct Fill<'a> {
    pub token_id: &'a str,
    pub condition_id: &'a str,
    pub at_ms: i64,
    /// Price × size, scale-6 units of USDC.
    pub notional: i128,
    /// The trade id.
    pub link: &'a str,
}

/// What the detector has learned: the part of it a checkpoint keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VolumeSpikeState {
    tokens: HashMap<String, TokenVolume>,
    /// The latest window a fill fell in (any token); tokens quiet for longer than the trailing
    /// windows are forgotten when it moves on.
    #[serde(default)]
    newest_window_ms: i64,
}

/// Trailing volume per token and the rule over it.
#[derive(Debug)]
pub struct VolumeSpikeDetector {
    rule: Rule,
    thresholds: VolumeSpikeThresholds,
    state: VolumeSpikeState,
}

fn to_i64(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl VolumeSpikeDetector {
    pub fn restore(rule: Rule, thresholds: VolumeSpikeThresholds, state: VolumeSpikeState) -> Self {
        Self {
            rule,
            thresholds,
            state,
        }
    }

    /// The state to checkpoint.
    pub fn state(&self) -> &VolumeSpikeState {
        &self.state
    }

    /// Counts one fill and returns the spike it completes, if any.
    pub fn observe(&mut self, fill: Fill<'_>) -> Option<Signal> {
        let thresholds = self.thresholds;
        let window_ms = thresholds.window_ms.max(1);
        let trailing_windows = thresholds.trailing_windows as usize;
        let window_start_ms = fill.at_ms.div_euclid(window_ms) * window_ms;
        if window_start_ms > self.state.newest_window_ms {
            self.state.newest_window_ms = window_start_ms;
            // A token with no fill in the trailing windows and the current one has an all-zero
            // history: forgetting it loses nothing but its warm-up, which it goes through again.
            let horizon = window_start_ms.saturating_sub(
                window_ms.saturating_mul(i64::from(thresholds.trailing_windows) + 1),
            );
            self.state
                .tokens
                .retain(|_, token| token.window_start_ms >= horizon);
        }
        let token = self
            .state
            .tokens
            .entry(fill.token_id.to_owned())
            .or_insert_with(|| TokenVolume {
                first_seen_ms: fill.at_ms,
                window_start_ms,
                ..TokenVolume::default()
            });
        if window_start_ms < token.window_start_ms {
            return None;
        }
        if window_start_ms > token.window_start_ms {
            // Close the current window and the quiet ones after it.
            let passed = (window_start_ms - token.window_start_ms) / window_ms;
            token.trailing.push_back(token.notional);
            let quiet = usize::try_from(passed - 1)
                .unwrap_or(usize::MAX)
                .min(trailing_windows);
            token.trailing.extend(std::iter::repeat_n(0, quiet));
            while token.trailing.len() > trailing_windows {
                token.trailing.pop_front();
            }
            token.window_start_ms = window_start_ms;
            token.notional = 0;
            token.fills = 0;
        }
        token.notional += fill.notional;
        token.fills += 1;

        let history_ms = window_ms.saturating_mul(i64::from(thresholds.trailing_windows));
        let first_window_ms = token.first_seen_ms.div_euclid(window_ms) * window_ms;
        let warm = token.trailing.len() == trailing_windows
            && window_start_ms - first_window_ms >= history_ms;
        if !warm || token.fired_window_ms == Some(window_start_ms) || trailing_windows == 0 {
            return None;
        }
        let trailing_sum: i128 = token.trailing.iter().sum();
        let windows = i128::from(thresholds.trailing_windows);
        // notional ≥ multiple × mean  ⇔  notional × windows × 10⁶ ≥ multiple × sum.
        let above_mean =
            token.notional * windows * 1_000_000 >= i128::from(thresholds.multiple) * trailing_sum;
        if token.notional < i128::from(thresholds.min_notional) || !above_mean {
            return None;
        }
        token.fired_window_ms = Some(window_start_ms);
        let mean = trailing_sum / windows;
        let mut inputs = Inputs::default()
            .units("notional", to_i64(token.notional))
            .units("trailing_mean", to_i64(mean))
            .integer("fills", i64::try_from(token.fills).unwrap_or(i64::MAX))
            .integer("crossed_ms", fill.at_ms);
        if mean > 0 {
            inputs = inputs.units(
                "multiple_of_mean",
                to_i64(token.notional * 1_000_000 / mean),
            );
        }
        Some(Signal {
            signal_id: signal_id(
                SignalKind::VolumeSpike,
                &self.rule,
                fill.token_id,
                window_start_ms,
            ),
            kind: SignalKind::VolumeSpike,
            rule_id: self.rule.rule_id.clone(),
            rule_version: self.rule.version,
            subject: fill.token_id.to_owned(),
            condition_ids: vec![fill.condition_id.to_owned()],
            token_ids: vec![fill.token_id.to_owned()],
            event_id: None,
            window_start_ms,
            window_end_ms: Some(window_start_ms + window_ms),
            thresholds: Inputs::default()
                .units("multiple", thresholds.multiple)
                .units("min_notional", thresholds.min_notional)
                .integer("window_ms", window_ms)
                .integer("trailing_windows", i64::from(thresholds.trailing_windows))
                .into_values(),
            inputs: inputs.into_values(),
            links: vec![fill.link.to_owned()],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn detector() -> VolumeSpikeDetector {
        VolumeSpikeDetector::restore(
            Rule::new("volume_spike", 1),
            VolumeSpikeThresholds {
                window_ms: 5 * MINUTE,
                trailing_windows: 3,
                multiple: 5_000_000,
                min_notional: 1_000_000_000,
            },
            VolumeSpikeState::default(),
        )
    }

    fn fill(at_ms: i64, usdc: i128) -> Fill<'static> {
        Fill {
            token_id: "t",
            condition_id: "0xm",
            at_ms,
            notional: usdc * 1_000_000,
            link: "trade",
        }
    }

    #[test]
    fn a_window_at_a_multiple_of_the_trailing_mean_fires_once_on_the_crossing_fill() {
        let mut detector = detector();
        // Three windows of 200 USDC each (mean 200), a quiet start: no spike while warming.
        for window in 0..3 {
            assert!(detector.observe(fill(window * 5 * MINUTE, 200)).is_none());
        }
        // Window 3: 900 (< 5 × 200 = 1,000), then 200 more crosses both thresholds.
        let start = 15 * MINUTE;
        assert!(detector.observe(fill(start, 900)).is_none());
        let spike = detector.observe(fill(start + MINUTE, 200));
        let spike = spike.unwrap_or_else(|| panic!("no spike"));
        assert_eq!(spike.kind, SignalKind::VolumeSpike);
        assert_eq!(
            (spike.window_start_ms, spike.window_end_ms),
            (start, Some(start + 5 * MINUTE))
        );
        assert_eq!(spike.input("notional"), Some("1100.000000"));
        assert_eq!(spike.input("trailing_mean"), Some("200.000000"));
        assert_eq!(spike.input("multiple_of_mean"), Some("5.500000"));
        assert_eq!(spike.input("fills"), Some("2"));
        // Once per window.
        assert!(detector.observe(fill(start + 2 * MINUTE, 5_000)).is_none());
    }

    #[test]
    fn a_token_first_seen_mid_window_is_judged_after_as_many_windows() {
        let mut detector = detector();
        // First seen 4 minutes into window 0; windows 0, 1 and 2 make the trailing three.
        for window in 0..3 {
            detector.observe(fill(window * 5 * MINUTE + 4 * MINUTE, 200));
        }
        assert!(detector.observe(fill(15 * MINUTE, 1_100)).is_some());
    }

    #[test]
    fn quiet_windows_count_as_zero_and_the_minimum_notional_holds() {
        let mut detector = detector();
        assert!(detector.observe(fill(0, 100)).is_none());
        // Four windows later the window of 100 has left the trailing three; 999 is below the
        // minimum, one more USDC reaches it against a mean of zero.
        let later = 20 * MINUTE;
        assert!(detector.observe(fill(later, 999)).is_none());
        let spike = detector.observe(fill(later + 1, 1));
        assert_eq!(
            spike
                .as_ref()
                .and_then(|spike| spike.input("trailing_mean")),
            Some("0.000000"),
            "the window of 100 is more than three windows back"
        );
    }

    #[test]
    fn late_fills_are_not_counted_and_state_survives_a_restore() {
        let mut detector = detector();
        for window in 0..4 {
            detector.observe(fill(window * 5 * MINUTE, 200));
        }
        // A fill of window 2 arriving now changes nothing.
        assert!(detector.observe(fill(10 * MINUTE, 10_000)).is_none());
        let state = serde_json::to_string(detector.state()).unwrap_or_default();
        let restored: VolumeSpikeState = serde_json::from_str(&state).unwrap_or_default();
        let mut restored = VolumeSpikeDetector::restore(
            Rule::new("volume_spike", 1),
            detector.thresholds,
            restored,
        );
        let original = detector.observe(fill(15 * MINUTE + 1, 1_000));
        let again = restored.observe(fill(15 * MINUTE + 1, 1_000));
        assert!(original.is_some());
        assert_eq!(original, again);
    }
}
