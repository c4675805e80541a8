//! OffsetFetch (key 9), v1-v10: read committed offsets (all partitions or selected ones;
//! several groups at once from v8). From v9 a member of a KIP-848 group names itself
//! (member id and epoch): an unknown member is UNKNOWN_MEMBER_ID, another epoch
//! STALE_MEMBER_EPOCH, for the whole group, as Kafka answers.
//!
//! v10 (Kafka 4.1) names topics by id: a requested id no topic has answers UNKNOWN_TOPIC_ID
//! for its partitions; asked for all topics, offsets of a topic that no longer exists are
//! left out (there is no id to name it by).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::Context;
use crate::groups::offsets::FetchReply;
use crate::groups::{driver, OFFSETS};

/// Answers OffsetFetch.
pub async fn handle(ctx: &Context, request: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.version >= 8 {
        let by_id = ctx.version >= 10;
        let mut groups = Vec::with_capacity(request.groups.len());
        for g in &request.groups {
            let mut unknown_ids = Vec::new();
            let topics = g.topics.as_ref().map(|ts| {
                let image = ctx.shard.image();
                let mut named = Vec::with_capacity(ts.len());
                for t in ts {
                    if !by_id {
                        named.push((t.name.to_string(), t.partition_indexes.clone()));
                    } else if let Some(meta) = image.topic_by_id(&t.topic_id) {
                        named.push((meta.name.clone(), t.partition_indexes.clone()));
                    } else {
                        unknown_ids.push((t.topic_id, t.partition_indexes.clone()));
                    }
                }
                named
            });
            let member = g
                .member_id
                .as_ref()
                .filter(|_| ctx.version >= 9)
                .map(|m| (m.to_string(), g.member_epoch));
            let (error, reply) = fetch_group(
                ctx,
                g.group_id.to_string(),
                topics,
                request.require_stable,
                member,
            )
            .await;
            let mut topics = encode_batched(ctx, reply);
            if error == 0 {
                topics.extend(unknown_ids.into_iter().map(unknown_topic_id));
            }
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(error)
                    .with_topics(topics),
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = request.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect::<Vec<_>>()
    });
    // `require_stable` exists from v7 (the crate decodes it false before).
    let (error, reply) = fetch_group(
        ctx,
        request.group_id.to_string(),
        topics,
        request.require_stable,
        None,
    )
    .await;
    let topics = reply
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|p| {
                    let mut out = OffsetFetchResponsePartition::default()
                        .with_partition_index(p.partition)
                        .with_committed_offset(p.offset)
                        .with_metadata(Some(StrBytes::from_string(p.metadata)));
                    if ctx.version >= 5 {
                        out.committed_leader_epoch = p.leader_epoch;
                    }
                    out.error_code = if ctx.version < 2 { error } else { p.error };
                    out
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect();
    let mut response = OffsetFetchResponse::default().with_topics(topics);
    if ctx.version >= 2 {
        response.error_code = error;
    }
    response
}

/// Reads one group's offsets; `member` (v9+: member id and epoch, when the client names
/// one) is checked first against a KIP-848 group's members.
async fn fetch_group(
    ctx: &Context,
    group_id: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
    member: Option<(String, i32)>,
) -> (i16, FetchReply) {
    let gid = group_id.clone();
    let outcome = OFFSETS
        .route(&ctx.shard, &group_id, move |shard, partition| async move {
            driver::with_coordinator(&shard, partition, move |c, _now| {
                let refused = member
                    .as_ref()
                    .and_then(|(id, epoch)| c.consumer_member_error(&gid, id, *epoch));
                let answer = match refused {
                    Some(code) => (code, Vec::new()),
                    None => (0, c.fetch_offsets(&gid, topics.as_deref(), require_stable)),
                };
                (answer, Default::default())
            })
            .await
        })
        .await;
    outcome.unwrap_or_else(|e| (e.code(), Vec::new()))
}

/// The answer for a requested topic id no topic has (v10).
fn unknown_topic_id((topic_id, partitions): (Uuid, Vec<i32>)) -> OffsetFetchResponseTopics {
    let partitions = partitions
        .into_iter()
        .map(|p| {
            OffsetFetchResponsePartitions::default()
                .with_partition_index(p)
                .with_committed_offset(-1)
                .with_error_code(ResponseError::UnknownTopicId.code())
        })
        .collect();
    OffsetFetchResponseTopics::default()
        .with_topic_id(topic_id)
        .with_partitions(partitions)
}

/// The v8+ topics of a reply; from v10 each named by its id, and a topic without one
/// (deleted since its offsets were committed) left out.
fn encode_batched(ctx: &Context, reply: FetchReply) -> Vec<OffsetFetchResponseTopics> {
    let image = ctx.shard.image();
    reply
        .into_iter()
        .filter_map(|(name, partitions)| {
            let topic_id = if ctx.version >= 10 {
                image.topic(&name)?.id
            } else {
                Uuid::nil()
            };
            Some((name, topic_id, partitions))
        })
        .map(|(name, topic_id, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|p| {
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(p.partition)
                        .with_committed_offset(p.offset)
                        .with_committed_leader_epoch(p.leader_epoch)
                        .with_metadata(Some(StrBytes::from_string(p.metadata)))
                        .with_error_code(p.error)
                })
                .collect();
            OffsetFetchResponseTopics::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_topic_id(topic_id)
                .with_partitions(partitions)
        })
        .collect()
}
