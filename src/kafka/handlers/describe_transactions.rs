//! DescribeTransactions (key 65), v0: the coordinator's view of transactional ids (state,
//! producer id and epoch, timeout, partitions), asked of each id's coordinator shard.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::txn::coordinator::TxnMeta;
use crate::txn::{driver, TRANSACTION_STATE};

/// Answers DescribeTransactions.
pub async fn handle(
    ctx: &Context,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(request.transactional_ids.len());
    for id in request.transactional_ids {
        let key = id.to_string();
        let found = TRANSACTION_STATE
            .route(
                &ctx.shard,
                &key.clone(),
                move |shard, partition| async move {
                    driver::query(&shard, partition, |c| c.get(&key).cloned()).await
                },
            )
            .await;
        let state = TransactionState::default()
            .with_transactional_id(id)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
        states.push(match found {
            Ok(Some(meta)) => describe(state, &meta),
            Ok(None) => state.with_error_code(ResponseError::TransactionalIdNotFound.code()),
            Err(e) => state.with_error_code(e.code()),
        });
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

fn describe(state: TransactionState, meta: &TxnMeta) -> TransactionState {
    let mut topics: Vec<TopicData> = Vec::new();
    for (topic, partition) in &meta.partitions {
        match topics.last_mut() {
            Some(t) if t.topic.as_str() == topic => t.partitions.push(*partition),
            _ => topics.push(
                TopicData::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(vec![*partition]),
            ),
        }
    }
    state
        .with_transaction_state(StrBytes::from_static_str(meta.state.name()))
        .with_transaction_timeout_ms(meta.timeout_ms)
        .with_transaction_start_time_ms(meta.start_ms)
        .with_producer_id(ProducerId(meta.producer_id))
        .with_producer_epoch(meta.producer_epoch)
        .with_topics(topics)
}
