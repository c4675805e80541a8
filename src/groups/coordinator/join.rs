//! JoinGroup: new, known and static members entering the join barrier (KIP-394, KIP-345).

use bytes::Bytes;

use super::group::{Group, Member};
use super::rebalance::{maybe_prepare_rebalance, try_complete_join};
use super::sync::SyncReply;
use super::{
    Completion, Coordinator, Effects, GroupState, Token, COORDINATOR_NOT_AVAILABLE,
    FENCED_INSTANCE_ID, GROUP_ID_NOT_FOUND, INCONSISTENT_GROUP_PROTOCOL, INVALID_GROUP_ID,
    INVALID_SESSION_TIMEOUT, MEMBER_ID_REQUIRED, UNKNOWN_MEMBER_ID,
};

/// A JoinGroup request, version-independent.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    /// The group.
    pub group_id: String,
    /// The member id; empty on the first join.
    pub member_id: String,
    /// The static instance id (v5+).
    pub group_instance_id: Option<String>,
    /// The client id from the request header.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// The session timeout.
    pub session_timeout_ms: i32,
    /// The rebalance timeout (v0: the session timeout).
    pub rebalance_timeout_ms: i32,
    /// The protocol type ("consumer").
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new dynamic member must first get its id (KIP-394).
    pub require_known_member_id: bool,
    /// v9+: the static leader may be told to skip the assignment (KIP-814).
    pub supports_skip_assignment: bool,
}

/// One member in the leader's JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// The member id.
    pub member_id: String,
    /// Its static instance id.
    pub group_instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinReply {
    /// Kafka error code.
    pub error: i16,
    /// The new generation (-1 on error).
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// The leader must not compute a new assignment (static leader rejoin, v9+).
    pub skip_assignment: bool,
    /// The member's id (assigned on the first join).
    pub member_id: String,
    /// All members with metadata, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinReply {
    pub(super) fn error(member_id: &str, error: i16) -> JoinReply {
        JoinReply {
            error,
            generation_id: -1,
            member_id: member_id.to_string(),
            ..JoinReply::default()
        }
    }
}

impl Coordinator {
    /// Handles JoinGroup. The answer for `token` is in the returned effects now or later.
    pub fn join(&mut self, token: Token, req: JoinRequest, now_ms: i64) -> Effects {
        let mut effects = Effects::default();
        let reply = |e: &mut Effects, error: i16| {
            e.complete(
                token,
                Completion::Join(JoinReply::error(&req.member_id, error)),
            )
        };
        if req.group_id.is_empty() {
            reply(&mut effects, INVALID_GROUP_ID);
            return effects;
        }
        if req.session_timeout_ms < self.config.session_timeout_min_ms
            || req.session_timeout_ms > self.config.session_timeout_max_ms
        {
            reply(&mut effects, INVALID_SESSION_TIMEOUT);
            return effects;
        }
        if let Some(g) = self.groups.get_mut(&req.group_id) {
            if let Some(cg) = &g.consumer {
                if !cg.members.is_empty() {
                    reply(&mut effects, GROUP_ID_NOT_FOUND);
                    return effects;
                }
                // An empty consumer group goes back to the classic protocol (offsets kept).
                g.consumer = None;
                g.protocol_type = None;
            }
        }
        if !self.groups.contains_key(&req.group_id) {
            if !req.member_id.is_empty() {
                reply(&mut effects, UNKNOWN_MEMBER_ID);
                return effects;
            }
            self.groups
                .insert(req.group_id.clone(), Group::new(&req.group_id, now_ms));
        }
        if req.member_id.is_empty() {
            self.join_new_member(token, req, now_ms, &mut effects);
        } else {
            self.join_known_member(token, req, now_ms, &mut effects);
        }
        effects
    }

    fn join_new_member(&mut self, token: Token, req: JoinRequest, now_ms: i64, fx: &mut Effects) {
        let new_id = self.new_member_id(&req.client_id);
        let delay = self.config.initial_rebalance_delay_ms;
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        if group.state == GroupState::Dead {
            fx.complete(
                token,
                Completion::Join(JoinReply::error("", COORDINATOR_NOT_AVAILABLE)),
            );
            return;
        }
        if !group.supports_protocols(&req.protocol_type, &req.protocols) {
            fx.complete(
                token,
                Completion::Join(JoinReply::error("", INCONSISTENT_GROUP_PROTOCOL)),
            );
            return;
        }
        if let Some(instance) = req.group_instance_id.clone() {
            match group.static_members.get(&instance).cloned() {
                Some(old_id) => static_rejoin(group, token, req, old_id, new_id, delay, now_ms, fx),
                None => add_member_and_rebalance(group, token, req, new_id, delay, now_ms, fx),
            }
            return;
        }
        if req.require_known_member_id {
            let expiry = now_ms + i64::from(req.session_timeout_ms);
            group.pending_members.insert(new_id.clone(), expiry);
            fx.complete(
                token,
                Completion::Join(JoinReply::error(&new_id, MEMBER_ID_REQUIRED)),
            );
            return;
        }
        add_member_and_rebalance(group, token, req, new_id, delay, now_ms, fx);
    }

