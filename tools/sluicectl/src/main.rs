//! `sluicectl`: day-to-day operation of Sluice (or any Kafka-protocol cluster) — topics,
//! consumer groups and lag, produce/consume from a shell, cluster health — through Sluice's
//! own client, so it needs no JVM and no librdkafka.
//!
//! Exit codes: 0 success, 1 an operation failed (or `cluster health` found a problem),
//! 2 a usage error.

mod table;
mod time;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use serde_json::{json, Value};
use sluice_client::{
    Acks, Client, ClientConfig, Compression, ConfigResource, ConsumedRecord, Error, FetchOptions,
    NewTopic, OffsetSpec, ProduceOptions, ProduceRecord, TopicInfo,
};

use table::{kv, Table};

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

// ---------------------------------------------------------------------------------------------
// topic
// ---------------------------------------------------------------------------------------------

fn topic_cmd(cli: &Cli, client: &Client, cmd: &TopicCmd, timeout: Duration) -> CmdResult {
    match cmd {
        TopicCmd::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            client.create_topic(
                &NewTopic {
                    name: name.clone(),
                    partitions: *partitions,
                    replication_factor: *replication_factor,
                    configs: configs.clone(),
                },
                timeout,
            )?;
            match cli.format {
                Format::Json => print_json(&json!({
                    "topic": name, "created": true, "partitions": partitions,
                    "replication_factor": replication_factor,
                    "configs": configs.iter().cloned().collect::<BTreeMap<_, _>>(),
                })),
                Format::Table => print_text(&format!(
                    "Created topic {name} ({partitions} partitions).\n"
                )),
            }
        }
        TopicCmd::List { include_internal } => {
            let md = client.metadata()?;
            let topics: Vec<&TopicInfo> = md
                .topics
                .iter()
                .filter(|t| *include_internal || !t.internal)
                .collect();
            match cli.format {
                Format::Json => print_json(&Value::Array(
                    topics
                        .iter()
                        .map(|t| {
                            json!({
                                "name": t.name,
                                "topic_id": t.topic_id,
                                "partitions": t.partitions.len(),
                                "replication_factor":
                                    t.partitions.first().map(|p| p.replicas.len()).unwrap_or(0),
                                "internal": t.internal,
                            })
                        })
                        .collect(),
                )),
                Format::Table => {
                    let mut tb = Table::new(&["NAME", "PARTITIONS", "REPLICAS", "INTERNAL"]);
                    for t in topics {
                        tb.row(vec![
                            t.name.clone(),
                            t.partitions.len().to_string(),
                            t.partitions
                                .first()
                                .map(|p| p.replicas.len())
                                .unwrap_or(0)
                                .to_string(),
                            t.internal.to_string(),
                        ]);
                    }
                    print_text(&tb.render())
                }
            }
        }
        TopicCmd::Describe { name } => topic_describe(cli, client, name),
        TopicCmd::Delete { name } => {
            client
                .delete_topic(name, timeout)
                .map_err(|e| unknown_topic(name, e))?;
            match cli.format {
                Format::Json => print_json(&json!({"topic": name, "deleted": true})),
                Format::Table => print_text(&format!("Deleted topic {name}.\n")),
            }
        }
        TopicCmd::AlterConfig { name, set, delete } => {
            if set.is_empty() && delete.is_empty() {
                return Err(Failure(
                    "nothing to change: give --set k=v or --delete k".into(),
                ));
            }
            client
                .alter_configs(ConfigResource::Topic, name, set, delete)
                .map_err(|e| unknown_topic(name, e))?;
            match cli.format {
                Format::Json => print_json(&json!({
                    "topic": name,
                    "set": set.iter().cloned().collect::<BTreeMap<_, _>>(),
                    "deleted": delete,
                })),
                Format::Table => {
                    let mut s = String::new();
                    for (k, v) in set {
                        s.push_str(&format!("Set {k}={v} on {name}.\n"));
                    }
                    for k in delete {
                        s.push_str(&format!("Reverted {k} to its default on {name}.\n"));
                    }
                    print_text(&s)
                }
            }
        }
        TopicCmd::AddPartitions { name, count } => {
            client
                .create_partitions(name, *count, timeout)
                .map_err(|e| unknown_topic(name, e))?;
            match cli.format {
                Format::Json => print_json(&json!({"topic": name, "partitions": count})),
                Format::Table => print_text(&format!("Topic {name} now has {count} partitions.\n")),
            }
        }
    }
}

