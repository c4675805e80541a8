//! One typed broker configuration, merged from four sources.
//!
//! Precedence, lowest first: built-in defaults < TOML file (`--config PATH`) < environment
//! (`SLUICE_<NAME>`) < command-line flags. Every source is first reduced to raw text with its
//! origin, then parsed and validated by the same function, so an error names the flag, the TOML
//! key, the value and where it came from, whatever the source.
//!
//! The command line is parsed by the binary (`src/main.rs`) and arrives as [`Overrides`];
//! clap's own `env` support is not used: the environment is passed in as a function so tests
//! never depend on the process environment.
//!
//! Where things are: this file holds the resolved [`Config`] the broker runs with, its
//! defaults and its errors; [`overrides`] what the command line hands in; [`mod@file`] the TOML
//! file; [`mod@env`] the process environment; `settings` the name of every setting in each
//! source; `resolve` the merge; `cpus` the choice of shard CPUs; `values` the rules each
//! value must follow. Sizes and CPU lists are spelled as [`crate::util::units`] parses them.

pub mod env;
pub mod file;
pub mod overrides;

mod cpus;
mod resolve;
mod settings;
mod values;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::util::units::{GIB_BYTES, MIB_BYTES};

pub use cpus::cpus_available;
pub use env::process_env;
pub use file::{FileConfig, FileSize};
pub use overrides::Overrides;
pub use resolve::{resolve, resolve_with};

/// Default data directory, relative so `cargo run` works from a checkout.
pub const DATA_DIR_DEFAULT: &str = "./data";
/// Default Kafka listener: loopback, the standard Kafka port.
pub const KAFKA_ADDR_DEFAULT: &str = "127.0.0.1:9092";
/// Default admin HTTP listener (metrics, health), the port Redpanda users expect.
pub const ADMIN_ADDR_DEFAULT: &str = "127.0.0.1:9644";
/// Default memory budget of each shard.
pub const MEMORY_PER_SHARD_BYTES_DEFAULT: u64 = GIB_BYTES;
/// Smallest memory budget a shard can run with (caches, buffers, in-flight requests).
pub const MEMORY_PER_SHARD_BYTES_MIN: u64 = 64 * MIB_BYTES;
/// Default registered io_uring buffer memory of each shard.
pub const IO_MEMORY_PER_SHARD_BYTES_DEFAULT: u64 = 8 * MIB_BYTES;
/// Default largest request frame; larger frames close the connection (Kafka's
/// `socket.request.max.bytes` default).
pub const MAX_REQUEST_BYTES_DEFAULT: u64 = 100 * MIB_BYTES;
/// Largest request frame the Kafka wire format can express (the size prefix is an `i32`).
pub const MAX_REQUEST_BYTES_LIMIT: u64 = i32::MAX as u64;
/// Default limit on open client connections per broker.
pub const MAX_CONNECTIONS_DEFAULT: usize = 10_000;
/// Default threshold above which a request is logged with its stage breakdown.
pub const SLOW_REQUEST_MS_DEFAULT: usize = 1_000;
/// Default `num.partitions` for auto-created topics.
pub const DEFAULT_PARTITIONS_DEFAULT: i32 = 1;
/// Default `group.initial.rebalance.delay.ms` (Kafka's default).
pub const GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT: i32 = 3000;
/// Default `group.consumer.session.timeout.ms` (Kafka's default).
pub const GROUP_CONSUMER_SESSION_TIMEOUT_MS_DEFAULT: i32 = 45_000;
/// Default `group.consumer.heartbeat.interval.ms` (Kafka's default).
pub const GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS_DEFAULT: i32 = 5_000;
/// Default tracing filter.
pub const LOG_LEVEL_DEFAULT: &str = "info";
/// Default cleaner I/O budget of each shard (read plus written bytes per second), so
/// compaction never competes with produce for the whole disk. 8 MiB/s keeps acks=all
/// produce p99 within 20% of a run without cleaning at 5 MB/s into a compacted topic, where
/// 64 MiB/s doubled it (docs/benchmarks.md, "The cleaner and produce latency").
pub const CLEANER_IO_BYTES_PER_SEC_DEFAULT: u64 = 8 * MIB_BYTES;

