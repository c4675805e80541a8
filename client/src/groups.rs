//! Consumer groups: finding a group's coordinator, listing, describing and deleting groups,
//! and reading and committing their offsets.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    },
    ApiKey, ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest,
    FindCoordinatorRequest, GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde::Serialize;

use crate::client::{lock, sb, topic_name, Client};
use crate::connection::Connection;
use crate::error::{check, Error, Result};
use crate::metadata::BrokerInfo;

/// Highest OffsetCommit/OffsetFetch version used: v10 (Kafka 4.1) names topics by id, and
/// these commands name them by name, as every earlier version does.
const OFFSETS_BY_NAME_MAX: i16 = 9;

/// Kafka's GROUP_ID_NOT_FOUND.
const GROUP_ID_NOT_FOUND: i16 = 69;

/// A group as ListGroups lists it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type (`consumer` for Kafka consumers, empty for offset-only groups).
    pub protocol_type: String,
    /// State (ListGroups v4+), e.g. `Stable`, `Empty`.
    pub state: Option<String>,
}

/// A member of a group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupMember {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Assigned partitions per topic (decoded for `consumer` groups).
    pub assignment: BTreeMap<String, Vec<i32>>,
}

/// DescribeGroups output for one group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State (`Stable`, `Empty`, `Dead`, ...).
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen assignor (`range`, `cooperative-sticky`, ...).
    pub protocol: String,
    /// Members.
    pub members: Vec<GroupMember>,
}

/// A committed offset of a group.
#[derive(Debug, Clone, Serialize)]
pub struct CommittedOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset (-1: none).
    pub offset: i64,
    /// Commit metadata string.
    pub metadata: Option<String>,
}

impl Client {
    /// The coordinator broker of `group`.
    pub fn find_coordinator(&self, group: &str) -> Result<BrokerInfo> {
        self.retrying(|| {
            let conn = self.any_broker()?;
            let version = conn.version_for::<FindCoordinatorRequest>()?;
            let mut req = FindCoordinatorRequest::default();
            if version >= 4 {
                req.coordinator_keys = vec![sb(group)];
            } else {
                req.key = sb(group);
            }
            let resp = conn.send_version(&req, version)?.wait()?;
            if version >= 4 {
                let c = resp.coordinators.first().ok_or_else(|| Error::Decode {
                    addr: conn.addr().to_string(),
                    api: ApiKey::FindCoordinator,
                    version,
                    reason: "no coordinator in response".into(),
                })?;
                check(
                    c.error_code,
                    conn.addr(),
                    || format!("find coordinator of group {group}"),
                    c.error_message.as_ref(),
                )?;
                Ok(BrokerInfo {
                    node_id: c.node_id.0,
                    host: c.host.to_string(),
                    port: c.port,
                    rack: None,
                })
            } else {
                check(
                    resp.error_code,
                    conn.addr(),
                    || format!("find coordinator of group {group}"),
                    resp.error_message.as_ref(),
                )?;
                Ok(BrokerInfo {
                    node_id: resp.node_id.0,
                    host: resp.host.to_string(),
                    port: resp.port,
                    rack: None,
                })
            }
        })
    }

    fn coordinator(&self, group: &str) -> Result<Arc<Connection>> {
        let info = self.find_coordinator(group)?;
        if let Some(c) = lock(&self.nodes).get(&info.node_id) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let conn = Arc::new(Connection::connect(&info.addr(), &self.config.connection)?);
        lock(&self.nodes).insert(info.node_id, conn.clone());
        Ok(conn)
    }

