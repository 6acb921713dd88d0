//! The local stack: the nisshi broker (Kafka API), our Schema Registry stand-in, and chdb
//! behind our ClickHouse-HTTP adapter, as plain processes on the production ports. Data, logs
//! and pid files live under one directory; `down` stops exactly the processes `up` started.

use std::{
    fs,
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use polytape_model::{Topic, TopicNames};
use sha2::{Digest as _, Sha256};

use crate::{paths, process};

pub(crate) const NISSHI_VERSION: &str = "0.8.1";

/// How the broker stores its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BrokerStorage {
    /// Survives restarts (the development stack).
    Sqlite,
    /// Throwaway and faster (the test stack, fresh on every run).
    Memory,
}

/// One stack: where it keeps its state and which ports it uses.
#[derive(Debug, Clone)]
pub(crate) struct StackSpec {
    pub(crate) name: &'static str,
    pub(crate) dir: PathBuf,
    pub(crate) kafka_port: u16,
    pub(crate) registry_port: u16,
    pub(crate) clickhouse_port: u16,
    pub(crate) storage: BrokerStorage,
}

impl StackSpec {
    /// The stack services and the demo use, on the production ports.
    pub(crate) fn development() -> Self {
        Self {
            name: "stack",
            dir: paths::state_dir().join("stack"),
            kafka_port: 9092,
            registry_port: 8081,
            clickhouse_port: 8123,
            storage: BrokerStorage::Sqlite,
        }
    }

    /// The isolated stack of `cargo xtask test`, on ports of its own so it never collides with
    /// a running demo.
    pub(crate) fn test() -> Self {
        Self {
            name: "test stack",
            dir: paths::state_dir().join("test-stack"),
            kafka_port: 19092,
            registry_port: 18081,
            clickhouse_port: 18123,
            storage: BrokerStorage::Memory,
        }
    }

    pub(crate) fn kafka_brokers(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    pub(crate) fn registry_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.registry_port)
    }

    pub(crate) fn clickhouse_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.clickhouse_port)
    }

    /// Where the endpoints are written for tests (`POLYTAPE_TEST_STACK` points at it).
    pub(crate) fn endpoints_file(&self) -> PathBuf {
        self.dir.join("stack.json")
    }
}

/// The three engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    Kafka,
    SchemaRegistry,
    ClickHouse,
}

impl Engine {
    pub(crate) const ALL: [Engine; 3] = [Engine::Kafka, Engine::SchemaRegistry, Engine::ClickHouse];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Engine::Kafka => "kafka",
            Engine::SchemaRegistry => "schema-registry",
            Engine::ClickHouse => "clickhouse",
        }
    }

    fn port(self, spec: &StackSpec) -> u16 {
        match self {
            Engine::Kafka => spec.kafka_port,
            Engine::SchemaRegistry => spec.registry_port,
            Engine::ClickHouse => spec.clickhouse_port,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Engine::Kafka => "Kafka API (nisshi broker)",
            Engine::SchemaRegistry => "Schema Registry (polytape stand-in)",
            Engine::ClickHouse => "ClickHouse (chdb behind the HTTP adapter)",
        }
    }

    pub(crate) fn pid_file(self, spec: &StackSpec) -> PathBuf {
        spec.dir.join(format!("{}.pid", self.name()))
    }

    pub(crate) fn log_file(self, spec: &StackSpec) -> PathBuf {
        spec.dir.join(format!("{}.log", self.name()))
    }

    fn data_path(self, spec: &StackSpec) -> PathBuf {
        match self {
            Engine::Kafka => spec.dir.join("kafka"),
            Engine::SchemaRegistry => spec.dir.join("schema-registry.json"),
            Engine::ClickHouse => spec.dir.join("clickhouse"),
        }
    }
}

