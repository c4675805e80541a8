//! FindCoordinator (key 10), v0-v6: where a group's coordinator runs (batched keys v4+).
//!
//! Group coordinators live on this node (every partition of `__consumer_offsets` is led
//! here); looking one up creates `__consumer_offsets` on first use, as Kafka does.
//! Transaction coordinators (key type 1) live on this node too; looking one up creates
//! `__transaction_state` on first use.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::groups::OFFSETS;
use crate::txn::TRANSACTION_STATE;

/// Key type of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// Key type of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Answers FindCoordinator.
pub async fn handle(ctx: &Context, request: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let keys: Vec<StrBytes> = if ctx.version >= 4 {
        request.coordinator_keys.clone()
    } else {
        vec![request.key.clone()]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        coordinators.push(find_one(ctx, request.key_type, key).await);
    }
    if ctx.version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let Some(c) = coordinators.pop() else {
        return FindCoordinatorResponse::default();
    };
    let mut response = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if ctx.version >= 1 {
        response.error_message = c.error_message;
    }
    response
}

async fn find_one(ctx: &Context, key_type: i8, key: StrBytes) -> Coordinator {
    let failed = |error: ResponseError, message: String| {
        Coordinator::default()
            .with_key(key.clone())
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::from_static_str(""))
            .with_port(-1)
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    match key_type {
        KEY_TYPE_GROUP => {}
        KEY_TYPE_TRANSACTION => {
            if key.is_empty() {
                return failed(
                    ResponseError::InvalidRequest,
                    "empty transactional id".into(),
                );
            }
            if let Err(e) = TRANSACTION_STATE.locate(&ctx.shard, key.as_str()).await {
                tracing::warn!(error = %e, "FindCoordinator (transaction)");
                return failed(
                    ResponseError::try_from_code(e.code())
                        .unwrap_or(ResponseError::CoordinatorNotAvailable),
                    e.to_string(),
                );
            }
            return here(ctx, key);
        }
        other => {
            return failed(
                ResponseError::InvalidRequest,
                format!("unknown key type {other}"),
            )
        }
    }
    if key.is_empty() {
        return failed(ResponseError::InvalidRequest, "empty group id".into());
    }
    if let Err(e) = OFFSETS.locate(&ctx.shard, key.as_str()).await {
        tracing::warn!(error = %e, "FindCoordinator");
        return Coordinator::default()
            .with_key(key)
            .with_node_id(BrokerId(-1))
            .with_port(-1)
            .with_error_code(e.code())
            .with_error_message(Some(StrBytes::from_string(e.to_string())));
    }
    here(ctx, key)
}

/// This node as the coordinator of `key`.
fn here(ctx: &Context, key: StrBytes) -> Coordinator {
    let config = &ctx.shard.config;
    Coordinator::default()
        .with_key(key)
        .with_node_id(BrokerId(config.node_id))
        .with_host(StrBytes::from_string(config.advertised_host.clone()))
        .with_port(i32::from(config.advertised_port))
}
