//! Opening a partition directory: list segments, trust the indexes of closed
//! segments below the recovery point, scan everything else batch by batch
//! (CRC32C and contiguous offsets).
//!
//! Recovery repairs exactly one thing by itself: a torn tail, the bytes a crash or power
//! cut left half-written at the end of the last segment. Damage is a torn tail only when
//! it is in the last segment and either nothing valid follows it there, or the damaged
//! region shows what a lost write leaves (a zeroed sector: a power cut may keep a later
//! sector of one write and lose an earlier one, and none of it was ever flushed). Anything
//! else (damage followed by valid data, damage in a closed segment, a segment missing or
//! out of place) is reported as [`Damage`]: the partition stays offline, no file is
//! changed and no segment is ever deleted; `sluice repair` is the operator's explicit way
//! to accept the loss (see `storage::repair`).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::DmaFile;

use crate::storage::appender::Appender;
use crate::storage::batch::{self, BATCH_HEADER_SIZE_BYTES};
use crate::storage::error::StorageError;
use crate::storage::index::SegmentIndex;
use crate::storage::log::LogConfig;
use crate::storage::segment::{self, scan_batches, ScanEnd, Segment};

/// File holding the log start offset (DeleteRecords), decimal text.
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset";
/// File holding the offset below which everything was durable, decimal text.
pub const RECOVERY_POINT_FILE: &str = "recovery-point";

const RECOVERY_READ_SIZE_BYTES: usize = 1024 * 1024;

/// Sector size: the smallest unit a device writes atomically, so the unit a lost write
/// leaves zeroed.
const SECTOR_BYTES: u64 = 512;

/// What recovery found.
pub(crate) struct Recovered {
    /// Segments in offset order; the last is active. With `damage`, they end with the
    /// damaged segment (holding its valid prefix), and nothing on disk was changed.
    pub segments: Vec<Rc<Segment>>,
    /// Persisted log start offset (not yet clamped to segments).
    pub log_start_offset: i64,
    /// Damage recovery must not repair by itself: the partition stays offline.
    pub damage: Option<Damage>,
}

impl Recovered {
    fn damaged(segments: Vec<Rc<Segment>>, log_start_offset: i64, damage: Damage) -> Recovered {
        tracing::error!(path = %damage.path.display(), position = damage.position, offset = damage.offset, what = %damage.what, "partition log is damaged; it stays offline and no file was changed");
        Recovered {
            segments,
            log_start_offset,
            damage: Some(damage),
        }
    }
}

/// Damage in a partition log that is not a torn tail: where it is and what it looks like,
/// precise enough for an operator to decide what `sluice repair --truncate-to` should cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub path: PathBuf,
    /// Byte position of the first damaged byte range in that file.
    pub position: u64,
    /// The first offset that cannot be read: everything below it is intact.
    pub offset: i64,
    /// What is wrong there.
    pub what: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is damaged at byte {} (offsets from {} cannot be read): {}",
            self.path.display(),
            self.position,
            self.offset,
            self.what
        )
    }
}

/// Reads a small decimal file; `None` if absent or unreadable. Blocking.
pub fn read_offset_file(path: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse().ok()
}

/// Durably writes a small decimal file.
pub fn write_offset_file(path: &Path, value: i64) -> Result<(), StorageError> {
    crate::storage::index::write_atomically(path, format!("{value}\n").as_bytes())
}

/// [`write_offset_file`] through a caller-chosen temp file (see
/// [`crate::storage::index::write_atomically_via`]).
pub(crate) fn write_offset_file_via(
    path: &Path,
    tmp: &Path,
    value: i64,
) -> Result<(), StorageError> {
    crate::storage::index::write_atomically_via(path, tmp, format!("{value}\n").as_bytes())
}

/// Segment-size-derived cap on pre-allocation.
pub(crate) fn max_allocate_bytes(config: &LogConfig) -> u64 {
    config
        .segment_size_bytes
        .saturating_add(config.preallocate_step_bytes.min(config.segment_size_bytes))
}

pub(crate) async fn open_segment_file(path: &Path) -> Result<Rc<DmaFile>, StorageError> {
    let file = super::dma_open::open_rw(path).await?;
    Ok(Rc::new(file))
}

