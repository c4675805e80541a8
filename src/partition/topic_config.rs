//! Topic configuration with Kafka's names, defaults and validation.
//!
//! Only explicitly set keys are stored with a topic; everything else reports Kafka's default,
//! so DescribeConfigs can tell users which values they chose (`DYNAMIC_TOPIC_CONFIG`) and
//! which are defaults (`DEFAULT_CONFIG`).

use std::collections::BTreeMap;

use kafka_protocol::records::Compression;

use crate::storage::{CompactionConfig, LogConfig};

/// Kafka's default `max.message.bytes` (1 MiB plus record batch overhead).
pub const MAX_MESSAGE_BYTES_DEFAULT: i64 = 1_048_588;

/// One topic config of Kafka 4.1: its name, default, broker synonym and how to check a
/// value. Every one is accepted; which ones change behaviour is in docs/compatibility.md.
pub struct ConfigDef {
    /// The Kafka config name, e.g. `retention.ms`.
    pub name: &'static str,
    /// The default as Kafka reports it.
    pub default: &'static str,
    /// Kafka's documentation line, returned by DescribeConfigs v3+.
    pub doc: &'static str,
    /// The broker config that supplies the default in Kafka (`log.retention.ms` for
    /// `retention.ms`), reported as a synonym by DescribeConfigs; `None` if Kafka has none.
    pub synonym: Option<&'static str>,
    kind: Kind,
}

enum Kind {
    /// A 64-bit integer with an inclusive lower bound.
    Long { min: i64 },
    /// A 32-bit integer within inclusive bounds.
    Int { min: i32, max: i32 },
    /// A real number within inclusive bounds.
    Double { min: f64, max: f64 },
    /// `true` or `false`, any case.
    Bool,
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
    /// A comma separated list of choices.
    ChoiceList(&'static [&'static str]),
    /// Kafka's throttled-replica list: empty, `*`, or `partition:broker` pairs.
    ReplicaList,
}

const fn def(
    name: &'static str,
    default: &'static str,
    synonym: Option<&'static str>,
    kind: Kind,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        default,
        doc,
        synonym,
        kind,
    }
}

