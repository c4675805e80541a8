#!/usr/bin/env python3
"""Consumer group through Sluice with confluent-kafka (librdkafka): produce 100 records to a
3-partition topic; consumer A subscribes, processes and commits half, closes (LeaveGroup);
consumer B in the same group resumes from A's committed offsets. Every record is read
exactly once across the two."""
import argparse
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

N = 100
HALF = N // 2
PARTITIONS = 3
DEADLINE_S = 60


def fail(msg):
    print(f"FAIL (confluent-kafka groups): {msg}", file=sys.stderr)
    sys.exit(1)


def produce(bootstrap, topic):
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 30000})
    for i in range(N):
        p.produce(topic, value=f"value-{i}", partition=i % PARTITIONS,
                  on_delivery=lambda err, _msg: err and errors.append(err))
    left = p.flush(30)
    if left or errors:
        fail(f"produce: {left} undelivered, errors {errors[:5]}")


def consumer(bootstrap, group):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
    })


def consume(c, topic, want, seen, who):
    """Polls until `want` records were processed; returns the next offset per partition."""
    positions = {}
    got = 0
    deadline = time.time() + DEADLINE_S
    while got < want:
        if time.time() > deadline:
            fail(f"{who}: {got} of {want} records within {DEADLINE_S} s")
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            fail(f"{who}: consume error {msg.error()}")
        seen.append((who, msg.value().decode()))
        positions[msg.partition()] = msg.offset() + 1
        got += 1
    return [TopicPartition(topic, p, o) for p, o in sorted(positions.items())]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    args = ap.parse_args()
    topic = f"py-confluent-groups-{uuid.uuid4().hex[:8]}"
    group = f"py-confluent-group-{uuid.uuid4().hex[:8]}"

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    fut = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic]
    try:
        fut.result(timeout=20)
    except Exception as e:  # noqa: BLE001
        fail(f"CreateTopics {topic}: {e}")
    produce(args.bootstrap, topic)

    seen = []
    a = consumer(args.bootstrap, group)
    a.subscribe([topic])
    commits = consume(a, topic, HALF, seen, "A")
    try:
        a.commit(offsets=commits, asynchronous=False)
    except KafkaException as e:
        fail(f"A: commit {commits}: {e}")
    a.close()

    b = consumer(args.bootstrap, group)
    b.subscribe([topic])
    committed = {tp.partition: tp.offset for tp in b.committed(
        [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=20)}
    want = {tp.partition: tp.offset for tp in commits}
    for p in range(PARTITIONS):
        if committed[p] != want.get(p, -1001):
            fail(f"B reads committed offset {committed[p]} for partition {p}, A committed {want.get(p)}")
    consume(b, topic, N - HALF, seen, "B")
    # A little longer: nothing may come twice.
    end = time.time() + 1.0
    while time.time() < end:
        msg = b.poll(0.2)
        if msg is not None and not msg.error():
            seen.append(("B", msg.value().decode()))
    b.close()

    values = [v for _, v in seen]
    if sorted(values) != sorted(f"value-{i}" for i in range(N)):
        dups = sorted({v for v in values if values.count(v) > 1})
        fail(f"read {len(values)} records ({len(set(values))} distinct), duplicates {dups[:5]}")
    print(f"ok (confluent-kafka groups): A read {HALF}, B resumed from its commits and read {N - HALF}")


if __name__ == "__main__":
    main()
