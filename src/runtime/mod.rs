//! Shards: one glommio executor per core, the cross-shard mesh and start-up/shutdown.
//!
//! Every shard runs the same loop: accept connections on the shared (SO_REUSEPORT) Kafka
//! port, serve the partitions it owns, and answer closures other shards send it over the
//! channel mesh. Nothing mutable is shared between shards.

pub mod barrier;
pub mod limits;
pub mod mesh;
pub mod notify;
pub mod shard;
pub mod start;

pub use shard::Shard;
pub use start::{run, HostCheck, HostCheckError};
