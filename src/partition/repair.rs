//! `sluice repair`: the operator's explicit acceptance of a loss. Recovery never cuts
//! damaged data that is not a torn tail (the partition stays offline instead); this cuts a
//! stopped broker's partition at a chosen offset, keeping everything it removes: the cut
//! part of the segment goes to a `.corrupt` file beside it, later segments are renamed to
//! `.corrupt`, and the partition's leader epoch is bumped so consumers that read past the
//! cut detect the truncation (OffsetForLeaderEpoch) instead of silently reading new data at
//! old offsets.
//!
//! Plain blocking file I/O: it runs in the CLI, with the data directory locked, never on a
//! shard.

use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::raft::bump_term;
use crate::storage::batch::{parse_and_verify, peek_total_size_bytes, LOG_OVERHEAD_BYTES};
use crate::storage::{
    parse_segment_file_name, read_offset_file, write_offset_file, LOG_START_OFFSET_FILE,
    RECOVERY_POINT_FILE,
};

/// Why a repair cannot be planned or done; each says what to choose instead.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The directory holds no segment at or below the offset.
    #[error(
        "{dir} has no segment holding offset {offset} (its first segment starts at {first:?})"
    )]
    NoSegment {
        /// The partition directory.
        dir: PathBuf,
        /// The offset asked for.
        offset: i64,
        /// Base offset of the first segment, if any.
        first: Option<i64>,
    },
    /// The offset is inside a batch: a cut must fall between batches.
    #[error("offset {offset} is inside the batch of offsets {base}..={last} in {path}; truncate to {base} or {next}", next = last + 1)]
    InsideBatch {
        /// The offset asked for.
        offset: i64,
        /// The batch's first offset.
        base: i64,
        /// The batch's last offset.
        last: i64,
        /// The segment.
        path: PathBuf,
    },
    /// The segment's data cannot be read up to the offset.
    #[error("{path} cannot be read past offset {readable_to} (byte {position}: {reason}); truncate to {readable_to} or lower")]
    DamagedBefore {
        /// The segment.
        path: PathBuf,
        /// The first offset that cannot be read.
        readable_to: i64,
        /// Where.
        position: u64,
        /// What is wrong there.
        reason: String,
    },
    /// The epoch could not be bumped.
    #[error("bumping the leader epoch in {dir}: {reason}")]
    Epoch {
        /// The partition directory.
        dir: PathBuf,
        /// What failed.
        reason: String,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RepairError + 'a {
    move |source| RepairError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What a repair does, computed without changing anything (the dry run prints it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairPlan {
    /// The partition directory.
    pub dir: PathBuf,
    /// The offset the log ends at afterwards.
    pub truncate_to: i64,
    /// The segment cut in place.
    pub segment: PathBuf,
    /// Its first offset.
    pub segment_base_offset: i64,
    /// Byte position of the cut.
    pub position: u64,
    /// Bytes after the cut that hold data (trailing pre-allocated zeros excluded).
    pub cut_bytes: u64,
    /// Where those bytes are kept.
    pub cut_to: PathBuf,
    /// Later segments renamed aside: (from, to, bytes).
    pub moved: Vec<(PathBuf, PathBuf, u64)>,
}

impl fmt::Display for RepairPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "partition directory: {}", self.dir.display())?;
        writeln!(
            f,
            "cut {} at byte {}: keeps offsets {}..{} of it; {} bytes after the cut go to {}",
            self.segment.display(),
            self.position,
            self.segment_base_offset,
            self.truncate_to,
            self.cut_bytes,
            self.cut_to.display()
        )?;
        for (from, to, bytes) in &self.moved {
            writeln!(
                f,
                "move later segment {} ({bytes} bytes) to {}",
                from.display(),
                to.display()
            )?;
        }
        write!(
            f,
            "the log ends at offset {} afterwards and the partition starts a new leader epoch",
            self.truncate_to
        )
    }
}

/// Plans cutting the partition in `dir` so that its log ends at `truncate_to`, which must
/// be a batch boundary reached by valid data. Changes nothing.
pub fn plan(dir: &Path, truncate_to: i64) -> Result<RepairPlan, RepairError> {
    let mut segments: Vec<(i64, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name();
        if let Some((base, _)) = name.to_str().and_then(parse_segment_file_name) {
            segments.push((base, entry.path()));
        }
    }
    segments.sort();
    let k = segments.partition_point(|(base, _)| *base <= truncate_to);
    if k == 0 {
        return Err(RepairError::NoSegment {
            dir: dir.to_path_buf(),
            offset: truncate_to,
            first: segments.first().map(|(b, _)| *b),
        });
    }
    let (base, path) = segments[k - 1].clone();
    let position = find_cut(&path, base, truncate_to)?;
    let segment_end = data_end(&path)?;
    let cut_to = aside_path(&path, Some(position));
    let mut moved = Vec::new();
    for (_, later) in &segments[k..] {
        let bytes = data_end(later)?;
        moved.push((later.clone(), aside_path(later, None), bytes));
    }
    Ok(RepairPlan {
        dir: dir.to_path_buf(),
        truncate_to,
        segment: path,
        segment_base_offset: base,
        position,
        cut_bytes: segment_end.saturating_sub(position),
        cut_to,
        moved,
    })
}