/// Every topic config of Kafka 4.1, in name order. Anything else is INVALID_CONFIG, as in
/// Kafka (the configs Kafka 4 removed, such as `message.format.version`, included).
#[rustfmt::skip]
pub const CONFIG_DEFS: &[ConfigDef] = &[
    def("cleanup.policy", "delete", Some("log.cleanup.policy"), Kind::ChoiceList(&["delete", "compact"]), "Retention policy for old segments: delete (by retention.ms/retention.bytes), compact (keep the latest record per key), or both."),
    def("compression.gzip.level", "-1", Some("compression.gzip.level"), Kind::Int { min: -1, max: 9 }, "Compression level for gzip (accepted, not applied: recompression uses gzip's default level)."),
    def("compression.lz4.level", "9", Some("compression.lz4.level"), Kind::Int { min: 1, max: 17 }, "Compression level for lz4 (accepted, not applied: recompression uses lz4's default level)."),
    def("compression.type", "producer", Some("compression.type"), Kind::Choice(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]), "Final compression of the topic's batches: producer keeps them as produced, any codec (or uncompressed) re-encodes them on produce."),
    def("compression.zstd.level", "3", Some("compression.zstd.level"), Kind::Int { min: -131_072, max: 22 }, "Compression level for zstd (accepted, not applied: recompression uses zstd's default level)."),
    def("delete.retention.ms", "86400000", Some("log.cleaner.delete.retention.ms"), Kind::Long { min: 0 }, "How long tombstones (and empty transaction markers) stay readable on compacted topics once compacted."),
    def("file.delete.delay.ms", "60000", Some("log.segment.delete.delay.ms"), Kind::Long { min: 0 }, "Delay before deleting a file (accepted; Sluice deletes at once)."),
    def("flush.messages", "9223372036854775807", Some("log.flush.interval.messages"), Kind::Long { min: 1 }, "Forced fsync interval in records (accepted; Sluice syncs for acks=all)."),
    def("flush.ms", "9223372036854775807", Some("log.flush.interval.ms"), Kind::Long { min: 0 }, "Forced fsync interval in time (accepted; Sluice syncs for acks=all)."),
    def("follower.replication.throttled.replicas", "", None, Kind::ReplicaList, "Replicas whose follower replication is throttled (accepted; one replica)."),
    def("index.interval.bytes", "4096", Some("log.index.interval.bytes"), Kind::Int { min: 0, max: i32::MAX }, "Bytes between offset index entries (accepted; the broker's setting applies)."),
    def("leader.replication.throttled.replicas", "", None, Kind::ReplicaList, "Replicas whose leader replication is throttled (accepted; one replica)."),
    def("local.retention.bytes", "-2", Some("log.local.retention.bytes"), Kind::Long { min: -2 }, "Local retention with tiered storage (accepted; no tiered storage)."),
    def("local.retention.ms", "-2", Some("log.local.retention.ms"), Kind::Long { min: -2 }, "Local retention with tiered storage (accepted; no tiered storage)."),
    def("max.compaction.lag.ms", "9223372036854775807", Some("log.cleaner.max.compaction.lag.ms"), Kind::Long { min: 1 }, "Longest a closed segment stays uncompacted, whatever the dirty ratio."),
    def("max.message.bytes", "1048588", Some("message.max.bytes"), Kind::Int { min: 0, max: i32::MAX }, "Largest record batch size allowed."),
    def("message.timestamp.after.max.ms", "3600000", Some("log.message.timestamp.after.max.ms"), Kind::Long { min: 0 }, "How far in the future a CreateTime timestamp may be."),
    def("message.timestamp.before.max.ms", "9223372036854775807", Some("log.message.timestamp.before.max.ms"), Kind::Long { min: 0 }, "How far in the past a CreateTime timestamp may be."),
    def("message.timestamp.type", "CreateTime", Some("log.message.timestamp.type"), Kind::Choice(&["CreateTime", "LogAppendTime"]), "Whether record timestamps are the producer's (CreateTime) or the broker's (LogAppendTime)."),
    def("min.cleanable.dirty.ratio", "0.5", Some("log.cleaner.min.cleanable.ratio"), Kind::Double { min: 0.0, max: 1.0 }, "Share of uncompacted bytes in the cleanable log at which it is compacted."),
    def("min.compaction.lag.ms", "0", Some("log.cleaner.min.compaction.lag.ms"), Kind::Long { min: 0 }, "Shortest time a record stays uncompacted."),
    def("min.insync.replicas", "1", Some("min.insync.replicas"), Kind::Int { min: 1, max: i32::MAX }, "Replicas that must have an acks=all write (accepted; one replica)."),
    def("preallocate", "false", Some("log.preallocate"), Kind::Bool, "Pre-allocate segment files (accepted; Sluice always pre-allocates)."),
    def("remote.log.copy.disable", "false", None, Kind::Bool, "Stop copying to tiered storage (accepted; no tiered storage)."),
    def("remote.log.delete.on.disable", "false", None, Kind::Bool, "Delete tiered data when tiering is turned off (accepted; no tiered storage)."),
    def("remote.storage.enable", "false", None, Kind::Bool, "Tiered storage for the topic (accepted; only false: no tiered storage)."),
    def("retention.bytes", "-1", Some("log.retention.bytes"), Kind::Long { min: -1 }, "Maximum partition size before old segments are deleted; -1 is unlimited."),
    def("retention.ms", "604800000", Some("log.retention.ms"), Kind::Long { min: -1 }, "Maximum age of a segment before it is deleted; -1 is unlimited."),
    def("segment.bytes", "1073741824", Some("log.segment.bytes"), Kind::Int { min: 14, max: i32::MAX }, "Segment file size at which the log rolls."),
    def("segment.index.bytes", "10485760", Some("log.index.size.max.bytes"), Kind::Int { min: 4, max: i32::MAX }, "Offset index size (accepted; Sluice sizes indexes itself)."),
    def("segment.jitter.ms", "0", Some("log.roll.jitter.ms"), Kind::Long { min: 0 }, "Random jitter subtracted from segment.ms (accepted; not applied)."),
    def("segment.ms", "604800000", Some("log.roll.ms"), Kind::Long { min: 1 }, "Segment age at which the log rolls."),
    def("unclean.leader.election.enable", "false", Some("unclean.leader.election.enable"), Kind::Bool, "Elect an out-of-sync replica as a last resort (accepted; Raft never does)."),
];

