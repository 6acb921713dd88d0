//! `polytape-api keys …`: key administration from a shell. Creating or rotating prints the
//! plaintext key as the last line of stdout (and nowhere else: it is not logged).

use std::{process::ExitCode, time::Duration};

use clap::Subcommand;

use polytape_clickhouse::datasets::{Dataset, DatasetFormat, DayFilter};

use crate::{
    ApiConfig,
    clock::utc_seconds_text,
    export::{ExportPlan, export},
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

/// `rules` actions: the alert rules the signals service applies (the same store as the admin
/// port's `/admin/alert-rules`). Rules are printed as JSON.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Every rule's current version
    List,
    /// One rule's current version
    Show { rule_id: String },
    /// Every version of a rule, oldest first (who changed what, when)
    History { rule_id: String },
    /// Create a rule or change it: FILE holds its JSON spec (kinds, least, scope, cooldown_ms, destinations, enabled, description)
    Put {
        rule_id: String,
        #[arg(long, value_name = "FILE")]
        file: std::path::PathBuf,
        /// Refuse the change unless the rule is at this version (0: it must not exist yet)
        #[arg(long)]
        expected_version: Option<i32>,
    },
    /// Disable a rule (a new version with enabled = false)
    Disable { rule_id: String },
    /// Deliver a made-up signal to the rule's destinations through the running signals service, and show the outcomes
    Test { rule_id: String },
}

fn print_json(value: &impl serde::Serialize) -> ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

/// Runs one `rules` command against the configured ClickHouse.
pub async fn run_rules(config: ApiConfig, command: RulesCommand) -> ExitCode {
    use crate::routes::alert_rules::{AlertRuleView, fire_test, random_id};
    use polytape_clickhouse::alerts::RuleChange;

    let client = polytape_clickhouse::client(&config.clickhouse);
    if let Err(error) = polytape_clickhouse::migrate(
        &client,
        &config.clickhouse.clickhouse_database,
        config.retention_days(),
    )
    .await
    {
        return fail(&error);
    }
    let alerts = Store::new(client).alerts();
    let actor = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned())
    );
    let now_ms = polytape_model::now_ms();
    let not_found = |rule_id: &str| fail(&format!("alert rule {rule_id:?} does not exist"));
    match command {
        RulesCommand::List => match alerts.current_rules().await {
            Ok(rules) => print_json(
                &rules
                    .into_iter()
                    .map(AlertRuleView::from)
                    .collect::<Vec<_>>(),
            ),
            Err(error) => fail(&error),
        },
        RulesCommand::Show { rule_id } => match alerts.current_rule(&rule_id).await {
            Ok(Some(rule)) => print_json(&AlertRuleView::from(rule)),
            Ok(None) => not_found(&rule_id),
            Err(error) => fail(&error),
        },
        RulesCommand::History { rule_id } => match alerts.rule_history(&rule_id).await {
            Ok(history) if history.is_empty() => not_found(&rule_id),
            Ok(history) => print_json(
                &history
                    .into_iter()
                    .map(AlertRuleView::from)
                    .collect::<Vec<_>>(),
            ),
            Err(error) => fail(&error),
        },
        RulesCommand::Put {
            rule_id,
            file,
            expected_version,
        } => {
            let spec = match std::fs::read_to_string(&file)
                .map_err(|error| format!("cannot read {}: {error}", file.display()))
                .and_then(|text| {
                    serde_json::from_str(&text)
                        .map_err(|error| format!("{} is not a rule spec: {error}", file.display()))
                }) {
                Ok(spec) => spec,
                Err(error) => return fail(&error),
            };
            let change = RuleChange {
                rule_id,
                spec,
                changed_by: actor,
                change_id: random_id(),
                now_ms,
                expected_version,
                must_exist: false,
            };
            match alerts.change_rule(change).await {
                Ok(rule) => print_json(&AlertRuleView::from(rule)),
                Err(error) => fail(&error),
            }
        }
        RulesCommand::Disable { rule_id } => {
            match alerts
                .disable_rule(&rule_id, actor, random_id(), now_ms)
                .await
            {
                Ok(rule) => print_json(&AlertRuleView::from(rule)),
                Err(error) => fail(&error),
            }
        }
        RulesCommand::Test { rule_id } => {
            let rule = match alerts.current_rule(&rule_id).await {
                Ok(Some(rule)) => rule,
                Ok(None) => return not_found(&rule_id),
                Err(error) => return fail(&error),
            };
            match fire_test(&alerts, &rule, actor, now_ms).await {
                Ok(view) => print_json(&view),
                Err(error) => fail(&error),
            }
        }
    }
}

