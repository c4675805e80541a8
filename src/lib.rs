//! Sluice: a Kafka-protocol broker for latency-critical workloads.
//!
//! The crate is laid out as `../shared/DESIGN.md` describes: `runtime` starts one glommio
//! shard per core, `net` owns connections, `kafka` maps Kafka APIs onto partitions, `cluster`
//! keeps the metadata image and the partitions each shard owns, `coordinator` runs the group
//! and transaction state machines on their partitions' leaders, `raft` is the replicated-log
//! seam every partition writes through, and `storage` is the on-disk log.

pub mod client;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod groups;
pub mod iotune;
pub mod kafka;
pub mod metrics;
pub mod net;
pub mod partition;
pub mod raft;
pub mod server;
pub mod storage;
pub mod tune;
pub mod txn;
pub mod util;
