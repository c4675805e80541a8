//! The group coordinator: Kafka's classic group protocol and KIP-848 consumer groups.
//!
//! Split as `STYLE.md` asks ("pure cores, thin drivers"):
//! - [`coordinator`] is a sans-IO state machine: requests, `now_ms` and ticks go in;
//!   responses (some deferred, keyed by a [`Token`]), records to append and deadlines come out.
//! - [`consumer`] is the KIP-848 consumer-group state machine (ConsumerGroupHeartbeat,
//!   server-side assignors, revocation before reassignment), also sans-IO.
//! - [`records`] encodes and decodes Kafka's own `__consumer_offsets` key/value schemas, so
//!   Kafka tools can read what Sluice writes and state can be rebuilt from the log.
//! - [`driver`] is what is specific to groups around the generic `crate::coordinator::Host`
//!   (which loads the coordinators of this shard's `__consumer_offsets` partitions and
//!   appends their records): deferred responses, the tick task, consumer lag.
//!
//! A group lives on partition `abs(java_hash(group_id)) % partitions` of `__consumer_offsets`,
//! exactly as Kafka places it, and its coordinator runs on that partition's owner shard.

pub mod consumer;
pub mod coordinator;
pub mod driver;
pub mod offsets;
pub mod records;

/// Where a group id lands, shared with transactional ids (see `crate::coordinator`).
pub use crate::coordinator::partition_for;
pub use coordinator::{Coordinator, CoordinatorConfig, Effects, GroupState, Token};

use crate::coordinator::InternalTopic;

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Partitions of `__consumer_offsets` (Kafka's `offsets.topic.num.partitions` default).
pub const OFFSETS_TOPIC_PARTITIONS: i32 = 50;
/// Segment size of `__consumer_offsets` (Kafka's `offsets.topic.segment.bytes` default).
pub const OFFSETS_TOPIC_SEGMENT_BYTES: i64 = 100 * 1024 * 1024;

const _: () = assert!(OFFSETS_TOPIC_PARTITIONS > 0);

/// `__consumer_offsets` as the coordinator host creates and routes to it.
pub const OFFSETS: InternalTopic = InternalTopic {
    name: OFFSETS_TOPIC,
    partitions: OFFSETS_TOPIC_PARTITIONS,
    segment_bytes: OFFSETS_TOPIC_SEGMENT_BYTES as u64,
};
