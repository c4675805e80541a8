//! ConsumerGroupDescribe (key 69), v0-v1: describes KIP-848 ("consumer" protocol) groups:
//! state, group and assignment epochs, assignor, and per member its epoch, subscription,
//! current and target assignment (topics named by id and name).
//!
//! As Kafka 4.x does, a classic group answers GROUP_ID_NOT_FOUND with `"Group <id> is not a
//! consumer group."` and an unknown group GROUP_ID_NOT_FOUND with `"Group <id> not found."`,
//! so admin tools fall back to DescribeGroups for classic groups.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::cluster::MetadataImage;
use crate::groups::consumer::Assignment as Partitions;
use crate::groups::coordinator::{ConsumerGroupView, ConsumerLookup};
use crate::groups::{driver, OFFSETS};

/// `authorized_operations` when the client did not ask for them (Kafka's `Integer.MIN_VALUE`).
const OPERATIONS_OMITTED: i32 = i32::MIN;

/// `member_type` (v1) of a member that speaks the consumer protocol.
const MEMBER_TYPE_CONSUMER: i8 = 1;

/// Answers ConsumerGroupDescribe.
pub async fn handle(
    ctx: &Context,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let image = ctx.shard.image();
    let mut groups = Vec::with_capacity(request.group_ids.len());
    for group_id in &request.group_ids {
        let id = group_id.to_string();
        let base = DescribedGroup::default()
            .with_group_id(group_id.clone())
            .with_authorized_operations(OPERATIONS_OMITTED);
        let refuse = |code: i16, message: Option<String>| {
            base.clone()
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string))
        };
        if id.is_empty() {
            groups.push(refuse(ResponseError::InvalidGroupId.code(), None));
            continue;
        }
        let gid = id.clone();
        let found = OFFSETS
            .route(&ctx.shard, &id, move |shard, partition| async move {
                driver::with_coordinator(&shard, partition, move |c, _| {
                    (c.describe_consumer_group(&gid), Default::default())
                })
                .await
            })
            .await;
        groups.push(match found {
            Ok(ConsumerLookup::Consumer(view)) => describe(base, view, &image),
            Ok(ConsumerLookup::Classic) => refuse(
                ResponseError::GroupIdNotFound.code(),
                Some(format!("Group {id} is not a consumer group.")),
            ),
            Ok(ConsumerLookup::Unknown) => refuse(
                ResponseError::GroupIdNotFound.code(),
                Some(format!("Group {id} not found.")),
            ),
            Err(e) => refuse(e.code(), None),
        });
    }
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

fn describe(
    base: DescribedGroup,
    view: ConsumerGroupView,
    image: &MetadataImage,
) -> DescribedGroup {
    let assignment = |a: Partitions| {
        Assignment::default().with_topic_partitions(
            a.into_iter()
                .map(|(topic_id, ps)| {
                    let name = image
                        .topic_by_id(&topic_id)
                        .map(|t| t.name.clone())
                        .unwrap_or_default();
                    TopicPartitions::default()
                        .with_topic_id(topic_id)
                        .with_topic_name(TopicName(StrBytes::from_string(name)))
                        .with_partitions(ps.into_iter().collect())
                })
                .collect(),
        )
    };
    let members = view
        .members
        .into_iter()
        .map(|m| {
            Member::default()
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_instance_id(m.instance_id.map(StrBytes::from_string))
                .with_rack_id(m.rack_id.map(StrBytes::from_string))
                .with_member_epoch(m.member_epoch)
                .with_client_id(StrBytes::from_string(m.client_id))
                .with_client_host(StrBytes::from_string(m.client_host))
                .with_subscribed_topic_names(
                    m.subscribed_topic_names
                        .into_iter()
                        .map(|n| TopicName(StrBytes::from_string(n)))
                        .collect(),
                )
                .with_subscribed_topic_regex(m.subscribed_topic_regex.map(StrBytes::from_string))
                .with_assignment(assignment(m.assignment))
                .with_target_assignment(assignment(m.target_assignment))
                .with_member_type(MEMBER_TYPE_CONSUMER)
        })
        .collect();
    base.with_group_state(StrBytes::from_static_str(view.state))
        .with_group_epoch(view.group_epoch)
        .with_assignment_epoch(view.assignment_epoch)
        .with_assignor_name(StrBytes::from_static_str(view.assignor))
        .with_members(members)
}
