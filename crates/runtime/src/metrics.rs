//! Prometheus metrics in the process-wide default registry, and the internal-event pattern:
//! an event's log line and its metric are emitted together by one `emit`, so they never
//! drift apart.

use std::sync::OnceLock;

use prometheus::{Encoder as _, IntGaugeVec, Opts, TextEncoder};

/// Something that happened inside a service: logs its line and updates its metrics.
pub trait InternalEvent {
    fn emit(self);
}

/// The Prometheus text exposition of every registered metric.
pub fn render() -> Result<String, prometheus::Error> {
    let mut buffer = Vec::new();
    TextEncoder::new().encode(&prometheus::gather(), &mut buffer)?;
    Ok(String::from_utf8_lossy(&buffer).into_owned())
}

/// The sum over every series of a counter or gauge family in this process (0 when it does not
/// exist yet): status lines, benchmarks and tests read metrics through this.
pub fn family_total(name: &str) -> f64 {
    prometheus::gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric())
        // A series carries either a counter or a gauge; the other reads as 0.
        .map(|metric| metric.get_counter().get_value() + metric.get_gauge().get_value())
        .sum()
}

/// Sets `polytape_build_info{service, version} 1`.
pub fn build_info(service: &str) {
    static BUILD_INFO: OnceLock<Option<IntGaugeVec>> = OnceLock::new();
    let gauge = BUILD_INFO.get_or_init(|| {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "polytape_build_info",
                "Polytape service and version; always 1",
            ),
            &["service", "version"],
        )
        .ok()?;
        prometheus::register(Box::new(gauge.clone())).ok()?;
        Some(gauge)
    });
    if let Some(gauge) = gauge {
        gauge
            .with_label_values(&[service, env!("CARGO_PKG_VERSION")])
            .set(1);
    }
}

/// Registers a metric in the default registry, returning it. Registration fails only for a
/// duplicate name, which is a programming error caught by tests; the metric still works
/// unregistered, so the service keeps running.
pub fn register<M: prometheus::core::Collector + Clone + 'static>(metric: M) -> M {
    if let Err(error) = prometheus::register(Box::new(metric.clone())) {
        tracing::error!(error = %error, "metric registration failed; it will not be exported");
    }
    metric
}
