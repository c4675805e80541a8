//! Cluster state: the metadata image every shard reads, the controller that changes it, and
//! the partitions each shard owns.
//!
//! On a single node the controller is a task on shard 0 that persists topics to
//! `<data>/__cluster/metadata.json` and broadcasts each new immutable image to every shard.
//! When the controller becomes Raft group 0, only `controller.rs` and `store.rs` change.

pub mod barrier;
pub mod controller;
pub mod image;
pub mod mesh;
pub mod partitions;
pub mod producer_ids;
pub mod scatter;
pub mod services;
pub mod shard;
pub mod store;

pub use image::{MetadataImage, TopicMeta};
pub use partitions::shard_for;
pub use shard::Shard;
