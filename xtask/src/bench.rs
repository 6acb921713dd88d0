//! `cargo xtask bench …`: benchmarks reported as medians and as ratios against a baseline
//! measured side by side in the same run.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{paths, stack};

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Which benchmark: `codec` (P6: our Avro path vs apache-avro's Value path)
    which: String,
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which.as_str() {
        "codec" => codec(),
        other => bail!("unknown benchmark {other:?}; available: codec"),
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
    Ok(())
}
