//! ClickHouse for Polytape: client construction from configuration, a start-up reachability
//! check with an actionable message, the versioned migrations under `schemas/clickhouse/`, one
//! row type per table ([`rows`]), and the classification of errors into retryable and
//! permanent ones.

pub mod alerts;
mod classify;
pub mod datasets;
mod migrations;
pub mod rankings;
pub mod rows;

use std::time::Duration;

pub use classify::{ErrorClass, PERMANENT_EXCEPTION_CODES, classify_error, exception_code};
pub use migrations::{
    MAX_RETENTION_DAYS, MIGRATIONS, Migration, MigrationReport, TTL_COLUMNS, expected_tables,
    is_time_series_table, latest_table_definitions, migrate, migrate_to_version, set_retention,
    split_statements,
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

/// Longest a ClickHouse connection may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest ClickHouse may stay silent on an open connection — while we send an insert or wait
/// for a query's answer — before the request fails (retryably). A server that accepts
/// connections and never answers must not hang a service; no legitimate statement of ours
/// waits this long for its first byte (the API bounds its queries to far less with
/// `max_execution_time`).
pub const READ_WRITE_TIMEOUT: Duration = Duration::from_secs(120);
/// Idle pooled connections are dropped before ClickHouse's own 3 s keep-alive closes them.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// The connector of the clickhouse crate's HTTP client (hyper), with connect, read and write
/// timeouts.
fn timeout_connector(
    read_write_timeout: Duration,
) -> hyper_timeout::TimeoutConnector<hyper_util::client::legacy::connect::HttpConnector> {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let mut connector = hyper_timeout::TimeoutConnector::new(connector);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_read_timeout(Some(read_write_timeout));
    connector.set_write_timeout(Some(read_write_timeout));
    connector
}

/// A client for the configured server and database, every request bounded by
/// [`CONNECT_TIMEOUT`] and [`READ_WRITE_TIMEOUT`].
pub fn client(config: &ClickHouseConfig) -> clickhouse::Client {
    client_with_timeout(config, READ_WRITE_TIMEOUT)
}

/// [`client`] with another read/write timeout (tests prove the bound with a short one).
pub fn client_with_timeout(
    config: &ClickHouseConfig,
    read_write_timeout: Duration,
) -> clickhouse::Client {
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(timeout_connector(read_write_timeout));
    let mut client = clickhouse::Client::with_http_client(http)
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

#[cfg(test)]
mod timeout_tests {
    use super::*;

    /// A peer that accepts connections and never answers must not hang a query.
    #[tokio::test]
    async fn a_server_that_accepts_and_never_answers_fails_the_query_within_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                connections.push(socket);
            }
        });
        let config = ClickHouseConfig {
            clickhouse_url: format!("http://{addr}"),
            clickhouse_database: "default".to_owned(),
            clickhouse_user: None,
            clickhouse_password: None,
        };
        let client = client_with_timeout(&config, Duration::from_millis(500));
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            client.query("SELECT 1").fetch_one::<u8>(),
        )
        .await;
        let Ok(result) = answer else {
            panic!("the query hung for 30 s against a silent server");
        };
        assert!(result.is_err(), "a silent server cannot answer");
        held.abort();
    }
}
