//! The measured I/O profile of a data directory (`io-profile.json`), read at start-up.
//!
//! `sluice iotune` (in `tune::iotune`) measures the data directory's disk and stores the
//! result here; the broker's start-up reads it ([`load_profile`]) to size the storage
//! engine's write chunks, and `sluice-bench` reports latencies as multiples of its fdatasync
//! p99. The format lives in the storage layer, below start-up, so the broker can read it
//! without depending on the measuring command above it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the profile inside the data directory.
pub const PROFILE_FILE_NAME: &str = "io-profile.json";
/// Version of the profile format; bumped when a field changes meaning.
pub const PROFILE_VERSION: u32 = 1;

/// Latency percentiles of one phase, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyNs {
    /// Samples measured.
    pub samples: u64,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile: what one request in a hundred waits.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Slowest sample.
    pub max_ns: u64,
}

/// The measured I/O profile of a data directory, as stored in `io-profile.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IoProfile {
    /// Format version ([`PROFILE_VERSION`]).
    pub version: u32,
    /// The directory measured.
    pub data_dir: PathBuf,
    /// Its filesystem type (`xfs`, `ext4`, ...).
    pub filesystem: String,
    /// When it was measured (seconds since the Unix epoch).
    pub measured_at_unix_secs: u64,
    /// Size of the pre-allocated test file.
    pub file_size_bytes: u64,
    /// Total measuring time asked for.
    pub duration_secs: u64,
    /// Block size of the sequential phase.
    pub seq_write_block_bytes: u64,
    /// Writer threads of the sequential phase.
    pub seq_write_threads: u64,
    /// Sequential O_DIRECT write bandwidth, including the final fdatasync.
    pub seq_write_bytes_per_sec: u64,
    /// Latency of one 4 KiB O_DIRECT write (no sync) to written blocks.
    pub write_4k_latency: LatencyNs,
    /// Latency of one 16 KiB O_DIRECT write (no sync) to written blocks.
    pub write_16k_latency: LatencyNs,
    /// Latency of fdatasync after a 4 KiB O_DIRECT append into pre-allocated space: the
    /// floor of every acks=all produce.
    pub fdatasync_latency: LatencyNs,
}

impl IoProfile {
    /// The latency floor of a durable write: fdatasync p99, which bench divides by.
    pub fn fsync_floor_ns(&self) -> u64 {
        self.fdatasync_latency.p99_ns
    }
}

/// Reads `io-profile.json` from the data directory; `None` when it is missing or unreadable
/// (the broker then falls back to its defaults).
pub fn load_profile(data_dir: &Path) -> Option<IoProfile> {
    let text = std::fs::read_to_string(data_dir.join(PROFILE_FILE_NAME)).ok()?;
    let profile: IoProfile = serde_json::from_str(&text).ok()?;
    (profile.version == PROFILE_VERSION).then_some(profile)
}

/// Why [`store_profile`] could not write the profile; the caller names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreProfileError {
    /// The profile could not be encoded as JSON.
    #[error("cannot encode: {0}")]
    Encode(#[source] serde_json::Error),
    /// The file could not be written.
    #[error("cannot write: {0}")]
    Write(#[source] std::io::Error),
}

/// Writes `profile` as `io-profile.json` into `data_dir` (pretty JSON, one trailing newline)
/// and returns the file's path, so [`load_profile`] finds it on the next start.
pub fn store_profile(data_dir: &Path, profile: &IoProfile) -> Result<PathBuf, StoreProfileError> {
    let path = data_dir.join(PROFILE_FILE_NAME);
    let text = serde_json::to_string_pretty(profile).map_err(StoreProfileError::Encode)?;
    std::fs::write(&path, text + "\n").map_err(StoreProfileError::Write)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(base: u64) -> LatencyNs {
        LatencyNs {
            samples: 200,
            p50_ns: base,
            p99_ns: base * 2,
            p999_ns: base * 3,
            max_ns: base * 4,
        }
    }

    fn profile(data_dir: &Path) -> IoProfile {
        IoProfile {
            version: PROFILE_VERSION,
            data_dir: data_dir.to_path_buf(),
            filesystem: "xfs".into(),
            measured_at_unix_secs: 1,
            file_size_bytes: 8 << 20,
            duration_secs: 1,
            seq_write_block_bytes: 1 << 20,
            seq_write_threads: 4,
            seq_write_bytes_per_sec: 1 << 30,
            write_4k_latency: latency(10_000),
            write_16k_latency: latency(20_000),
            fdatasync_latency: latency(100_000),
        }
    }

    #[test]
    fn stored_profiles_load_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_profile(dir.path()).is_none());
        let stored = profile(dir.path());
        let path = store_profile(dir.path(), &stored).unwrap();
        assert_eq!(path, dir.path().join(PROFILE_FILE_NAME));
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("}\n"));
        let loaded = load_profile(dir.path()).unwrap();
        assert_eq!(loaded, stored);
        assert_eq!(loaded.fsync_floor_ns(), 200_000);
    }

    #[test]
    fn stale_or_foreign_profiles_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PROFILE_FILE_NAME), "{not json").unwrap();
        assert!(load_profile(dir.path()).is_none());
        let mut old = profile(dir.path());
        old.version = PROFILE_VERSION + 1;
        store_profile(dir.path(), &old).unwrap();
        assert!(load_profile(dir.path()).is_none());
    }
}
