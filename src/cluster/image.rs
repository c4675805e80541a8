//! The metadata image: an immutable snapshot of topics that every shard holds a copy of.
//!
//! Shards never share mutable metadata: the controller builds a new image for every change
//! and sends it to each shard, which swaps its `Arc` in one step.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::partition::topic_config::TopicConfig;

/// One topic as the cluster knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    /// The topic name.
    pub name: String,
    /// The topic id (KIP-516); a re-created topic gets a new one.
    pub id: Uuid,
    /// Number of partitions, numbered 0..partitions.
    pub partitions: i32,
    /// Explicitly set configs; the rest are defaults.
    pub configs: BTreeMap<String, String>,
    /// Whether the topic is internal (`__consumer_offsets`, ...).
    #[serde(default)]
    pub internal: bool,
}

impl TopicMeta {
    /// Whether `index` names one of this topic's partitions.
    pub fn has_partition(&self, index: i32) -> bool {
        (0..self.partitions).contains(&index)
    }

    /// The effective typed config of this topic.
    pub fn config(&self) -> TopicConfig {
        TopicConfig::from_entries(&self.configs)
    }
}

/// All topics, by name. Cheap to clone via `Arc`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MetadataImage {
    /// Incremented by every change; lets shards ignore stale images.
    pub version: u64,
    /// The cluster id reported in Metadata and DescribeCluster, fixed at first start.
    #[serde(default)]
    pub cluster_id: String,
    /// The first producer id not yet handed out (ids are allocated in blocks).
    #[serde(default)]
    pub next_producer_id: i64,
    /// Topics by name.
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
}

impl MetadataImage {
    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMeta>> {
        self.topics.get(name)
    }

    /// A topic by id (Fetch v13+, DeleteTopics v6+).
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicMeta>> {
        self.topics.values().find(|t| &t.id == id)
    }
}
