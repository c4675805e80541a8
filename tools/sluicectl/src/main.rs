//! `sluicectl`: day-to-day operation of Sluice (or any Kafka-protocol cluster) — topics,
//! consumer groups and lag, produce/consume from a shell, cluster health — through Sluice's
//! own client (`sluice-client`), so it needs no JVM and no librdkafka.
//!
//! This file is the command line and what every subcommand shares (connecting, output,
//! errors); each subcommand family has its own file: `topic`, `group`, `produce`, `consume`,
//! `cluster`.
//!
//! Exit codes: 0 success, 1 an operation failed (or `cluster health` found a problem),
//! 2 a usage error.

mod cluster;
mod consume;
mod group;
mod produce;
mod table;
mod time;
mod topic;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kafka_protocol::error::ResponseError;
use serde_json::Value;
use sluice_client::{Client, ClientConfig, Error, TopicInfo};

use cluster::{cluster_health, cluster_info};
use consume::consume;
use group::group_cmd;
use produce::produce;
use topic::topic_cmd;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Aligned tables for humans.
    Table,
    /// JSON for scripts (one document; `consume` prints one JSON object per record).
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "sluicectl",
    version,
    about = "Operate a Sluice (or any Kafka-protocol) cluster: topics, groups, produce/consume, health",
    after_help = "Exit status: 0 on success, 1 when an operation fails or the cluster is unhealthy, 2 on usage errors."
)]
struct Cli {
    /// Bootstrap brokers, comma separated HOST:PORT list.
    #[arg(
        long,
        global = true,
        env = "SLUICE_BROKERS",
        default_value = "127.0.0.1:9092",
        value_delimiter = ','
    )]
    brokers: Vec<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Connect and request timeout in seconds.
    #[arg(long, global = true, default_value_t = 10)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe, delete and configure topics.
    #[command(subcommand)]
    Topic(TopicCmd),
    /// List, describe (members, lag), delete consumer groups and reset their offsets.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Produce stdin lines as records.
    Produce(ProduceArgs),
    /// Print records of a topic.
    Consume(ConsumeArgs),
    /// Cluster id, controller, brokers, health.
    #[command(subcommand)]
    Cluster(ClusterCmd),
}

