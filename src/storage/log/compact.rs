//! Log compaction (`cleanup.policy=compact`): the cleaner keeps the latest record of each
//! key in the closed, stable part of a partition log, Kafka's way.
//!
//! A pass builds a map key → latest offset over the dirty segments (those not yet
//! compacted, oldest first, as far as the map's memory budget reaches), then rewrites every
//! segment from the start of the log up to there, keeping a record only if no later record
//! has its key. Offsets never change (a compacted segment has gaps, and its file name
//! carries its end offset so recovery still checks that segments meet); consecutive small
//! segments of one term are merged. Transactions follow Kafka's rules: records of aborted
//! transactions go, records of committed ones are compacted like any other, and a
//! transaction marker stays while any record of its transaction does. Tombstones (and
//! markers with nothing left to mark) survive the pass that first compacts them and are
//! removed by a later pass once they are older than `delete.retention.ms`, so a consumer
//! that reads the log within that time sees every delete.
//!
//! Only what the partition above says is stable is cleaned: closed, durable segments below
//! its last stable offset and its last producer-state snapshot, so a restart never needs a
//! batch the cleaner removed. The swap is atomic and durable: the cleaned file is written
//! and fsynced as `<name>.cleaned`, renamed to `<name>.swap` (from here recovery finishes
//! the swap), the old segments' files are removed and the swap renamed into place, each
//! step made durable by an fsync of the directory. Readers holding the old segments keep
//! reading them through their open files, so no read is ever torn.

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::{Bytes, BytesMut};
use glommio::io::DmaFile;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use crate::storage::appender::Appender;
use crate::storage::batch::BatchHeader;
use crate::storage::error::StorageError;
use crate::storage::index::SegmentIndex;
use crate::storage::records::decode_marker;
use crate::storage::recovery;
use crate::storage::segment::{self, scan_batches, ScanEnd, Segment};

use super::PartitionLog;

/// Bytes read between two throttle checks (and two flushes of the cleaned output).
const CHUNK_BYTES: usize = 1 << 20;

/// The compaction settings of a topic (Kafka topic configs of the same names).
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionConfig {
    /// `min.cleanable.dirty.ratio`: clean once dirty bytes are this share of the cleanable log.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: a segment holding records younger than this is not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty segment older than this is cleaned whatever the ratio.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long tombstones stay readable after compaction.
    pub delete_retention_ms: i64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 86_400_000,
        }
    }
}

/// Paces the cleaner's I/O to a byte rate, so cleaning never takes the disk from produce.
pub struct Throttle {
    bytes_per_sec: u64,
    next_free: Cell<Option<Instant>>,
}

impl Throttle {
    /// A throttle allowing `bytes_per_sec` (0 = unlimited).
    pub fn new(bytes_per_sec: u64) -> Throttle {
        Throttle {
            bytes_per_sec,
            next_free: Cell::new(None),
        }
    }

    /// Accounts `bytes` of I/O just done and sleeps until the rate allows more.
    pub async fn pace(&self, bytes: u64) {
        if self.bytes_per_sec == 0 {
            glommio::yield_if_needed().await;
            return;
        }
        let now = Instant::now();
        let from = self.next_free.get().filter(|t| *t > now).unwrap_or(now);
        let next = from + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        self.next_free.set(Some(next));
        if next > now {
            glommio::timer::sleep(next - now).await;
        }
    }
}

/// What the partition above tells one cleaning pass.
pub struct CleanerInput<'a> {
    /// Wall clock, ms.
    pub now_ms: i64,
    /// Nothing at or above this offset is cleaned: the partition's last stable offset and
    /// last producer-state snapshot, whichever is lower.
    pub uncleanable_from: i64,
    /// Whether the transactional batch of (producer id, offset) belongs to an aborted
    /// transaction.
    pub is_aborted: &'a dyn Fn(i64, i64) -> bool,
    /// The shard's cleaner throttle.
    pub throttle: &'a Throttle,
    /// Memory the key map of one pass may use; the pass covers fewer dirty segments when
    /// their keys do not fit.
    pub key_map_budget_bytes: usize,
}

