//! `sluice iotune`: measures the data directory's disk and records an I/O profile.
//!
//! The broker's latency floor is the disk's: with acks=all a produce waits for an fdatasync.
//! iotune measures, with O_DIRECT on the data directory's own filesystem, the sequential
//! write bandwidth, 4 KiB and 16 KiB write latency and the latency of fdatasync after a
//! 4 KiB append into pre-allocated space (what the log does), and writes the result to
//! `io-profile.json` in the data directory (the format is [`crate::storage::io_profile`]'s).
//! The broker reads it at start-up to size its write chunks, in-flight writes and fsync
//! coalescing window, and `sluice-bench` reports latencies as multiples of the fdatasync p99.
//!
//! Plain threads and `pwrite`/`fdatasync` are used rather than glommio: one synchronous call
//! per sample is the simplest thing whose latency is unambiguous, and it is what `fio
//! --ioengine=psync`/`io_uring` at queue depth 1 reports too.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;

use crate::storage::io_profile::{
    store_profile, IoProfile, LatencyNs, StoreProfileError, PROFILE_FILE_NAME, PROFILE_VERSION,
};

/// Default test file size: small enough for CI, large enough to leave the device cache.
pub const SIZE_DEFAULT: &str = "128MiB";
/// Default total measuring time, split over the four phases.
pub const DURATION_SECS_DEFAULT: u64 = 6;
/// Alignment of O_DIRECT buffers and offsets (the largest common logical block size).
pub const ALIGN_BYTES: usize = 4096;
/// Block size of the sequential-bandwidth phase.
pub const SEQ_BLOCK_BYTES: usize = 1 << 20;
/// Writer threads of the sequential-bandwidth phase (NVMe needs parallelism to reach its
/// bandwidth; the log writes several partitions at once).
pub const SEQ_THREADS: usize = 4;
/// Each latency phase takes at least this many samples, even past its time budget, so p99
/// means something.
pub const SAMPLES_MIN: u64 = 200;
/// Smallest file that holds a sequential block per thread.
pub const SIZE_BYTES_MIN: u64 = (SEQ_BLOCK_BYTES * SEQ_THREADS) as u64;
/// Longest latency recordable (60 s); anything slower is clamped.
const LATENCY_NS_MAX: u64 = 60_000_000_000;
/// How often the progress line is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

const _: () = assert!(SEQ_BLOCK_BYTES.is_multiple_of(ALIGN_BYTES));
const _: () = assert!((16 * 1024_usize).is_multiple_of(ALIGN_BYTES));

/// Flags of `sluice iotune`.
#[derive(Debug, Clone, Args)]
pub struct IotuneArgs {
    /// Data directory to measure (its filesystem and disk) and to write io-profile.json into
    #[arg(long, value_name = "PATH", default_value = crate::config::DATA_DIR_DEFAULT)]
    pub data_dir: PathBuf,
    /// Print the profile as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Size of the pre-allocated test file, e.g. 1GiB (bigger is more realistic)
    #[arg(long, value_name = "SIZE", default_value = SIZE_DEFAULT)]
    pub size: String,
    /// Total measuring time in seconds, split over the four phases
    #[arg(long, value_name = "N", default_value_t = DURATION_SECS_DEFAULT)]
    pub duration_secs: u64,
    /// Do not draw the progress line on stderr
    #[arg(long)]
    pub quiet: bool,
}

