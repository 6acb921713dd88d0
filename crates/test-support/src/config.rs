//! The shared config sections of a service under test, and a plain consumer of the local
//! stack: what every service's tests and benchmarks would otherwise write out again.

use std::time::Duration;

use polytape_model::TopicNames;
use polytape_runtime::config::{CommonConfig, KafkaConfig, LogFormat, UpstreamConfig};
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
