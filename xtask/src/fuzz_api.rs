//! `cargo xtask fuzz-api`: schemathesis (PyPI) against the API's public `/openapi.json` with a
//! valid key and against the admin document (`/admin/openapi.json` on the internal admin port)
//! with the admin token, on the development stack's ClickHouse in a database of its own, seeded
//! with a few rows of every table. Passes when schemathesis finds no server error and every
//! response conforms to the documents (status codes, content types, schemas). `--cases N`
//! runs at least N generated cases, spread over the operations (CI: the default, about a
//! minute; `--cases 10000` for the long run): schemathesis stops early on operations whose
//! inputs it has exhausted, so its own count is read back and further rounds (over both
//! documents, derived seeds) run until N is reached. The seed is random unless `--seed` is
//! given, and printed.
//!
//! Also home of [`ApiUnderTest`], the API binary started for a command, which `bench api`
//! shares.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

use crate::{paths, process, stack};

/// Cases CI runs: enough to cover every parameter's edge values while keeping CI time small.
const DEFAULT_CASES: u32 = 400;
/// The admin token of the API under test (it only ever listens on 127.0.0.1).
pub(crate) const ADMIN_TOKEN: &str = "xtask-admin-token-0123456789";

#[derive(Debug, clap::Args)]
pub(crate) struct FuzzArgs {
    /// At least how many generated cases to run, spread over every operation of both documents
    #[arg(long, default_value_t = DEFAULT_CASES)]
    cases: u32,
    /// Seed for schemathesis (default: random, printed so a failure can be replayed)
    #[arg(long)]
    seed: Option<u64>,
}

/// The ClickHouse the command runs against: the test stack's when run by `cargo xtask test`
/// (`POLYTAPE_TEST_STACK`), else the development stack's.
fn clickhouse_url_for_commands() -> anyhow::Result<String> {
    let Some(path) = std::env::var_os("POLYTAPE_TEST_STACK") else {
        return Ok(stack::StackSpec::development().clickhouse_url());
    };
    let text = fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read POLYTAPE_TEST_STACK={}",
            Path::new(&path).display()
        )
    })?;
    let endpoints: serde_json::Value = serde_json::from_str(&text)?;
    endpoints["clickhouse_url"]
        .as_str()
        .map(str::to_owned)
        .context("no clickhouse_url in the stack endpoints file")
}

/// The API binary running on a free port against its own database, with a key that no limit
/// will stop. Stopped (SIGTERM) and its database dropped when dropped.
pub(crate) struct ApiUnderTest {
    child: Child,
    pub(crate) base: String,
    /// The internal admin port: `/admin/*` (with [`ADMIN_TOKEN`]), `/readyz`, `/metrics`.
    pub(crate) admin_base: String,
    pub(crate) key: String,
    pub(crate) database: String,
    pub(crate) clickhouse_url: String,
    log_file: PathBuf,
}

