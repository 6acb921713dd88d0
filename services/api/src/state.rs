//! What every handler shares.

use std::sync::Arc;

use crate::{clock::Clock, keys::KeyCache, limits::Limiter, store::Store};

/// Shared state of one API replica.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<KeyCache>,
    pub limiter: Arc<Limiter>,
    /// How far back time series are served (the ClickHouse TTL).
    pub retention_ms: i64,
    pub admin_token: Option<Arc<str>>,
    /// Failed admin-token attempts per client address.
    pub admin_failures: Arc<crate::routes::admin::AdminFailures>,
}

impl AppState {
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The `X-Data-Retention` value, e.g. `90d`.
    pub fn retention_label(&self) -> String {
        let days = self.retention_ms / 86_400_000;
        if days * 86_400_000 == self.retention_ms {
            format!("{days}d")
        } else {
            format!("{}s", self.retention_ms / 1000)
        }
    }

    /// The earliest time a request may ask for.
    pub fn retention_start_ms(&self) -> i64 {
        self.now_ms() - self.retention_ms
    }

    /// Refuses a range that starts before the retention window, rather than answering with
    /// less than was asked.
    pub fn check_retention(&self, name: &str, time_ms: i64) -> Result<(), crate::error::ApiError> {
        let start = self.retention_start_ms();
        if time_ms < start {
            return Err(crate::error::ApiError::OutOfRetention {
                message: format!(
                    "`{name}` = {time_ms} is older than the data retention of {} (earliest: {start}); data before that is deleted",
                    self.retention_label()
                ),
            });
        }
        Ok(())
    }
}
