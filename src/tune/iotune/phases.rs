//! The measuring phases of `sluice iotune`: an aligned buffer, a pre-allocated O_DIRECT test
//! file, the progress line, and one function per phase that returns what it measured.
//!
//! Each phase is a plain loop of synchronous `pwrite`/`fdatasync` calls timed one by one
//! into an HDR histogram; [`super::measure`] runs them in order and assembles the profile.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::{IotuneError, ALIGN_BYTES, SAMPLES_MIN, SEQ_BLOCK_BYTES, SEQ_THREADS};
use crate::storage::io_profile::LatencyNs;

/// Longest latency recordable (60 s); anything slower is clamped.
const LATENCY_NS_MAX: u64 = 60_000_000_000;
/// How often the progress line is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// A zero-filled, [`ALIGN_BYTES`]-aligned buffer for O_DIRECT writes.
struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

// SAFETY: the buffer is uniquely owned memory, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    fn new(bytes: usize) -> Result<AlignedBuf, IotuneError> {
        let layout = std::alloc::Layout::from_size_align(bytes, ALIGN_BYTES)
            .map_err(|_| IotuneError::Alloc { bytes })?;
        if bytes == 0 {
            return Err(IotuneError::Alloc { bytes });
        }
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = std::ptr::NonNull::new(raw).ok_or(IotuneError::Alloc { bytes })?;
        let mut buf = AlignedBuf { ptr, layout };
        // Non-zero content, so no layer can shortcut the write as zeroes.
        for (i, byte) in buf.as_mut_slice().iter_mut().enumerate() {
            *byte = (i % 251) as u8 | 1;
        }
        Ok(buf)
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `layout.size()` initialized bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// The test file; removed when dropped, whatever happened.
pub(super) struct TestFile {
    file: File,
    path: PathBuf,
    size_bytes: u64,
}

impl Drop for TestFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl TestFile {
    pub(super) fn create(dir: &Path, size_bytes: u64) -> Result<TestFile, IotuneError> {
        let path = dir.join(format!(".iotune-{}.tmp", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::EINVAL) => IotuneError::NoODirect {
                    dir: dir.to_path_buf(),
                    source,
                },
                _ => IotuneError::Io {
                    what: "cannot create test file",
                    path: path.clone(),
                    source,
                },
            })?;
        let test = TestFile {
            file,
            path,
            size_bytes,
        };
        let len = libc::off_t::try_from(size_bytes).map_err(|_| IotuneError::Invalid {
            flag: "--size",
            value: size_bytes.to_string(),
            reason: "too large".into(),
        })?;
        // SAFETY: the descriptor is open for writing; fallocate reads no memory of ours.
        if unsafe { libc::fallocate(test.file.as_raw_fd(), 0, 0, len) } != 0 {
            return Err(test.io_error("cannot pre-allocate", std::io::Error::last_os_error()));
        }
        test.file
            .sync_all()
            .map_err(|e| test.io_error("cannot sync", e))?;
        Ok(test)
    }

    fn io_error(&self, what: &'static str, source: std::io::Error) -> IotuneError {
        let source = match source.raw_os_error() {
            Some(libc::EINVAL) => std::io::Error::new(
                source.kind(),
                format!("{source} (the filesystem rejected an aligned O_DIRECT write)"),
            ),
            _ => source,
        };
        IotuneError::Io {
            what,
            path: self.path.clone(),
            source,
        }
    }
}

/// Draws `phase: elapsed/budget, samples` on stderr at most every [`PROGRESS_INTERVAL`].
pub(super) struct Progress {
    enabled: bool,
    last: Instant,
}

impl Progress {
    /// A progress line that draws only when `enabled`, starting with the first tick.
    pub(super) fn new(enabled: bool) -> Progress {
        Progress {
            enabled,
            last: Instant::now()
                .checked_sub(PROGRESS_INTERVAL)
                .unwrap_or_else(Instant::now),
        }
    }

    fn tick(&mut self, phase: &str, started: Instant, budget: Duration, samples: u64) {
        if !self.enabled || self.last.elapsed() < PROGRESS_INTERVAL {
            return;
        }
        self.last = Instant::now();
        let done = started.elapsed().as_secs_f64();
        let total = budget.as_secs_f64().max(0.001);
        let filled = ((done / total).min(1.0) * 20.0) as usize;
        eprint!(
            "\riotune: {phase:<22} [{}{}] {done:5.1}s/{total:.1}s {samples:>8} ops",
            "#".repeat(filled),
            " ".repeat(20 - filled)
        );
        let _ = std::io::stderr().flush();
    }

