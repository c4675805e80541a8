//! DescribeGroups (key 15), v0-v6: state, protocol, members and assignments of groups.
//! From v6 (KIP-1043) a group that does not exist is GROUP_ID_NOT_FOUND with Kafka's
//! message; before, it is described in state Dead, as Kafka does.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::groups::coordinator::GroupDescription;
use crate::groups::{driver, OFFSETS};

fn s(text: String) -> StrBytes {
    StrBytes::from_string(text)
}

/// Answers DescribeGroups.
pub async fn handle(ctx: &Context, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(request.groups.len());
    for group_id in &request.groups {
        let id = group_id.to_string();
        let gid = id.clone();
        let outcome = OFFSETS
            .route(&ctx.shard, &id, move |shard, partition| async move {
                driver::with_coordinator(&shard, partition, move |c, _| {
                    (c.describe(&gid), Default::default())
                })
                .await
            })
            .await;
        let described = match outcome {
            Ok(d) => encode(ctx.version, d),
            Err(e) => DescribedGroup::default()
                .with_group_id(group_id.clone())
                .with_error_code(e.code())
                .with_group_state(StrBytes::from_static_str("")),
        };
        groups.push(described);
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

fn encode(version: i16, d: GroupDescription) -> DescribedGroup {
    if version >= 6 && !d.classic {
        return DescribedGroup::default()
            .with_group_id(kafka_protocol::messages::GroupId(s(d.group_id.clone())))
            .with_error_code(ResponseError::GroupIdNotFound.code())
            .with_error_message(Some(s(format!(
                "Group {} is not a classic group.",
                d.group_id
            ))))
            .with_group_state(StrBytes::from_static_str(""));
    }
    if version >= 6 && d.state == "Dead" {
        return DescribedGroup::default()
            .with_group_id(kafka_protocol::messages::GroupId(s(d.group_id.clone())))
            .with_error_code(ResponseError::GroupIdNotFound.code())
            .with_error_message(Some(s(format!("Group {} not found.", d.group_id))))
            .with_group_state(StrBytes::from_static_str(""));
    }
    let members = d
        .members
        .into_iter()
        .map(|m| {
            let mut member = DescribedGroupMember::default()
                .with_member_id(s(m.member_id))
                .with_client_id(s(m.client_id))
                .with_client_host(s(m.client_host))
                .with_member_metadata(m.metadata)
                .with_member_assignment(m.assignment);
            if version >= 4 {
                member.group_instance_id = m.group_instance_id.map(s);
            }
            member
        })
        .collect();
    DescribedGroup::default()
        .with_group_id(kafka_protocol::messages::GroupId(s(d.group_id)))
        .with_group_state(StrBytes::from_static_str(d.state))
        .with_protocol_type(s(d.protocol_type))
        .with_protocol_data(s(d.protocol))
        .with_members(members)
}
