//! A segment: one file `<base_offset:020>-<term>.log` of whole batches plus
//! its sparse indexes and summary (size, next offset, max timestamp).
//! Also the batch scanner shared by reads, timestamp lookups and recovery.

use std::cell::{Cell, RefCell};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::DmaFile;

use crate::storage::appender::Appender;
use crate::storage::batch::{self, BatchHeader, LOG_OVERHEAD_BYTES};
use crate::storage::error::StorageError;
use crate::storage::index::{SegmentIndex, SegmentSummary};

/// One segment of a partition log.
pub(crate) struct Segment {
    /// Offset of the first batch.
    pub base_offset: i64,
    /// Raft term (leader epoch) of every batch in the segment.
    pub term: i32,
    /// Path of the `.log` file.
    pub path: PathBuf,
    /// Writes (and holds the file for reads).
    pub appender: Rc<Appender>,
    /// Sparse offset/time indexes.
    pub index: RefCell<SegmentIndex>,
    /// Largest batch max timestamp, -1 if empty.
    pub max_timestamp_ms: Cell<i64>,
    /// Base offset of the batch holding `max_timestamp_ms`.
    pub max_timestamp_batch_offset: Cell<i64>,
    /// When the segment was started (segment.ms).
    pub created_ms: Cell<i64>,
    /// No more appends go here.
    pub sealed: Cell<bool>,
    /// Index files on disk match the sealed segment.
    pub index_persisted: Cell<bool>,
    /// Written by the cleaner: offsets may be missing inside it, and its file name holds
    /// its end offset.
    pub compacted: bool,
    /// The oldest timestamp of a tombstone or spent transaction marker the cleaner kept
    /// here (it goes once older than `delete.retention.ms`, and that alone makes a pass
    /// due); known since the cleaner wrote the segment, not across restarts.
    pub oldest_tombstone_ms: Cell<Option<i64>>,
}

/// File name of a segment.
pub fn segment_file_name(base_offset: i64, term: i32) -> String {
    format!("{base_offset:020}-{term}.log")
}

/// File name of a segment written by the cleaner: it holds offsets `[base_offset,
/// end_offset)` with gaps, so its end is in its name (its last batch may end earlier).
pub fn compacted_segment_file_name(base_offset: i64, term: i32, end_offset: i64) -> String {
    format!("{base_offset:020}-{term}-{end_offset:020}.log")
}

/// Parses `<base>-<term>.log` or a compacted `<base>-<term>-<end>.log` into (base, term);
/// `None` for any other file.
pub fn parse_segment_file_name(name: &str) -> Option<(i64, i32)> {
    parse_segment_name(name).map(|n| (n.base_offset, n.term))
}

/// What a segment's file name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentName {
    pub base_offset: i64,
    pub term: i32,
    /// The end offset of a compacted segment (offsets may be missing before it).
    pub compacted_end: Option<i64>,
}

/// Parses either segment file name form.
pub(crate) fn parse_segment_name(name: &str) -> Option<SegmentName> {
    let stem = name.strip_suffix(".log")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut parts = stem.split('-');
    let (base, term) = (parts.next()?, parts.next()?);
    let end = parts.next();
    if parts.next().is_some() || !digits(base) || end.is_some_and(|e| !digits(e)) {
        return None;
    }
    let name = SegmentName {
        base_offset: base.parse().ok()?,
        term: term.parse().ok()?,
        compacted_end: match end {
            Some(e) => Some(e.parse().ok()?),
            None => None,
        },
    };
    // A compacted segment never ends before it starts.
    (name.compacted_end.unwrap_or(name.base_offset) >= name.base_offset).then_some(name)
}

impl Segment {
    /// Wraps an appender (new or recovered) into a segment.
    pub(crate) fn new(
        base_offset: i64,
        term: i32,
        path: PathBuf,
        appender: Appender,
        index: SegmentIndex,
        created_ms: i64,
    ) -> Segment {
        Segment {
            base_offset,
            term,
            path,
            appender: Rc::new(appender),
            index: RefCell::new(index),
            max_timestamp_ms: Cell::new(-1),
            max_timestamp_batch_offset: Cell::new(base_offset),
            created_ms: Cell::new(created_ms),
            sealed: Cell::new(false),
            index_persisted: Cell::new(false),
            compacted: false,
            oldest_tombstone_ms: Cell::new(None),
        }
    }

    /// `<segment>.index` path.
    pub(crate) fn index_path(&self) -> PathBuf {
        self.path.with_extension("index")
    }