/// Starts what is not running, installing missing tools first. Returns the engines this call
/// started.
pub(crate) fn up(spec: &StackSpec, fresh: bool) -> anyhow::Result<Vec<Engine>> {
    let tools = install_tools()?;
    up_with(spec, fresh, &tools)
}

fn up_with(spec: &StackSpec, fresh: bool, tools: &Tools) -> anyhow::Result<Vec<Engine>> {
    if fresh {
        down(spec)?;
        for engine in Engine::ALL {
            let data = engine.data_path(spec);
            if data.is_dir() {
                fs::remove_dir_all(&data)
                    .with_context(|| format!("cannot remove {}", data.display()))?;
            } else if data.exists() {
                fs::remove_file(&data)
                    .with_context(|| format!("cannot remove {}", data.display()))?;
            }
        }
    }
    fs::create_dir_all(spec.dir.join("kafka"))
        .with_context(|| format!("cannot create {}", spec.dir.display()))?;

    let mut started = Vec::new();
    for engine in Engine::ALL {
        if let Some(pid) = running_pid(engine, spec) {
            println!(
                "[{}] {} already running (pid {pid})",
                spec.name,
                engine.name()
            );
            continue;
        }
        let port = engine.port(spec);
        if process::port_open(port) {
            bail!(
                "port {port} ({}) is in use by a process this stack did not start; stop it, or stop the other stack with `cargo xtask stack down`",
                engine.what()
            );
        }
        let command = engine_command(engine, spec, tools)?;
        let pid = process::spawn_detached(command, &engine.log_file(spec), &engine.pid_file(spec))?;
        print!(
            "[{}] starting {} on 127.0.0.1:{port} (pid {pid}) … ",
            spec.name,
            engine.what()
        );
        wait_until_healthy(engine, spec, pid)?;
        println!("ready");
        started.push(engine);
    }

    initialise(spec)?;
    write_endpoints(spec)?;
    println!(
        "[{}] up: kafka {} · schema registry {} · clickhouse {} · state in {}",
        spec.name,
        spec.kafka_brokers(),
        spec.registry_url(),
        spec.clickhouse_url(),
        spec.dir.display()
    );
    Ok(started)
}

/// Stops the engines whose pid files this stack wrote.
pub(crate) fn down(spec: &StackSpec) -> anyhow::Result<()> {
    for engine in Engine::ALL.into_iter().rev() {
        let pid_file = engine.pid_file(spec);
        let Some(pid) = process::read_pid(&pid_file) else {
            continue;
        };
        if process::is_alive(pid) {
            process::terminate(pid, Duration::from_secs(10))?;
            println!("[{}] stopped {} (pid {pid})", spec.name, engine.name());
        }
        fs::remove_file(&pid_file).ok();
    }
    Ok(())
}

/// Prints each engine's health; true when all are running and answering.
pub(crate) fn status(spec: &StackSpec) -> anyhow::Result<bool> {
    let mut all_healthy = true;
    for engine in Engine::ALL {
        let port = engine.port(spec);
        let state = match process::read_pid(&engine.pid_file(spec)) {
            Some(pid) if process::is_alive(pid) => match health(engine, spec) {
                Ok(detail) => format!("healthy (pid {pid}) {detail}"),
                Err(error) => {
                    all_healthy = false;
                    format!("running (pid {pid}) but not answering: {error:#}")
                }
            },
            Some(pid) => {
                all_healthy = false;
                format!(
                    "crashed (pid {pid} is gone); log: {}",
                    engine.log_file(spec).display()
                )
            }
            None => {
                all_healthy = false;
                "stopped".to_owned()
            }
        };
        println!("{:<16} 127.0.0.1:{port:<6} {state}", engine.name());
    }
    Ok(all_healthy)
}

/// Engines of this stack that were started but are no longer alive, with their log tails.
pub(crate) fn crashed_engines(spec: &StackSpec) -> Vec<(Engine, String)> {
    Engine::ALL
        .into_iter()
        .filter_map(|engine| {
            let pid = process::read_pid(&engine.pid_file(spec))?;
            if process::is_alive(pid) {
                return None;
            }
            Some((engine, process::log_tail(&engine.log_file(spec), 30)))
        })
        .collect()
}

