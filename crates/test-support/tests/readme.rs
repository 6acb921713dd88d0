//! The root README's table of the keys several services share is generated from their
//! declarations (each service's README lists its own keys, checked by its tests).

use polytape_runtime::config::{ClickHouseConfig, CommonConfig, KafkaConfig, UpstreamConfig};

#[test]
fn the_readme_lists_every_shared_configuration_key() {
    polytape_test_support::config::assert_readme_lists_the_keys(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
        &[
            CommonConfig::KEYS,
            KafkaConfig::KEYS,
            ClickHouseConfig::KEYS,
            UpstreamConfig::KEYS,
        ],
    );
}
