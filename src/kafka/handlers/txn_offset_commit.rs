//! TxnOffsetCommit (key 28), v0-v5: consumed offsets as part of a transaction
//! (`send_offsets_to_transaction`). The transaction coordinator checks the producer (its
//! epoch, an open transaction); the group coordinator's shard appends the offsets to the
//! group's `__consumer_offsets` partition as a transactional batch of the producer. They
//! become visible to OffsetFetch only when the commit marker reaches that partition
//! (`txn::markers`), and never if the transaction aborts. From v5 (transactions v2) the
//! request itself adds the group's offsets partition to the transaction.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::Context;
use crate::groups::records::{offset_key, offset_value, GroupRecord, OffsetValue};
use crate::groups::{driver as groups, Effects, OFFSETS};
use crate::txn::coordinator::TRANSACTION_VERSION_2;
use crate::txn::{driver, markers, TRANSACTION_STATE};
use crate::util::clock::now_ms;

/// First version sent by transactions-v2 producers, which add the offsets partition to the
/// transaction implicitly (no AddOffsetsToTxn).
const IMPLICIT_ADD_VERSION: i16 = 5;

/// Answers TxnOffsetCommit.
pub async fn handle(ctx: &Context, request: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let image = ctx.shard.image();
    let code = commit(ctx, &request, &image).await;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let meta = image.topic(topic.name.as_str());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let known = meta.is_some_and(|m| m.has_partition(p.partition_index));
                    let error = if known {
                        code
                    } else {
                        ResponseError::UnknownTopicOrPartition.code()
                    };
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// Checks the producer, then appends the offsets of known partitions; one error code.
async fn commit(
    ctx: &Context,
    request: &TxnOffsetCommitRequest,
    image: &crate::cluster::MetadataImage,
) -> i16 {
    let id = request.transactional_id.to_string();
    let group = request.group_id.to_string();
    if id.is_empty() || group.is_empty() {
        return ResponseError::InvalidRequest.code();
    }
    let (pid, epoch) = (request.producer_id.0, request.producer_epoch);
    if ctx.version >= IMPLICIT_ADD_VERSION {
        // A transactions-v2 producer sends no AddOffsetsToTxn: its offsets partition joins
        // the transaction here (KIP-890 part 2).
        let added = super::add_offsets_to_txn::add_offsets_partition(
            ctx,
            id.clone(),
            pid,
            epoch,
            &group,
            TRANSACTION_VERSION_2,
        )
        .await;
        if added != 0 {
            return added;
        }
    }
    let checked = TRANSACTION_STATE
        .route(
            &ctx.shard,
            &id.clone(),
            move |shard, partition| async move {
                driver::query(&shard, partition, |c| c.contains(&id, pid, epoch)).await
            },
        )
        .await;
    match checked {
        Ok(Ok(())) => {}
        Ok(Err(code)) if code == ResponseError::ProducerFenced.code() && ctx.version < 2 => {
            return ResponseError::InvalidProducerEpoch.code()
        }
        Ok(Err(code)) => return code,
        Err(e) => return e.code(),
    }
    let now = now_ms();
    let mut records = Vec::new();
    // The partitions those records are for, pending until the transaction ends.
    let mut staged: Vec<(String, i32)> = Vec::new();
    for topic in &request.topics {
        let Some(meta) = image.topic(topic.name.as_str()) else {
            continue;
        };
        for p in &topic.partitions {
            if p.partition_index < 0 || p.partition_index >= meta.partitions {
                continue;
            }
            let value = OffsetValue {
                offset: p.committed_offset,
                leader_epoch: if ctx.version >= 2 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                commit_timestamp_ms: now,
            };
            records.push(GroupRecord {
                key: offset_key(&group, topic.name.as_str(), p.partition_index),
                value: Some(offset_value(&value)),
            });
            staged.push((topic.name.to_string(), p.partition_index));
        }
    }
    if records.is_empty() {
        return 0;
    }
    let generation = if ctx.version >= 3 {
        request.generation_id
    } else {
        -1
    };
    let outcome = OFFSETS
        .route(
            &ctx.shard,
            &group.clone(),
            move |shard, partition| async move {
                if generation >= 0 {
                    let current = groups::with_coordinator(&shard, partition, |c, _| {
                        (c.generation(&group), Effects::default())
                    })
                    .await?;
                    if current != Some(generation) {
                        return Ok(ResponseError::IllegalGeneration.code());
                    }
                }
                // Pending before the records can be read back, so a `require_stable`
                // OffsetFetch never sees the old offset while this transaction is open.
                let staged_group = group.clone();
                groups::with_coordinator(&shard, partition, move |c, _| {
                    c.stage_txn_offsets(pid, &staged_group, staged);
                    ((), Effects::default())
                })
                .await?;
                Ok(
                    match markers::append_txn_offsets(&shard, partition, pid, epoch, &records).await
                    {
                        Ok(()) => 0,
                        Err(e) => {
                            tracing::error!(error = %e, "transactional offsets not written");
                            ResponseError::CoordinatorNotAvailable.code()
                        }
                    },
                )
            },
        )
        .await;
    outcome.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "TxnOffsetCommit");
        e.code()
    })
}
