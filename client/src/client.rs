//! A cluster-aware client: bootstrap, metadata, routing to partition leaders and group
//! coordinators, and one helper per operation `sluicectl` and `sluice-bench` need.
//!
//! Every helper builds the request for the version negotiated with the broker it goes to
//! (fields that moved between versions, such as topic names → topic ids in Fetch v13, are
//! filled in accordingly), so the same code works against Sluice and against Apache Kafka.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    create_partitions_request::CreatePartitionsTopic,
    create_topics_request::{CreatableTopic, CreatableTopicConfig},
    delete_topics_request::DeleteTopicState,
    describe_configs_request::DescribeConfigsResource,
    fetch_request::{FetchPartition, FetchTopic},
    incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    metadata_request::MetadataRequestTopic,
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    },
    produce_request::{PartitionProduceData, TopicProduceData},
    ApiKey, BrokerId, ConsumerProtocolAssignment, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteGroupsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    DescribeGroupsRequest, FetchRequest, FindCoordinatorRequest, GroupId,
    IncrementalAlterConfigsRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::Compression;
use serde::Serialize;
use uuid::Uuid;

use crate::connection::{Connection, ConnectionConfig};
use crate::error::{check, Error, Result};
use crate::records::{decode_fetched, encode_batch, ConsumedRecord, ProduceRecord};

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(sb(s))
}

/// How a [`Client`] connects and retries.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` addresses tried in order until one answers.
    pub bootstrap: Vec<String>,
    /// Per-connection settings (client id, timeouts).
    pub connection: ConnectionConfig,
    /// How many times an operation is retried after a retriable Kafka error (leader moved,
    /// coordinator loading) with a metadata refresh in between.
    pub retries: u32,
    /// Pause before each retry.
    pub retry_backoff: Duration,
}

impl ClientConfig {
    /// Defaults for the given bootstrap addresses.
    pub fn new<S: AsRef<str>>(bootstrap: &[S]) -> Self {
        ClientConfig {
            bootstrap: bootstrap.iter().map(|s| s.as_ref().to_string()).collect(),
            connection: ConnectionConfig::default(),
            retries: 5,
            retry_backoff: Duration::from_millis(200),
        }
    }
}

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

/// Producer acknowledgement level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No response: fire and forget.
    None,
    /// The leader appended it.
    Leader,
    /// The in-sync replicas have it (`-1`/`all`).
    All,
}

impl Acks {
    /// The wire value.
    pub fn code(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Options of [`Client::produce`].
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// Acknowledgement level.
    pub acks: Acks,
    /// Batch compression.
    pub compression: Compression,
    /// Broker-side timeout waiting for replication.
    pub timeout: Duration,
}

impl Default for ProduceOptions {
    fn default() -> Self {
        ProduceOptions {
            acks: Acks::All,
            compression: Compression::None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// What a produce returned.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceResult {
    /// Partition.
    pub partition: i32,
    /// Offset of the first record (-1 with acks=0).
    pub base_offset: i64,
    /// Log-append time if the topic uses it, else -1.
    pub log_append_time: i64,
}

/// Options of [`Client::fetch`].
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Long-poll wait when there is less than `min_bytes`.
    pub max_wait: Duration,
    /// Bytes to wait for.
    pub min_bytes: i32,
    /// Limit per partition.
    pub max_bytes: i32,
    /// 0 = read_uncommitted, 1 = read_committed.
    pub isolation_level: i8,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 4 * 1024 * 1024,
            isolation_level: 0,
        }
    }
}

/// What a fetch returned for one partition.
#[derive(Debug, Clone)]
pub struct FetchResult {
    /// Partition.
    pub partition: i32,
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset.
    pub last_stable_offset: i64,
    /// Log start offset.
    pub log_start_offset: i64,
    /// Data records at or after the requested offset (control records skipped).
    pub records: Vec<ConsumedRecord>,
    /// Where the next fetch should start.
    pub next_offset: i64,
}

/// Which offset ListOffsets should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// Log start offset.
    Earliest,
    /// High watermark (the offset of the next record).
    Latest,
    /// First offset whose timestamp is at or after this (ms since epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

