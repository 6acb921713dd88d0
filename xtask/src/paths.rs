//! Where things live.

use std::path::PathBuf;

/// The workspace root (xtask lives one level below it).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// `.polytape/` in the workspace: stack data, logs, pid files and the Python venv.
pub(crate) fn state_dir() -> PathBuf {
    workspace_root().join(".polytape")
}

/// Tools installed once per machine and shared by every checkout (the broker takes ~15
/// minutes to build): `$POLYTAPE_TOOLS_DIR`, else `~/.cache/polytape/tools`.
pub(crate) fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("POLYTAPE_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("polytape").join("tools")
}

/// The Python venv with chdb and the test clients.
pub(crate) fn venv_dir() -> PathBuf {
    state_dir().join("venv")
}

pub(crate) fn venv_python() -> PathBuf {
    venv_dir().join("bin").join("python")
}

/// The cargo that runs us, so nested builds use the same toolchain.
pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}
