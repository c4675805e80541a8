//! KIP-848 consumer groups (ConsumerGroupHeartbeat), sans-IO.
//!
//! The broker assigns: members send their subscription (topic names and/or an RE2 regex)
//! and, when they finish reconciling, the partitions they own; the group computes a target
//! assignment with its assignor whenever the group epoch moves (a member joins, leaves or
//! changes its subscription, or a subscribed topic gains partitions), and walks each member
//! to its target:
//! - a member that must give partitions up is first told to revoke them (its epoch stays);
//!   only when it reports it no longer owns them does it move to the new epoch;
//! - a partition another member still owns (or has not confirmed revoking) is withheld
//!   until it is released, so no partition is ever owned by two members at once;
//! - a member that does not heartbeat within the session timeout, or does not revoke within
//!   its rebalance timeout, is removed (fenced) and its partitions are reassigned.
//!
//! Membership lives in memory: after a broker restart members are unknown, get
//! UNKNOWN_MEMBER_ID and rejoin (committed offsets are durable as for every group).

pub mod assignor;

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

pub use assignor::{Assignment, Assignor};

const NONE: i16 = 0;
const INVALID_REQUEST: i16 = ResponseError::InvalidRequest.code();
const UNKNOWN_MEMBER_ID: i16 = ResponseError::UnknownMemberId.code();
const FENCED_MEMBER_EPOCH: i16 = ResponseError::FencedMemberEpoch.code();
const UNSUPPORTED_ASSIGNOR: i16 = ResponseError::UnsupportedAssignor.code();
const INVALID_REGULAR_EXPRESSION: i16 = ResponseError::InvalidRegularExpression.code();
const UNRELEASED_INSTANCE_ID: i16 = ResponseError::UnreleasedInstanceId.code();

/// The member epoch of a ConsumerGroupHeartbeat that joins.
pub const JOIN_EPOCH: i32 = 0;
/// The member epoch of a member leaving for good.
pub const LEAVE_EPOCH: i32 = -1;
/// The member epoch of a static member leaving for now (it may come back).
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// Consumer-group settings (Kafka's `group.consumer.*` broker configs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout_ms: i64,
    /// `group.consumer.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: i32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
        }
    }
}

/// What the group coordinator needs to know about topics: their ids and partition counts.
pub trait TopicLookup {
    /// (topic id, partition count) of a topic by name.
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)>;
    /// Every topic a regex subscription may match (internal topics excluded).
    fn names(&self) -> Vec<String>;
}

/// One ConsumerGroupHeartbeat, version-independent. `None` fields are "unchanged since my
/// last heartbeat", as the protocol sends them.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    /// The member id (v1: chosen by the client; v0: empty on join).
    pub member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member leaving for now, else its epoch.
    pub member_epoch: i32,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// The member's rack.
    pub rack_id: Option<String>,
    /// How long the member may take to revoke partitions (-1: unchanged).
    pub rebalance_timeout_ms: i32,
    /// Subscribed topic names.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// Subscribed topic regex (v1; RE2 syntax, empty means none).
    pub subscribed_topic_regex: Option<String>,
    /// The assignor the member asks for.
    pub server_assignor: Option<String>,
    /// The partitions the member owns, when it reports them (after reconciling).
    pub owned: Option<Assignment>,
    /// The client id, for describe.
    pub client_id: String,
    /// The client's address, for describe.
    pub client_host: String,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// Error code (0 on success).
    pub error: i16,
    /// Human-readable reason of an error.
    pub message: Option<String>,
    /// The member id.
    pub member_id: String,
    /// The member's epoch after this heartbeat.
    pub member_epoch: i32,
    /// The partitions the member should own, when they changed (or it joined).
    pub assignment: Option<Assignment>,
    /// How often the member should heartbeat (`group.consumer.heartbeat.interval.ms`).
    pub heartbeat_interval_ms: i32,
}

impl HeartbeatReply {
    fn error(code: i16, message: impl Into<String>) -> HeartbeatReply {
        HeartbeatReply {
            error: code,
            message: Some(message.into()),
            ..Default::default()
        }
    }
}