/// Creates an empty segment with its file (used when a directory is new).
pub(crate) async fn create_segment(
    dir: &Path,
    base_offset: i64,
    term: i32,
    config: &LogConfig,
    now_ms: i64,
) -> Result<Rc<Segment>, StorageError> {
    let path = dir.join(segment::segment_file_name(base_offset, term));
    let file = open_segment_file(&path).await?;
    let synced = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || sync_dir(&synced))
        .await?;
    let appender = Appender::open_existing(
        path.clone(),
        file,
        0,
        base_offset,
        0,
        config.preallocate_step_bytes,
        max_allocate_bytes(config),
    )
    .await?;
    Ok(Rc::new(Segment::new(
        base_offset,
        term,
        path,
        appender,
        SegmentIndex::new(base_offset, config.index_interval_bytes),
        now_ms,
    )))
}

/// Opens every segment in `dir`, truncating a torn tail; reports any other damage
/// without changing a file. See module docs.
pub(crate) async fn recover(
    dir: &Path,
    config: &LogConfig,
    now_ms: i64,
) -> Result<Recovered, StorageError> {
    let listed_dir = dir.to_path_buf();
    let listing = glommio::executor()
        .spawn_blocking(move || list_partition_dir(&listed_dir))
        .await?;
    let log_start_offset = listing.log_start_offset.unwrap_or(0);
    let recovery_point = listing.recovery_point.unwrap_or(-1);
    let count = listing.segments.len();
    // Phase 1 reads every segment and changes nothing; phase 2 cuts the torn tail and
    // makes it durable, only once the whole log is known to be sound.
    let mut found: Vec<Found> = Vec::with_capacity(count);
    let mut next_offset: Option<i64> = None;
    for (i, (name, path)) in listing.segments.into_iter().enumerate() {
        let (base, term, compacted_end) = (name.base_offset, name.term, name.compacted_end);
        if let Some(expected) = next_offset.filter(|e| *e != base) {
            let damage = Damage {
                path,
                position: 0,
                offset: expected,
                what: format!(
                    "the segment starts at offset {base} but the log before it ends at offset {expected}: a segment is missing or out of place"
                ),
            };
            return damaged(found, log_start_offset, damage, config, now_ms).await;
        }
        let file = open_segment_file(&path).await?;
        let file_len = file
            .file_size()
            .await
            .map_err(|e| StorageError::glommio("stat segment", &path, e))?;
        let is_last = i + 1 == count;
        if !is_last {
            let indexed =
                open_indexed(&path, &file, base, term, file_len, recovery_point, config).await?;
            if let Some(mut seg) = indexed {
                seg.compacted = compacted_end.is_some();
                next_offset = Some(seg.next_offset());
                found.push(Found::Indexed(seg));
                continue;
            }
        }
        let mut scanned = scan_segment(&file, &path, base, compacted_end, file_len, config).await?;
        if let Some(problem) = scanned.problem.take() {
            let benign = if is_last {
                // A torn tail, or the usual end of written data.
                problem.may_be_torn && is_torn_tail(&file, &path, &problem, file_len).await?
            } else {
                // A closed segment's data ends where its pre-allocated zeros start; it was
                // durable before the next segment's file was created, so it is never torn.
                problem.zero_length
                    && next_valid_batch(&file, &path, problem.position, file_len)
                        .await?
                        .is_none()
            };
            if !benign {
                let what = if is_last {
                    format!(
                        "{}; a valid batch follows it, so it is not a torn tail",
                        problem.reason
                    )
                } else {
                    format!("{}; later segments follow it", problem.reason)
                };
                let damage = Damage {
                    path: path.clone(),
                    position: problem.position,
                    offset: problem.offset,
                    what,
                };
                found.push(Found::Scanned(ScannedFile {
                    path,
                    file,
                    base,
                    term,
                    compacted: compacted_end.is_some(),
                    file_len,
                    scanned,
                }));
                return damaged(found, log_start_offset, damage, config, now_ms).await;
            }
            if is_last && !problem.zero_length {
                tracing::warn!(path = %path.display(), offset = problem.offset, position = problem.position, dropped_bytes = file_len - problem.position, reason = %problem.reason, "truncating a torn tail");
            }
        }
        next_offset = Some(scanned.next_offset);
        found.push(Found::Scanned(ScannedFile {
            path,
            file,
            base,
            term,
            compacted: compacted_end.is_some(),
            file_len,
            scanned,
        }));
    }
    let mut segments: Vec<Rc<Segment>> = Vec::with_capacity(count);
    for (i, f) in found.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let seg = match f {
            Found::Indexed(seg) => seg,
            Found::Scanned(s) => {
                let ScannedFile {
                    path,
                    file,
                    base,
                    term,
                    compacted,
                    file_len,
                    scanned,
                } = s;
                let mut allocated = file_len;
                if scanned.valid_end < file_len {
                    file.truncate(scanned.valid_end)
                        .await
                        .map_err(|e| StorageError::glommio("truncate", &path, e))?;
                    allocated = scanned.valid_end;
                }
                if is_last || allocated < file_len {
                    // What recovery keeps is what the broker serves as committed after a
                    // restart: make it durable (the tail may hold bytes written but never
                    // flushed before a crash), and the truncation too.
                    file.fdatasync()
                        .await
                        .map_err(|e| StorageError::glommio("fdatasync", &path, e))?;
                }
                let mut seg =
                    open_scanned(path, file, base, term, scanned, allocated, config, now_ms)
                        .await?;
                seg.compacted = compacted;
                seg.sealed.set(!is_last);
                seg
            }
        };
        segments.push(Rc::new(seg));
    }
    // An index on disk for the active segment would go stale as it grows.
    if let Some(last) = segments.last() {
        last.sealed.set(false);
        last.index_persisted.set(false);
        let stale = [last.index_path(), last.time_index_path()];
        glommio::executor()
            .spawn_blocking(move || {
                for p in stale {
                    let _ = std::fs::remove_file(p);
                }
            })
            .await;
    }
    Ok(Recovered {
        segments,
        log_start_offset,
        damage: None,
    })
}

