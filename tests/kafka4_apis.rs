//! APIs and versions Kafka 4 clients and tools use that older brokers lacked: DescribeTopicPartitions
//! with its cursor (Kafka 4's `kafka-topics.sh --describe`), the KIP-714 telemetry pair,
//! ListConfigResources, and Kafka 4.1's full topic-config set with its synonyms.

mod common;

use common::raw::{name, Conn};

use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn create(conn: &mut Conn, topic: &str, partitions: i32, configs: &[(&str, &str)]) -> i16 {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            create_topics_request::CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_value(Some(StrBytes::from_string(v.to_string())))
        })
        .collect();
    let t = create_topics_request::CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(configs);
    let body = RequestKind::CreateTopics(
        CreateTopicsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(10_000),
    );
    match conn.call(ApiKey::CreateTopics, 7, &body) {
        Ok(ResponseKind::CreateTopics(r)) => r.topics[0].error_code,
        other => panic!("CreateTopics {topic}: {other:?}"),
    }
}

/// One DescribeTopicPartitions page: (topic, error, partition indexes) and the cursor.
type Page = (Vec<(String, i16, Vec<i32>)>, Option<(String, i32)>);

fn describe(conn: &mut Conn, topics: &[&str], limit: i32, cursor: Option<(&str, i32)>) -> Page {
    let request = DescribeTopicPartitionsRequest::default()
        .with_topics(
            topics
                .iter()
                .map(|t| TopicRequest::default().with_name(name(t)))
                .collect(),
        )
        .with_response_partition_limit(limit)
        .with_cursor(cursor.map(|(t, p)| {
            Cursor::default()
                .with_topic_name(name(t))
                .with_partition_index(p)
        }));
    let response = match conn.call(
        ApiKey::DescribeTopicPartitions,
        0,
        &RequestKind::DescribeTopicPartitions(request),
    ) {
        Ok(ResponseKind::DescribeTopicPartitions(r)) => r,
        other => panic!("DescribeTopicPartitions: {other:?}"),
    };
    let topics = response
        .topics
        .iter()
        .map(|t| {
            let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
            let partitions = t.partitions.iter().map(|p| p.partition_index).collect();
            (name, t.error_code, partitions)
        })
        .collect();
    let cursor = response
        .next_cursor
        .map(|c| (c.topic_name.to_string(), c.partition_index));
    (topics, cursor)
}

fn owned(topic: &str, error: i16, partitions: std::ops::Range<i32>) -> (String, i16, Vec<i32>) {
    (topic.to_string(), error, partitions.collect())
}

#[test]
fn describe_topic_partitions_pages_through_topics_in_name_order() {
    let broker = common::Broker::start_with(&["--auto-create-topics", "false"]);
    let mut conn = Conn::open(broker.addr());
    for (topic, partitions) in [("dtp-b", 3), ("dtp-a", 5), ("dtp-c", 1)] {
        assert_eq!(
            create(&mut conn, topic, partitions, &[]),
            0,
            "create {topic}"
        );
    }
    let named = ["dtp-c", "dtp-zz", "dtp-a", "dtp-b"];

    // Page 1 ends inside dtp-a; the cursor resumes there.
    let (topics, cursor) = describe(&mut conn, &named, 4, None);
    assert_eq!(topics, vec![owned("dtp-a", 0, 0..4)]);
    assert_eq!(cursor, Some(("dtp-a".to_string(), 4)));

    // Page 2 finishes dtp-a and fills up with dtp-b exactly; the next page starts at dtp-c.
    let (topics, cursor) = describe(&mut conn, &named, 4, Some(("dtp-a", 4)));
    assert_eq!(
        topics,
        vec![owned("dtp-a", 0, 4..5), owned("dtp-b", 0, 0..3)]
    );
    assert_eq!(cursor, Some(("dtp-c".to_string(), 0)));

    // The last page holds dtp-c and the unknown topic's error, and no cursor.
    let (topics, cursor) = describe(&mut conn, &named, 4, Some(("dtp-c", 0)));
    assert_eq!(
        topics,
        vec![owned("dtp-c", 0, 0..1), owned("dtp-zz", 3, 0..0)]
    );
    assert_eq!(cursor, None);

    // No topics named: every topic, unknown ones impossible, all on one page.
    let (topics, cursor) = describe(&mut conn, &[], 2000, None);
    let names: Vec<_> = topics.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, vec!["dtp-a", "dtp-b", "dtp-c"]);
    assert_eq!(cursor, None);

    // A cursor topic that was not named, or a negative partition, is INVALID_REQUEST.
    let (topics, _) = describe(&mut conn, &["dtp-a"], 10, Some(("dtp-b", 0)));
    assert_eq!(topics, vec![owned("dtp-a", 42, 0..0)]);
    let (topics, _) = describe(&mut conn, &["dtp-a"], 10, Some(("dtp-a", -1)));
    assert_eq!(topics, vec![owned("dtp-a", 42, 0..0)]);
}

