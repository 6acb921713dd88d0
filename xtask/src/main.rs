//! `cargo xtask …`: Polytape's developer commands.
//!
//! - `stack up|down|status`: the local stack of real engines (Kafka API, Schema Registry,
//!   ClickHouse) as processes, state under `.polytape/`;
//! - `test`: the whole test suite against an isolated stack of its own;
//! - `demo`: the whole platform against the simulator;
//! - `bench`: benchmarks with side-by-side baselines;
//! - `topics`: regenerates `deploy/topics.tsv` from the topic table.

mod bench;
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
    /// Run the whole platform locally (today: the local stack; see README)
    Demo,
    /// Run benchmarks and report medians and ratios against their baselines
    Bench(bench::BenchArgs),
    /// Regenerate deploy/topics.tsv from the topic table (--check: fail if it is stale)
    Topics {
        #[arg(long)]
        check: bool,
    },
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
        Command::Demo => demo(),
        Command::Bench(args) => bench::run(args),
        Command::Topics { check } => topics::run(check),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The full demo (simulator + five services + API key + live status) arrives with issue #11;
/// until then it brings up the local stack and says what runs where.
fn demo() -> anyhow::Result<()> {
    let spec = stack::StackSpec::development();
    stack::up(&spec, false)?;
    println!();
    println!(
        "The local stack is up. The full demo (polymarket-sim, the five services, a demo API key and a"
    );
    println!(
        "live status line) lands with issue #11; the services can already be started by hand:"
    );
    println!("  cargo run -p polytape-sink-clickhouse -- migrate");
    println!("  cargo run -p polytape-api");
    println!("Stop the stack with: cargo xtask stack down");
    Ok(())
}
