//! SyncGroup (key 14), v0-v5: the leader hands out assignments; everyone receives theirs.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::groups::coordinator::{Completion, SyncReply, SyncRequest};
use crate::groups::{driver, OFFSETS};

/// Answers SyncGroup (after the leader's assignment arrives, for followers).
pub async fn handle(ctx: &Context, request: SyncGroupRequest) -> SyncGroupResponse {
    let v = ctx.version;
    let group_id = request.group_id.to_string();
    let sync = SyncRequest {
        group_id: group_id.clone(),
        generation_id: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: if v >= 3 {
            request.group_instance_id.as_ref().map(|i| i.to_string())
        } else {
            None
        },
        protocol_type: if v >= 5 {
            request.protocol_type.as_ref().map(|p| p.to_string())
        } else {
            None
        },
        protocol_name: if v >= 5 {
            request.protocol_name.as_ref().map(|p| p.to_string())
        } else {
            None
        },
        assignments: request
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let outcome = OFFSETS
        .route(&ctx.shard, &group_id, move |shard, partition| async move {
            driver::deferred(&shard, partition, move |c, token, now| {
                c.sync(token, sync, now)
            })
            .await
        })
        .await;
    let reply = match outcome {
        Ok(Completion::Sync(reply)) => reply,
        Ok(Completion::Join(_)) => {
            tracing::error!("SyncGroup completed with a JoinGroup answer");
            SyncReply {
                error: kafka_protocol::error::ResponseError::UnknownServerError.code(),
                ..SyncReply::default()
            }
        }
        Err(e) => SyncReply {
            error: e.code(),
            ..SyncReply::default()
        },
    };
    let mut response = SyncGroupResponse::default()
        .with_error_code(reply.error)
        .with_assignment(reply.assignment);
    if v >= 5 {
        response.protocol_type = reply.protocol_type.map(StrBytes::from_string);
        response.protocol_name = reply.protocol_name.map(StrBytes::from_string);
    }
    response
}
