//! The command line. Every workload flag is optional so that a `--workload` file can set it
//! and a flag can still override the file.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::error::BenchError;
use crate::workload::{
    AckLevel, ClientKind, CompressionKind, KeyDistribution, Mode, Workload, WorkloadFile,
};
use crate::Options;

/// sluice-bench: open-loop latency and throughput of any Kafka-protocol broker, reported
/// against this machine's physical floor (fdatasync, loopback round trip).
#[derive(Debug, Parser)]
#[command(name = "sluice-bench", version)]
pub struct Cli {
    /// produce: producer latency at --rate (open loop); e2e: produce → consume latency;
    /// throughput: closed-loop maximum rate.
    #[arg(value_enum)]
    pub mode: Option<Mode>,
    /// Broker to measure (host:port).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Also run the workload against this broker, alternating, and print ratios.
    #[arg(long, value_name = "HOST:PORT")]
    pub compare: Option<String>,
    /// Runs per broker (alternating with --compare).
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
    /// TOML workload file (the flag names with underscores); flags override it.
    #[arg(long, value_name = "FILE")]
    pub workload: Option<PathBuf>,
    /// Records per second over all producers.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measured seconds (after the warm-up).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Seconds of load excluded from the results.
    #[arg(long, value_name = "SECS")]
    pub warmup: Option<f64>,
    /// Bytes per record value (at least 24).
    #[arg(long, value_name = "BYTES")]
    pub record_size: Option<usize>,
    /// Partitions (the topic is created with this many if missing).
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Replication factor for a created topic.
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// 0, 1 or all.
    #[arg(long)]
    pub acks: Option<AckLevel>,
    /// Topic name.
    #[arg(long)]
    pub topic: Option<String>,
    /// Producer instances (each with its own connection); the rate is split between them.
    #[arg(long)]
    pub producers: Option<u32>,
    /// Consumer instances for e2e.
    #[arg(long)]
    pub consumers: Option<u32>,
    /// none, random or round-robin.
    #[arg(long, value_enum)]
    pub key_distribution: Option<KeyDistribution>,
    /// With --key-distribution random: this many distinct keys (0: any 64-bit key).
    #[arg(long, value_name = "KEYS")]
    pub key_space: Option<u64>,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, value_enum)]
    pub compression: Option<CompressionKind>,
    /// Send a partition's pending records once they reach this many bytes.
    #[arg(long, value_name = "BYTES")]
    pub batch_size: Option<usize>,
    /// ... or once the oldest has waited this long.
    #[arg(long, value_name = "MS")]
    pub linger_ms: Option<f64>,
    /// Requests in flight per producer (0: automatic).
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// native (sluice-client) or rdkafka (needs the `rdkafka` feature).
    #[arg(long, value_enum)]
    pub client: Option<ClientKind>,
    /// The broker's data directory when it is local: the fdatasync floor is measured there
    /// (or read from its io-profile.json).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Milliseconds spent measuring each floor.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub floor_ms: u64,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the SVG latency-percentile plot here.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Write the full HDR percentile distribution (text) here.
    #[arg(long, value_name = "FILE")]
    pub histogram_out: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

impl Cli {
    /// Resolve defaults < workload file < flags into run options.
    pub fn into_options(self, command: Vec<String>) -> Result<Options, BenchError> {
        let mut w = Workload::default();
        if let Some(path) = &self.workload {
            WorkloadFile::load(path)?.apply(&mut w);
        }
        let flags = WorkloadFile {
            mode: self.mode,
            topic: self.topic,
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            producers: self.producers,
            consumers: self.consumers,
            rate: self.rate,
            duration_secs: self.duration,
            warmup_secs: self.warmup,
            record_size: self.record_size,
            acks: self.acks,
            key_distribution: self.key_distribution,
            key_space: self.key_space,
            compression: self.compression,
            batch_size: self.batch_size,
            linger_ms: self.linger_ms,
            max_in_flight: self.max_in_flight,
            client: self.client,
        };
        flags.apply(&mut w);
        if self.mode.is_none() && self.workload.is_none() {
            return Err(BenchError::Invalid {
                field: "mode",
                reason: "give produce, e2e or throughput (or a --workload file with mode)".into(),
            });
        }
        w.validate()?;
        Ok(Options {
            bootstrap: self.bootstrap,
            compare: self.compare,
            rounds: self.rounds,
            workload: w,
            data_dir: self.data_dir,
            floor_budget: Duration::from_millis(self.floor_ms),
            json: self.json,
            plot: self.plot,
            histogram_out: self.histogram_out,
            progress: !self.quiet,
            command,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, BenchError> {
        let mut v = vec!["sluice-bench"];
        v.extend_from_slice(args);
        Cli::try_parse_from(&v).unwrap().into_options(vec![])
    }

    #[test]
    fn flags_reach_the_workload() {
        let o = parse(&[
            "produce",
            "--bootstrap",
            "h:1",
            "--rate",
            "500",
            "--duration",
            "3",
            "--record-size",
            "1024",
            "--partitions",
            "6",
            "--acks",
            "all",
            "--compression",
            "zstd",
            "--key-distribution",
            "random",
            "--json",
            "/tmp/x.json",
        ])
        .unwrap();
        assert_eq!(o.bootstrap, "h:1");
        assert_eq!(o.workload.mode, Mode::Produce);
        assert_eq!(o.workload.rate, 500.0);
        assert_eq!(o.workload.acks, AckLevel::All);
        assert_eq!(o.workload.compression, CompressionKind::Zstd);
        assert_eq!(o.workload.key_distribution, KeyDistribution::Random);
        assert_eq!(o.json.as_deref(), Some(std::path::Path::new("/tmp/x.json")));
        // clap refuses a bad acks value at parse time
        assert!(Cli::try_parse_from(["sluice-bench", "produce", "--acks", "2"]).is_err());
    }

    #[test]
    fn flags_override_the_workload_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.toml");
        std::fs::write(&f, "mode = \"e2e\"\nrate = 200\nacks = 1\n").unwrap();
        let o = parse(&["--workload", f.to_str().unwrap(), "--rate", "300"]).unwrap();
        assert_eq!(o.workload.mode, Mode::E2e);
        assert_eq!(o.workload.rate, 300.0);
        assert_eq!(o.workload.acks, AckLevel::Leader);
        assert!(parse(&["--rate", "5"]).is_err(), "a mode is required");
    }
}
