//! Every advertised API at every advertised version gets a well-formed answer.
//!
//! A Kafka client picks the highest version both sides support, so a response that fails to
//! encode at one old version breaks every client stuck on it. This test sends a realistic
//! request for each (API, version) in the ApiVersions table over a raw socket, decodes the
//! answer at that version, and checks the request actually did its work where that is cheap
//! to see (produce lands, fetch returns it, metadata lists the topic).

mod common;

use common::raw::{name, record_batch, Conn};

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice::kafka::versions::SUPPORTED;

/// A realistic request of `api` at `version` against `topic`, or None if this test does not
/// know how to build one (the API is then only checked by its own tests).
fn request(api: ApiKey, version: i16, topic: &str, topic_id: uuid::Uuid) -> Option<RequestKind> {
    use kafka_protocol::messages::*;
    if version < api.valid_versions().min {
        // Versions Kafka 4 removed, which the crate cannot encode: tests/old_clients.rs
        // sends them by hand.
        return None;
    }
    Some(match api {
        ApiKey::ApiVersions => {
            let mut r = ApiVersionsRequest::default();
            if version >= 3 {
                r.client_software_name = StrBytes::from_static_str("sweep");
                r.client_software_version = StrBytes::from_static_str("1.0");
            }
            RequestKind::ApiVersions(r)
        }
        ApiKey::Metadata => {
            let t = metadata_request::MetadataRequestTopic::default().with_name(Some(name(topic)));
            let mut r = MetadataRequest::default().with_topics(Some(vec![t]));
            if version >= 4 {
                r.allow_auto_topic_creation = false;
            }
            RequestKind::Metadata(r)
        }
        ApiKey::Produce => {
            let p = produce_request::PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(record_batch(&format!("v{version}"))));
            let t = produce_request::TopicProduceData::default().with_partition_data(vec![p]);
            // v13 names the topic by id (KIP-516).
            let t = if version >= 13 {
                t.with_topic_id(topic_id)
            } else {
                t.with_name(name(topic))
            };
            RequestKind::Produce(
                ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(10_000)
                    .with_topic_data(vec![t]),
            )
        }
        ApiKey::Fetch => {
            let mut p = fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20);
            if version >= 9 {
                p.current_leader_epoch = -1;
            }
            let mut t = fetch_request::FetchTopic::default().with_partitions(vec![p]);
            if version >= 13 {
                t.topic_id = topic_id;
            } else {
                t.topic = name(topic);
            }
            let mut r = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_min_bytes(0)
                .with_topics(vec![t]);
            if version >= 3 {
                r.max_bytes = 1 << 20;
            }
            if version < 15 {
                r.replica_id = BrokerId(-1);
            }
            RequestKind::Fetch(r)
        }
        ApiKey::ListOffsets => {
            let p = list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-2);
            let t = list_offsets_request::ListOffsetsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![p]);
            RequestKind::ListOffsets(
                ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![t]),
            )
        }
        ApiKey::OffsetForLeaderEpoch => {
            let p = offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_leader_epoch(0);
            let t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![p]);
            let mut r = OffsetForLeaderEpochRequest::default().with_topics(vec![t]);
            if version >= 3 {
                r.replica_id = BrokerId(-1);
            }
            RequestKind::OffsetForLeaderEpoch(r)
        }
        ApiKey::CreateTopics => {
            let t = create_topics_request::CreatableTopic::default()
                .with_name(name(&format!("sweep-create-{version}")))
                .with_num_partitions(1)
                .with_replication_factor(1);
            RequestKind::CreateTopics(
                CreateTopicsRequest::default()
                    .with_topics(vec![t])
                    .with_timeout_ms(10_000)
                    .with_validate_only(true),
            )
        }
        ApiKey::DeleteTopics => {
            let missing = format!("sweep-missing-{version}");
            let mut r = DeleteTopicsRequest::default().with_timeout_ms(10_000);
            if version >= 6 {
                r.topics = vec![delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(name(&missing)))];
            } else {
                r.topic_names = vec![name(&missing)];
            }
            RequestKind::DeleteTopics(r)
        }
        ApiKey::DeleteRecords => {
            let p = delete_records_request::DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(0);
            let t = delete_records_request::DeleteRecordsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![p]);
            RequestKind::DeleteRecords(
                DeleteRecordsRequest::default()
                    .with_topics(vec![t])
                    .with_timeout_ms(10_000),
            )
        }
        ApiKey::DescribeConfigs => {
            let res = describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_string()));
            RequestKind::DescribeConfigs(
                DescribeConfigsRequest::default().with_resources(vec![res]),
            )
        }
        ApiKey::AlterConfigs => {
            let c = alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("604800000")));
            let res = alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configs(vec![c]);
            RequestKind::AlterConfigs(
                AlterConfigsRequest::default()
                    .with_resources(vec![res])
                    .with_validate_only(true),
            )
        }
        ApiKey::IncrementalAlterConfigs => {
            let c = incremental_alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_static_str("604800000")));
            let res = incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configs(vec![c]);
            RequestKind::IncrementalAlterConfigs(
                IncrementalAlterConfigsRequest::default()
                    .with_resources(vec![res])
                    .with_validate_only(true),
            )
        }
        ApiKey::DescribeLogDirs => RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default()),
        ApiKey::CreatePartitions => {
            let t = create_partitions_request::CreatePartitionsTopic::default()
                .with_name(name(topic))
                .with_count(2);
            RequestKind::CreatePartitions(
                CreatePartitionsRequest::default()
                    .with_topics(vec![t])
                    .with_timeout_ms(10_000)
                    .with_validate_only(true),
            )
        }
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        // Transactions: an unknown transactional id gets an error, encoded at every version.
        ApiKey::AddPartitionsToTxn => {
            let topics = vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![0]),
            ];
            let txn_id = TransactionalId(StrBytes::from_static_str("sweep-txn"));
            let r = if version >= 4 {
                AddPartitionsToTxnRequest::default().with_transactions(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                        .with_transactional_id(txn_id)
                        .with_producer_id(ProducerId(1))
                        .with_topics(topics),
                ])
            } else {
                AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(txn_id)
                    .with_v3_and_below_producer_id(ProducerId(1))
                    .with_v3_and_below_topics(topics)
            };
            RequestKind::AddPartitionsToTxn(r)
        }
        ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("sweep-txn")))
                .with_producer_id(ProducerId(1))
                .with_group_id(GroupId(StrBytes::from_static_str("sweep-group"))),
        ),
        ApiKey::EndTxn => RequestKind::EndTxn(
            EndTxnRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("sweep-txn")))
                .with_producer_id(ProducerId(1))
                .with_committed(true),
        ),
        ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(
            TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("sweep-txn")))
                .with_group_id(GroupId(StrBytes::from_static_str("sweep-group")))
                .with_producer_id(ProducerId(1))
                .with_topics(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(name(topic))
                        .with_partitions(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                .with_committed_offset(0),
                        ]),
                ]),
        ),
        ApiKey::WriteTxnMarkers => {
            RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(vec![
                write_txn_markers_request::WritableTxnMarker::default()
                    .with_producer_id(ProducerId(424_242))
                    .with_transaction_result(false)
                    .with_topics(vec![write_txn_markers_request::WritableTxnMarkerTopic::default()
                        .with_name(name(topic))
                        .with_partition_indexes(vec![0])]),
            ]))
        }
        ApiKey::DescribeTransactions => RequestKind::DescribeTransactions(
            DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
                StrBytes::from_static_str("sweep-txn"),
            )]),
        ),
        ApiKey::ListTransactions => RequestKind::ListTransactions(
            ListTransactionsRequest::default().with_duration_filter(-1),
        ),
        ApiKey::DescribeProducers => {
            RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(name(topic))
                    .with_partition_indexes(vec![0, 7]),
            ]))
        }
        ApiKey::DescribeTopicPartitions => RequestKind::DescribeTopicPartitions(
            DescribeTopicPartitionsRequest::default()
                .with_topics(vec![
                    describe_topic_partitions_request::TopicRequest::default()
                        .with_name(name(topic)),
                ])
                .with_response_partition_limit(100),
        ),
        ApiKey::GetTelemetrySubscriptions => {
            RequestKind::GetTelemetrySubscriptions(GetTelemetrySubscriptionsRequest::default())
        }
        ApiKey::PushTelemetry => RequestKind::PushTelemetry(
            PushTelemetryRequest::default().with_client_instance_id(uuid::Uuid::new_v4()),
        ),
        ApiKey::ListConfigResources => {
            RequestKind::ListConfigResources(ListConfigResourcesRequest::default())
        }
        // A KIP-848 member joining (v1: with the member id it chose, as v1 clients do).
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(format!(
                    "sweep-cg-v{version}"
                ))))
                .with_member_id(if version >= 1 {
                    StrBytes::from_static_str("sweep-member")
                } else {
                    StrBytes::default()
                })
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![name(topic)])),
        ),
        _ => return None,
    })
}

