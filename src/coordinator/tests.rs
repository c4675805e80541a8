//! The host with a toy state machine on an in-memory log: no disk, no network, no executor.

use std::collections::BTreeMap;
use std::pin::pin;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::executor::block_on;
use futures::poll;

use super::testing::{MemLog, MemLogs};
use super::*;
use crate::util::clock::Clock;

const TALLY_TOPIC: InternalTopic = InternalTopic {
    name: "__tally",
    partitions: 3,
    segment_bytes: 1 << 20,
};

/// A toy coordinator: named counters, stored as `name -> total` records.
#[derive(Debug, Default)]
struct Tally {
    totals: BTreeMap<String, i64>,
    /// Totals whose records are committed: what a careful reader may be shown.
    durable: BTreeMap<String, i64>,
    leader_epoch: i32,
    /// Every `now_ms` the host handed it, replay included.
    seen_now_ms: Vec<i64>,
}

/// The records to store and whatever the caller must still deliver.
#[derive(Debug, Default)]
struct TallyEffects {
    records: Vec<KeyedRecord>,
    waiting: Vec<&'static str>,
    /// The total to show once the records are committed.
    staged: Option<(String, i64)>,
}

impl Tally {
    fn add(&mut self, name: &str, by: i64, now_ms: i64) -> (i64, TallyEffects) {
        self.seen_now_ms.push(now_ms);
        let total = self.totals.entry(name.to_string()).or_default();
        *total += by;
        let record = KeyedRecord {
            key: Bytes::copy_from_slice(name.as_bytes()),
            value: Some(Bytes::copy_from_slice(&total.to_be_bytes())),
        };
        let effects = TallyEffects {
            records: vec![record],
            waiting: vec!["a waiter"],
            staged: Some((name.to_string(), *total)),
        };
        (*total, effects)
    }
}

impl Coordinated for Tally {
    type Config = ();
    type Effects = TallyEffects;
    type ReplayError = String;
    const TOPIC: InternalTopic = TALLY_TOPIC;

    fn fresh(_: &(), _: i32, leader_epoch: LeaderEpoch) -> Tally {
        Tally {
            leader_epoch: leader_epoch.get(),
            ..Tally::default()
        }
    }

    fn replay(&mut self, key: &[u8], value: Option<&[u8]>, now_ms: i64) -> Result<(), String> {
        self.seen_now_ms.push(now_ms);
        let name = String::from_utf8(key.to_vec()).map_err(|e| e.to_string())?;
        match value {
            None => {
                self.totals.remove(&name);
                self.durable.remove(&name);
            }
            Some(v) => {
                let bytes: [u8; 8] = v.try_into().map_err(|_| "bad value".to_string())?;
                let total = i64::from_be_bytes(bytes);
                self.totals.insert(name.clone(), total);
                self.durable.insert(name, total);
            }
        }
        Ok(())
    }

    fn records(effects: &TallyEffects) -> &[KeyedRecord] {
        &effects.records
    }

    fn persisted(&mut self, effects: &TallyEffects) {
        if let Some((name, total)) = &effects.staged {
            self.durable.insert(name.clone(), *total);
        }
    }

    fn entry_count(&self) -> usize {
        self.totals.len()
    }
}

fn host(logs: &MemLogs, clock: &Clock) -> Host<Tally, MemLog> {
    Host::new((), clock.clone(), logs.clone())
}

fn record(name: &str, total: i64) -> KeyedRecord {
    KeyedRecord {
        key: Bytes::copy_from_slice(name.as_bytes()),
        value: Some(Bytes::copy_from_slice(&total.to_be_bytes())),
    }
}

fn total(host: &Host<Tally, MemLog>, partition: i32, name: &str) -> Option<i64> {
    block_on(host.query(partition, |t| t.totals.get(name).copied())).ok()?
}

#[test]
fn load_replays_the_log_with_the_leader_epoch_and_the_clock() {
    let logs = MemLogs::default();
    let log = MemLog {
        leader_epoch: 7,
        ..MemLog::default()
    };
    log.records.borrow_mut().extend([
        record("a", 1),
        record("b", 5),
        record("a", 3),
        KeyedRecord {
            key: Bytes::from_static(b"b"),
            value: None,
        },
    ]);
    logs.serve(0, log);
    let host = host(&logs, &Clock::manual(42));
    let (totals, epoch, seen) = block_on(host.query(0, |t| {
        (t.totals.clone(), t.leader_epoch, t.seen_now_ms.clone())
    }))
    .expect("loads");
    assert_eq!(totals, BTreeMap::from([("a".to_string(), 3)]));
    assert_eq!(epoch, 7);
    assert_eq!(seen, vec![42; 4]);
    assert_eq!(host.ready_partitions(), vec![0]);
}

