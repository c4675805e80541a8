//! InitProducerId (key 22), v0-v5, for idempotent producers: a new producer id, or (KIP-360,
//! v3+) the same id with a bumped epoch so a producer can recover from a sequence error.
//! Transactional ids need the transaction coordinator and are refused until it exists.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Context;
use crate::txn::producer_ids::next_producer_id;

/// Answers InitProducerId.
pub async fn handle(ctx: &Context, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if request
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.is_empty())
    {
        response.error_code = ResponseError::CoordinatorNotAvailable.code();
        return response;
    }
    let existing = request.producer_id.0;
    if existing >= 0 && request.producer_epoch >= 0 && request.producer_epoch < i16::MAX - 1 {
        // KIP-360: bump the epoch of a known producer; its sequences restart at 0.
        response.producer_id = ProducerId(existing);
        response.producer_epoch = request.producer_epoch + 1;
        return response;
    }
    match next_producer_id(&ctx.shard).await {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(e) => {
            tracing::warn!(error = %e.message, "allocating a producer id failed");
            response.error_code = ResponseError::CoordinatorNotAvailable.code();
        }
    }
    response
}
