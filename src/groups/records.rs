//! Kafka's `__consumer_offsets` record schemas, encoded and decoded by hand (the
//! `kafka-protocol` crate does not carry them), so Kafka tools can read Sluice's records.
//!
//! Keys: an `i16` version, then fields. Versions 0 and 1 are offset commits (group, topic,
//! partition); version 2 is group metadata (group). Values are versioned the same way; a
//! record with a null value is a tombstone. Strings are `i16`-length prefixed, nullable
//! strings use length -1, bytes are `i32`-length prefixed. Only the non-flexible versions are
//! written: offset commit value v3 and group metadata value v3.

use bytes::{BufMut, Bytes, BytesMut};

/// Offset commit key version Sluice writes (Kafka writes 1 since 2.x; 0 has the same layout).
pub const OFFSET_KEY_VERSION: i16 = 1;
/// Group metadata key version.
pub const GROUP_KEY_VERSION: i16 = 2;
/// Offset commit value version Sluice writes (with leader epoch, without expire time).
pub const OFFSET_VALUE_VERSION: i16 = 3;
/// Group metadata value version Sluice writes (with static member ids).
pub const GROUP_VALUE_VERSION: i16 = 3;

/// Why a stored record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes ended inside a field.
    #[error("record truncated at byte {at} reading {field}")]
    Truncated {
        /// Byte position where reading failed.
        at: usize,
        /// The field being read.
        field: &'static str,
    },
    /// A key or value version this decoder does not know (e.g. a flexible version).
    #[error("unknown {what} version {version}")]
    UnknownVersion {
        /// "key", "offset value" or "group value".
        what: &'static str,
        /// The version found.
        version: i16,
    },
    /// A string that is not UTF-8.
    #[error("field {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// A non-nullable field was null.
    #[error("field {0} is null")]
    UnexpectedNull(&'static str),
}

/// A decoded record key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    /// An offset commit for (group, topic, partition).
    Offset {
        /// The group id.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// The metadata of a group.
    Group {
        /// The group id.
        group: String,
    },
}

/// A committed offset, as stored in an offset commit value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record, -1 if unknown.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
    /// When the commit was made (broker time, ms).
    pub commit_timestamp_ms: i64,
}

/// One member as stored in a group metadata value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    /// The member id.
    pub member_id: String,
    /// The static instance id, if any.
    pub group_instance_id: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client host.
    pub client_host: String,
    /// The member's rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// The member's session timeout.
    pub session_timeout_ms: i32,
    /// The member's metadata for the chosen protocol.
    pub subscription: Bytes,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// A group as stored in a group metadata value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    /// The protocol type ("consumer", "connect", ...); empty for an offsets-only group.
    pub protocol_type: String,
    /// The generation.
    pub generation: i32,
    /// The chosen protocol, if any.
    pub protocol: Option<String>,
    /// The leader's member id, if any.
    pub leader: Option<String>,
    /// When the group entered its current state (ms), -1 if unknown.
    pub current_state_timestamp_ms: i64,
    /// The members.
    pub members: Vec<MemberValue>,
}

/// A record ready to append: a key and a value (None is a tombstone).
pub use crate::storage::records::KeyedRecord as GroupRecord;

fn put_str(buf: &mut BytesMut, s: &str) {
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    buf.put_i16(len);
    buf.put_slice(&s.as_bytes()[..len as usize]);
}

fn put_nullable_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

/// The key of an offset commit record.
pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut buf = BytesMut::with_capacity(8 + group.len() + topic.len());
    buf.put_i16(OFFSET_KEY_VERSION);
    put_str(&mut buf, group);
    put_str(&mut buf, topic);
    buf.put_i32(partition);
    buf.freeze()
}

/// The key of a group metadata record.
pub fn group_key(group: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_i16(GROUP_KEY_VERSION);
    put_str(&mut buf, group);
    buf.freeze()
}

/// An offset commit value (v3).
pub fn offset_value(v: &OffsetValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(26 + v.metadata.len());
    buf.put_i16(OFFSET_VALUE_VERSION);
    buf.put_i64(v.offset);
    buf.put_i32(v.leader_epoch);
    put_str(&mut buf, &v.metadata);
    buf.put_i64(v.commit_timestamp_ms);
    buf.freeze()
}

