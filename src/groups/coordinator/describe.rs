//! DescribeGroups, ListGroups and DeleteGroups.

use bytes::Bytes;

use crate::groups::records::{self, GroupRecord};

use super::{Coordinator, Effects, GroupState, GROUP_ID_NOT_FOUND, NONE, NON_EMPTY_GROUP};

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    /// The member id.
    pub member_id: String,
    /// The static instance id.
    pub group_instance_id: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client host.
    pub client_host: String,
    /// Its metadata for the chosen protocol (Stable only).
    pub metadata: Bytes,
    /// Its assignment (Stable only).
    pub assignment: Bytes,
}

/// A DescribeGroups entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group.
    pub group_id: String,
    /// Kafka's state name ("Dead" for unknown groups).
    pub state: &'static str,
    /// The protocol type ("" if none).
    pub protocol_type: String,
    /// The chosen protocol (Stable only, else "").
    pub protocol: String,
    /// The members.
    pub members: Vec<DescribedMember>,
    /// False for a KIP-848 consumer group, which DescribeGroups does not describe.
    pub classic: bool,
}

/// A ListGroups entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    /// The group.
    pub group_id: String,
    /// The protocol type ("" for offsets-only groups).
    pub protocol_type: String,
    /// Kafka's state name (a consumer group's own states for consumer groups).
    pub state: &'static str,
    /// "classic" or "consumer" (ListGroups v5).
    pub group_type: &'static str,
}

impl Coordinator {
    /// Describes one group (unknown groups are reported Dead, as Kafka does).
    pub fn describe(&self, group_id: &str) -> GroupDescription {
        // An unknown group, or a KIP-848 group DescribeGroups does not describe.
        let none = |classic: bool| GroupDescription {
            group_id: group_id.to_string(),
            state: GroupState::Dead.name(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
            classic,
        };
        let Some(g) = self.groups.get(group_id) else {
            return none(true);
        };
        if g.is_consumer() {
            return none(false);
        }
        let stable = g.state == GroupState::Stable;
        let protocol = g.protocol_name.clone().unwrap_or_default();
        GroupDescription {
            group_id: group_id.to_string(),
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members
                .values()
                .map(|m| DescribedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
            classic: true,
        }
    }

    /// Lists groups, optionally only those in the given states (case-insensitive).
    pub fn list(&self, states: &[String]) -> Vec<ListedGroup> {
        self.groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .map(|g| ListedGroup {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.consumer_state_name().unwrap_or(g.state.name()),
                group_type: if g.is_consumer() {
                    "consumer"
                } else {
                    "classic"
                },
            })
            .filter(|g| states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(g.state)))
            .collect()
    }

    /// Deletes empty groups with their offsets; one error code per group, in order.
    pub fn delete_groups(&mut self, group_ids: &[String]) -> (Vec<i16>, Effects) {
        let mut fx = Effects::default();
        let mut errors = Vec::with_capacity(group_ids.len());
        for id in group_ids {
            let error = match self.groups.get(id).map(|g| g.state) {
                None | Some(GroupState::Dead) => GROUP_ID_NOT_FOUND,
                Some(GroupState::Empty) => {
                    if let Some(g) = self.groups.remove(id) {
                        // Offsets in flight too: their records precede these tombstones.
                        for (topic, partition) in g.offset_keys() {
                            fx.records.push(GroupRecord {
                                key: records::offset_key(id, &topic, partition),
                                value: None,
                            });
                        }
                        fx.records.push(GroupRecord {
                            key: records::group_key(id),
                            value: None,
                        });
                        tracing::info!(group = %id, "group deleted");
                    }
                    NONE
                }
                Some(_) => NON_EMPTY_GROUP,
            };
            errors.push(error);
        }
        (errors, fx)
    }
}
