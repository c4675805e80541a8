//! Splitting partition-scoped work by owner shard and merging the answers back.
//!
//! A request that touches partitions on several shards sends one call per shard, runs them
//! concurrently, and returns results in the request's order.

use std::future::Future;
use std::rc::Rc;

use futures::future::join_all;

use crate::cluster::Shard;

/// Runs `f(owner_shard, item)` on each item's owner shard (given with the item) and returns
/// the results in input order. `None` marks an item whose shard could not be reached.
pub async fn scatter<I, O, F, Fut>(
    shard: &Rc<Shard>,
    items: Vec<(usize, I)>,
    f: F,
) -> Vec<Option<O>>
where
    I: Send + 'static,
    O: Send + 'static,
    F: Fn(Rc<Shard>, I) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = O> + 'static,
{
    let count = items.len();
    let calls = group_by_owner(shard.count, items)
        .into_iter()
        .map(|(target, group)| {
            let f = f.clone();
            shard.invoke_on(target, move |owner| async move {
                let runs = group.into_iter().map(|(index, item)| {
                    let owner = owner.clone();
                    let f = f.clone();
                    async move { (index, f(owner, item).await) }
                });
                join_all(runs).await
            })
        });
    let mut out: Vec<Option<O>> = (0..count).map(|_| None).collect();
    for answer in join_all(calls).await {
        match answer {
            Ok(results) => {
                for (index, result) in results {
                    out[index] = Some(result);
                }
            }
            Err(e) => tracing::error!(error = %e, "cross-shard call failed"),
        }
    }
    out
}

/// Splits `(owner, item)` pairs into one group per owner shard that has any, in shard order;
/// each item keeps its index in the input so answers can be put back in request order.
/// Items naming a shard beyond `shard_count` are dropped (their answer stays `None`).
pub fn group_by_owner<I>(
    shard_count: usize,
    items: Vec<(usize, I)>,
) -> Vec<(usize, Vec<(usize, I)>)> {
    let mut groups: Vec<Vec<(usize, I)>> = (0..shard_count).map(|_| Vec::new()).collect();
    for (index, (owner, item)) in items.into_iter().enumerate() {
        if let Some(group) = groups.get_mut(owner) {
            group.push((index, item));
        }
    }
    groups
        .into_iter()
        .enumerate()
        .filter(|(_, group)| !group.is_empty())
        .collect()
}
