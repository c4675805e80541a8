//! Bounded tail cache of recently appended batches, so consumers at the tail
//! (the common case) are served from memory without touching the disk.

use std::collections::VecDeque;

use bytes::Bytes;

/// One cached whole batch.
#[derive(Debug, Clone)]
pub(crate) struct CachedBatch {
    /// First offset.
    pub base_offset: i64,
    /// Last offset.
    pub last_offset: i64,
    /// The stored bytes (stamped, exactly as on disk).
    pub bytes: Bytes,
}

/// Contiguous run of the newest batches, at most `budget_bytes` in total.
#[derive(Debug, Default)]
pub(crate) struct TailCache {
    batches: VecDeque<CachedBatch>,
    total_bytes: usize,
    budget_bytes: usize,
}

impl TailCache {
    /// An empty cache holding at most `budget_bytes`.
    pub(crate) fn new(budget_bytes: usize) -> TailCache {
        TailCache {
            batches: VecDeque::new(),
            total_bytes: 0,
            budget_bytes,
        }
    }

    /// Changes the budget, evicting as needed.
    pub(crate) fn set_budget(&mut self, budget_bytes: usize) {
        self.budget_bytes = budget_bytes;
        self.evict();
    }

    /// Adds the newest batch (must follow the previous one) and evicts the oldest over budget.
    pub(crate) fn push(&mut self, base_offset: i64, last_offset: i64, bytes: Bytes) {
        if self.budget_bytes == 0 {
            return;
        }
        if let Some(last) = self.batches.back() {
            if last.last_offset + 1 != base_offset {
                self.clear();
            }
        }
        self.total_bytes += bytes.len();
        self.batches.push_back(CachedBatch {
            base_offset,
            last_offset,
            bytes,
        });
        self.evict();
    }

    fn evict(&mut self) {
        while self.total_bytes > self.budget_bytes {
            match self.batches.pop_front() {
                Some(b) => self.total_bytes -= b.bytes.len(),
                None => break,
            }
        }
    }

    /// Drops everything.
    pub(crate) fn clear(&mut self) {
        self.batches.clear();
        self.total_bytes = 0;
    }

    /// Drops batches wholly below `offset` (log start moved).
    pub(crate) fn evict_below(&mut self, offset: i64) {
        while let Some(b) = self.batches.front() {
            if b.last_offset >= offset {
                break;
            }
            self.total_bytes -= b.bytes.len();
            self.batches.pop_front();
        }
    }

    /// Drops every batch holding offsets at or above `offset` (the log was
    /// truncated there), so a fetch can never be served data the log no longer has.
    pub(crate) fn truncate_from(&mut self, offset: i64) {
        while let Some(b) = self.batches.back() {
            if b.last_offset < offset {
                break;
            }
            self.total_bytes -= b.bytes.len();
            self.batches.pop_back();
        }
    }

    /// Bytes held.
    pub(crate) fn size_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Whole batches holding offsets in [`offset`, `max_offset`), up to
    /// `max_bytes` but at least one; `None` if `offset` is older than the cache.
    pub(crate) fn read(
        &self,
        offset: i64,
        max_offset: i64,
        max_bytes: usize,
    ) -> Option<Vec<Bytes>> {
        let first = self.batches.front()?;
        if offset < first.base_offset {
            return None;
        }
        let start = self.batches.partition_point(|b| b.last_offset < offset);
        let mut out = Vec::new();
        let mut total = 0usize;
        for b in self.batches.range(start..) {
            if b.base_offset >= max_offset {
                break;
            }
            if !out.is_empty() && total + b.bytes.len() > max_bytes {
                break;
            }
            total += b.bytes.len();
            out.push(b.bytes.clone());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_tail_within_budget() {
        let mut c = TailCache::new(300);
        for i in 0..5i64 {
            c.push(i * 10, i * 10 + 9, Bytes::from(vec![0u8; 100]));
        }
        assert_eq!(c.size_bytes(), 300);
        assert!(c.read(5, 100, 1000).is_none());
        let r = c.read(25, 100, 150).unwrap();
        assert_eq!(r.len(), 1);
        let r = c.read(25, 100, 1000).unwrap();
        assert_eq!(r.len(), 3);
        let r = c.read(25, 40, 1000).unwrap();
        assert_eq!(r.len(), 2);
        c.evict_below(40);
        assert_eq!(c.size_bytes(), 100);
    }

    #[test]
    fn truncate_drops_batches_at_or_above_the_offset() {
        let mut c = TailCache::new(1000);
        for i in 0..4i64 {
            c.push(i * 10, i * 10 + 9, Bytes::from(vec![0u8; 100]));
        }
        c.truncate_from(25);
        assert_eq!(c.size_bytes(), 200);
        assert_eq!(c.read(0, 100, 1000).unwrap().len(), 2);
        // The next batch continues at the truncation point without clearing the cache.
        c.push(20, 29, Bytes::from(vec![1u8; 100]));
        assert_eq!(c.read(0, 100, 1000).unwrap().len(), 3);
        c.truncate_from(0);
        assert_eq!(c.size_bytes(), 0);
    }
}
