//! Metadata (key 3), v0-v13: brokers, topics, partitions and leaders; auto-creates topics.
//! v13's top-level error is always NONE.

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

/// Answers Metadata. A null topic list (or an empty one before v1) means all topics. From
/// v10 a topic may be asked for by id alone (KIP-516; a KIP-848 consumer resolves the topic
/// ids of its assignment this way); an unknown id answers UNKNOWN_TOPIC_ID.
pub async fn handle(ctx: &Context, request: MetadataRequest) -> MetadataResponse {
    let mut unknown_ids = Vec::new();
    let requested: Option<Vec<String>> = match request.topics {
        None => None,
        Some(t) if t.is_empty() && ctx.version == 0 => None,
        Some(t) => {
            let image = ctx.shard.image();
            let mut names = Vec::with_capacity(t.len());
            for topic in t {
                match topic.name {
                    Some(name) => names.push(name.to_string()),
                    None if !topic.topic_id.is_nil() => match image.topic_by_id(&topic.topic_id) {
                        Some(meta) => names.push(meta.name.clone()),
                        None => unknown_ids.push(topic.topic_id),
                    },
                    None => {}
                }
            }
            Some(names)
        }
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
    let topics: Vec<MetadataResponseTopic> = match requested {
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
    let topics = topics
        .into_iter()
        .chain(unknown_ids.into_iter().map(|id| {
            MetadataResponseTopic::default()
                .with_error_code(ResponseError::UnknownTopicId.code())
                .with_topic_id(id)
                .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
        }))
        .collect::<Vec<_>>();
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
pub(super) type LeaderEpochs = AHashMap<String, AHashMap<i32, (i32, bool)>>;

/// Each partition's leader epoch, asked of the shards that own them (one call per shard,
/// concurrently): every partition has its own epoch, and only its owner knows it.
pub(super) async fn leader_epochs(ctx: &Context, topics: Vec<String>) -> LeaderEpochs {
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

/// What clients see of one partition's replicas: shared by Metadata and
/// DescribeTopicPartitions so both describe a partition the same way.
pub(super) struct PartitionView {
    /// The partition's leader epoch (-1 only if its owner shard could not be asked).
    pub leader_epoch: i32,
    /// LEADER_NOT_AVAILABLE when the partition is offline, else NONE.
    pub error_code: i16,
    /// This node, or -1 when offline.
    pub leader_id: BrokerId,
    /// This node.
    pub replica_nodes: Vec<BrokerId>,
    /// This node, or empty when offline.
    pub isr_nodes: Vec<BrokerId>,
    /// This node when offline, else empty.
    pub offline_replicas: Vec<BrokerId>,
}

/// The view of partition `index` of `topic` from the owners' answers in `epochs`.
pub(super) fn partition_view(
    topic: &str,
    index: i32,
    node_id: i32,
    epochs: &LeaderEpochs,
) -> PartitionView {
    // -1 (unknown) only if the owner shard could not be asked.
    let (leader_epoch, offline) = epochs
        .get(topic)
        .and_then(|t| t.get(&index))
        .copied()
        .unwrap_or((-1, false));
    let node = BrokerId(node_id);
    if offline {
        // Its only replica stopped after an I/O error: no leader, as Kafka shows a
        // partition whose log directory failed, so clients stop sending to it.
        PartitionView {
            leader_epoch,
            error_code: ResponseError::LeaderNotAvailable.code(),
            leader_id: BrokerId(-1),
            replica_nodes: vec![node],
            isr_nodes: Vec::new(),
            offline_replicas: vec![node],
        }
    } else {
        PartitionView {
            leader_epoch,
            error_code: 0,
            leader_id: node,
            replica_nodes: vec![node],
            isr_nodes: vec![node],
            offline_replicas: Vec::new(),
        }
    }
}

fn topic_entry(topic: &TopicMeta, node_id: i32, epochs: &LeaderEpochs) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions)
        .map(|index| {
            let view = partition_view(&topic.name, index, node_id, epochs);
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_error_code(view.error_code)
                .with_leader_id(view.leader_id)
                .with_leader_epoch(view.leader_epoch)
                .with_replica_nodes(view.replica_nodes)
                .with_isr_nodes(view.isr_nodes)
                .with_offline_replicas(view.offline_replicas)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
