use super::*;

struct Topics(BTreeMap<String, (Uuid, i32)>);

impl TopicLookup for Topics {
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
        self.0.get(name).copied()
    }
    fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

fn topics(list: &[(&str, i32)]) -> Topics {
    Topics(
        list.iter()
            .enumerate()
            .map(|(i, (n, p))| (n.to_string(), (Uuid::from_u128(i as u128 + 1), *p)))
            .collect(),
    )
}

fn join(member: &str, names: &[&str]) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: member.to_string(),
        member_epoch: JOIN_EPOCH,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(names.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

fn beat(member: &str, epoch: i32, owned: Option<&Assignment>) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: member.to_string(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: owned.cloned(),
        ..Default::default()
    }
}

fn run(g: &mut ConsumerGroup, t: &Topics, req: HeartbeatRequest, now: i64) -> HeartbeatReply {
    g.heartbeat(req, t, || "generated".into(), now)
}

fn n(a: &Option<Assignment>) -> usize {
    a.as_ref().map_or(0, count)
}

/// No partition is ever held by two members at once.
fn assert_exclusive(g: &ConsumerGroup) {
    let mut seen = BTreeSet::new();
    for m in g.members.values() {
        for (t, ps) in m.assigned.iter().chain(m.revoking.iter()) {
            for p in ps {
                assert!(seen.insert((*t, *p)), "{t}/{p} held twice");
            }
        }
    }
}

#[test]
fn a_second_member_gets_partitions_only_after_the_first_revokes_them() {
    let t = topics(&[("orders", 4)]);
    let mut g = ConsumerGroup::default();
    let a = run(&mut g, &t, join("a", &["orders"]), 0);
    assert_eq!((a.error, n(&a.assignment)), (0, 4));
    let a_epoch = a.member_epoch;
    let a_owned = a.assignment.clone().unwrap();

    let b = run(&mut g, &t, join("b", &["orders"]), 1);
    assert_eq!(b.error, 0);
    // b's share is still owned by a: withheld, though b is at the new epoch.
    assert_eq!(n(&b.assignment), 0);
    assert_exclusive(&g);
    assert_eq!(g.state(), ConsumerGroupState::Reconciling);

    // a is told to give two up and keeps its epoch until it confirms.
    let a2 = run(&mut g, &t, beat("a", a_epoch, None), 2);
    assert_eq!((a2.member_epoch, n(&a2.assignment)), (a_epoch, 2));
    let kept = a2.assignment.clone().unwrap();
    assert_exclusive(&g);
    // b still waits: a has not confirmed.
    let b2 = run(&mut g, &t, beat("b", b.member_epoch, None), 3);
    assert!(b2.assignment.is_none());
    // a confirms (reports only what it kept): it moves to the new epoch...
    let a3 = run(&mut g, &t, beat("a", a_epoch, Some(&kept)), 4);
    assert!(a3.member_epoch > a_epoch);
    assert_ne!(kept, a_owned);
    // ...and b gets the two partitions.
    let b3 = run(&mut g, &t, beat("b", b.member_epoch, None), 5);
    assert_eq!(n(&b3.assignment), 2);
    assert_exclusive(&g);
    assert_eq!(g.state(), ConsumerGroupState::Stable);

    // b leaves: a gets everything back at its next heartbeat.
    let left = run(&mut g, &t, beat("b", LEAVE_EPOCH, None), 6);
    assert_eq!((left.error, left.member_epoch), (0, LEAVE_EPOCH));
    let a4 = run(&mut g, &t, beat("a", a3.member_epoch, None), 7);
    assert_eq!(n(&a4.assignment), 4);
}

