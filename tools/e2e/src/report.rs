//! Figures for the reliability report (`cargo xtask chaos`): what each run injected, what its
//! checks compared against the truth, the gaps it declared and how fast it recovered. A test
//! writes them with [`Pipeline::report`] once every check passed, as one JSON line appended to
//! the file `POLYTAPE_E2E_REPORT` names (nothing is written when it is unset); a failed check
//! fails the test, so a report line always stands for "0 lost, 0 duplicated" among what was
//! compared.

use std::{collections::BTreeMap, io::Write as _, time::Duration};

use serde::Serialize;

use crate::Pipeline;

/// The environment variable naming the report file.
pub(crate) const REPORT_VARIABLE: &str = "POLYTAPE_E2E_REPORT";

/// What one run's checks compared and measured.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Figures {
    /// Truth fills found in `trades` exactly once, by id.
    pub fills: u64,
    /// WebSocket truth events found exactly once, by identity, per table.
    pub ws_events: BTreeMap<String, u64>,
    /// WebSocket truth events missing inside a declared gap (allowed), per table.
    pub ws_missing_in_gaps: BTreeMap<String, u64>,
    /// Injected bad inputs (poisoned truth rows, garbage frames) found in `dead_letters`
    /// exactly once each (and nothing else there).
    pub dead_letters: u64,
    /// Declared gaps, per kind.
    pub gaps: BTreeMap<String, u64>,
    /// Recoveries: what recovered, and how long after its cause ended, in ms.
    pub recoveries: Vec<(String, u64)>,
}

#[derive(Debug, Serialize)]
struct Line<'a> {
    test: &'a str,
    fault: &'a str,
    injected: &'a str,
    figures: &'a Figures,
}

impl Pipeline {
    /// Records a recovery time (from the moment its cause ended).
    pub fn record_recovery(&self, what: impl Into<String>, took: Duration) {
        let millis = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        self.figures().recoveries.push((what.into(), millis));
    }

    pub(crate) fn figures(&self) -> std::sync::MutexGuard<'_, Figures> {
        self.figures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long until every service answers `/readyz` with 200 (at most 300 s, then the test
    /// fails): the recovery time after a dependency came back.
    pub async fn time_to_all_ready(&self) -> Duration {
        let started = std::time::Instant::now();
        loop {
            let mut all_ready = true;
            for service in crate::Service::PIPELINE {
                all_ready &= self.is_ready(self.admin_addr(service)).await;
            }
            if all_ready {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "not every service was ready again within 300 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Appends this run's line to the report file, if one is asked for.
    pub fn report(&self, test: &str, fault: &str, injected: &str) {
        let Ok(path) = std::env::var(REPORT_VARIABLE) else {
            return;
        };
        let figures = self.figures().clone();
        let line = serde_json::to_string(&Line {
            test,
            fault,
            injected,
            figures: &figures,
        })
        .expect("figures serialise");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|error| panic!("cannot open the report file {path}: {error}"));
        writeln!(file, "{line}").unwrap_or_else(|error| panic!("cannot write {path}: {error}"));
    }
}