/// A segment read by phase 1 of [`recover`].
enum Found {
    /// Trusted through its index files.
    Indexed(Segment),
    /// Scanned; its file not yet changed.
    Scanned(ScannedFile),
}

struct ScannedFile {
    path: PathBuf,
    file: Rc<DmaFile>,
    base: i64,
    term: i32,
    compacted: bool,
    file_len: u64,
    scanned: Scanned,
}

/// The log up to and including the damaged segment, opened over valid prefixes without
/// changing any file: readable for the operator's tools, offline for everything else.
async fn damaged(
    found: Vec<Found>,
    log_start_offset: i64,
    damage: Damage,
    config: &LogConfig,
    now_ms: i64,
) -> Result<Recovered, StorageError> {
    let mut segments = Vec::with_capacity(found.len());
    for f in found {
        let seg = match f {
            Found::Indexed(seg) => seg,
            Found::Scanned(s) => {
                let mut seg = open_scanned(
                    s.path, s.file, s.base, s.term, s.scanned, s.file_len, config, now_ms,
                )
                .await?;
                seg.compacted = s.compacted;
                seg.sealed.set(true);
                seg
            }
        };
        segments.push(Rc::new(seg));
    }
    Ok(Recovered::damaged(segments, log_start_offset, damage))
}

/// What a partition directory holds, read off the shard thread.
struct Listing {
    /// Name and path of every segment file, in offset order.
    segments: Vec<(segment::SegmentName, PathBuf)>,
    log_start_offset: Option<i64>,
    recovery_point: Option<i64>,
}

/// Creates the directory if absent (durably: its parent is fsynced) and lists it.
/// Blocking; runs on glommio's blocking pool.
fn list_partition_dir(dir: &Path) -> Result<Listing, StorageError> {
    if !dir.exists() {
        create_dir_durably(dir)?;
    }
    crate::storage::log::finish_cleaner_swaps(dir)?;
    let mut segments: Vec<(segment::SegmentName, PathBuf)> = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io("list dir", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list dir", dir, e))?;
        let name = entry.file_name();
        if let Some(parsed) = name.to_str().and_then(segment::parse_segment_name) {
            segments.push((parsed, entry.path()));
        }
    }
    segments.sort_by_key(|(n, _)| (n.base_offset, n.term));
    Ok(Listing {
        segments,
        log_start_offset: read_offset_file(&dir.join(LOG_START_OFFSET_FILE)),
        recovery_point: read_offset_file(&dir.join(RECOVERY_POINT_FILE)),
    })
}

