//! The machine and its physical floor.
//!
//! No broker can acknowledge an acks=all produce faster than one fdatasync of its data disk
//! plus one loopback round trip, and no broker can answer anything faster than the round
//! trip. Reporting latency as a multiple of that floor, measured in the same run on the same
//! machine, makes numbers from different machines comparable and keeps the claims honest.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::BenchError;

/// What the run was measured on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// CPUs this process may run on.
    pub cores: usize,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Host name.
    pub hostname: String,
    /// The broker's data directory, when given (`--data-dir`).
    pub data_dir: Option<PathBuf>,
    /// Filesystem type of the data directory (`ext4`, `xfs`, ...).
    pub filesystem: Option<String>,
    /// Block device behind it.
    pub device: Option<String>,
}

impl Machine {
    /// Describe this machine (and `data_dir`'s filesystem when given).
    pub fn detect(data_dir: Option<&Path>) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let (filesystem, device) = match data_dir {
            Some(d) => match mount_of(d) {
                Some((fs, dev)) => (Some(fs), Some(dev)),
                None => (None, None),
            },
            None => (None, None),
        };
        Machine {
            cpu_model,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            kernel: read("/proc/sys/kernel/osrelease"),
            hostname: read("/proc/sys/kernel/hostname"),
            data_dir: data_dir.map(Path::to_path_buf),
            filesystem,
            device,
        }
    }
}

/// `(fstype, source)` of the mount holding `path`: the longest mount point that prefixes it.
fn mount_of(path: &Path) -> Option<(String, String)> {
    let path = std::fs::canonicalize(path).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_mountinfo(&info, &path)
}

/// The mountinfo parser behind [`mount_of`] (separate so it is testable).
fn parse_mountinfo(info: &str, path: &Path) -> Option<(String, String)> {
    let mut best: Option<(usize, String, String)> = None;
    for line in info.lines() {
        let (pre, post) = match line.split_once(" - ") {
            Some(x) => x,
            None => continue,
        };
        let mount_point = match pre.split_whitespace().nth(4) {
            Some(m) => m.replace("\\040", " "),
            None => continue,
        };
        let mut post = post.split_whitespace();
        let (fstype, source) = match (post.next(), post.next()) {
            (Some(f), Some(s)) => (f.to_string(), s.to_string()),
            _ => continue,
        };
        if path.starts_with(&mount_point) {
            let len = mount_point.len();
            if best.as_ref().is_none_or(|(l, _, _)| len >= *l) {
                best = Some((len, fstype, source));
            }
        }
    }
    best.map(|(_, f, s)| (f, s))
}

/// Percentiles of a floor measurement, in microseconds (fractional: a round trip is tens of
/// µs, so whole µs would lose precision in the ratios).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FloorStat {
    /// Where it came from: `measured` or `io-profile.json`.
    pub source: String,
    /// Samples.
    pub samples: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Slowest.
    pub max_us: f64,
}

impl FloorStat {
    fn from_ns_histogram(source: &str, h: &hdrhistogram::Histogram<u64>) -> FloorStat {
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        FloorStat {
            source: source.into(),
            samples: h.len(),
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: h.max() as f64 / 1000.0,
        }
    }
}

/// The physical floor of this machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Floor {
    /// fdatasync after a 4 KiB O_DIRECT write into a pre-allocated file on the data disk;
    /// `None` without `--data-dir`.
    pub fdatasync: Option<FloorStat>,
    /// TCP round trip of 64 bytes over loopback (TCP_NODELAY), thread to thread.
    pub loopback_rtt: FloorStat,
    /// Sequential O_DIRECT write bandwidth of the data disk, from `io-profile.json` when the
    /// broker's data directory has one (`sluice iotune`).
    pub seq_write_bytes_per_sec: Option<u64>,
    /// fdatasync p99 + loopback p99: the least an acks=all p99 can be.
    pub acks_all_p99_floor_us: Option<f64>,
}

