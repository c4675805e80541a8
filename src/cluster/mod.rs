//! Cluster state: the metadata image every shard reads, the controller that changes it, and
//! the partitions each shard owns.
//!
//! On a single node the controller is a task on shard 0 that persists topics to
//! `<data>/__cluster/metadata.json` and broadcasts each new immutable image to every shard.
//! When the controller becomes Raft group 0, only `controller.rs` and `store.rs` change.

pub mod controller;
pub mod image;
pub mod partitions;
pub mod store;
pub mod topic_config;

pub use image::{MetadataImage, TopicMeta};
pub use partitions::{shard_for, Partition};
pub use topic_config::TopicConfig;