/// Carries out `plan`: keeps the cut bytes and later segments as `.corrupt` files, cuts the
/// segment, lowers the recovery point and log start to the new end, bumps the epoch, and
/// makes each step durable before the next.
pub fn execute(plan: &RepairPlan) -> Result<(), RepairError> {
    let dir = &plan.dir;
    // 1. Keep the cut bytes.
    if plan.cut_bytes > 0 {
        let mut from = File::open(&plan.segment).map_err(io_err("open", &plan.segment))?;
        from.seek(SeekFrom::Start(plan.position))
            .map_err(io_err("seek", &plan.segment))?;
        let mut to = File::create(&plan.cut_to).map_err(io_err("create", &plan.cut_to))?;
        std::io::copy(&mut from.take(plan.cut_bytes), &mut to)
            .map_err(io_err("copy to", &plan.cut_to))?;
        to.flush()
            .and_then(|()| to.sync_all())
            .map_err(io_err("fsync", &plan.cut_to))?;
    }
    // 2. Lower the offset files first, so no crash leaves them above the data.
    let recovery_point = dir.join(RECOVERY_POINT_FILE);
    let lowered = read_offset_file(&recovery_point)
        .unwrap_or(plan.segment_base_offset)
        .min(plan.segment_base_offset);
    write_offset_file(&recovery_point, lowered).map_err(|e| RepairError::Io {
        op: "write",
        path: recovery_point.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let log_start = dir.join(LOG_START_OFFSET_FILE);
    if let Some(start) = read_offset_file(&log_start) {
        if start > plan.truncate_to {
            write_offset_file(&log_start, plan.truncate_to).map_err(|e| RepairError::Io {
                op: "write",
                path: log_start.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
    }
    // 3. Move later segments aside (their indexes are derived data: removed).
    for (from, to, _) in &plan.moved {
        fs::rename(from, to).map_err(io_err("rename", from))?;
        remove_indexes(from)?;
    }
    // 4. Cut the segment; recovery rebuilds its index.
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&plan.segment)
        .map_err(io_err("open", &plan.segment))?;
    file.set_len(plan.position)
        .and_then(|()| file.sync_all())
        .map_err(io_err("truncate", &plan.segment))?;
    remove_indexes(&plan.segment)?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))?;
    // 5. A new leader epoch for what is written after the cut.
    bump_term(dir, 0).map_err(|e| RepairError::Epoch {
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(())
}

/// Byte position of the batch boundary at `offset` in the segment at `path`, reading
/// batches from its start (each CRC checked).
fn find_cut(path: &Path, base: i64, offset: i64) -> Result<u64, RepairError> {
    let mut file = File::open(path).map_err(io_err("open", path))?;
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    let mut position = 0u64;
    let mut expected = base;
    let mut buf = Vec::new();
    loop {
        if expected == offset {
            return Ok(position);
        }
        let damaged = |reason: &str| RepairError::DamagedBefore {
            path: path.to_path_buf(),
            readable_to: expected,
            position,
            reason: reason.to_string(),
        };
        if position + LOG_OVERHEAD_BYTES as u64 > len {
            return Err(damaged("end of the segment"));
        }
        let mut head = [0u8; LOG_OVERHEAD_BYTES];
        file.read_exact(&mut head).map_err(io_err("read", path))?;
        let Some(size) = peek_total_size_bytes(&head) else {
            return Err(damaged("no batch (invalid length)"));
        };
        if position + size as u64 > len {
            return Err(damaged("batch extends past the end of the file"));
        }
        buf.clear();
        buf.extend_from_slice(&head);
        buf.resize(size, 0);
        file.read_exact(&mut buf[LOG_OVERHEAD_BYTES..])
            .map_err(io_err("read", path))?;
        let header = parse_and_verify(&buf).map_err(|e| damaged(&e.to_string()))?;
        if header.base_offset != expected {
            return Err(damaged(&format!(
                "batch at offset {} where {expected} was expected",
                header.base_offset
            )));
        }
        if header.base_offset < offset && offset <= header.last_offset() {
            return Err(RepairError::InsideBatch {
                offset,
                base: header.base_offset,
                last: header.last_offset(),
                path: path.to_path_buf(),
            });
        }
        expected = header.last_offset() + 1;
        position += size as u64;
    }
}

/// Length of the file without its trailing zero bytes (pre-allocated space).
fn data_end(path: &Path) -> Result<u64, RepairError> {
    let mut file = File::open(path).map_err(io_err("open", path))?;
    let mut end = file.metadata().map_err(io_err("stat", path))?.len();
    let mut buf = vec![0u8; 1 << 20];
    while end > 0 {
        let step = (buf.len() as u64).min(end);
        file.seek(SeekFrom::Start(end - step))
            .map_err(io_err("seek", path))?;
        let chunk = &mut buf[..step as usize];
        file.read_exact(chunk).map_err(io_err("read", path))?;
        if let Some(last) = chunk.iter().rposition(|b| *b != 0) {
            return Ok(end - step + last as u64 + 1);
        }
        end -= step;
    }
    Ok(0)
}

/// `<segment>.log.corrupt`, or `<segment>.log.<position>.corrupt` for the cut part of a
/// segment (the position says where in the segment those bytes were).
fn aside_path(path: &Path, position: Option<u64>) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = match position {
        Some(p) => format!("{name}.{p}.corrupt"),
        None => format!("{name}.corrupt"),
    };
    path.with_file_name(aside)
}

fn remove_indexes(segment: &Path) -> Result<(), RepairError> {
    for p in [
        segment.with_extension("index"),
        segment.with_extension("timeindex"),
    ] {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &p)(e)),
        }
    }
    Ok(())
}
