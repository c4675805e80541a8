//! Every transition of the classic group state machine, driven with explicit time.

use bytes::Bytes;

use super::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn config(delay_ms: i64) -> CoordinatorConfig {
    CoordinatorConfig {
        initial_rebalance_delay_ms: delay_ms,
        ..CoordinatorConfig::default()
    }
}

fn join_req(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        require_known_member_id: true,
        supports_skip_assignment: true,
    }
}

fn join_reply(fx: &Effects, token: Token) -> Option<JoinReply> {
    fx.completions.iter().find_map(|(t, c)| match c {
        Completion::Join(r) if *t == token => Some(r.clone()),
        _ => None,
    })
}

fn sync_reply(fx: &Effects, token: Token) -> Option<SyncReply> {
    fx.completions.iter().find_map(|(t, c)| match c {
        Completion::Sync(r) if *t == token => Some(r.clone()),
        _ => None,
    })
}

fn sync_req(member_id: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncRequest {
    SyncRequest {
        group_id: "g".into(),
        generation_id: generation,
        member_id: member_id.into(),
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
            .collect(),
        ..SyncRequest::default()
    }
}

/// KIP-394 two-step join; returns the member id (the join itself stays pending or not).
fn first_join(c: &mut Coordinator, token: Token, now: i64) -> (String, Effects) {
    let fx = c.join(token, join_req("", &["range"]), now);
    let r = join_reply(&fx, token).expect("MEMBER_ID_REQUIRED answered at once");
    assert_eq!(r.error, MEMBER_ID_REQUIRED);
    assert!(!r.member_id.is_empty());
    let fx = c.join(token + 1, join_req(&r.member_id, &["range"]), now);
    (r.member_id, fx)
}

fn heartbeat(c: &mut Coordinator, member: &str, generation: i32, now: i64) -> i16 {
    c.heartbeat(
        &HeartbeatRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
        },
        now,
    )
}

/// A Stable group of one member at generation 1; returns its id.
fn stable_single(c: &mut Coordinator) -> String {
    let (m, fx) = first_join(c, 1, 0);
    let r = join_reply(&fx, 2).expect("no delay: join completes");
    assert_eq!((r.error, r.generation_id), (NONE, 1));
    let fx = c.sync(3, sync_req(&m, 1, &[(&m, "a1")]), 0);
    assert_eq!(sync_reply(&fx, 3).unwrap().assignment, Bytes::from("a1"));
    assert_eq!(c.group_state("g"), Some(GroupState::Stable));
    m
}

#[test]
fn first_join_requires_member_id_then_completes() {
    let mut c = Coordinator::new(config(0), 1);
    let (m, fx) = first_join(&mut c, 1, 0);
    let r = join_reply(&fx, 2).unwrap();
    assert_eq!(r.error, NONE);
    assert_eq!(r.leader, m);
    assert_eq!(r.member_id, m);
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(
        r.members.len(),
        1,
        "the leader gets every member's metadata"
    );
    assert_eq!(r.members[0].metadata, Bytes::from("meta-range"));
    assert_eq!(c.group_state("g"), Some(GroupState::CompletingRebalance));
}

#[test]
fn old_clients_join_without_member_id_round_trip() {
    let mut c = Coordinator::new(config(0), 1);
    let mut req = join_req("", &["range"]);
    req.require_known_member_id = false;
    let fx = c.join(1, req, 0);
    let r = join_reply(&fx, 1).unwrap();
    assert_eq!((r.error, r.generation_id), (NONE, 1));
}

#[test]
fn invalid_session_timeout_and_group_id() {
    let mut c = Coordinator::new(config(0), 1);
    let mut req = join_req("", &["range"]);
    req.session_timeout_ms = 10;
    assert_eq!(
        join_reply(&c.join(1, req, 0), 1).unwrap().error,
        INVALID_SESSION_TIMEOUT
    );
    let mut req = join_req("", &["range"]);
    req.group_id = String::new();
    assert_eq!(
        join_reply(&c.join(2, req, 0), 2).unwrap().error,
        INVALID_GROUP_ID
    );
    // A made-up member id for an unknown group.
    assert_eq!(
        join_reply(&c.join(3, join_req("ghost", &["range"]), 0), 3)
            .unwrap()
            .error,
        UNKNOWN_MEMBER_ID
    );
}