/// Why iotune could not measure.
#[derive(Debug, thiserror::Error)]
pub enum IotuneError {
    /// A flag has a value that does not parse or is out of range.
    #[error("invalid value for {flag} ({value:?}): {reason}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The filesystem refuses O_DIRECT, so the broker cannot run on it either.
    #[error("{} does not support O_DIRECT ({source}); use XFS or ext4 on a local disk", dir.display())]
    NoODirect {
        /// The data directory.
        dir: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A writer thread of the sequential phase panicked.
    #[error("a sequential writer thread panicked")]
    WriterPanicked,
    /// An aligned buffer could not be allocated.
    #[error("cannot allocate a {bytes}-byte aligned buffer")]
    Alloc {
        /// The size asked for.
        bytes: usize,
    },
}

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
struct TestFile {
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
    fn create(dir: &Path, size_bytes: u64) -> Result<TestFile, IotuneError> {
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
struct Progress {
    enabled: bool,
    last: Instant,
}

impl Progress {
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
fn measure_fdatasync(
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
fn measure_sequential(
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
fn measure_writes(
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

/// Measures the data directory and writes `io-profile.json` into it.
pub fn measure(args: &IotuneArgs) -> Result<IoProfile, IotuneError> {
    let size_bytes = crate::util::units::parse_size_bytes(&args.size).map_err(|reason| {
        IotuneError::Invalid {
            flag: "--size",
            value: args.size.clone(),
            reason,
        }
    })?;
    if size_bytes < SIZE_BYTES_MIN {
        return Err(IotuneError::Invalid {
            flag: "--size",
            value: args.size.clone(),
            reason: format!("at least {SIZE_BYTES_MIN} bytes (one 1 MiB block per writer thread)"),
        });
    }
    let size_bytes = size_bytes / SEQ_BLOCK_BYTES as u64 * SEQ_BLOCK_BYTES as u64;
    if args.duration_secs == 0 {
        return Err(IotuneError::Invalid {
            flag: "--duration-secs",
            value: "0".into(),
            reason: "must be at least 1".into(),
        });
    }
    std::fs::create_dir_all(&args.data_dir).map_err(|source| IotuneError::Io {
        what: "cannot create data directory",
        path: args.data_dir.clone(),
        source,
    })?;
    let phase_budget = Duration::from_secs(args.duration_secs) / 4;
    let mut progress = Progress {
        enabled: !args.quiet,
        last: Instant::now()
            .checked_sub(PROGRESS_INTERVAL)
            .unwrap_or_else(Instant::now),
    };
    let test = TestFile::create(&args.data_dir, size_bytes)?;
    // Fresh pre-allocated space first: the log appends into pre-allocated segments.
    let fdatasync_latency = measure_fdatasync(&test, phase_budget, &mut progress)?;
    let seq_write_bytes_per_sec = measure_sequential(&test, phase_budget, &mut progress)?;
    let write_4k_latency = measure_writes(&test, 4096, phase_budget, &mut progress)?;
    let write_16k_latency = measure_writes(&test, 16 * 1024, phase_budget, &mut progress)?;
    drop(test);
    let profile = IoProfile {
        version: PROFILE_VERSION,
        data_dir: args.data_dir.clone(),
        filesystem: super::disk::filesystem_type(&args.data_dir)
            .unwrap_or("unknown")
            .to_string(),
        measured_at_unix_secs: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        file_size_bytes: size_bytes,
        duration_secs: args.duration_secs,
        seq_write_block_bytes: SEQ_BLOCK_BYTES as u64,
        seq_write_threads: SEQ_THREADS as u64,
        seq_write_bytes_per_sec,
        write_4k_latency,
        write_16k_latency,
        fdatasync_latency,
    };
    store_profile(&args.data_dir, &profile).map_err(|e| {
        let path = args.data_dir.join(PROFILE_FILE_NAME);
        match e {
            StoreProfileError::Encode(e) => IotuneError::Io {
                what: "cannot encode",
                path,
                source: e.into(),
            },
            StoreProfileError::Write(source) => IotuneError::Io {
                what: "cannot write",
                path,
                source,
            },
        }
    })?;
    Ok(profile)
}

fn write_human(profile: &IoProfile, out: &mut dyn Write) -> std::io::Result<()> {
    let us = |ns: u64| ns as f64 / 1000.0;
    writeln!(
        out,
        "I/O profile of {} ({}, O_DIRECT, {} MiB file)",
        profile.data_dir.display(),
        profile.filesystem,
        profile.file_size_bytes >> 20
    )?;
    writeln!(
        out,
        "  sequential write ({} x 1MiB): {:.0} MiB/s",
        profile.seq_write_threads,
        profile.seq_write_bytes_per_sec as f64 / (1 << 20) as f64
    )?;
    writeln!(
        out,
        "  {:<28} {:>10} {:>10} {:>10} {:>10}",
        "latency (us)", "p50", "p99", "p99.9", "samples"
    )?;
    for (name, l) in [
        ("write 4KiB", &profile.write_4k_latency),
        ("write 16KiB", &profile.write_16k_latency),
        ("fdatasync after 4KiB append", &profile.fdatasync_latency),
    ] {
        writeln!(
            out,
            "  {name:<28} {:>10.1} {:>10.1} {:>10.1} {:>10}",
            us(l.p50_ns),
            us(l.p99_ns),
            us(l.p999_ns),
            l.samples
        )?;
    }
    writeln!(
        out,
        "wrote {}",
        profile.data_dir.join(PROFILE_FILE_NAME).display()
    )
}

/// `sluice iotune`: returns the exit status (0 measured, 1 failed, 2 bad flags).
pub fn run(args: &IotuneArgs) -> u8 {
    let profile = match measure(args) {
        Ok(profile) => profile,
        Err(e @ IotuneError::Invalid { .. }) => {
            eprintln!("sluice iotune: {e}");
            return 2;
        }
        Err(e) => {
            eprintln!("sluice iotune: {e}");
            return 1;
        }
    };
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &profile)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write_human(&profile, &mut out)
    };
    match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sluice iotune: writing the result: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::io_profile::load_profile;

    fn args(dir: &Path) -> IotuneArgs {
        IotuneArgs {
            data_dir: dir.to_path_buf(),
            json: true,
            size: "8MiB".into(),
            duration_secs: 1,
            quiet: true,
        }
    }

    #[test]
    fn measures_and_writes_a_loadable_profile() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert!(load_profile(&data).is_none());
        let profile = match measure(&args(&data)) {
            Ok(profile) => profile,
            Err(IotuneError::NoODirect { .. }) => return, // tmpfs /tmp on old kernels
            Err(e) => panic!("{e}"),
        };
        assert!(profile.seq_write_bytes_per_sec > 0);
        for l in [
            profile.write_4k_latency,
            profile.write_16k_latency,
            profile.fdatasync_latency,
        ] {
            assert!(l.samples >= SAMPLES_MIN);
            assert!(
                l.p50_ns > 0 && l.p99_ns >= l.p50_ns && l.p999_ns >= l.p99_ns,
                "{l:?}"
            );
        }
        assert_eq!(load_profile(&data), Some(profile.clone()));
        assert_eq!(profile.fsync_floor_ns(), profile.fdatasync_latency.p99_ns);
        let leftovers: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(PROFILE_FILE_NAME)]);
        let mut out = Vec::new();
        write_human(&profile, &mut out).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("fdatasync after 4KiB append"));
    }

    #[test]
    fn rejects_bad_flags() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args(dir.path());
        a.size = "1MiB".into();
        assert!(matches!(
            measure(&a),
            Err(IotuneError::Invalid { flag: "--size", .. })
        ));
        a.size = "lots".into();
        assert!(matches!(
            measure(&a),
            Err(IotuneError::Invalid { flag: "--size", .. })
        ));
        a.size = "8MiB".into();
        a.duration_secs = 0;
        assert!(matches!(
            measure(&a),
            Err(IotuneError::Invalid {
                flag: "--duration-secs",
                ..
            })
        ));
    }
}
