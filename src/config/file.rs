//! The TOML config file (`--config PATH` or `SLUICE_CONFIG`): the same settings as the flags,
//! keys in snake_case, unknown keys rejected with their line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

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
    /// See `--group-consumer-session-timeout-ms`.
    pub group_consumer_session_timeout_ms: Option<i64>,
    /// See `--group-consumer-heartbeat-interval-ms`.
    pub group_consumer_heartbeat_interval_ms: Option<i64>,
    /// See `--log-level`.
    pub log_level: Option<String>,
    /// See `--io-memory`.
    pub io_memory: Option<FileSize>,
    /// See `--cleaner-io-bytes-per-sec`.
    pub cleaner_io_bytes_per_sec: Option<FileSize>,
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

/// A size from the file as the text the flag would carry, so both parse the same way.
pub(super) fn file_size_text(size: Option<FileSize>) -> Option<String> {
    size.map(|size| match size {
        FileSize::Bytes(bytes) => bytes.to_string(),
        FileSize::Text(text) => text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
