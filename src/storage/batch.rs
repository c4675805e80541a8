//! Kafka record batch v2 header: parsing, produce-time validation and the
//! in-place edits the broker makes (base offset, leader epoch, LogAppendTime).
//!
//! Pure code, no IO: the produce path validates a whole payload here before
//! anything is written, and recovery uses the same parser to find a torn tail.

/// Size of the fixed v2 batch header in bytes; records follow it.
pub const BATCH_HEADER_SIZE_BYTES: usize = 61;
/// Bytes before (and including) the `batchLength` field, which counts the rest.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only record batch format Sluice stores (message format v2).
pub const MAGIC_V2: i8 = 2;

const OFF_BASE_OFFSET: usize = 0;
pub(crate) const OFF_BATCH_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
pub(crate) const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
/// Where the CRC's coverage starts: the base offset, length, leader epoch, magic and the CRC
/// itself are outside it.
pub(crate) const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORD_COUNT: usize = 57;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 1 << 3;
const ATTR_TRANSACTIONAL: i16 = 1 << 4;
const ATTR_CONTROL: i16 = 1 << 5;

/// Timestamp value meaning "no timestamp" in Kafka.
pub const NO_TIMESTAMP: i64 = -1;

/// Kafka error codes returned by [`BatchError::kafka_error_code`].
mod codes {
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const INVALID_TIMESTAMP: i16 = 32;
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
    pub const INVALID_RECORD: i16 = 87;
}

/// Why a record batch was rejected; each maps to the Kafka error code a
/// producer expects, so clients react (retry, split, fail) as they would with Kafka.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a header or than the batch's declared length.
    #[error("record batch truncated: need {needed_bytes} bytes, have {available_bytes}")]
    Truncated {
        /// Bytes the header or declared length requires.
        needed_bytes: usize,
        /// Bytes actually present.
        available_bytes: usize,
    },
    /// Magic byte is not 2 (legacy message sets are not supported).
    #[error("unsupported record batch magic {0}")]
    BadMagic(i8),
    /// `batchLength` is too small to hold the header.
    #[error("invalid record batch length {0}")]
    BadLength(i32),
    /// Stored CRC-32C does not match the bytes.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC computed over bytes 21..end.
        computed: u32,
    },
    /// Record count < 1 or inconsistent with `lastOffsetDelta`.
    #[error("invalid record count {record_count} (lastOffsetDelta {last_offset_delta})")]
    BadRecordCount {
        /// `recordCount` field.
        record_count: i32,
        /// `lastOffsetDelta` field.
        last_offset_delta: i32,
    },
    /// One batch is bigger than `max.message.bytes`.
    #[error("record batch of {size_bytes} bytes exceeds max.message.bytes {max_bytes}")]
    TooLarge {
        /// Size of the offending batch.
        size_bytes: usize,
        /// Configured limit.
        max_bytes: usize,
    },
    /// A CreateTime timestamp is too far from the broker's clock.
    #[error("timestamp {timestamp_ms} out of range for now {now_ms}")]
    InvalidTimestamp {
        /// The offending timestamp.
        timestamp_ms: i64,
        /// Broker time at validation.
        now_ms: i64,
    },
}

impl BatchError {
    /// The Kafka error code for a Produce response partition.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            BatchError::Truncated { .. }
            | BatchError::BadLength(_)
            | BatchError::CrcMismatch { .. } => codes::CORRUPT_MESSAGE,
            BatchError::BadMagic(_) => codes::UNSUPPORTED_FOR_MESSAGE_FORMAT,
            BatchError::BadRecordCount { .. } => codes::INVALID_RECORD,
            BatchError::TooLarge { .. } => codes::MESSAGE_TOO_LARGE,
            BatchError::InvalidTimestamp { .. } => codes::INVALID_TIMESTAMP,
        }
    }
}