/// Where a member is in reaching its target assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Owns its target.
    Stable,
    /// Told to revoke partitions; has not confirmed yet.
    UnrevokedPartitions,
    /// Waits for partitions other members still own.
    UnreleasedPartitions,
}

/// One member of a consumer group.
#[derive(Debug, Clone)]
pub struct ConsumerMember {
    /// The member id.
    pub member_id: String,
    /// The static instance id.
    pub instance_id: Option<String>,
    /// The rack.
    pub rack_id: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// The epoch of the assignment the member holds.
    pub epoch: i32,
    /// The epoch before (a member that missed our last answer may still send it).
    pub previous_epoch: i32,
    /// Where the member is in reconciling.
    pub state: MemberState,
    /// Subscribed topic names.
    pub topic_names: Vec<String>,
    /// Subscribed regex, with its compiled form.
    pub topic_regex: Option<(String, regex::Regex)>,
    /// The assignor the member asked for.
    pub assignor: Option<String>,
    /// `max.poll.interval.ms` of the member: how long it may take to revoke.
    pub rebalance_timeout_ms: i32,
    /// The partitions the member may own now.
    pub assigned: Assignment,
    /// Partitions it was told to revoke and has not confirmed revoking.
    pub revoking: Assignment,
    last_heartbeat_ms: i64,
    revoke_deadline_ms: Option<i64>,
}

impl ConsumerMember {
    fn subscribes(&self, name: &str) -> bool {
        self.topic_names.iter().any(|t| t == name)
            || self
                .topic_regex
                .as_ref()
                .is_some_and(|(_, r)| r.is_match(name))
    }
}

/// Kafka's consumer-group states, as ListGroups and ConsumerGroupDescribe name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    /// No members.
    Empty,
    /// The target assignment is behind the group epoch.
    Assigning,
    /// Some member has not reached its target.
    Reconciling,
    /// Every member owns its target.
    Stable,
}

impl ConsumerGroupState {
    /// Kafka's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// The KIP-848 side of one group.
#[derive(Debug, Clone, Default)]
pub struct ConsumerGroup {
    /// Moves whenever membership, subscriptions or subscribed partitions change.
    pub group_epoch: i32,
    /// The group epoch the target assignment was computed at.
    pub assignment_epoch: i32,
    /// The members, by id.
    pub members: BTreeMap<String, ConsumerMember>,
    /// The target assignment, by member id.
    pub target: BTreeMap<String, Assignment>,
    /// Subscribed topics (by name) with their id and partition count, as last computed.
    pub subscribed: BTreeMap<String, (Uuid, i32)>,
    /// The assignor the target was computed with.
    pub assignor: Option<Assignor>,
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        let rest: BTreeSet<i32> = match b.get(t) {
            Some(other) => ps.difference(other).copied().collect(),
            None => ps.clone(),
        };
        if !rest.is_empty() {
            out.insert(*t, rest);
        }
    }
    out
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        if let Some(other) = b.get(t) {
            let both: BTreeSet<i32> = ps.intersection(other).copied().collect();
            if !both.is_empty() {
                out.insert(*t, both);
            }
        }
    }
    out
}

fn overlaps(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .any(|(t, ps)| b.get(t).is_some_and(|o| !ps.is_disjoint(o)))
}

