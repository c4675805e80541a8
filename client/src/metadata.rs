//! Metadata: the brokers and topics of the cluster, the routing cache that sends each request
//! to a partition's leader, and DescribeCluster.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    metadata_request::MetadataRequestTopic, ApiKey, DescribeClusterRequest, MetadataRequest,
};
use serde::Serialize;
use uuid::Uuid;

use crate::client::{lock, topic_name, Client};
use crate::connection::Connection;
use crate::error::{check, Error, Result};

/// A broker as Metadata describes it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, when configured.
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition of a topic in Metadata.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader node id (-1: none).
    pub leader: i32,
    /// Leader epoch (-1 when the broker does not send it).
    pub leader_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
    /// Offline replica node ids.
    pub offline: Vec<i32>,
    /// Partition-level error name, if any.
    pub error: Option<String>,
}

/// One topic in Metadata.
#[derive(Debug, Clone, Serialize)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic id (nil on brokers before Metadata v10).
    pub topic_id: Uuid,
    /// Internal topic (`__consumer_offsets`, ...).
    pub internal: bool,
    /// Partitions sorted by index.
    pub partitions: Vec<PartitionInfo>,
    /// Topic-level error name, if any.
    pub error: Option<String>,
    /// Topic-level error code (0: none).
    #[serde(skip)]
    pub error_code: i16,
}

/// A Metadata snapshot.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ClusterMetadata {
    /// Cluster id (Metadata v2+).
    pub cluster_id: Option<String>,
    /// Controller node id (-1 unknown).
    pub controller_id: i32,
    /// Brokers sorted by node id.
    pub brokers: Vec<BrokerInfo>,
    /// Topics sorted by name.
    pub topics: Vec<TopicInfo>,
}

impl ClusterMetadata {
    /// The topic named `name`, if listed.
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// The broker with node id `id`, if listed.
    pub fn broker(&self, id: i32) -> Option<&BrokerInfo> {
        self.brokers.iter().find(|b| b.node_id == id)
    }
}

/// DescribeCluster (or Metadata) output.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterInfo {
    /// Cluster id.
    pub cluster_id: Option<String>,
    /// Controller node id.
    pub controller_id: i32,
    /// Brokers.
    pub brokers: Vec<BrokerInfo>,
}

impl Client {
    /// The last Metadata seen (possibly empty of topics).
    pub fn cached_metadata(&self) -> Arc<ClusterMetadata> {
        lock(&self.metadata).clone()
    }

