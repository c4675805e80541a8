//! Merging and validation across sources: defaults, precedence, the error that names the
//! setting, and the CPU choice.

use super::*;
use std::collections::HashMap;

const CPUS: &[usize] = &[0, 1];

fn no_env(_: &str) -> Option<String> {
    None
}

/// `--flag value` pairs as the command line would hand them over.
fn args(list: &[&str]) -> Overrides {
    let mut overrides = Overrides::default();
    for pair in list.chunks(2) {
        let [flag, value] = pair else {
            panic!("{flag:?} needs a value", flag = pair[0]);
        };
        let slot = match *flag {
            "--kafka-addr" => &mut overrides.kafka_addr,
            "--advertised-addr" => &mut overrides.advertised_addr,
            "--admin-addr" => &mut overrides.admin_addr,
            "--cores" => &mut overrides.cores,
            "--cpuset" => &mut overrides.cpuset,
            "--node-id" => &mut overrides.node_id,
            "--memory" => &mut overrides.memory,
            "--max-request-bytes" => &mut overrides.max_request_bytes,
            "--max-connections" => &mut overrides.max_connections,
            "--slow-request-ms" => &mut overrides.slow_request_ms,
            "--auto-create-topics" => &mut overrides.auto_create_topics,
            "--default-partitions" => &mut overrides.default_partitions,
            "--group-initial-rebalance-delay-ms" => &mut overrides.group_initial_rebalance_delay_ms,
            "--group-consumer-session-timeout-ms" => {
                &mut overrides.group_consumer_session_timeout_ms
            }
            "--group-consumer-heartbeat-interval-ms" => {
                &mut overrides.group_consumer_heartbeat_interval_ms
            }
            "--log-level" => &mut overrides.log_level,
            "--io-memory" => &mut overrides.io_memory,
            "--cleaner-io-bytes-per-sec" => &mut overrides.cleaner_io_bytes_per_sec,
            other => panic!("no text flag {other}"),
        };
        *slot = Some(value.to_string());
    }
    overrides
}

fn with(list: &[&str], file: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let file = file.map(|text| {
        (
            PathBuf::from("/etc/sluice.toml"),
            toml::from_str(text).unwrap(),
        )
    });
    resolve_with(args(list), file, &|name| env.get(name).cloned(), CPUS)
}

fn err(list: &[&str], file: Option<&str>, env: &[(&str, &str)]) -> String {
    with(list, file, env).unwrap_err().to_string()
}

#[test]
fn defaults() {
    let c = with(&[], None, &[]).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.kafka_addr, "127.0.0.1:9092".parse().unwrap());
    assert_eq!(
        (c.advertised_host.as_str(), c.advertised_port),
        ("127.0.0.1", 9092)
    );
    assert_eq!(c.admin_addr, "127.0.0.1:9644".parse().unwrap());
    assert_eq!(c.cores, vec![0, 1]);
    assert_eq!(c.node_id, 0);
    assert_eq!(c.memory_per_shard_bytes, 1 << 30);
    assert_eq!(c.io_memory_per_shard_bytes, 8 << 20);
    assert_eq!(c.max_request_bytes, 100 << 20);
    assert_eq!(c.max_connections, 10_000);
    assert!(c.auto_create_topics);
    assert_eq!(c.default_partitions, 1);
    assert_eq!(c.log_level, "info");
}

#[test]
fn precedence_file_env_flag() {
    let file = Some("node_id = 1\nmemory = \"128MiB\"\nlog_level = \"warn\"\n");
    let c = with(&[], file, &[]).unwrap();
    assert_eq!((c.node_id, c.memory_per_shard_bytes), (1, 128 << 20));
    let env = [("SLUICE_NODE_ID", "2"), ("SLUICE_MEMORY", "256MiB")];
    let c = with(&[], file, &env).unwrap();
    assert_eq!((c.node_id, c.memory_per_shard_bytes), (2, 256 << 20));
    assert_eq!(c.log_level, "warn");
    let c = with(&["--node-id", "3"], file, &env).unwrap();
    assert_eq!((c.node_id, c.memory_per_shard_bytes), (3, 256 << 20));
}

#[test]
fn rust_log_wins() {
    let c = with(&["--log-level", "debug"], None, &[("RUST_LOG", "trace")]).unwrap();
    assert_eq!(c.log_level, "trace");
    let c = with(&["--log-level", "debug"], None, &[]).unwrap();
    assert_eq!(c.log_level, "debug");
}

#[test]
fn advertised_defaults_follow_kafka_addr() {
    let c = with(&["--kafka-addr", "0.0.0.0:9093"], None, &[]).unwrap();
    assert_eq!(
        (c.advertised_host.as_str(), c.advertised_port),
        ("127.0.0.1", 9093)
    );
    let c = with(&["--kafka-addr", "[::]:9094"], None, &[]).unwrap();
    assert_eq!(
        (c.advertised_host.as_str(), c.advertised_port),
        ("127.0.0.1", 9094)
    );
    let c = with(&["--kafka-addr", "10.0.0.5:9092"], None, &[]).unwrap();
    assert_eq!(c.advertised_host, "10.0.0.5");
    let c = with(&["--advertised-addr", "broker-1.example:19092"], None, &[]).unwrap();
    assert_eq!(
        (c.advertised_host.as_str(), c.advertised_port),
        ("broker-1.example", 19092)
    );
    let c = with(&["--advertised-addr", "[::1]:9092"], None, &[]).unwrap();
    assert_eq!(c.advertised_host, "::1");
}