impl ApiUnderTest {
    /// Builds nothing: `binary` must exist. Creates the key with the CLI (which also applies
    /// the migrations), then starts the service and waits for `/health`.
    pub(crate) fn start(binary: &Path, purpose: &str) -> anyhow::Result<Self> {
        let clickhouse_url = clickhouse_url_for_commands()?;
        let clickhouse_port = clickhouse_url
            .rsplit(':')
            .next()
            .and_then(|port| port.trim_end_matches('/').parse::<u16>().ok())
            .with_context(|| format!("no port in {clickhouse_url}"))?;
        if !process::port_open(clickhouse_port) {
            bail!(
                "ClickHouse is not answering on {clickhouse_url}; start the local stack with `cargo xtask stack up`"
            );
        }
        let database = format!("xtask_{purpose}_{}", std::process::id());
        let environment = [
            ("POLYTAPE_CLICKHOUSE_URL", clickhouse_url.clone()),
            ("POLYTAPE_CLICKHOUSE_DATABASE", database.clone()),
            ("POLYTAPE_LOG_LEVEL", "warn".to_owned()),
        ];
        let mut create = Command::new(binary);
        create.args([
            "keys",
            "create",
            "--name",
            purpose,
            "--plan",
            "custom",
            "--rps",
            "100000",
            "--daily-cap",
            "1000000000000",
        ]);
        clear_polytape_env(&mut create);
        create.envs(environment.iter().cloned());
        let output = create
            .output()
            .context("cannot run polytape-api keys create")?;
        if !output.status.success() {
            bail!(
                "polytape-api keys create failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let key = stdout
            .lines()
            .last()
            .context("keys create printed no key")?
            .trim()
            .to_owned();

        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map(|addr| addr.port())
                .context("cannot find a free port")
        };
        let port = free_port()?;
        let admin_port = free_port()?;
        let log_file = paths::state_dir().join(format!("xtask-api-{purpose}.log"));
        fs::create_dir_all(paths::state_dir())?;
        let log = fs::File::create(&log_file)?;
        let mut serve = Command::new(binary);
        clear_polytape_env(&mut serve);
        serve
            .envs(environment.iter().cloned())
            .env("POLYTAPE_API_ADDR", format!("127.0.0.1:{port}"))
            .env("POLYTAPE_API_ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))
            .env("POLYTAPE_API_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = serve.spawn().context("cannot start polytape-api")?;
        let api = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            admin_base: format!("http://127.0.0.1:{admin_port}"),
            key,
            database,
            clickhouse_url,
            log_file,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if http_status(port, "/health") == Some(200) {
                return Ok(api);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "polytape-api did not answer /health within 60 s:\n{}",
            process::log_tail(&api.log_file, 20)
        )
    }

    /// Runs SQL on the API's database through ClickHouse's HTTP interface.
    pub(crate) fn sql(&self, statement: &str) -> anyhow::Result<String> {
        clickhouse_http(&self.clickhouse_url, &self.database, statement)
    }
}

impl Drop for ApiUnderTest {
    fn drop(&mut self) {
        if let Err(error) = process::terminate(self.child.id(), Duration::from_secs(10)) {
            eprintln!("warning: {error}");
        }
        let _ = self.child.wait();
        if let Err(error) = clickhouse_http(
            &self.clickhouse_url,
            "system",
            &format!("DROP DATABASE IF EXISTS `{}`", self.database),
        ) {
            eprintln!("warning: could not drop {}: {error}", self.database);
        }
    }
}

fn clear_polytape_env(command: &mut Command) {
    for (name, _) in std::env::vars() {
        if name.starts_with("POLYTAPE_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
}

/// A plain HTTP/1.1 GET: the status, or None if nothing answered.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(500),
    )
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// One statement over ClickHouse's HTTP interface (a private current-thread runtime: xtask
/// is synchronous).
pub(crate) fn clickhouse_http(
    url: &str,
    database: &str,
    statement: &str,
) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{url}/?database={database}"))
            .body(statement.to_owned())
            .send()
            .await
            .with_context(|| format!("cannot reach ClickHouse at {url}"))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("ClickHouse refused a statement ({status}): {text}");
        }
        Ok(text)
    })
}

/// A few rows in every table the API reads, so responses have content to check.
fn seed(api: &ApiUnderTest) -> anyhow::Result<()> {
    let now_ms = polytape_model::now_ms();
    let hour_ago = now_ms - 3_600_000;
    let statements = [
        format!(
            "INSERT INTO markets (condition_id, event_ids, slug, question, token_ids, token_outcomes, token_winners, active, closed, archived, accepting_orders, enable_order_book, neg_risk, tick_size, tags, volume, content_hash, updated_at) \
             SELECT '0x' || leftPad(lower(hex(number)), 64, '0'), ['1' || toString(number % 3)], 'market-' || toString(number), 'Will thing ' || toString(number) || ' happen?', \
             [toString(1000 + number), toString(2000 + number)], ['Yes', 'No'], [NULL, false], number % 2 = 0, number % 5 = 0, false, true, true, false, 0.01, ['sports'], 1234.5, '', fromUnixTimestamp64Milli(toInt64({hour_ago}), 'UTC') FROM numbers(20)"
        ),
        "INSERT INTO events (event_id, title, active, closed, archived, neg_risk, tags, market_condition_ids, content_hash, updated_at) \
         SELECT '1' || toString(number), 'Event ' || toString(number), true, false, false, false, ['sports'], ['0x' || leftPad(lower(hex(number)), 64, '0')], '', now64(3) FROM numbers(3)".to_owned(),
        format!(
            "INSERT INTO trades (trade_id, condition_id, token_id, side, price, size, timestamp, transaction_hash, proxy_wallet, source, ingested_at) \
             SELECT lower(hex(MD5(toString(number)))), '0x' || leftPad(lower(hex(number % 20)), 64, '0'), toString(1000 + number % 20), if(number % 2 = 0, 'BUY', 'SELL'), \
             toDecimal64(0.4, 6) + toDecimal64(number % 100, 6) / 1000, toDecimal64(10 + number % 7, 6), fromUnixTimestamp64Milli(toInt64({hour_ago} + number * 1000), 'UTC'), '0x01', '0x' || repeat('a', 40), 'DATA_API_V1', now64(3) FROM numbers(500)"
        ),
        format!(
            "INSERT INTO candles (token_id, interval, open_time, close_time, open, high, low, close, volume, notional, vwap, trade_count, first_trade_time, last_trade_time, version, is_final) \
             SELECT '1000', '1m', fromUnixTimestamp64Milli(toInt64(intDiv({hour_ago}, 60000) * 60000 + number * 60000), 'UTC'), fromUnixTimestamp64Milli(toInt64(intDiv({hour_ago}, 60000) * 60000 + (number + 1) * 60000), 'UTC'), \
             0.5, 0.6, 0.4, 0.55, 100, 55, 0.55, 3, now64(3), now64(3), 1, true FROM numbers(60)"
        ),
        format!(
            "INSERT INTO book_state (token_id, timestamp, bid_prices, bid_sizes, ask_prices, ask_sizes, full_depth, bid_level_count, ask_level_count, bid_depth_1_tick, bid_depth_5_ticks, bid_depth_10_ticks, ask_depth_1_tick, ask_depth_5_ticks, ask_depth_10_ticks, consistent, version) \
             VALUES ('1000', fromUnixTimestamp64Milli(toInt64({hour_ago}), 'UTC'), [0.45, 0.44], [100, 200], [0.46, 0.47], [50, 60], true, 2, 2, 0, 0, 0, 0, 0, 0, true, 1)"
        ),
        format!(
            "INSERT INTO price_changes (token_id, condition_id, side, price, size, timestamp, received_at, connection_id, sequence, entry_index) \
             SELECT '1000', '', if(number % 2 = 0, 'BUY', 'SELL'), toDecimal64(0.40 + (number % 10) / 100, 6), toDecimal64(number % 3, 6), fromUnixTimestamp64Milli(toInt64({hour_ago} + 1000 + number * 500), 'UTC'), now64(3), 'c', number, 0 FROM numbers(100)"
        ),
        format!(
            "INSERT INTO price_history (token_id, timestamp, price, fidelity_minutes, fetched_at) \
             SELECT '1000', fromUnixTimestamp64Milli(toInt64({hour_ago} + number * 60000), 'UTC'), 0.5, 1, now64(3) FROM numbers(60)"
        ),
        format!(
            "INSERT INTO continuity (continuity_id, kind, token_ids, gap_start, gap_end, detected_at, source, connection_id, reason) \
             VALUES ('g1', 'DISCONNECT', ['1000'], fromUnixTimestamp64Milli(toInt64({hour_ago}), 'UTC'), NULL, now64(3), 'ws-bridge', 'c', 'socket closed')"
        ),
    ];
    for statement in &statements {
        api.sql(statement)?;
    }
    Ok(())
}