impl ConsumerGroup {
    /// The group's state.
    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.assignment_epoch < self.group_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// Handles one heartbeat. `new_member_id` names a joining member that brought none (v0).
    pub fn heartbeat(
        &mut self,
        req: HeartbeatRequest,
        topics: &dyn TopicLookup,
        new_member_id: impl FnOnce() -> String,
        now_ms: i64,
    ) -> HeartbeatReply {
        if req.member_epoch == LEAVE_EPOCH || req.member_epoch == STATIC_LEAVE_EPOCH {
            return self.leave(&req);
        }
        if let Some(name) = &req.server_assignor {
            if Assignor::named(name).is_none() {
                return HeartbeatReply::error(
                    UNSUPPORTED_ASSIGNOR,
                    format!("ServerAssignor {name} is not supported. Supported assignors: uniform, range."),
                );
            }
        }
        let regex = match req.subscribed_topic_regex.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(pattern) => match crate::util::re2::whole_match(pattern) {
                Ok(r) => Some(Some((pattern.to_string(), r))),
                Err(e) => {
                    return HeartbeatReply::error(
                        INVALID_REGULAR_EXPRESSION,
                        format!(
                            "SubscribedTopicRegex {pattern} is not a valid regular expression: {e}"
                        ),
                    )
                }
            },
        };
        let member_id = if req.member_epoch == JOIN_EPOCH {
            if req.subscribed_topic_names.is_none() && regex.is_none() {
                return HeartbeatReply::error(
                    INVALID_REQUEST,
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in the first request.",
                );
            }
            if req.rebalance_timeout_ms < 0 {
                return HeartbeatReply::error(
                    INVALID_REQUEST,
                    "RebalanceTimeoutMs must be provided in the first request.",
                );
            }
            let id = if req.member_id.is_empty() {
                new_member_id()
            } else {
                req.member_id.clone()
            };
            if let Err(reply) = self.admit(&id, &req) {
                return reply;
            }
            id
        } else {
            let Some(member) = self.members.get(&req.member_id) else {
                return HeartbeatReply::error(
                    UNKNOWN_MEMBER_ID,
                    format!("Member {} is not a member of the group.", req.member_id),
                );
            };
            let missed_answer = req.member_epoch == member.previous_epoch
                && req
                    .owned
                    .as_ref()
                    .is_some_and(|o| minus(o, &member.assigned).is_empty());
            if req.member_epoch != member.epoch && !missed_answer {
                return HeartbeatReply::error(
                    FENCED_MEMBER_EPOCH,
                    format!(
                        "The member epoch {} does not match the expected epoch {}.",
                        req.member_epoch, member.epoch
                    ),
                );
            }
            req.member_id.clone()
        };
        let Some(member) = self.members.get_mut(&member_id) else {
            return HeartbeatReply::error(UNKNOWN_MEMBER_ID, "member vanished");
        };
        member.last_heartbeat_ms = now_ms;
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        if req.rack_id.is_some() {
            member.rack_id = req.rack_id.clone();
        }
        if req.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        let mut changed = false;
        if let Some(names) = req.subscribed_topic_names {
            let mut names = names;
            names.sort();
            names.dedup();
            changed |= names != member.topic_names;
            member.topic_names = names;
        }
        if let Some(regex) = regex {
            let before = member.topic_regex.as_ref().map(|(p, _)| p.clone());
            changed |= before != regex.as_ref().map(|(p, _)| p.clone());
            member.topic_regex = regex;
        }
        if req.server_assignor.is_some() && req.server_assignor != member.assignor {
            member.assignor = req.server_assignor.clone();
            changed = true;
        }
        if changed {
            self.group_epoch += 1;
        }
        self.refresh_subscribed(topics);
        if self.assignment_epoch < self.group_epoch {
            self.compute_target();
        }
        let full = req.member_epoch == JOIN_EPOCH;
        let reply = self.reconcile(&member_id, req.owned.as_ref(), full, now_ms);
        tracing::debug!(member = %member_id, epoch = reply.member_epoch, group_epoch = self.group_epoch, "consumer heartbeat");
        reply
    }

    /// A joining member: a new one, a known id rejoining (its old self is dropped), or a
    /// static instance replacing its earlier incarnation.
    fn admit(&mut self, id: &str, req: &HeartbeatRequest) -> Result<(), HeartbeatReply> {
        if let Some(instance) = &req.instance_id {
            let holder = self
                .members
                .values()
                .find(|m| m.instance_id.as_deref() == Some(instance) && m.member_id != id)
                .map(|m| (m.member_id.clone(), m.epoch));
            if let Some((old, epoch)) = holder {
                if epoch != STATIC_LEAVE_EPOCH {
                    return Err(HeartbeatReply::error(
                        UNRELEASED_INSTANCE_ID,
                        format!("Static member {old} with instance id {instance} is still in the group."),
                    ));
                }
                // The instance left for now (-2) and comes back: it takes over its
                // partitions under the new member id.
                if let Some(mut member) = self.members.remove(&old) {
                    member.member_id = id.to_string();
                    member.epoch = 0;
                    member.previous_epoch = 0;
                    if let Some(target) = self.target.remove(&old) {
                        self.target.insert(id.to_string(), target);
                    }
                    self.members.insert(id.to_string(), member);
                    return Ok(());
                }
            }
        }
        if self.members.remove(id).is_some() {
            self.target.remove(id);
        }
        self.members.insert(
            id.to_string(),
            ConsumerMember {
                member_id: id.to_string(),
                instance_id: req.instance_id.clone(),
                rack_id: req.rack_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                epoch: 0,
                previous_epoch: 0,
                state: MemberState::Stable,
                topic_names: Vec::new(),
                topic_regex: None,
                assignor: None,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                assigned: Assignment::new(),
                revoking: Assignment::new(),
                last_heartbeat_ms: 0,
                revoke_deadline_ms: None,
            },
        );
        self.group_epoch += 1;
        Ok(())
    }

    fn leave(&mut self, req: &HeartbeatRequest) -> HeartbeatReply {
        let known = self.members.contains_key(&req.member_id);
        if !known {
            return HeartbeatReply::error(
                UNKNOWN_MEMBER_ID,
                format!("Member {} is not a member of the group.", req.member_id),
            );
        }
        if req.member_epoch == STATIC_LEAVE_EPOCH && req.instance_id.is_some() {
            // Kept (with its partitions) for the instance to come back within its session.
            if let Some(m) = self.members.get_mut(&req.member_id) {
                m.epoch = STATIC_LEAVE_EPOCH;
            }
        } else {
            self.remove(&req.member_id);
        }
        HeartbeatReply {
            member_id: req.member_id.clone(),
            member_epoch: req.member_epoch,
            ..Default::default()
        }
    }

    /// Removes a member; its partitions go to the others at the next heartbeats.
    pub fn remove(&mut self, member_id: &str) {
        if self.members.remove(member_id).is_some() {
            self.target.remove(member_id);
            self.group_epoch += 1;
        }
    }

    /// Recomputes the subscribed topics; a change (a topic created, grown or deleted)
    /// moves the group epoch.
    fn refresh_subscribed(&mut self, topics: &dyn TopicLookup) {
        let mut subscribed = BTreeMap::new();
        let any_regex = self.members.values().any(|m| m.topic_regex.is_some());
        let candidates: Vec<String> = if any_regex {
            topics.names()
        } else {
            self.members
                .values()
                .flat_map(|m| m.topic_names.iter().cloned())
                .collect()
        };
        for name in candidates {
            if self.members.values().any(|m| m.subscribes(&name)) {
                if let Some(meta) = topics.by_name(&name) {
                    subscribed.insert(name, meta);
                }
            }
        }
        if subscribed != self.subscribed {
            self.subscribed = subscribed;
            self.group_epoch += 1;
        }
    }

    /// The group's assignor: the one most members ask for, else `uniform`.
    fn pick_assignor(&self) -> Assignor {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .and_then(|(name, _)| Assignor::named(name))
            .unwrap_or(Assignor::Uniform)
    }

    fn compute_target(&mut self) {
        let subscriptions: BTreeMap<String, BTreeSet<Uuid>> = self
            .members
            .iter()
            .map(|(id, m)| {
                let topics = self
                    .subscribed
                    .iter()
                    .filter(|(name, _)| m.subscribes(name))
                    .map(|(_, (tid, _))| *tid)
                    .collect();
                (id.clone(), topics)
            })
            .collect();
        let partitions: BTreeMap<Uuid, i32> = self.subscribed.values().copied().collect();
        let assignor = self.pick_assignor();
        self.target = assignor.assign(&subscriptions, &partitions, &self.target);
        self.assignor = Some(assignor);
        self.assignment_epoch = self.group_epoch;
    }

    /// Partitions members other than `member_id` own or have not confirmed revoking.
    fn held_by_others(&self, member_id: &str) -> Assignment {
        let mut held = Assignment::new();
        for (id, m) in &self.members {
            if id == member_id {
                continue;
            }
            for a in [&m.assigned, &m.revoking] {
                for (t, ps) in a {
                    held.entry(*t).or_default().extend(ps.iter().copied());
                }
            }
        }
        held
    }

    /// Moves one member toward its target; the answer to its heartbeat.
    fn reconcile(
        &mut self,
        member_id: &str,
        owned: Option<&Assignment>,
        full: bool,
        now_ms: i64,
    ) -> HeartbeatReply {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let held = self.held_by_others(member_id);
        let assignment_epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(member_id) else {
            return HeartbeatReply::error(UNKNOWN_MEMBER_ID, "member vanished");
        };
        let before = m.assigned.clone();
        // A member that reports what it owns has revoked whatever it no longer lists.
        if let Some(owned) = owned {
            if !overlaps(owned, &m.revoking) {
                m.revoking.clear();
            }
        }
        let revoke = minus(&m.assigned, &target);
        if !revoke.is_empty() {
            // Revocation first: the member keeps only what stays in its target.
            for (t, ps) in &revoke {
                m.revoking.entry(*t).or_default().extend(ps.iter().copied());
            }
            m.assigned = intersect(&m.assigned, &target);
            m.state = MemberState::UnrevokedPartitions;
            m.revoke_deadline_ms
                .get_or_insert(now_ms + i64::from(m.rebalance_timeout_ms.max(0)));
        } else if m.revoking.is_empty() {
            // Nothing left to give up: the member moves to the target epoch and gets what
            // no one else still holds.
            let free = minus(&minus(&target, &m.assigned), &held);
            for (t, ps) in free {
                m.assigned.entry(t).or_default().extend(ps);
            }
            if m.epoch != assignment_epoch {
                m.previous_epoch = m.epoch;
                m.epoch = assignment_epoch;
            }
            m.revoke_deadline_ms = None;
            m.state = if count(&m.assigned) == count(&target) {
                MemberState::Stable
            } else {
                MemberState::UnreleasedPartitions
            };
        }
        let changed = m.assigned != before;
        HeartbeatReply {
            error: NONE,
            message: None,
            member_id: member_id.to_string(),
            member_epoch: m.epoch,
            assignment: (changed || full || owned.is_some_and(|o| *o != m.assigned))
                .then(|| m.assigned.clone()),
            heartbeat_interval_ms: 0,
        }
    }

    /// Removes members whose session expired or who did not revoke in time; true if any
    /// was removed.
    pub fn expire(&mut self, config: &ConsumerConfig, now_ms: i64) -> bool {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                now_ms >= m.last_heartbeat_ms + config.session_timeout_ms
                    || m.revoke_deadline_ms.is_some_and(|d| now_ms >= d)
            })
            .map(|m| m.member_id.clone())
            .collect();
        for id in &expired {
            tracing::info!(member = %id, "consumer group member expired");
            self.remove(id);
        }
        !expired.is_empty()
    }

    /// When [`ConsumerGroup::expire`] next has work.
    pub fn next_deadline_ms(&self, config: &ConsumerConfig) -> Option<i64> {
        self.members
            .values()
            .map(|m| {
                let session = m.last_heartbeat_ms + config.session_timeout_ms;
                m.revoke_deadline_ms.map_or(session, |d| d.min(session))
            })
            .min()
    }

    /// Validates an OffsetCommit of a member (KIP-848 rules): 0 or the error.
    pub fn commit_error(&self, member_id: &str, member_epoch: i32) -> i16 {
        if member_id.is_empty() && member_epoch < 0 && self.members.is_empty() {
            return NONE; // an admin commit to an empty group
        }
        let Some(m) = self.members.get(member_id) else {
            return UNKNOWN_MEMBER_ID;
        };
        match member_epoch.cmp(&m.epoch) {
            std::cmp::Ordering::Equal => NONE,
            std::cmp::Ordering::Greater => FENCED_MEMBER_EPOCH,
            std::cmp::Ordering::Less => ResponseError::StaleMemberEpoch.code(),
        }
    }
}

#[cfg(test)]
mod tests;
