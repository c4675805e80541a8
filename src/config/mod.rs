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

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::util::units::{
    format_cpuset, parse_cpuset, parse_size_bytes, CPU_ID_MAX, GIB_BYTES, MIB_BYTES,
};

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
/// Default tracing filter.
pub const LOG_LEVEL_DEFAULT: &str = "info";

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
    /// Tracing filter directive; `RUST_LOG`, when set, has already replaced the configured one.
    pub log_level: String,
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

/// What the command line says about the broker's settings, before validation.
///
/// The binary (`src/main.rs`) fills it from the flags of `sluice start`; config does not know
/// how they were parsed. Values stay text so [`resolve`] validates them with the same rules,
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
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--io-memory`.
    pub io_memory: Option<String>,
    /// `--production`: refuse to start when a host check FAILs (command line only).
    pub production: bool,
}

/// The TOML config file: the same settings as the flags, keys in snake_case.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// See `--kafka-addr`.
    pub kafka_addr: Option<String>,
    /// See `--advertised-addr`.
    pub advertised_addr: Option<String>,
    /// See `--admin-addr`.
    pub admin_addr: Option<String>,
    /// See `--cores`.
    pub cores: Option<u64>,
    /// See `--cpuset`.
    pub cpuset: Option<String>,
    /// See `--node-id`.
    pub node_id: Option<i64>,
    /// See `--memory`; an integer (bytes) or a string with a unit.
    pub memory: Option<FileSize>,
    /// See `--max-request-bytes`.
    pub max_request_bytes: Option<FileSize>,
    /// See `--max-connections`.
    pub max_connections: Option<u64>,
    /// See `--slow-request-ms`.
    pub slow_request_ms: Option<u64>,
    /// See `--auto-create-topics`.
    pub auto_create_topics: Option<bool>,
    /// See `--default-partitions`.
    pub default_partitions: Option<i64>,
    /// See `--group-initial-rebalance-delay-ms`.
    pub group_initial_rebalance_delay_ms: Option<i64>,
    /// See `--log-level`.
    pub log_level: Option<String>,
    /// See `--io-memory`.
    pub io_memory: Option<FileSize>,
}

/// A size in the config file: `memory = 1073741824` or `memory = "1GiB"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum FileSize {
    /// A plain number of bytes.
    Bytes(u64),
    /// A number with a unit, parsed like the flag.
    Text(String),
}

impl FileConfig {
    /// Reads and parses a config file; errors name the file (and the line, for bad TOML).
    pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }
}

/// Names of one setting in each source, so every error can name all of them.
struct Setting {
    flag: &'static str,
    env: &'static str,
    key: &'static str,
}

const DATA_DIR: Setting = setting("--data-dir", "SLUICE_DATA_DIR", "data_dir");
const KAFKA_ADDR: Setting = setting("--kafka-addr", "SLUICE_KAFKA_ADDR", "kafka_addr");
const ADVERTISED_ADDR: Setting = setting(
    "--advertised-addr",
    "SLUICE_ADVERTISED_ADDR",
    "advertised_addr",
);
const ADMIN_ADDR: Setting = setting("--admin-addr", "SLUICE_ADMIN_ADDR", "admin_addr");
const CORES: Setting = setting("--cores", "SLUICE_CORES", "cores");
const CPUSET: Setting = setting("--cpuset", "SLUICE_CPUSET", "cpuset");
const NODE_ID: Setting = setting("--node-id", "SLUICE_NODE_ID", "node_id");
const MEMORY: Setting = setting("--memory", "SLUICE_MEMORY", "memory");
const MAX_REQUEST_BYTES: Setting = setting(
    "--max-request-bytes",
    "SLUICE_MAX_REQUEST_BYTES",
    "max_request_bytes",
);
const MAX_CONNECTIONS: Setting = setting(
    "--max-connections",
    "SLUICE_MAX_CONNECTIONS",
    "max_connections",
);
const SLOW_REQUEST_MS: Setting = setting(
    "--slow-request-ms",
    "SLUICE_SLOW_REQUEST_MS",
    "slow_request_ms",
);
const AUTO_CREATE_TOPICS: Setting = setting(
    "--auto-create-topics",
    "SLUICE_AUTO_CREATE_TOPICS",
    "auto_create_topics",
);
const DEFAULT_PARTITIONS: Setting = setting(
    "--default-partitions",
    "SLUICE_DEFAULT_PARTITIONS",
    "default_partitions",
);
const GROUP_INITIAL_REBALANCE_DELAY_MS: Setting = setting(
    "--group-initial-rebalance-delay-ms",
    "SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS",
    "group_initial_rebalance_delay_ms",
);
const LOG_LEVEL: Setting = setting("--log-level", "SLUICE_LOG_LEVEL", "log_level");
const IO_MEMORY: Setting = setting("--io-memory", "SLUICE_IO_MEMORY", "io_memory");
/// Environment variable naming the config file when `--config` is absent.
const CONFIG_ENV: &str = "SLUICE_CONFIG";
/// The standard tracing filter variable; it wins over `--log-level`.
const RUST_LOG_ENV: &str = "RUST_LOG";

