//! The sans-IO group coordinator of one `__consumer_offsets` partition.
//!
//! Every input carries `now_ms`; nothing here reads a clock, sleeps or does IO. JoinGroup and
//! SyncGroup may not be answerable at once (the join barrier, the leader's assignment): they
//! take a [`Token`] from the driver and their answer comes out later, in the [`Effects`] of
//! whichever input completes the barrier. Records to append come out in [`Effects`] too; the
//! driver appends them before it delivers the completions of the same call.
//!
//! The transitions follow Kafka's `GroupCoordinator` (classic protocol): Empty ->
//! PreparingRebalance -> CompletingRebalance -> Stable, with Dead for deleted groups.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::records::{
    self, decode_group_value, decode_key, decode_offset_value, GroupRecord, GroupValue,
    MemberValue, OffsetValue, RecordError, RecordKey,
};

/// Identifies a deferred JoinGroup or SyncGroup request; chosen by the driver, unique per shard.
pub type Token = u64;

pub(crate) const NONE: i16 = 0;
pub(crate) const UNKNOWN_MEMBER_ID: i16 = ResponseError::UnknownMemberId.code();
pub(crate) const ILLEGAL_GENERATION: i16 = ResponseError::IllegalGeneration.code();
pub(crate) const REBALANCE_IN_PROGRESS: i16 = ResponseError::RebalanceInProgress.code();
pub(crate) const FENCED_INSTANCE_ID: i16 = ResponseError::FencedInstanceId.code();
pub(crate) const INCONSISTENT_GROUP_PROTOCOL: i16 = ResponseError::InconsistentGroupProtocol.code();
pub(crate) const COORDINATOR_NOT_AVAILABLE: i16 = ResponseError::CoordinatorNotAvailable.code();
pub(crate) const MEMBER_ID_REQUIRED: i16 = ResponseError::MemberIdRequired.code();
pub(crate) const INVALID_SESSION_TIMEOUT: i16 = ResponseError::InvalidSessionTimeout.code();
pub(crate) const INVALID_GROUP_ID: i16 = ResponseError::InvalidGroupId.code();
pub(crate) const GROUP_ID_NOT_FOUND: i16 = ResponseError::GroupIdNotFound.code();
pub(crate) const NON_EMPTY_GROUP: i16 = ResponseError::NonEmptyGroup.code();

/// Coordinator settings (Kafka's `group.*` and `offsets.*` broker configs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members (extended per new member, up to the rebalance timeout).
    pub initial_rebalance_delay_ms: i64,
    /// `offsets.retention.minutes` in ms: offsets of an empty group expire this long after
    /// the group became empty (or after the commit, if later).
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub session_timeout_min_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub session_timeout_max_ms: i32,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            initial_rebalance_delay_ms: 3000,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            session_timeout_min_ms: 6000,
            session_timeout_max_ms: 1_800_000,
            offset_metadata_max_bytes: 4096,
        }
    }
}

/// The states of a classic group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (possibly committed offsets).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Everyone has an assignment.
    Stable,
    /// Deleted or expired.
    Dead,
}

impl GroupState {
    /// Kafka's name of the state, as DescribeGroups and ListGroups report it.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

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
    fn error(member_id: &str, error: i16) -> JoinReply {
        JoinReply {
            error,
            generation_id: -1,
            member_id: member_id.to_string(),
            ..JoinReply::default()
        }
    }
}

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
    fn error(error: i16) -> SyncReply {
        SyncReply {
            error,
            ..SyncReply::default()
        }
    }
}

/// A deferred answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Answers a JoinGroup.
    Join(JoinReply),
    /// Answers a SyncGroup.
    Sync(SyncReply),
}

impl Completion {
    /// Turns the answer into a retriable error because its records could not be written.
    pub fn fail_storage(&mut self) {
        if let Completion::Sync(s) = self {
            if s.error == NONE {
                *s = SyncReply::error(COORDINATOR_NOT_AVAILABLE);
            }
        }
    }
}

/// What an input asks the driver to do.
#[derive(Debug, Default)]
pub struct Effects {
    /// Deferred answers now ready, keyed by the token their request was given.
    pub completions: Vec<(Token, Completion)>,
    /// Records to append (acks=all) before the completions are delivered.
    pub records: Vec<GroupRecord>,
}

impl Effects {
    fn complete(&mut self, token: Token, completion: Completion) {
        self.completions.push((token, completion));
    }
}

/// A Heartbeat request.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    /// The group.
    pub group_id: String,
    /// The member's generation.
    pub generation_id: i32,
    /// The member id.
    pub member_id: String,
    /// The static instance id (v3+).
    pub group_instance_id: Option<String>,
}

