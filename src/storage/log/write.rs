//! The append path of a partition log: rolling segments, stamping offsets
//! into batches, and the waits that turn an append into a written (acks=1) or
//! durable (acks=all) one; also `flush` and `close`, which are waits for everything.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::BytesMut;

use crate::storage::appender::Appender;
use crate::storage::batch::{self, BatchHeader};
use crate::storage::error::StorageError;
use crate::storage::index::SegmentIndex;
use crate::storage::recovery;
use crate::storage::segment::{self, Segment};

use super::{AppendInfo, AppendPosition, PartitionLog};

/// Largest offset span of one segment (relative offsets are u32 in the index).
const MAX_SEGMENT_OFFSET_SPAN: i64 = i32::MAX as i64;

impl PartitionLog {
    /// A new, empty active segment whose file the first write round creates.
    pub(super) fn new_pending_segment(
        &self,
        base_offset: i64,
        term: i32,
        now_ms: i64,
    ) -> Rc<Segment> {
        let config = self.config.borrow();
        let path = self.dir.join(segment::segment_file_name(base_offset, term));
        let appender = Appender::new_pending(
            path.clone(),
            self.alignment,
            base_offset,
            config.preallocate_step_bytes,
            recovery::max_allocate_bytes(&config),
        );
        Rc::new(Segment::new(
            base_offset,
            term,
            path,
            appender,
            SegmentIndex::new(base_offset, config.index_interval_bytes),
            now_ms,
        ))
    }

    /// Rolls (or re-terms an empty active segment) when needed before an append.
    fn maybe_roll(&self, payload_bytes: u64, records: i64, now_ms: i64) {
        let active = self.active();
        let term = self.term.get();
        let (segment_size_bytes, segment_ms) = {
            let c = self.config.borrow();
            (c.segment_size_bytes, c.segment_ms)
        };
        if active.is_empty() {
            if active.term != term {
                // Replace the empty segment so its name carries the new term (a crash
                // before the removal leaves an empty segment recovery reads past).
                let remove = active.remove_job();
                let path = active.path.clone();
                crate::util::priority::spawn_background(async move {
                    if let Err(e) = glommio::executor().spawn_blocking(remove).await {
                        tracing::warn!(path = %path.display(), error = %e, "could not remove empty segment");
                    }
                })
                .detach();
                let seg = self.new_pending_segment(active.base_offset, term, now_ms);
                self.hold_for_truncation(&seg);
                let mut segs = self.segments.borrow_mut();
                let last = segs.len() - 1;
                segs[last] = seg;
            }
            return;
        }
        let full = active.size_bytes() + payload_bytes > segment_size_bytes;
        let old = now_ms - active.created_ms.get() >= segment_ms;
        let span =
            self.log_end_offset.get() + records - active.base_offset > MAX_SEGMENT_OFFSET_SPAN;
        if full || old || span || active.term != term {
            let base = self.log_end_offset.get();
            tracing::debug!(dir = %self.dir.display(), base_offset = base, term, full, old, "rolling segment");
            active.sealed.set(true);
            // A segment durable before it was sealed gets its index (and moves the
            // recovery point) now; one still being written gets them when it is durable.
            if active.appender.is_fully_durable() {
                self.persist_sealed();
            }
            let seg = self.new_pending_segment(base, term, now_ms);
            self.hold_for_truncation(&seg);
            self.segments.borrow_mut().push(seg);
        }
    }