#[test]
fn wrong_epochs_and_unknown_members_are_fenced() {
    let t = topics(&[("orders", 2)]);
    let mut g = ConsumerGroup::default();
    let a = run(&mut g, &t, join("a", &["orders"]), 0);
    let stale = run(&mut g, &t, beat("a", a.member_epoch + 5, None), 1);
    assert_eq!(stale.error, FENCED_MEMBER_EPOCH);
    let unknown = run(&mut g, &t, beat("x", 3, None), 1);
    assert_eq!(unknown.error, UNKNOWN_MEMBER_ID);
    let bad = run(
        &mut g,
        &t,
        HeartbeatRequest {
            server_assignor: Some("sticky".into()),
            ..join("c", &["orders"])
        },
        1,
    );
    assert_eq!(bad.error, UNSUPPORTED_ASSIGNOR);
    // Commits are checked against the member's epoch.
    assert_eq!(g.commit_error("a", a.member_epoch), 0);
    assert_eq!(
        g.commit_error("a", a.member_epoch - 1),
        ResponseError::StaleMemberEpoch.code()
    );
    assert_eq!(g.commit_error("nobody", 1), UNKNOWN_MEMBER_ID);
}

#[test]
fn a_silent_member_expires_and_its_partitions_move() {
    let t = topics(&[("orders", 2)]);
    let config = ConsumerConfig::default();
    let mut g = ConsumerGroup::default();
    let a = run(&mut g, &t, join("a", &["orders"]), 0);
    let b = run(&mut g, &t, join("b", &["orders"]), 0);
    let a = run(&mut g, &t, beat("a", a.member_epoch, None), 1);
    let kept = a.assignment.clone().unwrap_or_default();
    run(&mut g, &t, beat("a", a.member_epoch, Some(&kept)), 2);
    // b heartbeats; a goes silent past the session timeout.
    let mut b_epoch = b.member_epoch;
    for now in [10_000, 30_000, 46_000] {
        b_epoch = run(&mut g, &t, beat("b", b_epoch, None), now).member_epoch;
    }
    assert!(g.expire(&config, 46_001));
    assert!(!g.members.contains_key("a"));
    let b = run(&mut g, &t, beat("b", b_epoch, None), 46_002);
    assert_eq!(n(&b.assignment), 2);
}

#[test]
fn regex_subscriptions_follow_topics_as_they_appear() {
    let mut g = ConsumerGroup::default();
    let t = topics(&[("orders-eu", 1), ("audit", 1)]);
    let req = HeartbeatRequest {
        subscribed_topic_names: Some(Vec::new()),
        subscribed_topic_regex: Some("orders-.*".into()),
        ..join("a", &[])
    };
    let a = run(&mut g, &t, req, 0);
    assert_eq!(n(&a.assignment), 1);
    let t = topics(&[("orders-eu", 1), ("audit", 1), ("orders-us", 2)]);
    let a = run(&mut g, &t, beat("a", a.member_epoch, None), 1);
    assert_eq!(n(&a.assignment), 3, "a new matching topic is picked up");
    let bad = run(
        &mut g,
        &t,
        HeartbeatRequest {
            subscribed_topic_regex: Some("(".into()),
            ..join("b", &[])
        },
        2,
    );
    assert_eq!(bad.error, INVALID_REGULAR_EXPRESSION);
}

#[test]
fn a_static_member_that_left_for_now_comes_back_to_its_partitions() {
    let t = topics(&[("orders", 2)]);
    let mut g = ConsumerGroup::default();
    let with_instance = |req: HeartbeatRequest| HeartbeatRequest {
        instance_id: Some("host-1".into()),
        ..req
    };
    let a = run(&mut g, &t, with_instance(join("a1", &["orders"])), 0);
    let owned = a.assignment.clone().unwrap();
    let epoch = g.group_epoch;
    run(
        &mut g,
        &t,
        with_instance(beat("a1", STATIC_LEAVE_EPOCH, None)),
        1,
    );
    // Another incarnation with the same instance id takes over, without a rebalance.
    let back = run(&mut g, &t, with_instance(join("a2", &["orders"])), 2);
    assert_eq!(back.assignment, Some(owned));
    assert_eq!(g.group_epoch, epoch);
    // While a member holds the instance id, a second claimant is refused.
    let dup = run(&mut g, &t, with_instance(join("a3", &["orders"])), 3);
    assert_eq!(dup.error, UNRELEASED_INSTANCE_ID);
}
