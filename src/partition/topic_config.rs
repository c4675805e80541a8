//! Topic configuration with Kafka's names, defaults and validation.
//!
//! Only explicitly set keys are stored with a topic; everything else reports Kafka's default,
//! so DescribeConfigs can tell users which values they chose (`DYNAMIC_TOPIC_CONFIG`) and
//! which are defaults (`DEFAULT_CONFIG`).

use std::collections::BTreeMap;

use crate::storage::LogConfig;

/// Kafka's default `max.message.bytes` (1 MiB plus record batch overhead).
pub const MAX_MESSAGE_BYTES_DEFAULT: i64 = 1_048_588;

/// One supported topic config: its Kafka name, default, and how to check a value.
pub struct ConfigDef {
    /// The Kafka config name, e.g. `retention.ms`.
    pub name: &'static str,
    /// The default as Kafka reports it.
    pub default: &'static str,
    /// Kafka's documentation line, returned by DescribeConfigs v3+.
    pub doc: &'static str,
    kind: Kind,
}

enum Kind {
    /// An integer with an inclusive lower bound.
    Long { min: i64 },
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
    /// A comma separated list of choices.
    ChoiceList(&'static [&'static str]),
}

/// Every topic config Sluice accepts. Anything else is INVALID_CONFIG, as in Kafka.
pub const CONFIG_DEFS: &[ConfigDef] = &[
    ConfigDef { name: "cleanup.policy", default: "delete", doc: "Retention policy for old segments: delete or compact (compaction is accepted but not yet enforced).", kind: Kind::ChoiceList(&["delete", "compact"]) },
    ConfigDef { name: "max.message.bytes", default: "1048588", doc: "Largest record batch size allowed.", kind: Kind::Long { min: 0 } },
    ConfigDef { name: "message.timestamp.after.max.ms", default: "3600000", doc: "How far in the future a CreateTime timestamp may be.", kind: Kind::Long { min: 0 } },
    ConfigDef { name: "message.timestamp.before.max.ms", default: "9223372036854775807", doc: "How far in the past a CreateTime timestamp may be.", kind: Kind::Long { min: 0 } },
    ConfigDef { name: "message.timestamp.type", default: "CreateTime", doc: "Whether record timestamps are the producer's (CreateTime) or the broker's (LogAppendTime).", kind: Kind::Choice(&["CreateTime", "LogAppendTime"]) },
    ConfigDef { name: "retention.bytes", default: "-1", doc: "Maximum partition size before old segments are deleted; -1 is unlimited.", kind: Kind::Long { min: -1 } },
    ConfigDef { name: "retention.ms", default: "604800000", doc: "Maximum age of a segment before it is deleted; -1 is unlimited.", kind: Kind::Long { min: -1 } },
    ConfigDef { name: "segment.bytes", default: "1073741824", doc: "Segment file size at which the log rolls.", kind: Kind::Long { min: 14 } },
    ConfigDef { name: "segment.ms", default: "604800000", doc: "Segment age at which the log rolls.", kind: Kind::Long { min: 1 } },
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
    /// Kafka's config type code for DescribeConfigs v3+ (LONG=5, STRING=2, LIST=7).
    pub fn config_type(&self) -> i8 {
        match self.kind {
            Kind::Long { .. } => 5,
            Kind::Choice(_) => 2,
            Kind::ChoiceList(_) => 7,
        }
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
        Kind::ChoiceList(choices) => {
            for item in value.split(',').map(str::trim) {
                if !choices.contains(&item) {
                    return Err(invalid(&format!("items must be in {}", choices.join(", "))));
                }
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
    /// `cleanup.policy` contains `compact` (accepted, not yet enforced).
    pub compact: bool,
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
