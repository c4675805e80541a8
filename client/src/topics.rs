//! Topic and config administration: create, delete and grow topics; describe and alter
//! topic and broker configs.

use std::time::Duration;

use kafka_protocol::messages::{
    create_partitions_request::CreatePartitionsTopic,
    create_topics_request::{CreatableTopic, CreatableTopicConfig},
    delete_topics_request::DeleteTopicState,
    describe_configs_request::DescribeConfigsResource,
    incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig},
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest,
};
use serde::Serialize;

use crate::client::{sb, topic_name, Client};
use crate::error::{check, Result};

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partition count (-1: the broker's default).
    pub partitions: i32,
    /// Replication factor (-1: the broker's default).
    pub replication_factor: i16,
    /// Topic configs.
    pub configs: Vec<(String, String)>,
}

/// One config entry from DescribeConfigs.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigEntry {
    /// Config name.
    pub name: String,
    /// Value (`None` for sensitive or unset values).
    pub value: Option<String>,
    /// Where the value comes from (`DYNAMIC_TOPIC_CONFIG`, `DEFAULT_CONFIG`, ...).
    pub source: String,
    /// Whether it can be changed.
    pub read_only: bool,
    /// Whether the value is hidden.
    pub sensitive: bool,
}

impl ConfigEntry {
    /// Whether the value is a default rather than an override of this resource.
    pub fn is_default(&self) -> bool {
        self.source == "DEFAULT_CONFIG" || self.source == "STATIC_BROKER_CONFIG"
    }
}

/// DescribeConfigs/AlterConfigs resource types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigResource {
    /// A topic (`resource_type` 2).
    Topic,
    /// A broker (`resource_type` 4); the name is the node id.
    Broker,
}

impl ConfigResource {
    fn code(self) -> i8 {
        match self {
            ConfigResource::Topic => 2,
            ConfigResource::Broker => 4,
        }
    }
}

fn config_source_name(s: i8) -> &'static str {
    match s {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

impl Client {
    /// Create a topic (sent to the controller).
    pub fn create_topic(&self, topic: &NewTopic, timeout: Duration) -> Result<()> {
        let conn = self.controller()?;
        let t = CreatableTopic::default()
            .with_name(topic_name(&topic.name))
            .with_num_partitions(topic.partitions)
            .with_replication_factor(topic.replication_factor)
            .with_configs(
                topic
                    .configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(sb(k))
                            .with_value(Some(sb(v)))
                    })
                    .collect(),
            );
        let req = CreateTopicsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32);
        let resp = conn.call(&req)?;
        for r in &resp.topics {
            check(
                r.error_code,
                conn.addr(),
                || format!("create topic {}", topic.name),
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Delete a topic by name (sent to the controller).
    pub fn delete_topic(&self, name: &str, timeout: Duration) -> Result<()> {
        let conn = self.controller()?;
        let version = conn.version_for::<DeleteTopicsRequest>()?;
        let mut req = DeleteTopicsRequest::default()
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32);
        if version >= 6 {
            req.topics = vec![DeleteTopicState::default().with_name(Some(topic_name(name)))];
        } else {
            req.topic_names = vec![topic_name(name)];
        }
        let resp = conn.send_version(&req, version)?.wait()?;
        for r in &resp.responses {
            check(
                r.error_code,
                conn.addr(),
                || format!("delete topic {name}"),
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Grow a topic to `total` partitions.
    pub fn create_partitions(&self, topic: &str, total: i32, timeout: Duration) -> Result<()> {
        let conn = self.controller()?;
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(total)
                .with_assignments(None)])
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32);
        let resp = conn.call(&req)?;
        for r in &resp.results {
            check(
                r.error_code,
                conn.addr(),
                || format!("add partitions to {topic}"),
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Every config of a resource with its value and source.
    pub fn describe_configs(
        &self,
        resource: ConfigResource,
        name: &str,
    ) -> Result<Vec<ConfigEntry>> {
        let conn = match resource {
            ConfigResource::Broker => match name.parse::<i32>() {
                Ok(id) => self.broker(id)?,
                Err(_) => self.any_broker()?,
            },
            ConfigResource::Topic => self.any_broker()?,
        };
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource.code())
                .with_resource_name(sb(name))
                .with_configuration_keys(None),
        ]);
        let resp = conn.call(&req)?;
        let mut out = Vec::new();
        for r in resp.results {
            check(
                r.error_code,
                conn.addr(),
                || format!("describe configs of {name}"),
                r.error_message.as_ref(),
            )?;
            for c in r.configs {
                out.push(ConfigEntry {
                    name: c.name.to_string(),
                    value: c.value.map(|v| v.to_string()),
                    source: config_source_name(c.config_source).to_string(),
                    read_only: c.read_only,
                    sensitive: c.is_sensitive,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Set and delete (revert to default) configs with IncrementalAlterConfigs.
    pub fn alter_configs(
        &self,
        resource: ConfigResource,
        name: &str,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<()> {
        let conn = match resource {
            ConfigResource::Broker => match name.parse::<i32>() {
                Ok(id) => self.broker(id)?,
                Err(_) => self.controller()?,
            },
            ConfigResource::Topic => self.controller()?,
        };
        let mut configs: Vec<AlterableConfig> = set
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(sb(k))
                    .with_config_operation(0)
                    .with_value(Some(sb(v)))
            })
            .collect();
        configs.extend(delete.iter().map(|k| {
            AlterableConfig::default()
                .with_name(sb(k))
                .with_config_operation(1)
                .with_value(None)
        }));
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource.code())
                .with_resource_name(sb(name))
                .with_configs(configs),
        ]);
        let resp = conn.call(&req)?;
        for r in &resp.responses {
            check(
                r.error_code,
                conn.addr(),
                || format!("alter configs of {name}"),
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }
}