    /// Appends already-validated batches (one produce payload: one or more
    /// concatenated v2 batches): stamps contiguous base offsets and the
    /// current term, optionally LogAppendTime, copies them into the head
    /// chunk and updates indexes and cache. Synchronous; the data becomes
    /// readable once written (see `wait_written`).
    pub fn append(
        &self,
        mut batches: BytesMut,
        log_append_time: bool,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed {
                dir: self.dir.clone(),
            });
        }
        if let Some(reason) = self.offline_reason() {
            return Err(StorageError::Poisoned {
                path: self.dir.clone(),
                reason,
            });
        }
        if self.is_out_of_space() || now_ms < self.space_retry_at_ms.get() {
            return Err(StorageError::NoSpace {
                path: self.dir.clone(),
                reason: "the disk ran out of space; appends are refused until it has room".into(),
            });
        }
        // Pass 1: framing and record counts (no CRC; validated by the caller).
        let mut at = 0usize;
        let mut records = 0i64;
        while at < batches.len() {
            let h = BatchHeader::parse(&batches[at..]).map_err(|source| {
                StorageError::InvalidBatch {
                    position: at,
                    source,
                }
            })?;
            h.check_record_count()
                .map_err(|source| StorageError::InvalidBatch {
                    position: at,
                    source,
                })?;
            let size = h.total_size_bytes();
            if at + size > batches.len() {
                return Err(StorageError::InvalidBatch {
                    position: at,
                    source: batch::BatchError::Truncated {
                        needed_bytes: size,
                        available_bytes: batches.len() - at,
                    },
                });
            }
            records += i64::from(h.record_count);
            at += size;
        }
        if records == 0 {
            return Err(StorageError::InvalidBatch {
                position: 0,
                source: batch::BatchError::Truncated {
                    needed_bytes: batch::BATCH_HEADER_SIZE_BYTES,
                    available_bytes: 0,
                },
            });
        }
        self.maybe_roll(batches.len() as u64, records, now_ms);
        let seg = self.active();
        let term = self.term.get();
        let base_offset = self.log_end_offset.get();
        // Pass 2: stamp in place.
        let mut next = base_offset;
        let mut at = 0usize;
        while at < batches.len() {
            let size = batch::peek_total_size_bytes(&batches[at..]).unwrap_or(0);
            let b = &mut batches[at..at + size];
            batch::stamp(b, next, term);
            if log_append_time {
                batch::set_log_append_time(b, now_ms);
            }
            let count = i64::from(BatchHeader::parse(b).map(|h| h.record_count).unwrap_or(0));
            next += count;
            at += size;
        }
        let start_pos = seg.size_bytes();
        if start_pos == 0 {
            // segment.ms counts from the first append.
            seg.created_ms.set(now_ms);
        }
        let end_pos = seg.appender.append(&batches, next);
        // Pass 3: indexes, max timestamp and cache (Bytes handles, no copies).
        let mut bytes = batches.freeze();
        let mut pos = start_pos;
        let mut cache = self.cache.borrow_mut();
        while !bytes.is_empty() {
            let size = batch::peek_total_size_bytes(&bytes).unwrap_or(bytes.len());
            let one = bytes.split_to(size.min(bytes.len()));
            if let Ok(h) = BatchHeader::parse(&one) {
                seg.on_batch(&h, pos);
                cache.push(h.base_offset, h.last_offset(), one);
            }
            pos += size as u64;
        }
        self.log_end_offset.set(next);
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            end_position: AppendPosition {
                segment_base_offset: seg.base_offset,
                end_pos,
                end_offset: next,
                truncations: self.truncations.get(),
            },
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
        })
    }

    /// Segments up to and including `pos`'s that still have unwritten (or
    /// unsynced) data, oldest first; older ones must complete first.
    fn unsettled_up_to(&self, pos: &AppendPosition) -> Vec<Rc<Segment>> {
        self.segments
            .borrow()
            .iter()
            .filter(|s| s.base_offset <= pos.segment_base_offset && !s.appender.is_fully_durable())
            .cloned()
            .collect()
    }

    /// Resolves when everything up to `pos` has been written with O_DIRECT (acks=1 point).
    /// Fails with `Truncated` if `truncate_to` removed the data before that.
    ///
    /// Older segments are made durable first, not only written: a segment's file is
    /// created only once every segment before it is durable, so after a crash a damaged
    /// segment followed by another is never a torn write (recovery relies on it).
    pub async fn wait_written(&self, pos: AppendPosition) -> Result<(), StorageError> {
        self.check_not_truncated(&pos)?;
        for seg in self.unsettled_up_to(&pos) {
            if seg.base_offset == pos.segment_base_offset {
                seg.appender
                    .wait_written(pos.end_pos, pos.end_offset)
                    .await?;
            } else {
                self.wait_sealed_durable(&seg).await?;
            }
            self.check_not_truncated(&pos)?;
        }
        Ok(())
    }

    /// Resolves when everything up to `pos` is fdatasync'ed (acks=all point,
    /// the single-voter commit). Concurrent callers share fdatasyncs.
    /// Fails with `Truncated` if `truncate_to` removed the data before that.
    pub async fn wait_durable(&self, pos: AppendPosition) -> Result<(), StorageError> {
        self.check_not_truncated(&pos)?;
        for seg in self.unsettled_up_to(&pos) {
            if seg.base_offset == pos.segment_base_offset {
                seg.appender
                    .wait_durable(pos.end_pos, pos.end_offset)
                    .await?;
            } else {
                self.wait_sealed_durable(&seg).await?;
            }
            // Checked before anything else: a truncation during the wait may have removed
            // this segment or moved its end back.
            self.check_not_truncated(&pos)?;
        }
        Ok(())
    }

    /// Waits until a segment older than the active one is durable, then has its index
    /// persisted and the recovery point moved past it.
    async fn wait_sealed_durable(&self, seg: &Rc<Segment>) -> Result<(), StorageError> {
        seg.appender
            .wait_durable(seg.appender.end_pos(), seg.next_offset())
            .await?;
        self.persist_sealed();
        Ok(())
    }

    /// Persists the index of every sealed, durable segment that has none yet, oldest
    /// first, moving the recovery point past each. Runs as one detached task at a time,
    /// on glommio's blocking pool: no waiter blocks the shard on the file system, and none
    /// that is cancelled leaves the files half written. A failure (a full disk) is only
    /// logged: the data is durable, the index and recovery point only shorten recovery,
    /// and the next roll or wait tries again.
    pub(super) fn persist_sealed(&self) {
        if self.persisting.get() || self.is_damaged() || next_unpersisted(&self.segments).is_none()
        {
            return;
        }
        self.persisting.set(true);
        let (persisting, recovery_point) = (self.persisting.clone(), self.recovery_point.clone());
        let (segments, truncations) = (self.segments.clone(), self.truncations.clone());
        let (dir, seen) = (self.dir.clone(), self.truncations.get());
        crate::util::priority::spawn_background(async move {
            // Until none is left: segments sealed meanwhile are picked up too.
            while let Some(seg) = next_unpersisted(&segments) {
                // A truncation since may have removed segments: no index may come back,
                // nor the recovery point move past the new end.
                if truncations.get() != seen {
                    break;
                }
                let Some(job) = seg.index_job() else { break };
                let next = seg.next_offset();
                let rp_path = dir.join(super::RECOVERY_POINT_FILE);
                let result = glommio::executor()
                    .spawn_blocking(move || {
                        job()?;
                        recovery::write_offset_file(&rp_path, next)
                    })
                    .await;
                match result {
                    Ok(()) => {
                        seg.index_persisted.set(true);
                        recovery_point.set(recovery_point.get().max(next));
                    }
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "could not persist a rolled segment's index; recovery will rebuild it");
                        break;
                    }
                }
            }
            persisting.set(false);
        })
        .detach();
    }

    /// Makes everything appended so far durable. If a truncation overtakes
    /// it, what is left of the log is made durable instead.
    pub async fn flush(&self) -> Result<(), StorageError> {
        loop {
            let pos = self.end_position();
            match self.wait_durable(pos).await {
                Err(StorageError::Truncated { .. })
                    if self.truncations.get() != pos.truncations => {}
                result => return result,
            }
        }
    }

    /// Clean shutdown: writes pending data, fdatasyncs, persists indexes and
    /// the recovery point. Later appends fail with `Closed`. A damaged log changes nothing.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.closed.set(true);
        if self.is_damaged() {
            return Ok(());
        }
        self.flush().await?;
        // A persist task may still run: wait for it, then persist what is left.
        while self.persisting.get() {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        let segs: Vec<Rc<Segment>> = self.segments.borrow().clone();
        for seg in segs {
            if !seg.index_persisted.get() {
                super::persist_index(&seg).await?;
            }
        }
        self.write_recovery_point(self.log_end_offset.get()).await?;
        tracing::info!(dir = %self.dir.display(), log_end = self.log_end_offset.get(), "partition log closed");
        Ok(())
    }
}

/// The oldest sealed segment without a persisted index, if every segment up to it is
/// durable (the recovery point may only move past durable data, in order).
fn next_unpersisted(segments: &RefCell<Vec<Rc<Segment>>>) -> Option<Rc<Segment>> {
    segments
        .borrow()
        .iter()
        .take_while(|s| s.sealed.get() && s.appender.is_fully_durable())
        .find(|s| !s.index_persisted.get())
        .cloned()
}