const fn setting(flag: &'static str, env: &'static str, key: &'static str) -> Setting {
    Setting { flag, env, key }
}

/// A setting's value as text, with the source it won from.
#[derive(Clone)]
struct Raw {
    text: String,
    origin: Origin,
}

/// Picks the highest-precedence source of one setting: flag, then environment, then file.
fn pick(
    setting: &Setting,
    flag: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    file: Option<String>,
    file_path: Option<&Path>,
) -> Option<Raw> {
    if let Some(text) = flag {
        return Some(Raw {
            text,
            origin: Origin::Flag,
        });
    }
    if let Some(text) = env(setting.env) {
        return Some(Raw {
            text,
            origin: Origin::Env(setting.env),
        });
    }
    let path = file_path?;
    file.map(|text| Raw {
        text,
        origin: Origin::File(path.to_path_buf()),
    })
}

/// Parses a picked value with `parse`, or returns `default`; errors name the setting.
fn parse_or<T>(
    setting: &Setting,
    raw: Option<Raw>,
    parse: impl FnOnce(&str) -> Result<T, String>,
    default: T,
) -> Result<T, ConfigError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    parse(raw.text.trim()).map_err(|reason| invalid(setting, raw, reason))
}

fn invalid(setting: &Setting, raw: Raw, reason: String) -> ConfigError {
    ConfigError::Invalid {
        flag: setting.flag,
        key: setting.key,
        value: raw.text,
        origin: raw.origin,
        reason,
    }
}

fn file_size_text(size: Option<FileSize>) -> Option<String> {
    size.map(|size| match size {
        FileSize::Bytes(bytes) => bytes.to_string(),
        FileSize::Text(text) => text,
    })
}

/// Reads the real process environment; `sluice start` passes it to [`resolve`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}

/// Merges the command line's overrides with the environment and the config file they name,
/// and validates.
pub fn resolve(
    args: Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let file_path = args
        .config
        .clone()
        .or_else(|| env(CONFIG_ENV).map(PathBuf::from));
    let file = match &file_path {
        Some(path) => Some((path.clone(), FileConfig::read(path)?)),
        None => None,
    };
    let cpus_available = cpus_available()?;
    resolve_with(args, file, env, &cpus_available)
}

