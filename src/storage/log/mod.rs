//! `PartitionLog`: the public face of one partition's storage. Owns the
//! segments, assigns offsets, rolls segments, serves reads (tail cache first,
//! then aligned DMA reads), timestamp/epoch lookups, retention and DeleteRecords.
//!
//! Split by concept so each file is read on its own: this file holds the
//! struct, its configuration, `open` and the small accessors; `write` the
//! append path and its waits; `read` fetches and lookups; `retention` what
//! deletes from the front of the log; `truncate` what removes its tail.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;

use crate::storage::cache::TailCache;
use crate::storage::error::StorageError;
use crate::storage::recovery::{self, RECOVERY_POINT_FILE};
use crate::storage::segment::Segment;

mod compact;
mod read;
mod retention;
mod truncate;
mod write;

pub(crate) use compact::finish_cleaner_swaps;
pub use compact::{CleanerInput, CleanerStats, CompactionConfig, Throttle};

/// Per-partition storage settings (Kafka topic configs of the same names).
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when a segment would exceed this size.
    pub segment_size_bytes: u64,
    /// `segment.ms`: roll when the active segment is older than this.
    pub segment_ms: i64,
    /// `retention.ms`: delete closed segments older than this; -1 = unlimited.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest closed segments above this; -1 = unlimited.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: bytes of log between index entries.
    pub index_interval_bytes: u32,
    /// Pre-allocation step of segment files (capped by the segment size).
    pub preallocate_step_bytes: u64,
    /// Tail cache budget of this partition.
    pub cache_budget_bytes: usize,
    /// `cleanup.policy` contains `delete`: `retention.ms` and `retention.bytes` apply.
    pub delete_enabled: bool,
    /// `cleanup.policy` contains `compact`: the cleaner keeps the latest record per key.
    pub compaction: Option<CompactionConfig>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_size_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            preallocate_step_bytes: 32 << 20,
            cache_budget_bytes: 8 << 20,
            delete_enabled: true,
            compaction: None,
        }
    }
}

/// Opaque token naming the end of an append, to wait on with
/// [`PartitionLog::wait_written`] / [`PartitionLog::wait_durable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendPosition {
    segment_base_offset: i64,
    end_pos: u64,
    end_offset: i64,
    /// Truncations of the log before the append, to tell whether one since
    /// removed the appended data (then its waits fail with `Truncated`).
    truncations: u64,
}

impl AppendPosition {
    /// Offset after the append this position ends.
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }
}

/// Result of an append: the offsets assigned and what to wait on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Token for `wait_written` / `wait_durable`.
    pub end_position: AppendPosition,
    /// The LogAppendTime stamped, or -1 when CreateTime was kept.
    pub log_append_time_ms: i64,
}

/// Whole batches returned by a read, in order.
#[derive(Debug, Clone, Default)]
pub struct FetchedData {
    /// Stored batches, exactly as on disk.
    pub batches: Vec<Bytes>,
    /// Sum of the batch sizes.
    pub total_bytes: usize,
    /// Served from the tail cache without disk IO.
    pub from_cache: bool,
}

/// The storage of one partition, living on its owner shard (`!Send`).
pub struct PartitionLog {
    dir: PathBuf,
    config: RefCell<LogConfig>,
    term: Cell<i32>,
    alignment: u64,
    /// Shared with the task persisting rolled segments' indexes (see `persist_sealed`).
    segments: Rc<RefCell<Vec<Rc<Segment>>>>,
    log_start_offset: Cell<i64>,
    log_end_offset: Cell<i64>,
    cache: RefCell<TailCache>,
    closed: Cell<bool>,
    /// Last value written to the recovery-point file; a truncation lowers it.
    recovery_point: Rc<Cell<i64>>,
    /// A task persisting rolled segments' indexes is running (see `persist_sealed`).
    persisting: Rc<Cell<bool>>,
    /// Damage found at open or by a read: the log is offline, and nothing writes to it.
    damage: RefCell<Option<String>>,
    /// Truncations so far (see [`AppendPosition`]).
    truncations: Rc<Cell<u64>>,
    /// (truncation number, offset cut to), offsets strictly rising: for any
    /// earlier truncation count, the lowest cut made since.
    truncation_points: RefCell<Vec<(u64, i64)>>,
    /// The truncation whose file I/O is still running, if any.
    truncation_in_flight: RefCell<Option<Rc<truncate::Quiesced>>>,
    /// Appends are refused before this wall-clock time (ms) after the disk ran out of space.
    space_retry_at_ms: Cell<i64>,
    /// The cleaner is swapping segment files: retention, DeleteRecords and truncation wait.
    swapping: Cell<bool>,
}

