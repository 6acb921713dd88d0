//! `polytape-ws-bridge` against the local stack: serves `/healthz`, `/readyz`, `/metrics`, and stops
//! cleanly (exit 0) on SIGTERM. Run through `cargo xtask test`.

use std::path::Path;

use polytape_test_support::cli::{
    assert_serves_admin_endpoints_and_stops_cleanly, assert_task_panic_ends_the_process,
};

#[test]
fn serves_admin_endpoints_and_stops_cleanly_on_sigterm() {
    assert_serves_admin_endpoints_and_stops_cleanly(
        Path::new(env!("CARGO_BIN_EXE_polytape-ws-bridge")),
        "POLYTAPE_WS_BRIDGE_ADMIN_ADDR",
        &[],
    );
}

#[test]
fn a_panicking_task_ends_the_process_with_exit_code_1() {
    assert_task_panic_ends_the_process(
        Path::new(env!("CARGO_BIN_EXE_polytape-ws-bridge")),
        "POLYTAPE_WS_BRIDGE_ADMIN_ADDR",
        &[],
        "bridge",
    );
}

#[test]
fn the_readme_lists_every_configuration_key_of_the_service() {
    polytape_test_support::config::assert_readme_lists_the_keys(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"),
        &[polytape_ws_bridge::WsBridgeConfig::OWN_KEYS],
    );
}