/// Merges and validates with everything from outside passed in: the parsed config file and
/// its path, the environment, and the CPUs this process may run on.
pub fn resolve_with(
    args: Overrides,
    file: Option<(PathBuf, FileConfig)>,
    env: &dyn Fn(&str) -> Option<String>,
    cpus_available: &[usize],
) -> Result<Config, ConfigError> {
    let (file_path, f) = match file {
        Some((path, config)) => (Some(path), config),
        None => (None, FileConfig::default()),
    };
    let fp = file_path.as_deref();
    let text = |p: Option<PathBuf>| p.map(|p| p.to_string_lossy().into_owned());
    let num = |n: Option<u64>| n.map(|n| n.to_string());
    let inum = |n: Option<i64>| n.map(|n| n.to_string());

    let data_dir_raw = pick(&DATA_DIR, text(args.data_dir), env, text(f.data_dir), fp);
    let data_dir = parse_or(
        &DATA_DIR,
        data_dir_raw,
        parse_data_dir,
        DATA_DIR_DEFAULT.into(),
    )?;
    let kafka_raw = pick(&KAFKA_ADDR, args.kafka_addr, env, f.kafka_addr, fp);
    let kafka_given = kafka_raw.clone();
    let kafka_addr = parse_or(
        &KAFKA_ADDR,
        kafka_raw,
        parse_socket_addr,
        default_kafka_addr(),
    )?;
    let advertised_raw = pick(
        &ADVERTISED_ADDR,
        args.advertised_addr,
        env,
        f.advertised_addr,
        fp,
    );
    let (advertised_host, advertised_port) = parse_or(
        &ADVERTISED_ADDR,
        advertised_raw,
        parse_advertised,
        advertise(kafka_addr),
    )?;
    let admin_raw = pick(&ADMIN_ADDR, args.admin_addr, env, f.admin_addr, fp);
    let admin_given = admin_raw.clone();
    let admin_addr = parse_or(
        &ADMIN_ADDR,
        admin_raw,
        parse_socket_addr,
        default_admin_addr(),
    )?;
    if admin_addr == kafka_addr && kafka_addr.port() != 0 {
        // Blame whichever was given; both defaults differ, so at least one was.
        let reason = "the kafka and admin listeners cannot share an address".to_string();
        return Err(match (admin_given, kafka_given) {
            (Some(raw), _) => invalid(&ADMIN_ADDR, raw, reason),
            (None, Some(raw)) => invalid(&KAFKA_ADDR, raw, reason),
            (None, None) => unreachable!("default kafka and admin addresses differ"),
        });
    }

    let cores_raw = pick(&CORES, args.cores, env, num(f.cores), fp);
    let cpuset_raw = pick(&CPUSET, args.cpuset, env, f.cpuset, fp);
    let cores = resolve_cores(cores_raw, cpuset_raw, cpus_available)?;

    let node_raw = pick(&NODE_ID, args.node_id, env, inum(f.node_id), fp);
    let node_id = parse_or(&NODE_ID, node_raw, |s| parse_i32_at_least(s, 0), 0)?;
    let memory_raw = pick(&MEMORY, args.memory, env, file_size_text(f.memory), fp);
    let memory_per_shard_bytes = parse_or(
        &MEMORY,
        memory_raw,
        parse_memory,
        MEMORY_PER_SHARD_BYTES_DEFAULT,
    )?;
    let io_raw = pick(
        &IO_MEMORY,
        args.io_memory,
        env,
        file_size_text(f.io_memory),
        fp,
    );
    let io_memory_per_shard_bytes = parse_or(
        &IO_MEMORY,
        io_raw,
        |s| parse_io_memory(s, memory_per_shard_bytes),
        IO_MEMORY_PER_SHARD_BYTES_DEFAULT.min(memory_per_shard_bytes / 2) as usize,
    )?;
    let max_req_raw = pick(
        &MAX_REQUEST_BYTES,
        args.max_request_bytes,
        env,
        file_size_text(f.max_request_bytes),
        fp,
    );
    let max_request_bytes = parse_or(
        &MAX_REQUEST_BYTES,
        max_req_raw,
        parse_max_request,
        MAX_REQUEST_BYTES_DEFAULT as usize,
    )?;
    let conn_raw = pick(
        &MAX_CONNECTIONS,
        args.max_connections,
        env,
        num(f.max_connections),
        fp,
    );
    let max_connections = parse_or(
        &MAX_CONNECTIONS,
        conn_raw,
        parse_count,
        MAX_CONNECTIONS_DEFAULT,
    )?;
    let slow_raw = pick(
        &SLOW_REQUEST_MS,
        args.slow_request_ms,
        env,
        num(f.slow_request_ms),
        fp,
    );
    let slow_request_ms = parse_or(
        &SLOW_REQUEST_MS,
        slow_raw,
        parse_count,
        SLOW_REQUEST_MS_DEFAULT,
    )? as u64;
    let auto_file = f.auto_create_topics.map(|b| b.to_string());
    let auto_raw = pick(
        &AUTO_CREATE_TOPICS,
        args.auto_create_topics,
        env,
        auto_file,
        fp,
    );
    let auto_create_topics = parse_or(&AUTO_CREATE_TOPICS, auto_raw, parse_bool, true)?;
    let parts_raw = pick(
        &DEFAULT_PARTITIONS,
        args.default_partitions,
        env,
        inum(f.default_partitions),
        fp,
    );
    let default_partitions = parse_or(
        &DEFAULT_PARTITIONS,
        parts_raw,
        |s| parse_i32_at_least(s, 1),
        DEFAULT_PARTITIONS_DEFAULT,
    )?;
    let delay_raw = pick(
        &GROUP_INITIAL_REBALANCE_DELAY_MS,
        args.group_initial_rebalance_delay_ms,
        env,
        inum(f.group_initial_rebalance_delay_ms),
        fp,
    );
    let group_initial_rebalance_delay_ms = i64::from(parse_or(
        &GROUP_INITIAL_REBALANCE_DELAY_MS,
        delay_raw,
        |s| parse_i32_at_least(s, 0),
        GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT,
    )?);
    let log_level = resolve_log_level(args.log_level, env, f.log_level, fp)?;

    Ok(Config {
        data_dir,
        kafka_addr,
        advertised_host,
        advertised_port,
        admin_addr,
        cores,
        node_id,
        memory_per_shard_bytes,
        io_memory_per_shard_bytes,
        max_request_bytes,
        max_connections,
        slow_request_ms,
        auto_create_topics,
        default_partitions,
        group_initial_rebalance_delay_ms,
        log_level,
        production: args.production,
    })
}

