//! `cargo xtask bench …`: benchmarks reported as medians and as ratios against a baseline
//! measured side by side in the same run.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{bench_all::figure, paths, stack};

#[path = "bench_collector.rs"]
mod bench_collector;
#[path = "bench_ws_bridge.rs"]
mod bench_ws_bridge;

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Which benchmark: `codec` (P6: our Avro path vs apache-avro's Value path) or `sink`
    /// (P1: the sink's path vs a raw RowBinary load; end to end vs a bare consumer) or
    /// `candles` (P3: trades/s and price changes/s per core, peak RSS for 10k tokens) or
    /// `collector` (upstream budget use and throttling against the simulator) or `freshness`
    /// (P4/P7: the whole pipeline at ~5k WebSocket events/s: freshness p50/p99, RSS per
    /// service) or `api` (P5: API vs the same queries straight to ClickHouse) or `signals`
    /// (the signals engine's events/s per core beside the Avro decode alone) or `alerts` (event →
    /// signal record → webhook latency p50/p99 at the demo's load) or `all` (every
    /// benchmark, three runs each, written to BENCHMARKS.md)
    which: String,
    /// With `all`: re-measure only these benchmarks (comma-separated) and keep the other
    /// figures of the last `bench all` (stored in .polytape/bench-figures.json)
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which.as_str() {
        "codec" => codec(),
        "sink" => sink(),
        "candles" => candles(),
        "signals" => signals(),
        "collector" => bench_collector::run(),
        "ws-bridge" => bench_ws_bridge::run(),
        "freshness" => freshness(),
        "all" => crate::bench_all::run(&args.only),
        "api" => crate::bench_api::run(),
        "alerts" => crate::bench_alerts::run(),
        other => bail!(
            "unknown benchmark {other:?}; available: codec, sink, candles, signals, alerts, collector, ws-bridge, api, freshness, all"
        ),
    }
}

/// Criterion's median estimate (nanoseconds) of one benchmark of the last run.
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

fn codec() -> anyhow::Result<()> {
    let status = Command::new(paths::cargo())
        .args(["bench", "--package", "polytape-codec", "--bench", "codec"])
        .current_dir(paths::workspace_root())
        .status()
        .context("cannot run cargo bench")?;
    if !status.success() {
        bail!("the codec benchmark failed ({status})");
    }
    let ours = criterion_median_ns("trade_encode_decode", "polytape_direct")?;
    let baseline = criterion_median_ns("trade_encode_decode", "apache_avro_value")?;
    println!("\ncodec: encode + decode of one trade record (medians of criterion samples)");
    println!("  polytape direct serde path : {ours:>10.1} ns");
    println!("  apache-avro Value path     : {baseline:>10.1} ns");
    println!(
        "  ratio (Value / ours)       : {:>10.2}x   (goal >= 5x)",
        baseline / ours
    );
    figure(
        "codec.1_ours",
        "encode + decode of one trade, polytape",
        ours,
        "ns",
        "",
    );
    figure(
        "codec.2_value",
        "same, apache-avro Value path",
        baseline,
        "ns",
        "",
    );
    figure(
        "codec.3_ratio",
        "Value path / polytape",
        baseline / ours,
        "×",
        "≥ 5",
    );
    Ok(())
}

/// The median of measured values (NaN for none); shared by every benchmark report.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        length if length % 2 == 1 => sorted[length / 2],
        length => (sorted[length / 2 - 1] + sorted[length / 2]) / 2.0,
    }
}

/// The numbers under `key` of a benchmark's RESULT object.
fn figures(result: &serde_json::Value, key: &str) -> anyhow::Result<Vec<f64>> {
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

fn describe(values: &[f64]) -> String {
    let minimum = values.iter().copied().fold(f64::INFINITY, f64::min);
    let maximum = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "median {:>10.0} (min {:.0} – max {:.0}, {} runs)",
        median(values),
        minimum,
        maximum,
        values.len()
    )
}

