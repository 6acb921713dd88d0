//! `polytape-signals` against the local stack: serves `/healthz`, `/readyz`, `/metrics`, stops
//! cleanly (exit 0) on SIGTERM, and a panicking task ends the process. Run through
//! `cargo xtask test`.

use std::path::Path;

use polytape_test_support::{
    cli::{assert_serves_admin_endpoints_and_stops_cleanly, assert_task_panic_ends_the_process},
    stack::IsolatedDatabase,
};

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => panic!("no runtime: {error}"),
    }
}

/// A migrated database of the test's own (the alerter is ready once it has read the rules).
fn isolated_database(purpose: &str) -> IsolatedDatabase {
    runtime().block_on(IsolatedDatabase::migrated(purpose))
}

#[test]
fn serves_admin_endpoints_and_stops_cleanly_on_sigterm() {
    let database = isolated_database("signals_lifecycle");
    assert_serves_admin_endpoints_and_stops_cleanly(
        Path::new(env!("CARGO_BIN_EXE_polytape-signals")),
        "POLYTAPE_SIGNALS_ADMIN_ADDR",
        // Its own topics (and checkpoint topic), so it never reads or writes shared data.
        &[
            (
                "POLYTAPE_TOPIC_PREFIX",
                polytape_test_support::stack::created_isolated_topics("signals_lifecycle")
                    .prefix()
                    .to_owned(),
            ),
            ("POLYTAPE_CLICKHOUSE_DATABASE", database.name.clone()),
        ],
    );
    runtime().block_on(database.drop_database());
}

#[test]
fn a_panicking_task_ends_the_process_with_exit_code_1() {
    let database = isolated_database("signals_panic");
    assert_task_panic_ends_the_process(
        Path::new(env!("CARGO_BIN_EXE_polytape-signals")),
        "POLYTAPE_SIGNALS_ADMIN_ADDR",
        &[
            (
                "POLYTAPE_TOPIC_PREFIX",
                polytape_test_support::stack::created_isolated_topics("signals_panic")
                    .prefix()
                    .to_owned(),
            ),
            ("POLYTAPE_CLICKHOUSE_DATABASE", database.name.clone()),
        ],
        "signals",
    );
    runtime().block_on(database.drop_database());
}

#[test]
fn the_readme_lists_every_configuration_key_of_the_service() {
    polytape_test_support::config::assert_readme_lists_the_keys(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"),
        &[polytape_signals::SignalsConfig::OWN_KEYS],
    );
}