/// An offset commit value with an explicit expiry (v1, as Kafka writes commits made with a
/// `retention_time_ms`; v1 has no leader epoch).
pub fn offset_value_with_expiry(v: &OffsetValue, expire_timestamp_ms: i64) -> Bytes {
    let mut buf = BytesMut::with_capacity(34 + v.metadata.len());
    buf.put_i16(1);
    buf.put_i64(v.offset);
    put_str(&mut buf, &v.metadata);
    buf.put_i64(v.commit_timestamp_ms);
    buf.put_i64(expire_timestamp_ms);
    buf.freeze()
}

/// A group metadata value (v3).
pub fn group_value(v: &GroupValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(GROUP_VALUE_VERSION);
    put_str(&mut buf, &v.protocol_type);
    buf.put_i32(v.generation);
    put_nullable_str(&mut buf, v.protocol.as_deref());
    put_nullable_str(&mut buf, v.leader.as_deref());
    buf.put_i64(v.current_state_timestamp_ms);
    buf.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_str(&mut buf, &m.member_id);
        put_nullable_str(&mut buf, m.group_instance_id.as_deref());
        put_str(&mut buf, &m.client_id);
        put_str(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

/// A bounds-checked reader over a key or value.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], RecordError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.data.len());
        let Some(end) = end else {
            return Err(RecordError::Truncated { at: self.at, field });
        };
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn i16(&mut self, field: &'static str) -> Result<i16, RecordError> {
        let b = self.take(2, field)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self, field: &'static str) -> Result<i32, RecordError> {
        let b = self.take(4, field)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self, field: &'static str) -> Result<i64, RecordError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn nullable_str(&mut self, field: &'static str) -> Result<Option<String>, RecordError> {
        let len = self.i16(field)?;
        if len < 0 {
            return Ok(None);
        }
        let b = self.take(len as usize, field)?;
        let s = std::str::from_utf8(b).map_err(|_| RecordError::NotUtf8(field))?;
        Ok(Some(s.to_string()))
    }
    fn str(&mut self, field: &'static str) -> Result<String, RecordError> {
        self.nullable_str(field)?
            .ok_or(RecordError::UnexpectedNull(field))
    }
    fn bytes(&mut self, field: &'static str) -> Result<Bytes, RecordError> {
        let len = self.i32(field)?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(self.take(len as usize, field)?))
    }
}

/// Decodes a record key.
pub fn decode_key(key: &[u8]) -> Result<RecordKey, RecordError> {
    let mut r = Reader { data: key, at: 0 };
    match r.i16("key version")? {
        0 | 1 => Ok(RecordKey::Offset {
            group: r.str("group")?,
            topic: r.str("topic")?,
            partition: r.i32("partition")?,
        }),
        2 => Ok(RecordKey::Group {
            group: r.str("group")?,
        }),
        version => Err(RecordError::UnknownVersion {
            what: "key",
            version,
        }),
    }
}

/// Decodes an offset commit value, versions 0-3.
pub fn decode_offset_value(value: &[u8]) -> Result<OffsetValue, RecordError> {
    decode_offset_value_with_expiry(value).map(|(v, _)| v)
}

/// Decodes an offset commit value, versions 0-3, with its explicit expiry time (v1 only).
pub fn decode_offset_value_with_expiry(
    value: &[u8],
) -> Result<(OffsetValue, Option<i64>), RecordError> {
    let mut r = Reader { data: value, at: 0 };
    let version = r.i16("value version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownVersion {
            what: "offset value",
            version,
        });
    }
    let offset = r.i64("offset")?;
    let leader_epoch = if version >= 3 {
        r.i32("leader_epoch")?
    } else {
        -1
    };
    let metadata = r.str("metadata")?;
    let commit_timestamp_ms = r.i64("commit_timestamp")?;
    let expire_timestamp_ms = if version == 1 {
        Some(r.i64("expire_timestamp")?)
    } else {
        None
    };
    let value = OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    };
    Ok((value, expire_timestamp_ms))
}