/// `export` arguments: research datasets by UTC day into a directory.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// First UTC day, YYYY-MM-DD
    #[arg(long)]
    pub from: String,
    /// Last UTC day, YYYY-MM-DD, included (default: --from)
    #[arg(long)]
    pub to: Option<String>,
    /// Dataset: trades, candles or continuity; repeat for several (default: all)
    #[arg(long = "dataset")]
    pub datasets: Vec<String>,
    /// File format: parquet, csv or ndjson; repeat for several (default: parquet)
    #[arg(long = "format")]
    pub formats: Vec<String>,
    /// Only these markets (condition ids); repeat for several
    #[arg(long = "market")]
    pub markets: Vec<String>,
    /// Only these tokens; repeat for several
    #[arg(long = "token")]
    pub tokens: Vec<String>,
    /// Directory the `dataset=<name>/date=<day>/` tree is written under
    #[arg(long)]
    pub out: std::path::PathBuf,
}

impl ExportArgs {
    /// The plan, or every problem with the arguments at once.
    pub fn plan(&self, now_ms: i64, retention_days: u32) -> Result<ExportPlan, Vec<String>> {
        use polytape_model::time::{parse_datetime_ms, utc_day};

        let mut problems = Vec::new();
        let mut day_of = |name: &str, text: &str| {
            let is_date = text.len() == 10 && text.as_bytes().get(4) == Some(&b'-');
            match parse_datetime_ms(text).filter(|_| is_date) {
                Some(ms) => Some(utc_day(ms)),
                None => {
                    problems.push(format!("--{name} {text:?} is not a date (YYYY-MM-DD)"));
                    None
                }
            }
        };
        let first_day = day_of("from", &self.from);
        let last_day = day_of("to", self.to.as_deref().unwrap_or(&self.from));
        let datasets = chosen(
            "dataset",
            &self.datasets,
            Dataset::from_name,
            &Dataset::ALL.map(Dataset::name),
            &Dataset::ALL,
            &mut problems,
        );
        let formats = chosen(
            "format",
            &self.formats,
            DatasetFormat::from_name,
            &DatasetFormat::ALL.map(DatasetFormat::name),
            &[DatasetFormat::Parquet],
            &mut problems,
        );
        if let (Some(first), Some(last)) = (first_day, last_day) {
            if last < first {
                problems.push("--to is before --from".to_owned());
            }
            let today = utc_day(now_ms);
            // The oldest day whose every row is still kept (TTL removes a day's rows once
            // they are older than the retention, during that day).
            let oldest_kept = today - i64::from(retention_days) + 1;
            if first < oldest_kept {
                problems.push(format!(
                    "--from {} is outside the retention: ClickHouse keeps {retention_days} days, so the oldest day is {}",
                    self.from,
                    polytape_model::time::utc_date_text(oldest_kept)
                ));
            }
            if last >= today {
                problems.push(format!(
                    "--to {} is not over yet (today is {} UTC): export days that are closed",
                    self.to.as_deref().unwrap_or(&self.from),
                    polytape_model::time::utc_date_text(today)
                ));
            }
        }
        match (first_day, last_day) {
            (Some(first_day), Some(last_day)) if problems.is_empty() => Ok(ExportPlan {
                datasets,
                formats,
                first_day,
                last_day,
                filter: DayFilter {
                    markets: self.markets.clone(),
                    tokens: self.tokens.clone(),
                },
                out: self.out.clone(),
            }),
            _ => Err(problems),
        }
    }
}

