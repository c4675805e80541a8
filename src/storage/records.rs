//! Record batches the broker writes itself: coordinator records (`__consumer_offsets`,
//! `__transaction_state`) and transaction markers (control batches).
//!
//! They are encoded here, next to the batch format, so the coordinators above only produce
//! keys and values and never build wire bytes themselves.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::batch::BatchHeader;

/// Control record type of an abort marker.
pub const MARKER_TYPE_ABORT: i16 = 0;
/// Control record type of a commit marker.
pub const MARKER_TYPE_COMMIT: i16 = 1;

/// A record ready to append: a key and a value (None is a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRecord {
    /// The encoded key.
    pub key: Bytes,
    /// The encoded value; None deletes the key.
    pub value: Option<Bytes>,
}

/// Why a batch could not be encoded (the encoder refuses only impossible sizes).
#[derive(Debug, thiserror::Error)]
#[error("encoding an internal record batch: {0}")]
pub struct EncodeError(String);

/// Encodes records as one uncompressed v2 batch (offsets are stamped by the log). With
/// `Some((producer_id, epoch))` the batch is transactional (a TxnOffsetCommit's offsets,
/// visible only once the commit marker lands).
pub fn build_batch(
    records: &[KeyedRecord],
    producer: Option<(i64, i16)>,
    now_ms: i64,
) -> Result<BytesMut, EncodeError> {
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence is constant;
            // this makes the batch's base sequence -1 (not tracked by the idempotence
            // table), as Kafka writes it.
            sequence: i as i32 - 1,
            timestamp: now_ms,
            key: Some(r.key.clone()),
            value: r.value.clone(),
            headers: Default::default(),
        })
        .collect();
    encode(&records)
}

fn encode(records: &[Record]) -> Result<BytesMut, EncodeError> {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records, &options)
        .map_err(|e| EncodeError(e.to_string()))?;
    Ok(buf)
}

/// A decoded control marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Commit (true) or abort.
    pub commit: bool,
    /// The coordinator epoch written in the marker's value.
    pub coordinator_epoch: i32,
}

/// Encodes a commit/abort marker as Kafka does: one control batch (transactional and
/// control attributes, the producer's id and epoch) holding one record whose key is
/// (version 0, type) and whose value is (version 0, coordinator epoch).
pub fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    now_ms: i64,
) -> Result<BytesMut, EncodeError> {
    let kind = if commit {
        MARKER_TYPE_COMMIT
    } else {
        MARKER_TYPE_ABORT
    };
    let mut key = BytesMut::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = BytesMut::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    encode(std::slice::from_ref(&record))
}

/// Decodes the marker of a stored control batch; None for other control batches (Raft
/// no-ops) or bytes that are not a marker.
pub fn decode_marker(batch: &Bytes) -> Option<Marker> {
    let header = BatchHeader::parse(batch).ok()?;
    if !header.is_control() || !header.is_transactional() {
        return None;
    }
    let mut bytes = batch.clone();
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).ok()?;
    let record = set.records.first()?;
    let key = record.key.as_deref()?;
    if key.len() < 4 {
        return None;
    }
    let kind = i16::from_be_bytes([key[2], key[3]]);
    let coordinator_epoch = record
        .value
        .as_deref()
        .filter(|v| v.len() >= 6)
        .map_or(-1, |v| i32::from_be_bytes([v[2], v[3], v[4], v[5]]));
    match kind {
        MARKER_TYPE_COMMIT => Some(Marker {
            commit: true,
            coordinator_epoch,
        }),
        MARKER_TYPE_ABORT => Some(Marker {
            commit: false,
            coordinator_epoch,
        }),
        _ => None,
    }
}