#[test]
fn telemetry_clients_get_the_empty_subscription_and_configs_are_listed() {
    let broker = common::Broker::start_with(&["--auto-create-topics", "false"]);
    let mut conn = Conn::open(broker.addr());
    assert_eq!(create(&mut conn, "listed", 1, &[]), 0);

    let subscription = match conn.call(
        ApiKey::GetTelemetrySubscriptions,
        0,
        &RequestKind::GetTelemetrySubscriptions(GetTelemetrySubscriptionsRequest::default()),
    ) {
        Ok(ResponseKind::GetTelemetrySubscriptions(r)) => r,
        other => panic!("GetTelemetrySubscriptions: {other:?}"),
    };
    assert_eq!(subscription.error_code, 0);
    assert!(!subscription.client_instance_id.is_nil());
    assert!(subscription.requested_metrics.is_empty());
    let push = |conn: &mut Conn, subscription_id: i32| match conn.call(
        ApiKey::PushTelemetry,
        0,
        &RequestKind::PushTelemetry(
            PushTelemetryRequest::default()
                .with_client_instance_id(subscription.client_instance_id)
                .with_subscription_id(subscription_id),
        ),
    ) {
        Ok(ResponseKind::PushTelemetry(r)) => r.error_code,
        other => panic!("PushTelemetry: {other:?}"),
    };
    assert_eq!(push(&mut conn, subscription.subscription_id), 0);
    assert_eq!(
        push(&mut conn, subscription.subscription_id + 1),
        117,
        "UNKNOWN_SUBSCRIPTION_ID"
    );

    let list = |conn: &mut Conn, version: i16, types: Vec<i8>| match conn.call(
        ApiKey::ListConfigResources,
        version,
        &RequestKind::ListConfigResources(
            ListConfigResourcesRequest::default().with_resource_types(types),
        ),
    ) {
        Ok(ResponseKind::ListConfigResources(r)) => (
            r.error_code,
            r.config_resources
                .iter()
                .map(|c| (c.resource_type, c.resource_name.to_string()))
                .collect::<Vec<_>>(),
        ),
        other => panic!("ListConfigResources: {other:?}"),
    };
    assert_eq!(list(&mut conn, 0, vec![]), (0, vec![]));
    let (error, all) = list(&mut conn, 1, vec![]);
    assert_eq!(error, 0);
    assert!(all.contains(&(2, "listed".to_string())), "{all:?}");
    assert!(
        all.contains(&(4, "0".to_string())),
        "the broker, node 0: {all:?}"
    );
    assert_eq!(list(&mut conn, 1, vec![4]), (0, vec![(4, "0".to_string())]));
    assert_eq!(list(&mut conn, 1, vec![99]).0, 35, "UNSUPPORTED_VERSION");
}

