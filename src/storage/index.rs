//! Sparse offset and time indexes of one segment.
//!
//! One entry per `index_interval_bytes` of log: the offset index maps a batch
//! base offset (relative to the segment) to its file position; the time index,
//! entry for entry, holds the largest timestamp seen up to that batch. Both
//! live in memory and are persisted (with the segment's summary) when a
//! segment is sealed and durable, and at clean shutdown, so recovery of
//! closed segments does not scan them.

use std::io::Write;
use std::path::Path;

use crate::storage::error::StorageError;

const OFFSET_INDEX_MAGIC: u32 = 0x534c_5849; // "SLXI"
const TIME_INDEX_MAGIC: u32 = 0x534c_5854; // "SLXT"
const FORMAT_VERSION: u32 = 1;
const OFFSET_ENTRY_BYTES: usize = 12;
const TIME_ENTRY_BYTES: usize = 12;
const OFFSET_HEADER_BYTES: usize = 4 + 4 + 8 * 6 + 4;
const TIME_HEADER_BYTES: usize = 4 + 8 + 4;

/// One offset index entry: batch at `rel_offset` starts at `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    /// Batch base offset minus segment base offset.
    pub rel_offset: u32,
    /// Byte position of the batch in the segment file.
    pub position: u64,
}

/// Summary of a segment stored beside its index, so a closed segment can be
/// opened without scanning it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    /// Bytes of valid data.
    pub size_bytes: u64,
    /// Offset after the last batch.
    pub next_offset: i64,
    /// Largest batch max timestamp, -1 if none.
    pub max_timestamp_ms: i64,
    /// Base offset of the batch holding that timestamp.
    pub max_timestamp_batch_offset: i64,
    /// When the segment was started (for segment.ms).
    pub created_ms: i64,
}

/// In-memory sparse indexes of one segment.
#[derive(Debug, Clone)]
pub(crate) struct SegmentIndex {
    base_offset: i64,
    interval_bytes: u64,
    bytes_since_entry: u64,
    offsets: Vec<OffsetEntry>,
    /// Parallel to `offsets`: max timestamp so far at that entry's batch.
    times: Vec<i64>,
}

