//! What the command line hands to the configuration: every `sluice start` flag as optional
//! text, so config never depends on how (or with which library) the arguments were parsed.

use std::path::PathBuf;

/// What the command line says about the broker's settings, before validation.
///
/// The binary (`src/main.rs`) fills it from the flags of `sluice start`; config does not know
/// how they were parsed. Values stay text so [`super::resolve`] validates them with the same rules,
/// and names them in errors the same way, as values from the file and the environment. Every
/// field is optional so the file and the environment can fill the gaps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--config`: the TOML config file (else `SLUICE_CONFIG`).
    pub config: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--kafka-addr`.
    pub kafka_addr: Option<String>,
    /// `--advertised-addr`.
    pub advertised_addr: Option<String>,
    /// `--admin-addr`.
    pub admin_addr: Option<String>,
    /// `--cores`.
    pub cores: Option<String>,
    /// `--cpuset`.
    pub cpuset: Option<String>,
    /// `--node-id`.
    pub node_id: Option<String>,
    /// `--memory`.
    pub memory: Option<String>,
    /// `--max-request-bytes`.
    pub max_request_bytes: Option<String>,
    /// `--max-connections`.
    pub max_connections: Option<String>,
    /// `--slow-request-ms`.
    pub slow_request_ms: Option<String>,
    /// `--auto-create-topics`.
    pub auto_create_topics: Option<String>,
    /// `--default-partitions`.
    pub default_partitions: Option<String>,
    /// `--group-initial-rebalance-delay-ms`.
    pub group_initial_rebalance_delay_ms: Option<String>,
    /// `--group-consumer-session-timeout-ms`.
    pub group_consumer_session_timeout_ms: Option<String>,
    /// `--group-consumer-heartbeat-interval-ms`.
    pub group_consumer_heartbeat_interval_ms: Option<String>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--io-memory`.
    pub io_memory: Option<String>,
    /// `--cleaner-io-bytes-per-sec`.
    pub cleaner_io_bytes_per_sec: Option<String>,
    /// `--production`: refuse to start when a host check FAILs (command line only).
    pub production: bool,
}
