//! `cargo xtask bench all`: every benchmark, each figure the median of at least three runs
//! with its min–max, written to BENCHMARKS.md with the machine it ran on.
//!
//! Each benchmark command prints its human report and, when `POLYTAPE_BENCH_FIGURES=1`, one
//! `FIGURE {json}` line per measured figure (see [`figure`]). `bench all` runs each command
//! (as a child `cargo xtask bench <name>`) until every figure it reports has three values, then
//! writes the table. Ratios are figures of their own, computed inside one run from its two
//! sides, so each ratio compares numbers measured side by side.

use std::{collections::BTreeMap, fmt::Write as _, process::Command, time::Instant};

use anyhow::{Context as _, bail};

use crate::bench::median;
use crate::paths;

/// Environment variable that makes benchmark commands print `FIGURE` lines.
const FIGURES_VARIABLE: &str = "POLYTAPE_BENCH_FIGURES";

/// Prints one machine-readable figure (only under `bench all`).
pub(crate) fn figure(id: &str, label: &str, value: f64, unit: &str, goal: &str) {
    if std::env::var_os(FIGURES_VARIABLE).is_none() {
        return;
    }
    if !value.is_finite() {
        // A figure the run could not measure is left out (the report shows fewer runs).
        eprintln!("figure {id} ({label}) was not measured in this run");
        return;
    }
    let line = serde_json::json!({
        "id": id,
        "label": label,
        "value": value,
        "unit": unit,
        "goal": goal,
    });
    println!("FIGURE {line}");
}

/// The benchmarks of the report, in its order.
const BENCHMARKS: [(&str, &str); 8] = [
    ("sink", "P1 sink vs raw load"),
    ("collector", "P2 collector budget use"),
    ("candles", "P3 candle builder"),
    ("signals", "Signals engine"),
    ("freshness", "P4 freshness and P7 memory, whole pipeline"),
    ("api", "P5 API vs direct ClickHouse"),
    ("codec", "P6 codec vs apache-avro Value"),
    ("ws-bridge", "WebSocket bridge throughput"),
];

const RUNS: usize = 3;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Collected {
    label: String,
    unit: String,
    goal: String,
    values: Vec<f64>,
}

/// Raw values of the last `bench all`, so `--only` can re-measure part of the report.
fn stored_figures_path() -> std::path::PathBuf {
    paths::state_dir().join("bench-figures.json")
}

pub(crate) fn run(only: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    for name in only {
        if !BENCHMARKS.iter().any(|(known, _)| known == name) {
            bail!("unknown benchmark {name:?} in --only");
        }
    }
    let mut figures: BTreeMap<String, Collected> = if only.is_empty() {
        BTreeMap::new()
    } else {
        let stored = std::fs::read_to_string(stored_figures_path()).with_context(|| {
            format!(
                "--only needs the figures of an earlier full run in {}; run `cargo xtask bench all` first",
                stored_figures_path().display()
            )
        })?;
        let mut stored: BTreeMap<String, Collected> = serde_json::from_str(&stored)?;
        stored.retain(|id, _| !only.iter().any(|name| id.starts_with(name.as_str())));
        stored
    };
    let mut failures = Vec::new();
    for (name, what) in BENCHMARKS {
        if !only.is_empty() && !only.iter().any(|selected| selected == name) {
            continue;
        }
        for attempt in 1..=RUNS {
            println!("\n== bench all: {name} ({what}), run {attempt}/{RUNS}");
            match run_one(name) {
                Ok(lines) => {
                    for line in lines {
                        let entry = figures.entry(line.id).or_default();
                        entry.label = line.label;
                        entry.unit = line.unit;
                        entry.goal = line.goal;
                        entry.values.push(line.value);
                    }
                }
                Err(error) => {
                    eprintln!("bench {name} failed: {error:#}");
                    failures.push(format!("{name}: {error:#}"));
                    break;
                }
            }
            let prefix = figure_prefix(name);
            let enough = figures
                .iter()
                .filter(|(id, _)| id.starts_with(prefix))
                .all(|(_, collected)| collected.values.len() >= RUNS);
            if enough && figures.keys().any(|id| id.starts_with(prefix)) {
                break;
            }
        }
    }
    std::fs::create_dir_all(paths::state_dir())?;
    std::fs::write(
        stored_figures_path(),
        serde_json::to_string_pretty(&figures)?,
    )
    .with_context(|| format!("cannot write {}", stored_figures_path().display()))?;
    let report = render(&figures, &failures, started.elapsed().as_secs_f64(), only)?;
    let path = paths::workspace_root().join("BENCHMARKS.md");
    std::fs::write(&path, report).with_context(|| format!("cannot write {}", path.display()))?;
    println!("\nwrote {}", path.display());
    if !failures.is_empty() {
        bail!(
            "{} benchmark(s) failed: {}",
            failures.len(),
            failures.join("; ")
        );
    }
    Ok(())
}

