//! Metadata (key 3), v0-v12: brokers, topics, partitions and leaders; auto-creates topics.

use std::sync::Arc;

use ahash::AHashMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::cluster::TopicMeta;

/// Kafka's "authorized operations not requested" marker.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Answers Metadata. A null topic list (or an empty one before v1) means all topics.
pub async fn handle(ctx: &Context, request: MetadataRequest) -> MetadataResponse {
    let requested: Option<Vec<String>> = match request.topics {
        None => None,
        Some(t) if t.is_empty() && ctx.version == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .filter_map(|t| t.name.map(|n| n.to_string()))
                .collect(),
        ),
    };
    let allow_create = ctx.version < 4 || request.allow_auto_topic_creation;
    let image = match &requested {
        Some(names) if allow_create => super::auto_create(ctx, names.clone()).await,
        _ => ctx.shard.image(),
    };
    let node_id = ctx.shard.config.node_id;
    let listed: Vec<String> = match &requested {
        None => image.topics.keys().cloned().collect(),
        Some(names) => names.clone(),
    };
    let epochs = leader_epochs(ctx, listed).await;
    let topics = match requested {
        None => image
            .topics
            .values()
            .map(|t| topic_entry(t, node_id, &epochs))
            .collect(),
        Some(names) => names
            .into_iter()
            .map(|name| match image.topic(&name) {
                Some(t) => topic_entry(t, node_id, &epochs),
                None => {
                    let error = if crate::cluster::controller::validate_topic_name(&name).is_err() {
                        ResponseError::InvalidTopicException
                    } else {
                        ResponseError::UnknownTopicOrPartition
                    };
                    MetadataResponseTopic::default()
                        .with_error_code(error.code())
                        .with_name(Some(TopicName(StrBytes::from_string(name))))
                        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
                }
            })
            .collect(),
    };
    let config = &ctx.shard.config;
    let mut response = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(node_id))
            .with_host(StrBytes::from_string(config.advertised_host.clone()))
            .with_port(i32::from(config.advertised_port))])
        .with_topics(topics);
    // Fields a version does not have must stay at their defaults or encoding fails.
    if ctx.version >= 1 {
        response.controller_id = BrokerId(node_id);
    }
    if ctx.version >= 2 {
        response.cluster_id = Some(StrBytes::from_string(image.cluster_id.clone()));
    }
    if ctx.version < 10 {
        for topic in &mut response.topics {
            topic.topic_id = uuid::Uuid::nil();
        }
    }
    if ctx.version < 7 {
        for partition in response
            .topics
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            partition.leader_epoch = -1;
        }
    }
    if ctx.version < 1 {
        for topic in &mut response.topics {
            topic.is_internal = false;
        }
    }
    response
}

/// Leader epoch by topic, then partition, and whether the partition is offline.
type LeaderEpochs = AHashMap<String, AHashMap<i32, (i32, bool)>>;

/// Each partition's leader epoch, asked of the shards that own them (one call per shard,
/// concurrently): every partition has its own epoch, and only its owner knows it.
async fn leader_epochs(ctx: &Context, topics: Vec<String>) -> LeaderEpochs {
    let topics = Arc::new(topics);
    let calls = (0..ctx.shard.count).map(|target| {
        let topics = topics.clone();
        ctx.shard.invoke_on(target, move |owner| async move {
            topics
                .iter()
                .flat_map(|topic| {
                    owner
                        .partitions
                        .indexes_of(topic)
                        .into_iter()
                        .filter_map(|index| {
                            let p = owner.partitions.get(topic, index)?;
                            let offline = p.offline_reason().is_some();
                            Some((topic.clone(), index, p.leader_epoch().get(), offline))
                        })
                })
                .collect::<Vec<_>>()
        })
    });
    let mut epochs = LeaderEpochs::new();
    for answer in futures::future::join_all(calls).await {
        match answer {
            Ok(found) => {
                for (topic, index, epoch, offline) in found {
                    epochs
                        .entry(topic)
                        .or_default()
                        .insert(index, (epoch, offline));
                }
            }
            Err(e) => tracing::warn!(error = %e, "leader epochs: shard unreachable"),
        }
    }
    epochs
}

fn topic_entry(topic: &TopicMeta, node_id: i32, epochs: &LeaderEpochs) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions)
        .map(|index| {
            // -1 (unknown) only if the owner shard could not be asked.
            let (epoch, offline) = epochs
                .get(&topic.name)
                .and_then(|t| t.get(&index))
                .copied()
                .unwrap_or((-1, false));
            let partition = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_epoch(epoch)
                .with_replica_nodes(vec![BrokerId(node_id)]);
            if offline {
                // Its only replica stopped after an I/O error: no leader, as Kafka shows a
                // partition whose log directory failed, so clients stop sending to it.
                partition
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
                    .with_isr_nodes(Vec::new())
                    .with_offline_replicas(vec![BrokerId(node_id)])
            } else {
                partition
                    .with_leader_id(BrokerId(node_id))
                    .with_isr_nodes(vec![BrokerId(node_id)])
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
