//! A raw Kafka connection for tests that need exact requests: one request at a time,
//! encoded and decoded with the `kafka-protocol` crate at a chosen version.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// A blocking connection sending one request at a time.
pub struct Conn {
    stream: TcpStream,
    correlation_id: i32,
}

impl Conn {
    /// Connects to the broker.
    pub fn open(addr: std::net::SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect to broker");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("set timeout");
        Conn {
            stream,
            correlation_id: 0,
        }
    }

    /// Sends one request and returns the decoded response, or an error string when the
    /// broker closed the connection or the answer does not decode.
    pub fn call(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &RequestKind,
    ) -> Result<ResponseKind, String> {
        let mut encoded = BytesMut::new();
        body.encode(&mut encoded, version)
            .map_err(|e| format!("encoding request body: {e}"))?;
        let mut frame = self.call_raw(api, version, &encoded)?;
        let response = ResponseKind::decode(api, &mut frame, version)
            .map_err(|e| format!("response body: {e}"))?;
        if frame.has_remaining() {
            return Err(format!(
                "{} trailing bytes after the response",
                frame.remaining()
            ));
        }
        Ok(response)
    }

    /// Sends a request whose body is already encoded (versions the protocol crate cannot
    /// encode) and returns the response body after its header.
    pub fn call_raw(&mut self, api: ApiKey, version: i16, body: &[u8]) -> Result<Bytes, String> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("version-sweep")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, api.request_header_version(version))
            .map_err(|e| format!("encoding request header: {e}"))?;
        buf.put_slice(body);
        let size = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&size.to_be_bytes());
        self.stream
            .write_all(&buf)
            .map_err(|e| format!("write: {e}"))?;
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|e| format!("broker closed the connection or timed out: {e}"))?;
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream
            .read_exact(&mut frame)
            .map_err(|e| format!("short response: {e}"))?;
        let mut frame = Bytes::from(frame);
        let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
            .map_err(|e| format!("response header: {e}"))?;
        if header.correlation_id != self.correlation_id {
            return Err(format!(
                "correlation id {} for request {}",
                header.correlation_id, self.correlation_id
            ));
        }
        Ok(frame)
    }
}

/// A topic name.
pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// One record batch with a single record `k=value`; producer fields as given.
pub fn batch_with(value: &str, producer_id: i64, producer_epoch: i16, sequence: i32) -> Bytes {
    encode_batch(value, producer_id, producer_epoch, sequence, false)
}

/// Like [`batch_with`], marked transactional (part of the producer's open transaction).
pub fn transactional_batch(
    value: &str,
    producer_id: i64,
    producer_epoch: i16,
    sequence: i32,
) -> Bytes {
    encode_batch(value, producer_id, producer_epoch, sequence, true)
}

fn encode_batch(
    value: &str,
    producer_id: i64,
    producer_epoch: i16,
    sequence: i32,
    transactional: bool,
) -> Bytes {
    let record = Record {
        transactional,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence,
        timestamp: super::now_ms(),
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from(value.to_string())),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

/// A plain (non-idempotent) batch.
pub fn record_batch(value: &str) -> Bytes {
    batch_with(value, -1, -1, -1)
}

/// Produces `batch` to partition 0 of `topic` with acks=all at `version`; returns
/// (error code, base offset).
pub fn produce(conn: &mut Conn, version: i16, topic: &str, batch: Bytes) -> (i16, i64) {
    produce_to(conn, version, topic, 0, batch)
}

/// Produces `batch` to `topic/partition` with acks=all at `version`; returns (error code,
/// base offset).
pub fn produce_to(
    conn: &mut Conn,
    version: i16,
    topic: &str,
    partition: i32,
    batch: Bytes,
) -> (i16, i64) {
    produce_as(conn, version, None, topic, partition, batch)
}

/// [`produce_to`] by the producer of `transactional_id` (a transactional batch names it).
pub fn produce_as(
    conn: &mut Conn,
    version: i16,
    transactional_id: Option<&str>,
    topic: &str,
    partition: i32,
    batch: Bytes,
) -> (i16, i64) {
    let p = produce_request::PartitionProduceData::default()
        .with_index(partition)
        .with_records(Some(batch));
    let t = produce_request::TopicProduceData::default()
        .with_name(name(topic))
        .with_partition_data(vec![p]);
    let request = ProduceRequest::default()
        .with_transactional_id(
            transactional_id.map(|id| TransactionalId(StrBytes::from_string(id.to_string()))),
        )
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![t]);
    match conn.call(ApiKey::Produce, version, &RequestKind::Produce(request)) {
        Ok(ResponseKind::Produce(r)) => {
            let p = &r.responses[0].partition_responses[0];
            (p.error_code, p.base_offset)
        }
        other => panic!("produce: {other:?}"),
    }
}

