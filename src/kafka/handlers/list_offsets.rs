//! ListOffsets (key 2), v1-v10: earliest, latest, by timestamp, max timestamp. Latest is the
//! last stable offset when the request asks for read_committed (isolation level 1, v2+).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::Context;
use crate::cluster::scatter::scatter;

/// Kafka's special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

struct Lookup {
    topic: String,
    partition: i32,
    timestamp: i64,
    current_leader_epoch: i32,
    read_committed: bool,
}

/// Answers ListOffsets.
pub async fn handle(ctx: &Context, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let image = ctx.shard.image();
    let read_committed = ctx.version >= 2 && request.isolation_level == 1;
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut items = Vec::new();
    let mut slots = Vec::new();
    for (ti, topic) in request.topics.iter().enumerate() {
        let meta = image.topic(topic.name.as_str());
        let mut response = ListOffsetsTopicResponse::default().with_name(topic.name.clone());
        for (pi, p) in topic.partitions.iter().enumerate() {
            let mut entry = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            match meta {
                Some(meta) if meta.has_partition(p.partition_index) => {
                    items.push((
                        ctx.shard.owner_of(&meta.name, p.partition_index),
                        Lookup {
                            topic: meta.name.clone(),
                            partition: p.partition_index,
                            timestamp: p.timestamp,
                            current_leader_epoch: p.current_leader_epoch,
                            read_committed,
                        },
                    ));
                    slots.push((ti, pi));
                }
                _ => entry.error_code = ResponseError::UnknownTopicOrPartition.code(),
            }
            response.partitions.push(entry);
        }
        topics.push(response);
    }
    let results = scatter(&ctx.shard, items, |owner, lookup: Lookup| async move {
        let Some(partition) = owner.partitions.get(&lookup.topic, lookup.partition) else {
            return Err(ResponseError::NotLeaderOrFollower);
        };
        let epoch = partition.check_leader_epoch(lookup.current_leader_epoch)?;
        let found = match lookup.timestamp {
            LATEST if lookup.read_committed => Some((partition.last_stable_offset().get(), -1)),
            LATEST => Some((partition.high_watermark().get(), -1)),
            EARLIEST | EARLIEST_LOCAL => Some((partition.log_start_offset().get(), -1)),
            LATEST_TIERED => None,
            MAX_TIMESTAMP => partition
                .max_timestamp()
                .await
                .map_err(|_| ResponseError::KafkaStorageError)?,
            ts if ts >= 0 => partition
                .offset_for_timestamp(ts)
                .await
                .map_err(|_| ResponseError::KafkaStorageError)?
                .filter(|(offset, _)| *offset < partition.high_watermark().get()),
            _ => return Err(ResponseError::InvalidRequest),
        };
        Ok((found, epoch))
    })
    .await;
    for ((ti, pi), result) in slots.into_iter().zip(results) {
        let entry = &mut topics[ti].partitions[pi];
        match result {
            Some(Ok((Some((offset, timestamp)), epoch))) => {
                entry.offset = offset;
                entry.timestamp = timestamp;
                if ctx.version >= 4 {
                    entry.leader_epoch = epoch;
                }
            }
            Some(Ok((None, epoch))) => {
                if ctx.version >= 4 {
                    entry.leader_epoch = epoch;
                }
            }
            Some(Err(error)) => entry.error_code = error.code(),
            None => entry.error_code = ResponseError::NotLeaderOrFollower.code(),
        }
    }
    ListOffsetsResponse::default().with_topics(topics)
}
