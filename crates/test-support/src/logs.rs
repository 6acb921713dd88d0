//! The library's own logs in a test's captured output: libtest prints them only when the test
//! fails, which is when they are needed (a rare failure in CI leaves nothing else behind).

/// Routes `tracing` events (warnings and errors by default, `RUST_LOG` to change it) to the
/// test harness's capture. Idempotent: the first call in a test binary installs it.
pub fn capture_test_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Already installed by an earlier test of the same binary: nothing to do.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}