/// Decodes a group metadata value, versions 0-3.
pub fn decode_group_value(value: &[u8]) -> Result<GroupValue, RecordError> {
    let mut r = Reader { data: value, at: 0 };
    let version = r.i16("value version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownVersion {
            what: "group value",
            version,
        });
    }
    let protocol_type = r.str("protocol_type")?;
    let generation = r.i32("generation")?;
    let protocol = r.nullable_str("protocol")?;
    let leader = r.nullable_str("leader")?;
    let current_state_timestamp_ms = if version >= 2 {
        r.i64("current_state_timestamp")?
    } else {
        -1
    };
    let count = r.i32("members")?.max(0);
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = r.str("member_id")?;
        let group_instance_id = if version >= 3 {
            r.nullable_str("group_instance_id")?
        } else {
            None
        };
        let client_id = r.str("client_id")?;
        let client_host = r.str("client_host")?;
        let rebalance_timeout_ms = if version >= 1 {
            r.i32("rebalance_timeout")?
        } else {
            -1
        };
        let session_timeout_ms = r.i32("session_timeout")?;
        let session_timeout_ms = session_timeout_ms.max(1);
        let rebalance_timeout_ms = if rebalance_timeout_ms < 0 {
            session_timeout_ms
        } else {
            rebalance_timeout_ms
        };
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription: r.bytes("subscription")?,
            assignment: r.bytes("assignment")?,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_records_round_trip() {
        let key = offset_key("g", "orders", 7);
        assert_eq!(
            decode_key(&key).unwrap(),
            RecordKey::Offset {
                group: "g".into(),
                topic: "orders".into(),
                partition: 7
            }
        );
        // Exact Kafka layout: version 1, "g", "orders", 7.
        assert_eq!(&key[..], b"\x00\x01\x00\x01g\x00\x06orders\x00\x00\x00\x07");
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp_ms: 1000,
        };
        assert_eq!(decode_offset_value(&offset_value(&v)).unwrap(), v);
        let without_epoch = OffsetValue {
            leader_epoch: -1,
            ..v.clone()
        };
        let v1 = offset_value_with_expiry(&v, 5000);
        assert_eq!(&v1[..2], b"\x00\x01");
        assert_eq!(
            decode_offset_value_with_expiry(&v1).unwrap(),
            (without_epoch, Some(5000))
        );
    }

    #[test]
    fn group_records_round_trip() {
        let key = group_key("g");
        assert_eq!(
            decode_key(&key).unwrap(),
            RecordKey::Group { group: "g".into() }
        );
        let v = GroupValue {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp_ms: 99,
            members: vec![MemberValue {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300,
                session_timeout_ms: 100,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group_value(&group_value(&v)).unwrap(), v);
    }

    #[test]
    fn older_versions_and_garbage() {
        // Offset value v1: offset, metadata, commit ts, expire ts.
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i64(5);
        put_str(&mut b, "m");
        b.put_i64(10);
        b.put_i64(20);
        let v = decode_offset_value(&b).unwrap();
        assert_eq!(
            (v.offset, v.leader_epoch, v.commit_timestamp_ms),
            (5, -1, 10)
        );
        assert!(matches!(
            decode_offset_value(&b[..5]),
            Err(RecordError::Truncated { .. })
        ));
        assert!(matches!(
            decode_key(b"\x00\x09"),
            Err(RecordError::UnknownVersion { .. })
        ));
        assert!(decode_key(b"\x00\x02\x00\x10ab").is_err());
    }

    #[test]
    fn batch_decodes_with_the_protocol_crate() {
        let records = vec![
            GroupRecord {
                key: group_key("g"),
                value: None,
            },
            GroupRecord {
                key: offset_key("g", "t", 0),
                value: Some(offset_value(&OffsetValue {
                    offset: 1,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp_ms: 5,
                })),
            },
        ];
        let batch = crate::storage::records::build_batch(&records, None, 5).unwrap();
        let mut bytes = batch.freeze();
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).unwrap();
        assert_eq!(set.records.len(), 2);
        assert!(set.records[0].value.is_none());
        assert_eq!(set.records[1].key.as_deref(), Some(&records[1].key[..]));
    }
}
