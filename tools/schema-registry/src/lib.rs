//! A local stand-in for a Confluent-compatible Schema Registry: the REST subset our producers
//! and consumers use, and that standard clients (Python `confluent-kafka`'s
//! `SchemaRegistryClient` with its Avro serdes, Java serdes) call. In production Redpanda's
//! built-in registry takes its place with nothing changed but the URL, so on the wire it
//! behaves like Confluent's: same paths, status codes, `error_code`s and content type.
//!
//! Avro only; schema references are refused. All state lives in one JSON file, rewritten
//! atomically after every change and loaded at start.
//!
//! Endpoints:
//! - `POST /subjects/{subject}/versions` registers (`{"id": N}`); `POST /subjects/{subject}`
//!   looks a schema up; `GET /subjects`, `GET /subjects/{subject}/versions`,
//!   `GET /subjects/{subject}/versions/{version|latest|-1}[/schema]`;
//!   `DELETE /subjects/{subject}[/versions/{version}]`
//! - `GET /schemas/ids/{id}[/schema|/versions|/subjects]`, `GET /schemas/types`
//! - `POST /compatibility/subjects/{subject}/versions[/{version}]`
//! - `GET|PUT|DELETE /config[/{subject}]`
//! - `GET /` and `GET /healthz`

mod compatibility;
mod error;
mod http;
mod state;
mod storage;

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::sync::{Mutex, RwLock};

pub use crate::{
    compatibility::{CompatibilityLevel, UnknownCompatibilityLevel},
    error::{OpenError, ServeError},
};
use crate::{
    error::{PersistError, RegistryError},
    state::Registry,
};

/// Loads the registry from `data_file` (created when missing) and serves it on `listener`
/// until `shutdown` completes; in-flight requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    data_file: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let registry = SchemaRegistry::open(data_file).await?;
    registry.serve(listener, shutdown).await
}

/// A loaded registry, shared by every request handler.
#[derive(Debug, Clone)]
pub struct SchemaRegistry {
    inner: Arc<SharedRegistry>,
}

#[derive(Debug)]
struct SharedRegistry {
    data_file: PathBuf,
    /// Readers take a snapshot and never wait for a write to reach the disk.
    current: RwLock<Arc<Registry>>,
    /// Changes go one at a time: each one is computed on a copy of the current state, written
    /// to the data file, and only then made visible.
    change_turn: Mutex<()>,
}

/// What a change produced, and whether it changed anything worth writing down.
#[derive(Debug)]
pub(crate) struct Change<T> {
    pub(crate) outcome: T,
    pub(crate) changed: bool,
}

impl SchemaRegistry {
    /// Loads `data_file`; a missing file starts an empty registry, a corrupt one is refused.
    pub async fn open(data_file: impl Into<PathBuf>) -> Result<Self, OpenError> {
        let data_file = data_file.into();
        let loading_file = data_file.clone();
        let registry = tokio::task::spawn_blocking(move || storage::load_or_create(&loading_file))
            .await
            .map_err(|join_error| OpenError::Unreadable {
                path: data_file.clone(),
                source: std::io::Error::other(join_error),
            })??;
        Ok(Self {
            inner: Arc::new(SharedRegistry {
                data_file,
                current: RwLock::new(Arc::new(registry)),
                change_turn: Mutex::new(()),
            }),
        })
    }

    pub fn data_file(&self) -> &Path {
        &self.inner.data_file
    }

    /// The HTTP API, for embedding in another server or a test.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Serves the API on `listener` until `shutdown` completes; in-flight requests finish first.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServeError::Http)
    }

    /// The current state, for reading.
    pub(crate) async fn snapshot(&self) -> Arc<Registry> {
        self.inner.current.read().await.clone()
    }

    /// Applies `apply` to a copy of the state; if it succeeds and changed something, persists
    /// the copy and makes it current. A failed write leaves the state as it was.
    ///
    /// Runs in its own task: a client that hangs up mid-request would otherwise cancel the
    /// handler between writing the file and publishing the state, and the next change would
    /// hand out the same id again.
    pub(crate) async fn change<T, F>(&self, apply: F) -> Result<T, RegistryError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Registry) -> Result<Change<T>, RegistryError> + Send + 'static,
    {
        let registry = self.clone();
        tokio::spawn(async move { registry.change_in_turn(apply).await })
            .await
            .map_err(|join_error| RegistryError::Internal {
                reason: format!("the change did not complete: {join_error}"),
            })?
    }

    async fn change_in_turn<T, F>(&self, apply: F) -> Result<T, RegistryError>
    where
        F: FnOnce(&mut Registry) -> Result<Change<T>, RegistryError>,
    {
        let _turn = self.inner.change_turn.lock().await;
        let mut next_state = Registry::clone(&*self.snapshot().await);
        let Change { outcome, changed } = apply(&mut next_state)?;
        if !changed {
            return Ok(outcome);
        }
        let data_file = self.inner.data_file.clone();
        let persist_error = |source| PersistError {
            path: data_file.clone(),
            source,
        };
        let bytes = storage::encode(next_state.stored()).map_err(persist_error)?;
        let writing_file = data_file.clone();
        tokio::task::spawn_blocking(move || storage::write_atomically(&writing_file, &bytes))
            .await
            .map_err(|join_error| persist_error(std::io::Error::other(join_error)))??;
        *self.inner.current.write().await = Arc::new(next_state);
        Ok(outcome)
    }
}
