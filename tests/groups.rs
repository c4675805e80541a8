//! End-to-end consumer groups with librdkafka (the `rdkafka` crate) against a real broker:
//! assignment spread, takeover on close, committed offsets across kill -9, static
//! membership and the cooperative-sticky assignor.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(60);
const BROKER_FLAGS: &[&str] = &["--group-initial-rebalance-delay-ms", "0"];

/// Counts rebalance callbacks so a test can tell "no rebalance happened".
#[derive(Default, Clone)]
struct Counting {
    rebalances: Arc<AtomicUsize>,
}

impl ClientContext for Counting {}

impl ConsumerContext for Counting {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
    }
}

type GroupConsumer = BaseConsumer<Counting>;

fn group_consumer(bs: &str, group: &str, extra: &[(&str, &str)]) -> (GroupConsumer, Counting) {
    let mut c: ClientConfig = client_config(bs);
    c.set("group.id", group)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let ctx = Counting::default();
    let consumer: GroupConsumer = c
        .create_with_context(ctx.clone())
        .expect("create group consumer");
    (consumer, ctx)
}

fn assigned(c: &GroupConsumer) -> BTreeSet<i32> {
    c.assignment()
        .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Records seen: (consumer index, partition, offset, payload).
type Seen = Vec<(usize, i32, i64, String)>;

/// Polls every consumer in turn until `done` holds (or panics after WAIT).
fn poll_until(
    consumers: &[&GroupConsumer],
    seen: &mut Seen,
    what: &str,
    done: impl Fn(&Seen) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !done(seen) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        for (i, c) in consumers.iter().enumerate() {
            if let Some(result) = c.poll(Duration::from_millis(50)) {
                match result {
                    Ok(m) => {
                        let payload = String::from_utf8_lossy(m.payload().unwrap_or_default());
                        seen.push((i, m.partition(), m.offset(), payload.into_owned()));
                    }
                    Err(e) => eprintln!("consumer {i}: {e}"),
                }
            }
        }
    }
}

async fn produce(bs: &str, topic: &str, partitions: i32, tag: &str, n: usize) {
    let p: FutureProducer = producer(bs, &[("acks", "all")]);
    for i in 0..n {
        let payload = format!("{tag}-{i}");
        let partition = (i as i32) % partitions;
        p.send(
            FutureRecord::<(), _>::to(topic)
                .payload(&payload)
                .partition(partition),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce failed: {e}"));
    }
}

fn payloads_once(seen: &Seen, tag: &str, n: usize) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, _, _, p) in seen
        .iter()
        .filter(|(_, _, _, p)| p.starts_with(&format!("{tag}-")))
    {
        *counts.entry(p.as_str()).or_default() += 1;
    }
    assert_eq!(counts.len(), n, "every {tag} record read");
    assert!(
        counts.values().all(|c| *c == 1),
        "each {tag} record read once: {counts:?}"
    );
}

