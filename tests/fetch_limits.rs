//! Fetch honours `max_bytes` and `min_bytes` the way Kafka does.
//!
//! A consumer with a small `fetch.max.bytes` reading many full partitions must get responses
//! of about that size (librdkafka drops the connection when a response exceeds
//! `receive.message.max.bytes`, and reconnects into the same oversized answer forever), and
//! a long poll must wait until `min_bytes` are ready, not answer at the first commit.

mod common;

use std::time::{Duration, Instant};

use common::raw::{call_fetch, fetch_request, produce_to, record_batch, Conn};
use common::*;
use kafka_protocol::messages::*;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};

const PARTITIONS: i32 = 8;
/// Per partition: 6 × 100 KiB, more than one response's worth in each.
const RECORDS_PER_PARTITION: usize = 6;
const RECORD_BYTES: usize = 100 * 1024;

fn fill(broker: &Broker, topic: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        create_topic(&admin(&broker.bootstrap()), topic, PARTITIONS, &[]).await;
        let producer = producer(&broker.bootstrap(), &[("acks", "all")]);
        let value = vec![b'x'; RECORD_BYTES];
        for p in 0..PARTITIONS {
            for _ in 0..RECORDS_PER_PARTITION {
                producer
                    .send(
                        FutureRecord::<(), _>::to(topic)
                            .partition(p)
                            .payload(&value),
                        Duration::from_secs(30),
                    )
                    .await
                    .unwrap_or_else(|(e, _)| panic!("produce to {topic}/{p}: {e}"));
            }
        }
    });
}

/// A v12 fetch of every partition from offset 0.
fn fetch_all(
    conn: &mut Conn,
    topic: &str,
    max_bytes: i32,
    partition_max_bytes: i32,
) -> FetchResponse {
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    let request =
        fetch_request(topic, &partitions, 0, partition_max_bytes).with_max_bytes(max_bytes);
    call_fetch(conn, request)
}

fn record_bytes(r: &FetchResponse) -> Vec<usize> {
    r.responses[0]
        .partitions
        .iter()
        .map(|p| p.records.as_ref().map_or(0, |b| b.len()))
        .collect()
}

#[test]
fn a_fetch_response_stays_within_max_bytes_across_many_full_partitions() {
    let broker = Broker::start();
    let topic = "fetch-max-bytes";
    fill(&broker, topic);
    let mut conn = Conn::open(broker.addr());

    // 1 MiB per partition would be 8 MiB in all; the response limit is 1 MiB.
    let r = fetch_all(&mut conn, topic, 1 << 20, 1 << 20);
    let sizes = record_bytes(&r);
    let total: usize = sizes.iter().sum();
    assert!(
        total > 0 && total <= 1 << 20,
        "a fetch with max_bytes 1 MiB returned {total} bytes of records ({sizes:?})"
    );
    for p in &r.responses[0].partitions {
        assert_eq!(
            p.error_code, 0,
            "partition {} answered an error",
            p.partition_index
        );
        // Whole batches only: every byte decodes.
        let records = p.records.clone().unwrap_or_default();
        let batches = common::raw::decode_batches(&records);
        let decoded: usize = batches.iter().map(|(_, _, v)| v.len()).sum();
        assert!(
            records.is_empty() || decoded > 0,
            "partition {} returned bytes that are not whole batches",
            p.partition_index
        );
    }

    // A limit smaller than one batch still returns that first batch (KIP-74), and nothing
    // else.
    let r = fetch_all(&mut conn, topic, 1000, 1 << 20);
    let sizes = record_bytes(&r);
    let nonempty: Vec<usize> = sizes.iter().copied().filter(|&n| n > 0).collect();
    assert_eq!(
        nonempty.len(),
        1,
        "max_bytes below one batch must return exactly one partition's first batch: {sizes:?}"
    );
    let first = r.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    assert_eq!(
        common::raw::decode_batches(&first).len(),
        1,
        "only the first batch may exceed max_bytes"
    );
}

#[test]
fn a_consumer_with_a_small_fetch_max_bytes_reads_many_full_partitions() {
    let broker = Broker::start();
    let topic = "fetch-max-bytes-consumer";
    fill(&broker, topic);
    // librdkafka closes the connection when a response exceeds receive.message.max.bytes,
    // which need only be a little larger than fetch.max.bytes; the per-partition limit
    // (1 MiB, librdkafka's default) is larger than the response limit, as in many
    // deployments, so each partition alone holds more than one response may carry.
    let consumer = consumer(
        &broker.bootstrap(),
        &[
            ("message.max.bytes", "200000"),
            ("fetch.max.bytes", "250000"),
            ("receive.message.max.bytes", "300000"),
            ("max.partition.fetch.bytes", "1048576"),
        ],
    );
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("add partition");
    }
    consumer.assign(&tpl).expect("assign");
    let want = PARTITIONS as usize * RECORDS_PER_PARTITION;
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < want {
        assert!(
            Instant::now() < deadline,
            "got {got} of {want} records: the consumer did not make progress\n{}",
            broker.log_tail()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                assert_eq!(m.payload().map(<[u8]>::len), Some(RECORD_BYTES));
                got += 1;
            }
            Some(Err(e)) => panic!("consumer error after {got} records: {e}"),
            None => {}
        }
    }
}

/// Produces `count` small batches, one request each, to partitions 0 and 1 in turn (two
/// partitions on two shards).
fn produce_small(addr: std::net::SocketAddr, topic: &str, count: usize) -> usize {
    let mut conn = Conn::open(addr);
    let mut bytes = 0;
    for i in 0..count {
        let batch = record_batch(&format!("record {i:04} {}", "y".repeat(40)));
        bytes += batch.len();
        let (error_code, _) = produce_to(&mut conn, 9, topic, (i % 2) as i32, batch);
        assert_eq!(error_code, 0);
    }
    bytes
}

#[test]
fn a_long_poll_waits_for_min_bytes_not_for_the_first_commit() {
    let broker = Broker::start();
    let topic = "fetch-min-bytes";
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(create_topic(&admin(&broker.bootstrap()), topic, 2, &[]));

    // Small batches land one by one on two partitions owned by different shards while a
    // fetch of both waits for 3,000 bytes: it must answer with at least that much, not with
    // the first batch that commits.
    let min_bytes = 3000;
    let addr = broker.addr();
    let fetcher = std::thread::spawn(move || {
        let mut conn = Conn::open(addr);
        let request = fetch_request("fetch-min-bytes", &[0, 1], 0, 1 << 20)
            .with_max_wait_ms(12_000)
            .with_min_bytes(min_bytes);
        record_bytes(&call_fetch(&mut conn, request))
            .iter()
            .sum::<usize>()
    });
    // Let the fetch park first (an early start only makes it read more at once).
    std::thread::sleep(Duration::from_millis(300));
    let produced = produce_small(addr, topic, 60);
    assert!(
        produced >= min_bytes as usize,
        "the test produces too little"
    );
    let fetched = fetcher.join().expect("fetch thread");
    assert!(
        fetched >= min_bytes as usize,
        "a long poll for {min_bytes} bytes answered with {fetched}"
    );
}
