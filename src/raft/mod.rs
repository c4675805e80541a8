//! The replicated-log seam: every partition writes through a [`ReplicatedLog`].
//!
//! Today each partition is a Raft group with one voter, this node: an entry is committed
//! when it is durable on the local disk, so the high watermark is the fdatasync'ed end of
//! the log, and the term (leader epoch) grows by one every time the node starts and elects
//! itself. The multi-node implementation on raft-rs replaces the inside of this type; the
//! produce and fetch paths only see `replicate`, `high_watermark` and `leader_epoch`.

mod state;

pub use state::bump_term;

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;

use std::time::Instant;

use bytes::BytesMut;

use crate::metrics::{self, Stage};

use crate::runtime::notify::Notify;
use crate::storage::{AppendInfo, LogConfig, PartitionLog, StorageError};

/// How long the producer waits: Kafka's `acks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: the producer wants no answer; the data is still written.
    None,
    /// acks=1: answered once the leader has the batch in its log (not yet durable).
    Leader,
    /// acks=all (-1): answered once the batch is committed, i.e. durable on a majority.
    All,
}

impl Acks {
    /// Maps the wire value; anything other than 0, 1 and -1 is INVALID_REQUIRED_ACKS.
    pub fn from_wire(acks: i16) -> Option<Acks> {
        match acks {
            0 => Some(Acks::None),
            1 => Some(Acks::Leader),
            -1 => Some(Acks::All),
            _ => None,
        }
    }
}

/// Why an entry could not be replicated.
#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    /// The local log refused or failed the write.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The persisted Raft state (term) could not be read or written.
    #[error("raft state {path}: {source}")]
    State {
        /// The state file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A partition's log as a Raft group (of one voter, for now).
pub struct ReplicatedLog {
    log: Rc<PartitionLog>,
    term: Cell<i32>,
    high_watermark: Rc<Cell<i64>>,
    committed: Rc<Notify>,
}

impl ReplicatedLog {
    /// Opens the log (running recovery) as leader of `term`: a single voter elects itself
    /// in a new term at every start (the node's epoch, see [`bump_term`]).
    pub async fn open(
        dir: PathBuf,
        config: LogConfig,
        term: i32,
    ) -> Result<ReplicatedLog, ReplicateError> {
        let log = PartitionLog::open(dir, config, term).await?;
        // Everything recovery kept was durable before the crash or shutdown.
        let high_watermark = log.durable_offset();
        Ok(ReplicatedLog {
            log: Rc::new(log),
            term: Cell::new(term),
            high_watermark: Rc::new(Cell::new(high_watermark)),
            committed: Rc::new(Notify::default()),
        })
    }

    /// Appends `batches` as one entry and waits as `acks` asks. For acks 0 and 1 the commit
    /// (fdatasync) still happens right after, in the background, and then moves the high
    /// watermark.
    pub async fn replicate(
        &self,
        batches: BytesMut,
        acks: Acks,
        log_append_time: bool,
        now_ms: i64,
    ) -> Result<AppendInfo, ReplicateError> {
        let info = self.propose(batches, log_append_time, now_ms)?;
        self.wait(&info, acks).await?;
        Ok(info)
    }

    /// Appends `batches` as one entry (offsets assigned, data in the head chunk) without
    /// waiting. Synchronous, so a caller can update state tied to the assigned offsets (the
    /// idempotent-producer table) before any other task runs.
    pub fn propose(
        &self,
        batches: BytesMut,
        log_append_time: bool,
        now_ms: i64,
    ) -> Result<AppendInfo, ReplicateError> {
        Ok(self.log.append(batches, log_append_time, now_ms)?)
    }

    /// Waits for a proposed entry as `acks` asks.
    pub async fn wait(&self, info: &AppendInfo, acks: Acks) -> Result<(), ReplicateError> {
        let started = Instant::now();
        match acks {
            Acks::All => {
                self.log.wait_written(info.end_position).await?;
                let written = Instant::now();
                metrics::record(Stage::ProduceAppend, written - started);
                self.log.wait_durable(info.end_position).await?;
                metrics::record(Stage::ProduceCommit, written.elapsed());
                self.advance_high_watermark();
            }
            Acks::None | Acks::Leader => {
                // Kafka's acks=1: the leader has the batch in its log (Kafka: the page cache;
                // here: the DMA head chunk). The O_DIRECT write and the fdatasync start at
                // once in the background and then move the high watermark.
                metrics::record(Stage::ProduceAppend, started.elapsed());
                let log = self.log.clone();
                let hw = self.high_watermark.clone();
                let committed = self.committed.clone();
                let pos = info.end_position;
                glommio::spawn_local(async move {
                    match log.wait_durable(pos).await {
                        Ok(()) => advance(&log, &hw, &committed),
                        Err(e) => tracing::error!(error = %e, "background commit failed"),
                    }
                })
                .detach();
            }
        }
        Ok(())
    }

    fn advance_high_watermark(&self) {
        advance(&self.log, &self.high_watermark, &self.committed);
    }

    /// Offsets below this are committed and visible to consumers.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.get()
    }

    /// Notified every time the high watermark moves (long-poll fetches wait on it).
    pub fn committed(&self) -> &Notify {
        &self.committed
    }

    /// The current leader epoch (Raft term).
    pub fn leader_epoch(&self) -> i32 {
        self.term.get()
    }

    /// The local log, for reads and offset lookups.
    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    /// Moves the log start offset (DeleteRecords). Only committed offsets may be deleted.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, ReplicateError> {
        Ok(self.log.delete_records_before(offset).await?)
    }

    /// Flushes and closes the log for a clean shutdown.
    pub async fn close(&self) -> Result<(), ReplicateError> {
        self.log.close().await?;
        self.advance_high_watermark();
        Ok(())
    }
}

fn advance(log: &PartitionLog, hw: &Cell<i64>, committed: &Notify) {
    let durable = log.durable_offset();
    if durable > hw.get() {
        hw.set(durable);
        committed.notify_all();
    }
}