#[derive(Debug, Subcommand)]
enum TopicCmd {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Replication factor (-1: the broker's default).
        #[arg(long, default_value_t = -1)]
        replication_factor: i16,
        /// Topic config, repeatable: --config retention.ms=60000
        #[arg(long = "config", value_parser = parse_kv)]
        configs: Vec<(String, String)>,
    },
    /// List topics.
    List {
        /// Also list internal topics (`__consumer_offsets`, ...).
        #[arg(long)]
        include_internal: bool,
    },
    /// Partitions (leader, replicas, offsets) and configs of a topic.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
    },
    /// Set or delete (revert to default) topic configs.
    AlterConfig {
        /// Topic name.
        name: String,
        /// Set a config, repeatable: --set retention.ms=60000
        #[arg(long = "set", value_parser = parse_kv)]
        set: Vec<(String, String)>,
        /// Revert a config to its default, repeatable.
        #[arg(long = "delete")]
        delete: Vec<String>,
    },
    /// Grow a topic to a new total number of partitions.
    AddPartitions {
        /// Topic name.
        name: String,
        /// The new total partition count (must be larger than the current one).
        #[arg(long)]
        count: i32,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCmd {
    /// List consumer groups.
    List,
    /// Members, assignments, state, protocol and lag per partition
    /// (lag = high watermark - committed offset).
    Describe {
        /// Group id.
        name: String,
    },
    /// Delete an empty group and its committed offsets.
    Delete {
        /// Group id.
        name: String,
    },
    /// Plan (default) or execute (--execute) a reset of a group's committed offsets for a
    /// topic. The group must have no active members, as with kafka-consumer-groups.sh.
    ResetOffsets(ResetArgs),
}

#[derive(Debug, Args)]
struct ResetArgs {
    /// Group id.
    name: String,
    /// Topic whose partitions are reset.
    #[arg(long)]
    topic: String,
    /// Only these partitions (repeatable); all partitions by default.
    #[arg(long = "partition")]
    partitions: Vec<i32>,
    #[command(flatten)]
    to: ResetTo,
    /// Commit the new offsets; without it only the plan is printed.
    #[arg(long)]
    execute: bool,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct ResetTo {
    /// To the log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// To the high watermark (skip everything).
    #[arg(long)]
    to_latest: bool,
    /// To this offset (clamped to the partition's earliest..latest).
    #[arg(long)]
    to_offset: Option<i64>,
    /// To the first record at or after this RFC 3339 time, e.g. 2024-05-01T12:00:00Z.
    #[arg(long, value_parser = time::parse_rfc3339)]
    to_datetime: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AcksArg {
    /// No acknowledgement.
    #[value(name = "0")]
    Zero,
    /// Leader acknowledgement.
    #[value(name = "1")]
    One,
    /// All in-sync replicas (alias -1).
    #[value(name = "all", alias = "-1")]
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Each stdin line is one record. With --key-separator the text before the first \
separator is the key and the rest the value. Without --partition, keyed records go to \
murmur2(key) % partitions (the Java client's default partitioner) and unkeyed records are \
spread round-robin."
)]
struct ProduceArgs {
    /// Topic.
    topic: String,
    /// Split each line into KEY<SEP>VALUE at the first SEP.
    #[arg(long)]
    key_separator: Option<String>,
    /// Header added to every record, repeatable: --header source=cli
    #[arg(long = "header", value_parser = parse_kv)]
    headers: Vec<(String, String)>,
    /// Send every record to this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    acks: AcksArg,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// Records per produce request (per partition).
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Where it starts: --from-beginning (log start), --offset N, --from-time \
(first record at or after that time), or by default the end of the partition (only records \
produced from now on).\n\nWhen it stops: after --count records if given (waiting for new records \
as long as needed, or until --idle-timeout passes without any, which exits with status 1 when --count was not reached); otherwise when every partition \
read has reached the high watermark it had when the command started, so \
`sluicectl consume T --from-beginning` dumps a topic and exits. --follow keeps waiting for new \
records instead (until --count or Ctrl-C).\n\nFormat string: %k key, %v value, %o offset, %p \
partition, %t timestamp (ms), %d timestamp as RFC 3339, %T topic, %h headers (k=v,...), %% a literal %, \\n newline, \\t tab. \
With --format json each record is printed as one JSON object per line."
)]
struct ConsumeArgs {
    /// Topic.
    topic: String,
    /// Read only this partition (all partitions by default).
    #[arg(long)]
    partition: Option<i32>,
    /// Start at the log start offset.
    #[arg(long, conflicts_with_all = ["offset", "from_time"])]
    from_beginning: bool,
    /// Start at this offset (of every partition read).
    #[arg(long, conflicts_with = "from_time")]
    offset: Option<i64>,
    /// Start at the first record at or after this RFC 3339 time.
    #[arg(long, value_parser = time::parse_rfc3339)]
    from_time: Option<i64>,
    /// Stop after this many records.
    #[arg(long)]
    count: Option<usize>,
    /// Do not stop at the end of the partitions; wait for new records.
    #[arg(long)]
    follow: bool,
    /// With --count or --follow: give up after this many seconds without a new record.
    #[arg(long)]
    idle_timeout: Option<u64>,
    /// How each record is printed.
    #[arg(long, default_value = "%v")]
    format_string: String,
}

#[derive(Debug, Subcommand)]
enum ClusterCmd {
    /// Cluster id, controller, brokers, topic and partition counts.
    Info,
    /// Connect, read metadata and check every partition has a leader (exit 1 if not).
    Health,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// The failure of a command: message for stderr, exit code 1.
#[derive(Debug)]
struct Failure(String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure(format!("I/O error: {e}"))
    }
}

type CmdResult = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(&cli);
    match result {
        Ok(code) => code,
        Err(Failure(msg)) => {
            // A closed stdout (`| head`) is not worth an error message.
            if !msg.contains("Broken pipe") {
                eprintln!("sluicectl: {msg}");
            }
            ExitCode::from(1)
        }
    }
}

fn connect(cli: &Cli) -> Result<Client, Failure> {
    let mut cfg = ClientConfig::new(&cli.brokers);
    cfg.connection.client_id = "sluicectl".into();
    cfg.connection.connect_timeout = Duration::from_secs(cli.timeout);
    cfg.connection.request_timeout = Duration::from_secs(cli.timeout);
    Ok(Client::connect(cfg)?)
}

fn run(cli: &Cli) -> Result<ExitCode, Failure> {
    if let Command::Cluster(ClusterCmd::Health) = cli.command {
        return cluster_health(cli);
    }
    let client = connect(cli)?;
    let timeout = Duration::from_secs(cli.timeout);
    match &cli.command {
        Command::Topic(t) => topic_cmd(cli, &client, t, timeout)?,
        Command::Group(g) => group_cmd(cli, &client, g)?,
        Command::Produce(p) => produce(cli, &client, p)?,
        Command::Consume(c) => consume(cli, &client, c)?,
        Command::Cluster(ClusterCmd::Info) => cluster_info(cli, &client)?,
        Command::Cluster(ClusterCmd::Health) => unreachable_health()?,
    }
    Ok(ExitCode::SUCCESS)
}

fn unreachable_health() -> CmdResult {
    Err(Failure(
        "internal: health is handled before connecting".into(),
    ))
}

fn print_json(v: &Value) -> CmdResult {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v).map_err(|e| Failure(e.to_string()))?;
    writeln!(out)?;
    Ok(())
}

fn print_text(s: &str) -> CmdResult {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())?;
    Ok(())
}

/// Topic metadata, with "unknown topic NAME" instead of a raw error code.
fn topic_meta(client: &Client, name: &str) -> Result<TopicInfo, Failure> {
    match client.topic(name) {
        Ok(t) => Ok(t),
        Err(e) if e.kafka_error() == Some(ResponseError::UnknownTopicOrPartition) => {
            Err(Failure(format!("unknown topic {name}")))
        }
        Err(e) => Err(e.into()),
    }
}

fn unknown_topic(name: &str, e: Error) -> Failure {
    if e.kafka_error() == Some(ResponseError::UnknownTopicOrPartition) {
        Failure(format!("unknown topic {name}"))
    } else {
        e.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        assert!(parse_kv("a=b=c").unwrap().1 == "b=c");
        assert!(parse_kv("=x").is_err());
    }
}
