//! `test-worker`: a client process that end-to-end tests start and then kill with SIGKILL,
//! so a client can die without a word (no LeaveGroup, no EndTxn) while the test watches
//! what the broker does. Built by `cargo test` as an example target (it needs the
//! dev-dependency librdkafka); the tests find it next to their own binary.
//!
//! Usage:
//! - `test-worker group-consumer BOOTSTRAP TOPIC GROUP`: joins GROUP subscribed to TOPIC and
//!   polls for at most two minutes.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// How long a group consumer runs at most if nobody kills it.
const GROUP_CONSUMER_MAX: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        ["group-consumer", bootstrap, topic, group] => group_consumer(bootstrap, topic, group),
        _ => {
            eprintln!("usage: test-worker group-consumer BOOTSTRAP TOPIC GROUP");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000")
        .set("log_level", "4");
    c
}

fn group_consumer(bootstrap: &str, topic: &str, group: &str) {
    let mut cc = client_config(bootstrap);
    cc.set("group.id", group)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    let c: BaseConsumer = cc.create().expect("create group consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + GROUP_CONSUMER_MAX;
    while Instant::now() < deadline {
        if let Some(Err(e)) = c.poll(Duration::from_millis(100)) {
            eprintln!("group consumer: {e}");
        }
    }
}
