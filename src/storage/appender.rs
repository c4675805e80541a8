//! The DMA appender of one segment file.
//!
//! Appends are synchronous copies into an aligned in-memory head chunk; the bytes reach the
//! file in write rounds and become durable in flush rounds. Rounds belong to the appender,
//! not to whoever waits: a waiter raises the position it wants written or durable and
//! sleeps, and the rounds run as their own tasks to completion, so a produce that times out
//! or a connection that drops never cancels or races a write or an fdatasync in flight.
//! Positions move only when an operation has completed.
//!
//! Only one write round runs at a time (io_uring does not keep submission order and the
//! partial tail block is rewritten at the same file range); a round writes from the first
//! block that holds unwritten bytes, so acknowledged bytes are never written again except
//! the partial block at the tail. Flushes belong to the shard's commit pipeline
//! ([`super::commit_pipeline`]): a segment with written bytes a waiter wants durable joins
//! the next turn, which fdatasyncs it together with every other such segment of the shard,
//! alongside the next write rounds; a flush covers what was written when its turn started,
//! and every waiter it covers shares it.
//!
//! Failures: out of space (ENOSPC) on pre-allocation or write leaves everything as it was
//! and refuses further rounds until [`Appender::truncate_to`] drops the unwritten bytes (the
//! partition does that, then accepts writes again once space is free); any other error
//! poisons the appender: every later wait fails (fail-stop, an fdatasync is never retried
//! on the same data).
//!
//! A truncation takes the appender exclusively (both the write and the flush round at once,
//! only when neither runs), so it never races a write to the range it cuts; waits for bytes
//! it removed fail with `Truncated` instead of waiting for bytes that will never come.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use glommio::io::{DmaBuffer, DmaFile};

use crate::storage::commit_pipeline;
use crate::storage::error::StorageError;
use crate::storage::segment_file::{FileError, SegmentFile};
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

/// Ends a round when its task finishes (or is dropped with the executor): resets the flag
/// and wakes every waiter, which then re-checks its position.
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
    /// Full chunks not yet (wholly) written: (file position, chunk). Kept until the
    /// write completes so a failed round loses nothing.
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
    /// The highest position a waiter wants written.
    want_written: u64,
    /// The highest position a waiter wants durable.
    want_durable: u64,
}

/// Appender and reader handle of one segment file.
pub(crate) struct Appender {
    path: PathBuf,
    file: RefCell<Option<SegmentFile>>,
    alignment: u64,
    chunk_size_bytes: usize,
    preallocate_step_bytes: Cell<u64>,
    max_allocate_bytes: Cell<u64>,
    state: RefCell<State>,
    writing: Cell<bool>,
    syncing: Cell<bool>,
    /// A truncation's own write-out is running (see `write_out_held`).
    held_write: Cell<bool>,
    notify: Notify,
    /// Set by the first failed write or flush: the file's state is unknown.
    failure: RefCell<Option<String>>,
    /// Set when a round ran out of space; cleared by [`Appender::truncate_to`].
    no_space: RefCell<Option<String>>,
    sync_count: Cell<u64>,
    /// The segment was removed by a truncation: its file must never be created again.
    removed: Cell<bool>,
    /// Truncations waiting to take the appender: no new round starts meanwhile,
    /// so a steady stream of waiters cannot starve a truncation.
    exclusive_wanted: Cell<u32>,
    /// When it was queued for the commit pipeline's next turn (None: not queued); also
    /// feeds the turn-wait histogram.
    pub(super) queued_at: Cell<Option<Instant>>,
    /// When a flush last moved `durable_pos` (for the commit-notify histogram).
    durable_at: Cell<Option<Instant>>,
}