    /// `<segment>.timeindex` path.
    pub(crate) fn time_index_path(&self) -> PathBuf {
        self.path.with_extension("timeindex")
    }

    /// Bytes of data appended.
    pub(crate) fn size_bytes(&self) -> u64 {
        self.appender.end_pos()
    }

    /// Offset after the last batch.
    pub(crate) fn next_offset(&self) -> i64 {
        self.appender.end_offset()
    }

    /// Has no batch.
    pub(crate) fn is_empty(&self) -> bool {
        self.size_bytes() == 0
    }

    /// Updates index and max timestamp for a batch stored at `position`.
    pub(crate) fn on_batch(&self, header: &BatchHeader, position: u64) {
        if header.max_timestamp_ms > self.max_timestamp_ms.get() {
            self.max_timestamp_ms.set(header.max_timestamp_ms);
            self.max_timestamp_batch_offset.set(header.base_offset);
        }
        self.index.borrow_mut().on_batch(
            header.base_offset,
            position,
            header.total_size_bytes() as u64,
            self.max_timestamp_ms.get(),
        );
    }

    /// The summary persisted with the index.
    pub(crate) fn summary(&self) -> SegmentSummary {
        SegmentSummary {
            size_bytes: self.size_bytes(),
            next_offset: self.next_offset(),
            max_timestamp_ms: self.max_timestamp_ms.get(),
            max_timestamp_batch_offset: self.max_timestamp_batch_offset.get(),
            created_ms: self.created_ms.get(),
        }
    }

    /// The blocking work of writing the index files as they are now, to run on glommio's
    /// blocking pool (the shard thread never waits on the file system); `None` when the
    /// segment has no file. The caller marks `index_persisted` once it succeeded.
    pub(crate) fn index_job(
        &self,
    ) -> Option<impl FnOnce() -> Result<(), StorageError> + Send + 'static> {
        self.appender.file()?;
        let index = self.index.borrow().clone();
        let (index_path, time_index_path, summary) =
            (self.index_path(), self.time_index_path(), self.summary());
        Some(move || index.persist(&index_path, &time_index_path, &summary))
    }

    /// The blocking work of deleting the segment's files and making that durable (the open
    /// file stays readable by in-flight reads), for glommio's blocking pool.
    pub(crate) fn remove_job(&self) -> impl FnOnce() -> Result<(), StorageError> + Send + 'static {
        let paths = [self.path.clone(), self.index_path(), self.time_index_path()];
        move || {
            remove_files(&paths)?;
            match paths[0].parent() {
                Some(dir) => crate::storage::recovery::sync_dir(dir),
                None => Ok(()),
            }
        }
    }
}

/// Deletes files, ignoring the ones already gone. Blocking.
pub(crate) fn remove_files(paths: &[PathBuf]) -> Result<(), StorageError> {
    for p in paths {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("remove", p, e)),
        }
    }
    Ok(())
}

/// How a scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// Reached `end_pos` exactly.
    End(u64),
    /// The visitor stopped at the batch starting here.
    Stopped(u64),
    /// Bytes at `position` are not a valid whole batch.
    Invalid {
        /// Where the invalid data starts.
        position: u64,
        /// True when the length field is zero (normal end of pre-allocated data).
        zero_length: bool,
        /// What is wrong.
        reason: String,
    },
}

impl ScanEnd {
    /// For readers of data already acknowledged: an invalid batch there is corruption of
    /// `path`, reported with its position; any other end is fine.
    pub(crate) fn corrupt_if_invalid(self, path: &Path) -> Result<(), StorageError> {
        match self {
            ScanEnd::Invalid {
                position, reason, ..
            } => Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                position,
                reason,
            }),
            ScanEnd::End(_) | ScanEnd::Stopped(_) => Ok(()),
        }
    }
}

/// What a reader wants done with a batch, decided from its header before its CRC is
/// checked: a batch a read does not return is never verified, so damage next to the data
/// a read needs does not fail that read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peek {
    /// Verify it and visit it.
    Read,
    /// Step over it (it lies before what the read wants).
    Skip,
    /// Stop the scan before it (the read is full or past its limit).
    Stop,
}

/// Scans whole batches in `[start_pos, end_pos)`, verifying each CRC, and
/// calls `visit(header, bytes, position)` for each valid one.
pub(crate) async fn scan_batches<F>(
    file: &DmaFile,
    path: &Path,
    start_pos: u64,
    end_pos: u64,
    read_size_bytes: usize,
    visit: F,
) -> Result<ScanEnd, StorageError>
where
    F: FnMut(&BatchHeader, &[u8], u64) -> ControlFlow<()>,
{
    scan_batches_peeking(
        file,
        path,
        start_pos,
        end_pos,
        read_size_bytes,
        |_, _| Peek::Read,
        visit,
    )
    .await
}

