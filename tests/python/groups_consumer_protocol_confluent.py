"""KIP-848 consumer groups with confluent-kafka (`group.protocol=consumer`).

Two members split a 4-partition topic 2+2 (the broker assigns), every record is read once;
one member closes and the other takes all four partitions over and reads on from the
departed member's commits.
"""
import argparse
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

WAIT_S = 60


def member(bootstrap, group, name):
    return Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
        "auto.offset.reset": "earliest", "enable.auto.commit": False, "client.id": name,
    })


def produce(bootstrap, topic, tag, n):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(n):
        p.produce(topic, value=f"{tag}-{i}".encode(), partition=i % 4)
    if p.flush(30) != 0:
        sys.exit("produce did not finish")


def poll_until(members, seen, what, done):
    deadline = time.time() + WAIT_S
    while not done():
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        for c in members:
            m = c.poll(0.05)
            if m is not None and m.error() is None:
                seen.append(m.value().decode())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    args = parser.parse_args()
    bs = args.bootstrap
    topic, group = f"kip848-{uuid.uuid4().hex[:8]}", f"kip848-g-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bs})
    for f in admin.create_topics([NewTopic(topic, 4, 1)]).values():
        f.result()
    c1, c2 = member(bs, group, "c1"), member(bs, group, "c2")
    c1.subscribe([topic])
    c2.subscribe([topic])
    seen = []
    # Records are produced once the split stands, so none is read by a member that then
    # hands its partition over uncommitted.
    poll_until([c1, c2], seen, "a 2+2 split",
               lambda: len(c1.assignment()) == 2 and len(c2.assignment()) == 2)
    produce(bs, topic, "a", 40)
    poll_until([c1, c2], seen, "40 records", lambda: len(seen) >= 40)
    p1 = {tp.partition for tp in c1.assignment()}
    p2 = {tp.partition for tp in c2.assignment()}
    if p1 & p2 or p1 | p2 != {0, 1, 2, 3}:
        sys.exit(f"bad split {p1} {p2}")
    c1.commit(asynchronous=False)
    c2.commit(asynchronous=False)
    c2.close()
    produce(bs, topic, "b", 8)
    poll_until([c1], seen, "c1 owning all four and 8 more records",
               lambda: len(c1.assignment()) == 4 and len(seen) >= 48)
    c1.close()
    if sorted(seen) != sorted([f"a-{i}" for i in range(40)] + [f"b-{i}" for i in range(8)]):
        sys.exit(f"records read other than once: {len(seen)}")
    print("consumer protocol (KIP-848): ok")


if __name__ == "__main__":
    main()
