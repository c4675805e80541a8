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

/// Commits and, as the host does once the records are committed, makes it visible.
fn commit_durably(c: &mut Coordinator, req: CommitRequest, now_ms: i64) -> (CommitReply, Effects) {
    let (reply, fx) = c.commit_offsets(req, now_ms);
    c.persisted(&fx);
    (reply, fx)
}

fn fetched(c: &Coordinator, group: &str) -> Option<i64> {
    let reply = c.fetch_offsets(group, Some(&[("t".into(), vec![0])]), false);
    let offset = reply.first()?.1.first()?.offset;
    (offset >= 0).then_some(offset)
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
    let (reply, fx) = commit_durably(&mut c, commit("s", -1, "", 42), 10);
    assert_eq!(reply, vec![("t".to_string(), vec![(0, NONE)])]);
    assert_eq!(fx.records.len(), 1);
    let all = c.fetch_offsets("s", None, false);
    assert_eq!(all[0].1[0].offset, 42);
    assert_eq!(all[0].1[0].leader_epoch, 4);
    assert_eq!(all[0].1[0].metadata, "m");
    let some = c.fetch_offsets("s", Some(&[("t".into(), vec![0, 1])]), false);
    assert_eq!(some[0].1[1].offset, -1, "never committed");
    assert!(c.fetch_offsets("unknown", None, false).is_empty());
    // A generation >= 0 for an unknown group is refused.
    let (reply, _) = commit_durably(&mut c, commit("x", 3, "m", 1), 10);
    assert_eq!(reply[0].1[0].1, ILLEGAL_GENERATION);
}

#[test]
fn member_commits_are_checked_against_generation_and_state() {
    let mut c = coordinator();
    let m = stable_member(&mut c);
    assert_eq!(
        commit_durably(&mut c, commit("g", 1, &m, 5), 1).0[0].1[0].1,
        NONE
    );
    assert_eq!(
        commit_durably(&mut c, commit("g", 0, &m, 5), 1).0[0].1[0].1,
        ILLEGAL_GENERATION
    );
    assert_eq!(
        commit_durably(&mut c, commit("g", 1, "who", 5), 1).0[0].1[0].1,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        commit_durably(&mut c, commit("g", -1, "", 5), 1).0[0].1[0].1,
        UNKNOWN_MEMBER_ID
    );
    let mut big = commit("g", 1, &m, 5);
    big.topics[0].1[0].metadata = Some("x".repeat(5000));
    assert_eq!(
        commit_durably(&mut c, big, 1).0[0].1[0].1,
        OFFSET_METADATA_TOO_LARGE
    );
}

#[test]
fn offset_delete_respects_subscriptions() {
    let mut c = coordinator();
    let m = stable_member(&mut c);
    commit_durably(&mut c, commit("g", 1, &m, 5), 1);
    let mut other = commit("g", 1, &m, 6);
    other.topics[0].0 = "u".into();
    commit_durably(&mut c, other, 1);
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
    commit_durably(&mut c, commit("g", 1, &m, 5), 1);
    commit_durably(&mut c, commit("s", -1, "", 7), 1);
    // Stable groups keep their offsets.
    c.tick(5000);
    assert_eq!(c.fetch_offsets("g", None, false)[0].1[0].offset, 5);
    assert!(
        c.fetch_offsets("s", None, false).is_empty(),
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
        c.fetch_offsets("g", None, false).len(),
        1,
        "not yet: empty for 500 ms"
    );
    let fx = c.tick(7100);
    assert!(c.fetch_offsets("g", None, false).is_empty());
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
    let (_, fx) = commit_durably(&mut c, long, 0);
    commit_durably(&mut c, short, 0);
    c.tick(300);
    assert!(
        c.fetch_offsets("short", None, false).is_empty(),
        "own retention"
    );
    c.tick(4000);
    assert_eq!(c.fetch_offsets("long", None, false)[0].1[0].offset, 3);
    // The expiry is stored (offset value v1) and survives a reload.
    let mut fresh = coordinator();
    for r in &fx.records {
        fresh.replay(&r.key, r.value.as_deref(), 0).unwrap();
    }
    fresh.tick(4000);
    assert_eq!(fresh.fetch_offsets("long", None, false)[0].1[0].offset, 3);
    for co in [&mut c, &mut fresh] {
        let fx = co.tick(5000);
        assert!(co.fetch_offsets("long", None, false).is_empty());
        assert_eq!(
            fx.records.len(),
            1,
            "offset tombstone only (no group metadata)"
        );
    }
    // A later commit without retention goes back to the broker's.
    commit_durably(
        &mut c,
        CommitRequest {
            retention_ms: Some(200),
            ..commit("s", -1, "", 1)
        },
        6000,
    );
    commit_durably(&mut c, commit("s", -1, "", 2), 6000);
    c.tick(6500);
    assert_eq!(c.fetch_offsets("s", None, false)[0].1[0].offset, 2);
}

