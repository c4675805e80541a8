//! ConsumerGroupDescribe (key 69), v0-v1: describes KIP-848 ("consumer" protocol) groups.
//!
//! Sluice runs classic groups only. Kafka 4.x answers this API for a classic group with
//! GROUP_ID_NOT_FOUND and `"Group <id> is not a consumer group."`, and for an unknown group
//! with GROUP_ID_NOT_FOUND and `"Group <id> not found."`; Sluice answers the same, so admin
//! tools fall back to DescribeGroups exactly as they do against Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::groups::GroupState;
use crate::groups::{driver, OFFSETS};

/// `authorized_operations` when the client did not ask for them (Kafka's `Integer.MIN_VALUE`).
const OPERATIONS_OMITTED: i32 = i32::MIN;

/// Answers ConsumerGroupDescribe.
pub async fn handle(
    ctx: &Context,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let mut groups = Vec::with_capacity(request.group_ids.len());
    for group_id in &request.group_ids {
        let id = group_id.to_string();
        let (error, message) = if id.is_empty() {
            (ResponseError::InvalidGroupId.code(), None)
        } else {
            let gid = id.clone();
            let state = OFFSETS
                .route(&ctx.shard, &id, move |shard, partition| async move {
                    driver::with_coordinator(&shard, partition, move |c, _| {
                        (c.group_state(&gid), Default::default())
                    })
                    .await
                })
                .await;
            match state {
                Ok(Some(s)) if s != GroupState::Dead => (
                    ResponseError::GroupIdNotFound.code(),
                    Some(format!("Group {id} is not a consumer group.")),
                ),
                Ok(_) => (
                    ResponseError::GroupIdNotFound.code(),
                    Some(format!("Group {id} not found.")),
                ),
                Err(e) => (e.code(), None),
            }
        };
        groups.push(
            DescribedGroup::default()
                .with_group_id(group_id.clone())
                .with_error_code(error)
                .with_error_message(message.map(StrBytes::from_string))
                .with_authorized_operations(OPERATIONS_OMITTED),
        );
    }
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