fn topic_describe(cli: &Cli, client: &Client, name: &str) -> CmdResult {
    let t = topic_meta(client, name)?;
    let ids: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
    let with_leader: Vec<i32> = t
        .partitions
        .iter()
        .filter(|p| p.leader >= 0)
        .map(|p| p.partition)
        .collect();
    let earliest = client.list_offsets(name, &with_leader, OffsetSpec::Earliest)?;
    let latest = client.list_offsets(name, &with_leader, OffsetSpec::Latest)?;
    let find = |v: &[sluice_client::PartitionOffset], p: i32| {
        v.iter().find(|o| o.partition == p).map(|o| o.offset)
    };
    let configs = if client.supports(ApiKey::DescribeConfigs)? {
        Some(client.describe_configs(ConfigResource::Topic, name)?)
    } else {
        None
    };
    match cli.format {
        Format::Json => {
            let parts: Vec<Value> = t
                .partitions
                .iter()
                .map(|p| {
                    json!({
                        "partition": p.partition,
                        "leader": p.leader,
                        "leader_epoch": p.leader_epoch,
                        "replicas": p.replicas,
                        "isr": p.isr,
                        "log_start_offset": find(&earliest, p.partition),
                        "high_watermark": find(&latest, p.partition),
                        "error": p.error,
                    })
                })
                .collect();
            print_json(&json!({
                "name": t.name,
                "topic_id": t.topic_id,
                "internal": t.internal,
                "partitions": parts,
                "configs": configs,
            }))
        }
        Format::Table => {
            let mut s = kv(&[
                ("Topic", t.name.clone()),
                ("Topic id", t.topic_id.to_string()),
                ("Partitions", ids.len().to_string()),
                ("Internal", t.internal.to_string()),
            ]);
            s.push('\n');
            let mut tb = Table::new(&[
                "PARTITION",
                "LEADER",
                "EPOCH",
                "REPLICAS",
                "ISR",
                "LOG-START",
                "HIGH-WATERMARK",
            ]);
            let opt = |o: Option<i64>| o.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
            for p in &t.partitions {
                tb.row(vec![
                    p.partition.to_string(),
                    p.leader.to_string(),
                    p.leader_epoch.to_string(),
                    join(&p.replicas),
                    join(&p.isr),
                    opt(find(&earliest, p.partition)),
                    opt(find(&latest, p.partition)),
                ]);
            }
            s.push_str(&tb.render());
            if let Some(configs) = configs {
                let overrides: Vec<_> = configs.iter().filter(|c| !c.is_default()).collect();
                s.push_str(&format!(
                    "\nConfigs ({} set on the topic, {} total; --format json lists all):\n",
                    overrides.len(),
                    configs.len()
                ));
                let mut ct = Table::new(&["NAME", "VALUE", "SOURCE"]);
                for c in overrides {
                    ct.row(vec![
                        c.name.clone(),
                        c.value.clone().unwrap_or_else(|| "(hidden)".into()),
                        c.source.clone(),
                    ]);
                }
                s.push_str(&ct.render());
            }
            print_text(&s)
        }
    }
}