/// Creates `dir` and any missing parents, fsyncing each parent whose entry list changed,
/// so a directory acknowledged as created survives a power cut. Blocking.
pub fn create_dir_durably(dir: &Path) -> Result<(), StorageError> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if d.exists() {
            break;
        }
        missing.push(d);
        at = d.parent();
    }
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create dir", dir, e))?;
    for d in missing.iter().rev() {
        if let Some(parent) = d.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// fsyncs a directory: makes the creation, rename or removal of its entries durable.
/// Blocking.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let d = std::fs::File::open(dir).map_err(|e| StorageError::io("open dir", dir, e))?;
    d.sync_all()
        .map_err(|e| StorageError::io("fsync dir", dir, e))
}

/// A closed segment below the recovery point whose index files load: trusted without a scan.
async fn open_indexed(
    path: &Path,
    file: &Rc<DmaFile>,
    base: i64,
    term: i32,
    file_len: u64,
    recovery_point: i64,
    config: &LogConfig,
) -> Result<Option<Segment>, StorageError> {
    let (index_path, time_index_path) = (
        path.with_extension("index"),
        path.with_extension("timeindex"),
    );
    let interval = config.index_interval_bytes;
    let loaded = glommio::executor()
        .spawn_blocking(move || {
            SegmentIndex::load(&index_path, &time_index_path, base, interval, file_len)
        })
        .await;
    let Some((index, summary)) = loaded else {
        return Ok(None);
    };
    if summary.next_offset > recovery_point {
        return Ok(None);
    }
    let appender = Appender::open_existing(
        path.to_path_buf(),
        file.clone(),
        summary.size_bytes,
        summary.next_offset,
        file_len,
        config.preallocate_step_bytes,
        max_allocate_bytes(config),
    )
    .await?;
    let seg = Segment::new(
        base,
        term,
        path.to_path_buf(),
        appender,
        index,
        summary.created_ms,
    );
    seg.max_timestamp_ms.set(summary.max_timestamp_ms);
    seg.max_timestamp_batch_offset
        .set(summary.max_timestamp_batch_offset);
    seg.sealed.set(true);
    seg.index_persisted.set(true);
    Ok(Some(seg))
}

/// The first thing wrong in a segment, found by a scan.
struct Problem {
    /// Where the first batch that cannot be read starts.
    position: u64,
    /// The offset that batch should have had.
    offset: i64,
    reason: String,
    /// The batch's own bytes are invalid (a torn write looks like that), or it is a valid
    /// batch at the wrong offset, which is torn only when its first bytes read as zeros
    /// (see [`is_torn_tail`]).
    may_be_torn: bool,
    /// A valid batch at the wrong offset (rather than invalid bytes).
    misplaced: bool,
    /// The batch's length field reads zero: what the end of written data looks like.
    zero_length: bool,
}

/// A segment scanned batch by batch: its valid prefix and the first problem after it.
struct Scanned {
    index: SegmentIndex,
    valid_end: u64,
    next_offset: i64,
    max_timestamp_ms: i64,
    max_timestamp_batch_offset: i64,
    first_timestamp_ms: Option<i64>,
    problem: Option<Problem>,
}

