//! The end-to-end harness: one simulated world, the local stack (real broker, registry and
//! ClickHouse), and the five service binaries as real processes, isolated by topic prefix,
//! ClickHouse database and consumer groups, so several pipelines run side by side.
//!
//! A test builds a [`Pipeline`], lets the world run (optionally injecting faults or killing
//! services), pauses the world, and then asks for the fidelity checks: each check compares what
//! Polytape stored or serves with the simulator's ground truth and retries until it holds or
//! its deadline passes (the pipeline is asynchronous: "eventually equal" is the promise, and
//! the deadline only bounds how long a failing test takes).
//!
//! The binaries come from the same target directory as the test (`cargo xtask test` builds
//! them first; alone: `cargo build --bins && cargo test -p polytape-e2e`).

// A test harness: a broken precondition is a failed test, reported loudly at the spot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use clickhouse::Row;
use polymarket_sim::{RunningSim, SimConfig};
use polytape_test_support::{
    cli::isolated_command,
    proxy::SwitchableProxy,
    stack::{IsolatedDatabase, endpoints, isolated_topics, unique_name},
};
use serde::Deserialize;

mod checks;
mod dead_letters;
mod report;
mod signals;
mod ws_tables;

pub use checks::*;

pub use dead_letters::check_dead_letters;
pub use report::Figures;
pub use signals::check_planted_signals;
pub use ws_tables::check_ws_tables;

/// Scale knobs of a run, from the environment so a long soak needs no code change.
#[derive(Debug, Clone)]
pub struct Scale {
    /// Markets in the world (two tokens each; about four in five are open).
    pub markets: u32,
    /// Days of history before the live phase.
    pub history_days: u32,
    /// Live operations per second.
    pub rate: f64,
    /// How long the world runs live before it is paused and checked.
    pub live: Duration,
}

impl Scale {
    /// `POLYTAPE_E2E_MARKETS` (default 300: 600 tokens, ~480 of them open),
    /// `POLYTAPE_E2E_HISTORY_DAYS` (default 1), `POLYTAPE_E2E_RATE` (default 40 operations/s),
    /// `POLYTAPE_E2E_LIVE_SECS` (default 60; the full run is 600).
    pub fn from_env() -> Self {
        Self {
            markets: knob("POLYTAPE_E2E_MARKETS", 300),
            history_days: knob("POLYTAPE_E2E_HISTORY_DAYS", 1),
            rate: knob("POLYTAPE_E2E_RATE", 40.0),
            live: Duration::from_secs(knob("POLYTAPE_E2E_LIVE_SECS", 60)),
        }
    }
}

/// How a pipeline is wired, beyond the world's scale.
#[derive(Debug, Clone, Default)]
pub struct Wiring {
    /// Run a broker of this pipeline's own (a nisshi process with sqlite storage) instead of the
    /// shared stack's, so a test can stop it without disturbing other tests.
    pub private_broker: bool,
    /// Extra `POLYTAPE_…` settings for every service (they override the harness's).
    pub environment: Vec<(&'static str, String)>,
    /// Run the signals service too (checked against the simulator's planted scenarios).
    pub signals: bool,
}

/// A nisshi broker owned by one pipeline: stoppable and restartable on the same port and
/// storage (committed offsets and data survive, as on a real broker restart).
pub struct PrivateBroker {
    child: std::sync::Mutex<Option<Child>>,
    pub addr: SocketAddr,
    directory: tempfile::TempDir,
}

impl PrivateBroker {
    fn binary() -> PathBuf {
        let tools = std::env::var_os("POLYTAPE_TOOLS_DIR").map_or_else(
            || {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/polytape/tools")
            },
            PathBuf::from,
        );
        let binary = tools.join("nisshi-0.8.1/bin/nisshi");
        assert!(
            binary.exists(),
            "{} is missing: `cargo xtask stack up` (or `cargo xtask test`) installs it",
            binary.display()
        );
        binary
    }

    async fn start() -> Self {
        let broker = Self {
            child: std::sync::Mutex::new(None),
            addr: service_addr(),
            directory: tempfile::tempdir().expect("a directory for the broker"),
        };
        broker.resume().await;
        broker
    }

    /// The `kafka_brokers` value for clients.
    pub fn brokers(&self) -> String {
        self.addr.to_string()
    }