impl SegmentIndex {
    /// Empty index for a segment starting at `base_offset`.
    pub(crate) fn new(base_offset: i64, interval_bytes: u32) -> SegmentIndex {
        SegmentIndex {
            base_offset,
            interval_bytes: u64::from(interval_bytes.max(1)),
            bytes_since_entry: 0,
            offsets: Vec::new(),
            times: Vec::new(),
        }
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Records a batch appended at `position`; adds an entry when
    /// `interval_bytes` of log passed since the last one.
    pub(crate) fn on_batch(
        &mut self,
        base_offset: i64,
        position: u64,
        size_bytes: u64,
        max_timestamp_so_far_ms: i64,
    ) {
        if self.offsets.is_empty() || self.bytes_since_entry >= self.interval_bytes {
            let rel = (base_offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
            self.offsets.push(OffsetEntry {
                rel_offset: rel,
                position,
            });
            self.times.push(max_timestamp_so_far_ms);
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += size_bytes;
    }

    /// Position to start scanning for `offset`: the last indexed batch whose
    /// base offset is <= `offset` (0 if none).
    pub(crate) fn position_for_offset(&self, offset: i64) -> u64 {
        let rel = offset - self.base_offset;
        if rel < 0 {
            return 0;
        }
        let k = self
            .offsets
            .partition_point(|e| i64::from(e.rel_offset) <= rel);
        if k == 0 {
            0
        } else {
            self.offsets[k - 1].position
        }
    }

    /// Position to start scanning for the first record with timestamp >=
    /// `ts_ms`: the last indexed batch whose max-so-far is below `ts_ms`.
    pub(crate) fn position_for_timestamp(&self, ts_ms: i64) -> u64 {
        let k = self.times.partition_point(|t| *t < ts_ms);
        if k == 0 {
            0
        } else {
            self.offsets[k - 1].position
        }
    }

    /// Where a truncation to `offset` starts scanning batch headers: the
    /// second-to-last indexed batch at or below `offset` (0 if none). Scanning
    /// from one entry earlier than `position_for_offset` guarantees the scan
    /// also covers the last entry that survives the cut, whose max-so-far
    /// timestamp the truncation needs to recompute the segment's max timestamp.
    pub(crate) fn truncation_scan_start(&self, offset: i64) -> u64 {
        let rel = offset - self.base_offset;
        if rel < 0 {
            return 0;
        }
        let k = self
            .offsets
            .partition_point(|e| i64::from(e.rel_offset) <= rel);
        if k >= 2 {
            self.offsets[k - 2].position
        } else {
            0
        }
    }

    /// Largest timestamp of the batches up to and including the last entry
    /// that starts below `position` (-1 if none): what the time index still
    /// knows once the log is cut at `position`.
    pub(crate) fn max_timestamp_below(&self, position: u64) -> i64 {
        let keep = self.offsets.partition_point(|e| e.position < position);
        if keep == 0 {
            -1
        } else {
            self.times[keep - 1]
        }
    }

    /// Drops the entries of batches at or after `position` (the segment was
    /// truncated there) so lookups never point past the data and the next
    /// entry is added at the right interval.
    pub(crate) fn truncate_at(&mut self, position: u64) {
        let keep = self.offsets.partition_point(|e| e.position < position);
        self.offsets.truncate(keep);
        self.times.truncate(keep);
        self.bytes_since_entry = self.offsets.last().map_or(0, |e| position - e.position);
    }

    /// Writes `<segment>.index` and `<segment>.timeindex` (tmp + fsync + rename).
    pub(crate) fn persist(
        &self,
        index_path: &Path,
        time_index_path: &Path,
        summary: &SegmentSummary,
    ) -> Result<(), StorageError> {
        let mut buf = Vec::with_capacity(OFFSET_HEADER_BYTES + self.offsets.len() * 12 + 4);
        buf.extend_from_slice(&OFFSET_INDEX_MAGIC.to_be_bytes());
        buf.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        buf.extend_from_slice(&self.base_offset.to_be_bytes());
        buf.extend_from_slice(&summary.size_bytes.to_be_bytes());
        buf.extend_from_slice(&summary.next_offset.to_be_bytes());
        buf.extend_from_slice(&summary.max_timestamp_ms.to_be_bytes());
        buf.extend_from_slice(&summary.max_timestamp_batch_offset.to_be_bytes());
        buf.extend_from_slice(&summary.created_ms.to_be_bytes());
        buf.extend_from_slice(&(self.offsets.len() as u32).to_be_bytes());
        for e in &self.offsets {
            buf.extend_from_slice(&e.rel_offset.to_be_bytes());
            buf.extend_from_slice(&e.position.to_be_bytes());
        }
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_be_bytes());
        write_atomically(index_path, &buf)?;

        let mut tbuf = Vec::with_capacity(TIME_HEADER_BYTES + self.times.len() * 12 + 4);
        tbuf.extend_from_slice(&TIME_INDEX_MAGIC.to_be_bytes());
        tbuf.extend_from_slice(&self.base_offset.to_be_bytes());
        tbuf.extend_from_slice(&(self.times.len() as u32).to_be_bytes());
        for (t, e) in self.times.iter().zip(&self.offsets) {
            tbuf.extend_from_slice(&t.to_be_bytes());
            tbuf.extend_from_slice(&e.rel_offset.to_be_bytes());
        }
        let crc = crc32c::crc32c(&tbuf);
        tbuf.extend_from_slice(&crc.to_be_bytes());
        write_atomically(time_index_path, &tbuf)
    }

    /// Loads both index files if present and consistent with each other, the
    /// segment base offset and the log file length; `None` means rebuild by scanning.
    pub(crate) fn load(
        index_path: &Path,
        time_index_path: &Path,
        base_offset: i64,
        interval_bytes: u32,
        log_file_len_bytes: u64,
    ) -> Option<(SegmentIndex, SegmentSummary)> {
        let buf = std::fs::read(index_path).ok()?;
        let tbuf = std::fs::read(time_index_path).ok()?;
        let body = check_crc(&buf)?;
        let tbody = check_crc(&tbuf)?;
        let mut r = Reader { buf: body, at: 0 };
        if r.u32()? != OFFSET_INDEX_MAGIC || r.u32()? != FORMAT_VERSION {
            return None;
        }
        if r.i64()? != base_offset {
            return None;
        }
        let summary = SegmentSummary {
            size_bytes: r.u64()?,
            next_offset: r.i64()?,
            max_timestamp_ms: r.i64()?,
            max_timestamp_batch_offset: r.i64()?,
            created_ms: r.i64()?,
        };
        let count = r.u32()? as usize;
        if body.len() != OFFSET_HEADER_BYTES + count * OFFSET_ENTRY_BYTES
            || summary.size_bytes > log_file_len_bytes
            || summary.next_offset < base_offset
        {
            return None;
        }
        let mut offsets = Vec::with_capacity(count);
        for _ in 0..count {
            let rel_offset = r.u32()?;
            let position = r.u64()?;
            if position >= summary.size_bytes.max(1) {
                return None;
            }
            offsets.push(OffsetEntry {
                rel_offset,
                position,
            });
        }
        let mut t = Reader { buf: tbody, at: 0 };
        if t.u32()? != TIME_INDEX_MAGIC || t.i64()? != base_offset {
            return None;
        }
        let tcount = t.u32()? as usize;
        if tcount != count || tbody.len() != TIME_HEADER_BYTES + tcount * TIME_ENTRY_BYTES {
            return None;
        }
        let mut times = Vec::with_capacity(count);
        for e in &offsets {
            let ts = t.i64()?;
            if t.u32()? != e.rel_offset {
                return None;
            }
            times.push(ts);
        }
        Some((
            SegmentIndex {
                base_offset,
                interval_bytes: u64::from(interval_bytes.max(1)),
                bytes_since_entry: 0,
                offsets,
                times,
            },
            summary,
        ))
    }
}

fn check_crc(buf: &[u8]) -> Option<&[u8]> {
    if buf.len() < 4 {
        return None;
    }
    let (body, crc) = buf.split_at(buf.len() - 4);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    (crc32c::crc32c(body) == stored).then_some(body)
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.buf.get(self.at..self.at + N)?;
        self.at += N;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Some(out)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take::<8>().map(i64::from_be_bytes)
    }
}

/// Writes a small file durably: temp file, fsync, rename, fsync directory.
/// Blocking std IO: only used for small metadata files at roll/close/admin time.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<(), StorageError> {
    write_atomically_via(path, &path.with_extension("tmp"), data)
}

