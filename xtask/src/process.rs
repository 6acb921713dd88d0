//! Background processes with pid files and log files, stopped by pid.

use std::{
    fs,
    io::{Read as _, Seek as _, SeekFrom},
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// Starts `command` detached (its own process group, so a Ctrl-C in the terminal that ran
/// `stack up` does not reach it), output appended to `log_file`, pid written to `pid_file`.
pub(crate) fn spawn_detached(
    mut command: Command,
    log_file: &Path,
    pid_file: &Path,
) -> anyhow::Result<u32> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .with_context(|| format!("cannot open log file {}", log_file.display()))?;
    let log_for_stderr = log.try_clone()?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_for_stderr))
        .process_group(0);
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
    let pid = child.id();
    fs::write(pid_file, format!("{pid}\n"))
        .with_context(|| format!("cannot write {}", pid_file.display()))?;
    // The child is reaped by init once we exit; we track it by pid file from here on.
    std::mem::forget(child);
    Ok(pid)
}

/// The pid recorded in `pid_file`, if the file exists and parses.
pub(crate) fn read_pid(pid_file: &Path) -> Option<u32> {
    fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

/// Whether a process with `pid` exists (and is not a zombie).
pub(crate) fn is_alive(pid: u32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    !status
        .lines()
        .any(|line| line.starts_with("State:") && line.contains('Z'))
}

/// SIGTERM, then SIGKILL if it has not exited within `grace`.
pub(crate) fn terminate(pid: u32, grace: Duration) -> anyhow::Result<()> {
    signal(pid, "TERM")?;
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !is_alive(pid) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    signal(pid, "KILL")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !is_alive(pid) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!("process {pid} survived SIGKILL")
}

fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .context("cannot run kill")?;
    // A process that already exited is what we wanted.
    if !status.success() && is_alive(pid) {
        bail!("kill -{name} {pid} failed");
    }
    Ok(())
}

/// The last `lines` lines of a log file, for error messages.
pub(crate) fn log_tail(log_file: &Path, lines: usize) -> String {
    let Ok(mut file) = fs::File::open(log_file) else {
        return format!("(no log at {})", log_file.display());
    };
    let length = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let start = length.saturating_sub(64 * 1024);
    let mut text = String::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_string(&mut text).is_err() {
        return format!("(cannot read {})", log_file.display());
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub(crate) fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300))
        .is_ok()
}
