//! The `sluice` binary: `sluice start` (the default) runs a broker, `sluice tune` checks and
//! tunes the host, `sluice iotune` measures the data disk.
//!
//! This file is the command line and nothing else: it parses the arguments with clap, hands
//! the flags of `sluice start` to `sluice::config` as plain [`Overrides`], and calls into the
//! crate. The library never sees a clap type.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sluice::config::{Config, Overrides};
use sluice::server::HostCheckError;

/// The `sluice` command line; with no subcommand it behaves as `sluice start`.
#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// The subcommand; `None` means `start`.
    #[command(subcommand)]
    command: Option<Command>,
    /// `start` flags given without the word `start` (`sluice --data-dir x`).
    #[command(flatten)]
    start: StartArgs,
}

impl Cli {
    /// The command to run, turning a bare `sluice [flags]` into `start [flags]`.
    fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Start(self.start))
    }
}

/// What `sluice` was asked to do; new commands (e.g. `tune`) are added as variants.
#[derive(Debug, Subcommand)]
// Parsed once per process; boxing StartArgs would only complicate every match on it.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Start a broker.
    Start(StartArgs),
    /// Check (and with --apply, fix) host settings that decide tail latency
    Tune(sluice::tune::TuneArgs),
    /// Measure the data directory's disk and write io-profile.json
    Iotune(sluice::tune::iotune::IotuneArgs),
    /// Cut a damaged partition's log at an offset (dry run unless --execute); the broker
    /// must be stopped
    Repair(RepairArgs),
}

/// Flags of `sluice repair`.
#[derive(Debug, Clone, Args)]
struct RepairArgs {
    /// Data directory of the stopped broker
    #[arg(long, value_name = "PATH")]
    data_dir: PathBuf,
    /// Topic of the damaged partition
    #[arg(long)]
    topic: String,
    /// Partition index
    #[arg(long, value_name = "N")]
    partition: i32,
    /// The offset the log should end at: a batch boundary at or below the first damage
    #[arg(long, value_name = "OFFSET")]
    truncate_to: i64,
    /// Do it (without this flag, only print what would be done)
    #[arg(long)]
    execute: bool,
}

/// Flags of `sluice start`. All optional so file and environment can fill the gaps; values
/// are kept as text and validated in `sluice::config::resolve` with the same rules as the
/// other sources.
#[derive(Debug, Clone, Default, Args)]
struct StartArgs {
    /// TOML config file (keys: data_dir, kafka_addr, ...) [env: SLUICE_CONFIG]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Data directory [env: SLUICE_DATA_DIR] [default: ./data]
    #[arg(long, value_name = "PATH")]
    data_dir: Option<PathBuf>,
    /// Kafka listener [env: SLUICE_KAFKA_ADDR] [default: 127.0.0.1:9092]
    #[arg(long, value_name = "HOST:PORT")]
    kafka_addr: Option<String>,
    /// Address given to clients [env: SLUICE_ADVERTISED_ADDR] [default: the kafka address,
    /// 127.0.0.1 if it is 0.0.0.0 or ::]
    #[arg(long, value_name = "HOST:PORT")]
    advertised_addr: Option<String>,
    /// Admin HTTP listener [env: SLUICE_ADMIN_ADDR] [default: 127.0.0.1:9644]
    #[arg(long, value_name = "HOST:PORT")]
    admin_addr: Option<String>,
    /// Number of shards, on the first N available CPUs [env: SLUICE_CORES] [default: all]
    #[arg(long, value_name = "N", conflicts_with = "cpuset")]
    cores: Option<String>,
    /// CPUs to run shards on, e.g. 0,2-3 [env: SLUICE_CPUSET]
    #[arg(long, value_name = "LIST")]
    cpuset: Option<String>,
    /// Broker id, >= 0 [env: SLUICE_NODE_ID] [default: 0]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    node_id: Option<String>,
    /// Memory per shard, e.g. 2GiB [env: SLUICE_MEMORY] [default: 1GiB] [min: 64MiB]
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Largest request frame [env: SLUICE_MAX_REQUEST_BYTES] [default: 100MiB]
    #[arg(long, value_name = "SIZE")]
    max_request_bytes: Option<String>,
    /// Open connections allowed [env: SLUICE_MAX_CONNECTIONS] [default: 10000]
    #[arg(long, value_name = "N")]
    max_connections: Option<String>,
    /// Log requests slower than this [env: SLUICE_SLOW_REQUEST_MS] [default: 1000]
    #[arg(long, value_name = "MS")]
    slow_request_ms: Option<String>,
    /// Create unknown topics on use [env: SLUICE_AUTO_CREATE_TOPICS] [default: true]
    #[arg(long, value_name = "BOOL")]
    auto_create_topics: Option<String>,
    /// Partitions of auto-created topics [env: SLUICE_DEFAULT_PARTITIONS] [default: 1]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    default_partitions: Option<String>,
    /// First-rebalance delay of empty consumer groups, ms [env: SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS] [default: 3000]
    #[arg(long, value_name = "MS")]
    group_initial_rebalance_delay_ms: Option<String>,
    /// KIP-848 consumer-group session timeout, ms [env: SLUICE_GROUP_CONSUMER_SESSION_TIMEOUT_MS] [default: 45000]
    #[arg(long, value_name = "MS")]
    group_consumer_session_timeout_ms: Option<String>,
    /// KIP-848 consumer-group heartbeat interval, ms [env: SLUICE_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS] [default: 5000]
    #[arg(long, value_name = "MS")]
    group_consumer_heartbeat_interval_ms: Option<String>,
    /// Tracing filter; RUST_LOG wins if set [env: SLUICE_LOG_LEVEL] [default: info]
    #[arg(long, value_name = "STR")]
    log_level: Option<String>,
    /// Registered io_uring buffer memory per shard [env: SLUICE_IO_MEMORY] [default: 8MiB]
    #[arg(long, value_name = "SIZE")]
    io_memory: Option<String>,
    /// Log cleaner I/O per shard, per second; 0 is unlimited [env: SLUICE_CLEANER_IO_BYTES_PER_SEC] [default: 8MiB]
    #[arg(long, value_name = "SIZE")]
    cleaner_io_bytes_per_sec: Option<String>,
    /// Refuse to start when a host check (as `sluice tune` runs it) FAILs
    #[arg(long)]
    production: bool,
}

