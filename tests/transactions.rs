//! Transactions end to end with librdkafka: commits and aborts as read_committed and
//! read_uncommitted consumers see them, zombie fencing, an exactly-once
//! consume-transform-produce loop that is killed with SIGKILL mid-way, and an idempotent
//! producer whose broker is killed with SIGKILL while it writes.

mod common;

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

fn txn_producer(bootstrap: &str, transactional_id: &str) -> BaseProducer {
    let mut c = client_config(bootstrap);
    c.set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "60000")
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5");
    c.create().expect("create transactional producer")
}

fn send(p: &BaseProducer, topic: &str, partition: i32, payload: &str) {
    p.send(
        BaseRecord::to(topic)
            .partition(partition)
            .key("k")
            .payload(payload),
    )
    .unwrap_or_else(|(e, _)| panic!("enqueue {payload}: {e}"));
    p.poll(Duration::ZERO);
}

fn isolated_consumer(bootstrap: &str, isolation: &str) -> BaseConsumer {
    consumer(
        bootstrap,
        &[
            ("isolation.level", isolation),
            ("auto.offset.reset", "earliest"),
        ],
    )
}

/// The first `n` records readable from offset 0 of `topic/partition` (fewer only if they
/// do not arrive in time; callers compare with what they expect).
fn read_n(c: &BaseConsumer, topic: &str, partition: i32, n: usize) -> Vec<OwnedMessage> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + CLIENT_TIMEOUT * 3;
    while out.len() < n && Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(e)) => panic!("consumer of {topic}/{partition}: {e}"),
        }
    }
    out
}

/// (high watermark, last stable offset) of `topic/partition`, as ListOffsets reports them
/// to read_uncommitted and read_committed consumers.
fn end_offsets(broker: &Broker, topic: &str, partition: i32) -> (i64, i64) {
    let mut conn = raw::Conn::open(broker.addr());
    (
        raw::latest_offset(&mut conn, topic, partition, 0),
        raw::latest_offset(&mut conn, topic, partition, 1),
    )
}

