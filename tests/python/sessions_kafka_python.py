#!/usr/bin/env python3
"""Incremental fetch sessions (KIP-227) with kafka-python, which opens a session per broker
and then sends only changed partitions: a consumer of 6 partitions reads 6 rounds of records
produced while it polls, each exactly once and in offset order, and the broker's /metrics
shows that fetches were served incrementally."""
import argparse
import sys
import time
import urllib.request
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

PARTITIONS = 6
ROUNDS = 6
PER_ROUND = 30


def fail(msg):
    print(f"FAIL (kafka-python sessions): {msg}", file=sys.stderr)
    sys.exit(1)


def incremental_fetches(admin_addr):
    text = urllib.request.urlopen(f"http://{admin_addr}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith("sluice_fetch_incremental_total"):
            return float(line.split()[-1])
    fail("sluice_fetch_incremental_total is missing from /metrics")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--admin", required=True)
    args = ap.parse_args()
    topic = f"py-sessions-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=20000)
    admin.create_topics([NewTopic(name=topic, num_partitions=PARTITIONS, replication_factor=1)])
    admin.close()
    before = incremental_fetches(args.admin)

    c = KafkaConsumer(bootstrap_servers=args.bootstrap, enable_auto_commit=False, group_id=None,
                      fetch_max_wait_ms=100)
    tps = [TopicPartition(topic, part) for part in range(PARTITIONS)]
    c.assign(tps)
    for tp in tps:
        c.seek(tp, 0)
    p = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all")
    seen = {}
    last = {}
    for r in range(ROUNDS):
        for i in range(PER_ROUND):
            # Rounds land on a few partitions each, so most partitions stay quiet.
            p.send(topic, partition=(r + i % 2) % PARTITIONS, value=f"{r}-{i}".encode())
        p.flush()
        want = (r + 1) * PER_ROUND
        deadline = time.time() + 30
        while len(seen) < want and time.time() < deadline:
            for tp, msgs in c.poll(timeout_ms=200).items():
                for m in msgs:
                    v = m.value.decode()
                    if v in seen:
                        fail(f"record {v} read twice")
                    if m.offset <= last.get(m.partition, -1):
                        fail(f"partition {m.partition}: offset {m.offset} after {last[m.partition]}")
                    last[m.partition] = m.offset
                    seen[v] = (m.partition, m.offset)
        if len(seen) != want:
            fail(f"round {r}: read {len(seen)} of {want} records within 30 s")
    p.close()
    c.close()
    served = incremental_fetches(args.admin) - before
    # The first fetch opens the session; every later round needs at least one more fetch.
    if served < ROUNDS - 1:
        fail(f"only {served:.0f} fetches were served incrementally")
    print(f"OK kafka-python sessions: {len(seen)} records, {served:.0f} incremental fetches")


if __name__ == "__main__":
    main()
