//! `polytape-schema-registry`: the local stand-in for a Confluent-compatible Schema Registry.
//!
//! Exit codes: 0 after SIGINT/SIGTERM, 1 when the data file cannot be loaded or the server
//! fails, 2 when the address cannot be bound (and for command-line errors, as clap does).

use std::{io::IsTerminal as _, path::PathBuf, process::ExitCode};

use clap::Parser;
use polytape_schema_registry::SchemaRegistry;
use tracing_subscriber::EnvFilter;

/// Local stand-in for a Confluent-compatible Schema Registry (Avro only).
#[derive(Debug, Parser)]
#[command(name = "polytape-schema-registry", version)]
struct Cli {
    /// Address to listen on (host:port).
    #[arg(long, default_value = "127.0.0.1:8081")]
    addr: String,

    /// JSON file holding every schema, subject and setting; created when missing.
    #[arg(long)]
    data_file: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();

    let registry = match SchemaRegistry::open(&cli.data_file).await {
        Ok(registry) => registry,
        Err(error) => {
            tracing::error!(error = %error, "cannot start the schema registry");
            return ExitCode::from(1);
        }
    };

    let listener = match tokio::net::TcpListener::bind(&cli.addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(
                addr = %cli.addr,
                error = %error,
                "cannot listen; is another schema registry already running there? pass a free --addr"
            );
            return ExitCode::from(2);
        }
    };
    let local_addr = match listener.local_addr() {
        Ok(local_addr) => local_addr.to_string(),
        Err(_) => cli.addr.clone(),
    };
    // On stdout, alone, for scripts that wait for the registry to come up; logs go to stderr.
    println!("ready on http://{local_addr}");

    let (stop_sender, stop_receiver) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        polytape_runtime::shutdown::wait_for_signal().await;
        tracing::info!(
            "shutdown requested; finishing in-flight requests (send the signal again to exit now)"
        );
        let _ = stop_sender.send(());
        polytape_runtime::shutdown::wait_for_signal().await;
        tracing::warn!("second shutdown signal; exiting without waiting for requests");
        std::process::exit(130);
    });
    let stopped = async {
        // A dropped sender also means stop: nothing could ever ask again.
        let _ = stop_receiver.await;
    };

    match registry.serve(listener, stopped).await {
        Ok(()) => {
            tracing::info!("stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(error = %error, "the schema registry stopped with an error");
            ExitCode::from(1)
        }
    }
}

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colour codes only for a person at a terminal, not in the stack's log files.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
