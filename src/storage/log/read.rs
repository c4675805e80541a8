//! The read side of a partition log: fetches (tail cache first, then aligned
//! DMA reads of whole batches), ListOffsets by timestamp and max timestamp,
//! and OffsetForLeaderEpoch.

use std::cell::Cell;
use std::ops::ControlFlow;
use std::rc::Rc;

use bytes::Bytes;

use crate::storage::batch::BatchHeader;
use crate::storage::error::StorageError;
use crate::storage::segment::{scan_batches, scan_batches_peeking, Peek, ScanEnd, Segment};

use super::{FetchedData, PartitionLog};

const MIN_READ_SIZE_BYTES: usize = 64 * 1024;
const MAX_READ_SIZE_BYTES: usize = 8 * 1024 * 1024;

impl PartitionLog {
    /// Whole batches containing offsets >= `offset` and < `max_offset`, up to
    /// `max_bytes` but always at least one batch (KIP-74). Served from the
    /// tail cache when possible, else by aligned DMA reads. A read that a
    /// truncation overtakes is done again against the truncated log.
    pub async fn read(
        &self,
        offset: i64,
        max_offset: i64,
        max_bytes: usize,
    ) -> Result<FetchedData, StorageError> {
        loop {
            let seen = self.truncations.get();
            let result = self.read_once(offset, max_offset, max_bytes).await;
            if self.truncations.get() == seen {
                return result;
            }
        }
    }