/// One member leaving (LeaveGroup v3+ batches them).
#[derive(Debug, Clone, Default)]
pub struct LeavingMember {
    /// The member id; may be empty when the instance id names the member.
    pub member_id: String,
    /// The static instance id.
    pub group_instance_id: Option<String>,
}

/// A LeaveGroup answer: a top-level error and one error per member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaveReply {
    /// Group-level error.
    pub error: i16,
    /// (member id, instance id, error) per leaving member, in request order.
    pub members: Vec<(String, Option<String>, i16)>,
}

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
}

/// A ListGroups entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    /// The group.
    pub group_id: String,
    /// The protocol type ("" for offsets-only groups).
    pub protocol_type: String,
    /// Kafka's state name.
    pub state: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: i32,
    session_timeout_ms: i32,
    protocol_type: String,
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    awaiting_join: Option<Token>,
    awaiting_sync: Option<Token>,
    supports_skip_assignment: bool,
    last_heartbeat_ms: i64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    pub(crate) fn touch(&mut self, now_ms: i64) {
        self.last_heartbeat_ms = now_ms;
    }

    fn session_expired(&self, now_ms: i64) -> bool {
        self.awaiting_join.is_none()
            && self.awaiting_sync.is_none()
            && now_ms >= self.last_heartbeat_ms + i64::from(self.session_timeout_ms)
    }
}