fn payloads(messages: &[OwnedMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
        .collect()
}

#[test]
fn committed_records_are_visible_to_read_committed_and_aborted_ones_are_not() {
    let broker = Broker::start();
    let topic = topic_name("txn");
    let p = txn_producer(&broker.bootstrap(), "txn-commit-abort");
    p.init_transactions(CLIENT_TIMEOUT)
        .expect("init_transactions");

    p.begin_transaction().unwrap();
    for i in 0..10 {
        send(&p, &topic, 0, &format!("c1-{i}"));
    }
    p.commit_transaction(CLIENT_TIMEOUT).expect("commit 1");

    p.begin_transaction().unwrap();
    for i in 0..5 {
        send(&p, &topic, 0, &format!("a-{i}"));
    }
    p.flush(CLIENT_TIMEOUT).expect("flush");
    p.abort_transaction(CLIENT_TIMEOUT).expect("abort");

    p.begin_transaction().unwrap();
    for i in 0..3 {
        send(&p, &topic, 0, &format!("c2-{i}"));
    }
    p.commit_transaction(CLIENT_TIMEOUT).expect("commit 2");

    // 18 records + 3 markers, and no transaction left open.
    assert_eq!(end_offsets(&broker, &topic, 0), (21, 21));
    let committed = payloads(&read_n(
        &isolated_consumer(&broker.bootstrap(), "read_committed"),
        &topic,
        0,
        13,
    ));
    let want: Vec<String> = (0..10)
        .map(|i| format!("c1-{i}"))
        .chain((0..3).map(|i| format!("c2-{i}")))
        .collect();
    assert_eq!(
        committed, want,
        "read_committed sees exactly the committed records"
    );

    let everything = payloads(&read_n(
        &isolated_consumer(&broker.bootstrap(), "read_uncommitted"),
        &topic,
        0,
        18,
    ));
    assert_eq!(
        everything.len(),
        18,
        "read_uncommitted sees all: {everything:?}"
    );
    assert!(everything.iter().any(|p| p == "a-4"));

    // Three markers: 18 records + 3 control batches.
    let c = consumer(&broker.bootstrap(), &[]);
    assert_eq!(watermarks(&c, &topic, 0), (0, 21));
}

#[test]
fn an_open_transaction_holds_back_read_committed_consumers() {
    let broker = Broker::start();
    let topic = topic_name("txn-lso");
    let plain = producer(&broker.bootstrap(), &[]);
    let p = txn_producer(&broker.bootstrap(), "txn-lso");
    p.init_transactions(CLIENT_TIMEOUT)
        .expect("init_transactions");
    p.begin_transaction().unwrap();
    send(&p, &topic, 0, "pending");
    p.flush(CLIENT_TIMEOUT).expect("flush");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        plain
            .send(
                rdkafka::producer::FutureRecord::to(&topic)
                    .partition(0)
                    .payload("plain")
                    .key("k"),
                Duration::from_secs(10),
            )
            .await
            .expect("plain produce");
    });
    assert_eq!(
        end_offsets(&broker, &topic, 0),
        (2, 0),
        "nothing from the open transaction's first offset on is stable"
    );
    // DescribeProducers names the producer holding it back, as kafka-transactions.sh
    // describe-producers shows it (the plain producer is not idempotent: not listed).
    let open = describe_producers(&broker, &topic);
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        (open[0].last_sequence, open[0].current_txn_start_offset),
        (0, 0)
    );
    p.commit_transaction(CLIENT_TIMEOUT).expect("commit");
    assert_eq!(
        end_offsets(&broker, &topic, 0),
        (3, 3),
        "the marker closed it"
    );
    let closed = describe_producers(&broker, &topic);
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].producer_id, open[0].producer_id);
    assert_eq!(
        closed[0].current_txn_start_offset, -1,
        "no open transaction"
    );
    let rc = isolated_consumer(&broker.bootstrap(), "read_committed");
    assert_eq!(
        payloads(&read_n(&rc, &topic, 0, 2)),
        vec!["pending", "plain"]
    );
}

/// The producers DescribeProducers (v0) reports for partition 0 of `topic`.
fn describe_producers(
    broker: &Broker,
    topic: &str,
) -> Vec<kafka_protocol::messages::describe_producers_response::ProducerState> {
    use kafka_protocol::messages::{
        describe_producers_request::TopicRequest, ApiKey, DescribeProducersRequest, RequestKind,
        ResponseKind,
    };
    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(common::raw::name(topic))
        .with_partition_indexes(vec![0])]);
    let mut conn = common::raw::Conn::open(broker.addr());
    match conn.call(
        ApiKey::DescribeProducers,
        0,
        &RequestKind::DescribeProducers(request),
    ) {
        Ok(ResponseKind::DescribeProducers(r)) => {
            let partition = &r.topics[0].partitions[0];
            assert_eq!(partition.error_code, 0, "DescribeProducers error");
            partition.active_producers.clone()
        }
        other => panic!("DescribeProducers: {other:?}"),
    }
}

/// (offset, error) OffsetFetch v7 answers for `group` on partition 0 of `topic`.
fn fetch_offset(broker: &Broker, group: &str, topic: &str, require_stable: bool) -> (i64, i16) {
    use kafka_protocol::messages::{
        offset_fetch_request::OffsetFetchRequestTopic, ApiKey, GroupId, OffsetFetchRequest,
        RequestKind, ResponseKind,
    };
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(group.to_string().into()))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(raw::name(topic))
            .with_partition_indexes(vec![0])]))
        .with_require_stable(require_stable);
    let mut conn = raw::Conn::open(broker.addr());
    match conn.call(ApiKey::OffsetFetch, 7, &RequestKind::OffsetFetch(request)) {
        Ok(ResponseKind::OffsetFetch(r)) => {
            assert_eq!(r.error_code, 0, "OffsetFetch group error");
            let p = &r.topics[0].partitions[0];
            (p.committed_offset, p.error_code)
        }
        other => panic!("OffsetFetch: {other:?}"),
    }
}