/// A venv of its own with schemathesis (kept apart from the stack's chdb venv so neither
/// can break the other), reinstalled when its requirements change.
fn schemathesis_venv() -> anyhow::Result<PathBuf> {
    let requirements = paths::workspace_root().join("tools/local-stack/requirements-fuzz.txt");
    let wanted = hex::encode(Sha256::digest(
        fs::read(&requirements)
            .with_context(|| format!("cannot read {}", requirements.display()))?,
    ));
    let venv = paths::state_dir().join("fuzz-venv");
    let marker = venv.join(".polytape-requirements");
    let schemathesis = venv.join("bin").join("schemathesis");
    if schemathesis.exists()
        && fs::read_to_string(&marker).is_ok_and(|installed| installed.trim() == wanted)
    {
        return Ok(schemathesis);
    }
    println!(
        "[install] creating {} with schemathesis (~20 s)",
        venv.display()
    );
    let status = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status()?;
    if !status.success() {
        bail!("python3 -m venv failed ({status})");
    }
    let status = Command::new(venv.join("bin").join("python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements)
        .status()?;
    if !status.success() {
        bail!(
            "pip install -r {} failed ({status})",
            requirements.display()
        );
    }
    fs::write(&marker, wanted)?;
    Ok(schemathesis)
}

fn build_api(release: bool) -> anyhow::Result<PathBuf> {
    let mut command = Command::new(paths::cargo());
    command.args(["build", "--package", "polytape-api"]);
    if release {
        command.arg("--release");
    }
    let status = command
        .current_dir(paths::workspace_root())
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!("building polytape-api failed ({status})");
    }
    Ok(stack::target_dir()
        .join(if release { "release" } else { "debug" })
        .join("polytape-api"))
}

pub(crate) fn build_release_api() -> anyhow::Result<PathBuf> {
    build_api(true)
}

pub(crate) fn run(args: &FuzzArgs) -> anyhow::Result<()> {
    let schemathesis = schemathesis_venv()?;
    let binary = build_api(false)?;
    let api = ApiUnderTest::start(&binary, "fuzz")?;
    seed(&api)?;
    let seed = args.seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        (nanos as u64) ^ u64::from(std::process::id())
    });
    // Public operations, then the admin ones (which create, rotate and revoke keys: last, so
    // they cannot revoke the key the public run uses while it runs).
    let documents = [
        (
            "public",
            format!("{}/openapi.json", api.base),
            format!("X-API-Key: {}", api.key),
        ),
        (
            "admin",
            format!("{}/admin/openapi.json", api.admin_base),
            format!("Authorization: Bearer {ADMIN_TOKEN}"),
        ),
    ];
    let operations: Vec<usize> = documents
        .iter()
        .map(|(_, url, _)| count_operations(url))
        .collect::<anyhow::Result<_>>()?;
    let total_operations = operations.iter().sum::<usize>().max(1);
    // Three phases (examples, coverage, fuzzing) each generate up to `max-examples` per
    // operation; the fuzzing phase dominates.
    let wanted = args.cases as usize;
    println!(
        "fuzz-api: seed {seed}, at least {wanted} cases over {total_operations} operations; replay with `cargo xtask fuzz-api --cases {wanted} --seed {seed}`"
    );
    let mut generated = 0_usize;
    for round in 0..MAX_ROUNDS {
        if generated >= wanted {
            break;
        }
        // Spread what is still missing over the operations; later rounds use derived seeds,
        // so they generate other cases.
        let max_examples = (wanted - generated).div_ceil(total_operations).max(1);
        let round_seed = seed.wrapping_add(round);
        for ((name, url, header), operation_count) in documents.iter().zip(&operations) {
            let report = paths::state_dir().join(format!("fuzz-api-report-{name}"));
            println!(
                "schemathesis round {} against {url} ({operation_count} operations, up to {max_examples} examples each, seed {round_seed})",
                round + 1
            );
            let mut child = Command::new(&schemathesis)
                .arg("run")
                .arg(url)
                .args(["--header", header])
                .args([
                    "--checks",
                    "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
                    "--phases",
                    "examples,coverage,fuzzing",
                    "--max-examples",
                    &max_examples.to_string(),
                    "--seed",
                    &round_seed.to_string(),
                    "--no-color",
                    "--report",
                    "junit",
                    "--report-dir",
                ])
                .arg(&report)
                .current_dir(paths::state_dir())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .context("cannot run schemathesis")?;
            // Shown as it runs, and its case count read back.
            let mut counted = None;
            if let Some(stdout) = child.stdout.take() {
                for line in BufReader::new(stdout).lines() {
                    let line = line.context("cannot read schemathesis's output")?;
                    println!("{line}");
                    counted = generated_cases(&line).or(counted);
                }
            }
            let status = child.wait().context("cannot run schemathesis")?;
            if !status.success() {
                bail!(
                    "schemathesis found problems in the {name} document ({status}, seed {round_seed}); the API log is {}",
                    api.log_file.display()
                );
            }
            let counted = counted.with_context(|| {
                format!("schemathesis did not report how many cases it generated for the {name} document")
            })?;
            generated += counted;
            println!("fuzz-api: {counted} cases for the {name} document, {generated} in all");
        }
    }
    if generated < wanted {
        bail!(
            "schemathesis generated only {generated} of the {wanted} cases asked for in {MAX_ROUNDS} rounds (seed {seed})"
        );
    }
    println!(
        "fuzz-api: {generated} generated cases, no server errors, every response conforms to both documents (seed {seed})"
    );
    Ok(())
}

