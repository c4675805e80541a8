//! Rebuilding the coordinator from the records of its `__consumer_offsets` partition.

use super::group::{Group, Member};
use super::{Coordinator, GroupState};
use crate::groups::records::{
    decode_group_value, decode_key, decode_offset_value_with_expiry, GroupValue, RecordError,
    RecordKey,
};

impl Coordinator {
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
            } => self.replay_offset(group, topic, partition, value, now_ms),
            RecordKey::Group { group } => self.replay_group(group, value, now_ms),
        }
    }

    fn replay_offset(
        &mut self,
        group: String,
        topic: String,
        partition: i32,
        value: Option<&[u8]>,
        now_ms: i64,
    ) -> Result<(), RecordError> {
        match value {
            Some(v) => {
                let (offset, expiry) = decode_offset_value_with_expiry(v)?;
                let g = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group, now_ms));
                let key = (topic, partition);
                match expiry {
                    Some(at) => g.offset_expiry.insert(key.clone(), at),
                    None => g.offset_expiry.remove(&key),
                };
                g.offsets.insert(key, offset);
            }
            None => {
                if let Some(g) = self.groups.get_mut(&group) {
                    g.remove_offset(&topic, partition);
                    if g.offsets.is_empty()
                        && g.pending_offsets.is_empty()
                        && g.protocol_type.is_none()
                    {
                        self.groups.remove(&group);
                    }
                }
            }
        }
        Ok(())
    }

    fn replay_group(
        &mut self,
        group: String,
        value: Option<&[u8]>,
        now_ms: i64,
    ) -> Result<(), RecordError> {
        match value {
            Some(v) => {
                let value = decode_group_value(v)?;
                let g = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group, now_ms));
                restore_group(g, value, now_ms);
            }
            None => {
                // The group's metadata is gone; its offsets (if any) stay, offsets-only.
                if let Some(old) = self.groups.remove(&group) {
                    if !old.offsets.is_empty() {
                        let mut g = Group::new(&group, now_ms);
                        g.offsets = old.offsets;
                        g.offset_expiry = old.offset_expiry;
                        self.groups.insert(group, g);
                    }
                }
            }
        }
        Ok(())
    }
}

pub(super) fn restore_group(g: &mut Group, v: GroupValue, now_ms: i64) {
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
    g.clear_pending_sync();
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
