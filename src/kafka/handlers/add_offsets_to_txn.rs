//! AddOffsetsToTxn (key 25), v0-v4: adds the group's `__consumer_offsets` partition to the
//! producer's transaction, so the commit (or abort) marker reaches the offsets that
//! TxnOffsetCommit will write there.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::Context;
use crate::groups::{partition_for, OFFSETS, OFFSETS_TOPIC};
use crate::txn::driver;

/// Adds `group`'s `__consumer_offsets` partition to the transaction (this API, and
/// TxnOffsetCommit v5 for transactions-v2 producers): 0 or the Kafka error code.
pub(super) async fn add_offsets_partition(
    ctx: &Context,
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    group: &str,
    client_version: i16,
) -> i16 {
    match OFFSETS.ensure(&ctx.shard).await {
        Err(e) => e.code(),
        Ok(partitions) => {
            let offsets = vec![(OFFSETS_TOPIC.to_string(), partition_for(group, partitions))];
            driver::add_to_transaction(
                &ctx.shard,
                transactional_id,
                producer_id,
                producer_epoch,
                offsets,
                client_version,
            )
            .await
        }
    }
}

/// Answers AddOffsetsToTxn.
pub async fn handle(ctx: &Context, request: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let id = request.transactional_id.to_string();
    let group = request.group_id.to_string();
    let code = if id.is_empty() || group.is_empty() {
        ResponseError::InvalidRequest.code()
    } else {
        let (pid, epoch) = (request.producer_id.0, request.producer_epoch);
        add_offsets_partition(ctx, id, pid, epoch, &group, 0).await
    };
    let code = if code == ResponseError::ProducerFenced.code() && ctx.version < 2 {
        ResponseError::InvalidProducerEpoch.code()
    } else {
        code
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}
