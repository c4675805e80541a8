//! Idempotent-producer state of one partition: for every producer id, its epoch and the
//! sequence ranges of its last five batches, so a retried batch is answered with its
//! original offsets instead of being written twice.
//!
//! Pure: the produce path calls [`ProducerStateTable::check`] before appending and
//! [`ProducerStateTable::record`] after assigning offsets, in the same synchronous step, and
//! recovery replays every stored batch header through `record`.

use std::collections::VecDeque;

use ahash::AHashMap;

use crate::storage::BatchHeader;

/// Batches remembered per producer, as in Kafka (`max.in.flight.requests.per.connection`
/// must be at most 5 for idempotence).
pub const BATCHES_REMEMBERED_MAX: usize = 5;

/// A producer id that is not idempotent (plain producers send -1).
pub const NO_PRODUCER_ID: i64 = -1;

/// The base sequence of a batch with no sequence numbers (Kafka's `NO_SEQUENCE`): one a
/// coordinator writes for a producer, such as transactional offset commits.
pub const NO_SEQUENCE: i32 = -1;

/// One appended batch, remembered to detect its retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchRecord {
    /// Sequence of the batch's first record.
    pub first_sequence: i32,
    /// Sequence of its last record.
    pub last_sequence: i32,
    /// Offset assigned to its first record.
    pub base_offset: i64,
    /// When the broker appended it (LogAppendTime answers).
    pub append_time_ms: i64,
}

impl BatchRecord {
    /// Offset of the batch's last record. The sequence span wraps past `i32::MAX` as Kafka's
    /// sequences do: a plain `last - first` would go negative for a batch that wraps and
    /// put its end before its start, and a retry of it would then be answered before the
    /// original's last records are committed.
    pub fn last_offset(&self) -> i64 {
        let span = (i64::from(self.last_sequence) - i64::from(self.first_sequence))
            .rem_euclid(i64::from(i32::MAX) + 1);
        self.base_offset + span
    }
}

/// What one producer id last did on this partition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProducerEntry {
    /// The producer epoch of the remembered batches.
    pub epoch: i16,
    /// The last batches, oldest first.
    pub batches: VecDeque<BatchRecord>,
}

/// One producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerView {
    /// The producer id.
    pub producer_id: i64,
    /// Its current epoch on this partition.
    pub epoch: i16,
    /// The last sequence of its last remembered batch, -1 if none.
    pub last_sequence: i32,
    /// When the broker appended that batch, -1 if none.
    pub last_append_time_ms: i64,
    /// The first offset of its open transaction here, -1 if none.
    pub txn_start_offset: i64,
}

/// The verdict on an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not idempotent, or the next batch in sequence: append it.
    Append,
    /// A retry of a batch already in the log: answer with its original offset.
    Duplicate(BatchRecord),
    /// The epoch is older than the producer's current one (a zombie): INVALID_PRODUCER_EPOCH.
    StaleEpoch {
        /// The epoch the partition knows.
        current: i16,
    },
    /// A gap or reordering in the sequence: OUT_OF_ORDER_SEQUENCE_NUMBER.
    OutOfOrder {
        /// The sequence the partition expected.
        expected: i32,
    },
}

/// Every producer's state on one partition.
#[derive(Debug, Default)]
pub struct ProducerStateTable {
    producers: AHashMap<i64, ProducerEntry>,
}

/// The sequence after `seq`, wrapping at i32::MAX as Kafka does.
fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

fn last_sequence(header: &BatchHeader) -> i32 {
    let span = header.record_count.max(1) - 1;
    let last = i64::from(header.base_sequence) + i64::from(span);
    if last > i64::from(i32::MAX) {
        (last - i64::from(i32::MAX) - 1) as i32
    } else {
        last as i32
    }
}

