//! Transactions v2 (KIP-890 part 2) as a Kafka 4 Java producer drives them, over the raw
//! protocol (librdkafka and kafka-python speak only transactions v1): the broker finalizes
//! `transaction.version` 2; the producer sends no AddPartitionsToTxn or AddOffsetsToTxn
//! (Produce v12 and TxnOffsetCommit v5 add the partitions); every EndTxn v5 bumps the epoch
//! and answers with it; a retried EndTxn gets the same answer, also after a restart; a late
//! batch of an ended transaction is fenced.

mod common;

use common::raw::{
    call_fetch, fetch_request, init_transactional, latest_offset, name, produce_as,
    transactional_batch, Conn,
};

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const INVALID_PRODUCER_EPOCH: i16 = 47;

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

fn create_topic(conn: &mut Conn, topic: &str, partitions: i32) {
    let t = create_topics_request::CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1);
    let body = RequestKind::CreateTopics(
        CreateTopicsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(10_000),
    );
    match conn.call(ApiKey::CreateTopics, 7, &body) {
        Ok(ResponseKind::CreateTopics(r)) => assert_eq!(r.topics[0].error_code, 0),
        other => panic!("CreateTopics: {other:?}"),
    }
}

/// A transactional produce at `version` (acks=all); the partition's error code.
fn produce(
    conn: &mut Conn,
    version: i16,
    id: &str,
    topic: &str,
    partition: i32,
    batch: Bytes,
) -> i16 {
    produce_as(conn, version, Some(id), topic, partition, batch).0
}

/// EndTxn v5: (error, producer id, producer epoch).
fn end_txn(conn: &mut Conn, id: &str, pid: i64, epoch: i16, commit: bool) -> (i16, i64, i16) {
    let request = EndTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    match conn.call(ApiKey::EndTxn, 5, &RequestKind::EndTxn(request)) {
        Ok(ResponseKind::EndTxn(r)) => (r.error_code, r.producer_id.0, r.producer_epoch),
        other => panic!("EndTxn: {other:?}"),
    }
}

fn txn_offset_commit(
    conn: &mut Conn,
    id: &str,
    pid: i64,
    epoch: i16,
    group: &str,
    topic: &str,
    offset: i64,
) -> i16 {
    let request = TxnOffsetCommitRequest::default()
        .with_transactional_id(txn_id(id))
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_topics(vec![
            txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset),
                ]),
        ]);
    match conn.call(
        ApiKey::TxnOffsetCommit,
        5,
        &RequestKind::TxnOffsetCommit(request),
    ) {
        Ok(ResponseKind::TxnOffsetCommit(r)) => r.topics[0].partitions[0].error_code,
        other => panic!("TxnOffsetCommit: {other:?}"),
    }
}

fn committed_offset(conn: &mut Conn, group: &str, topic: &str) -> i64 {
    let request = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopics::default()
                    .with_name(name(topic))
                    .with_partition_indexes(vec![0]),
            ])),
    ]);
    match conn.call(ApiKey::OffsetFetch, 9, &RequestKind::OffsetFetch(request)) {
        Ok(ResponseKind::OffsetFetch(r)) => r.groups[0].topics[0].partitions[0].committed_offset,
        other => panic!("OffsetFetch: {other:?}"),
    }
}

/// (state, partitions) of a transactional id, from DescribeTransactions.
fn describe(conn: &mut Conn, id: &str) -> (String, Vec<(String, i32)>) {
    let request = DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id(id)]);
    match conn.call(
        ApiKey::DescribeTransactions,
        0,
        &RequestKind::DescribeTransactions(request),
    ) {
        Ok(ResponseKind::DescribeTransactions(r)) => {
            let s = &r.transaction_states[0];
            let mut partitions: Vec<(String, i32)> = s
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
                .collect();
            partitions.sort();
            (s.transaction_state.to_string(), partitions)
        }
        other => panic!("DescribeTransactions: {other:?}"),
    }
}

/// First offsets of the aborted transactions a read_committed fetch of partition 0 reports.
fn aborted_from(conn: &mut Conn, topic: &str) -> Vec<i64> {
    let request = fetch_request(topic, &[0], 0, 1 << 20).with_isolation_level(1);
    let r = call_fetch(conn, request);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.aborted_transactions
        .as_ref()
        .map(|a| a.iter().map(|t| t.first_offset).collect())
        .unwrap_or_default()
}

