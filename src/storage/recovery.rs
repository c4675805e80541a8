//! Opening a partition directory: list segments, trust the indexes of closed
//! segments below the recovery point, scan everything else batch by batch
//! (CRC32C and contiguous offsets), and truncate at the first bad, torn or
//! zero batch so that nothing invalid is ever served or kept.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::DmaFile;

use crate::storage::appender::Appender;
use crate::storage::error::StorageError;
use crate::storage::index::SegmentIndex;
use crate::storage::log::LogConfig;
use crate::storage::segment::{self, scan_batches, ScanEnd, Segment};

/// File holding the log start offset (DeleteRecords), decimal text.
pub(crate) const LOG_START_OFFSET_FILE: &str = "log-start-offset";
/// File holding the offset below which everything was durable, decimal text.
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point";

const RECOVERY_READ_SIZE_BYTES: usize = 1024 * 1024;

/// What recovery found.
pub(crate) struct Recovered {
    /// Segments in offset order; the last is active.
    pub segments: Vec<Rc<Segment>>,
    /// Persisted log start offset (not yet clamped to segments).
    pub log_start_offset: i64,
}

/// Reads a small decimal file; `None` if absent or unreadable.
pub(crate) fn read_offset_file(path: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse().ok()
}

/// Durably writes a small decimal file.
pub(crate) fn write_offset_file(path: &Path, value: i64) -> Result<(), StorageError> {
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

/// Opens every segment in `dir`, repairing the tail. See module docs.
pub(crate) async fn recover(
    dir: &Path,
    config: &LogConfig,
    now_ms: i64,
) -> Result<Recovered, StorageError> {
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create dir", dir, e))?;
    let mut found: Vec<(i64, i32, PathBuf)> = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io("list dir", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list dir", dir, e))?;
        let name = entry.file_name();
        if let Some((base, term)) = name.to_str().and_then(segment::parse_segment_file_name) {
            found.push((base, term, entry.path()));
        }
    }
    found.sort_by_key(|(base, term, _)| (*base, *term));
    let log_start_offset = read_offset_file(&dir.join(LOG_START_OFFSET_FILE)).unwrap_or(0);
    let recovery_point = read_offset_file(&dir.join(RECOVERY_POINT_FILE)).unwrap_or(-1);

    let mut segments: Vec<Rc<Segment>> = Vec::with_capacity(found.len());
    let mut drop_rest_from: Option<usize> = None;
    let count = found.len();
    for (i, (base, term, path)) in found.iter().enumerate() {
        let (base, term) = (*base, *term);
        if let Some(prev) = segments.last() {
            if prev.next_offset() != base {
                tracing::warn!(
                    path = %path.display(),
                    expected_base_offset = prev.next_offset(),
                    base_offset = base,
                    "segment does not continue the log; dropping it and later segments"
                );
                drop_rest_from = Some(i);
                break;
            }
        }
        let file = open_segment_file(path).await?;
        let file_len = file
            .file_size()
            .await
            .map_err(|e| StorageError::glommio("stat segment", path, e))?;
        let is_last = i + 1 == count;
        let index_path = path.with_extension("index");
        let time_index_path = path.with_extension("timeindex");
        if !is_last {
            if let Some((index, summary)) = SegmentIndex::load(
                &index_path,
                &time_index_path,
                base,
                config.index_interval_bytes,
                file_len,
            ) {
                if summary.next_offset <= recovery_point {
                    let appender = Appender::open_existing(
                        path.clone(),
                        file,
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
                        path.clone(),
                        appender,
                        index,
                        summary.created_ms,
                    );
                    seg.max_timestamp_ms.set(summary.max_timestamp_ms);
                    seg.max_timestamp_batch_offset
                        .set(summary.max_timestamp_batch_offset);
                    seg.sealed.set(true);
                    seg.index_persisted.set(true);
                    segments.push(Rc::new(seg));
                    continue;
                }
            }
        }
        // Scan every batch.
        let mut index = SegmentIndex::new(base, config.index_interval_bytes);
        let mut expected = base;
        let mut max_ts = -1i64;
        let mut max_ts_offset = base;
        let mut first_ts: Option<i64> = None;
        let mut gap: Option<(i64, i64)> = None;
        let end = scan_batches(
            &file,
            path,
            0,
            file_len,
            RECOVERY_READ_SIZE_BYTES,
            |h, _, pos| {
                if h.base_offset != expected || h.check_record_count().is_err() {
                    gap = Some((expected, h.base_offset));
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
        let (valid_end, clean) = match &end {
            ScanEnd::End(p) => (*p, true),
            ScanEnd::Stopped(p) => {
                if let Some((want, got)) = gap {
                    tracing::warn!(
                        path = %path.display(),
                        position = p,
                        expected_offset = want,
                        found_offset = got,
                        "non-contiguous batch offset"
                    );
                }
                (*p, false)
            }
            ScanEnd::Invalid {
                position,
                zero_length,
                reason,
            } => {
                if !zero_length {
                    tracing::warn!(path = %path.display(), position, reason = %reason, "invalid batch");
                }
                (*position, *zero_length)
            }
        };
        let mut allocated = file_len;
        if valid_end < file_len {
            file.truncate(valid_end)
                .await
                .map_err(|e| StorageError::glommio("truncate", path, e))?;
            allocated = valid_end;
            let msg = "truncated segment at end of valid data";
            if clean {
                tracing::debug!(path = %path.display(), offset = expected, position = valid_end, dropped_bytes = file_len - valid_end, "{msg}");
            } else {
                tracing::warn!(path = %path.display(), offset = expected, position = valid_end, dropped_bytes = file_len - valid_end, "{msg}");
            }
            file.fdatasync()
                .await
                .map_err(|e| StorageError::glommio("fdatasync", path, e))?;
        }
        let appender = Appender::open_existing(
            path.clone(),
            file,
            valid_end,
            expected,
            allocated,
            config.preallocate_step_bytes,
            max_allocate_bytes(config),
        )
        .await?;
        let created = first_ts.filter(|t| *t >= 0).unwrap_or(now_ms);
        let seg = Segment::new(base, term, path.clone(), appender, index, created);
        seg.max_timestamp_ms.set(max_ts);
        seg.max_timestamp_batch_offset.set(max_ts_offset);
        seg.sealed.set(!is_last);
        segments.push(Rc::new(seg));
        if !clean && !is_last {
            tracing::warn!(path = %path.display(), "corruption in a closed segment; dropping later segments");
            drop_rest_from = Some(i + 1);
            break;
        }
    }
    if let Some(from) = drop_rest_from {
        for (_, _, path) in &found[from..] {
            for p in [
                path.clone(),
                path.with_extension("index"),
                path.with_extension("timeindex"),
            ] {
                if let Err(e) = std::fs::remove_file(&p) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(StorageError::io("remove", p, e));
                    }
                }
            }
        }
    }
    // An index on disk for the (now) active segment would go stale as it grows.
    if let Some(last) = segments.last() {
        last.sealed.set(false);
        last.index_persisted.set(false);
        for p in [last.index_path(), last.time_index_path()] {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(Recovered {
        segments,
        log_start_offset,
    })
}
