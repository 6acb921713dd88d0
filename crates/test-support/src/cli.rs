//! Running a service binary as a user would and checking what it says.

use std::{
    io::Write as _,
    path::Path,
    process::{Command, Output},
};

/// What a finished process said.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Finished {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `binary` with `args` and exactly the given `POLYTAPE_…` variables (any inherited ones
/// are removed, so the developer's environment cannot change the outcome).
pub fn run(binary: &Path, args: &[&str], polytape_env: &[(&str, &str)]) -> Finished {
    let mut command = Command::new(binary);
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("POLYTAPE_") || name == "RUST_LOG" || name == "RUST_BACKTRACE" {
            command.env_remove(name);
        }
    }
    // A panic would print a backtrace with this set; a config error must not panic at all.
    command.env("RUST_BACKTRACE", "1");
    for (name, value) in polytape_env {
        command.env(name, value);
    }
    match command.output() {
        Ok(output) => output.into(),
        Err(error) => panic!("cannot run {}: {error}", binary.display()),
    }
}

/// A TOML file with `contents`, deleted when dropped.
pub fn config_file(contents: &str) -> tempfile::NamedTempFile {
    let mut file = match tempfile::Builder::new().suffix(".toml").tempfile() {
        Ok(file) => file,
        Err(error) => panic!("cannot create a temporary config file: {error}"),
    };
    if let Err(error) = file.write_all(contents.as_bytes()) {
        panic!("cannot write the temporary config file: {error}");
    }
    file
}

/// Asserts a start-up failure: exit code 2, no panic, and exactly one stderr line, which
/// contains every fragment.
pub fn assert_startup_error(finished: &Finished, fragments: &[&str]) {
    assert_eq!(
        finished.code,
        Some(2),
        "exit code; stderr:\n{}",
        finished.stderr
    );
    assert!(
        !finished.stderr.contains("panicked") && !finished.stderr.contains("stack backtrace"),
        "must not panic:\n{}",
        finished.stderr
    );
    let lines: Vec<&str> = finished
        .stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one line on stderr:\n{}", finished.stderr);
    for fragment in fragments {
        assert!(
            lines[0].contains(fragment),
            "stderr should contain {fragment:?}:\n{}",
            lines[0]
        );
    }
}
