//! `cargo xtask demo|up|down`: the whole platform as local processes.
//!
//! `demo` runs the six services against `polymarket-sim` (a seeded world with three days of
//! history, live from then on); `up` runs them against live Polymarket. Both build the binaries,
//! bring up the local stack, start every process detached (its own process group, log and pid
//! file under `.polytape/demo/`), wait for each `/readyz`, create a demo API key and then
//! either print a status line per second until Ctrl-C (which stops everything) or, with
//! `--detach`, return. `down` stops whatever `demo`/`up` started, then the stack.

use std::{
    collections::BTreeMap,
    fs,
    io::{IsTerminal as _, Write as _},
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{paths, process, stack};

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Return once every service is ready instead of showing the live status (stop with
    /// `cargo xtask down`)
    #[arg(long)]
    detach: bool,
    /// Build and run optimised binaries (slower first build, faster services)
    #[arg(long)]
    release: bool,
}

/// Where the services read market data from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upstream {
    /// `polymarket-sim` on 127.0.0.1:8900.
    Simulator,
    /// Polymarket's public endpoints (the embedded defaults).
    Live,
}

const SIMULATOR_PORT: u16 = 8900;
const API_PORT: u16 = 8080;
const API_ADMIN_PORT: u16 = 9105;
/// Days of history the demo world has; the collector's backfill window covers them.
const SIMULATOR_HISTORY_DAYS: u32 = 3;

/// One process of the demo.
struct Component {
    name: &'static str,
    package: &'static str,
    binary: &'static str,
    args: &'static [&'static str],
    /// Port of the address that serves `/readyz` (and `/metrics`).
    admin_port: u16,
}

const SIMULATOR: Component = Component {
    name: "polymarket-sim",
    package: "polymarket-sim",
    binary: "polymarket-sim",
    args: &[],
    admin_port: SIMULATOR_PORT,
};

/// The reference webhook receiver the demo's alert rule delivers to (its log shows each alert
/// and whether its signature verified).
const RECEIVER: Component = Component {
    name: "webhook-receiver",
    package: "polytape-signals",
    binary: "polytape-webhook-receiver",
    args: &["--listen", "127.0.0.1:9107", "--secret-file"],
    admin_port: 9107,
};

/// In start order: the sink first (it applies migrations and drains every topic), the API, the
/// stream processors (candle builder, signals), then the producers.
const SERVICES: [Component; 6] = [
    Component {
        name: "sink-clickhouse",
        package: "polytape-sink-clickhouse",
        binary: "polytape-sink-clickhouse",
        args: &["run"],
        admin_port: 9104,
    },
    Component {
        name: "api",
        package: "polytape-api",
        binary: "polytape-api",
        args: &[],
        // Its public port is API_PORT; `/readyz` and `/metrics` are on the internal one.
        admin_port: API_ADMIN_PORT,
    },
    Component {
        name: "candle-builder",
        package: "polytape-candle-builder",
        binary: "polytape-candle-builder",
        args: &[],
        admin_port: 9103,
    },
    Component {
        name: "signals",
        package: "polytape-signals",
        binary: "polytape-signals",
        args: &[],
        admin_port: 9106,
    },
    Component {
        name: "ws-bridge",
        package: "polytape-ws-bridge",
        binary: "polytape-ws-bridge",
        args: &[],
        admin_port: 9102,
    },
    Component {
        name: "collector",
        package: "polytape-collector",
        binary: "polytape-collector",
        args: &["run"],
        admin_port: 9101,
    },
];

fn demo_dir() -> PathBuf {
    paths::state_dir().join("demo")
}

fn pid_file(component: &Component) -> PathBuf {
    demo_dir().join(format!("{}.pid", component.name))
}

fn log_file(component: &Component) -> PathBuf {
    demo_dir().join(format!("{}.log", component.name))
}

/// The file the demo API key is written to (so scripts and CI can read it).
fn api_key_file() -> PathBuf {
    demo_dir().join("api-key")
}

