//! The local half of a barrier across shards: how many peers have arrived, and a wake-up
//! for the task waiting on them. The cross-shard half (telling every peer) is
//! `cluster::barrier`, since only the mesh can reach another shard.

use std::cell::Cell;
use std::time::{Duration, Instant};

use futures::future::select;

use super::Notify;

/// How often a waiting task re-checks its deadline.
const RECHECK: Duration = Duration::from_millis(50);

/// One barrier's state on one shard: how many peers have arrived.
#[derive(Default)]
pub struct PeerBarrier {
    arrived: Cell<usize>,
    notify: Notify,
}

impl PeerBarrier {
    /// Records one peer's arrival and wakes the waiter.
    pub fn arrive(&self) {
        self.arrived.set(self.arrived.get() + 1);
        self.notify.notify_all();
    }

    /// How many peers have arrived so far.
    pub fn arrived(&self) -> usize {
        self.arrived.get()
    }

    /// Waits until `peers` peers have arrived or `deadline` passes (`None`: as long as it
    /// takes). Returns whether every peer arrived.
    pub async fn wait_for(&self, peers: usize, deadline: Option<Instant>) -> bool {
        while self.arrived.get() < peers {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            let wait = Box::pin(self.notify.notified());
            let _ = select(wait, Box::pin(glommio::timer::sleep(RECHECK))).await;
        }
        true
    }
}