#[test]
fn initial_delay_waits_and_extends_for_new_members() {
    let mut c = Coordinator::new(config(3000), 1);
    let (a, fx) = first_join(&mut c, 1, 0);
    assert!(
        join_reply(&fx, 2).is_none(),
        "initial delay holds the barrier"
    );
    assert_eq!(c.group_state("g"), Some(GroupState::PreparingRebalance));
    let (b, fx) = first_join(&mut c, 10, 1000);
    assert!(join_reply(&fx, 11).is_none());
    // The first delay ends at 3000 but a member was added: wait another delay.
    let fx = c.tick(3000);
    assert!(fx.completions.is_empty());
    let fx = c.tick(6000);
    let ra = join_reply(&fx, 2).unwrap();
    let rb = join_reply(&fx, 11).unwrap();
    assert_eq!(ra.generation_id, 1);
    assert_eq!(ra.leader, a, "the first member leads");
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty(), "followers get no member list");
    assert_eq!(rb.member_id, b);
}

#[test]
fn sync_distributes_assignments_and_followers_wait_for_leader() {
    let mut c = Coordinator::new(config(0), 1);
    let (a, _) = first_join(&mut c, 1, 0);
    let fx = c.sync(3, sync_req(&a, 1, &[(&a, "a1")]), 0);
    assert!(sync_reply(&fx, 3).is_some());
    // B joins: rebalance; A rejoins; both get generation 2.
    let (b, fx) = first_join(&mut c, 10, 100);
    assert!(join_reply(&fx, 11).is_none(), "waits for A to rejoin");
    assert_eq!(heartbeat(&mut c, &a, 1, 150), REBALANCE_IN_PROGRESS);
    let fx = c.join(20, join_req(&a, &["range"]), 200);
    let ra = join_reply(&fx, 20).unwrap();
    let rb = join_reply(&fx, 11).unwrap();
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    assert_eq!(c.group_state("g"), Some(GroupState::CompletingRebalance));
    assert_eq!(heartbeat(&mut c, &b, 2, 250), NONE);
    // The follower syncs first and waits.
    let fx = c.sync(30, sync_req(&b, 2, &[]), 300);
    assert!(sync_reply(&fx, 30).is_none());
    let fx = c.sync(31, sync_req(&a, 2, &[(&a, "xa"), (&b, "xb")]), 300);
    assert_eq!(sync_reply(&fx, 30).unwrap().assignment, Bytes::from("xb"));
    assert_eq!(sync_reply(&fx, 31).unwrap().assignment, Bytes::from("xa"));
    assert_eq!(fx.records.len(), 1, "the new generation is persisted");
    assert_eq!(c.group_state("g"), Some(GroupState::Stable));
    // A Stable member that syncs again gets its assignment at once.
    let fx = c.sync(32, sync_req(&b, 2, &[]), 400);
    assert_eq!(sync_reply(&fx, 32).unwrap().assignment, Bytes::from("xb"));
}

#[test]
fn sync_errors() {
    let mut c = Coordinator::new(config(0), 1);
    let fx = c.sync(1, sync_req("x", 1, &[]), 0);
    assert_eq!(sync_reply(&fx, 1).unwrap().error, UNKNOWN_MEMBER_ID);
    let m = stable_single(&mut c);
    let fx = c.sync(2, sync_req(&m, 7, &[]), 0);
    assert_eq!(sync_reply(&fx, 2).unwrap().error, ILLEGAL_GENERATION);
    let mut req = sync_req(&m, 1, &[]);
    req.protocol_name = Some("roundrobin".into());
    assert_eq!(
        sync_reply(&c.sync(3, req, 0), 3).unwrap().error,
        INCONSISTENT_GROUP_PROTOCOL
    );
    // During a rebalance.
    let (_b, _) = first_join(&mut c, 10, 0);
    let fx = c.sync(4, sync_req(&m, 1, &[]), 0);
    assert_eq!(sync_reply(&fx, 4).unwrap().error, REBALANCE_IN_PROGRESS);
}