fn running_pid(engine: Engine, spec: &StackSpec) -> Option<u32> {
    let pid = process::read_pid(&engine.pid_file(spec))?;
    (process::is_alive(pid) && health(engine, spec).is_ok()).then_some(pid)
}

struct Tools {
    nisshi: PathBuf,
    registry: PathBuf,
    python: PathBuf,
}

fn engine_command(engine: Engine, spec: &StackSpec, tools: &Tools) -> anyhow::Result<Command> {
    let port = engine.port(spec);
    let command = match engine {
        Engine::Kafka => {
            let listener = format!("tcp://127.0.0.1:{port}");
            let storage = match spec.storage {
                BrokerStorage::Sqlite => "sqlite://nisshi.db".to_owned(),
                BrokerStorage::Memory => "memory://nisshi/".to_owned(),
            };
            let mut command = Command::new(&tools.nisshi);
            command
                .args([
                    "broker",
                    "--listener-url",
                    &listener,
                    "--advertised-listener-url",
                    &listener,
                ])
                .args(["--storage-engine", &storage])
                // The sqlite path is relative to the working directory, and the broker reads a
                // `.env` from it: give it a directory of its own.
                .current_dir(engine.data_path(spec));
            command
        }
        Engine::SchemaRegistry => {
            let mut command = Command::new(&tools.registry);
            command
                .arg("--addr")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--data-file")
                .arg(engine.data_path(spec));
            command
        }
        Engine::ClickHouse => {
            let mut command = Command::new(&tools.python);
            command
                .arg(paths::workspace_root().join("tools/local-stack/chdb_http_adapter.py"))
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .arg("--data-dir")
                .arg(engine.data_path(spec));
            command
        }
    };
    Ok(command)
}

