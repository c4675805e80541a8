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

const PROBE_FILE: &str = ".iopoll-probe";
const PROBE_BYTES: usize = 4096;

thread_local! {
    /// Devices (st_dev) this thread has probed.
    static PROBED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Opens (creating if needed) a segment file for O_DIRECT reads and writes.
pub async fn open_rw(path: &Path) -> Result<DmaFile, StorageError> {
    if let Some(dir) = path.parent() {
        probe_once(dir).await;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .dma_open(path)
        .await
        .map_err(|e| StorageError::glommio("open segment", path, e))
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
