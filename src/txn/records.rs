//! `__transaction_state` records in Kafka's own schema, so Kafka tools can read what Sluice
//! writes and the coordinator can be rebuilt from the log.
//!
//! Key: `version: i16 = 0, transactional_id: string`. Value (TransactionLogValue v0):
//! `producer_id: i64, producer_epoch: i16, timeout_ms: i32, status: i8,
//! partitions: [topic: string, partitions: [i32]], last_update_ms: i64, start_ms: i64`.
//! Value v1 (flexible: compact strings and arrays, tagged fields) has the same fields plus
//! three tagged ones transactions v2 needs after a restart: previous producer id (tag 0),
//! next producer id (tag 1) and the client's transaction version (tag 2). v1 is written
//! only when one of those differs from its default, so a transactions-v1 history stays v0.
//! A null value (tombstone) removes the transactional id.

use std::collections::BTreeSet;

use bytes::{BufMut, BytesMut};

use super::coordinator::{TxnMeta, TxnState};

/// Why a stored record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnRecordError {
    /// Fewer bytes than the schema needs.
    #[error("transaction record truncated at byte {0}")]
    Truncated(usize),
    /// A key or value version this broker does not know.
    #[error("unknown transaction record version {0}")]
    Version(i16),
    /// A status code outside Kafka's.
    #[error("unknown transaction status {0}")]
    Status(i8),
    /// A string that is not UTF-8.
    #[error("transaction record holds a string that is not UTF-8")]
    Utf8,
}

/// A transaction-state record ready to append.
pub use crate::storage::records::KeyedRecord as TxnRecord;

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// A compact array or string length (n + 1, as a flexible version writes it).
fn put_compact_len(buf: &mut BytesMut, n: usize) {
    put_uvarint(buf, n as u64 + 1);
}

/// Tag numbers of TransactionLogValue v1's tagged fields.
const TAG_PREVIOUS_PRODUCER_ID: u64 = 0;
const TAG_NEXT_PRODUCER_ID: u64 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: u64 = 2;

