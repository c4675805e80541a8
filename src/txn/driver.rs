//! What is specific to transactions around the generic [`Host`]: marker jobs (write the
//! markers to the transaction's partitions through their owner shards, then complete the
//! transaction), the set of jobs in flight, and the tick task that aborts timed-out
//! transactions and finishes prepared ones whose markers were not all written (after a
//! restart or a failed write).
//!
//! A transactional id lives on partition `abs(java_hash(id)) % 50` of `__transaction_state`
//! (created on first use, as Kafka does) and its coordinator runs on that partition's owner
//! shard, reached with `TRANSACTION_STATE.route` (see [`InternalTopic::route`]). Loading, running an input in a short
//! borrow and appending its records before the answer is the host's job
//! (`crate::coordinator`). The state lives among the shard's services; only this shard's
//! tasks ever see it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use ahash::AHashSet;
use kafka_protocol::error::ResponseError;

use super::coordinator::{Effects, MarkerJob, TxnCoordinator};
use super::markers::{write_markers, MarkerWrite};
use super::records::TxnRecordError;
use super::{TRANSACTION_STATE, TRANSACTION_STATE_TOPIC};
use crate::cluster::Shard;
use crate::coordinator::{Coordinated, CoordinatorError, Executed, Host, InternalTopic};
use crate::partition::Partition;
use crate::storage::records::KeyedRecord;
use crate::util::clock::Clock;
use crate::util::ids::LeaderEpoch;

/// How often timeouts and unfinished transactions are checked (Kafka checks every 10 s;
/// a second keeps abandoned transactions from holding back the LSO much longer than asked).
pub const TICK_INTERVAL: Duration = Duration::from_secs(1);

impl Coordinated for TxnCoordinator {
    type Config = ();
    type Effects = Effects;
    type ReplayError = TxnRecordError;
    const TOPIC: InternalTopic = TRANSACTION_STATE;

    fn fresh(_: &(), _: i32, _: LeaderEpoch) -> Self {
        TxnCoordinator::default()
    }

    fn replay(&mut self, key: &[u8], value: Option<&[u8]>, _: i64) -> Result<(), TxnRecordError> {
        TxnCoordinator::replay(self, key, value)
    }

    fn records(effects: &Effects) -> &[KeyedRecord] {
        &effects.records
    }

    fn persisted(&mut self, _: &Effects) {
        // Nothing is held back here: transaction state changes as inputs run.
    }

    fn entry_count(&self) -> usize {
        self.len()
    }
}

/// Why a transaction's markers could not all be written and the transaction completed.
#[derive(Debug, thiserror::Error)]
enum FinishError {
    /// A partition refused or failed its marker.
    #[error("marker for {transactional_id} on {topic}/{partition} failed with error {code}")]
    Marker {
        /// The transaction.
        transactional_id: String,
        /// The topic of the partition.
        topic: String,
        /// The partition.
        partition: i32,
        /// The Kafka error it answered.
        code: i16,
    },
    /// The coordinator could not complete the transaction.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
}

/// The coordinators of one shard and the transactions whose markers are being written.
struct ShardTxns {
    host: Host<TxnCoordinator, Partition>,
    in_flight: RefCell<AHashSet<String>>,
    ticking: Cell<bool>,
}

impl ShardTxns {
    /// Marks a job as being run; false if it already was.
    fn claim(&self, job: &MarkerJob) -> bool {
        self.in_flight
            .borrow_mut()
            .insert(job.transactional_id.clone())
    }

    /// Lets the tick task run the job again (it finished, or failed and is retried).
    fn release(&self, job: &MarkerJob) {
        self.in_flight.borrow_mut().remove(&job.transactional_id);
    }
}

fn shard_txns(shard: &Rc<Shard>) -> Rc<ShardTxns> {
    let txns = shard.service(|| ShardTxns {
        host: Host::on_shard(shard, (), Clock::system()),
        in_flight: RefCell::new(AHashSet::new()),
        ticking: Cell::new(false),
    });
    if !txns.ticking.replace(true) {
        glommio::spawn_local(tick_loop(shard.clone(), txns.clone())).detach();
    }
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
        for partition in txns.host.served_partitions() {
            tick_partition(&shard, &txns, partition).await;
        }
        glommio::timer::sleep(TICK_INTERVAL).await;
    }
}

/// Aborts the expired transactions of one partition (their records in one append) and
/// re-runs its unfinished marker jobs, each job as its own task so one slow partition does
/// not hold the others.
async fn tick_partition(shard: &Rc<Shard>, txns: &Rc<ShardTxns>, partition: i32) {
    let swept = txns
        .host
        .execute(partition, |c, now| {
            let unfinished = c.unfinished();
            let mut effects = Effects::default();
            let mut expired = Vec::new();
            for aborted in c.expire(now) {
                effects.records.extend(aborted.records);
                expired.extend(aborted.markers);
            }
            // Claimed before any await, so no other tick runs the same job.
            for job in &expired {
                txns.claim(job);
            }
            ((unfinished, expired), effects)
        })
        .await;
    let Executed {
        answer: (unfinished, expired),
        persisted,
        ..
    } = match swept {
        Ok(swept) => swept,
        Err(e) => {
            tracing::warn!(error = %e, "transaction coordinator not ready");
            return;
        }
    };
    if let Err(e) = persisted {
        // The host dropped the coordinator; the next tick reloads it and tries again.
        for job in &expired {
            txns.release(job);
        }
        tracing::warn!(error = %e, "aborting timed-out transactions");
        return;
    }
    for job in expired {
        spawn_finish(shard, txns, partition, job);
    }
    for job in unfinished {
        if txns.claim(&job) {
            spawn_finish(shard, txns, partition, job);
        }
    }
}

