"""Kafka 4.1's topic-id offset APIs, encoded by kafka-python's own schema codec.

OffsetCommit v10 and OffsetFetch v10 name topics by id instead of name. Sluice's protocol
crate had to be taught these versions, so this checks them with an independent encoder and
decoder (kafka-python 3 generates both from Kafka's JSON schemas): commit by id, read back
by id, unknown ids answered UNKNOWN_TOPIC_ID, and the same offset visible by name (v9).
"""
import argparse
import socket
import struct
import sys
import uuid

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.protocol.consumer.group import OffsetCommitRequest, OffsetCommitResponse
from kafka.protocol.consumer.group import OffsetFetchRequest, OffsetFetchResponse
from kafka.protocol.metadata import MetadataRequest, MetadataResponse

UNKNOWN_TOPIC_OR_PARTITION = 3
UNKNOWN_TOPIC_ID = 100

# The generated nested structures (kafka-python 3 builds them from Kafka's JSON schemas).
MetadataTopic = MetadataRequest.MetadataRequestTopic
CommitTopic = OffsetCommitRequest.OffsetCommitRequestTopic
CommitPartition = CommitTopic.OffsetCommitRequestPartition
FetchGroup = OffsetFetchRequest.OffsetFetchRequestGroup
FetchTopics = FetchGroup.OffsetFetchRequestTopics


def commit_partition(index, offset, metadata):
    return CommitPartition(partition_index=index, committed_offset=offset,
                           committed_leader_epoch=-1, committed_metadata=metadata)


class Conn:
    def __init__(self, bootstrap):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.correlation_id = 0

    def call(self, request, response_class, version):
        self.correlation_id += 1
        request.with_header(correlation_id=self.correlation_id, client_id="offsets-by-id")
        self.sock.sendall(request.encode(version=version, header=True, framed=True))
        size = struct.unpack(">i", self._read(4))[0]
        response = response_class.decode(self._read(size), version=version, header=True)
        assert response._header.correlation_id == self.correlation_id
        return response

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError("broker closed the connection")
            data += chunk
        return data


def check(what, got, want):
    if got != want:
        print(f"{what}: got {got!r}, want {want!r}", file=sys.stderr)
        sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    args = parser.parse_args()
    topic = f"by-id-{uuid.uuid4().hex[:8]}"
    group = f"by-id-group-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.close()

    conn = Conn(args.bootstrap)
    metadata = conn.call(
        MetadataRequest[12](topics=[MetadataTopic(name=topic, topic_id=uuid.UUID(int=0))],
                            allow_auto_topic_creation=False,
                            include_topic_authorized_operations=False),
        MetadataResponse, 12)
    topic_id = metadata.topics[0].topic_id
    if topic_id.int == 0:
        print("Metadata v12 gave no topic id", file=sys.stderr)
        sys.exit(1)
    stranger = uuid.uuid4()

    commit = conn.call(OffsetCommitRequest[10](
        group_id=group, generation_id_or_member_epoch=-1, member_id="", group_instance_id=None,
        topics=[
            CommitTopic(topic_id=topic_id, partitions=[
                commit_partition(0, 42, "by-id"), commit_partition(9, 1, None)]),
            CommitTopic(topic_id=stranger, partitions=[commit_partition(0, 1, None)]),
        ]), OffsetCommitResponse, 10)
    errors = {(t.topic_id, p.partition_index): p.error_code
              for t in commit.topics for p in t.partitions}
    check("OffsetCommit v10 errors", errors, {
        (topic_id, 0): 0,
        (topic_id, 9): UNKNOWN_TOPIC_OR_PARTITION,
        (stranger, 0): UNKNOWN_TOPIC_ID,
    })

    fetched = conn.call(OffsetFetchRequest[10](
        groups=[FetchGroup(group_id=group, member_id=None, member_epoch=-1, topics=[
            FetchTopics(topic_id=topic_id, partition_indexes=[0, 1]),
            FetchTopics(topic_id=stranger, partition_indexes=[0])])],
        require_stable=False), OffsetFetchResponse, 10)
    g = fetched.groups[0]
    check("OffsetFetch v10 group error", g.error_code, 0)
    got = {(t.topic_id, p.partition_index): (p.committed_offset, p.metadata, p.error_code)
           for t in g.topics for p in t.partitions}
    check("OffsetFetch v10 by id", got, {
        (topic_id, 0): (42, "by-id", 0),
        (topic_id, 1): (-1, "", 0),
        (stranger, 0): (-1, "", UNKNOWN_TOPIC_ID),
    })

    every = conn.call(OffsetFetchRequest[10](
        groups=[FetchGroup(group_id=group, member_id=None, member_epoch=-1, topics=None)],
        require_stable=False), OffsetFetchResponse, 10)
    got = {(t.topic_id, p.partition_index): p.committed_offset
           for t in every.groups[0].topics for p in t.partitions}
    check("OffsetFetch v10 all topics", got, {(topic_id, 0): 42})

    by_name = conn.call(OffsetFetchRequest[9](
        groups=[FetchGroup(group_id=group, member_id=None, member_epoch=-1, topics=[
            FetchTopics(name=topic, partition_indexes=[0])])],
        require_stable=False), OffsetFetchResponse, 9)
    got = [(t.name, p.committed_offset) for t in by_name.groups[0].topics for p in t.partitions]
    check("OffsetFetch v9 by name", got, [(topic, 42)])
    print("offsets by topic id: ok")


if __name__ == "__main__":
    main()