/// The record storing `meta`.
pub fn encode(meta: &TxnMeta) -> TxnRecord {
    let mut key = BytesMut::with_capacity(4 + meta.transactional_id.len());
    key.put_i16(0);
    put_string(&mut key, &meta.transactional_id);
    let tagged: Vec<(u64, i64, usize)> = [
        (TAG_PREVIOUS_PRODUCER_ID, meta.previous_producer_id, 8, -1),
        (TAG_NEXT_PRODUCER_ID, meta.next_producer_id, 8, -1),
        (
            TAG_CLIENT_TRANSACTION_VERSION,
            i64::from(meta.client_version),
            2,
            0,
        ),
    ]
    .into_iter()
    .filter(|(_, v, _, default)| v != default)
    .map(|(tag, v, size, _)| (tag, v, size))
    .collect();
    let flexible = !tagged.is_empty();
    let mut value = BytesMut::with_capacity(64);
    value.put_i16(i16::from(flexible));
    value.put_i64(meta.producer_id);
    value.put_i16(meta.producer_epoch);
    value.put_i32(meta.timeout_ms);
    value.put_i8(meta.state.code());
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &meta.partitions {
        match topics.last_mut() {
            Some((t, ps)) if *t == topic.as_str() => ps.push(*partition),
            _ => topics.push((topic.as_str(), vec![*partition])),
        }
    }
    if flexible {
        put_compact_len(&mut value, topics.len());
    } else {
        value.put_i32(topics.len() as i32);
    }
    for (topic, partitions) in topics {
        if flexible {
            put_compact_len(&mut value, topic.len());
            value.put_slice(topic.as_bytes());
            put_compact_len(&mut value, partitions.len());
        } else {
            put_string(&mut value, topic);
            value.put_i32(partitions.len() as i32);
        }
        for p in partitions {
            value.put_i32(p);
        }
        if flexible {
            put_uvarint(&mut value, 0); // the partition entry's own tagged fields: none
        }
    }
    value.put_i64(meta.last_update_ms);
    value.put_i64(meta.start_ms);
    if flexible {
        put_uvarint(&mut value, tagged.len() as u64);
        for (tag, v, size) in tagged {
            put_uvarint(&mut value, tag);
            put_uvarint(&mut value, size as u64);
            if size == 8 {
                value.put_i64(v);
            } else {
                value.put_i16(v as i16);
            }
        }
    }
    TxnRecord {
        key: key.freeze(),
        value: Some(value.freeze()),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], TxnRecordError> {
        if self.buf.len() < self.at + n {
            return Err(TxnRecordError::Truncated(self.at));
        }
        let out = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }
    fn i8(&mut self) -> Result<i8, TxnRecordError> {
        Ok(self.take(1)?[0] as i8)
    }
    fn i16(&mut self) -> Result<i16, TxnRecordError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, TxnRecordError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, TxnRecordError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_be_bytes(a))
    }
    fn string(&mut self) -> Result<String, TxnRecordError> {
        let len = self.i16()?.max(0) as usize;
        self.utf8(len)
    }
    fn utf8(&mut self, len: usize) -> Result<String, TxnRecordError> {
        let b = self.take(len)?;
        String::from_utf8(b.to_vec()).map_err(|_| TxnRecordError::Utf8)
    }
    fn uvarint(&mut self) -> Result<u64, TxnRecordError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(TxnRecordError::Truncated(self.at))
    }
    /// A compact length (stored n + 1); `None` for a null array.
    fn compact_len(&mut self) -> Result<Option<usize>, TxnRecordError> {
        let n = self.uvarint()?;
        Ok(n.checked_sub(1).map(|n| n as usize))
    }
    /// A tagged-field section; the fields are handed to `f` as (tag, bytes).
    fn tagged(
        &mut self,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), TxnRecordError>,
    ) -> Result<(), TxnRecordError> {
        let count = self.uvarint()?;
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            let at = self.at;
            let bytes = self.take(size)?;
            f(tag, bytes).map_err(|_| TxnRecordError::Truncated(at))?;
        }
        Ok(())
    }
}

fn tagged_i64(b: &[u8]) -> Result<i64, TxnRecordError> {
    let a: [u8; 8] = b.try_into().map_err(|_| TxnRecordError::Truncated(0))?;
    Ok(i64::from_be_bytes(a))
}

fn tagged_i16(b: &[u8]) -> Result<i16, TxnRecordError> {
    let a: [u8; 2] = b.try_into().map_err(|_| TxnRecordError::Truncated(0))?;
    Ok(i16::from_be_bytes(a))
}

/// The transactional id a key names.
pub fn decode_key(key: &[u8]) -> Result<String, TxnRecordError> {
    let mut r = Reader { buf: key, at: 0 };
    let version = r.i16()?;
    if version != 0 {
        return Err(TxnRecordError::Version(version));
    }
    r.string()
}