/// `cargo xtask demo --detach` (benchmarks that measure the demo's world).
pub(crate) fn run_detached_simulator_demo() -> anyhow::Result<()> {
    run(
        Upstream::Simulator,
        &RunArgs {
            detach: true,
            release: false,
        },
    )
}

/// `cargo xtask demo` / `cargo xtask up`.
pub(crate) fn run(upstream: Upstream, args: &RunArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    fs::create_dir_all(demo_dir())
        .with_context(|| format!("cannot create {}", demo_dir().display()))?;
    refuse_if_running()?;

    let profile = if args.release { "release" } else { "debug" };
    build(upstream, args.release)?;
    step("starting the local stack (Kafka API, Schema Registry, ClickHouse)");
    stack::up(&stack::StackSpec::development(), false)?;

    let binaries = stack::target_dir().join(profile);
    let api_key = match start_everything(upstream, &binaries) {
        Ok(api_key) => api_key,
        Err(error) => {
            eprintln!("\n[demo] start-up failed; stopping what was started");
            stop_components();
            return Err(error);
        }
    };
    print_welcome(upstream, &api_key, started.elapsed());

    if args.detach {
        println!("detached: every service is running; stop them with `cargo xtask down`");
        return Ok(());
    }
    let outcome = live_status();
    println!();
    step("stopping the services and the local stack");
    stop_components();
    stack::down(&stack::StackSpec::development())?;
    outcome
}

/// `cargo xtask down`: stops the demo's processes, then the local stack; afterwards none of
/// our ports is listening.
pub(crate) fn down() -> anyhow::Result<()> {
    stop_components();
    stack::down(&stack::StackSpec::development())?;
    let mut still_open = Vec::new();
    for port in our_ports() {
        if process::port_open(port) {
            still_open.push(port);
        }
    }
    if !still_open.is_empty() {
        bail!(
            "ports {still_open:?} are still listening after stopping everything we started; another process owns them (see `ss -ltnp`)"
        );
    }
    println!("[demo] down: no Polytape port is listening");
    Ok(())
}

fn our_ports() -> Vec<u16> {
    let spec = stack::StackSpec::development();
    let mut ports = vec![
        spec.kafka_port,
        spec.registry_port,
        spec.clickhouse_port,
        SIMULATOR_PORT,
        API_PORT,
        RECEIVER.admin_port,
    ];
    ports.extend(SERVICES.iter().map(|service| service.admin_port));
    ports
}

fn step(message: &str) {
    println!("[demo] {message}");
}

pub(crate) fn refuse_if_running() -> anyhow::Result<()> {
    let running: Vec<&str> = [&SIMULATOR, &RECEIVER]
        .into_iter()
        .chain(SERVICES.iter())
        .filter(|component| process::read_pid(&pid_file(component)).is_some_and(process::is_alive))
        .map(|component| component.name)
        .collect();
    if !running.is_empty() {
        bail!(
            "a demo is already running ({}); stop it with `cargo xtask down` first",
            running.join(", ")
        );
    }
    for component in [&SIMULATOR, &RECEIVER].into_iter().chain(SERVICES.iter()) {
        if process::port_open(component.admin_port) {
            bail!(
                "port {} (for {}) is in use by a process the demo did not start; stop it and retry",
                component.admin_port,
                component.name
            );
        }
    }
    Ok(())
}

fn build(upstream: Upstream, release: bool) -> anyhow::Result<()> {
    let mut packages: Vec<&str> = SERVICES.iter().map(|service| service.package).collect();
    if upstream == Upstream::Simulator {
        packages.push(SIMULATOR.package);
    }
    step(&format!(
        "building {} ({} profile; the first build on a new machine compiles ~400 crates and takes 10-20 minutes on 2 cores, later builds seconds)",
        packages.join(", "),
        if release { "release" } else { "dev" }
    ));
    let mut command = Command::new(paths::cargo());
    command.arg("build").current_dir(paths::workspace_root());
    if release {
        command.arg("--release");
    }
    for package in &packages {
        command.args(["--package", package]);
    }
    let status = command.status().context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status}); fix the build error above and rerun");
    }
    Ok(())
}