/// One partition's answer to ListOffsets.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionOffset {
    /// Partition.
    pub partition: i32,
    /// Offset (-1 when no record matches a timestamp).
    pub offset: i64,
    /// Timestamp of that record (-1 when not applicable).
    pub timestamp: i64,
}

/// A group as ListGroups lists it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type (`consumer` for Kafka consumers, empty for offset-only groups).
    pub protocol_type: String,
    /// State (ListGroups v4+), e.g. `Stable`, `Empty`.
    pub state: Option<String>,
}

/// A member of a group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupMember {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Assigned partitions per topic (decoded for `consumer` groups).
    pub assignment: BTreeMap<String, Vec<i32>>,
}

/// DescribeGroups output for one group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State (`Stable`, `Empty`, `Dead`, ...).
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen assignor (`range`, `cooperative-sticky`, ...).
    pub protocol: String,
    /// Members.
    pub members: Vec<GroupMember>,
}

/// A committed offset of a group.
#[derive(Debug, Clone, Serialize)]
pub struct CommittedOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset (-1: none).
    pub offset: i64,
    /// Commit metadata string.
    pub metadata: Option<String>,
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

/// A client of one Kafka-protocol cluster. `&self` methods: share it between threads.
pub struct Client {
    config: ClientConfig,
    bootstrap: Mutex<Arc<Connection>>,
    nodes: Mutex<HashMap<i32, Arc<Connection>>>,
    metadata: Mutex<Arc<ClusterMetadata>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.config.bootstrap)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    /// Connect to the first reachable bootstrap address and load the broker list.
    pub fn connect(config: ClientConfig) -> Result<Client> {
        let conn = Arc::new(Self::connect_bootstrap(&config)?);
        let client = Client {
            config,
            bootstrap: Mutex::new(conn),
            nodes: Mutex::new(HashMap::new()),
            metadata: Mutex::new(Arc::new(ClusterMetadata::default())),
        };
        client.refresh_metadata(Some(&[]))?;
        Ok(client)
    }

    fn connect_bootstrap(config: &ClientConfig) -> Result<Connection> {
        if config.bootstrap.is_empty() {
            return Err(Error::Invalid("no bootstrap broker address given".into()));
        }
        let mut errors = Vec::new();
        for addr in &config.bootstrap {
            match Connection::connect(addr, &config.connection) {
                Ok(c) => return Ok(c),
                Err(e) => errors.push(e),
            }
        }
        if errors.len() == 1 {
            if let Some(e) = errors.pop() {
                return Err(e);
            }
        }
        Err(Error::NoBrokers(
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        ))
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The bootstrap connection (reconnected if it broke). Any broker can answer Metadata
    /// and most admin requests.
    pub fn any_broker(&self) -> Result<Arc<Connection>> {
        let mut b = lock(&self.bootstrap);
        if b.is_closed() {
            *b = Arc::new(Self::connect_bootstrap(&self.config)?);
        }
        Ok(b.clone())
    }

    /// Whether the bootstrap broker advertises `key` in a version this client speaks.
    pub fn supports(&self, key: ApiKey) -> Result<bool> {
        Ok(self.any_broker()?.supports(key))
    }

    /// The connection to node `id` (opened on first use, reopened after it broke).
    pub fn broker(&self, id: i32) -> Result<Arc<Connection>> {
        if let Some(c) = lock(&self.nodes).get(&id) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let mut info = self.cached_metadata().broker(id).cloned();
        if info.is_none() {
            info = self.refresh_metadata(Some(&[]))?.broker(id).cloned();
        }
        let info = info.ok_or_else(|| Error::Invalid(format!("unknown broker node id {id}")))?;
        let conn = Arc::new(Connection::connect(&info.addr(), &self.config.connection)?);
        lock(&self.nodes).insert(id, conn.clone());
        Ok(conn)
    }

    fn controller(&self) -> Result<Arc<Connection>> {
        let md = self.cached_metadata();
        if md.controller_id >= 0 && md.broker(md.controller_id).is_some() {
            self.broker(md.controller_id)
        } else {
            self.any_broker()
        }
    }

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

    /// Run `f`, refreshing metadata and retrying on retriable Kafka errors (leader moved,
    /// coordinator loading, topic not yet propagated).
    fn retrying<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            match f() {
                Err(e) if attempt < self.config.retries && retriable(&e) => {
                    attempt += 1;
                    std::thread::sleep(self.config.retry_backoff);
                    // Forget cached topics so the next attempt re-reads leaders.
                    {
                        let mut m = lock(&self.metadata);
                        let mut fresh = (**m).clone();
                        fresh.topics.clear();
                        *m = Arc::new(fresh);
                    }
                    let _ = self.refresh_metadata(Some(&[]));
                }
                other => return other,
            }
        }
    }

    // ----------------------------------------------------------------------------------
    // Topics and configs
    // ----------------------------------------------------------------------------------

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

    // ----------------------------------------------------------------------------------
    // Produce, fetch, offsets
    // ----------------------------------------------------------------------------------

    /// Produce `records` as one batch to `topic/partition` on its leader.
    pub fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: &[ProduceRecord],
        opts: &ProduceOptions,
    ) -> Result<ProduceResult> {
        let batch = encode_batch(records, opts.compression).map_err(Error::Invalid)?;
        self.retrying(|| self.produce_batch(topic, partition, batch.clone(), opts))
    }

    /// Produce an already encoded v2 record batch (lets a benchmark encode once).
    pub fn produce_batch(
        &self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        opts: &ProduceOptions,
    ) -> Result<ProduceResult> {
        let (conn, t) = self.leader_for(topic, partition)?;
        let (req, version) =
            build_produce_request(&conn, topic, t.topic_id, partition, batch, opts)?;
        if opts.acks == Acks::None {
            conn.send_oneway(&req, version)?;
            return Ok(ProduceResult {
                partition,
                base_offset: -1,
                log_append_time: -1,
            });
        }
        let resp = conn.send_version(&req, version)?.wait()?;
        let p = resp
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
            .ok_or_else(|| Error::Decode {
                addr: conn.addr().to_string(),
                api: ApiKey::Produce,
                version,
                reason: format!("no result for partition {partition}"),
            })?;
        check(
            p.error_code,
            conn.addr(),
            || format!("produce to {topic}/{partition}"),
            p.error_message.as_ref(),
        )?;
        Ok(ProduceResult {
            partition,
            base_offset: p.base_offset,
            log_append_time: p.log_append_time_ms,
        })
    }

    /// Fetch records of `topic/partition` from `offset` on its leader.
    pub fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        opts: &FetchOptions,
    ) -> Result<FetchResult> {
        self.retrying(|| self.fetch_once(topic, partition, offset, opts))
    }

    fn fetch_once(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        opts: &FetchOptions,
    ) -> Result<FetchResult> {
        let (conn, t) = self.leader_for(topic, partition)?;
        let version = conn.version_for::<FetchRequest>()?;
        let mut ft = FetchTopic::default().with_partitions(vec![FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(opts.max_bytes)]);
        if version >= 13 {
            ft.topic_id = t.topic_id;
        } else {
            ft.topic = topic_name(topic);
        }
        let req = FetchRequest::default()
            .with_max_wait_ms(opts.max_wait.as_millis().min(i32::MAX as u128) as i32)
            .with_min_bytes(opts.min_bytes)
            .with_max_bytes(opts.max_bytes)
            .with_isolation_level(opts.isolation_level)
            .with_topics(vec![ft]);
        // Leave room for the long poll on top of the request timeout.
        let resp = conn
            .send_version(&req, version)?
            .wait_timeout(self.config.connection.request_timeout + opts.max_wait)?;
        check(
            resp.error_code,
            conn.addr(),
            || format!("fetch {topic}/{partition}"),
            None,
        )?;
        let p = resp
            .responses
            .into_iter()
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| Error::Decode {
                addr: conn.addr().to_string(),
                api: ApiKey::Fetch,
                version,
                reason: format!("no data for partition {partition}"),
            })?;
        check(
            p.error_code,
            conn.addr(),
            || format!("fetch {topic}/{partition} at offset {offset}"),
            None,
        )?;
        let (records, batch_next) = match p.records {
            Some(bytes) => {
                decode_fetched(partition, bytes, offset).map_err(|reason| Error::Decode {
                    addr: conn.addr().to_string(),
                    api: ApiKey::Fetch,
                    version,
                    reason,
                })?
            }
            None => (Vec::new(), None),
        };
        let next_offset = records
            .last()
            .map(|r| r.offset + 1)
            .into_iter()
            .chain(batch_next)
            .chain(std::iter::once(offset))
            .max()
            .unwrap_or(offset);
        Ok(FetchResult {
            partition,
            high_watermark: p.high_watermark,
            last_stable_offset: p.last_stable_offset,
            log_start_offset: p.log_start_offset,
            records,
            next_offset,
        })
    }

    /// ListOffsets for `partitions` of `topic` (each asked of its leader, concurrently).
    pub fn list_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<Vec<PartitionOffset>> {
        self.retrying(|| self.list_offsets_once(topic, partitions, spec))
    }

    fn list_offsets_once(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<Vec<PartitionOffset>> {
        let mut by_leader: BTreeMap<String, (Arc<Connection>, Vec<i32>)> = BTreeMap::new();
        for &p in partitions {
            let (conn, _) = self.leader_for(topic, p)?;
            by_leader
                .entry(conn.addr().to_string())
                .or_insert_with(|| (conn.clone(), Vec::new()))
                .1
                .push(p);
        }
        let mut pending = Vec::new();
        for (conn, parts) in by_leader.into_values() {
            let version = conn.version_for::<ListOffsetsRequest>()?;
            let mut req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(*p)
                                    .with_timestamp(spec.wire())
                            })
                            .collect(),
                    )]);
            if version >= 10 {
                req.timeout_ms = self.config.connection.request_timeout.as_millis() as i32;
            }
            pending.push((conn.clone(), conn.send_version(&req, version)?));
        }
        let mut out = Vec::new();
        for (conn, f) in pending {
            let resp = f.wait()?;
            for t in resp.topics {
                for p in t.partitions {
                    check(
                        p.error_code,
                        conn.addr(),
                        || format!("list offsets of {topic}/{}", p.partition_index),
                        None,
                    )?;
                    out.push(PartitionOffset {
                        partition: p.partition_index,
                        offset: p.offset,
                        timestamp: p.timestamp,
                    });
                }
            }
        }
        out.sort_by_key(|p| p.partition);
        Ok(out)
    }

    // ----------------------------------------------------------------------------------
    // Groups
    // ----------------------------------------------------------------------------------

    /// The coordinator broker of `group`.
    pub fn find_coordinator(&self, group: &str) -> Result<BrokerInfo> {
        self.retrying(|| {
            let conn = self.any_broker()?;
            let version = conn.version_for::<FindCoordinatorRequest>()?;
            let mut req = FindCoordinatorRequest::default();
            if version >= 4 {
                req.coordinator_keys = vec![sb(group)];
            } else {
                req.key = sb(group);
            }
            let resp = conn.send_version(&req, version)?.wait()?;
            if version >= 4 {
                let c = resp.coordinators.first().ok_or_else(|| Error::Decode {
                    addr: conn.addr().to_string(),
                    api: ApiKey::FindCoordinator,
                    version,
                    reason: "no coordinator in response".into(),
                })?;
                check(
                    c.error_code,
                    conn.addr(),
                    || format!("find coordinator of group {group}"),
                    c.error_message.as_ref(),
                )?;
                Ok(BrokerInfo {
                    node_id: c.node_id.0,
                    host: c.host.to_string(),
                    port: c.port,
                    rack: None,
                })
            } else {
                check(
                    resp.error_code,
                    conn.addr(),
                    || format!("find coordinator of group {group}"),
                    resp.error_message.as_ref(),
                )?;
                Ok(BrokerInfo {
                    node_id: resp.node_id.0,
                    host: resp.host.to_string(),
                    port: resp.port,
                    rack: None,
                })
            }
        })
    }

    fn coordinator(&self, group: &str) -> Result<Arc<Connection>> {
        let info = self.find_coordinator(group)?;
        if let Some(c) = lock(&self.nodes).get(&info.node_id) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let conn = Arc::new(Connection::connect(&info.addr(), &self.config.connection)?);
        lock(&self.nodes).insert(info.node_id, conn.clone());
        Ok(conn)
    }

    /// Every group on every broker.
    pub fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let md = self.refresh_metadata(Some(&[]))?;
        let mut conns = Vec::new();
        if md.brokers.is_empty() {
            conns.push(self.any_broker()?);
        }
        for b in &md.brokers {
            conns.push(self.broker(b.node_id)?);
        }
        let mut pending = Vec::new();
        for c in &conns {
            pending.push((c.clone(), c.send(&ListGroupsRequest::default())?));
        }
        let mut out: BTreeMap<String, GroupListing> = BTreeMap::new();
        for (c, f) in pending {
            let resp = f.wait()?;
            check(resp.error_code, c.addr(), || "list groups".into(), None)?;
            for g in resp.groups {
                let state = g.group_state.to_string();
                out.insert(
                    g.group_id.0.to_string(),
                    GroupListing {
                        group_id: g.group_id.0.to_string(),
                        protocol_type: g.protocol_type.to_string(),
                        state: (!state.is_empty()).then_some(state),
                    },
                );
            }
        }
        Ok(out.into_values().collect())
    }

    /// State, protocol and members (with decoded assignments) of `group`.
    pub fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        self.retrying(|| {
            let conn = self.coordinator(group)?;
            let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(sb(group))]);
            let resp = conn.call(&req)?;
            let g = resp
                .groups
                .into_iter()
                .next()
                .ok_or_else(|| Error::Decode {
                    addr: conn.addr().to_string(),
                    api: ApiKey::DescribeGroups,
                    version: 0,
                    reason: "no group in response".into(),
                })?;
            check(
                g.error_code,
                conn.addr(),
                || format!("describe group {group}"),
                g.error_message.as_ref(),
            )?;
            let consumer = g.protocol_type.as_str() == "consumer";
            let members = g
                .members
                .into_iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.map(|s| s.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: if consumer {
                        decode_assignment(m.member_assignment)
                    } else {
                        BTreeMap::new()
                    },
                })
                .collect();
            Ok(GroupDescription {
                group_id: g.group_id.0.to_string(),
                state: g.group_state.to_string(),
                protocol_type: g.protocol_type.to_string(),
                protocol: g.protocol_data.to_string(),
                members,
            })
        })
    }

    /// Delete an empty group and its committed offsets.
    pub fn delete_group(&self, group: &str) -> Result<()> {
        self.retrying(|| {
            let conn = self.coordinator(group)?;
            let resp = conn.call(
                &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(sb(group))]),
            )?;
            for r in &resp.results {
                check(
                    r.error_code,
                    conn.addr(),
                    || format!("delete group {group}"),
                    None,
                )?;
            }
            Ok(())
        })
    }

    /// Committed offsets of `group` (all topics when `topics` is `None`).
    pub fn fetch_committed(
        &self,
        group: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Result<Vec<CommittedOffset>> {
        self.retrying(|| {
            let conn = self.coordinator(group)?;
            let version = conn.version_for::<OffsetFetchRequest>()?;
            let mut req = OffsetFetchRequest::default();
            let ctx = || format!("fetch committed offsets of group {group}");
            let mut out = Vec::new();
            if version >= 8 {
                req.groups = vec![OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(sb(group)))
                    .with_topics(topics.map(|ts| {
                        ts.iter()
                            .map(|(t, ps)| {
                                OffsetFetchRequestTopics::default()
                                    .with_name(topic_name(t))
                                    .with_partition_indexes(ps.clone())
                            })
                            .collect()
                    }))];
                let resp = conn.send_version(&req, version)?.wait()?;
                for g in resp.groups {
                    check(g.error_code, conn.addr(), ctx, None)?;
                    for t in g.topics {
                        for p in t.partitions {
                            check(p.error_code, conn.addr(), ctx, None)?;
                            out.push(CommittedOffset {
                                topic: t.name.0.to_string(),
                                partition: p.partition_index,
                                offset: p.committed_offset,
                                metadata: p.metadata.map(|m| m.to_string()),
                            });
                        }
                    }
                }
            } else {
                req.group_id = GroupId(sb(group));
                req.topics = topics.map(|ts| {
                    ts.iter()
                        .map(|(t, ps)| {
                            OffsetFetchRequestTopic::default()
                                .with_name(topic_name(t))
                                .with_partition_indexes(ps.clone())
                        })
                        .collect()
                });
                let resp = conn.send_version(&req, version)?.wait()?;
                check(resp.error_code, conn.addr(), ctx, None)?;
                for t in resp.topics {
                    for p in t.partitions {
                        check(p.error_code, conn.addr(), ctx, None)?;
                        out.push(CommittedOffset {
                            topic: t.name.0.to_string(),
                            partition: p.partition_index,
                            offset: p.committed_offset,
                            metadata: p.metadata.map(|m| m.to_string()),
                        });
                    }
                }
            }
            out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            Ok(out)
        })
    }

    /// Commit offsets for `group` outside any generation (generation -1, empty member id),
    /// as `kafka-consumer-groups.sh --reset-offsets` does; the broker accepts it only while
    /// the group has no active members.
    pub fn commit_offsets(&self, group: &str, offsets: &[(String, i32, i64)]) -> Result<()> {
        let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (t, p, o) in offsets {
            by_topic.entry(t.as_str()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o),
            );
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::default())
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        self.retrying(|| {
            let conn = self.coordinator(group)?;
            let resp = conn.call(&req)?;
            for t in &resp.topics {
                for p in &t.partitions {
                    check(
                        p.error_code,
                        conn.addr(),
                        || {
                            format!(
                                "commit offset of group {group} for {}/{}",
                                t.name.0, p.partition_index
                            )
                        },
                        None,
                    )?;
                }
            }
            Ok(())
        })
    }
}

