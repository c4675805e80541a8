//! KIP-848 consumer groups end to end with librdkafka's `group.protocol=consumer`: the
//! broker assigns (ConsumerGroupHeartbeat), two consumers split four partitions, one leaves
//! and the other takes over, ConsumerGroupDescribe shows the group, and committed offsets
//! survive a broker restart (the rejoining member resumes where the group stopped).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::raw::Conn;
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

const WAIT: Duration = Duration::from_secs(90);

fn member(bs: &str, group: &str) -> BaseConsumer {
    let mut c = client_config(bs);
    c.set("group.id", group)
        .set("group.protocol", "consumer")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    c.create().expect("create consumer-protocol member")
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Polls every member until `done` holds; returns the payloads read (panics after WAIT).
fn poll_until(
    members: &[&BaseConsumer],
    seen: &mut Vec<String>,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !done(seen) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        for c in members {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                let payload = String::from_utf8_lossy(m.payload().unwrap_or_default());
                seen.push(payload.into_owned());
            }
        }
    }
}

async fn produce(bs: &str, topic: &str, tag: &str, n: usize) {
    let p: FutureProducer = producer(bs, &[("acks", "all")]);
    for i in 0..n {
        let payload = format!("{tag}-{i}");
        p.send(
            FutureRecord::<(), _>::to(topic)
                .payload(&payload)
                .partition((i % 4) as i32),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce failed: {e}"));
    }
}

/// ConsumerGroupDescribe: (state, member count, partitions assigned over all members).
fn describe(broker: &Broker, group: &str) -> (String, usize, usize) {
    let mut conn = Conn::open(broker.addr());
    let request = ConsumerGroupDescribeRequest::default()
        .with_group_ids(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    match conn.call(
        ApiKey::ConsumerGroupDescribe,
        1,
        &RequestKind::ConsumerGroupDescribe(request),
    ) {
        Ok(ResponseKind::ConsumerGroupDescribe(r)) => {
            let g = &r.groups[0];
            assert_eq!(g.error_code, 0, "{:?}", g.error_message);
            assert_eq!(g.assignor_name.as_str(), "uniform");
            let partitions = g
                .members
                .iter()
                .flat_map(|m| m.assignment.topic_partitions.iter())
                .map(|tp| tp.partitions.len())
                .sum();
            (g.group_state.to_string(), g.members.len(), partitions)
        }
        other => panic!("ConsumerGroupDescribe: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_four_partitions_and_one_takes_over_when_the_other_leaves() {
    let mut broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = topic_name("kip848");
    create_topic(&admin(&bs), &topic, 4, &[]).await;
    let group = topic_name("g-kip848");

    let (c1, c2) = (member(&bs, &group), member(&bs, &group));
    c1.subscribe(&[&topic]).expect("subscribe");
    c2.subscribe(&[&topic]).expect("subscribe");
    let mut seen = Vec::new();
    poll_until(&[&c1, &c2], &mut seen, "a 2+2 split", |_| {
        assigned(&c1).len() == 2 && assigned(&c2).len() == 2
    });
    // Produced once the split stands, so no record is read by a member that then hands its
    // partition over uncommitted.
    produce(&bs, &topic, "a", 40).await;
    poll_until(&[&c1, &c2], &mut seen, "all 40 records", |s| s.len() >= 40);
    assert!(
        assigned(&c1).is_disjoint(&assigned(&c2)),
        "a partition owned twice"
    );
    assert_eq!(seen.len(), 40, "every record read once");
    c1.commit_consumer_state(CommitMode::Sync)
        .expect("commit c1");
    c2.commit_consumer_state(CommitMode::Sync)
        .expect("commit c2");
    assert_eq!(describe(&broker, &group), ("Stable".to_string(), 2, 4));

    // c2 leaves (its close sends the leave heartbeat): c1 takes its partitions over and
    // reads on from c2's commits.
    drop(c2);
    produce(&bs, &topic, "b", 8).await;
    poll_until(
        &[&c1],
        &mut seen,
        "c1 owning all four and the 8 new records",
        |s| assigned(&c1).len() == 4 && s.len() >= 48,
    );
    assert_eq!(seen.len(), 48, "nothing read twice after the takeover");
    c1.commit_consumer_state(CommitMode::Sync)
        .expect("commit c1");
    drop(c1);

    // Offsets are durable: after a restart a new member resumes from them.
    broker.terminate();
    broker.restart();
    let bs = broker.bootstrap();
    produce(&bs, &topic, "c", 8).await;
    let c3 = member(&bs, &group);
    c3.subscribe(&[&topic]).expect("subscribe");
    let mut after = Vec::new();
    poll_until(
        &[&c3],
        &mut after,
        "the 8 records produced after the restart",
        |s| s.len() >= 8,
    );
    // A moment more to catch anything read twice.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        if let Some(Ok(m)) = c3.poll(Duration::from_millis(50)) {
            after.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    after.sort();
    let want: Vec<String> = {
        let mut w: Vec<String> = (0..8).map(|i| format!("c-{i}")).collect();
        w.sort();
        w
    };
    assert_eq!(after, want, "resumed exactly at the committed offsets");
}
