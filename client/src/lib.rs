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
//!   and helpers for topics, configs, produce/fetch, offsets and consumer groups.

mod client;
mod connection;
mod error;
mod records;

pub use client::{
    build_produce_request, Acks, BrokerInfo, Client, ClientConfig, ClusterInfo, ClusterMetadata,
    CommittedOffset, ConfigEntry, ConfigResource, FetchOptions, FetchResult, GroupDescription,
    GroupListing, GroupMember, NewTopic, OffsetSpec, PartitionInfo, PartitionOffset,
    ProduceOptions, ProduceResult, TopicInfo,
};
pub use connection::{
    api_key_of, pick_version, BrokerVersions, Completion, Connection, ConnectionConfig, InFlight,
    VersionSpan,
};
pub use error::{describe_io, Error, Result};
pub use kafka_protocol::records::Compression;
pub use records::{decode_fetched, encode_batch, now_ms, ConsumedRecord, ProduceRecord};
