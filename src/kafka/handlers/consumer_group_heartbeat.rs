//! ConsumerGroupHeartbeat (key 68), v0-v1: the KIP-848 consumer group protocol. The
//! member's heartbeat carries its subscription and, after reconciling, the partitions it
//! owns; the answer carries its epoch and, when it changed, the partitions it should own
//! (`groups::consumer` has the rules). v1 adds the RE2 topic regex and member ids chosen by
//! the client.

use std::collections::BTreeSet;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::Context;
use crate::cluster::MetadataImage;
use crate::groups::consumer::{self, HeartbeatRequest, TopicLookup};
use crate::groups::{driver, Effects, OFFSETS};

/// The topics a subscription can name: every topic of the metadata image but the internal
/// ones, as Kafka never hands those to consumer groups.
struct ImageTopics<'a>(&'a MetadataImage);

impl TopicLookup for ImageTopics<'_> {
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
        self.0
            .topic(name)
            .filter(|t| !t.internal)
            .map(|t| (t.id, t.partitions))
    }

    fn names(&self) -> Vec<String> {
        self.0
            .topics
            .values()
            .filter(|t| !t.internal)
            .map(|t| t.name.clone())
            .collect()
    }
}

/// Answers ConsumerGroupHeartbeat.
pub async fn handle(
    ctx: &Context,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let group_id = request.group_id.to_string();
    let owned = request.topic_partitions.map(|tps| {
        tps.into_iter()
            .map(|tp| {
                (
                    tp.topic_id,
                    tp.partitions.into_iter().collect::<BTreeSet<i32>>(),
                )
            })
            .collect()
    });
    let req = HeartbeatRequest {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|s| s.to_string()),
        rack_id: request.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: if ctx.version >= 1 {
            request.subscribed_topic_regex.map(|s| s.to_string())
        } else {
            None
        },
        server_assignor: request.server_assignor.map(|s| s.to_string()),
        owned,
        client_id: ctx.client_id.clone(),
        client_host: String::new(),
    };
    let gid = group_id.clone();
    let outcome = OFFSETS
        .route(&ctx.shard, &group_id, move |shard, partition| async move {
            let image = shard.image();
            driver::with_coordinator(&shard, partition, move |c, now| {
                let topics = ImageTopics(&image);
                (
                    c.consumer_heartbeat(&gid, req, &topics, now),
                    Effects::default(),
                )
            })
            .await
        })
        .await;
    let reply = match outcome {
        Ok(reply) => reply,
        Err(e) => consumer::HeartbeatReply {
            error: e.code(),
            message: Some(e.to_string()),
            ..Default::default()
        },
    };
    let mut response = ConsumerGroupHeartbeatResponse::default()
        .with_error_code(reply.error)
        .with_error_message(reply.message.map(StrBytes::from_string))
        .with_member_epoch(reply.member_epoch)
        .with_heartbeat_interval_ms(reply.heartbeat_interval_ms);
    if reply.error == 0 {
        response.member_id = Some(StrBytes::from_string(reply.member_id));
        response.assignment = reply.assignment.map(|a| {
            Assignment::default().with_topic_partitions(
                a.into_iter()
                    .map(|(topic_id, ps)| {
                        TopicPartitions::default()
                            .with_topic_id(topic_id)
                            .with_partitions(ps.into_iter().collect())
                    })
                    .collect(),
            )
        });
    }
    response
}
