//! The DMA appender of one segment file.
//!
//! Appends are synchronous copies into an aligned in-memory head chunk; the
//! bytes reach the file later, when someone waits for them. Waiting is
//! leader/follower: the first waiter becomes the writer and writes everything
//! dirty (full chunks once, the partial tail chunk rewritten in place,
//! zero-padded) while later waiters sleep until it finishes. Only one write
//! round runs at a time, because io_uring does not keep submission order and
//! the tail chunk is rewritten at the same file range. fdatasync is coalesced
//! the same way: every waiter whose data was written before a sync started
//! shares that sync.
//!
//! A truncation takes the appender exclusively (both the write and the sync
//! round at once, only when neither runs), so it never races a write to the
//! range it cuts; waits for bytes it removed fail with `Truncated` instead of
//! waiting for bytes that will never come.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile};

use crate::storage::error::StorageError;
use crate::util::sync::Notify;

mod truncate;

/// Default size of one head chunk; a multiple of the file's alignment is used.
pub const CHUNK_SIZE_BYTES_DEFAULT: u64 = 128 * 1024;
/// Bounds of the chunk size derived from a measured I/O profile.
pub const CHUNK_SIZE_BYTES_MIN: u64 = 64 * 1024;
/// See [`CHUNK_SIZE_BYTES_MIN`].
pub const CHUNK_SIZE_BYTES_MAX: u64 = 1024 * 1024;

/// The chunk size of this process, fixed once at start-up (before any shard runs) from the
/// data directory's measured I/O profile; never changed afterwards.
static CHUNK_SIZE_BYTES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Fixes the head-chunk size for the life of the process (the first call wins). Called by
/// start-up with the size derived from `io-profile.json`; returns the size in force.
pub fn set_chunk_size_bytes(bytes: u64) -> u64 {
    *CHUNK_SIZE_BYTES.get_or_init(|| chunk_size_for(bytes))
}

/// A wanted chunk size made usable: within the bounds, a power of two.
pub fn chunk_size_for(bytes: u64) -> u64 {
    bytes
        .clamp(CHUNK_SIZE_BYTES_MIN, CHUNK_SIZE_BYTES_MAX)
        .next_power_of_two()
        .min(CHUNK_SIZE_BYTES_MAX)
}

/// Resets a flag and wakes waiters when a write/sync round ends, even if the
/// round's future is dropped half way (cancellation must not wedge waiters).
struct RoundGuard<'a> {
    flag: &'a Cell<bool>,
    notify: &'a Notify,
}

impl Drop for RoundGuard<'_> {
    fn drop(&mut self) {
        self.flag.set(false);
        self.notify.notify_all();
    }
}

/// Mutable byte/offset bookkeeping; never borrowed across an await.
struct State {
    /// File position of the head chunk (aligned).
    head_start: u64,
    /// The head chunk; allocated on first append.
    head: Option<DmaBuffer>,
    /// Bytes of the head chunk holding data.
    head_len: usize,
    /// Full chunks not yet written: (file position, chunk). Kept until the
    /// write completes so a cancelled round loses nothing.
    sealed: Vec<(u64, Rc<DmaBuffer>)>,
    /// Logical end of data in the file.
    end_pos: u64,
    /// Offset after the last appended batch.
    end_offset: i64,
    /// Everything below this position is written.
    written_pos: u64,
    /// Offset matching `written_pos`.
    written_offset: i64,
    /// Everything below this position is fdatasync'ed.
    durable_pos: u64,
    /// Offset matching `durable_pos`.
    durable_offset: i64,
    /// Bytes pre-allocated on disk (the file size).
    allocated_bytes: u64,
}