/// Compression codec from the batch attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionCodec {
    /// Uncompressed records.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
    /// A codec id Kafka does not define.
    Unknown(u8),
}

/// The decoded fixed header of one v2 record batch, so callers can route and
/// index a batch without touching its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch (Raft term) the batch was appended in.
    pub partition_leader_epoch: i32,
    /// Format version, 2.
    pub magic: i8,
    /// CRC-32C over bytes 21..end.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control bits.
    pub attributes: i16,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp_ms: i64,
    /// Largest record timestamp (or the append time for LogAppendTime).
    pub max_timestamp_ms: i64,
    /// Idempotent/transactional producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the first record.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}
fn read_i32(buf: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    i32::from_be_bytes(b)
}
fn read_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}

/// Reads the total size (`12 + batchLength`) of the batch starting at `buf`,
/// or `None` when fewer than 12 bytes are present or the length is too small
/// to hold a header (a zero length marks the end of a pre-allocated log).
pub fn peek_total_size_bytes(buf: &[u8]) -> Option<usize> {
    if buf.len() < LOG_OVERHEAD_BYTES {
        return None;
    }
    let len = read_i32(buf, OFF_BATCH_LENGTH);
    if len < (BATCH_HEADER_SIZE_BYTES - LOG_OVERHEAD_BYTES) as i32 {
        return None;
    }
    Some(LOG_OVERHEAD_BYTES + len as usize)
}

impl BatchHeader {
    /// Parses the 61-byte header at the start of `buf` (which may hold more
    /// bytes). Checks the length field and magic, not the CRC.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_SIZE_BYTES {
            return Err(BatchError::Truncated {
                needed_bytes: BATCH_HEADER_SIZE_BYTES,
                available_bytes: buf.len(),
            });
        }
        let batch_length = read_i32(buf, OFF_BATCH_LENGTH);
        if batch_length < (BATCH_HEADER_SIZE_BYTES - LOG_OVERHEAD_BYTES) as i32 {
            return Err(BatchError::BadLength(batch_length));
        }
        let magic = buf[OFF_MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(magic));
        }
        Ok(BatchHeader {
            base_offset: read_i64(buf, OFF_BASE_OFFSET),
            batch_length,
            partition_leader_epoch: read_i32(buf, OFF_LEADER_EPOCH),
            magic,
            crc: read_i32(buf, OFF_CRC) as u32,
            attributes: read_i16(buf, OFF_ATTRIBUTES),
            last_offset_delta: read_i32(buf, OFF_LAST_OFFSET_DELTA),
            base_timestamp_ms: read_i64(buf, OFF_BASE_TIMESTAMP),
            max_timestamp_ms: read_i64(buf, OFF_MAX_TIMESTAMP),
            producer_id: read_i64(buf, OFF_PRODUCER_ID),
            producer_epoch: read_i16(buf, OFF_PRODUCER_EPOCH),
            base_sequence: read_i32(buf, OFF_BASE_SEQUENCE),
            record_count: read_i32(buf, OFF_RECORD_COUNT),
        })
    }

    /// Whole batch size on disk and on the wire.
    pub fn total_size_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Control batches (transaction markers, Raft no-ops) are skipped by clients.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Timestamps are the broker's append time rather than the producer's.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    /// Compression codec of the records.
    pub fn compression(&self) -> CompressionCodec {
        match (self.attributes & ATTR_COMPRESSION_MASK) as u8 {
            0 => CompressionCodec::None,
            1 => CompressionCodec::Gzip,
            2 => CompressionCodec::Snappy,
            3 => CompressionCodec::Lz4,
            4 => CompressionCodec::Zstd,
            other => CompressionCodec::Unknown(other),
        }
    }

    /// Checks the header's record count against `lastOffsetDelta`.
    pub fn check_record_count(&self) -> Result<(), BatchError> {
        if self.record_count < 1
            || i64::from(self.last_offset_delta) != i64::from(self.record_count) - 1
        {
            return Err(BatchError::BadRecordCount {
                record_count: self.record_count,
                last_offset_delta: self.last_offset_delta,
            });
        }
        Ok(())
    }
}

