//! CreatePartitions (key 37), v0-v3: grow a topic's partition count.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::cluster::controller::Controller;

/// Answers CreatePartitions.
pub async fn handle(ctx: &Context, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let node = ctx.shard.config.node_id;
    let mut results = Vec::new();
    let mut wanted = Vec::new();
    let mut slots = Vec::new();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        let bad_assignment = topic.assignments.as_ref().is_some_and(|a| {
            a.iter()
                .any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != node)
        });
        if bad_assignment {
            result.error_code = ResponseError::InvalidReplicaAssignment.code();
            result.error_message = Some(StrBytes::from_static_str(
                "Replica assignment must name only this broker.",
            ));
        } else {
            slots.push(results.len());
            wanted.push((topic.name.to_string(), topic.count));
        }
        results.push(result);
    }
    if !wanted.is_empty() {
        let outcomes =
            match Controller::create_partitions(&ctx.shard, wanted.clone(), request.validate_only)
                .await
            {
                Ok(v) => v,
                Err(e) => wanted.iter().map(|_| Err(e.clone())).collect(),
            };
        for (slot, outcome) in slots.into_iter().zip(outcomes) {
            if let Err(e) = outcome {
                results[slot].error_code = e.error.code();
                results[slot].error_message = Some(StrBytes::from_string(e.message));
            }
        }
    }
    CreatePartitionsResponse::default().with_results(results)
}