fn align_down(v: u64, a: u64) -> u64 {
    v / a * a
}
fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// The bytes of `buf` from `from` on, in a buffer of their own (for a chunk whose front is
/// already on disk). Copies unwritten bytes only, once per chunk.
fn suffix(buf: &Rc<DmaBuffer>, from: usize) -> Rc<DmaBuffer> {
    if from == 0 {
        return buf.clone();
    }
    let rest = &buf.as_bytes()[from..];
    let mut out = glommio::allocate_dma_buffer(rest.len());
    out.as_bytes_mut().copy_from_slice(rest);
    Rc::new(out)
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

    /// An appender for a new, empty segment over a simulated file (fault tests).
    #[cfg(test)]
    pub(crate) fn new_simulated(
        path: PathBuf,
        file: Rc<crate::storage::segment_file::sim::SimFile>,
        alignment: u64,
        preallocate_step_bytes: u64,
        max_allocate_bytes: u64,
    ) -> Appender {
        Self::build(
            path,
            Some(SegmentFile::Sim(file)),
            alignment,
            0,
            0,
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
        let alignment = super::dma_open::write_block_bytes(&file);
        let file = SegmentFile::Dma(file);
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
        file: Option<SegmentFile>,
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
                want_written: end_pos,
                want_durable: end_pos,
            }),
            writing: Cell::new(false),
            syncing: Cell::new(false),
            held_write: Cell::new(false),
            notify: Notify::default(),
            failure: RefCell::new(None),
            no_space: RefCell::new(None),
            sync_count: Cell::new(0),
            removed: Cell::new(false),
            exclusive_wanted: Cell::new(0),
            queued_at: Cell::new(None),
            durable_at: Cell::new(None),
        }
    }

    /// The open file for O_DIRECT reads, once a write round has created it.
    pub(crate) fn file(&self) -> Option<Rc<DmaFile>> {
        self.file.borrow().as_ref().and_then(SegmentFile::dma)
    }

    /// The write block: every write starts and ends on a multiple of it.
    pub(crate) fn alignment(&self) -> u64 {
        self.alignment
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
    /// All bytes below are durable.
    #[cfg(test)]
    pub(crate) fn durable_pos(&self) -> u64 {
        self.state.borrow().durable_pos
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
    /// Why the appender stopped for good, if it did (an I/O error).
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.borrow().clone()
    }
    /// Whether a write ran out of space and bytes it could not write are still held.
    /// A flag left with nothing unwritten (the bytes were cut by a truncation that did not
    /// end in this segment) is cleared here: there is nothing left to refuse for.
    pub(crate) fn is_out_of_space(&self) -> bool {
        if self.no_space.borrow().is_none() {
            return false;
        }
        let pending = {
            let st = self.state.borrow();
            st.written_pos < st.end_pos
        };
        if !pending && !self.writing.get() && !self.held_write.get() {
            *self.no_space.borrow_mut() = None;
        }
        pending
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

    fn check_space(&self) -> Result<(), StorageError> {
        match &*self.no_space.borrow() {
            Some(reason) => Err(StorageError::NoSpace {
                path: self.path.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records a failure that leaves the file's state unknown: every later
    /// wait fails with `Poisoned` (fail-stop, a write is never retried).
    pub(crate) fn fail(&self, err: StorageError) -> StorageError {
        tracing::error!(
            path = %self.path.display(),
            error = %err,
            "segment I/O failed: the partition is offline; check the device and its kernel log, \
             then restart the broker (recovery keeps every batch that reached the disk intact)"
        );
        *self.failure.borrow_mut() = Some(err.to_string());
        self.notify.notify_all();
        err
    }

    /// Sorts a file error: out of space refuses rounds until the unwritten bytes are
    /// dropped; anything else poisons the appender.
    fn on_error(&self, op: &'static str, e: FileError) {
        match e {
            FileError::NoSpace(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "{op}: out of disk space; writes to this partition are refused until space is free");
                *self.no_space.borrow_mut() = Some(format!("{op}: {e}"));
                self.notify.notify_all();
            }
            FileError::Failed(e) => {
                self.fail(StorageError::io(op, &self.path, e));
            }
        }
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
    /// Dropping the future leaves the write it asked for running.
    pub(crate) async fn wait_written(
        self: &Rc<Self>,
        pos: u64,
        end_offset: i64,
    ) -> Result<(), StorageError> {
        loop {
            self.check_failed()?;
            if self.state.borrow().written_pos >= pos {
                return Ok(());
            }
            self.check_truncated(pos, end_offset)?;
            self.check_space()?;
            self.ask(|st| st.want_written = st.want_written.max(pos))
                .await;
        }
    }

    /// Resolves once every byte below `pos` is fdatasync'ed; concurrent waiters share
    /// flushes. `end_offset` is the log offset after those bytes (for errors).
    /// Dropping the future leaves the write and flush it asked for running.
    pub(crate) async fn wait_durable(
        self: &Rc<Self>,
        pos: u64,
        end_offset: i64,
    ) -> Result<(), StorageError> {
        let mut waited = false;
        loop {
            self.check_failed()?;
            let written = {
                let st = self.state.borrow();
                if st.durable_pos >= pos {
                    if let (true, Some(at)) = (waited, self.durable_at.get()) {
                        crate::metrics::record(crate::metrics::Stage::CommitNotify, at.elapsed());
                    }
                    return Ok(());
                }
                st.written_pos
            };
            waited = true;
            self.check_truncated(pos, end_offset)?;
            if written < pos {
                self.check_space()?;
            }
            self.ask(|st| st.want_durable = st.want_durable.max(pos))
                .await;
        }
    }

    /// Records what a waiter wants (`raise` lifts a `want_*` position), starts the rounds
    /// that serve it, and sleeps until a round ends or a truncation releases the appender.
    async fn ask(self: &Rc<Self>, raise: impl FnOnce(&mut State)) {
        raise(&mut self.state.borrow_mut());
        // Listen before kicking: a round may end (and notify) before kick returns.
        let notified = self.notify.notified();
        self.kick();
        notified.await;
    }

    /// Starts what waiters want and is not running: a write round when wanted bytes are
    /// unwritten (its own task, which kicks again when it ends), a place in the commit
    /// pipeline's next turn when wanted bytes are written but not durable.
    pub(super) fn kick(self: &Rc<Self>) {
        // The decision is taken just before the spawn: a spawned round may run (and end,
        // kicking again) before the spawn returns.
        if self.should_write() {
            self.writing.set(true);
            let me = self.clone();
            crate::util::priority::spawn_latency(async move {
                {
                    let _guard = RoundGuard {
                        flag: &me.writing,
                        notify: &me.notify,
                    };
                    if let Err((op, e)) = me.write_round().await {
                        me.on_error(op, e);
                    }
                }
                me.kick();
            })
            .detach();
        }
        if self.should_sync() {
            commit_pipeline::want_flush(self);
        }
    }

    /// A write round is wanted and may start.
    fn should_write(&self) -> bool {
        if self.writing.get()
            || self.held_write.get()
            || self.failure.borrow().is_some()
            || self.no_space.borrow().is_some()
            || self.exclusive_wanted.get() > 0
        {
            return false;
        }
        let st = self.state.borrow();
        st.want_written.max(st.want_durable).min(st.end_pos) > st.written_pos
    }

    /// A flush is wanted and the appender is not queued for one yet.
    fn should_sync(&self) -> bool {
        self.queued_at.get().is_none() && self.flush_ready()
    }

    /// A flush is wanted and may start: wanted bytes are written but not durable, and no
    /// flush or truncation holds the appender.
    pub(super) fn flush_ready(&self) -> bool {
        if self.syncing.get()
            || self.held_write.get()
            || self.failure.borrow().is_some()
            || self.exclusive_wanted.get() > 0
        {
            return false;
        }
        let st = self.state.borrow();
        st.want_durable.min(st.end_pos) > st.durable_pos && st.written_pos > st.durable_pos
    }

    async fn ensure_file(&self) -> Result<SegmentFile, (&'static str, FileError)> {
        if let Some(f) = self.file.borrow().clone() {
            return Ok(f);
        }
        if self.removed.get() {
            // Re-creating the file of a truncated segment could bring its old batches back;
            // a removed segment has no bytes, so no round should get here.
            return Err((
                "open removed segment",
                FileError::Failed(std::io::Error::from_raw_os_error(libc::ENOENT)),
            ));
        }
        let file = super::dma_open::open_file(&self.path)
            .await
            .map_err(|e| ("create segment", e))?;
        // The new file's directory entry is durable before any byte in it is acknowledged:
        // an fdatasync of the file alone does not cover it.
        if let Some(dir) = self.path.parent().map(Path::to_path_buf) {
            glommio::executor()
                .spawn_blocking(move || super::recovery::sync_dir(&dir))
                .await
                .map_err(|e| {
                    (
                        "fsync segment directory",
                        FileError::Failed(std::io::Error::other(e.to_string())),
                    )
                })?;
        }
        let file = SegmentFile::Dma(Rc::new(file));
        *self.file.borrow_mut() = Some(file.clone());
        Ok(file)
    }

    /// One write round: everything appended when it starts, from the first block that
    /// holds unwritten bytes.
    async fn write_round(&self) -> Result<(), (&'static str, FileError)> {
        let file = self.ensure_file().await?;
        // Snapshot what to write; copy the dirty part of the tail chunk so
        // appends can keep filling the head while the write is in flight.
        let (target_pos, target_offset, sealed, tail, need_alloc) = {
            let st = self.state.borrow();
            let from = align_down(st.written_pos, self.alignment);
            let sealed: Vec<(u64, Rc<DmaBuffer>)> = st
                .sealed
                .iter()
                .map(|(pos, buf)| {
                    let skip = from.saturating_sub(*pos).min(buf.len() as u64);
                    (pos + skip, suffix(buf, skip as usize))
                })
                .filter(|(_, buf)| !buf.is_empty())
                .collect();
            let mut tail = None;
            if st.head_len > 0 && st.end_pos > st.written_pos {
                let from_pos = from.max(st.head_start);
                let from = (from_pos - st.head_start) as usize;
                let to = align_up(st.head_len as u64, self.alignment) as usize;
                if let Some(head) = st.head.as_ref() {
                    let mut buf = glommio::allocate_dma_buffer(to - from);
                    buf.as_bytes_mut()
                        .copy_from_slice(&head.as_bytes()[from..to]);
                    tail = Some((from_pos, Rc::new(buf)));
                }
            }
            let needed = align_up(st.end_pos, self.alignment);
            let need_alloc = if needed > st.allocated_bytes {
                let step = self.preallocate_step_bytes.get();
                let stepped = needed.div_ceil(step) * step;
                let cap = align_up(self.max_allocate_bytes.get(), self.alignment);
                Some((needed, needed.max(stepped.min(cap))))
            } else {
                None
            };
            let done = st.sealed.len();
            (st.end_pos, st.end_offset, (done, sealed), tail, need_alloc)
        };
        if let Some((needed, size)) = need_alloc {
            // A full step when there is room, else exactly what this round needs.
            let allocated = match file.pre_allocate(size).await {
                Err(FileError::NoSpace(_)) if size > needed => {
                    file.pre_allocate(needed).await.map(|()| needed)
                }
                other => other.map(|()| size),
            }
            .map_err(|e| ("pre-allocate", e))?;
            let mut st = self.state.borrow_mut();
            st.allocated_bytes = st.allocated_bytes.max(allocated);
        }
        let (sealed_count, sealed) = sealed;
        let writes = sealed.into_iter().chain(tail).map(|(pos, buf)| {
            let file = file.clone();
            async move {
                let len = buf.len();
                (pos, len, file.write_at(buf, pos).await)
            }
        });
        let started = std::time::Instant::now();
        let written = futures::future::join_all(writes).await;
        crate::metrics::record(crate::metrics::Stage::StorageWrite, started.elapsed());
        for (pos, len, res) in written {
            let n = res.map_err(|e| ("write", e))?;
            if n != len {
                let short =
                    std::io::Error::other(format!("short write at {pos}: {n} of {len} bytes"));
                return Err(("write", FileError::Failed(short)));
            }
        }
        let mut st = self.state.borrow_mut();
        st.sealed.drain(..sealed_count);
        st.written_pos = st.written_pos.max(target_pos);
        if target_offset > st.written_offset {
            st.written_offset = target_offset;
        }
        Ok(())
    }

    /// Joins a commit turn: marks the flush running and returns what it will cover
    /// (everything written now).
    pub(super) fn begin_flush(&self) -> (u64, i64) {
        self.syncing.set(true);
        let st = self.state.borrow();
        (st.written_pos, st.written_offset)
    }

    /// The turn's fdatasync of this segment's file.
    pub(super) async fn flush_file(&self) -> Result<(), FileError> {
        let file = self.file.borrow().clone();
        if let Some(file) = file {
            self.sync_count.set(self.sync_count.get() + 1);
            let started = Instant::now();
            let synced = file.fdatasync().await;
            crate::metrics::record(crate::metrics::Stage::Fdatasync, started.elapsed());
            synced?;
        }
        Ok(())
    }

    /// Applies the outcome of the turn's flush: what was written when it started is
    /// durable, or the appender is poisoned. Never "out of space": a failed flush leaves
    /// unknown what reached the disk, so it is never retried on the same data (fail-stop).
    pub(super) fn settle_flush(
        &self,
        (cover_pos, cover_offset): (u64, i64),
        result: Result<(), FileError>,
    ) {
        match result {
            Ok(()) => {
                let mut st = self.state.borrow_mut();
                st.durable_pos = st.durable_pos.max(cover_pos);
                st.durable_offset = st.durable_offset.max(cover_offset);
                self.durable_at.set(Some(Instant::now()));
            }
            Err(e) => {
                self.fail(StorageError::io("fdatasync", &self.path, e.into_io()));
            }
        }
    }

    /// Ends this segment's part in a turn and wakes its waiters.
    pub(super) fn end_flush(&self) {
        self.syncing.set(false);
        self.notify.notify_all();
    }
}

/// Reads the aligned block holding `end_pos` (when that block is partial)
/// into a zeroed head chunk of `chunk` bytes, so the next tail write rewrites
/// the block with its valid bytes intact.
async fn load_head(
    file: &SegmentFile,
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
            .read_block(head_start, alignment as usize)
            .await
            .map_err(|e| StorageError::io("read tail block", path, e.into_io()))?;
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
