//! Log compaction as clients see it: a compacted topic read from the beginning holds the
//! latest value of each key at the offset it was written at, tombstones go after
//! `delete.retention.ms`, records without a key are refused (KIP-467), and
//! `__consumer_offsets` stays small under a constant commit load and still holds every
//! group's latest offsets after a restart.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::raw::{name, Conn};
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;

/// A counter from `/metrics` (summed over its series).
fn metric(broker: &Broker, name: &str, label: &str) -> i64 {
    let (_, body) = http_get(broker.admin_port, "/metrics");
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .sum()
}

/// Waits until `done` holds, polling; panics with `what` after `timeout`.
fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Every record of `topic/0` as (offset, key, value); None values are tombstones.
fn read_all(broker: &Broker, topic: &str) -> Vec<(i64, String, Option<String>)> {
    let c = consumer(&broker.bootstrap(), &[]);
    let (_, high) = watermarks(&c, topic, 0);
    consume_range(&c, topic, 0, 0, high, Duration::from_secs(30))
        .iter()
        .map(|m| {
            let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
            (
                m.offset(),
                text(m.key()).unwrap_or_default(),
                text(m.payload()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_keeps_the_latest_value_of_each_key_at_its_offset() {
    let broker = Broker::start();
    let topic = topic_name("compacted");
    let configs = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "2048"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", "1000"),
    ];
    create_topic(&admin(&broker.bootstrap()), &topic, 1, &configs).await;
    let producer = producer(&broker.bootstrap(), &[("linger.ms", "0"), ("acks", "all")]);
    // 20 keys, 15 versions each; then tombstones for keys 0-4. Offsets come back from the
    // broker and are checked against what consumers read later.
    let mut written: BTreeMap<i64, (String, Option<String>)> = BTreeMap::new();
    for version in 0..15 {
        for k in 0..20 {
            let (key, value) = (format!("key-{k}"), format!("value-{k}-{version}"));
            let (_, offset) = send(
                &producer,
                FutureRecord::to(&topic)
                    .key(key.as_bytes())
                    .payload(value.as_bytes()),
            )
            .await;
            written.insert(offset, (key, Some(value)));
        }
    }
    for k in 0..5 {
        let key = format!("key-{k}");
        let (_, offset) = send(
            &producer,
            FutureRecord::<[u8], [u8]>::to(&topic).key(key.as_bytes()),
        )
        .await;
        written.insert(offset, (key, None));
    }

    // A record without a key is refused as Kafka refuses it.
    let refused = producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic).payload(b"no key"),
            Duration::from_secs(10),
        )
        .await;
    let Err((error, _)) = refused else {
        panic!("a record without a key on a compacted topic was accepted");
    };
    assert!(format!("{error}").contains("InvalidRecord"), "{error}");

    let mut compacted = Vec::new();
    wait_for(
        "the cleaner to remove old values",
        Duration::from_secs(60),
        || {
            compacted = read_all(&broker, &topic);
            compacted.len() < written.len() / 2
        },
    );
    assert!(metric(&broker, "sluice_cleaner_segments_total", "") > 0);
    assert!(metric(&broker, "sluice_cleaner_removed_records_total", "") > 0);
    for (offset, key, value) in &compacted {
        assert_eq!(
            written.get(offset),
            Some(&(key.clone(), value.clone())),
            "the record at offset {offset} is the one written there"
        );
    }
    // The latest value of every key is still there; deleted keys show their tombstone.
    let mut latest: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (key, value) in written.values() {
        latest.insert(key.clone(), value.clone());
    }
    let mut seen: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (_, key, value) in &compacted {
        seen.insert(key.clone(), value.clone());
    }
    assert_eq!(seen, latest, "the latest value of each key survives");

    // After delete.retention.ms, more writes make the log dirty and the next passes remove
    // the tombstones: deleted keys are gone for new readers.
    std::thread::sleep(Duration::from_millis(1_500));
    for round in 0..2 {
        for k in 5..20 {
            let (key, value) = (format!("key-{k}"), format!("later-{k}-{round}"));
            send(
                &producer,
                FutureRecord::to(&topic)
                    .key(key.as_bytes())
                    .payload(value.as_bytes()),
            )
            .await;
        }
        std::thread::sleep(Duration::from_millis(3_000));
    }
    wait_for("the tombstones to go", Duration::from_secs(60), || {
        read_all(&broker, &topic).iter().all(|(_, key, _)| {
            !matches!(
                key.as_str(),
                "key-0" | "key-1" | "key-2" | "key-3" | "key-4"
            )
        })
    });
}

fn incremental_alter(conn: &mut Conn, topic: &str, configs: &[(&str, &str)]) {
    use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let resource = AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_string(topic.to_string()))
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        );
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![resource]);
    match conn.call(
        ApiKey::IncrementalAlterConfigs,
        1,
        &RequestKind::IncrementalAlterConfigs(request),
    ) {
        Ok(ResponseKind::IncrementalAlterConfigs(r)) => {
            assert_eq!(r.responses[0].error_code, 0, "{:?}", r.responses[0])
        }
        other => panic!("IncrementalAlterConfigs: {other:?}"),
    }
}

