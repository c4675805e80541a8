//! DescribeTopicPartitions (key 75, v0, KIP-966): Metadata's topic and partition view,
//! paginated. Kafka 4's `kafka-topics.sh --describe` uses it, so a topic with more
//! partitions than one response may hold is read page by page with a cursor.
//!
//! Kafka's rules: topics in name order (all of them when none are named, then unknown
//! ones are skipped; named unknown ones get UNKNOWN_TOPIC_OR_PARTITION); at most
//! `response_partition_limit` partitions (capped at 2000, Kafka's
//! `max.request.partition.size.limit` default, and at least 1) per response; the cursor
//! names the topic and partition to resume at, must be among the named topics and have a
//! partition index of at least 0, or the request is INVALID_REQUEST.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::metadata::{leader_epochs, partition_view};
use super::Context;

/// Kafka's `max.request.partition.size.limit` default: the most partitions per response.
const MAX_PARTITIONS_PER_RESPONSE: i32 = 2000;

/// The operations a broker without an authorizer allows on a topic (READ, WRITE, CREATE,
/// DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS as a bit field), which Kafka
/// without an authorizer reports.
const ALL_TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

/// Answers DescribeTopicPartitions.
pub async fn handle(
    ctx: &Context,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let image = ctx.shard.image();
    let all_topics = request.topics.is_empty();
    let (cursor_topic, cursor_partition) = match &request.cursor {
        Some(c) => (c.topic_name.as_str().to_string(), c.partition_index),
        None => (String::new(), 0),
    };
    let mut names: Vec<String> = if all_topics {
        image.topics.keys().cloned().collect()
    } else {
        request.topics.iter().map(|t| t.name.to_string()).collect()
    };
    names.retain(|n| n.as_str() >= cursor_topic.as_str());
    names.sort();
    names.dedup();
    let cursor_missing = request.cursor.is_some() && !all_topics && !names.contains(&cursor_topic);
    if cursor_missing || cursor_partition < 0 {
        return refuse(request);
    }
    let epochs = leader_epochs(ctx, names.clone()).await;
    let node_id = ctx.shard.config.node_id;
    let mut remaining = request
        .response_partition_limit
        .clamp(1, MAX_PARTITIONS_PER_RESPONSE);
    let mut response = DescribeTopicPartitionsResponse::default();
    for name in names {
        if remaining == 0 {
            // Every earlier topic is complete; the next page starts at this one.
            response.next_cursor = Some(cursor(&name, 0));
            break;
        }
        let Some(topic) = image.topic(&name) else {
            if !all_topics {
                let error = if crate::cluster::controller::validate_topic_name(&name).is_err() {
                    ResponseError::InvalidTopicException
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                response.topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_error_code(error.code())
                        .with_name(Some(topic_name(&name)))
                        .with_topic_authorized_operations(ALL_TOPIC_OPERATIONS),
                );
            }
            continue;
        };
        let start = if name == cursor_topic {
            cursor_partition
        } else {
            0
        };
        let end = topic.partitions.min(start.saturating_add(remaining));
        let partitions: Vec<_> = (start..end)
            .map(|index| {
                let view = partition_view(&name, index, node_id, &epochs);
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(index)
                    .with_error_code(view.error_code)
                    .with_leader_id(view.leader_id)
                    .with_leader_epoch(view.leader_epoch)
                    .with_replica_nodes(view.replica_nodes)
                    .with_isr_nodes(view.isr_nodes)
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(view.offline_replicas)
            })
            .collect();
        remaining -= partitions.len() as i32;
        response.topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_topic_id(topic.id)
                .with_is_internal(topic.internal)
                .with_partitions(partitions)
                .with_topic_authorized_operations(ALL_TOPIC_OPERATIONS),
        );
        if end < topic.partitions {
            response.next_cursor = Some(cursor(&name, end));
            break;
        }
    }
    response
}

/// Kafka's answer to an invalid cursor: every named topic with INVALID_REQUEST.
fn refuse(request: DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_name(Some(t.name))
        })
        .collect();
    DescribeTopicPartitionsResponse::default().with_topics(topics)
}

fn cursor(topic: &str, partition_index: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(topic_name(topic))
        .with_partition_index(partition_index)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}
