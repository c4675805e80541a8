//! Removing the tail of a partition log: what a Raft follower does to drop an
//! uncommitted suffix that conflicts with its leader, and what a partition
//! uses to roll its state back. See [`PartitionLog::truncate_to`].
//!
//! The order of the work is what keeps it safe:
//! 1. the segment holding the cut is written out, so its batch headers can be
//!    scanned on disk;
//! 2. the appenders of that segment and of every later one are taken
//!    exclusively (running write rounds and fdatasyncs finish first, none
//!    starts): io_uring does not order a write against a cut of the same range;
//! 3. the cut is found (sparse index, then batch headers) and the tail block
//!    read back, all with no write in flight;
//! 4. the in-memory log moves back in one synchronous step (no await), so
//!    every reader, appender and waiter sees either the old or the new log;
//! 5. the files follow in a detached task that owns the exclusive hold, so
//!    dropping the caller's future cannot release the appenders while an
//!    unlink or a cut is still in flight: offsets files are lowered first,
//!    removed files unlinked and the directory fsync'ed, then the holding
//!    file is cut to length and fdatasync'ed; only then may writes resume.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;

use glommio::io::DmaBuffer;

use crate::storage::error::StorageError;
use crate::storage::segment::Segment;

use super::{wall_clock_ms, AppendPosition, PartitionLog};

mod find;
mod io;

/// Truncation points remembered for [`PartitionLog::check_not_truncated`];
/// beyond this the two oldest merge into one that errs on the side of "truncated".
const MAX_TRUNCATION_POINTS: usize = 64;

/// Appenders a truncation holds exclusively until its file I/O is done.
/// Segments rolled while the I/O runs join the set, so no write round (which
/// could create a file a truncation is about to unlink) starts before the end.
pub(super) struct Quiesced {
    segments: RefCell<Vec<Rc<Segment>>>,
    done: Cell<bool>,
}

impl Quiesced {
    fn new(segments: Vec<Rc<Segment>>) -> Rc<Quiesced> {
        Rc::new(Quiesced {
            segments: RefCell::new(segments),
            done: Cell::new(false),
        })
    }

    fn release(&self) {
        self.done.set(true);
        for seg in self.segments.take() {
            seg.appender.release_exclusive();
        }
    }
}

