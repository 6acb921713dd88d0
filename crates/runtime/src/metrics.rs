//! Prometheus metrics in the process-wide default registry, and the internal-event pattern:
//! an event's log line and its metric are emitted together by one `emit`, so they never
//! drift apart.

use std::sync::OnceLock;

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, TextEncoder,
};

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
        gauge_vec(
            "polytape_build_info",
            "Polytape service and version; always 1",
            &["service", "version"],
        )
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
fn register<M: prometheus::core::Collector + Clone + 'static>(metric: M) -> M {
    if let Err(error) = prometheus::register(Box::new(metric.clone())) {
        tracing::error!(error = %error, "metric registration failed; it will not be exported");
    }
    metric
}

/// The one way a metric is defined: built, registered in the default registry, and never a
/// reason to stop. An invalid definition (a programming error; each service's metrics test
/// builds them all) is logged and yields `None`, and recording into `None` does nothing.
pub fn define<M: prometheus::core::Collector + Clone + 'static>(
    name: &str,
    built: Result<M, prometheus::Error>,
) -> Option<M> {
    match built {
        Ok(metric) => Some(register(metric)),
        Err(error) => {
            tracing::error!(metric = name, error = %error, "invalid metric definition; it will not be recorded");
            None
        }
    }
}

/// A counter (see [`define`]).
pub fn counter(name: &str, help: &str) -> Option<IntCounter> {
    define(name, IntCounter::new(name, help))
}

/// A counter with labels (see [`define`]).
pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> Option<IntCounterVec> {
    define(name, IntCounterVec::new(Opts::new(name, help), labels))
}

/// A gauge (see [`define`]).
pub fn gauge(name: &str, help: &str) -> Option<IntGauge> {
    define(name, IntGauge::new(name, help))
}

/// A gauge with labels (see [`define`]).
pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> Option<IntGaugeVec> {
    define(name, IntGaugeVec::new(Opts::new(name, help), labels))
}

/// A histogram with these bucket bounds (see [`define`]).
pub fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Option<Histogram> {
    define(
        name,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)),
    )
}

/// A histogram with labels and these bucket bounds (see [`define`]).
pub fn histogram_vec(
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> Option<HistogramVec> {
    define(
        name,
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_definition_is_none_not_a_panic() {
        assert!(counter("not a valid name", "help").is_none());
        assert!(counter_vec("polytape_test_bad_labels_total", "help", &["a b"]).is_none());
        let valid = counter_vec("polytape_test_defined_total", "help", &["kind"]);
        let Some(valid) = valid else {
            panic!("a valid definition is defined");
        };
        valid.with_label_values(&["x"]).inc();
        assert_eq!(family_total("polytape_test_defined_total"), 1.0);
    }
}
