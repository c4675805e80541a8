//! Transactions as one partition sees them: which producers have an open transaction here
//! (and from which offset), and which transactions were aborted. From these come the last
//! stable offset (how far read_committed consumers may read) and the aborted-transaction
//! list a read_committed fetch returns so clients can drop aborted records.
//!
//! Pure: the produce path calls [`TxnIndex::on_data`] after assigning offsets, the marker
//! writer calls [`TxnIndex::on_marker`], and recovery replays the log through both.

use ahash::AHashMap;

use crate::storage::BatchHeader;

/// One aborted transaction on a partition: the producer and the offsets from its first
/// record to its abort marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AbortedTxn {
    /// The producer whose records in `[first_offset, last_offset]` are aborted.
    pub producer_id: i64,
    /// Offset of the transaction's first record on this partition.
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
}

/// Open and aborted transactions of one partition.
#[derive(Debug, Default)]
pub struct TxnIndex {
    /// Producer id -> offset of its open transaction's first record here.
    ongoing: AHashMap<i64, i64>,
    /// Aborted transactions, in marker (last offset) order.
    aborted: Vec<AbortedTxn>,
}

impl TxnIndex {
    /// Notes an appended batch (offsets already stamped): a transactional data batch opens
    /// its producer's transaction here if none is open.
    pub fn on_data(&mut self, header: &BatchHeader) {
        if !header.is_transactional() || header.is_control() || header.producer_id < 0 {
            return;
        }
        self.ongoing
            .entry(header.producer_id)
            .or_insert(header.base_offset);
    }

    /// Notes a marker at `offset` closing `producer_id`'s transaction; returns the first
    /// offset of the closed transaction (None if it had no records here).
    pub fn on_marker(&mut self, producer_id: i64, offset: i64, commit: bool) -> Option<i64> {
        let first = self.ongoing.remove(&producer_id)?;
        assert!(first <= offset, "a marker precedes its transaction's data");
        if !commit {
            self.aborted.push(AbortedTxn {
                producer_id,
                first_offset: first,
                last_offset: offset,
            });
        }
        Some(first)
    }

    /// The first offset of `producer_id`'s open transaction here, if any.
    pub fn open_since(&self, producer_id: i64) -> Option<i64> {
        self.ongoing.get(&producer_id).copied()
    }

    /// read_committed consumers see offsets below this: the first offset of the oldest
    /// open transaction, capped by the high watermark.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.ongoing
            .values()
            .copied()
            .min()
            .map_or(high_watermark, |first| first.min(high_watermark))
    }

    /// Aborted transactions overlapping `[from, to)`, oldest first.
    pub fn aborted_in(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < to)
            .copied()
            .collect()
    }

    /// Whether a stored batch is invisible to read_committed readers: part of an aborted
    /// transaction or of one still open. Internal readers (group offsets) skip those.
    pub fn hides(&self, header: &BatchHeader) -> bool {
        if !header.is_transactional() || header.is_control() {
            return false;
        }
        let pid = header.producer_id;
        if self
            .ongoing
            .get(&pid)
            .is_some_and(|first| header.base_offset >= *first)
        {
            return true;
        }
        self.is_aborted(pid, header.base_offset)
    }

    /// Whether `producer_id`'s transactional record at `offset` was aborted.
    pub fn is_aborted(&self, producer_id: i64, offset: i64) -> bool {
        self.aborted.iter().any(|a| {
            a.producer_id == producer_id && offset >= a.first_offset && offset <= a.last_offset
        })
    }

    /// Forgets aborted transactions wholly below the log start offset (retention).
    pub fn prune_below(&mut self, log_start_offset: i64) {
        self.aborted.retain(|a| a.last_offset >= log_start_offset);
    }

    /// The open transactions (producer id, first offset) and the aborted list, for a
    /// snapshot.
    pub fn parts(&self) -> (Vec<(i64, i64)>, Vec<AbortedTxn>) {
        (
            self.ongoing.iter().map(|(p, o)| (*p, *o)).collect(),
            self.aborted.clone(),
        )
    }

    /// Rebuilds the index from a snapshot's parts.
    pub fn from_parts(ongoing: Vec<(i64, i64)>, aborted: Vec<AbortedTxn>) -> TxnIndex {
        TxnIndex {
            ongoing: ongoing.into_iter().collect(),
            aborted,
        }
    }

    /// Number of open transactions (metrics, tests).
    pub fn ongoing_count(&self) -> usize {
        self.ongoing.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, base: i64, count: i32, transactional: bool) -> BatchHeader {
        let mut buf = vec![0u8; crate::storage::batch::BATCH_HEADER_SIZE_BYTES];
        buf[0..8].copy_from_slice(&base.to_be_bytes());
        buf[8..12].copy_from_slice(&49i32.to_be_bytes());
        buf[16] = 2;
        let attributes: i16 = if transactional { 1 << 4 } else { 0 };
        buf[21..23].copy_from_slice(&attributes.to_be_bytes());
        buf[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        buf[43..51].copy_from_slice(&pid.to_be_bytes());
        buf[57..61].copy_from_slice(&count.to_be_bytes());
        BatchHeader::parse(&buf).unwrap()
    }

    #[test]
    fn lso_is_the_oldest_open_transaction_capped_by_the_high_watermark() {
        let mut t = TxnIndex::default();
        assert_eq!(t.last_stable_offset(10), 10);
        t.on_data(&header(1, 4, 2, true));
        t.on_data(&header(2, 6, 1, true));
        t.on_data(&header(1, 7, 1, true));
        assert_eq!(t.last_stable_offset(10), 4);
        assert_eq!(t.last_stable_offset(3), 3);
        assert_eq!(t.on_marker(1, 8, true), Some(4));
        assert_eq!(t.last_stable_offset(10), 6);
        assert_eq!(t.on_marker(2, 9, false), Some(6));
        assert_eq!(t.last_stable_offset(10), 10);
        assert_eq!(
            t.aborted_in(0, 10),
            vec![AbortedTxn {
                producer_id: 2,
                first_offset: 6,
                last_offset: 9
            }]
        );
        assert!(t.aborted_in(10, 20).is_empty());
    }

    #[test]
    fn plain_batches_open_nothing_and_markers_without_data_close_nothing() {
        let mut t = TxnIndex::default();
        t.on_data(&header(1, 0, 1, false));
        assert_eq!(t.ongoing_count(), 0);
        assert_eq!(t.on_marker(1, 1, false), None);
        assert!(t.aborted_in(0, 10).is_empty());
    }

    #[test]
    fn aborted_and_open_batches_are_hidden() {
        let mut t = TxnIndex::default();
        t.on_data(&header(1, 0, 1, true));
        t.on_marker(1, 1, false);
        t.on_data(&header(1, 2, 1, true));
        assert!(t.hides(&header(1, 0, 1, true)));
        assert!(t.hides(&header(1, 2, 1, true)));
        t.on_marker(1, 3, true);
        assert!(!t.hides(&header(1, 2, 1, true)));
        assert!(!t.hides(&header(7, 0, 1, false)));
        t.prune_below(2);
        assert!(t.aborted_in(0, 10).is_empty());
    }
}