/// The distinct values a repeated `--flag` names, in order (`default` when it is not given);
/// an unknown name is a problem.
fn chosen<T: Copy + PartialEq>(
    flag: &str,
    names: &[String],
    from_name: fn(&str) -> Option<T>,
    known: &[&str],
    default: &[T],
    problems: &mut Vec<String>,
) -> Vec<T> {
    let mut values = Vec::new();
    for name in names {
        match from_name(name) {
            Some(value) if !values.contains(&value) => values.push(value),
            Some(_) => {}
            None => problems.push(format!(
                "--{flag} {name:?} is not one of {}",
                known.join(", ")
            )),
        }
    }
    if values.is_empty() {
        values = default.to_vec();
    }
    values
}

/// Runs `export` against the configured ClickHouse.
pub async fn run_export(config: ApiConfig, args: ExportArgs) -> ExitCode {
    let now_ms = polytape_model::now_ms();
    let plan = match args.plan(now_ms, config.retention_days()) {
        Ok(plan) => plan,
        Err(problems) => {
            for problem in &problems {
                eprintln!("polytape-api: error: {problem}");
            }
            return ExitCode::from(polytape_runtime::EXIT_CONFIG);
        }
    };
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
    match export(&client, &plan).await {
        Ok(manifests) => {
            for manifest in &manifests {
                println!(
                    "{}\t{}\t{} rows\t{} gaps\t{}",
                    manifest.dataset,
                    manifest.date,
                    manifest.rows,
                    manifest.gaps.len(),
                    manifest
                        .files
                        .iter()
                        .map(|file| file.file.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

#[cfg(test)]
mod tests {
    use polytape_model::time::{MS_PER_DAY, utc_date_text};

    use super::*;

    fn args(from: &str, to: Option<&str>) -> ExportArgs {
        ExportArgs {
            from: from.to_owned(),
            to: to.map(str::to_owned),
            datasets: Vec::new(),
            formats: Vec::new(),
            markets: Vec::new(),
            tokens: Vec::new(),
            out: "out".into(),
        }
    }

    #[test]
    fn an_export_plan_takes_closed_days_inside_the_retention_and_names_every_problem() {
        let today = 20_430;
        let now_ms = today * MS_PER_DAY + 3_600_000;
        let day = |offset: i64| utc_date_text(today + offset);

        let plan = args(&day(-1), None).plan(now_ms, 90).unwrap();
        assert_eq!((plan.first_day, plan.last_day), (today - 1, today - 1));
        assert_eq!(plan.datasets, Dataset::ALL.to_vec());
        assert_eq!(plan.formats, vec![DatasetFormat::Parquet]);

        // The oldest day TTL has not started to empty: 89 days back with a 90-day retention.
        assert!(args(&day(-89), Some(&day(-88))).plan(now_ms, 90).is_ok());
        let too_old = args(&day(-90), Some(&day(-88)))
            .plan(now_ms, 90)
            .unwrap_err();
        assert_eq!(too_old.len(), 1, "{too_old:?}");
        assert!(too_old[0].contains("outside the retention"), "{too_old:?}");

        // Today is not over.
        let today_refused = args(&day(-1), Some(&day(0))).plan(now_ms, 90).unwrap_err();
        assert!(
            today_refused[0].contains("not over yet"),
            "{today_refused:?}"
        );

        // Every problem at once.
        let mut wrong = args("2026-13-01", Some(&day(-3)));
        wrong.datasets = vec!["trades".to_owned(), "books".to_owned()];
        wrong.formats = vec!["xlsx".to_owned()];
        let problems = wrong.plan(now_ms, 90).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        let reversed = args(&day(-2), Some(&day(-3))).plan(now_ms, 90).unwrap_err();
        assert_eq!(reversed, vec!["--to is before --from".to_owned()]);
    }
}
