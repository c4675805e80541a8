//! `test-worker`: client processes that end-to-end tests start and then kill with SIGKILL,
//! so a client can die without a word (no LeaveGroup, no EndTxn) while the test watches
//! what the broker does. Built by `cargo test` as an example target (it needs the
//! dev-dependency librdkafka); the tests find it next to their own binary.
//!
//! Usage:
//! - `test-worker group-consumer BOOTSTRAP TOPIC GROUP`: joins GROUP subscribed to TOPIC and
//!   polls for at most two minutes.
//! - `test-worker eos-loop BOOTSTRAP INPUT OUTPUT GROUP TXN_ID`: an exactly-once
//!   consume-transform-produce loop (upper-cases every record of INPUT partition 0 into
//!   OUTPUT partition 0, committing its input offsets in the same transaction) that exits
//!   after five idle seconds.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// How long a group consumer runs at most if nobody kills it.
const GROUP_CONSUMER_MAX: Duration = Duration::from_secs(120);
/// Idle time after which the exactly-once loop considers its input done.
const EOS_IDLE_EXIT: Duration = Duration::from_secs(5);
/// Timeout for client calls that should succeed.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        ["group-consumer", bootstrap, topic, group] => group_consumer(bootstrap, topic, group),
        ["eos-loop", bootstrap, input, output, group, txn_id] => {
            eos_loop(bootstrap, input, output, group, txn_id)
        }
        _ => {
            eprintln!("usage: test-worker group-consumer BOOTSTRAP TOPIC GROUP | eos-loop BOOTSTRAP INPUT OUTPUT GROUP TXN_ID");
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

fn eos_loop(bootstrap: &str, input: &str, output: &str, group: &str, txn_id: &str) {
    let mut cc = client_config(bootstrap);
    cc.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest");
    let c: BaseConsumer = cc.create().expect("create consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(input, 0, Offset::Stored)
        .expect("partition list");
    c.assign(&tpl).expect("assign");
    let mut pc = client_config(bootstrap);
    pc.set("transactional.id", txn_id)
        .set("transaction.timeout.ms", "60000")
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5");
    let p: BaseProducer = pc.create().expect("create transactional producer");
    p.init_transactions(CLIENT_TIMEOUT)
        .expect("init_transactions");
    let mut idle = Instant::now();
    while idle.elapsed() < EOS_IDLE_EXIT {
        let mut batch = Vec::new();
        while batch.len() < 10 {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => batch.push(m.detach()),
                Some(Err(e)) => panic!("eos consumer: {e}"),
                None => break,
            }
        }
        let Some(last) = batch.last() else {
            continue;
        };
        let next = last.offset() + 1;
        idle = Instant::now();
        p.begin_transaction().expect("begin");
        for m in &batch {
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_uppercase();
            p.send(BaseRecord::to(output).partition(0).key("k").payload(&v))
                .unwrap_or_else(|(e, _)| panic!("enqueue {v}: {e}"));
            p.poll(Duration::ZERO);
        }
        // Slow enough that a kill lands inside a transaction.
        std::thread::sleep(Duration::from_millis(50));
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(input, 0, Offset::Offset(next))
            .expect("offsets");
        let cgm = c.group_metadata().expect("group metadata");
        p.send_offsets_to_transaction(&offsets, &cgm, CLIENT_TIMEOUT)
            .expect("send offsets");
        p.commit_transaction(CLIENT_TIMEOUT).expect("commit");
        println!("committed through {next}");
    }
}