#[test]
fn a_v2_producer_commits_and_aborts_with_an_epoch_bump_per_transaction() {
    let mut broker = common::Broker::start();
    let mut conn = Conn::open(broker.addr());
    let (topic, id, group) = ("tv2", "tv2-app", "tv2-group");

    // The feature a Java producer reads to choose transactions v2.
    match conn.call(
        ApiKey::ApiVersions,
        3,
        &RequestKind::ApiVersions(ApiVersionsRequest::default()),
    ) {
        Ok(ResponseKind::ApiVersions(r)) => {
            let tv = r
                .finalized_features
                .iter()
                .find(|f| f.name.as_str() == "transaction.version")
                .expect("transaction.version is finalized");
            assert_eq!(tv.max_version_level, 2);
            assert!(r.finalized_features_epoch >= 0);
        }
        other => panic!("ApiVersions: {other:?}"),
    }

    create_topic(&mut conn, topic, 2);
    let (pid, e0) = init_transactional(&mut conn, id);

    // Transaction 1: no AddPartitionsToTxn; the first batch on each partition adds it.
    let batch = |v: &str, epoch: i16, seq: i32| transactional_batch(v, pid, epoch, seq);
    assert_eq!(produce(&mut conn, 12, id, topic, 0, batch("a", e0, 0)), 0);
    assert_eq!(produce(&mut conn, 12, id, topic, 1, batch("b", e0, 0)), 0);
    assert_eq!(produce(&mut conn, 12, id, topic, 0, batch("c", e0, 1)), 0);
    let (state, partitions) = describe(&mut conn, id);
    assert_eq!(state, "Ongoing");
    assert_eq!(
        partitions,
        vec![(topic.to_string(), 0), (topic.to_string(), 1)]
    );
    assert_eq!(
        latest_offset(&mut conn, topic, 0, 1),
        0,
        "open: LSO held back"
    );
    // No AddOffsetsToTxn either: TxnOffsetCommit v5 adds the offsets partition.
    assert_eq!(
        txn_offset_commit(&mut conn, id, pid, e0, group, topic, 7),
        0
    );
    assert_eq!(describe(&mut conn, id).1.len(), 3);

    assert_eq!(end_txn(&mut conn, id, pid, e0, true), (0, pid, e0 + 1));
    assert_eq!(
        latest_offset(&mut conn, topic, 0, 1),
        3,
        "2 records + marker"
    );
    assert_eq!(committed_offset(&mut conn, group, topic), 7);
    // A retry (the epoch before the bump) gets the same answer.
    assert_eq!(end_txn(&mut conn, id, pid, e0, true), (0, pid, e0 + 1));
    // A late batch of the ended transaction is fenced.
    assert_eq!(
        produce(&mut conn, 12, id, topic, 0, batch("late", e0, 2)),
        INVALID_PRODUCER_EPOCH
    );

    // Transaction 2 runs at the bumped epoch, sequences from 0, and aborts.
    let e1 = e0 + 1;
    assert_eq!(produce(&mut conn, 12, id, topic, 0, batch("d", e1, 0)), 0);
    assert_eq!(end_txn(&mut conn, id, pid, e1, false), (0, pid, e1 + 1));
    assert_eq!(aborted_from(&mut conn, topic), vec![3]);
    assert_eq!(describe(&mut conn, id).0, "CompleteAbort");

    // The coordinator's memory of transactions v2 survives a crash: the retry of the
    // abort is still recognised by its epoch.
    broker.kill9();
    broker.restart();
    let mut conn = Conn::open(broker.addr());
    assert_eq!(end_txn(&mut conn, id, pid, e1, false), (0, pid, e1 + 1));
    assert_eq!(
        end_txn(&mut conn, id, pid, e1, true).0,
        48,
        "INVALID_TXN_STATE"
    );
    // And the next transaction goes on at the new epoch.
    let e2 = e1 + 1;
    assert_eq!(produce(&mut conn, 12, id, topic, 1, batch("e", e2, 0)), 0);
    assert_eq!(end_txn(&mut conn, id, pid, e2, true), (0, pid, e2 + 1));
    assert_eq!(
        latest_offset(&mut conn, topic, 1, 1),
        4,
        "b + marker, e + marker"
    );
}
