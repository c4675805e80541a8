//! Sluice: a Kafka-protocol broker for latency-critical workloads.
//!
//! The modules form one dependency order, lowest first: `util` < `metrics` < `config` <
//! `storage` < `raft` < `partition` < `cluster` < `coordinator` < `groups` < `txn` <
//! `kafka` < `net` < `server` < `tune`. Each uses only the modules before it
//! (`tests/layering.rs` enforces it, `docs/architecture.md` draws it). The Kafka client the
//! tools and the benchmark use is its own crate, `sluice-client` (`client/`).

/// Metadata image, controller, shards and the mesh between them, partition tables.
pub mod cluster;
/// The broker's resolved configuration: defaults < file < environment < flags.
pub mod config;
/// The generic host that runs a sans-IO coordinator on its partition's leader.
pub mod coordinator;
/// Consumer groups: the sans-IO coordinator and its records on `__consumer_offsets`.
pub mod groups;
/// Kafka API glue: versions, dispatch, one handler per API.
pub mod kafka;
/// Per-shard HDR histograms and counters, Prometheus rendering.
pub mod metrics;
/// The Kafka listener and connections; the admin HTTP API.
pub mod net;
/// `Partition`: the replicated log with its producer state, transaction index, snapshots.
pub mod partition;
/// The replicated-log seam every partition writes through (a one-voter Raft group today).
pub mod raft;
/// Start-up and shutdown.
pub mod server;
/// The partition log on disk: segments, appender, reads, indexes, recovery, retention.
pub mod storage;
/// `sluice tune` and `sluice iotune`: host checks and disk measurement.
pub mod tune;
/// Transactions: the coordinator on `__transaction_state` and commit/abort markers.
pub mod txn;
/// Clock, offset/epoch newtypes, units, shard-local sync primitives.
pub mod util;
