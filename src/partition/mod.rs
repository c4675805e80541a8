//! `Partition`: one partition's replicated log together with everything derived from it —
//! idempotent-producer state, the transaction index and their snapshots.
//!
//! The derived state changes in exactly one place, [`Partition::apply`], which every path
//! that puts batches into the log goes through: the leader's append (produce, transaction
//! markers, coordinator records), the replay at open, and (with multi-node Raft) a
//! follower's append. [`Partition::truncate_to`] rolls the log and the derived state back
//! together. Layers above (Kafka handlers, coordinators) see only this type: they never
//! reach the local log or the Raft group behind it.

pub mod identity;
pub mod producers;
pub mod repair;
mod replay;
pub mod snapshot;
#[cfg(test)]
mod tests;
pub mod topic_config;
pub mod txn_index;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;

pub use producers::{BatchRecord, ProducerStateTable, ProducerView, Verdict};
pub use topic_config::TopicConfig;
pub use txn_index::{AbortedTxn, TxnIndex};

use crate::raft::{Acks, ReplicateError, ReplicatedLog};
use crate::storage::records::decode_marker;
use crate::storage::{
    AppendInfo, BatchHeader, CleanerInput, CleanerStats, FetchedData, StorageError, Throttle,
};
use crate::util::ids::{LeaderEpoch, Offset};
use crate::util::sync::Notify;

/// Why a leader append was refused before anything was written.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The producer epoch is older than the one this partition knows (a zombie).
    #[error("producer epoch {epoch} is older than {current}")]
    StaleEpoch {
        /// The batch's epoch.
        epoch: i16,
        /// The partition's epoch for that producer.
        current: i16,
    },
    /// A gap or reordering in the producer's sequence numbers.
    #[error("expected sequence {expected}, got {got}")]
    OutOfOrder {
        /// The sequence this partition expected next.
        expected: i32,
        /// The batch's first sequence.
        got: i32,
    },
    /// The log refused or failed the write.
    #[error(transparent)]
    Replicate(#[from] ReplicateError),
}

impl AppendError {
    /// The Kafka error a client gets for this refusal.
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            AppendError::StaleEpoch { .. } => ResponseError::InvalidProducerEpoch,
            AppendError::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber,
            AppendError::Replicate(_) => ResponseError::KafkaStorageError,
        }
    }

    /// Whether the disk ran out of space (the partition drops what it could not write).
    pub fn is_no_space(&self) -> bool {
        matches!(self, AppendError::Replicate(e) if e.is_no_space())
    }
}

/// Memory the key map of one compaction pass may use (keys plus overhead); a pass over
/// more distinct keys covers fewer dirty segments and the next pass goes on.
const CLEANER_KEY_MAP_BYTES: usize = 64 << 20;

/// How long a partition that ran out of disk space refuses appends before it tries the
/// disk again (the first append after it does).
pub const NO_SPACE_RETRY_MS: i64 = 1_000;

/// What a leader append did.
#[derive(Debug, Clone, Copy)]
pub enum Appended {
    /// Written as a new entry; wait on it with [`Partition::wait`].
    New(AppendInfo),
    /// A retry of a batch already in the log: answer with the original's offsets.
    Duplicate(BatchRecord),
}

/// One partition served by this shard.
pub struct Partition {
    /// The topic's name.
    pub topic: Arc<str>,
    /// The topic's id: a partition of a re-created topic is a different partition.
    pub topic_id: uuid::Uuid,
    /// The partition index.
    pub index: i32,
    log: ReplicatedLog,
    producers: RefCell<ProducerStateTable>,
    txns: RefCell<TxnIndex>,
    config: RefCell<TopicConfig>,
    dir: PathBuf,
    /// Log end offset of the last producer-state snapshot written.
    snapshot_offset: Cell<i64>,
    /// A drop of unwritten bytes after ENOSPC is running (only one at a time).
    dropping_unwritten: Cell<bool>,
}