const _: () = assert!(MEMORY_PER_SHARD_BYTES_DEFAULT >= MEMORY_PER_SHARD_BYTES_MIN);
const _: () = assert!(IO_MEMORY_PER_SHARD_BYTES_DEFAULT < MEMORY_PER_SHARD_BYTES_MIN);
const _: () = assert!(MAX_REQUEST_BYTES_DEFAULT <= MAX_REQUEST_BYTES_LIMIT);

/// The validated configuration a broker starts from; every field is final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Directory holding partition logs, Raft state and the `.lock` file.
    pub data_dir: PathBuf,
    /// Address every shard's Kafka listener binds (with SO_REUSEPORT).
    pub kafka_addr: SocketAddr,
    /// Host clients are told to connect to in Metadata responses.
    pub advertised_host: String,
    /// Port clients are told to connect to in Metadata responses.
    pub advertised_port: u16,
    /// Address of the admin HTTP API (metrics, health).
    pub admin_addr: SocketAddr,
    /// CPU ids to pin one shard each to: non-empty, sorted, deduplicated.
    pub cores: Vec<usize>,
    /// This broker's id in the cluster (Kafka `node.id`), never negative.
    pub node_id: i32,
    /// Memory budget of each shard.
    pub memory_per_shard_bytes: u64,
    /// Registered io_uring buffer memory of each shard (needs RLIMIT_MEMLOCK).
    pub io_memory_per_shard_bytes: usize,
    /// Largest request frame accepted; a larger frame closes the connection.
    pub max_request_bytes: usize,
    /// Open client connections allowed per broker.
    pub max_connections: usize,
    /// Requests slower than this are logged once with their stage breakdown.
    pub slow_request_ms: u64,
    /// Whether Metadata and Produce for unknown topics create them.
    pub auto_create_topics: bool,
    /// Partition count of auto-created topics (Kafka `num.partitions`).
    pub default_partitions: i32,
    /// How long the first rebalance of an empty consumer group waits for more members
    /// (Kafka `group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay_ms: i64,
    /// How long a KIP-848 consumer-group member may go without a heartbeat before it is
    /// removed (Kafka `group.consumer.session.timeout.ms`).
    pub group_consumer_session_timeout_ms: i64,
    /// How often KIP-848 members are told to heartbeat (Kafka
    /// `group.consumer.heartbeat.interval.ms`); below the session timeout.
    pub group_consumer_heartbeat_interval_ms: i32,
    /// Tracing filter directive; `RUST_LOG`, when set, has already replaced the configured one.
    pub log_level: String,
    /// Bytes per second the log cleaner of each shard may read and write; 0 is unlimited.
    pub cleaner_io_bytes_per_sec: u64,
    /// Refuse to start when a host tuning check FAILs (`--production`).
    pub production: bool,
}

/// Why a configuration could not be built; every variant names the setting or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file given with `--config` could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    ReadFile {
        /// The file that could not be read.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The config file is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("invalid config file {}: {source}", path.display())]
    ParseFile {
        /// The file at fault.
        path: PathBuf,
        /// The parser's reason, with line and column.
        source: Box<toml::de::Error>,
    },
    /// One setting has a value that does not parse or is out of range.
    #[error("invalid value for {flag} ({key} = {value:?}, from {origin}): {reason}")]
    Invalid {
        /// The command-line flag of the setting, e.g. `--cpuset`.
        flag: &'static str,
        /// The TOML key of the setting, e.g. `cpuset`.
        key: &'static str,
        /// The value as it was given.
        value: String,
        /// Where the value came from.
        origin: Origin,
        /// What is wrong with it.
        reason: String,
    },
    /// Two settings that exclude each other were both given in the same source.
    #[error("{first} and {second} are mutually exclusive but both are set in {origin}")]
    Conflict {
        /// The first setting's flag.
        first: &'static str,
        /// The second setting's flag.
        second: &'static str,
        /// The source that sets both.
        origin: Origin,
    },
    /// The process's CPU affinity mask could not be read, so shard CPUs cannot be chosen.
    #[error("cannot read the CPU affinity of this process: {0}")]
    Affinity(std::io::Error),
}

/// Where a setting's value came from, so errors can point at the right place to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag.
    Flag,
    /// An environment variable, by name.
    Env(&'static str),
    /// The TOML config file, by path.
    File(PathBuf),
}

impl Origin {
    /// Higher wins: flags over environment over file.
    fn rank(&self) -> u8 {
        match self {
            Origin::Flag => 3,
            Origin::Env(_) => 2,
            Origin::File(_) => 1,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag => write!(f, "the command line"),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
        }
    }
}
