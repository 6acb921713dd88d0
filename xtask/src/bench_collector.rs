//! `cargo xtask bench collector`: the collector's use of upstream budgets against the
//! simulator (real 10 s windows): requests/s per endpoint as a fraction of the budget, and
//! throttled/429 responses. Goal: ≥ 0.95 and 0. Runs the release-mode benchmark binary
//! `services/collector/benches/budget.rs` (≥ 3 runs, each with a fresh simulator) and reports
//! medians with min–max.

use std::process::Command;

use anyhow::{Context as _, bail};

use super::median;
use crate::{bench_all::figure, paths, stack};

fn series(result: &serde_json::Value, key: &str) -> anyhow::Result<Vec<f64>> {
    result[key]
        .as_array()
        .with_context(|| format!("no {key} in the benchmark result"))?
        .iter()
        .map(|value| {
            value
                .as_f64()
                .with_context(|| format!("{key} holds a non-number"))
        })
        .collect()
}

fn describe(values: &[f64], decimals: usize) -> String {
    let minimum = values.iter().copied().fold(f64::INFINITY, f64::min);
    let maximum = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "median {:>8.decimals$} (min {minimum:.decimals$} – max {maximum:.decimals$}, {} runs)",
        median(values),
        values.len()
    )
}

pub(crate) fn run() -> anyhow::Result<()> {
    stack::up(&stack::StackSpec::development(), false)?;
    let output = Command::new(paths::cargo())
        .args([
            "bench",
            "--package",
            "polytape-collector",
            "--bench",
            "budget",
        ])
        .current_dir(paths::workspace_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo bench")?;
    if !output.status.success() {
        bail!("the collector benchmark failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .context("the collector benchmark printed no RESULT line")?;
    let result: serde_json::Value = serde_json::from_str(line)?;
    // One FIGURE per run, so `bench all` gets its three values from one invocation.
    for (id, label, key, unit, goal) in [
        (
            "collector.1_trades_utilisation",
            "Data /trades requests/s as a fraction of the budget (trades backfill)",
            "trades_utilisation",
            "of budget",
            ">= 0.95",
        ),
        (
            "collector.2_trades_throttled",
            "Data /trades throttled + 429 responses",
            "trades_throttled_and_429",
            "responses",
            "0",
        ),
        (
            "collector.3_leaderboard_utilisation",
            "Data /v1/leaderboard requests/s as a fraction of the budget (full snapshot)",
            "leaderboard_utilisation",
            "of budget",
            ">= 0.95",
        ),
        (
            "collector.4_leaderboard_throttled",
            "Data /v1/leaderboard throttled + 429 responses",
            "leaderboard_throttled_and_429",
            "responses",
            "0",
        ),
    ] {
        let values = match key.strip_suffix("_throttled_and_429") {
            Some(prefix) => series(&result, &format!("{prefix}_throttled"))?
                .into_iter()
                .zip(series(&result, &format!("{prefix}_429"))?)
                .map(|(throttled, rejected)| throttled + rejected)
                .collect(),
            None => series(&result, key)?,
        };
        for value in values {
            figure(id, label, value, unit, goal);
        }
    }
    println!("\ncollector budget use against the simulator (10 s sliding windows)");
    for (label, prefix, budget) in [
        ("Data /trades (trades backfill)", "trades", "200 / 10 s"),
        (
            "Data /v1/leaderboard (full-depth snapshot)",
            "leaderboard",
            "1,000 / 10 s general",
        ),
    ] {
        println!("  {label}, budget {budget}");
        println!(
            "    requests/s                 : {}",
            describe(&series(&result, &format!("{prefix}_requests_per_s"))?, 2)
        );
        println!(
            "    fraction of the budget     : {}   (goal >= 0.95)",
            describe(&series(&result, &format!("{prefix}_utilisation"))?, 3)
        );
        println!(
            "    throttled responses        : {}   (goal 0)",
            describe(&series(&result, &format!("{prefix}_throttled"))?, 0)
        );
        println!(
            "    429 responses              : {}   (goal 0)",
            describe(&series(&result, &format!("{prefix}_429"))?, 0)
        );
    }
    Ok(())
}
