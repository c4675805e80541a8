//! The rules each setting's value must follow, as functions from text to value. Errors are
//! the reason only; the caller adds the setting's names and the value's origin.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use super::{MAX_REQUEST_BYTES_LIMIT, MEMORY_PER_SHARD_BYTES_MIN};
use crate::util::units::parse_size_bytes;

/// `--memory`: a size of at least [`MEMORY_PER_SHARD_BYTES_MIN`].
pub(super) fn parse_memory(text: &str) -> Result<u64, String> {
    let bytes = parse_size_bytes(text)?;
    if bytes < MEMORY_PER_SHARD_BYTES_MIN {
        return Err(format!(
            "{bytes} bytes is below the minimum of 64MiB ({MEMORY_PER_SHARD_BYTES_MIN} bytes)"
        ));
    }
    Ok(bytes)
}

/// `--io-memory`: a non-zero size below the shard's memory budget.
pub(super) fn parse_io_memory(text: &str, memory_per_shard_bytes: u64) -> Result<usize, String> {
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

/// `--max-request-bytes`: a non-zero size the Kafka frame prefix can express.
pub(super) fn parse_max_request(text: &str) -> Result<usize, String> {
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

/// A whole number of at least 1 (connections, milliseconds, cores).
pub(super) fn parse_count(text: &str) -> Result<usize, String> {
    let count: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    if count == 0 {
        return Err("must be at least 1".into());
    }
    Ok(count)
}

/// A whole number from `min` up to `i32::MAX` (node id, partitions, delays).
pub(super) fn parse_i32_at_least(text: &str, min: i32) -> Result<i32, String> {
    let value: i64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    if value < i64::from(min) {
        return Err(format!("must be at least {min}"));
    }
    i32::try_from(value).map_err(|_| format!("must be at most {}", i32::MAX))
}

/// `true`/`false` and the usual synonyms (yes/no, on/off, 1/0), any case.
pub(super) fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("{text:?} is not a boolean (use true or false)")),
    }
}

/// `--data-dir`: any non-empty path.
pub(super) fn parse_data_dir(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(PathBuf::from(text))
}

/// `--log-level`: a non-empty tracing filter directive.
pub(super) fn parse_log_level(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("must not be empty (e.g. info, debug, sluice=trace)".into());
    }
    Ok(text.to_string())
}

/// Parses a listen address: `IP:PORT`, `[v6]:PORT`, or `HOST:PORT` resolved once at start-up.
pub(super) fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
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
pub(super) fn split_host_port(text: &str) -> Result<(String, u16), String> {
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

/// `--advertised-addr`: `HOST:PORT` a client can connect to (no wildcard, no port 0).
pub(super) fn parse_advertised(text: &str) -> Result<(String, u16), String> {
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
pub(super) fn advertise(kafka_addr: SocketAddr) -> (String, u16) {
    let ip = kafka_addr.ip();
    let host = if ip.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        ip
    };
    (host.to_string(), kafka_addr.port())
}

/// The default Kafka listener, [`super::KAFKA_ADDR_DEFAULT`].
pub(super) fn default_kafka_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 9092))
}

/// The default admin listener, [`super::ADMIN_ADDR_DEFAULT`].
pub(super) fn default_admin_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 9644))
}
