//! Request versions Kafka 4 removed (KIP-896) that Sluice still accepts, so clients of the
//! Kafka 2.x era keep working: OffsetCommit v0-v1, which Go's sarama before 1.40 sends,
//! and ListOffsets v0, which it sends when configured for a Kafka older than 0.10.1.
//!
//! The protocol crate follows Kafka 4 and no longer knows these versions, so their
//! requests are decoded here into the crate's newest-shape request (the handler then sees
//! one request type). OffsetCommit v0-v1 answers share the wire format of v2, which the
//! crate encodes; ListOffsets v0 answers (a list of offsets per partition) are encoded
//! here.
//!
//! The decoder reads untrusted bytes: every length is checked against what the frame
//! holds before anything is allocated, and any mismatch is an error, never a panic.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, GroupId, ListOffsetsRequest, OffsetCommitRequest, RequestKind, ResponseKind,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

/// The oldest version Sluice accepts of each API it decodes here.
pub const OLDEST: &[(ApiKey, i16)] = &[(ApiKey::OffsetCommit, 0), (ApiKey::ListOffsets, 0)];

/// The oldest version of each API the protocol crate still decodes.
fn crate_oldest(api_key: ApiKey) -> i16 {
    api_key.valid_versions().min
}

/// Whether `version` of `api_key` is decoded here rather than by the crate.
pub fn is_legacy(api_key: ApiKey, version: i16) -> bool {
    OLDEST
        .iter()
        .any(|(k, oldest)| *k == api_key && (*oldest..crate_oldest(api_key)).contains(&version))
}

/// The version the response to `version` is encoded at: the crate's oldest version for a
/// legacy request (same wire format), else `version` itself.
pub fn response_version(api_key: ApiKey, version: i16) -> i16 {
    if is_legacy(api_key, version) {
        crate_oldest(api_key)
    } else {
        version
    }
}

/// Decodes the body of a legacy request (after its header).
pub fn decode(api_key: ApiKey, version: i16, buf: &mut Bytes) -> Result<RequestKind, String> {
    match api_key {
        ApiKey::OffsetCommit => offset_commit(version, buf).map(RequestKind::OffsetCommit),
        ApiKey::ListOffsets => list_offsets(buf).map(RequestKind::ListOffsets),
        other => Err(format!("{other:?} v{version} is not a legacy request")),
    }
}

/// Encodes the answer to a legacy request whose wire format the crate does not know;
/// `None` when the crate encodes it (at [`response_version`]).
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    response: &ResponseKind,
    buf: &mut BytesMut,
) -> Option<Result<(), String>> {
    match (api_key, response) {
        (ApiKey::ListOffsets, ResponseKind::ListOffsets(r)) if is_legacy(api_key, version) => {
            Some(list_offsets_v0_response(r, buf))
        }
        _ => None,
    }
}

/// ListOffsets v0: replica id, topics[name, partitions[index, timestamp, max offsets]].
/// Kafka answered with up to `max_num_offsets` segment base offsets before the
/// timestamp; Sluice answers with the one offset v1 would (earliest, latest, or the first
/// at or after the timestamp), which is what clients asking for one offset get.
fn list_offsets(buf: &mut Bytes) -> Result<ListOffsetsRequest, String> {
    let replica_id = i32_(buf)?;
    let topics = array(buf, |buf| {
        let name = string(buf)?;
        let partitions = array(buf, |buf| {
            let index = i32_(buf)?;
            let timestamp = i64_(buf)?;
            let _max_num_offsets = i32_(buf)?;
            Ok(ListOffsetsPartition::default()
                .with_partition_index(index)
                .with_timestamp(timestamp))
        })?;
        Ok(ListOffsetsTopic::default()
            .with_name(TopicName(name))
            .with_partitions(partitions))
    })?;
    if buf.has_remaining() {
        return Err(format!("{} bytes after the request", buf.remaining()));
    }
    Ok(ListOffsetsRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_topics(topics))
}

/// topics[name, partitions[index, error, offsets[]]]: the offset found, or none.
fn list_offsets_v0_response(
    response: &kafka_protocol::messages::ListOffsetsResponse,
    buf: &mut BytesMut,
) -> Result<(), String> {
    let count = |n: usize| i32::try_from(n).map_err(|_| "too many entries".to_string());
    buf.put_i32(count(response.topics.len())?);
    for topic in &response.topics {
        let name = topic.name.as_bytes();
        buf.put_i16(i16::try_from(name.len()).map_err(|_| "topic name too long")?);
        buf.put_slice(name);
        buf.put_i32(count(topic.partitions.len())?);
        for p in &topic.partitions {
            buf.put_i32(p.partition_index);
            buf.put_i16(p.error_code);
            if p.error_code == 0 && p.offset >= 0 {
                buf.put_i32(1);
                buf.put_i64(p.offset);
            } else {
                buf.put_i32(0);
            }
        }
    }
    Ok(())
}

