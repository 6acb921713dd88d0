//! The shared config sections of a service under test, and a plain consumer of the local
//! stack: what every service's tests and benchmarks would otherwise write out again.

use std::time::Duration;

use polytape_model::TopicNames;
use polytape_runtime::config::{CommonConfig, KafkaConfig, KeySpec, LogFormat, UpstreamConfig};
use rdkafka::consumer::BaseConsumer;

use crate::stack::endpoints;

/// Pretty logs at `log_level`, a 30 s shutdown.
pub fn common(log_level: &str) -> CommonConfig {
    CommonConfig {
        log_format: LogFormat::Pretty,
        log_level: log_level.to_owned(),
        shutdown_timeout: Duration::from_secs(30),
    }
}

/// The local stack's broker and Schema Registry, under the prefix of `names`.
pub fn kafka(names: &TopicNames) -> KafkaConfig {
    let stack = endpoints();
    KafkaConfig {
        kafka_brokers: stack.kafka_brokers,
        schema_registry_url: stack.schema_registry_url,
        topic_prefix: names.prefix().to_owned(),
    }
}

/// Every upstream at a simulator: `base` is its HTTP root, `ws_url` its market channel.
pub fn simulator_upstream(base: &str, ws_url: String) -> UpstreamConfig {
    UpstreamConfig {
        gamma_url: format!("{base}/gamma"),
        data_api_url: format!("{base}/data"),
        clob_url: format!("{base}/clob"),
        clob_ws_url: ws_url,
    }
}

/// A consumer of the local stack in `group`, committing nothing by itself.
pub fn reader(group: &str) -> BaseConsumer {
    match polytape_kafka::base_config(&endpoints().kafka_brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
    {
        Ok(consumer) => consumer,
        Err(error) => panic!("cannot create a consumer of the local stack: {error}"),
    }
}

/// Checks that the configuration table between `<!-- keys: begin -->` and `<!-- keys: end -->`
/// in `readme` is the one generated from `sections`; with `POLYTAPE_BLESS=1` it rewrites it.
pub fn assert_readme_lists_the_keys(readme: &std::path::Path, sections: &[&[KeySpec]]) {
    const BEGIN: &str = "<!-- keys: begin (generated from the key declarations; POLYTAPE_BLESS=1 cargo test rewrites it) -->\n";
    const END: &str = "<!-- keys: end -->";
    let text = std::fs::read_to_string(readme)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", readme.display()));
    let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        panic!(
            "{} has no generated keys block ({BEGIN:?} … {END:?})",
            readme.display()
        );
    };
    let generated = polytape_runtime::config::markdown_table(sections);
    let current = &text[begin + BEGIN.len()..end];
    if current == generated {
        return;
    }
    if std::env::var_os("POLYTAPE_BLESS").is_some() {
        let rewritten = format!("{}{BEGIN}{generated}{}", &text[..begin], &text[end..]);
        std::fs::write(readme, rewritten)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", readme.display()));
        return;
    }
    panic!(
        "{}'s configuration table differs from the key declarations; run with POLYTAPE_BLESS=1 to regenerate it\n--- in the README:\n{current}\n--- declared:\n{generated}",
        readme.display()
    );
}
