//! DescribeProducers (key 61, v0, KIP-664): the idempotent and transactional producers a
//! partition knows, so `kafka-transactions.sh describe-producers` can find a hanging
//! transaction (its `current_txn_start_offset` holds back the last stable offset).
//!
//! Asked of each partition's owner shard. Differences from Kafka: `last_timestamp` is when
//! the broker appended the producer's last batch (Kafka reports the batch's max
//! timestamp), and `coordinator_epoch` is -1 (markers' coordinator epochs are not kept).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::Context;
use crate::cluster::scatter::scatter;
use crate::partition::ProducerView;

/// Answers DescribeProducers.
pub async fn handle(ctx: &Context, request: DescribeProducersRequest) -> DescribeProducersResponse {
    let image = ctx.shard.image();
    let mut topics = Vec::new();
    let mut items = Vec::new();
    let mut slots = Vec::new();
    for (ti, topic) in request.topics.iter().enumerate() {
        let meta = image.topic(topic.name.as_str());
        let mut result = TopicResponse::default().with_name(topic.name.clone());
        for (pi, &index) in topic.partition_indexes.iter().enumerate() {
            let mut entry = PartitionResponse::default().with_partition_index(index);
            match meta {
                Some(meta) if meta.has_partition(index) => {
                    items.push((
                        ctx.shard.owner_of(&meta.name, index),
                        (meta.name.clone(), index),
                    ));
                    slots.push((ti, pi));
                }
                _ => entry.error_code = ResponseError::UnknownTopicOrPartition.code(),
            }
            result.partitions.push(entry);
        }
        topics.push(result);
    }
    let results = scatter(
        &ctx.shard,
        items,
        |owner, (topic, index): (String, i32)| async move {
            owner
                .partitions
                .get(&topic, index)
                .map(|p| p.producer_views())
        },
    )
    .await;
    for ((ti, pi), result) in slots.into_iter().zip(results) {
        let entry = &mut topics[ti].partitions[pi];
        match result {
            Some(Some(views)) => entry.active_producers = views.iter().map(state).collect(),
            _ => entry.error_code = ResponseError::NotLeaderOrFollower.code(),
        }
    }
    DescribeProducersResponse::default().with_topics(topics)
}

fn state(view: &ProducerView) -> ProducerState {
    ProducerState::default()
        .with_producer_id(ProducerId(view.producer_id))
        .with_producer_epoch(i32::from(view.epoch))
        .with_last_sequence(view.last_sequence)
        .with_last_timestamp(view.last_append_time_ms)
        .with_coordinator_epoch(-1)
        .with_current_txn_start_offset(view.txn_start_offset)
}
