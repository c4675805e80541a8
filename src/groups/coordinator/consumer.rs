//! KIP-848 consumer groups inside the coordinator: ConsumerGroupHeartbeat, their expiry,
//! ConsumerGroupDescribe, and the conversion rules with classic groups.
//!
//! A group id is either a classic group or a consumer group. An empty group (only offsets,
//! or no members left) converts to whichever protocol joins it next, keeping its offsets
//! (Kafka's offline conversion); a group with members refuses the other protocol with
//! GROUP_ID_NOT_FOUND ("is not a consumer group" / "is not a classic group"). Online
//! conversion (classic members joining a consumer group) is not done.

use crate::groups::consumer::{
    Assignment, ConsumerGroup, HeartbeatReply, HeartbeatRequest, TopicLookup,
};

use super::group::Group;
use super::{Coordinator, GroupState, GROUP_ID_NOT_FOUND, INVALID_GROUP_ID};

/// One member, as ConsumerGroupDescribe reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberView {
    /// The member id.
    pub member_id: String,
    /// The static instance id.
    pub instance_id: Option<String>,
    /// The rack.
    pub rack_id: Option<String>,
    /// The member epoch.
    pub member_epoch: i32,
    /// The client id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Subscribed topic names.
    pub subscribed_topic_names: Vec<String>,
    /// Subscribed regex.
    pub subscribed_topic_regex: Option<String>,
    /// What it owns now.
    pub assignment: Assignment,
    /// What it is headed for.
    pub target_assignment: Assignment,
}

/// A consumer group, as ConsumerGroupDescribe reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupView {
    /// Kafka's state name.
    pub state: &'static str,
    /// The group epoch.
    pub group_epoch: i32,
    /// The epoch of the target assignment.
    pub assignment_epoch: i32,
    /// The assignor in use.
    pub assignor: &'static str,
    /// The members.
    pub members: Vec<ConsumerMemberView>,
}

/// What ConsumerGroupDescribe finds under a group id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerLookup {
    /// No such group.
    Unknown,
    /// A classic group.
    Classic,
    /// A consumer group.
    Consumer(ConsumerGroupView),
}

impl Group {
    /// Whether this is a KIP-848 consumer group.
    pub(crate) fn is_consumer(&self) -> bool {
        self.consumer.is_some()
    }

    /// Keeps the shared state (what offsets, DeleteGroups and ListGroups read) in step
    /// with the consumer group's membership.
    fn sync_consumer_state(&mut self, now_ms: i64) {
        let Some(cg) = &self.consumer else {
            return;
        };
        let want = if cg.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        if self.state != want {
            self.transition(want, now_ms);
        }
        self.protocol_type = Some("consumer".to_string());
    }

    /// The consumer-group state name for ListGroups.
    pub(crate) fn consumer_state_name(&self) -> Option<&'static str> {
        self.consumer.as_ref().map(|cg| cg.state().name())
    }
}

