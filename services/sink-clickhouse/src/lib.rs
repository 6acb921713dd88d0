//! The ClickHouse sink: every topic into its ClickHouse table, at-least-once with exact dedupe
//! (see `pipeline` for the guarantees, `polytape_clickhouse::rows` for the row of each table
//! and the mapping of each record, and `isolate` for how rows ClickHouse refuses are set
//! aside).

mod config;
pub mod isolate;
mod metrics;
pub mod pipeline;
pub mod tables;

use std::time::Duration;

pub use config::SinkConfig;
use polytape_runtime::{BoxError, ServiceContext};

/// Retention of every time-series table, applied by the migrations.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

/// Checks ClickHouse and applies every pending migration.
pub async fn migrate(
    config: &SinkConfig,
    retention_days: u32,
) -> Result<polytape_clickhouse::MigrationReport, BoxError> {
    let client = polytape_clickhouse::client(&config.clickhouse);
    polytape_clickhouse::check_reachable(
        &client,
        &config.clickhouse.clickhouse_url,
        Duration::from_secs(5),
    )
    .await?;
    let report = polytape_clickhouse::migrate(
        &client,
        &config.clickhouse.clickhouse_database,
        retention_days,
    )
    .await?;
    Ok(report)
}

/// `migrate`: applies pending migrations, and when `retention_days` is given, sets that
/// retention on every existing time-series table too.
pub async fn migrate_with_retention(
    config: &SinkConfig,
    retention_days: Option<u32>,
) -> Result<polytape_clickhouse::MigrationReport, BoxError> {
    let report = migrate(config, retention_days.unwrap_or(DEFAULT_RETENTION_DAYS)).await?;
    if let Some(days) = retention_days {
        let client = polytape_clickhouse::client(&config.clickhouse);
        polytape_clickhouse::set_retention(&client, &config.clickhouse.clickhouse_database, days)
            .await?;
    }
    Ok(report)
}

/// Checks the sink's dependencies, migrates, and spawns its tasks.
pub async fn start(config: SinkConfig, context: ServiceContext) -> Result<(), BoxError> {
    polytape_kafka::check_dependencies(&config.kafka).await?;
    let report = migrate(&config, DEFAULT_RETENTION_DAYS).await?;
    tracing::info!(applied = ?report.applied, already_applied = ?report.already_applied, "clickhouse schema is up to date");
    let registry = polytape_codec::SchemaRegistryClient::new(&config.kafka.schema_registry_url)?;
    let consumer = polytape_kafka::create_lag_reporting_consumer(
        &config.kafka.kafka_brokers,
        &config.sink_consumer_group,
        "polytape-sink-clickhouse",
    )?;
    let pipeline = pipeline::Pipeline {
        consumer,
        client: polytape_clickhouse::client(&config.clickhouse),
        topic_names: polytape_model::TopicNames::with_prefix(config.kafka.topic_prefix.clone()),
        buffers: tables::all_buffers(&registry),
        limits: pipeline::BatchLimits {
            max_rows: config.sink_batch_max_rows,
            max_bytes: config.sink_batch_max_bytes,
            max_wait: config.sink_flush_interval,
        },
    };
    let loader = context.readiness.register("loader");
    let stop = context.shutdown.token();
    context.shutdown.spawn("loader", async move {
        loader.set_ready(true);
        pipeline.run(stop).await
    });
    Ok(())
}