/// [`write_atomically`] through a caller-chosen temp file, so a writer that
/// runs off the shard thread (on glommio's blocking pool) never shares a temp
/// file with one on the shard writing the same target at the same moment.
pub(crate) fn write_atomically_via(
    path: &Path,
    tmp: &Path,
    data: &[u8],
) -> Result<(), StorageError> {
    let tmp = tmp.to_path_buf();
    let mut f = std::fs::File::create(&tmp).map_err(|e| StorageError::io("create", &tmp, e))?;
    f.write_all(data)
        .map_err(|e| StorageError::io("write", &tmp, e))?;
    f.sync_data()
        .map_err(|e| StorageError::io("fsync", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| StorageError::io("rename", path, e))?;
    if let Some(dir) = path.parent() {
        let d = std::fs::File::open(dir).map_err(|e| StorageError::io("open dir", dir, e))?;
        d.sync_all()
            .map_err(|e| StorageError::io("fsync dir", dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_lookup_and_persistence() {
        let mut idx = SegmentIndex::new(100, 1000);
        // 10 batches of 600 bytes, 5 offsets each, timestamps rising by 10.
        for i in 0..10u64 {
            idx.on_batch(100 + 5 * i as i64, 600 * i, 600, 1000 + 10 * i as i64);
        }
        assert_eq!(idx.len(), 5);
        assert_eq!(idx.position_for_offset(99), 0);
        assert_eq!(idx.position_for_offset(100), 0);
        assert_eq!(idx.position_for_offset(112), 1200);
        assert_eq!(idx.position_for_offset(1000), 4800);
        assert_eq!(idx.position_for_timestamp(0), 0);
        assert_eq!(idx.position_for_timestamp(1041), 2400);

        let dir = tempfile::tempdir().unwrap();
        let (ip, tp) = (dir.path().join("a.index"), dir.path().join("a.timeindex"));
        let summary = SegmentSummary {
            size_bytes: 6000,
            next_offset: 150,
            max_timestamp_ms: 1090,
            max_timestamp_batch_offset: 145,
            created_ms: 5,
        };
        idx.persist(&ip, &tp, &summary).unwrap();
        let (loaded, s) = SegmentIndex::load(&ip, &tp, 100, 1000, 6000).unwrap();
        assert_eq!(s, summary);
        assert_eq!(loaded.offsets, idx.offsets);
        assert_eq!(loaded.times, idx.times);
        // Inconsistent with the log length or base offset: rebuild.
        assert!(SegmentIndex::load(&ip, &tp, 100, 1000, 5000).is_none());
        assert!(SegmentIndex::load(&ip, &tp, 101, 1000, 6000).is_none());
        // Cutting at batch 7 (position 4200) keeps the entries at 0, 1200,
        // 2400 and 3600; the last of them saw timestamps up to 1060.
        assert_eq!(idx.truncation_scan_start(135), 2400);
        assert_eq!(idx.truncation_scan_start(100), 0);
        assert_eq!(idx.max_timestamp_below(4200), 1060);
        assert_eq!(idx.max_timestamp_below(0), -1);
        let mut cut = idx.clone();
        cut.truncate_at(4200);
        assert_eq!(cut.len(), 4);
        assert_eq!(cut.position_for_offset(1000), 3600);
        // The next entry comes one interval after the last kept one, as before the cut.
        cut.on_batch(135, 4200, 600, 1070);
        assert_eq!(cut.len(), 4);
        cut.on_batch(140, 4800, 600, 1080);
        assert_eq!(cut.len(), 5);
        assert_eq!(cut.offsets, idx.offsets);
        cut.truncate_at(0);
        assert_eq!(cut.len(), 0);
        assert_eq!(cut.position_for_offset(1000), 0);
        // Corrupt file: rebuild.
        let mut raw = std::fs::read(&ip).unwrap();
        raw[20] ^= 1;
        std::fs::write(&ip, raw).unwrap();
        assert!(SegmentIndex::load(&ip, &tp, 100, 1000, 6000).is_none());
    }
}
