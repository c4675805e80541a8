//! DescribeConfigs (key 32, v1-v4), AlterConfigs (key 33, v0-v2) and
//! IncrementalAlterConfigs (key 44, v0-v1) for topics; broker configs are described
//! read-only.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::create_topics::{SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC};
use super::Context;
use crate::cluster::controller::{ConfigChange, Controller, OpError};
use crate::partition::topic_config::{config_def, ConfigDef, CONFIG_DEFS};

/// Kafka's resource type codes.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Config source of a static broker config.
const SOURCE_STATIC_BROKER: i8 = 4;

/// Answers DescribeConfigs.
pub fn describe(ctx: &Context, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let image = ctx.shard.image();
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let mut result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let wanted = |name: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    // Null or empty means every key, as in Kafka's ConfigHelper.
                    .is_none_or(|keys| keys.is_empty() || keys.iter().any(|k| k.as_str() == name))
            };
            match resource.resource_type {
                RESOURCE_TOPIC => match image.topic(resource.resource_name.as_str()) {
                    Some(topic) => {
                        result.configs = CONFIG_DEFS
                            .iter()
                            .filter(|d| wanted(d.name))
                            .map(|def| {
                                let (value, source) = match topic.configs.get(def.name) {
                                    Some(v) => (v.clone(), SOURCE_DYNAMIC_TOPIC),
                                    None => (def.default.to_string(), SOURCE_DEFAULT),
                                };
                                let mut entry = DescribeConfigsResourceResult::default()
                                    .with_name(StrBytes::from_static_str(def.name))
                                    .with_value(Some(StrBytes::from_string(value)))
                                    .with_config_source(source);
                                if request.include_synonyms {
                                    entry.synonyms = synonyms(def, topic.configs.get(def.name));
                                }
                                if ctx.version >= 3 {
                                    entry.config_type = def.config_type();
                                    if request.include_documentation {
                                        entry.documentation =
                                            Some(StrBytes::from_static_str(def.doc));
                                    }
                                }
                                entry
                            })
                            .collect();
                    }
                    None => {
                        result.error_code = ResponseError::UnknownTopicOrPartition.code();
                        result.error_message =
                            Some(StrBytes::from_static_str("topic does not exist"));
                    }
                },
                RESOURCE_BROKER => {
                    result.configs = broker_configs(ctx)
                        .into_iter()
                        .filter(|(name, _)| wanted(name))
                        .map(|(name, value)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(StrBytes::from_static_str(name))
                                .with_value(Some(StrBytes::from_string(value)))
                                .with_read_only(true)
                                .with_config_source(SOURCE_STATIC_BROKER)
                                .with_config_type(if ctx.version >= 3 { 2 } else { 0 })
                        })
                        .collect();
                }
                _ => {
                    result.error_code = ResponseError::InvalidRequest.code();
                    result.error_message =
                        Some(StrBytes::from_static_str("unsupported resource type"));
                }
            }
            result
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Kafka's synonym chain for a topic config: the topic's own value, then the broker
/// config that would supply the default (Sluice never sets it, so it reports the default).
fn synonyms(def: &ConfigDef, explicit: Option<&String>) -> Vec<DescribeConfigsSynonym> {
    let own = explicit.map(|v| {
        DescribeConfigsSynonym::default()
            .with_name(StrBytes::from_static_str(def.name))
            .with_value(Some(StrBytes::from_string(v.clone())))
            .with_source(SOURCE_DYNAMIC_TOPIC)
    });
    let broker = def.synonym.map(|name| {
        DescribeConfigsSynonym::default()
            .with_name(StrBytes::from_static_str(name))
            .with_value(Some(StrBytes::from_static_str(def.default)))
            .with_source(SOURCE_DEFAULT)
    });
    own.into_iter().chain(broker).collect()
}

/// The broker settings Sluice reports, under Kafka's names.
fn broker_configs(ctx: &Context) -> Vec<(&'static str, String)> {
    let c = &ctx.shard.config;
    vec![
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
        ),
        ("num.partitions", c.default_partitions.to_string()),
        ("socket.request.max.bytes", c.max_request_bytes.to_string()),
        ("log.dirs", c.data_dir.display().to_string()),
        ("broker.id", c.node_id.to_string()),
        ("default.replication.factor", "1".to_string()),
        (
            "message.max.bytes",
            crate::partition::topic_config::MAX_MESSAGE_BYTES_DEFAULT.to_string(),
        ),
    ]
}

