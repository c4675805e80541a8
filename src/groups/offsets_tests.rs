//! Offset commit, fetch, delete and expiry, driven with explicit time.

use bytes::Bytes;

use super::*;
use crate::groups::coordinator::{
    Completion, CoordinatorConfig, JoinRequest, LeavingMember, SyncRequest, MEMBER_ID_REQUIRED,
};

fn coordinator() -> Coordinator {
    Coordinator::new(
        CoordinatorConfig {
            initial_rebalance_delay_ms: 0,
            offsets_retention_ms: 1000,
            offsets_retention_check_interval_ms: 100,
            ..CoordinatorConfig::default()
        },
        9,
    )
}

fn commit(group: &str, generation: i32, member: &str, offset: i64) -> CommitRequest {
    CommitRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        topics: vec![(
            "t".into(),
            vec![CommitPartition {
                partition: 0,
                offset,
                leader_epoch: 4,
                metadata: Some("m".into()),
            }],
        )],
        retention_ms: None,
    }
}

/// A Stable consumer group "g" of one member subscribed to topic "t"; returns its id.
fn stable_member(c: &mut Coordinator) -> String {
    let mut metadata = vec![0u8, 0];
    metadata.extend_from_slice(&[0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff]);
    let req = JoinRequest {
        group_id: "g".into(),
        client_id: "c".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from(metadata))],
        require_known_member_id: true,
        ..JoinRequest::default()
    };
    let fx = c.join(1, req.clone(), 0);
    let Some((_, Completion::Join(r))) = fx.completions.first() else {
        panic!("no join answer");
    };
    assert_eq!(r.error, MEMBER_ID_REQUIRED);
    let id = r.member_id.clone();
    c.join(
        2,
        JoinRequest {
            member_id: id.clone(),
            ..req
        },
        0,
    );
    c.sync(
        3,
        SyncRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: id.clone(),
            ..SyncRequest::default()
        },
        0,
    );
    id
}

#[test]
fn simple_commit_creates_group_and_fetch_reads_it_back() {
    let mut c = coordinator();
    let (reply, fx) = c.commit_offsets(commit("s", -1, "", 42), 10);
    assert_eq!(reply, vec![("t".to_string(), vec![(0, NONE)])]);
    assert_eq!(fx.records.len(), 1);
    let all = c.fetch_offsets("s", None);
    assert_eq!(all[0].1[0].offset, 42);
    assert_eq!(all[0].1[0].leader_epoch, 4);
    assert_eq!(all[0].1[0].metadata, "m");
    let some = c.fetch_offsets("s", Some(&[("t".into(), vec![0, 1])]));
    assert_eq!(some[0].1[1].offset, -1, "never committed");
    assert!(c.fetch_offsets("unknown", None).is_empty());
    // A generation >= 0 for an unknown group is refused.
    let (reply, _) = c.commit_offsets(commit("x", 3, "m", 1), 10);
    assert_eq!(reply[0].1[0].1, ILLEGAL_GENERATION);
}

#[test]
fn member_commits_are_checked_against_generation_and_state() {
    let mut c = coordinator();
    let m = stable_member(&mut c);
    assert_eq!(c.commit_offsets(commit("g", 1, &m, 5), 1).0[0].1[0].1, NONE);
    assert_eq!(
        c.commit_offsets(commit("g", 0, &m, 5), 1).0[0].1[0].1,
        ILLEGAL_GENERATION
    );
    assert_eq!(
        c.commit_offsets(commit("g", 1, "who", 5), 1).0[0].1[0].1,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        c.commit_offsets(commit("g", -1, "", 5), 1).0[0].1[0].1,
        UNKNOWN_MEMBER_ID
    );
    let mut big = commit("g", 1, &m, 5);
    big.topics[0].1[0].metadata = Some("x".repeat(5000));
    assert_eq!(
        c.commit_offsets(big, 1).0[0].1[0].1,
        OFFSET_METADATA_TOO_LARGE
    );
}

