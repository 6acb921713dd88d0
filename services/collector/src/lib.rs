//! The collector: REST backfill and live polling of Gamma, the Data API and CLOB into Avro
//! topics. Design: README.md beside this crate.
//!
//! Upstream's wire formats, budgets and HTTP retry rules live in the Polymarket adapter
//! (`polytape-polymarket`). Library modules here are tested without the network (`tape`
//! walks, `checkpoint` planning, the `reconcile` ledger of sent fills, `gaps` records, the
//! `leaderboard` list tally); `collector` is the thin I/O around them.

pub mod checkpoint;
pub mod collector;
mod config;
pub mod error;
pub mod gaps;
pub mod leaderboard;
mod metrics;
pub mod options;
pub mod progress;
pub mod reconcile;
pub mod send_chunks;
pub mod tape;

use std::sync::Arc;

pub use collector::{Collector, Summary};
pub use config::{CollectorConfig, CollectorTuning};
pub use options::{Dataset, Mode, Options};
use polytape_runtime::{BoxError, ServiceContext};

/// Checks the service's dependencies, connects, and spawns the collection task. A backfill
/// stops the service once complete (exit 0); `--timeout` bounds any mode.
pub async fn start(
    config: CollectorConfig,
    context: ServiceContext,
    options: Options,
) -> Result<(), BoxError> {
    metrics::register_all();
    polytape_kafka::check_dependencies(&config.kafka).await?;
    let stop = context.shutdown.token();
    let collector = Arc::new(Collector::connect(&config, options.fresh, stop.clone()).await?);
    let pipeline = context.readiness.register("collection");
    let shutdown = context.shutdown.clone();
    context.shutdown.spawn("collection", async move {
        pipeline.set_ready(true);
        let backfill = matches!(options.mode, Mode::Backfill { .. });
        let timeout = options.timeout;
        let run = collector.run(options);
        let outcome = match timeout {
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(outcome) => outcome,
                Err(_) if backfill => {
                    shutdown.request();
                    return Err(format!(
                        "backfill did not complete within {}",
                        humantime::format_duration(limit)
                    )
                    .into());
                }
                Err(_) => {
                    tracing::info!("timeout reached; stopping");
                    shutdown.request();
                    return Ok(());
                }
            },
            None => run.await,
        };
        match outcome {
            Ok(summary) => {
                if backfill {
                    tracing::info!(?summary, "backfill finished; stopping");
                }
                shutdown.request();
                Ok(())
            }
            Err(error::CollectError::Cancelled) => Ok(()),
            Err(error) => Err(error.into()),
        }
    });
    Ok(())
}
