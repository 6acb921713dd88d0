//! Start-up errors of `polytape-api`: one clear line naming the problem, exit code 2, no panic.

use std::path::Path;

use polytape_test_support::cli::{
    assert_rejects_unknown_config_key, assert_rejects_unparsable_url,
    assert_reports_unreachable_dependency,
};

const BINARY: &str = env!("CARGO_BIN_EXE_polytape-api");

#[test]
fn unknown_key_in_the_config_file() {
    assert_rejects_unknown_config_key(Path::new(BINARY));
}

#[test]
fn unparsable_url() {
    assert_rejects_unparsable_url(Path::new(BINARY), "POLYTAPE_CLICKHOUSE_URL");
}

#[test]
fn unreachable_dependency() {
    assert_reports_unreachable_dependency(
        Path::new(BINARY),
        "POLYTAPE_CLICKHOUSE_URL",
        "http://127.0.0.1:1",
        "ClickHouse at http://127.0.0.1:1",
    );
}
