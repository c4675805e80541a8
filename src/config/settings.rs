//! The name of every setting in each source: flag, environment variable and TOML key. One
//! table, so an error can name all three and the sources cannot drift apart.

/// Names of one setting in each source, so every error can name all of them.
pub(super) struct Setting {
    /// The command-line flag, e.g. `--cpuset`.
    pub(super) flag: &'static str,
    /// The environment variable, e.g. `SLUICE_CPUSET`.
    pub(super) env: &'static str,
    /// The TOML key, e.g. `cpuset`.
    pub(super) key: &'static str,
}

pub(super) const DATA_DIR: Setting = setting("--data-dir", "SLUICE_DATA_DIR", "data_dir");
pub(super) const KAFKA_ADDR: Setting = setting("--kafka-addr", "SLUICE_KAFKA_ADDR", "kafka_addr");
pub(super) const ADVERTISED_ADDR: Setting = setting(
    "--advertised-addr",
    "SLUICE_ADVERTISED_ADDR",
    "advertised_addr",
);
pub(super) const ADMIN_ADDR: Setting = setting("--admin-addr", "SLUICE_ADMIN_ADDR", "admin_addr");
pub(super) const CORES: Setting = setting("--cores", "SLUICE_CORES", "cores");
pub(super) const CPUSET: Setting = setting("--cpuset", "SLUICE_CPUSET", "cpuset");
pub(super) const NODE_ID: Setting = setting("--node-id", "SLUICE_NODE_ID", "node_id");
pub(super) const MEMORY: Setting = setting("--memory", "SLUICE_MEMORY", "memory");
pub(super) const MAX_REQUEST_BYTES: Setting = setting(
    "--max-request-bytes",
    "SLUICE_MAX_REQUEST_BYTES",
    "max_request_bytes",
);
pub(super) const MAX_CONNECTIONS: Setting = setting(
    "--max-connections",
    "SLUICE_MAX_CONNECTIONS",
    "max_connections",
);
pub(super) const SLOW_REQUEST_MS: Setting = setting(
    "--slow-request-ms",
    "SLUICE_SLOW_REQUEST_MS",
    "slow_request_ms",
);
pub(super) const AUTO_CREATE_TOPICS: Setting = setting(
    "--auto-create-topics",
    "SLUICE_AUTO_CREATE_TOPICS",
    "auto_create_topics",
);
pub(super) const DEFAULT_PARTITIONS: Setting = setting(
    "--default-partitions",
    "SLUICE_DEFAULT_PARTITIONS",
    "default_partitions",
);
pub(super) const GROUP_INITIAL_REBALANCE_DELAY_MS: Setting = setting(
    "--group-initial-rebalance-delay-ms",
    "SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS",
    "group_initial_rebalance_delay_ms",
);
pub(super) const GROUP_CONSUMER_SESSION_TIMEOUT_MS: Setting = setting(
    "--group-consumer-session-timeout-ms",
    "SLUICE_GROUP_CONSUMER_SESSION_TIMEOUT_MS",
    "group_consumer_session_timeout_ms",
);
pub(super) const GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS: Setting = setting(
    "--group-consumer-heartbeat-interval-ms",
    "SLUICE_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS",
    "group_consumer_heartbeat_interval_ms",
);
pub(super) const LOG_LEVEL: Setting = setting("--log-level", "SLUICE_LOG_LEVEL", "log_level");
pub(super) const IO_MEMORY: Setting = setting("--io-memory", "SLUICE_IO_MEMORY", "io_memory");
pub(super) const CLEANER_IO_BYTES_PER_SEC: Setting = setting(
    "--cleaner-io-bytes-per-sec",
    "SLUICE_CLEANER_IO_BYTES_PER_SEC",
    "cleaner_io_bytes_per_sec",
);

const fn setting(flag: &'static str, env: &'static str, key: &'static str) -> Setting {
    Setting { flag, env, key }
}
