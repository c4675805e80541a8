//! What to run: the workload, from defaults, a TOML workload file and command-line flags (in
//! that order of precedence), so a saved file reproduces a run and a flag can vary one field.
//!
//! The file uses the flag names with underscores (`record_size = 1024`); the common
//! OpenMessaging Benchmark names (`messageSize`, `partitionsPerTopic`, `producerRate`,
//! `producersPerTopic`, `consumerPerSubscription`) are accepted as aliases.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::BenchError;

/// Which measurement to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Producer latency at a fixed rate, open loop: intended send time → acknowledgement.
    Produce,
    /// End-to-end latency at a fixed rate: intended send time → a consumer receives it.
    E2e,
    /// Closed loop as fast as the broker acknowledges: the maximum throughput.
    Throughput,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Produce => "produce",
            Mode::E2e => "e2e",
            Mode::Throughput => "throughput",
        })
    }
}

/// Producer acknowledgement level (`0`, `1` or `all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckLevel {
    /// `acks=0`: no response; latency is the time until the request is written.
    None,
    /// `acks=1`: the leader appended it.
    Leader,
    /// `acks=all`: committed (durable on the in-sync replicas).
    All,
}

impl AckLevel {
    /// The client's representation.
    pub fn to_client(self) -> sluice_client::Acks {
        match self {
            AckLevel::None => sluice_client::Acks::None,
            AckLevel::Leader => sluice_client::Acks::Leader,
            AckLevel::All => sluice_client::Acks::All,
        }
    }
}

impl FromStr for AckLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "0" | "none" => Ok(AckLevel::None),
            "1" | "leader" => Ok(AckLevel::Leader),
            "all" | "-1" => Ok(AckLevel::All),
            other => Err(format!("acks must be 0, 1 or all, not {other:?}")),
        }
    }
}

impl fmt::Display for AckLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AckLevel::None => "0",
            AckLevel::Leader => "1",
            AckLevel::All => "all",
        })
    }
}

impl Serialize for AckLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for AckLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        let s = match Raw::deserialize(d)? {
            Raw::Int(i) => i.to_string(),
            Raw::Str(s) => s,
        };
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How records get keys (and so partitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KeyDistribution {
    /// No key; records are spread over partitions round-robin.
    None,
    /// A random 8-byte key per record; partition = hash(key) mod partitions.
    Random,
    /// Key = a counter; partition = counter mod partitions.
    RoundRobin,
}

/// Batch compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CompressionKind {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl CompressionKind {
    /// The codec as the record encoder names it.
    pub fn to_client(self) -> sluice_client::Compression {
        use sluice_client::Compression as C;
        match self {
            CompressionKind::None => C::None,
            CompressionKind::Gzip => C::Gzip,
            CompressionKind::Snappy => C::Snappy,
            CompressionKind::Lz4 => C::Lz4,
            CompressionKind::Zstd => C::Zstd,
        }
    }

    /// The librdkafka `compression.type` value.
    pub fn name(self) -> &'static str {
        match self {
            CompressionKind::None => "none",
            CompressionKind::Gzip => "gzip",
            CompressionKind::Snappy => "snappy",
            CompressionKind::Lz4 => "lz4",
            CompressionKind::Zstd => "zstd",
        }
    }
}

/// Which client library drives the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ClientKind {
    /// `sluice-client`: pipelined, no client-side batching of its own, so it measures the
    /// broker.
    Native,
    /// librdkafka (needs the `rdkafka` cargo feature): what librdkafka users see.
    Rdkafka,
}