/// `RUST_LOG` wins when set and non-empty; otherwise flag > env > file > `info`.
fn resolve_log_level(
    flag: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    file: Option<String>,
    file_path: Option<&Path>,
) -> Result<String, ConfigError> {
    if let Some(rust_log) = env(RUST_LOG_ENV).filter(|s| !s.trim().is_empty()) {
        return Ok(rust_log);
    }
    let raw = pick(&LOG_LEVEL, flag, env, file, file_path);
    parse_or(&LOG_LEVEL, raw, parse_log_level, LOG_LEVEL_DEFAULT.into())
}

/// Chooses shard CPUs from `--cores` or `--cpuset`, whichever comes from the higher source.
fn resolve_cores(
    cores: Option<Raw>,
    cpuset: Option<Raw>,
    cpus_available: &[usize],
) -> Result<Vec<usize>, ConfigError> {
    let mut available = cpus_available.to_vec();
    available.sort_unstable();
    available.dedup();
    let (cores, cpuset) = match (cores, cpuset) {
        (Some(c), Some(s)) if c.origin.rank() == s.origin.rank() => {
            return Err(ConfigError::Conflict {
                first: CORES.flag,
                second: CPUSET.flag,
                origin: c.origin,
            });
        }
        (Some(c), Some(s)) if c.origin.rank() > s.origin.rank() => (Some(c), None),
        (Some(_), Some(s)) => (None, Some(s)),
        other => other,
    };
    if let Some(raw) = cpuset {
        return parse_or(
            &CPUSET,
            Some(raw),
            |s| cpuset_within(s, &available),
            Vec::new(),
        );
    }
    let count = parse_or(
        &CORES,
        cores,
        |s| cores_within(s, &available),
        available.len(),
    )?;
    if count == 0 {
        // Only reachable when the affinity mask itself is empty, which the OS does not allow.
        let raw = Raw {
            text: String::new(),
            origin: Origin::Flag,
        };
        return Err(invalid(
            &CORES,
            raw,
            "no CPUs are available to this process".into(),
        ));
    }
    Ok(available[..count].to_vec())
}

fn cores_within(text: &str, available: &[usize]) -> Result<usize, String> {
    let count = parse_count(text)?;
    if count > available.len() {
        return Err(format!(
            "only {} CPUs are available to this process ({})",
            available.len(),
            format_cpuset(available)
        ));
    }
    Ok(count)
}

fn cpuset_within(text: &str, available: &[usize]) -> Result<Vec<usize>, String> {
    let cpus = parse_cpuset(text)?;
    if let Some(cpu) = cpus
        .iter()
        .find(|cpu| available.binary_search(cpu).is_err())
    {
        return Err(format!(
            "CPU {cpu} is not available to this process (available: {})",
            format_cpuset(available)
        ));
    }
    Ok(cpus)
}

/// The CPUs this process may run on (its `sched_getaffinity` mask), sorted.
pub fn cpus_available() -> Result<Vec<usize>, ConfigError> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `set` is a valid, writable cpu_set_t of `size` bytes; pid 0 is this thread.
    let rc = unsafe { libc::sched_getaffinity(0, size, &mut set) };
    if rc != 0 {
        return Err(ConfigError::Affinity(std::io::Error::last_os_error()));
    }
    let count = CPU_ID_MAX + 1;
    // SAFETY: every id is below CPU_SETSIZE (1024), the capacity of `set`.
    let cpus: Vec<usize> = (0..count)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect();
    Ok(cpus)
}