/// Checks the parts of a response that prove the request did its work.
fn check(api: ApiKey, version: i16, topic: &str, response: &ResponseKind) -> Result<(), String> {
    match response {
        ResponseKind::ApiVersions(r) if r.error_code != 0 || r.api_keys.is_empty() => Err(format!(
            "ApiVersions error {} with {} keys",
            r.error_code,
            r.api_keys.len()
        )),
        ResponseKind::Metadata(r) => {
            let t = r.topics.first().ok_or("no topic in metadata")?;
            if t.error_code != 0 || t.partitions.len() != 1 {
                return Err(format!(
                    "topic error {} partitions {}",
                    t.error_code,
                    t.partitions.len()
                ));
            }
            if version >= 1
                && r.topics
                    .iter()
                    .all(|t| t.name.as_ref().map(|n| n.as_str()) != Some(topic))
            {
                return Err("topic name missing".into());
            }
            Ok(())
        }
        ResponseKind::Produce(r) => {
            let p = &r.responses[0].partition_responses[0];
            if p.error_code != 0 || p.base_offset < 0 {
                return Err(format!(
                    "produce error {} base offset {}",
                    p.error_code, p.base_offset
                ));
            }
            Ok(())
        }
        ResponseKind::Fetch(r) => {
            let p = &r.responses[0].partitions[0];
            let records = p.records.as_ref().map_or(0, Bytes::len);
            if p.error_code != 0 || p.high_watermark <= 0 || records == 0 {
                return Err(format!(
                    "fetch error {} hw {} record bytes {records}",
                    p.error_code, p.high_watermark
                ));
            }
            Ok(())
        }
        ResponseKind::ListOffsets(r) => {
            let p = &r.topics[0].partitions[0];
            if p.error_code != 0 || p.offset != 0 {
                return Err(format!(
                    "list offsets error {} offset {}",
                    p.error_code, p.offset
                ));
            }
            Ok(())
        }
        ResponseKind::CreateTopics(r) if r.topics[0].error_code != 0 => Err(format!(
            "validate-only create failed: {}",
            r.topics[0].error_code
        )),
        ResponseKind::DeleteTopics(r) if r.responses[0].error_code != 3 => Err(format!(
            "deleting a missing topic: error {} (want 3)",
            r.responses[0].error_code
        )),
        ResponseKind::DescribeConfigs(r) => {
            let res = &r.results[0];
            if res.error_code != 0
                || !res
                    .configs
                    .iter()
                    .any(|c| c.name.as_str() == "retention.ms")
            {
                return Err(format!("describe configs error {}", res.error_code));
            }
            Ok(())
        }
        ResponseKind::DescribeLogDirs(r) if r.results.is_empty() => Err("no log dir".into()),
        ResponseKind::DescribeCluster(r) if r.brokers.len() != 1 => Err("no broker".into()),
        ResponseKind::WriteTxnMarkers(r)
            if r.markers[0].topics[0].partitions[0].error_code != 0 =>
        {
            Err("marker not written".into())
        }
        ResponseKind::DescribeTransactions(r) if r.transaction_states[0].error_code != 105 => {
            Err(format!(
                "unknown transactional id: error {} (want 105)",
                r.transaction_states[0].error_code
            ))
        }
        ResponseKind::DescribeProducers(r) => {
            let errors: Vec<i16> = r.topics[0]
                .partitions
                .iter()
                .map(|p| p.error_code)
                .collect();
            if errors != [0, 3] {
                return Err(format!(
                    "describe producers errors {errors:?} (want [0, 3])"
                ));
            }
            Ok(())
        }
        ResponseKind::DescribeTopicPartitions(r) => {
            let t = r.topics.first().ok_or("no topic")?;
            if t.error_code != 0 || t.partitions.len() != 1 || r.next_cursor.is_some() {
                return Err(format!(
                    "topic error {} partitions {} cursor {:?}",
                    t.error_code,
                    t.partitions.len(),
                    r.next_cursor
                ));
            }
            Ok(())
        }
        ResponseKind::GetTelemetrySubscriptions(r)
            if r.error_code != 0
                || r.client_instance_id.is_nil()
                || !r.requested_metrics.is_empty() =>
        {
            Err(format!("telemetry subscription {r:?}"))
        }
        ResponseKind::PushTelemetry(r) if r.error_code != 0 => {
            Err(format!("push telemetry error {}", r.error_code))
        }
        ResponseKind::ListConfigResources(r) => {
            let topics = r.config_resources.iter().filter(|c| c.resource_type == 2);
            let listed = topics.clone().any(|c| c.resource_name.as_str() == topic);
            // v0 lists client-metrics resources only; v1 lists every topic and the broker.
            if r.error_code != 0 || (version >= 1) != listed {
                return Err(format!("list config resources {r:?}"));
            }
            Ok(())
        }
        ResponseKind::ConsumerGroupHeartbeat(r) => {
            let owned: usize = r
                .assignment
                .iter()
                .flat_map(|a| a.topic_partitions.iter())
                .map(|tp| tp.partitions.len())
                .sum();
            if r.error_code != 0 || r.member_epoch <= 0 || owned != 1 {
                return Err(format!("consumer group heartbeat {r:?}"));
            }
            Ok(())
        }
        ResponseKind::EndTxn(r) if r.error_code != 49 => Err(format!(
            "EndTxn for an unknown id: error {} (want 49)",
            r.error_code
        )),
        _ => {
            let _ = (api, version);
            Ok(())
        }
    }
}