/// What a cleaning pass did (for `/metrics` and logs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanerStats {
    /// Segments read and replaced.
    pub segments_cleaned: u64,
    /// Compacted segments written in their place.
    pub segments_written: u64,
    /// Bytes read (the key map pass and the rewrite).
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Records (and markers) removed.
    pub records_removed: u64,
}

impl CleanerStats {
    /// Adds another pass's numbers.
    pub fn add(&mut self, other: &CleanerStats) {
        self.segments_cleaned += other.segments_cleaned;
        self.segments_written += other.segments_written;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
        self.records_removed += other.records_removed;
    }
}

impl PartitionLog {
    /// Runs one cleaning pass if the topic is compacted and enough of its stable log is
    /// dirty (see module docs). Returns what it did; nothing when there was nothing to do.
    pub async fn compact(&self, input: &CleanerInput<'_>) -> Result<CleanerStats, StorageError> {
        let mut stats = CleanerStats::default();
        let (Some(config), segment_limit) = ({
            let c = self.config.borrow();
            (c.compaction.clone(), c.segment_size_bytes)
        }) else {
            return Ok(stats);
        };
        if self.is_damaged() || self.closed.get() || self.offline_reason().is_some() {
            return Ok(stats);
        }
        let Some((cleanable, clean_count)) =
            self.plan_cleaning(&config, input.now_ms, input.uncleanable_from)
        else {
            return Ok(stats);
        };
        let (map, covered) = self
            .build_key_map(&cleanable[clean_count..], input, &mut stats)
            .await?;
        let mut filter = Filter {
            map,
            horizon_ms: input.now_ms.saturating_sub(config.delete_retention_ms),
            is_aborted: input.is_aborted,
            txn_data_kept: AHashMap::new(),
            removed: 0,
            oldest_tombstone_ms: None,
        };
        for group in groups(&cleanable[..clean_count + covered], segment_limit) {
            if !self
                .clean_group(group, &mut filter, input, &mut stats)
                .await?
            {
                break;
            }
        }
        stats.records_removed = filter.removed;
        if stats.segments_written > 0 {
            tracing::info!(dir = %self.dir.display(), segments = stats.segments_cleaned, written = stats.segments_written, bytes_read = stats.bytes_read, bytes_written = stats.bytes_written, records_removed = stats.records_removed, "compacted");
        }
        Ok(stats)
    }

    /// Whether a compaction pass would clean something now, with nothing cleaned at or
    /// above `uncleanable_from`: cheap, for the caller to decide whether to prepare one.
    pub fn compaction_due(&self, now_ms: i64, uncleanable_from: i64) -> bool {
        let config = self.config.borrow().compaction.clone();
        config.is_some_and(|c| self.plan_cleaning(&c, now_ms, uncleanable_from).is_some())
    }

    /// The cleanable segments (closed, durable, below `uncleanable_from` and the minimum
    /// lag) and how many of them at the front are already compacted; `None` when the dirty
    /// part is too small a share to clean yet and not overdue.
    fn plan_cleaning(
        &self,
        config: &CompactionConfig,
        now_ms: i64,
        uncleanable_from: i64,
    ) -> Option<(Vec<Rc<Segment>>, usize)> {
        let segs = self.segments.borrow();
        let closed = &segs[..segs.len().saturating_sub(1)];
        let lag_cutoff = now_ms.saturating_sub(config.min_compaction_lag_ms);
        let cleanable: Vec<Rc<Segment>> = closed
            .iter()
            .take_while(|s| {
                s.sealed.get()
                    && s.appender.is_fully_durable()
                    && s.next_offset() <= uncleanable_from
                    && (config.min_compaction_lag_ms <= 0 || s.max_timestamp_ms.get() <= lag_cutoff)
            })
            .cloned()
            .collect();
        let clean_count = cleanable.iter().take_while(|s| s.compacted).count();
        let dirty = &cleanable[clean_count..];
        let dirty_bytes: u64 = dirty.iter().map(|s| s.size_bytes()).sum();
        let total_bytes: u64 = cleanable.iter().map(|s| s.size_bytes()).sum();
        let dirty_due = dirty.first().is_some_and(|first| {
            let ratio = dirty_bytes as f64 / total_bytes.max(1) as f64;
            let overdue =
                first.created_ms.get() < now_ms.saturating_sub(config.max_compaction_lag_ms);
            dirty_bytes > 0 && (ratio >= config.min_cleanable_dirty_ratio || overdue)
        });
        // Tombstones past delete.retention.ms are removed even when nothing new was written.
        let horizon = now_ms.saturating_sub(config.delete_retention_ms);
        let tombstones_due = cleanable[..clean_count]
            .iter()
            .any(|s| s.oldest_tombstone_ms.get().is_some_and(|t| t < horizon));
        (dirty_due || tombstones_due).then_some((cleanable, clean_count))
    }