/// A fully resolved workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// What is measured.
    pub mode: Mode,
    /// Topic (created with `partitions` partitions if missing).
    pub topic: String,
    /// Partitions of the topic.
    pub partitions: i32,
    /// Replication factor used when the topic is created.
    pub replication_factor: i16,
    /// Producer instances, each with its own connections; the rate is split between them.
    pub producers: u32,
    /// Consumer instances (e2e); partitions are split between them.
    pub consumers: u32,
    /// Target records per second over all producers (ignored by `throughput`).
    pub rate: f64,
    /// Measured seconds (after the warm-up).
    pub duration_secs: f64,
    /// Seconds of load before measuring starts (excluded from the results).
    pub warmup_secs: f64,
    /// Bytes of each record's value.
    pub record_size: usize,
    /// Acknowledgement level.
    pub acks: AckLevel,
    /// Keying.
    pub key_distribution: KeyDistribution,
    /// With random keys: how many distinct keys there are (0: any 64-bit key). A bounded
    /// key space gives a compacted topic's cleaner something to remove.
    pub key_space: u64,
    /// Batch compression.
    pub compression: CompressionKind,
    /// A partition's pending records are sent once they reach this many bytes.
    pub batch_size: usize,
    /// ... or once the oldest has waited this long (0: at once).
    pub linger_ms: f64,
    /// Requests in flight per producer before it waits (0: automatic — 10000 for the
    /// open-loop modes, 8 per partition for `throughput`). Waiting never hides latency: it is
    /// measured from the intended send time.
    pub max_in_flight: usize,
    /// The driving client.
    pub client: ClientKind,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            mode: Mode::Produce,
            topic: "sluice-bench".into(),
            partitions: 6,
            replication_factor: 1,
            producers: 1,
            consumers: 1,
            rate: 1000.0,
            duration_secs: 10.0,
            warmup_secs: 2.0,
            record_size: 1024,
            acks: AckLevel::All,
            key_distribution: KeyDistribution::None,
            key_space: 0,
            compression: CompressionKind::None,
            batch_size: 16384,
            linger_ms: 0.0,
            max_in_flight: 0,
            client: ClientKind::Native,
        }
    }
}

/// The workload file: every field optional; unknown fields are an error (a typo must not
/// silently run a different benchmark).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    /// See [`Workload::mode`].
    pub mode: Option<Mode>,
    /// See [`Workload::topic`].
    pub topic: Option<String>,
    /// See [`Workload::partitions`].
    #[serde(alias = "partitionsPerTopic")]
    pub partitions: Option<i32>,
    /// See [`Workload::replication_factor`].
    #[serde(alias = "replicationFactor")]
    pub replication_factor: Option<i16>,
    /// See [`Workload::producers`].
    #[serde(alias = "producersPerTopic")]
    pub producers: Option<u32>,
    /// See [`Workload::consumers`].
    #[serde(alias = "consumerPerSubscription")]
    pub consumers: Option<u32>,
    /// See [`Workload::rate`].
    #[serde(alias = "producerRate")]
    pub rate: Option<f64>,
    /// See [`Workload::duration_secs`].
    pub duration_secs: Option<f64>,
    /// See [`Workload::warmup_secs`].
    pub warmup_secs: Option<f64>,
    /// See [`Workload::record_size`].
    #[serde(alias = "messageSize")]
    pub record_size: Option<usize>,
    /// See [`Workload::acks`].
    pub acks: Option<AckLevel>,
    /// See [`Workload::key_distribution`].
    pub key_distribution: Option<KeyDistribution>,
    /// See [`Workload::key_space`].
    pub key_space: Option<u64>,
    /// See [`Workload::compression`].
    pub compression: Option<CompressionKind>,
    /// See [`Workload::batch_size`].
    pub batch_size: Option<usize>,
    /// See [`Workload::linger_ms`].
    pub linger_ms: Option<f64>,
    /// See [`Workload::max_in_flight`].
    pub max_in_flight: Option<usize>,
    /// See [`Workload::client`].
    pub client: Option<ClientKind>,
}

