//! Start-up errors of every service, from one table: one clear line naming the problem, exit
//! code 2, no panic — for an unknown config key, an unparsable URL and an unreachable
//! dependency.

use std::path::Path;

use polytape_e2e::{Service, workspace_binary};
use polytape_test_support::cli::{
    assert_rejects_unknown_config_key, assert_rejects_unparsable_url,
    assert_reports_unreachable_dependency,
};

/// What each service is started with to make it fail.
struct Case {
    service: Service,
    /// A URL key the service reads, given an unparsable value.
    url_key: &'static str,
    /// The dependency the service checks at start, pointed at a closed port.
    dependency_key: &'static str,
    dependency_value: &'static str,
    /// What the error line must name.
    dependency_named: &'static str,
}

const KAFKA_KEY: &str = "POLYTAPE_KAFKA_BROKERS";
const KAFKA_CLOSED: &str = "127.0.0.1:1";
const KAFKA_NAMED: &str = "Kafka at 127.0.0.1:1";

const CASES: [Case; 6] = [
    Case {
        service: Service::Api,
        url_key: "POLYTAPE_CLICKHOUSE_URL",
        dependency_key: "POLYTAPE_CLICKHOUSE_URL",
        dependency_value: "http://127.0.0.1:1",
        dependency_named: "ClickHouse at http://127.0.0.1:1",
    },
    Case {
        service: Service::CandleBuilder,
        url_key: "POLYTAPE_SCHEMA_REGISTRY_URL",
        dependency_key: KAFKA_KEY,
        dependency_value: KAFKA_CLOSED,
        dependency_named: KAFKA_NAMED,
    },
    Case {
        service: Service::Signals,
        url_key: "POLYTAPE_SCHEMA_REGISTRY_URL",
        dependency_key: KAFKA_KEY,
        dependency_value: KAFKA_CLOSED,
        dependency_named: KAFKA_NAMED,
    },
    Case {
        service: Service::Collector,
        url_key: "POLYTAPE_GAMMA_URL",
        dependency_key: KAFKA_KEY,
        dependency_value: KAFKA_CLOSED,
        dependency_named: KAFKA_NAMED,
    },
    Case {
        service: Service::Sink,
        url_key: "POLYTAPE_CLICKHOUSE_URL",
        dependency_key: KAFKA_KEY,
        dependency_value: KAFKA_CLOSED,
        dependency_named: KAFKA_NAMED,
    },
    Case {
        service: Service::WsBridge,
        url_key: "POLYTAPE_CLOB_WS_URL",
        dependency_key: KAFKA_KEY,
        dependency_value: KAFKA_CLOSED,
        dependency_named: KAFKA_NAMED,
    },
];

#[test]
fn every_service_lists_the_services_it_tests() {
    // The table covers every service once: a new service must add its row.
    for service in Service::ALL {
        assert_eq!(
            CASES.iter().filter(|case| case.service == service).count(),
            1,
            "{} has no start-up error case (or more than one)",
            service.binary()
        );
    }
}

/// Runs `check` on every service's binary, naming the service first (a failure's message
/// comes from the shared assertions, which do not know it).
fn for_each_service(check: impl Fn(&Path, &Case)) {
    for case in &CASES {
        eprintln!("[startup_errors] {}", case.service.binary());
        check(&workspace_binary(case.service.binary()), case);
    }
}

#[test]
fn unknown_key_in_the_config_file() {
    for_each_service(|binary, _| assert_rejects_unknown_config_key(binary));
}

#[test]
fn unparsable_url() {
    for_each_service(|binary, case| assert_rejects_unparsable_url(binary, case.url_key));
}

#[test]
fn unreachable_dependency() {
    for_each_service(|binary, case| {
        assert_reports_unreachable_dependency(
            binary,
            case.dependency_key,
            case.dependency_value,
            case.dependency_named,
        )
    });
}
