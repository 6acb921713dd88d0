//! The data file: the whole registry as one JSON document, replaced atomically after every
//! change so a crash leaves either the old or the new state, never half of one.

use std::{
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use crate::{
    error::{OpenError, PersistError},
    state::{Registry, StoredRegistry},
};

/// Loads the registry from `data_file`. A missing file is an empty registry, written out at
/// once so an unwritable location fails at start-up rather than at the first registration.
pub(crate) fn load_or_create(data_file: &Path) -> Result<Registry, OpenError> {
    let text = match fs::read_to_string(data_file) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let registry = Registry::default();
            let bytes = encode(registry.stored()).map_err(|source| OpenError::Uncreatable {
                path: data_file.to_owned(),
                source,
            })?;
            if let Some(directory) = parent_directory(data_file) {
                fs::create_dir_all(directory).map_err(|source| OpenError::Uncreatable {
                    path: data_file.to_owned(),
                    source,
                })?;
            }
            write_atomically(data_file, &bytes).map_err(|error| OpenError::Uncreatable {
                path: data_file.to_owned(),
                source: error.source,
            })?;
            tracing::info!(data_file = %data_file.display(), "created an empty schema registry");
            return Ok(registry);
        }
        Err(source) => {
            return Err(OpenError::Unreadable {
                path: data_file.to_owned(),
                source,
            });
        }
    };
    let corrupt = |reason: String| OpenError::Corrupt {
        path: data_file.to_owned(),
        reason,
    };
    let stored: StoredRegistry = serde_json::from_str(&text)
        .map_err(|error| corrupt(format!("not the registry's JSON: {error}")))?;
    let registry = Registry::from_stored(stored).map_err(corrupt)?;
    tracing::info!(
        data_file = %data_file.display(),
        schemas = registry.stored().schemas.len(),
        subjects = registry.subjects().len(),
        "loaded the schema registry"
    );
    Ok(registry)
}

/// The file's bytes for `stored`: pretty-printed, since people open it to see what is
/// registered.
pub(crate) fn encode(stored: &StoredRegistry) -> io::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(stored).map_err(io::Error::other)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Replaces `data_file` with `bytes`: write a temporary file in the same directory (a rename
/// is only atomic within one file system), fsync it, rename it over the old file, then fsync
/// the directory so the rename itself survives a power loss. Blocking: call from
/// `spawn_blocking`.
pub(crate) fn write_atomically(data_file: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let persist_error = |source| PersistError {
        path: data_file.to_owned(),
        source,
    };
    let temporary_file = temporary_path(data_file);
    let written = (|| {
        let mut file = fs::File::create(&temporary_file)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary_file, data_file)
    })();
    if let Err(error) = written {
        // Best effort: a leftover temporary file is harmless, it is overwritten next time.
        let _ = fs::remove_file(&temporary_file);
        return Err(persist_error(error));
    }
    if let Some(directory) = parent_directory(data_file) {
        sync_directory(directory).map_err(persist_error)?;
    }
    Ok(())
}

fn temporary_path(data_file: &Path) -> PathBuf {
    let mut file_name = std::ffi::OsString::from(".");
    file_name.push(data_file.file_name().unwrap_or_else(|| "registry".as_ref()));
    file_name.push(".tmp");
    data_file.with_file_name(file_name)
}

/// The directory holding `path`, or `None` for a bare file name (the current directory).
fn parent_directory(path: &Path) -> Option<&Path> {
    path.parent()
        .filter(|directory| !directory.as_os_str().is_empty())
}

#[cfg(unix)]
fn sync_directory(directory: &Path) -> io::Result<()> {
    fs::File::open(directory)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_directory: &Path) -> io::Result<()> {
    // Directories cannot be opened for syncing elsewhere; the rename is still atomic.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_becomes_an_empty_registry_on_disk() {
        let directory = tempfile::tempdir().unwrap();
        let data_file = directory.path().join("nested/dir/registry.json");
        let registry = load_or_create(&data_file).unwrap();
        assert!(registry.subjects().is_empty());
        let written: StoredRegistry =
            serde_json::from_str(&fs::read_to_string(&data_file).unwrap()).unwrap();
        assert_eq!(written, StoredRegistry::default());
        assert!(!temporary_path(&data_file).exists());
    }

    #[test]
    fn a_corrupt_file_is_refused_with_its_name_and_the_way_out() {
        let directory = tempfile::tempdir().unwrap();
        let data_file = directory.path().join("registry.json");
        fs::write(&data_file, "{\"format_version\": 1, \"next_schema").unwrap();
        let error = load_or_create(&data_file).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, OpenError::Corrupt { .. }), "{message}");
        assert!(
            message.contains(&data_file.display().to_string()),
            "{message}"
        );
        assert!(message.contains("delete it"), "{message}");
        assert!(
            message.contains("cargo xtask stack up --fresh"),
            "{message}"
        );
        // Refusing must not touch the file: whoever investigates needs it as it was.
        assert_eq!(
            fs::read_to_string(&data_file).unwrap(),
            "{\"format_version\": 1, \"next_schema"
        );
    }

    #[test]
    fn writes_replace_the_whole_file() {
        let directory = tempfile::tempdir().unwrap();
        let data_file = directory.path().join("registry.json");
        write_atomically(&data_file, b"first version, longer than the second\n").unwrap();
        write_atomically(&data_file, b"second\n").unwrap();
        assert_eq!(fs::read_to_string(&data_file).unwrap(), "second\n");
        assert!(!temporary_path(&data_file).exists());
    }
}
