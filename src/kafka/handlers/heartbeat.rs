//! Heartbeat (key 12), v0-v4: keeps a member's session alive and tells it to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::Context;
use crate::groups::driver;
use crate::groups::{coordinator, OFFSETS};

/// Answers Heartbeat.
pub async fn handle(ctx: &Context, request: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = request.group_id.to_string();
    let beat = coordinator::HeartbeatRequest {
        group_id: group_id.clone(),
        generation_id: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: if ctx.version >= 3 {
            request.group_instance_id.as_ref().map(|i| i.to_string())
        } else {
            None
        },
    };
    let outcome = OFFSETS
        .route(&ctx.shard, &group_id, move |shard, partition| async move {
            driver::with_coordinator(&shard, partition, move |c, now| {
                (c.heartbeat(&beat, now), Default::default())
            })
            .await
        })
        .await;
    let error = outcome.unwrap_or_else(|e| e.code());
    HeartbeatResponse::default().with_error_code(error)
}