#[test]
fn every_kafka_topic_config_is_accepted_and_described_with_synonyms() {
    let broker = common::Broker::start_with(&["--auto-create-topics", "false"]);
    let mut conn = Conn::open(broker.addr());
    let configs = [
        ("compression.type", "lz4"),
        ("min.insync.replicas", "1"),
        ("min.cleanable.dirty.ratio", "0.25"),
        ("preallocate", "TRUE"),
        ("leader.replication.throttled.replicas", "0:1,1:1"),
        ("segment.jitter.ms", "1000"),
    ];
    assert_eq!(create(&mut conn, "all-configs", 1, &configs), 0);
    // Configs Kafka 4 removed, bad values and tiered storage are INVALID_CONFIG (40).
    for bad in [
        ("message.format.version", "3.0"),
        ("compression.type", "brotli"),
        ("min.cleanable.dirty.ratio", "1.5"),
        ("compression.gzip.level", "10"),
        ("follower.replication.throttled.replicas", "0-1"),
        ("remote.storage.enable", "true"),
    ] {
        assert_eq!(create(&mut conn, "refused", 1, &[bad]), 40, "{bad:?}");
    }

    let request = DescribeConfigsRequest::default()
        .with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("all-configs")),
        ])
        .with_include_synonyms(true);
    let described = match conn.call(
        ApiKey::DescribeConfigs,
        4,
        &RequestKind::DescribeConfigs(request),
    ) {
        Ok(ResponseKind::DescribeConfigs(r)) => r.results.into_iter().next().expect("result"),
        other => panic!("DescribeConfigs: {other:?}"),
    };
    assert_eq!(described.error_code, 0);
    let entry = |name: &str| {
        described
            .configs
            .iter()
            .find(|c| c.name.as_str() == name)
            .unwrap_or_else(|| panic!("{name} not described"))
    };
    assert_eq!(
        described.configs.len(),
        33,
        "Kafka 4.1 has 33 topic configs"
    );
    let compression = entry("compression.type");
    assert_eq!(compression.value.as_deref(), Some("lz4"));
    assert_eq!(compression.config_source, 1, "DYNAMIC_TOPIC_CONFIG");
    let synonyms: Vec<_> = compression
        .synonyms
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                s.value.as_deref().map(String::from),
                s.source,
            )
        })
        .collect();
    assert_eq!(
        synonyms,
        vec![
            ("compression.type".into(), Some("lz4".into()), 1),
            ("compression.type".into(), Some("producer".into()), 5),
        ]
    );
    let retention = entry("retention.ms");
    assert_eq!(retention.config_source, 5, "DEFAULT_CONFIG");
    assert_eq!(retention.synonyms[0].name.as_str(), "log.retention.ms");
    assert_eq!(entry("min.cleanable.dirty.ratio").config_type, 6, "DOUBLE");
    assert_eq!(entry("preallocate").config_type, 1, "BOOLEAN");
}

#[test]
fn newest_versions_refuse_unknown_topic_ids_and_groups_as_kafka_4_does() {
    let broker = common::Broker::start_with(&["--auto-create-topics", "true"]);
    let mut conn = Conn::open(broker.addr());

    // Produce v13 names topics by id; an unknown id is UNKNOWN_TOPIC_ID, never created.
    let partition = produce_request::PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(common::raw::record_batch("by-id")));
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_topic_id(uuid::Uuid::new_v4())
            .with_partition_data(vec![partition])]);
    match conn.call(ApiKey::Produce, 13, &RequestKind::Produce(request)) {
        Ok(ResponseKind::Produce(r)) => {
            assert_eq!(r.responses[0].partition_responses[0].error_code, 100)
        }
        other => panic!("Produce v13: {other:?}"),
    }

    // DescribeGroups v6 (KIP-1043): an unknown group is GROUP_ID_NOT_FOUND; v5 says Dead.
    let describe = |conn: &mut Conn, version: i16| {
        let request = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_static_str("no-such-group"))]);
        match conn.call(
            ApiKey::DescribeGroups,
            version,
            &RequestKind::DescribeGroups(request),
        ) {
            Ok(ResponseKind::DescribeGroups(r)) => r.groups.into_iter().next().expect("group"),
            other => panic!("DescribeGroups v{version}: {other:?}"),
        }
    };
    let v6 = describe(&mut conn, 6);
    assert_eq!(v6.error_code, 69, "GROUP_ID_NOT_FOUND");
    assert_eq!(
        v6.error_message.as_deref(),
        Some("Group no-such-group not found.")
    );
    let v5 = describe(&mut conn, 5);
    assert_eq!((v5.error_code, v5.group_state.as_str()), (0, "Dead"));
}