    /// Key → offset of its latest record over the dirty segments, and how many of them it
    /// covers (at least one; fewer than all when the budget runs out). Control batches and
    /// aborted records do not count: an aborted write never hides a committed one.
    async fn build_key_map(
        &self,
        dirty: &[Rc<Segment>],
        input: &CleanerInput<'_>,
        stats: &mut CleanerStats,
    ) -> Result<(AHashMap<Bytes, i64>, usize), StorageError> {
        let mut map: AHashMap<Bytes, i64> = AHashMap::new();
        let mut used = 0usize;
        let mut covered = 0;
        for seg in dirty.iter().filter(|s| s.size_bytes() > 0) {
            if covered > 0 && used > input.key_map_budget_bytes {
                break;
            }
            let mut cursor = BatchCursor::new(seg)?;
            while let Some(read) = cursor
                .next_chunk(|h, bytes| {
                    if h.is_control()
                        || (h.is_transactional()
                            && (input.is_aborted)(h.producer_id, h.base_offset))
                    {
                        return;
                    }
                    for record in decode(h, bytes, &seg.path) {
                        if let Some(key) = record.key {
                            let key = Bytes::copy_from_slice(&key);
                            let len = key.len();
                            if map.insert(key, record.offset).is_none() {
                                used += len + 48;
                            }
                        }
                    }
                })
                .await?
            {
                stats.bytes_read += read;
                input.throttle.pace(read).await;
            }
            covered += 1;
        }
        // Empty dirty segments cost nothing to cover.
        let covered = dirty
            .iter()
            .scan(covered, |left, s| {
                if s.size_bytes() > 0 {
                    if *left == 0 {
                        return None;
                    }
                    *left -= 1;
                }
                Some(())
            })
            .count();
        Ok((map, covered))
    }

