//! The shard's commit pipeline: one flush turn at a time for every segment of the shard.
//!
//! Write rounds run as soon as a waiter wants bytes written, per segment, and never wait for
//! a flush. Flushes are grouped: a segment whose written bytes a waiter wants durable queues
//! here, and a *turn* fdatasyncs every queued segment concurrently. Only one turn runs at a
//! time; segments that ask while it runs go into the next turn, which starts the moment this
//! one ends. So the next turn's writes proceed while this turn's flushes are in flight, and
//! the busy partitions that ask while a turn runs cost the shard one more turn, their
//! fdatasyncs submitted together, not one flush after another.
//!
//! A turn starts the moment a segment asks and none is running: it does not wait for other
//! segments' writes in flight. Waiting for them (so the writes of one produce request to
//! several partitions share a turn) cost every light-load append about one write of latency
//! for nothing, p50 0.69 ms against 0.46 ms (docs/benchmarks.md); under load, segments
//! gather behind the running turn anyway.
//!
//! State is per shard thread; it is reset when a different executor runs on the thread
//! (tests run many executors on one thread).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use crate::metrics::{self, Stage};

use super::appender::Appender;

/// This thread's pipeline.
#[derive(Default)]
struct Pipeline {
    /// The executor this state belongs to.
    executor: Cell<Option<usize>>,
    /// Segments that want a flush and are not in the running turn, in the order they asked.
    queued: RefCell<Vec<Rc<Appender>>>,
    turn_running: Cell<bool>,
}

thread_local! {
    static PIPELINE: Pipeline = Pipeline::default();
}

fn with<R>(f: impl FnOnce(&Pipeline) -> R) -> R {
    PIPELINE.with(|p| {
        let id = glommio::executor().id();
        if p.executor.get() != Some(id) {
            p.queued.borrow_mut().clear();
            p.turn_running.set(false);
            p.executor.set(Some(id));
        }
        f(p)
    })
}

/// Queues `appender` for the next turn (once) and starts that turn when it is due.
pub(crate) fn want_flush(appender: &Rc<Appender>) {
    with(|p| {
        if appender.queued_at.get().is_none() {
            appender.queued_at.set(Some(Instant::now()));
            p.queued.borrow_mut().push(appender.clone());
        }
    });
    poke();
}

/// Starts the next turn if it is due: segments are queued and no turn runs. Called whenever
/// one of those changes.
fn poke() {
    let turn = with(|p| {
        if p.turn_running.get() || p.queued.borrow().is_empty() {
            return None;
        }
        let now = Instant::now();
        let mut members = std::mem::take(&mut *p.queued.borrow_mut());
        members.retain(|appender| {
            let Some(at) = appender.queued_at.take() else {
                return false;
            };
            // Not ready any more (a truncation holds it, it failed, or another flush made
            // it durable): it asks again when it has something to flush.
            let ready = appender.flush_ready();
            if ready {
                metrics::record(Stage::CommitTurnWait, now.duration_since(at));
            }
            ready
        });
        if members.is_empty() {
            return None;
        }
        p.turn_running.set(true);
        metrics::registry::count_commit_turn(members.len() as u64);
        Some(members)
    });
    if let Some(members) = turn {
        run_turn(members);
    }
}

/// Ends a turn however its task ends (also when the executor drops it): the members are
/// released and the next turn may start.
struct TurnGuard {
    members: Vec<Rc<Appender>>,
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        for member in &self.members {
            member.end_flush();
        }
        let _ = PIPELINE.try_with(|p| p.turn_running.set(false));
    }
}

fn run_turn(members: Vec<Rc<Appender>>) {
    let covers: Vec<(u64, i64)> = members.iter().map(|m| m.begin_flush()).collect();
    crate::util::priority::spawn_latency(async move {
        let mut guard = TurnGuard { members };
        let started = Instant::now();
        let results = futures::future::join_all(guard.members.iter().map(|m| m.flush_file())).await;
        metrics::record(Stage::CommitFlush, started.elapsed());
        for ((member, cover), result) in guard.members.iter().zip(covers).zip(results) {
            member.settle_flush(cover, result);
        }
        // Hand every member back while the turn still counts as running, so one that asks
        // again at once does not start a turn the others then miss.
        let members = std::mem::take(&mut guard.members);
        for member in &members {
            member.end_flush();
        }
        for member in &members {
            member.kick();
        }
        drop(guard);
        poke();
    })
    .detach();
}

/// Turns run and segment flushes issued on this thread so far, as `/metrics` counts them:
/// (turns, files).
#[cfg(test)]
pub(crate) fn counts() -> (u64, u64) {
    let s = metrics::registry::snapshot();
    (s.commit_turns, s.commit_turn_files)
}
