//! One group: its members, static instances, pending ids and the helpers the
//! transitions share.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::join::{JoinReply, JoinedMember};
use super::sync::SyncReply;
use super::{Completion, Effects, GroupState, Token, NONE};
use crate::groups::offsets::PendingOffset;
use crate::groups::records::{self, GroupRecord, GroupValue, MemberValue, OffsetValue};

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) rebalance_timeout_ms: i32,
    pub(super) session_timeout_ms: i32,
    pub(super) protocol_type: String,
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    pub(super) awaiting_join: Option<Token>,
    pub(super) awaiting_sync: Option<Token>,
    pub(super) supports_skip_assignment: bool,
    pub(super) last_heartbeat_ms: i64,
}

impl Member {
    pub(super) fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    pub(super) fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    pub(crate) fn touch(&mut self, now_ms: i64) {
        self.last_heartbeat_ms = now_ms;
    }

    pub(super) fn session_expired(&self, now_ms: i64) -> bool {
        self.awaiting_join.is_none()
            && self.awaiting_sync.is_none()
            && now_ms >= self.last_heartbeat_ms + i64::from(self.session_timeout_ms)
    }
}

/// The join barrier's timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct JoinTimer {
    pub(super) deadline_ms: i64,
    /// Initial delayed join of an empty group: does not end early when all have joined.
    pub(super) initial: bool,
    /// Initial delay left to extend by when new members keep arriving.
    pub(super) remaining_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) group_id: String,
    pub(crate) state: GroupState,
    pub(crate) state_timestamp_ms: i64,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) generation: i32,
    pub(super) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    pub(super) static_members: BTreeMap<String, String>,
    /// KIP-394: member ids handed out with MEMBER_ID_REQUIRED, and when they expire.
    pub(super) pending_members: BTreeMap<String, i64>,
    pub(super) join_timer: Option<JoinTimer>,
    /// Members that joined the current generation but have not sent SyncGroup yet, and the
    /// deadline (the rebalance timeout after the join completed) by which they must
    /// (Kafka's pending-sync timeout).
    pub(super) pending_sync: BTreeSet<String>,
    pub(super) pending_sync_deadline_ms: Option<i64>,
    pub(super) new_member_added: bool,
    pub(crate) offsets: BTreeMap<(String, i32), OffsetValue>,
    /// Explicit expiry times of offsets committed with a `retention_time_ms` (OffsetCommit
    /// v2-v4); offsets without an entry follow `offsets.retention.minutes`.
    pub(crate) offset_expiry: BTreeMap<(String, i32), i64>,
    /// Offsets with a commit in flight (staged, records not committed yet); `offsets` holds
    /// only durable ones.
    pub(crate) pending_offsets: BTreeMap<(String, i32), PendingOffset>,
    /// The KIP-848 side when this is a consumer group (None: a classic group).
    pub(crate) consumer: Option<crate::groups::consumer::ConsumerGroup>,
}

impl Group {
    pub(crate) fn new(group_id: &str, now_ms: i64) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            join_timer: None,
            pending_sync: BTreeSet::new(),
            pending_sync_deadline_ms: None,
            new_member_added: false,
            offsets: BTreeMap::new(),
            offset_expiry: BTreeMap::new(),
            pending_offsets: BTreeMap::new(),
            consumer: None,
        }
    }

    pub(super) fn transition(&mut self, to: GroupState, now_ms: i64) {
        tracing::debug!(group = %self.group_id, from = self.state.name(), to = to.name(), "group state");
        self.state = to;
        self.state_timestamp_ms = now_ms;
    }

    pub(crate) fn is_static_fenced(&self, instance: Option<&str>, member_id: &str) -> bool {
        match instance.and_then(|i| self.static_members.get(i)) {
            Some(current) => current != member_id,
            None => false,
        }
    }

    pub(super) fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// Kafka's `selectProtocol`: among protocols every member supports, each member votes
    /// for its most preferred; the most votes win (ties go to the earliest candidate).
    pub(super) fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                if let Some(v) = votes.iter_mut().find(|(_, c)| *c == name) {
                    v.0 += 1;
                }
            }
        }
        let best = votes.iter().map(|(n, _)| *n).max()?;
        votes
            .into_iter()
            .find(|(n, _)| *n == best)
            .map(|(_, c)| c.clone())
    }

    pub(super) fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    pub(super) fn max_rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    pub(super) fn add_member(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.member_id.clone());
        }
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member; a waiting JoinGroup or SyncGroup is answered with `error`.
    pub(super) fn remove_member(&mut self, member_id: &str, error: i16, effects: &mut Effects) {
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(token) = member.awaiting_join {
            effects.complete(token, Completion::Join(JoinReply::error(member_id, error)));
        }
        if let Some(token) = member.awaiting_sync {
            effects.complete(token, Completion::Sync(SyncReply::error(error)));
        }
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        self.synced(member_id);
    }

    /// Starts the pending-sync timer: every member must send SyncGroup within the rebalance
    /// timeout of the join completing.
    pub(super) fn await_sync(&mut self, now_ms: i64) {
        self.pending_sync = self.members.keys().cloned().collect();
        self.pending_sync_deadline_ms = Some(now_ms + self.max_rebalance_timeout_ms());
    }

    /// A member sent SyncGroup (or left): it is no longer pending.
    pub(super) fn synced(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.pending_sync_deadline_ms = None;
        }
    }

    /// Stops the pending-sync timer (a new rebalance starts, or state is reloaded).
    pub(super) fn clear_pending_sync(&mut self) {
        self.pending_sync.clear();
        self.pending_sync_deadline_ms = None;
    }

    /// Forgets a committed offset and its explicit expiry.
    /// Removes a partition's offset, committed or in flight; true if there was one (then a
    /// tombstone is due).
    pub(crate) fn remove_offset(&mut self, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        self.offset_expiry.remove(&key);
        let pending = self.pending_offsets.remove(&key).is_some();
        self.offsets.remove(&key).is_some() || pending
    }

    /// Every partition with an offset, committed or in flight.
    pub(crate) fn offset_keys(&self) -> BTreeSet<(String, i32)> {
        self.offsets
            .keys()
            .chain(self.pending_offsets.keys())
            .cloned()
            .collect()
    }

    pub(super) fn to_value(&self) -> GroupValue {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol_name.clone(),
            leader: self.leader.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    pub(super) fn record(&self) -> GroupRecord {
        GroupRecord {
            key: records::group_key(&self.group_id),
            value: Some(records::group_value(&self.to_value())),
        }
    }

    pub(super) fn join_reply_for(&self, member_id: &str) -> JoinReply {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let protocol = self.protocol_name.clone().unwrap_or_default();
        JoinReply {
            error: NONE,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members: if is_leader {
                self.members
                    .values()
                    .map(|m| JoinedMember {
                        member_id: m.member_id.clone(),
                        group_instance_id: m.group_instance_id.clone(),
                        metadata: m.metadata_for(&protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }
}
