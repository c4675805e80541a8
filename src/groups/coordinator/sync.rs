//! SyncGroup: the leader's assignment and the members waiting for it.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::group::Group;
use super::{
    Completion, Coordinator, Effects, GroupState, Token, COORDINATOR_NOT_AVAILABLE,
    FENCED_INSTANCE_ID, ILLEGAL_GENERATION, INCONSISTENT_GROUP_PROTOCOL, NONE,
    REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
};

/// A SyncGroup request, version-independent.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    /// The group.
    pub group_id: String,
    /// The generation the member joined.
    pub generation_id: i32,
    /// The member id.
    pub member_id: String,
    /// The static instance id (v3+).
    pub group_instance_id: Option<String>,
    /// v5+: must match the group's.
    pub protocol_type: Option<String>,
    /// v5+: must match the group's.
    pub protocol_name: Option<String>,
    /// The leader's assignment: (member id, assignment).
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReply {
    /// Kafka error code.
    pub error: i16,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The group's protocol.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
}

impl SyncReply {
    pub(super) fn error(error: i16) -> SyncReply {
        SyncReply {
            error,
            ..SyncReply::default()
        }
    }
}

impl Coordinator {
    /// Handles SyncGroup. The answer for `token` is in the returned effects now or later.
    pub fn sync(&mut self, token: Token, req: SyncRequest, now_ms: i64) -> Effects {
        let mut fx = Effects::default();
        let fail = |fx: &mut Effects, error: i16| {
            fx.complete(token, Completion::Sync(SyncReply::error(error)));
        };
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            fail(&mut fx, UNKNOWN_MEMBER_ID);
            return fx;
        };
        if group.state == GroupState::Dead {
            fail(&mut fx, COORDINATOR_NOT_AVAILABLE);
            return fx;
        }
        if group.is_static_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            fail(&mut fx, FENCED_INSTANCE_ID);
            return fx;
        }
        if !group.members.contains_key(&req.member_id) {
            fail(&mut fx, UNKNOWN_MEMBER_ID);
            return fx;
        }
        if req.generation_id != group.generation {
            fail(&mut fx, ILLEGAL_GENERATION);
            return fx;
        }
        let type_ok = req.protocol_type.is_none() || req.protocol_type == group.protocol_type;
        let name_ok = req.protocol_name.is_none() || req.protocol_name == group.protocol_name;
        if !type_ok || !name_ok {
            fail(&mut fx, INCONSISTENT_GROUP_PROTOCOL);
            return fx;
        }
        match group.state {
            GroupState::Empty => fail(&mut fx, UNKNOWN_MEMBER_ID),
            GroupState::PreparingRebalance => fail(&mut fx, REBALANCE_IN_PROGRESS),
            GroupState::Stable => {
                group.synced(&req.member_id);
                let reply = sync_reply(group, &req.member_id);
                if let Some(m) = group.members.get_mut(&req.member_id) {
                    m.last_heartbeat_ms = now_ms;
                }
                fx.complete(token, Completion::Sync(reply));
            }
            GroupState::CompletingRebalance => {
                group.synced(&req.member_id);
                if let Some(m) = group.members.get_mut(&req.member_id) {
                    m.awaiting_sync = Some(token);
                    m.last_heartbeat_ms = now_ms;
                }
                if group.leader.as_deref() == Some(req.member_id.as_str()) {
                    complete_sync(group, req.assignments, now_ms, &mut fx);
                }
            }
            GroupState::Dead => fail(&mut fx, COORDINATOR_NOT_AVAILABLE),
        }
        fx
    }
}

pub(super) fn sync_reply(group: &Group, member_id: &str) -> SyncReply {
    SyncReply {
        error: NONE,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        assignment: group
            .members
            .get(member_id)
            .map(|m| m.assignment.clone())
            .unwrap_or_default(),
    }
}

/// The leader's SyncGroup: store the assignment, persist the group, answer every waiting
/// SyncGroup and become Stable.
pub(super) fn complete_sync(
    group: &mut Group,
    assignments: Vec<(String, Bytes)>,
    now_ms: i64,
    fx: &mut Effects,
) {
    let given: BTreeMap<String, Bytes> = assignments.into_iter().collect();
    for m in group.members.values_mut() {
        m.assignment = given.get(&m.member_id).cloned().unwrap_or_default();
    }
    group.transition(GroupState::Stable, now_ms);
    fx.records.push(group.record());
    let waiting: BTreeSet<(String, Token)> = group
        .members
        .values()
        .filter_map(|m| m.awaiting_sync.map(|t| (m.member_id.clone(), t)))
        .collect();
    for (id, token) in waiting {
        let reply = sync_reply(group, &id);
        fx.complete(token, Completion::Sync(reply));
    }
    for m in group.members.values_mut() {
        m.awaiting_sync = None;
    }
    tracing::info!(group = %group.group_id, generation = group.generation, "group stable");
}
