//! `polytape-api keys …`: key administration from a shell. Creating or rotating prints the
//! plaintext key as the last line of stdout (and nowhere else: it is not logged).

use std::{process::ExitCode, time::Duration};

use clap::Subcommand;

use crate::{
    ApiConfig,
    clock::utc_seconds_text,
    keys::{KeySpec, KeyStore, generate_key, is_prefix, lookup_prefix},
    store::Store,
};

/// `keys` actions.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its plaintext is the last line of stdout, shown once
    Create {
        #[arg(long)]
        name: String,
        /// weekly, monthly or custom
        #[arg(long)]
        plan: String,
        /// Requests per second (default: the plan's)
        #[arg(long)]
        rps: Option<u32>,
        /// Requests per UTC day (default: the plan's)
        #[arg(long)]
        daily_cap: Option<u64>,
        /// Validity, e.g. 30d (default: the plan's length; custom keys never expire)
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List every key (prefix, name, plan, status, limits, expiry)
    List,
    /// Revoke a key, given as the whole key or its prefix; every replica refuses it within the refresh interval
    Revoke { key_or_prefix: String },
    /// Revoke a key and create its successor with the same name, plan and limits
    Rotate { key_or_prefix: String },
    /// Print a fresh random key without storing it (e.g. for POLYTAPE_API_BOOTSTRAP_KEY)
    Generate,
}

fn prefix_of(text: &str) -> String {
    if is_prefix(text) {
        text.to_owned()
    } else {
        lookup_prefix(text)
    }
}

fn fail(message: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("polytape-api: error: {message}");
    ExitCode::FAILURE
}

/// Runs one `keys` command against the configured ClickHouse.
pub async fn run_keys(config: ApiConfig, command: KeysCommand) -> ExitCode {
    if let KeysCommand::Generate = command {
        println!("{}", generate_key().plaintext);
        return ExitCode::SUCCESS;
    }
    let client = polytape_clickhouse::client(&config.clickhouse);
    if let Err(error) = polytape_clickhouse::check_reachable(
        &client,
        &config.clickhouse.clickhouse_url,
        Duration::from_secs(5),
    )
    .await
    {
        eprintln!("polytape-api: error: {error}");
        return ExitCode::from(polytape_runtime::EXIT_CONFIG);
    }
    if let Err(error) = polytape_clickhouse::migrate(
        &client,
        &config.clickhouse.clickhouse_database,
        config.retention_days(),
    )
    .await
    {
        return fail(&error);
    }
    let store = KeyStore::new(Store::new(client));
    let now_ms = polytape_model::now_ms();
    match command {
        KeysCommand::Generate => ExitCode::SUCCESS,
        KeysCommand::Create {
            name,
            plan,
            rps,
            daily_cap,
            expires_in,
        } => {
            let expires_in_ms = match expires_in
                .as_deref()
                .map(crate::routes::admin::parse_expires_in)
                .transpose()
            {
                Ok(value) => value,
                Err(error) => return fail(&error),
            };
            let spec = KeySpec {
                name,
                plan,
                rps,
                daily_cap,
                expires_in_ms,
            };
            match store.create(&spec, now_ms).await {
                Ok((key, row)) => {
                    println!(
                        "created key {} ({}, plan {}, {} rps, {} requests/day, expires {})",
                        row.key_prefix,
                        row.name,
                        row.plan,
                        row.rps,
                        row.daily_cap,
                        row.expires_at
                            .map_or_else(|| "never".to_owned(), utc_seconds_text)
                    );
                    println!("store it now: it is shown once and only its hash is kept");
                    println!("{}", key.plaintext);
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error),
            }
        }
        KeysCommand::List => match store.load_all().await {
            Ok(rows) => {
                println!("prefix\tname\tplan\tstatus\trps\tdaily_cap\tcreated\texpires");
                for row in rows {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        row.key_prefix,
                        row.name,
                        row.plan,
                        row.status_name(),
                        row.rps,
                        row.daily_cap,
                        utc_seconds_text(row.created_at),
                        row.expires_at
                            .map_or_else(|| "never".to_owned(), utc_seconds_text)
                    );
                }
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error),
        },
        KeysCommand::Revoke { key_or_prefix } => {
            match store.revoke(&prefix_of(&key_or_prefix), now_ms).await {
                Ok(row) => {
                    println!(
                        "revoked key {}; running replicas refuse it within their refresh interval (api_key_refresh_interval, 2s by default)",
                        row.key_prefix
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error),
            }
        }
        KeysCommand::Rotate { key_or_prefix } => {
            let old = prefix_of(&key_or_prefix);
            match store.rotate(&old, now_ms).await {
                Ok((key, row)) => {
                    println!("revoked key {old}; its successor is {}", row.key_prefix);
                    println!("store it now: it is shown once and only its hash is kept");
                    println!("{}", key.plaintext);
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error),
            }
        }
    }
}