/// Persists a segment's index files off the shard thread.
async fn persist_index(seg: &Rc<Segment>) -> Result<(), StorageError> {
    let Some(job) = seg.index_job() else {
        return Ok(());
    };
    glommio::executor().spawn_blocking(job).await?;
    seg.index_persisted.set(true);
    Ok(())
}

/// The wall clock, for segment ages and retention (the one clock of `util::clock`).
fn wall_clock_ms() -> i64 {
    crate::util::clock::now_ms()
}

impl PartitionLog {
    /// Opens (creating if absent) the partition directory and runs recovery before returning.
    pub async fn open(
        dir: PathBuf,
        config: LogConfig,
        term: i32,
    ) -> Result<PartitionLog, StorageError> {
        let now_ms = wall_clock_ms();
        let recovered = recovery::recover(&dir, &config, now_ms).await?;
        let damage = recovered.damage;
        let mut segments = recovered.segments;
        if segments.is_empty() {
            let base = recovered.log_start_offset.max(0);
            segments.push(recovery::create_segment(&dir, base, term, &config, now_ms).await?);
        }
        if damage.is_none() {
            // Closed segments recovered by scanning get their indexes persisted.
            for seg in &segments[..segments.len() - 1] {
                if !seg.index_persisted.get() {
                    if let Some(file) = seg.appender.file() {
                        file.fdatasync()
                            .await
                            .map_err(|e| StorageError::glommio("fdatasync", &seg.path, e))?;
                    }
                    persist_index(seg).await?;
                }
            }
        }
        let first_base = segments.first().map(|s| s.base_offset).unwrap_or(0);
        let log_end = segments.last().map(|s| s.next_offset()).unwrap_or(0);
        let mut log_start = recovered.log_start_offset.max(first_base);
        if log_start > log_end {
            tracing::warn!(dir = %dir.display(), log_start, log_end, "log start offset beyond recovered log end; clamping");
            log_start = log_end;
        }
        let alignment = segments
            .last()
            .map(|s| s.appender.alignment())
            .unwrap_or(4096);
        tracing::info!(dir = %dir.display(), segments = segments.len(), log_start, log_end, damaged = damage.is_some(), "partition log opened");
        let log = PartitionLog {
            dir,
            cache: RefCell::new(TailCache::new(config.cache_budget_bytes)),
            config: RefCell::new(config),
            term: Cell::new(term),
            alignment,
            segments: Rc::new(RefCell::new(segments)),
            log_start_offset: Cell::new(log_start),
            log_end_offset: Cell::new(log_end),
            closed: Cell::new(false),
            recovery_point: Rc::new(Cell::new(-1)),
            persisting: Rc::new(Cell::new(false)),
            truncations: Rc::new(Cell::new(0)),
            truncation_points: RefCell::new(Vec::new()),
            truncation_in_flight: RefCell::new(None),
            space_retry_at_ms: Cell::new(0),
            swapping: Cell::new(false),
            damage: RefCell::new(damage.map(|d| d.to_string())),
        };
        if log.damage.borrow().is_none() {
            log.write_recovery_point(log_end).await?;
        }
        Ok(log)
    }

    fn active(&self) -> Rc<Segment> {
        let segs = self.segments.borrow();
        // There is always at least one segment (open creates one).
        segs[segs.len() - 1].clone()
    }

    /// Writes the recovery-point file off the shard thread.
    async fn write_recovery_point(&self, offset: i64) -> Result<(), StorageError> {
        let path = self.dir.join(RECOVERY_POINT_FILE);
        glommio::executor()
            .spawn_blocking(move || recovery::write_offset_file(&path, offset))
            .await?;
        self.recovery_point.set(offset);
        Ok(())
    }

    /// Takes the log offline for damage found in acknowledged data (a read that met a bad
    /// CRC): appends and reads are refused from now on, and the recovery point is lowered
    /// below the damaged segment so the next start scans it and reports the damage
    /// precisely instead of trusting its index. Returns `err` for the caller to pass on.
    pub(super) fn note_damage(&self, err: StorageError, segment_base_offset: i64) -> StorageError {
        if self.damage.borrow().is_some() {
            return err;
        }
        tracing::error!(dir = %self.dir.display(), error = %err, "damaged data in an acknowledged part of the log: the partition is offline; stop the broker and run `sluice repair` to cut the log below the damage, or restore the partition");
        *self.damage.borrow_mut() = Some(err.to_string());
        let lowered = segment_base_offset.min(self.recovery_point.get());
        let path = self.dir.join(RECOVERY_POINT_FILE);
        crate::util::priority::spawn_background(async move {
            let written = glommio::executor()
                .spawn_blocking(move || recovery::write_offset_file(&path, lowered))
                .await;
            if let Err(e) = written {
                tracing::warn!(error = %e, "could not lower the recovery point below damaged data");
            }
        })
        .detach();
        err
    }

