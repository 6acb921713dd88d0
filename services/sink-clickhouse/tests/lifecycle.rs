//! `polytape-sink-clickhouse` against the local stack: serves `/healthz`, `/readyz`, `/metrics`, and stops
//! cleanly (exit 0) on SIGTERM. Run through `cargo xtask test`.

use std::path::Path;

use polytape_test_support::cli::{
    assert_serves_admin_endpoints_and_stops_cleanly, assert_task_panic_ends_the_process,
};

#[test]
fn serves_admin_endpoints_and_stops_cleanly_on_sigterm() {
    // Its own database, topics and group, so parallel tests never share state.
    let database = polytape_test_support::stack::unique_name("lifecycle");
    assert_serves_admin_endpoints_and_stops_cleanly(
        Path::new(env!("CARGO_BIN_EXE_polytape-sink-clickhouse")),
        "POLYTAPE_SINK_ADMIN_ADDR",
        &[
            ("POLYTAPE_CLICKHOUSE_DATABASE", database),
            (
                "POLYTAPE_TOPIC_PREFIX",
                polytape_test_support::stack::unique_name("lifecycle") + ".",
            ),
            (
                "POLYTAPE_SINK_CONSUMER_GROUP",
                polytape_test_support::stack::unique_name("lifecycle"),
            ),
        ],
    );
}

#[test]
fn a_panicking_task_ends_the_process_with_exit_code_1() {
    assert_task_panic_ends_the_process(
        Path::new(env!("CARGO_BIN_EXE_polytape-sink-clickhouse")),
        "POLYTAPE_SINK_ADMIN_ADDR",
        &[
            (
                "POLYTAPE_CLICKHOUSE_DATABASE",
                polytape_test_support::stack::unique_name("panic"),
            ),
            (
                "POLYTAPE_TOPIC_PREFIX",
                polytape_test_support::stack::unique_name("panic") + ".",
            ),
            (
                "POLYTAPE_SINK_CONSUMER_GROUP",
                polytape_test_support::stack::unique_name("panic"),
            ),
        ],
        "loader",
    );
}

#[test]
fn the_readme_lists_every_configuration_key_of_the_service() {
    polytape_test_support::config::assert_readme_lists_the_keys(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"),
        &[polytape_sink_clickhouse::SinkConfig::OWN_KEYS],
    );
}