#[test]
fn protocol_is_one_all_members_support_by_vote() {
    let mut c = Coordinator::new(config(0), 1);
    let (a, _) = first_join(&mut c, 1, 0);
    c.sync(3, sync_req(&a, 1, &[]), 0);
    // B prefers roundrobin but also supports range; A only range... then A rejoins with both.
    let fx = c.join(10, join_req("", &["roundrobin", "range"]), 0);
    let b = join_reply(&fx, 10).unwrap().member_id;
    c.join(11, join_req(&b, &["roundrobin", "range"]), 0);
    let fx = c.join(12, join_req(&a, &["roundrobin", "range"]), 0);
    assert_eq!(
        join_reply(&fx, 12).unwrap().protocol_name.as_deref(),
        Some("roundrobin")
    );
    // A member supporting none of the group's protocols is refused.
    let fx = c.join(20, join_req("", &["sticky"]), 0);
    assert_eq!(
        join_reply(&fx, 20).unwrap().error,
        INCONSISTENT_GROUP_PROTOCOL
    );
    // So is a different protocol type.
    let mut req = join_req("", &["range"]);
    req.protocol_type = "connect".into();
    assert_eq!(
        join_reply(&c.join(21, req, 0), 21).unwrap().error,
        INCONSISTENT_GROUP_PROTOCOL
    );
}

#[test]
fn rebalance_timeout_removes_members_that_did_not_rejoin() {
    let mut c = Coordinator::new(config(0), 1);
    let (a, _) = first_join(&mut c, 1, 0);
    c.sync(3, sync_req(&a, 1, &[]), 0);
    let (b, fx) = first_join(&mut c, 10, 1000);
    assert!(join_reply(&fx, 11).is_none());
    // A keeps heartbeating but never rejoins.
    for at in [5000, 14_000, 23_000] {
        assert_eq!(heartbeat(&mut c, &a, 1, at), REBALANCE_IN_PROGRESS);
        assert!(c.tick(at + 1).completions.is_empty());
    }
    let fx = c.tick(1000 + i64::from(REBALANCE_MS));
    let rb = join_reply(&fx, 11).unwrap();
    assert_eq!(rb.generation_id, 2);
    assert_eq!(rb.leader, b, "leadership moves to a member that rejoined");
    assert_eq!(rb.members.len(), 1);
    assert_eq!(heartbeat(&mut c, &a, 2, 31_001), UNKNOWN_MEMBER_ID);
}