/// Figure ids start with the benchmark's name (`sink.p1_ratio`, `codec.ratio`, …).
fn figure_prefix(name: &str) -> &str {
    name
}

#[derive(Debug, serde::Deserialize)]
struct FigureLine {
    id: String,
    label: String,
    value: f64,
    unit: String,
    goal: String,
}

fn run_one(name: &str) -> anyhow::Result<Vec<FigureLine>> {
    let output = Command::new(paths::cargo())
        .args(["xtask", "bench", name])
        .env(FIGURES_VARIABLE, "1")
        .current_dir(paths::workspace_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo xtask bench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = Vec::new();
    for line in stdout.lines() {
        match line.strip_prefix("FIGURE ") {
            Some(json) => lines.push(
                serde_json::from_str::<FigureLine>(json)
                    .with_context(|| format!("bad FIGURE line {json:?}"))?,
            ),
            None => println!("{line}"),
        }
    }
    if !output.status.success() {
        bail!("exited with {}", output.status);
    }
    if lines.is_empty() {
        bail!("printed no FIGURE line");
    }
    Ok(lines)
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        return "–".to_owned();
    }
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0 / 1024.0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    format!(
        "{model}, {cores} cores available, {memory_gib:.1} GiB RAM, load average {load} at the end; {}; {}; commit {}",
        command_output("uname", &["-srm"]),
        command_output("rustc", &["--version"]),
        command_output("git", &["rev-parse", "--short", "HEAD"])
    )
}

fn render(
    figures: &BTreeMap<String, Collected>,
    failures: &[String],
    elapsed_seconds: f64,
    only: &[String],
) -> anyhow::Result<String> {
    let mut report = String::new();
    writeln!(report, "# Benchmarks")?;
    writeln!(report)?;
    writeln!(
        report,
        "Generated by `cargo xtask bench all` (do not edit by hand) in {:.0} min.",
        elapsed_seconds / 60.0
    )?;
    writeln!(report)?;
    writeln!(report, "Machine: {}.", machine_description())?;
    writeln!(report)?;
    if !only.is_empty() {
        writeln!(
            report,
            "Re-measured in this run: {}; every other figure is carried over from the previous \
             full run (`.polytape/bench-figures.json`).",
            only.join(", ")
        )?;
        writeln!(report)?;
    }
    writeln!(
        report,
        "Each figure is the median of its runs (min–max beside it). Ratios are computed inside \
         each run from two sides measured side by side, then their median is taken. Absolute \
         figures depend on the machine; the ratios are what the goals are stated in. What each \
         benchmark does: `xtask/src/bench*.rs` and the README of the service it measures."
    )?;
    writeln!(report)?;
    for (name, what) in BENCHMARKS {
        let rows: Vec<(&String, &Collected)> = figures
            .iter()
            .filter(|(id, _)| id.starts_with(figure_prefix(name)))
            .collect();
        writeln!(report, "## {what} (`cargo xtask bench {name}`)")?;
        writeln!(report)?;
        if rows.is_empty() {
            writeln!(
                report,
                "No figures: the benchmark failed in this run (see below)."
            )?;
            writeln!(report)?;
            continue;
        }
        writeln!(
            report,
            "| figure | median | min – max | runs | unit | goal |"
        )?;
        writeln!(report, "|---|---:|---:|---:|---|---|")?;
        for (_, collected) in rows {
            let minimum = collected
                .values
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min);
            let maximum = collected
                .values
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            writeln!(
                report,
                "| {} | {} | {} – {} | {} | {} | {} |",
                collected.label,
                format_value(median(&collected.values)),
                format_value(minimum),
                format_value(maximum),
                collected.values.len(),
                collected.unit,
                if collected.goal.is_empty() {
                    "–"
                } else {
                    &collected.goal
                }
            )?;
        }
        writeln!(report)?;
    }
    if !failures.is_empty() {
        writeln!(report, "## Failures in this run")?;
        writeln!(report)?;
        for failure in failures {
            writeln!(report, "- {failure}")?;
        }
        writeln!(report)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_median_and_range_per_figure() {
        let mut figures = BTreeMap::new();
        figures.insert(
            "codec.ratio".to_owned(),
            Collected {
                label: "Value path / ours".to_owned(),
                unit: "×".to_owned(),
                goal: "≥ 5".to_owned(),
                values: vec![7.0, 7.5, 6.9],
            },
        );
        let report = render(&figures, &["api: exited with 1".to_owned()], 60.0, &[]).unwrap();
        assert!(
            report.contains("| Value path / ours | 7.00 | 6.90 – 7.50 | 3 | × | ≥ 5 |"),
            "{report}"
        );
        assert!(report.contains("## P1 sink vs raw load"), "{report}");
        assert!(report.contains("- api: exited with 1"), "{report}");
    }
}