/// A read_committed consumer asks OffsetFetch with `require_stable`: while a transaction
/// holds offsets for its group it gets UNSTABLE_OFFSET_COMMIT and retries, instead of
/// starting from an offset the transaction is about to replace (and reprocessing).
#[test]
fn require_stable_offset_fetch_waits_for_the_transaction_holding_offsets() {
    let broker = Broker::start();
    let topic = topic_name("txn-stable");
    let group = topic_name("g-stable");
    let p = txn_producer(&broker.bootstrap(), "txn-stable");
    p.init_transactions(CLIENT_TIMEOUT)
        .expect("init_transactions");
    p.begin_transaction().unwrap();
    send(&p, &topic, 0, "out");
    p.flush(CLIENT_TIMEOUT).expect("flush");
    let c = consumer(&broker.bootstrap(), &[("group.id", group.as_str())]);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic, 0, Offset::Offset(7))
        .unwrap();
    let metadata = c.group_metadata().expect("consumer group metadata");
    p.send_offsets_to_transaction(&offsets, &metadata, CLIENT_TIMEOUT)
        .expect("send_offsets_to_transaction");
    assert_eq!(
        fetch_offset(&broker, &group, &topic, true),
        (-1, 88),
        "UNSTABLE_OFFSET_COMMIT while the transaction is open"
    );
    assert_eq!(
        fetch_offset(&broker, &group, &topic, false),
        (-1, 0),
        "without require_stable: the committed offset (none yet)"
    );
    p.commit_transaction(CLIENT_TIMEOUT).expect("commit");
    assert_eq!(fetch_offset(&broker, &group, &topic, true), (7, 0));
}

#[test]
fn a_new_producer_with_the_same_transactional_id_fences_the_old_one() {
    let broker = Broker::start();
    let topic = topic_name("txn-zombie");
    let zombie = txn_producer(&broker.bootstrap(), "txn-zombie");
    zombie
        .init_transactions(CLIENT_TIMEOUT)
        .expect("init zombie");
    zombie.begin_transaction().unwrap();
    send(&zombie, &topic, 0, "zombie-open");
    zombie.flush(CLIENT_TIMEOUT).expect("flush");

    let fresh = txn_producer(&broker.bootstrap(), "txn-zombie");
    fresh.init_transactions(CLIENT_TIMEOUT).expect("init fresh");

    // The zombie can neither write nor commit any more.
    let _ = zombie.send(
        BaseRecord::to(&topic)
            .partition(0)
            .key("k")
            .payload("zombie-late"),
    );
    let _ = zombie.flush(Duration::from_secs(5));
    let err = zombie
        .commit_transaction(CLIENT_TIMEOUT)
        .expect_err("a fenced producer must not commit");
    eprintln!("zombie commit: {err}");

    fresh.begin_transaction().unwrap();
    send(&fresh, &topic, 0, "fresh");
    fresh
        .commit_transaction(CLIENT_TIMEOUT)
        .expect("commit fresh");

    // zombie-open (0), its abort marker written when the zombie was fenced (1), fresh (2),
    // its commit marker (3): the fenced late write never landed and nothing is left open.
    assert_eq!(end_offsets(&broker, &topic, 0), (4, 4));
    let seen = payloads(&read_n(
        &isolated_consumer(&broker.bootstrap(), "read_committed"),
        &topic,
        0,
        1,
    ));
    assert_eq!(seen, vec!["fresh"]);
}

// ---------------------------------------------------------------------------------------------
// Exactly-once consume-transform-produce across a SIGKILL of the loop
// ---------------------------------------------------------------------------------------------

const EOS_RECORDS: usize = 300;
const EOS_GROUP: &str = "eos-loop";
const EOS_TXN_ID: &str = "eos-loop-txn";

/// The loop runs in a child process (`test-worker eos-loop`) so the test can SIGKILL it.
fn spawn_worker(bootstrap: &str, input: &str, output: &str) -> Child {
    test_worker()
        .args(["eos-loop", bootstrap, input, output, EOS_GROUP, EOS_TXN_ID])
        .spawn()
        .expect("spawn the loop worker")
}

