//! Start-up checks and limits that need the operating system.
//!
//! Run once on the main thread before shards start: raise RLIMIT_MEMLOCK for registered
//! io_uring buffers and RLIMIT_NOFILE for connections and segments, take an exclusive lock on
//! the data directory, and make sure the listen ports are not already taken (shards bind with
//! SO_REUSEPORT, which would otherwise let a second broker share a busy port silently).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Name of the lock file inside the data directory.
pub const LOCK_FILE_NAME: &str = ".lock";

/// Why a start-up check failed; each variant names the path or address at fault.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// The data directory does not exist and could not be created.
    #[error("cannot create data directory {}: {source}", dir.display())]
    CreateDataDir {
        /// The directory.
        dir: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The lock file could not be opened or created.
    #[error("cannot open lock file {}: {source}", path.display())]
    OpenLockFile {
        /// The lock file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Another process holds the data directory's lock.
    #[error(
        "data directory {} is in use by another sluice process (lock file {} held{})",
        dir.display(),
        lock_path.display(),
        holder_pid.map(|pid| format!(" by pid {pid}")).unwrap_or_default()
    )]
    DataDirInUse {
        /// The data directory.
        dir: PathBuf,
        /// Its lock file.
        lock_path: PathBuf,
        /// The pid recorded by the holder, if it could be read.
        holder_pid: Option<u32>,
    },
    /// `flock` failed for a reason other than the lock being held.
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Our pid could not be written into the lock file.
    #[error("cannot write pid to lock file {}: {source}", path.display())]
    WritePid {
        /// The lock file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A listen address is already bound by another socket.
    #[error("{name} address {addr} is already in use")]
    PortInUse {
        /// Which listener, e.g. `kafka` or `admin`.
        name: &'static str,
        /// The address.
        addr: SocketAddr,
    },
    /// A listen address cannot be bound for another reason (not local, no permission).
    #[error("cannot bind {name} address {addr}: {source}")]
    Bind {
        /// Which listener, e.g. `kafka` or `admin`.
        name: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// What [`raise_memlock`] achieved, so the caller can size registered io_uring buffers.
/// Limits are in bytes; `u64::MAX` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemlockOutcome {
    /// The soft limit was below the wanted amount and has been raised.
    Raised {
        /// Soft limit before.
        previous_bytes: u64,
        /// Soft limit now, at least the wanted amount.
        limit_bytes: u64,
    },
    /// The soft limit was already at least the wanted amount.
    AlreadyEnough {
        /// The soft limit.
        limit_bytes: u64,
    },
    /// The limit could not be raised far enough; at most `limit_bytes` may be locked.
    Insufficient {
        /// The soft limit now (raised as far as allowed), 0 if it could not be read.
        limit_bytes: u64,
    },
}

impl MemlockOutcome {
    /// Bytes that may be locked now, whatever the outcome.
    pub fn limit_bytes(&self) -> u64 {
        match *self {
            MemlockOutcome::Raised { limit_bytes, .. }
            | MemlockOutcome::AlreadyEnough { limit_bytes }
            | MemlockOutcome::Insufficient { limit_bytes } => limit_bytes,
        }
    }
}

/// A resource limit as (soft, hard), with RLIM_INFINITY as `u64::MAX`.
fn get_rlimit(resource: libc::__rlimit_resource_t) -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((to_bytes(limit.rlim_cur), to_bytes(limit.rlim_max)))
}

fn set_rlimit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: from_bytes(soft),
        rlim_max: from_bytes(hard),
    };
    // SAFETY: `limit` is a valid rlimit, read only.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn to_bytes(value: libc::rlim_t) -> u64 {
    if value == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        value
    }
}

fn from_bytes(value: u64) -> libc::rlim_t {
    if value == u64::MAX {
        libc::RLIM_INFINITY
    } else {
        value
    }
}

/// Raises RLIMIT_MEMLOCK so at least `wanted_bytes` can be locked (registered io_uring
/// buffers are locked memory). Tries unlimited first (works as root), then the hard limit.
/// Never fails start-up: on `Insufficient` it logs a warning with the fix and the caller
/// should shrink its io memory to fit.
pub fn raise_memlock(wanted_bytes: u64) -> MemlockOutcome {
    let resource = libc::RLIMIT_MEMLOCK;
    let (soft, hard) = match get_rlimit(resource) {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, wanted_bytes, "cannot read RLIMIT_MEMLOCK; assuming 0");
            return MemlockOutcome::Insufficient { limit_bytes: 0 };
        }
    };
    if soft >= wanted_bytes {
        return MemlockOutcome::AlreadyEnough { limit_bytes: soft };
    }
    // Unlimited first: io_uring rings and other locked memory also count on older kernels.
    if set_rlimit(resource, u64::MAX, u64::MAX).is_ok() {
        return MemlockOutcome::Raised {
            previous_bytes: soft,
            limit_bytes: u64::MAX,
        };
    }
    // Without privilege the soft limit may still rise to the hard limit.
    let raised = set_rlimit(resource, hard, hard).is_ok();
    let limit_bytes = if raised { hard } else { soft };
    if limit_bytes >= wanted_bytes {
        return MemlockOutcome::Raised {
            previous_bytes: soft,
            limit_bytes,
        };
    }
    tracing::warn!(
        limit_bytes,
        wanted_bytes,
        "RLIMIT_MEMLOCK is {limit_bytes} bytes but {wanted_bytes} are wanted for registered \
         io_uring buffers; io memory will be reduced. Fix: `ulimit -l unlimited` before \
         starting, or LimitMEMLOCK=infinity in the systemd unit"
    );
    MemlockOutcome::Insufficient { limit_bytes }
}

