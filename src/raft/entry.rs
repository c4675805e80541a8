//! Where a Raft entry sits in the Kafka log.
//!
//! Every entry takes at least one Kafka offset, so every replica derives the same offsets
//! from the same log: a data entry holds record batches and takes one offset per record
//! (the leader stamps the base offsets and its term before proposing); the no-op a new
//! leader appends and every membership change take one offset each (on disk they become
//! control batches that clients skip, like KRaft's LeaderChange and Voters records).

use raft::eraftpb::{Entry, EntryType};

use crate::storage::batch::{self, BatchHeader};

/// Why an entry's bytes are not a sequence of record batches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// A batch header or its declared length runs past the entry.
    #[error("entry holds a truncated or malformed record batch at byte {at}")]
    Malformed {
        /// Where the bad batch starts.
        at: usize,
    },
    /// A batch declares no records (a negative `lastOffsetDelta`).
    #[error("entry holds a record batch with lastOffsetDelta {0}")]
    NoRecords(i32),
}

/// How many offsets `entry` takes.
pub fn offsets_in(entry: &Entry) -> Result<i64, EntryError> {
    match entry.get_entry_type() {
        EntryType::EntryNormal if !entry.get_data().is_empty() => walk(entry.get_data(), |_| {}),
        _ => Ok(1),
    }
}

/// The base offset the leader stamped into a data entry (`None` for entries without
/// batches, whose offset only their position gives).
pub fn stamped_base(entry: &Entry) -> Option<i64> {
    if entry.get_entry_type() != EntryType::EntryNormal {
        return None;
    }
    BatchHeader::parse(entry.get_data())
        .ok()
        .map(|header| header.base_offset)
}

/// Stamps consecutive base offsets from `base` and the leader epoch `term` into every batch
/// of `data` (fields outside the CRC) and returns how many offsets they take.
pub fn stamp(data: &mut [u8], base: i64, term: i32) -> Result<i64, EntryError> {
    // Validate first, then stamp: a malformed entry is left untouched.
    let count = walk(data, |_| {})?;
    let (mut at, mut next) = (0, base);
    while let Some(size) = batch::peek_total_size_bytes(&data[at..]) {
        let delta = BatchHeader::parse(&data[at..]).map_or(0, |h| h.last_offset_delta);
        batch::stamp(&mut data[at..], next, term);
        next += i64::from(delta) + 1;
        at += size;
        if at >= data.len() {
            break;
        }
    }
    Ok(count)
}

/// Visits every batch of `data` as (start, lastOffsetDelta) and sums their offsets.
fn walk(data: &[u8], mut visit: impl FnMut((usize, i32))) -> Result<i64, EntryError> {
    let mut at = 0;
    let mut count = 0i64;
    while at < data.len() {
        let rest = &data[at..];
        let size = batch::peek_total_size_bytes(rest)
            .filter(|&size| size <= rest.len())
            .ok_or(EntryError::Malformed { at })?;
        let header = BatchHeader::parse(rest).map_err(|_| EntryError::Malformed { at })?;
        if header.last_offset_delta < 0 {
            return Err(EntryError::NoRecords(header.last_offset_delta));
        }
        visit((at, header.last_offset_delta));
        count += i64::from(header.last_offset_delta) + 1;
        at += size;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::storage::records::{build_batch, KeyedRecord};

    fn batch(records: usize) -> Vec<u8> {
        let records: Vec<KeyedRecord> = (0..records)
            .map(|i| KeyedRecord {
                key: Bytes::from(format!("k{i}")),
                value: Some(Bytes::from_static(b"v")),
            })
            .collect();
        build_batch(&records, None, 0).unwrap().to_vec()
    }

    #[test]
    fn a_data_entry_takes_one_offset_per_record_and_the_rest_take_one() {
        let mut data = batch(3);
        data.extend_from_slice(&batch(2));
        assert_eq!(stamp(&mut data, 10, 4), Ok(5));
        let mut entry = Entry::default();
        entry.set_data(data.into());
        assert_eq!(offsets_in(&entry), Ok(5));
        assert_eq!(stamped_base(&entry), Some(10));
        let second = BatchHeader::parse(&entry.get_data()[batch(3).len()..]).unwrap();
        assert_eq!((second.base_offset, second.partition_leader_epoch), (13, 4));
        // The batches still verify: the stamped fields are outside the CRC.
        assert!(batch::parse_and_verify(entry.get_data()).is_ok());

        assert_eq!(offsets_in(&Entry::default()), Ok(1));
        let mut change = Entry::default();
        change.set_entry_type(EntryType::EntryConfChangeV2);
        change.set_data(Bytes::from_static(b"\x01\x02"));
        assert_eq!(offsets_in(&change), Ok(1));
    }

    #[test]
    fn a_truncated_batch_is_refused() {
        let data = batch(2);
        let mut entry = Entry::default();
        entry.set_data(Bytes::copy_from_slice(&data[..data.len() - 1]));
        assert_eq!(offsets_in(&entry), Err(EntryError::Malformed { at: 0 }));
    }
}