    /// Writes one group of consecutive segments as one compacted segment and swaps it in.
    /// Returns false when the log changed under the pass (a truncation, retention or
    /// DeleteRecords took one of the segments): the pass stops and the next one starts over.
    async fn clean_group(
        &self,
        group: &[Rc<Segment>],
        filter: &mut Filter<'_>,
        input: &CleanerInput<'_>,
        stats: &mut CleanerStats,
    ) -> Result<bool, StorageError> {
        let (first, last) = (&group[0], &group[group.len() - 1]);
        let (base, term, end) = (first.base_offset, first.term, last.next_offset());
        let name = segment::compacted_segment_file_name(base, term, end);
        let target = self.dir.join(&name);
        let cleaned = self.dir.join(format!("{name}.cleaned"));
        let interval = self.config.borrow().index_interval_bytes;
        let mut out = CleanedOutput::create(&cleaned, base, interval).await?;
        filter.oldest_tombstone_ms = None;
        for seg in group {
            // Tombstones and empty markers go only once a pass already compacted them.
            let second_pass = seg.compacted;
            let mut cursor = BatchCursor::new(seg)?;
            loop {
                let chunk = cursor
                    .next_chunk(
                        |h, bytes| match filter.decide(h, bytes, second_pass, &seg.path) {
                            Decision::Keep => out.push(h, bytes),
                            Decision::Drop => {}
                            Decision::Rewrite(new) => match BatchHeader::parse(&new) {
                                Ok(header) => out.push(&header, &new),
                                Err(_) => out.push(h, bytes),
                            },
                        },
                    )
                    .await;
                let read = match chunk {
                    Ok(Some(read)) => read,
                    Ok(None) => break,
                    Err(e) => {
                        out.abandon().await;
                        return Err(e);
                    }
                };
                stats.bytes_read += read;
                let written = out.flush().await?;
                input.throttle.pace(read + written).await;
            }
        }
        let (size, index, max_ts) = out.finish().await?;
        let oldest_tombstone_ms = filter.oldest_tombstone_ms;
        stats.bytes_written += size;
        let unchanged = {
            let segs = self.segments.borrow();
            let at = segs.iter().position(|s| Rc::ptr_eq(s, first));
            at.is_some_and(|at| {
                segs.len() > at + group.len()
                    && segs[at..at + group.len()]
                        .iter()
                        .zip(group)
                        .all(|(a, b)| Rc::ptr_eq(a, b))
            }) && self.truncation_in_flight.borrow().is_none()
                && !self.is_damaged()
                && !self.closed.get()
        };
        if !unchanged {
            let path = cleaned.clone();
            glommio::executor()
                .spawn_blocking(move || segment::remove_files(&[path]))
                .await?;
            return Ok(false);
        }
        self.swapping.set(true);
        let swapped = self
            .swap_in(group, &cleaned, &target, size, index, max_ts)
            .await
            .map(|seg| seg.oldest_tombstone_ms.set(oldest_tombstone_ms));
        self.swapping.set(false);
        swapped?;
        stats.segments_cleaned += group.len() as u64;
        stats.segments_written += 1;
        Ok(true)
    }

    /// The durable swap of module docs, then the same swap in memory.
    async fn swap_in(
        &self,
        group: &[Rc<Segment>],
        cleaned: &Path,
        target: &Path,
        size: u64,
        index: SegmentIndex,
        max_ts: (i64, i64),
    ) -> Result<Rc<Segment>, StorageError> {
        let swap = with_suffix(target, ".swap");
        let old: Vec<PathBuf> = group
            .iter()
            .flat_map(|s| [s.path.clone(), s.index_path(), s.time_index_path()])
            .collect();
        let (cleaned, target_path, dir) = (
            cleaned.to_path_buf(),
            target.to_path_buf(),
            self.dir.clone(),
        );
        glommio::executor()
            .spawn_blocking(move || -> Result<(), StorageError> {
                std::fs::rename(&cleaned, &swap)
                    .map_err(|e| StorageError::io("rename", &cleaned, e))?;
                recovery::sync_dir(&dir)?;
                segment::remove_files(&old)?;
                std::fs::rename(&swap, &target_path)
                    .map_err(|e| StorageError::io("rename", &swap, e))?;
                recovery::sync_dir(&dir)
            })
            .await?;
        let (first, last) = (&group[0], &group[group.len() - 1]);
        let file = recovery::open_segment_file(target).await?;
        let (step, max_alloc) = {
            let c = self.config.borrow();
            (c.preallocate_step_bytes, recovery::max_allocate_bytes(&c))
        };
        let appender = Appender::open_existing(
            target.to_path_buf(),
            file,
            size,
            last.next_offset(),
            size,
            step,
            max_alloc,
        )
        .await?;
        let mut seg = Segment::new(
            first.base_offset,
            first.term,
            target.to_path_buf(),
            appender,
            index,
            first.created_ms.get(),
        );
        seg.compacted = true;
        seg.sealed.set(true);
        seg.max_timestamp_ms.set(max_ts.0);
        seg.max_timestamp_batch_offset.set(max_ts.1);
        let seg = Rc::new(seg);
        {
            let mut segs = self.segments.borrow_mut();
            if let Some(at) = segs.iter().position(|s| Rc::ptr_eq(s, first)) {
                segs.splice(at..at + group.len(), [seg.clone()]);
            }
        }
        // Readers from now on see the compacted batches, not cached copies of the old ones.
        self.cache.borrow_mut().evict_below(last.next_offset());
        if let Err(e) = super::persist_index(&seg).await {
            tracing::warn!(path = %seg.path.display(), error = %e, "could not persist a compacted segment's index; recovery will rebuild it");
        }
        Ok(seg)
    }

