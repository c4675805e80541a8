//! `PartitionLog`: the public face of one partition's storage. Owns the
//! segments, assigns offsets, rolls segments, serves reads (tail cache first,
//! then aligned DMA reads), timestamp/epoch lookups, retention and DeleteRecords.

use std::cell::{Cell, RefCell};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use crate::storage::appender::Appender;
use crate::storage::batch::{self, BatchHeader};
use crate::storage::cache::TailCache;
use crate::storage::error::StorageError;
use crate::storage::index::SegmentIndex;
use crate::storage::recovery::{self, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE};
use crate::storage::segment::{self, scan_batches, ScanEnd, Segment};

/// Largest offset span of one segment (relative offsets are u32 in the index).
const MAX_SEGMENT_OFFSET_SPAN: i64 = i32::MAX as i64;
const MIN_READ_SIZE_BYTES: usize = 64 * 1024;
const MAX_READ_SIZE_BYTES: usize = 8 * 1024 * 1024;

/// Per-partition storage settings (Kafka topic configs of the same names).
#[derive(Debug, Clone, PartialEq, Eq)]
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
    segments: RefCell<Vec<Rc<Segment>>>,
    log_start_offset: Cell<i64>,
    log_end_offset: Cell<i64>,
    cache: RefCell<TailCache>,
    closed: Cell<bool>,
}

fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
        let mut segments = recovered.segments;
        if segments.is_empty() {
            let base = recovered.log_start_offset.max(0);
            segments.push(recovery::create_segment(&dir, base, term, &config, now_ms).await?);
        }
        // Closed segments recovered by scanning get their indexes persisted.
        for seg in &segments[..segments.len() - 1] {
            if !seg.index_persisted.get() {
                if let Some(file) = seg.appender.file() {
                    file.fdatasync()
                        .await
                        .map_err(|e| StorageError::glommio("fdatasync", &seg.path, e))?;
                }
                seg.persist_index()?;
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
            .and_then(|s| s.appender.file())
            .map(|f| f.alignment())
            .unwrap_or(4096);
        tracing::info!(dir = %dir.display(), segments = segments.len(), log_start, log_end, "partition log opened");
        let log = PartitionLog {
            dir,
            cache: RefCell::new(TailCache::new(config.cache_budget_bytes)),
            config: RefCell::new(config),
            term: Cell::new(term),
            alignment,
            segments: RefCell::new(segments),
            log_start_offset: Cell::new(log_start),
            log_end_offset: Cell::new(log_end),
            closed: Cell::new(false),
        };
        log.write_recovery_point(log_end)?;
        Ok(log)
    }

    fn active(&self) -> Rc<Segment> {
        let segs = self.segments.borrow();
        // There is always at least one segment (open creates one).
        segs[segs.len() - 1].clone()
    }

    fn new_pending_segment(&self, base_offset: i64, term: i32, now_ms: i64) -> Rc<Segment> {
        let config = self.config.borrow();
        let path = self.dir.join(segment::segment_file_name(base_offset, term));
        let appender = Appender::new_pending(
            path.clone(),
            self.alignment,
            base_offset,
            config.preallocate_step_bytes,
            recovery::max_allocate_bytes(&config),
        );
        Rc::new(Segment::new(
            base_offset,
            term,
            path,
            appender,
            SegmentIndex::new(base_offset, config.index_interval_bytes),
            now_ms,
        ))
    }

    /// Rolls (or re-terms an empty active segment) when needed before an append.
    fn maybe_roll(&self, payload_bytes: u64, records: i64, now_ms: i64) {
        let active = self.active();
        let term = self.term.get();
        let (segment_size_bytes, segment_ms) = {
            let c = self.config.borrow();
            (c.segment_size_bytes, c.segment_ms)
        };
        if active.is_empty() {
            if active.term != term {
                // Replace the empty segment so its name carries the new term.
                if let Err(e) = active.remove_files() {
                    tracing::warn!(path = %active.path.display(), error = %e, "could not remove empty segment");
                }
                let seg = self.new_pending_segment(active.base_offset, term, now_ms);
                let mut segs = self.segments.borrow_mut();
                let last = segs.len() - 1;
                segs[last] = seg;
            }
            return;
        }
        let full = active.size_bytes() + payload_bytes > segment_size_bytes;
        let old = now_ms - active.created_ms.get() >= segment_ms;
        let span =
            self.log_end_offset.get() + records - active.base_offset > MAX_SEGMENT_OFFSET_SPAN;
        if full || old || span || active.term != term {
            let base = self.log_end_offset.get();
            tracing::debug!(dir = %self.dir.display(), base_offset = base, term, full, old, "rolling segment");
            active.sealed.set(true);
            let seg = self.new_pending_segment(base, term, now_ms);
            self.segments.borrow_mut().push(seg);
        }
    }

    /// Appends already-validated batches (one produce payload: one or more
    /// concatenated v2 batches): stamps contiguous base offsets and the
    /// current term, optionally LogAppendTime, copies them into the head
    /// chunk and updates indexes and cache. Synchronous; the data becomes
    /// readable once written (see `wait_written`).
    pub fn append(
        &self,
        mut batches: BytesMut,
        log_append_time: bool,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed {
                dir: self.dir.clone(),
            });
        }
        // Pass 1: framing and record counts (no CRC; validated by the caller).
        let mut at = 0usize;
        let mut records = 0i64;
        while at < batches.len() {
            let h = BatchHeader::parse(&batches[at..]).map_err(|source| {
                StorageError::InvalidBatch {
                    position: at,
                    source,
                }
            })?;
            h.check_record_count()
                .map_err(|source| StorageError::InvalidBatch {
                    position: at,
                    source,
                })?;
            let size = h.total_size_bytes();
            if at + size > batches.len() {
                return Err(StorageError::InvalidBatch {
                    position: at,
                    source: batch::BatchError::Truncated {
                        needed_bytes: size,
                        available_bytes: batches.len() - at,
                    },
                });
            }
            records += i64::from(h.record_count);
            at += size;
        }
        if records == 0 {
            return Err(StorageError::InvalidBatch {
                position: 0,
                source: batch::BatchError::Truncated {
                    needed_bytes: batch::BATCH_HEADER_SIZE_BYTES,
                    available_bytes: 0,
                },
            });
        }
        self.maybe_roll(batches.len() as u64, records, now_ms);
        let seg = self.active();
        let term = self.term.get();
        let base_offset = self.log_end_offset.get();
        // Pass 2: stamp in place.
        let mut next = base_offset;
        let mut at = 0usize;
        while at < batches.len() {
            let size = batch::peek_total_size_bytes(&batches[at..]).unwrap_or(0);
            let b = &mut batches[at..at + size];
            batch::stamp(b, next, term);
            if log_append_time {
                batch::set_log_append_time(b, now_ms);
            }
            let count = i64::from(BatchHeader::parse(b).map(|h| h.record_count).unwrap_or(0));
            next += count;
            at += size;
        }
        let start_pos = seg.size_bytes();
        if start_pos == 0 {
            // segment.ms counts from the first append.
            seg.created_ms.set(now_ms);
        }
        let end_pos = seg.appender.append(&batches, next);
        // Pass 3: indexes, max timestamp and cache (Bytes handles, no copies).
        let mut bytes = batches.freeze();
        let mut pos = start_pos;
        let mut cache = self.cache.borrow_mut();
        while !bytes.is_empty() {
            let size = batch::peek_total_size_bytes(&bytes).unwrap_or(bytes.len());
            let one = bytes.split_to(size.min(bytes.len()));
            if let Ok(h) = BatchHeader::parse(&one) {
                seg.on_batch(&h, pos);
                cache.push(h.base_offset, h.last_offset(), one);
            }
            pos += size as u64;
        }
        self.log_end_offset.set(next);
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            end_position: AppendPosition {
                segment_base_offset: seg.base_offset,
                end_pos,
                end_offset: next,
            },
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
        })
    }

    /// Segments up to and including `pos`'s that still have unwritten (or
    /// unsynced) data, oldest first; older ones must complete first.
    fn unsettled_up_to(&self, pos: &AppendPosition) -> Vec<Rc<Segment>> {
        self.segments
            .borrow()
            .iter()
            .filter(|s| s.base_offset <= pos.segment_base_offset && !s.appender.is_fully_durable())
            .cloned()
            .collect()
    }

    /// Resolves when everything up to `pos` has been written with O_DIRECT (acks=1 point).
    pub async fn wait_written(&self, pos: AppendPosition) -> Result<(), StorageError> {
        for seg in self.unsettled_up_to(&pos) {
            let target = if seg.base_offset == pos.segment_base_offset {
                pos.end_pos
            } else {
                seg.appender.end_pos()
            };
            seg.appender.wait_written(target).await?;
        }
        Ok(())
    }

    /// Resolves when everything up to `pos` is fdatasync'ed (acks=all point,
    /// the single-voter commit). Concurrent callers share fdatasyncs.
    pub async fn wait_durable(&self, pos: AppendPosition) -> Result<(), StorageError> {
        for seg in self.unsettled_up_to(&pos) {
            let is_target = seg.base_offset == pos.segment_base_offset;
            let target = if is_target {
                pos.end_pos
            } else {
                seg.appender.end_pos()
            };
            seg.appender.wait_durable(target).await?;
            if seg.sealed.get() && seg.appender.is_fully_durable() && !seg.index_persisted.get() {
                seg.persist_index()?;
                self.write_recovery_point(seg.next_offset())?;
            }
        }
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let active = self.active();
        let pos = AppendPosition {
            segment_base_offset: active.base_offset,
            end_pos: active.size_bytes(),
            end_offset: active.next_offset(),
        };
        self.wait_durable(pos).await
    }

    fn write_recovery_point(&self, offset: i64) -> Result<(), StorageError> {
        recovery::write_offset_file(&self.dir.join(RECOVERY_POINT_FILE), offset)
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

    /// Whole batches containing offsets >= `offset` and < `max_offset`, up to
    /// `max_bytes` but always at least one batch (KIP-74). Served from the
    /// tail cache when possible, else by aligned DMA reads.
    pub async fn read(
        &self,
        offset: i64,
        max_offset: i64,
        max_bytes: usize,
    ) -> Result<FetchedData, StorageError> {
        let (start, end) = (self.log_start_offset.get(), self.log_end_offset.get());
        if offset < start || offset > end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: start,
                log_end_offset: end,
            });
        }
        let limit = max_offset.min(self.written_offset());
        if offset >= limit {
            return Ok(FetchedData::default());
        }
        if let Some(batches) = self.cache.borrow().read(offset, limit, max_bytes) {
            let total_bytes = batches.iter().map(|b| b.len()).sum();
            return Ok(FetchedData {
                batches,
                total_bytes,
                from_cache: true,
            });
        }
        let segs: Vec<Rc<Segment>> = {
            let all = self.segments.borrow();
            let k = all.partition_point(|s| s.base_offset <= offset);
            all[k.saturating_sub(1)..].to_vec()
        };
        let mut out = FetchedData::default();
        let read_size = max_bytes.clamp(MIN_READ_SIZE_BYTES, MAX_READ_SIZE_BYTES);
        let mut want = offset;
        for seg in segs {
            if seg.base_offset >= limit {
                break;
            }
            let Some(file) = seg.appender.file() else {
                break;
            };
            let start_pos = seg.index.borrow().position_for_offset(want);
            let data_end = seg.appender.written_pos();
            let mut full = false;
            let end = scan_batches(
                &file,
                &seg.path,
                start_pos,
                data_end,
                read_size,
                |h, bytes, _| {
                    if h.last_offset() < want {
                        return ControlFlow::Continue(());
                    }
                    if h.base_offset >= limit
                        || (!out.batches.is_empty() && out.total_bytes + bytes.len() > max_bytes)
                    {
                        full = true;
                        return ControlFlow::Break(());
                    }
                    out.total_bytes += bytes.len();
                    out.batches.push(Bytes::copy_from_slice(bytes));
                    ControlFlow::Continue(())
                },
            )
            .await?;
            if let ScanEnd::Invalid {
                position, reason, ..
            } = end
            {
                return Err(StorageError::Corrupt {
                    path: seg.path.clone(),
                    position,
                    reason,
                });
            }
            if full {
                break;
            }
            want = seg.next_offset();
        }
        Ok(out)
    }

    /// Scans `seg` from `start_pos` for the first batch matching `pred`.
    async fn find_batch<P>(
        &self,
        seg: &Segment,
        start_pos: u64,
        mut pred: P,
    ) -> Result<Option<Bytes>, StorageError>
    where
        P: FnMut(&BatchHeader) -> bool,
    {
        let Some(file) = seg.appender.file() else {
            return Ok(None);
        };
        let mut found = None;
        let end = scan_batches(
            &file,
            &seg.path,
            start_pos,
            seg.appender.written_pos(),
            MIN_READ_SIZE_BYTES,
            |h, bytes, _| {
                if pred(h) {
                    found = Some(Bytes::copy_from_slice(bytes));
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .await?;
        if let ScanEnd::Invalid {
            position, reason, ..
        } = end
        {
            return Err(StorageError::Corrupt {
                path: seg.path.clone(),
                position,
                reason,
            });
        }
        Ok(found)
    }

    /// ListOffsets by timestamp: earliest (offset, timestamp) of a record with
    /// timestamp >= `ts_ms`; None if none.
    pub async fn offset_for_timestamp(
        &self,
        ts_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let segs: Vec<Rc<Segment>> = self.segments.borrow().clone();
        let log_start = self.log_start_offset.get();
        let written = self.written_offset();
        for seg in segs {
            if seg.max_timestamp_ms.get() < ts_ms || seg.next_offset() <= log_start {
                continue;
            }
            let start_pos = seg.index.borrow().position_for_timestamp(ts_ms);
            let mut after = log_start;
            loop {
                let batch = self
                    .find_batch(&seg, start_pos, |h| {
                        h.max_timestamp_ms >= ts_ms
                            && h.last_offset() >= after
                            && h.base_offset < written
                    })
                    .await?;
                let Some(batch) = batch else { break };
                let header = BatchHeader::parse(&batch).map_err(|e| StorageError::Corrupt {
                    path: seg.path.clone(),
                    position: 0,
                    reason: e.to_string(),
                })?;
                if let Some(hit) =
                    find_record(&seg, batch, &header, |o, t| o >= log_start && t >= ts_ms)?
                {
                    return Ok(Some(hit));
                }
                after = header.last_offset() + 1;
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP: (offset, timestamp) of the first record with
    /// the largest timestamp.
    pub async fn max_timestamp(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let best = {
            let segs = self.segments.borrow();
            let mut best: Option<Rc<Segment>> = None;
            for s in segs.iter() {
                if s.max_timestamp_ms.get() >= 0
                    && best
                        .as_ref()
                        .is_none_or(|b| s.max_timestamp_ms.get() > b.max_timestamp_ms.get())
                {
                    best = Some(s.clone());
                }
            }
            best
        };
        let Some(seg) = best else { return Ok(None) };
        let ts = seg.max_timestamp_ms.get();
        let batch_offset = seg.max_timestamp_batch_offset.get();
        let start_pos = seg.index.borrow().position_for_offset(batch_offset);
        let batch = self
            .find_batch(&seg, start_pos, |h| h.base_offset == batch_offset)
            .await?;
        let Some(batch) = batch else { return Ok(None) };
        let header = BatchHeader::parse(&batch).map_err(|e| StorageError::Corrupt {
            path: seg.path.clone(),
            position: 0,
            reason: e.to_string(),
        })?;
        find_record(&seg, batch, &header, |_, t| t == ts)
    }

    /// OffsetForLeaderEpoch: for the largest epoch <= `epoch` in the log, that
    /// epoch and its end offset (start of the next epoch, or log end).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let segs = self.segments.borrow();
        let mut found: Option<i32> = None;
        for s in segs.iter().filter(|s| !s.is_empty()) {
            if s.term <= epoch {
                found = Some(found.map_or(s.term, |f: i32| f.max(s.term)));
            }
        }
        let found = found?;
        let end = segs
            .iter()
            .filter(|s| !s.is_empty() && s.term > found)
            .map(|s| s.base_offset)
            .min()
            .unwrap_or(self.log_end_offset.get());
        Some((found, end))
    }

    /// Removes the oldest `count` segments (never the active one).
    fn remove_oldest(&self, count: usize) -> Result<u64, StorageError> {
        let removed: Vec<Rc<Segment>> = {
            let mut segs = self.segments.borrow_mut();
            let n = count.min(segs.len().saturating_sub(1));
            segs.drain(..n).collect()
        };
        let mut bytes = 0;
        for seg in &removed {
            tracing::info!(path = %seg.path.display(), base_offset = seg.base_offset, size_bytes = seg.size_bytes(), "deleting segment");
            seg.remove_files()?;
            bytes += seg.size_bytes();
        }
        if let Some(first) = self.segments.borrow().first() {
            if first.base_offset > self.log_start_offset.get() {
                self.log_start_offset.set(first.base_offset);
            }
        }
        self.cache
            .borrow_mut()
            .evict_below(self.log_start_offset.get());
        Ok(bytes)
    }

    /// DeleteRecords: moves the log start offset to `offset` (persisted and
    /// fsync'ed) and deletes segments wholly below it. Returns the new log start.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        let end = self.log_end_offset.get();
        if offset > end || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset.get(),
                log_end_offset: end,
            });
        }
        if offset <= self.log_start_offset.get() {
            return Ok(self.log_start_offset.get());
        }
        recovery::write_offset_file(&self.dir.join(LOG_START_OFFSET_FILE), offset)?;
        self.log_start_offset.set(offset);
        let count = {
            let segs = self.segments.borrow();
            segs[..segs.len() - 1]
                .iter()
                .take_while(|s| s.next_offset() <= offset && s.appender.is_fully_durable())
                .count()
        };
        self.remove_oldest(count)?;
        Ok(self.log_start_offset.get())
    }

    /// Retention: deletes the oldest closed segments whose max timestamp is
    /// older than `retention_ms`, then while the log exceeds `retention_bytes`.
    /// Never the active segment. Returns bytes deleted.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<u64, StorageError> {
        let (retention_ms, retention_bytes) = {
            let c = self.config.borrow();
            (c.retention_ms, c.retention_bytes)
        };
        let count = {
            let segs = self.segments.borrow();
            let closed = &segs[..segs.len() - 1];
            let mut count = 0;
            let mut remaining: i64 = segs.iter().map(|s| s.size_bytes() as i64).sum();
            for s in closed {
                if !s.appender.is_fully_durable() {
                    break;
                }
                let expired = retention_ms >= 0 && now_ms - s.max_timestamp_ms.get() > retention_ms;
                let oversize =
                    retention_bytes >= 0 && remaining - s.size_bytes() as i64 >= retention_bytes;
                if !(expired || oversize) {
                    break;
                }
                remaining -= s.size_bytes() as i64;
                count += 1;
            }
            count
        };
        if count == 0 {
            return Ok(0);
        }
        self.remove_oldest(count)
    }

    /// Applies new settings to future appends, rolls and retention runs.
    pub fn update_config(&self, config: LogConfig) {
        self.cache
            .borrow_mut()
            .set_budget(config.cache_budget_bytes);
        let max_alloc = recovery::max_allocate_bytes(&config);
        self.active()
            .appender
            .set_allocation(config.preallocate_step_bytes, max_alloc);
        *self.config.borrow_mut() = config;
    }

    /// Clean shutdown: writes pending data, fdatasyncs, persists indexes and
    /// the recovery point. Later appends fail with `Closed`.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.closed.set(true);
        self.flush().await?;
        let segs: Vec<Rc<Segment>> = self.segments.borrow().clone();
        for seg in segs {
            if !seg.index_persisted.get() {
                seg.persist_index()?;
            }
        }
        self.write_recovery_point(self.log_end_offset.get())?;
        tracing::info!(dir = %self.dir.display(), log_end = self.log_end_offset.get(), "partition log closed");
        Ok(())
    }
}

/// Decodes a batch and returns the first record matching `pred(offset, ts)`.
fn find_record<P>(
    seg: &Segment,
    mut batch: Bytes,
    header: &BatchHeader,
    pred: P,
) -> Result<Option<(i64, i64)>, StorageError>
where
    P: Fn(i64, i64) -> bool,
{
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut batch).map_err(|e| {
        StorageError::Corrupt {
            path: seg.path.clone(),
            position: 0,
            reason: format!("cannot decode batch at offset {}: {e}", header.base_offset),
        }
    })?;
    for r in &set.records {
        let ts = if header.is_log_append_time() {
            header.max_timestamp_ms
        } else {
            r.timestamp
        };
        if pred(r.offset, ts) {
            return Ok(Some((r.offset, ts)));
        }
    }
    Ok(None)
}
