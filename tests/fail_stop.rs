//! Fail-stop: a shard that panics stops the whole broker with a clear message and a
//! non-zero exit status, instead of leaving its partitions dead while the other shards keep
//! serving. The panic is provoked with the `SLUICE_TEST_PANIC_ON_TOPIC` test hook.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::admin::{NewTopic, TopicReplication};
use sluice::cluster::partitions::{shard_for, TEST_PANIC_ON_TOPIC_ENV};

/// Generous: the broker drains for up to 10 s and exits by itself within 20 s.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_shard_stops_the_broker_with_a_clear_message() {
    // A one-partition topic owned by shard 1, so shard 0 (admin API, controller) would
    // keep serving if nothing stopped it.
    let base = topic_name("doomed");
    let topic = (0..100)
        .map(|i| format!("{base}-{i}"))
        .find(|t| shard_for(t, 0, 2) == 1)
        .expect("some name lands on shard 1");
    let mut broker = Broker::start_with_env(&[], &[(TEST_PANIC_ON_TOPIC_ENV, topic.as_str())]);
    let a = admin(&broker.bootstrap());
    // The answer does not matter: creating the topic makes shard 1 open its partition.
    let _ = a
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &admin_opts(),
        )
        .await;
    let status = broker
        .wait_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("the broker kept running after shard 1 panicked"));
    assert!(
        !status.success(),
        "exit status {status} after a shard panic"
    );
    let log = broker.log();
    assert!(
        log.contains("shard 1 panicked"),
        "the log names the shard; log:\n{log}"
    );
    assert!(
        log.contains("the broker is stopping; restart it, recovery will replay the log"),
        "the log says what happens and what to do; log:\n{log}"
    );
    assert!(
        log.contains(&format!("test hook {TEST_PANIC_ON_TOPIC_ENV}")),
        "the log carries the panic message; log:\n{log}"
    );
}