/// Appender and reader handle of one segment file.
pub(crate) struct Appender {
    path: PathBuf,
    file: RefCell<Option<Rc<DmaFile>>>,
    alignment: u64,
    chunk_size_bytes: usize,
    preallocate_step_bytes: Cell<u64>,
    max_allocate_bytes: Cell<u64>,
    state: RefCell<State>,
    writing: Cell<bool>,
    syncing: Cell<bool>,
    notify: Notify,
    failure: RefCell<Option<String>>,
    sync_count: Cell<u64>,
    /// The segment was removed by a truncation: its file must never be created again.
    removed: Cell<bool>,
    /// Truncations waiting to take the appender: no new round starts meanwhile,
    /// so a steady stream of waiters cannot starve a truncation.
    exclusive_wanted: Cell<u32>,
}

fn align_down(v: u64, a: u64) -> u64 {
    v / a * a
}
fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

impl Appender {
    /// An appender for a new, empty segment whose file is created by the
    /// first write round (so `append` never waits for a file to be created).
    pub(crate) fn new_pending(
        path: PathBuf,
        alignment: u64,
        base_offset: i64,
        preallocate_step_bytes: u64,
        max_allocate_bytes: u64,
    ) -> Appender {
        Self::build(
            path,
            None,
            alignment,
            0,
            base_offset,
            0,
            preallocate_step_bytes,
            max_allocate_bytes,
            None,
        )
    }

    /// An appender over an existing file whose valid data ends at `end_pos`
    /// (all of it written and durable). Loads the partial last block so the
    /// next tail write rewrites it intact.
    pub(crate) async fn open_existing(
        path: PathBuf,
        file: Rc<DmaFile>,
        end_pos: u64,
        end_offset: i64,
        allocated_bytes: u64,
        preallocate_step_bytes: u64,
        max_allocate_bytes: u64,
    ) -> Result<Appender, StorageError> {
        let alignment = file.alignment().max(1);
        let head_start = align_down(end_pos, alignment);
        let head_len = (end_pos - head_start) as usize;
        let head = load_head(&file, &path, end_pos, alignment, chunk_size(alignment)).await?;
        let appender = Self::build(
            path,
            Some(file),
            alignment,
            end_pos,
            end_offset,
            allocated_bytes,
            preallocate_step_bytes,
            max_allocate_bytes,
            Some(head),
        );
        {
            let mut st = appender.state.borrow_mut();
            st.head_start = head_start;
            st.head_len = head_len;
        }
        Ok(appender)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        path: PathBuf,
        file: Option<Rc<DmaFile>>,
        alignment: u64,
        end_pos: u64,
        end_offset: i64,
        allocated_bytes: u64,
        preallocate_step_bytes: u64,
        max_allocate_bytes: u64,
        head: Option<DmaBuffer>,
    ) -> Appender {
        let alignment = alignment.max(1);
        Appender {
            path,
            file: RefCell::new(file),
            alignment,
            chunk_size_bytes: chunk_size(alignment),
            preallocate_step_bytes: Cell::new(preallocate_step_bytes.max(alignment)),
            max_allocate_bytes: Cell::new(max_allocate_bytes),
            state: RefCell::new(State {
                head_start: align_down(end_pos, alignment),
                head,
                head_len: 0,
                sealed: Vec::new(),
                end_pos,
                end_offset,
                written_pos: end_pos,
                written_offset: end_offset,
                durable_pos: end_pos,
                durable_offset: end_offset,
                allocated_bytes,
            }),
            writing: Cell::new(false),
            syncing: Cell::new(false),
            notify: Notify::default(),
            failure: RefCell::new(None),
            sync_count: Cell::new(0),
            removed: Cell::new(false),
            exclusive_wanted: Cell::new(0),
        }
    }

    /// The open file, once a write round has created it.
    pub(crate) fn file(&self) -> Option<Rc<DmaFile>> {
        self.file.borrow().clone()
    }

    /// Changes pre-allocation sizing for future growth.
    pub(crate) fn set_allocation(&self, preallocate_step_bytes: u64, max_allocate_bytes: u64) {
        self.preallocate_step_bytes
            .set(preallocate_step_bytes.max(self.alignment));
        self.max_allocate_bytes.set(max_allocate_bytes);
    }

