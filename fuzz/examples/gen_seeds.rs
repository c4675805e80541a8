//! Writes the seed corpus under fuzz/corpus/. Run once from fuzz/:
//!     cargo run --example gen_seeds
//! Every request is also checked to decode with `sluice::kafka::decode`.
use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Must match NOW_MS in fuzz_targets/batch_validate.rs.
const NOW_MS: i64 = 1_700_000_000_000;

fn batch(count: usize) -> Bytes {
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
            timestamp: NOW_MS + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value {i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

/// Header + body, without the size prefix (what `kafka::decode` takes).
fn body<M: Encodable>(key: ApiKey, version: i16, correlation_id: i32, msg: &M) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("sluice-fuzz-seed")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, key.request_header_version(version)).unwrap();
    msg.encode(&mut buf, version).unwrap();
    let bytes = buf.to_vec();
    assert!(
        matches!(sluice::kafka::decode(Bytes::from(bytes.clone())), Ok(sluice::kafka::Decoded::Request(_))),
        "{key:?} v{version} seed does not decode"
    );
    bytes
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = BytesMut::new();
    v.put_i32(body.len() as i32);
    v.extend_from_slice(body);
    v.to_vec()
}

fn write(dir: &Path, target: &str, name: &str, data: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), data).unwrap();
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let topic = || TopicName(StrBytes::from_static_str("seed-topic"));

    let api_versions = body(
        ApiKey::ApiVersions,
        3,
        1,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-fuzz"))
            .with_client_software_version(StrBytes::from_static_str("0.1.0")),
    );
    let metadata = body(
        ApiKey::Metadata,
        12,
        2,
        &MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic()))]))
            .with_allow_auto_topic_creation(true),
    );
    let produce = body(
        ApiKey::Produce,
        9,
        3,
        &ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic())
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(3)))])]),
    );
    let fetch = body(
        ApiKey::Fetch,
        12,
        4,
        &FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(52_428_800)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default().with_topic(topic()).with_partitions(vec![
                FetchPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(-1)
                    .with_fetch_offset(0)
                    .with_last_fetched_epoch(-1)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(1_048_576),
            ])]),
    );

    let requests = [
        ("api_versions_v3", &api_versions),
        ("metadata_v12", &metadata),
        ("produce_v9", &produce),
        ("fetch_v12", &fetch),
    ];
    let mut stream = Vec::new();
    for (name, b) in requests {
        write(&dir, "request_decode", name, b);
        write(&dir, "frame_read", name, &framed(b));
        stream.extend(framed(b));
    }
    write(&dir, "frame_read", "all_four_pipelined", &stream);

    let one = batch(3);
    let mut two = one.to_vec();
    two.extend_from_slice(&batch(1));
    write(&dir, "batch_validate", "batch_3_records", &one);
    write(&dir, "batch_validate", "two_batches", &two);
    for (target, expect_ok) in [("batch_3_records", &one[..]), ("two_batches", &two[..])] {
        let r = sluice::storage::batch::validate_produce(
            expect_ok,
            1_048_588,
            NOW_MS,
            Default::default(),
        );
        assert!(r.is_ok(), "{target}: {r:?}");
    }
    println!("seeds written under {}", dir.display());
}
