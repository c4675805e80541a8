//! LeaveGroup (key 13), v0-v5: members leave at once instead of timing out (v3+ batched).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::groups::coordinator::{LeaveReply, LeavingMember};
use crate::groups::{driver, OFFSETS};

/// Answers LeaveGroup.
pub async fn handle(ctx: &Context, request: LeaveGroupRequest) -> LeaveGroupResponse {
    let v = ctx.version;
    let group_id = request.group_id.to_string();
    let leaving: Vec<LeavingMember> = if v >= 3 {
        request
            .members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: request.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let gid = group_id.clone();
    let outcome = OFFSETS
        .route(&ctx.shard, &group_id, move |shard, partition| async move {
            driver::with_coordinator(&shard, partition, move |c, now| {
                c.leave(&gid, &leaving, now)
            })
            .await
        })
        .await;
    let reply = match outcome {
        Ok(reply) => reply,
        Err(e) => LeaveReply {
            error: e.code(),
            members: Vec::new(),
        },
    };
    if v < 3 {
        let member_error = reply.members.first().map(|(_, _, e)| *e).unwrap_or(0);
        let error = if reply.error != 0 {
            reply.error
        } else {
            member_error
        };
        return LeaveGroupResponse::default().with_error_code(error);
    }
    let members = reply
        .members
        .into_iter()
        .map(|(member_id, instance, error)| {
            MemberResponse::default()
                .with_member_id(StrBytes::from_string(member_id))
                .with_group_instance_id(instance.map(StrBytes::from_string))
                .with_error_code(error)
        })
        .collect();
    LeaveGroupResponse::default()
        .with_error_code(reply.error)
        .with_members(members)
}