fn wait_until_healthy(engine: Engine, spec: &StackSpec, pid: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if !process::is_alive(pid) {
            bail!(
                "{} exited during start-up; last lines of {}:\n{}",
                engine.what(),
                engine.log_file(spec).display(),
                process::log_tail(&engine.log_file(spec), 30)
            );
        }
        match health(engine, spec) {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() > deadline => {
                bail!(
                    "{} did not become healthy within 60 s ({error:#}); last lines of {}:\n{}",
                    engine.what(),
                    engine.log_file(spec).display(),
                    process::log_tail(&engine.log_file(spec), 30)
                )
            }
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")
}

/// A one-line health detail, or why the engine is not healthy.
fn health(engine: Engine, spec: &StackSpec) -> anyhow::Result<String> {
    let runtime = runtime()?;
    runtime.block_on(async {
        match engine {
            Engine::Kafka => {
                polytape_kafka::check_reachable(&spec.kafka_brokers(), Duration::from_secs(2))
                    .await?;
                Ok("metadata ok".to_owned())
            }
            Engine::SchemaRegistry => {
                let subjects: Vec<String> = http_client()?
                    .get(format!("{}/subjects", spec.registry_url()))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                Ok(format!("{} subjects", subjects.len()))
            }
            Engine::ClickHouse => {
                let client = http_client()?;
                let ping = client
                    .get(format!("{}/ping", spec.clickhouse_url()))
                    .send()
                    .await?
                    .text()
                    .await?;
                if ping.trim() != "Ok." {
                    bail!("/ping answered {ping:?}");
                }
                let version = client
                    .get(format!(
                        "{}/?query=SELECT%20version()",
                        spec.clickhouse_url()
                    ))
                    .send()
                    .await?
                    .text()
                    .await?;
                Ok(format!("version {}", version.trim()))
            }
        }
    })
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .context("cannot build an HTTP client")
}

/// Creates every topic (partition counts from the topic table) and applies the ClickHouse
/// migrations, as the compose/k8s init jobs do in production.
fn initialise(spec: &StackSpec) -> anyhow::Result<()> {
    let runtime = runtime()?;
    runtime.block_on(async {
        // The sqlite-backed broker sometimes refuses a request right after it starts
        // ("database is locked", reported as an unknown broker error): retry a few times.
        let mut attempt = 1;
        let created = loop {
            match polytape_kafka::ensure_topics(
                &spec.kafka_brokers(),
                &TopicNames::default(),
                &Topic::ALL,
                1,
            )
            .await
            {
                Ok(created) => break created,
                Err(error) if attempt < 10 => {
                    eprintln!(
                        "[{}] topic creation failed ({error}); retrying (attempt {attempt} of 10)",
                        spec.name
                    );
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => return Err(error.into()),
            }
        };
        let new_topics = created
            .iter()
            .filter(|creation| matches!(creation, polytape_kafka::TopicCreation::Created(_)))
            .count();
        println!(
            "[{}] topics: {new_topics} created, {} already present",
            spec.name,
            created.len() - new_topics
        );
        let config = polytape_runtime::config::ClickHouseConfig {
            clickhouse_url: spec.clickhouse_url(),
            clickhouse_database: "polymarket".to_owned(),
            clickhouse_user: None,
            clickhouse_password: None,
        };
        let client = polytape_clickhouse::client(&config);
        let report = polytape_clickhouse::migrate(&client, "polymarket", 90).await?;
        println!(
            "[{}] clickhouse migrations: applied {:?}, already applied {:?}",
            spec.name, report.applied, report.already_applied
        );
        anyhow::Ok(())
    })
}

fn write_endpoints(spec: &StackSpec) -> anyhow::Result<()> {
    let endpoints = serde_json::json!({
        "kafka_brokers": spec.kafka_brokers(),
        "schema_registry_url": spec.registry_url(),
        "clickhouse_url": spec.clickhouse_url(),
        "python": paths::venv_python(),
        "dir": spec.dir,
    });
    fs::write(
        spec.endpoints_file(),
        serde_json::to_string_pretty(&endpoints)?,
    )
    .with_context(|| format!("cannot write {}", spec.endpoints_file().display()))
}

/// Installs what the stack runs: the broker (once per machine), the registry (a workspace
/// binary), and the Python venv with chdb (once per checkout; again when requirements change).
fn install_tools() -> anyhow::Result<Tools> {
    Ok(Tools {
        nisshi: install_nisshi()?,
        registry: build_registry()?,
        python: install_venv()?,
    })
}

fn install_nisshi() -> anyhow::Result<PathBuf> {
    let root = paths::tools_dir().join(format!("nisshi-{NISSHI_VERSION}"));
    let binary = root.join("bin").join("nisshi");
    if binary.exists() {
        return Ok(binary);
    }
    println!(
        "[install] building the nisshi {NISSHI_VERSION} Kafka broker into {} (first run on this machine only: ~15 min on 2 cores, ~2 GB RAM)",
        root.display()
    );
    let started = Instant::now();
    let build_dir = std::env::temp_dir().join("polytape-nisshi-build");
    let status = Command::new(paths::cargo())
        .args([
            "install",
            "nisshi",
            "--locked",
            "--version",
            NISSHI_VERSION,
            "--ignore-rust-version",
        ])
        .arg("--root")
        .arg(&root)
        .arg("--target-dir")
        .arg(&build_dir)
        .status()
        .context("cannot run cargo install")?;
    if !status.success() {
        bail!("cargo install nisshi failed ({status}); see the output above");
    }
    fs::remove_dir_all(&build_dir).ok();
    println!("[install] nisshi built in {:.0?}", started.elapsed());
    Ok(binary)
}

/// The tools as already installed, without installing anything (for tests, which must not
/// run cargo from inside cargo).
#[cfg(test)]
fn installed_tools() -> anyhow::Result<Tools> {
    let tools = Tools {
        nisshi: paths::tools_dir()
            .join(format!("nisshi-{NISSHI_VERSION}"))
            .join("bin")
            .join("nisshi"),
        registry: target_dir().join("debug").join("polytape-schema-registry"),
        python: paths::venv_python(),
    };
    for path in [&tools.nisshi, &tools.registry, &tools.python] {
        if !path.exists() {
            bail!(
                "{} is missing; run `cargo xtask stack up` once to install the tools",
                path.display()
            );
        }
    }
    Ok(tools)
}

fn build_registry() -> anyhow::Result<PathBuf> {
    let status = Command::new(paths::cargo())
        .args(["build", "--quiet", "--package", "polytape-schema-registry"])
        .current_dir(paths::workspace_root())
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!("building the schema registry failed ({status})");
    }
    Ok(target_dir().join("debug").join("polytape-schema-registry"))
}

pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => paths::workspace_root().join("target"),
    }
}

