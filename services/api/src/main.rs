use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use polytape_api::ApiConfig;
use polytape_runtime::{Service, config, startup_failure};

/// Polytape API: the REST API over ClickHouse
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
    let loaded = match config::load::<ApiConfig>(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        // The API serves its admin routes on its own port, so no separate admin endpoint.
        Err(error) => return startup_failure(Service::Api, &error),
    };
    polytape_runtime::run(loaded.config, loaded.warnings, None, polytape_api::start).await
}
