#!/usr/bin/env python3
"""Round trip through Sluice with confluent-kafka (librdkafka): create a topic with the admin
client, produce 100 keyed records, read them back by explicit partition assignment."""
import argparse
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

N = 100
PARTITIONS = 3


def fail(msg):
    print(f"FAIL (confluent-kafka): {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    args = ap.parse_args()
    topic = f"py-confluent-{uuid.uuid4().hex[:8]}"

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    fut = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic]
    try:
        fut.result(timeout=20)
    except Exception as e:  # noqa: BLE001
        fail(f"CreateTopics {topic}: {e}")
    md = admin.list_topics(timeout=20)
    if topic not in md.topics or len(md.topics[topic].partitions) != PARTITIONS:
        fail(f"metadata after CreateTopics does not show {topic} with {PARTITIONS} partitions")

    errors = []
    acked = {}

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[msg.key().decode()] = (msg.partition(), msg.offset())

    p = Producer({"bootstrap.servers": args.bootstrap, "acks": "all", "message.timeout.ms": 30000})
    for i in range(N):
        p.produce(topic, key=f"key-{i}", value=f"value-{i}", on_delivery=on_delivery)
    left = p.flush(30)
    if left or errors:
        fail(f"produce: {left} undelivered, errors {errors[:5]}")
    if len(acked) != N:
        fail(f"produce: {len(acked)} of {N} acknowledged")

    c = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "py-confluent",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    })
    c.assign([TopicPartition(topic, part, 0) for part in range(PARTITIONS)])
    got = {}
    deadline = time.time() + 30
    while len(got) < N and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            fail(f"consume error: {m.error()}")
        k = m.key().decode()
        if k in got:
            fail(f"record {k} read twice")
        got[k] = (m.value().decode(), m.partition(), m.offset())
    c.close()
    if len(got) != N:
        fail(f"consumed {len(got)} of {N} records within 30 s")
    for i in range(N):
        k = f"key-{i}"
        v, part, off = got[k]
        if v != f"value-{i}":
            fail(f"{k}: value {v!r}, expected 'value-{i}'")
        if (part, off) != acked[k]:
            fail(f"{k}: read at {part}/{off}, acknowledged at {acked[k]}")
    print(f"OK confluent-kafka: {N} records through {topic}")


if __name__ == "__main__":
    try:
        main()
    except KafkaException as e:
        fail(str(e))
