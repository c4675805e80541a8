//! Heartbeats, LeaveGroup, and time: session expiry, pending member ids, ticks.

use super::group::Group;
use super::rebalance::{
    complete_join_after_removal, join_timer_fired, maybe_prepare_rebalance, try_complete_join,
};
use super::{
    Coordinator, Effects, GroupState, COORDINATOR_NOT_AVAILABLE, FENCED_INSTANCE_ID,
    ILLEGAL_GENERATION, NONE, REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
};

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

impl Coordinator {
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
            expire_pending_members(group, now_ms);
            expire_sessions(group, delay, now_ms, &mut fx);
            expire_pending_sync(group, delay, now_ms, &mut fx);
            if let Some(timer) = group.join_timer {
                if now_ms >= timer.deadline_ms {
                    join_timer_fired(group, timer, delay, now_ms, &mut fx);
                } else if group.state == GroupState::PreparingRebalance {
                    try_complete_join(group, now_ms, &mut fx);
                }
            }
        }
        self.expire_consumer_members(now_ms);
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
        if let Some(t) = self.next_consumer_deadline_ms() {
            consider(t);
        }
        for g in self.groups.values() {
            if let Some(timer) = g.join_timer {
                consider(timer.deadline_ms);
            }
            for expiry in g.pending_members.values() {
                consider(*expiry);
            }
            if let Some(deadline) = g.pending_sync_deadline_ms {
                consider(deadline);
            }
            for m in g.members.values() {
                if m.awaiting_join.is_none() && m.awaiting_sync.is_none() {
                    consider(m.last_heartbeat_ms + i64::from(m.session_timeout_ms));
                }
            }
        }
        next
    }
}

pub(super) fn leave_one(
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
        complete_join_after_removal(group, now_ms, fx);
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

pub(super) fn after_member_removed(
    group: &mut Group,
    delay_ms: i64,
    now_ms: i64,
    fx: &mut Effects,
) {
    match group.state {
        GroupState::Stable | GroupState::CompletingRebalance => {
            maybe_prepare_rebalance(group, delay_ms, now_ms, fx);
            complete_join_after_removal(group, now_ms, fx);
        }
        GroupState::PreparingRebalance => complete_join_after_removal(group, now_ms, fx),
        GroupState::Empty | GroupState::Dead => {}
    }
}

/// KIP-394: a member id handed out with MEMBER_ID_REQUIRED whose member never rejoined is
/// dropped after its session timeout (a rebalance waiting for it goes on without it).
fn expire_pending_members(group: &mut Group, now_ms: i64) {
    let before = group.pending_members.len();
    group.pending_members.retain(|_, expiry| *expiry > now_ms);
    let dropped = before - group.pending_members.len();
    if dropped > 0 {
        tracing::info!(group = %group.group_id, dropped, "pending members expired");
    }
}

/// Members that stopped heartbeating are removed and the group rebalances.
fn expire_sessions(group: &mut Group, delay_ms: i64, now_ms: i64, fx: &mut Effects) {
    let expired: Vec<String> = group
        .members
        .values()
        .filter(|m| m.session_expired(now_ms))
        .map(|m| m.member_id.clone())
        .collect();
    for member_id in expired {
        tracing::info!(group = %group.group_id, member = %member_id, "member session expired");
        group.remove_member(&member_id, UNKNOWN_MEMBER_ID, fx);
        after_member_removed(group, delay_ms, now_ms, fx);
    }
}

/// Kafka's pending-sync timeout: members that joined a generation but sent no SyncGroup
/// within the rebalance timeout are removed and the group rebalances.
fn expire_pending_sync(group: &mut Group, delay_ms: i64, now_ms: i64, fx: &mut Effects) {
    let Some(deadline) = group.pending_sync_deadline_ms else {
        return;
    };
    if now_ms < deadline {
        return;
    }
    if !matches!(
        group.state,
        GroupState::CompletingRebalance | GroupState::Stable
    ) {
        group.clear_pending_sync();
        return;
    }
    let late: Vec<String> = std::mem::take(&mut group.pending_sync)
        .into_iter()
        .collect();
    group.pending_sync_deadline_ms = None;
    for member_id in late {
        tracing::info!(group = %group.group_id, member = %member_id, "member did not sync in time");
        group.remove_member(&member_id, UNKNOWN_MEMBER_ID, fx);
        after_member_removed(group, delay_ms, now_ms, fx);
    }
}