/// Rounds of schemathesis at most, to reach the number of cases asked for.
const MAX_ROUNDS: u64 = 6;

/// The count in schemathesis's summary line `  6506 generated, 6506 passed`.
fn generated_cases(line: &str) -> Option<usize> {
    let (count, rest) = line.trim().split_once(' ')?;
    rest.starts_with("generated")
        .then(|| count.parse().ok())
        .flatten()
}

/// How many operations a served OpenAPI document declares.
fn count_operations(url: &str) -> anyhow::Result<usize> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let document: serde_json::Value = runtime.block_on(async {
        reqwest::Client::new()
            .get(url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .with_context(|| format!("cannot fetch {url}"))?
            .json()
            .await
            .with_context(|| format!("{url} is not JSON"))
    })?;
    let methods = ["get", "post", "put", "patch", "delete"];
    Ok(document["paths"]
        .as_object()
        .map(|paths| {
            paths
                .values()
                .map(|item| {
                    methods
                        .iter()
                        .filter(|method| item.get(**method).is_some())
                        .count()
                })
                .sum()
        })
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::generated_cases;

    #[test]
    fn the_generated_count_is_read_from_the_summary_line() {
        assert_eq!(generated_cases("  6506 generated, 6506 passed"), Some(6506));
        assert_eq!(
            generated_cases("  12 generated, 10 passed, 2 skipped"),
            Some(12)
        );
        assert_eq!(generated_cases("Test cases:"), None);
        assert_eq!(generated_cases("     ✅ 10 passed"), None);
    }
}