#[test]
fn session_expiry_removes_member_and_rebalances() {
    let mut c = Coordinator::new(config(0), 1);
    let a = stable_single(&mut c);
    let (b, fx) = first_join(&mut c, 10, 0);
    assert!(join_reply(&fx, 11).is_none());
    let fx = c.join(20, join_req(&a, &["range"]), 0);
    assert!(join_reply(&fx, 20).is_some());
    let fx = c.sync(21, sync_req(&a, 2, &[(&a, "1"), (&b, "2")]), 0);
    assert!(sync_reply(&fx, 21).is_some());
    c.sync(22, sync_req(&b, 2, &[]), 0);
    assert_eq!(c.group_state("g"), Some(GroupState::Stable));
    // B heartbeats; A goes silent.
    assert_eq!(heartbeat(&mut c, &b, 2, 6000), NONE);
    assert!(c.next_deadline_ms().unwrap() <= i64::from(SESSION_MS));
    c.tick(i64::from(SESSION_MS));
    assert_eq!(c.group_state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(heartbeat(&mut c, &b, 2, 10_001), REBALANCE_IN_PROGRESS);
    let fx = c.join(30, join_req(&b, &["range"]), 10_002);
    let r = join_reply(&fx, 30).unwrap();
    assert_eq!(
        (r.generation_id, r.leader.as_str(), r.members.len()),
        (3, b.as_str(), 1)
    );
}

#[test]
fn last_member_leaving_empties_the_group() {
    let mut c = Coordinator::new(config(0), 1);
    let a = stable_single(&mut c);
    let leaving = [LeavingMember {
        member_id: a.clone(),
        group_instance_id: None,
    }];
    let (reply, fx) = c.leave("g", &leaving, 10);
    assert_eq!(reply.members, vec![(a.clone(), None, NONE)]);
    assert_eq!(c.group_state("g"), Some(GroupState::Empty));
    assert_eq!(c.generation("g"), Some(2));
    assert_eq!(fx.records.len(), 1, "the empty generation is persisted");
    let (reply, _) = c.leave("g", &leaving, 11);
    assert_eq!(reply.members[0].2, UNKNOWN_MEMBER_ID);
    assert_eq!(heartbeat(&mut c, &a, 2, 12), UNKNOWN_MEMBER_ID);
}

#[test]
fn leave_while_others_wait_completes_the_barrier() {
    let mut c = Coordinator::new(config(0), 1);
    let a = stable_single(&mut c);
    let (_b, fx) = first_join(&mut c, 10, 0);
    assert!(join_reply(&fx, 11).is_none());
    let (_, fx) = c.leave(
        "g",
        &[LeavingMember {
            member_id: a,
            group_instance_id: None,
        }],
        5,
    );
    let r = join_reply(&fx, 11).expect("B no longer waits for A");
    assert_eq!(r.generation_id, 2);
}

#[test]
fn heartbeat_errors_by_state() {
    let mut c = Coordinator::new(config(0), 1);
    assert_eq!(heartbeat(&mut c, "x", 0, 0), UNKNOWN_MEMBER_ID);
    let (a, _) = first_join(&mut c, 1, 0);
    assert_eq!(
        heartbeat(&mut c, &a, 1, 0),
        NONE,
        "CompletingRebalance accepts heartbeats"
    );
    assert_eq!(heartbeat(&mut c, &a, 0, 0), ILLEGAL_GENERATION);
    assert_eq!(heartbeat(&mut c, "other", 1, 0), UNKNOWN_MEMBER_ID);
}

fn static_req(member_id: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        group_instance_id: Some(instance.into()),
        ..join_req(member_id, &["range"])
    }
}

#[test]
fn static_member_rejoin_replaces_without_rebalance() {
    let mut c = Coordinator::new(config(0), 1);
    // Static members skip MEMBER_ID_REQUIRED.
    let fx = c.join(1, static_req("", "i-a"), 0);
    let a = join_reply(&fx, 1).unwrap();
    assert_eq!((a.error, a.generation_id), (NONE, 1));
    let fx = c.join(2, static_req("", "i-b"), 0);
    assert!(join_reply(&fx, 2).is_none());
    let fx = c.join(3, static_req(&a.member_id, "i-a"), 0);
    let b = join_reply(&fx, 2).unwrap();
    assert_eq!(join_reply(&fx, 3).unwrap().generation_id, 2);
    c.sync(4, sync_req(&b.member_id, 2, &[]), 0);
    c.sync(
        5,
        sync_req(&a.member_id, 2, &[(&a.member_id, "A"), (&b.member_id, "B")]),
        0,
    );
    assert_eq!(c.group_state("g"), Some(GroupState::Stable));
    // i-b restarts: unknown member id, same instance id.
    let fx = c.join(6, static_req("", "i-b"), 100);
    let r = join_reply(&fx, 6).unwrap();
    assert_eq!(r.error, NONE);
    assert_ne!(r.member_id, b.member_id);
    assert_eq!(r.generation_id, 2, "no new generation");
    assert_eq!(c.group_state("g"), Some(GroupState::Stable));
    assert_eq!(fx.records.len(), 1);
    let fx = c.sync(7, sync_req(&r.member_id, 2, &[]), 100);
    assert_eq!(sync_reply(&fx, 7).unwrap().assignment, Bytes::from("B"));
    // The old member id is fenced.
    let mut beat = HeartbeatRequest {
        group_id: "g".into(),
        generation_id: 2,
        member_id: b.member_id.clone(),
        group_instance_id: Some("i-b".into()),
    };
    assert_eq!(c.heartbeat(&beat, 100), FENCED_INSTANCE_ID);
    beat.member_id = r.member_id.clone();
    assert_eq!(c.heartbeat(&beat, 100), NONE);
}

