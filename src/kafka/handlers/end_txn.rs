//! EndTxn (key 26), v0-v5: commits or aborts the producer's transaction. The coordinator
//! makes the decision durable (PrepareCommit/PrepareAbort), writes the markers to every
//! partition of the transaction through their owner shards, records the completion, then
//! answers.
//!
//! v5 is transactions v2 (KIP-890 part 2): every EndTxn bumps the producer epoch and the
//! answer carries the producer id and epoch to use next (a new producer id once the epoch
//! runs out, allocated here when the coordinator asks for one).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use super::Context;
use crate::cluster::producer_ids::next_producer_id;
use crate::txn::coordinator::{EndRequest, EndStep};
use crate::txn::{driver, TRANSACTION_STATE};

/// First version where every EndTxn bumps the epoch (transactions v2).
const EPOCH_BUMP_VERSION: i16 = 5;

/// Answers EndTxn.
pub async fn handle(ctx: &Context, request: EndTxnRequest) -> EndTxnResponse {
    let id = request.transactional_id.to_string();
    let (pid, epoch, commit) = (
        request.producer_id.0,
        request.producer_epoch,
        request.committed,
    );
    let v2 = ctx.version >= EPOCH_BUMP_VERSION;
    let outcome = if id.is_empty() {
        Err(ResponseError::InvalidRequest.code())
    } else {
        let routed = TRANSACTION_STATE
            .route(
                &ctx.shard,
                &id.clone(),
                move |shard, partition| async move {
                    let mut fresh = None;
                    // At most two rounds: the second with the producer id the first asked for.
                    for _ in 0..2 {
                        let step = driver::execute(&shard, partition, |c, now| {
                            let request = EndRequest {
                                transactional_id: &id,
                                producer_id: pid,
                                producer_epoch: epoch,
                                commit,
                                v2,
                            };
                            match c.end_txn(&request, fresh, now) {
                                EndStep::Done {
                                    producer_id,
                                    producer_epoch,
                                    effects,
                                } => (Ok(Some((producer_id, producer_epoch))), effects),
                                EndStep::NeedProducerId => (Ok(None), Default::default()),
                                EndStep::Error(code) => (Err(code), Default::default()),
                            }
                        })
                        .await?;
                        match step {
                            Ok(Some(answer)) => return Ok(Ok(answer)),
                            Err(code) => return Ok(Err(code)),
                            Ok(None) => match next_producer_id(&shard).await {
                                Ok(pid) => fresh = Some(pid),
                                Err(e) => {
                                    tracing::warn!(error = %e.message, "allocating a producer id failed");
                                    return Ok(Err(ResponseError::CoordinatorNotAvailable.code()));
                                }
                            },
                        }
                    }
                    Ok(Err(ResponseError::ConcurrentTransactions.code()))
                },
            )
            .await;
        routed.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "EndTxn");
            Err(e.code())
        })
    };
    let mut response = EndTxnResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    match outcome {
        Ok((producer_id, producer_epoch)) => {
            response.producer_id = ProducerId(producer_id);
            response.producer_epoch = producer_epoch;
        }
        Err(code) => {
            response.error_code = if code == ResponseError::ProducerFenced.code() && ctx.version < 2
            {
                ResponseError::InvalidProducerEpoch.code()
            } else {
                code
            };
        }
    }
    response
}
