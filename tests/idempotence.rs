//! Idempotent producers: a retried batch is answered with its original offset and written
//! once, gaps and zombies are refused with Kafka's errors, and all of it survives a restart.

mod common;

use std::time::Duration;

use common::raw::{batch_with, produce, Conn};
use common::*;
use kafka_protocol::messages::*;
use rdkafka::producer::FutureRecord;

const PRODUCE_VERSION: i16 = 9;

fn init_producer_id(conn: &mut Conn, producer_id: i64, epoch: i16) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch);
    match conn.call(
        ApiKey::InitProducerId,
        4,
        &RequestKind::InitProducerId(request),
    ) {
        Ok(ResponseKind::InitProducerId(r)) => {
            assert_eq!(r.error_code, 0, "InitProducerId failed");
            (r.producer_id.0, r.producer_epoch)
        }
        other => panic!("InitProducerId: {other:?}"),
    }
}

#[test]
fn retries_are_deduplicated_gaps_and_zombies_refused_across_a_restart() {
    let mut broker = Broker::start();
    let topic = topic_name("idem");
    let mut conn = Conn::open(broker.addr());
    let (pid, epoch) = init_producer_id(&mut conn, -1, -1);
    assert!(pid >= 0);
    assert_eq!(epoch, 0);
    let (other, _) = init_producer_id(&mut conn, -1, -1);
    assert_ne!(other, pid, "two producers must never share an id");

    let first = batch_with("a", pid, epoch, 0);
    assert_eq!(
        produce(&mut conn, PRODUCE_VERSION, &topic, first.clone()),
        (0, 0)
    );
    let second = batch_with("b", pid, epoch, 1);
    assert_eq!(
        produce(&mut conn, PRODUCE_VERSION, &topic, second.clone()),
        (0, 1)
    );
    // A retry (same sequence) gets the original offset and is not written again.
    assert_eq!(
        produce(&mut conn, PRODUCE_VERSION, &topic, first.clone()),
        (0, 0)
    );
    // A gap is OUT_OF_ORDER_SEQUENCE_NUMBER (45).
    let gap = batch_with("c", pid, epoch, 5);
    assert_eq!(produce(&mut conn, PRODUCE_VERSION, &topic, gap).0, 45);
    // KIP-360: the producer bumps its epoch and starts again at sequence 0.
    let (same, bumped) = init_producer_id(&mut conn, pid, epoch);
    assert_eq!((same, bumped), (pid, epoch + 1));
    assert_eq!(
        produce(
            &mut conn,
            PRODUCE_VERSION,
            &topic,
            batch_with("c", pid, bumped, 0)
        ),
        (0, 2)
    );
    // The old epoch is now a zombie: INVALID_PRODUCER_EPOCH (47).
    let zombie = batch_with("z", pid, epoch, 2);
    assert_eq!(produce(&mut conn, PRODUCE_VERSION, &topic, zombie).0, 47);

    // After a crash, the state comes back from the log: the retry is still a duplicate.
    broker.kill9();
    broker.restart();
    let mut conn = Conn::open(broker.addr());
    let retry = batch_with("c", pid, bumped, 0);
    assert_eq!(produce(&mut conn, PRODUCE_VERSION, &topic, retry), (0, 2));
    assert_eq!(
        produce(
            &mut conn,
            PRODUCE_VERSION,
            &topic,
            batch_with("d", pid, bumped, 1)
        ),
        (0, 3)
    );
    let c = consumer(&broker.bootstrap(), &[]);
    assert_eq!(
        watermarks(&c, &topic, 0),
        (0, 4),
        "exactly four records were written"
    );
}

#[test]
fn librdkafka_idempotent_producer_delivers_each_record_once() {
    let broker = Broker::start();
    let topic = topic_name("idem-rdkafka");
    let producer = producer(
        &broker.bootstrap(),
        &[("enable.idempotence", "true"), ("acks", "all")],
    );
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        for i in 0..200 {
            let payload = format!("m{i}");
            producer
                .send(
                    FutureRecord::to(&topic)
                        .payload(&payload)
                        .key("k")
                        .partition(0),
                    Duration::from_secs(10),
                )
                .await
                .expect("idempotent produce");
        }
    });
    let c = consumer(&broker.bootstrap(), &[]);
    assert_eq!(watermarks(&c, &topic, 0), (0, 200));
}

#[test]
fn producer_state_survives_a_restart_through_its_snapshot_even_past_the_log_start() {
    let mut broker = Broker::start();
    let topic = topic_name("idem-snapshot");
    let mut conn = Conn::open(broker.addr());
    let (pid, epoch) = init_producer_id(&mut conn, -1, -1);
    let first = batch_with("a", pid, epoch, 0);
    assert_eq!(
        produce(&mut conn, PRODUCE_VERSION, &topic, first.clone()),
        (0, 0)
    );
    // Move the log start past the batch: replaying the log alone could no longer see it.
    let partition = delete_records_request::DeleteRecordsPartition::default()
        .with_partition_index(0)
        .with_offset(1);
    let topic_request = delete_records_request::DeleteRecordsTopic::default()
        .with_name(common::raw::name(&topic))
        .with_partitions(vec![partition]);
    let request = DeleteRecordsRequest::default()
        .with_topics(vec![topic_request])
        .with_timeout_ms(10_000);
    match conn.call(
        ApiKey::DeleteRecords,
        2,
        &RequestKind::DeleteRecords(request),
    ) {
        Ok(ResponseKind::DeleteRecords(r)) => {
            assert_eq!(r.topics[0].partitions[0].error_code, 0);
            assert_eq!(r.topics[0].partitions[0].low_watermark, 1);
        }
        other => panic!("DeleteRecords: {other:?}"),
    }
    // A clean stop writes the snapshot; after the restart the retry is still a duplicate.
    assert!(broker.terminate().success());
    broker.restart();
    let mut conn = Conn::open(broker.addr());
    assert_eq!(produce(&mut conn, PRODUCE_VERSION, &topic, first), (0, 0));
    assert_eq!(
        produce(
            &mut conn,
            PRODUCE_VERSION,
            &topic,
            batch_with("b", pid, epoch, 1)
        ),
        (0, 1),
        "the next sequence continues from the snapshot"
    );
}