    /// Every group on every broker.
    pub fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let md = self.refresh_metadata(Some(&[]))?;
        let mut conns = Vec::new();
        if md.brokers.is_empty() {
            conns.push(self.any_broker()?);
        }
        for b in &md.brokers {
            conns.push(self.broker(b.node_id)?);
        }
        let mut pending = Vec::new();
        for c in &conns {
            pending.push((c.clone(), c.send(&ListGroupsRequest::default())?));
        }
        let mut out: BTreeMap<String, GroupListing> = BTreeMap::new();
        for (c, f) in pending {
            let resp = f.wait()?;
            check(resp.error_code, c.addr(), || "list groups".into(), None)?;
            for g in resp.groups {
                let state = g.group_state.to_string();
                out.insert(
                    g.group_id.0.to_string(),
                    GroupListing {
                        group_id: g.group_id.0.to_string(),
                        protocol_type: g.protocol_type.to_string(),
                        state: (!state.is_empty()).then_some(state),
                    },
                );
            }
        }
        Ok(out.into_values().collect())
    }

    /// State, protocol and members (with decoded assignments) of `group`; a group that
    /// does not exist is described as Dead with no members.
    pub fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        self.retrying(|| {
            let conn = self.coordinator(group)?;
            let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(sb(group))]);
            let resp = conn.call(&req)?;
            let g = resp
                .groups
                .into_iter()
                .next()
                .ok_or_else(|| Error::Decode {
                    addr: conn.addr().to_string(),
                    api: ApiKey::DescribeGroups,
                    version: 0,
                    reason: "no group in response".into(),
                })?;
            if g.error_code == GROUP_ID_NOT_FOUND {
                // DescribeGroups v6+ (KIP-1043) says so where older versions describe
                // the group as Dead: one answer for callers, whatever version was used.
                return Ok(GroupDescription {
                    group_id: group.to_string(),
                    state: "Dead".to_string(),
                    protocol_type: String::new(),
                    protocol: String::new(),
                    members: Vec::new(),
                });
            }
            check(
                g.error_code,
                conn.addr(),
                || format!("describe group {group}"),
                g.error_message.as_ref(),
            )?;
            let consumer = g.protocol_type.as_str() == "consumer";
            let members = g
                .members
                .into_iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.map(|s| s.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: if consumer {
                        decode_assignment(m.member_assignment)
                    } else {
                        BTreeMap::new()
                    },
                })
                .collect();
            Ok(GroupDescription {
                group_id: g.group_id.0.to_string(),
                state: g.group_state.to_string(),
                protocol_type: g.protocol_type.to_string(),
                protocol: g.protocol_data.to_string(),
                members,
            })
        })
    }

    /// Delete an empty group and its committed offsets.
    pub fn delete_group(&self, group: &str) -> Result<()> {
        self.retrying(|| {
            let conn = self.coordinator(group)?;
            let resp = conn.call(
                &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(sb(group))]),
            )?;
            for r in &resp.results {
                check(
                    r.error_code,
                    conn.addr(),
                    || format!("delete group {group}"),
                    None,
                )?;
            }
            Ok(())
        })
    }

    /// Committed offsets of `group` (all topics when `topics` is `None`).
    pub fn fetch_committed(
        &self,
        group: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Result<Vec<CommittedOffset>> {
        self.retrying(|| {
            let conn = self.coordinator(group)?;
            let version = conn
                .version_for::<OffsetFetchRequest>()?
                .min(OFFSETS_BY_NAME_MAX);
            let mut req = OffsetFetchRequest::default();
            let ctx = || format!("fetch committed offsets of group {group}");
            let mut out = Vec::new();
            if version >= 8 {
                req.groups = vec![OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(sb(group)))
                    .with_topics(topics.map(|ts| {
                        ts.iter()
                            .map(|(t, ps)| {
                                OffsetFetchRequestTopics::default()
                                    .with_name(topic_name(t))
                                    .with_partition_indexes(ps.clone())
                            })
                            .collect()
                    }))];
                let resp = conn.send_version(&req, version)?.wait()?;
                for g in resp.groups {
                    check(g.error_code, conn.addr(), ctx, None)?;
                    for t in g.topics {
                        for p in t.partitions {
                            check(p.error_code, conn.addr(), ctx, None)?;
                            out.push(CommittedOffset {
                                topic: t.name.0.to_string(),
                                partition: p.partition_index,
                                offset: p.committed_offset,
                                metadata: p.metadata.map(|m| m.to_string()),
                            });
                        }
                    }
                }
            } else {
                req.group_id = GroupId(sb(group));
                req.topics = topics.map(|ts| {
                    ts.iter()
                        .map(|(t, ps)| {
                            OffsetFetchRequestTopic::default()
                                .with_name(topic_name(t))
                                .with_partition_indexes(ps.clone())
                        })
                        .collect()
                });
                let resp = conn.send_version(&req, version)?.wait()?;
                check(resp.error_code, conn.addr(), ctx, None)?;
                for t in resp.topics {
                    for p in t.partitions {
                        check(p.error_code, conn.addr(), ctx, None)?;
                        out.push(CommittedOffset {
                            topic: t.name.0.to_string(),
                            partition: p.partition_index,
                            offset: p.committed_offset,
                            metadata: p.metadata.map(|m| m.to_string()),
                        });
                    }
                }
            }
            out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            Ok(out)
        })
    }

    /// Commit offsets for `group` outside any generation (generation -1, empty member id),
    /// as `kafka-consumer-groups.sh --reset-offsets` does; the broker accepts it only while
    /// the group has no active members.
    pub fn commit_offsets(&self, group: &str, offsets: &[(String, i32, i64)]) -> Result<()> {
        let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (t, p, o) in offsets {
            by_topic.entry(t.as_str()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o),
            );
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::default())
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        self.retrying(|| {
            let conn = self.coordinator(group)?;
            let version = conn
                .version_for::<OffsetCommitRequest>()?
                .min(OFFSETS_BY_NAME_MAX);
            let resp = conn.send_version(&req, version)?.wait()?;
            for t in &resp.topics {
                for p in &t.partitions {
                    check(
                        p.error_code,
                        conn.addr(),
                        || {
                            format!(
                                "commit offset of group {group} for {}/{}",
                                t.name.0, p.partition_index
                            )
                        },
                        None,
                    )?;
                }
            }
            Ok(())
        })
    }
}

/// Decode a `consumer` protocol assignment; anything unreadable yields an empty map (the
/// assignment is informational in `group describe`).
fn decode_assignment(mut b: Bytes) -> BTreeMap<String, Vec<i32>> {
    let mut out = BTreeMap::new();
    if b.len() < 2 {
        return out;
    }
    let version = i16::from_be_bytes([b[0], b[1]]);
    let _ = bytes::Buf::get_i16(&mut b);
    let version = version.clamp(0, 3);
    if let Ok(a) = ConsumerProtocolAssignment::decode(&mut b, version) {
        for tp in a.assigned_partitions {
            out.entry(tp.topic.0.to_string())
                .or_insert_with(Vec::new)
                .extend(tp.partitions);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn assignment_round_trip() {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![0, 2]),
        ]);
        let mut buf = bytes::BytesMut::new();
        bytes::BufMut::put_i16(&mut buf, 1);
        a.encode(&mut buf, 1).unwrap();
        let m = decode_assignment(buf.freeze());
        assert_eq!(m.get("t"), Some(&vec![0, 2]));
        assert!(decode_assignment(Bytes::from_static(b"\x00")).is_empty());
    }
}