fn install_venv() -> anyhow::Result<PathBuf> {
    let root = paths::workspace_root();
    let requirements = [
        root.join("tools/local-stack/requirements.txt"),
        root.join("tools/local-stack/requirements-test.txt"),
    ];
    let mut hasher = Sha256::new();
    for file in &requirements {
        hasher.update(fs::read(file).with_context(|| format!("cannot read {}", file.display()))?);
    }
    let wanted = hex::encode(hasher.finalize());
    let venv = paths::venv_dir();
    let marker = venv.join(".polytape-requirements");
    let python = paths::venv_python();
    if python.exists()
        && fs::read_to_string(&marker).is_ok_and(|installed| installed.trim() == wanted)
    {
        return Ok(python);
    }
    println!(
        "[install] creating the Python venv {} with chdb and test clients (~1 min, ~1 GB)",
        venv.display()
    );
    let started = Instant::now();
    run_checked(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        "python3 -m venv",
    )?;
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]);
    for file in &requirements {
        pip.arg("-r").arg(file);
    }
    run_checked(&mut pip, "pip install")?;
    fs::write(&marker, &wanted)?;
    println!("[install] venv ready in {:.0?}", started.elapsed());
    Ok(python)
}

fn run_checked(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status}); see the output above");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_status_second_up_and_down_manage_exactly_the_stacks_processes() {
        let tools = installed_tools().unwrap();
        let dir = tempfile_dir();
        let spec = StackSpec {
            name: "lifecycle test stack",
            dir: dir.clone(),
            kafka_port: 29092,
            registry_port: 28081,
            clickhouse_port: 28123,
            storage: BrokerStorage::Memory,
        };

        let started = up_with(&spec, true, &tools).unwrap();
        assert_eq!(started, Engine::ALL.to_vec());
        assert!(status(&spec).unwrap(), "all healthy after up");
        let pids: Vec<u32> = Engine::ALL
            .iter()
            .map(|engine| process::read_pid(&engine.pid_file(&spec)).unwrap())
            .collect();

        let second = up_with(&spec, false, &tools).unwrap();
        assert!(second.is_empty(), "a second up starts nothing: {second:?}");
        let pids_after: Vec<u32> = Engine::ALL
            .iter()
            .map(|engine| process::read_pid(&engine.pid_file(&spec)).unwrap())
            .collect();
        assert_eq!(pids, pids_after);

        down(&spec).unwrap();
        for pid in pids {
            assert!(!process::is_alive(pid), "pid {pid} stopped");
        }
        assert!(!status(&spec).unwrap(), "status reports the stopped stack");
        for engine in Engine::ALL {
            assert!(
                !process::port_open(engine.port(&spec)),
                "{} port closed",
                engine.name()
            );
        }
        fs::remove_dir_all(dir).ok();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("polytape-lifecycle-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
