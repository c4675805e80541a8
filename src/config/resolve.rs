//! The merge: for every setting, the highest source that gives it (flag > environment > file)
//! wins, its text is validated, and a missing setting takes its default. Errors name the
//! setting in every source, the value and where it came from.

use std::path::{Path, PathBuf};

use super::cpus::{cpus_available, resolve_cores};
use super::env::{CONFIG_ENV, RUST_LOG_ENV};
use super::file::{file_size_text, FileConfig};
use super::settings::{
    Setting, ADMIN_ADDR, ADVERTISED_ADDR, AUTO_CREATE_TOPICS, CLEANER_IO_BYTES_PER_SEC, CORES,
    CPUSET, DATA_DIR, DEFAULT_PARTITIONS, GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS,
    GROUP_CONSUMER_SESSION_TIMEOUT_MS, GROUP_INITIAL_REBALANCE_DELAY_MS, IO_MEMORY, KAFKA_ADDR,
    LOG_LEVEL, MAX_CONNECTIONS, MAX_REQUEST_BYTES, MEMORY, NODE_ID, SLOW_REQUEST_MS,
};
use super::values::{
    advertise, default_admin_addr, default_kafka_addr, parse_advertised, parse_bool, parse_count,
    parse_data_dir, parse_i32_at_least, parse_io_memory, parse_log_level, parse_max_request,
    parse_memory, parse_socket_addr,
};
use super::{
    Config, ConfigError, Origin, Overrides, CLEANER_IO_BYTES_PER_SEC_DEFAULT, DATA_DIR_DEFAULT,
    DEFAULT_PARTITIONS_DEFAULT, GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS_DEFAULT,
    GROUP_CONSUMER_SESSION_TIMEOUT_MS_DEFAULT, GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT,
    IO_MEMORY_PER_SHARD_BYTES_DEFAULT, LOG_LEVEL_DEFAULT, MAX_CONNECTIONS_DEFAULT,
    MAX_REQUEST_BYTES_DEFAULT, MEMORY_PER_SHARD_BYTES_DEFAULT, SLOW_REQUEST_MS_DEFAULT,
};
use crate::util::units::parse_size_bytes;

/// A setting's value as text, with the source it won from.
#[derive(Clone)]
pub(super) struct Raw {
    /// The value as given.
    pub(super) text: String,
    /// Where it came from.
    pub(super) origin: Origin,
}

/// Picks the highest-precedence source of one setting: flag, then environment, then file.
pub(super) fn pick(
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
pub(super) fn parse_or<T>(
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

pub(super) fn invalid(setting: &Setting, raw: Raw, reason: String) -> ConfigError {
    ConfigError::Invalid {
        flag: setting.flag,
        key: setting.key,
        value: raw.text,
        origin: raw.origin,
        reason,
    }
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
    let session_raw = pick(
        &GROUP_CONSUMER_SESSION_TIMEOUT_MS,
        args.group_consumer_session_timeout_ms,
        env,
        inum(f.group_consumer_session_timeout_ms),
        fp,
    );
    let session_given = session_raw.clone();
    let group_consumer_session_timeout_ms = i64::from(parse_or(
        &GROUP_CONSUMER_SESSION_TIMEOUT_MS,
        session_raw,
        |s| parse_i32_at_least(s, 1),
        GROUP_CONSUMER_SESSION_TIMEOUT_MS_DEFAULT,
    )?);
    let interval_raw = pick(
        &GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS,
        args.group_consumer_heartbeat_interval_ms,
        env,
        inum(f.group_consumer_heartbeat_interval_ms),
        fp,
    );
    let interval_given = interval_raw.clone();
    let group_consumer_heartbeat_interval_ms = parse_or(
        &GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS,
        interval_raw,
        |s| parse_i32_at_least(s, 1),
        GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS_DEFAULT,
    )?;
    if i64::from(group_consumer_heartbeat_interval_ms) >= group_consumer_session_timeout_ms {
        // Blame the setting that was given (the interval if both were).
        let reason = format!(
            "the heartbeat interval ({group_consumer_heartbeat_interval_ms} ms) must be below \
             the session timeout ({group_consumer_session_timeout_ms} ms)"
        );
        // (The defaults themselves are consistent, so one of the two was given.)
        let blamed = match (interval_given, session_given) {
            (Some(raw), _) => Some((&GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS, raw)),
            (None, Some(raw)) => Some((&GROUP_CONSUMER_SESSION_TIMEOUT_MS, raw)),
            (None, None) => None,
        };
        if let Some((setting, raw)) = blamed {
            return Err(invalid(setting, raw, reason));
        }
    }
    let log_level = resolve_log_level(args.log_level, env, f.log_level, fp)?;
    let cleaner_raw = pick(
        &CLEANER_IO_BYTES_PER_SEC,
        args.cleaner_io_bytes_per_sec,
        env,
        file_size_text(f.cleaner_io_bytes_per_sec),
        fp,
    );
    let cleaner_io_bytes_per_sec = parse_or(
        &CLEANER_IO_BYTES_PER_SEC,
        cleaner_raw,
        parse_size_bytes,
        CLEANER_IO_BYTES_PER_SEC_DEFAULT,
    )?;

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
        group_consumer_session_timeout_ms,
        group_consumer_heartbeat_interval_ms,
        log_level,
        cleaner_io_bytes_per_sec,
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
