use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use polytape_runtime::{Service, ServiceConfig as _, config, startup_failure, telemetry};
use polytape_sink_clickhouse::SinkConfig;

/// Polytape sink-clickhouse: loads every topic into ClickHouse
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
    /// Run the sink (the default)
    Run,
    /// Apply pending ClickHouse migrations and exit (idempotent)
    Migrate {
        /// TTL of every time-series table, in days; given explicitly, it is also applied to
        /// tables that already exist (default for new tables: 90)
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        retention_days: Option<u32>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = match config::load::<SinkConfig>(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(error) => return startup_failure(Service::SinkClickhouse, &error),
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let admin = loaded.config.admin_endpoint();
            polytape_runtime::run(
                loaded.config,
                loaded.warnings,
                Some(admin),
                polytape_sink_clickhouse::start,
            )
            .await
        }
        Command::Migrate { retention_days } => {
            telemetry::init(Service::SinkClickhouse, loaded.config.common());
            match polytape_sink_clickhouse::migrate_with_retention(&loaded.config, retention_days)
                .await
            {
                Ok(report) => {
                    println!(
                        "migrations applied: {:?}; already applied: {:?}",
                        report.applied, report.already_applied
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => startup_failure(Service::SinkClickhouse, &error),
            }
        }
    }
}