/// Environment every service gets: the local stack's defaults are the embedded ones; only the
/// upstream URLs change for the simulator.
fn service_environment(upstream: Upstream) -> Vec<(&'static str, String)> {
    let mut environment = vec![("POLYTAPE_LOG_FORMAT", "pretty".to_owned())];
    if upstream == Upstream::Simulator {
        let base = format!("http://127.0.0.1:{SIMULATOR_PORT}");
        environment.extend([
            ("POLYTAPE_GAMMA_URL", format!("{base}/gamma")),
            ("POLYTAPE_DATA_API_URL", format!("{base}/data")),
            ("POLYTAPE_CLOB_URL", format!("{base}/clob")),
            (
                "POLYTAPE_CLOB_WS_URL",
                format!("ws://127.0.0.1:{SIMULATOR_PORT}/ws/market"),
            ),
            // The simulated world has three days of history: backfill exactly those.
            (
                "POLYTAPE_COLLECTOR_RETENTION",
                format!("{}days", SIMULATOR_HISTORY_DAYS + 1),
            ),
            // The simulator indexes a fill the moment it happens (real upstream takes up to
            // minutes, hence the 60 s default lag): poll its trades tail every 2 s, 1 s behind,
            // so trade-driven signals reach the webhook within seconds; crawl the market list
            // every 30 s.
            ("POLYTAPE_COLLECTOR_POLL_INTERVAL", "2s".to_owned()),
            ("POLYTAPE_COLLECTOR_POLL_LAG", "1s".to_owned()),
            ("POLYTAPE_COLLECTOR_CRAWL_INTERVAL", "30s".to_owned()),
        ]);
    }
    environment
}

/// Starts the simulator and the services; returns the demo API key, created after the sink
/// (which applies the migrations) and before the API starts, so the API loads it at start.
fn start_everything(upstream: Upstream, binaries: &std::path::Path) -> anyhow::Result<String> {
    if upstream == Upstream::Simulator {
        let mut command = Command::new(binaries.join(SIMULATOR.binary));
        command.args([
            "--port",
            &SIMULATOR_PORT.to_string(),
            "--history-days",
            &SIMULATOR_HISTORY_DAYS.to_string(),
            // A round of planted signal scenarios (a whale, a price move, a volume spike,
            // arbitrage windows) 30 s into the live phase and every 3 minutes after, so a
            // newcomer sees arbitrage windows and their alerts within a minute (trade-driven
            // signals once the collector's backfill is through).
            "--scenarios",
            "live",
            "--scenario-every",
            "3m",
        ]);
        start_component(&SIMULATOR, command, "/_sim/info")?;
    }
    let environment = service_environment(upstream);
    let destinations = start_webhook_receiver(binaries)?;
    let mut api_key = None;
    for service in &SERVICES {
        if service.name == "api" {
            api_key = Some(create_api_key(binaries)?);
            create_demo_alert_rule(binaries)?;
        }
        let mut command = Command::new(binaries.join(service.binary));
        command.args(service.args);
        command.envs(environment.iter().map(|(key, value)| (*key, value)));
        if service.name == "signals" {
            command.env("POLYTAPE_ALERT_DESTINATIONS_FILE", &destinations);
        }
        start_component(service, command, "/readyz")?;
    }
    let api_key = api_key.context("the service list has no api")?;
    wait_until_key_accepted(&api_key)?;
    Ok(api_key)
}

/// Waits until the API answers a request made with the demo key (the key is loaded at start
/// and refreshed every few seconds), so the printed commands work as soon as they are shown.
fn wait_until_key_accepted(api_key: &str) -> anyhow::Result<()> {
    let http = Http::new()?;
    let url = format!("http://127.0.0.1:{API_PORT}/v1/markets?limit=1");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = http.runtime.block_on(async {
            http.client
                .get(&url)
                .header("X-API-Key", api_key)
                .send()
                .await
                .map(|response| response.status().as_u16())
        });
        match status {
            Ok(200) => return Ok(()),
            _ if Instant::now() < deadline => thread::sleep(Duration::from_millis(250)),
            Ok(other) => bail!(
                "the API answers {other} to the demo key after 30 s; see {}",
                log_file(&SERVICES[1]).display()
            ),
            Err(error) => bail!("the API does not answer ({error}); see its log"),
        }
    }
}