/// Scans a segment batch by batch. A compacted segment (`compacted_end` from its name) may
/// skip offsets between batches but never goes back, and ends at its named end.
async fn scan_segment(
    file: &DmaFile,
    path: &Path,
    base: i64,
    compacted_end: Option<i64>,
    file_len: u64,
    config: &LogConfig,
) -> Result<Scanned, StorageError> {
    let mut index = SegmentIndex::new(base, config.index_interval_bytes);
    let mut expected = base;
    let mut max_ts = -1i64;
    let mut max_ts_offset = base;
    let mut first_ts: Option<i64> = None;
    let mut gap: Option<(i64, bool)> = None;
    let end = scan_batches(
        file,
        path,
        0,
        file_len,
        RECOVERY_READ_SIZE_BYTES,
        |h, _, pos| {
            let in_place = match compacted_end {
                Some(end) => h.base_offset >= expected && h.last_offset() < end,
                None => h.base_offset == expected,
            };
            if !in_place {
                gap = Some((h.base_offset, false));
                return ControlFlow::Break(());
            }
            if h.check_record_count().is_err() {
                gap = Some((h.base_offset, true));
                return ControlFlow::Break(());
            }
            if h.max_timestamp_ms > max_ts {
                max_ts = h.max_timestamp_ms;
                max_ts_offset = h.base_offset;
            }
            first_ts.get_or_insert(h.max_timestamp_ms);
            index.on_batch(h.base_offset, pos, h.total_size_bytes() as u64, max_ts);
            expected = h.last_offset() + 1;
            ControlFlow::Continue(())
        },
    )
    .await?;
    let (valid_end, problem) = match end {
        ScanEnd::End(p) => (p, None),
        ScanEnd::Stopped(p) => {
            let reason = match gap {
                Some((found, false)) => {
                    format!("a valid batch at offset {found} where offset {expected} was expected")
                }
                _ => "a batch whose record count contradicts its offsets".to_string(),
            };
            let problem = Problem {
                position: p,
                offset: expected,
                reason,
                may_be_torn: matches!(gap, Some((_, false))),
                misplaced: matches!(gap, Some((_, false))),
                zero_length: false,
            };
            (p, Some(problem))
        }
        ScanEnd::Invalid {
            position,
            zero_length,
            reason,
        } => {
            let problem = Problem {
                position,
                offset: expected,
                reason: format!("invalid batch: {reason}"),
                may_be_torn: true,
                misplaced: false,
                zero_length,
            };
            (position, Some(problem))
        }
    };
    // A compacted segment that reads whole ends where its name says.
    let next_offset = match compacted_end {
        Some(end) if problem.is_none() => end,
        _ => expected,
    };
    Ok(Scanned {
        index,
        valid_end,
        next_offset,
        max_timestamp_ms: max_ts,
        max_timestamp_batch_offset: max_ts_offset,
        first_timestamp_ms: first_ts,
        problem,
    })
}

/// Whether damage at the end of the last segment is a torn tail (see module docs): a
/// zero length field where a batch should start (the usual end of written data, or its
/// first sector lost), the batch's first bytes zeroed up to the end of their sector (see
/// [`starts_in_an_older_sector`]), no valid batch anywhere after it, or a zeroed sector
/// between it and the next valid batch (that batch's first bytes included: they are
/// outside its CRC). A valid batch at the wrong offset is torn only by the second rule.
async fn is_torn_tail(
    file: &DmaFile,
    path: &Path,
    problem: &Problem,
    file_len: u64,
) -> Result<bool, StorageError> {
    if problem.zero_length || starts_in_an_older_sector(file, path, problem.position).await? {
        return Ok(true);
    }
    if problem.misplaced {
        return Ok(false);
    }
    let Some(next_valid) = next_valid_batch(file, path, problem.position + 1, file_len).await?
    else {
        return Ok(true);
    };
    // The next valid batch may itself start inside the lost sector: its first bytes (base
    // offset, length, leader epoch) are outside its CRC, so zeros there still verify.
    let to = next_valid + batch::OFF_ATTRIBUTES as u64;
    has_zeroed_sector(file, path, problem.position, to).await
}