/// CRC-32C of a complete batch as Kafka defines it (bytes 21..end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[OFF_ATTRIBUTES..])
}

/// Parses the header of the complete batch at the start of `buf` and checks
/// that it is whole and its CRC matches. Used by produce validation and recovery.
pub fn parse_and_verify(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let size = header.total_size_bytes();
    if buf.len() < size {
        return Err(BatchError::Truncated {
            needed_bytes: size,
            available_bytes: buf.len(),
        });
    }
    let computed = compute_crc(&buf[..size]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// How far producer (CreateTime) timestamps may be from the broker clock
/// (`log.message.timestamp.before.max.ms` / `after.max.ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampPolicy {
    /// How far in the past a timestamp may be.
    pub create_time_before_max_ms: i64,
    /// How far in the future a timestamp may be.
    pub create_time_after_max_ms: i64,
}

impl Default for TimestampPolicy {
    fn default() -> Self {
        TimestampPolicy {
            create_time_before_max_ms: i64::MAX,
            create_time_after_max_ms: 3_600_000,
        }
    }
}

/// Summary of a validated produce payload, for metrics and offset assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProduceBatches {
    /// Number of batches in the payload.
    pub batch_count: usize,
    /// Records over all batches (offsets the append will consume).
    pub record_count: i64,
    /// Payload size.
    pub total_bytes: usize,
}

fn check_timestamp(ts_ms: i64, now_ms: i64, policy: TimestampPolicy) -> Result<(), BatchError> {
    if ts_ms == NO_TIMESTAMP {
        return Ok(());
    }
    let too_old = ts_ms < now_ms.saturating_sub(policy.create_time_before_max_ms);
    let too_new = ts_ms > now_ms.saturating_add(policy.create_time_after_max_ms);
    if too_old || too_new {
        return Err(BatchError::InvalidTimestamp {
            timestamp_ms: ts_ms,
            now_ms,
        });
    }
    Ok(())
}

/// Validates every batch of one produce partition payload (one or more
/// concatenated v2 batches). Nothing may be written if this fails.
pub fn validate_produce(
    records: &[u8],
    max_message_bytes: usize,
    now_ms: i64,
    timestamp_policy: TimestampPolicy,
) -> Result<ProduceBatches, BatchError> {
    let mut summary = ProduceBatches::default();
    let mut rest = records;
    if rest.is_empty() {
        return Err(BatchError::Truncated {
            needed_bytes: BATCH_HEADER_SIZE_BYTES,
            available_bytes: 0,
        });
    }
    while !rest.is_empty() {
        let header = parse_and_verify(rest)?;
        let size = header.total_size_bytes();
        header.check_record_count()?;
        if size > max_message_bytes {
            return Err(BatchError::TooLarge {
                size_bytes: size,
                max_bytes: max_message_bytes,
            });
        }
        if !header.is_log_append_time() {
            check_timestamp(header.max_timestamp_ms, now_ms, timestamp_policy)?;
            check_timestamp(header.base_timestamp_ms, now_ms, timestamp_policy)?;
        }
        summary.batch_count += 1;
        summary.record_count += i64::from(header.record_count);
        summary.total_bytes += size;
        rest = &rest[size..];
    }
    Ok(summary)
}

/// Writes the broker-assigned base offset and leader epoch (Raft term) into a
/// batch. Both fields are outside the CRC, so the CRC stays valid.
pub fn stamp(batch: &mut [u8], base_offset: i64, partition_leader_epoch: i32) {
    batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4]
        .copy_from_slice(&partition_leader_epoch.to_be_bytes());
}

