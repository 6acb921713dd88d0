//! Start-up errors of `polytape-ws-bridge`: one clear line naming the problem, exit code 2, no panic.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;

use polytape_test_support::cli::{assert_startup_error, config_file, run};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_polytape-ws-bridge"))
}

#[test]
fn unknown_key_in_the_config_file() {
    let file = config_file("clob_ws_url = \"http://127.0.0.1:1\"\nlog_levle = \"debug\"\n");
    let finished = run(binary(), &["--config", &file.path().to_string_lossy()], &[]);
    assert_startup_error(
        &finished,
        &[
            "`log_levle`",
            "is not a known key",
            "did you mean `log_level`?",
        ],
    );
}

#[test]
fn unparsable_url() {
    let finished = run(binary(), &[], &[("POLYTAPE_CLOB_WS_URL", "::not a url::")]);
    assert_startup_error(
        &finished,
        &["POLYTAPE_CLOB_WS_URL='::not a url::'", "is not a valid URL"],
    );
}

#[test]
fn unreachable_dependency() {
    let finished = run(binary(), &[], &[("POLYTAPE_KAFKA_BROKERS", "127.0.0.1:1")]);
    assert_startup_error(&finished, &["Kafka at 127.0.0.1:1", "cargo xtask stack up"]);
}
