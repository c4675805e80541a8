//! JoinGroup (key 11), v0-v9: enter a group and wait for the join barrier.
//!
//! v4+ asks new dynamic members to rejoin with the id they are given (KIP-394), v5+ carries
//! static instance ids (KIP-345), v9 can tell a rejoining static leader to skip the
//! assignment (KIP-814). The answer comes when the coordinator completes the barrier.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::groups::coordinator::{Completion, JoinReply, JoinRequest};
use crate::groups::{driver, OFFSETS};

fn s(text: String) -> StrBytes {
    StrBytes::from_string(text)
}

/// Answers JoinGroup.
pub async fn handle(ctx: &Context, request: JoinGroupRequest) -> JoinGroupResponse {
    let v = ctx.version;
    let group_id = request.group_id.to_string();
    let join = JoinRequest {
        group_id: group_id.clone(),
        member_id: request.member_id.to_string(),
        group_instance_id: if v >= 5 {
            request.group_instance_id.as_ref().map(|i| i.to_string())
        } else {
            None
        },
        client_id: ctx.client_id.clone(),
        client_host: String::new(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if v >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: v >= 4,
        supports_skip_assignment: v >= 9,
    };
    let outcome = OFFSETS
        .route(&ctx.shard, &group_id, move |shard, partition| async move {
            driver::deferred(&shard, partition, move |c, token, now| {
                c.join(token, join, now)
            })
            .await
        })
        .await;
    let reply = match outcome {
        Ok(Completion::Join(reply)) => reply,
        Ok(Completion::Sync(_)) => {
            tracing::error!("JoinGroup completed with a SyncGroup answer");
            JoinReply {
                error: kafka_protocol::error::ResponseError::UnknownServerError.code(),
                generation_id: -1,
                ..JoinReply::default()
            }
        }
        Err(e) => JoinReply {
            error: e.code(),
            generation_id: -1,
            member_id: request.member_id.to_string(),
            ..JoinReply::default()
        },
    };
    encode(v, reply)
}

fn encode(v: i16, reply: JoinReply) -> JoinGroupResponse {
    let members = reply
        .members
        .into_iter()
        .map(|m| {
            let mut member = JoinGroupResponseMember::default()
                .with_member_id(s(m.member_id))
                .with_metadata(m.metadata);
            if v >= 5 {
                member.group_instance_id = m.group_instance_id.map(s);
            }
            member
        })
        .collect();
    let mut response = JoinGroupResponse::default()
        .with_error_code(reply.error)
        .with_generation_id(reply.generation_id)
        .with_leader(s(reply.leader))
        .with_member_id(s(reply.member_id))
        .with_members(members);
    if v >= 7 {
        response.protocol_type = reply.protocol_type.map(s);
        response.protocol_name = reply.protocol_name.map(s);
    } else {
        response.protocol_name = Some(s(reply.protocol_name.unwrap_or_default()));
    }
    if v >= 9 {
        response.skip_assignment = reply.skip_assignment;
    }
    response
}