/// Re-encodes every data batch of a produced record set whose codec is not `codec`, as
/// Kafka does for a topic whose `compression.type` is not `producer`. Records keep their
/// keys, values, headers, timestamps, offsets deltas and the batch's producer fields
/// (id, epoch, sequences, transactional flag), so idempotence and transactions see the
/// same batch; control batches and batches already in `codec` are copied as they are.
/// Kafka's compression levels are not applied: each codec's default level is used.
pub fn recompress(record_set: &Bytes, codec: Compression) -> Result<BytesMut, EncodeError> {
    let mut out = BytesMut::with_capacity(record_set.len());
    let mut rest = record_set.clone();
    while !rest.is_empty() {
        let size = super::batch::peek_total_size_bytes(&rest)
            .filter(|size| *size <= rest.len())
            .ok_or_else(|| EncodeError("a truncated batch".into()))?;
        // A view of the request's bytes: decoding reads it without a copy.
        let mut bytes = rest.split_to(size);
        let header = BatchHeader::parse(&bytes).map_err(|e| EncodeError(e.to_string()))?;
        if header.is_control() || header.attributes & 0x7 == codec as i16 {
            out.extend_from_slice(&bytes);
            continue;
        }
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes)
            .map_err(|e| EncodeError(format!("decoding a produced batch: {e}")))?;
        let options = RecordEncodeOptions {
            version: 2,
            compression: codec,
        };
        RecordBatchEncoder::encode(&mut out, set.records.iter(), &options)
            .map_err(|e| EncodeError(e.to_string()))?;
    }
    Ok(out)
}

/// Indexes (in record order across the set) of the data records without a key in a
/// produced record set, for KIP-467's `record_errors`; a batch that does not decode is left
/// to the other checks.
pub fn keyless_records(record_set: &Bytes) -> Vec<i32> {
    let mut keyless = Vec::new();
    let mut index = 0i32;
    let mut rest = record_set.clone();
    while let Some(size) = super::batch::peek_total_size_bytes(&rest).filter(|s| *s <= rest.len()) {
        let mut bytes = rest.split_to(size);
        let Ok(header) = BatchHeader::parse(&bytes) else {
            break;
        };
        if header.is_control() {
            continue;
        }
        let Ok(set) = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes) else {
            break;
        };
        for record in &set.records {
            if record.key.is_none() {
                keyless.push(index);
            }
            index += 1;
        }
    }
    keyless
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyless_records_are_found_by_their_index() {
        let mut set = build_batch(
            &[KeyedRecord {
                key: Bytes::from_static(b"k"),
                value: Some(Bytes::from_static(b"v")),
            }],
            None,
            1,
        )
        .unwrap();
        let keyless = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 1,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
        };
        let mut with_key = keyless.clone();
        with_key.key = Some(Bytes::from_static(b"k"));
        with_key.offset = 1;
        with_key.sequence = 0;
        set.extend_from_slice(&encode(&[keyless, with_key]).unwrap());
        assert_eq!(keyless_records(&set.freeze()), vec![1]);
    }

    #[test]
    fn markers_round_trip() {
        let batch = marker_batch(42, 3, true, 7, 1000).unwrap().freeze();
        let h = BatchHeader::parse(&batch).unwrap();
        assert!(h.is_control());
        assert!(h.is_transactional());
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.record_count),
            (42, 3, 1)
        );
        assert_eq!(
            decode_marker(&batch),
            Some(Marker {
                commit: true,
                coordinator_epoch: 7
            })
        );
        let abort = marker_batch(42, 3, false, 7, 1000).unwrap().freeze();
        assert!(!decode_marker(&abort).unwrap().commit);
        super::super::batch::parse_and_verify(&abort).unwrap();
    }

    #[test]
    fn coordinator_records_make_one_batch_with_a_tombstone() {
        let records = [
            KeyedRecord {
                key: Bytes::from_static(b"k1"),
                value: Some(Bytes::from_static(b"v1")),
            },
            KeyedRecord {
                key: Bytes::from_static(b"k2"),
                value: None,
            },
        ];
        let batch = build_batch(&records, Some((9, 1)), 1000).unwrap().freeze();
        let h = BatchHeader::parse(&batch).unwrap();
        assert_eq!((h.record_count, h.producer_id, h.base_sequence), (2, 9, -1));
        assert!(h.is_transactional() && !h.is_control());
        let mut bytes = batch.clone();
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).unwrap();
        assert_eq!(set.records[1].key.as_deref(), Some(&b"k2"[..]));
        assert!(set.records[1].value.is_none());
    }
}
