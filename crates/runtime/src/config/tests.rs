use std::io::Write as _;

use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize)]
struct TestConfig {
    #[serde(flatten)]
    common: CommonConfig,
    #[serde(flatten)]
    kafka: KafkaConfig,
    #[serde(flatten)]
    upstream: UpstreamConfig,
    collector_admin_addr: String,
}

const TEST_ADMIN_ADDR: &[KeySpec] = &[KeySpec::new(
    "collector_admin_addr",
    KeyKind::SocketAddr,
    "127.0.0.1:9101",
    "admin listen address",
)];

impl ServiceConfig for TestConfig {
    const SERVICE: Service = Service::Collector;
    const KEYS: &'static [&'static [KeySpec]] = &[
        CommonConfig::KEYS,
        KafkaConfig::KEYS,
        UpstreamConfig::KEYS,
        TEST_ADMIN_ADDR,
    ];

    fn common(&self) -> &CommonConfig {
        &self.common
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn file(contents: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    file
}

#[test]
fn defaults_load() {
    let loaded = load_from::<TestConfig>(None, env(&[])).unwrap();
    assert_eq!(loaded.config.kafka.kafka_brokers, "127.0.0.1:9092");
    assert_eq!(
        loaded.config.upstream.gamma_url,
        "https://gamma-api.polymarket.com"
    );
    assert_eq!(loaded.config.collector_admin_addr, "127.0.0.1:9101");
    assert_eq!(
        loaded.config.common.shutdown_timeout,
        std::time::Duration::from_secs(30)
    );
    assert!(loaded.warnings.is_empty());
}

#[test]
fn env_overrides_file_overrides_defaults() {
    let config_file = file("kafka_brokers = \"file:1\"\ngamma_url = \"http://file.example\"\n");
    let loaded = load_from::<TestConfig>(
        Some(config_file.path()),
        env(&[
            ("POLYTAPE_KAFKA_BROKERS", "env:2"),
            ("POLYTAPE_LOG_FORMAT", "json"),
        ]),
    )
    .unwrap();
    assert_eq!(loaded.config.kafka.kafka_brokers, "env:2");
    assert_eq!(loaded.config.upstream.gamma_url, "http://file.example");
    assert_eq!(loaded.config.common.log_format, LogFormat::Json);
}

#[test]
fn unknown_key_in_a_file_is_an_error_naming_it() {
    let config_file = file("kafka_borkers = \"x:1\"\nnot_a_thing_at_all = 3\n");
    let error = load_from::<TestConfig>(Some(config_file.path()), env(&[])).unwrap_err();
    let text = error.to_string();
    assert_eq!(error.problems.len(), 2, "{text}");
    assert!(
        text.contains("`kafka_borkers`") && text.contains("did you mean `kafka_brokers`?"),
        "{text}"
    );
    assert!(text.contains("`not_a_thing_at_all`"), "{text}");
}

#[test]
fn every_bad_value_is_reported_at_once() {
    let error = load_from::<TestConfig>(
        None,
        env(&[
            ("POLYTAPE_GAMMA_URL", "::not a url::"),
            ("POLYTAPE_CLOB_URL", "ftp://wrong.scheme"),
            ("POLYTAPE_COLLECTOR_ADMIN_ADDR", "nowhere"),
        ]),
    )
    .unwrap_err();
    let text = error.to_string();
    assert_eq!(error.problems.len(), 3, "{text}");
    assert!(
        text.contains("POLYTAPE_GAMMA_URL='::not a url::' is not a valid URL"),
        "{text}"
    );
    assert!(
        text.contains("POLYTAPE_CLOB_URL='ftp://wrong.scheme' has scheme `ftp`"),
        "{text}"
    );
    assert!(
        text.contains("POLYTAPE_COLLECTOR_ADMIN_ADDR='nowhere'"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 3);
}

#[test]
fn another_services_variable_is_ignored_and_an_unknown_one_warned() {
    let loaded = load_from::<TestConfig>(
        None,
        env(&[
            ("POLYTAPE_API_ADDR", "not even an address"),
            ("POLYTAPE_KAFKA_BROKER", "typo:1"),
            ("POLYTAPE_BLESS", "1"),
            ("HOME", "/root"),
        ]),
    )
    .unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].contains("POLYTAPE_KAFKA_BROKER "),
        "{:?}",
        loaded.warnings
    );
    assert!(
        loaded.warnings[0].contains("did you mean POLYTAPE_KAFKA_BROKERS?"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn numbers_from_the_environment_and_the_defaults_are_checked_by_value() {
    #[derive(Debug, Deserialize)]
    struct BridgeConfig {
        #[serde(flatten)]
        common: CommonConfig,
        ws_max_assets_per_connection: u32,
    }
    impl ServiceConfig for BridgeConfig {
        const SERVICE: Service = Service::WsBridge;
        const KEYS: &'static [&'static [KeySpec]] = &[
            CommonConfig::KEYS,
            &[KeySpec::new(
                "ws_max_assets_per_connection",
                KeyKind::Count {
                    min: 1,
                    max: 10_000,
                },
                "500",
                "token ids per connection",
            )],
        ];

        fn common(&self) -> &CommonConfig {
            &self.common
        }
    }
    let defaults = load_from::<BridgeConfig>(None, env(&[])).unwrap();
    assert_eq!(defaults.config.ws_max_assets_per_connection, 500);
    let from_env = load_from::<BridgeConfig>(
        None,
        env(&[("POLYTAPE_WS_MAX_ASSETS_PER_CONNECTION", "250")]),
    )
    .unwrap();
    assert_eq!(from_env.config.ws_max_assets_per_connection, 250);
    let too_big = load_from::<BridgeConfig>(
        None,
        env(&[("POLYTAPE_WS_MAX_ASSETS_PER_CONNECTION", "20000")]),
    )
    .unwrap_err();
    assert!(
        too_big
            .to_string()
            .contains("='20000' must be a whole number from 1 to 10000"),
        "{too_big}"
    );
}

#[test]
fn a_type_error_names_the_variable() {
    let error =
        load_from::<TestConfig>(None, env(&[("POLYTAPE_SHUTDOWN_TIMEOUT", "soon")])).unwrap_err();
    assert!(
        error.to_string().contains("POLYTAPE_SHUTDOWN_TIMEOUT"),
        "{error}"
    );
}

#[test]
fn another_services_key_in_a_file_is_an_error_naming_the_service() {
    let config_file = file("api_addr = \"127.0.0.1:1\"\n");
    let error = load_from::<TestConfig>(Some(config_file.path()), env(&[])).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("`api_addr`") && text.contains("is not a known key of polytape-collector"),
        "{text}"
    );
}

#[test]
fn every_declared_default_passes_its_own_check() {
    for spec in TestConfig::KEYS.iter().flat_map(|section| section.iter()) {
        if let Some(default) = spec.default {
            assert_eq!(
                check::check_value(spec.kind, default),
                None,
                "{}",
                spec.name
            );
        }
    }
}

#[test]
fn the_markdown_table_lists_every_key_with_its_variable_and_default() {
    let table = markdown_table(&[KafkaConfig::KEYS, ClickHouseConfig::KEYS]);
    assert!(
        table.contains("| `kafka_brokers` | `POLYTAPE_KAFKA_BROKERS` | `127.0.0.1:9092` |"),
        "{table}"
    );
    assert!(
        table.contains("| `topic_prefix` | `POLYTAPE_TOPIC_PREFIX` | (empty) |"),
        "{table}"
    );
    assert!(
        table.contains("| `clickhouse_password` | `POLYTAPE_CLICKHOUSE_PASSWORD` | (none) |"),
        "{table}"
    );
    assert_eq!(
        table.lines().count(),
        2 + KafkaConfig::KEYS.len() + ClickHouseConfig::KEYS.len()
    );
}

#[test]
fn a_missing_config_file_is_an_error() {
    let error = load_from::<TestConfig>(Some(Path::new("/nonexistent/polytape.toml")), env(&[]))
        .unwrap_err();
    assert!(error.to_string().contains("cannot be read"), "{error}");
}

#[test]
fn secrets_are_not_echoed() {
    let sources = HashMap::from([(
        "api_admin_token",
        ValueSource::Env("POLYTAPE_API_ADMIN_TOKEN".into()),
    )]);
    const ADMIN_TOKEN: &[KeySpec] = &[KeySpec::secret("api_admin_token", "admin token")];
    let mut report = ValidationReport {
        keys: &[ADMIN_TOKEN],
        sources: &sources,
        problems: Vec::new(),
    };
    report.problem("api_admin_token", "hunter2", "is too short");
    let text = report.problems[0].to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("<secret>"), "{text}");
}
