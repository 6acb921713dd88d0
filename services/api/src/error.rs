//! The one error type of the HTTP surface: every failure becomes `{"error":{"code","message"}}`
//! with the right status, so clients can branch on `code` and show `message`.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// What went wrong: a stable machine-readable code and a message for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable identifier, e.g. `invalid_parameter`, `unknown_parameter`, `missing_api_key`,
    /// `invalid_api_key`, `api_key_revoked`, `api_key_expired`, `rate_limited`,
    /// `daily_cap_exceeded`, `out_of_retention`, `too_many_points`, `not_found`.
    pub code: String,
    pub message: String,
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidParameter { message: String },
    #[error("unknown query parameter `{name}`; accepted: {accepted}")]
    UnknownParameter { name: String, accepted: String },
    #[error("{message}")]
    OutOfRetention { message: String },
    #[error("{message}")]
    TooManyPoints { message: String },
    #[error("missing API key: send it in the X-API-Key header or as `Authorization: Bearer <key>`")]
    MissingApiKey,
    #[error("the API key is not valid")]
    InvalidApiKey,
    #[error("the API key was revoked")]
    ApiKeyRevoked,
    #[error("the API key expired")]
    ApiKeyExpired,
    #[error("missing or wrong admin token (Authorization: Bearer <POLYTAPE_API_ADMIN_TOKEN>)")]
    AdminUnauthorized,
    #[error("the admin API is disabled: set POLYTAPE_API_ADMIN_TOKEN to enable it")]
    AdminDisabled,
    #[error(
        "too many failed admin-token attempts from this address; retry after {retry_after_s} s"
    )]
    AdminThrottled { retry_after_s: u64 },
    #[error("{message}")]
    NotFound { message: String },
    #[error("rate limit of {rps} requests per second exceeded; retry after {retry_after_s} s")]
    RateLimited { rps: u32, retry_after_s: u64 },
    #[error(
        "daily cap of {daily_cap} requests reached; it resets at 00:00 UTC, in {retry_after_s} s"
    )]
    DailyCapExceeded { daily_cap: u64, retry_after_s: u64 },
    #[error(
        "this request would read more than the API allows per query ({reason}); narrow it: a shorter time range (`from`/`to`), one market or token"
    )]
    QueryTooLarge { reason: String },
    #[error("the data store is unavailable, try again shortly")]
    Storage {
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("{message}")]
    Conflict { message: String },
    #[error("{message}")]
    Internal { message: String },
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::InvalidParameter {
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::NotFound {
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidParameter { .. }
            | ApiError::UnknownParameter { .. }
            | ApiError::OutOfRetention { .. }
            | ApiError::TooManyPoints { .. }
            | ApiError::QueryTooLarge { .. } => StatusCode::BAD_REQUEST,
            ApiError::MissingApiKey | ApiError::InvalidApiKey | ApiError::AdminUnauthorized => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::ApiKeyRevoked | ApiError::ApiKeyExpired | ApiError::AdminDisabled => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::RateLimited { .. }
            | ApiError::DailyCapExceeded { .. }
            | ApiError::AdminThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Storage { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidParameter { .. } => "invalid_parameter",
            ApiError::UnknownParameter { .. } => "unknown_parameter",
            ApiError::OutOfRetention { .. } => "out_of_retention",
            ApiError::TooManyPoints { .. } => "too_many_points",
            ApiError::QueryTooLarge { .. } => "query_too_large",
            ApiError::MissingApiKey => "missing_api_key",
            ApiError::InvalidApiKey => "invalid_api_key",
            ApiError::ApiKeyRevoked => "api_key_revoked",
            ApiError::ApiKeyExpired => "api_key_expired",
            ApiError::AdminUnauthorized => "invalid_admin_token",
            ApiError::AdminDisabled => "admin_disabled",
            ApiError::AdminThrottled { .. } => "admin_throttled",
            ApiError::NotFound { .. } => "not_found",
            ApiError::Conflict { .. } => "conflict",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::DailyCapExceeded { .. } => "daily_cap_exceeded",
            ApiError::Storage { .. } => "storage_unavailable",
            ApiError::Internal { .. } => "internal",
        }
    }

    fn retry_after_s(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_s, .. }
            | ApiError::DailyCapExceeded { retry_after_s, .. }
            | ApiError::AdminThrottled { retry_after_s } => Some(*retry_after_s),
            ApiError::Storage { .. } => Some(1),
            _ => None,
        }
    }
}

