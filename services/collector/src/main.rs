use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use polytape_collector::{CollectorConfig, Dataset, Mode, Options};
use polytape_runtime::{Service, config, startup_failure};

/// Polytape collector: polls Polymarket's REST APIs into Avro topics
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; `POLYTAPE_<KEY>` environment variables override it
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Datasets to collect, comma-separated: markets, events, trades, price_history,
    /// book_snapshots (REST books; only for tokens the ws-bridge does not cover), leaderboard
    #[arg(
        long,
        value_name = "LIST",
        global = true,
        default_value = "markets,events,trades"
    )]
    datasets: String,
    /// Stop after this long (e.g. `10m`); a backfill that has not finished by then exits 1
    #[arg(long, value_name = "DURATION", global = true, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Ignore stored checkpoints (start over; downstream dedupes by record identity)
    #[arg(long, global = true)]
    fresh: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Backfill the retention window, then poll forward (the default)
    Run,
    /// Fill a time window and exit 0 once it is complete
    Backfill {
        /// Window start, RFC 3339 (e.g. 2026-01-01T00:00:00Z)
        #[arg(long, value_name = "TIME")]
        from: String,
        /// Window end, RFC 3339
        #[arg(long, value_name = "TIME")]
        to: String,
        /// Only these condition ids, comma-separated
        #[arg(long, value_name = "IDS", value_delimiter = ',')]
        markets: Vec<String>,
        /// At most this many markets
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Poll forward from now (or from the checkpoints)
    Poll,
}

fn options(cli: &Cli) -> Result<Options, String> {
    let datasets = Dataset::parse_list(&cli.datasets)?;
    let mut options = Options {
        datasets,
        timeout: cli.timeout,
        fresh: cli.fresh,
        ..Options::default()
    };
    match &cli.command {
        None | Some(Command::Run) => options.mode = Mode::Run,
        Some(Command::Poll) => options.mode = Mode::Poll,
        Some(Command::Backfill {
            from,
            to,
            markets,
            limit,
        }) => {
            let parse = |flag: &str, text: &str| {
                polytape_model::time::parse_datetime_ms(text)
                    .map(|ms| ms.div_euclid(1000))
                    .ok_or_else(|| {
                        format!(
                            "--{flag} {text:?} is not an RFC 3339 time (e.g. 2026-01-01T00:00:00Z)"
                        )
                    })
            };
            let from_s = parse("from", from)?;
            let to_s = parse("to", to)?;
            if from_s > to_s {
                return Err(format!("--from {from} is after --to {to}"));
            }
            options.mode = Mode::Backfill { from_s, to_s };
            options.markets = markets.clone();
            options.limit = *limit;
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = match options(&cli) {
        Ok(options) => options,
        Err(error) => return startup_failure(Service::Collector, &error),
    };
    let loaded = match config::load::<CollectorConfig>(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(error) => return startup_failure(Service::Collector, &error),
    };
    let admin = loaded.config.admin_endpoint();
    polytape_runtime::run(
        loaded.config,
        loaded.warnings,
        Some(admin),
        move |config, context| polytape_collector::start(config, context, options),
    )
    .await
}