    /// Waits while the cleaner swaps files, for the paths that remove segments themselves.
    pub(super) async fn wait_for_cleaner_swap(&self) {
        while self.swapping.get() {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Consecutive runs of one term, each at most `limit` bytes (at least one segment): the
/// segments one compacted segment replaces.
fn groups(segments: &[Rc<Segment>], limit: u64) -> Vec<&[Rc<Segment>]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, s) in segments.iter().enumerate() {
        let same_term = segments[start].term == s.term;
        if i > start && (!same_term || bytes + s.size_bytes() > limit) {
            out.push(&segments[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += s.size_bytes();
    }
    if start < segments.len() {
        out.push(&segments[start..]);
    }
    out
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The records of a stored batch; none if it does not decode (then the cleaner keeps the
/// batch as it is and its keys out of the map: it never drops what it cannot read).
fn decode(header: &BatchHeader, bytes: &[u8], path: &Path) -> Vec<Record> {
    let mut buf = Bytes::copy_from_slice(bytes);
    match RecordBatchDecoder::decode(&mut buf) {
        Ok(set) => set.records,
        Err(e) => {
            tracing::warn!(path = %path.display(), offset = header.base_offset, error = %e, "the cleaner cannot decode a batch; keeping it whole");
            Vec::new()
        }
    }
}

/// What the cleaner does with one stored batch.
enum Decision {
    Keep,
    Drop,
    /// Some records go: the batch re-encoded with the rest (same base offset, producer
    /// fields, epoch and codec).
    Rewrite(BytesMut),
}

/// The per-pass state of the record filter.
struct Filter<'a> {
    map: AHashMap<Bytes, i64>,
    /// Tombstones and markers older than this (ms) may go.
    horizon_ms: i64,
    is_aborted: &'a dyn Fn(i64, i64) -> bool,
    /// Producer id → whether a record of its current transaction was kept this pass.
    txn_data_kept: AHashMap<i64, bool>,
    removed: u64,
    /// The oldest tombstone or spent marker kept in the group being written.
    oldest_tombstone_ms: Option<i64>,
}

impl Filter<'_> {
    fn decide(
        &mut self,
        h: &BatchHeader,
        bytes: &[u8],
        second_pass: bool,
        path: &Path,
    ) -> Decision {
        let records = h.record_count.max(0) as u64;
        if h.is_control() {
            if decode_marker(&Bytes::copy_from_slice(bytes)).is_none() {
                return Decision::Keep;
            }
            let marks_kept_data = self.txn_data_kept.remove(&h.producer_id).unwrap_or(false);
            if !marks_kept_data {
                if second_pass && h.max_timestamp_ms < self.horizon_ms {
                    self.removed += records;
                    return Decision::Drop;
                }
                self.note_tombstone(h.max_timestamp_ms);
            }
            return Decision::Keep;
        }
        if h.is_transactional() && (self.is_aborted)(h.producer_id, h.base_offset) {
            self.removed += records;
            return Decision::Drop;
        }
        let mut set = decode(h, bytes, path);
        if set.is_empty() {
            return Decision::Keep;
        }
        let before = set.len();
        set.retain(|r| self.retains(r, h, second_pass));
        if set.iter().any(|r| r.value.is_none()) {
            self.note_tombstone(h.max_timestamp_ms);
        }
        if !set.is_empty() && h.is_transactional() {
            self.txn_data_kept.insert(h.producer_id, true);
        }
        self.removed += (before - set.len()) as u64;
        if set.len() == before {
            return Decision::Keep;
        }
        if set.is_empty() {
            return Decision::Drop;
        }
        match reencode(h, &mut set) {
            Some(bytes) => Decision::Rewrite(bytes),
            None => {
                self.removed -= (before - set.len()) as u64;
                Decision::Keep
            }
        }
    }

    fn note_tombstone(&mut self, timestamp_ms: i64) {
        let oldest = self
            .oldest_tombstone_ms
            .map_or(timestamp_ms, |t| t.min(timestamp_ms));
        self.oldest_tombstone_ms = Some(oldest);
    }

    /// A record stays unless a later record has its key, it has no key (Kafka's cleaner
    /// drops those too), or it is a tombstone past its time.
    fn retains(&self, r: &Record, h: &BatchHeader, second_pass: bool) -> bool {
        let Some(key) = r.key.as_ref() else {
            return false;
        };
        if self.map.get(key).is_some_and(|latest| *latest > r.offset) {
            return false;
        }
        r.value.is_some() || !second_pass || h.max_timestamp_ms >= self.horizon_ms
    }
}

/// The kept records of a batch as one batch again, in its codec, keeping the base sequence
/// of a batch without one at -1; `None` if encoding fails (the batch is then kept whole).
fn reencode(h: &BatchHeader, records: &mut [Record]) -> Option<BytesMut> {
    if h.base_sequence < 0 {
        let first = records.first()?.offset;
        for r in records.iter_mut() {
            // offset - sequence stays constant, so the encoder writes one batch with base -1.
            r.sequence = (r.offset - first) as i32 - 1;
        }
    }
    let compression = match h.attributes & 0x7 {
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => Compression::None,
    };
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut out, records.iter(), &options).ok()?;
    Some(out)
}

/// Reads a closed segment's batches a chunk at a time (so the caller can pace and flush
/// between chunks).
struct BatchCursor<'a> {
    seg: &'a Segment,
    file: Rc<DmaFile>,
    pos: u64,
    end: u64,
}

impl<'a> BatchCursor<'a> {
    fn new(seg: &'a Segment) -> Result<BatchCursor<'a>, StorageError> {
        let file = seg.appender.file().ok_or_else(|| StorageError::Corrupt {
            path: seg.path.clone(),
            position: 0,
            reason: "a closed segment has no file".into(),
        })?;
        Ok(BatchCursor {
            seg,
            file,
            pos: 0,
            end: seg.appender.written_pos(),
        })
    }

    /// Visits the batches of the next chunk; the bytes read, or `None` at the end.
    async fn next_chunk(
        &mut self,
        mut visit: impl FnMut(&BatchHeader, &[u8]),
    ) -> Result<Option<u64>, StorageError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let start = self.pos;
        let mut next = start;
        let scanned = scan_batches(
            &self.file,
            &self.seg.path,
            start,
            self.end,
            CHUNK_BYTES,
            |h, bytes, at| {
                visit(h, bytes);
                next = at + bytes.len() as u64;
                if next - start >= CHUNK_BYTES as u64 {
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                }
            },
        )
        .await?;
        match scanned {
            ScanEnd::End(_) => self.pos = self.end,
            ScanEnd::Stopped(_) => self.pos = next,
            invalid @ ScanEnd::Invalid { .. } => {
                invalid.corrupt_if_invalid(&self.seg.path)?;
            }
        }
        Ok(Some(self.pos - start))
    }
}

/// The compacted segment being written: batches buffered and appended to its file off the
/// shard thread, with its index and summary built as it grows.
struct CleanedOutput {
    path: PathBuf,
    file: Option<std::fs::File>,
    buf: Vec<u8>,
    position: u64,
    index: SegmentIndex,
    max_ts: i64,
    max_ts_offset: i64,
}

impl CleanedOutput {
    async fn create(path: &Path, base: i64, interval: u32) -> Result<CleanedOutput, StorageError> {
        let p = path.to_path_buf();
        let file = glommio::executor()
            .spawn_blocking(move || {
                std::fs::File::create(&p).map_err(|e| StorageError::io("create", &p, e))
            })
            .await?;
        Ok(CleanedOutput {
            path: path.to_path_buf(),
            file: Some(file),
            buf: Vec::with_capacity(CHUNK_BYTES),
            position: 0,
            index: SegmentIndex::new(base, interval),
            max_ts: -1,
            max_ts_offset: base,
        })
    }

    fn push(&mut self, h: &BatchHeader, bytes: &[u8]) {
        if h.max_timestamp_ms > self.max_ts {
            self.max_ts = h.max_timestamp_ms;
            self.max_ts_offset = h.base_offset;
        }
        self.index.on_batch(
            h.base_offset,
            self.position,
            bytes.len() as u64,
            self.max_ts,
        );
        self.buf.extend_from_slice(bytes);
        self.position += bytes.len() as u64;
    }

    /// Appends the buffered batches to the file; returns the bytes written.
    async fn flush(&mut self) -> Result<u64, StorageError> {
        if self.buf.is_empty() {
            return Ok(0);
        }
        let Some(mut file) = self.file.take() else {
            return Ok(0);
        };
        let buf = std::mem::take(&mut self.buf);
        let path = self.path.clone();
        let (file, buf, written) = glommio::executor()
            .spawn_blocking(move || {
                let written = file
                    .write_all(&buf)
                    .map_err(|e| StorageError::io("write", &path, e));
                (file, buf, written)
            })
            .await;
        self.file = Some(file);
        written?;
        let len = buf.len() as u64;
        self.buf = buf;
        self.buf.clear();
        Ok(len)
    }

    /// Flushes and fsyncs the file: (size, index, (max timestamp, its batch offset)).
    async fn finish(mut self) -> Result<(u64, SegmentIndex, (i64, i64)), StorageError> {
        self.flush().await?;
        if let Some(file) = self.file.take() {
            let path = self.path.clone();
            glommio::executor()
                .spawn_blocking(move || {
                    file.sync_all()
                        .map_err(|e| StorageError::io("fsync", &path, e))
                })
                .await?;
        }
        Ok((self.position, self.index, (self.max_ts, self.max_ts_offset)))
    }

    /// Deletes the partial file after a failed pass.
    async fn abandon(mut self) {
        self.file.take();
        let path = self.path.clone();
        let _ = glommio::executor()
            .spawn_blocking(move || segment::remove_files(&[path]))
            .await;
    }
}

/// At open, before segments are listed: deletes cleaned files a crash left unfinished and
/// completes every committed swap (removes the segments in its offset range, renames it into
/// place), so the log is either all old segments or all new ones. Blocking.
pub(crate) fn finish_cleaner_swaps(dir: &Path) -> Result<(), StorageError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list dir", dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    let mut changed = false;
    for name in names.iter().filter(|n| n.ends_with(".log.cleaned")) {
        segment::remove_files(&[dir.join(name)])?;
        changed = true;
    }
    for swap in names.iter().filter(|n| n.ends_with(".log.swap")) {
        let target = &swap[..swap.len() - ".swap".len()];
        let Some(new) = segment::parse_segment_name(target) else {
            continue;
        };
        let Some(end) = new.compacted_end else {
            continue;
        };
        for old in &names {
            let Some(parsed) = segment::parse_segment_name(old) else {
                continue;
            };
            if parsed.base_offset >= new.base_offset && parsed.base_offset < end {
                let path = dir.join(old);
                segment::remove_files(&[
                    path.with_extension("index"),
                    path.with_extension("timeindex"),
                    path,
                ])?;
            }
        }
        let target_path = dir.join(target);
        std::fs::rename(dir.join(swap), &target_path)
            .map_err(|e| StorageError::io("rename", &target_path, e))?;
        tracing::info!(path = %target_path.display(), "finished a compaction swap a restart interrupted");
        changed = true;
    }
    if changed {
        recovery::sync_dir(dir)?;
    }
    Ok(())
}
