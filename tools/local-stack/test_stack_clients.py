"""The local stack seen by independent clients: Python confluent-kafka produces and consumes
1,000 keyed messages with an idempotent producer through the broker.

Uses the stack named by POLYTAPE_TEST_STACK (set by `cargo xtask test`), else the development
stack of `cargo xtask stack up`.
"""

import json
import os
import time
import unittest
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def stack_brokers():
    path = os.environ.get("POLYTAPE_TEST_STACK")
    if not path:
        return "127.0.0.1:9092"
    with open(path) as file:
        return json.load(file)["kafka_brokers"]


class IdempotentProduceConsume(unittest.TestCase):
    def test_a_thousand_keyed_messages_round_trip_in_order_per_key(self):
        brokers = stack_brokers()
        topic = f"pytest.{uuid.uuid4().hex}"
        admin = AdminClient({"bootstrap.servers": brokers})
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(30)

        producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "acks": "all"})
        delivered = []
        for number in range(1000):
            key = f"key-{number % 17}"
            producer.produce(topic, key=key, value=f"{key}:{number}",
                             on_delivery=lambda error, message: delivered.append(error))
        self.assertEqual(producer.flush(30), 0, "every message delivered")
        self.assertEqual(len(delivered), 1000)
        self.assertTrue(all(error is None for error in delivered), delivered[:3])

        consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"g-{uuid.uuid4().hex}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([topic])
        received = []
        deadline = time.monotonic() + 60
        while len(received) < 1000 and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            received.append((message.key().decode(), message.value().decode()))
        consumer.close()

        self.assertEqual(len(received), 1000)
        self.assertEqual(len(set(received)), 1000, "no duplicates")
        by_key = {}
        for key, value in received:
            self.assertTrue(value.startswith(key + ":"))
            by_key.setdefault(key, []).append(int(value.split(":")[1]))
        for key, numbers in by_key.items():
            self.assertEqual(numbers, sorted(numbers), f"order of {key}")


if __name__ == "__main__":
    unittest.main()