#[test]
fn every_advertised_version_of_every_api_answers() {
    let broker = common::Broker::start();
    let topic = "version-sweep";
    let mut conn = Conn::open(broker.addr());
    // Create the topic and learn its id (for Fetch v13+).
    let create = create_topics_request::CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(1)
        .with_replication_factor(1);
    conn.call(
        ApiKey::CreateTopics,
        7,
        &RequestKind::CreateTopics(
            CreateTopicsRequest::default()
                .with_topics(vec![create])
                .with_timeout_ms(10_000),
        ),
    )
    .expect("create topic");
    let topic_id = match conn
        .call(
            ApiKey::Metadata,
            12,
            &request(ApiKey::Metadata, 12, topic, uuid::Uuid::nil()).unwrap(),
        )
        .expect("metadata")
    {
        ResponseKind::Metadata(r) => r.topics[0].topic_id,
        other => panic!("unexpected {other:?}"),
    };
    let mut failures = Vec::new();
    let mut checked = 0;
    // Produce first so fetches have something to return.
    let mut order: Vec<_> = SUPPORTED.to_vec();
    order.sort_by_key(|(k, _, _)| if *k == ApiKey::Produce { 0 } else { 1 });
    for (api, min, max) in order {
        for version in min..=max {
            let Some(body) = request(api, version, topic, topic_id) else {
                continue;
            };
            checked += 1;
            let outcome = conn
                .call(api, version, &body)
                .and_then(|r| check(api, version, topic, &r));
            if let Err(e) = outcome {
                failures.push(format!("{api:?} v{version}: {e}"));
                conn = Conn::open(broker.addr());
            }
        }
    }
    assert!(
        checked >= 80,
        "only {checked} (api, version) pairs were exercised"
    );
    assert!(
        failures.is_empty(),
        "clients on these versions would break:\n{}\n--- broker log ---\n{}",
        failures.join("\n"),
        broker.log_tail()
    );
}

#[test]
fn unknown_topic_configs_are_refused_with_invalid_config() {
    let broker = common::Broker::start();
    let mut conn = Conn::open(broker.addr());
    let create = create_topics_request::CreatableTopic::default()
        .with_name(name("configs"))
        .with_num_partitions(1)
        .with_replication_factor(1);
    conn.call(
        ApiKey::CreateTopics,
        7,
        &RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![create])),
    )
    .expect("create topic");
    for version in 0..=2 {
        let config = alter_configs_request::AlterableConfig::default()
            .with_name(StrBytes::from_static_str("no.such.config"))
            .with_value(Some(StrBytes::from_static_str("1")));
        let resource = alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("configs"))
            .with_configs(vec![config]);
        let request = AlterConfigsRequest::default().with_resources(vec![resource]);
        match conn.call(
            ApiKey::AlterConfigs,
            version,
            &RequestKind::AlterConfigs(request),
        ) {
            Ok(ResponseKind::AlterConfigs(r)) => assert_eq!(
                r.responses[0].error_code, 40,
                "AlterConfigs v{version} with an unknown name must be INVALID_CONFIG"
            ),
            other => panic!("AlterConfigs v{version}: {other:?}"),
        }
    }
}