fn retriable(e: &Error) -> bool {
    match e {
        Error::Kafka { error, .. } => {
            error.is_retriable()
                || matches!(
                    error,
                    ResponseError::CoordinatorLoadInProgress | ResponseError::NotCoordinator
                )
        }
        Error::NoLeader { .. } => true,
        _ => false,
    }
}

/// A Produce request of one encoded batch for `conn`'s negotiated version (topic name up to
/// v12, topic id from v13), returned with that version for [`Connection::send_version`],
/// [`Connection::send_to`] or, with acks=0, [`Connection::send_oneway`].
pub fn build_produce_request(
    conn: &Connection,
    topic: &str,
    topic_id: Uuid,
    partition: i32,
    batch: Bytes,
    opts: &ProduceOptions,
) -> Result<(ProduceRequest, i16)> {
    let version = conn.version_for::<ProduceRequest>()?;
    let mut td =
        TopicProduceData::default().with_partition_data(vec![PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(batch))]);
    if version >= 13 {
        td.topic_id = topic_id;
    } else {
        td.name = topic_name(topic);
    }
    let req = ProduceRequest::default()
        .with_acks(opts.acks.code())
        .with_timeout_ms(opts.timeout.as_millis().min(i32::MAX as u128) as i32)
        .with_topic_data(vec![td]);
    Ok((req, version))
}