    /// Copies `bytes` into the head chunk(s); returns the new logical end.
    /// `end_offset` is the log offset after these bytes. Never waits.
    pub(crate) fn append(&self, bytes: &[u8], end_offset: i64) -> u64 {
        let mut st = self.state.borrow_mut();
        let mut rest = bytes;
        while !rest.is_empty() {
            if st.head.is_none() {
                let mut buf = glommio::allocate_dma_buffer(self.chunk_size_bytes);
                buf.as_bytes_mut().fill(0);
                st.head = Some(buf);
            }
            let head_len = st.head_len;
            let room = self.chunk_size_bytes - head_len;
            let n = room.min(rest.len());
            if let Some(head) = st.head.as_mut() {
                head.as_bytes_mut()[head_len..head_len + n].copy_from_slice(&rest[..n]);
            }
            st.head_len += n;
            rest = &rest[n..];
            if st.head_len == self.chunk_size_bytes {
                if let Some(full) = st.head.take() {
                    let pos = st.head_start;
                    st.sealed.push((pos, Rc::new(full)));
                }
                st.head_start += self.chunk_size_bytes as u64;
                st.head_len = 0;
            }
        }
        st.end_pos += bytes.len() as u64;
        st.end_offset = end_offset;
        st.end_pos
    }

    /// Logical end of data.
    pub(crate) fn end_pos(&self) -> u64 {
        self.state.borrow().end_pos
    }
    /// Offset after the last appended batch.
    pub(crate) fn end_offset(&self) -> i64 {
        self.state.borrow().end_offset
    }
    /// All bytes below are written.
    pub(crate) fn written_pos(&self) -> u64 {
        self.state.borrow().written_pos
    }
    /// All offsets below are written.
    pub(crate) fn written_offset(&self) -> i64 {
        self.state.borrow().written_offset
    }
    /// All offsets below are durable.
    pub(crate) fn durable_offset(&self) -> i64 {
        self.state.borrow().durable_offset
    }
    /// Whether every appended byte is fdatasync'ed.
    pub(crate) fn is_fully_durable(&self) -> bool {
        let st = self.state.borrow();
        st.durable_pos >= st.end_pos
    }
    /// fdatasync calls issued (for tests and metrics).
    pub(crate) fn sync_count(&self) -> u64 {
        self.sync_count.get()
    }