impl WorkloadFile {
    /// Read and parse a workload file.
    pub fn load(path: &Path) -> Result<WorkloadFile, BenchError> {
        let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
            what: "cannot read workload file",
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| BenchError::Workload {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parse workload-file text.
    pub fn parse(text: &str) -> Result<WorkloadFile, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Overlay this file's fields on `w`.
    pub fn apply(&self, w: &mut Workload) {
        macro_rules! set {
            ($($f:ident => $t:ident),* $(,)?) => {
                $(if let Some(v) = self.$f.clone() { w.$t = v; })*
            };
        }
        set!(
            mode => mode, topic => topic, partitions => partitions,
            replication_factor => replication_factor, producers => producers,
            consumers => consumers, rate => rate, duration_secs => duration_secs,
            warmup_secs => warmup_secs, record_size => record_size, acks => acks,
            key_distribution => key_distribution, key_space => key_space,
            compression => compression,
            batch_size => batch_size, linger_ms => linger_ms, max_in_flight => max_in_flight,
            client => client,
        );
    }
}

/// The value header every record starts with, so a consumer can tell bench records apart and
/// compute end-to-end latency: magic, run id, and the intended send time.
pub const RECORD_HEADER_BYTES: usize = 24;

impl Workload {
    /// Reject workloads that cannot run, with the reason.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |field: &'static str, reason: String| Err(BenchError::Invalid { field, reason });
        if self.partitions < 1 {
            return bad(
                "partitions",
                format!("{} (need at least 1)", self.partitions),
            );
        }
        if self.producers < 1 {
            return bad("producers", "need at least 1".into());
        }
        if self.mode == Mode::E2e && self.consumers < 1 {
            return bad("consumers", "e2e needs at least 1".into());
        }
        if self.mode != Mode::Throughput && !(self.rate > 0.0 && self.rate.is_finite()) {
            return bad("rate", format!("{} (must be > 0)", self.rate));
        }
        if !(self.duration_secs > 0.0 && self.duration_secs.is_finite()) {
            return bad("duration", format!("{} (must be > 0)", self.duration_secs));
        }
        if !(self.warmup_secs >= 0.0 && self.warmup_secs.is_finite()) {
            return bad("warmup", format!("{} (must be >= 0)", self.warmup_secs));
        }
        if self.record_size < RECORD_HEADER_BYTES {
            return bad(
                "record-size",
                format!(
                    "{} (at least {RECORD_HEADER_BYTES}: the timestamp header)",
                    self.record_size
                ),
            );
        }
        if self.linger_ms < 0.0 || !self.linger_ms.is_finite() {
            return bad("linger-ms", format!("{} (must be >= 0)", self.linger_ms));
        }
        if self.client == ClientKind::Rdkafka && !cfg!(feature = "rdkafka") {
            return bad(
                "client",
                "rdkafka: this build lacks the `rdkafka` feature (cargo build -p sluice-bench --features rdkafka)"
                    .into(),
            );
        }
        if self.client == ClientKind::Rdkafka && self.mode == Mode::E2e {
            return bad(
                "client",
                "rdkafka drives produce and throughput only".into(),
            );
        }
        Ok(())
    }

    /// Requests in flight allowed per producer.
    pub fn in_flight_limit(&self) -> usize {
        match (self.max_in_flight, self.mode) {
            (0, Mode::Throughput) => 8 * self.partitions.max(1) as usize,
            (0, _) => 10_000,
            (n, _) => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_accepts_omb_names() {
        let f = WorkloadFile::parse(
            "mode = \"e2e\"\nacks = 1\nmessageSize = 512\npartitionsPerTopic = 3\n\
             key_distribution = \"round-robin\"\ncompression = \"lz4\"\nlinger_ms = 2.5\n",
        )
        .unwrap();
        let mut w = Workload::default();
        f.apply(&mut w);
        assert_eq!(w.mode, Mode::E2e);
        assert_eq!(w.acks, AckLevel::Leader);
        assert_eq!(w.record_size, 512);
        assert_eq!(w.partitions, 3);
        assert_eq!(w.key_distribution, KeyDistribution::RoundRobin);
        assert_eq!(w.compression, CompressionKind::Lz4);
        assert_eq!(w.linger_ms, 2.5);
        assert_eq!(w.rate, 1000.0); // untouched
        assert!(WorkloadFile::parse("acks = \"all\"").unwrap().acks == Some(AckLevel::All));
        assert!(WorkloadFile::parse("rat = 5").is_err(), "typos are refused");
        assert!(WorkloadFile::parse("acks = 2").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let w = Workload {
            record_size: 8,
            ..Workload::default()
        };
        assert!(w
            .validate()
            .unwrap_err()
            .to_string()
            .contains("record-size"));
        let w = Workload {
            rate: 0.0,
            ..Workload::default()
        };
        assert!(w.validate().is_err());
        let w = Workload {
            rate: 0.0,
            mode: Mode::Throughput,
            ..Workload::default()
        };
        assert!(w.validate().is_ok());
    }
}
