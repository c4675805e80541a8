//! The per-shard driver of the group coordinators: the IO around the sans-IO [`Coordinator`].
//!
//! Each shard serves the coordinators of the `__consumer_offsets` partitions it owns. A
//! coordinator is rebuilt from its partition (log start to high watermark) the first time
//! it is needed, then every input runs in a short, non-async borrow; the records it returns
//! are appended through the partition's replicated log (acks=all) before the answers of the
//! same input are delivered. A tick task drives timers (join barriers, sessions, expiry).
//!
//! The state hangs off a thread-local because a glommio shard is one thread and `Shard` has
//! no slot for it yet; only this shard's tasks ever see it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use ahash::AHashMap;
use futures::channel::oneshot;
use kafka_protocol::error::ResponseError;

use super::coordinator::{Completion, Coordinator, CoordinatorConfig, Effects, Token};
use super::offsets::CommittedOffset;
use super::{partition_for, OFFSETS_TOPIC, OFFSETS_TOPIC_PARTITIONS, OFFSETS_TOPIC_SEGMENT_BYTES};
use crate::cluster::Shard;
use crate::partition::Partition;
use crate::storage::batch::BatchHeader;
use crate::util::clock::now_ms;
use crate::util::ids::Offset;

/// How often coordinators are ticked. Session and rebalance timeouts are seconds; a tenth of
/// a second of slack is what Kafka's timing wheel gives too.
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);
/// Bytes read per step while loading a partition.
const LOAD_READ_BYTES: usize = 1 << 20;

/// Why a group request could not reach a working coordinator; each maps to a retriable
/// Kafka error so clients look the coordinator up again or retry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GroupError {
    /// This shard does not own the `__consumer_offsets` partition.
    #[error("__consumer_offsets partition {0} is not served here")]
    NotCoordinator(i32),
    /// The partition is being read back into memory.
    #[error("__consumer_offsets partition {0} is loading")]
    Loading(i32),
    /// The partition could not be read.
    #[error("loading __consumer_offsets partition {partition}: {reason}")]
    LoadFailed {
        /// The partition.
        partition: i32,
        /// What failed.
        reason: String,
    },
    /// Records could not be appended.
    #[error("appending to __consumer_offsets partition {partition}: {reason}")]
    Append {
        /// The partition.
        partition: i32,
        /// What failed.
        reason: String,
    },
    /// `__consumer_offsets` does not exist and could not be created.
    #[error("cannot create __consumer_offsets: {0}")]
    NoTopic(String),
    /// The owner shard could not be reached or dropped the call.
    #[error("coordinator shard unavailable: {0}")]
    Unavailable(String),
}

impl GroupError {
    /// The Kafka error code a client should see.
    pub fn code(&self) -> i16 {
        match self {
            GroupError::NotCoordinator(_) => ResponseError::NotCoordinator.code(),
            GroupError::Loading(_) => ResponseError::CoordinatorLoadInProgress.code(),
            GroupError::LoadFailed { .. }
            | GroupError::Append { .. }
            | GroupError::NoTopic(_)
            | GroupError::Unavailable(_) => ResponseError::CoordinatorNotAvailable.code(),
        }
    }
}

enum Slot {
    Loading,
    Ready(Box<Coordinator>),
}

/// The coordinators of one shard and the deferred answers they owe.
struct ShardGroups {
    config: CoordinatorConfig,
    partitions: RefCell<AHashMap<i32, Slot>>,
    waiters: RefCell<AHashMap<Token, oneshot::Sender<Completion>>>,
    next_token: Cell<Token>,
}

thread_local! {
    static SHARD_GROUPS: RefCell<Option<Rc<ShardGroups>>> = const { RefCell::new(None) };
}

fn shard_groups(shard: &Rc<Shard>) -> Rc<ShardGroups> {
    if let Some(g) = SHARD_GROUPS.with(|g| g.borrow().clone()) {
        return g;
    }
    let config = CoordinatorConfig {
        initial_rebalance_delay_ms: shard.config.group_initial_rebalance_delay_ms,
        ..CoordinatorConfig::default()
    };
    let groups = Rc::new(ShardGroups {
        config,
        partitions: RefCell::new(AHashMap::new()),
        waiters: RefCell::new(AHashMap::new()),
        next_token: Cell::new(1),
    });
    SHARD_GROUPS.with(|g| *g.borrow_mut() = Some(groups.clone()));
    glommio::spawn_local(tick_loop(shard.clone(), groups.clone())).detach();
    groups
}

