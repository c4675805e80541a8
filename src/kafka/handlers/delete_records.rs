//! DeleteRecords (key 21), v0-v2: move a partition's log start offset forward.
//!
//! Internal topics (`__consumer_offsets`, `__transaction_state`) are refused per partition
//! with INVALID_TOPIC_EXCEPTION, as Kafka's `ReplicaManager.deleteRecords` does: their logs
//! are the coordinators' state, and cutting them would lose committed offsets and
//! transactions on the next load.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::Context;
use crate::cluster::scatter::scatter;
use crate::util::ids::Offset;

/// Answers DeleteRecords. Offset -1 means "up to the high watermark"; beyond it is
/// OFFSET_OUT_OF_RANGE, as in Kafka.
pub async fn handle(ctx: &Context, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let image = ctx.shard.image();
    let mut topics = Vec::new();
    let mut items = Vec::new();
    let mut slots = Vec::new();
    for (ti, topic) in request.topics.iter().enumerate() {
        let meta = image.topic(topic.name.as_str());
        let mut result = DeleteRecordsTopicResult::default().with_name(topic.name.clone());
        for (pi, p) in topic.partitions.iter().enumerate() {
            let mut entry = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            match meta {
                Some(meta) if meta.internal => {
                    tracing::debug!(
                        topic = %meta.name,
                        partition = p.partition_index,
                        "DeleteRecords refused: cannot delete records of an internal topic"
                    );
                    entry.error_code = ResponseError::InvalidTopicException.code();
                }
                Some(meta) if meta.has_partition(p.partition_index) => {
                    items.push((
                        ctx.shard.owner_of(&meta.name, p.partition_index),
                        (meta.name.clone(), p.partition_index, p.offset),
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
        |owner, (topic, index, offset): (String, i32, i64)| async move {
            let Some(partition) = owner.partitions.get(&topic, index) else {
                return Err(ResponseError::NotLeaderOrFollower);
            };
            let high_watermark = partition.high_watermark().get();
            let target = if offset == -1 { high_watermark } else { offset };
            if target < 0 || target > high_watermark {
                return Err(ResponseError::OffsetOutOfRange);
            }
            match partition.delete_records_before(Offset(target)).await {
                Ok(low) => Ok(low.get()),
                Err(e) => {
                    tracing::error!(%topic, partition = index, error = %e, "delete records failed");
                    Err(ResponseError::KafkaStorageError)
                }
            }
        },
    )
    .await;
    for ((ti, pi), result) in slots.into_iter().zip(results) {
        let entry = &mut topics[ti].partitions[pi];
        match result {
            Some(Ok(low)) => entry.low_watermark = low,
            Some(Err(error)) => entry.error_code = error.code(),
            None => entry.error_code = ResponseError::NotLeaderOrFollower.code(),
        }
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