impl Partition {
    /// Opens the partition in `dir`: recovers its log, becomes leader in a new epoch and
    /// rebuilds the derived state from the last snapshot plus the log after it.
    pub async fn open(
        topic: Arc<str>,
        topic_id: uuid::Uuid,
        index: i32,
        dir: PathBuf,
        config: TopicConfig,
        cache_budget_bytes: usize,
    ) -> Result<Partition, ReplicateError> {
        let claimed = dir.clone();
        glommio::executor()
            .spawn_blocking(move || identity::claim(&claimed, topic_id))
            .await?;
        let log = ReplicatedLog::open(dir.clone(), config.log_config(cache_budget_bytes)).await?;
        // A damaged log is offline and read by nothing until it is repaired.
        let (producers, txns) = if log.local().is_damaged() {
            Default::default()
        } else {
            replay::rebuild(log.local(), &dir).await?
        };
        Ok(Partition {
            topic,
            topic_id,
            index,
            log,
            producers: RefCell::new(producers),
            txns: RefCell::new(txns),
            config: RefCell::new(config),
            dir,
            snapshot_offset: Cell::new(-1),
            dropping_unwritten: Cell::new(false),
        })
    }

    /// The leader's append of one produce payload (one or more validated v2 batches):
    /// checks idempotence on the first batch, proposes the payload as one entry and applies
    /// it to the derived state, all in one synchronous step, so a retry that arrives while
    /// the original is still being written is recognised too.
    pub fn append(
        &self,
        batches: BytesMut,
        log_append_time: bool,
        now_ms: i64,
    ) -> Result<Appended, AppendError> {
        if let Ok(header) = BatchHeader::parse(&batches) {
            match self.producers.borrow().check(&header) {
                Verdict::Append => {}
                Verdict::Duplicate(original) => return Ok(Appended::Duplicate(original)),
                Verdict::StaleEpoch { current } => {
                    return Err(AppendError::StaleEpoch {
                        epoch: header.producer_epoch,
                        current,
                    })
                }
                Verdict::OutOfOrder { expected } => {
                    return Err(AppendError::OutOfOrder {
                        expected,
                        got: header.base_sequence,
                    })
                }
            }
        }
        // Headers are read before the log takes the buffer; offsets come from the append.
        let headers = headers_of(&batches);
        let info = self.log.propose(batches, log_append_time, now_ms)?;
        let append_time_ms = log_append_time.then_some(info.log_append_time_ms);
        self.apply(&headers, info.base_offset, append_time_ms);
        Ok(Appended::New(info))
    }

    /// Waits for an appended entry as `acks` asks. When the disk ran out of space the
    /// bytes that could not be written are dropped (see [`Partition::drop_unwritten`]).
    pub async fn wait(&self, info: &AppendInfo, acks: Acks) -> Result<(), ReplicateError> {
        let waited = self.log.wait(info, acks).await;
        if matches!(&waited, Err(e) if e.is_no_space()) {
            self.drop_unwritten().await;
        }
        waited
    }

    /// Waits until an idempotent retry's original batch is as committed as `acks` asks,
    /// so a duplicate is acknowledged only when (and if) its original would be.
    pub async fn wait_original(
        &self,
        original: &BatchRecord,
        acks: Acks,
    ) -> Result<(), ReplicateError> {
        self.log.wait_through(original.last_offset(), acks).await
    }

    /// Appends and waits until committed: for the coordinators' own records and markers.
    pub async fn append_committed(&self, batch: BytesMut, now_ms: i64) -> Result<(), AppendError> {
        let appended = match self.append(batch, false, now_ms) {
            Err(e) if e.is_no_space() => {
                self.drop_unwritten().await;
                return Err(e);
            }
            other => other?,
        };
        match appended {
            Appended::New(info) => Ok(self.wait(&info, Acks::All).await?),
            Appended::Duplicate(original) => Ok(self.wait_original(&original, Acks::All).await?),
        }
    }

