//! What removes data from the front of a partition log: DeleteRecords and
//! time/size retention (whole closed, durable segments only), plus the config
//! changes that steer them.

use std::rc::Rc;

use crate::storage::error::StorageError;
use crate::storage::recovery::{self, LOG_START_OFFSET_FILE};
use crate::storage::segment::Segment;

use super::{LogConfig, PartitionLog};

impl PartitionLog {
    /// Removes the oldest `count` segments (never the active one); the unlinks run on
    /// glommio's blocking pool and are durable (directory fsynced) when this returns.
    async fn remove_oldest(&self, count: usize) -> Result<u64, StorageError> {
        self.wait_for_cleaner_swap().await;
        let removed: Vec<Rc<Segment>> = {
            let mut segs = self.segments.borrow_mut();
            let n = count.min(segs.len().saturating_sub(1));
            segs.drain(..n).collect()
        };
        let mut bytes = 0;
        for seg in &removed {
            tracing::info!(path = %seg.path.display(), base_offset = seg.base_offset, size_bytes = seg.size_bytes(), "deleting segment");
            glommio::executor().spawn_blocking(seg.remove_job()).await?;
            bytes += seg.size_bytes();
        }
        if let Some(first) = self.segments.borrow().first() {
            if first.base_offset > self.log_start_offset.get() {
                self.log_start_offset.set(first.base_offset);
            }
        }
        self.cache
            .borrow_mut()
            .evict_below(self.log_start_offset.get());
        Ok(bytes)
    }

    /// DeleteRecords: moves the log start offset to `offset` (persisted and
    /// fsync'ed) and deletes segments wholly below it. Returns the new log start.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        let end = self.log_end_offset.get();
        if offset > end || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset.get(),
                log_end_offset: end,
            });
        }
        if offset <= self.log_start_offset.get() {
            return Ok(self.log_start_offset.get());
        }
        self.refuse_if_damaged()?;
        let path = self.dir.join(LOG_START_OFFSET_FILE);
        glommio::executor()
            .spawn_blocking(move || recovery::write_offset_file(&path, offset))
            .await?;
        self.log_start_offset.set(offset);
        let count = {
            let segs = self.segments.borrow();
            segs[..segs.len() - 1]
                .iter()
                .take_while(|s| s.next_offset() <= offset && s.appender.is_fully_durable())
                .count()
        };
        self.remove_oldest(count).await?;
        Ok(self.log_start_offset.get())
    }

    /// Retention: deletes the oldest closed segments whose max timestamp is
    /// older than `retention_ms`, then while the log exceeds `retention_bytes`.
    /// Never the active segment, and nothing when `cleanup.policy` lacks `delete`.
    /// Returns bytes deleted.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<u64, StorageError> {
        let (retention_ms, retention_bytes) = {
            let c = self.config.borrow();
            if !c.delete_enabled {
                return Ok(0);
            }
            (c.retention_ms, c.retention_bytes)
        };
        let count = {
            let segs = self.segments.borrow();
            let closed = &segs[..segs.len() - 1];
            let mut count = 0;
            let mut remaining: i64 = segs.iter().map(|s| s.size_bytes() as i64).sum();
            for s in closed {
                if !s.appender.is_fully_durable() {
                    break;
                }
                let expired = retention_ms >= 0 && now_ms - s.max_timestamp_ms.get() > retention_ms;
                let oversize =
                    retention_bytes >= 0 && remaining - s.size_bytes() as i64 >= retention_bytes;
                if !(expired || oversize) {
                    break;
                }
                remaining -= s.size_bytes() as i64;
                count += 1;
            }
            count
        };
        if count == 0 || self.is_damaged() {
            return Ok(0);
        }
        self.remove_oldest(count).await
    }

    /// Applies new settings to future appends, rolls and retention runs.
    pub fn update_config(&self, config: LogConfig) {
        self.cache
            .borrow_mut()
            .set_budget(config.cache_budget_bytes);
        let max_alloc = recovery::max_allocate_bytes(&config);
        self.active()
            .appender
            .set_allocation(config.preallocate_step_bytes, max_alloc);
        *self.config.borrow_mut() = config;
    }
}