#[test]
fn cores_and_cpuset() {
    assert_eq!(with(&["--cores", "1"], None, &[]).unwrap().cores, vec![0]);
    assert_eq!(with(&["--cpuset", "1"], None, &[]).unwrap().cores, vec![1]);
    let e = err(&["--cpuset", "0,9"], None, &[]);
    assert_eq!(
        e,
        "invalid value for --cpuset (cpuset = \"0,9\", from the command line): \
         CPU 9 is not available to this process (available: 0-1)"
    );
    let e = err(&["--cores", "3"], None, &[]);
    assert!(e.contains("--cores") && e.contains("only 2 CPUs"), "{e}");
    assert!(err(&["--cores", "0"], None, &[]).contains("--cores"));
    let e = err(&[], None, &[("SLUICE_CORES", "1"), ("SLUICE_CPUSET", "0")]);
    assert!(
        e.contains("mutually exclusive") && e.contains("SLUICE_CORES"),
        "{e}"
    );
    // A flag outranks the other setting from the environment.
    let c = with(&["--cores", "2"], None, &[("SLUICE_CPUSET", "1")]).unwrap();
    assert_eq!(c.cores, vec![0, 1]);
    let c = with(&[], Some("cores = 2"), &[("SLUICE_CPUSET", "1")]).unwrap();
    assert_eq!(c.cores, vec![1]);
}

#[test]
fn bad_values_name_the_setting() {
    let cases: &[(&[&str], &str)] = &[
        (&["--kafka-addr", "nope"], "--kafka-addr"),
        (&["--kafka-addr", "1.2.3.4:99999"], "--kafka-addr"),
        (&["--admin-addr", "127.0.0.1:9092"], "--admin-addr"),
        (&["--advertised-addr", "0.0.0.0:9092"], "--advertised-addr"),
        (&["--advertised-addr", "host:0"], "--advertised-addr"),
        (&["--node-id", "-1"], "--node-id"),
        (&["--node-id", "x"], "--node-id"),
        (&["--memory", "63MiB"], "--memory"),
        (&["--memory", "lots"], "--memory"),
        (&["--io-memory", "0"], "--io-memory"),
        (&["--io-memory", "2GiB"], "--io-memory"),
        (&["--max-request-bytes", "4GiB"], "--max-request-bytes"),
        (&["--max-connections", "0"], "--max-connections"),
        (&["--auto-create-topics", "maybe"], "--auto-create-topics"),
        (&["--default-partitions", "0"], "--default-partitions"),
        (&["--log-level", ""], "--log-level"),
        (
            &["--group-consumer-session-timeout-ms", "0"],
            "--group-consumer-session-timeout-ms",
        ),
        // The heartbeat interval must stay below the session timeout; the given one is named.
        (
            &["--group-consumer-heartbeat-interval-ms", "45000"],
            "--group-consumer-heartbeat-interval-ms",
        ),
        (
            &["--group-consumer-session-timeout-ms", "3000"],
            "--group-consumer-session-timeout-ms",
        ),
    ];
    for (flags, name) in cases {
        let e = err(flags, None, &[]);
        assert!(
            e.starts_with(&format!("invalid value for {name} (")),
            "{flags:?}: {e}"
        );
    }
    let e = err(&[], None, &[("SLUICE_DATA_DIR", "")]);
    assert!(
        e.contains("--data-dir") && e.contains("SLUICE_DATA_DIR"),
        "{e}"
    );
    let e = err(&[], None, &[("SLUICE_MEMORY", "1KiB")]);
    assert!(e.contains("--memory") && e.contains("SLUICE_MEMORY"), "{e}");
    let e = err(&[], Some("default_partitions = -2"), &[]);
    assert!(
        e.contains("default_partitions") && e.contains("/etc/sluice.toml"),
        "{e}"
    );
}

#[test]
fn file_via_flag_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, "max_request_bytes = 1048576\nio_memory = \"4MiB\"\n").unwrap();
    let p = path.to_str().unwrap();
    let flags = Overrides {
        config: Some(path.clone()),
        ..Overrides::default()
    };
    let c = resolve(flags, &no_env).unwrap();
    assert_eq!(
        (c.max_request_bytes, c.io_memory_per_shard_bytes),
        (1 << 20, 4 << 20)
    );
    let env = |name: &str| (name == "SLUICE_CONFIG").then(|| p.to_string());
    let c = resolve(Overrides::default(), &env).unwrap();
    assert_eq!(c.max_request_bytes, 1 << 20);
    assert!(!c.cores.is_empty());
}