#[test]
fn offset_delete_respects_subscriptions() {
    let mut c = coordinator();
    let m = stable_member(&mut c);
    c.commit_offsets(commit("g", 1, &m, 5), 1);
    let mut other = commit("g", 1, &m, 6);
    other.topics[0].0 = "u".into();
    c.commit_offsets(other, 1);
    let ((error, topics), fx) =
        c.delete_offsets("g", &[("t".into(), vec![0]), ("u".into(), vec![0])]);
    assert_eq!(error, NONE);
    assert_eq!(topics[0].1[0].1, GROUP_SUBSCRIBED_TO_TOPIC);
    assert_eq!(topics[1].1[0].1, NONE);
    assert_eq!(fx.records.len(), 1);
    assert!(fx.records[0].value.is_none(), "tombstone");
    assert_eq!(c.delete_offsets("nope", &[]).0 .0, GROUP_ID_NOT_FOUND);
}

#[test]
fn offsets_of_empty_groups_expire_after_retention() {
    let mut c = coordinator();
    let m = stable_member(&mut c);
    c.commit_offsets(commit("g", 1, &m, 5), 1);
    c.commit_offsets(commit("s", -1, "", 7), 1);
    // Stable groups keep their offsets.
    c.tick(5000);
    assert_eq!(c.fetch_offsets("g", None)[0].1[0].offset, 5);
    assert!(
        c.fetch_offsets("s", None).is_empty(),
        "simple group expired by commit time"
    );
    c.leave(
        "g",
        &[LeavingMember {
            member_id: m,
            group_instance_id: None,
        }],
        6000,
    );
    c.tick(6500);
    assert_eq!(
        c.fetch_offsets("g", None).len(),
        1,
        "not yet: empty for 500 ms"
    );
    let fx = c.tick(7100);
    assert!(c.fetch_offsets("g", None).is_empty());
    assert!(c.group_state("g").is_none(), "nothing left: group removed");
    assert_eq!(fx.records.len(), 2, "offset and group tombstones");
}

#[test]
fn per_commit_retention_time_overrides_broker_retention() {
    let mut c = coordinator();
    // Simple groups: 5 s of retention outlives the broker's 1 s; 200 ms does not.
    let long = CommitRequest {
        retention_ms: Some(5000),
        ..commit("long", -1, "", 3)
    };
    let short = CommitRequest {
        retention_ms: Some(200),
        ..commit("short", -1, "", 4)
    };
    let (_, fx) = c.commit_offsets(long, 0);
    c.commit_offsets(short, 0);
    c.tick(300);
    assert!(c.fetch_offsets("short", None).is_empty(), "own retention");
    c.tick(4000);
    assert_eq!(c.fetch_offsets("long", None)[0].1[0].offset, 3);
    // The expiry is stored (offset value v1) and survives a reload.
    let mut fresh = coordinator();
    for r in &fx.records {
        fresh.replay(&r.key, r.value.as_deref(), 0).unwrap();
    }
    fresh.tick(4000);
    assert_eq!(fresh.fetch_offsets("long", None)[0].1[0].offset, 3);
    for co in [&mut c, &mut fresh] {
        let fx = co.tick(5000);
        assert!(co.fetch_offsets("long", None).is_empty());
        assert_eq!(
            fx.records.len(),
            1,
            "offset tombstone only (no group metadata)"
        );
    }
    // A later commit without retention goes back to the broker's.
    c.commit_offsets(
        CommitRequest {
            retention_ms: Some(200),
            ..commit("s", -1, "", 1)
        },
        6000,
    );
    c.commit_offsets(commit("s", -1, "", 2), 6000);
    c.tick(6500);
    assert_eq!(c.fetch_offsets("s", None)[0].1[0].offset, 2);
}

#[test]
fn committed_offsets_for_lag_and_replay() {
    let mut c = coordinator();
    let (_, fx) = c.commit_offsets(commit("s", -1, "", 11), 1);
    assert_eq!(
        c.committed_offsets(),
        vec![CommittedOffset {
            group_id: "s".into(),
            topic: "t".into(),
            partition: 0,
            offset: 11
        }]
    );
    let mut fresh = coordinator();
    for r in &fx.records {
        fresh.replay(&r.key, r.value.as_deref(), 2).unwrap();
    }
    assert_eq!(fresh.fetch_offsets("s", None)[0].1[0].offset, 11);
    fresh.replay(&fx.records[0].key, None, 3).unwrap();
    assert!(fresh.committed_offsets().is_empty());
}
