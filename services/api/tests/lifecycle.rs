//! `polytape-api` against the local stack: serves `/healthz`, `/readyz`, `/metrics`, and stops
//! cleanly (exit 0) on SIGTERM. Run through `cargo xtask test`.

use std::path::Path;

use polytape_test_support::cli::{
    assert_serves_admin_endpoints_and_stops_cleanly, assert_task_panic_ends_the_process,
};

#[test]
fn serves_admin_endpoints_and_stops_cleanly_on_sigterm() {
    // Its own database, so parallel tests never share tables.
    let database = polytape_test_support::stack::unique_name("lifecycle");
    assert_serves_admin_endpoints_and_stops_cleanly(
        Path::new(env!("CARGO_BIN_EXE_polytape-api")),
        "POLYTAPE_API_ADMIN_ADDR",
        &[
            ("POLYTAPE_CLICKHOUSE_DATABASE", database.clone()),
            (
                "POLYTAPE_API_ADDR",
                polytape_test_support::cli::free_local_addr().to_string(),
            ),
        ],
    );
    drop_database(&database);
}

#[test]
fn a_panicking_task_ends_the_process_with_exit_code_1() {
    let database = polytape_test_support::stack::unique_name("panic");
    assert_task_panic_ends_the_process(
        Path::new(env!("CARGO_BIN_EXE_polytape-api")),
        "POLYTAPE_API_ADMIN_ADDR",
        &[
            ("POLYTAPE_CLICKHOUSE_DATABASE", database.clone()),
            (
                "POLYTAPE_API_ADDR",
                polytape_test_support::cli::free_local_addr().to_string(),
            ),
        ],
        "http",
    );
    drop_database(&database);
}

/// The API applied its migrations into that database at start; leave the stack clean.
fn drop_database(database: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let config = polytape_runtime::config::ClickHouseConfig {
            clickhouse_url: polytape_test_support::stack::endpoints().clickhouse_url,
            clickhouse_database: database.to_owned(),
            clickhouse_user: None,
            clickhouse_password: None,
        };
        let client = polytape_clickhouse::client(&config).with_database("system");
        let _ = client
            .query(&format!("DROP DATABASE IF EXISTS `{database}`"))
            .execute()
            .await;
    });
}

#[test]
fn the_readme_lists_every_configuration_key_of_the_service() {
    polytape_test_support::config::assert_readme_lists_the_keys(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"),
        &[polytape_api::ApiConfig::OWN_KEYS],
    );
}