/// The sink against the development stack (started if needed).
fn sink() -> anyhow::Result<()> {
    stack::up(&stack::StackSpec::development(), false)?;
    let output = Command::new(paths::cargo())
        .args([
            "bench",
            "--package",
            "polytape-sink-clickhouse",
            "--bench",
            "sink",
        ])
        .current_dir(paths::workspace_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo bench")?;
    if !output.status.success() {
        bail!("the sink benchmark failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .context("the sink benchmark printed no RESULT line")?;
    let result: serde_json::Value = serde_json::from_str(line)?;
    let p1_sink = figures(&result, "p1_sink_rows_per_s")?;
    let p1_raw = figures(&result, "p1_raw_rows_per_s")?;
    let p2_sink = figures(&result, "p2_sink_rows_per_s")?;
    let p2_consumer = figures(&result, "p2_consumer_msgs_per_s")?;
    println!("\nsink (batches of {} rows)", result["batch_rows"]);
    println!(
        "  P1 sink path (decode → rows → RowBinary insert), rows/s : {}",
        describe(&p1_sink)
    );
    println!(
        "  P1 raw RowBinary load of the same rows, rows/s        : {}",
        describe(&p1_raw)
    );
    println!(
        "  P1 ratio sink / raw                                   : {:>10.2}   (goal >= 0.8)",
        median(&p1_sink) / median(&p1_raw)
    );
    println!(
        "  P2 sink end to end through the broker, rows/s         : {}",
        describe(&p2_sink)
    );
    println!(
        "  P2 bare consumer on the same topic, messages/s        : {}",
        describe(&p2_consumer)
    );
    println!(
        "  P2 ratio sink / bare consumer                         : {:>10.2}   (goal >= 0.9)",
        median(&p2_sink) / median(&p2_consumer)
    );
    // One figure per internal run, so `bench all` gets its runs from one invocation.
    for (sink_rate, raw_rate) in p1_sink.iter().zip(&p1_raw) {
        figure(
            "sink.1_p1_sink",
            "sink path, decode → rows → insert",
            *sink_rate,
            "rows/s",
            "",
        );
        figure(
            "sink.2_p1_raw",
            "raw RowBinary load of the same rows",
            *raw_rate,
            "rows/s",
            "",
        );
        figure(
            "sink.3_p1_ratio",
            "P1 ratio sink / raw",
            sink_rate / raw_rate,
            "×",
            "≥ 0.8",
        );
    }
    for (sink_rate, consumer_rate) in p2_sink.iter().zip(&p2_consumer) {
        figure(
            "sink.4_e2e",
            "sink end to end through the broker",
            *sink_rate,
            "rows/s",
            "",
        );
        figure(
            "sink.5_consumer",
            "bare consumer on the same topic",
            *consumer_rate,
            "msgs/s",
            "",
        );
        figure(
            "sink.6_ratio",
            "ratio sink / bare consumer",
            sink_rate / consumer_rate,
            "×",
            "≥ 0.9",
        );
    }
    Ok(())
}

/// The candle builder on one core without Kafka I/O (criterion), and its memory for 10k tokens.
fn candles() -> anyhow::Result<()> {
    let output = Command::new(paths::cargo())
        .args([
            "bench",
            "--package",
            "polytape-candle-builder",
            "--bench",
            "candles",
        ])
        .current_dir(paths::workspace_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo bench")?;
    if !output.status.success() {
        bail!("the candles benchmark failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .context("the candles benchmark printed no RESULT line")?;
    let result: serde_json::Value = serde_json::from_str(line)?;
    // Each criterion iteration processes a batch of this many items.
    const ITEMS_PER_ITERATION: f64 = 100_000.0;
    let per_second = |group: &str, function: &str| -> anyhow::Result<f64> {
        Ok(ITEMS_PER_ITERATION / (criterion_median_ns(group, function)? / 1e9))
    };
    println!("\ncandle builder (one core, no Kafka I/O; medians of criterion samples)");
    println!(
        "  trades/s, Avro decode + candles (6 intervals) : {:>12.0}   (goal >= 1000000)",
        per_second("trades", "decode_and_candle")?
    );
    println!(
        "  trades/s, candles only                        : {:>12.0}",
        per_second("trades", "candle_only")?
    );
    println!(
        "  price_change entries/s applied to books       : {:>12.0}   (goal >= 1000000)",
        per_second("price_changes", "apply")?
    );
    println!(
        "  price_change entries/s incl. Avro decode      : {:>12.0}",
        per_second("price_changes", "decode_and_apply")?
    );
    println!(
        "  peak RSS, books + windows of 10k tokens, MiB  : {:>12.1}   (goal <= 200 MB)",
        result["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
    );
    let trades_per_second = per_second("trades", "decode_and_candle")?;
    let price_changes_per_second = per_second("price_changes", "apply")?;
    figure(
        "candles.1_trades",
        "trades/s per core, Avro decode + candles",
        trades_per_second,
        "trades/s",
        "≥ 1,000,000",
    );
    figure(
        "candles.2_books",
        "price_change entries/s applied to books",
        price_changes_per_second,
        "entries/s",
        "≥ 1,000,000",
    );
    figure(
        "candles.3_rss",
        "peak RSS, books + windows of 10k tokens",
        result["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
        "MiB",
        "≤ 200 MB",
    );
    Ok(())
}

/// The signals engine on one core without Kafka I/O (criterion): trades and book changes
/// judged, each beside the decode of the same records alone.
fn signals() -> anyhow::Result<()> {
    let status = Command::new(paths::cargo())
        .args([
            "bench",
            "--package",
            "polytape-signals",
            "--bench",
            "engine",
        ])
        .current_dir(paths::workspace_root())
        .status()
        .context("cannot run cargo bench")?;
    if !status.success() {
        bail!("the signals benchmark failed ({status})");
    }
    // Each criterion iteration processes this many records.
    const ITEMS_PER_ITERATION: f64 = 100_000.0;
    let per_second = |group: &str, function: &str| -> anyhow::Result<f64> {
        Ok(ITEMS_PER_ITERATION / (criterion_median_ns(group, function)? / 1e9))
    };
    let trades = per_second("signals_trades", "decode_and_judge")?;
    let trades_decode = per_second("signals_trades", "decode_only")?;
    let changes = per_second("signals_book_changes", "decode_and_judge")?;
    let changes_decode = per_second("signals_book_changes", "decode_only")?;
    println!("\nsignals engine (one core, no Kafka I/O; medians of criterion samples)");
    println!("  trades/s, decode + wallet and price-move detectors : {trades:>12.0}");
    println!("  trades/s, decode alone (baseline)                  : {trades_decode:>12.0}");
    println!(
        "  ratio judged / decode alone                        : {:>12.2}",
        trades / trades_decode
    );
    println!("  book changes/s, decode + books + arbitrage         : {changes:>12.0}");
    println!("  book changes/s, decode alone (baseline)            : {changes_decode:>12.0}");
    println!(
        "  ratio judged / decode alone                        : {:>12.2}",
        changes / changes_decode
    );
    figure(
        "signals.1_trades",
        "trades/s per core, decode + wallet and price-move detectors",
        trades,
        "trades/s",
        "",
    );
    figure(
        "signals.2_trades_ratio",
        "trades: judged / decode alone",
        trades / trades_decode,
        "×",
        "",
    );
    figure(
        "signals.3_changes",
        "book changes/s per core, decode + books + arbitrage",
        changes,
        "entries/s",
        "",
    );
    figure(
        "signals.4_changes_ratio",
        "book changes: judged / decode alone",
        changes / changes_decode,
        "×",
        "",
    );
    Ok(())
}

/// P4 and P7: the whole pipeline (release binaries) with the simulator's WebSocket at ~5k
/// events/s; the sink's per-row latency of `price_changes` and each service's peak RSS.
fn freshness() -> anyhow::Result<()> {
    stack::up(&stack::StackSpec::development(), false)?;
    let root = paths::workspace_root();
    let status = Command::new(paths::cargo())
        .args(["build", "--release", "--bins"])
        .args([
            "--package",
            "polytape-collector",
            "--package",
            "polytape-ws-bridge",
        ])
        .args([
            "--package",
            "polytape-candle-builder",
            "--package",
            "polytape-sink-clickhouse",
        ])
        .args(["--package", "polytape-api"])
        .current_dir(&root)
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!("building the release binaries failed ({status})");
    }
    let output = Command::new(paths::cargo())
        .args([
            "test",
            "--release",
            "--package",
            "polytape-e2e",
            "--test",
            "freshness",
        ])
        .args(["--", "--ignored", "--nocapture", "--test-threads", "1"])
        .current_dir(&root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run the freshness benchmark")?;
    if !output.status.success() {
        bail!("the freshness benchmark failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        // libtest prints `test <name> ... ` before the test's own output on the same line.
        .find_map(|line| line.split_once("RESULT ").map(|(_, json)| json))
        .context("the freshness benchmark printed no RESULT line")?;
    let result: serde_json::Value = serde_json::from_str(line)?;
    let number = |key: &str| result[key].as_f64().unwrap_or(f64::NAN);
    println!(
        "
whole pipeline, simulator WebSocket at {:.0} events/s (release binaries)",
        number("ws_events_per_s")
    );
    println!(
        "  P4 freshness p50 (insert − upstream event time) : {:>8.0} ms",
        number("freshness_p50_ms")
    );
    println!(
        "  P4 freshness p99                                 : {:>8.0} ms",
        number("freshness_p99_ms")
    );
    figure(
        "freshness.1_rate",
        "simulator WebSocket events delivered",
        number("ws_events_per_s"),
        "events/s",
        "≈ 5,000",
    );
    figure(
        "freshness.2_p50",
        "P4 freshness p50, price_changes",
        number("freshness_p50_ms"),
        "ms",
        "",
    );
    figure(
        "freshness.3_p99",
        "P4 freshness p99, price_changes",
        number("freshness_p99_ms"),
        "ms",
        "",
    );
    for service in [
        "collector",
        "ws_bridge",
        "candle_builder",
        "sink_clickhouse",
        "api",
    ] {
        let rss = number(&format!("rss_mib_{service}"));
        println!("  P7 peak RSS {service:<16}                 : {rss:>8.1} MiB");
        figure(
            &format!("freshness.4_rss_{service}"),
            &format!("P7 peak RSS, {service}"),
            rss,
            "MiB",
            "",
        );
    }
    Ok(())
}
