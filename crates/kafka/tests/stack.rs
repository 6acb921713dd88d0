//! Every record type through the real broker and Schema Registry: produced with our codec
//! (schema registered), consumed and decoded equal by our decoder, and the same bytes decoded
//! by Python confluent-kafka's AvroDeserializer, which proves downstream consumers can read
//! our topics. Run through `cargo xtask test` (or with `cargo xtask stack up` running).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{fmt::Debug, process::Command, time::Duration};

use polytape_codec::{AvroRecord, RecordDecoder, SchemaRegistryClient};
use polytape_kafka::{RecordProducer, SharedProducer, create_producer, ensure_topics};
use polytape_model::{Topic, TopicNames, samples};
use polytape_test_support::stack::{
    StackEndpoints, endpoints, ensured_isolated_topics, isolated_topics,
};
use rdkafka::{
    Message as _, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer as _},
};

struct Checked {
    topic: String,
    key: String,
    record_json: serde_json::Value,
    partitions: i32,
}

/// The first message on `topic`, read by assignment (no consumer-group round trips).
fn first_message(brokers: &str, topic: &str, partitions: i32) -> (Vec<u8>, Vec<u8>) {
    let consumer: BaseConsumer = polytape_kafka::base_config(brokers)
        .set("group.id", format!("check-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    for _ in 0..300 {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            return (
                message.key().unwrap().to_vec(),
                message.payload().unwrap().to_vec(),
            );
        }
    }
    panic!("no message on {topic} within 30 s");
}

async fn produce_and_consume<T: AvroRecord + PartialEq + Debug>(
    sample: T,
    stack: &StackEndpoints,
    names: &TopicNames,
    registry: &SchemaRegistryClient,
) -> Checked {
    let producer = SharedProducer::connect(&stack.kafka_brokers).unwrap();
    let records = RecordProducer::<T>::register(producer, registry, names)
        .await
        .unwrap();
    records.send(&sample).await.unwrap();

    let topic = names.name(T::TOPIC);
    let partitions = T::TOPIC.partitions();
    let brokers = stack.kafka_brokers.clone();
    let topic_for_read = topic.clone();
    let (key, payload) =
        tokio::task::spawn_blocking(move || first_message(&brokers, &topic_for_read, partitions))
            .await
            .unwrap();
    assert_eq!(key, sample.record_key().into_bytes(), "key of {}", T::NAME);
    assert_eq!(payload[0], 0, "Confluent magic byte");

    let decoder = RecordDecoder::<T>::new(registry.clone());
    let decoded = decoder.decode(&payload).await.unwrap();
    assert_eq!(decoded, sample, "decoded {}", T::NAME);

    Checked {
        topic,
        key: sample.record_key(),
        record_json: serde_json::to_value(&sample).unwrap(),
        partitions,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_type_round_trips_and_python_reads_it() {
    let stack = endpoints();
    let names = ensured_isolated_topics("records").await;
    let registry = SchemaRegistryClient::new(&stack.schema_registry_url).unwrap();

    let checked = vec![
        produce_and_consume(samples::market(), &stack, &names, &registry).await,
        produce_and_consume(samples::event(), &stack, &names, &registry).await,
        produce_and_consume(samples::trade(), &stack, &names, &registry).await,
        produce_and_consume(samples::book_snapshot(), &stack, &names, &registry).await,
        produce_and_consume(samples::price_change(), &stack, &names, &registry).await,
        produce_and_consume(samples::last_trade(), &stack, &names, &registry).await,
        produce_and_consume(samples::tick_size_change(), &stack, &names, &registry).await,
        produce_and_consume(samples::best_bid_ask(), &stack, &names, &registry).await,
        produce_and_consume(samples::market_lifecycle(), &stack, &names, &registry).await,
        produce_and_consume(samples::price_point(), &stack, &names, &registry).await,
        produce_and_consume(samples::candle(), &stack, &names, &registry).await,
        produce_and_consume(samples::book_state(), &stack, &names, &registry).await,
        produce_and_consume(samples::continuity(), &stack, &names, &registry).await,
        produce_and_consume(samples::dead_letter(), &stack, &names, &registry).await,
        produce_and_consume(samples::leaderboard_entry(), &stack, &names, &registry).await,
        produce_and_consume(samples::signal(), &stack, &names, &registry).await,
    ];
    assert_eq!(checked.len(), Topic::ALL.len());

    // The same bytes through an independent client.
    let expected: serde_json::Map<String, serde_json::Value> = checked
        .into_iter()
        .map(|check| {
            let spec = serde_json::json!({"key": check.key, "record": check.record_json, "partitions": check.partitions});
            (check.topic, spec)
        })
        .collect();
    let expected_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(expected_file.path(), serde_json::to_vec(&expected).unwrap()).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools/local-stack/check_topics_with_confluent_kafka.py");
    let output = Command::new(&stack.python)
        .arg(script)
        .args([
            "--brokers",
            &stack.kafka_brokers,
            "--registry",
            &stack.schema_registry_url,
        ])
        .arg("--expected")
        .arg(expected_file.path())
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run {} ({error}); run `cargo xtask stack up` once to create the venv",
                stack.python.display()
            )
        });
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "python confluent-kafka check failed:\n{report}"
    );
    assert!(
        report.contains(&format!("{} passed, 0 failed", Topic::ALL.len())),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consumer_resumes_after_the_last_stored_offset_and_never_skips() {
    use rdkafka::{
        consumer::Consumer as _,
        producer::{FutureProducer, FutureRecord},
    };

    let stack = endpoints();
    let names = isolated_topics("resume");
    let topic = names.name(Topic::Trades);
    ensure_topics(&stack.kafka_brokers, &names, &[Topic::Trades], 1)
        .await
        .unwrap();
    let producer: FutureProducer = create_producer(&stack.kafka_brokers).unwrap();
    for number in 0..10 {
        let payload = number.to_string();
        producer
            .send(
                FutureRecord::to(&topic).key("same-key").payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    let group = format!("{}-group", names.prefix());
    let read = |count: usize, store_up_to: Option<usize>| {
        let brokers = stack.kafka_brokers.clone();
        let group = group.clone();
        let topic = topic.clone();
        async move {
            let consumer =
                polytape_kafka::create_consumer(&brokers, &group, "resume-test").unwrap();
            consumer.subscribe(&[&topic]).unwrap();
            let mut seen = Vec::new();
            while seen.len() < count {
                let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
                    .await
                    .unwrap()
                    .unwrap();
                let value: u32 = std::str::from_utf8(message.payload().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                seen.push(value);
                if store_up_to.is_some_and(|limit| seen.len() <= limit) {
                    polytape_kafka::store_processed(
                        &consumer,
                        [(topic.clone(), message.partition(), message.offset() + 1)],
                    )
                    .unwrap();
                }
            }
            polytape_kafka::commit_stored_offsets(&consumer).unwrap();
            seen
        }
    };
    // Process 6, but only 4 are durably handled (stored) before the "crash".
    let first = read(6, Some(4)).await;
    assert_eq!(first, vec![0, 1, 2, 3, 4, 5]);
    // The restarted consumer replays 4 and 5 (at least once) and skips nothing.
    let second = read(6, None).await;
    assert_eq!(second, vec![4, 5, 6, 7, 8, 9]);
}
