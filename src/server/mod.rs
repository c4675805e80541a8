//! Start-up and shutdown: the one place that knows every layer below it.
//!
//! It checks the host (data-directory lock, free ports, RLIMIT_MEMLOCK/NOFILE), loads the
//! metadata image, starts one pinned glommio shard per core joined by the channel mesh, opens
//! and recovers each shard's partitions, starts the coordinators and listeners, and drains
//! and flushes everything on SIGINT/SIGTERM.

pub mod limits;
pub mod start;

pub use start::{run, HostCheck, HostCheckError};
