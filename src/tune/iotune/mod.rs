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

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

mod phases;

use phases::{measure_fdatasync, measure_sequential, measure_writes, Progress, TestFile};

use crate::storage::io_profile::{
    store_profile, IoProfile, StoreProfileError, PROFILE_FILE_NAME, PROFILE_VERSION,
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
    let mut progress = Progress::new(!args.quiet);
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
    use std::path::Path;

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
