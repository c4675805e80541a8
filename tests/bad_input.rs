//! Hostile and broken clients on raw TCP: the broker must close bad connections (or answer
//! with the right error), never write bad data, and keep serving well-behaved clients.
//! Also: two brokers must not share a data dir or a Kafka port.

mod common;

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::*;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::{encode_request_header_into_buffer, Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;

const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

fn connect(b: &Broker) -> TcpStream {
    let s = TcpStream::connect(b.addr()).expect("connect to broker");
    s.set_read_timeout(Some(CLOSE_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Wait until the broker closes the connection (EOF or reset). Panics if it stays open.
fn expect_closed(mut s: TcpStream, what: &str) {
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    let mut buf = [0u8; 4096];
    let mut unexpected = 0usize;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => unexpected += n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                ) =>
            {
                return
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("after {what}, the broker kept the connection open for {CLOSE_TIMEOUT:?} (it sent {unexpected} bytes)")
            }
            Err(e) => panic!("after {what}: unexpected socket error {e}"),
        }
        if Instant::now() > deadline {
            panic!("after {what}, the broker kept the connection open and sent {unexpected} bytes");
        }
    }
}

/// Read one response frame: returns the bytes after the size prefix.
fn read_frame(s: &mut TcpStream, what: &str) -> Bytes {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .unwrap_or_else(|e| panic!("{what}: no response (connection: {e})"));
    let len = i32::from_be_bytes(len);
    assert!(
        (0..64 << 20).contains(&len),
        "{what}: response size {len} is not plausible"
    );
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body)
        .unwrap_or_else(|e| panic!("{what}: truncated response ({e})"));
    Bytes::from(body)
}