    fn finish(&mut self, phase: &str, summary: &str) {
        if self.enabled {
            eprintln!("\r\x1b[2Kiotune: {phase:<22} {summary}");
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // Bounds and precision are constants, so this cannot fail; fall back to auto-resize.
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).unwrap_or_else(|_| {
        let mut h =
            Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"));
        h.auto(true);
        h
    })
}

fn summarize(histogram: &Histogram<u64>) -> LatencyNs {
    LatencyNs {
        samples: histogram.len(),
        p50_ns: histogram.value_at_quantile(0.5),
        p99_ns: histogram.value_at_quantile(0.99),
        p999_ns: histogram.value_at_quantile(0.999),
        max_ns: histogram.max(),
    }
}

fn elapsed_ns(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .clamp(1, LATENCY_NS_MAX)
}

/// A small xorshift generator for random offsets (no dependency needed for that).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Appends 4 KiB blocks into the pre-allocated file, each followed by fdatasync, and records
/// the fdatasync latency (the log's durable append).
pub(super) fn measure_fdatasync(
    test: &TestFile,
    budget: Duration,
    progress: &mut Progress,
) -> Result<LatencyNs, IotuneError> {
    const PHASE: &str = "fdatasync (4KiB append)";
    let buf = AlignedBuf::new(ALIGN_BYTES)?;
    let mut histogram = new_histogram();
    let started = Instant::now();
    let mut offset = 0u64;
    while started.elapsed() < budget || histogram.len() < SAMPLES_MIN {
        if offset + ALIGN_BYTES as u64 > test.size_bytes {
            offset = 0;
        }
        test.file
            .write_all_at(buf.as_slice(), offset)
            .map_err(|e| test.io_error("cannot write", e))?;
        let sync_started = Instant::now();
        test.file
            .sync_data()
            .map_err(|e| test.io_error("cannot fdatasync", e))?;
        histogram.saturating_record(elapsed_ns(sync_started));
        offset += ALIGN_BYTES as u64;
        progress.tick(PHASE, started, budget, histogram.len());
        if started.elapsed() > budget * 4 {
            break;
        }
    }
    let summary = summarize(&histogram);
    progress.finish(
        PHASE,
        &format!(
            "p50 {}us p99 {}us",
            summary.p50_ns / 1000,
            summary.p99_ns / 1000
        ),
    );
    Ok(summary)
}

/// Writes the file sequentially in 1 MiB blocks from [`SEQ_THREADS`] threads, pass after
/// pass until the budget is spent (at least one pass), then fdatasync; returns bytes/s.
pub(super) fn measure_sequential(
    test: &TestFile,
    budget: Duration,
    progress: &mut Progress,
) -> Result<u64, IotuneError> {
    const PHASE: &str = "sequential write 1MiB";
    let blocks = test.size_bytes / SEQ_BLOCK_BYTES as u64;
    let started = Instant::now();
    let results: Vec<Result<u64, IotuneError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..SEQ_THREADS as u64)
            .map(|thread| {
                scope.spawn(move || -> Result<u64, IotuneError> {
                    let buf = AlignedBuf::new(SEQ_BLOCK_BYTES)?;
                    let mut written = 0u64;
                    loop {
                        let mut block = thread;
                        while block < blocks {
                            test.file
                                .write_all_at(buf.as_slice(), block * SEQ_BLOCK_BYTES as u64)
                                .map_err(|e| test.io_error("cannot write", e))?;
                            written += SEQ_BLOCK_BYTES as u64;
                            block += SEQ_THREADS as u64;
                        }
                        if started.elapsed() >= budget {
                            return Ok(written);
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(IotuneError::WriterPanicked)))
            .collect()
    });
    let mut written = 0u64;
    for result in results {
        written += result?;
    }
    test.file
        .sync_data()
        .map_err(|e| test.io_error("cannot fdatasync", e))?;
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    let bytes_per_sec = (written as f64 / seconds) as u64;
    progress.tick(PHASE, started, budget, written / SEQ_BLOCK_BYTES as u64);
    progress.finish(
        PHASE,
        &format!("{:.0} MiB/s", bytes_per_sec as f64 / (1 << 20) as f64),
    );
    Ok(bytes_per_sec)
}

/// Random aligned overwrites of `block_bytes` into written blocks, without sync.
pub(super) fn measure_writes(
    test: &TestFile,
    block_bytes: usize,
    budget: Duration,
    progress: &mut Progress,
) -> Result<LatencyNs, IotuneError> {
    let phase = format!("random write {}KiB", block_bytes / 1024);
    let buf = AlignedBuf::new(block_bytes)?;
    let slots = (test.size_bytes / block_bytes as u64).max(1);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ block_bytes as u64);
    let mut histogram = new_histogram();
    let started = Instant::now();
    while started.elapsed() < budget || histogram.len() < SAMPLES_MIN {
        let offset = (rng.next() % slots) * block_bytes as u64;
        let write_started = Instant::now();
        test.file
            .write_all_at(buf.as_slice(), offset)
            .map_err(|e| test.io_error("cannot write", e))?;
        histogram.saturating_record(elapsed_ns(write_started));
        progress.tick(&phase, started, budget, histogram.len());
        if started.elapsed() > budget * 4 {
            break;
        }
    }
    let summary = summarize(&histogram);
    progress.finish(
        &phase,
        &format!(
            "p50 {}us p99 {}us",
            summary.p50_ns / 1000,
            summary.p99_ns / 1000
        ),
    );
    Ok(summary)
}
