//! The signals check (issue #15): the signals service, run over a world with planted
//! scenarios, raised exactly what the simulator's truth expects — every planted and implied
//! signal, with its subject, window bounds and inputs — and nothing else. The rest of the
//! world is the baseline: any other signal is one it must not raise at the default thresholds.

use std::str::FromStr;

use clickhouse::Row;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

use polymarket_sim::SCENARIO_KINDS;

use crate::Pipeline;

/// The simulator's live phase starts a moment before the harness notes the time.
const LIVE_START_SLACK_MS: i64 = 5_000;

#[derive(Debug, Row, Deserialize)]
struct StoredSignal {
    signal_id: String,
    kind: String,
    subject: String,
    window_start_ms: i64,
    window_end_ms: Option<i64>,
    input_names: Vec<String>,
    input_values: Vec<String>,
}

impl StoredSignal {
    fn input(&self, name: &str) -> Option<&str> {
        let position = self
            .input_names
            .iter()
            .position(|candidate| candidate == name)?;
        self.input_values.get(position).map(String::as_str)
    }

    /// Whether this is the signal `expected` describes: kind, subject, window bounds, and each
    /// expected input equal as a decimal (or as text, for words).
    fn is(&self, expected: &Value) -> bool {
        let same_input = |name: &str, wanted: &Value| {
            let (Some(wanted), Some(stored)) = (wanted.as_str(), self.input(name)) else {
                return false;
            };
            match (Decimal::from_str(wanted), Decimal::from_str(stored)) {
                (Ok(wanted), Ok(stored)) => wanted == stored,
                _ => wanted == stored,
            }
        };
        expected["kind"].as_str() == Some(self.kind.as_str())
            && expected["subject"].as_str() == Some(self.subject.as_str())
            && expected["window_start_ms"].as_i64() == Some(self.window_start_ms)
            && expected["window_end_ms"].as_i64() == self.window_end_ms
            && expected["inputs"]
                .as_object()
                .is_some_and(|inputs| inputs.iter().all(|(name, wanted)| same_input(name, wanted)))
    }

    fn describe(&self) -> String {
        let inputs: Vec<String> = self
            .input_names
            .iter()
            .zip(&self.input_values)
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        format!(
            "{} {} {} [{}, {:?}] {}",
            self.signal_id,
            self.kind,
            self.subject,
            self.window_start_ms,
            self.window_end_ms,
            inputs.join(" ")
        )
    }
}

/// Every kind of scenario was planted and ended; every signal the truth expects of them is in
/// `signals` (after FINAL) with the right subject, bounds and inputs; and `signals` holds no
/// other.
pub async fn check_planted_signals(pipeline: &Pipeline) -> Result<String, String> {
    let truth = pipeline.truth("/_sim/truth/signals").await;
    let scenarios: Vec<&Value> = truth["scenarios"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    for kind in SCENARIO_KINDS {
        let done = scenarios
            .iter()
            .any(|scenario| scenario["kind"] == kind && scenario["state"] == "done");
        if !done {
            return Err(format!("no {kind} scenario planted and ended: {truth}"));
        }
    }
    let running: Vec<&&Value> = scenarios
        .iter()
        .filter(|scenario| scenario["state"] == "running")
        .collect();
    if !running.is_empty() {
        return Err(format!(
            "scenarios still running when the world paused: {running:?}"
        ));
    }
    let planted_expected: Vec<&Value> = scenarios
        .iter()
        .flat_map(|scenario| scenario["expected"].as_array().into_iter().flatten())
        .collect();
    let baseline: Vec<&Value> = truth["baseline"].as_array().into_iter().flatten().collect();
    let stored: Vec<StoredSignal> = pipeline
        .database
        .client
        .query(
            "SELECT signal_id, toString(kind) AS kind, subject, \
             toUnixTimestamp64Milli(window_start) AS window_start_ms, \
             toUnixTimestamp64Milli(window_end) AS window_end_ms, input_names, input_values \
             FROM signals FINAL ORDER BY window_start, signal_id",
        )
        .fetch_all()
        .await
        .map_err(|error| format!("reading signals: {error}"))?;
    // Recall: every signal a scenario planted (or implies), with its inputs and bounds.
    let missing: Vec<&&Value> = planted_expected
        .iter()
        .filter(|wanted| wanted["role"] == "planted")
        .filter(|wanted| !stored.iter().any(|signal| signal.is(wanted)))
        .collect();
    // Precision: any other signal must be one the rules raise on the simulator's own tape
    // (implied by a scenario, or the baseline's), or one this check tolerates and reports
    // (see `tolerated_because`).
    let mut tolerated = Vec::new();
    let mut unexpected = Vec::new();
    for signal in &stored {
        let explained = planted_expected
            .iter()
            .chain(baseline.iter())
            .any(|wanted| signal.is(wanted));
        if explained {
            continue;
        }
        if let Some(reason) = tolerated_because(signal, pipeline.live_started_ms) {
            tolerated.push(format!("{} ({reason})", signal.describe()));
        } else {
            unexpected.push(signal.describe());
        }
    }
    if !missing.is_empty() || !unexpected.is_empty() {
        let all: Vec<String> = stored.iter().map(StoredSignal::describe).collect();
        return Err(format!(
            "{} planted signal(s) missing: {missing:?}; {} signal(s) nothing explains: {unexpected:?}; stored: {all:?}",
            missing.len(),
            unexpected.len()
        ));
    }
    for line in &tolerated {
        eprintln!("[e2e] tolerated signal: {line}");
    }
    let planted = planted_expected
        .iter()
        .filter(|wanted| wanted["role"] == "planted")
        .count();
    Ok(format!(
        "{} scenarios: all {planted} planted signals found with their inputs and bounds; {} stored signals, each planted, implied, a baseline one the rules raise on the tape, or one of {} tolerated",
        scenarios.len(),
        stored.len(),
        tolerated.len()
    ))
}

/// Why a signal no expectation explains is tolerated, if it is. One known limit, reported by
/// the run rather than hidden (services/signals/README.md, "Limits"): a volume spike whose
/// window reaches into the live phase. The simulator's live flow is ~50 times denser per
/// market than its history (40 operations/s against ~0.7), so a token's first live windows
/// can truly spike; and while the collector is still backfilling, backfilled fills reach the
/// trades topic after live ones, so what a token's trailing mean holds then depends on how far
/// the backfill had got, which the simulator cannot know. (An arbitrage window of no duration,
/// one upstream message judged in halves, was tolerated here until the book topics were keyed
/// by market; it now fails the run.)
fn tolerated_because(signal: &StoredSignal, live_started_ms: i64) -> Option<&'static str> {
    match signal.kind.as_str() {
        "VOLUME_SPIKE"
            if signal
                .window_end_ms
                .is_some_and(|end| end > live_started_ms - LIVE_START_SLACK_MS) =>
        {
            Some("a volume spike of the live flow")
        }
        _ => None,
    }
}
