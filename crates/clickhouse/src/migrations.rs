//! Versioned, idempotent migrations. Each file under `schemas/clickhouse/` is applied once and
//! recorded in `<database>.schema_migrations` with a checksum; every statement is also
//! idempotent (`IF NOT EXISTS`, or `CREATE OR REPLACE … AS SELECT` rebuilding a table from its
//! own rows), so an interrupted migration can simply run again.

use std::collections::BTreeMap;

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

    /// The SQL statements with `{database}` and `{retention_days}` filled in (and
    /// `{retention_days_of:TABLE}` as for a database where TABLE does not exist yet).
    pub fn statements(&self, database: &str, retention_days: u32) -> Vec<String> {
        self.statements_keeping(database, retention_days, &BTreeMap::new())
    }

    /// The tables whose current retention this migration keeps: those named by a
    /// `{retention_days_of:TABLE}` placeholder (a migration that recreates a time-series table
    /// must not reset the retention an operator chose).
    pub fn kept_retentions(&self) -> Vec<&'static str> {
        let mut tables = Vec::new();
        let mut rest = self.template;
        while let Some((_, after)) = rest.split_once(RETENTION_OF) {
            let Some((table, tail)) = after.split_once('}') else {
                break;
            };
            if !tables.contains(&table) {
                tables.push(table);
            }
            rest = tail;
        }
        tables
    }

    /// The SQL statements with every placeholder filled in: `{retention_days_of:TABLE}` is the
    /// retention TABLE has now according to `current`, or `retention_days` if it has none.
    pub fn statements_keeping(
        &self,
        database: &str,
        retention_days: u32,
        current: &BTreeMap<&str, u32>,
    ) -> Vec<String> {
        let mut sql = self.template.replace("{database}", database);
        for table in self.kept_retentions() {
            let days = current.get(table).copied().unwrap_or(retention_days);
            sql = sql.replace(&format!("{RETENTION_OF}{table}}}"), &days.to_string());
        }
        let sql = sql.replace("{retention_days}", &retention_days.to_string());
        split_statements(&sql)
    }
}

/// The start of the placeholder for a table's current retention.
const RETENTION_OF: &str = "{retention_days_of:";

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
    Migration {
        version: 3,
        name: "dead_letters_identity",
        template: include_str!("../../../schemas/clickhouse/0003_dead_letters_identity.sql"),
    },
    Migration {
        version: 4,
        name: "candle_revision",
        template: include_str!("../../../schemas/clickhouse/0004_candle_revision.sql"),
    },
    Migration {
        version: 5,
        name: "signals",
        template: include_str!("../../../schemas/clickhouse/0005_signals.sql"),
    },
    Migration {
        version: 6,
        name: "alerts_rankings",
        template: include_str!("../../../schemas/clickhouse/0006_alerts_rankings.sql"),
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
    ("signals", "window_start"),
    ("alert_deliveries", "signal_recorded"),
    ("market_rankings", "snapshot_time"),
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
    migrate_to_version(client, database, retention_days, u32::MAX).await
}