#[test]
fn static_leader_rejoin_skips_assignment_on_v9() {
    let mut c = Coordinator::new(config(0), 1);
    let fx = c.join(1, static_req("", "i-a"), 0);
    let a = join_reply(&fx, 1).unwrap();
    c.sync(2, sync_req(&a.member_id, 1, &[(&a.member_id, "A")]), 0);
    let fx = c.join(3, static_req("", "i-a"), 10);
    let r = join_reply(&fx, 3).unwrap();
    assert!(r.skip_assignment);
    assert_eq!(r.leader, r.member_id);
    assert_eq!(c.group_state("g"), Some(GroupState::Stable));
    // Before v9 the restarted leader is told the old leader id and acts as a follower.
    let mut req = static_req("", "i-a");
    req.supports_skip_assignment = false;
    let fx = c.join(4, req, 20);
    let r2 = join_reply(&fx, 4).unwrap();
    assert_eq!(r2.generation_id, 1, "no rebalance");
    assert!(!r2.skip_assignment);
    assert_eq!(r2.leader, r.member_id, "the previous leader id");
    assert!(r2.members.is_empty());
    let fx = c.sync(5, sync_req(&r2.member_id, 1, &[]), 30);
    assert_eq!(sync_reply(&fx, 5).unwrap().assignment, Bytes::from("A"));
    assert_eq!(c.group_state("g"), Some(GroupState::Stable));
}

#[test]
fn static_leave_by_instance_id_and_fencing() {
    let mut c = Coordinator::new(config(0), 1);
    let fx = c.join(1, static_req("", "i-a"), 0);
    let a = join_reply(&fx, 1).unwrap();
    let (reply, _) = c.leave(
        "g",
        &[
            LeavingMember {
                member_id: "wrong".into(),
                group_instance_id: Some("i-a".into()),
            },
            LeavingMember {
                member_id: String::new(),
                group_instance_id: Some("i-a".into()),
            },
        ],
        0,
    );
    assert_eq!(reply.members[0].2, FENCED_INSTANCE_ID);
    assert_eq!(reply.members[1].2, NONE);
    assert_eq!(c.group_state("g"), Some(GroupState::Empty));
    let _ = a;
}

#[test]
fn pending_member_ids_expire() {
    let mut c = Coordinator::new(config(0), 1);
    let fx = c.join(1, join_req("", &["range"]), 0);
    let id = join_reply(&fx, 1).unwrap().member_id;
    c.tick(i64::from(SESSION_MS) + 1);
    let fx = c.join(2, join_req(&id, &["range"]), i64::from(SESSION_MS) + 2);
    assert_eq!(join_reply(&fx, 2).unwrap().error, UNKNOWN_MEMBER_ID);
}

#[test]
fn describe_list_and_delete() {
    let mut c = Coordinator::new(config(0), 1);
    let a = stable_single(&mut c);
    let d = c.describe("g");
    assert_eq!(
        (d.state, d.protocol.as_str(), d.protocol_type.as_str()),
        ("Stable", "range", "consumer")
    );
    assert_eq!(d.members[0].assignment, Bytes::from("a1"));
    assert_eq!(c.describe("nope").state, "Dead");
    assert_eq!(c.list(&[]).len(), 1);
    assert_eq!(c.list(&["stable".into()]).len(), 1);
    assert!(c.list(&["Empty".into()]).is_empty());
    let (errors, _) = c.delete_groups(&["g".into(), "nope".into()]);
    assert_eq!(errors, vec![NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND]);
    c.leave(
        "g",
        &[LeavingMember {
            member_id: a,
            group_instance_id: None,
        }],
        1,
    );
    let (errors, fx) = c.delete_groups(&["g".into()]);
    assert_eq!(errors, vec![NONE]);
    assert_eq!(fx.records.last().unwrap().value, None, "group tombstone");
    assert!(c.group_state("g").is_none());
}

