#!/usr/bin/env python3
"""Consumer group through Sluice with kafka-python (its own group protocol code): produce 100
records to a 3-partition topic; consumer A subscribes, processes and commits half, closes
(LeaveGroup); consumer B in the same group resumes from A's committed offsets. Every record
is read exactly once across the two."""
import argparse
import sys
import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

N = 100
HALF = N // 2
PARTITIONS = 3
DEADLINE_S = 60


def fail(msg):
    print(f"FAIL (kafka-python groups): {msg}", file=sys.stderr)
    sys.exit(1)


def produce(bootstrap, topic):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=3)
    futures = [p.send(topic, value=f"value-{i}".encode(), partition=i % PARTITIONS) for i in range(N)]
    for f in futures:
        try:
            f.get(timeout=30)
        except Exception as e:  # noqa: BLE001
            fail(f"produce: {e!r}")
    p.close()


def consumer(bootstrap, group, topic):
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10000,
        heartbeat_interval_ms=500,
        max_poll_records=7,
    )


def consume(c, want, seen, who):
    """Processes exactly `want` records; returns the next offset per partition."""
    positions = {}
    got = 0
    deadline = time.time() + DEADLINE_S
    while got < want:
        if time.time() > deadline:
            fail(f"{who}: {got} of {want} records within {DEADLINE_S} s")
        for tp, records in c.poll(timeout_ms=500, max_records=want - got).items():
            for r in records:
                seen.append((who, r.value.decode()))
                positions[tp] = r.offset + 1
                got += 1
    return positions


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    args = ap.parse_args()
    topic = f"py-kafka-python-groups-{uuid.uuid4().hex[:8]}"
    group = f"py-kafka-python-group-{uuid.uuid4().hex[:8]}"

    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=20000)
    try:
        admin.create_topics([NewTopic(name=topic, num_partitions=PARTITIONS, replication_factor=1)])
    except Exception as e:  # noqa: BLE001
        fail(f"CreateTopics {topic}: {e!r}")
    admin.close()
    produce(args.bootstrap, topic)

    seen = []
    a = consumer(args.bootstrap, group, topic)
    positions = consume(a, HALF, seen, "A")
    try:
        a.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in positions.items()})
    except Exception as e:  # noqa: BLE001
        fail(f"A: commit {positions}: {e!r}")
    a.close()

    b = consumer(args.bootstrap, group, topic)
    for p in range(PARTITIONS):
        tp = TopicPartition(topic, p)
        got = b.committed(tp)
        if got != positions.get(tp):
            fail(f"B reads committed offset {got} for partition {p}, A committed {positions.get(tp)}")
    consume(b, N - HALF, seen, "B")
    end = time.time() + 1.0
    while time.time() < end:
        for records in b.poll(timeout_ms=200).values():
            seen.extend(("B", r.value.decode()) for r in records)
    b.close()

    values = [v for _, v in seen]
    if sorted(values) != sorted(f"value-{i}" for i in range(N)):
        dups = sorted({v for v in values if values.count(v) > 1})
        fail(f"read {len(values)} records ({len(set(values))} distinct), duplicates {dups[:5]}")
    print(f"ok (kafka-python groups): A read {HALF}, B resumed from its commits and read {N - HALF}")


if __name__ == "__main__":
    main()