impl StartArgs {
    /// The flags as the plain overrides `sluice::config::resolve` merges over file and
    /// environment; one field each, same name.
    fn into_overrides(self) -> Overrides {
        Overrides {
            config: self.config,
            data_dir: self.data_dir,
            kafka_addr: self.kafka_addr,
            advertised_addr: self.advertised_addr,
            admin_addr: self.admin_addr,
            cores: self.cores,
            cpuset: self.cpuset,
            node_id: self.node_id,
            memory: self.memory,
            max_request_bytes: self.max_request_bytes,
            max_connections: self.max_connections,
            slow_request_ms: self.slow_request_ms,
            auto_create_topics: self.auto_create_topics,
            default_partitions: self.default_partitions,
            group_initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
            group_consumer_session_timeout_ms: self.group_consumer_session_timeout_ms,
            group_consumer_heartbeat_interval_ms: self.group_consumer_heartbeat_interval_ms,
            log_level: self.log_level,
            io_memory: self.io_memory,
            cleaner_io_bytes_per_sec: self.cleaner_io_bytes_per_sec,
            production: self.production,
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().into_command() {
        Command::Start(start) => start_broker(start),
        Command::Tune(args) => ExitCode::from(sluice::tune::run(&args)),
        Command::Iotune(args) => ExitCode::from(sluice::tune::iotune::run(&args)),
        Command::Repair(args) => repair(&args),
    }
}

/// `sluice repair`: see `sluice::partition::repair`. Exit 0 when done or planned, 1 when
/// it cannot (the message says what to choose instead), 2 when the data directory is in use.
fn repair(args: &RepairArgs) -> ExitCode {
    let _lock = match sluice::server::limits::lock_data_dir(&args.data_dir) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("sluice repair: {e} (stop the broker first)");
            return ExitCode::from(2);
        }
    };
    let dir =
        sluice::cluster::partitions::partition_dir(&args.data_dir, &args.topic, args.partition);
    if !dir.is_dir() {
        eprintln!("sluice repair: no partition directory {}", dir.display());
        return ExitCode::from(1);
    }
    let plan = match sluice::partition::repair::plan(&dir, args.truncate_to) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("sluice repair: {e}");
            return ExitCode::from(1);
        }
    };
    println!("{plan}");
    if !args.execute {
        println!("dry run: nothing was changed; run again with --execute to do it");
        return ExitCode::SUCCESS;
    }
    match sluice::partition::repair::execute(&plan) {
        Ok(()) => {
            println!("done: start the broker to serve the partition again");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice repair: {e}");
            ExitCode::from(1)
        }
    }
}

