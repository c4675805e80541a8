//! CreateTopics (key 19), v2-v7, including `validate_only`.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::cluster::controller::{Controller, NewTopic, OpError};
use crate::cluster::TopicMeta;
use crate::partition::topic_config::CONFIG_DEFS;

/// Kafka's config source codes (DescribeConfigs and CreateTopics v5+).
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
/// A default value.
pub const SOURCE_DEFAULT: i8 = 5;

/// Answers CreateTopics.
pub async fn handle(ctx: &Context, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut results: Vec<CreatableTopicResult> = Vec::new();
    let mut wanted = Vec::new();
    let mut slots = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for topic in request.topics {
        let name = topic.name.to_string();
        let mut result = CreatableTopicResult::default()
            .with_name(topic.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        if !seen.insert(name.clone()) {
            result.error_code = ResponseError::InvalidRequest.code();
            result.error_message = Some(StrBytes::from_static_str(
                "Duplicate topic name in request.",
            ));
            results.push(result);
            continue;
        }
        if !topic.assignments.is_empty() {
            // Manual assignment: only this node exists, so only [node] per partition is valid.
            let node = ctx.shard.config.node_id;
            let ok = topic
                .assignments
                .iter()
                .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == node);
            if !ok || topic.num_partitions != -1 || topic.replication_factor != -1 {
                result.error_code = ResponseError::InvalidReplicaAssignment.code();
                result.error_message = Some(StrBytes::from_static_str(
                    "Replica assignment must name only this broker.",
                ));
                results.push(result);
                continue;
            }
        }
        let partitions = if topic.assignments.is_empty() {
            topic.num_partitions
        } else {
            topic.assignments.len() as i32
        };
        let configs: BTreeMap<String, String> = topic
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        wanted.push(NewTopic {
            name,
            partitions,
            replication_factor: topic.replication_factor,
            configs,
            internal: false,
        });
        slots.push(results.len());
        results.push(result);
    }
    if !wanted.is_empty() {
        let outcome = Controller::create_topics(&ctx.shard, wanted, request.validate_only).await;
        let outcomes: Vec<Result<std::sync::Arc<TopicMeta>, OpError>> = match outcome {
            Ok(v) => v,
            Err(e) => slots.iter().map(|_| Err(e.clone())).collect(),
        };
        for (slot, outcome) in slots.into_iter().zip(outcomes) {
            let result = &mut results[slot];
            match outcome {
                Ok(meta) => {
                    if ctx.version >= 7 && !request.validate_only {
                        result.topic_id = meta.id;
                    }
                    if ctx.version >= 5 {
                        result.num_partitions = meta.partitions;
                        result.replication_factor = 1;
                        result.configs = Some(describe_entries(&meta));
                    }
                }
                Err(e) => {
                    result.error_code = e.error.code();
                    result.error_message = Some(StrBytes::from_string(e.message));
                }
            }
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

fn describe_entries(meta: &TopicMeta) -> Vec<CreatableTopicConfigs> {
    CONFIG_DEFS
        .iter()
        .map(|def| {
            let (value, source) = match meta.configs.get(def.name) {
                Some(v) => (v.clone(), SOURCE_DYNAMIC_TOPIC),
                None => (def.default.to_string(), SOURCE_DEFAULT),
            };
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(def.name))
                .with_value(Some(StrBytes::from_string(value)))
                .with_config_source(source)
        })
        .collect()
}
