//! Polytape's signals: the detectors that turn our topics into explainable market signals.
//!
//! Every detector here is a deterministic state machine over records in the order it is given
//! them: no clock, no I/O. The same input in the same order gives the same signals with the
//! same ids ([`signal_id`]: rule + subject + window start), so a restart or a replay
//! emits records the sink merges into the ones it has.
//!
//! Prices and sizes are exact scale-6 units (`polytape_model::micros`), as in the order book;
//! a signal's inputs are written as exact decimal text.
//!
//! - [`arbitrage`]: windows in which buying (or selling) every outcome at the top of the book
//!   pays more than a dollar, net of fees: a binary market's YES + NO, or every YES of a
//!   negative-risk event.
//! - [`wallets`]: a large fill by a wallet our own history says is new.
//! - [`price_moves`]: a token's last-trade price moving by at least a threshold within a
//!   window.
//! - [`volume_spikes`]: a token's traded notional within a window reaching a multiple of its
//!   trailing mean.

//!
//! [`engine`] wires the detectors to our records, and [`pipeline`] is the thin Kafka loop
//! around it (event-time merge, checkpoints); the design is in README.md beside this crate.

pub mod alerter;
pub mod alerting;
pub mod arbitrage;
mod config;
pub mod destinations;
pub mod engine;
mod error;
mod events;
pub mod pipeline;
pub mod price_moves;
pub mod rankings;
pub mod signal;
#[cfg(test)]
mod test_support;
pub mod volume_spikes;
pub mod wallets;
pub mod webhook;

pub use config::SignalsConfig;
pub use error::SignalsError;
pub use polytape_model::{Signal, SignalKind, SignalValue};
use polytape_runtime::{BoxError, ServiceContext};
pub use signal::{Inputs, Rule, signal_id};

/// Checks the service's dependencies and spawns the pipeline.
pub async fn start(config: SignalsConfig, context: ServiceContext) -> Result<(), BoxError> {
    polytape_kafka::check_dependencies(&config.kafka).await?;
    polytape_clickhouse::check_reachable(
        &polytape_clickhouse::client(&config.clickhouse),
        &config.clickhouse.clickhouse_url,
        std::time::Duration::from_secs(5),
    )
    .await?;
    let ready = context.readiness.register("signals");
    let stop = context.shutdown.token();
    let pipeline_config = config.clone();
    context.shutdown.spawn("signals", async move {
        pipeline::run(pipeline_config, stop, ready)
            .await
            .map_err(|error| stopped("signals", error))
    });
    let rankings = rankings::run(
        config.clickhouse.clone(),
        config.signal_ranking_interval,
        config.signal_ranking_delay,
        context.shutdown.token(),
    );
    context.shutdown.spawn("rankings", async move {
        rankings.await;
        Ok(())
    });
    let ready = context.readiness.register("alerts");
    let stop = context.shutdown.token();
    context.shutdown.spawn("alerts", async move {
        alerter::run(config, stop, ready)
            .await
            .map_err(|error| stopped("alerts", error))
    });
    Ok(())
}

fn stopped(task: &'static str, error: SignalsError) -> BoxError {
    let retryable = error.is_retryable();
    tracing::error!(task, error = %error, retryable, "signals stopped on an error");
    BoxError::from(error)
}
