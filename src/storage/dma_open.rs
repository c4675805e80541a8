//! Opening segment files for direct I/O, around a glommio 0.9 probe bug.
//!
//! glommio decides once per thread and device whether reads may use the io_uring poll ring
//! (IOPOLL) by reading the first block of the first file it opens on that device. When that
//! file is empty the read "succeeds" with 0 bytes, glommio caches "IOPOLL works", and every
//! later read on the device fails with EOPNOTSUPP on devices without poll queues (most
//! virtual disks). So before the first segment file of a thread is opened, we let glommio
//! probe a file that holds a real block of data, which gives it the right answer.

use std::cell::RefCell;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use glommio::io::{DmaFile, OpenOptions};

use super::error::StorageError;
use super::segment_file::{from_glommio, FileError};

const PROBE_FILE: &str = ".iopoll-probe";
const PROBE_BYTES: usize = 4096;

thread_local! {
    /// Devices (st_dev) this thread has probed.
    static PROBED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// Write block of each device this thread has opened a segment on: (major, minor, bytes).
    static WRITE_BLOCKS: RefCell<Vec<(u32, u32, u64)>> = const { RefCell::new(Vec::new()) };
}

/// Opens (creating if needed) a segment file for O_DIRECT reads and writes.
pub async fn open_rw(path: &Path) -> Result<DmaFile, StorageError> {
    open_file(path)
        .await
        .map_err(|e| StorageError::io("open segment", path, e.into_io()))
}

/// [`open_rw`] with the error sorted for the appender (ENOSPC is not a failure).
pub(crate) async fn open_file(path: &Path) -> Result<DmaFile, FileError> {
    if let Some(dir) = path.parent() {
        probe_once(dir).await;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .dma_open(path)
        .await
        .map_err(from_glommio)
}

/// The unit every segment write is aligned to: the largest of the device's logical block
/// (what O_DIRECT requires), its physical block (what it writes atomically, so a torn write
/// never reaches into bytes already acknowledged) and the filesystem block. Read from sysfs
/// and statvfs once per device and thread (the first segment opened there, at start-up).
pub(crate) fn write_block_bytes(file: &DmaFile) -> u64 {
    let (major, minor) = (file.dev_major(), file.dev_minor());
    if let Some(bytes) = WRITE_BLOCKS.with(|w| {
        w.borrow()
            .iter()
            .find(|(a, b, _)| (*a, *b) == (major, minor))
            .map(|(_, _, bytes)| *bytes)
    }) {
        return bytes;
    }
    let physical = read_sysfs_u64(major, minor, "queue/physical_block_size");
    let fs_block = file
        .path()
        .and_then(|p| filesystem_block_bytes(&p))
        .unwrap_or(0);
    let bytes = file
        .alignment()
        .max(physical.unwrap_or(0))
        .max(fs_block)
        .clamp(512, 64 * 1024)
        .next_power_of_two();
    WRITE_BLOCKS.with(|w| w.borrow_mut().push((major, minor, bytes)));
    bytes
}

/// A value from the block device's sysfs directory (partitions look at their disk).
fn read_sysfs_u64(major: u32, minor: u32, name: &str) -> Option<u64> {
    let dev = Path::new("/sys/dev/block").join(format!("{major}:{minor}"));
    [dev.join(name), dev.join("..").join(name)]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| s.trim().parse().ok())
}

/// The filesystem's block size (statvfs f_bsize) of the file at `path`.
fn filesystem_block_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bsize as u64)
}

async fn probe_once(dir: &Path) {
    let Ok(dev) = std::fs::metadata(dir).map(|m| m.dev()) else {
        return;
    };
    if PROBED.with(|p| p.borrow().contains(&dev)) {
        return;
    }
    let probe = dir.join(PROBE_FILE);
    if std::fs::write(&probe, [0u8; PROBE_BYTES]).is_ok() {
        match DmaFile::open(&probe).await {
            Ok(file) => {
                let _ = file.close().await;
            }
            Err(e) => tracing::debug!(error = %e, "iopoll probe open failed"),
        }
        let _ = std::fs::remove_file(&probe);
    }
    PROBED.with(|p| p.borrow_mut().push(dev));
}
