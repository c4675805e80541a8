//! The per-shard driver of the transaction coordinators: the IO around the sans-IO
//! [`TxnCoordinator`].
//!
//! A transactional id lives on partition `abs(java_hash(id)) % 50` of `__transaction_state`
//! (created on first use, as Kafka does) and its coordinator runs on that partition's owner
//! shard. A coordinator is rebuilt from its partition the first time it is needed (and at
//! start by the tick task); every input runs in a short, non-async borrow; the records it
//! returns are appended (acks=all) before the answer; marker jobs are then written to the
//! transaction's partitions through their owner shards and the transaction completed.
//! A tick task aborts timed-out transactions and finishes prepared ones whose markers
//! were not all written (after a restart or a failed write).
//!
//! As in `groups::driver`, the state hangs off a thread-local: a glommio shard is one thread
//! and only this shard's tasks ever see it.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use ahash::{AHashMap, AHashSet};
use kafka_protocol::error::ResponseError;

use super::coordinator::{Effects, MarkerJob, TxnCoordinator};
use super::markers::{write_markers, MarkerWrite};
use super::records::TxnRecord;
use crate::cluster::Shard;
use crate::partition::Partition;
use crate::storage::BatchHeader;
use crate::util::clock::now_ms;
use crate::util::ids::Offset;

/// The internal topic holding transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Partitions of `__transaction_state` (Kafka's `transaction.state.log.num.partitions`).
pub const TRANSACTION_STATE_PARTITIONS: i32 = 50;
/// Segment size of `__transaction_state` (Kafka's `transaction.state.log.segment.bytes`).
const TRANSACTION_STATE_SEGMENT_BYTES: i64 = 100 * 1024 * 1024;
/// How often timeouts and unfinished transactions are checked (Kafka checks every 10 s;
/// a second keeps abandoned transactions from holding back the LSO much longer than asked).
pub const TICK_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes read per step while loading a partition.
const LOAD_READ_BYTES: usize = 1 << 20;

const _: () = assert!(TRANSACTION_STATE_PARTITIONS > 0);

/// Why a transactional request could not reach a working coordinator; each maps to a
/// retriable Kafka error so clients look the coordinator up again or retry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TxnError {
    /// This shard does not own the `__transaction_state` partition.
    #[error("__transaction_state partition {0} is not served here")]
    NotCoordinator(i32),
    /// The partition is being read back into memory.
    #[error("__transaction_state partition {0} is loading")]
    Loading(i32),
    /// The partition could not be read.
    #[error("loading __transaction_state partition {partition}: {reason}")]
    LoadFailed {
        /// The partition.
        partition: i32,
        /// What failed.
        reason: String,
    },
    /// Records could not be appended.
    #[error("appending to __transaction_state partition {partition}: {reason}")]
    Append {
        /// The partition.
        partition: i32,
        /// What failed.
        reason: String,
    },
    /// `__transaction_state` does not exist and could not be created.
    #[error("cannot create __transaction_state: {0}")]
    NoTopic(String),
    /// The owner shard could not be reached or dropped the call.
    #[error("coordinator shard unavailable: {0}")]
    Unavailable(String),
}

impl TxnError {
    /// The Kafka error code a client should see.
    pub fn code(&self) -> i16 {
        match self {
            TxnError::NotCoordinator(_) => ResponseError::NotCoordinator.code(),
            TxnError::Loading(_) => ResponseError::CoordinatorLoadInProgress.code(),
            _ => ResponseError::CoordinatorNotAvailable.code(),
        }
    }
}

enum Slot {
    Loading,
    Ready(Box<TxnCoordinator>),
}

/// The coordinators of one shard and the transactions whose markers are being written.
#[derive(Default)]
struct ShardTxns {
    partitions: RefCell<AHashMap<i32, Slot>>,
    in_flight: RefCell<AHashSet<String>>,
}

thread_local! {
    static SHARD_TXNS: RefCell<Option<Rc<ShardTxns>>> = const { RefCell::new(None) };
}