/// The join barrier's timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct JoinTimer {
    deadline_ms: i64,
    /// Initial delayed join of an empty group: does not end early when all have joined.
    initial: bool,
    /// Initial delay left to extend by when new members keep arriving.
    remaining_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) group_id: String,
    pub(crate) state: GroupState,
    pub(crate) state_timestamp_ms: i64,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) generation: i32,
    leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    static_members: BTreeMap<String, String>,
    /// KIP-394: member ids handed out with MEMBER_ID_REQUIRED, and when they expire.
    pending_members: BTreeMap<String, i64>,
    join_timer: Option<JoinTimer>,
    new_member_added: bool,
    pub(crate) offsets: BTreeMap<(String, i32), OffsetValue>,
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
            new_member_added: false,
            offsets: BTreeMap::new(),
        }
    }

    fn transition(&mut self, to: GroupState, now_ms: i64) {
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

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
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
    fn select_protocol(&self) -> Option<String> {
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

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn max_rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    fn add_member(&mut self, member: Member) {
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
    fn remove_member(&mut self, member_id: &str, error: i16, effects: &mut Effects) {
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
    }

    fn to_value(&self) -> GroupValue {
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

    fn record(&self) -> GroupRecord {
        GroupRecord {
            key: records::group_key(&self.group_id),
            value: Some(records::group_value(&self.to_value())),
        }
    }

    fn join_reply_for(&self, member_id: &str) -> JoinReply {
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

/// The coordinator of every group on one `__consumer_offsets` partition.
#[derive(Debug)]
pub struct Coordinator {
    pub(crate) config: CoordinatorConfig,
    pub(crate) groups: BTreeMap<String, Group>,
    next_member_seq: u64,
    member_id_salt: u64,
    pub(crate) next_offset_expiry_ms: i64,
}

impl Coordinator {
    /// An empty coordinator. `member_id_salt` makes member ids unique across restarts (the
    /// driver passes the node's epoch and the partition).
    pub fn new(config: CoordinatorConfig, member_id_salt: u64) -> Coordinator {
        Coordinator {
            config,
            groups: BTreeMap::new(),
            next_member_seq: 0,
            member_id_salt,
            next_offset_expiry_ms: 0,
        }
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member_seq += 1;
        format!(
            "{client_id}-{:016x}-{:08x}",
            self.member_id_salt, self.next_member_seq
        )
    }

    /// Number of groups known (including offsets-only groups).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// The state of a group, if it exists.
    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|g| g.state)
    }

    /// The generation of a group, if it exists.
    pub fn generation(&self, group_id: &str) -> Option<i32> {
        self.groups.get(group_id).map(|g| g.generation)
    }

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
                let reply = sync_reply(group, &req.member_id);
                if let Some(m) = group.members.get_mut(&req.member_id) {
                    m.last_heartbeat_ms = now_ms;
                }
                fx.complete(token, Completion::Sync(reply));
            }
            GroupState::CompletingRebalance => {
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

    /// Handles Heartbeat: returns the error code (and effects, always empty today).
    pub fn heartbeat(&mut self, req: &HeartbeatRequest, now_ms: i64) -> i16 {
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return UNKNOWN_MEMBER_ID;
        };
        if group.state == GroupState::Dead {
            return COORDINATOR_NOT_AVAILABLE;
        }
        if group.is_static_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            return FENCED_INSTANCE_ID;
        }
        let state = group.state;
        let generation = group.generation;
        let Some(member) = group.members.get_mut(&req.member_id) else {
            return UNKNOWN_MEMBER_ID;
        };
        if req.generation_id != generation {
            return ILLEGAL_GENERATION;
        }
        match state {
            GroupState::Empty | GroupState::Dead => UNKNOWN_MEMBER_ID,
            GroupState::PreparingRebalance => {
                member.last_heartbeat_ms = now_ms;
                REBALANCE_IN_PROGRESS
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.last_heartbeat_ms = now_ms;
                NONE
            }
        }
    }

    /// Handles LeaveGroup for one or more members.
    pub fn leave(
        &mut self,
        group_id: &str,
        leaving: &[LeavingMember],
        now_ms: i64,
    ) -> (LeaveReply, Effects) {
        let mut fx = Effects::default();
        let mut reply = LeaveReply::default();
        let delay = self.config.initial_rebalance_delay_ms;
        let Some(group) = self.groups.get_mut(group_id) else {
            reply.members = leaving
                .iter()
                .map(|m| {
                    (
                        m.member_id.clone(),
                        m.group_instance_id.clone(),
                        UNKNOWN_MEMBER_ID,
                    )
                })
                .collect();
            return (reply, fx);
        };
        if group.state == GroupState::Dead {
            reply.error = COORDINATOR_NOT_AVAILABLE;
            return (reply, fx);
        }
        for m in leaving {
            let error = leave_one(group, m, delay, now_ms, &mut fx);
            reply
                .members
                .push((m.member_id.clone(), m.group_instance_id.clone(), error));
        }
        (reply, fx)
    }

    /// Advances time: ends join barriers, expires sessions and pending member ids, and
    /// expires offsets of empty groups.
    pub fn tick(&mut self, now_ms: i64) -> Effects {
        let mut fx = Effects::default();
        let delay = self.config.initial_rebalance_delay_ms;
        for group in self.groups.values_mut() {
            group.pending_members.retain(|_, expiry| *expiry > now_ms);
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| m.session_expired(now_ms))
                .map(|m| m.member_id.clone())
                .collect();
            for member_id in expired {
                tracing::info!(group = %group.group_id, member = %member_id, "member session expired");
                group.remove_member(&member_id, UNKNOWN_MEMBER_ID, &mut fx);
                after_member_removed(group, delay, now_ms, &mut fx);
            }
            if let Some(timer) = group.join_timer {
                if now_ms >= timer.deadline_ms {
                    join_timer_fired(group, timer, delay, now_ms, &mut fx);
                } else if group.state == GroupState::PreparingRebalance {
                    try_complete_join(group, now_ms, &mut fx);
                }
            }
        }
        if now_ms >= self.next_offset_expiry_ms {
            self.next_offset_expiry_ms = now_ms + self.config.offsets_retention_check_interval_ms;
            self.expire_offsets(now_ms, &mut fx);
        }
        fx
    }

    /// The earliest time at which [`Coordinator::tick`] has work, if any.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let mut next = Some(self.next_offset_expiry_ms);
        let mut consider = |t: i64| next = Some(next.map_or(t, |n: i64| n.min(t)));
        for g in self.groups.values() {
            if let Some(timer) = g.join_timer {
                consider(timer.deadline_ms);
            }
            for expiry in g.pending_members.values() {
                consider(*expiry);
            }
            for m in g.members.values() {
                if m.awaiting_join.is_none() && m.awaiting_sync.is_none() {
                    consider(m.last_heartbeat_ms + i64::from(m.session_timeout_ms));
                }
            }
        }
        next
    }

    /// Describes one group (unknown groups are reported Dead, as Kafka does).
    pub fn describe(&self, group_id: &str) -> GroupDescription {
        let Some(g) = self.groups.get(group_id) else {
            return GroupDescription {
                group_id: group_id.to_string(),
                state: GroupState::Dead.name(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            };
        };
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
        }
    }

    /// Lists groups, optionally only those in the given states (case-insensitive).
    pub fn list(&self, states: &[String]) -> Vec<ListedGroup> {
        self.groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .filter(|g| {
                states.is_empty()
                    || states
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state.name()))
            })
            .map(|g| ListedGroup {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
            })
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
                        for (topic, partition) in g.offsets.keys() {
                            fx.records.push(GroupRecord {
                                key: records::offset_key(id, topic, *partition),
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

    /// Applies one stored record while loading the partition. Unknown record versions are
    /// an error the driver logs and skips.
    pub fn replay(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        now_ms: i64,
    ) -> Result<(), RecordError> {
        match decode_key(key)? {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => match value {
                Some(v) => {
                    let offset = decode_offset_value(v)?;
                    self.groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, now_ms))
                        .offsets
                        .insert((topic, partition), offset);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.offsets.remove(&(topic, partition));
                        if g.offsets.is_empty() && g.protocol_type.is_none() {
                            self.groups.remove(&group);
                        }
                    }
                }
            },
            RecordKey::Group { group } => match value {
                Some(v) => {
                    let value = decode_group_value(v)?;
                    let g = self
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, now_ms));
                    restore_group(g, value, now_ms);
                }
                None => {
                    let offsets = self
                        .groups
                        .remove(&group)
                        .map(|g| g.offsets)
                        .unwrap_or_default();
                    if !offsets.is_empty() {
                        let mut g = Group::new(&group, now_ms);
                        g.offsets = offsets;
                        self.groups.insert(group, g);
                    }
                }
            },
        }
        Ok(())
    }
}

