#!/usr/bin/env python3
"""Round trip through Sluice with kafka-python (a pure-Python client with its own protocol
code): create a topic, produce 100 keyed records, read them back by explicit assignment."""
import argparse
import sys
import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

N = 100
PARTITIONS = 3


def fail(msg):
    print(f"FAIL (kafka-python): {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    args = ap.parse_args()
    topic = f"py-kafka-python-{uuid.uuid4().hex[:8]}"

    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=20000)
    try:
        admin.create_topics([NewTopic(name=topic, num_partitions=PARTITIONS, replication_factor=1)])
    except Exception as e:  # noqa: BLE001
        fail(f"CreateTopics {topic}: {e!r}")
    admin.close()

    # kafka-python 3.x turns idempotence on by default (InitProducerId, sequence numbers):
    # the default producer is what we test.
    p = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all", retries=3)
    futures = [(i, p.send(topic, key=f"key-{i}".encode(), value=f"value-{i}".encode())) for i in range(N)]
    acked = {}
    for i, f in futures:
        try:
            md = f.get(timeout=30)
        except Exception as e:  # noqa: BLE001
            fail(f"produce of key-{i}: {e!r}")
        acked[f"key-{i}"] = (md.partition, md.offset)
    p.flush()
    p.close()

    c = KafkaConsumer(bootstrap_servers=args.bootstrap, enable_auto_commit=False, group_id=None)
    parts = c.partitions_for_topic(topic)
    if parts != set(range(PARTITIONS)):
        fail(f"metadata shows partitions {parts}, expected {set(range(PARTITIONS))}")
    tps = [TopicPartition(topic, part) for part in range(PARTITIONS)]
    c.assign(tps)
    for tp in tps:
        c.seek(tp, 0)
    got = {}
    deadline = time.time() + 30
    while len(got) < N and time.time() < deadline:
        for tp, msgs in c.poll(timeout_ms=500).items():
            for m in msgs:
                k = m.key.decode()
                if k in got:
                    fail(f"record {k} read twice")
                got[k] = (m.value.decode(), m.partition, m.offset)
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
    print(f"OK kafka-python: {N} records through {topic}")


if __name__ == "__main__":
    main()