/// InitProducerId (v5) for `transactional_id`: its (producer id, epoch).
pub fn init_transactional(conn: &mut Conn, transactional_id: &str) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_string(
            transactional_id.to_string(),
        ))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    match conn.call(
        ApiKey::InitProducerId,
        5,
        &RequestKind::InitProducerId(request),
    ) {
        Ok(ResponseKind::InitProducerId(r)) => {
            assert_eq!(r.error_code, 0, "InitProducerId {transactional_id}");
            (r.producer_id.0, r.producer_epoch)
        }
        other => panic!("InitProducerId {transactional_id}: {other:?}"),
    }
}

/// The end offset of `topic/partition` that ListOffsets (v5, LATEST) reports at an isolation
/// level: the high watermark for read_uncommitted (0), the last stable offset for
/// read_committed (1).
pub fn latest_offset(conn: &mut Conn, topic: &str, partition: i32, isolation_level: i8) -> i64 {
    let p = list_offsets_request::ListOffsetsPartition::default()
        .with_partition_index(partition)
        .with_timestamp(-1);
    let t = list_offsets_request::ListOffsetsTopic::default()
        .with_name(name(topic))
        .with_partitions(vec![p]);
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation_level)
        .with_topics(vec![t]);
    match conn.call(ApiKey::ListOffsets, 5, &RequestKind::ListOffsets(request)) {
        Ok(ResponseKind::ListOffsets(r)) => {
            let p = &r.topics[0].partitions[0];
            assert_eq!(p.error_code, 0, "ListOffsets {topic}/{partition}");
            p.offset
        }
        other => panic!("list offsets: {other:?}"),
    }
}

/// What one partition of a Fetch answered.
pub struct Fetched {
    /// The partition's error code.
    pub error_code: i16,
    /// Its high watermark (-1 with an error).
    pub high_watermark: i64,
    /// The record batches returned, raw.
    pub records: Bytes,
}

/// Fetches `topic/partition` from `offset` (v12, read_uncommitted, no waiting), at most
/// `max_bytes` (Kafka returns at least one whole batch even when it is larger).
pub fn fetch(conn: &mut Conn, topic: &str, partition: i32, offset: i64, max_bytes: i32) -> Fetched {
    let r = call_fetch(conn, fetch_request(topic, &[partition], offset, max_bytes));
    let p = &r.responses[0].partitions[0];
    Fetched {
        error_code: p.error_code,
        high_watermark: p.high_watermark,
        records: p.records.clone().unwrap_or_default(),
    }
}

/// A read_uncommitted Fetch of `partitions` of `topic`, each from `offset` and at most
/// `max_bytes`, the response at most `max_bytes` too, answered at once (`max_wait_ms` 0,
/// `min_bytes` 0); adjust with the request's `with_*` methods.
pub fn fetch_request(topic: &str, partitions: &[i32], offset: i64, max_bytes: i32) -> FetchRequest {
    let partitions = partitions
        .iter()
        .map(|&p| {
            fetch_request::FetchPartition::default()
                .with_partition(p)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(max_bytes)
        })
        .collect();
    let t = fetch_request::FetchTopic::default()
        .with_topic(name(topic))
        .with_partitions(partitions);
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_topics(vec![t])
}

/// Sends `request` at v12 and returns the response; panics on anything else.
pub fn call_fetch(conn: &mut Conn, request: FetchRequest) -> FetchResponse {
    match conn.call(ApiKey::Fetch, 12, &RequestKind::Fetch(request)) {
        Ok(ResponseKind::Fetch(r)) => r,
        other => panic!("fetch: {other:?}"),
    }
}

/// Base offset, last offset and values of the batches in `records` (uncompressed).
pub fn decode_batches(records: &Bytes) -> Vec<(i64, i64, Vec<Bytes>)> {
    let mut buf = records.clone();
    let mut out = Vec::new();
    while buf.remaining() >= 12 {
        let len = i32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
        if buf.remaining() < 12 + len {
            break;
        }
        let mut one = buf.split_to(12 + len);
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut one)
            .expect("decode fetched batch");
        let first = set.records.first().map(|r| r.offset).unwrap_or(-1);
        let last = set.records.last().map(|r| r.offset).unwrap_or(-1);
        let values = set
            .records
            .into_iter()
            .map(|r| r.value.unwrap_or_default())
            .collect();
        out.push((first, last, values));
    }
    out
}
