use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use polytape_api::{
    ApiConfig,
    cli::{ExportArgs, KeysCommand, RulesCommand},
};
use polytape_runtime::{Service, config, startup_failure};

/// Polytape API: the REST API over ClickHouse
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; `POLYTAPE_<KEY>` environment variables override it
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage API keys (create, list, revoke, rotate, generate)
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Manage alert rules (list, show, history, put, disable, test)
    Rules {
        #[command(subcommand)]
        action: RulesCommand,
    },
    /// Write research datasets (trades, candles, continuity) by UTC day as Parquet, CSV or NDJSON
    Export(ExportArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = match config::load::<ApiConfig>(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        // The API serves its admin routes on its own port, so no separate admin endpoint.
        Err(error) => return startup_failure(Service::Api, &error),
    };
    // Key administration runs before (and instead of) the service's start-up sequence.
    match cli.command {
        Some(Command::Keys { action }) => {
            return polytape_api::cli::run_keys(loaded.config, action).await;
        }
        Some(Command::Rules { action }) => {
            return polytape_api::cli::run_rules(loaded.config, action).await;
        }
        Some(Command::Export(args)) => {
            return polytape_api::cli::run_export(loaded.config, args).await;
        }
        None => {}
    }
    polytape_runtime::run(loaded.config, loaded.warnings, None, polytape_api::start).await
}
