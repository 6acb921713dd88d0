"""Reads one record from each given topic with confluent-kafka's AvroDeserializer (schema fetched
from the Schema Registry by the id in each message) and compares it with the expected record.

This is the downstream consumer's view of Polytape's topics: no Polytape code is involved.
Called by the Rust integration test `crates/kafka/tests/stack.rs`; exits 1 on any mismatch.

Usage: check_topics_with_confluent_kafka.py --brokers H:P --registry URL --expected FILE
where FILE maps topic name -> the record as Polytape's JSON (decimals as strings, bytes as
base64, times as epoch milliseconds).
"""

import argparse
import base64
import datetime
import decimal
import json
import sys
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def normalise(value):
    """Brings a decoded Avro value and an expected JSON value to one comparable form."""
    if isinstance(value, decimal.Decimal):
        return ("decimal", value.normalize())
    if isinstance(value, str):
        try:
            parsed = decimal.Decimal(value)
        except decimal.InvalidOperation:
            return value
        # Only plain decimal literals count as numbers; hex ids and names stay strings.
        if value.replace(".", "", 1).replace("-", "", 1).isdigit():
            return ("decimal", parsed.normalize())
        return value
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, list):
        return [normalise(item) for item in value]
    if isinstance(value, dict):
        return {key: normalise(item) for key, item in value.items()}
    return value


def first_message(brokers, topic, partitions, timeout_seconds=30.0):
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"check-{uuid.uuid4()}",
        "enable.auto.commit": False,
    })
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout_seconds)
        while datetime.datetime.now() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                raise RuntimeError(f"{topic}: {message.error()}")
            return message
        raise RuntimeError(f"{topic}: no message within {timeout_seconds} s")
    finally:
        consumer.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--expected", required=True)
    arguments = parser.parse_args()

    with open(arguments.expected) as file:
        expected = json.load(file)
    registry = SchemaRegistryClient({"url": arguments.registry})
    deserializer = AvroDeserializer(registry)

    failures = 0
    for topic, spec in expected.items():
        message = first_message(arguments.brokers, topic, spec["partitions"])
        decoded = deserializer(message.value(), SerializationContext(topic, MessageField.VALUE))
        if normalise(decoded) != normalise(spec["record"]):
            failures += 1
            print(f"MISMATCH {topic}\n  decoded:  {decoded}\n  expected: {spec['record']}")
        elif message.key().decode() != spec["key"]:
            failures += 1
            print(f"MISMATCH {topic} key: {message.key()!r} != {spec['key']!r}")
        else:
            print(f"ok {topic}")
    print(f"{len(expected) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