/// A consumer that closes during the initial rebalance delay leaves an Empty group at
/// once, so DeleteGroups right after succeeds (it was NON_EMPTY_GROUP until the delay ran
/// out, found by trying it as a new user would).
#[test]
fn the_last_member_leaving_during_the_initial_delay_empties_the_group() {
    let mut c = Coordinator::new(config(3_000), 1);
    let (a, fx) = first_join(&mut c, 1, 0);
    assert!(
        join_reply(&fx, 2).is_none(),
        "the initial delay holds the join"
    );
    let (reply, fx) = c.leave(
        "g",
        &[LeavingMember {
            member_id: a,
            group_instance_id: None,
        }],
        100,
    );
    assert_eq!(reply.members[0].2, NONE);
    assert_eq!(
        join_reply(&fx, 2).map(|r| r.error),
        Some(UNKNOWN_MEMBER_ID),
        "the left member's pending join is answered"
    );
    assert_eq!(c.group_state("g"), Some(GroupState::Empty));
    let (errors, _) = c.delete_groups(&["g".into()]);
    assert_eq!(errors, vec![NONE]);
}

#[test]
fn replay_rebuilds_stable_group_and_tombstones_delete() {
    let mut c = Coordinator::new(config(0), 1);
    let a = stable_single(&mut c);
    let record = c.groups["g"].record();
    let mut fresh = Coordinator::new(config(0), 2);
    fresh
        .replay(&record.key, record.value.as_deref(), 500)
        .unwrap();
    assert_eq!(fresh.group_state("g"), Some(GroupState::Stable));
    assert_eq!(fresh.generation("g"), Some(1));
    // The restored member keeps its assignment and heartbeats normally.
    assert_eq!(heartbeat(&mut fresh, &a, 1, 600), NONE);
    let fx = fresh.sync(1, sync_req(&a, 1, &[]), 600);
    assert_eq!(sync_reply(&fx, 1).unwrap().assignment, Bytes::from("a1"));
    fresh.replay(&record.key, None, 700).unwrap();
    assert!(fresh.group_state("g").is_none());
    assert!(fresh.replay(b"\x00\x07", None, 0).is_err());
}

/// A and B joined generation 2 of a Stable group; returns (a, b). A is the leader.
fn two_members_joined(c: &mut Coordinator) -> (String, String) {
    let a = stable_single(c);
    let (b, fx) = first_join(c, 10, 0);
    assert!(join_reply(&fx, 11).is_none());
    let fx = c.join(20, join_req(&a, &["range"]), 0);
    assert_eq!(join_reply(&fx, 20).unwrap().generation_id, 2);
    assert_eq!(c.group_state("g"), Some(GroupState::CompletingRebalance));
    (a, b)
}