/// Marks a batch LogAppendTime with `now_ms` as its max timestamp (what
/// consumers see as each record's timestamp) and recomputes the CRC, as Kafka
/// does for topics with `message.timestamp.type=LogAppendTime`.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = read_i16(batch, OFF_ATTRIBUTES) | ATTR_LOG_APPEND_TIME;
    batch[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    /// Encodes one v2 batch of `count` records with timestamps `ts_ms + i`.
    pub(crate) fn make_batch(count: usize, ts_ms: i64, value_size: usize) -> BytesMut {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: ts_ms + i as i64,
                key: None,
                value: Some(bytes::Bytes::from(vec![b'v'; value_size])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf
    }

    #[test]
    fn parses_encoder_output() {
        let b = make_batch(3, 1000, 10);
        let h = parse_and_verify(&b).unwrap();
        assert_eq!(h.total_size_bytes(), b.len());
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.max_timestamp_ms, 1002);
        assert_eq!(h.compression(), CompressionCodec::None);
        assert!(!h.is_control() && !h.is_transactional());
        let s = validate_produce(&b, 1 << 20, 1000, TimestampPolicy::default()).unwrap();
        assert_eq!(s.batch_count, 1);
        assert_eq!(s.record_count, 3);
    }

    #[test]
    fn multiple_batches_and_errors() {
        let mut p = make_batch(2, 1000, 5);
        p.extend_from_slice(&make_batch(4, 1000, 5));
        let s = validate_produce(&p, 1 << 20, 1000, TimestampPolicy::default()).unwrap();
        assert_eq!(
            (s.batch_count, s.record_count, s.total_bytes),
            (2, 6, p.len())
        );

        // Trailing partial bytes are corrupt.
        let mut t = p.clone();
        t.extend_from_slice(&[0, 0, 0]);
        let e = validate_produce(&t, 1 << 20, 1000, TimestampPolicy::default()).unwrap_err();
        assert_eq!(e.kafka_error_code(), 2);

        // A flipped record byte is a CRC mismatch.
        let mut c = p.clone();
        let last = c.len() - 1;
        c[last] ^= 0xff;
        let e = validate_produce(&c, 1 << 20, 1000, TimestampPolicy::default()).unwrap_err();
        assert!(matches!(e, BatchError::CrcMismatch { .. }));
        assert_eq!(e.kafka_error_code(), 2);

        let e = validate_produce(&p, 20, 1000, TimestampPolicy::default()).unwrap_err();
        assert_eq!(e.kafka_error_code(), 10);

        let mut m = make_batch(1, 1000, 5);
        m[16] = 1;
        assert_eq!(
            validate_produce(&m, 1 << 20, 1000, TimestampPolicy::default())
                .unwrap_err()
                .kafka_error_code(),
            43
        );

        // Record count inconsistent with lastOffsetDelta (CRC recomputed).
        let mut r = make_batch(2, 1000, 5);
        r[57..61].copy_from_slice(&5i32.to_be_bytes());
        let crc = compute_crc(&r);
        r[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate_produce(&r, 1 << 20, 1000, TimestampPolicy::default())
                .unwrap_err()
                .kafka_error_code(),
            87
        );

        // Too far in the future.
        let f = make_batch(1, 10_000_000, 5);
        let e = validate_produce(&f, 1 << 20, 1000, TimestampPolicy::default()).unwrap_err();
        assert_eq!(e.kafka_error_code(), 32);
        assert!(validate_produce(&[], 100, 0, TimestampPolicy::default()).is_err());
    }

    #[test]
    fn stamp_and_log_append_time_keep_batch_valid() {
        let mut b = make_batch(3, 1000, 10);
        stamp(&mut b, 42, 7);
        let h = parse_and_verify(&b).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (42, 7));
        set_log_append_time(&mut b, 5555);
        let h = parse_and_verify(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp_ms, 5555);
        let mut bytes = b.freeze();
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        assert_eq!(set.records.len(), 3);
        assert_eq!(set.records[0].offset, 42);
    }
}
