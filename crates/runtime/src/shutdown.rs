//! Graceful shutdown: the first SIGINT/SIGTERM cancels every task's token and they drain
//! (flush, commit) within the shutdown timeout; a second signal exits at once. A task that
//! fails — returns an error or panics — cancels the others and makes the process exit 1, so an
//! orchestrator restarts it instead of keeping a zombie that answers `/readyz`.

use std::{
    future::Future,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Errors a service task may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Owns the service's tasks and its stop signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
    failed: Arc<AtomicBool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
            failed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Cancelled when the service must stop; tasks select on it and then drain.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Asks every task to stop (e.g. a one-shot mode that finished its work).
    pub fn request(&self) {
        self.token.cancel();
    }

    /// Runs a named task. If it fails (an error or a panic), every other task is asked to stop
    /// and the process will exit 1.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let token = self.token.clone();
        let failed = self.failed.clone();
        let panic_trigger = fault_hook::trigger_for(name);
        self.tracker.spawn(async move {
            // The task runs as a task of its own so that a panic in it reaches us as a
            // `JoinError` instead of silently ending it while the rest of the process lives on.
            let running = tokio::spawn(async move {
                let Some(trigger) = panic_trigger else {
                    return task.await;
                };
                // The fault hook: the task works normally until it panics mid-flight.
                tokio::select! {
                    result = task => result,
                    () = trigger.fired() => fault_hook::panic_now(name),
                }
            });
            let error = match running.await {
                Ok(Ok(())) => {
                    tracing::debug!(task = name, "task finished");
                    return;
                }
                Ok(Err(error)) => error.to_string(),
                Err(join_error) if join_error.is_panic() => "the task panicked".to_owned(),
                Err(join_error) => join_error.to_string(),
            };
            tracing::error!(task = name, error = %error, "task failed; stopping the service");
            failed.store(true, Ordering::SeqCst);
            token.cancel();
        });
    }

    /// True once a task has failed; the service then reports itself not ready while it drains.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Listens for SIGINT and SIGTERM: the first starts draining, the second exits at once.
    pub fn listen_for_signals(&self) {
        let token = self.token.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested; draining (send the signal again to exit now)");
            token.cancel();
            wait_for_signal().await;
            tracing::warn!("second shutdown signal; exiting without draining");
            std::process::exit(130);
        });
    }

    /// Waits until shutdown is requested (by a signal, a failed task or [`Self::request`]),
    /// then for every task to drain, at most `timeout`. Returns the process exit code.
    pub async fn wait(self, timeout: Duration) -> ExitCode {
        self.token.cancelled().await;
        self.tracker.close();
        if tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::error!(
                timeout = ?timeout,
                "tasks did not drain within the shutdown timeout; exiting anyway (raise POLYTAPE_SHUTDOWN_TIMEOUT if this repeats)"
            );
            return ExitCode::from(1);
        }
        if self.failed.load(Ordering::SeqCst) {
            return ExitCode::from(1);
        }
        tracing::info!("stopped cleanly");
        ExitCode::SUCCESS
    }
}

/// A fault hook for tests: `POLYTAPE_FAULT_PANIC_TASK=<task name>[@<milliseconds>|@file:<path>]`
/// makes that task panic once it has run that long (default 0) or once the file exists, so a
/// test can prove that a panic anywhere ends the process with a non-zero exit code. Unset in
/// production; read once per spawned task.
mod fault_hook {
    use std::{path::PathBuf, time::Duration};

    pub(super) const VARIABLE: &str = "POLYTAPE_FAULT_PANIC_TASK";

    /// When the named task panics.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) enum Trigger {
        /// This long after the task started.
        After(Duration),
        /// As soon as this file exists (a test creates it once it saw the service ready).
        WhenFileExists(PathBuf),
    }

    impl Trigger {
        pub(super) async fn fired(self) {
            match self {
                Trigger::After(delay) => tokio::time::sleep(delay).await,
                Trigger::WhenFileExists(path) => {
                    while !path.exists() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }

    pub(super) fn trigger_for(task: &str) -> Option<Trigger> {
        let value = std::env::var(VARIABLE).ok()?;
        parse(&value, task)
    }

    /// `<task>`, `<task>@<milliseconds>` or `<task>@file:<path>`.
    pub(super) fn parse(value: &str, task: &str) -> Option<Trigger> {
        let (name, trigger) = match value.split_once('@') {
            Some((name, spec)) => match spec.strip_prefix("file:") {
                Some(path) => (name, Trigger::WhenFileExists(PathBuf::from(path))),
                None => (
                    name,
                    Trigger::After(Duration::from_millis(spec.trim().parse::<u64>().ok()?)),
                ),
            },
            None => (value, Trigger::After(Duration::ZERO)),
        };
        (name.trim() == task).then_some(trigger)
    }

    #[allow(clippy::panic)]
    pub(super) fn panic_now(task: &str) -> ! {
        panic!("{VARIABLE} asked task {task} to panic");
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM; only SIGINT stops the process");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_drain_after_a_request() {
        let shutdown = Shutdown::new();
        let drained = Arc::new(AtomicBool::new(false));
        let token = shutdown.token();
        let flag = drained.clone();
        shutdown.spawn("worker", async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            flag.store(true, Ordering::SeqCst);
            Ok(())
        });
        shutdown.request();
        let code = shutdown.wait(Duration::from_secs(5)).await;
        assert!(drained.load(Ordering::SeqCst));
        assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::SUCCESS));
    }

    #[tokio::test]
    async fn a_failing_task_stops_the_others_and_sets_exit_code_1() {
        let shutdown = Shutdown::new();
        let token = shutdown.token();
        shutdown.spawn("waits", async move {
            token.cancelled().await;
            Ok(())
        });
        shutdown.spawn("fails", async { Err("boom".into()) });
        let code = shutdown.wait(Duration::from_secs(5)).await;
        assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::from(1)));
    }

    #[tokio::test]
    async fn a_panicking_task_stops_the_others_and_sets_exit_code_1() {
        let shutdown = Shutdown::new();
        let token = shutdown.token();
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        shutdown.spawn("waits", async move {
            token.cancelled().await;
            flag.store(true, Ordering::SeqCst);
            Ok(())
        });
        shutdown.spawn("panics", async {
            panic!("a real panic, not an error value")
        });
        let code = shutdown.wait(Duration::from_secs(5)).await;
        assert!(
            stopped.load(Ordering::SeqCst),
            "the other task was not stopped"
        );
        assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::from(1)));
    }

    #[test]
    fn the_fault_hook_names_one_task_and_an_optional_trigger() {
        use fault_hook::Trigger;
        assert_eq!(
            fault_hook::parse("loader", "loader"),
            Some(Trigger::After(Duration::ZERO))
        );
        assert_eq!(
            fault_hook::parse("loader@250", "loader"),
            Some(Trigger::After(Duration::from_millis(250)))
        );
        assert_eq!(
            fault_hook::parse("loader@file:/tmp/x", "loader"),
            Some(Trigger::WhenFileExists("/tmp/x".into()))
        );
        assert_eq!(fault_hook::parse("loader@250", "bridge"), None);
        assert_eq!(fault_hook::parse("loader@soon", "loader"), None);
    }

    #[tokio::test]
    async fn a_task_that_does_not_drain_times_out_with_exit_code_1() {
        let shutdown = Shutdown::new();
        shutdown.spawn("stuck", async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        });
        shutdown.request();
        let code = shutdown.wait(Duration::from_millis(50)).await;
        assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::from(1)));
    }
}
