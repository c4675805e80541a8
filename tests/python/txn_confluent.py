#!/usr/bin/env python3
"""Transactional round trip through Sluice with confluent-kafka (librdkafka): a transactional
producer commits one transaction and aborts another; a read_committed consumer sees only the
committed records, a read_uncommitted one sees both; offsets sent to the committed
transaction are what the group reads back."""
import argparse
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

COMMITTED = 20
ABORTED = 7


def fail(msg):
    print(f"FAIL (confluent-kafka transactions): {msg}", file=sys.stderr)
    sys.exit(1)


def read_all(bootstrap, topic, isolation, quiet_s=2.0):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"py-txn-reader-{uuid.uuid4().hex[:6]}",
        "enable.auto.commit": False,
        "isolation.level": isolation,
        "auto.offset.reset": "earliest",
    })
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    last = time.time()
    deadline = time.time() + 30
    while time.time() - last < quiet_s and time.time() < deadline:
        m = c.poll(0.1)
        if m is None:
            continue
        if m.error():
            fail(f"{isolation} consumer: {m.error()}")
        out.append(m.value().decode())
        last = time.time()
    c.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    args = ap.parse_args()
    topic = f"py-txn-{uuid.uuid4().hex[:8]}"
    group = f"py-txn-group-{uuid.uuid4().hex[:6]}"

    p = Producer({
        "bootstrap.servers": args.bootstrap,
        "transactional.id": f"py-txn-{uuid.uuid4().hex[:6]}",
        "transaction.timeout.ms": 60000,
    })
    p.init_transactions(20)

    p.begin_transaction()
    for i in range(COMMITTED):
        p.produce(topic, value=f"c{i}".encode(), key=b"k", partition=0)
    # A consumer group's position, committed atomically with the records.
    reader = Consumer({"bootstrap.servers": args.bootstrap, "group.id": group,
                       "enable.auto.commit": False})
    p.send_offsets_to_transaction([TopicPartition(topic, 0, 42)], reader.consumer_group_metadata(), 20)
    p.commit_transaction(20)

    p.begin_transaction()
    for i in range(ABORTED):
        p.produce(topic, value=f"a{i}".encode(), key=b"k", partition=0)
    p.flush(20)
    p.send_offsets_to_transaction([TopicPartition(topic, 0, 99)], reader.consumer_group_metadata(), 20)
    p.abort_transaction(20)

    committed = read_all(args.bootstrap, topic, "read_committed")
    want = [f"c{i}" for i in range(COMMITTED)]
    if committed != want:
        fail(f"read_committed saw {committed}, want {want}")
    everything = read_all(args.bootstrap, topic, "read_uncommitted")
    if len(everything) != COMMITTED + ABORTED:
        fail(f"read_uncommitted saw {len(everything)} records, want {COMMITTED + ABORTED}")

    got = reader.committed([TopicPartition(topic, 0)], timeout=20)
    if got[0].offset != 42:
        fail(f"group offset after commit + abort is {got[0].offset}, want 42 (the committed one)")
    reader.close()
    print(f"confluent-kafka transactions: {COMMITTED} committed, {ABORTED} aborted, offsets exactly-once")


if __name__ == "__main__":
    main()