fn commit(conn: &mut Conn, group: &str, topic: &str, partitions: i32, offset: i64) {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name(topic))
                .with_partitions(
                    (0..partitions)
                        .map(|p| {
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset + i64::from(p))
                        })
                        .collect(),
                ),
        ]);
    match conn.call(ApiKey::OffsetCommit, 8, &RequestKind::OffsetCommit(request)) {
        Ok(ResponseKind::OffsetCommit(r)) => {
            assert!(
                r.topics[0].partitions.iter().all(|p| p.error_code == 0),
                "{r:?}"
            )
        }
        other => panic!("OffsetCommit: {other:?}"),
    }
}

fn fetch_offsets(conn: &mut Conn, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(name(topic))
                .with_partition_indexes((0..partitions).collect()),
        ]));
    match conn.call(ApiKey::OffsetFetch, 7, &RequestKind::OffsetFetch(request)) {
        Ok(ResponseKind::OffsetFetch(r)) => r.topics[0]
            .partitions
            .iter()
            .map(|p| p.committed_offset)
            .collect(),
        other => panic!("OffsetFetch: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_offsets_stay_bounded_under_100k_commits_and_survive_a_restart() {
    const PARTITIONS: i32 = 50;
    const ROUNDS: i64 = 2_000;
    let mut broker = Broker::start();
    let topic = topic_name("committed");
    create_topic(&admin(&broker.bootstrap()), &topic, PARTITIONS, &[]).await;
    let group = topic_name("bounded-group");
    let mut conn = Conn::open(broker.addr());
    commit(&mut conn, &group, &topic, PARTITIONS, 0);
    // Small segments, so the commit load rolls many of them (Kafka's default is 100 MiB).
    incremental_alter(
        &mut conn,
        "__consumer_offsets",
        &[("segment.bytes", "65536")],
    );
    for round in 1..ROUNDS {
        commit(&mut conn, &group, &topic, PARTITIONS, round * 100);
    }
    let label = "topic=\"__consumer_offsets\"";
    // One record per committed offset: 100k records of at least 40 bytes each (4 MB) went
    // into __consumer_offsets.
    let records = metric(&broker, "sluice_partition_high_watermark", label);
    assert!(
        records >= PARTITIONS as i64 * ROUNDS,
        "{records} commit records"
    );
    wait_for(
        "__consumer_offsets to be compacted",
        Duration::from_secs(90),
        || metric(&broker, "sluice_partition_size_bytes", label) < 512 * 1024,
    );
    let expected: Vec<i64> = (0..PARTITIONS)
        .map(|p| (ROUNDS - 1) * 100 + i64::from(p))
        .collect();
    assert_eq!(
        fetch_offsets(&mut conn, &group, &topic, PARTITIONS),
        expected
    );

    // The coordinator rebuilds the group from the compacted log.
    drop(conn);
    broker.terminate();
    broker.restart();
    let mut conn = Conn::open(broker.addr());
    let mut offsets = Vec::new();
    wait_for("the coordinator to load", Duration::from_secs(30), || {
        offsets = fetch_offsets(&mut conn, &group, &topic, PARTITIONS);
        offsets == expected
    });
}