    /// Fetch Metadata: `None` for every topic, `Some(list)` for those (an empty list asks
    /// only for brokers). Never auto-creates topics. Updates the routing cache.
    pub fn refresh_metadata(&self, topics: Option<&[&str]>) -> Result<Arc<ClusterMetadata>> {
        let conn = self.any_broker()?;
        let version = conn.version_for::<MetadataRequest>()?;
        let mut req = MetadataRequest::default();
        req.topics = match topics {
            None if version == 0 => Some(Vec::new()),
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect(),
            ),
        };
        if version >= 4 {
            req.allow_auto_topic_creation = false;
        }
        let resp = conn.send_version(&req, version)?.wait()?;
        let mut md = ClusterMetadata {
            cluster_id: resp.cluster_id.map(|c| c.to_string()),
            controller_id: resp.controller_id.0,
            brokers: resp
                .brokers
                .into_iter()
                .map(|b| BrokerInfo {
                    node_id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|r| r.to_string()),
                })
                .collect(),
            topics: resp
                .topics
                .into_iter()
                .map(|t| {
                    let mut partitions: Vec<PartitionInfo> = t
                        .partitions
                        .into_iter()
                        .map(|p| PartitionInfo {
                            partition: p.partition_index,
                            leader: p.leader_id.0,
                            leader_epoch: p.leader_epoch,
                            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                            offline: p.offline_replicas.iter().map(|b| b.0).collect(),
                            error: ResponseError::try_from_code(p.error_code)
                                .map(|e| e.to_string()),
                        })
                        .collect();
                    partitions.sort_by_key(|p| p.partition);
                    TopicInfo {
                        name: t.name.map(|n| n.0.to_string()).unwrap_or_default(),
                        topic_id: t.topic_id,
                        internal: t.is_internal,
                        partitions,
                        error: ResponseError::try_from_code(t.error_code).map(|e| e.to_string()),
                        error_code: t.error_code,
                    }
                })
                .collect(),
        };
        md.brokers.sort_by_key(|b| b.node_id);
        md.topics.sort_by(|a, b| a.name.cmp(&b.name));
        // Merge into the cache: keep topics this request did not ask about.
        let mut cache = lock(&self.metadata);
        let mut merged = md.clone();
        if topics.is_some() {
            for t in &cache.topics {
                if merged.topic(&t.name).is_none() {
                    merged.topics.push(t.clone());
                }
            }
            merged.topics.sort_by(|a, b| a.name.cmp(&b.name));
        }
        *cache = Arc::new(merged);
        Ok(Arc::new(md))
    }

    /// Metadata of every topic.
    pub fn metadata(&self) -> Result<Arc<ClusterMetadata>> {
        self.refresh_metadata(None)
    }

    /// Metadata of one topic; `UnknownTopicOrPartition` if it does not exist.
    pub fn topic(&self, name: &str) -> Result<TopicInfo> {
        let md = self.refresh_metadata(Some(&[name]))?;
        let addr = self.any_broker()?.addr().to_string();
        let unknown = ResponseError::UnknownTopicOrPartition;
        let t = md.topic(name).cloned().ok_or_else(|| Error::Kafka {
            addr: addr.clone(),
            context: format!("topic {name}"),
            error: unknown,
            code: unknown.code(),
            message: None,
        })?;
        check(t.error_code, &addr, || format!("topic {name}"), None)?;
        Ok(t)
    }

    /// The connection to the leader of `topic/partition` and the topic's metadata (for its
    /// topic id), from the cache or a refresh. Lets a benchmark pipeline its own requests on
    /// the leader's connection.
    pub fn leader_for(&self, topic: &str, partition: i32) -> Result<(Arc<Connection>, TopicInfo)> {
        let md = self.cached_metadata();
        let t = match md.topic(topic) {
            Some(t)
                if t.error.is_none() && t.partitions.iter().any(|p| p.partition == partition) =>
            {
                t.clone()
            }
            _ => self.topic(topic)?,
        };
        let p = t
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .ok_or_else(|| Error::Kafka {
                addr: String::from("(metadata)"),
                context: format!("partition {topic}/{partition}"),
                error: ResponseError::UnknownTopicOrPartition,
                code: ResponseError::UnknownTopicOrPartition.code(),
                message: Some(format!("{topic} has {} partitions", t.partitions.len())),
            })?;
        if p.leader < 0 {
            return Err(Error::NoLeader {
                topic: topic.to_string(),
                partition,
            });
        }
        Ok((self.broker(p.leader)?, t))
    }

    /// Cluster id, controller and brokers (DescribeCluster when the broker has it).
    pub fn describe_cluster(&self) -> Result<ClusterInfo> {
        let conn = self.any_broker()?;
        if conn.supports(ApiKey::DescribeCluster) {
            let resp = conn.call(&DescribeClusterRequest::default())?;
            check(
                resp.error_code,
                conn.addr(),
                || "describe cluster".into(),
                resp.error_message.as_ref(),
            )?;
            let mut brokers: Vec<BrokerInfo> = resp
                .brokers
                .into_iter()
                .map(|b| BrokerInfo {
                    node_id: b.broker_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|r| r.to_string()),
                })
                .collect();
            brokers.sort_by_key(|b| b.node_id);
            return Ok(ClusterInfo {
                cluster_id: Some(resp.cluster_id.to_string()),
                controller_id: resp.controller_id.0,
                brokers,
            });
        }
        let md = self.refresh_metadata(Some(&[]))?;
        Ok(ClusterInfo {
            cluster_id: md.cluster_id.clone(),
            controller_id: md.controller_id,
            brokers: md.brokers.clone(),
        })
    }
}