    /// Sets the leader epoch (Raft term) stamped on future appends; the next
    /// append starts a new segment so each segment has one term.
    pub fn set_term(&self, term: i32) {
        self.term.set(term);
    }

    /// Current term for appends.
    pub fn term(&self) -> i32 {
        self.term.get()
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.get()
    }

    /// Next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.get()
    }

    /// All offsets below are written (readable).
    pub fn written_offset(&self) -> i64 {
        let segs = self.segments.borrow();
        let mut answer = self.log_end_offset.get();
        for s in segs.iter().rev() {
            if s.appender.is_fully_durable() {
                break;
            }
            if s.appender.written_offset() < s.next_offset() {
                answer = s.appender.written_offset();
            }
        }
        answer
    }

    /// All offsets below are fdatasync'ed.
    pub fn durable_offset(&self) -> i64 {
        let segs = self.segments.borrow();
        let mut answer = self.log_end_offset.get();
        for s in segs.iter().rev() {
            if s.appender.is_fully_durable() {
                break;
            }
            answer = s.appender.durable_offset();
        }
        answer
    }

    /// Why the log stopped for good (an I/O error on a write or fdatasync), if it did.
    /// An offline log refuses appends and reads until the broker restarts.
    pub fn offline_reason(&self) -> Option<String> {
        if let Some(damage) = self.damage.borrow().as_ref() {
            return Some(damage.clone());
        }
        self.find_unsettled(|s| s.appender.failure())
    }

    /// `Poisoned` when the log is damaged: for every path that would change its files.
    pub(super) fn refuse_if_damaged(&self) -> Result<(), StorageError> {
        match self.damage.borrow().as_ref() {
            Some(reason) => Err(StorageError::Poisoned {
                path: self.dir.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Whether the log holds damage that is not a torn tail (found at open or by a read):
    /// then it refuses every change, not only appends, so no file of it changes until an
    /// operator runs `sluice repair`.
    pub fn is_damaged(&self) -> bool {
        self.damage.borrow().is_some()
    }

    /// Whether a write ran out of disk space and its unwritten bytes are still held.
    pub fn is_out_of_space(&self) -> bool {
        self.find_unsettled(|s| s.appender.is_out_of_space().then_some(()))
            .is_some()
    }

    /// The first answer of `f` over the segments with bytes not yet durable, newest first:
    /// only they can still fail or run out of space (a failed write or flush never lets a
    /// segment become durable). Usually just the active segment, so the checks every
    /// append makes cost one look, without allocating.
    fn find_unsettled<R>(&self, f: impl FnMut(&Rc<Segment>) -> Option<R>) -> Option<R> {
        self.segments
            .borrow()
            .iter()
            .rev()
            .take_while(|s| !s.appender.is_fully_durable())
            .find_map(f)
    }

    /// Refuses appends until `at_ms` (wall clock): after running out of space, the next
    /// append tries the disk again only then, instead of on every request.
    pub fn retry_space_at(&self, at_ms: i64) {
        self.space_retry_at_ms.set(at_ms);
    }

    /// The end of everything appended so far, to wait on.
    pub fn end_position(&self) -> AppendPosition {
        let active = self.active();
        AppendPosition {
            segment_base_offset: active.base_offset,
            end_pos: active.size_bytes(),
            end_offset: active.next_offset(),
            truncations: self.truncations.get(),
        }
    }

    /// Bytes of data in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.borrow().iter().map(|s| s.size_bytes()).sum()
    }

    /// Bytes held by the tail cache (for metrics).
    pub fn cache_size_bytes(&self) -> usize {
        self.cache.borrow().size_bytes()
    }

    /// Number of segments (for metrics and tests).
    pub fn segment_count(&self) -> usize {
        self.segments.borrow().len()
    }

    /// fdatasync calls issued by the active segment (for metrics and tests).
    pub fn sync_count(&self) -> u64 {
        self.active().appender.sync_count()
    }
}
