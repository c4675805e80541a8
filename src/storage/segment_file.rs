//! The file under a segment's appender: the handful of operations the write path needs
//! (positioned O_DIRECT write, fdatasync, pre-allocation, reading back the tail block).
//!
//! In the broker it is always a glommio `DmaFile`. Tests put an in-memory file with seeded
//! faults in its place ([`sim::SimFile`]: EIO, ENOSPC, short writes, reordered completions
//! and power cuts that keep only what was flushed plus any subset of unflushed sectors), so
//! the appender's promises are checked against every failure a disk can produce, not only
//! the ones a test machine happens to show. An enum rather than a trait object: the write
//! path stays monomorphic and the simulated variant exists only in test builds.

use std::io;
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile};

#[cfg(test)]
pub(crate) mod sim;

/// The file a segment's bytes go to.
#[derive(Clone)]
pub(crate) enum SegmentFile {
    /// A real file opened with O_DIRECT.
    Dma(Rc<DmaFile>),
    /// An in-memory file that injects faults (tests only).
    #[cfg(test)]
    Sim(Rc<sim::SimFile>),
}

/// A failed operation on a segment file, classified by what the appender does about it.
#[derive(Debug)]
pub(crate) enum FileError {
    /// Out of space (ENOSPC, EDQUOT): nothing was lost, the write can be tried again later.
    NoSpace(io::Error),
    /// Anything else: the file's state is unknown; the appender stops (fail-stop).
    Failed(io::Error),
}

impl FileError {
    fn classify(e: io::Error) -> FileError {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => FileError::NoSpace(e),
            _ if e.kind() == io::ErrorKind::StorageFull => FileError::NoSpace(e),
            _ => FileError::Failed(e),
        }
    }

    /// The OS error behind it.
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            FileError::NoSpace(e) | FileError::Failed(e) => e,
        }
    }
}

/// glommio wraps OS errors with the operation and path; keep the errno so ENOSPC stays ENOSPC.
pub(crate) fn from_glommio<T>(e: glommio::GlommioError<T>) -> FileError {
    match e {
        glommio::GlommioError::EnhancedIoError { source, .. } => FileError::classify(source),
        other => FileError::classify(io::Error::from(other)),
    }
}

impl SegmentFile {
    /// The real file, for the read path (which reads with O_DIRECT itself).
    pub(crate) fn dma(&self) -> Option<Rc<DmaFile>> {
        match self {
            SegmentFile::Dma(f) => Some(f.clone()),
            #[cfg(test)]
            SegmentFile::Sim(_) => None,
        }
    }

    /// Writes the whole buffer at `pos`; returns the bytes written (short on a short write).
    pub(crate) async fn write_at(&self, buf: Rc<DmaBuffer>, pos: u64) -> Result<usize, FileError> {
        match self {
            SegmentFile::Dma(f) => f.write_rc_at(buf, pos).await.map_err(from_glommio),
            #[cfg(test)]
            SegmentFile::Sim(f) => f.write_at(buf.as_bytes(), pos).await,
        }
    }

    /// Makes every write completed before this call durable.
    pub(crate) async fn fdatasync(&self) -> Result<(), FileError> {
        match self {
            SegmentFile::Dma(f) => f.fdatasync().await.map_err(from_glommio),
            #[cfg(test)]
            SegmentFile::Sim(f) => f.fdatasync().await,
        }
    }

    /// Reserves disk blocks up to `size` bytes (the file size stays).
    pub(crate) async fn pre_allocate(&self, size: u64) -> Result<(), FileError> {
        match self {
            SegmentFile::Dma(f) => f.pre_allocate(size, false).await.map_err(from_glommio),
            #[cfg(test)]
            SegmentFile::Sim(f) => f.pre_allocate(size),
        }
    }

    /// Reads `len` bytes at the aligned position `pos` (fewer at the end of the file).
    pub(crate) async fn read_block(&self, pos: u64, len: usize) -> Result<Vec<u8>, FileError> {
        match self {
            SegmentFile::Dma(f) => f
                .read_at_aligned(pos, len)
                .await
                .map(|r| r.to_vec())
                .map_err(from_glommio),
            #[cfg(test)]
            SegmentFile::Sim(f) => Ok(f.read(pos, len)),
        }
    }
}
