//! Request versions Kafka 4 removed (KIP-896) that clients of the Kafka 2.x era still send
//! and Sluice keeps accepting: OffsetCommit v0 and v1 (Go's sarama before 1.40) and
//! ListOffsets v0. The requests are encoded by hand here, since the protocol crate no
//! longer knows them; and a real sarama (Debian's 1.22, built from `tests/sarama`) joins a
//! group and commits with them.

mod common;

use bytes::{BufMut, BytesMut};
use common::raw::{name, Conn};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

fn put_string(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

/// OffsetCommit v0 (or v1, with a generation, member and commit timestamp) of one offset.
fn offset_commit(version: i16, group: &str, topic: &str, offset: i64) -> BytesMut {
    let mut b = BytesMut::new();
    put_string(&mut b, group);
    if version >= 1 {
        b.put_i32(-1);
        put_string(&mut b, "");
    }
    b.put_i32(1);
    put_string(&mut b, topic);
    b.put_i32(1);
    b.put_i32(0);
    b.put_i64(offset);
    if version >= 1 {
        b.put_i64(-1);
    }
    put_string(&mut b, "from an old client");
    b
}

fn committed(conn: &mut Conn, group: &str, topic: &str) -> (i64, String) {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(name(topic))
                .with_partition_indexes(vec![0]),
        ]));
    match conn.call(ApiKey::OffsetFetch, 1, &RequestKind::OffsetFetch(request)) {
        Ok(ResponseKind::OffsetFetch(r)) => {
            let p = &r.topics[0].partitions[0];
            let metadata = p
                .metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            (p.committed_offset, metadata)
        }
        other => panic!("OffsetFetch v1: {other:?}"),
    }
}

#[test]
fn offset_commit_v0_and_v1_are_stored_and_answered() {
    let broker = common::Broker::start_with(&["--auto-create-topics", "true"]);
    let mut conn = Conn::open(broker.addr());
    // Metadata v0 (still in Kafka 4's range for older clients here) creates the topic.
    let topic = "old-clients";
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(name(topic))),
    ]));
    conn.call(ApiKey::Metadata, 0, &RequestKind::Metadata(metadata))
        .expect("metadata v0");
    for (version, offset) in [(0i16, 11i64), (1, 22)] {
        let group = format!("old-group-v{version}");
        let body = offset_commit(version, &group, topic, offset);
        let mut answer = conn
            .call_raw(ApiKey::OffsetCommit, version, &body)
            .unwrap_or_else(|e| panic!("OffsetCommit v{version}: {e}"));
        // v0-v2 answers share one wire format; v2 is the oldest the crate decodes.
        let response = OffsetCommitResponse::decode(&mut answer, 2).expect("decode answer");
        assert_eq!(response.topics[0].name.as_str(), topic);
        assert_eq!(response.topics[0].partitions[0].error_code, 0, "v{version}");
        assert_eq!(
            committed(&mut conn, &group, topic),
            (offset, "from an old client".to_string()),
            "v{version}"
        );
    }
    // A truncated v1 request is refused with a closed connection; the broker keeps serving.
    let whole = offset_commit(1, "g", topic, 1);
    assert!(conn
        .call_raw(ApiKey::OffsetCommit, 1, &whole[..whole.len() - 3])
        .is_err());
    let mut conn = Conn::open(broker.addr());
    assert_eq!(committed(&mut conn, "old-group-v1", topic).0, 22);
}

/// ListOffsets v0 of partitions 0 and 9 of `topic` at `timestamp`, one offset asked each.
fn list_offsets_v0(conn: &mut Conn, topic: &str, timestamp: i64) -> Vec<(i32, i16, Vec<i64>)> {
    let mut b = BytesMut::new();
    b.put_i32(-1);
    b.put_i32(1);
    put_string(&mut b, topic);
    b.put_i32(2);
    for partition in [0, 9] {
        b.put_i32(partition);
        b.put_i64(timestamp);
        b.put_i32(1);
    }
    let mut answer = conn
        .call_raw(ApiKey::ListOffsets, 0, &b)
        .expect("ListOffsets v0");
    use bytes::Buf;
    assert_eq!(answer.get_i32(), 1, "one topic");
    let len = answer.get_i16() as usize;
    assert_eq!(&answer.split_to(len)[..], topic.as_bytes());
    let partitions = answer.get_i32();
    let out = (0..partitions)
        .map(|_| {
            let index = answer.get_i32();
            let error = answer.get_i16();
            let offsets = (0..answer.get_i32()).map(|_| answer.get_i64()).collect();
            (index, error, offsets)
        })
        .collect();
    assert!(!answer.has_remaining(), "trailing bytes");
    out
}

#[test]
fn list_offsets_v0_answers_one_offset_per_partition() {
    let broker = common::Broker::start_with(&["--auto-create-topics", "true"]);
    let mut conn = Conn::open(broker.addr());
    let topic = "old-offsets";
    for i in 0..3 {
        let (error, _) = common::raw::produce(
            &mut conn,
            9,
            topic,
            common::raw::record_batch(&format!("r{i}")),
        );
        assert_eq!(error, 0);
    }
    assert_eq!(
        list_offsets_v0(&mut conn, topic, -1),
        vec![(0, 0, vec![3]), (9, 3, vec![])],
        "latest; partition 9 does not exist"
    );
    assert_eq!(
        list_offsets_v0(&mut conn, topic, -2)[0],
        (0, 0, vec![0]),
        "earliest"
    );
}

/// Builds `tests/sarama` (Go's sarama 1.22 from Debian, GOPATH mode) once per test binary.
fn sarama_check() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = root.join("target").join("sarama");
    let bin = out_dir.join("sarama-check");
    let status = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(root.join("tests/sarama/main.go"))
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", out_dir.join("cache"))
        .status()
        .unwrap_or_else(|e| {
            panic!("`go` is needed to build the sarama client (apt-get install golang-go golang-github-shopify-sarama-dev, as .ci/run does): {e}")
        });
    assert!(status.success(), "building tests/sarama failed");
    bin
}

/// Runs the sarama client; returns the payloads its consumer group read.
fn sarama(
    bin: &std::path::Path,
    bootstrap: &str,
    topic: &str,
    tag: &str,
    produce: usize,
) -> Vec<String> {
    let out = std::process::Command::new(bin)
        .args([
            "-bootstrap",
            bootstrap,
            "-topic",
            topic,
            "-group",
            "sarama-group",
        ])
        .args(["-tag", tag, "-produce", &produce.to_string()])
        .args(["-expect", &produce.to_string()])
        .output()
        .expect("run sarama-check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sarama client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut read: Vec<String> = stdout.lines().skip(1).map(str::to_string).collect();
    read.sort();
    read
}

/// Go's sarama 1.22 (what Debian ships; Kafka 0.11 protocol: Produce v3, Fetch v4, JoinGroup
/// v1, OffsetCommit v1 and OffsetFetch v1) produces, joins a consumer group, commits, and a
/// second run of the group reads only what came after its commits.
#[test]
fn sarama_joins_a_group_commits_and_resumes() {
    let bin = sarama_check();
    let broker = common::Broker::start_with(&["--auto-create-topics", "true"]);
    let bs = broker.bootstrap();
    let expected = |tag: &str, n: usize| {
        let mut v: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
        v.sort();
        v
    };
    assert_eq!(
        sarama(&bin, &bs, "sarama-topic", "a", 20),
        expected("a", 20)
    );
    assert_eq!(
        sarama(&bin, &bs, "sarama-topic", "b", 5),
        expected("b", 5),
        "the second run resumes from the first run's commits"
    );
}
