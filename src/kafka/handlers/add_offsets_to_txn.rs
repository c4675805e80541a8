//! AddOffsetsToTxn (key 25), v0-v4: adds the group's `__consumer_offsets` partition to the
//! producer's transaction, so the commit (or abort) marker reaches the offsets that
//! TxnOffsetCommit will write there.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::Context;
use crate::groups::{partition_for, OFFSETS, OFFSETS_TOPIC};
use crate::txn::{driver, TRANSACTION_STATE};

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
                let outcome = TRANSACTION_STATE
                    .route(
                        &ctx.shard,
                        &id.clone(),
                        move |shard, partition| async move {
                            driver::execute(&shard, partition, |c, now| {
                                match c.add_partitions(&id, pid, epoch, &offsets, now) {
                                    Ok(effects) => (0, effects),
                                    Err(code) => (code, Default::default()),
                                }
                            })
                            .await
                        },
                    )
                    .await;
                outcome.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "AddOffsetsToTxn");
                    e.code()
                })
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
