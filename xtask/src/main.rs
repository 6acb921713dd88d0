//! `cargo xtask …`: Polytape's developer commands.
//!
//! - `stack up|down|status`: the local stack of real engines (Kafka API, Schema Registry,
//!   ClickHouse) as processes, state under `.polytape/`;
//! - `test`: the whole test suite against an isolated stack of its own;
//! - `demo`, `up`, `down`: the whole platform against the simulator (or live Polymarket);
//! - `bench`: benchmarks with side-by-side baselines;
//! - `chaos`: the end-to-end fault suite at full size, rendered into `RELIABILITY.md`;
//! - `topics`: regenerates `deploy/topics.tsv` from the topic table;
//! - `lint-deploy`: validates compose.yaml, deploy/k8s, the Grafana dashboards and the
//!   Dockerfile without a Docker engine.

mod bench;
mod bench_alerts;
mod bench_all;
mod bench_api;
mod chaos;
mod demo;
mod fuzz_api;
mod lint_deploy;
mod paths;
mod process;
mod stack;
mod test;
mod topics;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Polytape developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run, stop or inspect the local stack (Kafka API :9092, Schema Registry :8081, ClickHouse :8123)
    Stack {
        #[command(subcommand)]
        action: StackAction,
    },
    /// Run every test (unit, integration against an isolated local stack, Python clients)
    Test(test::TestArgs),
    /// Run the whole platform against polymarket-sim: local stack, simulator, the five
    /// services, a demo API key and a live status line (Ctrl-C stops everything)
    Demo(demo::RunArgs),
    /// Like `demo`, against live Polymarket instead of the simulator
    Up(demo::RunArgs),
    /// Stop everything `demo`/`up` started, and the local stack
    Down,
    /// Run benchmarks and report medians and ratios against their baselines
    Bench(bench::BenchArgs),
    /// Run the end-to-end fault suite (kill matrix at full size, upstream and engine faults)
    /// and write the reliability report, RELIABILITY.md
    Chaos(chaos::ChaosArgs),
    /// Run schemathesis against the API's public and admin OpenAPI documents (0 server errors,
    /// responses conform to the documents); needs the local stack
    FuzzApi(fuzz_api::FuzzArgs),
    /// Regenerate deploy/topics.tsv from the topic table (--check: fail if it is stale)
    Topics {
        #[arg(long)]
        check: bool,
    },
    /// Validate compose.yaml, deploy/k8s, the Grafana dashboards and the Dockerfile (no Docker
    /// engine needed; installs its tools on first use)
    LintDeploy(lint_deploy::LintDeployArgs),
}

#[derive(Debug, Subcommand)]
enum StackAction {
    /// Start the engines (installing what is missing); a no-op for engines already running
    Up {
        /// Start from empty data: topics, schemas and tables
        #[arg(long)]
        fresh: bool,
    },
    /// Stop the engines this stack started
    Down,
    /// Print each engine's health
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Stack { action } => {
            let spec = stack::StackSpec::development();
            match action {
                StackAction::Up { fresh } => stack::up(&spec, fresh).map(|_| ()),
                StackAction::Down => stack::down(&spec),
                StackAction::Status => stack::status(&spec).and_then(|healthy| {
                    if healthy {
                        Ok(())
                    } else {
                        Err(anyhow::anyhow!("some engines are not running"))
                    }
                }),
            }
        }
        Command::Test(args) => test::run(args),
        Command::Demo(args) => demo::run(demo::Upstream::Simulator, &args),
        Command::Up(args) => demo::run(demo::Upstream::Live, &args),
        Command::Down => demo::down(),
        Command::Bench(args) => bench::run(args),
        Command::Chaos(args) => chaos::run(&args),
        Command::FuzzApi(args) => fuzz_api::run(&args),
        Command::Topics { check } => topics::run(check),
        Command::LintDeploy(args) => lint_deploy::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