/// Why a config change was refused; maps to INVALID_CONFIG.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The key is not a topic config Sluice knows.
    #[error("Unknown topic config name: {0}")]
    UnknownKey(String),
    /// The value does not parse or is out of range.
    #[error("Invalid value {value} for configuration {key}: {reason}")]
    InvalidValue {
        /// The config name.
        key: String,
        /// The rejected value.
        value: String,
        /// What was wrong with it.
        reason: String,
    },
}

impl ConfigDef {
    /// Kafka's config type code for DescribeConfigs v3+ (BOOLEAN=1, STRING=2, INT=3,
    /// LONG=5, DOUBLE=6, LIST=7).
    pub fn config_type(&self) -> i8 {
        match self.kind {
            Kind::Bool => 1,
            Kind::Choice(_) => 2,
            Kind::Int { .. } => 3,
            Kind::Long { .. } => 5,
            Kind::Double { .. } => 6,
            Kind::ChoiceList(_) | Kind::ReplicaList => 7,
        }
    }

    /// Whether the value is a comma separated list (IncrementalAlterConfigs may APPEND to
    /// and SUBTRACT from it).
    pub fn is_list(&self) -> bool {
        matches!(self.kind, Kind::ChoiceList(_) | Kind::ReplicaList)
    }
}

/// Looks up a config definition by Kafka name.
pub fn config_def(name: &str) -> Option<&'static ConfigDef> {
    CONFIG_DEFS.iter().find(|d| d.name == name)
}

/// Checks one key/value pair against its definition.
pub fn validate_entry(key: &str, value: &str) -> Result<(), ConfigError> {
    let def = config_def(key).ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
    let invalid = |reason: &str| ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    match def.kind {
        Kind::Long { min } => {
            let v: i64 = value
                .trim()
                .parse()
                .map_err(|_| invalid("not an integer"))?;
            if v < min {
                return Err(invalid(&format!("must be at least {min}")));
            }
        }
        Kind::Choice(choices) => {
            if !choices.contains(&value) {
                return Err(invalid(&format!("must be one of {}", choices.join(", "))));
            }
        }
        Kind::Int { min, max } => {
            let v: i32 = value
                .trim()
                .parse()
                .map_err(|_| invalid("not a 32-bit integer"))?;
            if v < min || v > max {
                return Err(invalid(&format!("must be in [{min}, {max}]")));
            }
        }
        Kind::Double { min, max } => {
            let v: f64 = value.trim().parse().map_err(|_| invalid("not a number"))?;
            if !(min..=max).contains(&v) {
                return Err(invalid(&format!("must be in [{min}, {max}]")));
            }
        }
        Kind::Bool => {
            let v = value.trim();
            if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                return Err(invalid("must be true or false"));
            }
            if key == "remote.storage.enable" && v.eq_ignore_ascii_case("true") {
                // Accepting it would promise tiering Sluice does not do.
                return Err(invalid("tiered storage is not supported"));
            }
        }
        Kind::ChoiceList(choices) => {
            for item in value.split(',').map(str::trim) {
                if !choices.contains(&item) {
                    return Err(invalid(&format!("items must be in {}", choices.join(", "))));
                }
            }
        }
        Kind::ReplicaList => {
            let v = value.trim();
            let pair = |item: &str| {
                item.split_once(':').is_some_and(|(p, b)| {
                    p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
                })
            };
            if !(v.is_empty() || v == "*" || v.split(',').all(pair)) {
                return Err(invalid(
                    "must be empty, * or a list of partition:broker pairs",
                ));
            }
        }
    }
    Ok(())
}

/// The effective, typed configuration of one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    /// `retention.ms`; -1 keeps everything.
    pub retention_ms: i64,
    /// `retention.bytes`; -1 keeps everything.
    pub retention_bytes: i64,
    /// `segment.bytes`.
    pub segment_size_bytes: u64,
    /// `segment.ms`.
    pub segment_ms: i64,
    /// `max.message.bytes`: the largest batch a producer may send.
    pub max_message_bytes: usize,
    /// `message.timestamp.type=LogAppendTime`.
    pub log_append_time: bool,
    /// `message.timestamp.before.max.ms`.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`.
    pub timestamp_after_max_ms: i64,
    /// `cleanup.policy` contains `compact`: the cleaner compacts the log (see
    /// `storage::log::compact`) and records need keys.
    pub compact: bool,
    /// `cleanup.policy` contains `delete`: retention deletes old segments.
    pub delete: bool,
    /// `min.cleanable.dirty.ratio`, `min.compaction.lag.ms`, `max.compaction.lag.ms`,
    /// `delete.retention.ms`.
    pub compaction: CompactionConfig,
    /// `compression.type`: the codec every stored batch is re-encoded in, or `None`
    /// (`producer`) to store batches as produced.
    pub compression: Option<Compression>,
}

