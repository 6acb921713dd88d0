//! `cargo xtask bench ws-bridge`: the ws-bridge from socket to acknowledged Kafka records
//! (events/s, records/s, CPU per 1k events/s) against the simulator and the development stack,
//! plus the per-event parse + encode path (criterion).

use std::process::Command;

use anyhow::{Context as _, bail};

use super::{figures as numbers, median};
use crate::{bench_all::figure, paths, stack};

fn describe(values: &[f64], decimals: usize) -> String {
    let minimum = values.iter().copied().fold(f64::INFINITY, f64::min);
    let maximum = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "median {:>10.decimals$} (min {minimum:.decimals$} – max {maximum:.decimals$}, {} runs)",
        median(values),
        values.len()
    )
}

fn cargo_bench(bench: &str) -> anyhow::Result<String> {
    let output = Command::new(paths::cargo())
        .args(["bench", "--package", "polytape-ws-bridge", "--bench", bench])
        .current_dir(paths::workspace_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo bench")?;
    if !output.status.success() {
        bail!("the ws-bridge {bench} benchmark failed ({})", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Criterion's median (ns) of one benchmark of the last run.
fn criterion_median_ns(group: &str, function: &str) -> anyhow::Result<f64> {
    let path = stack::target_dir()
        .join("criterion")
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let estimates: serde_json::Value = serde_json::from_str(&text)?;
    estimates["median"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("no median in {}", path.display()))
}

pub(crate) fn run() -> anyhow::Result<()> {
    stack::up(&stack::StackSpec::development(), false)?;
    let stdout = cargo_bench("throughput")?;
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .context("the throughput benchmark printed no RESULT line")?;
    let result: serde_json::Value = serde_json::from_str(line)?;
    let events = numbers(&result, "events_per_s")?;
    let records = numbers(&result, "records_per_s")?;
    let cores = numbers(&result, "bridge_cpu_cores")?;
    let per_1k = numbers(&result, "cpu_cores_per_1k_events_per_s")?;
    cargo_bench("parse_encode")?;
    let parse_ns = criterion_median_ns("frame_of_100_events", "parse_only")? / 100.0;
    let both_ns = criterion_median_ns("frame_of_100_events", "parse_and_encode")? / 100.0;
    println!(
        "\nws-bridge: simulator → WebSocket → parse/validate/encode → Kafka (acks=all), {} operations per run",
        result["operations_per_run"]
    );
    println!(
        "  events/s, socket to acknowledged records : {}   (goal >= 20000)",
        describe(&events, 0)
    );
    println!(
        "  records/s acknowledged (one per entry)   : {}",
        describe(&records, 0)
    );
    println!(
        "  bridge CPU (its threads + librdkafka)    : {} cores",
        describe(&cores, 2)
    );
    println!(
        "  CPU per 1k events/s                      : {} cores",
        describe(&per_1k, 3)
    );
    println!(
        "  lagged disconnects (must be 0)           : {}",
        result["lagged_disconnects"]
    );
    println!("  parse per event (criterion median)       : {parse_ns:>10.0} ns");
    println!("  parse + Avro encode per event            : {both_ns:>10.0} ns");
    figure(
        "ws-bridge.1_events_per_s",
        "WS events/s, socket to acknowledged Kafka records",
        median(&events),
        "events/s",
        "≥ 20,000",
    );
    figure(
        "ws-bridge.2_cpu_per_1k",
        "bridge CPU per 1k events/s",
        median(&per_1k),
        "cores",
        "",
    );
    figure(
        "ws-bridge.3_parse_encode",
        "parse + Avro encode per event",
        both_ns,
        "ns",
        "",
    );
    Ok(())
}
