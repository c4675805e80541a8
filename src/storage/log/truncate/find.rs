//! Finding where a truncation cuts: the batch holding the offset, located
//! from the sparse index by scanning batch headers, and the segment's max
//! timestamp without the removed batches.

use std::ops::ControlFlow;
use std::rc::Rc;

use crate::storage::error::StorageError;
use crate::storage::segment::{scan_batches, ScanEnd, Segment};

use super::{Holding, PartitionLog};

/// Read size of the batch-header scans of a truncation (they cover about two
/// index intervals).
const TRUNCATE_READ_SIZE_BYTES: usize = 64 * 1024;

impl PartitionLog {
    /// Finds the first batch holding an offset >= `offset` in `seg` (written
    /// and held exclusively), what `seg`'s max timestamp becomes without it,
    /// and reads back the partial block before it.
    pub(super) async fn find_cut(
        &self,
        seg: Rc<Segment>,
        offset: i64,
    ) -> Result<Holding, StorageError> {
        let written_pos = seg.appender.written_pos();
        // A cut exactly at the written end drops only what never reached the disk (e.g. after
        // ENOSPC): the scan below ends there without finding a batch, and the cut is there.
        let at_written_end =
            offset == seg.appender.written_offset() && written_pos < seg.appender.end_pos();
        let start = seg.index.borrow().truncation_scan_start(offset);
        // (base offset, max timestamp) of the batches scanned before the cut.
        let mut before: Vec<(i64, i64)> = Vec::new();
        let mut found = None;
        let end = match seg.appender.file() {
            Some(file) => {
                scan_batches(
                    &file,
                    &seg.path,
                    start,
                    written_pos,
                    TRUNCATE_READ_SIZE_BYTES,
                    |h, _, pos| {
                        if h.last_offset() >= offset {
                            found = Some((pos, h.base_offset));
                            return ControlFlow::Break(());
                        }
                        before.push((h.base_offset, h.max_timestamp_ms));
                        ControlFlow::Continue(())
                    },
                )
                .await?
            }
            // Never written, so never created (the file is created by the first write).
            None if written_pos == 0 => ScanEnd::End(0),
            None => {
                return Err(StorageError::Corrupt {
                    path: seg.path.clone(),
                    position: 0,
                    reason: format!("segment holding offset {offset} has no file"),
                })
            }
        };
        if found.is_none() && at_written_end && matches!(end, ScanEnd::End(p) if p == written_pos) {
            found = Some((written_pos, offset));
        }
        let Some((position, end_offset)) = found else {
            let (position, reason) = match end {
                ScanEnd::Invalid {
                    position, reason, ..
                } => (position, reason),
                ScanEnd::End(p) | ScanEnd::Stopped(p) => (
                    p,
                    format!(
                        "no batch holds offset {offset} (segment {}..{}, scanned from byte {start})",
                        seg.base_offset,
                        seg.next_offset()
                    ),
                ),
            };
            return Err(StorageError::Corrupt {
                path: seg.path.clone(),
                position,
                reason,
            });
        };
        let (old_ts, old_ts_offset) = (
            seg.max_timestamp_ms.get(),
            seg.max_timestamp_batch_offset.get(),
        );
        let (max_timestamp_ms, max_timestamp_batch_offset) = if old_ts_offset < end_offset {
            // The batch with the max timestamp survives, so the max is unchanged.
            (old_ts, old_ts_offset)
        } else {
            let indexed = seg.index.borrow().max_timestamp_below(position);
            let scanned = before.iter().map(|(_, ts)| *ts).max().unwrap_or(-1);
            let max = indexed.max(scanned);
            if max <= -1 {
                (-1, seg.base_offset)
            } else if scanned > indexed {
                // First reached after the last kept index entry: among the scanned batches.
                let first = before.iter().find(|(_, ts)| *ts == max);
                (max, first.map_or(seg.base_offset, |(base, _)| *base))
            } else {
                // First reached at or before the last kept index entry: scan from
                // the entry before the first one that saw it (one index interval).
                let from = seg.index.borrow().position_for_timestamp(max);
                (max, self.batch_offset_at(&seg, from, position, max).await?)
            }
        };
        let head = seg.appender.reload_head(position).await?;
        Ok(Holding {
            seg,
            position,
            head,
            max_timestamp_ms,
            max_timestamp_batch_offset,
            end_offset,
        })
    }

    /// Base offset of the first batch in `seg` within `[from, to)` whose max
    /// timestamp reaches `ts_ms`.
    async fn batch_offset_at(
        &self,
        seg: &Segment,
        from: u64,
        to: u64,
        ts_ms: i64,
    ) -> Result<i64, StorageError> {
        let Some(file) = seg.appender.file() else {
            return Err(StorageError::Corrupt {
                path: seg.path.clone(),
                position: from,
                reason: "segment file missing".to_string(),
            });
        };
        let mut found = None;
        let end = scan_batches(
            &file,
            &seg.path,
            from,
            to,
            TRUNCATE_READ_SIZE_BYTES,
            |h, _, _| {
                if h.max_timestamp_ms >= ts_ms {
                    found = Some(h.base_offset);
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .await?;
        found.ok_or_else(|| StorageError::Corrupt {
            path: seg.path.clone(),
            position: match end {
                ScanEnd::Invalid { position, .. } => position,
                ScanEnd::End(p) | ScanEnd::Stopped(p) => p,
            },
            reason: format!(
                "no batch reaches the indexed max timestamp {ts_ms} in bytes {from}..{to}"
            ),
        })
    }
}