impl ProducerStateTable {
    /// Decides what to do with a batch before it is appended.
    pub fn check(&self, header: &BatchHeader) -> Verdict {
        if header.producer_id == NO_PRODUCER_ID || header.is_control() {
            return Verdict::Append;
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            // A producer we do not know (new, or its state expired with the log): accept,
            // as Kafka does since KIP-360.
            return Verdict::Append;
        };
        if header.producer_epoch < entry.epoch {
            return Verdict::StaleEpoch {
                current: entry.epoch,
            };
        }
        if header.base_sequence == NO_SEQUENCE {
            // Written by a coordinator on the producer's behalf (TxnOffsetCommit's offsets):
            // fenced by epoch only, as in Kafka.
            return Verdict::Append;
        }
        if header.producer_epoch > entry.epoch {
            // A bumped epoch starts its sequences again at 0.
            return if header.base_sequence == 0 {
                Verdict::Append
            } else {
                Verdict::OutOfOrder { expected: 0 }
            };
        }
        let last = last_sequence(header);
        if let Some(original) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == header.base_sequence && b.last_sequence == last)
        {
            return Verdict::Duplicate(*original);
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| next_sequence(b.last_sequence));
        if header.base_sequence == expected {
            Verdict::Append
        } else {
            Verdict::OutOfOrder { expected }
        }
    }

    /// Remembers a batch appended at `base_offset` (after `check` said Append, or when
    /// replaying the log).
    pub fn record(&mut self, header: &BatchHeader, base_offset: i64, append_time_ms: i64) {
        if header.producer_id == NO_PRODUCER_ID || header.is_control() {
            return;
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::with_capacity(BATCHES_REMEMBERED_MAX),
            });
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if header.base_sequence == NO_SEQUENCE {
            // No sequence to remember for a coordinator-written batch.
            return;
        }
        if entry.batches.len() == BATCHES_REMEMBERED_MAX {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchRecord {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            base_offset,
            append_time_ms,
        });
    }

    /// Notes a transaction marker written with `epoch`: a higher epoch (a fenced or
    /// timed-out producer) becomes the producer's epoch here, so its zombie batches are
    /// refused; its sequences restart at 0.
    pub fn record_marker(&mut self, producer_id: i64, epoch: i16) {
        if producer_id == NO_PRODUCER_ID {
            return;
        }
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch,
                batches: VecDeque::with_capacity(BATCHES_REMEMBERED_MAX),
            });
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
    }

    /// Every producer's state, for a snapshot.
    pub fn entries(&self) -> Vec<(i64, ProducerEntry)> {
        self.producers
            .iter()
            .map(|(id, entry)| (*id, entry.clone()))
            .collect()
    }

    /// Rebuilds the table from a snapshot's entries.
    pub fn from_entries(entries: Vec<(i64, ProducerEntry)>) -> ProducerStateTable {
        ProducerStateTable {
            producers: entries.into_iter().collect(),
        }
    }

    /// The state of one producer (for tests and DescribeProducers).
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer known here, in producer id order, with its open transaction's first
    /// offset from `open_since`.
    pub fn views(&self, open_since: impl Fn(i64) -> Option<i64>) -> Vec<ProducerView> {
        let mut views: Vec<ProducerView> = self
            .producers
            .iter()
            .map(|(id, entry)| {
                let last = entry.batches.back();
                ProducerView {
                    producer_id: *id,
                    epoch: entry.epoch,
                    last_sequence: last.map_or(-1, |b| b.last_sequence),
                    last_append_time_ms: last.map_or(-1, |b| b.append_time_ms),
                    txn_start_offset: open_since(*id).unwrap_or(-1),
                }
            })
            .collect();
        views.sort_by_key(|v| v.producer_id);
        views
    }

    /// Number of producers known on this partition.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is known.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32) -> BatchHeader {
        let mut buf = vec![0u8; crate::storage::batch::BATCH_HEADER_SIZE_BYTES];
        buf[8..12].copy_from_slice(&49i32.to_be_bytes());
        buf[16] = 2;
        buf[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        buf[43..51].copy_from_slice(&pid.to_be_bytes());
        buf[51..53].copy_from_slice(&epoch.to_be_bytes());
        buf[53..57].copy_from_slice(&seq.to_be_bytes());
        buf[57..61].copy_from_slice(&count.to_be_bytes());
        BatchHeader::parse(&buf).unwrap()
    }

    #[test]
    fn in_sequence_batches_append_and_retries_are_duplicates() {
        let mut t = ProducerStateTable::default();
        let first = header(7, 0, 0, 3);
        assert_eq!(t.check(&first), Verdict::Append);
        t.record(&first, 100, 1);
        let second = header(7, 0, 3, 2);
        assert_eq!(t.check(&second), Verdict::Append);
        t.record(&second, 103, 2);
        match t.check(&first) {
            Verdict::Duplicate(b) => assert_eq!(b.base_offset, 100),
            other => panic!("retry of the first batch: {other:?}"),
        }
    }

    #[test]
    fn gaps_and_stale_epochs_are_refused() {
        let mut t = ProducerStateTable::default();
        t.record(&header(7, 1, 0, 1), 0, 0);
        assert_eq!(
            t.check(&header(7, 1, 5, 1)),
            Verdict::OutOfOrder { expected: 1 }
        );
        assert_eq!(
            t.check(&header(7, 0, 1, 1)),
            Verdict::StaleEpoch { current: 1 }
        );
        // A bumped epoch must restart at sequence 0.
        assert_eq!(
            t.check(&header(7, 2, 3, 1)),
            Verdict::OutOfOrder { expected: 0 }
        );
        assert_eq!(t.check(&header(7, 2, 0, 1)), Verdict::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut t = ProducerStateTable::default();
        for i in 0..7 {
            t.record(&header(1, 0, i, 1), i64::from(i), 0);
        }
        assert_eq!(t.get(1).unwrap().batches.len(), BATCHES_REMEMBERED_MAX);
        // Batch 0 fell out of the window: its retry is now out of order, not a duplicate.
        assert_eq!(
            t.check(&header(1, 0, 0, 1)),
            Verdict::OutOfOrder { expected: 7 }
        );
        assert!(matches!(
            t.check(&header(1, 0, 6, 1)),
            Verdict::Duplicate(_)
        ));
    }

    #[test]
    fn non_idempotent_batches_are_not_tracked() {
        let mut t = ProducerStateTable::default();
        let plain = header(NO_PRODUCER_ID, -1, -1, 4);
        assert_eq!(t.check(&plain), Verdict::Append);
        t.record(&plain, 0, 0);
        assert!(t.is_empty());
    }

    #[test]
    fn a_marker_with_a_newer_epoch_fences_older_batches() {
        let mut t = ProducerStateTable::default();
        t.record(&header(4, 0, 0, 2), 0, 0);
        t.record_marker(4, 0);
        assert_eq!(t.check(&header(4, 0, 2, 1)), Verdict::Append);
        t.record_marker(4, 1);
        assert_eq!(
            t.check(&header(4, 0, 2, 1)),
            Verdict::StaleEpoch { current: 1 }
        );
        assert_eq!(t.check(&header(4, 1, 0, 1)), Verdict::Append);
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut t = ProducerStateTable::default();
        t.record(&header(3, 0, i32::MAX - 1, 2), 0, 0);
        assert_eq!(t.check(&header(3, 0, 0, 1)), Verdict::Append);
    }

    #[test]
    fn a_retry_of_a_wrapping_batch_waits_for_its_last_record() {
        let mut t = ProducerStateTable::default();
        // Sequences i32::MAX - 1, i32::MAX, 0: three records at offsets 100..=102.
        let wrapping = header(3, 0, i32::MAX - 1, 3);
        t.record(&wrapping, 100, 0);
        match t.check(&wrapping) {
            Verdict::Duplicate(original) => assert_eq!(original.last_offset(), 102),
            other => panic!("retry of the wrapping batch: {other:?}"),
        }
        let plain = BatchRecord {
            first_sequence: 5,
            last_sequence: 9,
            base_offset: 40,
            append_time_ms: 0,
        };
        assert_eq!(plain.last_offset(), 44);
    }
}
