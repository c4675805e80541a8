//! OffsetCommit (key 8), v0-v10 (v0-v1 decoded by `kafka::legacy`): store consumed
//! positions (with metadata and leader epoch).
//!
//! v10 (Kafka 4.1) names topics by id: an id no topic has answers UNKNOWN_TOPIC_ID for its
//! partitions, as Kafka does. The answer waits until the commit records are durable in
//! `__consumer_offsets` (acks=all).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::Context;
use crate::groups::offsets::{CommitPartition, CommitRequest};
use crate::groups::{driver, OFFSETS};

/// Per partition of a topic: Some(error) if refused before routing.
type Slots = Vec<(i32, Option<i16>)>;

/// Answers OffsetCommit.
pub async fn handle(ctx: &Context, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let v = ctx.version;
    let image = ctx.shard.image();
    let group_id = request.group_id.to_string();
    let mut known = Vec::new();
    let mut answer: Vec<(String, Uuid, Slots)> = Vec::new();
    for topic in &request.topics {
        let (meta, unknown) = if v >= 10 {
            (
                image.topic_by_id(&topic.topic_id),
                ResponseError::UnknownTopicId.code(),
            )
        } else {
            (
                image.topic(topic.name.as_str()),
                ResponseError::UnknownTopicOrPartition.code(),
            )
        };
        let name = meta.map_or_else(|| topic.name.to_string(), |m| m.name.clone());
        let mut slots = Vec::new();
        let mut accepted = Vec::new();
        for p in &topic.partitions {
            let exists = meta.is_some_and(|m| m.has_partition(p.partition_index));
            if !exists {
                let error = if meta.is_some() {
                    ResponseError::UnknownTopicOrPartition.code()
                } else {
                    unknown
                };
                slots.push((p.partition_index, Some(error)));
                continue;
            }
            slots.push((p.partition_index, None));
            accepted.push(CommitPartition {
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if v >= 6 { p.committed_leader_epoch } else { -1 },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            });
        }
        if !accepted.is_empty() {
            known.push((name.clone(), accepted));
        }
        answer.push((name, topic.topic_id, slots));
    }
    let commit = CommitRequest {
        group_id: group_id.clone(),
        generation_id: request.generation_id_or_member_epoch,
        member_id: request.member_id.to_string(),
        group_instance_id: if v >= 7 {
            request.group_instance_id.as_ref().map(|i| i.to_string())
        } else {
            None
        },
        topics: known,
        // v2-v4 carry a per-commit retention; -1 (or any negative) keeps the broker's.
        retention_ms: ((2..=4).contains(&v) && request.retention_time_ms >= 0)
            .then_some(request.retention_time_ms),
    };
    let outcome = if commit.topics.is_empty() {
        Ok(Vec::new())
    } else {
        OFFSETS
            .route(&ctx.shard, &group_id, move |shard, partition| async move {
                driver::with_coordinator(&shard, partition, move |c, now| {
                    c.commit_offsets(commit, now)
                })
                .await
            })
            .await
    };
    let topics = answer
        .into_iter()
        .map(|(name, topic_id, slots)| {
            let partitions = slots
                .into_iter()
                .map(|(partition, refused)| {
                    let error = refused.unwrap_or_else(|| match &outcome {
                        Ok(reply) => reply
                            .iter()
                            .filter(|(t, _)| *t == name)
                            .flat_map(|(_, ps)| ps.iter())
                            .find(|(p, _)| *p == partition)
                            .map(|(_, e)| *e)
                            .unwrap_or(ResponseError::UnknownServerError.code()),
                        Err(e) => e.code(),
                    });
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(partition)
                        .with_error_code(error)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_topic_id(topic_id)
                .with_partitions(partitions)
        })
        .collect();
    if let Err(e) = &outcome {
        tracing::warn!(group = %group_id, error = %e, "OffsetCommit failed");
    }
    OffsetCommitResponse::default().with_topics(topics)
}