fn start_broker(start: StartArgs) -> ExitCode {
    let config = match sluice::config::resolve(start.into_overrides(), &sluice::config::process_env)
    {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %config.data_dir.display(),
        kafka_addr = %config.kafka_addr,
        shards = config.cores.len(),
        "starting sluice"
    );
    // The host checks live in `tune`, above start-up; start-up runs them at the right moment
    // (data directory locked, ports not yet probed) and `--production` makes a FAIL refuse.
    let host_check = |config: &Config| -> Result<(), HostCheckError> {
        sluice::tune::check_at_start(config, config.production)?;
        Ok(())
    };
    match sluice::server::run(config, &host_check) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sluice failed");
            eprintln!("sluice: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn start_args(argv: &[&str]) -> StartArgs {
        match Cli::try_parse_from(argv).unwrap().into_command() {
            Command::Start(start) => start,
            other => panic!("not a start command: {other:?}"),
        }
    }

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("start"), "{help}");
    }

    #[test]
    fn bare_sluice_is_start() {
        let cli = Cli::try_parse_from(["sluice"]).unwrap();
        assert!(matches!(cli.into_command(), Command::Start(_)));
        let cli = Cli::try_parse_from(["sluice", "--node-id", "3"]).unwrap();
        let Command::Start(start) = cli.into_command() else {
            panic!("bare flags must mean start");
        };
        assert_eq!(start.node_id.as_deref(), Some("3"));
        let c = sluice::config::resolve(start_args(&["sluice"]).into_overrides(), &no_env).unwrap();
        assert!(!c.cores.is_empty());
    }

    #[test]
    fn cores_and_cpuset_exclude_each_other_on_the_command_line() {
        assert!(Cli::try_parse_from(["sluice", "start", "--cores", "1", "--cpuset", "0"]).is_err());
    }

    #[test]
    fn every_flag_reaches_its_override() {
        let argv = [
            "sluice",
            "start",
            "--config=/etc/sluice.toml",
            "--data-dir=/data",
            "--kafka-addr=0.0.0.0:9093",
            "--advertised-addr=broker-1:9093",
            "--admin-addr=0.0.0.0:9645",
            "--cpuset=0-1",
            "--node-id=-1",
            "--memory=2GiB",
            "--max-request-bytes=1MiB",
            "--max-connections=5",
            "--slow-request-ms=10",
            "--auto-create-topics=false",
            "--default-partitions=-3",
            "--group-initial-rebalance-delay-ms=0",
            "--group-consumer-session-timeout-ms=6000",
            "--group-consumer-heartbeat-interval-ms=500",
            "--log-level=debug",
            "--io-memory=4MiB",
            "--cleaner-io-bytes-per-sec=1MiB",
            "--production",
        ];
        let text = |s: &str| Some(s.to_string());
        let expected = Overrides {
            config: Some(PathBuf::from("/etc/sluice.toml")),
            data_dir: Some(PathBuf::from("/data")),
            kafka_addr: text("0.0.0.0:9093"),
            advertised_addr: text("broker-1:9093"),
            admin_addr: text("0.0.0.0:9645"),
            cores: None,
            cpuset: text("0-1"),
            node_id: text("-1"),
            memory: text("2GiB"),
            max_request_bytes: text("1MiB"),
            max_connections: text("5"),
            slow_request_ms: text("10"),
            auto_create_topics: text("false"),
            default_partitions: text("-3"),
            group_initial_rebalance_delay_ms: text("0"),
            group_consumer_session_timeout_ms: text("6000"),
            group_consumer_heartbeat_interval_ms: text("500"),
            log_level: text("debug"),
            io_memory: text("4MiB"),
            cleaner_io_bytes_per_sec: text("1MiB"),
            production: true,
        };
        assert_eq!(start_args(&argv).into_overrides(), expected);
        let cores = start_args(&["sluice", "--cores", "2"]).into_overrides();
        assert_eq!(cores.cores.as_deref(), Some("2"));
        assert_eq!(
            start_args(&["sluice"]).into_overrides(),
            Overrides::default()
        );
    }
}
