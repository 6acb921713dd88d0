//! Versioned, idempotent migrations. Each file under `schemas/clickhouse/` is applied once and
//! recorded in `<database>.schema_migrations` with a checksum; every statement is also
//! idempotent (`IF NOT EXISTS`), so an interrupted migration can simply run again.

use clickhouse::Row;
use polytape_model::Topic;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ClickHouseError;

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub template: &'static str,
}

impl Migration {
    /// Checksum of the template (before placeholders are filled, so the retention setting
    /// does not count as a change).
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.template.as_bytes()))
    }

    /// The SQL statements with `{database}` and `{retention_days}` filled in.
    pub fn statements(&self, database: &str, retention_days: u32) -> Vec<String> {
        let sql = self
            .template
            .replace("{database}", database)
            .replace("{retention_days}", &retention_days.to_string());
        split_statements(&sql)
    }
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        template: include_str!("../../../schemas/clickhouse/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "leaderboard",
        template: include_str!("../../../schemas/clickhouse/0002_leaderboard.sql"),
    },
];

/// Each time-series table and the event-time column its TTL counts from.
pub const TTL_COLUMNS: &[(&str, &str)] = &[
    ("trades", "timestamp"),
    ("book_snapshots", "timestamp"),
    ("price_changes", "timestamp"),
    ("last_trades", "timestamp"),
    ("tick_size_changes", "timestamp"),
    ("best_bid_ask", "timestamp"),
    ("market_lifecycle", "timestamp"),
    ("price_history", "timestamp"),
    ("candles", "open_time"),
    ("book_state", "timestamp"),
    ("continuity", "gap_start"),
    ("dead_letters", "occurred_at"),
    ("leaderboard", "snapshot_time"),
];

/// Whether `table` is a time-series table (one with a TTL).
pub fn is_time_series_table(table: &str) -> bool {
    TTL_COLUMNS.iter().any(|(name, _)| *name == table)
}

/// Splits a SQL file into statements at semicolons that end a line; comment-only chunks are
/// dropped. (Our migrations never put a semicolon at the end of a line inside a string.)
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            push_statement(&mut statements, &current);
            current.clear();
        }
    }
    push_statement(&mut statements, &current);
    statements
}

fn push_statement(statements: &mut Vec<String>, chunk: &str) {
    let code: Vec<&str> = chunk
        .lines()
        .filter(|line| !line.trim_start().starts_with("--") && !line.trim().is_empty())
        .collect();
    if code.is_empty() {
        return;
    }
    let statement = code.join("\n");
    let statement = statement.trim().trim_end_matches(';').trim();
    statements.push(statement.to_owned());
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct AppliedMigration {
    version: u32,
    name: String,
    checksum: String,
}

/// What a `migrate` run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<u32>,
    pub already_applied: Vec<u32>,
}

/// The longest retention accepted: ClickHouse's `DateTime` ends in 2106, and a TTL past it
/// wraps around and would expire every row at once.
pub const MAX_RETENTION_DAYS: u32 = 3650;

fn check_retention(retention_days: u32) -> Result<(), ClickHouseError> {
    if retention_days == 0 || retention_days > MAX_RETENTION_DAYS {
        return Err(ClickHouseError::InvalidRetention { retention_days });
    }
    Ok(())
}

/// Creates the database if needed and applies every migration not yet recorded.
pub async fn migrate(
    client: &clickhouse::Client,
    database: &str,
    retention_days: u32,
) -> Result<MigrationReport, ClickHouseError> {
    check_retention(retention_days)?;
    let query_error = |context: String| move |source| ClickHouseError::Query { context, source };
    // The database may not exist yet, so this one statement runs against `system`.
    client
        .clone()
        .with_database("system")
        .query(&format!("CREATE DATABASE IF NOT EXISTS `{database}`"))
        .execute()
        .await
        .map_err(query_error(format!("create database {database}")))?;
    client
        .query(&format!(
            "CREATE TABLE IF NOT EXISTS `{database}`.schema_migrations \
             (version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) \
             ENGINE = ReplacingMergeTree(applied_at) ORDER BY version"
        ))
        .execute()
        .await
        .map_err(query_error("create schema_migrations".to_owned()))?;
    let applied: Vec<AppliedMigration> = client
        .query(&format!(
            "SELECT version, name, checksum FROM `{database}`.schema_migrations FINAL ORDER BY version"
        ))
        .fetch_all()
        .await
        .map_err(query_error("read schema_migrations".to_owned()))?;

    let mut report = MigrationReport::default();
    for migration in MIGRATIONS {
        let checksum = migration.checksum();
        if let Some(done) = applied
            .iter()
            .find(|done| done.version == migration.version)
        {
            if done.checksum != checksum {
                return Err(ClickHouseError::MigrationChanged {
                    version: migration.version,
                    name: migration.name,
                    applied: done.checksum.clone(),
                    current: checksum,
                });
            }
            report.already_applied.push(migration.version);
            continue;
        }
        for statement in migration.statements(database, retention_days) {
            client
                .query(&statement)
                .execute()
                .await
                .map_err(query_error(format!(
                    "migration {} ({})",
                    migration.version, migration.name
                )))?;
        }
        client
            .query(&format!(
                "INSERT INTO `{database}`.schema_migrations (version, name, checksum) VALUES (?, ?, ?)"
            ))
            .bind(migration.version)
            .bind(migration.name)
            .bind(&checksum)
            .execute()
            .await
            .map_err(query_error(format!("record migration {}", migration.version)))?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "migration applied"
        );
        report.applied.push(migration.version);
    }
    Ok(report)
}

