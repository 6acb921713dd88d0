//! The REST API for paying users: API keys, plans, rate limits and the market-data endpoints.
//!
//! The endpoints arrive with issue #9; today the API starts, checks ClickHouse, and serves
//! `/health`, `/healthz`, `/readyz` and `/metrics` on its own port.

mod config;

use std::time::Duration;

use axum::{Router, routing::get};
pub use config::ApiConfig;
use polytape_runtime::{BoxError, ServiceContext, admin::admin_router};

/// Checks ClickHouse, binds the API port and serves.
pub async fn start(config: ApiConfig, context: ServiceContext) -> Result<(), BoxError> {
    let client = polytape_clickhouse::client(&config.clickhouse);
    polytape_clickhouse::check_reachable(
        &client,
        &config.clickhouse.clickhouse_url,
        Duration::from_secs(5),
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(config.api_addr).await.map_err(|error| {
        format!(
            "cannot listen on {} for the API ({error}); set POLYTAPE_API_ADDR to a free address",
            config.api_addr
        )
    })?;
    let router = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .merge(admin_router(context.readiness.clone()));
    let serving = context.readiness.register("http");
    let stop = context.shutdown.token();
    context.shutdown.spawn("http", async move {
        tracing::info!(addr = %listener.local_addr()?, "api listening");
        serving.set_ready(true);
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await?;
        Ok(())
    });
    Ok(())
}