/// Decodes a value into the metadata of `transactional_id`.
pub fn decode_value(transactional_id: &str, value: &[u8]) -> Result<TxnMeta, TxnRecordError> {
    let mut r = Reader { buf: value, at: 0 };
    let version = r.i16()?;
    if !(0..=1).contains(&version) {
        return Err(TxnRecordError::Version(version));
    }
    let flexible = version == 1;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let code = r.i8()?;
    let state = TxnState::from_code(code).ok_or(TxnRecordError::Status(code))?;
    let mut partitions = BTreeSet::new();
    let topics = if flexible {
        r.compact_len()?.unwrap_or(0)
    } else {
        r.i32()?.max(0) as usize
    };
    for _ in 0..topics {
        let (topic, count) = if flexible {
            let len = r.compact_len()?.unwrap_or(0);
            let topic = r.utf8(len)?;
            (topic, r.compact_len()?.unwrap_or(0))
        } else {
            let topic = r.string()?;
            (topic, r.i32()?.max(0) as usize)
        };
        for _ in 0..count {
            partitions.insert((topic.clone(), r.i32()?));
        }
        if flexible {
            r.tagged(|_, _| Ok(()))?;
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    let (mut previous_producer_id, mut next_producer_id, mut client_version) = (-1, -1, 0);
    if flexible {
        r.tagged(|tag, bytes| {
            match tag {
                TAG_PREVIOUS_PRODUCER_ID => previous_producer_id = tagged_i64(bytes)?,
                TAG_NEXT_PRODUCER_ID => next_producer_id = tagged_i64(bytes)?,
                TAG_CLIENT_TRANSACTION_VERSION => client_version = tagged_i16(bytes)?,
                _ => {} // a tag a newer Kafka added: not ours to interpret
            }
            Ok(())
        })?;
    }
    Ok(TxnMeta {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        last_update_ms,
        client_version,
        previous_producer_id,
        next_producer_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let meta = TxnMeta {
            transactional_id: "tx-1".into(),
            producer_id: 1000,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [
                ("a".to_string(), 0),
                ("a".to_string(), 2),
                ("b".to_string(), 1),
            ]
            .into_iter()
            .collect(),
            start_ms: 5,
            last_update_ms: 6,
            client_version: 0,
            previous_producer_id: -1,
            next_producer_id: -1,
        };
        let record = encode(&meta);
        assert_eq!(&record.key[..], b"\x00\x00\x00\x04tx-1");
        assert_eq!(decode_key(&record.key).unwrap(), "tx-1");
        let value = record.value.unwrap();
        assert_eq!(&value[..2], &[0, 0], "a transactions-v1 history stays v0");
        assert_eq!(decode_value("tx-1", &value).unwrap(), meta);
        assert_eq!(
            decode_value("tx-1", &value[..10]),
            Err(TxnRecordError::Truncated(10))
        );

        // What transactions v2 needs after a restart is kept in v1's tagged fields.
        let v2 = TxnMeta {
            client_version: 2,
            previous_producer_id: 999,
            next_producer_id: 1001,
            ..meta
        };
        let value = encode(&v2).value.unwrap();
        assert_eq!(&value[..2], &[0, 1]);
        assert_eq!(decode_value("tx-1", &value).unwrap(), v2);
        for cut in 0..value.len() {
            assert!(decode_value("tx-1", &value[..cut]).is_err(), "cut at {cut}");
        }
    }

    /// A v1 value as Kafka's generated code writes it (compact arrays, an empty tagged
    /// section per partition entry, then tags 0-2), with an unknown tag 9 a later Kafka
    /// might add, which is skipped.
    #[test]
    fn a_kafka_written_v1_value_decodes() {
        let mut v = vec![0, 1];
        v.extend_from_slice(&7i64.to_be_bytes()); // producer id
        v.extend_from_slice(&4i16.to_be_bytes()); // epoch
        v.extend_from_slice(&60_000i32.to_be_bytes());
        v.push(1); // Ongoing
        v.push(2); // one topic
        v.extend_from_slice(&[2, b't']); // "t"
        v.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0, 5]); // partitions [0, 5]
        v.push(0); // no tagged fields
        v.extend_from_slice(&11i64.to_be_bytes());
        v.extend_from_slice(&10i64.to_be_bytes());
        v.push(2); // two tagged fields
        v.extend_from_slice(&[2, 2, 0, 2]); // client transaction version 2
        v.extend_from_slice(&[9, 1, 0xff]); // unknown tag
        let meta = decode_value("x", &v).unwrap();
        assert_eq!((meta.producer_id, meta.producer_epoch), (7, 4));
        assert_eq!(meta.state, TxnState::Ongoing);
        let parts: Vec<_> = meta.partitions.into_iter().collect();
        assert_eq!(parts, vec![("t".to_string(), 0), ("t".to_string(), 5)]);
        assert_eq!((meta.last_update_ms, meta.start_ms), (11, 10));
        assert_eq!(meta.client_version, 2);
        assert_eq!((meta.previous_producer_id, meta.next_producer_id), (-1, -1));
    }
}