impl Floor {
    /// Measure the floor: the loopback round trip always, the disk when `data_dir` is given
    /// (from its `io-profile.json` when present, else a short measurement of `budget`).
    pub fn measure(data_dir: Option<&Path>, budget: Duration) -> Result<Floor, BenchError> {
        let loopback_rtt = measure_loopback(budget.min(Duration::from_millis(500)))?;
        let mut floor = Floor {
            loopback_rtt,
            ..Floor::default()
        };
        if let Some(dir) = data_dir {
            let profile = sluice::storage::io_profile::load_profile(dir);
            let fsync = match &profile {
                Some(p) => FloorStat {
                    source: sluice::storage::io_profile::PROFILE_FILE_NAME.into(),
                    samples: p.fdatasync_latency.samples,
                    p50_us: p.fdatasync_latency.p50_ns as f64 / 1000.0,
                    p99_us: p.fdatasync_latency.p99_ns as f64 / 1000.0,
                    p999_us: p.fdatasync_latency.p999_ns as f64 / 1000.0,
                    max_us: p.fdatasync_latency.max_ns as f64 / 1000.0,
                },
                None => measure_fdatasync(dir, budget)?,
            };
            floor.seq_write_bytes_per_sec = profile.map(|p| p.seq_write_bytes_per_sec);
            floor.acks_all_p99_floor_us = Some(fsync.p99_us + floor.loopback_rtt.p99_us);
            floor.fdatasync = Some(fsync);
        }
        Ok(floor)
    }

    /// The floor a p99 of this acks level is compared with, and its name.
    pub fn p99_floor_for(&self, acks_all: bool) -> (f64, &'static str) {
        match (acks_all, self.acks_all_p99_floor_us) {
            (true, Some(f)) => (f, "fdatasync_p99+loopback_rtt_p99"),
            _ => (self.loopback_rtt.p99_us, "loopback_rtt_p99"),
        }
    }
}

/// Round trips of 64 bytes to an echo thread over 127.0.0.1 for `budget` (at least 200).
pub fn measure_loopback(budget: Duration) -> Result<FloorStat, BenchError> {
    let io = |what: &'static str| {
        move |source| BenchError::Io {
            what,
            path: PathBuf::from("127.0.0.1"),
            source,
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("cannot bind loopback echo"))?;
    let addr = listener
        .local_addr()
        .map_err(io("cannot bind loopback echo"))?;
    let echo = std::thread::Builder::new()
        .name("floor-echo".into())
        .spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let _ = s.set_nodelay(true);
                let mut buf = [0u8; 64];
                while s.read_exact(&mut buf).is_ok() {
                    if s.write_all(&buf).is_err() {
                        break;
                    }
                }
            }
        })
        .map_err(io("cannot start echo thread"))?;
    let mut s = TcpStream::connect(addr).map_err(io("cannot connect to loopback echo"))?;
    s.set_nodelay(true).map_err(io("cannot set TCP_NODELAY"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut h = new_histogram_ns();
    let buf = [7u8; 64];
    let mut back = [0u8; 64];
    let started = Instant::now();
    let mut i = 0u64;
    while (started.elapsed() < budget || i < 200) && i < 1_000_000 {
        let t = Instant::now();
        s.write_all(&buf).map_err(io("loopback write failed"))?;
        s.read_exact(&mut back)
            .map_err(io("loopback read failed"))?;
        if i >= 20 {
            // the first round trips warm caches and the scheduler
            let _ = h.record(t.elapsed().as_nanos().max(1) as u64);
        }
        i += 1;
    }
    drop(s);
    let _ = echo.join();
    Ok(FloorStat::from_ns_histogram("measured", &h))
}

fn new_histogram_ns() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3)
        .expect("constant histogram bounds are valid")
}