/// OffsetCommit v0: group, topics[name, partitions[index, offset, metadata]].
/// v1 adds the generation and member id, and a per-partition commit timestamp (ignored,
/// as Kafka ignored it once offsets expire by retention).
fn offset_commit(version: i16, buf: &mut Bytes) -> Result<OffsetCommitRequest, String> {
    let group_id = string(buf)?;
    let (generation, member_id) = if version >= 1 {
        (i32_(buf)?, string(buf)?)
    } else {
        (-1, StrBytes::default())
    };
    let topics = array(buf, |buf| {
        let name = string(buf)?;
        let partitions = array(buf, |buf| {
            let index = i32_(buf)?;
            let offset = i64_(buf)?;
            if version >= 1 {
                let _commit_timestamp = i64_(buf)?;
            }
            let metadata = nullable_string(buf)?;
            Ok(OffsetCommitRequestPartition::default()
                .with_partition_index(index)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(metadata))
        })?;
        Ok(OffsetCommitRequestTopic::default()
            .with_name(TopicName(name))
            .with_partitions(partitions))
    })?;
    if buf.has_remaining() {
        return Err(format!("{} bytes after the request", buf.remaining()));
    }
    Ok(OffsetCommitRequest::default()
        .with_group_id(GroupId(group_id))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(member_id)
        .with_topics(topics))
}

fn need(buf: &Bytes, n: usize) -> Result<(), String> {
    if buf.remaining() < n {
        Err(format!("{n} bytes needed, {} left", buf.remaining()))
    } else {
        Ok(())
    }
}

fn i32_(buf: &mut Bytes) -> Result<i32, String> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}

fn i64_(buf: &mut Bytes) -> Result<i64, String> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}

fn nullable_string(buf: &mut Bytes) -> Result<Option<StrBytes>, String> {
    need(buf, 2)?;
    let len = buf.get_i16();
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    need(buf, len)?;
    StrBytes::from_utf8(buf.split_to(len))
        .map(Some)
        .map_err(|e| format!("a string that is not UTF-8: {e}"))
}

fn string(buf: &mut Bytes) -> Result<StrBytes, String> {
    nullable_string(buf)?.ok_or_else(|| "a null string where one is required".to_string())
}

/// An array of `item`s; its count is checked against the bytes left (each item takes at
/// least one byte) and nothing is reserved up front, so a forged count cannot make us
/// allocate more than the items the frame really holds.
fn array<T>(
    buf: &mut Bytes,
    mut item: impl FnMut(&mut Bytes) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let count = i32_(buf)?;
    if count < 0 {
        return Ok(Vec::new());
    }
    let count = count as usize;
    need(buf, count)?;
    let mut items = Vec::new();
    for _ in 0..count {
        items.push(item(buf)?);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn put_string(b: &mut bytes::BytesMut, s: &str) {
        b.put_i16(s.len() as i16);
        b.put_slice(s.as_bytes());
    }

    fn v1_commit() -> bytes::BytesMut {
        let mut b = bytes::BytesMut::new();
        put_string(&mut b, "g");
        b.put_i32(3);
        put_string(&mut b, "m");
        b.put_i32(1);
        put_string(&mut b, "t");
        b.put_i32(1);
        b.put_i32(0);
        b.put_i64(42);
        b.put_i64(-1);
        b.put_i16(-1);
        b
    }

    #[test]
    fn offset_commit_v1_decodes_into_the_current_request() {
        let mut bytes = v1_commit().freeze();
        let RequestKind::OffsetCommit(r) = decode(ApiKey::OffsetCommit, 1, &mut bytes).unwrap()
        else {
            panic!("not an OffsetCommit");
        };
        assert_eq!(r.group_id.as_str(), "g");
        assert_eq!(
            (r.generation_id_or_member_epoch, r.member_id.as_str()),
            (3, "m")
        );
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.partition_index, p.committed_offset), (0, 42));
        assert!(p.committed_metadata.is_none());
        assert!(is_legacy(ApiKey::OffsetCommit, 1));
        assert!(!is_legacy(ApiKey::OffsetCommit, 2));
        assert_eq!(response_version(ApiKey::OffsetCommit, 0), 2);
    }

    #[test]
    fn truncated_or_forged_requests_are_errors() {
        let whole = v1_commit().freeze();
        for cut in 0..whole.len() {
            let mut part = whole.slice(..cut);
            assert!(
                decode(ApiKey::OffsetCommit, 1, &mut part).is_err(),
                "cut at {cut}"
            );
        }
        let mut forged = bytes::BytesMut::new();
        put_string(&mut forged, "g");
        forged.put_i32(i32::MAX);
        assert!(decode(ApiKey::OffsetCommit, 0, &mut forged.freeze()).is_err());
        let mut trailing = v1_commit();
        trailing.put_u8(0);
        assert!(decode(ApiKey::OffsetCommit, 1, &mut trailing.freeze()).is_err());
    }
}
