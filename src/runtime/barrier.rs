//! A barrier across shards over the mesh: every shard tells every other that it arrived,
//! then waits until all the others did. Used so no shard serves clients before every shard
//! has recovered its partitions, and no shard closes its partitions at shutdown while
//! another still has requests writing to them.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::future::select;

use super::notify::Notify;
use super::shard::Shard;

/// How often a waiting shard re-checks its deadline.
const RECHECK: Duration = Duration::from_millis(50);

/// One barrier's state on one shard: how many peers have arrived.
#[derive(Default)]
pub struct PeerBarrier {
    arrived: Cell<usize>,
    notify: Notify,
}

impl PeerBarrier {
    fn arrive(&self) {
        self.arrived.set(self.arrived.get() + 1);
        self.notify.notify_all();
    }
}

/// Announces this shard's arrival at the barrier `pick` selects, then waits until every
/// other shard arrived or `deadline` passes (`None`: wait as long as it takes).
pub async fn arrive_and_wait(
    shard: &Rc<Shard>,
    pick: fn(&Shard) -> &PeerBarrier,
    deadline: Option<Instant>,
) {
    for peer in (0..shard.count).filter(|p| *p != shard.id) {
        let _ = shard
            .invoke_on(peer, move |s| async move { pick(&s).arrive() })
            .await;
    }
    let barrier = pick(shard);
    while barrier.arrived.get() + 1 < shard.count {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::warn!(
                shard = shard.id,
                arrived = barrier.arrived.get(),
                "barrier timed out"
            );
            return;
        }
        let wait = Box::pin(barrier.notify.notified());
        let _ = select(wait, Box::pin(glommio::timer::sleep(RECHECK))).await;
    }
}
