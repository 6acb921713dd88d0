//! Running a service binary as a user would and checking what it says.

use std::{
    io::Write as _,
    path::Path,
    process::{Command, Output},
};

/// What a finished process said.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Finished {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `binary` with `args` and exactly the given `POLYTAPE_…` variables (any inherited ones
/// are removed, so the developer's environment cannot change the outcome).
pub fn run(binary: &Path, args: &[&str], polytape_env: &[(&str, &str)]) -> Finished {
    let mut command = isolated_command(binary);
    command.args(args);
    // A panic would print a backtrace with this set; a config error must not panic at all.
    command.env("RUST_BACKTRACE", "1");
    for (name, value) in polytape_env {
        command.env(name, value);
    }
    match command.output() {
        Ok(output) => output.into(),
        Err(error) => panic!("cannot run {}: {error}", binary.display()),
    }
}

/// A command for `binary` without the developer's `POLYTAPE_…`, `RUST_LOG` and
/// `RUST_BACKTRACE` variables, so only what the test sets can change the outcome.
pub fn isolated_command(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars() {
        if name.starts_with("POLYTAPE_") || name == "RUST_LOG" || name == "RUST_BACKTRACE" {
            command.env_remove(name);
        }
    }
    command
}

/// A TOML file with `contents`, deleted when dropped.
pub fn config_file(contents: &str) -> tempfile::NamedTempFile {
    let mut file = match tempfile::Builder::new().suffix(".toml").tempfile() {
        Ok(file) => file,
        Err(error) => panic!("cannot create a temporary config file: {error}"),
    };
    if let Err(error) = file.write_all(contents.as_bytes()) {
        panic!("cannot write the temporary config file: {error}");
    }
    file
}

/// Asserts a start-up failure: exit code 2, no panic, and exactly one stderr line, which
/// contains every fragment.
pub fn assert_startup_error(finished: &Finished, fragments: &[&str]) {
    assert_eq!(
        finished.code,
        Some(2),
        "exit code; stderr:\n{}",
        finished.stderr
    );
    assert!(
        !finished.stderr.contains("panicked") && !finished.stderr.contains("stack backtrace"),
        "must not panic:\n{}",
        finished.stderr
    );
    let lines: Vec<&str> = finished
        .stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one line on stderr:\n{}", finished.stderr);
    for fragment in fragments {
        assert!(
            lines[0].contains(fragment),
            "stderr should contain {fragment:?}:\n{}",
            lines[0]
        );
    }
}

/// A service binary running in the background for a test, killed if the test panics.
pub struct RunningService {
    child: std::process::Child,
    pub admin_addr: std::net::SocketAddr,
}

/// A free local port (bound and released; fine for tests on one machine).
pub fn free_local_addr() -> std::net::SocketAddr {
    let listener = match std::net::TcpListener::bind("127.0.0.1:0") {
        Ok(listener) => listener,
        Err(error) => panic!("cannot find a free port: {error}"),
    };
    match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => panic!("cannot read the free port: {error}"),
    }
}

impl RunningService {
    /// Starts `binary` with exactly these `POLYTAPE_…` variables, its admin endpoints on
    /// `admin_addr`, and waits (up to 60 s) until `/healthz` answers.
    pub fn start(
        binary: &Path,
        polytape_env: &[(&str, String)],
        admin_addr: std::net::SocketAddr,
    ) -> Self {
        let mut command = isolated_command(binary);
        for (name, value) in polytape_env {
            command.env(name, value);
        }
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit());
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) => panic!("cannot start {}: {error}", binary.display()),
        };
        let mut service = Self { child, admin_addr };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!("{} exited during start-up with {status}", binary.display());
            }
            if service
                .get("/healthz")
                .is_some_and(|(status, _)| status == 200)
            {
                return service;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "{} did not answer /healthz on {admin_addr} within 60 s",
            binary.display()
        );
    }

    /// A plain HTTP/1.1 GET on the admin address: (status, body), or None if it did not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::Read as _;
        let mut stream = std::net::TcpStream::connect_timeout(
            &self.admin_addr,
            std::time::Duration::from_secs(2),
        )
        .ok()?;
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .ok()?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.admin_addr
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        Some((status, body))
    }

    /// Sends SIGTERM and waits (up to `timeout`) for the exit code.
    pub fn terminate(mut self, timeout: std::time::Duration) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `POLYTAPE_…` variables pointing a service at the test stack.