fn start_component(
    component: &Component,
    command: Command,
    ready_path: &str,
) -> anyhow::Result<()> {
    let log = log_file(component);
    // A fresh log per run keeps the tails shown on failure relevant.
    fs::remove_file(&log).ok();
    let pid = process::spawn_detached(command, &log, &pid_file(component))?;
    print!(
        "[demo] starting {} (pid {pid}, log {}) … ",
        component.name,
        log.display()
    );
    std::io::stdout().flush().ok();
    let url = format!("http://127.0.0.1:{}{ready_path}", component.admin_port);
    let deadline = Instant::now() + Duration::from_secs(180);
    let http = Http::new()?;
    loop {
        if !process::is_alive(pid) {
            println!("exited");
            bail!(
                "{} exited during start-up; last lines of {}:\n{}",
                component.name,
                log.display(),
                process::log_tail(&log, 30)
            );
        }
        if http.answers_ok(&url) {
            println!("ready");
            return Ok(());
        }
        if Instant::now() > deadline {
            println!("not ready");
            bail!(
                "{} did not answer {url} with 200 within 180 s; last lines of {}:\n{}",
                component.name,
                log.display(),
                process::log_tail(&log, 30)
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// Stops the demo's processes, producers first so the consumers drain what they produced.
fn stop_components() {
    let order = SERVICES.iter().rev().chain([&RECEIVER, &SIMULATOR]);
    for component in order {
        let file = pid_file(component);
        let Some(pid) = process::read_pid(&file) else {
            continue;
        };
        if process::is_alive(pid) {
            match process::terminate(pid, Duration::from_secs(30)) {
                Ok(()) => println!("[demo] stopped {} (pid {pid})", component.name),
                Err(error) => eprintln!("[demo] cannot stop {}: {error:#}", component.name),
            }
        }
        fs::remove_file(&file).ok();
    }
}

/// Starts the reference webhook receiver with a fresh secret and writes the signals service's
/// destinations file naming it (`demo`); returns that file's path.
fn start_webhook_receiver(binaries: &std::path::Path) -> anyhow::Result<PathBuf> {
    let mut random = [0_u8; 24];
    fs::File::open("/dev/urandom")
        .and_then(|mut urandom| std::io::Read::read_exact(&mut urandom, &mut random))
        .context("cannot read /dev/urandom for the demo webhook secret")?;
    let secret = hex::encode(random);
    let secret_file = demo_dir().join("webhook-secret");
    fs::write(&secret_file, format!("{secret}\n"))
        .with_context(|| format!("cannot write {}", secret_file.display()))?;
    let destinations = demo_dir().join("alert-destinations.toml");
    fs::write(
        &destinations,
        format!(
            "# Written by cargo xtask demo: the reference receiver (its log: {}).\n[[destination]]\nid = \"demo\"\nurl = \"http://127.0.0.1:{}/hook\"\nsecret = \"{secret}\"\n",
            log_file(&RECEIVER).display(),
            RECEIVER.admin_port
        ),
    )
    .with_context(|| format!("cannot write {}", destinations.display()))?;
    let mut command = Command::new(binaries.join(RECEIVER.binary));
    command.args(RECEIVER.args).arg(&secret_file);
    start_component(&RECEIVER, command, "/healthz")?;
    Ok(destinations)
}

/// Stores the demo's alert rule (every signal to the `demo` receiver, one alert per subject
/// per minute) with the API's CLI, after the sink created the tables.
fn create_demo_alert_rule(binaries: &std::path::Path) -> anyhow::Result<()> {
    step("creating the demo alert rule (polytape-api rules put demo-everything)");
    let spec = demo_dir().join("demo-alert-rule.json");
    fs::write(
        &spec,
        serde_json::to_string_pretty(&serde_json::json!({
            "description": "demo: every signal to the demo webhook receiver",
            "cooldown_ms": 60_000,
            "destinations": ["demo"],
        }))?,
    )
    .with_context(|| format!("cannot write {}", spec.display()))?;
    let output = Command::new(binaries.join("polytape-api"))
        .args(["rules", "put", "demo-everything", "--file"])
        .arg(&spec)
        .env("POLYTAPE_LOG_FORMAT", "pretty")
        .output()
        .context("cannot run polytape-api rules put")?;
    if !output.status.success() {
        bail!(
            "polytape-api rules put failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Creates a key with the API's own admin CLI; its plaintext is the last line of stdout.
fn create_api_key(binaries: &std::path::Path) -> anyhow::Result<String> {
    step("creating a demo API key (polytape-api keys create --name demo --plan monthly)");
    let output = Command::new(binaries.join("polytape-api"))
        .args(["keys", "create", "--name", "demo", "--plan", "monthly"])
        .env("POLYTAPE_LOG_FORMAT", "pretty")
        .output()
        .context("cannot run polytape-api keys create")?;
    if !output.status.success() {
        bail!(
            "polytape-api keys create failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let key = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .context("polytape-api keys create printed no key")?
        .to_owned();
    fs::write(api_key_file(), format!("{key}\n"))
        .with_context(|| format!("cannot write {}", api_key_file().display()))?;
    Ok(key)
}

/// A token and a market of the demo world to put in the example commands.
fn example_ids(upstream: Upstream) -> (String, String) {
    let placeholders = ("<condition_id>".to_owned(), "<token_id>".to_owned());
    if upstream != Upstream::Simulator {
        return placeholders;
    }
    let Ok(http) = Http::new() else {
        return placeholders;
    };
    let url = format!("http://127.0.0.1:{SIMULATOR_PORT}/_sim/truth/markets");
    let Some(markets) = http.json(&url) else {
        return placeholders;
    };
    // Market 0 is the busiest of the seeded world.
    let first_open = markets.as_array().and_then(|markets| {
        markets
            .iter()
            .find(|market| market["closed"].as_bool() == Some(false))
    });
    match first_open {
        Some(market) => (
            market["condition_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            market["token_ids"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ),
        None => placeholders,
    }
}

fn print_welcome(upstream: Upstream, api_key: &str, elapsed: Duration) {
    let (condition_id, token_id) = example_ids(upstream);
    let api = format!("http://127.0.0.1:{API_PORT}");
    let source = match upstream {
        Upstream::Simulator => format!(
            "polymarket-sim on http://127.0.0.1:{SIMULATOR_PORT} ({SIMULATOR_HISTORY_DAYS} days of history, then live)"
        ),
        Upstream::Live => "live Polymarket (gamma-api, data-api, clob)".to_owned(),
    };
    println!();
    println!(
        "Polytape is running ({:.0?} to start), reading {source}.",
        elapsed
    );
    println!("  API      {api}   docs {api}/docs   OpenAPI {api}/openapi.json");
    println!(
        "  API key  {api_key}   (also in {})",
        api_key_file().display()
    );
    println!("  logs     {}/*.log", demo_dir().display());
    println!();
    println!("Try:");
    println!("  curl -s -H 'X-API-Key: {api_key}' '{api}/v1/markets?limit=5'");
    let day_ago_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.as_millis())
        .saturating_sub(86_400_000);
    println!(
        "  curl -s -H 'X-API-Key: {api_key}' '{api}/v1/candles?token_id={token_id}&interval=1h&from={day_ago_ms}'"
    );
    println!(
        "  curl -s -H 'X-API-Key: {api_key}' '{api}/v1/orderbook?token_id={token_id}&depth=10'"
    );
    println!("  curl -s -H 'X-API-Key: {api_key}' '{api}/v1/signals?limit=5'");
    println!(
        "  tail -f {}   # alerts the demo rule sends, signatures verified",
        log_file(&RECEIVER).display()
    );
    if upstream == Upstream::Simulator {
        println!("  (market {condition_id} in the simulated world)");
    }
    println!();
}

/// Counters and gauges read from the services' `/metrics`, for the status line.
#[derive(Debug, Default)]
struct Snapshot {
    rows_by_table: BTreeMap<String, f64>,
    consumer_lag: f64,
    freshness_ms_by_table: BTreeMap<String, f64>,
    dead_letters: f64,
    open_connections: f64,
}

fn scrape(http: &Http) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for service in &SERVICES {
        let url = format!("http://127.0.0.1:{}/metrics", service.admin_port);
        let Some(text) = http.text(&url) else {
            continue;
        };
        for sample in parse_prometheus_text(&text) {
            match sample.name.as_str() {
                "polytape_sink_rows_inserted_total" => {
                    if let Some(table) = sample.label("table") {
                        *snapshot.rows_by_table.entry(table.to_owned()).or_default() +=
                            sample.value;
                    }
                }
                "polytape_sink_freshness_milliseconds" => {
                    if let Some(table) = sample.label("table") {
                        snapshot
                            .freshness_ms_by_table
                            .insert(table.to_owned(), sample.value);
                    }
                }
                "polytape_kafka_consumer_lag" => snapshot.consumer_lag += sample.value.max(0.0),
                "polytape_sink_dead_letters_total" => snapshot.dead_letters += sample.value,
                "polytape_ws_connections_open" => snapshot.open_connections += sample.value,
                _ => {}
            }
        }
    }
    snapshot
}

/// One line per second until Ctrl-C: rows/s per table (what the sink loaded), consumer lag,
/// freshness of the newest live rows, declared gaps, dead letters, and services that died.
fn live_status() -> anyhow::Result<()> {
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let interrupted = interrupted.clone();
        // A tiny runtime only to receive Ctrl-C; the status loop stays synchronous.
        thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                tokio::signal::ctrl_c().await.ok();
            });
            interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    println!("live status (Ctrl-C stops everything):");
    let http = Http::new()?;
    let terminal = std::io::stdout().is_terminal();
    let mut previous = scrape(&http);
    let mut previous_at = Instant::now();
    while !interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        thread::sleep(Duration::from_secs(1));
        let current = scrape(&http);
        let seconds = previous_at.elapsed().as_secs_f64().max(0.001);
        previous_at = Instant::now();
        let line = status_line(&previous, &current, seconds, &dead_components());
        if terminal {
            print!("\r\x1b[2K{line}");
            std::io::stdout().flush().ok();
        } else {
            println!("{line}");
        }
        previous = current;
    }
    Ok(())
}

fn dead_components() -> Vec<&'static str> {
    [&SIMULATOR, &RECEIVER]
        .into_iter()
        .chain(SERVICES.iter())
        .filter(|component| {
            process::read_pid(&pid_file(component)).is_some_and(|pid| !process::is_alive(pid))
        })
        .map(|component| component.name)
        .collect()
}

/// The tables worth a rate on the status line, in this order.
const STATUS_TABLES: [(&str, &str); 6] = [
    ("trades", "trades"),
    ("price_changes", "price_chg"),
    ("book_snapshots", "books"),
    ("candles", "candles"),
    ("book_state", "book_state"),
    ("markets", "markets"),
];

fn status_line(previous: &Snapshot, current: &Snapshot, seconds: f64, dead: &[&str]) -> String {
    let rate = |table: &str| {
        let now = current.rows_by_table.get(table).copied().unwrap_or(0.0);
        let before = previous.rows_by_table.get(table).copied().unwrap_or(0.0);
        ((now - before) / seconds).max(0.0)
    };
    let mut parts: Vec<String> = STATUS_TABLES
        .iter()
        .map(|(table, label)| format!("{label} {:.0}/s", rate(table)))
        .collect();
    // Signals are rare events: their total, not a rate.
    parts.push(format!(
        "signals {:.0}",
        current.rows_by_table.get("signals").copied().unwrap_or(0.0)
    ));
    parts.push(format!("lag {:.0}", current.consumer_lag));
    let live_freshness = ["price_changes", "book_snapshots", "trades"]
        .iter()
        .find_map(|table| current.freshness_ms_by_table.get(*table));
    parts.push(match live_freshness {
        Some(milliseconds) => format!("fresh {:.1}s", milliseconds / 1000.0),
        None => "fresh -".to_owned(),
    });
    let gaps = current
        .rows_by_table
        .get("continuity")
        .copied()
        .unwrap_or(0.0);
    let dead_letter_rows = current
        .rows_by_table
        .get("dead_letters")
        .copied()
        .unwrap_or(0.0);
    parts.push(format!("gaps {gaps:.0}"));
    parts.push(format!(
        "dlq {:.0}",
        dead_letter_rows.max(current.dead_letters)
    ));
    parts.push(format!("ws conns {:.0}", current.open_connections));
    if !dead.is_empty() {
        parts.push(format!("DOWN: {} (see its log)", dead.join(", ")));
    }
    parts.join(" · ")
}

/// One sample of the Prometheus text format.
#[derive(Debug, PartialEq)]
pub(crate) struct Sample {
    pub(crate) name: String,
    labels: Vec<(String, String)>,
    pub(crate) value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Parses the sample lines of the Prometheus text exposition format (ours: no escaped quotes
/// in label values, no timestamps needed).
pub(crate) fn parse_prometheus_text(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.trim_end_matches('}');
                    let labels = inner
                        .split("\",")
                        .filter_map(|pair| {
                            let (key, value) = pair.split_once('=')?;
                            Some((
                                key.trim().to_owned(),
                                value.trim().trim_matches('"').to_owned(),
                            ))
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), Vec::new()),
            };
            Some(Sample {
                name,
                labels,
                value,
            })
        })
        .collect()
}

/// A small blocking HTTP helper: reqwest's async client on a private current-thread runtime
/// (the demo makes a few local requests per second; no need for reqwest's blocking feature).
pub(crate) struct Http {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a tokio runtime")?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Self { runtime, client })
    }

    fn answers_ok(&self, url: &str) -> bool {
        self.runtime.block_on(async {
            self.client
                .get(url)
                .send()
                .await
                .is_ok_and(|response| response.status().is_success())
        })
    }

    pub(crate) fn text(&self, url: &str) -> Option<String> {
        self.runtime.block_on(async {
            let response = self.client.get(url).send().await.ok()?;
            response.error_for_status().ok()?.text().await.ok()
        })
    }

    fn json(&self, url: &str) -> Option<serde_json::Value> {
        serde_json::from_str(&self.text(url)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_is_parsed_with_labels() {
        let text = "# HELP x y\n# TYPE polytape_sink_rows_inserted_total counter\npolytape_sink_rows_inserted_total{table=\"trades\"} 42\npolytape_kafka_consumer_lag{group=\"g\",topic=\"t\",partition=\"0\"} 7\nplain 1.5\n";
        let samples = parse_prometheus_text(text);
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].label("table"), Some("trades"));
        assert_eq!(samples[0].value, 42.0);
        assert_eq!(samples[1].label("partition"), Some("0"));
        assert_eq!(samples[1].label("topic"), Some("t"));
        assert_eq!(samples[2].name, "plain");
        assert_eq!(samples[2].value, 1.5);
    }

    #[test]
    fn status_line_reports_rates_and_dead_services() {
        let mut previous = Snapshot::default();
        previous.rows_by_table.insert("trades".into(), 100.0);
        let mut current = Snapshot::default();
        current.rows_by_table.insert("trades".into(), 300.0);
        current.rows_by_table.insert("continuity".into(), 2.0);
        current.rows_by_table.insert("signals".into(), 3.0);
        current.consumer_lag = 5.0;
        let line = status_line(&previous, &current, 2.0, &["ws-bridge"]);
        assert!(line.contains("trades 100/s"), "{line}");
        assert!(line.contains("gaps 2"), "{line}");
        assert!(line.contains("signals 3"), "{line}");
        assert!(line.contains("lag 5"), "{line}");
        assert!(line.contains("DOWN: ws-bridge"), "{line}");
    }
}
