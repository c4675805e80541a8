//! A barrier across shards over the mesh: every shard tells every other that it arrived,
//! then waits until all the others did. Used so no shard serves clients before every shard
//! has recovered its partitions, and no shard closes its partitions at shutdown while
//! another still has requests writing to them.

use std::rc::Rc;
use std::time::Instant;

use super::shard::Shard;
use crate::util::sync::PeerBarrier;

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
    if !barrier.wait_for(shard.count - 1, deadline).await {
        tracing::warn!(
            shard = shard.id,
            arrived = barrier.arrived(),
            "barrier timed out"
        );
    }
}