fn join(v: &[i32]) -> String {
    v.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------------------------------------
// group
// ---------------------------------------------------------------------------------------------

/// Fail clearly when the broker has no consumer-group support at all.
fn require_groups(client: &Client, key: ApiKey) -> CmdResult {
    if client.supports(key)? {
        Ok(())
    } else {
        Err(Failure(format!(
            "the broker does not support consumer groups ({key:?} is not in its ApiVersions)"
        )))
    }
}

fn group_cmd(cli: &Cli, client: &Client, cmd: &GroupCmd) -> CmdResult {
    match cmd {
        GroupCmd::List => {
            require_groups(client, ApiKey::ListGroups)?;
            let groups = client.list_groups()?;
            match cli.format {
                Format::Json => print_json(&serde_json::to_value(&groups).unwrap_or_default()),
                Format::Table => {
                    let mut tb = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE"]);
                    for g in groups {
                        tb.row(vec![
                            g.group_id,
                            g.state.unwrap_or_else(|| "-".into()),
                            g.protocol_type,
                        ]);
                    }
                    print_text(&tb.render())
                }
            }
        }
        GroupCmd::Describe { name } => group_describe(cli, client, name),
        GroupCmd::Delete { name } => {
            require_groups(client, ApiKey::DeleteGroups)?;
            client.delete_group(name)?;
            match cli.format {
                Format::Json => print_json(&json!({"group": name, "deleted": true})),
                Format::Table => print_text(&format!("Deleted group {name}.\n")),
            }
        }
        GroupCmd::ResetOffsets(args) => reset_offsets(cli, client, args),
    }
}

fn group_describe(cli: &Cli, client: &Client, name: &str) -> CmdResult {
    require_groups(client, ApiKey::OffsetFetch)?;
    let desc = if client.supports(ApiKey::DescribeGroups)? {
        Some(client.describe_group(name)?)
    } else {
        None
    };
    let committed = client.fetch_committed(name, None)?;
    let exists = !committed.is_empty()
        || desc
            .as_ref()
            .map(|d| d.state != "Dead" || !d.members.is_empty())
            .unwrap_or(false);
    if !exists {
        return Err(Failure(format!("group {name} does not exist")));
    }
    // Partitions to report: everything committed plus everything assigned.
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    let mut parts: BTreeSet<(String, i32)> = committed
        .iter()
        .map(|c| (c.topic.clone(), c.partition))
        .collect();
    if let Some(d) = &desc {
        for m in &d.members {
            for (t, ps) in &m.assignment {
                for p in ps {
                    parts.insert((t.clone(), *p));
                    owner.insert((t.clone(), *p), m.member_id.clone());
                }
            }
        }
    }
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in &parts {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    let mut hw: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (t, ps) in &by_topic {
        // A deleted topic still has committed offsets; show them without a high watermark.
        if let Ok(offs) = client.list_offsets(t, ps, OffsetSpec::Latest) {
            for o in offs {
                hw.insert((t.clone(), o.partition), o.offset);
            }
        }
    }
    let rows: Vec<Value> = parts
        .iter()
        .map(|(t, p)| {
            let c = committed
                .iter()
                .find(|c| &c.topic == t && c.partition == *p)
                .map(|c| c.offset)
                .filter(|o| *o >= 0);
            let h = hw.get(&(t.clone(), *p)).copied();
            let lag = match (c, h) {
                (Some(c), Some(h)) => Some((h - c).max(0)),
                _ => None,
            };
            json!({
                "topic": t, "partition": p, "committed": c, "high_watermark": h,
                "lag": lag, "member": owner.get(&(t.clone(), *p)),
            })
        })
        .collect();
    let total_lag: i64 = rows.iter().filter_map(|r| r["lag"].as_i64()).sum();
    let (state, protocol_type, protocol) = match &desc {
        Some(d) => (d.state.clone(), d.protocol_type.clone(), d.protocol.clone()),
        None => ("unknown".into(), String::new(), String::new()),
    };
    let members = desc.as_ref().map(|d| d.members.clone()).unwrap_or_default();
    match cli.format {
        Format::Json => print_json(&json!({
            "group": name,
            "state": state,
            "protocol_type": protocol_type,
            "protocol": protocol,
            "members": members,
            "offsets": rows,
            "total_lag": total_lag,
        })),
        Format::Table => {
            let mut s = kv(&[
                ("Group", name.to_string()),
                ("State", state),
                ("Protocol type", protocol_type),
                ("Protocol", protocol),
                ("Members", members.len().to_string()),
                ("Total lag", total_lag.to_string()),
            ]);
            if !members.is_empty() {
                s.push('\n');
                let mut mt = Table::new(&["MEMBER", "CLIENT-ID", "HOST", "ASSIGNMENT"]);
                for m in &members {
                    let a = m
                        .assignment
                        .iter()
                        .map(|(t, ps)| format!("{t}:{}", join(ps)))
                        .collect::<Vec<_>>()
                        .join(" ");
                    mt.row(vec![
                        m.member_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        a,
                    ]);
                }
                s.push_str(&mt.render());
            }
            s.push('\n');
            let mut tb = Table::new(&[
                "TOPIC",
                "PARTITION",
                "COMMITTED",
                "HIGH-WATERMARK",
                "LAG",
                "MEMBER",
            ]);
            let cell = |v: &Value| match v {
                Value::Null => "-".to_string(),
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            for r in &rows {
                tb.row(vec![
                    cell(&r["topic"]),
                    cell(&r["partition"]),
                    cell(&r["committed"]),
                    cell(&r["high_watermark"]),
                    cell(&r["lag"]),
                    cell(&r["member"]),
                ]);
            }
            s.push_str(&tb.render());
            print_text(&s)
        }
    }
}

fn reset_offsets(cli: &Cli, client: &Client, a: &ResetArgs) -> CmdResult {
    require_groups(client, ApiKey::OffsetCommit)?;
    let t = topic_meta(client, &a.topic)?;
    let all: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
    let parts: Vec<i32> = if a.partitions.is_empty() {
        all.clone()
    } else {
        for p in &a.partitions {
            if !all.contains(p) {
                return Err(Failure(format!(
                    "topic {} has no partition {p} (it has {})",
                    a.topic,
                    all.len()
                )));
            }
        }
        a.partitions.clone()
    };
    if client.supports(ApiKey::DescribeGroups)? {
        let d = client.describe_group(&a.name)?;
        if !d.members.is_empty() || !matches!(d.state.as_str(), "Empty" | "Dead" | "") {
            return Err(Failure(format!(
                "group {} is not empty (state {}, {} members): stop its consumers before resetting offsets",
                a.name,
                d.state,
                d.members.len()
            )));
        }
    }
    let earliest = client.list_offsets(&a.topic, &parts, OffsetSpec::Earliest)?;
    let latest = client.list_offsets(&a.topic, &parts, OffsetSpec::Latest)?;
    let by_time = match a.to.to_datetime {
        Some(ts) => Some(client.list_offsets(&a.topic, &parts, OffsetSpec::Timestamp(ts))?),
        None => None,
    };
    let committed = client.fetch_committed(&a.name, Some(&[(a.topic.clone(), parts.clone())]))?;
    let get = |v: &[sluice_client::PartitionOffset], p: i32| {
        v.iter()
            .find(|o| o.partition == p)
            .map(|o| o.offset)
            .unwrap_or(-1)
    };
    let mut plan = Vec::new();
    for &p in &parts {
        let (lo, hi) = (get(&earliest, p), get(&latest, p));
        let new = if a.to.to_earliest {
            lo
        } else if a.to.to_latest {
            hi
        } else if let Some(o) = a.to.to_offset {
            o.clamp(lo, hi)
        } else if let Some(v) = &by_time {
            // No record at or after the time: the end, as Kafka does.
            match get(v, p) {
                o if o < 0 => hi,
                o => o,
            }
        } else {
            return Err(Failure("no reset target given".into()));
        };
        let current = committed
            .iter()
            .find(|c| c.topic == a.topic && c.partition == p)
            .map(|c| c.offset)
            .filter(|o| *o >= 0);
        plan.push((p, current, new));
    }
    if a.execute {
        let offsets: Vec<(String, i32, i64)> = plan
            .iter()
            .map(|(p, _, n)| (a.topic.clone(), *p, *n))
            .collect();
        client.commit_offsets(&a.name, &offsets)?;
    }
    match cli.format {
        Format::Json => print_json(&json!({
            "group": a.name,
            "topic": a.topic,
            "executed": a.execute,
            "partitions": plan.iter().map(|(p, c, n)| json!({
                "partition": p, "current": c, "new": n,
            })).collect::<Vec<_>>(),
        })),
        Format::Table => {
            let mut tb = Table::new(&["TOPIC", "PARTITION", "CURRENT", "NEW"]);
            for (p, c, n) in &plan {
                tb.row(vec![
                    a.topic.clone(),
                    p.to_string(),
                    c.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    n.to_string(),
                ]);
            }
            let mut s = tb.render();
            if a.execute {
                s.push_str(&format!("Committed new offsets for group {}.\n", a.name));
            } else {
                s.push_str(
                    "Dry run: nothing was changed. Add --execute to commit these offsets.\n",
                );
            }
            print_text(&s)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// produce / consume
// ---------------------------------------------------------------------------------------------

/// Kafka's murmur2 (as `org.apache.kafka.common.utils.Utils.murmur2`), so keyed records land
/// on the same partition as with the Java client's default partitioner.
fn murmur2(data: &[u8]) -> i32 {
    let seed: u32 = 0x9747_b28c;
    let m: u32 = 0x5bd1_e995;
    let len = data.len();
    let mut h: u32 = seed ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(m);
        k ^= k >> 24;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^= h >> 15;
    h as i32
}

fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

fn produce(cli: &Cli, client: &Client, a: &ProduceArgs) -> CmdResult {
    let t = topic_meta(client, &a.topic)?;
    let n = t.partitions.len() as i32;
    if n == 0 {
        return Err(Failure(format!("topic {} has no partitions", a.topic)));
    }
    if let Some(p) = a.partition {
        if p < 0 || p >= n {
            return Err(Failure(format!(
                "topic {} has no partition {p} (it has {n})",
                a.topic
            )));
        }
    }
    let opts = ProduceOptions {
        acks: match a.acks {
            AcksArg::Zero => Acks::None,
            AcksArg::One => Acks::Leader,
            AcksArg::All => Acks::All,
        },
        compression: match a.compression {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        },
        timeout: Duration::from_secs(cli.timeout),
    };
    let headers: Vec<(String, Option<Bytes>)> = a
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Some(Bytes::from(v.clone()))))
        .collect();
    let batch_size = a.batch_size.max(1);
    let mut pending: BTreeMap<i32, Vec<ProduceRecord>> = BTreeMap::new();
    // partition -> (first base offset, count)
    let mut done: BTreeMap<i32, (i64, usize)> = BTreeMap::new();
    let mut rr = 0i32;
    let mut total = 0usize;
    let flush = |p: i32,
                 recs: &mut Vec<ProduceRecord>,
                 done: &mut BTreeMap<i32, (i64, usize)>|
     -> CmdResult {
        if recs.is_empty() {
            return Ok(());
        }
        let r = client.produce(&a.topic, p, recs, &opts)?;
        let e = done.entry(p).or_insert((r.base_offset, 0));
        e.1 += recs.len();
        recs.clear();
        Ok(())
    };
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        let (key, value) = match &a.key_separator {
            Some(sep) if !sep.is_empty() => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(Bytes::from(k.to_string())), v.to_string()),
                None => (None, line.to_string()),
            },
            _ => (None, line.to_string()),
        };
        let p = match (a.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, n),
            (None, None) => {
                rr = (rr + 1) % n;
                rr
            }
        };
        let recs = pending.entry(p).or_default();
        recs.push(ProduceRecord {
            key,
            value: Some(Bytes::from(value)),
            headers: headers.clone(),
            timestamp: None,
        });
        total += 1;
        if recs.len() >= batch_size {
            flush(p, recs, &mut done)?;
        }
    }
    for (p, recs) in pending.iter_mut() {
        flush(*p, recs, &mut done)?;
    }
    match cli.format {
        Format::Json => print_json(&json!({
            "topic": a.topic,
            "records": total,
            "acks": opts.acks.code(),
            "partitions": done.iter().map(|(p, (o, c))| json!({
                "partition": p, "base_offset": if *o >= 0 { Some(*o) } else { None }, "count": c,
            })).collect::<Vec<_>>(),
        })),
        Format::Table => {
            let mut s = format!("Produced {total} records to {}.\n", a.topic);
            if !done.is_empty() {
                let mut tb = Table::new(&["PARTITION", "RECORDS", "FIRST-OFFSET"]);
                for (p, (o, c)) in &done {
                    tb.row(vec![
                        p.to_string(),
                        c.to_string(),
                        if *o >= 0 { o.to_string() } else { "-".into() },
                    ]);
                }
                s.push_str(&tb.render());
            }
            print_text(&s)
        }
    }
}