/// Raises the RLIMIT_NOFILE soft limit to the hard limit, best effort: every connection and
/// open segment is a file descriptor. Returns the soft limit now in effect.
pub fn raise_nofile() -> u64 {
    let resource = libc::RLIMIT_NOFILE;
    let (soft, hard) = match get_rlimit(resource) {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "cannot read RLIMIT_NOFILE");
            return 0;
        }
    };
    if soft >= hard {
        return soft;
    }
    // Linux refuses an unlimited NOFILE soft limit; cap at fs.nr_open.
    let target = if hard == u64::MAX {
        nr_open().unwrap_or(soft)
    } else {
        hard
    };
    if target <= soft {
        return soft;
    }
    match set_rlimit(resource, target, hard) {
        Ok(()) => target,
        Err(error) => {
            tracing::warn!(%error, soft, target, "cannot raise RLIMIT_NOFILE");
            soft
        }
    }
}

fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Exclusive ownership of a data directory for this process; two brokers writing the same
/// logs would corrupt them. The `flock` is released when this value drops (the fd closes).
#[derive(Debug)]
pub struct DataDirLock {
    /// Held open only to keep the lock.
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// The lock file's path, for logs.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `dir` if missing and locks `<dir>/.lock` exclusively without waiting, writing our
/// pid into it. Fails with [`LimitsError::DataDirInUse`] if another process holds it.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, LimitsError> {
    std::fs::create_dir_all(dir).map_err(|source| LimitsError::CreateDataDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(LOCK_FILE_NAME);
    // No truncate on open: the holder's pid must survive a failed attempt.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| LimitsError::OpenLockFile {
            path: path.clone(),
            source,
        })?;
    if let Err(source) = flock_exclusive(&file) {
        if source.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(LimitsError::DataDirInUse {
                dir: dir.to_path_buf(),
                lock_path: path,
                holder_pid: read_pid(&mut file),
            });
        }
        return Err(LimitsError::Lock { path, source });
    }
    write_pid(&mut file).map_err(|source| LimitsError::WritePid {
        path: path.clone(),
        source,
    })?;
    Ok(DataDirLock { _file: file, path })
}

fn flock_exclusive(file: &File) -> std::io::Result<()> {
    loop {
        // SAFETY: the fd is open for the lifetime of `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Checks the Kafka listen address is free; see [`probe_named_port_free`].
pub fn probe_port_free(addr: SocketAddr) -> Result<(), LimitsError> {
    probe_named_port_free("kafka", addr)
}

/// Checks nobody listens on `addr`. Shards bind with SO_REUSEPORT, which would silently
/// share a port with another broker of the same user, so we first try to connect: a listener
/// there (another broker, or anything else) refuses the start. A plain bind would not do:
/// connections of a broker killed a moment ago still hold the port (FIN_WAIT) without
/// SO_REUSEADDR, and would keep a crashed broker from coming back on its own port. A
/// non-SO_REUSEPORT listener we cannot connect to still fails the shards' bind, loudly.
/// Port 0 (any free port) is not probed. `name` labels the error.
pub fn probe_named_port_free(name: &'static str, addr: SocketAddr) -> Result<(), LimitsError> {
    if addr.port() == 0 {
        return Ok(());
    }
    let target = if addr.ip().is_unspecified() {
        match addr {
            SocketAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], addr.port())),
            SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
        }
    } else {
        addr
    };
    // A broker killed a moment ago may still appear to listen: its io_uring instance (with
    // a pending accept holding the socket) is torn down by the kernel asynchronously after
    // the process is gone. So only a listener that keeps answering for a while is "in use".
    for _ in 0..PORT_PROBE_ATTEMPTS {
        match std::net::TcpStream::connect_timeout(&target, PORT_PROBE_TIMEOUT) {
            Ok(_) => std::thread::sleep(PORT_PROBE_TIMEOUT),
            Err(_) => return Ok(()),
        }
    }
    Err(LimitsError::PortInUse { name, addr })
}

/// How many times a port must answer before it counts as taken.
const PORT_PROBE_ATTEMPTS: usize = 20;
/// Connect timeout of one probe, and the pause between probes.
const PORT_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = lock_data_dir(&data).unwrap();
        assert_eq!(first.path(), data.join(".lock"));
        let e = lock_data_dir(&data).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, LimitsError::DataDirInUse { holder_pid: Some(pid), .. }
            if pid == std::process::id())
        );
        assert!(
            text.starts_with(&format!(
                "data directory {} is in use by another sluice process (lock file {} held",
                data.display(),
                data.join(".lock").display()
            )),
            "{text}"
        );
        // The failed attempt left the holder's pid in place.
        let pid = std::fs::read_to_string(data.join(".lock")).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        drop(first);
        let _again = lock_data_dir(&data).unwrap();
    }

    #[test]
    fn busy_port_is_refused() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let e = probe_port_free(addr).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("kafka address {addr} is already in use")
        );
        let e = probe_named_port_free("admin", addr).unwrap_err();
        assert!(e.to_string().starts_with("admin address"), "{e}");
        drop(held);
        probe_port_free(addr).unwrap();
        probe_port_free("127.0.0.1:0".parse().unwrap()).unwrap();
    }

    #[test]
    fn memlock_and_nofile_do_not_panic() {
        let outcome = raise_memlock(8 << 20);
        assert!(
            outcome.limit_bytes() > 0 || matches!(outcome, MemlockOutcome::Insufficient { .. })
        );
        assert!(matches!(
            raise_memlock(0),
            MemlockOutcome::AlreadyEnough { .. }
        ));
        assert!(raise_nofile() > 0);
    }
}