/// Decode a `consumer` protocol assignment; anything unreadable yields an empty map (the
/// assignment is informational in `group describe`).
fn decode_assignment(mut b: Bytes) -> BTreeMap<String, Vec<i32>> {
    let mut out = BTreeMap::new();
    if b.len() < 2 {
        return out;
    }
    let version = i16::from_be_bytes([b[0], b[1]]);
    let _ = bytes::Buf::get_i16(&mut b);
    let version = version.clamp(0, 3);
    if let Ok(a) = ConsumerProtocolAssignment::decode(&mut b, version) {
        for tp in a.assigned_partitions {
            out.entry(tp.topic.0.to_string())
                .or_insert_with(Vec::new)
                .extend(tp.partitions);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn assignment_round_trip() {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![0, 2]),
        ]);
        let mut buf = bytes::BytesMut::new();
        bytes::BufMut::put_i16(&mut buf, 1);
        a.encode(&mut buf, 1).unwrap();
        let m = decode_assignment(buf.freeze());
        assert_eq!(m.get("t"), Some(&vec![0, 2]));
        assert!(decode_assignment(Bytes::from_static(b"\x00")).is_empty());
    }

    #[test]
    fn offset_spec_wire_values() {
        assert_eq!(OffsetSpec::Earliest.wire(), -2);
        assert_eq!(OffsetSpec::Latest.wire(), -1);
        assert_eq!(OffsetSpec::Timestamp(5).wire(), 5);
    }
}