    fn check_failed(&self) -> Result<(), StorageError> {
        match &*self.failure.borrow() {
            Some(reason) => Err(StorageError::Poisoned {
                path: self.path.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records a failure that leaves the file's state unknown: every later
    /// wait fails with `Poisoned` (fail-stop, a write is never retried).
    pub(crate) fn fail(&self, err: StorageError) -> StorageError {
        tracing::error!(path = %self.path.display(), error = %err, "segment write failed");
        *self.failure.borrow_mut() = Some(err.to_string());
        err
    }

    /// Fails with `Truncated` when a truncation removed the bytes below `pos`
    /// (they are no longer appended), so a wait never loops for bytes that
    /// will not come. `end_offset` is the log offset the wait is for (for the error).
    fn check_truncated(&self, pos: u64, end_offset: i64) -> Result<(), StorageError> {
        let st = self.state.borrow();
        if pos > st.end_pos {
            return Err(StorageError::Truncated {
                path: self.path.clone(),
                end_offset,
                truncated_to: st.end_offset,
            });
        }
        Ok(())
    }

    /// Resolves once every byte below `pos` is written with O_DIRECT.
    /// `end_offset` is the log offset after those bytes (for errors).
    pub(crate) async fn wait_written(&self, pos: u64, end_offset: i64) -> Result<(), StorageError> {
        loop {
            self.check_failed()?;
            if self.state.borrow().written_pos >= pos {
                return Ok(());
            }
            self.check_truncated(pos, end_offset)?;
            if self.writing.get() || self.exclusive_wanted.get() > 0 {
                self.notify.notified().await;
                continue;
            }
            self.writing.set(true);
            let _guard = RoundGuard {
                flag: &self.writing,
                notify: &self.notify,
            };
            if let Err(e) = self.write_round().await {
                return Err(self.fail(e));
            }
        }
    }

    async fn ensure_file(&self) -> Result<Rc<DmaFile>, StorageError> {
        if let Some(f) = self.file() {
            return Ok(f);
        }
        if self.removed.get() {
            // Re-creating the file of a truncated segment could bring its old batches back.
            let end_offset = self.state.borrow().end_offset;
            return Err(StorageError::Truncated {
                path: self.path.clone(),
                end_offset,
                truncated_to: end_offset,
            });
        }
        let file = super::dma_open::open_rw(&self.path).await?;
        let file = Rc::new(file);
        *self.file.borrow_mut() = Some(file.clone());
        Ok(file)
    }

    /// One write round: everything dirty when it starts.
    async fn write_round(&self) -> Result<(), StorageError> {
        let file = self.ensure_file().await?;
        // Snapshot what to write; copy the dirty part of the tail chunk so
        // appends can keep filling the head while the write is in flight.
        let (target_pos, target_offset, sealed, tail, need_alloc) = {
            let st = self.state.borrow();
            let sealed: Vec<(u64, Rc<DmaBuffer>)> = st.sealed.clone();
            let mut tail = None;
            if st.head_len > 0 && st.end_pos > st.written_pos {
                let from_pos = align_down(st.written_pos.max(st.head_start), self.alignment);
                let from = (from_pos - st.head_start) as usize;
                let to = align_up(st.head_len as u64, self.alignment) as usize;
                if let Some(head) = st.head.as_ref() {
                    let mut buf = glommio::allocate_dma_buffer(to - from);
                    buf.as_bytes_mut()
                        .copy_from_slice(&head.as_bytes()[from..to]);
                    tail = Some((from_pos, buf));
                }
            }
            let needed = align_up(st.end_pos, self.alignment);
            let need_alloc = if needed > st.allocated_bytes {
                let step = self.preallocate_step_bytes.get();
                let stepped = needed.div_ceil(step) * step;
                let cap = align_up(self.max_allocate_bytes.get(), self.alignment);
                Some(needed.max(stepped.min(cap)))
            } else {
                None
            };
            (st.end_pos, st.end_offset, sealed, tail, need_alloc)
        };
        if let Some(size) = need_alloc {
            file.pre_allocate(size, false)
                .await
                .map_err(|e| StorageError::glommio("pre-allocate", &self.path, e))?;
            let mut st = self.state.borrow_mut();
            st.allocated_bytes = st.allocated_bytes.max(size);
        }
        let mut writes = Vec::with_capacity(sealed.len() + 1);
        for (pos, buf) in &sealed {
            let len = buf.len();
            let f = file.clone();
            let buf = buf.clone();
            let pos = *pos;
            writes.push(futures::future::Either::Left(async move {
                (pos, len, f.write_rc_at(buf, pos).await)
            }));
        }
        if let Some((pos, buf)) = tail {
            let len = buf.len();
            let f = file.clone();
            writes.push(futures::future::Either::Right(async move {
                (pos, len, f.write_at(buf, pos).await)
            }));
        }
        let started = std::time::Instant::now();
        let written = futures::future::join_all(writes).await;
        crate::metrics::record(crate::metrics::Stage::StorageWrite, started.elapsed());
        for (pos, len, res) in written {
            let n = res.map_err(|e| StorageError::glommio("write", &self.path, e))?;
            if n != len {
                return Err(StorageError::Corrupt {
                    path: self.path.clone(),
                    position: pos,
                    reason: format!("short write {n} of {len} bytes"),
                });
            }
        }
        let mut st = self.state.borrow_mut();
        let done = sealed.len();
        st.sealed.drain(..done);
        st.written_pos = st.written_pos.max(target_pos);
        if target_offset > st.written_offset {
            st.written_offset = target_offset;
        }
        Ok(())
    }

    /// Resolves once every byte below `pos` is fdatasync'ed; concurrent
    /// waiters share syncs. `end_offset` is the log offset after those bytes (for errors).
    pub(crate) async fn wait_durable(&self, pos: u64, end_offset: i64) -> Result<(), StorageError> {
        loop {
            self.check_failed()?;
            let (durable, written) = {
                let st = self.state.borrow();
                (st.durable_pos, st.written_pos)
            };
            if durable >= pos {
                return Ok(());
            }
            self.check_truncated(pos, end_offset)?;
            if written < pos {
                self.wait_written(pos, end_offset).await?;
                continue;
            }
            if self.syncing.get() || self.exclusive_wanted.get() > 0 {
                // The running sync may not cover us; re-check when it ends.
                self.notify.notified().await;
                continue;
            }
            self.syncing.set(true);
            let _guard = RoundGuard {
                flag: &self.syncing,
                notify: &self.notify,
            };
            let (cover_pos, cover_offset) = {
                let st = self.state.borrow();
                (st.written_pos, st.written_offset)
            };
            let Some(file) = self.file() else {
                // Nothing was ever written, so nothing to sync.
                return Ok(());
            };
            self.sync_count.set(self.sync_count.get() + 1);
            let started = std::time::Instant::now();
            let synced = file.fdatasync().await;
            crate::metrics::record(crate::metrics::Stage::Fdatasync, started.elapsed());
            if let Err(e) = synced {
                return Err(self.fail(StorageError::glommio("fdatasync", &self.path, e)));
            }
            let mut st = self.state.borrow_mut();
            st.durable_pos = st.durable_pos.max(cover_pos);
            st.durable_offset = st.durable_offset.max(cover_offset);
        }
    }
}

/// Reads the aligned block holding `end_pos` (when that block is partial)
/// into a zeroed head chunk of `chunk` bytes, so the next tail write rewrites
/// the block with its valid bytes intact.
async fn load_head(
    file: &DmaFile,
    path: &Path,
    end_pos: u64,
    alignment: u64,
    chunk: usize,
) -> Result<DmaBuffer, StorageError> {
    let head_start = align_down(end_pos, alignment);
    let head_len = (end_pos - head_start) as usize;
    let mut head = glommio::allocate_dma_buffer(chunk);
    head.as_bytes_mut().fill(0);
    if head_len > 0 {
        let read = file
            .read_at_aligned(head_start, alignment as usize)
            .await
            .map_err(|e| StorageError::glommio("read tail block", path, e))?;
        if read.len() < head_len {
            return Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                position: head_start,
                reason: format!("tail block short read: {} < {head_len}", read.len()),
            });
        }
        head.as_bytes_mut()[..head_len].copy_from_slice(&read[..head_len]);
    }
    Ok(head)
}

fn chunk_size(alignment: u64) -> usize {
    let chunk = *CHUNK_SIZE_BYTES.get_or_init(|| CHUNK_SIZE_BYTES_DEFAULT);
    align_up(chunk.max(alignment), alignment) as usize
}

#[cfg(test)]
mod chunk_size_tests {
    use super::*;

    #[test]
    fn profile_derived_chunk_sizes_stay_bounded_powers_of_two() {
        assert_eq!(chunk_size_for(0), CHUNK_SIZE_BYTES_MIN);
        assert_eq!(chunk_size_for(100 * 1024), 128 * 1024);
        assert_eq!(chunk_size_for(u64::MAX), CHUNK_SIZE_BYTES_MAX);
        // A fast disk (1 GiB/s) with a 200 µs flush: ~200 KiB per flush → 256 KiB chunks.
        assert_eq!(
            chunk_size_for((1u64 << 30) * 200_000 / 1_000_000_000),
            256 * 1024
        );
    }
}
