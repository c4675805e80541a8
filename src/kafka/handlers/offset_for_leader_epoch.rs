//! OffsetForLeaderEpoch (key 23), v2-v4: where a leader epoch ends, so a consumer can detect
//! log truncation (KIP-320).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::Context;
use crate::cluster::scatter::scatter;
use crate::util::ids::LeaderEpoch;

/// Answers OffsetForLeaderEpoch.
pub async fn handle(
    ctx: &Context,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let image = ctx.shard.image();
    let mut topics = Vec::new();
    let mut items = Vec::new();
    let mut slots = Vec::new();
    for (ti, topic) in request.topics.iter().enumerate() {
        let meta = image.topic(topic.topic.as_str());
        let mut result = OffsetForLeaderTopicResult::default().with_topic(topic.topic.clone());
        for (pi, p) in topic.partitions.iter().enumerate() {
            let mut entry = EpochEndOffset::default()
                .with_partition(p.partition)
                .with_leader_epoch(-1)
                .with_end_offset(-1);
            match meta {
                Some(meta) if meta.has_partition(p.partition) => {
                    items.push((
                        ctx.shard.owner_of(&meta.name, p.partition),
                        (
                            meta.name.clone(),
                            p.partition,
                            p.current_leader_epoch,
                            p.leader_epoch,
                        ),
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
        |owner, (topic, index, current, wanted): (String, i32, i32, i32)| async move {
            let Some(partition) = owner.partitions.get(&topic, index) else {
                return Err(ResponseError::NotLeaderOrFollower);
            };
            let epoch = partition.check_leader_epoch(current)?;
            if wanted >= epoch {
                // The current epoch ends at the log end.
                return Ok(Some((epoch, partition.log_end_offset().get())));
            }
            Ok(partition
                .end_offset_for_epoch(LeaderEpoch(wanted))
                .map(|(e, end)| (e.get(), end.get())))
        },
    )
    .await;
    for ((ti, pi), result) in slots.into_iter().zip(results) {
        let entry = &mut topics[ti].partitions[pi];
        match result {
            Some(Ok(Some((epoch, end_offset)))) => {
                entry.leader_epoch = epoch;
                entry.end_offset = end_offset;
            }
            Some(Ok(None)) => {}
            Some(Err(error)) => entry.error_code = error.code(),
            None => entry.error_code = ResponseError::NotLeaderOrFollower.code(),
        }
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
