//! The join barrier: preparing a rebalance, its timer, and completing the join.

use bytes::Bytes;

use super::group::{Group, JoinTimer};
use super::sync::SyncReply;
use super::{Completion, Effects, GroupState, Token, REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID};

/// Starts a rebalance from Empty, Stable or CompletingRebalance.
pub(super) fn maybe_prepare_rebalance(
    group: &mut Group,
    delay_ms: i64,
    now_ms: i64,
    fx: &mut Effects,
) {
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
    group.clear_pending_sync();
    group.transition(GroupState::PreparingRebalance, now_ms);
    tracing::info!(group = %group.group_id, generation = group.generation, members = group.members.len(), "preparing to rebalance");
}

pub(super) fn join_timer_fired(
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

/// Ends the join barrier once the members still in the group have all joined, even during
/// the initial delay: Kafka 4's rule after a member is removed. A group whose last member
/// left becomes Empty at once, so DeleteGroups right after its consumers closed succeeds
/// (it answered NON_EMPTY_GROUP until the initial delay ran out).
pub(super) fn complete_join_after_removal(group: &mut Group, now_ms: i64, fx: &mut Effects) {
    if group.state == GroupState::PreparingRebalance && group.all_members_joined() {
        complete_join(group, now_ms, fx);
    }
}

/// Ends the join barrier early when every member has rejoined (not during the initial delay).
pub(super) fn try_complete_join(group: &mut Group, now_ms: i64, fx: &mut Effects) {
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
pub(super) fn complete_join(group: &mut Group, now_ms: i64, fx: &mut Effects) {
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
    group.await_sync(now_ms);
}