pub fn stack_env() -> Vec<(&'static str, String)> {
    let stack = crate::stack::endpoints();
    vec![
        ("POLYTAPE_KAFKA_BROKERS", stack.kafka_brokers),
        ("POLYTAPE_SCHEMA_REGISTRY_URL", stack.schema_registry_url),
        ("POLYTAPE_CLICKHOUSE_URL", stack.clickhouse_url),
    ]
}

/// Starts a service against the stack, checks its admin endpoints, sends SIGTERM and expects a
/// clean exit (code 0) within 30 s. `extra_env` adds variables (e.g. an isolated database).
pub fn assert_serves_admin_endpoints_and_stops_cleanly(
    binary: &Path,
    admin_env_var: &str,
    extra_env: &[(&str, String)],
) {
    let admin_addr = free_local_addr();
    let mut environment = stack_env();
    environment.push((admin_env_var, admin_addr.to_string()));
    environment.extend(extra_env.iter().cloned());
    let service = RunningService::start(binary, &environment, admin_addr);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut readiness = service.get("/readyz");
    while readiness.as_ref().is_none_or(|(status, _)| *status != 200)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
        readiness = service.get("/readyz");
    }
    let (status, body) = readiness.unwrap_or_default();
    assert_eq!(status, 200, "/readyz: {body}");
    assert!(body.contains("\"ready\":true"), "/readyz: {body}");
    let (status, metrics) = service.get("/metrics").unwrap_or_default();
    assert_eq!(status, 200);
    assert!(metrics.contains("polytape_build_info{"), "{metrics}");

    let code = service.terminate(std::time::Duration::from_secs(30));
    assert_eq!(code, Some(0), "exit code after SIGTERM");
}

/// Starts a service against the stack with the runtime's fault hook armed on `task`, waits
/// (up to 120 s) until `/readyz` says ready, then fires the hook (it watches for a file) and
/// expects the process to end by itself with exit code 1 within 60 s: a panicking task must
/// never leave a zombie that reports ready. The panic comes only once the service is seen
/// working, so the test proves a *working* service stops, however slow the machine.
pub fn assert_task_panic_ends_the_process(
    binary: &Path,
    admin_env_var: &str,
    extra_env: &[(&str, String)],
    task: &str,
) {
    let trigger_dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => panic!("cannot create a temporary directory: {error}"),
    };
    let trigger = trigger_dir.path().join("panic-now");
    let admin_addr = free_local_addr();
    let mut environment = stack_env();
    environment.push((admin_env_var, admin_addr.to_string()));
    environment.push((
        "POLYTAPE_FAULT_PANIC_TASK",
        format!("{task}@file:{}", trigger.display()),
    ));
    environment.extend(extra_env.iter().cloned());
    let mut service = RunningService::start(binary, &environment, admin_addr);
    let ready_deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while service
        .get("/readyz")
        .is_none_or(|(status, _)| status != 200)
    {
        if let Ok(Some(status)) = service.child.try_wait() {
            panic!("{} exited before it was ready: {status}", binary.display());
        }
        assert!(
            std::time::Instant::now() < ready_deadline,
            "{} never reported ready",
            binary.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if let Err(error) = std::fs::write(&trigger, b"") {
        panic!("cannot create {}: {error}", trigger.display());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(status)) = service.child.try_wait() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} still runs 60 s after its task {task} was made to panic (a zombie)",
            binary.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(1),
        "{} after its task {task} panicked: {status}",
        binary.display()
    );
}

/// An unknown (misspelt) key in a `--config` file: one line naming it with a suggestion.
pub fn assert_rejects_unknown_config_key(binary: &Path) {
    let file = config_file("log_levle = \"debug\"\n");
    let finished = run(binary, &["--config", &file.path().to_string_lossy()], &[]);
    assert_startup_error(
        &finished,
        &[
            "`log_levle`",
            "is not a known key",
            "did you mean `log_level`?",
        ],
    );
}

/// An unparsable URL in `url_variable`: one line naming the variable and its value.
pub fn assert_rejects_unparsable_url(binary: &Path, url_variable: &str) {
    let finished = run(binary, &[], &[(url_variable, "::not a url::")]);
    assert_startup_error(
        &finished,
        &[
            &format!("{url_variable}='::not a url::'"),
            "is not a valid URL",
        ],
    );
}

/// A dependency that does not answer: one line naming where and what to run.
pub fn assert_reports_unreachable_dependency(
    binary: &Path,
    variable: &str,
    value: &str,
    names: &str,
) {
    let finished = run(binary, &[], &[(variable, value)]);
    assert_startup_error(&finished, &[names, "cargo xtask stack up"]);
}
