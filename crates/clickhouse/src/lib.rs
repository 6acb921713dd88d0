//! ClickHouse for Polytape: client construction from configuration, a start-up reachability
//! check with an actionable message, and the versioned migrations under `schemas/clickhouse/`.

mod migrations;

use std::time::Duration;

pub use migrations::{
    MAX_RETENTION_DAYS, MIGRATIONS, Migration, MigrationReport, TTL_COLUMNS, expected_tables,
    is_time_series_table, migrate, set_retention, split_statements,
};
use polytape_runtime::config::ClickHouseConfig;

/// Errors talking to ClickHouse.
#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    #[error(
        "cannot reach ClickHouse at {url} ({source}); start it with `cargo xtask stack up` or set POLYTAPE_CLICKHOUSE_URL"
    )]
    Unreachable {
        url: String,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("clickhouse query failed ({context}): {source}")]
    Query {
        context: String,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error(
        "a retention of {retention_days} days is out of range; use 1 to {} days",
        migrations::MAX_RETENTION_DAYS
    )]
    InvalidRetention { retention_days: u32 },
    #[error(
        "migration {version} ({name}) was changed after it was applied (checksum {applied} in the database, {current} now); add a new migration instead of editing an applied one"
    )]
    MigrationChanged {
        version: u32,
        name: &'static str,
        applied: String,
        current: String,
    },
}

impl ClickHouseError {
    /// Whether trying again later may succeed: ClickHouse down or a network fault, as opposed
    /// to a query the server rejects.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClickHouseError::Unreachable { .. } => true,
            ClickHouseError::Query { source, .. } => matches!(
                source,
                clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut
            ),
            ClickHouseError::MigrationChanged { .. } | ClickHouseError::InvalidRetention { .. } => {
                false
            }
        }
    }
}

/// A client for the configured server and database.
pub fn client(config: &ClickHouseConfig) -> clickhouse::Client {
    let mut client = clickhouse::Client::default()
        .with_url(config.clickhouse_url.trim_end_matches('/'))
        .with_database(&config.clickhouse_database);
    if let Some(user) = &config.clickhouse_user {
        client = client.with_user(user);
    }
    if let Some(password) = &config.clickhouse_password {
        client = client.with_password(password);
    }
    client
}

/// Checks that the server answers, within `timeout`.
pub async fn check_reachable(
    client: &clickhouse::Client,
    url: &str,
    timeout: Duration,
) -> Result<(), ClickHouseError> {
    // The configured database may not exist yet (migrations create it): ask `system`.
    let probe = client.clone().with_database("system");
    let answer = tokio::time::timeout(timeout, probe.query("SELECT 1").fetch_one::<u8>()).await;
    match answer {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(ClickHouseError::Unreachable {
            url: url.to_owned(),
            source,
        }),
        Err(_) => Err(ClickHouseError::Unreachable {
            url: url.to_owned(),
            source: clickhouse::error::Error::TimedOut,
        }),
    }
}