async fn tick_loop(shard: Rc<Shard>, groups: Rc<ShardGroups>) {
    loop {
        glommio::timer::sleep(TICK_INTERVAL).await;
        if shard.shutting_down.get() {
            return;
        }
        let ready: Vec<i32> = groups
            .partitions
            .borrow()
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Ready(_)))
            .map(|(p, _)| *p)
            .collect();
        for partition in ready {
            let now = now_ms();
            let effects = match groups.partitions.borrow_mut().get_mut(&partition) {
                Some(Slot::Ready(c)) => c.tick(now),
                _ => continue,
            };
            if let Err(e) = apply(&shard, &groups, partition, effects).await {
                tracing::error!(error = %e, "group coordinator tick");
            }
        }
    }
}

/// Creates `__consumer_offsets` if it does not exist (Kafka creates it on first use).
pub async fn ensure_offsets_topic(shard: &Rc<Shard>) -> Result<i32, GroupError> {
    crate::cluster::controller::ensure_internal_topic(
        shard,
        OFFSETS_TOPIC,
        OFFSETS_TOPIC_PARTITIONS,
        OFFSETS_TOPIC_SEGMENT_BYTES as u64,
    )
    .await
    .map_err(|e| GroupError::NoTopic(e.message))
}

/// The `__consumer_offsets` partition of a group and the shard that owns it.
pub async fn locate(shard: &Rc<Shard>, group_id: &str) -> Result<(i32, usize), GroupError> {
    let partitions = ensure_offsets_topic(shard).await?;
    let partition = partition_for(group_id, partitions);
    Ok((partition, shard.owner_of(OFFSETS_TOPIC, partition)))
}

/// Runs `f` on the shard coordinating `group_id` (creating `__consumer_offsets` if needed).
pub async fn route<T, F, Fut>(shard: &Rc<Shard>, group_id: &str, f: F) -> Result<T, GroupError>
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>, i32) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, GroupError>> + 'static,
{
    let (partition, owner) = locate(shard, group_id).await?;
    shard
        .invoke_on(owner, move |s| f(s, partition))
        .await
        .map_err(|e| GroupError::Unavailable(e.to_string()))?
}

/// Runs one input on the coordinator of `partition` (loading it first if needed), appends
/// the records it returns, delivers the completions, and returns its direct answer.
pub async fn with_coordinator<T>(
    shard: &Rc<Shard>,
    partition: i32,
    f: impl FnOnce(&mut Coordinator, i64) -> (T, Effects),
) -> Result<T, GroupError> {
    let groups = shard_groups(shard);
    ensure_loaded(shard, &groups, partition).await?;
    let now = now_ms();
    let (answer, effects) = match groups.partitions.borrow_mut().get_mut(&partition) {
        Some(Slot::Ready(c)) => f(c, now),
        Some(Slot::Loading) => return Err(GroupError::Loading(partition)),
        None => return Err(GroupError::NotCoordinator(partition)),
    };
    apply(shard, &groups, partition, effects).await?;
    Ok(answer)
}

/// Like [`with_coordinator`] for the inputs whose answer may be deferred (JoinGroup,
/// SyncGroup): waits until the coordinator completes the request's token.
pub async fn deferred(
    shard: &Rc<Shard>,
    partition: i32,
    f: impl FnOnce(&mut Coordinator, Token, i64) -> Effects,
) -> Result<Completion, GroupError> {
    let groups = shard_groups(shard);
    let token = groups.next_token.get();
    groups.next_token.set(token + 1);
    let (tx, rx) = oneshot::channel();
    groups.waiters.borrow_mut().insert(token, tx);
    let outcome = with_coordinator(shard, partition, |c, now| ((), f(c, token, now))).await;
    if let Err(e) = outcome {
        groups.waiters.borrow_mut().remove(&token);
        return Err(e);
    }
    rx.await
        .map_err(|_| GroupError::Unavailable("the coordinator dropped the request".into()))
}

/// Appends the records of `effects`, then delivers its completions (failed ones if the
/// append failed).
async fn apply(
    shard: &Rc<Shard>,
    groups: &ShardGroups,
    partition: i32,
    mut effects: Effects,
) -> Result<(), GroupError> {
    let mut result = Ok(());
    if !effects.records.is_empty() {
        result = append(shard, partition, &effects.records).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "group records not written");
            for (_, c) in effects.completions.iter_mut() {
                c.fail_storage();
            }
        }
    }
    for (token, completion) in effects.completions {
        let waiter = groups.waiters.borrow_mut().remove(&token);
        if let Some(tx) = waiter {
            let _ = tx.send(completion);
        }
    }
    result
}

