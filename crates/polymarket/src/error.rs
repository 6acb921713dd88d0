//! What can go wrong reading upstream, classified: a refused row, a malformed page, and a
//! request that failed (retryable or not).

use crate::budget::Endpoint;

/// Why one upstream row was refused (it goes to the DLQ with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("missing required field {0}")]
    Missing(&'static str),
    #[error("field {field} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("row is not a JSON object")]
    NotAnObject,
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> RowError {
    RowError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A page body that is not the JSON shape the endpoint documents (truncated, malformed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PageError(pub String);

/// A request to upstream that did not produce a parsed page.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{endpoint:?} answered HTTP {status}: {body}")]
    Status {
        endpoint: Endpoint,
        status: u16,
        body: String,
    },
    #[error("{endpoint:?} request failed: {source}")]
    Transport {
        endpoint: Endpoint,
        #[source]
        source: reqwest::Error,
    },
    #[error("{endpoint:?} page is malformed: {error}")]
    Page {
        endpoint: Endpoint,
        url: String,
        body: Vec<u8>,
        error: PageError,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("stopped")]
    Cancelled,
}

impl UpstreamError {
    /// Whether trying again (later) may succeed: throttling, server errors, timeouts,
    /// transport failures and malformed pages (a truncated body); not other 4xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpstreamError::Status { status, .. } => {
                *status == 429 || *status == 408 || *status >= 500
            }
            UpstreamError::Transport { .. } | UpstreamError::Page { .. } => true,
            UpstreamError::Client(_) | UpstreamError::Cancelled => false,
        }
    }
}