/// [`scan_batches`] for readers: `peek(header, size)` first decides from the (unverified)
/// header whether the batch is read, stepped over or ends the scan (`ScanEnd::Stopped`).
pub(crate) async fn scan_batches_peeking<P, F>(
    file: &DmaFile,
    path: &Path,
    start_pos: u64,
    end_pos: u64,
    read_size_bytes: usize,
    mut peek: P,
    mut visit: F,
) -> Result<ScanEnd, StorageError>
where
    P: FnMut(&BatchHeader, usize) -> Peek,
    F: FnMut(&BatchHeader, &[u8], u64) -> ControlFlow<()>,
{
    let mut pos = start_pos;
    let read_size_bytes = read_size_bytes.max(64 * 1024);
    while pos < end_pos {
        let want = (read_size_bytes as u64).min(end_pos - pos) as usize;
        let buf = file
            .read_at(pos, want)
            .await
            .map_err(|e| StorageError::glommio("read", path, e))?;
        let mut at = 0usize;
        loop {
            let rest = &buf[at..];
            let here = pos + at as u64;
            if rest.len() < LOG_OVERHEAD_BYTES {
                if at == 0 {
                    return Ok(invalid(here, false, "truncated batch length field"));
                }
                break;
            }
            let Some(size) = batch::peek_total_size_bytes(rest) else {
                let zero = rest[8..12] == [0, 0, 0, 0];
                return Ok(invalid(here, zero, "invalid batch length"));
            };
            if here + size as u64 > end_pos {
                return Ok(invalid(here, false, "batch extends past end of data"));
            }
            // An unparsable header is left to the verification below, which reports it.
            match BatchHeader::parse(rest).map(|h| peek(&h, size)) {
                Ok(Peek::Stop) => return Ok(ScanEnd::Stopped(here)),
                Ok(Peek::Skip) => {
                    at += size;
                    if at > buf.len() {
                        break;
                    }
                    continue;
                }
                Ok(Peek::Read) | Err(_) => {}
            }
            if size > rest.len() {
                if at > 0 {
                    break;
                }
                // A batch bigger than the read buffer: read it whole.
                let whole = file
                    .read_at(here, size)
                    .await
                    .map_err(|e| StorageError::glommio("read", path, e))?;
                if whole.len() < size {
                    return Ok(invalid(here, false, "short read of batch"));
                }
                match batch::parse_and_verify(&whole[..size]) {
                    Ok(h) => {
                        if visit(&h, &whole[..size], here).is_break() {
                            return Ok(ScanEnd::Stopped(here));
                        }
                    }
                    Err(e) => return Ok(invalid(here, false, &e.to_string())),
                }
                at = size;
                break;
            }
            match batch::parse_and_verify(&rest[..size]) {
                Ok(h) => {
                    if visit(&h, &rest[..size], here).is_break() {
                        return Ok(ScanEnd::Stopped(here));
                    }
                }
                Err(e) => return Ok(invalid(here, false, &e.to_string())),
            }
            at += size;
        }
        pos += at as u64;
    }
    Ok(ScanEnd::End(pos))
}

fn invalid(position: u64, zero_length: bool, reason: &str) -> ScanEnd {
    ScanEnd::Invalid {
        position,
        zero_length,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let n = segment_file_name(42, 3);
        assert_eq!(n, "00000000000000000042-3.log");
        assert_eq!(parse_segment_file_name(&n), Some((42, 3)));
        assert_eq!(
            parse_segment_file_name("00000000000000000042-3.index"),
            None
        );
        assert_eq!(parse_segment_file_name("x-3.log"), None);
        let c = compacted_segment_file_name(42, 3, 90);
        assert_eq!(c, "00000000000000000042-3-00000000000000000090.log");
        assert_eq!(
            parse_segment_name(&c),
            Some(SegmentName {
                base_offset: 42,
                term: 3,
                compacted_end: Some(90)
            })
        );
        assert_eq!(parse_segment_file_name(&c), Some((42, 3)));
        assert_eq!(
            parse_segment_name(&compacted_segment_file_name(42, 3, 41)),
            None
        );
        assert_eq!(parse_segment_name("1-2-3-4.log"), None);
    }
}