/// Releases a [`Quiesced`] set when dropped: when the truncation's I/O task
/// ends, or when a truncation gives up (retries) before changing anything.
struct ReleaseOnDrop(Rc<Quiesced>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Withdraws a truncation's wish to take appenders when dropped (it got them,
/// gave up, or its future was dropped), waking the waiters it held back.
struct Wanted(Vec<Rc<Segment>>);

impl Drop for Wanted {
    fn drop(&mut self) {
        for seg in &self.0 {
            seg.appender.unwant_exclusive();
        }
    }
}

/// Where the log is cut.
struct Cut {
    /// The new log end: base offset of the first removed batch, or the
    /// requested offset when the cut is below the first segment.
    end_offset: i64,
    /// The segment keeping the batches below the cut; `None` when the cut is
    /// below the first segment (everything goes, the log restarts at the offset).
    holding: Option<Holding>,
}

/// The segment holding the cut, as it becomes.
struct Holding {
    seg: Rc<Segment>,
    /// Byte position of the first removed batch: the new length of the file.
    position: u64,
    /// The partial block before `position`, read back: the new head chunk.
    head: DmaBuffer,
    /// Largest timestamp of the kept batches (-1 if none), and its batch.
    max_timestamp_ms: i64,
    max_timestamp_batch_offset: i64,
    /// Base offset of the first removed batch.
    end_offset: i64,
}

/// The file work of a truncation, owned so it can run as a detached task.
struct TruncationIo {
    dir: PathBuf,
    /// Released (waking writers) only once the files match the in-memory log.
    held: ReleaseOnDrop,
    /// The (new) active segment: cut and synced, or poisoned if that fails.
    active: Rc<Segment>,
    /// Whether `active` is the segment holding the cut (else a fresh one).
    cut_active: bool,
    position: u64,
    end_offset: i64,
    /// Segments removed whole (for the log line).
    removed_segments: usize,
    /// Files to unlink, highest offsets first.
    remove: Vec<PathBuf>,
    /// New value of the recovery-point file, when it was beyond the new end.
    recovery_point: Option<i64>,
    /// New value of the log-start-offset file, when the cut went below it.
    log_start_offset: Option<i64>,
}

impl PartitionLog {
    /// Removes every batch at or above `offset`, so the log end becomes
    /// `offset` and the next append is assigned `offset`: a Raft follower drops
    /// an uncommitted tail that conflicts with its leader this way, and a
    /// partition rolls back state. Kafka's `Log.truncateTo`, with these rules:
    /// - a cut inside a batch removes the whole batch (batches are stored and
    ///   replicated whole), so the end becomes that batch's base offset;
    /// - `offset >= log_end_offset` changes nothing;
    /// - below the log start offset everything goes and the log restarts
    ///   empty with start = end: at `offset` itself when `offset` is below
    ///   the first segment, else at the base of the batch holding it
    ///   (Kafka's `truncateFullyAndStartAt` and `logStartOffset = min(...)`).
    ///
    /// Waits for running write rounds and fdatasyncs of the affected segments
    /// and starts none until it is done. Returns once the change is durable:
    /// recovery point and log start lowered, removed files unlinked and the
    /// directory fsync'ed, the holding file cut to length and fdatasync'ed,
    /// so a restart cannot bring a removed batch back. Pending waits for
    /// removed data fail with `Truncated`. If the returned future is dropped
    /// once the in-memory log has moved back, the file work still completes
    /// (and holds writers back) in the background; dropped earlier, nothing changes.
    pub async fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        if offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset.get(),
                log_end_offset: self.log_end_offset.get(),
            });
        }
        loop {
            if self.closed.get() {
                return Err(StorageError::Closed {
                    dir: self.dir.clone(),
                });
            }
            self.refuse_if_damaged()?;
            self.wait_for_cleaner_swap().await;
            if offset >= self.log_end_offset.get() {
                tracing::debug!(dir = %self.dir.display(), offset, log_end = self.log_end_offset.get(), "truncation at or beyond log end: nothing to do");
                return Ok(());
            }
            let seen = self.truncations.get();
            // Another truncation finishing meanwhile invalidates what was found: start over.
            let Some(io) = self.prepare(offset, seen).await? else {
                continue;
            };
            let removed = io.removed_segments;
            let end_offset = io.end_offset;
            let result = glommio::spawn_local(io.run()).detach().await;
            let result = result.unwrap_or_else(|| {
                Err(StorageError::io(
                    "truncate",
                    &self.dir,
                    std::io::Error::new(
                        std::io::ErrorKind::Interrupted,
                        "truncation task cancelled",
                    ),
                ))
            });
            match &result {
                Ok(()) => {
                    tracing::info!(dir = %self.dir.display(), offset, log_end = end_offset, removed_segments = removed, "log truncated")
                }
                Err(e) => {
                    tracing::error!(dir = %self.dir.display(), offset, log_end = end_offset, error = %e, "log truncation failed; partition log is unusable")
                }
            }
            return result;
        }
    }

    /// Steps 1–4 of the module docs; `None` when a concurrent truncation
    /// changed the log and the caller must start over.
    async fn prepare(&self, offset: i64, seen: u64) -> Result<Option<TruncationIo>, StorageError> {
        let holding = {
            let segs = self.segments.borrow();
            let k = segs.partition_point(|s| s.base_offset <= offset);
            (k > 0).then(|| segs[k - 1].clone())
        };
        let Some(held) = self.quiesce(holding.as_ref(), seen).await else {
            return Ok(None);
        };
        if let Some(seg) = &holding {
            // The batch headers are scanned on disk: write out what is still in memory,
            // while no other round can start (so nothing becomes durable meanwhile) —
            // unless the cut is at the written end, where nothing needs scanning.
            if offset != seg.appender.written_offset() {
                seg.appender.write_out_held().await?;
            }
        }
        let cut = match holding {
            Some(seg) => {
                let holding = self.find_cut(seg, offset).await?;
                Cut {
                    end_offset: holding.end_offset,
                    holding: Some(holding),
                }
            }
            None => Cut {
                end_offset: offset,
                holding: None,
            },
        };
        Ok(self.apply(cut, held))
    }

    /// Takes the appenders of `holding` (all segments when `None`) and every
    /// later segment once none has a write round or fdatasync running;
    /// `None` if a truncation ran meanwhile or `holding` is gone.
    async fn quiesce(&self, holding: Option<&Rc<Segment>>, seen: u64) -> Option<ReleaseOnDrop> {
        let mut wanted = Wanted(Vec::new());
        loop {
            if self.truncations.get() != seen {
                return None;
            }
            let affected: Vec<Rc<Segment>> = {
                let segs = self.segments.borrow();
                let from = match holding {
                    Some(h) => segs.iter().position(|s| Rc::ptr_eq(s, h))?,
                    None => 0,
                };
                segs[from..].to_vec()
            };
            for seg in &affected {
                if !wanted.0.iter().any(|w| Rc::ptr_eq(w, seg)) {
                    seg.appender.want_exclusive();
                    wanted.0.push(seg.clone());
                }
            }
            if let Some(busy) = affected.iter().find(|s| !s.appender.is_idle()) {
                busy.appender.wait_idle().await;
                continue;
            }
            // All idle and no await since the check: every take succeeds.
            for seg in &affected {
                seg.appender.try_exclusive();
            }
            return Some(ReleaseOnDrop(Quiesced::new(affected)));
        }
    }

    /// Step 4: moves the in-memory log back to `cut` in one synchronous step
    /// and returns the file work that makes it durable. `None` (nothing
    /// changed) if a segment rolled since quiescing has a write running.
    fn apply(&self, cut: Cut, held: ReleaseOnDrop) -> Option<TruncationIo> {
        let removed: Vec<Rc<Segment>> = {
            let mut segs = self.segments.borrow_mut();
            let keep = match &cut.holding {
                Some(h) => segs.iter().position(|s| Rc::ptr_eq(s, &h.seg))? + 1,
                None => 0,
            };
            let mut set = held.0.segments.borrow_mut();
            for seg in &segs[keep..] {
                if !set.iter().any(|h| Rc::ptr_eq(h, seg)) {
                    if !seg.appender.try_exclusive() {
                        return None;
                    }
                    set.push(seg.clone());
                }
            }
            segs.drain(keep..).collect()
        };
        let mut remove = Vec::with_capacity(removed.len() * 3 + 2);
        for seg in removed.iter().rev() {
            seg.appender.detach_removed(cut.end_offset);
            remove.extend([seg.path.clone(), seg.index_path(), seg.time_index_path()]);
        }
        let position = cut.holding.as_ref().map_or(0, |h| h.position);
        let (active, cut_active) = match cut.holding {
            Some(h) => {
                let seg = h.seg;
                seg.appender.truncate_to(h.position, cut.end_offset, h.head);
                seg.index.borrow_mut().truncate_at(h.position);
                seg.max_timestamp_ms.set(h.max_timestamp_ms);
                seg.max_timestamp_batch_offset
                    .set(h.max_timestamp_batch_offset);
                // Active again: its index files on disk describe the old length.
                seg.sealed.set(false);
                seg.index_persisted.set(false);
                remove.extend([seg.index_path(), seg.time_index_path()]);
                (seg, true)
            }
            None => {
                let seg =
                    self.new_pending_segment(cut.end_offset, self.term.get(), wall_clock_ms());
                seg.appender.try_exclusive();
                held.0.segments.borrow_mut().push(seg.clone());
                self.segments.borrow_mut().push(seg.clone());
                (seg, false)
            }
        };
        self.cache.borrow_mut().truncate_from(cut.end_offset);
        self.log_end_offset.set(cut.end_offset);
        let log_start_offset = (cut.end_offset < self.log_start_offset.get()).then(|| {
            self.log_start_offset.set(cut.end_offset);
            cut.end_offset
        });
        let recovery_point = (self.recovery_point.get() > cut.end_offset).then(|| {
            self.recovery_point.set(cut.end_offset);
            cut.end_offset
        });
        self.record_truncation(cut.end_offset);
        *self.truncation_in_flight.borrow_mut() = Some(held.0.clone());
        Some(TruncationIo {
            dir: self.dir.clone(),
            held,
            active,
            cut_active,
            position,
            end_offset: cut.end_offset,
            removed_segments: removed.len(),
            remove,
            recovery_point,
            log_start_offset,
        })
    }

    fn record_truncation(&self, cut: i64) {
        let n = self.truncations.get() + 1;
        self.truncations.set(n);
        let mut points = self.truncation_points.borrow_mut();
        while points.last().is_some_and(|&(_, c)| c >= cut) {
            points.pop();
        }
        points.push((n, cut));
        if points.len() > MAX_TRUNCATION_POINTS {
            // (n1, c1), (n2, c2) become (n2, c1): exact for positions older than
            // n1, and c1 < c2 only makes positions between them look truncated.
            let (_, lowest) = points.remove(0);
            points[0].1 = lowest;
        }
    }

    /// `Truncated` if a truncation since `pos` was issued cut below its end
    /// (its data is gone, even if the same offsets were appended again since).
    pub(super) fn check_not_truncated(&self, pos: &AppendPosition) -> Result<(), StorageError> {
        if pos.truncations == self.truncations.get() {
            return Ok(());
        }
        let points = self.truncation_points.borrow();
        let k = points.partition_point(|(n, _)| *n <= pos.truncations);
        match points.get(k) {
            Some(&(_, cut)) if cut < pos.end_offset => Err(StorageError::Truncated {
                path: self.dir.clone(),
                end_offset: pos.end_offset,
                truncated_to: cut,
            }),
            _ => Ok(()),
        }
    }

    /// Lets a segment rolled while a truncation's file I/O runs wait for it:
    /// its first write round could otherwise create a file of the same name
    /// as one the truncation is about to unlink.
    pub(super) fn hold_for_truncation(&self, seg: &Rc<Segment>) {
        let mut slot = self.truncation_in_flight.borrow_mut();
        let Some(held) = slot.as_ref() else { return };
        if held.done.get() {
            *slot = None;
        } else if seg.appender.try_exclusive() {
            held.segments.borrow_mut().push(seg.clone());
        }
    }
}