fn shard_txns(shard: &Rc<Shard>) -> Rc<ShardTxns> {
    if let Some(t) = SHARD_TXNS.with(|t| t.borrow().clone()) {
        return t;
    }
    let txns = Rc::new(ShardTxns::default());
    SHARD_TXNS.with(|t| *t.borrow_mut() = Some(txns.clone()));
    glommio::spawn_local(tick_loop(shard.clone(), txns.clone())).detach();
    txns
}

/// Starts this shard's coordinators: loads its `__transaction_state` partitions (if the
/// topic exists) and runs the timeout task. Called once per shard after recovery.
pub fn start(shard: &Rc<Shard>) {
    shard_txns(shard);
}

async fn tick_loop(shard: Rc<Shard>, txns: Rc<ShardTxns>) {
    loop {
        if shard.shutting_down.get() {
            return;
        }
        let local: Vec<i32> = shard.partitions.indexes_of(TRANSACTION_STATE_TOPIC);
        for partition in local {
            if let Err(e) = ensure_loaded(&shard, &txns, partition).await {
                tracing::warn!(error = %e, "transaction coordinator not ready");
                continue;
            }
            tick_partition(&shard, &txns, partition).await;
        }
        glommio::timer::sleep(TICK_INTERVAL).await;
    }
}

/// Aborts expired transactions and re-runs unfinished marker jobs of one partition, each
/// as its own task so one slow partition does not hold the others.
async fn tick_partition(shard: &Rc<Shard>, txns: &Rc<ShardTxns>, partition: i32) {
    let now = now_ms();
    let (expired, unfinished) = match txns.partitions.borrow_mut().get_mut(&partition) {
        Some(Slot::Ready(c)) => {
            let unfinished = c.unfinished();
            (c.expire(now), unfinished)
        }
        _ => return,
    };
    for effects in expired {
        let (shard, txns) = (shard.clone(), txns.clone());
        if let Some(job) = &effects.markers {
            txns.in_flight
                .borrow_mut()
                .insert(job.transactional_id.clone());
        }
        glommio::spawn_local(async move {
            if let Err(e) = run(&shard, &txns, partition, effects).await {
                tracing::warn!(error = %e, "aborting a timed-out transaction");
            }
        })
        .detach();
    }
    for job in unfinished {
        if !txns
            .in_flight
            .borrow_mut()
            .insert(job.transactional_id.clone())
        {
            continue;
        }
        let (shard, txns) = (shard.clone(), txns.clone());
        glommio::spawn_local(async move {
            if let Err(e) = finish(&shard, &txns, partition, job).await {
                tracing::warn!(error = %e, "finishing a prepared transaction");
            }
        })
        .detach();
    }
}

/// Creates `__transaction_state` if it does not exist (Kafka creates it on first use).
pub async fn ensure_state_topic(shard: &Rc<Shard>) -> Result<i32, TxnError> {
    crate::cluster::controller::ensure_internal_topic(
        shard,
        TRANSACTION_STATE_TOPIC,
        TRANSACTION_STATE_PARTITIONS,
        TRANSACTION_STATE_SEGMENT_BYTES as u64,
    )
    .await
    .map_err(|e| TxnError::NoTopic(e.message))
}

/// The `__transaction_state` partition of a transactional id and the shard owning it.
pub async fn locate(shard: &Rc<Shard>, transactional_id: &str) -> Result<(i32, usize), TxnError> {
    let partitions = ensure_state_topic(shard).await?;
    let partition = crate::groups::partition_for(transactional_id, partitions);
    Ok((
        partition,
        shard.owner_of(TRANSACTION_STATE_TOPIC, partition),
    ))
}

/// Runs `f` on the shard coordinating `transactional_id`.
pub async fn route<T, F, Fut>(
    shard: &Rc<Shard>,
    transactional_id: &str,
    f: F,
) -> Result<T, TxnError>
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>, i32) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, TxnError>> + 'static,
{
    let (partition, owner) = locate(shard, transactional_id).await?;
    shard
        .invoke_on(owner, move |s| f(s, partition))
        .await
        .map_err(|e| TxnError::Unavailable(e.to_string()))?
}

