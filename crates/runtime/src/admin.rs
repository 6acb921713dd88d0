//! The admin endpoints every service exposes: `/healthz` (the process is alive), `/readyz`
//! (every component is ready: connected, caught up, migrated), `/metrics` (Prometheus text).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::get};
use tokio_util::sync::CancellationToken;

/// Readiness of a service's components. The service is ready when all registered components
/// are.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    components: Arc<Mutex<BTreeMap<&'static str, bool>>>,
}

/// One component's readiness switch.
#[derive(Debug, Clone)]
pub struct ReadinessHandle {
    name: &'static str,
    readiness: Readiness,
}

impl ReadinessHandle {
    pub fn set_ready(&self, ready: bool) {
        let mut components = self.readiness.lock();
        components.insert(self.name, ready);
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a component, not ready until its handle says so.
    pub fn register(&self, name: &'static str) -> ReadinessHandle {
        self.lock().insert(name, false);
        ReadinessHandle {
            name,
            readiness: self.clone(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.lock().values().all(|ready| *ready)
    }

    fn snapshot(&self) -> BTreeMap<&'static str, bool> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, bool>> {
        self.components
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The admin routes, for services that serve them on their own port and for the API, which
/// merges them into its router.
pub fn admin_router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    let components = readiness.snapshot();
                    let status = if components.values().all(|ready| *ready) {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (status, Json(serde_json::json!({ "ready": status == StatusCode::OK, "components": components })))
                }
            }),
        )
        .route("/metrics", get(metrics))
}

async fn metrics() -> impl IntoResponse {
    match crate::metrics::render() {
        Ok(text) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            text,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain; charset=utf-8")],
            format!("cannot encode metrics: {error}\n"),
        ),
    }
}

/// Why the admin server could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {addr} for the admin endpoints ({source}); set {env_var} to a free address"
)]
pub struct AdminBindError {
    pub addr: SocketAddr,
    pub env_var: String,
    #[source]
    pub source: std::io::Error,
}

/// A bound admin listener; binding happens at start-up so a busy port fails fast.
#[derive(Debug)]
pub struct AdminServer {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl AdminServer {
    pub async fn bind(
        addr: SocketAddr,
        env_var: &str,
        readiness: Readiness,
    ) -> Result<Self, AdminBindError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AdminBindError {
                addr,
                env_var: env_var.to_owned(),
                source,
            })?;
        Ok(Self {
            listener,
            router: admin_router(readiness),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` is cancelled.
    pub async fn serve(self, stop: CancellationToken) -> std::io::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "admin endpoints listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoints_answer_and_readiness_follows_components() {
        let readiness = Readiness::new();
        let kafka = readiness.register("kafka");
        let server = AdminServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            "POLYTAPE_TEST_ADMIN_ADDR",
            readiness,
        )
        .await
        .unwrap();
        let addr = server.local_addr().unwrap();
        let stop = CancellationToken::new();
        let serving = tokio::spawn(server.serve(stop.clone()));
        crate::metrics::build_info("test");
        let client = reqwest::Client::new();
        let base = format!("http://{addr}");

        let health = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let not_ready = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(not_ready.status(), 503);
        assert!(not_ready.text().await.unwrap().contains("\"kafka\":false"));
        kafka.set_ready(true);
        assert_eq!(
            client
                .get(format!("{base}/readyz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("polytape_build_info{"), "{metrics}");

        stop.cancel();
        serving.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_busy_port_names_the_variable_to_change() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let error = AdminServer::bind(addr, "POLYTAPE_SINK_ADMIN_ADDR", Readiness::new())
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("POLYTAPE_SINK_ADMIN_ADDR"),
            "{error}"
        );
    }
}