#[test]
fn execute_appends_the_records_then_answers() {
    let logs = MemLogs::default();
    let log = logs.serve(1, MemLog::default());
    let host = host(&logs, &Clock::manual(1_000));
    let run = block_on(host.execute(1, |t, now| t.add("x", 2, now))).expect("runs");
    assert_eq!(run.answer, 2);
    assert!(run.persisted.is_ok());
    assert_eq!(run.effects.waiting, vec!["a waiter"]);
    assert_eq!(*log.records.borrow(), vec![record("x", 2)]);
    let run = block_on(host.execute(1, |t, now| t.add("x", 3, now))).expect("runs");
    assert_eq!(run.answer, 5);
    assert_eq!(log.stored(), 2);
}

#[test]
fn an_input_without_records_appends_nothing() {
    let logs = MemLogs::default();
    let log = logs.serve(0, MemLog::default());
    log.fail_appends.set(true);
    let host = host(&logs, &Clock::manual(0));
    let run = block_on(host.execute(0, |_, _| ("read", TallyEffects::default()))).expect("runs");
    assert!(run.persisted.is_ok(), "nothing to append cannot fail");
    assert_eq!(host.ready_partitions(), vec![0]);
}

#[test]
fn a_failed_append_drops_the_state_and_the_next_call_reloads_the_log() {
    let logs = MemLogs::default();
    let log = logs.serve(2, MemLog::default());
    let host = host(&logs, &Clock::manual(0));
    let run = block_on(host.execute(2, |t, now| t.add("x", 1, now))).expect("runs");
    assert!(run.persisted.is_ok());
    log.fail_appends.set(true);
    let run = block_on(host.execute(2, |t, now| t.add("x", 10, now))).expect("runs");
    assert_eq!(run.answer, 11, "the input ran");
    let err = run.persisted.expect_err("the append failed");
    assert!(matches!(err, CoordinatorError::Append { partition: 2, .. }));
    assert_eq!(err.code(), ResponseError::CoordinatorNotAvailable.code());
    assert_eq!(
        run.effects.waiting,
        vec!["a waiter"],
        "effects come back to fail"
    );
    assert!(host.ready_partitions().is_empty(), "the state is dropped");
    log.fail_appends.set(false);
    assert_eq!(
        total(&host, 2, "x"),
        Some(1),
        "reloaded without the lost effect"
    );
    assert_eq!(log.stored(), 1);
}

#[test]
fn a_partition_no_longer_served_drops_the_state_on_append() {
    let logs = MemLogs::default();
    logs.serve(0, MemLog::default());
    let host = host(&logs, &Clock::manual(0));
    block_on(host.load(0)).expect("loads");
    logs.0.borrow_mut().remove(&0);
    let run = block_on(host.execute(0, |t, now| t.add("x", 1, now))).expect("runs in memory");
    let err = run.persisted.expect_err("nowhere to append");
    assert_eq!(err.code(), ResponseError::NotCoordinator.code());
    assert!(host.ready_partitions().is_empty());
    let err = block_on(host.query(0, |_| ())).expect_err("not served");
    assert!(matches!(
        err,
        CoordinatorError::NotCoordinator { partition: 0, .. }
    ));
}

#[test]
fn a_call_during_loading_gets_the_loading_error() {
    let logs = MemLogs::default();
    let log = logs.serve(0, MemLog::default());
    log.records.borrow_mut().push(record("x", 4));
    let (open, gate) = oneshot::channel();
    *log.load_gate.borrow_mut() = Some(gate);
    let host = host(&logs, &Clock::manual(0));
    block_on(async {
        let mut first = pin!(host.execute(0, |t, now| t.add("x", 1, now)));
        assert!(poll!(first.as_mut()).is_pending(), "held at the gate");
        let err = host.query(0, |_| ()).await.expect_err("still loading");
        assert!(matches!(
            err,
            CoordinatorError::Loading { partition: 0, .. }
        ));
        assert_eq!(err.code(), ResponseError::CoordinatorLoadInProgress.code());
        let err = host.execute(0, |t, now| t.add("x", 1, now)).await;
        assert!(matches!(err, Err(CoordinatorError::Loading { .. })));
        open.send(()).expect("the load waits");
        let run = first.await.expect("loads then runs");
        assert_eq!(run.answer, 5);
    });
}