/// fdatasync after a 4 KiB O_DIRECT write into a pre-allocated 16 MiB file in `dir`, for
/// `budget` (at least 100 samples): the same pattern as `sluice iotune` and the broker's log.
pub fn measure_fdatasync(dir: &Path, budget: Duration) -> Result<FloorStat, BenchError> {
    const BLOCK: usize = 4096;
    const FILE_BYTES: u64 = 16 << 20;
    let path = dir.join(format!(".sluice-bench-floor-{}.tmp", std::process::id()));
    let io = |what: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| BenchError::Io {
            what,
            path: p,
            source,
        }
    };
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let open = |direct: bool| {
        let mut o = std::fs::OpenOptions::new();
        o.read(true).write(true).create(true).truncate(true);
        if direct {
            o.custom_flags(libc::O_DIRECT);
        }
        o.open(&path)
    };
    // O_DIRECT where the filesystem allows it (tmpfs does not): then the data goes to the
    // device at write time and fdatasync measures the device's flush, as in the broker.
    let (file, direct) = match open(true) {
        Ok(f) => (f, true),
        Err(_) => (
            open(false).map_err(io("cannot create floor test file", &path))?,
            false,
        ),
    };
    let _cleanup = Remove(path.clone());
    // SAFETY: the descriptor is open for writing; fallocate reads no memory of ours.
    let rc = unsafe {
        libc::fallocate(
            std::os::unix::io::AsRawFd::as_raw_fd(&file),
            0,
            0,
            FILE_BYTES as libc::off_t,
        )
    };
    if rc != 0 {
        // Not every filesystem pre-allocates; the measurement is still meaningful.
        let _ = file.set_len(FILE_BYTES);
    }
    file.sync_all()
        .map_err(io("cannot sync floor test file", &path))?;
    let buf = AlignedBlock::new();
    let mut h = new_histogram_ns();
    let started = Instant::now();
    let mut offset = 0u64;
    let mut n = 0u64;
    while (started.elapsed() < budget || n < 100) && n < 100_000 {
        if offset + BLOCK as u64 > FILE_BYTES {
            offset = 0;
        }
        let data: &[u8] = if direct {
            buf.as_slice()
        } else {
            &buf.as_slice()[..BLOCK]
        };
        file.write_all_at(data, offset)
            .map_err(io("cannot write floor test file", &path))?;
        let t = Instant::now();
        file.sync_data()
            .map_err(io("cannot fdatasync floor test file", &path))?;
        let _ = h.record(t.elapsed().as_nanos().max(1) as u64);
        offset += BLOCK as u64;
        n += 1;
    }
    let mut stat = FloorStat::from_ns_histogram("measured", &h);
    if !direct {
        stat.source = "measured (buffered: no O_DIRECT on this filesystem)".into();
    }
    Ok(stat)
}

/// One 4 KiB block aligned to 4 KiB, for O_DIRECT.
struct AlignedBlock {
    raw: Vec<u8>,
    start: usize,
}

impl AlignedBlock {
    fn new() -> AlignedBlock {
        let raw: Vec<u8> = (0..8192usize).map(|i| (i % 251) as u8 | 1).collect();
        let start = raw.as_ptr().align_offset(4096).min(4096);
        AlignedBlock { raw, start }
    }
    fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + 4096]
    }
}

/// Make this thread's sleeps precise: the default 50 µs timer slack would add up to 50 µs of
/// lateness to every scheduled send.
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_picks_the_longest_prefix() {
        let info = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
                    30 22 0:5 / /data rw - xfs /dev/nvme0n1 rw\n\
                    31 22 0:6 / /dat rw - tmpfs tmpfs rw\n";
        assert_eq!(
            parse_mountinfo(info, Path::new("/data/sluice")),
            Some(("xfs".into(), "/dev/nvme0n1".into()))
        );
        assert_eq!(
            parse_mountinfo(info, Path::new("/home")),
            Some(("ext4".into(), "/dev/sda1".into()))
        );
    }

    #[test]
    fn floor_measures_loopback_and_disk() {
        let dir = tempfile::tempdir().unwrap();
        let f = Floor::measure(Some(dir.path()), Duration::from_millis(100)).unwrap();
        assert!(f.loopback_rtt.samples >= 180);
        assert!(f.loopback_rtt.p50_us > 0.0 && f.loopback_rtt.p50_us <= f.loopback_rtt.p99_us);
        let fs = f.fdatasync.as_ref().unwrap();
        assert!(fs.samples >= 100 && fs.p50_us > 0.0 && fs.p50_us <= fs.p99_us);
        let floor = f.acks_all_p99_floor_us.unwrap();
        assert!((floor - (fs.p99_us + f.loopback_rtt.p99_us)).abs() < 1e-9);
        assert_eq!(f.p99_floor_for(false).1, "loopback_rtt_p99");
        // no temp file left behind
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let m = Machine::detect(Some(dir.path()));
        assert!(m.cores >= 1);
        assert!(m.filesystem.is_some());
    }
}
