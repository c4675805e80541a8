//! DeleteTopics (key 20), v1-v6 (by name, or by topic id from v6).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::cluster::controller::Controller;

/// Answers DeleteTopics. Data of deleted partitions is removed before the answer.
pub async fn handle(ctx: &Context, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let image = ctx.shard.image();
    let mut results = Vec::new();
    let mut names = Vec::new();
    let mut slots = Vec::new();
    let wanted: Vec<(Option<String>, uuid::Uuid)> = if ctx.version >= 6 {
        request
            .topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|n| (Some(n.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    for (name, id) in wanted {
        let mut result = DeletableTopicResult::default().with_topic_id(id);
        let resolved = match name {
            Some(name) => Some(name),
            None => image.topic_by_id(&id).map(|t| t.name.clone()),
        };
        match resolved {
            Some(name) => {
                result.name = Some(TopicName(StrBytes::from_string(name.clone())));
                slots.push(results.len());
                names.push(name);
            }
            None => {
                result.error_code = ResponseError::UnknownTopicId.code();
            }
        }
        results.push(result);
    }
    if !names.is_empty() {
        let outcomes = match Controller::delete_topics(&ctx.shard, names.clone()).await {
            Ok(v) => v,
            Err(e) => names.iter().map(|_| Err(e.clone())).collect(),
        };
        for (slot, outcome) in slots.into_iter().zip(outcomes) {
            let result = &mut results[slot];
            match outcome {
                Ok(id) => {
                    if ctx.version >= 6 {
                        result.topic_id = id;
                    }
                    if let Some(name) = &result.name {
                        tracing::info!(topic = %name.as_str(), "deleted topic");
                    }
                }
                Err(e) => {
                    result.error_code = e.error.code();
                    if ctx.version >= 5 {
                        result.error_message = Some(StrBytes::from_string(e.message));
                    }
                }
            }
        }
    }
    DeleteTopicsResponse::default().with_responses(results)
}