fn count_tag(seen: &Seen, tag: &str) -> usize {
    let prefix = format!("{tag}-");
    seen.iter()
        .filter(|(_, _, _, p)| p.starts_with(&prefix))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_split_six_partitions_and_take_over_on_close() {
    let broker = Broker::start_with(BROKER_FLAGS);
    let bs = broker.bootstrap();
    let topic = topic_name("groups-split");
    create_topic(&admin(&bs), &topic, 6, &[]).await;
    let group = topic_name("g-split");
    let cs: Vec<GroupConsumer> = (0..3).map(|_| group_consumer(&bs, &group, &[]).0).collect();
    for c in &cs {
        c.subscribe(&[&topic]).expect("subscribe");
    }
    let refs: Vec<&GroupConsumer> = cs.iter().collect();
    let mut seen = Seen::new();
    poll_until(&refs, &mut seen, "2+2+2 assignment", |_| {
        cs.iter().all(|c| assigned(c).len() == 2)
    });
    let union: BTreeSet<i32> = cs.iter().flat_map(assigned).collect();
    assert_eq!(union, (0..6).collect(), "every partition assigned once");

    produce(&bs, &topic, 6, "a", 600).await;
    poll_until(&refs, &mut seen, "600 records", |s| {
        count_tag(s, "a") >= 600
    });
    payloads_once(&seen, "a", 600);
    for (i, partition, _, _) in &seen {
        assert!(
            assigned(&cs[*i]).contains(partition),
            "consumer {i} read a partition it does not own"
        );
    }
    for c in &cs {
        c.commit_consumer_state(CommitMode::Sync).expect("commit");
    }

    // Consumer 2 closes (LeaveGroup); the others take its partitions from its commits.
    let mut cs = cs;
    let closed = cs.pop().expect("three consumers");
    drop(closed);
    let refs: Vec<&GroupConsumer> = cs.iter().collect();
    poll_until(&refs, &mut seen, "3+3 assignment", |_| {
        cs.iter().all(|c| assigned(c).len() == 3)
    });
    produce(&bs, &topic, 6, "b", 60).await;
    poll_until(&refs, &mut seen, "60 more records", |s| {
        count_tag(s, "b") >= 60
    });
    payloads_once(&seen, "b", 60);
    assert_eq!(
        count_tag(&seen, "a"),
        600,
        "committed records are not read again"
    );
}

/// Waits until a plain bind (no SO_REUSEADDR, as the broker's start-up probe does) succeeds.
fn wait_port_bindable(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} stayed busy");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_kill9_and_restart() {
    let mut broker = Broker::start_with(BROKER_FLAGS);
    let bs = broker.bootstrap();
    let topic = topic_name("groups-durable");
    create_topic(&admin(&bs), &topic, 3, &[]).await;
    let group = topic_name("g-durable");
    let (c, _) = group_consumer(&bs, &group, &[]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(&topic, p, Offset::Offset(10 + i64::from(p)))
            .unwrap();
        tpl.find_partition(&topic, p)
            .unwrap()
            .set_metadata(format!("meta-{p}"));
    }
    c.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(c);
    // Let the client close its connections first: sockets the killed broker closes sit in
    // TIME_WAIT on its port, and the restarted broker's port probe refuses to bind then.
    std::thread::sleep(Duration::from_millis(500));

    broker.kill9();
    wait_port_bindable(broker.kafka_port, Duration::from_secs(90));
    broker.restart();

    let (c, _) = group_consumer(&bs, &group, &[]);
    let mut want = TopicPartitionList::new();
    for p in 0..3 {
        want.add_partition(&topic, p);
    }
    let got = c
        .committed_offsets(want, Duration::from_secs(30))
        .expect("OffsetFetch after restart");
    for p in 0..3 {
        let e = got.find_partition(&topic, p).expect("partition in answer");
        assert_eq!(e.offset(), Offset::Offset(10 + i64::from(p)));
        assert_eq!(e.metadata(), format!("meta-{p}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_rejoins_without_rebalance() {
    let broker = Broker::start_with(BROKER_FLAGS);
    let bs = broker.bootstrap();
    let topic = topic_name("groups-static");
    create_topic(&admin(&bs), &topic, 6, &[]).await;
    let group = topic_name("g-static");
    let (a, a_ctx) = group_consumer(&bs, &group, &[("group.instance.id", "inst-a")]);
    let (b, _) = group_consumer(&bs, &group, &[("group.instance.id", "inst-b")]);
    a.subscribe(&[&topic]).unwrap();
    b.subscribe(&[&topic]).unwrap();
    let mut seen = Seen::new();
    poll_until(&[&a, &b], &mut seen, "3+3 assignment", |_| {
        assigned(&a).len() == 3 && assigned(&b).len() == 3
    });
    let (a_parts, b_parts) = (assigned(&a), assigned(&b));
    // Let the group settle, then restart b with the same instance id.
    poll_until(&[&a, &b], &mut seen, "settle", {
        let start = Instant::now();
        move |_| start.elapsed() > Duration::from_secs(2)
    });
    let rebalances_before = a_ctx.rebalances.load(Ordering::SeqCst);
    drop(b); // static members do not send LeaveGroup
    let (b2, _) = group_consumer(&bs, &group, &[("group.instance.id", "inst-b")]);
    b2.subscribe(&[&topic]).unwrap();
    poll_until(&[&a, &b2], &mut seen, "b2 assignment", |_| {
        assigned(&b2).len() == 3
    });
    assert_eq!(
        assigned(&b2),
        b_parts,
        "the restarted member keeps its partitions"
    );
    poll_until(&[&a, &b2], &mut seen, "quiet period", {
        let start = Instant::now();
        move |_| start.elapsed() > Duration::from_secs(3)
    });
    assert_eq!(assigned(&a), a_parts);
    assert_eq!(
        a_ctx.rebalances.load(Ordering::SeqCst),
        rebalances_before,
        "the other member saw no rebalance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_moves_only_what_it_must() {
    let broker = Broker::start_with(BROKER_FLAGS);
    let bs = broker.bootstrap();
    let topic = topic_name("groups-coop");
    create_topic(&admin(&bs), &topic, 6, &[]).await;
    let group = topic_name("g-coop");
    let extra = [("partition.assignment.strategy", "cooperative-sticky")];
    let (a, _) = group_consumer(&bs, &group, &extra);
    a.subscribe(&[&topic]).unwrap();
    let mut seen = Seen::new();
    poll_until(&[&a], &mut seen, "a owns all", |_| assigned(&a).len() == 6);
    let (b, _) = group_consumer(&bs, &group, &extra);
    b.subscribe(&[&topic]).unwrap();
    poll_until(&[&a, &b], &mut seen, "3+3 assignment", |_| {
        assigned(&a).len() == 3 && assigned(&b).len() == 3
    });
    let (a_parts, b_parts) = (assigned(&a), assigned(&b));
    assert!(a_parts.is_disjoint(&b_parts));
    produce(&bs, &topic, 6, "c", 120).await;
    poll_until(&[&a, &b], &mut seen, "120 records", |s| {
        count_tag(s, "c") >= 120
    });
    payloads_once(&seen, "c", 120);
    assert_eq!(assigned(&a), a_parts, "a kept its half throughout");
}

/// Kills the child consumer if the test ends early.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_consumer_loses_partitions_after_session_timeout() {
    let broker = Broker::start_with(BROKER_FLAGS);
    let bs = broker.bootstrap();
    let topic = topic_name("groups-kill");
    create_topic(&admin(&bs), &topic, 6, &[]).await;
    let group = topic_name("g-kill");
    let (a, _) = group_consumer(&bs, &group, &[]);
    let (b, _) = group_consumer(&bs, &group, &[]);
    a.subscribe(&[&topic]).unwrap();
    b.subscribe(&[&topic]).unwrap();
    // The third member is another process, so it can die without a word (no LeaveGroup).
    let child = test_worker()
        .args(["group-consumer", &bs, &topic, &group])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start child consumer");
    let mut child = KillOnDrop(child);
    let mut seen = Seen::new();
    poll_until(
        &[&a, &b],
        &mut seen,
        "2+2(+2 in the child) assignment",
        |_| assigned(&a).len() == 2 && assigned(&b).len() == 2,
    );
    let child_parts: BTreeSet<i32> = (0..6)
        .filter(|p| !assigned(&a).contains(p) && !assigned(&b).contains(p))
        .collect();
    assert_eq!(child_parts.len(), 2, "the child owns the other two");

    child.0.kill().expect("kill -9 the child consumer");
    let _ = child.0.wait();
    let killed_at = Instant::now();
    poll_until(
        &[&a, &b],
        &mut seen,
        "3+3 assignment after the kill",
        |_| assigned(&a).len() == 3 && assigned(&b).len() == 3,
    );
    let took = killed_at.elapsed();
    let union: BTreeSet<i32> = assigned(&a).union(&assigned(&b)).copied().collect();
    assert_eq!(union, (0..6).collect(), "the child's partitions moved");
    // session.timeout.ms is 6000 and heartbeats come every 500 ms: the member expires
    // 5.5-6 s after its last heartbeat, not at once (that would be a LeaveGroup).
    assert!(
        took >= Duration::from_millis(4500),
        "moved after {took:?}: before the session timeout"
    );
    assert!(
        took < Duration::from_secs(30),
        "moved after {took:?}: long after the session timeout"
    );
    produce(&bs, &topic, 6, "k", 60).await;
    poll_until(&[&a, &b], &mut seen, "60 records", |s| {
        count_tag(s, "k") >= 60
    });
    payloads_once(&seen, "k", 60);
}

/// ConsumerGroupDescribe (KIP-848) on a classic group answers as Kafka 4.x does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_group_describe_reports_classic_groups_as_not_consumer_groups() {
    use common::raw::{name, Conn};
    use kafka_protocol::messages::{
        offset_commit_request, ApiKey, ConsumerGroupDescribeRequest, GroupId, OffsetCommitRequest,
        RequestKind, ResponseKind,
    };
    use kafka_protocol::protocol::StrBytes;

    let broker = Broker::start_with(BROKER_FLAGS);
    let topic = topic_name("groups-cgd");
    create_topic(&admin(&broker.bootstrap()), &topic, 1, &[]).await;
    let classic = topic_name("g-cgd");
    let mut conn = Conn::open(broker.addr());
    // A simple (generation -1) commit creates an empty classic group.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(classic.clone())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name(&topic))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_committed_offset(1),
                ]),
        ]);
    match conn.call(ApiKey::OffsetCommit, 2, &RequestKind::OffsetCommit(commit)) {
        Ok(ResponseKind::OffsetCommit(r)) => {
            assert_eq!(r.topics[0].partitions[0].error_code, 0, "commit accepted")
        }
        other => panic!("OffsetCommit: {other:?}"),
    }
    for version in 0..=1 {
        let ids = [classic.as_str(), "no-such-group"]
            .map(|g| GroupId(StrBytes::from_string(g.to_string())));
        let req = ConsumerGroupDescribeRequest::default().with_group_ids(ids.to_vec());
        let response = conn.call(
            ApiKey::ConsumerGroupDescribe,
            version,
            &RequestKind::ConsumerGroupDescribe(req),
        );
        let Ok(ResponseKind::ConsumerGroupDescribe(r)) = response else {
            panic!("ConsumerGroupDescribe v{version}: {response:?}");
        };
        let answers: Vec<(i16, String)> = r
            .groups
            .iter()
            .map(|g| {
                let message = g.error_message.as_ref().map(|m| m.to_string());
                (g.error_code, message.unwrap_or_default())
            })
            .collect();
        assert_eq!(
            answers,
            vec![
                (69, format!("Group {classic} is not a consumer group.")),
                (69, "Group no-such-group not found.".to_string()),
            ],
            "v{version}"
        );
    }
}

/// DeleteGroups right after a group's only consumer closed, as a new user tries it: with
/// the default 3 s initial rebalance delay the group used to stay in PreparingRebalance
/// and the delete answered NON_EMPTY_GROUP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_can_be_deleted_right_after_its_consumer_closes() {
    let broker = Broker::start();
    let bs = broker.bootstrap();
    let topic = topic_name("groups-delete");
    let a = admin(&bs);
    create_topic(&a, &topic, 1, &[]).await;
    let group = topic_name("g-delete");
    {
        let (c, _) = group_consumer(&bs, &group, &[]);
        c.subscribe(&[&topic]).expect("subscribe");
        // Long enough for the JoinGroup to reach the coordinator, well inside the delay.
        let deadline = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < deadline {
            let _ = c.poll(Duration::from_millis(100));
        }
        // Dropping the consumer closes it: librdkafka sends LeaveGroup.
    }
    let results = a
        .delete_groups(&[&group], &admin_opts())
        .await
        .expect("DeleteGroups request");
    assert_eq!(results, vec![Ok(group.clone())], "{}", broker.log_tail());
}
