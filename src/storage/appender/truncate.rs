//! What a truncation needs from an appender: taking it exclusively (no write
//! round or fdatasync running or starting), rolling its bytes back with the
//! partial tail block reloaded, and detaching the appender of a removed segment.

use std::rc::Rc;

use glommio::io::DmaBuffer;

use crate::storage::error::StorageError;

use super::{align_down, load_head, Appender};

impl Appender {
    /// Whether no write round and no fdatasync is running.
    pub(crate) fn is_idle(&self) -> bool {
        !self.writing.get() && !self.syncing.get() && !self.held_write.get()
    }

    /// Writes out everything appended while a truncation holds the appender (it scans
    /// batch headers on disk). The write runs as its own task: if the truncation is
    /// dropped meanwhile, the write still completes before any other round starts.
    pub(crate) async fn write_out_held(self: &Rc<Self>) -> Result<(), StorageError> {
        if self.written_pos() >= self.end_pos() {
            return Ok(());
        }
        self.held_write.set(true);
        let me = self.clone();
        let done = glommio::spawn_local(async move {
            let result = me.write_round().await;
            me.held_write.set(false);
            if let Err((op, e)) = result {
                me.on_error(op, e);
            }
            me.notify.notify_all();
        })
        .detach()
        .await;
        self.check_failed()?;
        self.check_space()?;
        if done.is_none() || self.written_pos() < self.end_pos() {
            return Err(StorageError::io(
                "write before truncation",
                &self.path,
                std::io::Error::new(std::io::ErrorKind::Interrupted, "write task cancelled"),
            ));
        }
        Ok(())
    }

    /// Resolves once no write round and no fdatasync is running (at once if none is).
    pub(crate) async fn wait_idle(&self) {
        while !self.is_idle() {
            self.notify.notified().await;
        }
    }

    /// Announces a truncation waiting for [`Appender::try_exclusive`]: rounds
    /// already running finish, no new one starts until [`Appender::unwant_exclusive`].
    pub(crate) fn want_exclusive(&self) {
        self.exclusive_wanted.set(self.exclusive_wanted.get() + 1);
    }

    /// Withdraws a [`Appender::want_exclusive`] and wakes the waiters it held back.
    pub(crate) fn unwant_exclusive(&self) {
        self.exclusive_wanted
            .set(self.exclusive_wanted.get().saturating_sub(1));
        self.notify.notify_all();
    }

    /// Takes the appender for a truncation: marks both a write and a sync round
    /// as running, so none can start until [`Appender::release_exclusive`].
    /// Returns false, taking nothing, while a round is running: io_uring does
    /// not order a running write against the truncation's cut of the same range.
    pub(crate) fn try_exclusive(&self) -> bool {
        if !self.is_idle() {
            return false;
        }
        self.writing.set(true);
        self.syncing.set(true);
        true
    }

    /// Ends a truncation's exclusive use and wakes every waiter, which then
    /// re-checks its bytes against the new end.
    pub(crate) fn release_exclusive(&self) {
        self.writing.set(false);
        self.syncing.set(false);
        self.notify.notify_all();
    }

    /// Reads back the aligned block holding `end_pos` into a fresh head chunk,
    /// so appends after a truncation continue the partial block intact.
    /// Only while held exclusively, with everything below `end_pos` written.
    pub(crate) async fn reload_head(&self, end_pos: u64) -> Result<DmaBuffer, StorageError> {
        if end_pos.is_multiple_of(self.alignment) {
            // Nothing of the block to keep (and the file may not even exist yet).
            let mut head = glommio::allocate_dma_buffer(self.chunk_size_bytes);
            head.as_bytes_mut().fill(0);
            return Ok(head);
        }
        let file = self
            .file
            .borrow()
            .clone()
            .ok_or_else(|| StorageError::Corrupt {
                path: self.path.clone(),
                position: end_pos,
                reason: "segment file missing while reloading the tail block".to_string(),
            })?;
        load_head(
            &file,
            &self.path,
            end_pos,
            self.alignment,
            self.chunk_size_bytes,
        )
        .await
    }

    /// Rolls the appender back so its data ends at `end_pos` (log offset
    /// `end_offset`) with `head` (from [`Appender::reload_head`]) as the head
    /// chunk; unwritten chunks above are dropped. Only while held
    /// exclusively. The caller cuts the file to `end_pos` (hence the
    /// allocation shrinks with it) and then calls [`Appender::mark_durable`].
    pub(crate) fn truncate_to(&self, end_pos: u64, end_offset: i64, head: DmaBuffer) {
        let mut st = self.state.borrow_mut();
        st.head_start = align_down(end_pos, self.alignment);
        st.head_len = (end_pos - st.head_start) as usize;
        st.head = Some(head);
        st.sealed.clear();
        st.end_pos = end_pos;
        st.end_offset = end_offset;
        st.written_pos = st.written_pos.min(end_pos);
        st.written_offset = st.written_offset.min(end_offset);
        st.durable_pos = st.durable_pos.min(end_pos);
        st.durable_offset = st.durable_offset.min(end_offset);
        st.allocated_bytes = st.allocated_bytes.min(end_pos);
        st.want_written = st.want_written.min(end_pos);
        st.want_durable = st.want_durable.min(end_pos);
        // The unwritten bytes that ran out of space are gone: the next round may try again.
        *self.no_space.borrow_mut() = None;
    }

    /// Records that the caller fdatasync'ed the file with everything below
    /// `pos` written (the truncation's own sync), so waiters need no new sync.
    pub(crate) fn mark_durable(&self, pos: u64, offset: i64) {
        let mut st = self.state.borrow_mut();
        let pos = pos.min(st.written_pos);
        if pos > st.durable_pos {
            st.durable_pos = pos;
            st.durable_offset = st.durable_offset.max(offset.min(st.written_offset));
        }
    }

    /// Detaches the appender of a segment a truncation removed: it holds no
    /// data any more, every wait for its bytes fails with `Truncated`, and its
    /// file is never opened or created again (that could resurrect old batches).
    pub(crate) fn detach_removed(&self, truncated_to: i64) {
        self.removed.set(true);
        *self.file.borrow_mut() = None;
        let mut st = self.state.borrow_mut();
        st.head = None;
        st.head_start = 0;
        st.head_len = 0;
        st.sealed.clear();
        st.end_pos = 0;
        st.end_offset = truncated_to;
        st.written_pos = 0;
        st.written_offset = truncated_to;
        st.durable_pos = 0;
        st.durable_offset = truncated_to;
        st.want_written = 0;
        st.want_durable = 0;
    }
}
