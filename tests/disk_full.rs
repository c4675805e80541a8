//! A full disk, for real: the broker's data directory is a size-limited tmpfs (it takes
//! O_DIRECT on these kernels; mounting needs root, which CI has — if the mount is refused
//! the test fails rather than skips). Producing until the disk is full must get a Kafka
//! error, never take the broker or the partition down, and never lose or duplicate an
//! acknowledged record; once space is freed (another topic deleted) the same partition
//! accepts writes again by itself.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Size of the tmpfs the data directory lives on.
const DISK: &str = "48m";
/// Record payload size: the disk fills after a few hundred records.
const RECORD_BYTES: usize = 64 * 1024;
/// Segment size of both topics (the pre-allocation step is capped by it).
const SEGMENT_BYTES: &str = "4194304";

/// A tmpfs mounted for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("create mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs at {} failed (this test needs root): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn payload(i: usize) -> Vec<u8> {
    let mut v = format!("rec-{i:06}-").into_bytes();
    v.resize(RECORD_BYTES, b'x');
    v
}

fn id_of(payload: &[u8]) -> usize {
    std::str::from_utf8(&payload[4..10])
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("payload carries its id")
}

async fn try_send(p: &FutureProducer, topic: &str, i: usize) -> Result<i64, KafkaError> {
    let value = payload(i);
    p.send(
        FutureRecord::<[u8], [u8]>::to(topic)
            .partition(0)
            .payload(&value[..]),
        SEND_TIMEOUT,
    )
    .await
    .map(|(_, offset)| offset)
    .map_err(|(e, _)| e)
}

#[test]
fn a_full_disk_refuses_writes_loses_nothing_and_recovers_when_space_is_freed() {
    let tmp = tempfile::Builder::new()
        .prefix("sluice-disk-full-")
        .tempdir()
        .unwrap();
    let _disk = Tmpfs::mount(&tmp.path().join("data"), DISK);
    let mut broker = Broker::new_in(tmp.path().to_path_buf(), &[]);
    broker.spawn_and_wait();
    let ballast = topic_name("ballast");
    let main = topic_name("full");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin = admin(&broker.bootstrap());
        for topic in [&ballast, &main] {
            create_topic(&admin, topic, 1, &[("segment.bytes", SEGMENT_BYTES)]).await;
        }
        let p = producer(
            &broker.bootstrap(),
            &[
                ("acks", "all"),
                ("linger.ms", "0"),
                ("enable.idempotence", "false"),
                ("message.send.max.retries", "0"),
                ("message.max.bytes", "1000000"),
            ],
        );
        // 16 MiB of ballast, all of which must fit.
        for i in 0..256 {
            try_send(&p, &ballast, i)
                .await
                .unwrap_or_else(|e| panic!("ballast record {i}: {e}"));
        }
        // Fill the disk through the main topic until the broker refuses.
        let mut acked: Vec<usize> = Vec::new();
        let mut refused = None;
        for i in 0..2_000 {
            match try_send(&p, &main, i).await {
                Ok(offset) => {
                    assert_eq!(offset, acked.len() as i64, "offsets stay dense");
                    acked.push(i);
                }
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let refused = refused.expect("a 48 MiB disk never filled up");
        assert!(
            matches!(
                refused,
                KafkaError::MessageProduction(RDKafkaErrorCode::KafkaStorageError)
            ),
            "a full disk answers KAFKA_STORAGE_ERROR, got {refused}"
        );
        assert!(broker.is_running(), "the broker died on a full disk");
        let (status, body) = http_get(broker.admin_port, "/v1/health");
        assert_eq!(
            status, 200,
            "a full disk is not an offline partition: {body}"
        );

        // Free space: delete the ballast. Writes resume by themselves.
        let deleted = admin
            .delete_topics(&[&ballast], &admin_opts())
            .await
            .expect("DeleteTopics");
        assert!(deleted.iter().all(|r| r.is_ok()), "{deleted:?}");
        let mut next = 10_000;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match try_send(&p, &main, next).await {
                Ok(offset) => {
                    assert_eq!(
                        offset,
                        acked.len() as i64,
                        "no record of the full disk kept"
                    );
                    acked.push(next);
                    next += 1;
                    break;
                }
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "writes did not resume within 30 s of freeing space: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        for _ in 0..20 {
            try_send(&p, &main, next)
                .await
                .unwrap_or_else(|e| panic!("record {next} after space came back: {e}"));
            acked.push(next);
            next += 1;
        }

        // Every acknowledged record exactly once, in order, and nothing else.
        let c = consumer(&broker.bootstrap(), &[("fetch.max.bytes", "52428800")]);
        let (_, high) = watermarks(&c, &main, 0);
        assert_eq!(
            high,
            acked.len() as i64,
            "high watermark = acknowledged records"
        );
        let read: Vec<usize> = consume_range(&c, &main, 0, 0, high, Duration::from_secs(60))
            .iter()
            .map(|m| id_of(m.payload().unwrap_or_default()))
            .collect();
        assert_eq!(read, acked);
    });
    broker.kill9();
}