impl TopicConfig {
    /// Builds the effective config from the explicitly set entries (already validated).
    pub fn from_entries(entries: &BTreeMap<String, String>) -> TopicConfig {
        let get = |key: &str| -> &str {
            entries
                .get(key)
                .map(String::as_str)
                .or_else(|| config_def(key).map(|d| d.default))
                .unwrap_or("")
        };
        let long = |key: &str, fallback: i64| get(key).trim().parse::<i64>().unwrap_or(fallback);
        TopicConfig {
            retention_ms: long("retention.ms", 604_800_000),
            retention_bytes: long("retention.bytes", -1),
            segment_size_bytes: long("segment.bytes", 1 << 30).max(14) as u64,
            segment_ms: long("segment.ms", 604_800_000),
            max_message_bytes: long("max.message.bytes", MAX_MESSAGE_BYTES_DEFAULT).max(0) as usize,
            log_append_time: get("message.timestamp.type") == "LogAppendTime",
            timestamp_before_max_ms: long("message.timestamp.before.max.ms", i64::MAX),
            timestamp_after_max_ms: long("message.timestamp.after.max.ms", 3_600_000),
            compact: get("cleanup.policy")
                .split(',')
                .any(|p| p.trim() == "compact"),
            delete: get("cleanup.policy")
                .split(',')
                .any(|p| p.trim() == "delete"),
            compaction: CompactionConfig {
                min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
                    .trim()
                    .parse::<f64>()
                    .unwrap_or(0.5),
                min_compaction_lag_ms: long("min.compaction.lag.ms", 0),
                max_compaction_lag_ms: long("max.compaction.lag.ms", i64::MAX),
                delete_retention_ms: long("delete.retention.ms", 86_400_000),
            },
            compression: match get("compression.type") {
                "uncompressed" => Some(Compression::None),
                "gzip" => Some(Compression::Gzip),
                "snappy" => Some(Compression::Snappy),
                "lz4" => Some(Compression::Lz4),
                "zstd" => Some(Compression::Zstd),
                _ => None,
            },
        }
    }

    /// The storage settings this topic config implies.
    pub fn log_config(&self, cache_budget_bytes: usize) -> LogConfig {
        LogConfig {
            segment_size_bytes: self.segment_size_bytes,
            segment_ms: self.segment_ms,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            cache_budget_bytes,
            delete_enabled: self.delete,
            compaction: self.compact.then(|| self.compaction.clone()),
            ..LogConfig::default()
        }
    }
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig::from_entries(&BTreeMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_kafka() {
        let c = TopicConfig::default();
        assert_eq!(c.retention_ms, 604_800_000);
        assert_eq!(c.retention_bytes, -1);
        assert_eq!(c.max_message_bytes, 1_048_588);
        assert!(!c.log_append_time);
        assert!(!c.compact);
    }

    #[test]
    fn explicit_entries_override_defaults() {
        let mut e = BTreeMap::new();
        e.insert("retention.ms".to_string(), "1000".to_string());
        e.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        e.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        let c = TopicConfig::from_entries(&e);
        assert_eq!(c.retention_ms, 1000);
        assert!(c.log_append_time);
        assert!(c.compact);
    }

    #[test]
    fn bad_entries_are_refused_with_the_key_named() {
        assert_eq!(
            validate_entry("no.such.config", "1"),
            Err(ConfigError::UnknownKey("no.such.config".into()))
        );
        let err = validate_entry("retention.ms", "soon").unwrap_err();
        assert!(err.to_string().contains("retention.ms"));
        assert!(validate_entry("retention.ms", "-2").is_err());
        assert!(validate_entry("message.timestamp.type", "Whenever").is_err());
        assert!(validate_entry("cleanup.policy", "delete,compact").is_ok());
    }
}