#[test]
fn member_that_never_syncs_is_removed_after_rebalance_timeout() {
    let mut c = Coordinator::new(config(0), 1);
    let (a, b) = two_members_joined(&mut c);
    let fx = c.sync(21, sync_req(&a, 2, &[(&a, "1"), (&b, "2")]), 0);
    assert_eq!(sync_reply(&fx, 21).unwrap().error, NONE);
    assert_eq!(c.group_state("g"), Some(GroupState::Stable));
    // B heartbeats (so its session never expires) but never sends SyncGroup.
    let mut at = 0;
    while at < i64::from(REBALANCE_MS) - 5000 {
        at += 5000;
        assert_eq!(heartbeat(&mut c, &b, 2, at), NONE);
        assert_eq!(heartbeat(&mut c, &a, 2, at), NONE);
        c.tick(at);
        assert_eq!(c.group_state("g"), Some(GroupState::Stable));
    }
    assert_eq!(c.next_deadline_ms(), Some(i64::from(REBALANCE_MS)));
    c.tick(i64::from(REBALANCE_MS));
    assert_eq!(c.group_state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(
        heartbeat(&mut c, &b, 2, i64::from(REBALANCE_MS) + 1),
        UNKNOWN_MEMBER_ID
    );
    let fx = c.join(30, join_req(&a, &["range"]), i64::from(REBALANCE_MS) + 1);
    let r = join_reply(&fx, 30).unwrap();
    assert_eq!((r.generation_id, r.members.len()), (3, 1));
}

#[test]
fn leader_that_never_syncs_is_removed_and_waiting_followers_rejoin() {
    let mut c = Coordinator::new(config(0), 1);
    let (a, b) = two_members_joined(&mut c);
    // The follower waits in SyncGroup; the leader only heartbeats.
    assert!(sync_reply(&c.sync(22, sync_req(&b, 2, &[]), 0), 22).is_none());
    for at in (5000..i64::from(REBALANCE_MS)).step_by(5000) {
        assert_eq!(heartbeat(&mut c, &a, 2, at), NONE);
        assert!(c.tick(at).completions.is_empty());
    }
    assert!(c.tick(i64::from(REBALANCE_MS) - 1).completions.is_empty());
    let fx = c.tick(i64::from(REBALANCE_MS));
    assert_eq!(sync_reply(&fx, 22).unwrap().error, REBALANCE_IN_PROGRESS);
    assert_eq!(c.group_state("g"), Some(GroupState::PreparingRebalance));
    let fx = c.join(30, join_req(&b, &["range"]), i64::from(REBALANCE_MS) + 1);
    let r = join_reply(&fx, 30).unwrap();
    assert_eq!((r.generation_id, r.leader.as_str()), (3, b.as_str()));
}

#[test]
fn members_that_sync_are_not_timed_out() {
    let mut c = Coordinator::new(config(0), 1);
    let (a, b) = two_members_joined(&mut c);
    c.sync(21, sync_req(&a, 2, &[(&a, "1"), (&b, "2")]), 0);
    c.sync(22, sync_req(&b, 2, &[]), 100);
    for at in (5000..=i64::from(REBALANCE_MS) + 5000).step_by(5000) {
        assert_eq!(heartbeat(&mut c, &a, 2, at), NONE);
        assert_eq!(heartbeat(&mut c, &b, 2, at), NONE);
        c.tick(at);
    }
    assert_eq!(c.group_state("g"), Some(GroupState::Stable));
    assert_eq!(c.generation("g"), Some(2));
}

#[test]
fn pending_member_that_never_rejoins_stops_blocking_the_rebalance() {
    let mut c = Coordinator::new(config(0), 1);
    let a = stable_single(&mut c);
    // B gets a member id (MEMBER_ID_REQUIRED) but never comes back.
    let fx = c.join(10, join_req("", &["range"]), 0);
    let b = join_reply(&fx, 10).unwrap().member_id;
    // A rejoins with new metadata: the barrier waits for the pending member.
    let fx = c.join(20, join_req(&a, &["range", "roundrobin"]), 0);
    assert!(join_reply(&fx, 20).is_none());
    assert!(c.tick(i64::from(SESSION_MS) - 1).completions.is_empty());
    assert_eq!(c.next_deadline_ms(), Some(i64::from(SESSION_MS)));
    let fx = c.tick(i64::from(SESSION_MS));
    let r = join_reply(&fx, 20).expect("pending member dropped after its session timeout");
    assert_eq!((r.error, r.generation_id, r.members.len()), (NONE, 2, 1));
    let late = c.join(30, join_req(&b, &["range"]), i64::from(SESSION_MS) + 1);
    assert_eq!(join_reply(&late, 30).unwrap().error, UNKNOWN_MEMBER_ID);
}
