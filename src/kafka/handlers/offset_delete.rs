//! OffsetDelete (key 47), v0: drop committed offsets of topics a group no longer consumes.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::groups::{driver, OFFSETS};

/// Answers OffsetDelete.
pub async fn handle(ctx: &Context, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group_id = request.group_id.to_string();
    let topics: Vec<(String, Vec<i32>)> = request
        .topics
        .iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let gid = group_id.clone();
    let outcome = OFFSETS
        .route(&ctx.shard, &group_id, move |shard, partition| async move {
            driver::with_coordinator(&shard, partition, move |c, _| {
                c.delete_offsets(&gid, &topics)
            })
            .await
        })
        .await;
    let (error, topics) = match outcome {
        Ok(reply) => reply,
        Err(e) => (e.code(), Vec::new()),
    };
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            OffsetDeleteResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(p, e)| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(e)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetDeleteResponse::default()
        .with_error_code(error)
        .with_topics(topics)
}