/// Position of the first whole valid batch (length, magic and CRC) starting at or after
/// `from`, wherever it starts. Only run on damage, so a plain byte-by-byte search.
async fn next_valid_batch(
    file: &DmaFile,
    path: &Path,
    from: u64,
    file_len: u64,
) -> Result<Option<u64>, StorageError> {
    let mut chunk_start = from;
    while chunk_start + (BATCH_HEADER_SIZE_BYTES as u64) <= file_len {
        let want = (RECOVERY_READ_SIZE_BYTES as u64).min(file_len - chunk_start) as usize;
        let buf = file
            .read_at(chunk_start, want)
            .await
            .map_err(|e| StorageError::glommio("read", path, e))?;
        if buf.len() < BATCH_HEADER_SIZE_BYTES {
            break;
        }
        for at in 0..=buf.len() - BATCH_HEADER_SIZE_BYTES {
            if buf[at + batch::OFF_MAGIC] as i8 != batch::MAGIC_V2 {
                continue;
            }
            let Some(size) = batch::peek_total_size_bytes(&buf[at..]) else {
                continue;
            };
            let here = chunk_start + at as u64;
            if here + size as u64 > file_len {
                continue;
            }
            let valid = if at + size <= buf.len() {
                batch::parse_and_verify(&buf[at..at + size]).is_ok()
            } else {
                let whole = file
                    .read_at(here, size)
                    .await
                    .map_err(|e| StorageError::glommio("read", path, e))?;
                whole.len() == size && batch::parse_and_verify(&whole[..]).is_ok()
            };
            if valid {
                return Ok(Some(here));
            }
        }
        // The next chunk starts where a header could no longer fit in this one.
        chunk_start += (buf.len() - BATCH_HEADER_SIZE_BYTES + 1) as u64;
    }
    Ok(None)
}

/// Whether the batch expected at `position` starts mid-sector and every byte from it to
/// the end of that sector, its whole base offset at least, reads as zero. A batch at a
/// nonzero offset never has a zero base offset, so the sector holds an older image: the
/// earlier write that ended at `position` (padded with zeros) survived the power cut and
/// the later write that put this batch's first bytes there was lost. Its base offset and
/// length are outside the CRC, so the batch may even verify, at offset 0.
async fn starts_in_an_older_sector(
    file: &DmaFile,
    path: &Path,
    position: u64,
) -> Result<bool, StorageError> {
    let sector = position / SECTOR_BYTES * SECTOR_BYTES;
    let within = (position - sector) as usize;
    if within == 0 || SECTOR_BYTES as usize - within < batch::OFF_BATCH_LENGTH {
        return Ok(false);
    }
    let buf = file
        .read_at(sector, SECTOR_BYTES as usize)
        .await
        .map_err(|e| StorageError::glommio("read", path, e))?;
    Ok(buf.len() == SECTOR_BYTES as usize && buf[within..].iter().all(|b| *b == 0))
}

/// Whether a whole sector inside `[from, to)` reads as zeros: what a write that never
/// reached the device leaves in a pre-allocated file.
async fn has_zeroed_sector(
    file: &DmaFile,
    path: &Path,
    from: u64,
    to: u64,
) -> Result<bool, StorageError> {
    let mut sector = from.div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
    while sector + SECTOR_BYTES <= to {
        let want = (RECOVERY_READ_SIZE_BYTES as u64).min(to - sector) / SECTOR_BYTES * SECTOR_BYTES;
        let buf = file
            .read_at(sector, want as usize)
            .await
            .map_err(|e| StorageError::glommio("read", path, e))?;
        if buf.is_empty() {
            break;
        }
        if buf
            .chunks_exact(SECTOR_BYTES as usize)
            .any(|s| s.iter().all(|b| *b == 0))
        {
            return Ok(true);
        }
        sector += buf.len() as u64 / SECTOR_BYTES * SECTOR_BYTES;
        if buf.len() < SECTOR_BYTES as usize {
            break;
        }
    }
    Ok(false)
}

/// A scanned segment as an open `Segment` over its valid prefix.
#[allow(clippy::too_many_arguments)]
async fn open_scanned(
    path: PathBuf,
    file: Rc<DmaFile>,
    base: i64,
    term: i32,
    scanned: Scanned,
    allocated: u64,
    config: &LogConfig,
    now_ms: i64,
) -> Result<Segment, StorageError> {
    let appender = Appender::open_existing(
        path.clone(),
        file,
        scanned.valid_end,
        scanned.next_offset,
        allocated,
        config.preallocate_step_bytes,
        max_allocate_bytes(config),
    )
    .await?;
    let created = scanned
        .first_timestamp_ms
        .filter(|t| *t >= 0)
        .unwrap_or(now_ms);
    let seg = Segment::new(base, term, path, appender, scanned.index, created);
    seg.max_timestamp_ms.set(scanned.max_timestamp_ms);
    seg.max_timestamp_batch_offset
        .set(scanned.max_timestamp_batch_offset);
    Ok(seg)
}