fn restore_group(g: &mut Group, v: GroupValue, now_ms: i64) {
    g.generation = v.generation;
    g.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type.clone());
    g.protocol_name = v.protocol.clone();
    g.leader = v.leader.clone();
    g.state_timestamp_ms = if v.current_state_timestamp_ms >= 0 {
        v.current_state_timestamp_ms
    } else {
        now_ms
    };
    g.members.clear();
    g.static_members.clear();
    g.pending_members.clear();
    g.join_timer = None;
    let protocol = v.protocol.clone().unwrap_or_default();
    for m in v.members {
        let member = Member {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            client_id: m.client_id,
            client_host: m.client_host,
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            session_timeout_ms: m.session_timeout_ms,
            protocol_type: v.protocol_type.clone(),
            protocols: vec![(protocol.clone(), m.subscription)],
            assignment: m.assignment,
            awaiting_join: None,
            awaiting_sync: None,
            supports_skip_assignment: false,
            // Restored members get a full session to show up at the new coordinator.
            last_heartbeat_ms: now_ms,
        };
        if let Some(instance) = &member.group_instance_id {
            g.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        g.members.insert(member.member_id.clone(), member);
    }
    g.state = if g.members.is_empty() {
        GroupState::Empty
    } else {
        GroupState::Stable
    };
    if g.leader
        .as_ref()
        .is_some_and(|l| !g.members.contains_key(l))
    {
        g.leader = g.members.keys().next().cloned();
    }
}

