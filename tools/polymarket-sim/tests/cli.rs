//! The binary: `--help` documents every flag and the fault grammar; `--port 0` prints the
//! ready line with the picked port; bad flags are refused.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_polymarket-sim");

#[test]
fn help_documents_every_flag_and_the_fault_grammar() {
    let output = Command::new(BINARY)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("utf-8");
    for flag in [
        "--seed",
        "--markets",
        "--history-days",
        "--rate",
        "--speed",
        "--faults",
        "--port",
        "--ws-max-assets",
        "--epoch",
        "--rate-window",
        "--lifecycle-every",
        "--ws-truth-capacity",
        "--advance-at-wall-clock",
        "--advance-spacing-us",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
    for kind in [
        "error",
        "slow",
        "timeout",
        "truncate",
        "malformed",
        "extra_field",
        "missing_optional",
        "drift",
        "out_of_window",
        "late_index",
        "ws_disconnect",
        "ws_freeze",
        "ws_garbage",
        "ws_duplicate",
        "ws_reorder",
        "KIND[@TARGET][:KEY=VALUE",
    ] {
        assert!(help.contains(kind), "--help does not document {kind}");
    }
}

#[test]
fn port_zero_prints_the_ready_line_and_bad_specs_are_refused() {
    let mut child = Command::new(BINARY)
        .args([
            "--port",
            "0",
            "--markets",
            "5",
            "--history-days",
            "0",
            "--rate",
            "0",
            "--faults",
            "error@/data/trades:count=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("ready line");
    child.kill().expect("kill the child we started");
    let _ = child.wait();
    let address = line
        .trim()
        .strip_prefix("ready on http://127.0.0.1:")
        .expect("ready line format");
    let port: u16 = address.parse().expect("a port number");
    assert_ne!(port, 0);

    let refused = Command::new(BINARY)
        .args(["--port", "0", "--faults", "explode@/x"])
        .output()
        .expect("run");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown fault kind"));
}
