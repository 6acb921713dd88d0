//! Errors: what the API answers (with Confluent's status codes, error codes and, where clients
//! or people may match on them, Confluent's wording) and why the registry could not start.

use std::path::PathBuf;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};

use crate::{compatibility::CompatibilityLevel, http::registry_json};

/// A request the registry refuses or could not carry out. Each variant maps to one HTTP status
/// and one Confluent `error_code`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistryError {
    #[error("Subject '{subject}' not found.")]
    SubjectNotFound { subject: String },

    #[error("Version {version} not found.")]
    VersionNotFound { version: String },

    #[error("Schema {schema_id} not found")]
    SchemaIdNotFound { schema_id: String },

    /// The lookup endpoint: the subject exists but has no version with this schema.
    #[error("Schema not found")]
    SchemaNotUnderSubject,

    #[error("Subject '{subject}' does not have subject-level compatibility configured")]
    SubjectCompatibilityNotConfigured { subject: String },

    #[error("Invalid schema: {reason}")]
    InvalidSchema { reason: String },

    #[error(
        "The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion { version: String },

    #[error(
        "Invalid compatibility level {given}. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"
    )]
    InvalidCompatibilityLevel { given: String },

    #[error(
        "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}] (compatibility level {level})",
        .details.join("; ")
    )]
    IncompatibleSchema {
        subject: String,
        level: CompatibilityLevel,
        details: Vec<String>,
    },

    /// The body is not JSON, or a path segment is not valid percent-encoded UTF-8.
    #[error("{reason}")]
    BadRequest { reason: String },

    #[error("HTTP 404 Not Found")]
    RouteNotFound,

    #[error("HTTP 405 Method Not Allowed")]
    MethodNotAllowed,

    #[error("Error in the backend data store: {0}")]
    Storage(#[from] PersistError),

    #[error("Internal error: {reason}")]
    Internal { reason: String },
}

impl RegistryError {
    fn status_and_error_code(&self) -> (StatusCode, u32) {
        match self {
            RegistryError::SubjectNotFound { .. } => (StatusCode::NOT_FOUND, 40401),
            RegistryError::VersionNotFound { .. } => (StatusCode::NOT_FOUND, 40402),
            RegistryError::SchemaIdNotFound { .. } | RegistryError::SchemaNotUnderSubject => {
                (StatusCode::NOT_FOUND, 40403)
            }
            RegistryError::SubjectCompatibilityNotConfigured { .. } => {
                (StatusCode::NOT_FOUND, 40408)
            }
            RegistryError::InvalidSchema { .. } => (StatusCode::UNPROCESSABLE_ENTITY, 42201),
            RegistryError::InvalidVersion { .. } => (StatusCode::UNPROCESSABLE_ENTITY, 42202),
            RegistryError::InvalidCompatibilityLevel { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, 42203)
            }
            RegistryError::IncompatibleSchema { .. } => (StatusCode::CONFLICT, 409),
            RegistryError::BadRequest { .. } => (StatusCode::BAD_REQUEST, 400),
            RegistryError::RouteNotFound => (StatusCode::NOT_FOUND, 404),
            RegistryError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, 405),
            RegistryError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, 50001),
            RegistryError::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, 500),
        }
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (status, error_code) = self.status_and_error_code();
        let message = self.to_string();
        if status.is_server_error() {
            tracing::error!(error_code, error = %message, "request failed");
        } else {
            tracing::debug!(error_code, error = %message, "request refused");
        }
        registry_json(
            status,
            &serde_json::json!({ "error_code": error_code, "message": message }),
        )
    }
}

/// The data file could not be rewritten; the change it carried was not applied.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the registry data file {}: {source}", .path.display())]
pub(crate) struct PersistError {
    pub(crate) path: PathBuf,
    #[source]
    pub(crate) source: std::io::Error,
}

/// Why the registry could not load its data file at start-up.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot read the schema registry data file {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the schema registry data file {} is corrupt ({reason}); delete it, or run `cargo xtask stack up --fresh`, to start with an empty registry",
        .path.display()
    )]
    Corrupt { path: PathBuf, reason: String },

    #[error(
        "cannot create the schema registry data file {}: {source}; check that its directory is writable or pass another --data-file",
        .path.display()
    )]
    Uncreatable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why [`crate::serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Open(#[from] OpenError),

    #[error("the schema registry http server failed: {0}")]
    Http(#[source] std::io::Error),
}
