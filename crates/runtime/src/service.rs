//! The one start-up sequence every service follows once its configuration is loaded:
//! telemetry → shutdown handle → the service's tasks → admin server → wait for shutdown.

use std::{future::Future, net::SocketAddr, process::ExitCode};

use crate::{
    AdminServer, BoxError, Readiness, Shutdown, config::ServiceConfig, metrics, startup_failure,
    telemetry,
};

/// What a service's start function gets: the shutdown handle to spawn tasks on, and the
/// readiness registry its components report to.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    pub shutdown: Shutdown,
    pub readiness: Readiness,
}

/// Where a service serves `/healthz`, `/readyz` and `/metrics`, and the variable that moves it.
#[derive(Debug, Clone, Copy)]
pub struct AdminEndpoint {
    pub addr: SocketAddr,
    pub env_var: &'static str,
}

/// Runs a service until it is asked to stop, returning the process exit code: 0 after a clean
/// drain, 1 if a task failed or did not drain in time, 2 if it could not start (dependency
/// unreachable, port taken).
///
/// `start` checks dependencies and spawns the service's tasks on the context's shutdown
/// handle; an error from it is a start-up failure. `admin` is `None` for a service that serves
/// the admin routes on its own listener (the API).
pub async fn run<C, Start, Started>(
    config: C,
    warnings: Vec<String>,
    admin: Option<AdminEndpoint>,
    start: Start,
) -> ExitCode
where
    C: ServiceConfig,
    Start: FnOnce(C, ServiceContext) -> Started,
    Started: Future<Output = Result<(), BoxError>>,
{
    let service = C::SERVICE;
    let shutdown_timeout = config.common().shutdown_timeout;
    telemetry::init(service, config.common());
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    metrics::build_info(service.short_name());

    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let context = ServiceContext {
        shutdown: shutdown.clone(),
        readiness: Readiness::new(),
    };

    let readiness = context.readiness.clone();
    // Not ready from the moment the service stops working — a signal, a task that failed or
    // panicked — so an orchestrator takes it out of rotation while it drains and exits.
    let running = readiness.register("running");
    running.set_ready(true);
    let stopping = shutdown.token();
    tokio::spawn(async move {
        stopping.cancelled().await;
        running.set_ready(false);
    });
    if let Err(error) = start(config, context).await {
        shutdown.request();
        return startup_failure(service, &error);
    }

    if let Some(endpoint) = admin {
        let server = match AdminServer::bind(endpoint.addr, endpoint.env_var, readiness).await {
            Ok(server) => server,
            Err(error) => {
                shutdown.request();
                return startup_failure(service, &error);
            }
        };
        let stop = shutdown.token();
        shutdown.spawn("admin-server", async move {
            server.serve(stop).await.map_err(Into::into)
        });
    }

    shutdown.wait(shutdown_timeout).await
}
