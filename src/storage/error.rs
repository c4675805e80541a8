//! The single error type of the storage engine.

use std::path::PathBuf;

use crate::storage::batch::BatchError;

/// Everything that can go wrong in a partition log; each variant carries the
/// path, offset or numbers an operator needs to act on it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An IO operation on a file or directory failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (open, write, fdatasync, ...).
        op: &'static str,
        /// File or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An earlier write or fdatasync of this segment failed; the partition
    /// cannot make progress safely (its on-disk state is unknown) and must be reopened.
    #[error("segment {path} failed earlier and is unusable: {reason}")]
    Poisoned {
        /// Segment file.
        path: PathBuf,
        /// The original failure.
        reason: String,
    },
    /// The disk is full (ENOSPC): the bytes could not be written and nothing is damaged.
    /// The partition refuses writes until space is free again; see `PartitionLog::append`.
    #[error("no space left for {path}: {reason}")]
    NoSpace {
        /// Segment file or partition directory.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// A fetch or delete asked for an offset outside the log.
    #[error("offset {offset} out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        /// Requested offset.
        offset: i64,
        /// First offset in the log.
        log_start_offset: i64,
        /// Next offset to be assigned.
        log_end_offset: i64,
    },
    /// A batch handed to `append` is malformed (it should have been validated).
    #[error("invalid batch at payload byte {position}: {source}")]
    InvalidBatch {
        /// Byte position inside the payload.
        position: usize,
        /// What is wrong with it.
        #[source]
        source: BatchError,
    },
    /// Data read back from disk is not a valid batch (CRC or framing).
    #[error("corrupt data in {path} at position {position}: {reason}")]
    Corrupt {
        /// Segment file.
        path: PathBuf,
        /// Byte position in the file.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// A wait named data that `PartitionLog::truncate_to` removed before the
    /// wait was satisfied: as far as the log is concerned that append never
    /// happened (a Raft follower dropped an uncommitted tail), so the caller
    /// must not report it written or durable.
    #[error("{path}: data up to offset {end_offset} was truncated away before it was written or made durable (log end moved back to {truncated_to})")]
    Truncated {
        /// Partition directory or segment file the wait was on.
        path: PathBuf,
        /// Offset after the data waited for.
        end_offset: i64,
        /// The (lowest) offset the log was truncated to since the append.
        truncated_to: i64,
    },
    /// The log was closed; no more appends.
    #[error("partition log {dir} is closed")]
    Closed {
        /// Partition directory.
        dir: PathBuf,
    },
}

impl StorageError {
    /// Wraps an IO error with what was done and to which path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Wraps a glommio error with what was done and to which path.
    pub(crate) fn glommio<T>(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: glommio::GlommioError<T>,
    ) -> Self {
        StorageError::io(op, path, std::io::Error::from(source))
    }
}