impl Coordinator {
    /// Handles ConsumerGroupHeartbeat for `group_id`.
    pub fn consumer_heartbeat(
        &mut self,
        group_id: &str,
        req: HeartbeatRequest,
        topics: &dyn TopicLookup,
        now_ms: i64,
    ) -> HeartbeatReply {
        let refuse = |error: i16, message: String| HeartbeatReply {
            error,
            message: Some(message),
            ..Default::default()
        };
        if group_id.is_empty() {
            return refuse(INVALID_GROUP_ID, "GroupId can't be empty.".into());
        }
        let joining = req.member_epoch == crate::groups::consumer::JOIN_EPOCH;
        match self.groups.get(group_id) {
            None if !joining => {
                return refuse(
                    super::UNKNOWN_MEMBER_ID,
                    format!("Group {group_id} has no member {}.", req.member_id),
                )
            }
            Some(g) if !g.is_consumer() && !g.members.is_empty() => {
                return refuse(
                    GROUP_ID_NOT_FOUND,
                    format!("Group {group_id} is not a consumer group."),
                )
            }
            _ => {}
        }
        let client_id = req.client_id.clone();
        let new_id = self.new_member_id(&client_id);
        let group = self
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now_ms));
        if group.consumer.is_none() {
            tracing::info!(group = %group_id, "group now runs the consumer protocol (KIP-848)");
            group.consumer = Some(ConsumerGroup::default());
            group.protocol_name = None;
            group.generation = 0;
        }
        let Some(cg) = group.consumer.as_mut() else {
            return refuse(super::COORDINATOR_NOT_AVAILABLE, "group vanished".into());
        };
        let mut reply = cg.heartbeat(req, topics, || new_id, now_ms);
        group.sync_consumer_state(now_ms);
        reply.heartbeat_interval_ms = self.config.consumer.heartbeat_interval_ms;
        reply
    }

    /// Expires silent consumer-group members (part of [`Coordinator::tick`]).
    pub(crate) fn expire_consumer_members(&mut self, now_ms: i64) {
        let config = self.config.consumer.clone();
        for group in self.groups.values_mut() {
            if let Some(cg) = group.consumer.as_mut() {
                if cg.expire(&config, now_ms) {
                    group.sync_consumer_state(now_ms);
                }
            }
        }
    }

    /// OffsetFetch v9+ by a named member of a consumer group: `None` if it may read (or the
    /// group is classic), else UNKNOWN_MEMBER_ID or STALE_MEMBER_EPOCH.
    pub fn consumer_member_error(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
    ) -> Option<i16> {
        let cg = self.groups.get(group_id)?.consumer.as_ref()?;
        match cg.members.get(member_id) {
            None => Some(super::UNKNOWN_MEMBER_ID),
            Some(m) if m.epoch != member_epoch => {
                Some(kafka_protocol::error::ResponseError::StaleMemberEpoch.code())
            }
            Some(_) => None,
        }
    }

    /// The earliest consumer-group expiry.
    pub(crate) fn next_consumer_deadline_ms(&self) -> Option<i64> {
        self.groups
            .values()
            .filter_map(|g| g.consumer.as_ref())
            .filter_map(|cg| cg.next_deadline_ms(&self.config.consumer))
            .min()
    }

    /// What ConsumerGroupDescribe reports for `group_id`.
    pub fn describe_consumer_group(&self, group_id: &str) -> ConsumerLookup {
        let Some(g) = self
            .groups
            .get(group_id)
            .filter(|g| g.state != GroupState::Dead)
        else {
            return ConsumerLookup::Unknown;
        };
        let Some(cg) = &g.consumer else {
            return ConsumerLookup::Classic;
        };
        let members = cg
            .members
            .values()
            .map(|m| ConsumerMemberView {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                member_epoch: m.epoch,
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed_topic_names: m.topic_names.clone(),
                subscribed_topic_regex: m.topic_regex.as_ref().map(|(p, _)| p.clone()),
                assignment: m.assigned.clone(),
                target_assignment: cg.target.get(&m.member_id).cloned().unwrap_or_default(),
            })
            .collect();
        ConsumerLookup::Consumer(ConsumerGroupView {
            state: cg.state().name(),
            group_epoch: cg.group_epoch,
            assignment_epoch: cg.assignment_epoch,
            assignor: cg.assignor.map_or("uniform", |a| a.name()),
            members,
        })
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::groups::coordinator::CoordinatorConfig;

    struct One;

    impl TopicLookup for One {
        fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
            (name == "t").then_some((Uuid::from_u128(7), 2))
        }
        fn names(&self) -> Vec<String> {
            vec!["t".into()]
        }
    }

    fn join(member: &str) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: member.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec!["t".into()]),
            ..Default::default()
        }
    }

    /// A classic consumer's JoinGroup for group "g".
    fn classic_join(c: &mut Coordinator, token: u64, now: i64) -> Vec<i16> {
        let fx = c.join(
            token,
            crate::groups::coordinator::JoinRequest {
                group_id: "g".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 10_000,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), bytes::Bytes::new())],
                ..Default::default()
            },
            now,
        );
        fx.completions
            .iter()
            .filter_map(|(_, r)| match r {
                crate::groups::coordinator::Completion::Join(j) => Some(j.error),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn protocols_convert_only_through_an_empty_group_and_members_are_checked() {
        let mut c = Coordinator::new(CoordinatorConfig::default(), 1);
        let reply = c.consumer_heartbeat("g", join("m1"), &One, 0);
        assert_eq!(reply.error, 0);
        assert_eq!(reply.heartbeat_interval_ms, 5_000);
        let epoch = reply.member_epoch;
        // Offsets are read by members at their epoch.
        assert_eq!(c.consumer_member_error("g", "m1", epoch), None);
        assert_eq!(
            c.consumer_member_error("g", "m1", epoch - 1),
            Some(kafka_protocol::error::ResponseError::StaleMemberEpoch.code())
        );
        assert_eq!(
            c.consumer_member_error("g", "nobody", epoch),
            Some(super::super::UNKNOWN_MEMBER_ID)
        );
        assert_eq!(c.list(&[])[0].group_type, "consumer");
        assert!(!c.describe("g").classic);
        match c.describe_consumer_group("g") {
            ConsumerLookup::Consumer(v) => {
                assert_eq!(v.members.len(), 1);
                assert_eq!(
                    v.members[0]
                        .assignment
                        .values()
                        .map(|p| p.len())
                        .sum::<usize>(),
                    2
                );
            }
            other => panic!("{other:?}"),
        }
        // A classic JoinGroup cannot take a group with consumer members...
        assert_eq!(classic_join(&mut c, 1, 1), vec![GROUP_ID_NOT_FOUND]);
        // ...but once the last member leaves, the group is empty and converts back.
        let leave = HeartbeatRequest {
            member_id: "m1".into(),
            member_epoch: -1,
            ..Default::default()
        };
        assert_eq!(c.consumer_heartbeat("g", leave, &One, 2).error, 0);
        assert_eq!(c.group_state("g"), Some(GroupState::Empty));
        assert!(!classic_join(&mut c, 2, 3).contains(&GROUP_ID_NOT_FOUND));
        assert!(c.describe("g").classic);
    }
}