    fn join_known_member(&mut self, token: Token, req: JoinRequest, now_ms: i64, fx: &mut Effects) {
        let delay = self.config.initial_rebalance_delay_ms;
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        let fail = |fx: &mut Effects, error: i16| {
            fx.complete(
                token,
                Completion::Join(JoinReply::error(&req.member_id, error)),
            )
        };
        if group.state == GroupState::Dead {
            return fail(fx, COORDINATOR_NOT_AVAILABLE);
        }
        if !group.supports_protocols(&req.protocol_type, &req.protocols) {
            return fail(fx, INCONSISTENT_GROUP_PROTOCOL);
        }
        if group.pending_members.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            return add_member_and_rebalance(group, token, req, id, delay, now_ms, fx);
        }
        if group.is_static_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            return fail(fx, FENCED_INSTANCE_ID);
        }
        let Some(member) = group.members.get(&req.member_id) else {
            return fail(fx, UNKNOWN_MEMBER_ID);
        };
        let same = member.same_protocols(&req.protocols);
        let is_leader = group.leader.as_deref() == Some(req.member_id.as_str());
        match group.state {
            GroupState::PreparingRebalance => {
                update_member_and_rebalance(group, token, req, delay, now_ms, fx)
            }
            GroupState::CompletingRebalance if same => {
                let reply = group.join_reply_for(&req.member_id);
                fx.complete(token, Completion::Join(reply));
            }
            GroupState::Stable if same && !is_leader => {
                let reply = group.join_reply_for(&req.member_id);
                fx.complete(token, Completion::Join(reply));
            }
            _ => update_member_and_rebalance(group, token, req, delay, now_ms, fx),
        }
    }
}

pub(super) fn new_member(
    req: &JoinRequest,
    member_id: String,
    token: Token,
    now_ms: i64,
) -> Member {
    Member {
        member_id,
        group_instance_id: req.group_instance_id.clone(),
        client_id: req.client_id.clone(),
        client_host: req.client_host.clone(),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        session_timeout_ms: req.session_timeout_ms,
        protocol_type: req.protocol_type.clone(),
        protocols: req.protocols.clone(),
        assignment: Bytes::new(),
        awaiting_join: Some(token),
        awaiting_sync: None,
        supports_skip_assignment: req.supports_skip_assignment,
        last_heartbeat_ms: now_ms,
    }
}

pub(super) fn add_member_and_rebalance(
    group: &mut Group,
    token: Token,
    req: JoinRequest,
    member_id: String,
    delay_ms: i64,
    now_ms: i64,
    fx: &mut Effects,
) {
    let member = new_member(&req, member_id, token, now_ms);
    group.add_member(member);
    group.new_member_added = true;
    maybe_prepare_rebalance(group, delay_ms, now_ms, fx);
    try_complete_join(group, now_ms, fx);
}

pub(super) fn update_member_and_rebalance(
    group: &mut Group,
    token: Token,
    req: JoinRequest,
    delay_ms: i64,
    now_ms: i64,
    fx: &mut Effects,
) {
    if let Some(m) = group.members.get_mut(&req.member_id) {
        if let Some(old) = m.awaiting_join.replace(token) {
            // A duplicate join from the same member: the older request gets no result.
            fx.complete(
                old,
                Completion::Join(JoinReply::error(&req.member_id, UNKNOWN_MEMBER_ID)),
            );
        }
        m.protocols = req.protocols.clone();
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.session_timeout_ms = req.session_timeout_ms;
        m.supports_skip_assignment = req.supports_skip_assignment;
        m.last_heartbeat_ms = now_ms;
    }
    maybe_prepare_rebalance(group, delay_ms, now_ms, fx);
    try_complete_join(group, now_ms, fx);
}

/// A static member rejoins with a new member id (KIP-345): it replaces the old member; in a
/// Stable group with unchanged protocols no rebalance happens.
#[allow(clippy::too_many_arguments)]
pub(super) fn static_rejoin(
    group: &mut Group,
    token: Token,
    req: JoinRequest,
    old_id: String,
    new_id: String,
    delay_ms: i64,
    now_ms: i64,
    fx: &mut Effects,
) {
    let Some(mut member) = group.members.remove(&old_id) else {
        return add_member_and_rebalance(group, token, req, new_id, delay_ms, now_ms, fx);
    };
    if let Some(old) = member.awaiting_join.take() {
        fx.complete(
            old,
            Completion::Join(JoinReply::error(&old_id, FENCED_INSTANCE_ID)),
        );
    }
    if let Some(old) = member.awaiting_sync.take() {
        fx.complete(old, Completion::Sync(SyncReply::error(FENCED_INSTANCE_ID)));
    }
    let same = member.same_protocols(&req.protocols);
    member.member_id = new_id.clone();
    member.client_id = req.client_id.clone();
    member.client_host = req.client_host.clone();
    member.session_timeout_ms = req.session_timeout_ms;
    member.rebalance_timeout_ms = req.rebalance_timeout_ms;
    member.supports_skip_assignment = req.supports_skip_assignment;
    member.last_heartbeat_ms = now_ms;
    if let Some(instance) = &req.group_instance_id {
        group
            .static_members
            .insert(instance.clone(), new_id.clone());
    }
    if group.pending_sync.remove(&old_id) {
        group.pending_sync.insert(new_id.clone());
    }
    if group.leader.as_deref() == Some(old_id.as_str()) {
        group.leader = Some(new_id.clone());
    }
    let is_leader = group.leader.as_deref() == Some(new_id.as_str());
    group.members.insert(new_id.clone(), member);
    tracing::info!(group = %group.group_id, old = %old_id, new = %new_id, "static member replaced");
    if group.state == GroupState::Stable && same {
        let mut reply = group.join_reply_for(&new_id);
        if is_leader && !req.supports_skip_assignment {
            // Before KIP-814 Kafka answers with the old leader id, so the restarted leader
            // acts as a follower and does not compute an assignment nobody would receive.
            reply.leader = old_id;
            reply.members.clear();
        } else {
            reply.skip_assignment = is_leader;
        }
        fx.records.push(group.record());
        fx.complete(token, Completion::Join(reply));
        return;
    }
    let req = JoinRequest {
        member_id: new_id,
        ..req
    };
    update_member_and_rebalance(group, token, req, delay_ms, now_ms, fx);
}
