//! What is specific to groups around the generic [`Host`]: the deferred answers of
//! JoinGroup and SyncGroup (completions by [`Token`] and their waiters), the tick task that
//! drives the coordinators' timers, and consumer lag.
//!
//! Routing to the owner of a group's `__consumer_offsets` partition
//! (`OFFSETS.route`, see [`InternalTopic::route`]), loading that partition, running an
//! input in a short borrow and appending its records before its answers count are the
//! host's job (`crate::coordinator`).
//! The state lives among the shard's services; only this shard's tasks ever see it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use ahash::AHashMap;
use futures::channel::oneshot;

use super::coordinator::{Completion, Coordinator, CoordinatorConfig, Effects, Token};
use super::offsets::CommittedOffset;
use super::records::RecordError;
use super::OFFSETS;
use crate::cluster::Shard;
use crate::coordinator::{Coordinated, CoordinatorError, Executed, Host, InternalTopic};
use crate::partition::Partition;
use crate::storage::records::KeyedRecord;
use crate::util::clock::Clock;
use crate::util::ids::LeaderEpoch;

/// How often coordinators are ticked. Session and rebalance timeouts are seconds; a tenth of
/// a second of slack is what Kafka's timing wheel gives too.
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);

impl Coordinated for Coordinator {
    type Config = CoordinatorConfig;
    type Effects = Effects;
    type ReplayError = RecordError;
    const TOPIC: InternalTopic = OFFSETS;

    fn fresh(config: &CoordinatorConfig, partition: i32, leader_epoch: LeaderEpoch) -> Self {
        // Member ids stay unique across restarts and leader changes.
        let salt = (u64::from(leader_epoch.get() as u32) << 16) | u64::from(partition as u16);
        Coordinator::new(config.clone(), salt)
    }

    fn replay(&mut self, key: &[u8], value: Option<&[u8]>, now_ms: i64) -> Result<(), RecordError> {
        Coordinator::replay(self, key, value, now_ms)
    }

    fn records(effects: &Effects) -> &[KeyedRecord] {
        &effects.records
    }

    fn persisted(&mut self, effects: &Effects) {
        Coordinator::persisted(self, effects)
    }

    fn entry_count(&self) -> usize {
        self.group_count()
    }
}

/// Someone waiting for a deferred answer from the coordinator of `partition`.
struct Waiter {
    partition: i32,
    answer: oneshot::Sender<Completion>,
}

/// The coordinators of one shard and the deferred answers they owe.
struct ShardGroups {
    host: Host<Coordinator, Partition>,
    waiters: RefCell<AHashMap<Token, Waiter>>,
    next_token: Cell<Token>,
    ticking: Cell<bool>,
}

impl ShardGroups {
    /// Hands out completions to their waiters.
    fn deliver(&self, completions: Vec<(Token, Completion)>) {
        for (token, completion) in completions {
            let waiter = self.waiters.borrow_mut().remove(&token);
            if let Some(w) = waiter {
                let _ = w.answer.send(completion);
            }
        }
    }

    /// Drops every waiter of `partition`: the state that would have answered them is gone,
    /// and a dropped sender answers COORDINATOR_NOT_AVAILABLE instead of hanging.
    fn abandon(&self, partition: i32) {
        self.waiters
            .borrow_mut()
            .retain(|_, w| w.partition != partition);
    }
}

fn shard_groups(shard: &Rc<Shard>) -> Rc<ShardGroups> {
    let groups = shard.service(|| {
        let config = CoordinatorConfig {
            initial_rebalance_delay_ms: shard.config.group_initial_rebalance_delay_ms,
            consumer: crate::groups::consumer::ConsumerConfig {
                session_timeout_ms: shard.config.group_consumer_session_timeout_ms,
                heartbeat_interval_ms: shard.config.group_consumer_heartbeat_interval_ms,
            },
            ..CoordinatorConfig::default()
        };
        ShardGroups {
            host: Host::on_shard(shard, config, Clock::system()),
            waiters: RefCell::new(AHashMap::new()),
            next_token: Cell::new(1),
            ticking: Cell::new(false),
        }
    });
    if !groups.ticking.replace(true) {
        glommio::spawn_local(tick_loop(shard.clone(), groups.clone())).detach();
    }
    groups
}