async fn append(
    shard: &Rc<Shard>,
    partition: i32,
    records: &[super::records::GroupRecord],
) -> Result<(), GroupError> {
    let failed = |reason: String| GroupError::Append { partition, reason };
    let log = shard
        .partitions
        .get(OFFSETS_TOPIC, partition)
        .ok_or(GroupError::NotCoordinator(partition))?;
    let now = now_ms();
    let batch = crate::storage::records::build_batch(records, None, now)
        .map_err(|e| failed(e.to_string()))?;
    log.append_committed(batch, now)
        .await
        .map_err(|e| failed(e.to_string()))
}

async fn ensure_loaded(
    shard: &Rc<Shard>,
    groups: &ShardGroups,
    partition: i32,
) -> Result<(), GroupError> {
    match groups.partitions.borrow().get(&partition) {
        Some(Slot::Ready(_)) => return Ok(()),
        Some(Slot::Loading) => return Err(GroupError::Loading(partition)),
        None => {}
    }
    let Some(log) = shard.partitions.get(OFFSETS_TOPIC, partition) else {
        return Err(GroupError::NotCoordinator(partition));
    };
    groups
        .partitions
        .borrow_mut()
        .insert(partition, Slot::Loading);
    let epoch = log.leader_epoch().get();
    let salt = (u64::from(epoch as u32) << 16) | u64::from(partition as u16);
    let coordinator = Coordinator::new(groups.config.clone(), salt);
    match load(&log, coordinator).await {
        Ok(c) => {
            tracing::info!(
                partition,
                groups = c.group_count(),
                "group coordinator loaded"
            );
            groups
                .partitions
                .borrow_mut()
                .insert(partition, Slot::Ready(Box::new(c)));
            Ok(())
        }
        Err(e) => {
            groups.partitions.borrow_mut().remove(&partition);
            tracing::error!(error = %e, "group coordinator load failed");
            Err(e)
        }
    }
}

/// Rebuilds a coordinator from its partition, log start to high watermark.
async fn load(partition: &Partition, mut c: Coordinator) -> Result<Coordinator, GroupError> {
    let index = partition.index;
    let failed = |reason: String| GroupError::LoadFailed {
        partition: index,
        reason,
    };
    let high_watermark = partition.high_watermark().get();
    let mut offset = partition.log_start_offset().get();
    let now = now_ms();
    while offset < high_watermark {
        let data = partition
            .read(Offset(offset), Offset(high_watermark), LOAD_READ_BYTES)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if data.batches.is_empty() {
            break;
        }
        let mut next = offset;
        for batch in data.batches {
            let header = BatchHeader::parse(&batch).map_err(|e| failed(e.to_string()))?;
            next = next.max(header.last_offset() + 1);
            if header.is_control() || partition.hidden_from_committed_readers(&header) {
                continue;
            }
            let mut bytes = batch.clone();
            let set = match kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes) {
                Ok(set) => set,
                Err(e) => {
                    tracing::warn!(partition = index, base_offset = header.base_offset, error = %e, "skipping undecodable batch");
                    continue;
                }
            };
            for record in set.records.iter().filter(|r| r.offset >= offset) {
                let Some(key) = record.key.as_deref() else {
                    continue;
                };
                if let Err(e) = c.replay(key, record.value.as_deref(), now) {
                    tracing::warn!(partition = index, offset = record.offset, error = %e, "skipping group record");
                }
            }
        }
        offset = next;
    }
    Ok(c)
}

/// Loads every `__consumer_offsets` partition this shard owns (ListGroups, lag) and returns
/// the partitions that are ready.
async fn load_all_local(shard: &Rc<Shard>, groups: &ShardGroups) -> Vec<i32> {
    let mut ready = Vec::new();
    for index in shard.partitions.indexes_of(OFFSETS_TOPIC) {
        match ensure_loaded(shard, groups, index).await {
            Ok(()) => ready.push(index),
            Err(e) => tracing::warn!(error = %e, "group coordinator not ready"),
        }
    }
    ready
}

/// Runs a read-only query on every coordinator of this shard.
pub async fn query_local<T>(
    shard: &Rc<Shard>,
    mut f: impl FnMut(&Coordinator) -> Vec<T>,
) -> Vec<T> {
    let groups = shard_groups(shard);
    let ready = load_all_local(shard, &groups).await;
    let map = groups.partitions.borrow();
    ready
        .iter()
        .filter_map(|p| match map.get(p) {
            Some(Slot::Ready(c)) => Some(f(c)),
            _ => None,
        })
        .flatten()
        .collect()
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
