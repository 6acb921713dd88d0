use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use polytape_runtime::{Service, config, startup_failure};
use polytape_signals::SignalsConfig;

/// Polytape signals: explainable market signals derived in-stream
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; `POLYTAPE_<KEY>` environment variables override it
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = match config::load::<SignalsConfig>(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(error) => return startup_failure(Service::Signals, &error),
    };
    let admin = loaded.config.admin_endpoint();
    polytape_runtime::run(
        loaded.config,
        loaded.warnings,
        Some(admin),
        polytape_signals::start,
    )
    .await
}