/// `compression.type` is honoured as Kafka does: batches are re-encoded in the topic's
/// codec on produce (here an uncompressed idempotent batch stored as gzip), keeping its
/// offsets, values and producer fields, and `uncompressed` stores what a producer
/// compressed without compression.
#[test]
fn compression_type_re_encodes_produced_batches() {
    use common::raw::{batch_with, decode_batches, fetch, produce};

    let broker = common::Broker::start_with(&["--auto-create-topics", "false"]);
    let mut conn = Conn::open(broker.addr());
    let codec = |records: &bytes::Bytes| i16::from_be_bytes([records[21], records[22]]) & 0x7;
    for (topic, setting, want) in [("to-gzip", "gzip", 1), ("to-zstd", "zstd", 4)] {
        assert_eq!(
            create(&mut conn, topic, 1, &[("compression.type", setting)]),
            0
        );
        let (error, base) = produce(&mut conn, 9, topic, batch_with("first", 77, 0, 0));
        assert_eq!((error, base), (0, 0), "{topic}");
        let (error, base) = produce(&mut conn, 9, topic, batch_with("second", 77, 0, 1));
        assert_eq!((error, base), (0, 1), "{topic}");
        // A retry of the second batch is still recognised after re-encoding.
        let (error, base) = produce(&mut conn, 9, topic, batch_with("second", 77, 0, 1));
        assert_eq!(
            (error, base),
            (0, 1),
            "{topic}: the retry gets its original offset"
        );
        let fetched = fetch(&mut conn, topic, 0, 0, 1 << 20);
        assert_eq!(fetched.high_watermark, 2, "{topic}");
        assert_eq!(codec(&fetched.records), want, "{topic} stored as {setting}");
        let values: Vec<_> = decode_batches(&fetched.records)
            .into_iter()
            .flat_map(|(_, _, values)| values)
            .collect();
        assert_eq!(values, vec!["first", "second"], "{topic}");
    }
}

/// ListTransactions v2 (KIP-1152) filters by a regular expression the whole transactional id
/// must match; a pattern that does not compile is INVALID_REGULAR_EXPRESSION, and v1 (no
/// pattern) still lists every id.
#[test]
fn list_transactions_v2_filters_by_transactional_id_pattern() {
    let broker = common::Broker::start();
    let mut conn = Conn::open(broker.addr());
    for id in ["orders-1", "orders-2", "audit-orders-1"] {
        common::raw::init_transactional(&mut conn, id);
    }
    let list = |conn: &mut Conn, version: i16, pattern: Option<&'static str>| {
        let request = ListTransactionsRequest::default()
            .with_duration_filter(-1)
            .with_transactional_id_pattern(pattern.map(StrBytes::from_static_str));
        match conn.call(
            ApiKey::ListTransactions,
            version,
            &RequestKind::ListTransactions(request),
        ) {
            Ok(ResponseKind::ListTransactions(r)) => {
                let mut ids: Vec<String> = r
                    .transaction_states
                    .iter()
                    .map(|t| t.transactional_id.to_string())
                    .collect();
                ids.sort();
                (r.error_code, ids)
            }
            other => panic!("ListTransactions v{version}: {other:?}"),
        }
    };
    let owned = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        list(&mut conn, 2, Some("orders-.*")),
        (0, owned(&["orders-1", "orders-2"]))
    );
    assert_eq!(
        list(&mut conn, 2, Some(".*-1")),
        (0, owned(&["audit-orders-1", "orders-1"]))
    );
    assert_eq!(list(&mut conn, 2, Some("(orders")), (128, Vec::new()));
    let all = owned(&["audit-orders-1", "orders-1", "orders-2"]);
    assert_eq!(list(&mut conn, 2, Some("")), (0, all.clone()));
    assert_eq!(list(&mut conn, 1, None), (0, all));
}
