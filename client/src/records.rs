//! Building record batches to produce and reading the batches a fetch returns.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
use serde::Serialize;

/// One record to produce.
#[derive(Debug, Clone, Default)]
pub struct ProduceRecord {
    /// Optional key (partitioning and compaction key).
    pub key: Option<Bytes>,
    /// Optional value (`None` is a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Creation timestamp in ms since the epoch; `None` means now.
    pub timestamp: Option<i64>,
}

/// One record read by a fetch.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumedRecord {
    /// Partition the record came from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Timestamp (ms since the epoch).
    pub timestamp: i64,
    /// Whether the timestamp is the creation or the log-append time.
    pub log_append_time: bool,
    /// Key bytes.
    #[serde(skip)]
    pub key: Option<Bytes>,
    /// Value bytes.
    #[serde(skip)]
    pub value: Option<Bytes>,
    /// Headers in order.
    #[serde(skip)]
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Encode `records` as one v2 record batch (offsets 0.., the broker assigns real ones).
pub fn encode_batch(records: &[ProduceRecord], compression: Compression) -> Result<Bytes, String> {
    let now = now_ms();
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut rec = Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
                producer_id: NO_PRODUCER_ID,
                producer_epoch: NO_PRODUCER_EPOCH,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder starts a new batch whenever `offset - sequence` changes, and
                // writes the first record's sequence as the base: NO_SEQUENCE (-1) for the
                // first record and counting up keeps one batch with base sequence -1.
                sequence: NO_SEQUENCE.wrapping_add(i as i32),
                timestamp: r.timestamp.unwrap_or(now),
                key: r.key.clone(),
                value: r.value.clone(),
                headers: Default::default(),
            };
            for (k, v) in &r.headers {
                rec.headers
                    .insert(StrBytes::from_string(k.clone()), v.clone());
            }
            rec
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// Split fetched bytes into complete batches and decode them, skipping control batches and
/// records below `from_offset` (a fetch may start in the middle of a batch). A truncated
/// trailing batch (the fetch hit `max_bytes`) is ignored: the next fetch returns it whole.
pub fn decode_fetched(
    partition: i32,
    mut data: Bytes,
    from_offset: i64,
) -> Result<(Vec<ConsumedRecord>, Option<i64>), String> {
    let mut out = Vec::new();
    // Offset after the last complete batch seen (control batches included), so a caller can
    // move past batches that held no data records.
    let mut next_offset = None;
    while data.len() >= 12 {
        let base_offset = (&data[..8]).get_i64();
        let batch_len = (&data[8..12]).get_i32();
        if batch_len < 0 {
            return Err(format!("negative batch length {batch_len}"));
        }
        let total = 12 + batch_len as usize;
        if data.len() < total {
            break;
        }
        let mut batch = data.split_to(total);
        if batch.len() < 17 || batch[16] != 2 {
            // Not a v2 batch (message-set v0/v1): we cannot read it; skip it.
            continue;
        }
        // lastOffsetDelta lives at byte 23 of the batch header.
        if batch.len() >= 27 {
            let last_delta = (&batch[23..27]).get_i32();
            next_offset = Some(base_offset + i64::from(last_delta) + 1);
        }
        let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| e.to_string())?;
        for r in set.records {
            if r.control || r.offset < from_offset {
                continue;
            }
            out.push(ConsumedRecord {
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                log_append_time: r.timestamp_type == TimestampType::LogAppend,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            });
        }
    }
    Ok((out, next_offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip_and_partial_tail() {
        let recs: Vec<ProduceRecord> = (0..3)
            .map(|i| ProduceRecord {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{i}"))),
                headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
                timestamp: Some(1000 + i),
            })
            .collect();
        let b = encode_batch(&recs, Compression::None).unwrap();
        // one batch, base sequence -1 (no producer id)
        assert_eq!(12 + (&b[8..12]).get_i32() as usize, b.len());
        assert_eq!((&b[53..57]).get_i32(), -1);
        let mut two = BytesMut::new();
        two.extend_from_slice(&b);
        two.extend_from_slice(&b[..b.len() - 5]); // truncated second batch
        let (out, next) = decode_fetched(7, two.freeze(), 1).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].offset, 1);
        assert_eq!(out[0].partition, 7);
        assert_eq!(out[1].value.as_deref(), Some(&b"v2"[..]));
        assert_eq!(out[1].timestamp, 1002);
        assert_eq!(out[1].headers[0].0, "h");
        assert_eq!(next, Some(3));
    }
}