/// Runs [`finish`] for a claimed job in its own task.
fn spawn_finish(shard: &Rc<Shard>, txns: &Rc<ShardTxns>, partition: i32, job: MarkerJob) {
    let (shard, txns) = (shard.clone(), txns.clone());
    glommio::spawn_local(async move {
        if let Err(e) = finish(&shard, &txns, partition, job).await {
            tracing::warn!(error = %e, "finishing a transaction; retrying on the next tick");
        }
    })
    .detach();
}

/// Runs one input on the coordinator of `partition` (loading it first), appends the
/// records it returns, writes its markers and completes the transaction, then returns its
/// answer. Marker failures are left to the tick task (the answer stands: the outcome is
/// decided once the prepare record is durable).
pub async fn execute<T>(
    shard: &Rc<Shard>,
    partition: i32,
    f: impl FnOnce(&mut TxnCoordinator, i64) -> (T, Effects),
) -> Result<T, CoordinatorError> {
    let txns = shard_txns(shard);
    let run = txns
        .host
        .execute(partition, |c, now| {
            let (answer, effects) = f(c, now);
            // Claimed before any await, so the tick task never runs the same job twice.
            if let Some(job) = &effects.markers {
                txns.claim(job);
            }
            (answer, effects)
        })
        .await?;
    if let Err(e) = run.persisted {
        if let Some(job) = &run.effects.markers {
            txns.release(job);
        }
        return Err(e);
    }
    if let Some(job) = run.effects.markers {
        if let Err(e) = finish(shard, &txns, partition, job).await {
            tracing::warn!(error = %e, "transaction markers not all written; retrying on the next tick");
        }
    }
    Ok(run.answer)
}

/// Read-only access to the coordinator of `partition` (loading it first).
pub async fn query<T>(
    shard: &Rc<Shard>,
    partition: i32,
    f: impl FnOnce(&TxnCoordinator) -> T,
) -> Result<T, CoordinatorError> {
    shard_txns(shard).host.query(partition, f).await
}

/// Runs `f` on every coordinator of this shard (ListTransactions).
pub async fn query_local<T>(shard: &Rc<Shard>, f: impl FnMut(&TxnCoordinator) -> Vec<T>) -> Vec<T> {
    shard_txns(shard).host.query_served(f).await
}

/// Writes a job's markers everywhere, then completes the transaction. Releases the job's
/// `in_flight` claim whatever happens.
async fn finish(
    shard: &Rc<Shard>,
    txns: &ShardTxns,
    partition: i32,
    job: MarkerJob,
) -> Result<(), FinishError> {
    let result = finish_claimed(shard, txns, partition, &job).await;
    txns.release(&job);
    result
}

async fn finish_claimed(
    shard: &Rc<Shard>,
    txns: &ShardTxns,
    partition: i32,
    job: &MarkerJob,
) -> Result<(), FinishError> {
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
    if let Some(((topic, p), code)) = job
        .partitions
        .iter()
        .zip(&codes)
        .find(|(_, c)| **c != 0 && **c != gone)
    {
        return Err(FinishError::Marker {
            transactional_id: job.transactional_id.clone(),
            topic: topic.clone(),
            partition: *p,
            code: *code,
        });
    }
    let completed = txns
        .host
        .execute(partition, |c, now| ((), c.complete(job, now)))
        .await?;
    Ok(completed.persisted?)
}

/// Adds `partitions` to the open transaction of `transactional_id` on its coordinator,
/// wherever that runs (AddPartitionsToTxn, AddOffsetsToTxn, and the implicit adds of a
/// transactions-v2 client's first write to a partition or its offsets): 0 once the record
/// is durable, else the Kafka error code.
pub async fn add_to_transaction(
    shard: &Rc<Shard>,
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<(String, i32)>,
    client_version: i16,
) -> i16 {
    let routed = TRANSACTION_STATE
        .route(
            shard,
            &transactional_id.clone(),
            move |shard, partition| async move {
                execute(&shard, partition, |c, now| {
                    match c.add_partitions(
                        &transactional_id,
                        producer_id,
                        producer_epoch,
                        &partitions,
                        client_version,
                        now,
                    ) {
                        Ok(effects) => (0, effects),
                        Err(code) => (code, Default::default()),
                    }
                })
                .await
            },
        )
        .await;
    routed.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "adding partitions to a transaction");
        e.code()
    })
}