    /// After the disk ran out of space: removes every appended byte that is not written
    /// (none of it was acknowledged: acks=1 and acks=all answer only once written), rolls
    /// the producer state back with it, and refuses appends for [`NO_SPACE_RETRY_MS`]; the
    /// first append after that tries the disk again. So a full disk costs the records the
    /// clients were told failed, never an acknowledged one, and never leaves a half-written
    /// record to be duplicated by a retry.
    pub async fn drop_unwritten(&self) {
        let local = self.log.local();
        // Only a log holding bytes it could not write has anything to drop; an append
        // refused during the retry window has nothing (and must not extend the window).
        if !local.is_out_of_space() || self.dropping_unwritten.replace(true) {
            return;
        }
        local.retry_space_at(crate::util::clock::now_ms() + NO_SPACE_RETRY_MS);
        let written = local.written_offset();
        let log_end = local.log_end_offset();
        {
            match self.truncate_to(Offset(written)).await {
                Ok(()) => tracing::warn!(
                    topic = %self.topic,
                    partition = self.index,
                    dropped_from = written,
                    dropped_to = log_end,
                    still_out_of_space = local.is_out_of_space(),
                    "out of disk space: dropped the unwritten, unacknowledged tail; writes resume once there is room"
                ),
                Err(e) => tracing::error!(
                    topic = %self.topic,
                    partition = self.index,
                    error = %e,
                    "out of disk space: could not drop the unwritten tail"
                ),
            }
        }
        self.dropping_unwritten.set(false);
    }

    /// Why the partition is offline (an I/O error on its log), if it is: it then refuses
    /// produce and fetch with KAFKA_STORAGE_ERROR and Metadata shows it without a leader.
    pub fn offline_reason(&self) -> Option<String> {
        self.log.local().offline_reason()
    }

    /// The one place derived state changes: records stored batches (headers in log order,
    /// the first at `base_offset`) in the producer table and the transaction index.
    /// Control batches carry their marker in `ApplyHeader::marker`.
    fn apply(&self, headers: &[ApplyHeader], base_offset: i64, append_time_ms: Option<i64>) {
        let mut producers = self.producers.borrow_mut();
        let mut txns = self.txns.borrow_mut();
        let mut offset = base_offset;
        for h in headers {
            let mut header = h.header;
            header.base_offset = offset;
            apply_one(
                &mut producers,
                &mut txns,
                &header,
                h.commit_marker,
                append_time_ms.unwrap_or(header.max_timestamp_ms),
            );
            offset = header.last_offset() + 1;
        }
    }

    /// Rolls the log and the derived state back together so that `offset` is the new log
    /// end (a Raft follower dropping an uncommitted tail). The state is rebuilt from the
    /// newest snapshot at or below the new end plus the log after it.
    pub async fn truncate_to(&self, offset: Offset) -> Result<(), ReplicateError> {
        self.log.truncate_to(offset).await?;
        let (producers, txns) = replay::rebuild(self.log.local(), &self.dir).await?;
        *self.producers.borrow_mut() = producers;
        *self.txns.borrow_mut() = txns;
        self.snapshot_offset.set(-1);
        Ok(())
    }

    /// Checks a client's `current_leader_epoch` (KIP-320; -1 skips the check) against this
    /// partition's and returns the partition's epoch: an older one is FENCED_LEADER_EPOCH, a
    /// newer one UNKNOWN_LEADER_EPOCH, so clients refresh metadata as after a leader change.
    pub fn check_leader_epoch(&self, current_leader_epoch: i32) -> Result<i32, ResponseError> {
        let epoch = self.log.leader_epoch().get();
        if current_leader_epoch >= 0 && current_leader_epoch < epoch {
            return Err(ResponseError::FencedLeaderEpoch);
        }
        if current_leader_epoch > epoch {
            return Err(ResponseError::UnknownLeaderEpoch);
        }
        Ok(epoch)
    }

