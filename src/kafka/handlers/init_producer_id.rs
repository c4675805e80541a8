//! InitProducerId (key 22), v0-v5. Without a transactional id: a new producer id for an
//! idempotent producer, or (KIP-360, v3+) the same id with a bumped epoch. With one: the
//! transaction coordinator of that id answers (bumping the epoch fences older producers of
//! the id and aborts their open transaction first).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Context;
use crate::cluster::producer_ids::next_producer_id;
use crate::txn::coordinator::InitStep;
use crate::txn::{driver, TRANSACTION_STATE};

/// InitProducerId rounds at most one request makes: a fence (abort first), an id
/// allocation, the final answer.
const INIT_ROUNDS_MAX: usize = 4;

/// Answers InitProducerId.
pub async fn handle(ctx: &Context, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let existing = request.producer_id.0;
    let expected = (ctx.version >= 3 && existing >= 0 && request.producer_epoch >= 0)
        .then_some((existing, request.producer_epoch));
    if let Some(id) = request
        .transactional_id
        .as_ref()
        .filter(|t| !t.is_empty())
        .map(|t| t.to_string())
    {
        match transactional(ctx, id, request.transaction_timeout_ms, expected).await {
            Ok((pid, epoch)) => {
                response.producer_id = ProducerId(pid);
                response.producer_epoch = epoch;
            }
            Err(code) => {
                // KIP-588: clients before v4 know PRODUCER_FENCED as INVALID_PRODUCER_EPOCH.
                response.error_code =
                    if code == ResponseError::ProducerFenced.code() && ctx.version < 4 {
                        ResponseError::InvalidProducerEpoch.code()
                    } else {
                        code
                    };
            }
        }
        return response;
    }
    if let Some((pid, epoch)) = expected.filter(|(_, e)| *e < i16::MAX - 1) {
        // KIP-360: bump the epoch of a known producer; its sequences restart at 0.
        response.producer_id = ProducerId(pid);
        response.producer_epoch = epoch + 1;
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

/// What one round on the coordinator decided.
enum Round {
    Answer(i64, i16),
    Again,
    NeedId,
    Error(i16),
}

/// Runs InitProducerId on the coordinator of `id`: (producer id, epoch) or an error code.
async fn transactional(
    ctx: &Context,
    id: String,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
) -> Result<(i64, i16), i16> {
    let routed = TRANSACTION_STATE.route(
        &ctx.shard,
        &id.clone(),
        move |shard, partition| async move {
            let mut expected = expected;
            let mut fresh: Option<i64> = None;
            for _ in 0..INIT_ROUNDS_MAX {
                let round = driver::execute(&shard, partition, |c, now| {
                    let step = match fresh.take() {
                        Some(pid) => c.init_with_new_id(&id, pid, timeout_ms, now),
                        None => c.init_producer_id(&id, timeout_ms, expected, now),
                    };
                    match step {
                        InitStep::Done {
                            producer_id,
                            producer_epoch,
                            effects,
                        } => (Round::Answer(producer_id, producer_epoch), effects),
                        InitStep::AbortFirst(effects) => (Round::Again, effects),
                        InitStep::NeedProducerId => (Round::NeedId, Default::default()),
                        InitStep::Error(code) => (Round::Error(code), Default::default()),
                    }
                })
                .await?;
                match round {
                    Round::Answer(pid, epoch) => return Ok(Ok((pid, epoch))),
                    Round::Error(code) => return Ok(Err(code)),
                    // The fenced transaction is aborted; the caller was checked already.
                    Round::Again => expected = None,
                    Round::NeedId => match next_producer_id(&shard).await {
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
    match routed {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!(error = %e, "InitProducerId");
            Err(e.code())
        }
    }
}
