//! The admin HTTP API: `/metrics` parses as Prometheus text and reflects what clients did
//! (requests, bytes, latency percentiles, consumer lag), the JSON endpoints answer, and bad
//! HTTP requests get clean errors without hurting the server.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

/// Sends raw bytes to the admin port and returns (status code, body).
fn http_raw(port: u16, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to admin port");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn get(port: u16, path: &str) -> (u16, String) {
    http_raw(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
}

/// A sample: metric name and labels → value. Fails on any line that is not valid
/// exposition format, so this is also the "Prometheus output parses" check.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut typed = HashMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line has a kind");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "unknown metric type in {line:?}"
            );
            typed.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "bad labels in {line:?}"
                );
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains_key(*f)))
            .unwrap_or(name);
        assert!(
            typed.contains_key(family),
            "sample before its TYPE line: {line:?}"
        );
        samples.insert(series.to_string(), value);
    }
    samples
}

#[test]
fn metrics_reflect_traffic_and_lag_and_bad_http_is_refused() {
    let broker = Broker::start();
    let topic = topic_name("metered");
    let bootstrap = broker.bootstrap();
    let producer = producer(&bootstrap, &[("acks", "all")]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for i in 0..10 {
            producer
                .send(
                    FutureRecord::to(&topic)
                        .payload(&format!("v{i}"))
                        .key("k")
                        .partition(0),
                    Duration::from_secs(10),
                )
                .await
                .expect("produce");
        }
    });
    // A group commits offset 4 of 10: its lag is 6.
    let consumer = consumer(&bootstrap, &[("group.id", "lagging")]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(4))
        .unwrap();
    consumer
        .commit(&tpl, CommitMode::Sync)
        .expect("commit offset 4");

    // One request answered with an error code: Metadata for a topic that does not exist
    // (auto-creation not allowed by the request) is UNKNOWN_TOPIC_OR_PARTITION (3).
    let mut conn = common::raw::Conn::open(broker.addr());
    let missing = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
        .with_name(Some(common::raw::name("no-such-topic")));
    let request = kafka_protocol::messages::MetadataRequest::default()
        .with_topics(Some(vec![missing]))
        .with_allow_auto_topic_creation(false);
    conn.call(
        kafka_protocol::messages::ApiKey::Metadata,
        12,
        &kafka_protocol::messages::RequestKind::Metadata(request),
    )
    .expect("metadata");

    let (status, body) = get(broker.admin_port, "/metrics");
    assert_eq!(status, 200);
    let m = parse_prometheus(&body);
    assert_eq!(
        m.get("sluice_errors_total{api=\"Metadata\",code=\"3\"}"),
        Some(&1.0),
        "error codes are counted by API and code"
    );
    assert!(
        m["sluice_requests_total{api=\"Produce\"}"] >= 10.0,
        "produce requests counted"
    );
    assert!(m[&format!("sluice_topic_records_in_total{{topic=\"{topic}\"}}")] >= 10.0);
    assert!(m[&format!("sluice_topic_bytes_in_total{{topic=\"{topic}\"}}")] > 0.0);
    let p50 = m["sluice_request_latency_quantile_seconds{api=\"Produce\",quantile=\"0.5\"}"];
    let p99 = m["sluice_request_latency_quantile_seconds{api=\"Produce\",quantile=\"0.99\"}"];
    let max = m["sluice_request_latency_quantile_seconds{api=\"Produce\",quantile=\"1\"}"];
    assert!(
        p50 > 0.0 && p50 <= p99 && p99 <= max,
        "percentiles ordered: {p50} {p99} {max}"
    );
    let inf = m["sluice_stage_latency_seconds_bucket{stage=\"produce_commit\",le=\"+Inf\"}"];
    let count = m["sluice_stage_latency_seconds_count{stage=\"produce_commit\"}"];
    assert!(inf >= 10.0 && inf == count, "acks=all commits are measured");
    assert!(
        m["sluice_stage_latency_seconds_count{stage=\"fdatasync\"}"] >= 1.0,
        "fdatasync is measured on its own"
    );
    assert!(m["sluice_stage_latency_seconds_count{stage=\"storage_write\"}"] >= 1.0);
    assert_eq!(
        m.get(&format!(
            "sluice_consumer_lag{{group=\"lagging\",topic=\"{topic}\",partition=\"0\"}}"
        )),
        Some(&6.0),
        "consumer lag = high watermark 10 - committed 4"
    );

    let (status, body) = get(broker.admin_port, "/v1/partitions");
    assert_eq!(status, 200);
    let partitions: serde_json::Value = serde_json::from_str(&body).expect("partitions JSON");
    let ours = partitions
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["topic"] == topic.as_str())
        .expect("our partition is listed");
    assert_eq!(ours["high_watermark"], 10);
    let (status, body) = get(broker.admin_port, "/v1/status");
    assert_eq!(status, 200);
    let status_json: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    assert_eq!(status_json["shards"], 2);
    assert_eq!(get(broker.admin_port, "/v1/health").0, 200);

    // Bad requests get HTTP errors, and the server keeps answering.
    assert_eq!(get(broker.admin_port, "/nope").0, 404);
    assert_eq!(
        http_raw(broker.admin_port, b"POST /metrics HTTP/1.1\r\n\r\n").0,
        405
    );
    assert_eq!(
        http_raw(broker.admin_port, b"\x00\x01garbage\r\n\r\n").0,
        400
    );
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(32 * 1024));
    assert_eq!(http_raw(broker.admin_port, huge.as_bytes()).0, 431);
    assert_eq!(get(broker.admin_port, "/v1/health").0, 200);
}

#[test]
fn slow_requests_are_logged_once_with_their_stages() {
    let broker = Broker::start_with(&["--slow-request-ms", "50"]);
    let topic = topic_name("slow");
    // A fetch that long-polls an empty partition for 500 ms is slow by construction.
    let c = consumer(
        &broker.bootstrap(),
        &[
            ("fetch.wait.max.ms", "500"),
            ("auto.offset.reset", "earliest"),
        ],
    );
    let admin = admin(&broker.bootstrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        admin
            .create_topics(
                &[rdkafka::admin::NewTopic::new(
                    &topic,
                    1,
                    rdkafka::admin::TopicReplication::Fixed(1),
                )],
                &admin_opts(),
            )
            .await
            .expect("create topic");
    });
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let _ = c.poll(Duration::from_millis(200));
        let log = std::fs::read_to_string(&broker.log_path).unwrap_or_default();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("slow request") && l.contains("Fetch"))
        {
            assert!(
                line.contains("fetch_long_poll_wait="),
                "the slow-request line names the stage the time went to: {line}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no slow-request line for a 500 ms long-poll fetch"
        );
    }
}
