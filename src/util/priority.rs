//! The shard's two priorities: requests and commits before everything else.
//!
//! A shard runs every task on one thread, so a retention pass, a producer-state snapshot or a
//! `/metrics` rendering that keeps the CPU delays every produce behind it. glommio shares the
//! CPU between task queues by their shares and preempts a queue after its latency budget;
//! we use two: the executor's default queue, where connections, request handlers and the
//! commit pipeline run (spawned tasks inherit their parent's queue, so everything a request
//! starts stays there), and a background queue with few shares for housekeeping. Long
//! background loops also yield between units of work ([`glommio::yield_if_needed`]) so the
//! preemption timer can take effect.
//!
//! Outside a broker shard (unit tests that run storage on a bare executor) nothing is
//! installed and both spawns fall back to the current queue.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use glommio::{Latency, Shares, TaskQueueHandle};

/// How often a shard's executor checks whether another queue should run (glommio's default
/// is 100 ms, far beyond any request's budget).
pub const PREEMPT_TIMER: Duration = Duration::from_micros(500);

/// Shares of the background queue against the default queue's 1000: housekeeping gets about
/// 5% of a busy shard and all of an idle one.
const BACKGROUND_SHARES: usize = 50;

thread_local! {
    /// (executor id, latency queue, background queue) of this shard, once installed. The
    /// executor id keeps a later executor on the same thread (tests) from using them.
    static QUEUES: Cell<Option<(usize, TaskQueueHandle, TaskQueueHandle)>> = const { Cell::new(None) };
}

/// Creates the background queue and records the calling task's queue as the latency queue.
/// Called once by each shard, from its main task, before it serves anything.
pub fn install() {
    let executor = glommio::executor();
    let latency = executor.current_task_queue();
    let background = executor.create_task_queue(
        Shares::Static(BACKGROUND_SHARES),
        Latency::NotImportant,
        "background",
    );
    QUEUES.with(|q| q.set(Some((executor.id(), latency, background))));
}

/// Runs `future` in the latency queue (the commit pipeline: a round a background task
/// happened to start still serves produce waiters).
pub fn spawn_latency<T: 'static>(future: impl Future<Output = T> + 'static) -> glommio::Task<T> {
    spawn_into(future, |(latency, _)| latency)
}

/// Runs `future` in the background queue: retention, snapshots, index persistence, metrics
/// rendering.
pub fn spawn_background<T: 'static>(future: impl Future<Output = T> + 'static) -> glommio::Task<T> {
    spawn_into(future, |(_, background)| background)
}

fn spawn_into<T: 'static>(
    future: impl Future<Output = T> + 'static,
    pick: fn((TaskQueueHandle, TaskQueueHandle)) -> TaskQueueHandle,
) -> glommio::Task<T> {
    let executor = glommio::executor();
    match QUEUES.with(Cell::get) {
        // Queues are never removed from the executor that created them.
        Some((id, latency, background)) if id == executor.id() => {
            match executor.spawn_local_into(future, pick((latency, background))) {
                Ok(task) => task,
                Err(e) => panic!("task queue of this shard is gone: {e}"),
            }
        }
        _ => executor.spawn_local(future),
    }
}