#[test]
fn committed_offsets_for_lag_and_replay() {
    let mut c = coordinator();
    let (_, fx) = commit_durably(&mut c, commit("s", -1, "", 11), 1);
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
    assert_eq!(fresh.fetch_offsets("s", None, false)[0].1[0].offset, 11);
    fresh.replay(&fx.records[0].key, None, 3).unwrap();
    assert!(fresh.committed_offsets().is_empty());
}

#[test]
fn a_staged_commit_is_invisible_until_persisted() {
    let mut c = coordinator();
    commit_durably(&mut c, commit("s", -1, "", 1), 0);
    let (reply, fx) = c.commit_offsets(commit("s", -1, "", 2), 0);
    assert_eq!(reply[0].1[0].1, NONE);
    assert_eq!(fx.records.len(), 1, "the record to append");
    assert_eq!(fetched(&c, "s"), Some(1), "in flight: the durable value");
    assert_eq!(
        c.committed_offsets()[0].offset,
        1,
        "lag sees durable offsets only"
    );
    c.persisted(&fx);
    assert_eq!(fetched(&c, "s"), Some(2));
    assert!(c.groups["s"].pending_offsets.is_empty());
}

#[test]
fn commits_persisted_out_of_order_leave_the_newest_visible() {
    let mut c = coordinator();
    let (_, first) = c.commit_offsets(commit("s", -1, "", 1), 0);
    let (_, second) = c.commit_offsets(commit("s", -1, "", 2), 0);
    assert_eq!(fetched(&c, "s"), None, "nothing durable yet");
    c.persisted(&second);
    assert_eq!(fetched(&c, "s"), Some(2));
    c.persisted(&first);
    assert_eq!(
        fetched(&c, "s"),
        Some(2),
        "the older commit does not hide the newer"
    );
    // In log order: the older becomes visible first, then the newer.
    let (_, third) = c.commit_offsets(commit("s", -1, "", 3), 0);
    let (_, fourth) = c.commit_offsets(commit("s", -1, "", 4), 0);
    c.persisted(&third);
    assert_eq!(fetched(&c, "s"), Some(3));
    c.persisted(&fourth);
    assert_eq!(fetched(&c, "s"), Some(4));
}

#[test]
fn an_offset_deleted_while_its_commit_is_in_flight_stays_deleted() {
    let mut c = coordinator();
    let (_, in_flight) = c.commit_offsets(commit("s", -1, "", 5), 0);
    let ((error, topics), fx) = c.delete_offsets("s", &[("t".into(), vec![0])]);
    assert_eq!((error, topics[0].1[0].1), (NONE, NONE));
    assert_eq!(
        fx.records.len(),
        1,
        "a tombstone follows the commit in the log"
    );
    let (_, after) = c.commit_offsets(commit("s", -1, "", 6), 0);
    c.persisted(&in_flight);
    assert_eq!(
        fetched(&c, "s"),
        None,
        "the deleted commit does not come back"
    );
    c.persisted(&after);
    assert_eq!(fetched(&c, "s"), Some(6));
}

#[test]
fn deleting_a_group_tombstones_offsets_in_flight() {
    let mut c = coordinator();
    let (_, in_flight) = c.commit_offsets(commit("s", -1, "", 5), 0);
    let (errors, fx) = c.delete_groups(&["s".to_string()]);
    assert_eq!(errors, vec![NONE]);
    let offset_tombstones = fx
        .records
        .iter()
        .filter(|r| r.key == records::offset_key("s", "t", 0))
        .count();
    assert_eq!(offset_tombstones, 1);
    c.persisted(&in_flight);
    assert_eq!(fetched(&c, "s"), None);
}

#[test]
fn an_offset_with_a_commit_in_flight_does_not_expire() {
    let mut c = coordinator();
    commit_durably(&mut c, commit("s", -1, "", 1), 0);
    let (_, in_flight) = c.commit_offsets(commit("s", -1, "", 2), 4000);
    let fx = c.tick(5000);
    assert!(fx.records.is_empty(), "renewed by the commit in flight");
    c.persisted(&in_flight);
    assert_eq!(fetched(&c, "s"), Some(2));
}