    /// This partition's leader epoch (its Raft term).
    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.log.leader_epoch()
    }

    /// Offsets below this are committed and visible to consumers.
    pub fn high_watermark(&self) -> Offset {
        self.log.high_watermark()
    }

    /// How far read_committed consumers may read: the first offset of the oldest open
    /// transaction, capped by the high watermark.
    pub fn last_stable_offset(&self) -> Offset {
        Offset(
            self.txns
                .borrow()
                .last_stable_offset(self.log.high_watermark().get()),
        )
    }

    /// Notified every time the high watermark moves (long-poll fetches wait on it).
    pub fn committed(&self) -> &Notify {
        self.log.committed()
    }

    /// The first offset still in the log.
    pub fn log_start_offset(&self) -> Offset {
        Offset(self.log.local().log_start_offset())
    }

    /// The offset the next append gets (may be above the high watermark).
    pub fn log_end_offset(&self) -> Offset {
        Offset(self.log.local().log_end_offset())
    }

    /// Bytes on disk.
    pub fn size_bytes(&self) -> u64 {
        self.log.local().size_bytes()
    }

    /// Whole stored batches from `from` up to `max_offset`, at most about `max_bytes`
    /// (the first batch is returned whole even if larger).
    pub async fn read(
        &self,
        from: Offset,
        max_offset: Offset,
        max_bytes: usize,
    ) -> Result<FetchedData, StorageError> {
        self.log
            .local()
            .read(from.get(), max_offset.get(), max_bytes)
            .await
    }

    /// The aborted transactions overlapping `[from, to)`, for read_committed fetches.
    pub fn aborted_in(&self, from: Offset, to: Offset) -> Vec<AbortedTxn> {
        self.txns.borrow().aborted_in(from.get(), to.get())
    }

    /// Whether a stored batch belongs to an aborted or still-open transaction, so readers of
    /// internal topics skip it exactly as a read_committed consumer would.
    pub fn hidden_from_committed_readers(&self, header: &BatchHeader) -> bool {
        self.txns.borrow().hides(header)
    }

    /// The first offset of `producer_id`'s open transaction on this partition, if any.
    pub fn open_transaction_since(&self, producer_id: i64) -> Option<Offset> {
        self.txns.borrow().open_since(producer_id).map(Offset)
    }

    /// ListOffsets by timestamp: the first (offset, timestamp) at or after `ts_ms`.
    pub async fn offset_for_timestamp(
        &self,
        ts_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        self.log.local().offset_for_timestamp(ts_ms).await
    }

    /// ListOffsets MAX_TIMESTAMP (KIP-734): the (offset, timestamp) of the newest record.
    pub async fn max_timestamp(&self) -> Result<Option<(i64, i64)>, StorageError> {
        self.log.local().max_timestamp().await
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `epoch` in the log and its end offset.
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        self.log
            .local()
            .end_offset_for_epoch(epoch.get())
            .map(|(e, o)| (LeaderEpoch(e), Offset(o)))
    }

    /// DeleteRecords: moves the log start offset; returns the new one.
    pub async fn delete_records_before(&self, offset: Offset) -> Result<Offset, ReplicateError> {
        let start = self.log.delete_records_before(offset).await?;
        self.txns.borrow_mut().prune_below(start.get());
        Ok(start)
    }

    /// Deletes closed segments past the topic's retention; returns the bytes freed.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<u64, StorageError> {
        let freed = self.log.local().enforce_retention(now_ms).await?;
        if freed > 0 {
            let start = self.log.local().log_start_offset();
            self.txns.borrow_mut().prune_below(start);
        }
        Ok(freed)
    }

    /// One log compaction pass when the topic is compacted and enough of its log is dirty
    /// (see `storage::log::compact`). The cleaner stays below the last stable offset and
    /// below a fresh producer-state snapshot, so a restart's replay never needs a batch it
    /// removed, and it drops the records of transactions this partition knows aborted.
    pub async fn compact(
        &self,
        now_ms: i64,
        throttle: &Throttle,
    ) -> Result<CleanerStats, StorageError> {
        let log = self.log.local();
        if !self.config.borrow().compact
            || !log.compaction_due(now_ms, self.last_stable_offset().get())
        {
            return Ok(CleanerStats::default());
        }
        self.snapshot_producer_state().await;
        let snapshot = self.snapshot_offset.get();
        if snapshot < 0 {
            return Ok(CleanerStats::default());
        }
        let is_aborted = |producer_id, offset| self.txns.borrow().is_aborted(producer_id, offset);
        let input = CleanerInput {
            now_ms,
            uncleanable_from: snapshot.min(self.last_stable_offset().get()),
            is_aborted: &is_aborted,
            throttle,
            key_map_budget_bytes: CLEANER_KEY_MAP_BYTES,
        };
        log.compact(&input).await
    }

    /// The topic's effective config as this shard last applied it.
    pub fn config(&self) -> TopicConfig {
        self.config.borrow().clone()
    }

    /// Applies a changed topic config (retention, segment size...) to this partition.
    pub fn update_config(&self, config: TopicConfig, cache_budget_bytes: usize) {
        if *self.config.borrow() == config {
            return;
        }
        self.log
            .local()
            .update_config(config.log_config(cache_budget_bytes));
        *self.config.borrow_mut() = config;
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Snapshots the producer state and transaction index if the partition is quiet and
    /// moved since the last snapshot, so a restart replays only what came after.
    pub async fn snapshot_producer_state(&self) {
        let log = self.log.local();
        let end = log.log_end_offset();
        if end == self.snapshot_offset.get()
            || log.durable_offset() != end
            || log.offline_reason().is_some()
        {
            return;
        }
        // Captured with no await between reading the end offset and the state.
        let snap = snapshot::Snapshot::capture(end, &self.producers.borrow(), &self.txns.borrow());
        let dir = self.dir.clone();
        let written = glommio::executor()
            .spawn_blocking(move || snapshot::write(&dir, &snap))
            .await;
        match written {
            Ok(()) => self.snapshot_offset.set(end),
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "writing a producer-state snapshot failed")
            }
        }
    }

    /// Flushes and closes the log for a clean shutdown, then snapshots the derived state.
    pub async fn close(&self) -> Result<(), ReplicateError> {
        self.log.close().await?;
        self.snapshot_producer_state().await;
        Ok(())
    }

    /// Every producer this partition knows, for DescribeProducers.
    pub fn producer_views(&self) -> Vec<ProducerView> {
        let txns = self.txns.borrow();
        self.producers.borrow().views(|id| txns.open_since(id))
    }

    /// Idempotent producers known here (for gauges and tests).
    pub fn producer_count(&self) -> usize {
        self.producers.borrow().len()
    }
}

