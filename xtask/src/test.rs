//! `cargo xtask test`: every test, against an isolated stack of real engines.

use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context as _, bail};

use crate::{paths, stack};

#[derive(Debug, clap::Args)]
pub(crate) struct TestArgs {
    /// Arguments passed to `cargo test` after `--` (e.g. a test name filter)
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

/// Brings up the test stack (fresh, on its own ports), runs the Rust and Python suites with
/// `POLYTAPE_TEST_STACK` pointing at it, checks that no engine crashed, and tears it down.
pub(crate) fn run(args: TestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let spec = stack::StackSpec::test();
    if let Err(error) = stack::up(&spec, true) {
        stack::down(&spec).ok();
        return Err(error.context("cannot start the test stack"));
    }
    let outcome = run_suites(&spec, &args);
    let crashed = stack::crashed_engines(&spec);
    stack::down(&spec)?;
    for (engine, tail) in &crashed {
        eprintln!(
            "\nengine {} crashed during the tests; last lines of its log:\n{tail}",
            engine.name()
        );
    }
    let failures = outcome?;
    if !crashed.is_empty() {
        bail!("{} engine(s) crashed during the tests", crashed.len());
    }
    if !failures.is_empty() {
        bail!("failed suites: {}", failures.join(", "));
    }
    println!("\nall test suites passed in {:.0?}", started.elapsed());
    Ok(())
}

/// Runs each suite even if an earlier one failed; returns the names of the failed ones.
fn run_suites(spec: &stack::StackSpec, args: &TestArgs) -> anyhow::Result<Vec<&'static str>> {
    let mut failures = Vec::new();
    let root = paths::workspace_root();
    let stack_file = spec.endpoints_file();

    println!(
        "\n== rust: cargo test --workspace (stack: {})",
        stack_file.display()
    );
    let mut cargo_test = Command::new(paths::cargo());
    cargo_test
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(&args.cargo_test_args)
        .current_dir(&root)
        .env("POLYTAPE_TEST_STACK", &stack_file);
    if !run_suite(&mut cargo_test)? {
        failures.push("rust");
    }

    println!("\n== python: tools/local-stack (chdb HTTP adapter)");
    let mut python_tests = Command::new(paths::venv_python());
    python_tests
        .args(["-m", "unittest", "discover", "--start-directory"])
        .arg(root.join("tools/local-stack"))
        .args(["--pattern", "test_*.py"])
        .current_dir(root.join("tools/local-stack"))
        .env("POLYTAPE_TEST_STACK", &stack_file);
    if !run_suite(&mut python_tests)? {
        failures.push("python");
    }

    println!("\n== api: cargo xtask fuzz-api (schemathesis against /openapi.json)");
    let mut fuzz_api = Command::new(std::env::current_exe().context("cannot find xtask")?);
    fuzz_api
        .arg("fuzz-api")
        .current_dir(&root)
        .env("POLYTAPE_TEST_STACK", &stack_file);
    if !run_suite(&mut fuzz_api)? {
        failures.push("fuzz-api");
    }

    println!("\n== deploy: cargo xtask lint-deploy (compose, kustomize, Grafana SQL, Dockerfile)");
    let mut lint_deploy = Command::new(std::env::current_exe().context("cannot find xtask")?);
    lint_deploy
        .arg("lint-deploy")
        .current_dir(&root)
        .env("POLYTAPE_TEST_STACK", &stack_file);
    if !run_suite(&mut lint_deploy)? {
        failures.push("deploy");
    }
    Ok(failures)
}

fn run_suite(command: &mut Command) -> anyhow::Result<bool> {
    let program = Path::new(command.get_program()).display().to_string();
    let status = command
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    Ok(status.success())
}
