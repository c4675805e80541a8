//! EndTxn (key 26), v0-v4: commits or aborts the producer's transaction. The coordinator
//! makes the decision durable (PrepareCommit/PrepareAbort), writes the markers to every
//! partition of the transaction through their owner shards, records the completion, then
//! answers. v5 (transactions v2, an epoch bump per transaction) is not advertised.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::Context;
use crate::txn::{driver, TRANSACTION_STATE};

/// Answers EndTxn.
pub async fn handle(ctx: &Context, request: EndTxnRequest) -> EndTxnResponse {
    let id = request.transactional_id.to_string();
    let (pid, epoch, commit) = (
        request.producer_id.0,
        request.producer_epoch,
        request.committed,
    );
    let code = if id.is_empty() {
        ResponseError::InvalidRequest.code()
    } else {
        let outcome = TRANSACTION_STATE
            .route(
                &ctx.shard,
                &id.clone(),
                move |shard, partition| async move {
                    driver::execute(&shard, partition, |c, now| {
                        match c.end_txn(&id, pid, epoch, commit, now) {
                            Ok(effects) => (0, effects),
                            Err(code) => (code, Default::default()),
                        }
                    })
                    .await
                },
            )
            .await;
        outcome.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "EndTxn");
            e.code()
        })
    };
    let code = if code == ResponseError::ProducerFenced.code() && ctx.version < 2 {
        ResponseError::InvalidProducerEpoch.code()
    } else {
        code
    };
    EndTxnResponse::default().with_error_code(code)
}