async fn tick_loop(shard: Rc<Shard>, groups: Rc<ShardGroups>) {
    loop {
        glommio::timer::sleep(TICK_INTERVAL).await;
        if shard.shutting_down.get() {
            return;
        }
        for partition in groups.host.ready_partitions() {
            if let Err(e) = run(&groups, partition, |c, now| ((), c.tick(now))).await {
                tracing::error!(error = %e, "group coordinator tick");
            }
        }
    }
}

/// Runs one input on the coordinator of `partition` (loading it first if needed), appends
/// the records it returns, delivers the completions, and returns its direct answer.
pub async fn with_coordinator<T>(
    shard: &Rc<Shard>,
    partition: i32,
    f: impl FnOnce(&mut Coordinator, i64) -> (T, Effects),
) -> Result<T, CoordinatorError> {
    run(&shard_groups(shard), partition, f).await
}

/// Runs one input through the host, then delivers its completions: failed ones if its
/// records were not written, in which case the host dropped the coordinator and every other
/// waiter of the partition is let go too.
async fn run<T>(
    groups: &ShardGroups,
    partition: i32,
    f: impl FnOnce(&mut Coordinator, i64) -> (T, Effects),
) -> Result<T, CoordinatorError> {
    let Executed {
        answer,
        mut effects,
        persisted,
    } = groups.host.execute(partition, f).await?;
    if persisted.is_err() {
        for (_, c) in effects.completions.iter_mut() {
            c.fail_storage();
        }
    }
    groups.deliver(effects.completions);
    if persisted.is_err() {
        groups.abandon(partition);
    }
    persisted.map(|()| answer)
}

/// Like [`with_coordinator`] for the inputs whose answer may be deferred (JoinGroup,
/// SyncGroup): waits until the coordinator completes the request's token.
pub async fn deferred(
    shard: &Rc<Shard>,
    partition: i32,
    f: impl FnOnce(&mut Coordinator, Token, i64) -> Effects,
) -> Result<Completion, CoordinatorError> {
    let groups = shard_groups(shard);
    let token = groups.next_token.get();
    groups.next_token.set(token + 1);
    let (answer, rx) = oneshot::channel();
    let waiter = Waiter { partition, answer };
    groups.waiters.borrow_mut().insert(token, waiter);
    let outcome = run(&groups, partition, |c, now| ((), f(c, token, now))).await;
    if let Err(e) = outcome {
        groups.waiters.borrow_mut().remove(&token);
        return Err(e);
    }
    rx.await
        .map_err(|_| CoordinatorError::Unavailable("the coordinator dropped the request".into()))
}

/// Runs a read-only query on every coordinator of this shard (loading them first).
pub async fn query_local<T>(shard: &Rc<Shard>, f: impl FnMut(&Coordinator) -> Vec<T>) -> Vec<T> {
    shard_groups(shard).host.query_served(f).await
}

/// Committed offsets of every group coordinated by this shard (for lag metrics and tools).
pub async fn committed_offsets_local(shard: &Rc<Shard>) -> Vec<CommittedOffset> {
    query_local(shard, |c| c.committed_offsets()).await
}

/// Consumer lag of one group on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The committed offset.
    pub committed: CommittedOffset,
    /// The partition's high watermark, if the partition exists.
    pub high_watermark: Option<i64>,
}

impl PartitionLag {
    /// `high_watermark - committed offset`, never negative; None if the partition is gone.
    pub fn lag(&self) -> Option<i64> {
        self.high_watermark
            .map(|hw| (hw - self.committed.offset).max(0))
    }
}

/// Lag of every group on every partition it committed, across all shards.
pub async fn lag(shard: &Rc<Shard>) -> Vec<PartitionLag> {
    let mut committed = Vec::new();
    for target in 0..shard.count {
        match shard
            .invoke_on(target, |s| async move { committed_offsets_local(&s).await })
            .await
        {
            Ok(c) => committed.extend(c),
            Err(e) => tracing::warn!(shard = target, error = %e, "lag: shard unreachable"),
        }
    }
    let items = committed
        .iter()
        .map(|c| {
            let owner = shard.owner_of(&c.topic, c.partition);
            (owner, (c.topic.clone(), c.partition))
        })
        .collect();
    let marks = crate::cluster::scatter::scatter(
        shard,
        items,
        |s, (topic, partition): (String, i32)| async move {
            s.partitions
                .get(&topic, partition)
                .map(|p| p.high_watermark().get())
        },
    )
    .await;
    committed
        .into_iter()
        .zip(marks)
        .map(|(committed, hw)| PartitionLag {
            committed,
            high_watermark: hw.flatten(),
        })
        .collect()
}
