//! The owner shard's side of a Fetch: it reads its partitions in request order within the
//! response's byte budget and, for a long poll, parks on their commits in place and re-reads
//! what moved, so new data is read where it lives and leaves in the same call (no second hop).

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::{select, Either};
use kafka_protocol::error::ResponseError;

use crate::cluster::Shard;
use crate::metrics::{self, Stage};
use crate::partition::{AbortedTxn, Partition};
use crate::storage::StorageError;
use crate::util::ids::Offset;
use crate::util::sync::WakeSet;

/// One partition to read, shipped to its owner shard.
#[derive(Clone)]
pub(super) struct ReadSpec {
    pub topic: String,
    pub partition: i32,
    pub fetch_offset: i64,
    pub current_leader_epoch: i32,
    /// The request's partition_max_bytes.
    pub max_bytes: usize,
    /// isolation_level=1: stop at the last stable offset.
    pub read_committed: bool,
}

/// What the owner read of one partition.
pub(super) struct ReadResult {
    /// The partition's error, if any.
    pub error: Option<ResponseError>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    /// Aborted transactions overlapping the returned range (read_committed only).
    pub aborted: Vec<AbortedTxn>,
    pub log_start_offset: i64,
    /// Whole batches, in offset order; the merge may keep only a prefix of them.
    pub batches: Vec<Bytes>,
    /// Sum of the batch sizes.
    pub bytes: usize,
    /// The readable end when this was read (high watermark or last stable offset): a
    /// partition whose end has not moved need not be read again.
    upper: i64,
}

impl ReadResult {
    pub(super) fn error(error: ResponseError) -> ReadResult {
        ReadResult {
            error: Some(error),
            high_watermark: -1,
            last_stable_offset: -1,
            aborted: Vec::new(),
            log_start_offset: -1,
            batches: Vec::new(),
            bytes: 0,
            upper: -1,
        }
    }
}

/// How long an owner may hold its answer for a long poll.
#[derive(Clone, Copy)]
pub(super) struct Hold {
    /// The request's max_wait_ms, as an instant.
    pub deadline: Instant,
    /// Answer as soon as this many bytes are readable on this owner.
    pub until_bytes: usize,
}

/// One owner's answer.
pub(super) struct OwnerReply {
    /// One per spec, in the order given.
    pub results: Vec<ReadResult>,
    /// Bytes in `results`.
    pub bytes: usize,
    /// Time spent on the owner (reading and parked), to separate the hop from the work.
    pub owner_time: Duration,
    /// Time spent parked waiting for commits.
    pub parked: Duration,
}

/// Reads `specs` on this (their owner) shard, at most `budget` bytes in all (plus the
/// remainder of one batch, as KIP-74 lets the first batch exceed the limit). With `hold`, an
/// owner that has fewer than `hold.until_bytes` parks until its partitions' commits bring
/// enough, the deadline passes, or `cancel` fires (the handler has enough from other shards),
/// and answers with what is readable then.
pub(super) async fn serve(
    shard: Rc<Shard>,
    specs: Arc<[ReadSpec]>,
    budget: usize,
    hold: Option<Hold>,
    cancel: oneshot::Receiver<()>,
) -> OwnerReply {
    let started = Instant::now();
    let mut results = Vec::with_capacity(specs.len());
    let mut bytes = 0usize;
    for spec in specs.iter() {
        let result = read_partition(&shard, spec, budget.saturating_sub(bytes)).await;
        bytes += result.bytes;
        results.push(result);
    }
    let mut reply = OwnerReply {
        results,
        bytes,
        owner_time: Duration::ZERO,
        parked: Duration::ZERO,
    };
    if let Some(hold) = hold {
        if !satisfied(&reply, hold) {
            let parked = Instant::now();
            park(&shard, &specs, budget, hold, cancel, &mut reply).await;
            reply.parked = parked.elapsed();
        }
    }
    reply.owner_time = started.elapsed();
    reply
}

fn satisfied(reply: &OwnerReply, hold: Hold) -> bool {
    reply.bytes >= hold.until_bytes || reply.results.iter().any(|r| r.error.is_some())
}

