//! The binary as the local stack runs it: the ready line, exit codes, signals.

// clippy's allow-unwrap-in-tests covers #[test] functions only, not their shared helpers.
#![allow(clippy::unwrap_used)]
#![cfg(unix)]

use std::{path::Path, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

fn registry_command(addr: &str, data_file: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_polytape-schema-registry"));
    command
        .args(["--addr", addr, "--data-file"])
        .arg(data_file)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn wait_with_timeout(child: Child) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the registry process did not exit within 20 s")
        .unwrap()
}

#[tokio::test]
async fn prints_ready_serves_and_exits_0_on_sigterm() {
    let directory = tempfile::tempdir().unwrap();
    let data_file = directory.path().join("registry.json");
    let mut child = registry_command("127.0.0.1:0", &data_file).spawn().unwrap();

    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready_line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("no ready line within 20 s")
        .unwrap()
        .expect("stdout closed before the ready line");
    let base_url = ready_line
        .strip_prefix("ready on ")
        .unwrap_or_else(|| panic!("unexpected first line {ready_line:?}"))
        .to_owned();
    assert!(base_url.starts_with("http://127.0.0.1:"), "{base_url}");
    assert!(!base_url.ends_with(":0"), "{base_url}");

    let http = reqwest::Client::new();
    let health = http
        .get(format!("{base_url}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    let registered: serde_json::Value = http
        .post(format!("{base_url}/subjects/smoke-value/versions"))
        .body(r#"{"schema": "\"string\""}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(registered, serde_json::json!({ "id": 1 }));
    assert!(data_file.exists());

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = wait_with_timeout(child).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
}

#[tokio::test]
async fn exits_2_with_one_clear_line_when_the_address_is_taken() {
    let directory = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();

    let child = registry_command(&taken_addr, &directory.path().join("registry.json"))
        .spawn()
        .unwrap();
    let output = wait_with_timeout(child).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    let error_lines: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("ERROR"))
        .collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    assert!(error_lines[0].contains("cannot listen"), "{stderr}");
    assert!(error_lines[0].contains(&taken_addr), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "printed ready despite failing to bind"
    );
    drop(taken);
}

#[tokio::test]
async fn refuses_a_corrupt_data_file_and_exits_1_naming_it() {
    let directory = tempfile::tempdir().unwrap();
    let data_file = directory.path().join("registry.json");
    std::fs::write(&data_file, "{ not json").unwrap();

    let child = registry_command("127.0.0.1:0", &data_file).spawn().unwrap();
    let output = wait_with_timeout(child).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&data_file.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("cargo xtask stack up --fresh"), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "printed ready despite the corrupt file"
    );
    assert_eq!(std::fs::read_to_string(&data_file).unwrap(), "{ not json");
}