#[test]
fn a_failed_load_leaves_nothing_behind_and_the_next_call_tries_again() {
    let logs = MemLogs::default();
    let log = logs.serve(0, MemLog::default());
    log.fail_loads.set(true);
    let host = host(&logs, &Clock::manual(0));
    let err = block_on(host.load(0)).expect_err("load fails");
    assert!(matches!(
        err,
        CoordinatorError::LoadFailed { partition: 0, .. }
    ));
    assert_eq!(err.code(), ResponseError::CoordinatorNotAvailable.code());
    log.fail_loads.set(false);
    block_on(host.load(0)).expect("loads on retry");
}

#[test]
fn the_state_machine_sees_the_manual_clock() {
    let logs = MemLogs::default();
    logs.serve(0, MemLog::default());
    let clock = Clock::manual(5_000);
    let host = host(&logs, &clock);
    let _ = block_on(host.execute(0, |t, now| t.add("x", 1, now))).expect("runs");
    clock.advance_ms(250);
    let _ = block_on(host.execute(0, |t, now| t.add("x", 1, now))).expect("runs");
    let seen = block_on(host.query(0, |t| t.seen_now_ms.clone())).expect("loaded");
    assert_eq!(seen, vec![5_000, 5_250]);
    assert_eq!(host.clock().now_ms(), 5_250);
}

#[test]
fn query_served_loads_every_served_partition() {
    let logs = MemLogs::default();
    for (partition, name) in [(0, "a"), (2, "c")] {
        let log = logs.serve(partition, MemLog::default());
        log.records.borrow_mut().push(record(name, 1));
    }
    let host = host(&logs, &Clock::manual(0));
    let names = block_on(host.query_served(|t| t.totals.keys().cloned().collect()));
    assert_eq!(names, vec!["a".to_string(), "c".to_string()]);
    assert_eq!(host.ready_partitions(), vec![0, 2]);
    assert_eq!(host.served_partitions(), vec![0, 2]);
}

fn durable(host: &Host<Tally, MemLog>, partition: i32, name: &str) -> Option<i64> {
    block_on(host.query(partition, |t| t.durable.get(name).copied())).ok()?
}

#[test]
fn held_back_state_shows_only_once_the_append_is_committed() {
    let logs = MemLogs::default();
    let log = logs.serve(0, MemLog::default());
    let host = host(&logs, &Clock::manual(0));
    let _ = block_on(host.execute(0, |t, now| t.add("x", 1, now))).expect("runs");
    assert_eq!(durable(&host, 0, "x"), Some(1));
    let open = log.hold_next_append();
    block_on(async {
        let mut second = pin!(host.execute(0, |t, now| t.add("x", 2, now)));
        assert!(poll!(second.as_mut()).is_pending(), "append in flight");
        let seen = host.query(0, |t| t.durable.get("x").copied()).await;
        assert_eq!(seen.expect("loaded"), Some(1), "not shown while in flight");
        open.send(()).expect("the append waits");
        let run = second.await.expect("runs");
        assert!(run.persisted.is_ok());
    });
    assert_eq!(durable(&host, 0, "x"), Some(3), "shown once committed");
}

#[test]
fn held_back_state_of_a_failed_append_is_never_shown() {
    let logs = MemLogs::default();
    let log = logs.serve(0, MemLog::default());
    let host = host(&logs, &Clock::manual(0));
    let _ = block_on(host.execute(0, |t, now| t.add("x", 1, now))).expect("runs");
    let open = log.hold_next_append();
    log.fail_appends.set(true);
    block_on(async {
        let mut second = pin!(host.execute(0, |t, now| t.add("x", 2, now)));
        assert!(poll!(second.as_mut()).is_pending(), "append in flight");
        let seen = host.query(0, |t| t.durable.get("x").copied()).await;
        assert_eq!(seen.expect("loaded"), Some(1));
        open.send(()).expect("the append waits");
        let run = second.await.expect("runs");
        assert!(run.persisted.is_err());
    });
    log.fail_appends.set(false);
    assert_eq!(durable(&host, 0, "x"), Some(1), "reloaded: the old value");
    assert_eq!(log.stored(), 1);
}
