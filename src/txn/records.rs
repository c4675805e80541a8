//! `__transaction_state` records in Kafka's own schema (key version 0, value version 0), so
//! Kafka tools can read what Sluice writes and the coordinator can be rebuilt from the log.
//!
//! Key: `version: i16 = 0, transactional_id: string`. Value (TransactionLogValue v0):
//! `producer_id: i64, producer_epoch: i16, timeout_ms: i32, status: i8,
//! partitions: [topic: string, partitions: [i32]], last_update_ms: i64, start_ms: i64`.
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

/// The record storing `meta`.
pub fn encode(meta: &TxnMeta) -> TxnRecord {
    let mut key = BytesMut::with_capacity(4 + meta.transactional_id.len());
    key.put_i16(0);
    put_string(&mut key, &meta.transactional_id);
    let mut value = BytesMut::with_capacity(64);
    value.put_i16(0);
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
    value.put_i32(topics.len() as i32);
    for (topic, partitions) in topics {
        put_string(&mut value, topic);
        value.put_i32(partitions.len() as i32);
        for p in partitions {
            value.put_i32(p);
        }
    }
    value.put_i64(meta.last_update_ms);
    value.put_i64(meta.start_ms);
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
        let b = self.take(len)?;
        String::from_utf8(b.to_vec()).map_err(|_| TxnRecordError::Utf8)
    }
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
    if version != 0 {
        return Err(TxnRecordError::Version(version));
    }
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let code = r.i8()?;
    let state = TxnState::from_code(code).ok_or(TxnRecordError::Status(code))?;
    let mut partitions = BTreeSet::new();
    let topics = r.i32()?;
    for _ in 0..topics.max(0) {
        let topic = r.string()?;
        let count = r.i32()?;
        for _ in 0..count.max(0) {
            partitions.insert((topic.clone(), r.i32()?));
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    Ok(TxnMeta {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        last_update_ms,
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
        };
        let record = encode(&meta);
        assert_eq!(&record.key[..], b"\x00\x00\x00\x04tx-1");
        assert_eq!(decode_key(&record.key).unwrap(), "tx-1");
        let value = record.value.unwrap();
        assert_eq!(decode_value("tx-1", &value).unwrap(), meta);
        assert_eq!(
            decode_value("tx-1", &value[..10]),
            Err(TxnRecordError::Truncated(10))
        );
    }
}