/// Answers AlterConfigs: each topic's explicit configs are replaced by the given set.
pub async fn alter(ctx: &Context, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let resources: Vec<(i8, StrBytes, ConfigChange)> = request
        .resources
        .into_iter()
        .map(|r| {
            let configs: BTreeMap<String, String> = r
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            (
                r.resource_type,
                r.resource_name,
                ConfigChange::Replace(configs),
            )
        })
        .collect();
    let outcomes = apply(ctx, &resources, request.validate_only).await;
    let responses = resources
        .into_iter()
        .zip(outcomes)
        .map(|((kind, name, _), outcome)| {
            let mut r = alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(kind)
                .with_resource_name(name);
            if let Err(e) = outcome {
                r.error_code = e.error.code();
                r.error_message = Some(StrBytes::from_string(e.message));
            }
            r
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

/// Answers IncrementalAlterConfigs: SET (0) and DELETE (1); APPEND/SUBTRACT (2, 3) apply to
/// list configs (`cleanup.policy`).
pub async fn incremental_alter(
    ctx: &Context,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let image = ctx.shard.image();
    let resources: Vec<(i8, StrBytes, Result<ConfigChange, OpError>)> = request
        .resources
        .into_iter()
        .map(|r| {
            let current = image
                .topic(r.resource_name.as_str())
                .map(|t| t.configs.clone())
                .unwrap_or_default();
            let edits: Result<Vec<(String, Option<String>)>, OpError> = r
                .configs
                .iter()
                .map(|c| {
                    edit(
                        &current,
                        c.name.as_str(),
                        c.config_operation,
                        c.value.as_ref().map(|v| v.as_str()),
                    )
                })
                .collect();
            (
                r.resource_type,
                r.resource_name,
                edits.map(ConfigChange::Edit),
            )
        })
        .collect();
    let valid: Vec<(i8, StrBytes, ConfigChange)> = resources
        .iter()
        .filter_map(|(k, n, c)| c.as_ref().ok().map(|c| (*k, n.clone(), c.clone())))
        .collect();
    let mut outcomes = apply(ctx, &valid, request.validate_only).await.into_iter();
    let responses = resources
        .into_iter()
        .map(|(kind, name, change)| {
            let outcome = match change {
                Ok(_) => outcomes.next().unwrap_or(Ok(())),
                Err(e) => Err(e),
            };
            let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(kind)
                .with_resource_name(name);
            if let Err(e) = outcome {
                r.error_code = e.error.code();
                r.error_message = Some(StrBytes::from_string(e.message));
            }
            r
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// Turns one incremental operation into a set/delete of the key.
fn edit(
    current: &BTreeMap<String, String>,
    name: &str,
    op: i8,
    value: Option<&str>,
) -> Result<(String, Option<String>), OpError> {
    let invalid = |message: &str| OpError {
        error: ResponseError::InvalidConfig,
        message: message.to_string(),
    };
    let list = |text: &str| -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let existing = current
        .get(name)
        .cloned()
        .or_else(|| config_def(name).map(|d| d.default.to_string()))
        .unwrap_or_default();
    match op {
        0 => Ok((
            name.to_string(),
            Some(
                value
                    .ok_or_else(|| invalid("SET needs a value"))?
                    .to_string(),
            ),
        )),
        1 => Ok((name.to_string(), None)),
        2 | 3 => {
            if !config_def(name).is_some_and(ConfigDef::is_list) {
                return Err(invalid("APPEND and SUBTRACT apply only to list configs"));
            }
            let mut items = list(&existing);
            for v in list(value.unwrap_or("")) {
                if op == 2 && !items.contains(&v) {
                    items.push(v);
                } else if op == 3 {
                    items.retain(|i| *i != v);
                }
            }
            Ok((name.to_string(), Some(items.join(","))))
        }
        _ => Err(invalid("unknown config operation")),
    }
}

/// Applies topic config changes through the controller; non-topic resources are refused.
async fn apply(
    ctx: &Context,
    resources: &[(i8, StrBytes, ConfigChange)],
    validate_only: bool,
) -> Vec<Result<(), OpError>> {
    let mut outcomes: Vec<Option<Result<(), OpError>>> = Vec::with_capacity(resources.len());
    let mut changes = Vec::new();
    for (kind, name, change) in resources {
        if *kind == RESOURCE_TOPIC {
            changes.push((name.to_string(), change.clone()));
            outcomes.push(None);
        } else {
            outcomes.push(Some(Err(OpError {
                error: ResponseError::InvalidRequest,
                message: "only topic configs can be altered".into(),
            })));
        }
    }
    let count = changes.len();
    let mut applied = match Controller::alter_configs(&ctx.shard, changes, validate_only).await {
        Ok(v) => v.into_iter(),
        Err(e) => vec![Err(e); count].into_iter(),
    };
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| applied.next().unwrap_or(Ok(()))))
        .collect()
}
