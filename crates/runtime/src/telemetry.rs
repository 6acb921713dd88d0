//! Logging with tracing: human-readable locally, one JSON object per line in containers.

use std::io::IsTerminal as _;

use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt as _, util::SubscriberInitExt as _};

use crate::config::{CommonConfig, LogFormat, Service};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log_level`.
pub fn init(service: Service, common: &CommonConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::builder().parse(&common.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match common.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            )
            .try_init(),
        // Colour codes only for a person at a terminal, not in log files.
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::stdout().is_terminal()),
            )
            .try_init(),
    };
    // A second initialisation (tests running several services in one process) keeps the first.
    if installed.is_ok() {
        log_panics();
        tracing::info!(
            service = service.short_name(),
            version = env!("CARGO_PKG_VERSION"),
            "starting"
        );
    }
}

/// Panics go to the log (JSON in containers) as well as to stderr, with where they happened;
/// the task supervisor then stops the process (see [`crate::Shutdown::spawn`]).
fn log_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let location = info
            .location()
            .map(|place| format!("{}:{}", place.file(), place.line()))
            .unwrap_or_default();
        tracing::error!(panic = %message, location = %location, "panic");
        previous(info);
    }));
}
