//! ListConfigResources (key 74, v0-v1; KIP-1142, v0 was ListClientMetricsResources of
//! KIP-714): the resources whose configs `kafka-configs.sh --describe` can show.
//!
//! v0 asks for client-metrics subscriptions only, of which Sluice keeps none. v1 names
//! the resource types (none named means every type Kafka supports); Sluice lists every
//! topic and its one broker, and has no client-metrics, group or broker-logger configs.
//! A type outside Kafka's set is refused as Kafka refuses it, with UNSUPPORTED_VERSION.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::{ListConfigResourcesRequest, ListConfigResourcesResponse};
use kafka_protocol::protocol::StrBytes;

use super::Context;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const CLIENT_METRICS: i8 = 16;
const GROUP: i8 = 32;

/// Answers ListConfigResources.
pub fn handle(ctx: &Context, request: ListConfigResourcesRequest) -> ListConfigResourcesResponse {
    let supported: &[i8] = if ctx.version == 0 {
        &[CLIENT_METRICS]
    } else {
        &[TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP]
    };
    let wanted: Vec<i8> = if request.resource_types.is_empty() {
        supported.to_vec()
    } else {
        request.resource_types
    };
    if wanted.iter().any(|t| !supported.contains(t)) {
        return ListConfigResourcesResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code());
    }
    let mut resources = Vec::new();
    if wanted.contains(&TOPIC) {
        resources.extend(
            ctx.shard
                .image()
                .topics
                .keys()
                .map(|name| resource(name.clone(), TOPIC)),
        );
    }
    if wanted.contains(&BROKER) {
        resources.push(resource(ctx.shard.config.node_id.to_string(), BROKER));
    }
    ListConfigResourcesResponse::default().with_config_resources(resources)
}

fn resource(name: String, resource_type: i8) -> ConfigResource {
    ConfigResource::default()
        .with_resource_name(StrBytes::from_string(name))
        .with_resource_type(resource_type)
}
