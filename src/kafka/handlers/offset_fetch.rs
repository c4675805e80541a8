//! OffsetFetch (key 9), v1-v9: read committed offsets (all partitions or selected ones;
//! several groups at once from v8). v10 names topics by id and is not advertised.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::groups::offsets::FetchReply;
use crate::groups::{driver, OFFSETS};

/// Answers OffsetFetch.
pub async fn handle(ctx: &Context, request: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for g in &request.groups {
            let topics = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                    .collect::<Vec<_>>()
            });
            let (error, reply) =
                fetch_group(ctx, g.group_id.to_string(), topics, request.require_stable).await;
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(error)
                    .with_topics(encode_batched(reply)),
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

async fn fetch_group(
    ctx: &Context,
    group_id: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> (i16, FetchReply) {
    let gid = group_id.clone();
    let outcome = OFFSETS
        .route(&ctx.shard, &group_id, move |shard, partition| async move {
            driver::with_coordinator(&shard, partition, move |c, _now| {
                (
                    c.fetch_offsets(&gid, topics.as_deref(), require_stable),
                    Default::default(),
                )
            })
            .await
        })
        .await;
    match outcome {
        Ok(reply) => (0, reply),
        Err(e) => (e.code(), Vec::new()),
    }
}

fn encode_batched(reply: FetchReply) -> Vec<OffsetFetchResponseTopics> {
    reply
        .into_iter()
        .map(|(name, partitions)| {
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
                .with_partitions(partitions)
        })
        .collect()
}