/// A batch header as `apply` needs it: the header and, for a transaction marker, whether it
/// commits.
#[derive(Debug, Clone, Copy)]
struct ApplyHeader {
    header: BatchHeader,
    commit_marker: Option<bool>,
}

/// The headers of a payload of concatenated batches, with their markers decoded.
fn headers_of(batches: &[u8]) -> Vec<ApplyHeader> {
    let mut out = Vec::with_capacity(1);
    let mut pos = 0;
    while let Ok(header) = BatchHeader::parse(&batches[pos.min(batches.len())..]) {
        let size = header.total_size_bytes();
        let commit_marker = header
            .is_control()
            .then(|| decode_marker(&Bytes::copy_from_slice(&batches[pos..pos + size])))
            .flatten()
            .map(|m| m.commit);
        out.push(ApplyHeader {
            header,
            commit_marker,
        });
        pos += size;
    }
    out
}

/// Records one stored batch (its `base_offset` is final) in the derived state.
fn apply_one(
    producers: &mut ProducerStateTable,
    txns: &mut TxnIndex,
    header: &BatchHeader,
    commit_marker: Option<bool>,
    append_time_ms: i64,
) {
    producers.record(header, header.base_offset, append_time_ms);
    txns.on_data(header);
    if let Some(commit) = commit_marker {
        txns.on_marker(header.producer_id, header.base_offset, commit);
        producers.record_marker(header.producer_id, header.producer_epoch);
    }
}