/// Waits on the partitions' commit notifications (one registration per partition, O(1) per
/// wake-up) and re-reads only the partitions whose readable end moved.
async fn park(
    shard: &Rc<Shard>,
    specs: &[ReadSpec],
    budget: usize,
    hold: Hold,
    cancel: oneshot::Receiver<()>,
    reply: &mut OwnerReply,
) {
    let wake = WakeSet::new(specs.len());
    // Looked up once: a wake-up compares readable ends without another lookup.
    let partitions: Vec<_> = specs
        .iter()
        .map(|spec| shard.partitions.get(&spec.topic, spec.partition))
        .collect();
    for (key, partition) in partitions.iter().enumerate() {
        if let Some(partition) = partition {
            partition.committed().watch(&wake, key);
        }
    }
    let deadline = glommio::timer::sleep(hold.deadline.saturating_duration_since(Instant::now()));
    futures::pin_mut!(deadline, cancel);
    let mut moved = Vec::new();
    loop {
        if shard.shutting_down.get() {
            break;
        }
        // A dropped sender (the handler has enough elsewhere) ends the wait like a deadline.
        let stop = select(deadline.as_mut(), cancel.as_mut());
        if let Either::Right(_) = select(wake.wait(), stop).await {
            break;
        }
        wake.take_ready(&mut moved);
        reread(shard, specs, &partitions, budget, &mut moved, reply).await;
        if satisfied(reply, hold) {
            return;
        }
    }
    // Commits that landed after the last wake-up still make this answer.
    wake.take_ready(&mut moved);
    reread(shard, specs, &partitions, budget, &mut moved, reply).await;
}

async fn reread(
    shard: &Rc<Shard>,
    specs: &[ReadSpec],
    partitions: &[Option<Rc<Partition>>],
    budget: usize,
    moved: &mut Vec<usize>,
    reply: &mut OwnerReply,
) {
    for key in moved.drain(..) {
        let (Some(spec), Some(old)) = (specs.get(key), reply.results.get(key)) else {
            continue;
        };
        let unchanged = partitions
            .get(key)
            .and_then(Option::as_ref)
            .is_some_and(|p| readable_end(p, spec.read_committed) == old.upper);
        if unchanged {
            continue;
        }
        let others = reply.bytes - old.bytes;
        let fresh = read_partition(shard, spec, budget.saturating_sub(others)).await;
        reply.bytes = others + fresh.bytes;
        reply.results[key] = fresh;
    }
}

fn readable_end(partition: &Partition, read_committed: bool) -> i64 {
    if read_committed {
        partition.last_stable_offset().get()
    } else {
        partition.high_watermark().get()
    }
}

/// Reads one partition, at most `min(partition_max_bytes, budget)` bytes (at least one whole
/// batch when the budget is not spent); with no budget left it reports the partition's
/// offsets and no records.
async fn read_partition(shard: &Rc<Shard>, spec: &ReadSpec, budget: usize) -> ReadResult {
    let Some(partition) = shard.partitions.get(&spec.topic, spec.partition) else {
        return ReadResult::error(ResponseError::NotLeaderOrFollower);
    };
    if let Err(error) = partition.check_leader_epoch(spec.current_leader_epoch) {
        return ReadResult::error(error);
    }
    if partition.offline_reason().is_some() {
        return ReadResult::error(ResponseError::KafkaStorageError);
    }
    let high_watermark = partition.high_watermark().get();
    let last_stable_offset = partition.last_stable_offset().get();
    let log_start_offset = partition.log_start_offset().get();
    let upper = readable_end(&partition, spec.read_committed);
    let mut result = ReadResult {
        error: None,
        high_watermark,
        last_stable_offset,
        aborted: Vec::new(),
        log_start_offset,
        batches: Vec::new(),
        bytes: 0,
        upper,
    };
    if spec.fetch_offset < log_start_offset || spec.fetch_offset > partition.log_end_offset().get()
    {
        result.error = Some(ResponseError::OffsetOutOfRange);
        return result;
    }
    let limit = spec.max_bytes.min(budget);
    if spec.fetch_offset >= upper || limit == 0 {
        return result;
    }
    let started = Instant::now();
    match partition
        .read(Offset(spec.fetch_offset), Offset(upper), limit)
        .await
    {
        Ok(fetched) => {
            let stage = if fetched.from_cache {
                Stage::FetchReadCache
            } else {
                Stage::FetchReadDisk
            };
            metrics::record(stage, started.elapsed());
            if spec.read_committed {
                let end = fetched
                    .batches
                    .last()
                    .and_then(|b| crate::storage::BatchHeader::parse(b).ok())
                    .map_or(upper, |h| h.last_offset() + 1);
                result.aborted = partition.aborted_in(Offset(spec.fetch_offset), Offset(end));
            }
            result.bytes = fetched.total_bytes;
            result.batches = fetched.batches;
        }
        Err(StorageError::OffsetOutOfRange { .. }) => {
            result.error = Some(ResponseError::OffsetOutOfRange)
        }
        Err(e) => {
            tracing::error!(topic = %spec.topic, partition = spec.partition, error = %e, "fetch read failed");
            result.error = Some(ResponseError::KafkaStorageError);
        }
    }
    result
}