fn lossy(b: &Option<Bytes>) -> String {
    b.as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn render_record(fmt: &str, topic: &str, r: &ConsumedRecord) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(n)) => {
                chars.next();
                match n {
                    'k' => out.push_str(&lossy(&r.key)),
                    'v' => out.push_str(&lossy(&r.value)),
                    'o' => out.push_str(&r.offset.to_string()),
                    'p' => out.push_str(&r.partition.to_string()),
                    't' => out.push_str(&r.timestamp.to_string()),
                    'd' => out.push_str(&time::format_rfc3339(r.timestamp)),
                    'T' => out.push_str(topic),
                    'h' => out.push_str(
                        &r.headers
                            .iter()
                            .map(|(k, v)| format!("{k}={}", lossy(v)))
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                    '%' => out.push('%'),
                    other => {
                        out.push('%');
                        out.push(other);
                    }
                }
            }
            ('\\', Some('n')) => {
                chars.next();
                out.push('\n');
            }
            ('\\', Some('t')) => {
                chars.next();
                out.push('\t');
            }
            (c, _) => out.push(c),
        }
    }
    out
}

fn consume(cli: &Cli, client: &Client, a: &ConsumeArgs) -> CmdResult {
    let t = topic_meta(client, &a.topic)?;
    let parts: Vec<i32> = match a.partition {
        Some(p) => {
            if !t.partitions.iter().any(|x| x.partition == p) {
                return Err(Failure(format!(
                    "topic {} has no partition {p} (it has {})",
                    a.topic,
                    t.partitions.len()
                )));
            }
            vec![p]
        }
        None => t.partitions.iter().map(|p| p.partition).collect(),
    };
    let latest = client.list_offsets(&a.topic, &parts, OffsetSpec::Latest)?;
    let end: BTreeMap<i32, i64> = latest.iter().map(|o| (o.partition, o.offset)).collect();
    let mut pos: BTreeMap<i32, i64> = if a.from_beginning {
        client
            .list_offsets(&a.topic, &parts, OffsetSpec::Earliest)?
            .into_iter()
            .map(|o| (o.partition, o.offset))
            .collect()
    } else if let Some(o) = a.offset {
        parts.iter().map(|p| (*p, o)).collect()
    } else if let Some(ts) = a.from_time {
        client
            .list_offsets(&a.topic, &parts, OffsetSpec::Timestamp(ts))?
            .into_iter()
            .map(|o| {
                let off = if o.offset < 0 {
                    end.get(&o.partition).copied().unwrap_or(0)
                } else {
                    o.offset
                };
                (o.partition, off)
            })
            .collect()
    } else {
        end.clone()
    };
    let bounded = a.count.is_none() && !a.follow;
    let idle = a.idle_timeout.map(Duration::from_secs);
    let mut last_record = Instant::now();
    let mut last_progress = Instant::now();
    let stall_limit = Duration::from_secs(cli.timeout);
    let mut printed = 0usize;
    let mut out = std::io::stdout().lock();
    let opts = FetchOptions {
        max_wait: Duration::from_millis(if bounded { 0 } else { 500 }),
        ..Default::default()
    };
    loop {
        let mut active = false;
        for &p in &parts {
            let from = pos.get(&p).copied().unwrap_or(0);
            let stop_at = end.get(&p).copied().unwrap_or(0);
            if bounded && from >= stop_at {
                continue;
            }
            active = true;
            let r = client
                .fetch(&a.topic, p, from, &opts)
                .map_err(|e| unknown_topic(&a.topic, e))?;
            for rec in &r.records {
                if bounded && rec.offset >= stop_at {
                    break;
                }
                if cli.format == Format::Json {
                    let v = json!({
                        "topic": a.topic,
                        "partition": rec.partition,
                        "offset": rec.offset,
                        "timestamp": rec.timestamp,
                        "key": rec.key.as_ref().map(|_| lossy(&rec.key)),
                        "value": rec.value.as_ref().map(|_| lossy(&rec.value)),
                        "headers": rec.headers.iter().map(|(k, v)| (k.clone(), Value::from(v.as_ref().map(|_| lossy(v))))).collect::<serde_json::Map<_, _>>(),
                    });
                    writeln!(out, "{v}")?;
                } else {
                    writeln!(out, "{}", render_record(&a.format_string, &a.topic, rec))?;
                }
                printed += 1;
                last_record = Instant::now();
                if a.count.is_some_and(|c| printed >= c) {
                    out.flush()?;
                    return Ok(());
                }
            }
            let mut next = r.next_offset;
            if next != from {
                last_progress = Instant::now();
            } else if bounded && last_progress.elapsed() > stall_limit {
                return Err(Failure(format!(
                    "no progress reading {}/{p} at offset {from} (high watermark {}) for {}s",
                    a.topic,
                    r.high_watermark,
                    stall_limit.as_secs()
                )));
            }
            if r.records.is_empty() && next == from && from < r.log_start_offset {
                // Our position fell below the log start (retention): skip ahead.
                next = r.log_start_offset;
            }
            if bounded && r.records.is_empty() && next == from && r.high_watermark <= from {
                // The partition shrank below the recorded end (truncation): stop there.
                next = stop_at;
            }
            pos.insert(p, next);
        }
        out.flush()?;
        if bounded && !active {
            return Ok(());
        }
        if let Some(idle) = idle {
            if last_record.elapsed() >= idle {
                if let Some(c) = a.count {
                    return Err(Failure(format!(
                        "got {printed} of {c} records; none arrived for {}s",
                        idle.as_secs()
                    )));
                }
                return Ok(());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cluster
// ---------------------------------------------------------------------------------------------

fn cluster_info(cli: &Cli, client: &Client) -> CmdResult {
    let info = client.describe_cluster()?;
    let md = client.metadata()?;
    let partitions: usize = md.topics.iter().map(|t| t.partitions.len()).sum();
    let conn = client.any_broker()?;
    let apis: Vec<Value> = conn
        .versions()
        .all()
        .into_iter()
        .map(|(k, r)| {
            let name = ApiKey::try_from(k)
                .map(|k| format!("{k:?}"))
                .unwrap_or_else(|_| format!("Unknown({k})"));
            json!({"api_key": k, "name": name, "min": r.min, "max": r.max})
        })
        .collect();
    match cli.format {
        Format::Json => print_json(&json!({
            "cluster_id": info.cluster_id,
            "controller_id": info.controller_id,
            "brokers": info.brokers,
            "topics": md.topics.len(),
            "partitions": partitions,
            "bootstrap": conn.addr(),
            "api_versions": apis,
        })),
        Format::Table => {
            let mut s = kv(&[
                (
                    "Cluster id",
                    info.cluster_id.clone().unwrap_or_else(|| "-".into()),
                ),
                ("Controller", info.controller_id.to_string()),
                ("Brokers", info.brokers.len().to_string()),
                ("Topics", md.topics.len().to_string()),
                ("Partitions", partitions.to_string()),
                ("APIs", apis.len().to_string()),
            ]);
            s.push('\n');
            let mut tb = Table::new(&["ID", "HOST", "PORT", "RACK", "CONTROLLER"]);
            for b in &info.brokers {
                tb.row(vec![
                    b.node_id.to_string(),
                    b.host.clone(),
                    b.port.to_string(),
                    b.rack.clone().unwrap_or_else(|| "-".into()),
                    if b.node_id == info.controller_id {
                        "*".into()
                    } else {
                        String::new()
                    },
                ]);
            }
            s.push_str(&tb.render());
            print_text(&s)
        }
    }
}

fn cluster_health(cli: &Cli) -> Result<ExitCode, Failure> {
    let mut problems: Vec<String> = Vec::new();
    let mut report = json!({"healthy": false});
    match connect(cli).and_then(|c| Ok((c.metadata()?, c))) {
        Err(Failure(e)) => problems.push(e),
        Ok((md, client)) => {
            let mut leaderless = Vec::new();
            let mut partitions = 0usize;
            for t in &md.topics {
                for p in &t.partitions {
                    partitions += 1;
                    if p.leader < 0 || md.broker(p.leader).is_none() {
                        leaderless.push(json!({"topic": t.name, "partition": p.partition}));
                    }
                }
            }
            if !leaderless.is_empty() {
                problems.push(format!("{} partitions have no leader", leaderless.len()));
            }
            let mut unreachable = Vec::new();
            for b in &md.brokers {
                if let Err(e) = client.broker(b.node_id) {
                    unreachable.push(json!({"node_id": b.node_id, "error": e.to_string()}));
                    problems.push(e.to_string());
                }
            }
            if md.brokers.is_empty() {
                problems.push("metadata lists no brokers".into());
            }
            report = json!({
                "healthy": problems.is_empty(),
                "brokers": md.brokers.len(),
                "topics": md.topics.len(),
                "partitions": partitions,
                "leaderless_partitions": leaderless,
                "unreachable_brokers": unreachable,
            });
        }
    }
    let healthy = problems.is_empty();
    if let Value::Object(m) = &mut report {
        m.insert("healthy".into(), Value::from(healthy));
        m.insert("problems".into(), json!(problems));
    }
    match cli.format {
        Format::Json => print_json(&report)?,
        Format::Table => {
            let mut s = format!(
                "{}\n",
                if healthy {
                    "Cluster is healthy."
                } else {
                    "Cluster is UNHEALTHY."
                }
            );
            for k in ["brokers", "topics", "partitions"] {
                if let Some(v) = report.get(k) {
                    s.push_str(&format!("  {k}: {v}\n"));
                }
            }
            for p in &problems {
                s.push_str(&format!("  problem: {p}\n"));
            }
            print_text(&s)?;
        }
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Vectors from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn format_string() {
        let r = ConsumedRecord {
            partition: 2,
            offset: 7,
            timestamp: 99,
            log_append_time: false,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![("a".into(), Some(Bytes::from_static(b"b")))],
        };
        assert_eq!(
            render_record("%k %v %o %p %t %T %h 100%%\\t%x", "top", &r),
            "k v 7 2 99 top a=b 100%\t%x"
        );
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        assert!(parse_kv("a=b=c").unwrap().1 == "b=c");
        assert!(parse_kv("=x").is_err());
    }
}