mod hosted {
    //! The coordinator run by the real host on an in-memory log, as the broker runs it.

    use std::pin::pin;

    use futures::executor::block_on;
    use futures::poll;

    use super::*;
    use crate::coordinator::testing::{MemLog, MemLogs};
    use crate::coordinator::Host;
    use crate::util::clock::Clock;

    /// OffsetFetch as the handler sends it: an input without records.
    async fn fetch_now(host: &Host<Coordinator, MemLog>) -> Option<i64> {
        let run = host.execute(0, |c, _| (fetched(c, "s"), Effects::default()));
        run.await.expect("served").answer
    }

    fn fetch(host: &Host<Coordinator, MemLog>) -> Option<i64> {
        block_on(fetch_now(host))
    }

    fn host(logs: &MemLogs) -> Host<Coordinator, MemLog> {
        Host::new(CoordinatorConfig::default(), Clock::manual(0), logs.clone())
    }

    #[test]
    fn a_commit_is_fetched_only_once_its_append_is_committed() {
        let logs = MemLogs::default();
        let log = logs.serve(0, MemLog::default());
        let host = host(&logs);
        let run = block_on(host.execute(0, |c, now| c.commit_offsets(commit("s", -1, "", 1), now)));
        assert!(run.expect("runs").persisted.is_ok());
        assert_eq!(fetch(&host), Some(1));
        let open = log.hold_next_append();
        block_on(async {
            let mut second =
                pin!(host.execute(0, |c, now| c.commit_offsets(commit("s", -1, "", 2), now)));
            assert!(poll!(second.as_mut()).is_pending(), "append in flight");
            assert_eq!(
                fetch_now(&host).await,
                Some(1),
                "not visible while in flight"
            );
            open.send(()).expect("the append waits");
            assert!(second.await.expect("runs").persisted.is_ok());
        });
        assert_eq!(fetch(&host), Some(2), "visible once committed");
    }

    #[test]
    fn a_commit_whose_append_fails_is_never_fetched() {
        let logs = MemLogs::default();
        let log = logs.serve(0, MemLog::default());
        let host = host(&logs);
        let run = block_on(host.execute(0, |c, now| c.commit_offsets(commit("s", -1, "", 1), now)));
        assert!(run.expect("runs").persisted.is_ok());
        let open = log.hold_next_append();
        log.fail_appends.set(true);
        block_on(async {
            let mut second =
                pin!(host.execute(0, |c, now| c.commit_offsets(commit("s", -1, "", 2), now)));
            assert!(poll!(second.as_mut()).is_pending(), "append in flight");
            assert_eq!(
                fetch_now(&host).await,
                Some(1),
                "not visible while in flight"
            );
            open.send(()).expect("the append waits");
            let run = second.await.expect("runs");
            assert!(run.persisted.is_err(), "the append failed");
        });
        log.fail_appends.set(false);
        assert_eq!(fetch(&host), Some(1), "after the reload: the old value");
        assert_eq!(log.stored(), 1, "only the first commit is stored");
        // A fresh host (a restart) reads the same.
        let restarted = super::hosted::host(&logs);
        assert_eq!(fetch(&restarted), Some(1));
    }
}

/// OffsetFetch with `require_stable` (read_committed consumers) must not hand out an
/// offset an open transaction is about to replace; without it, the committed one.
#[test]
fn require_stable_waits_for_open_transactional_offsets() {
    let mut c = coordinator();
    commit_durably(&mut c, commit("s", -1, "", 5), 0);
    c.stage_txn_offsets(42, "s", [("t".to_string(), 0)]);
    let stable = |c: &Coordinator, require: bool| {
        let reply = c.fetch_offsets("s", Some(&[("t".into(), vec![0, 1])]), require);
        reply[0]
            .1
            .iter()
            .map(|p| (p.offset, p.error))
            .collect::<Vec<_>>()
    };
    assert_eq!(stable(&c, false), vec![(5, NONE), (-1, NONE)]);
    assert_eq!(
        stable(&c, true),
        vec![(-1, UNSTABLE_OFFSET_COMMIT), (-1, NONE)],
        "only the partition the transaction wrote is unstable"
    );
    assert_eq!(
        c.fetch_offsets("s", None, true)[0].1[0].error,
        UNSTABLE_OFFSET_COMMIT
    );
    c.end_txn_offsets(42);
    assert_eq!(stable(&c, true), vec![(5, NONE), (-1, NONE)]);
}