/// Changes the retention of every time-series table that already exists to `retention_days`
/// (`ALTER TABLE … MODIFY TTL`; expired rows go at the next merges, or now with
/// `OPTIMIZE … FINAL`).
pub async fn set_retention(
    client: &clickhouse::Client,
    database: &str,
    retention_days: u32,
) -> Result<(), ClickHouseError> {
    check_retention(retention_days)?;
    for (table, column) in TTL_COLUMNS {
        let statement = format!(
            "ALTER TABLE `{database}`.`{table}` MODIFY TTL toDateTime({column}) + INTERVAL {retention_days} DAY"
        );
        client
            .query(&statement)
            .execute()
            .await
            .map_err(|source| ClickHouseError::Query {
                context: format!("set the retention of {table}"),
                source,
            })?;
    }
    tracing::info!(
        database,
        retention_days,
        "retention set on every time-series table"
    );
    Ok(())
}

/// Every table the migrations create: one per topic plus the API's tables.
pub fn expected_tables() -> Vec<&'static str> {
    let mut tables: Vec<&'static str> = Topic::ALL.iter().map(|topic| topic.table()).collect();
    tables.extend(["api_keys", "api_usage"]);
    tables
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn statements_split_at_line_ending_semicolons_and_drop_comments() {
        let statements =
            split_statements("-- header\n\nCREATE TABLE a (x UInt8);\n-- note\nSELECT ';' ;\n");
        assert_eq!(statements, vec!["CREATE TABLE a (x UInt8)", "SELECT ';'"]);
    }

    #[test]
    fn the_migrations_create_one_table_per_topic_with_the_listed_ttls() {
        let statements: Vec<String> = MIGRATIONS
            .iter()
            .flat_map(|migration| migration.statements("polymarket", 90))
            .collect();
        let mut created = BTreeSet::new();
        for statement in &statements {
            let name = statement
                .strip_prefix("CREATE TABLE IF NOT EXISTS polymarket.")
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("not a CREATE TABLE: {statement}"));
            created.insert(name);
            let has_ttl = statement.contains("INTERVAL 90 DAY");
            assert_eq!(has_ttl, is_time_series_table(name), "{name} TTL");
            if name == "api_usage" {
                assert!(
                    statement.contains("TTL day + INTERVAL 400 DAY"),
                    "usage is kept for billing"
                );
            }
            assert!(statement.contains("ENGINE = "), "{name} has an engine");
            if Topic::ALL.iter().any(|topic| topic.table() == name) {
                assert!(
                    statement.contains("ReplacingMergeTree"),
                    "{name} dedupes redelivery"
                );
            }
        }
        let expected: BTreeSet<_> = expected_tables().into_iter().collect();
        assert_eq!(created, expected);
    }

    #[test]
    fn every_time_series_table_names_its_ttl_column() {
        let statements: Vec<String> = MIGRATIONS
            .iter()
            .flat_map(|migration| migration.statements("db", 90))
            .collect();
        for (table, column) in TTL_COLUMNS {
            let create = statements
                .iter()
                .find(|statement| {
                    statement.starts_with(&format!("CREATE TABLE IF NOT EXISTS db.{table}\n"))
                })
                .unwrap_or_else(|| panic!("no CREATE for {table}"));
            assert!(
                create.contains(&format!("TTL toDateTime({column}) + INTERVAL 90 DAY")),
                "{table}"
            );
        }
    }

    #[test]
    fn retention_is_a_parameter_and_not_part_of_the_checksum() {
        let statements = MIGRATIONS[0].statements("db", 30);
        assert!(
            statements
                .iter()
                .any(|statement| statement.contains("INTERVAL 30 DAY"))
        );
        assert!(
            statements
                .iter()
                .all(|statement| !statement.contains("{retention_days}"))
        );
        assert_eq!(MIGRATIONS[0].checksum().len(), 64);
    }
}
