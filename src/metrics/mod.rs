//! Latency you can see: per-shard HDR histograms and counters, merged at scrape time (the
//! admin HTTP API that exposes them is `net::admin`).
//!
//! Each shard records into its own thread-local [`registry::ShardMetrics`] without locks;
//! recording is an array index and a histogram increment, no allocation after warm-up. A
//! scrape asks every shard for a [`registry::Snapshot`] over the mesh and merges them.

pub mod histogram;
pub mod prometheus;
pub mod registry;

pub use registry::{record, Snapshot, Stage};
