//! A small blocking, pipelined Kafka client used by `sluice-bench` and `sluicectl` (never by
//! the broker itself, which is why it is a crate of its own: the broker does not compile it).
//!
//! It exists so the benchmark measures the broker rather than a client library's batching
//! and threading, and so the operator tool has no C dependency. It speaks the Kafka protocol
//! through the `kafka-protocol` crate and works against any Kafka-protocol broker:
//!
//! - [`Connection`]: one TCP connection, versions negotiated with ApiVersions at connect,
//!   requests pipelined and matched to responses by correlation id on a reader thread.
//! - [`Client`]: bootstrap, Metadata, routing to partition leaders and group coordinators,
//!   and helpers for topics, configs, produce/fetch, offsets and consumer groups (one file
//!   per concept: `metadata`, `topics`, `produce`, `fetch`, `groups`).

mod client;
mod connection;
mod error;
mod fetch;
mod groups;
mod metadata;
mod produce;
mod records;
mod topics;

pub use client::{Client, ClientConfig};
pub use connection::{
    api_key_of, pick_version, BrokerVersions, Completion, Connection, ConnectionConfig, InFlight,
    VersionSpan,
};
pub use error::{describe_io, Error, Result};
pub use fetch::{FetchOptions, FetchResult, OffsetSpec, PartitionOffset};
pub use groups::{CommittedOffset, GroupDescription, GroupListing, GroupMember};
pub use kafka_protocol::records::Compression;
pub use metadata::{BrokerInfo, ClusterInfo, ClusterMetadata, PartitionInfo, TopicInfo};
pub use produce::{build_produce_request, Acks, ProduceOptions, ProduceResult};
pub use records::{decode_fetched, encode_batch, now_ms, ConsumedRecord, ProduceRecord};
pub use topics::{ConfigEntry, ConfigResource, NewTopic};
