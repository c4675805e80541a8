//! End-to-end tests of `sluicectl` (and of the `sluice-client` crate it is built on) against a
//! real `sluice` broker: every subcommand is run as a process, with `--format json` output
//! parsed and checked.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Broker;
use kafka_protocol::messages::{ApiKey, MetadataRequest};
use serde_json::Value;
use sluice_client::{Client, ClientConfig, ProduceOptions, ProduceRecord};

/// The `sluicectl` binary. It is its own workspace package (tools/sluicectl), so cargo does
/// not hand this test its path; it is built into the same directory as the broker binary.
/// From the workspace root, `cargo test --release --workspace` and `cargo test --release
/// --test sluicectl` build it first (tools/sluicectl/tests/sluicectl.rs says why);
/// `-p sluice` alone does not.
fn ctl_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_sluice")).with_file_name("sluicectl");
    assert!(
        bin.is_file(),
        "{} is missing: sluicectl is a separate workspace package; build it with \
         `cargo build --release` or run `cargo test --release --workspace` \
         (or `cargo test --release --test sluicectl`) from the workspace root",
        bin.display()
    );
    bin
}

/// Run sluicectl against `brokers` with `args`, feeding `stdin`.
fn ctl_at(brokers: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(ctl_bin());
    cmd.env_remove("SLUICE_BROKERS")
        .arg("--brokers")
        .arg(brokers)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn sluicectl");
    if let Some(input) = stdin {
        let mut s = child.stdin.take().unwrap();
        s.write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().expect("wait sluicectl")
}

fn ctl(b: &Broker, args: &[&str]) -> Output {
    ctl_at(&b.bootstrap(), args, None)
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Run with `--format json`, assert success, parse stdout.
fn json(b: &Broker, args: &[&str]) -> Value {
    let mut full = vec!["--format", "json"];
    full.extend_from_slice(args);
    let o = ctl(b, &full);
    assert!(
        o.status.success(),
        "sluicectl {args:?} failed: {}",
        show(&o)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("sluicectl {args:?}: bad JSON ({e}): {}", show(&o)))
}

/// Assert the command fails with exit code `code` and stderr containing `needle`.
fn fails(o: Output, code: i32, needle: &str) {
    assert_eq!(o.status.code(), Some(code), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(needle),
        "stderr lacks {needle:?}: {}",
        show(&o)
    );
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn client(b: &Broker) -> Client {
    Client::connect(ClientConfig::new(&[b.bootstrap()])).expect("client connect")
}

fn partition(describe: &Value, p: i64) -> &Value {
    describe["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["partition"] == p)
        .unwrap_or_else(|| panic!("no partition {p} in {describe}"))
}

fn config<'a>(describe: &'a Value, name: &str) -> Option<&'a Value> {
    describe["configs"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

#[test]
fn topic_commands() {
    let b = Broker::start();
    let created = json(
        &b,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=60000",
        ],
    );
    assert_eq!(created["created"], true);

    let list = json(&b, &["topic", "list"]);
    let t = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .unwrap_or_else(|| panic!("orders not listed: {list}"));
    assert_eq!(t["partitions"], 3);
    assert_eq!(t["replication_factor"], 1);

    let d = json(&b, &["topic", "describe", "orders"]);
    assert_eq!(d["partitions"].as_array().unwrap().len(), 3);
    for p in 0..3 {
        let part = partition(&d, p);
        assert!(part["leader"].as_i64().unwrap() >= 0, "{d}");
        assert_eq!(part["log_start_offset"], 0);
        assert_eq!(part["high_watermark"], 0);
    }
    let r = config(&d, "retention.ms").unwrap_or_else(|| panic!("no retention.ms: {d}"));
    assert_eq!(r["value"], "60000");
    assert_eq!(r["source"], "DYNAMIC_TOPIC_CONFIG");

    // Human output has the partition table.
    let o = ctl(&b, &["topic", "describe", "orders"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(stdout(&o).contains("HIGH-WATERMARK"), "{}", show(&o));

    json(
        &b,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "cleanup.policy=compact",
            "--delete",
            "retention.ms",
        ],
    );
    let d = json(&b, &["topic", "describe", "orders"]);
    assert_eq!(
        config(&d, "cleanup.policy").unwrap()["value"],
        "compact",
        "{d}"
    );
    let r = config(&d, "retention.ms");
    assert!(
        r.map(|r| r["source"] != "DYNAMIC_TOPIC_CONFIG")
            .unwrap_or(true),
        "retention.ms still overridden: {d}"
    );

    json(&b, &["topic", "add-partitions", "orders", "--count", "5"]);
    let d = json(&b, &["topic", "describe", "orders"]);
    assert_eq!(d["partitions"].as_array().unwrap().len(), 5, "{d}");

    json(&b, &["topic", "delete", "orders"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = json(&b, &["topic", "list"]);
        if !list
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "orders")
        {
            break;
        }
        assert!(Instant::now() < deadline, "orders still listed: {list}");
        std::thread::sleep(Duration::from_millis(100));
    }

    fails(
        ctl(&b, &["topic", "describe", "nosuch"]),
        1,
        "unknown topic nosuch",
    );
    fails(
        ctl(&b, &["topic", "delete", "nosuch"]),
        1,
        "unknown topic nosuch",
    );
    fails(
        ctl(&b, &["topic", "create", "bad", "--config", "novalue"]),
        2,
        "KEY=VALUE",
    );
}

#[test]
fn produce_and_consume() {
    let b = Broker::start();
    json(&b, &["topic", "create", "events", "--partitions", "2"]);

    let o = ctl_at(
        &b.bootstrap(),
        &[
            "--format",
            "json",
            "produce",
            "events",
            "--partition",
            "1",
            "--key-separator",
            ":",
            "--header",
            "source=test",
            "--acks",
            "all",
        ],
        Some("k1:v1\nk2:v2\nno-key-line\n"),
    );
    assert!(o.status.success(), "{}", show(&o));
    let p: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["records"], 3, "{p}");
    assert_eq!(p["partitions"][0]["partition"], 1);
    assert_eq!(p["partitions"][0]["base_offset"], 0);

    // Dump: from the beginning to the end, then exit.
    let o = ctl(
        &b,
        &["--format", "json", "consume", "events", "--from-beginning"],
    );
    assert!(o.status.success(), "{}", show(&o));
    let recs: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 3, "{}", show(&o));
    assert_eq!(recs[0]["key"], "k1");
    assert_eq!(recs[0]["value"], "v1");
    assert_eq!(recs[0]["offset"], 0);
    assert_eq!(recs[0]["partition"], 1);
    assert_eq!(recs[0]["headers"]["source"], "test");
    assert_eq!(recs[2]["key"], Value::Null);
    assert_eq!(recs[2]["value"], "no-key-line");

    // Format string, --partition, --offset, --count.
    let o = ctl(
        &b,
        &[
            "consume",
            "events",
            "--partition",
            "1",
            "--offset",
            "1",
            "--count",
            "1",
            "--format-string",
            "%k=%v@%o/%p %h",
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(stdout(&o), "k2=v2@1/1 source=test\n");

    // Keyed records without --partition follow murmur2; all land somewhere readable.
    let o = ctl_at(
        &b.bootstrap(),
        &["produce", "events", "--key-separator", ":", "--acks", "1"],
        Some("a:1\nb:2\nc:3\nd:4\n"),
    );
    assert!(o.status.success(), "{}", show(&o));
    let o = ctl(
        &b,
        &[
            "consume",
            "events",
            "--from-beginning",
            "--format-string",
            "%v",
        ],
    );
    assert_eq!(stdout(&o).lines().count(), 7, "{}", show(&o));

    // acks=0: no response, still written.
    let o = ctl_at(
        &b.bootstrap(),
        &["produce", "events", "--partition", "0", "--acks", "0"],
        Some("fire-and-forget\n"),
    );
    assert!(o.status.success(), "{}", show(&o));
    let o = ctl(
        &b,
        &[
            "consume",
            "events",
            "--partition",
            "0",
            "--from-beginning",
            "--count",
            "100",
            "--idle-timeout",
            "5",
            "--format-string",
            "%v",
        ],
    );
    // --count 100 is not reached: exits 1 after the idle timeout, having printed what exists.
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(stdout(&o).contains("fire-and-forget"), "{}", show(&o));

    // --from-time: the future gives nothing, the past gives everything.
    let o = ctl(
        &b,
        &["consume", "events", "--from-time", "2100-01-01T00:00:00Z"],
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(stdout(&o), "");
    let o = ctl(
        &b,
        &[
            "consume",
            "events",
            "--partition",
            "1",
            "--from-time",
            "2000-01-01T00:00:00Z",
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(stdout(&o).starts_with("v1\nv2\n"), "{}", show(&o));

    // Default start is the end: nothing printed, exit 0.
    let o = ctl(&b, &["consume", "events"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(stdout(&o), "");

    fails(
        ctl_at(&b.bootstrap(), &["produce", "nosuch"], Some("x\n")),
        1,
        "unknown topic nosuch",
    );
    fails(ctl(&b, &["consume", "nosuch"]), 1, "unknown topic nosuch");
    fails(
        ctl(&b, &["consume", "events", "--partition", "9"]),
        1,
        "no partition 9",
    );
    fails(
        ctl(&b, &["consume", "events", "--from-time", "yesterday"]),
        2,
        "RFC 3339",
    );
}

/// Fail unless the broker advertises the consumer-group APIs the group commands use: Sluice
/// implements them, so a missing one is a regression, not a reason to skip.
fn assert_has_groups(c: &Client) {
    let keys = [
        ApiKey::FindCoordinator,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::ListGroups,
        ApiKey::DescribeGroups,
        ApiKey::DeleteGroups,
    ];
    let missing: Vec<_> = keys.iter().filter(|k| !c.supports(**k).unwrap()).collect();
    assert!(
        missing.is_empty(),
        "the broker does not advertise {missing:?} (consumer-group APIs)"
    );
}

fn offsets_row<'a>(d: &'a Value, topic: &str, p: i64) -> &'a Value {
    d["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["topic"] == topic && r["partition"] == p)
        .unwrap_or_else(|| panic!("no offsets row for {topic}/{p}: {d}"))
}

#[test]
fn group_lag_reset_and_delete() {
    let b = Broker::start();
    let c = client(&b);
    assert_has_groups(&c);
    json(&b, &["topic", "create", "work", "--partitions", "1"]);
    let recs: Vec<ProduceRecord> = (0..10)
        .map(|i| ProduceRecord {
            value: Some(format!("r{i}").into()),
            ..Default::default()
        })
        .collect();
    let r = c
        .produce("work", 0, &recs, &ProduceOptions::default())
        .unwrap();
    assert_eq!(r.base_offset, 0);

    // The group "consumed" 4 records: commit offset 4 as a consumer would.
    c.commit_offsets("workers", &[("work".into(), 0, 4)])
        .unwrap();

    let d = json(&b, &["group", "describe", "workers"]);
    let row = offsets_row(&d, "work", 0);
    assert_eq!(row["committed"], 4, "{d}");
    assert_eq!(row["high_watermark"], 10, "{d}");
    assert_eq!(row["lag"], 6, "{d}");
    assert_eq!(d["total_lag"], 6, "{d}");
    assert_eq!(d["members"].as_array().unwrap().len(), 0);

    let o = ctl(&b, &["group", "describe", "workers"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(stdout(&o).contains("Total lag:      6"), "{}", show(&o));

    let l = json(&b, &["group", "list"]);
    assert!(
        l.as_array()
            .unwrap()
            .iter()
            .any(|g| g["group_id"] == "workers"),
        "{l}"
    );

    // Dry run prints the plan and changes nothing.
    let plan = json(
        &b,
        &[
            "group",
            "reset-offsets",
            "workers",
            "--topic",
            "work",
            "--to-earliest",
        ],
    );
    assert_eq!(plan["executed"], false);
    assert_eq!(plan["partitions"][0]["current"], 4);
    assert_eq!(plan["partitions"][0]["new"], 0);
    let d = json(&b, &["group", "describe", "workers"]);
    assert_eq!(offsets_row(&d, "work", 0)["committed"], 4, "{d}");
    let o = ctl(
        &b,
        &[
            "group",
            "reset-offsets",
            "workers",
            "--topic",
            "work",
            "--to-earliest",
        ],
    );
    assert!(stdout(&o).contains("Dry run"), "{}", show(&o));

    // Execute: to-earliest, to-offset (clamped), to-latest, to-datetime.
    let cases: &[(&[&str], i64)] = &[
        (&["--to-earliest"], 0),
        (&["--to-offset", "7"], 7),
        (&["--to-offset", "99"], 10),
        (&["--to-latest"], 10),
        (&["--to-datetime", "2000-01-01T00:00:00Z"], 0),
        (&["--to-datetime", "2100-01-01T00:00:00Z"], 10),
    ];
    for (flags, want) in cases {
        let mut args = vec!["group", "reset-offsets", "workers", "--topic", "work"];
        args.extend_from_slice(flags);
        args.push("--execute");
        let r = json(&b, &args);
        assert_eq!(r["executed"], true);
        assert_eq!(r["partitions"][0]["new"], *want, "{flags:?}: {r}");
        let d = json(&b, &["group", "describe", "workers"]);
        let row = offsets_row(&d, "work", 0);
        assert_eq!(row["committed"], *want, "{flags:?}: {d}");
        assert_eq!(row["lag"], 10 - *want, "{flags:?}: {d}");
    }

    fails(
        ctl(
            &b,
            &["group", "reset-offsets", "workers", "--topic", "work"],
        ),
        2,
        "--to-earliest",
    );
    fails(
        ctl(
            &b,
            &[
                "group",
                "reset-offsets",
                "workers",
                "--topic",
                "nosuch",
                "--to-latest",
            ],
        ),
        1,
        "unknown topic nosuch",
    );

    json(&b, &["group", "delete", "workers"]);
    fails(
        ctl(&b, &["group", "describe", "workers"]),
        1,
        "does not exist",
    );
}

#[test]
fn group_with_a_live_member() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let b = Broker::start();
    let c = client(&b);
    assert_has_groups(&c);
    assert!(
        c.supports(ApiKey::JoinGroup).unwrap(),
        "the broker does not advertise JoinGroup"
    );
    json(&b, &["topic", "create", "live", "--partitions", "2"]);
    let consumer: BaseConsumer = common::client_config(&b.bootstrap())
        .set("group.id", "live-group")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["live"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let d = loop {
        let _ = consumer.poll(Duration::from_millis(100));
        let o = ctl(&b, &["--format", "json", "group", "describe", "live-group"]);
        if o.status.success() {
            let d: Value = serde_json::from_slice(&o.stdout).unwrap();
            if d["state"] == "Stable" && !d["members"].as_array().unwrap().is_empty() {
                break d;
            }
        }
        assert!(
            Instant::now() < deadline,
            "group never became Stable: {}",
            show(&o)
        );
    };
    assert_eq!(d["protocol_type"], "consumer", "{d}");
    let m = &d["members"][0];
    assert_eq!(m["assignment"]["live"], serde_json::json!([0, 1]), "{d}");
    let row = offsets_row(&d, "live", 1);
    assert!(row["member"].is_string(), "{d}");

    // Kafka refuses to reset offsets of a group with active members; so do we, up front.
    fails(
        ctl(
            &b,
            &[
                "group",
                "reset-offsets",
                "live-group",
                "--topic",
                "live",
                "--to-earliest",
                "--execute",
            ],
        ),
        1,
        "not empty",
    );
    drop(consumer);
}

#[test]
fn cluster_info_health_and_errors() {
    let b = Broker::start();
    json(&b, &["topic", "create", "h", "--partitions", "2"]);
    let info = json(&b, &["cluster", "info"]);
    assert!(info["cluster_id"].is_string(), "{info}");
    let brokers = info["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1, "{info}");
    assert_eq!(brokers[0]["port"], i64::from(b.kafka_port));
    assert_eq!(info["controller_id"], brokers[0]["node_id"]);
    assert!(info["topics"].as_i64().unwrap() >= 1);
    assert!(info["api_versions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["name"] == "Produce"));

    let h = json(&b, &["cluster", "health"]);
    assert_eq!(h["healthy"], true, "{h}");
    assert_eq!(h["brokers"], 1);
    assert!(h["partitions"].as_i64().unwrap() >= 2);
    let o = ctl(&b, &["cluster", "health"]);
    assert!(
        stdout(&o).starts_with("Cluster is healthy."),
        "{}",
        show(&o)
    );

    // Unreachable broker: clear message, exit 1; health reports it as JSON too.
    let dead = format!("127.0.0.1:{}", common::free_port());
    let o = ctl_at(&dead, &["topic", "list"], None);
    fails(
        o,
        1,
        &format!("cannot reach broker {dead}: connection refused"),
    );
    let o = ctl_at(&dead, &["--format", "json", "cluster", "health"], None);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let h: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(h["healthy"], false);
    assert!(h["problems"][0]
        .as_str()
        .unwrap()
        .contains("connection refused"));

    // A second, dead bootstrap address in front of a live one is skipped.
    let o = ctl_at(
        &format!("{dead},{}", b.bootstrap()),
        &["cluster", "info"],
        None,
    );
    assert!(o.status.success(), "{}", show(&o));

    // SLUICE_BROKERS is honoured.
    let o = Command::new(ctl_bin())
        .env("SLUICE_BROKERS", b.bootstrap())
        .args(["--format", "json", "topic", "list"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));

    // Usage errors exit 2.
    assert_eq!(ctl(&b, &["nonsense"]).status.code(), Some(2));
    assert_eq!(
        ctl(&b, &["--format", "yaml", "topic", "list"])
            .status
            .code(),
        Some(2)
    );
}

/// The client itself: pipelined requests on one connection against the real broker.
#[test]
fn client_pipelines_against_the_broker() {
    let b = Broker::start();
    let c = client(&b);
    json(&b, &["topic", "create", "pipe", "--partitions", "1"]);
    let conn = c.any_broker().unwrap();
    assert!(conn.supports(ApiKey::Produce));
    let inflight: Vec<_> = (0..32)
        .map(|_| conn.send(&MetadataRequest::default()).unwrap())
        .collect();
    let mut ids = Vec::new();
    for f in inflight {
        ids.push(f.correlation_id());
        let md = f.wait().unwrap();
        assert!(!md.brokers.is_empty());
    }
    ids.dedup();
    assert_eq!(ids.len(), 32);

    for i in 0..5 {
        let r = c
            .produce(
                "pipe",
                0,
                &[ProduceRecord {
                    key: Some(format!("k{i}").into()),
                    value: Some(format!("v{i}").into()),
                    ..Default::default()
                }],
                &ProduceOptions::default(),
            )
            .unwrap();
        assert_eq!(r.base_offset, i);
    }
    let f = c
        .fetch("pipe", 0, 2, &sluice_client::FetchOptions::default())
        .unwrap();
    assert_eq!(f.high_watermark, 5);
    assert_eq!(f.records.first().map(|r| r.offset), Some(2));
    assert_eq!(f.records.len(), 3);
    assert_eq!(f.next_offset, 5);
    let err = c
        .produce(
            "nosuch",
            0,
            &[ProduceRecord::default()],
            &ProduceOptions::default(),
        )
        .err()
        .unwrap();
    assert_eq!(
        err.kafka_error(),
        Some(kafka_protocol::error::ResponseError::UnknownTopicOrPartition),
        "{err}"
    );
}
