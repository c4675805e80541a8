//! AddPartitionsToTxn (key 24), v0-v5: adds partitions to a producer's open transaction on
//! its coordinator (the record is durable before the answer). v0-v3 carry one transaction;
//! v4-v5 (the inter-broker batched form) carry many, and `verify_only` only checks that the
//! partitions are already in the transaction. v5 only adds TRANSACTION_ABORTABLE to the
//! errors; its adds mark the transaction as transactions v2 (a partition leader adding a
//! v2 producer's partition).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use super::Context;
use crate::txn::coordinator::TRANSACTION_VERSION_2;
use crate::txn::{driver, TRANSACTION_STATE};

/// First version with the batched (inter-broker) form.
const BATCHED_VERSION: i16 = 4;

/// First version whose batched adds are transactions-v2 implicit adds.
const IMPLICIT_ADD_VERSION: i16 = 5;

/// Answers AddPartitionsToTxn.
pub async fn handle(
    ctx: &Context,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if ctx.version >= BATCHED_VERSION {
        let mut results = Vec::with_capacity(request.transactions.len());
        for txn in request.transactions {
            results.push(one(ctx, txn).await);
        }
        return AddPartitionsToTxnResponse::default().with_results_by_transaction(results);
    }
    let txn = AddPartitionsToTxnTransaction::default()
        .with_transactional_id(request.v3_and_below_transactional_id)
        .with_producer_id(request.v3_and_below_producer_id)
        .with_producer_epoch(request.v3_and_below_producer_epoch)
        .with_topics(request.v3_and_below_topics);
    let result = one(ctx, txn).await;
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(result.topic_results)
}

async fn one(ctx: &Context, txn: AddPartitionsToTxnTransaction) -> AddPartitionsToTxnResult {
    let id = txn.transactional_id.to_string();
    let image = ctx.shard.image();
    let mut partitions = Vec::new();
    let mut unknown = false;
    for topic in &txn.topics {
        let meta = image.topic(topic.name.as_str());
        for p in &topic.partitions {
            if !meta.is_some_and(|m| m.has_partition(*p)) {
                unknown = true;
            }
            partitions.push((topic.name.to_string(), *p));
        }
    }
    let (pid, epoch, verify_only) = (txn.producer_id.0, txn.producer_epoch, txn.verify_only);
    let code = if unknown {
        // Kafka refuses the whole request; the known partitions get OPERATION_NOT_ATTEMPTED.
        None
    } else if id.is_empty() {
        Some(ResponseError::InvalidRequest.code())
    } else if verify_only {
        let outcome = TRANSACTION_STATE
            .route(
                &ctx.shard,
                &id.clone(),
                move |shard, partition| async move {
                    driver::query(&shard, partition, |c| {
                        let Some(meta) = c.get(&id) else {
                            return ResponseError::InvalidProducerIdMapping.code();
                        };
                        if meta.producer_id != pid || meta.producer_epoch != epoch {
                            return ResponseError::ProducerFenced.code();
                        }
                        if partitions.iter().all(|p| meta.partitions.contains(p)) {
                            0
                        } else {
                            ResponseError::InvalidTxnState.code()
                        }
                    })
                    .await
                },
            )
            .await;
        Some(outcome.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "AddPartitionsToTxn");
            e.code()
        }))
    } else {
        // v5's batched adds come from partition leaders adding a transactions-v2
        // producer's partitions on its behalf (KIP-890 part 2).
        let client_version = if ctx.version >= IMPLICIT_ADD_VERSION {
            TRANSACTION_VERSION_2
        } else {
            0
        };
        Some(
            driver::add_to_transaction(&ctx.shard, id, pid, epoch, partitions, client_version)
                .await,
        )
    };
    let fenced = ResponseError::ProducerFenced.code();
    let code = code.map(|c| {
        if c == fenced && ctx.version < 2 {
            ResponseError::InvalidProducerEpoch.code()
        } else {
            c
        }
    });
    AddPartitionsToTxnResult::default()
        .with_transactional_id(txn.transactional_id.clone())
        .with_topic_results(topic_results(&image, &txn.topics, code))
}

/// Per-partition answers: `code` for all, or (when some partition is unknown)
/// UNKNOWN_TOPIC_OR_PARTITION for those and OPERATION_NOT_ATTEMPTED for the rest.
fn topic_results(
    image: &crate::cluster::MetadataImage,
    topics: &[AddPartitionsToTxnTopic],
    code: Option<i16>,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|topic| {
            let meta = image.topic(topic.name.as_str());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let error = code.unwrap_or_else(|| {
                        if meta.is_some_and(|m| m.has_partition(*p)) {
                            ResponseError::OperationNotAttempted.code()
                        } else {
                            ResponseError::UnknownTopicOrPartition.code()
                        }
                    });
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(error)
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(partitions)
        })
        .collect()
}
