//! End-to-end tests: a real `sluice` process driven by librdkafka (the `rdkafka` crate).
//! Each test starts its own broker (`--cores 2`) on free ports in a temp dir.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, Timestamp, TopicPartitionList};

const CONSUME_TIMEOUT: Duration = Duration::from_secs(30);

/// Enqueue one record now (unlike `FutureProducer::send`, which enqueues only when first
/// polled) so that many records can be in flight and batched together.
fn enqueue<K: rdkafka::message::ToBytes + ?Sized, V: rdkafka::message::ToBytes + ?Sized>(
    p: &FutureProducer,
    rec: FutureRecord<'_, K, V>,
) -> rdkafka::producer::DeliveryFuture {
    let topic = rec.topic.to_string();
    p.send_result(rec)
        .unwrap_or_else(|(e, _)| panic!("enqueue to {topic} failed locally: {e}"))
}

fn headers_of(m: &OwnedMessage) -> Vec<(String, Option<Vec<u8>>)> {
    match m.headers() {
        None => Vec::new(),
        Some(h) => h
            .iter()
            .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_consume_round_trip_keys_headers_nulls_timestamps() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = topic_name("roundtrip");
    create_topic(&admin(&bs), &topic, 1, &[]).await;
    let p = producer(&bs, &[("acks", "all")]);

    let base_ts = now_ms() - 60_000;
    // (key, value, headers, timestamp)
    type Case = (
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(&'static str, Option<Vec<u8>>)>,
        i64,
    );
    let cases: Vec<Case> = vec![
        (Some(b"k0".to_vec()), Some(b"v0".to_vec()), vec![], base_ts),
        (
            Some(b"k1".to_vec()),
            Some(b"v1".to_vec()),
            vec![
                ("h1", Some(b"x".to_vec())),
                ("h2", Some(vec![0, 255, 1])),
                ("h1", Some(b"dup".to_vec())),
            ],
            base_ts + 1,
        ),
        (None, Some(b"null key".to_vec()), vec![], base_ts + 2),
        (Some(b"tomb".to_vec()), None, vec![], base_ts + 3),
        (
            Some(vec![]),
            Some(vec![]),
            vec![("null-header", None), ("empty", Some(vec![]))],
            base_ts + 4,
        ),
        (
            Some(b"binary\0key".to_vec()),
            Some((0..=255u8).collect()),
            vec![],
            base_ts + 5,
        ),
    ];

    for (i, (k, v, hs, ts)) in cases.iter().enumerate() {
        let mut rec = FutureRecord::<[u8], [u8]>::to(&topic)
            .partition(0)
            .timestamp(*ts);
        if let Some(k) = k {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = v {
            rec = rec.payload(v.as_slice());
        }
        if !hs.is_empty() {
            let mut h = OwnedHeaders::new();
            for (hk, hv) in hs {
                h = h.insert(Header {
                    key: hk,
                    value: hv.as_deref(),
                });
            }
            rec = rec.headers(h);
        }
        let (part, off) = send(&p, rec).await;
        assert_eq!(part, 0);
        assert_eq!(
            off, i as i64,
            "record #{i} was acknowledged at offset {off}, expected {i}"
        );
    }

    let c = consumer(&bs, &[]);
    let msgs = consume_n(
        &c,
        &topic,
        0,
        Offset::Offset(0),
        cases.len(),
        CONSUME_TIMEOUT,
    );
    for (i, (m, (k, v, hs, ts))) in msgs.iter().zip(&cases).enumerate() {
        assert_eq!(
            m.offset(),
            i as i64,
            "record #{i} read back at offset {}",
            m.offset()
        );
        assert_eq!(m.key().map(|k| k.to_vec()), *k, "record #{i}: key differs");
        assert_eq!(
            m.payload().map(|v| v.to_vec()),
            *v,
            "record #{i}: value differs (tombstone must stay null)"
        );
        let want_h: Vec<(String, Option<Vec<u8>>)> =
            hs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        assert_eq!(headers_of(m), want_h, "record #{i}: headers differ");
        assert_eq!(
            m.timestamp(),
            Timestamp::CreateTime(*ts),
            "record #{i}: timestamp differs"
        );
    }
    assert_eq!(
        watermarks(&c, &topic, 0),
        (0, cases.len() as i64),
        "watermarks after round trip"
    );

    // Reading from the middle of the log starts exactly there.
    let mid = consume_n(&c, &topic, 0, Offset::Offset(3), 3, CONSUME_TIMEOUT);
    let offs: Vec<i64> = mid.iter().map(|m| m.offset()).collect();
    assert_eq!(
        offs,
        vec![3, 4, 5],
        "consuming from offset 3 returned other offsets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_compression_codecs_round_trip() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let a = admin(&bs);
    let c = consumer(&bs, &[]);
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = topic_name(&format!("codec-{codec}"));
        create_topic(&a, &topic, 1, &[]).await;
        let p = producer(
            &bs,
            &[
                ("compression.type", codec),
                ("linger.ms", "50"),
                ("acks", "all"),
            ],
        );
        let n = 500usize;
        let values: Vec<String> = (0..n)
            .map(|i| format!("{codec} record {i} {}", "compressible-payload-".repeat(20)))
            .collect();
        let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
        let futs: Vec<_> = values
            .iter()
            .zip(&keys)
            .map(|(v, key)| {
                enqueue(
                    &p,
                    FutureRecord::<[u8], [u8]>::to(&topic)
                        .partition(0)
                        .key(key.as_bytes())
                        .payload(v.as_bytes()),
                )
            })
            .collect();
        let mut acked = Vec::new();
        for (i, f) in futs.into_iter().enumerate() {
            let (_, off) = f
                .await
                .expect("delivery report lost")
                .unwrap_or_else(|(e, _)| panic!("{codec}: produce of record {i} failed: {e}"));
            acked.push(off);
        }
        let msgs = consume_n(&c, &topic, 0, Offset::Offset(0), n, CONSUME_TIMEOUT);
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(m.offset(), i as i64, "{codec}: offset order broken");
            assert_eq!(
                m.offset(),
                acked[i],
                "{codec}: record {i} not at its acknowledged offset"
            );
            assert_eq!(
                m.key(),
                Some(format!("k{i}").as_bytes()),
                "{codec}: key of record {i}"
            );
            assert_eq!(
                m.payload(),
                Some(values[i].as_bytes()),
                "{codec}: value of record {i} corrupted"
            );
        }
        assert_eq!(
            watermarks(&c, &topic, 0).1,
            n as i64,
            "{codec}: high watermark"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_records_and_max_message_bytes() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let a = admin(&bs);
    let big = topic_name("big");
    let small = topic_name("small-limit");
    create_topic(&a, &big, 1, &[("max.message.bytes", "2097152")]).await;
    create_topic(&a, &small, 1, &[("max.message.bytes", "524288")]).await;
    let p = producer(&bs, &[("message.max.bytes", "2097152"), ("acks", "all")]);

    let value: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let (_, off) = send(
        &p,
        FutureRecord::<[u8], [u8]>::to(&big)
            .partition(0)
            .key(b"big".as_slice())
            .payload(value.as_slice()),
    )
    .await;
    assert_eq!(off, 0);
    let (_, off) = send(
        &p,
        FutureRecord::<[u8], [u8]>::to(&big)
            .partition(0)
            .key(b"after".as_slice())
            .payload(b"small".as_slice()),
    )
    .await;
    assert_eq!(off, 1);

    // Default consumer limits (max.partition.fetch.bytes = 1 MiB) are smaller than the record:
    // the broker must still return it (the first batch is always returned whole).
    let c = consumer(&bs, &[]);
    let msgs = consume_n(&c, &big, 0, Offset::Offset(0), 2, CONSUME_TIMEOUT);
    assert_eq!(
        msgs[0].payload().map(|v| v.len()),
        Some(value.len()),
        "1 MiB record came back with another size"
    );
    assert!(
        msgs[0].payload() == Some(value.as_slice()),
        "1 MiB record came back with different bytes"
    );
    assert_eq!(msgs[1].payload(), Some(b"small".as_slice()));

    // A record above the topic's max.message.bytes is refused by the broker.
    let res = p
        .send(
            FutureRecord::<[u8], [u8]>::to(&small)
                .partition(0)
                .key(b"too-big".as_slice())
                .payload(value.as_slice()),
            SEND_TIMEOUT,
        )
        .await;
    match res {
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {}
        Err((e, _)) => panic!("1 MiB record to a topic with max.message.bytes=524288: expected MessageSizeTooLarge, got {e}"),
        Ok(r) => panic!("1 MiB record to a topic with max.message.bytes=524288 was accepted at {r:?}"),
    }
    assert_eq!(
        watermarks(&c, &small, 0),
        (0, 0),
        "the refused record must not be written"
    );
    // The topic still takes records within its limit.
    let (_, off) = send(
        &p,
        FutureRecord::<[u8], [u8]>::to(&small)
            .partition(0)
            .payload(b"fits".as_slice()),
    )
    .await;
    assert_eq!(off, 0, "first accepted record after the refused one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_partitions_spread_over_shards() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = topic_name("parts");
    let parts = 12;
    create_topic(&admin(&bs), &topic, parts, &[]).await;
    let c = consumer(&bs, &[]);
    assert_eq!(
        partition_count(&c, &topic),
        Some(parts as usize),
        "metadata partition count"
    );

    let p = producer(&bs, &[("acks", "all")]);
    let per = 25;
    let mut vals = Vec::new();
    for i in 0..per {
        for part in 0..parts {
            vals.push((part, i, format!("p{part}-{i}")));
        }
    }
    let mut futs = Vec::new();
    for (part, i, v) in &vals {
        futs.push((
            *part,
            *i,
            enqueue(
                &p,
                FutureRecord::<(), str>::to(&topic)
                    .partition(*part)
                    .payload(v),
            ),
        ));
    }
    let mut acked: HashMap<(i32, i64), String> = HashMap::new();
    for (part, i, f) in futs {
        let (gp, off) = f
            .await
            .expect("delivery report lost")
            .unwrap_or_else(|(e, _)| panic!("produce to partition {part} failed: {e}"));
        assert_eq!(gp, part);
        acked.insert((part, off), format!("p{part}-{i}"));
    }
    for part in 0..parts {
        assert_eq!(
            watermarks(&c, &topic, part),
            (0, per as i64),
            "watermarks of partition {part}"
        );
        let msgs = consume_n(&c, &topic, part, Offset::Offset(0), per, CONSUME_TIMEOUT);
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(
                m.offset(),
                i as i64,
                "partition {part}: offsets out of order"
            );
            let want = format!("p{part}-{i}");
            assert_eq!(m.payload_view::<str>().unwrap().unwrap(), want, "partition {part} offset {i}: wrong record (records of one partition must keep send order)");
            assert_eq!(
                acked.get(&(part, i as i64)),
                Some(&want),
                "partition {part} offset {i}: not the acknowledged record"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_0_1_all_each_deliver() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = topic_name("acks");
    create_topic(&admin(&bs), &topic, 1, &[]).await;
    let n = 20;
    for acks in ["0", "1", "all"] {
        let p = producer(&bs, &[("acks", acks)]);
        for i in 0..n {
            let v = format!("acks={acks} #{i}");
            p.send(
                FutureRecord::<(), str>::to(&topic).partition(0).payload(&v),
                SEND_TIMEOUT,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("acks={acks}: produce failed: {e}"));
        }
        p.flush(SEND_TIMEOUT).expect("flush");
    }
    // acks=0 gets no answer, so wait until the broker has everything.
    let c = consumer(&bs, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while watermarks(&c, &topic, 0).1 < 3 * n as i64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let msgs = consume_n(&c, &topic, 0, Offset::Offset(0), 3 * n, CONSUME_TIMEOUT);
    let got: Vec<String> = msgs
        .iter()
        .map(|m| m.payload_view::<str>().unwrap().unwrap().to_string())
        .collect();
    let want: Vec<String> = ["0", "1", "all"]
        .iter()
        .flat_map(|a| (0..n).map(move |i| format!("acks={a} #{i}")))
        .collect();
    assert_eq!(
        got, want,
        "records produced with acks=0, 1 and all, in order"
    );
    assert_eq!(
        watermarks(&c, &topic, 0).1,
        3 * n as i64,
        "no extra records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_and_watermarks() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = topic_name("times");
    create_topic(&admin(&bs), &topic, 1, &[]).await;
    let p = producer(&bs, &[("acks", "all")]);
    let now = now_ms();
    let ts: Vec<i64> = vec![
        now - 10_000,
        now - 8_000,
        now - 6_000,
        now - 4_000,
        now - 2_000,
    ];
    for (i, t) in ts.iter().enumerate() {
        let (_, off) = send(
            &p,
            FutureRecord::<[u8], [u8]>::to(&topic)
                .partition(0)
                .payload(format!("t{i}").as_bytes())
                .timestamp(*t),
        )
        .await;
        assert_eq!(off, i as i64);
    }
    let c = consumer(&bs, &[]);
    assert_eq!(watermarks(&c, &topic, 0), (0, 5), "earliest/latest offsets");

    let lookup = |t: i64| -> Offset {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(t))
            .unwrap();
        let r = c
            .offsets_for_times(tpl, CLIENT_TIMEOUT)
            .unwrap_or_else(|e| panic!("ListOffsets by timestamp {t} failed: {e}"));
        let e = r
            .find_partition(&topic, 0)
            .expect("partition in ListOffsets answer");
        assert!(
            e.error().is_ok(),
            "ListOffsets by timestamp {t}: partition error {:?}",
            e.error()
        );
        e.offset()
    };
    // First offset whose timestamp is >= the query.
    assert_eq!(
        lookup(now - 100_000),
        Offset::Offset(0),
        "timestamp before every record"
    );
    assert_eq!(
        lookup(ts[0]),
        Offset::Offset(0),
        "exact timestamp of record 0"
    );
    assert_eq!(lookup(ts[1] - 1), Offset::Offset(1), "just before record 1");
    assert_eq!(
        lookup(ts[2]),
        Offset::Offset(2),
        "exact timestamp of record 2"
    );
    assert_eq!(lookup(ts[3] + 1), Offset::Offset(4), "just after record 3");
    assert_eq!(
        lookup(ts[4]),
        Offset::Offset(4),
        "exact timestamp of the last record"
    );
    assert_eq!(
        lookup(now + 1_000),
        Offset::End,
        "timestamp after every record: no offset (-1)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_time_far_in_the_future_is_rejected() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = topic_name("future-ts");
    create_topic(&admin(&bs), &topic, 1, &[]).await;
    let p = producer(&bs, &[("acks", "all"), ("message.timeout.ms", "10000")]);
    let res = p
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic)
                .partition(0)
                .payload(b"later".as_slice())
                .timestamp(now_ms() + 2 * 3600 * 1000),
            SEND_TIMEOUT,
        )
        .await;
    match res {
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::InvalidTimestamp), _)) => {}
        Err((e, _)) => panic!("CreateTime 2 h in the future: expected InvalidTimestamp, got {e}"),
        Ok(r) => panic!("CreateTime 2 h in the future was accepted at {r:?}"),
    }
    let c = consumer(&bs, &[]);
    assert_eq!(
        watermarks(&c, &topic, 0),
        (0, 0),
        "rejected record must not be written"
    );
}

#[test]
fn long_poll_fetch_wakes_on_produce() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = topic_name("longpoll");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(create_topic(&admin(&bs), &topic, 1, &[]));

    let c = consumer(
        &bs,
        &[("fetch.wait.max.ms", "10000"), ("fetch.min.bytes", "1")],
    );
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(0))
        .unwrap();
    c.assign(&tpl).unwrap();

    let bs2 = bs.clone();
    let topic2 = topic.clone();
    let producer_thread = std::thread::spawn(move || {
        // Give the consumer time to have its long-poll Fetch parked on the broker.
        std::thread::sleep(Duration::from_millis(1500));
        let p = producer(&bs2, &[("acks", "1"), ("linger.ms", "0")]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let sent_at = Instant::now();
        rt.block_on(
            p.send(
                FutureRecord::<[u8], [u8]>::to(&topic2)
                    .partition(0)
                    .payload(b"wake up".as_slice()),
                SEND_TIMEOUT,
            ),
        )
        .unwrap_or_else(|(e, _)| panic!("produce failed: {e}"));
        sent_at
    });

    let started = Instant::now();
    let got_at = loop {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                assert_eq!(m.payload(), Some(b"wake up".as_slice()));
                break Instant::now();
            }
            Some(Err(e)) => panic!("consumer error while long-polling: {e}"),
            None => assert!(
                started.elapsed() < Duration::from_secs(25),
                "record never arrived"
            ),
        }
    };
    let sent_at = producer_thread.join().unwrap();
    let delay = got_at.saturating_duration_since(sent_at);
    assert!(
        delay < Duration::from_secs(5),
        "record produced while a Fetch with max_wait_ms=10000 was parked arrived only after {delay:?}: \
         the append did not wake the waiting fetch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_sigterm_keeps_every_record() {
    let mut broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = topic_name("restart");
    create_topic(&admin(&bs), &topic, 3, &[]).await;
    let mut acked: Vec<(i32, i64, String)> = Vec::new();
    {
        let p = producer(&bs, &[("acks", "all")]);
        let kvs: Vec<(String, String)> = (0..150)
            .map(|i| (format!("key-{i}"), format!("value-{i}")))
            .collect();
        let futs: Vec<_> = kvs
            .iter()
            .map(|(k, v)| {
                (
                    v.clone(),
                    enqueue(
                        &p,
                        FutureRecord::<[u8], [u8]>::to(&topic)
                            .key(k.as_bytes())
                            .payload(v.as_bytes()),
                    ),
                )
            })
            .collect();
        for (v, f) in futs {
            let (part, off) = f
                .await
                .expect("delivery report lost")
                .unwrap_or_else(|(e, _)| panic!("produce failed: {e}"));
            acked.push((part, off, v));
        }
    }
    let status = broker.terminate();
    assert!(
        status.success(),
        "broker exit status after SIGTERM: {status} (expected 0); log:\n{}",
        broker.log_tail()
    );

    broker.restart();
    let c = consumer(&bs, &[]);
    let mut highs = HashMap::new();
    for part in 0..3 {
        let want = acked.iter().filter(|(p, _, _)| *p == part).count() as i64;
        let (lo, hi) = watermarks(&c, &topic, part);
        assert_eq!(
            (lo, hi),
            (0, want),
            "partition {part} watermarks after restart"
        );
        highs.insert(part, hi);
    }
    let mut found: HashMap<(i32, i64), String> = HashMap::new();
    for part in 0..3 {
        for m in consume_range(&c, &topic, part, 0, highs[&part], CONSUME_TIMEOUT) {
            found.insert(
                (part, m.offset()),
                m.payload_view::<str>().unwrap().unwrap().to_string(),
            );
        }
    }
    for (part, off, v) in &acked {
        assert_eq!(
            found.get(&(*part, *off)),
            Some(v),
            "after restart, {topic}/{part} offset {off} should hold {v}"
        );
    }

    // And the restarted broker keeps appending after the old end.
    let p = producer(&bs, &[("acks", "all")]);
    let (_, off) = send(
        &p,
        FutureRecord::<[u8], [u8]>::to(&topic)
            .partition(0)
            .payload(b"after restart".as_slice()),
    )
    .await;
    assert_eq!(off, highs[&0], "first offset after restart");
}
