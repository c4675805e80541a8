//! The replicated-log seam: every partition writes through a [`ReplicatedLog`].
//!
//! Today each partition is a Raft group with one voter, this node: an entry is committed
//! when it is durable on the local disk, so the high watermark is the fdatasync'ed end of
//! the log, and the partition's term (its leader epoch, persisted in the partition's
//! directory) grows by one every time the partition opens and its single voter elects
//! itself. The multi-node implementation on raft-rs replaces the inside of this type; the
//! `Partition` above it only sees `propose`/`wait`, `truncate_to`, the high watermark, the
//! leader epoch and the local replica for reads.
//!
//! The multi-node engine is being built beside it, sans-IO and not yet wired to the broker:
//! [`group`] (one partition's `RawNode`, offsets stamped by the leader), [`store`] (raft-rs's
//! storage answered from memory), [`driver`] (every group of a shard, one write turn and
//! one flush) and a deterministic simulator that checks Raft's safety properties on them.

pub mod driver;
pub mod entry;
pub mod group;
mod logger;
#[cfg(test)]
mod sim;
mod state;
pub mod store;

pub use logger::logger;

pub use state::bump_term;

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;

use std::time::Instant;

use bytes::BytesMut;

use crate::util::ids::{LeaderEpoch, Offset};

use crate::metrics::{self, Stage};

use crate::storage::{AppendInfo, LogConfig, PartitionLog, StorageError};
use crate::util::sync::Notify;

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
    /// A truncation below the high watermark would remove committed entries.
    #[error("refusing to truncate to {offset}: entries below the high watermark {high_watermark} are committed")]
    TruncateCommitted {
        /// The requested new log end.
        offset: i64,
        /// The committed end of the log.
        high_watermark: i64,
    },
    /// The persisted Raft state (term) could not be read or written.
    #[error("raft state {path}: {source}")]
    State {
        /// The state file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl ReplicateError {
    /// Whether the disk ran out of space (nothing damaged; writes can resume).
    pub fn is_no_space(&self) -> bool {
        matches!(self, ReplicateError::Storage(StorageError::NoSpace { .. }))
    }
}

/// A partition's log as a Raft group (of one voter, for now).
pub struct ReplicatedLog {
    log: Rc<PartitionLog>,
    term: Cell<i32>,
    high_watermark: Rc<Cell<i64>>,
    committed: Rc<Notify>,
}

impl ReplicatedLog {
    /// Opens the log (running recovery) and makes this node its leader in a new term: a
    /// single voter elects itself at every open (see [`bump_term`]), above every term
    /// already stamped in the log.
    pub async fn open(dir: PathBuf, config: LogConfig) -> Result<ReplicatedLog, ReplicateError> {
        let log = PartitionLog::open(dir.clone(), config, 0).await?;
        let floor = log.end_offset_for_epoch(i32::MAX).map_or(0, |(t, _)| t);
        let term = if log.is_damaged() {
            // Offline until repaired: it leads nothing, and changes no file.
            floor
        } else {
            glommio::executor()
                .spawn_blocking(move || bump_term(&dir, floor))
                .await?
        };
        log.set_term(term);
        // Everything recovery kept was durable before the crash or shutdown.
        let high_watermark = log.durable_offset();
        Ok(ReplicatedLog {
            log: Rc::new(log),
            term: Cell::new(term),
            high_watermark: Rc::new(Cell::new(high_watermark)),
            committed: Rc::new(Notify::default()),
        })
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
                // The fdatasync (and for acks=0 the write) runs in the background and then
                // moves the high watermark.
                let log = self.log.clone();
                let hw = self.high_watermark.clone();
                let committed = self.committed.clone();
                let pos = info.end_position;
                glommio::spawn_local(async move {
                    match log.wait_durable(pos).await {
                        Ok(()) => advance(&log, &hw, &committed),
                        Err(e) => tracing::warn!(error = %e, "background commit failed"),
                    }
                })
                .detach();
                if acks == Acks::Leader {
                    // Kafka's acks=1: the leader has the batch in its log. Kafka means its
                    // page cache, which survives the broker process; here that is the file
                    // (the O_DIRECT write done), not the in-memory head chunk.
                    self.log.wait_written(info.end_position).await?;
                }
                metrics::record(Stage::ProduceAppend, started.elapsed());
            }
        }
        Ok(())
    }

    /// Waits until everything in the log up to and including `last_offset` is as committed
    /// as `acks` asks: for an idempotent retry answered with its original's offsets, which
    /// may still be in flight. Fails when the log failed or the original was truncated away.
    pub async fn wait_through(&self, last_offset: i64, acks: Acks) -> Result<(), ReplicateError> {
        match acks {
            Acks::None => Ok(()),
            Acks::Leader => {
                if self.log.written_offset() > last_offset {
                    return Ok(());
                }
                Ok(self.log.wait_written(self.log.end_position()).await?)
            }
            Acks::All => {
                if self.high_watermark.get() > last_offset {
                    return Ok(());
                }
                self.log.wait_durable(self.log.end_position()).await?;
                self.advance_high_watermark();
                Ok(())
            }
        }
    }

    fn advance_high_watermark(&self) {
        advance(&self.log, &self.high_watermark, &self.committed);
    }

    /// Offsets below this are committed and visible to consumers.
    pub fn high_watermark(&self) -> Offset {
        Offset(self.high_watermark.get())
    }

    /// Notified every time the high watermark moves (long-poll fetches wait on it).
    pub fn committed(&self) -> &Notify {
        &self.committed
    }

    /// The current leader epoch (Raft term).
    pub fn leader_epoch(&self) -> LeaderEpoch {
        LeaderEpoch(self.term.get())
    }

    /// This node's replica of the log, for reads and offset lookups (never for writes:
    /// those go through [`ReplicatedLog::propose`]).
    pub fn local(&self) -> &PartitionLog {
        &self.log
    }

    /// Removes every entry at or above `offset` (a follower dropping an uncommitted tail).
    /// Committed entries are never removed: asking for that is a bug in the caller.
    pub async fn truncate_to(&self, offset: Offset) -> Result<(), ReplicateError> {
        let committed = self.high_watermark.get();
        if offset.get() < committed {
            return Err(ReplicateError::TruncateCommitted {
                offset: offset.get(),
                high_watermark: committed,
            });
        }
        self.log.truncate_to(offset.get()).await?;
        Ok(())
    }

    /// Moves the log start offset (DeleteRecords). Only committed offsets may be deleted.
    pub async fn delete_records_before(&self, offset: Offset) -> Result<Offset, ReplicateError> {
        Ok(Offset(self.log.delete_records_before(offset.get()).await?))
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
