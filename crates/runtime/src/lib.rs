//! What every Polytape service shares. Each `main.rs` reads the same:
//! config → telemetry → shutdown handle → tasks → admin server → wait for shutdown.

pub mod admin;
pub mod config;
pub mod metrics;
pub mod service;
pub mod shutdown;
pub mod telemetry;

use std::process::ExitCode;

pub use admin::{AdminServer, Readiness, ReadinessHandle};
pub use config::{ConfigError, Loaded, Service, ServiceConfig};
pub use service::{AdminEndpoint, ServiceContext, run};
pub use shutdown::{BoxError, Shutdown};

/// Exit code for configuration errors and unusable dependencies at start-up.
pub const EXIT_CONFIG: u8 = 2;

/// Prints a start-up error, one line per problem, and returns exit code 2. Used before
/// telemetry is up, so it writes plain lines to stderr rather than log records.
pub fn startup_failure(service: Service, error: &dyn std::fmt::Display) -> ExitCode {
    for line in error.to_string().lines() {
        eprintln!("{}: error: {line}", service.binary_name());
    }
    ExitCode::from(EXIT_CONFIG)
}