    /// Starts the broker process (again) and waits until it answers metadata requests.
    pub async fn resume(&self) {
        let listener = format!("tcp://{}", self.addr);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.directory.path().join("broker.log"))
            .expect("a broker log");
        let child = std::process::Command::new(Self::binary())
            .args(["broker", "--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "sqlite://nisshi.db"])
            .current_dir(self.directory.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("nisshi starts");
        *self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if polytape_kafka::check_reachable(&self.brokers(), Duration::from_secs(2))
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the private broker did not answer within 60 s:\n{}",
                log_tail(&self.directory.path().join("broker.log"), 20)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the broker process (SIGKILL: an abrupt outage).
    pub fn stop(&self) {
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(mut process) = child.take() {
            process.kill().ok();
            process.wait().ok();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The six services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    Sink,
    Api,
    CandleBuilder,
    Signals,
    WsBridge,
    Collector,
}

impl Service {
    /// Every service binary (start-up error checks cover each).
    pub const ALL: [Service; 6] = [
        Service::Sink,
        Service::Api,
        Service::CandleBuilder,
        Service::Signals,
        Service::WsBridge,
        Service::Collector,
    ];

    /// The services the end-to-end pipeline runs, in start order: the sink first (it applies
    /// the migrations), producers last. The signals service joins where a run checks signals
    /// ([`Wiring::signals`]; it starts after the candle builder).
    pub const PIPELINE: [Service; 5] = [
        Service::Sink,
        Service::Api,
        Service::CandleBuilder,
        Service::WsBridge,
        Service::Collector,
    ];

    pub fn binary(self) -> &'static str {
        match self {
            Service::Sink => "polytape-sink-clickhouse",
            Service::Api => "polytape-api",
            Service::CandleBuilder => "polytape-candle-builder",
            Service::Signals => "polytape-signals",
            Service::WsBridge => "polytape-ws-bridge",
            Service::Collector => "polytape-collector",
        }
    }

    fn admin_variable(self) -> &'static str {
        match self {
            Service::Sink => "POLYTAPE_SINK_ADMIN_ADDR",
            Service::Api => "POLYTAPE_API_ADMIN_ADDR",
            Service::CandleBuilder => "POLYTAPE_CANDLE_BUILDER_ADMIN_ADDR",
            Service::Signals => "POLYTAPE_SIGNALS_ADMIN_ADDR",
            Service::WsBridge => "POLYTAPE_WS_BRIDGE_ADMIN_ADDR",
            Service::Collector => "POLYTAPE_COLLECTOR_ADMIN_ADDR",
        }
    }

    /// The counter that grows as the service does its work, for kills at progress points.
    pub fn progress_metric(self) -> Option<&'static str> {
        match self {
            Service::Sink => Some("polytape_sink_rows_inserted_total"),
            Service::Api => None,
            Service::CandleBuilder => Some("polytape_candle_builder_produced_total"),
            Service::Signals => Some("polytape_signals_consumed_total"),
            Service::WsBridge => Some("polytape_ws_records_acked_total"),
            Service::Collector => Some("polytape_collector_records_total"),
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Service::Sink | Service::Collector => &["run"],
            _ => &[],
        }
    }
}

/// A local address for a service to listen on, handed out once per test process and taken
/// below Linux's ephemeral range (32768+), so no socket the system numbers itself (a client
/// connection, a `:0` bind) can grab it between our check and the service's bind.
pub fn service_addr() -> SocketAddr {
    static NEXT_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    // Spread concurrent test processes over the range.
    let base = 20_000 + (std::process::id() % 64) as u16 * 150;
    loop {
        let offset = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!(offset < 10_000, "no free service port left below 32768");
        let port = 20_000 + (base - 20_000 + offset) % 12_700;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
}

/// A binary of this workspace next to the running test (target/<profile>/).
pub fn workspace_binary(name: &str) -> PathBuf {
    let test_executable = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = test_executable
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let binary = profile_dir.join(name);
    assert!(
        binary.exists(),
        "{} is missing: build the service binaries first (`cargo build --bins`; `cargo xtask test` does it)",
        binary.display()
    );
    binary
}

struct RunningProcess {
    child: Child,
    admin_addr: SocketAddr,
    log: PathBuf,
    starts: u32,
}

/// One isolated pipeline: the world, the topics, the database and the five processes.
pub struct Pipeline {
    pub sim: RunningSim,
    pub scale: Scale,
    pub database: IsolatedDatabase,
    pub http: reqwest::Client,
    /// The API's public base URL and a key of the `monthly` plan created through the admin CLI.
    pub api_url: String,
    /// The API's public address (its admin endpoints are on [`Pipeline::admin_addr`]).
    api_public_addr: SocketAddr,
    pub api_key: String,
    /// Where ClickHouse is reached by the sink and the API (through a proxy a test can cut).
    pub clickhouse_proxy: Arc<SwitchableProxy>,
    environment: Vec<(String, String)>,
    processes: std::sync::Mutex<BTreeMap<Service, RunningProcess>>,
    logs: tempfile::TempDir,
    /// When the world went live (wall-clock ms); truth instants are chosen after it.
    pub live_started_ms: i64,
    /// The pipeline's own broker, when it was wired with one.
    pub private_broker: Option<PrivateBroker>,
    /// What the checks compared and the recoveries measured, for the reliability report.
    pub figures: std::sync::Mutex<Figures>,
    /// Where the logs were kept after a failed check, so they are copied once.
    kept_evidence: std::sync::Mutex<Option<String>>,
}

impl Pipeline {
    /// Starts a world of `scale` (with `configure` adjusting the simulator) and the five
    /// services against it, and waits until every service is ready.
    pub async fn start(
        purpose: &str,
        scale: Scale,
        configure: impl FnOnce(&mut SimConfig),
    ) -> Self {
        Self::start_wired(purpose, scale, Wiring::default(), configure).await
    }

    /// [`Pipeline::start`] with explicit wiring.
    pub async fn start_wired(
        purpose: &str,
        scale: Scale,
        wiring: Wiring,
        configure: impl FnOnce(&mut SimConfig),
    ) -> Self {
        let mut config = SimConfig {
            port: 0,
            seed: 11,
            markets: scale.markets,
            history_days: scale.history_days,
            rate: scale.rate,
            lifecycle_every: 1_500,
            // The bridge's connections must be sharded: ~650 open tokens over >= 4 sockets.
            ws_max_assets: 200,
            ws_truth_capacity: 400_000,
            ..SimConfig::default()
        };
        configure(&mut config);
        let sim = polymarket_sim::start(config)
            .await
            .unwrap_or_else(|error| panic!("cannot start the simulator: {error}"));
        let live_started_ms = polytape_model::now_ms();

        let stack = endpoints();
        let private_broker = if wiring.private_broker {
            Some(PrivateBroker::start().await)
        } else {
            None
        };
        let kafka_brokers = private_broker
            .as_ref()
            .map_or_else(|| stack.kafka_brokers.clone(), PrivateBroker::brokers);
        let names = isolated_topics(purpose);
        polytape_kafka::ensure_topics(&kafka_brokers, &names, &polytape_model::Topic::ALL, 1)
            .await
            .unwrap_or_else(|error| panic!("cannot create topics on {kafka_brokers}: {error}"));
        let database = IsolatedDatabase::create(purpose).await;
        let clickhouse_addr: SocketAddr = stack
            .clickhouse_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|error| panic!("clickhouse url {}: {error}", stack.clickhouse_url));
        let clickhouse_proxy = SwitchableProxy::start(clickhouse_addr).await;
        let base = sim.base_url();
        let environment: Vec<(String, String)> = [
            ("POLYTAPE_KAFKA_BROKERS", kafka_brokers),
            (
                "POLYTAPE_SCHEMA_REGISTRY_URL",
                stack.schema_registry_url.clone(),
            ),
            ("POLYTAPE_CLICKHOUSE_URL", clickhouse_proxy.url()),
            ("POLYTAPE_CLICKHOUSE_DATABASE", database.name.clone()),
            ("POLYTAPE_TOPIC_PREFIX", names.prefix().to_owned()),
            (
                "POLYTAPE_SINK_CONSUMER_GROUP",
                unique_name(&format!("{purpose}-sink")),
            ),
            ("POLYTAPE_GAMMA_URL", format!("{base}/gamma")),
            ("POLYTAPE_DATA_API_URL", format!("{base}/data")),
            ("POLYTAPE_CLOB_URL", format!("{base}/clob")),
            ("POLYTAPE_CLOB_WS_URL", sim.ws_url()),
            (
                "POLYTAPE_COLLECTOR_RETENTION",
                format!("{}days", scale.history_days + 1),
            ),
            ("POLYTAPE_COLLECTOR_POLL_INTERVAL", "2s".to_owned()),
            ("POLYTAPE_COLLECTOR_POLL_LAG", "1s".to_owned()),
            // Every round crawls, so market changes reach the topics within a round.
            ("POLYTAPE_COLLECTOR_CRAWL_INTERVAL", "2s".to_owned()),
            ("POLYTAPE_WS_MAX_ASSETS_PER_CONNECTION", "200".to_owned()),
            ("POLYTAPE_LOG_FORMAT", "json".to_owned()),
            ("POLYTAPE_SHUTDOWN_TIMEOUT", "20s".to_owned()),
        ]
        .into_iter()
        .chain(wiring.environment.iter().cloned())
        .map(|(name, value)| (name.to_owned(), value))
        .collect();

        let logs = tempfile::Builder::new()
            .prefix(&format!("polytape-e2e-{purpose}-"))
            .tempdir()
            .expect("a temporary directory for the service logs");
        let mut pipeline = Self {
            sim,
            scale,
            database,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            api_url: String::new(),
            api_public_addr: service_addr(),
            api_key: String::new(),
            clickhouse_proxy,
            environment,
            processes: std::sync::Mutex::new(BTreeMap::new()),
            logs,
            live_started_ms,
            private_broker,
            figures: std::sync::Mutex::new(Figures::default()),
            kept_evidence: std::sync::Mutex::new(None),
        };
        let services = Service::PIPELINE.into_iter().flat_map(|service| {
            let with_signals = wiring.signals && service == Service::CandleBuilder;
            std::iter::once(service).chain(with_signals.then_some(Service::Signals))
        });
        for service in services {
            pipeline.spawn(service, service_addr());
            pipeline.wait_ready(service).await;
            if service == Service::Api {
                pipeline.api_url = format!("http://{}", pipeline.api_public_addr);
                pipeline.api_key = pipeline.create_api_key();
            }
        }
        pipeline
    }

    fn processes(&self) -> std::sync::MutexGuard<'_, BTreeMap<Service, RunningProcess>> {
        self.processes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where a service serves `/readyz` and `/metrics`.
    pub fn admin_addr(&self, service: Service) -> SocketAddr {
        self.processes()[&service].admin_addr
    }

    /// The process id of a running service (for RSS readings).
    pub fn pid(&self, service: Service) -> u32 {
        self.processes()[&service].child.id()
    }

    /// A service's `/metrics` text (empty if it does not answer).
    pub async fn metrics(&self, service: Service) -> String {
        let url = format!("http://{}/metrics", self.admin_addr(service));
        match self.http.get(&url).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    fn spawn(&self, service: Service, admin_addr: SocketAddr) {
        let binary = workspace_binary(service.binary());
        let log = self.logs.path().join(format!("{}.log", service.binary()));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("a log file");
        let mut command = isolated_command(&binary);
        command
            .args(service.args())
            .envs(self.environment.iter().map(|(key, value)| (key, value)))
            .env(service.admin_variable(), admin_addr.to_string())
            .envs(
                (service == Service::Api)
                    .then(|| ("POLYTAPE_API_ADDR", self.api_public_addr.to_string())),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone().expect("log handle")))
            .stderr(Stdio::from(log_file));
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let mut processes = self.processes();
        let starts = processes
            .get(&service)
            .map_or(1, |previous| previous.starts + 1);
        processes.insert(
            service,
            RunningProcess {
                child,
                admin_addr,
                log,
                starts,
            },
        );
    }

    /// Copies every service's whole log out of the temporary directory (removed when the
    /// pipeline is dropped) so a failed check can be investigated; returns where they are and
    /// which ClickHouse database holds the run's tables (not dropped after a failure).
    fn preserve_evidence(&self) -> String {
        let mut already = self
            .kept_evidence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(kept) = already.as_ref() {
            return kept.clone();
        }
        let kept_at = self.copy_logs();
        *already = Some(kept_at.clone());
        kept_at
    }

    fn copy_logs(&self) -> String {
        let kept = std::env::temp_dir().join(format!(
            "polytape-e2e-failed-{}-{}",
            self.database.name,
            polytape_model::now_ms()
        ));
        if let Err(error) = std::fs::create_dir_all(&kept) {
            return format!("(cannot keep the logs: {error})");
        }
        for process in self.processes().values() {
            if let Some(name) = process.log.file_name() {
                let _ = std::fs::copy(&process.log, kept.join(name));
            }
        }
        format!(
            "--- the full logs are kept in {}; the run's tables are in ClickHouse database {}",
            kept.display(),
            self.database.name
        )
    }

    /// Whether the service on `admin_addr` answers `/readyz` with success within 2 s.
    pub(crate) async fn is_ready(&self, admin_addr: SocketAddr) -> bool {
        self.http
            .get(format!("http://{admin_addr}/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    }

    async fn wait_ready(&self, service: Service) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (admin_addr, log) = {
                let mut processes = self.processes();
                let process = processes
                    .get_mut(&service)
                    .expect("the service was spawned");
                if let Ok(Some(status)) = process.child.try_wait() {
                    panic!(
                        "{} exited during start-up with {status}; last lines of its log:\n{}",
                        service.binary(),
                        log_tail(&process.log, 40)
                    );
                }
                (process.admin_addr, process.log.clone())
            };
            if self.is_ready(admin_addr).await {
                return;
            }
            let url = format!("http://{admin_addr}/readyz");
            if Instant::now() > deadline {
                panic!(
                    "{} did not become ready ({url}) within 120 s; last lines of its log:\n{}",
                    service.binary(),
                    log_tail(&log, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn create_api_key(&self) -> String {
        let binary = workspace_binary(Service::Api.binary());
        let output = isolated_command(&binary)
            .args(["keys", "create", "--name", "e2e", "--plan", "monthly"])
            .args(["--rps", "1000", "--daily-cap", "10000000"])
            .envs(self.environment.iter().map(|(key, value)| (key, value)))
            .output()
            .expect("polytape-api keys create runs");
        assert!(
            output.status.success(),
            "polytape-api keys create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .rev()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .expect("keys create prints the key as its last line")
            .to_owned()
    }

    /// SIGKILLs `service` once its progress counter (see [`Service::progress_metric`]) has
    /// reached `threshold` since it started, or after at most 20 s (a service with nothing left
    /// to do); the API, which has no progress of its own, after a random pause. Returns what
    /// triggered the kill, for the log.
    pub async fn kill9_after_progress(
        &self,
        service: Service,
        threshold: u64,
        random: &mut impl rand::Rng,
    ) -> String {
        let Some(metric) = service.progress_metric() else {
            let pause = Duration::from_millis(random.random_range(0..3_000));
            tokio::time::sleep(pause).await;
            self.kill9(service);
            return format!("{pause:?}");
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let trigger = loop {
            let progress = metric_sum(&self.metrics(service).await, metric);
            if progress >= threshold as f64 {
                break format!("{metric} = {progress} (threshold {threshold})");
            }
            if Instant::now() > deadline {
                break format!("20 s without reaching {metric} = {threshold} (at {progress})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.kill9(service);
        trigger
    }

    /// SIGKILL: no drain, no flush, no commit.
    pub fn kill9(&self, service: Service) {
        let mut processes = self.processes();
        let process = processes.get_mut(&service).expect("the service is running");
        process.child.kill().ok();
        process.child.wait().ok();
    }

    /// SIGTERM and wait for a clean exit (drain, flush, commit).
    pub fn terminate(&self, service: Service) {
        let mut processes = self.processes();
        let process = processes.get_mut(&service).expect("the service is running");
        let pid = process.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .ok();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = process.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not stop within 40 s of SIGTERM; last lines of its log:\n{}",
            service.binary(),
            log_tail(&process.log, 40)
        );
    }

    /// Starts a stopped service again on the same address and waits until it is ready.
    pub async fn restart(&self, service: Service) {
        let admin_addr = self.admin_addr(service);
        self.spawn(service, admin_addr);
        self.wait_ready(service).await;
    }

    /// Panics (with the log tail) if a service died on its own.
    pub fn assert_all_alive(&self) {
        for (service, process) in self.processes().iter_mut() {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!(
                    "{} died on its own ({status}, start #{}); last lines of its log:\n{}",
                    service.binary(),
                    process.starts,
                    log_tail(&process.log, 60)
                );
            }
        }
    }

    /// Stops the live world; truth is final from here on.
    pub async fn pause_world(&self) -> i64 {
        let sim_url = self.sim.base_url();
        let response = self
            .http
            .post(format!("{sim_url}/_sim/pause"))
            .send()
            .await
            .expect("the simulator answers /_sim/pause");
        assert!(response.status().is_success());
        polytape_model::now_ms()
    }

    /// A GET on the simulator's truth endpoints.
    pub async fn truth(&self, path_and_query: &str) -> serde_json::Value {
        let url = format!("{}{path_and_query}", self.sim.base_url());
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {url}: {error}"));
        response
            .json()
            .await
            .unwrap_or_else(|error| panic!("GET {url}: not JSON ({error})"))
    }

    /// A GET on the API with the test's key: (status, JSON body).
    pub async fn api(&self, path_and_query: &str) -> (u16, serde_json::Value) {
        let url = format!("{}{path_and_query}", self.api_url);
        let response = self
            .http
            .get(&url)
            .header("X-API-Key", &self.api_key)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {url}: {error}"));
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// Every truth fill id (the whole tape, history and live).
    pub async fn truth_trade_ids(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        self.for_each_truth_fill(|fill| {
            // A poisoned fill is served broken on every read: bad input to be dead-lettered
            // (see `check_dead_letters`), not a trade anyone can store.
            if fill["poisoned"].as_bool() != Some(true) {
                ids.insert(fill["trade_id"].as_str().expect("trade_id").to_owned());
            }
        })
        .await;
        ids
    }

    /// Every fill of the truth, in tape order, paged.
    pub async fn for_each_truth_fill(&self, mut visit: impl FnMut(&serde_json::Value)) {
        let mut since: Option<u64> = None;
        loop {
            let query = match since {
                Some(seq) => format!("/_sim/truth/fills?limit=200000&since_seq={seq}"),
                None => "/_sim/truth/fills?limit=200000".to_owned(),
            };
            let page = self.truth(&query).await;
            for fill in page["fills"].as_array().expect("fills") {
                visit(fill);
            }
            match page["next_since_seq"].as_u64() {
                Some(next) => since = Some(next),
                None => return,
            }
        }
    }

    /// Retries `check` until it passes or `within` elapses; panics with its last complaint and
    /// the service log tails.
    pub async fn eventually<F, Fut>(&self, what: &str, within: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<String, String>>,
    {
        let started = Instant::now();
        let mut last_complaint;
        loop {
            match check().await {
                Ok(summary) => {
                    eprintln!(
                        "[e2e] {what}: ok after {:.1?} ({summary})",
                        started.elapsed()
                    );
                    return;
                }
                Err(complaint) => last_complaint = complaint,
            }
            self.assert_all_alive();
            if started.elapsed() > within {
                let mut logs = String::new();
                for (service, process) in self.processes().iter() {
                    let _ = writeln!(
                        logs,
                        "--- {} (last lines)\n{}",
                        service.binary(),
                        log_tail(&process.log, 15)
                    );
                }
                panic!(
                    "{what}: not reached within {within:?}: {last_complaint}\n{logs}{}",
                    self.preserve_evidence()
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Stops everything: SIGTERM to each service (producers first) and the database dropped.
    pub async fn shut_down(self) {
        for service in Service::ALL.into_iter().rev() {
            let running = self
                .processes()
                .get_mut(&service)
                .is_some_and(|process| matches!(process.child.try_wait(), Ok(None)));
            if running {
                self.terminate(service);
            }
        }
        // Dropping the pipeline kills anything left; the database is dropped explicitly.
        let statement = format!("DROP DATABASE IF EXISTS `{}`", self.database.name);
        self.database
            .client
            .clone()
            .with_database("system")
            .query(&statement)
            .execute()
            .await
            .ok();
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // A check that panicked outside `eventually` would otherwise take the only evidence
        // of a rare failure with the temporary directory (`eventually` keeps them itself; they
        // are copied once).
        if std::thread::panicking() {
            let already_kept = self
                .kept_evidence
                .lock()
                .map_or(true, |kept| kept.is_some());
            if !already_kept {
                eprintln!("{}", self.preserve_evidence());
            }
        }
        for process in self.processes().values_mut() {
            if let Ok(None) = process.child.try_wait() {
                process.child.kill().ok();
                process.child.wait().ok();
            }
        }
    }
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