#[test]
fn exactly_once_loop_survives_a_crash() {
    let broker = Broker::start();
    let input = topic_name("eos-in");
    let output = topic_name("eos-out");
    let plain = producer(&broker.bootstrap(), &[("acks", "all")]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for i in 0..EOS_RECORDS {
            plain
                .send(
                    rdkafka::producer::FutureRecord::to(&input)
                        .partition(0)
                        .payload(&format!("r{i:04}"))
                        .key("k"),
                    Duration::from_secs(10),
                )
                .await
                .expect("input produce");
        }
    });
    let probe = consumer(&broker.bootstrap(), &[]);
    let mut first = spawn_worker(&broker.bootstrap(), &input, &output);
    // Kill the loop once it has produced part of the output, mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, high) = probe
            .fetch_watermarks(&output, 0, CLIENT_TIMEOUT)
            .unwrap_or((0, 0));
        if high >= 100 {
            break;
        }
        assert!(Instant::now() < deadline, "the loop made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().expect("SIGKILL the loop");
    let _ = first.wait();

    let mut second = spawn_worker(&broker.bootstrap(), &input, &output);
    let status = second.wait().expect("second worker");
    assert!(status.success(), "the restarted loop failed: {status}");

    let (high_watermark, last_stable) = end_offsets(&broker, &output, 0);
    assert_eq!(last_stable, high_watermark, "no transaction left open");
    let seen = payloads(&read_n(
        &isolated_consumer(&broker.bootstrap(), "read_committed"),
        &output,
        0,
        EOS_RECORDS,
    ));
    let want: Vec<String> = (0..EOS_RECORDS).map(|i| format!("R{i:04}")).collect();
    assert_eq!(seen.len(), want.len(), "exactly one output per input");
    assert_eq!(seen, want);
}

// ---------------------------------------------------------------------------------------------
// Idempotent producer across a broker SIGKILL
// ---------------------------------------------------------------------------------------------

#[test]
fn idempotent_producer_has_no_duplicates_or_gaps_across_a_broker_kill() {
    let mut broker = Broker::start();
    let topic = topic_name("idem-kill");
    const RECORDS: usize = 3000;
    let mut cfg: ClientConfig = client_config(&broker.bootstrap());
    cfg.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "120000")
        .set("retry.backoff.ms", "100")
        .set("reconnect.backoff.ms", "100")
        .set("socket.timeout.ms", "5000");
    let p: BaseProducer = cfg.create().expect("idempotent producer");
    let mut killed = false;
    for i in 0..RECORDS {
        loop {
            match p.send(
                BaseRecord::to(&topic)
                    .partition(0)
                    .key("k")
                    .payload(&format!("{i}")),
            ) {
                Ok(()) => break,
                Err((_, _)) => {
                    p.poll(Duration::from_millis(10));
                }
            }
        }
        p.poll(Duration::ZERO);
        if i == RECORDS / 2 && !killed {
            std::thread::sleep(Duration::from_millis(20));
            broker.kill9();
            broker.restart();
            killed = true;
        }
    }
    p.flush(Duration::from_secs(120))
        .expect("every record delivered");
    // No duplicate took an offset: exactly one offset per record.
    assert_eq!(
        end_offsets(&broker, &topic, 0),
        (RECORDS as i64, RECORDS as i64)
    );
    let seen = payloads(&read_n(
        &consumer(&broker.bootstrap(), &[("auto.offset.reset", "earliest")]),
        &topic,
        0,
        RECORDS,
    ));
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for s in &seen {
        *counts.entry(s.parse().unwrap()).or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicates: {dups:?}");
    let missing: Vec<usize> = (0..RECORDS).filter(|i| !counts.contains_key(i)).collect();
    assert!(missing.is_empty(), "gaps: {missing:?}");
    let in_order: Vec<usize> = seen.iter().map(|s| s.parse().unwrap()).collect();
    assert!(in_order.windows(2).all(|w| w[0] < w[1]), "order kept");
}