fn parse_memory(text: &str) -> Result<u64, String> {
    let bytes = parse_size_bytes(text)?;
    if bytes < MEMORY_PER_SHARD_BYTES_MIN {
        return Err(format!(
            "{bytes} bytes is below the minimum of 64MiB ({MEMORY_PER_SHARD_BYTES_MIN} bytes)"
        ));
    }
    Ok(bytes)
}

fn parse_io_memory(text: &str, memory_per_shard_bytes: u64) -> Result<usize, String> {
    let bytes = parse_size_bytes(text)?;
    if bytes == 0 {
        return Err("must be greater than 0".into());
    }
    if bytes >= memory_per_shard_bytes {
        return Err(format!(
            "must be smaller than the shard memory (--memory = {memory_per_shard_bytes} bytes)"
        ));
    }
    usize::try_from(bytes).map_err(|_| format!("{bytes} bytes does not fit in memory"))
}

fn parse_max_request(text: &str) -> Result<usize, String> {
    let bytes = parse_size_bytes(text)?;
    if bytes == 0 {
        return Err("must be greater than 0".into());
    }
    if bytes > MAX_REQUEST_BYTES_LIMIT {
        return Err(format!(
            "{bytes} bytes exceeds the Kafka frame limit of {MAX_REQUEST_BYTES_LIMIT} bytes"
        ));
    }
    usize::try_from(bytes).map_err(|_| format!("{bytes} bytes does not fit in memory"))
}

fn parse_count(text: &str) -> Result<usize, String> {
    let count: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    if count == 0 {
        return Err("must be at least 1".into());
    }
    Ok(count)
}

fn parse_i32_at_least(text: &str, min: i32) -> Result<i32, String> {
    let value: i64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    if value < i64::from(min) {
        return Err(format!("must be at least {min}"));
    }
    i32::try_from(value).map_err(|_| format!("must be at most {}", i32::MAX))
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("{text:?} is not a boolean (use true or false)")),
    }
}

fn parse_data_dir(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(PathBuf::from(text))
}

fn parse_log_level(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("must not be empty (e.g. info, debug, sluice=trace)".into());
    }
    Ok(text.to_string())
}

/// Parses a listen address: `IP:PORT`, `[v6]:PORT`, or `HOST:PORT` resolved once at start-up.
fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, _port) = split_host_port(text)?;
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host {host:?}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("host {host:?} resolves to no address"))
}

/// Splits `HOST:PORT` or `[v6]:PORT`; the host comes back without brackets.
fn split_host_port(text: &str) -> Result<(String, u16), String> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("{text:?} is not HOST:PORT"));
    };
    let host = match host.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')
            .ok_or_else(|| format!("{text:?} has an unclosed '['"))?,
        None if host.contains(':') => {
            return Err(format!("{text:?}: write IPv6 addresses as [ADDR]:PORT"));
        }
        None => host,
    };
    if host.is_empty() {
        return Err(format!("{text:?} has no host"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port number (0-65535)"))?;
    Ok((host.to_string(), port))
}

fn parse_advertised(text: &str) -> Result<(String, u16), String> {
    let (host, port) = split_host_port(text)?;
    if port == 0 {
        return Err("clients cannot connect to port 0".into());
    }
    if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
        return Err(format!(
            "clients cannot connect to {host}; give a reachable host"
        ));
    }
    Ok((host, port))
}

/// What clients are told by default: the Kafka address, or loopback if it is a wildcard.
fn advertise(kafka_addr: SocketAddr) -> (String, u16) {
    let ip = kafka_addr.ip();
    let host = if ip.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        ip
    };
    (host.to_string(), kafka_addr.port())
}

fn default_kafka_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 9092))
}

