//! The handler's side of a Fetch: one call per owner shard, which reads and, for a long poll,
//! waits on the owner; the handler only adds up what the owners report.
//!
//! `min_bytes` counts over the whole response. With one owner it is the owner's own target,
//! so the read, the wait and the re-read are one call. With several, each owner answers as
//! soon as it has anything new; the handler adds up the latest counts and sends a satisfied
//! owner back to wait for more, until the sum reaches `min_bytes` or `max_wait_ms` passes.
//! Then owners still waiting are told to answer at once (their call is cancelled, not
//! repeated), so every answer carries what was readable when the fetch completed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::stream::{FuturesUnordered, StreamExt};

use super::owner::{self, Hold, OwnerReply, ReadResult, ReadSpec};
use super::Context;
use crate::cluster::scatter::group_by_owner;
use crate::metrics::Stage;

/// The partitions of one owner shard, in request order: their indexes in the request and
/// their specs, shared by every call to that owner.
struct Group {
    owner: usize,
    members: Vec<usize>,
    specs: Arc<[ReadSpec]>,
}

/// What the long poll asks for.
pub(super) struct Wait {
    pub min_bytes: usize,
    pub max_wait: Duration,
}

/// Reads every spec on its owner, within `budget` bytes per owner, waiting as `wait` asks.
/// Returns one result per spec, `None` where the owner could not be reached.
pub(super) async fn gather(
    ctx: &Context,
    specs: &[(usize, ReadSpec)],
    budget: usize,
    wait: Wait,
) -> Vec<Option<ReadResult>> {
    let items = specs.iter().map(|(owner, s)| (*owner, s.clone())).collect();
    let groups: Vec<Group> = group_by_owner(ctx.shard.count, items)
        .into_iter()
        .map(|(owner, group)| {
            let (members, specs): (Vec<usize>, Vec<ReadSpec>) = group.into_iter().unzip();
            Group {
                owner,
                members,
                specs: specs.into(),
            }
        })
        .collect();
    let mut out: Vec<Option<ReadResult>> = specs.iter().map(|_| None).collect();
    let long_poll = wait.max_wait > Duration::ZERO && wait.min_bytes > 0 && !groups.is_empty();
    let deadline = Instant::now() + wait.max_wait;
    let single = groups.len() == 1;
    let mut have = vec![0usize; groups.len()];
    let mut cancels: Vec<Option<oneshot::Sender<()>>> = groups.iter().map(|_| None).collect();
    let mut calls = FuturesUnordered::new();
    let call = |g: usize, until_bytes: usize, cancels: &mut Vec<Option<oneshot::Sender<()>>>| {
        let group = &groups[g];
        let hold = long_poll.then_some(Hold {
            deadline,
            until_bytes,
        });
        let (cancel_tx, cancel_rx) = oneshot::channel();
        cancels[g] = Some(cancel_tx);
        let specs = group.specs.clone();
        let shard = ctx.shard.clone();
        let target = group.owner;
        async move {
            let sent = Instant::now();
            let reply = shard
                .invoke_on(target, move |owner| {
                    owner::serve(owner, specs, budget, hold, cancel_rx)
                })
                .await;
            (g, sent.elapsed(), reply)
        }
    };
    // One owner: it waits for all of min_bytes itself. Several: each answers once it has
    // anything, so the handler can add the counts up.
    let first_target = if single { wait.min_bytes } else { 1 };
    for g in 0..groups.len() {
        calls.push(call(g, first_target, &mut cancels));
    }
    let mut done = !long_poll;
    let mut parked = Duration::ZERO;
    while let Some((g, elapsed, reply)) = calls.next().await {
        match reply {
            Ok(OwnerReply {
                results,
                bytes,
                owner_time,
                parked: owner_parked,
            }) => {
                ctx.note(Stage::FetchHop, elapsed.saturating_sub(owner_time));
                parked = parked.max(owner_parked);
                done |= results.iter().any(|r| r.error.is_some());
                have[g] = bytes;
                for (&i, result) in groups[g].members.iter().zip(results) {
                    out[i] = Some(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "fetch: owner shard unreachable");
                done = true;
            }
        }
        cancels[g] = None;
        done |= have.iter().sum::<usize>() >= wait.min_bytes
            || Instant::now() >= deadline
            || ctx.shard.shutting_down.get();
        if done {
            // Owners still parked answer now with what they have.
            cancels.iter_mut().for_each(|c| *c = None);
        } else {
            calls.push(call(g, have[g] + 1, &mut cancels));
        }
    }
    if long_poll {
        ctx.note(Stage::FetchWait, parked);
    }
    out
}