/// [`migrate`], but only up to migration `last_version` (included): the schema as a release
/// that ended with that migration left it (tests of upgrades start there).
pub async fn migrate_to_version(
    client: &clickhouse::Client,
    database: &str,
    retention_days: u32,
    last_version: u32,
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
    for migration in MIGRATIONS
        .iter()
        .filter(|migration| migration.version <= last_version)
    {
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
        let mut current = BTreeMap::new();
        for table in migration.kept_retentions() {
            if let Some(days) = current_retention(client, database, table).await? {
                current.insert(table, days);
            }
        }
        for statement in migration.statements_keeping(database, retention_days, &current) {
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

/// The retention (TTL in days) `table` has now; `None` if it does not exist or has no TTL.
async fn current_retention(
    client: &clickhouse::Client,
    database: &str,
    table: &str,
) -> Result<Option<u32>, ClickHouseError> {
    let engines: Vec<String> = client
        .query("SELECT engine_full FROM system.tables WHERE database = ? AND name = ?")
        .bind(database)
        .bind(table)
        .fetch_all()
        .await
        .map_err(|source| ClickHouseError::Query {
            context: format!("read the retention of {table}"),
            source,
        })?;
    Ok(engines.first().and_then(|engine| ttl_days(engine)))
}

/// The days of a table's TTL in its engine definition as ClickHouse shows it
/// (`… TTL toDateTime(t) + toIntervalDay(90) SETTINGS …`, or `INTERVAL 90 DAY` as written).
fn ttl_days(engine_full: &str) -> Option<u32> {
    let ttl = &engine_full[engine_full.find("TTL ")?..];
    let digits = if let Some((_, rest)) = ttl.split_once("toIntervalDay(") {
        rest.split_once(')')?.0
    } else {
        ttl.split_once("INTERVAL ")?.1.split_once(" DAY")?.0
    };
    digits.trim().parse().ok()
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
    let existing: Vec<String> = client
        .query("SELECT name FROM system.tables WHERE database = ?")
        .bind(database)
        .fetch_all()
        .await
        .map_err(|source| ClickHouseError::Query {
            context: "list the tables".to_owned(),
            source,
        })?;
    // A table a later migration adds takes the retention then (`{retention_days_of:…}`).
    for (table, column) in TTL_COLUMNS
        .iter()
        .filter(|(table, _)| existing.iter().any(|name| name == table))
    {
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

/// Each table's definition after every migration: its last `CREATE TABLE IF NOT EXISTS` or
/// `CREATE OR REPLACE TABLE` statement, by table name (placeholders filled in).
pub fn latest_table_definitions(database: &str, retention_days: u32) -> BTreeMap<String, String> {
    let mut definitions = BTreeMap::new();
    for statement in MIGRATIONS
        .iter()
        .flat_map(|migration| migration.statements(database, retention_days))
    {
        let Some(name) = created_table(&statement, database) else {
            continue;
        };
        definitions.insert(name.to_owned(), statement);
    }
    definitions
}

/// The table a `CREATE TABLE IF NOT EXISTS db.t` / `CREATE OR REPLACE TABLE db.t` statement
/// creates.
fn created_table<'a>(statement: &'a str, database: &str) -> Option<&'a str> {
    let rest = statement
        .strip_prefix("CREATE TABLE IF NOT EXISTS ")
        .or_else(|| statement.strip_prefix("CREATE OR REPLACE TABLE "))?;
    let rest = rest.strip_prefix(database)?.strip_prefix('.')?;
    rest.split(|c: char| c.is_whitespace() || c == '(').next()
}

/// Every table the migrations create: one per topic, the API's tables and the alerts'.
pub fn expected_tables() -> Vec<&'static str> {
    let mut tables: Vec<&'static str> = Topic::ALL.iter().map(|topic| topic.table()).collect();
    tables.extend([
        "api_keys",
        "api_usage",
        "alert_rules",
        "alert_deliveries",
        "alert_tests",
        "market_rankings",
    ]);
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
            if let Some(altered) = statement.strip_prefix("ALTER TABLE polymarket.") {
                // A column added to a table created before, idempotently (a re-run is a
                // no-op), with a default for the rows already there.
                // Or an Enum8 column gains values (a metadata change; existing rows keep
                // theirs), re-runnable as is.
                let (table, change) = altered.split_once(' ').unwrap_or_default();
                assert!(created.contains(table), "{statement}");
                let adds_a_column =
                    change.starts_with("ADD COLUMN IF NOT EXISTS ") && change.contains(" DEFAULT ");
                let extends_an_enum =
                    change.starts_with("MODIFY COLUMN ") && change.contains(" Enum8(");
                assert!(adds_a_column || extends_an_enum, "{statement}");
                continue;
            }
            let name = created_table(statement, "polymarket")
                .unwrap_or_else(|| panic!("not a CREATE TABLE or ADD COLUMN: {statement}"));
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
            if statement.starts_with("CREATE OR REPLACE TABLE") {
                // Rebuilt from its own rows, so running it again changes nothing.
                assert!(
                    statement.ends_with(&format!("AS SELECT * FROM polymarket.{name}")),
                    "{statement}"
                );
            }
        }
        let expected: BTreeSet<_> = expected_tables().into_iter().collect();
        assert_eq!(created, expected);
    }

    #[test]
    fn every_time_series_table_names_its_ttl_column() {
        let definitions = latest_table_definitions("db", 90);
        for (table, column) in TTL_COLUMNS {
            let create = definitions
                .get(*table)
                .unwrap_or_else(|| panic!("no CREATE for {table}"));
            assert!(
                create.contains(&format!("TTL toDateTime({column}) + INTERVAL 90 DAY")),
                "{table}"
            );
        }
    }

    #[test]
    fn dead_letters_is_keyed_by_its_id_alone_in_one_partition() {
        let definitions = latest_table_definitions("db", 90);
        let dead_letters = &definitions["dead_letters"];
        assert!(
            dead_letters.starts_with("CREATE OR REPLACE TABLE db.dead_letters\n"),
            "{dead_letters}"
        );
        assert!(
            dead_letters.contains("\nORDER BY dead_letter_id\n"),
            "{dead_letters}"
        );
        // Copies of one letter written in different months must meet in one partition to
        // be merged; and whole-part TTL drops need partitions, so TTL deletes rows instead.
        assert!(!dead_letters.contains("PARTITION BY"), "{dead_letters}");
        assert!(
            !dead_letters.contains("ttl_only_drop_parts"),
            "{dead_letters}"
        );
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

    #[test]
    fn a_recreated_table_keeps_the_retention_it_has() {
        let migration = MIGRATIONS
            .iter()
            .find(|migration| migration.name == "dead_letters_identity")
            .unwrap_or_else(|| panic!("migration 3 is listed"));
        assert_eq!(migration.kept_retentions(), vec!["dead_letters"]);
        let kept = migration.statements_keeping("db", 90, &BTreeMap::from([("dead_letters", 30)]));
        assert_eq!(kept.len(), 1);
        assert!(kept[0].contains("INTERVAL 30 DAY"), "{}", kept[0]);
        let new = migration.statements("db", 45);
        assert!(new[0].contains("INTERVAL 45 DAY"), "{}", new[0]);
        assert!(
            MIGRATIONS
                .iter()
                .flat_map(|migration| migration.statements("db", 90))
                .all(|statement| !statement.contains('{')),
            "every placeholder is filled"
        );
    }

    #[test]
    fn the_retention_is_read_from_the_engine_definition() {
        assert_eq!(
            ttl_days(
                "ReplacingMergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (occurred_at, dead_letter_id) TTL toDateTime(occurred_at) + toIntervalDay(45) SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1, index_granularity = 8192"
            ),
            Some(45)
        );
        assert_eq!(
            ttl_days("MergeTree ORDER BY x TTL toDateTime(t) + INTERVAL 30 DAY"),
            Some(30)
        );
        assert_eq!(
            ttl_days("ReplacingMergeTree ORDER BY x SETTINGS index_granularity = 8192"),
            None
        );
        assert_eq!(ttl_days(""), None);
    }

    #[test]
    fn created_tables_are_named_from_both_create_forms() {
        assert_eq!(
            created_table("CREATE TABLE IF NOT EXISTS db.trades\n(", "db"),
            Some("trades")
        );
        assert_eq!(
            created_table("CREATE OR REPLACE TABLE db.dead_letters\n(", "db"),
            Some("dead_letters")
        );
        assert_eq!(created_table("INSERT INTO db.trades", "db"), None);
        assert_eq!(
            created_table("CREATE TABLE IF NOT EXISTS other.t (", "db"),
            None
        );
    }

    /// Every `Enum8(...)` list of the migrations, as (name, code) pairs.
    fn enum8_lists() -> Vec<Vec<(String, i8)>> {
        let mut lists = Vec::new();
        for migration in MIGRATIONS {
            for (_, rest) in migration
                .template
                .match_indices("Enum8(")
                .map(|(at, _)| migration.template.split_at(at + "Enum8(".len()))
            {
                let body = rest.split(')').next().unwrap_or_default();
                let list = body
                    .split(',')
                    .map(|pair| {
                        let (name, code) = pair.split_once('=').expect("'NAME' = code");
                        (
                            name.trim().trim_matches('\'').to_owned(),
                            code.trim().parse::<i8>().expect("an Enum8 code"),
                        )
                    })
                    .collect();
                lists.push(list);
            }
        }
        lists
    }

    #[test]
    fn enum8_columns_use_the_models_codes() {
        fn pairs<T: Copy>(
            all: &[T],
            name: fn(T) -> &'static str,
            code: fn(T) -> i8,
        ) -> Vec<(String, i8)> {
            all.iter()
                .map(|variant| (name(*variant).to_owned(), code(*variant)))
                .collect()
        }
        use polytape_model::{
            BookSource, ContinuityKind, LifecycleKind, Side, SignalKind, TradeSource,
            alerts::DeliveryStatus,
        };
        let models = [
            pairs(Side::ALL, Side::name, Side::code),
            pairs(TradeSource::ALL, TradeSource::name, TradeSource::code),
            pairs(BookSource::ALL, BookSource::name, BookSource::code),
            pairs(LifecycleKind::ALL, LifecycleKind::name, LifecycleKind::code),
            pairs(
                ContinuityKind::ALL,
                ContinuityKind::name,
                ContinuityKind::code,
            ),
            pairs(SignalKind::ALL, SignalKind::name, SignalKind::code),
            pairs(
                &DeliveryStatus::ALL,
                DeliveryStatus::name,
                DeliveryStatus::code,
            ),
        ];
        let lists = enum8_lists();
        for model in &models {
            assert!(lists.contains(model), "no Enum8 column spells {model:?}");
        }
        // Every Enum8 list is one of the model's enums, or the start of one that a later
        // migration extends (values are only ever added at the end), but for the API keys' own
        // status.
        let api_key_status = vec![("active".to_owned(), 1), ("revoked".to_owned(), 2)];
        for list in &lists {
            assert!(
                models.iter().any(|model| model.starts_with(list)) || *list == api_key_status,
                "an Enum8 column the model does not declare: {list:?}"
            );
        }
    }
}