/// ClickHouse's codes for a query stopped by the limits the API sets on every query
/// (`max_rows_to_read`, `max_execution_time`): the user's request was too broad, not a failure.
const TOO_MANY_ROWS: u32 = 158;
const TIMEOUT_EXCEEDED: u32 = 159;

impl From<clickhouse::error::Error> for ApiError {
    fn from(source: clickhouse::error::Error) -> Self {
        if let clickhouse::error::Error::BadResponse(message) = &source {
            match polytape_clickhouse::exception_code(message) {
                Some(TOO_MANY_ROWS) => {
                    return ApiError::QueryTooLarge {
                        reason: "too many rows to read".to_owned(),
                    };
                }
                Some(TIMEOUT_EXCEEDED) => {
                    return ApiError::QueryTooLarge {
                        reason: "it would run too long".to_owned(),
                    };
                }
                _ => {}
            }
        }
        ApiError::Storage { source }
    }
}

impl From<polytape_clickhouse::ClickHouseError> for ApiError {
    fn from(error: polytape_clickhouse::ClickHouseError) -> Self {
        match error {
            polytape_clickhouse::ClickHouseError::Query { source, .. }
            | polytape_clickhouse::ClickHouseError::Unreachable { source, .. } => source.into(),
            other => ApiError::Internal {
                message: other.to_string(),
            },
        }
    }
}

impl From<polytape_clickhouse::alerts::RuleChangeError> for ApiError {
    fn from(error: polytape_clickhouse::alerts::RuleChangeError) -> Self {
        use polytape_clickhouse::alerts::RuleChangeError;
        match error {
            RuleChangeError::Invalid(invalid) => ApiError::invalid(invalid.to_string()),
            RuleChangeError::NotFound { .. } => ApiError::not_found(error.to_string()),
            RuleChangeError::Conflict { .. } => ApiError::Conflict {
                message: error.to_string(),
            },
            RuleChangeError::Storage(storage) => storage.into(),
        }
    }
}

/// The envelope for a status and code, used where no `ApiError` exists (fallback routes).
pub fn envelope(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorEnvelope {
            error: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
            },
        }),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Storage { source } = &self {
            // The client sees a generic message; operators get the cause.
            tracing::warn!(error = %source, "clickhouse query failed");
        }
        if let ApiError::Internal { message } = &self {
            tracing::error!(error = %message, "internal error");
        }
        let mut response = envelope(status, self.code(), self.to_string());
        if let Some(seconds) = self.retry_after_s() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_stopped_by_the_api_limits_are_the_users_to_narrow_not_outages() {
        let too_many_rows = ApiError::from(clickhouse::error::Error::BadResponse(
            "Code: 158. DB::Exception: Limit for rows (controlled by 'max_rows_to_read' setting) exceeded. (TOO_MANY_ROWS)".to_owned(),
        ));
        assert_eq!(too_many_rows.status(), StatusCode::BAD_REQUEST);
        assert_eq!(too_many_rows.code(), "query_too_large");
        let too_long = ApiError::from(clickhouse::error::Error::BadResponse(
            "Code: 159. DB::Exception: Timeout exceeded: elapsed 20.1 seconds. (TIMEOUT_EXCEEDED)"
                .to_owned(),
        ));
        assert_eq!(too_long.code(), "query_too_large");
        let outage = ApiError::from(clickhouse::error::Error::BadResponse(
            "Code: 241. DB::Exception: Memory limit exceeded. (MEMORY_LIMIT_EXCEEDED)".to_owned(),
        ));
        assert_eq!(outage.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
