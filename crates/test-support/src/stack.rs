//! The stack a test runs against, and per-test isolation on it.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use polytape_model::TopicNames;
use polytape_runtime::config::ClickHouseConfig;
use serde::Deserialize;

/// Endpoints of a running local stack.
#[derive(Debug, Clone, Deserialize)]
pub struct StackEndpoints {
    pub kafka_brokers: String,
    pub schema_registry_url: String,
    pub clickhouse_url: String,
    /// The Python interpreter of the stack's venv (chdb, confluent-kafka, fastavro).
    pub python: PathBuf,
}

/// The stack to test against: `POLYTAPE_TEST_STACK` (written by `cargo xtask test`), else the
/// development stack's well-known endpoints.
pub fn endpoints() -> StackEndpoints {
    if let Some(path) = std::env::var_os("POLYTAPE_TEST_STACK") {
        let path = PathBuf::from(path);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|error| {
            panic!("POLYTAPE_TEST_STACK={} cannot be read ({error}); run the tests with `cargo xtask test`", path.display())
        });
        return serde_json::from_str(&text).unwrap_or_else(|error| {
            panic!("{} is not a stack endpoints file: {error}", path.display())
        });
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    StackEndpoints {
        kafka_brokers: "127.0.0.1:9092".to_owned(),
        schema_registry_url: "http://127.0.0.1:8081".to_owned(),
        clickhouse_url: "http://127.0.0.1:8123".to_owned(),
        python: workspace.join(".polytape/venv/bin/python"),
    }
}

/// A Schema Registry client for the stack.
pub fn registry() -> polytape_codec::SchemaRegistryClient {
    polytape_codec::SchemaRegistryClient::new(&endpoints().schema_registry_url)
        .unwrap_or_else(|error| panic!("no schema registry client: {error}"))
}

static NEXT_ISOLATION_ID: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test in this run: process id, a counter and randomness, so parallel
/// tests and repeated runs on a long-lived stack never share topics or databases.
pub fn unique_name(purpose: &str) -> String {
    let counter = NEXT_ISOLATION_ID.fetch_add(1, Ordering::Relaxed);
    let random: u32 = rand::random();
    format!("t{}_{counter}_{random:08x}_{purpose}", std::process::id())
}

/// Topic names with a prefix unique to this test.
pub fn isolated_topics(purpose: &str) -> TopicNames {
    TopicNames::with_prefix(format!("{}.", unique_name(purpose)))
}

/// A ClickHouse database unique to this test, dropped when this value is dropped.
pub struct IsolatedDatabase {
    pub name: String,
    pub config: ClickHouseConfig,
    pub client: clickhouse::Client,
}

impl IsolatedDatabase {
    /// Creates the database on the stack's ClickHouse.
    pub async fn create(purpose: &str) -> Self {
        let endpoints = endpoints();
        let name = unique_name(purpose);
        let config = ClickHouseConfig {
            clickhouse_url: endpoints.clickhouse_url.clone(),
            clickhouse_database: name.clone(),
            clickhouse_user: None,
            clickhouse_password: None,
        };
        let client = polytape_clickhouse::client(&config);
        client
            .clone()
            .with_database("system")
            .query(&format!("CREATE DATABASE `{name}`"))
            .execute()
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "cannot create database {name} on {} ({error}); is the stack up? (`cargo xtask stack up` or run `cargo xtask test`)",
                    endpoints.clickhouse_url
                )
            });
        Self {
            name,
            config,
            client,
        }
    }

    /// Creates the database and applies every migration (90-day retention).
    pub async fn migrated(purpose: &str) -> Self {
        let database = Self::create(purpose).await;
        if let Err(error) = polytape_clickhouse::migrate(&database.client, &database.name, 90).await
        {
            panic!("cannot migrate test database {} ({error})", database.name);
        }
        database
    }

    /// Drops the database now (tests call this at the end; `Drop` cannot await).
    pub async fn drop_database(self) {
        let statement = format!("DROP DATABASE IF EXISTS `{}`", self.name);
        if let Err(error) = self
            .client
            .clone()
            .with_database("system")
            .query(&statement)
            .execute()
            .await
        {
            eprintln!(
                "warning: could not drop test database {}: {error}",
                self.name
            );
        }
    }
}

/// Topic names unique to this test, with every Polytape topic created on the stack (one
/// partition each).
pub async fn ensured_isolated_topics(purpose: &str) -> TopicNames {
    let names = isolated_topics(purpose);
    let brokers = endpoints().kafka_brokers;
    if let Err(error) =
        polytape_kafka::ensure_topics(&brokers, &names, &polytape_model::Topic::ALL, 1).await
    {
        panic!("cannot create the test's topics on {brokers} ({error}); is the stack up?");
    }
    names
}

/// Topic names unique to this test, with every Polytape topic created on the stack (for tests
/// that run a service binary against them). Blocking: usable from plain `#[test]`s.
pub fn created_isolated_topics(purpose: &str) -> TopicNames {
    let names = isolated_topics(purpose);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("cannot start a tokio runtime: {error}"),
    };
    let brokers = endpoints().kafka_brokers;
    if let Err(error) = runtime.block_on(polytape_kafka::ensure_topics(
        &brokers,
        &names,
        &polytape_model::Topic::ALL,
        1,
    )) {
        panic!("cannot create the test's topics on {brokers} ({error}); is the stack up?");
    }
    names
}