fn sized(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// After an abuse, a normal librdkafka client still produces and consumes.
async fn assert_still_serves(b: &mut Broker, after: &str) {
    assert!(
        b.is_running(),
        "broker process died after {after}; log:\n{}",
        b.log_tail()
    );
    let bs = b.bootstrap();
    let topic = topic_name("healthy");
    create_topic(&admin(&bs), &topic, 1, &[]).await;
    let p = producer(&bs, &[("acks", "all")]);
    let (_, off) = p
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic)
                .partition(0)
                .payload(b"still here".as_slice()),
            CLIENT_TIMEOUT,
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("after {after}, a normal produce failed: {e}"));
    assert_eq!(off, 0);
    let c = consumer(&bs, &[]);
    let m = consume_n(&c, &topic, 0, Offset::Offset(0), 1, CLIENT_TIMEOUT);
    assert_eq!(
        m[0].payload(),
        Some(b"still here".as_slice()),
        "after {after}, consume returned other data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversize_unknown_key_and_half_frames_close_the_connection() {
    let mut b = Broker::start_with(&["--max-request-bytes", "1MiB"]);

    // An HTTP request: "GET " read as a size is ~1.2 GB.
    let mut s = connect(&b);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    expect_closed(s, "an HTTP request on the Kafka port");
    assert_still_serves(&mut b, "an HTTP request").await;

    // A plausible size followed by random bytes that are no Kafka header.
    let mut s = connect(&b);
    let junk: Vec<u8> = (0..64u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0x80)
        .collect();
    s.write_all(&sized(&junk)).unwrap();
    expect_closed(s, "a 64-byte frame of garbage");
    assert_still_serves(&mut b, "a garbage frame").await;

    // A negative size.
    let mut s = connect(&b);
    s.write_all(&(-5i32).to_be_bytes()).unwrap();
    expect_closed(s, "a negative frame size");

    // A size over --max-request-bytes (10 MiB > 1 MiB): closed without reading the body.
    let mut s = connect(&b);
    s.write_all(&(10i32 << 20).to_be_bytes()).unwrap();
    s.write_all(&[0u8; 1024]).unwrap();
    expect_closed(
        s,
        "a frame header claiming 10 MiB with --max-request-bytes 1MiB",
    );
    assert_still_serves(&mut b, "an oversized frame").await;

    // Unknown API key 999.
    let mut s = connect(&b);
    let mut f = BytesMut::new();
    f.put_i16(999);
    f.put_i16(0);
    f.put_i32(7);
    f.put_i16(-1); // null client id
    s.write_all(&sized(&f)).unwrap();
    expect_closed(s, "a request with unknown API key 999");
    assert_still_serves(&mut b, "an unknown API key").await;

    // Clients that vanish mid-frame: in the size prefix, and in the body.
    for cut in [2usize, 10] {
        let mut s = connect(&b);
        let mut f = BytesMut::new();
        f.put_i32(100);
        f.put_i16(18);
        f.put_i16(0);
        f.put_i32(1);
        f.put_bytes(0, 20);
        s.write_all(&f[..cut]).unwrap();
        drop(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_still_serves(&mut b, "clients disconnecting mid-frame").await;

    // Many connections opened and dropped at once.
    let conns: Vec<TcpStream> = (0..200).map(|_| connect(&b)).collect();
    drop(conns);
    assert_still_serves(&mut b, "200 connections opened and dropped").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_with_unsupported_version_answers_error_35() {
    let mut b = Broker::start();
    let mut s = connect(&b);
    // Header v2 (as a client sends for a flexible ApiVersions): key, version, correlation id,
    // client id (nullable i16 string), empty tagged fields; then an empty flexible body.
    let mut f = BytesMut::new();
    f.put_i16(18);
    f.put_i16(99);
    f.put_i32(4242);
    f.put_i16(4);
    f.put_slice(b"test");
    f.put_u8(0); // header tagged fields
    f.put_u8(1); // client_software_name: compact string ""
    f.put_u8(1); // client_software_version: ""
    f.put_u8(0); // body tagged fields
    s.write_all(&sized(&f)).unwrap();
    let mut r = read_frame(&mut s, "ApiVersions v99");
    assert!(
        r.len() >= 10,
        "ApiVersions v99 response too short: {} bytes",
        r.len()
    );
    assert_eq!(
        r.get_i32(),
        4242,
        "ApiVersions v99: correlation id not echoed"
    );
    let err = r.get_i16();
    assert_eq!(
        err, 35,
        "ApiVersions v99: expected error UNSUPPORTED_VERSION (35), got {err}"
    );
    let n = r.get_i32();
    assert!(
        n > 0,
        "ApiVersions v99: the v0 response must still list the supported APIs (got {n})"
    );
    assert!(
        r.remaining() >= n as usize * 6,
        "ApiVersions v99: api_keys array truncated"
    );
    let mut keys = Vec::new();
    for _ in 0..n {
        let (k, min, max) = (r.get_i16(), r.get_i16(), r.get_i16());
        assert!(min <= max, "ApiVersions: key {k} has min {min} > max {max}");
        keys.push((k, min, max));
    }
    let av = keys
        .iter()
        .find(|k| k.0 == 18)
        .expect("ApiVersions lists itself (key 18)");
    assert!(av.2 >= 3, "ApiVersions max version {} < 3", av.2);
    assert!(
        keys.iter().any(|k| k.0 == 0),
        "ApiVersions lists Produce (key 0)"
    );
    assert!(
        keys.iter().any(|k| k.0 == 1),
        "ApiVersions lists Fetch (key 1)"
    );

    // The connection stays usable: a valid ApiVersions v0 on the same socket.
    let mut f = BytesMut::new();
    f.put_i16(18);
    f.put_i16(0);
    f.put_i32(4243);
    f.put_i16(-1);
    s.write_all(&sized(&f)).unwrap();
    let mut r = read_frame(&mut s, "ApiVersions v0 after v99");
    assert_eq!(r.get_i32(), 4243);
    assert_eq!(r.get_i16(), 0, "ApiVersions v0 error code");
    drop(s);
    assert_still_serves(&mut b, "ApiVersions v99").await;
}

fn record_batch(value: &[u8]) -> BytesMut {
    let rec = Record {
        transactional: false,
        control: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms(),
        key: Some(Bytes::from_static(b"key")),
        value: Some(Bytes::copy_from_slice(value)),
        headers: IndexMap::new(),
        delete_horizon: false,
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [rec].iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode record batch");
    buf
}

/// Send a Produce v3 (acks=-1) of `batch` to `topic`/0; returns (error_code, base_offset).
fn raw_produce(s: &mut TcpStream, corr: i32, topic: &str, batch: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(3)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("raw-test")));
    let mut buf = BytesMut::new();
    encode_request_header_into_buffer(&mut buf, &header).unwrap();
    req.encode(&mut buf, 3).unwrap();
    s.write_all(&sized(&buf)).unwrap();
    let mut r = read_frame(s, "Produce v3");
    assert_eq!(r.get_i32(), corr, "Produce v3: correlation id");
    let resp = ProduceResponse::decode(&mut r, 3).expect("decode ProduceResponse v3");
    let t = resp
        .responses
        .first()
        .expect("ProduceResponse has the topic");
    let p = t
        .partition_responses
        .first()
        .expect("ProduceResponse has the partition");
    (p.error_code, p.base_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_with_corrupt_crc_is_refused_and_not_written() {
    let mut b = Broker::start();
    let bs = b.bootstrap();
    let topic = topic_name("crc");
    create_topic(&admin(&bs), &topic, 1, &[]).await;
    let c = consumer(&bs, &[]);
    let mut s = connect(&b);

    // Control: the same hand-built request with an intact batch is accepted.
    let (err, base) = raw_produce(&mut s, 1, &topic, record_batch(b"intact value").freeze());
    assert_eq!(
        (err, base),
        (0, 0),
        "hand-built Produce v3 with a valid batch: (error, base offset)"
    );
    assert_eq!(watermarks(&c, &topic, 0), (0, 1));

    // Flip one byte inside the record (the value), after the CRC-covered header fields.
    let mut bad = record_batch(b"corrupt value");
    let last = bad.len() - 3;
    bad[last] ^= 0x55;
    let (err, _) = raw_produce(&mut s, 2, &topic, bad.freeze());
    assert_eq!(
        err, 2,
        "Produce with a corrupted record: expected CORRUPT_MESSAGE (2), got error code {err}"
    );
    assert_eq!(
        watermarks(&c, &topic, 0),
        (0, 1),
        "a batch that failed its CRC must not be written"
    );

    // A corrupted CRC field itself (bytes 17..21 of the batch).
    let mut bad = record_batch(b"bad crc field");
    bad[17] ^= 0xFF;
    let (err, _) = raw_produce(&mut s, 3, &topic, bad.freeze());
    assert_eq!(
        err, 2,
        "Produce with a wrong CRC field: expected CORRUPT_MESSAGE (2), got error code {err}"
    );
    assert_eq!(
        watermarks(&c, &topic, 0),
        (0, 1),
        "a batch that failed its CRC must not be written"
    );

    let m = consume_n(&c, &topic, 0, Offset::Offset(0), 1, CLIENT_TIMEOUT);
    assert_eq!(m[0].payload(), Some(b"intact value".as_slice()));
    drop(s);
    assert_still_serves(&mut b, "corrupt produce requests").await;
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn_second(data_dir: &std::path::Path, kafka_port: u16, log: &std::path::Path) -> Child {
    let f = File::create(log).unwrap();
    broker_command(
        data_dir,
        kafka_port,
        free_port(),
        &["--cores".to_string(), "2".to_string()],
    )
    .stdout(Stdio::null())
    .stderr(f)
    .spawn()
    .expect("spawn second broker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_broker_on_same_data_dir_refuses_to_start() {
    let mut b = Broker::start();
    let log = b.root.join("second.log");
    let mut second = spawn_second(&b.data_dir, free_port(), &log);
    let st = wait_exit(&mut second, Duration::from_secs(20));
    let out = file_tail(&log, 4096);
    let st = st.unwrap_or_else(|| panic!("a second broker on the same data dir kept running (killed after 20 s); its log:\n{out}"));
    assert!(
        !st.success(),
        "a second broker on the same data dir exited with {st}, expected a failure; log:\n{out}"
    );
    assert!(
        out.to_lowercase().contains("lock"),
        "the refusal should mention the lock; stderr was:\n{out}"
    );
    assert_still_serves(&mut b, "a second broker tried the same data dir").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_broker_on_same_kafka_port_refuses_to_start() {
    let mut b = Broker::start();
    let other = tempfile::tempdir().unwrap();
    let data = other.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let log = other.path().join("second.log");
    let mut second = spawn_second(&data, b.kafka_port, &log);
    let st = wait_exit(&mut second, Duration::from_secs(20));
    let out = file_tail(&log, 4096);
    let st = st.unwrap_or_else(|| {
        panic!(
            "a second broker bound the Kafka port {} that another broker is using and kept running \
             (SO_REUSEPORT lets it steal connections); killed after 20 s; its log:\n{out}",
            b.kafka_port
        )
    });
    assert!(
        !st.success(),
        "a second broker on a used Kafka port exited with {st}, expected a failure; log:\n{out}"
    );
    assert_still_serves(&mut b, "a second broker tried the same port").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_is_refused_beyond_the_limit_and_the_broker_keeps_serving() {
    // Four connections per shard (2 shards).
    let mut b = Broker::start_with(&["--max-connections", "8"]);
    let mut flood: Vec<TcpStream> = (0..40).map(|_| connect(&b)).collect();
    // Connections over the limit are closed by the broker right after accept; the ones
    // it kept answer ApiVersions.
    let mut kept = 0;
    let mut refused = 0;
    for s in flood.iter_mut() {
        let request = {
            let mut buf = BytesMut::new();
            let header = RequestHeader::default()
                .with_request_api_key(ApiKey::ApiVersions as i16)
                .with_request_api_version(0)
                .with_correlation_id(1);
            encode_request_header_into_buffer(&mut buf, &header).unwrap();
            sized(&buf)
        };
        let _ = s.write_all(&request);
        let mut size = [0u8; 4];
        match s.read_exact(&mut size) {
            Ok(()) => kept += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(
        (1..=8).contains(&kept),
        "{kept} connections were served, limit is 8"
    );
    assert!(
        refused >= 32,
        "only {refused} of 40 connections were refused"
    );
    drop(flood);
    // Once the flood is gone, new clients are served again.
    std::thread::sleep(Duration::from_millis(500));
    assert_still_serves(&mut b, "a flood of connections").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_an_absurd_array_count_is_refused_not_fatal() {
    // The fuzzer's first find: a Fetch whose topic array claims 4 billion entries.
    let mut b = Broker::start();
    let frame = include_bytes!("data/fetch-4-billion-topics.bin");
    let mut s = connect(&b);
    s.write_all(&sized(frame)).unwrap();
    expect_closed(s, "a Fetch claiming 4294967295 topics");
    assert_still_serves(&mut b, "a Fetch claiming 4294967295 topics").await;
}