    async fn read_once(
        &self,
        offset: i64,
        max_offset: i64,
        max_bytes: usize,
    ) -> Result<FetchedData, StorageError> {
        let seen = self.truncations.get();
        let (start, end) = (self.log_start_offset.get(), self.log_end_offset.get());
        if offset < start || offset > end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: start,
                log_end_offset: end,
            });
        }
        let limit = max_offset.min(self.written_offset());
        if offset >= limit {
            return Ok(FetchedData::default());
        }
        if let Some(batches) = self.cache.borrow().read(offset, limit, max_bytes) {
            let total_bytes = batches.iter().map(|b| b.len()).sum();
            return Ok(FetchedData {
                batches,
                total_bytes,
                from_cache: true,
            });
        }
        let segs: Vec<Rc<Segment>> = {
            let all = self.segments.borrow();
            let k = all.partition_point(|s| s.base_offset <= offset);
            all[k.saturating_sub(1)..].to_vec()
        };
        let mut out = FetchedData::default();
        let read_size = max_bytes.clamp(MIN_READ_SIZE_BYTES, MAX_READ_SIZE_BYTES);
        let mut want = offset;
        for seg in segs {
            if seg.base_offset >= limit {
                break;
            }
            let Some(file) = seg.appender.file() else {
                break;
            };
            let start_pos = seg.index.borrow().position_for_offset(want);
            let data_end = seg.appender.written_pos();
            // The peek reads what the visit adds: shared through cells.
            let (taken, total) = (Cell::new(out.batches.len()), Cell::new(out.total_bytes));
            let end = scan_batches_peeking(
                &file,
                &seg.path,
                start_pos,
                data_end,
                read_size,
                |h, size| {
                    if h.last_offset() < want {
                        Peek::Skip
                    } else if h.base_offset >= limit
                        || (taken.get() > 0 && total.get() + size > max_bytes)
                    {
                        Peek::Stop
                    } else {
                        Peek::Read
                    }
                },
                |_, bytes, _| {
                    taken.set(taken.get() + 1);
                    total.set(total.get() + bytes.len());
                    out.batches.push(Bytes::copy_from_slice(bytes));
                    ControlFlow::Continue(())
                },
            )
            .await?;
            out.total_bytes = total.get();
            let full = matches!(end, ScanEnd::Stopped(_));
            end.corrupt_if_invalid(&seg.path)
                .map_err(|e| self.damage_unless_truncated(e, seen, seg.base_offset))?;
            if full {
                break;
            }
            want = seg.next_offset();
        }
        Ok(out)
    }

    /// A read that met an invalid batch below the written end found damage in acknowledged
    /// data, unless a truncation ran meanwhile (it may have cut what the read was scanning):
    /// then the caller reads again.
    fn damage_unless_truncated(
        &self,
        err: StorageError,
        truncations_at_start: u64,
        segment_base_offset: i64,
    ) -> StorageError {
        if self.truncations.get() != truncations_at_start {
            return err;
        }
        self.note_damage(err, segment_base_offset)
    }

    /// Scans `seg` from `start_pos` for the first batch matching `pred`.
    async fn find_batch<P>(
        &self,
        seg: &Segment,
        start_pos: u64,
        mut pred: P,
    ) -> Result<Option<Bytes>, StorageError>
    where
        P: FnMut(&BatchHeader) -> bool,
    {
        let Some(file) = seg.appender.file() else {
            return Ok(None);
        };
        let seen = self.truncations.get();
        let mut found = None;
        let end = scan_batches(
            &file,
            &seg.path,
            start_pos,
            seg.appender.written_pos(),
            MIN_READ_SIZE_BYTES,
            |h, bytes, _| {
                if pred(h) {
                    found = Some(Bytes::copy_from_slice(bytes));
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .await?;
        end.corrupt_if_invalid(&seg.path)
            .map_err(|e| self.damage_unless_truncated(e, seen, seg.base_offset))?;
        Ok(found)
    }

    /// ListOffsets by timestamp: earliest (offset, timestamp) of a record with
    /// timestamp >= `ts_ms`; None if none. Done again if a truncation overtakes it.
    pub async fn offset_for_timestamp(
        &self,
        ts_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        loop {
            let seen = self.truncations.get();
            let result = self.offset_for_timestamp_once(ts_ms).await;
            if self.truncations.get() == seen {
                return result;
            }
        }
    }

    async fn offset_for_timestamp_once(
        &self,
        ts_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let segs: Vec<Rc<Segment>> = self.segments.borrow().clone();
        let log_start = self.log_start_offset.get();
        let written = self.written_offset();
        for seg in segs {
            if seg.max_timestamp_ms.get() < ts_ms || seg.next_offset() <= log_start {
                continue;
            }
            let start_pos = seg.index.borrow().position_for_timestamp(ts_ms);
            let mut after = log_start;
            loop {
                let batch = self
                    .find_batch(&seg, start_pos, |h| {
                        h.max_timestamp_ms >= ts_ms
                            && h.last_offset() >= after
                            && h.base_offset < written
                    })
                    .await?;
                let Some(batch) = batch else { break };
                let header = BatchHeader::parse(&batch).map_err(|e| StorageError::Corrupt {
                    path: seg.path.clone(),
                    position: 0,
                    reason: e.to_string(),
                })?;
                if let Some(hit) =
                    find_record(&seg, batch, &header, |o, t| o >= log_start && t >= ts_ms)?
                {
                    return Ok(Some(hit));
                }
                after = header.last_offset() + 1;
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP: (offset, timestamp) of the first record with
    /// the largest timestamp. Done again if a truncation overtakes it.
    pub async fn max_timestamp(&self) -> Result<Option<(i64, i64)>, StorageError> {
        loop {
            let seen = self.truncations.get();
            let result = self.max_timestamp_once().await;
            if self.truncations.get() == seen {
                return result;
            }
        }
    }

    async fn max_timestamp_once(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let best = {
            let segs = self.segments.borrow();
            let mut best: Option<Rc<Segment>> = None;
            for s in segs.iter() {
                if s.max_timestamp_ms.get() >= 0
                    && best
                        .as_ref()
                        .is_none_or(|b| s.max_timestamp_ms.get() > b.max_timestamp_ms.get())
                {
                    best = Some(s.clone());
                }
            }
            best
        };
        let Some(seg) = best else { return Ok(None) };
        let ts = seg.max_timestamp_ms.get();
        let batch_offset = seg.max_timestamp_batch_offset.get();
        let start_pos = seg.index.borrow().position_for_offset(batch_offset);
        let batch = self
            .find_batch(&seg, start_pos, |h| h.base_offset == batch_offset)
            .await?;
        let Some(batch) = batch else { return Ok(None) };
        let header = BatchHeader::parse(&batch).map_err(|e| StorageError::Corrupt {
            path: seg.path.clone(),
            position: 0,
            reason: e.to_string(),
        })?;
        find_record(&seg, batch, &header, |_, t| t == ts)
    }

    /// OffsetForLeaderEpoch: for the largest epoch <= `epoch` in the log, that
    /// epoch and its end offset (start of the next epoch, or log end).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let segs = self.segments.borrow();
        let mut found: Option<i32> = None;
        for s in segs.iter().filter(|s| !s.is_empty()) {
            if s.term <= epoch {
                found = Some(found.map_or(s.term, |f: i32| f.max(s.term)));
            }
        }
        let found = found?;
        let end = segs
            .iter()
            .filter(|s| !s.is_empty() && s.term > found)
            .map(|s| s.base_offset)
            .min()
            .unwrap_or(self.log_end_offset.get());
        Some((found, end))
    }
}

/// Decodes a batch and returns the first record matching `pred(offset, ts)`.
fn find_record<P>(
    seg: &Segment,
    mut batch: Bytes,
    header: &BatchHeader,
    pred: P,
) -> Result<Option<(i64, i64)>, StorageError>
where
    P: Fn(i64, i64) -> bool,
{
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut batch).map_err(|e| {
        StorageError::Corrupt {
            path: seg.path.clone(),
            position: 0,
            reason: format!("cannot decode batch at offset {}: {e}", header.base_offset),
        }
    })?;
    for r in &set.records {
        let ts = if header.is_log_append_time() {
            header.max_timestamp_ms
        } else {
            r.timestamp
        };
        if pred(r.offset, ts) {
            return Ok(Some((r.offset, ts)));
        }
    }
    Ok(None)
}
