//! AddOffsetsToTxn (key 25), v0-v4: adds the group's `__consumer_offsets` partition to the
//! producer's transaction, so the commit (or abort) marker reaches the offsets that
//! TxnOffsetCommit will write there.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::Context;
use crate::groups::{partition_for, OFFSETS, OFFSETS_TOPIC};
use crate::txn::driver;

/// Answers AddOffsetsToTxn.
pub async fn handle(ctx: &Context, request: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let id = request.transactional_id.to_string();
    let group = request.group_id.to_string();
    let code = if id.is_empty() || group.is_empty() {
        ResponseError::InvalidRequest.code()
    } else {
        match OFFSETS.ensure(&ctx.shard).await {
            Err(e) => e.code(),
            Ok(partitions) => {
                let offsets = vec![(OFFSETS_TOPIC.to_string(), partition_for(&group, partitions))];
                let (pid, epoch) = (request.producer_id.0, request.producer_epoch);
                driver::add_to_transaction(&ctx.shard, id, pid, epoch, offsets, 0).await
            }
        }
    };
    let code = if code == ResponseError::ProducerFenced.code() && ctx.version < 2 {
        ResponseError::InvalidProducerEpoch.code()
    } else {
        code
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}