fn default_admin_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 9644))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const CPUS: &[usize] = &[0, 1];

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// `--flag value` pairs as the command line would hand them over.
    fn args(list: &[&str]) -> Overrides {
        let mut overrides = Overrides::default();
        for pair in list.chunks(2) {
            let [flag, value] = pair else {
                panic!("{flag:?} needs a value", flag = pair[0]);
            };
            let slot = match *flag {
                "--kafka-addr" => &mut overrides.kafka_addr,
                "--advertised-addr" => &mut overrides.advertised_addr,
                "--admin-addr" => &mut overrides.admin_addr,
                "--cores" => &mut overrides.cores,
                "--cpuset" => &mut overrides.cpuset,
                "--node-id" => &mut overrides.node_id,
                "--memory" => &mut overrides.memory,
                "--max-request-bytes" => &mut overrides.max_request_bytes,
                "--max-connections" => &mut overrides.max_connections,
                "--slow-request-ms" => &mut overrides.slow_request_ms,
                "--auto-create-topics" => &mut overrides.auto_create_topics,
                "--default-partitions" => &mut overrides.default_partitions,
                "--group-initial-rebalance-delay-ms" => {
                    &mut overrides.group_initial_rebalance_delay_ms
                }
                "--log-level" => &mut overrides.log_level,
                "--io-memory" => &mut overrides.io_memory,
                other => panic!("no text flag {other}"),
            };
            *slot = Some(value.to_string());
        }
        overrides
    }

    fn with(
        list: &[&str],
        file: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let file = file.map(|text| {
            (
                PathBuf::from("/etc/sluice.toml"),
                toml::from_str(text).unwrap(),
            )
        });
        resolve_with(args(list), file, &|name| env.get(name).cloned(), CPUS)
    }

    fn err(list: &[&str], file: Option<&str>, env: &[(&str, &str)]) -> String {
        with(list, file, env).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let c = with(&[], None, &[]).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.kafka_addr, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("127.0.0.1", 9092)
        );
        assert_eq!(c.admin_addr, "127.0.0.1:9644".parse().unwrap());
        assert_eq!(c.cores, vec![0, 1]);
        assert_eq!(c.node_id, 0);
        assert_eq!(c.memory_per_shard_bytes, 1 << 30);
        assert_eq!(c.io_memory_per_shard_bytes, 8 << 20);
        assert_eq!(c.max_request_bytes, 100 << 20);
        assert_eq!(c.max_connections, 10_000);
        assert!(c.auto_create_topics);
        assert_eq!(c.default_partitions, 1);
        assert_eq!(c.log_level, "info");
    }

    #[test]
    fn precedence_file_env_flag() {
        let file = Some("node_id = 1\nmemory = \"128MiB\"\nlog_level = \"warn\"\n");
        let c = with(&[], file, &[]).unwrap();
        assert_eq!((c.node_id, c.memory_per_shard_bytes), (1, 128 << 20));
        let env = [("SLUICE_NODE_ID", "2"), ("SLUICE_MEMORY", "256MiB")];
        let c = with(&[], file, &env).unwrap();
        assert_eq!((c.node_id, c.memory_per_shard_bytes), (2, 256 << 20));
        assert_eq!(c.log_level, "warn");
        let c = with(&["--node-id", "3"], file, &env).unwrap();
        assert_eq!((c.node_id, c.memory_per_shard_bytes), (3, 256 << 20));
    }

    #[test]
    fn rust_log_wins() {
        let c = with(&["--log-level", "debug"], None, &[("RUST_LOG", "trace")]).unwrap();
        assert_eq!(c.log_level, "trace");
        let c = with(&["--log-level", "debug"], None, &[]).unwrap();
        assert_eq!(c.log_level, "debug");
    }

    #[test]
    fn advertised_defaults_follow_kafka_addr() {
        let c = with(&["--kafka-addr", "0.0.0.0:9093"], None, &[]).unwrap();
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("127.0.0.1", 9093)
        );
        let c = with(&["--kafka-addr", "[::]:9094"], None, &[]).unwrap();
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("127.0.0.1", 9094)
        );
        let c = with(&["--kafka-addr", "10.0.0.5:9092"], None, &[]).unwrap();
        assert_eq!(c.advertised_host, "10.0.0.5");
        let c = with(&["--advertised-addr", "broker-1.example:19092"], None, &[]).unwrap();
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("broker-1.example", 19092)
        );
        let c = with(&["--advertised-addr", "[::1]:9092"], None, &[]).unwrap();
        assert_eq!(c.advertised_host, "::1");
    }

    #[test]
    fn cores_and_cpuset() {
        assert_eq!(with(&["--cores", "1"], None, &[]).unwrap().cores, vec![0]);
        assert_eq!(with(&["--cpuset", "1"], None, &[]).unwrap().cores, vec![1]);
        let e = err(&["--cpuset", "0,9"], None, &[]);
        assert_eq!(
            e,
            "invalid value for --cpuset (cpuset = \"0,9\", from the command line): \
             CPU 9 is not available to this process (available: 0-1)"
        );
        let e = err(&["--cores", "3"], None, &[]);
        assert!(e.contains("--cores") && e.contains("only 2 CPUs"), "{e}");
        assert!(err(&["--cores", "0"], None, &[]).contains("--cores"));
        let e = err(&[], None, &[("SLUICE_CORES", "1"), ("SLUICE_CPUSET", "0")]);
        assert!(
            e.contains("mutually exclusive") && e.contains("SLUICE_CORES"),
            "{e}"
        );
        // A flag outranks the other setting from the environment.
        let c = with(&["--cores", "2"], None, &[("SLUICE_CPUSET", "1")]).unwrap();
        assert_eq!(c.cores, vec![0, 1]);
        let c = with(&[], Some("cores = 2"), &[("SLUICE_CPUSET", "1")]).unwrap();
        assert_eq!(c.cores, vec![1]);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases: &[(&[&str], &str)] = &[
            (&["--kafka-addr", "nope"], "--kafka-addr"),
            (&["--kafka-addr", "1.2.3.4:99999"], "--kafka-addr"),
            (&["--admin-addr", "127.0.0.1:9092"], "--admin-addr"),
            (&["--advertised-addr", "0.0.0.0:9092"], "--advertised-addr"),
            (&["--advertised-addr", "host:0"], "--advertised-addr"),
            (&["--node-id", "-1"], "--node-id"),
            (&["--node-id", "x"], "--node-id"),
            (&["--memory", "63MiB"], "--memory"),
            (&["--memory", "lots"], "--memory"),
            (&["--io-memory", "0"], "--io-memory"),
            (&["--io-memory", "2GiB"], "--io-memory"),
            (&["--max-request-bytes", "4GiB"], "--max-request-bytes"),
            (&["--max-connections", "0"], "--max-connections"),
            (&["--auto-create-topics", "maybe"], "--auto-create-topics"),
            (&["--default-partitions", "0"], "--default-partitions"),
            (&["--log-level", ""], "--log-level"),
        ];
        for (flags, name) in cases {
            let e = err(flags, None, &[]);
            assert!(
                e.starts_with(&format!("invalid value for {name} (")),
                "{flags:?}: {e}"
            );
        }
        let e = err(&[], None, &[("SLUICE_DATA_DIR", "")]);
        assert!(
            e.contains("--data-dir") && e.contains("SLUICE_DATA_DIR"),
            "{e}"
        );
        let e = err(&[], None, &[("SLUICE_MEMORY", "1KiB")]);
        assert!(e.contains("--memory") && e.contains("SLUICE_MEMORY"), "{e}");
        let e = err(&[], Some("default_partitions = -2"), &[]);
        assert!(
            e.contains("default_partitions") && e.contains("/etc/sluice.toml"),
            "{e}"
        );
    }

    #[test]
    fn file_errors_name_file_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, "node_id = 1\nbogus_key = 2\n").unwrap();
        let e = FileConfig::read(&path).unwrap_err().to_string();
        assert!(
            e.contains("sluice.toml") && e.contains("bogus_key") && e.contains("line 2"),
            "{e}"
        );
        std::fs::write(&path, "node_id = \n").unwrap();
        let e = FileConfig::read(&path).unwrap_err().to_string();
        assert!(e.contains("sluice.toml") && e.contains("line 1"), "{e}");
        let e = FileConfig::read(&dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot read config file") && e.contains("missing.toml"),
            "{e}"
        );
    }

    #[test]
    fn file_via_flag_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, "max_request_bytes = 1048576\nio_memory = \"4MiB\"\n").unwrap();
        let p = path.to_str().unwrap();
        let flags = Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        };
        let c = resolve(flags, &no_env).unwrap();
        assert_eq!(
            (c.max_request_bytes, c.io_memory_per_shard_bytes),
            (1 << 20, 4 << 20)
        );
        let env = |name: &str| (name == "SLUICE_CONFIG").then(|| p.to_string());
        let c = resolve(Overrides::default(), &env).unwrap();
        assert_eq!(c.max_request_bytes, 1 << 20);
        assert!(!c.cores.is_empty());
    }
}