/// Runs one input on the coordinator of `partition` (loading it first), appends the
/// records it returns, writes its markers and completes the transaction, then returns its
/// answer. Marker failures are left to the tick task (the answer stands: the outcome is
/// decided once the prepare record is durable).
pub async fn execute<T>(
    shard: &Rc<Shard>,
    partition: i32,
    f: impl FnOnce(&mut TxnCoordinator, i64) -> (T, Effects),
) -> Result<T, TxnError> {
    let txns = shard_txns(shard);
    ensure_loaded(shard, &txns, partition).await?;
    let now = now_ms();
    let (answer, effects) = match txns.partitions.borrow_mut().get_mut(&partition) {
        Some(Slot::Ready(c)) => f(c, now),
        Some(Slot::Loading) => return Err(TxnError::Loading(partition)),
        None => return Err(TxnError::NotCoordinator(partition)),
    };
    // Claimed before any await, so the tick task never runs the same job twice.
    if let Some(job) = &effects.markers {
        txns.in_flight
            .borrow_mut()
            .insert(job.transactional_id.clone());
    }
    run(shard, &txns, partition, effects).await?;
    Ok(answer)
}

/// Read-only access to the coordinator of `partition` (loading it first).
pub async fn query<T>(
    shard: &Rc<Shard>,
    partition: i32,
    f: impl FnOnce(&TxnCoordinator) -> T,
) -> Result<T, TxnError> {
    let txns = shard_txns(shard);
    ensure_loaded(shard, &txns, partition).await?;
    let map = txns.partitions.borrow();
    match map.get(&partition) {
        Some(Slot::Ready(c)) => Ok(f(c)),
        Some(Slot::Loading) => Err(TxnError::Loading(partition)),
        None => Err(TxnError::NotCoordinator(partition)),
    }
}

/// Runs `f` on every coordinator of this shard (ListTransactions).
pub async fn query_local<T>(
    shard: &Rc<Shard>,
    mut f: impl FnMut(&TxnCoordinator) -> Vec<T>,
) -> Vec<T> {
    let local: Vec<i32> = shard.partitions.indexes_of(TRANSACTION_STATE_TOPIC);
    let mut out = Vec::new();
    for partition in local {
        match query(shard, partition, &mut f).await {
            Ok(mut v) => out.append(&mut v),
            Err(e) => tracing::warn!(error = %e, "transaction coordinator not ready"),
        }
    }
    out
}

/// Appends `effects.records`, then writes its markers and completes the transaction. The
/// caller has put the marker job's id in `in_flight`.
async fn run(
    shard: &Rc<Shard>,
    txns: &Rc<ShardTxns>,
    partition: i32,
    effects: Effects,
) -> Result<(), TxnError> {
    if let Err(e) = persist(shard, txns, partition, &effects.records).await {
        if let Some(job) = &effects.markers {
            txns.in_flight.borrow_mut().remove(&job.transactional_id);
        }
        return Err(e);
    }
    if let Some(job) = effects.markers {
        if let Err(e) = finish(shard, txns, partition, job).await {
            tracing::warn!(error = %e, "transaction markers not all written; retrying on the next tick");
        }
    }
    Ok(())
}

/// Writes a job's markers everywhere, then completes the transaction. Releases the job's
/// `in_flight` claim whatever happens.
async fn finish(
    shard: &Rc<Shard>,
    txns: &Rc<ShardTxns>,
    partition: i32,
    job: MarkerJob,
) -> Result<(), TxnError> {
    let result = finish_inner(shard, txns, partition, &job).await;
    txns.in_flight.borrow_mut().remove(&job.transactional_id);
    result
}