fn new_member(req: &JoinRequest, member_id: String, token: Token, now_ms: i64) -> Member {
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

fn add_member_and_rebalance(
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

fn update_member_and_rebalance(
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
fn static_rejoin(
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

fn leave_one(
    group: &mut Group,
    m: &LeavingMember,
    delay_ms: i64,
    now_ms: i64,
    fx: &mut Effects,
) -> i16 {
    let member_id = if m.member_id.is_empty() {
        match m
            .group_instance_id
            .as_ref()
            .and_then(|i| group.static_members.get(i))
        {
            Some(id) => id.clone(),
            None => return UNKNOWN_MEMBER_ID,
        }
    } else {
        m.member_id.clone()
    };
    if group.is_static_fenced(m.group_instance_id.as_deref(), &member_id) {
        return FENCED_INSTANCE_ID;
    }
    if group.pending_members.remove(&member_id).is_some() {
        try_complete_join(group, now_ms, fx);
        return NONE;
    }
    if !group.members.contains_key(&member_id) {
        return UNKNOWN_MEMBER_ID;
    }
    tracing::info!(group = %group.group_id, member = %member_id, "member left");
    group.remove_member(&member_id, UNKNOWN_MEMBER_ID, fx);
    after_member_removed(group, delay_ms, now_ms, fx);
    NONE
}

fn after_member_removed(group: &mut Group, delay_ms: i64, now_ms: i64, fx: &mut Effects) {
    match group.state {
        GroupState::Stable | GroupState::CompletingRebalance => {
            maybe_prepare_rebalance(group, delay_ms, now_ms, fx);
            try_complete_join(group, now_ms, fx);
        }
        GroupState::PreparingRebalance => try_complete_join(group, now_ms, fx),
        GroupState::Empty | GroupState::Dead => {}
    }
}

/// Starts a rebalance from Empty, Stable or CompletingRebalance.
fn maybe_prepare_rebalance(group: &mut Group, delay_ms: i64, now_ms: i64, fx: &mut Effects) {
    match group.state {
        GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty => {}
        GroupState::PreparingRebalance | GroupState::Dead => return,
    }
    if group.state == GroupState::CompletingRebalance {
        // Members waiting in SyncGroup must rejoin.
        for m in group.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(token) = m.awaiting_sync.take() {
                fx.complete(
                    token,
                    Completion::Sync(SyncReply::error(REBALANCE_IN_PROGRESS)),
                );
            }
        }
    }
    let rebalance_ms = group.max_rebalance_timeout_ms();
    let timer = if group.state == GroupState::Empty && delay_ms > 0 {
        let first = delay_ms.min(rebalance_ms);
        JoinTimer {
            deadline_ms: now_ms + first,
            initial: true,
            remaining_ms: (rebalance_ms - first).max(0),
        }
    } else {
        JoinTimer {
            deadline_ms: now_ms + rebalance_ms,
            initial: false,
            remaining_ms: 0,
        }
    };
    group.join_timer = Some(timer);
    group.new_member_added = false;
    group.transition(GroupState::PreparingRebalance, now_ms);
    tracing::info!(group = %group.group_id, generation = group.generation, members = group.members.len(), "preparing to rebalance");
}

fn join_timer_fired(
    group: &mut Group,
    timer: JoinTimer,
    delay_ms: i64,
    now_ms: i64,
    fx: &mut Effects,
) {
    if group.state != GroupState::PreparingRebalance {
        group.join_timer = None;
        return;
    }
    if timer.initial && group.new_member_added && timer.remaining_ms > 0 {
        // New members keep arriving: wait another delay, within the rebalance timeout
        // (Kafka's InitialDelayedJoin).
        group.new_member_added = false;
        let step = delay_ms.min(timer.remaining_ms);
        group.join_timer = Some(JoinTimer {
            deadline_ms: now_ms + step,
            initial: true,
            remaining_ms: (timer.remaining_ms - delay_ms).max(0),
        });
        return;
    }
    complete_join(group, now_ms, fx);
}

/// Ends the join barrier early when every member has rejoined (not during the initial delay).
fn try_complete_join(group: &mut Group, now_ms: i64, fx: &mut Effects) {
    if group.state != GroupState::PreparingRebalance {
        return;
    }
    let initial = group.join_timer.is_some_and(|t| t.initial);
    if !initial && group.all_members_joined() {
        complete_join(group, now_ms, fx);
    }
}

/// The join barrier ends: drop dynamic members that did not rejoin, start the next
/// generation and answer every waiting JoinGroup (the leader gets the members).
fn complete_join(group: &mut Group, now_ms: i64, fx: &mut Effects) {
    group.join_timer = None;
    let missing: Vec<String> = group
        .members
        .values()
        .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
        .map(|m| m.member_id.clone())
        .collect();
    for id in missing {
        tracing::info!(group = %group.group_id, member = %id, "member did not rejoin in time");
        group.remove_member(&id, UNKNOWN_MEMBER_ID, fx);
    }
    group.generation += 1;
    if group.members.is_empty() {
        group.protocol_name = None;
        group.leader = None;
        group.transition(GroupState::Empty, now_ms);
        fx.records.push(group.record());
        tracing::info!(group = %group.group_id, generation = group.generation, "group is empty");
        return;
    }
    group.protocol_name = group.select_protocol();
    if group
        .leader
        .as_ref()
        .is_none_or(|l| !group.members.contains_key(l))
    {
        group.leader = group.members.keys().next().cloned();
    }
    group.transition(GroupState::CompletingRebalance, now_ms);
    tracing::info!(group = %group.group_id, generation = group.generation, protocol = ?group.protocol_name, members = group.members.len(), "rebalance: members joined");
    let waiting: Vec<(String, Token)> = group
        .members
        .values()
        .filter_map(|m| m.awaiting_join.map(|t| (m.member_id.clone(), t)))
        .collect();
    for (id, token) in waiting {
        let reply = group.join_reply_for(&id);
        fx.complete(token, Completion::Join(reply));
    }
    for m in group.members.values_mut() {
        m.awaiting_join = None;
        m.last_heartbeat_ms = now_ms;
    }
}

fn sync_reply(group: &Group, member_id: &str) -> SyncReply {
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
fn complete_sync(
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

#[cfg(test)]
#[path = "coordinator_tests.rs"]
mod tests;