async fn finish_inner(
    shard: &Rc<Shard>,
    txns: &Rc<ShardTxns>,
    partition: i32,
    job: &MarkerJob,
) -> Result<(), TxnError> {
    let marker = MarkerWrite {
        producer_id: job.producer_id,
        producer_epoch: job.producer_epoch,
        commit: job.commit,
        // The epoch of the `__transaction_state` partition this coordinator runs on.
        coordinator_epoch: shard
            .partitions
            .get(TRANSACTION_STATE_TOPIC, partition)
            .map_or(-1, |p| p.leader_epoch().get()),
    };
    let codes = write_markers(shard, marker, job.partitions.clone()).await;
    // A partition whose topic was deleted has nothing left to mark.
    let gone = ResponseError::UnknownTopicOrPartition.code();
    if let Some((p, code)) = job
        .partitions
        .iter()
        .zip(&codes)
        .find(|(_, c)| **c != 0 && **c != gone)
    {
        return Err(TxnError::Append {
            partition,
            reason: format!(
                "marker for {} on {}/{} failed with error {code}",
                job.transactional_id, p.0, p.1
            ),
        });
    }
    let now = now_ms();
    let effects = match txns.partitions.borrow_mut().get_mut(&partition) {
        Some(Slot::Ready(c)) => c.complete(job, now),
        _ => return Err(TxnError::NotCoordinator(partition)),
    };
    persist(shard, txns, partition, &effects.records).await
}

/// Appends records (acks=all). On failure the coordinator is dropped, to be rebuilt from
/// the log, so memory never stays ahead of what is stored.
async fn persist(
    shard: &Rc<Shard>,
    txns: &ShardTxns,
    partition: i32,
    records: &[TxnRecord],
) -> Result<(), TxnError> {
    if records.is_empty() {
        return Ok(());
    }
    let result = append(shard, partition, records).await;
    if let Err(e) = &result {
        tracing::error!(error = %e, "transaction records not written; reloading the coordinator");
        txns.partitions.borrow_mut().remove(&partition);
    }
    result
}

async fn append(shard: &Rc<Shard>, partition: i32, records: &[TxnRecord]) -> Result<(), TxnError> {
    let failed = |reason: String| TxnError::Append { partition, reason };
    let log = shard
        .partitions
        .get(TRANSACTION_STATE_TOPIC, partition)
        .ok_or(TxnError::NotCoordinator(partition))?;
    let now = now_ms();
    let batch = crate::storage::records::build_batch(records, None, now)
        .map_err(|e| failed(e.to_string()))?;
    log.append_committed(batch, now)
        .await
        .map_err(|e| failed(e.to_string()))
}

async fn ensure_loaded(
    shard: &Rc<Shard>,
    txns: &ShardTxns,
    partition: i32,
) -> Result<(), TxnError> {
    match txns.partitions.borrow().get(&partition) {
        Some(Slot::Ready(_)) => return Ok(()),
        Some(Slot::Loading) => return Err(TxnError::Loading(partition)),
        None => {}
    }
    let Some(log) = shard.partitions.get(TRANSACTION_STATE_TOPIC, partition) else {
        return Err(TxnError::NotCoordinator(partition));
    };
    txns.partitions
        .borrow_mut()
        .insert(partition, Slot::Loading);
    match load(&log).await {
        Ok(c) => {
            tracing::info!(
                partition,
                transactional_ids = c.len(),
                "transaction coordinator loaded"
            );
            txns.partitions
                .borrow_mut()
                .insert(partition, Slot::Ready(Box::new(c)));
            Ok(())
        }
        Err(e) => {
            txns.partitions.borrow_mut().remove(&partition);
            tracing::error!(error = %e, "transaction coordinator load failed");
            Err(e)
        }
    }
}

/// Rebuilds a coordinator from its partition, log start to high watermark.
async fn load(partition: &Partition) -> Result<TxnCoordinator, TxnError> {
    let index = partition.index;
    let failed = |reason: String| TxnError::LoadFailed {
        partition: index,
        reason,
    };
    let mut c = TxnCoordinator::default();
    let high_watermark = partition.high_watermark().get();
    let mut offset = partition.log_start_offset().get();
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
            if header.is_control() {
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
                if let Err(e) = c.replay(key, record.value.as_deref()) {
                    tracing::warn!(partition = index, offset = record.offset, error = %e, "skipping transaction record");
                }
            }
        }
        offset = next;
    }
    Ok(c)
}
