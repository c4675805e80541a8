//! Behaviour of a `Partition` on a real filesystem: idempotent retries, the transaction
//! index, and `truncate_to` rolling the log and the derived state back together.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::{AppendError, Appended, Partition, TopicConfig};
use crate::raft::Acks;
use crate::util::ids::Offset;

fn run<F: Future<Output = ()>>(fut: F) {
    glommio::LocalExecutorBuilder::default()
        .io_memory(0)
        .make()
        .unwrap()
        .run(fut);
}

async fn open(dir: &Path) -> Partition {
    Partition::open(
        Arc::from("t"),
        uuid::Uuid::nil(),
        0,
        dir.to_path_buf(),
        TopicConfig::default(),
        1 << 20,
    )
    .await
    .unwrap()
}

/// One batch of `count` records from producer `pid` starting at `sequence`.
fn batch(pid: i64, sequence: i32, count: usize, transactional: bool) -> BytesMut {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: sequence + i as i32,
            timestamp: 1_000,
            key: None,
            value: Some(bytes::Bytes::from_static(b"v")),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf
}

fn append(p: &Partition, b: BytesMut) -> Appended {
    p.append(b, false, 1_000).unwrap()
}

fn base_offset(a: Appended) -> i64 {
    match a {
        Appended::New(info) => info.base_offset,
        Appended::Duplicate(original) => panic!("unexpected duplicate of {original:?}"),
    }
}

#[test]
fn a_retry_is_answered_with_the_original_offset_before_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let p = open(dir.path()).await;
        assert_eq!(base_offset(append(&p, batch(7, 0, 2, false))), 0);
        let second = append(&p, batch(7, 2, 1, false));
        let Appended::New(info) = second else {
            panic!("second batch is new")
        };
        p.wait(&info, Acks::All).await.unwrap();
        match append(&p, batch(7, 0, 2, false)) {
            Appended::Duplicate(original) => assert_eq!(original.base_offset, 0),
            other => panic!("retry appended again: {other:?}"),
        }
        p.close().await.unwrap();
        let p = open(dir.path()).await;
        match append(&p, batch(7, 2, 1, false)) {
            Appended::Duplicate(original) => assert_eq!(original.base_offset, 2),
            other => panic!("retry after reopen appended again: {other:?}"),
        }
        assert!(matches!(
            p.append(batch(7, 9, 1, false), false, 1_000),
            Err(AppendError::OutOfOrder { expected: 3, .. })
        ));
    });
}

#[test]
fn each_open_is_a_new_leader_epoch_stamped_on_new_batches() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let p = open(dir.path()).await;
        let first = p.leader_epoch();
        let Appended::New(info) = append(&p, batch(-1, -1, 1, false)) else {
            panic!("plain batch is new")
        };
        p.wait(&info, Acks::All).await.unwrap();
        p.close().await.unwrap();
        let p = open(dir.path()).await;
        assert_eq!(p.leader_epoch().get(), first.get() + 1);
        // OffsetForLeaderEpoch: the first epoch ends where the log ends (nothing newer yet).
        assert_eq!(
            p.end_offset_for_epoch(first),
            Some((first, Offset(1))),
            "epoch history comes from the log"
        );
    });
}

#[test]
fn truncate_rolls_back_the_log_the_producer_table_and_open_transactions() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let p = open(dir.path()).await;
        let Appended::New(info) = append(&p, batch(7, 0, 1, false)) else {
            panic!("first batch is new")
        };
        p.wait(&info, Acks::All).await.unwrap();
        assert_eq!(p.high_watermark(), Offset(1));
        // An uncommitted tail: a second batch of producer 7 and an open transaction of 9.
        assert_eq!(base_offset(append(&p, batch(7, 1, 1, false))), 1);
        assert_eq!(base_offset(append(&p, batch(9, 0, 1, true))), 2);
        assert_eq!(p.open_transaction_since(9), Some(Offset(2)));
        assert!(
            p.truncate_to(Offset(0)).await.is_err(),
            "committed entries are never truncated"
        );
        p.truncate_to(Offset(1)).await.unwrap();
        assert_eq!(p.log_end_offset(), Offset(1));
        assert_eq!(p.open_transaction_since(9), None, "the transaction is gone");
        // Producer 7's second batch is gone too: sending it again appends it (no duplicate),
        // at the offset it had before.
        let Appended::New(info) = append(&p, batch(7, 1, 1, false)) else {
            panic!("the truncated batch is not a duplicate any more")
        };
        assert_eq!(info.base_offset, 1);
        p.wait(&info, Acks::All).await.unwrap();
        let read = p.read(Offset(0), Offset(2), 1 << 20).await.unwrap();
        assert_eq!(read.batches.len(), 2);
        assert_eq!(p.high_watermark(), Offset(2));
    });
}

/// A partition with 5-record batches of ~1 KB values over segments of ~4 KB.
async fn open_rolling(dir: &Path) -> Partition {
    let config = TopicConfig {
        segment_size_bytes: 4_000,
        ..TopicConfig::default()
    };
    Partition::open(
        Arc::from("t"),
        uuid::Uuid::nil(),
        0,
        dir.to_path_buf(),
        config,
        0,
    )
    .await
    .unwrap()
}

fn big_batch(tag: u8) -> BytesMut {
    let records: Vec<Record> = (0..5)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            // Contiguous sequences: the encoder starts a new batch at a sequence break.
            sequence: i as i32,
            timestamp: 1_000,
            key: None,
            value: Some(bytes::Bytes::from(vec![tag; 200])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf
}

fn segments_of(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

#[test]
fn repair_cuts_a_damaged_log_explicitly_keeping_what_it_removes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    let path2 = path.clone();
    let epoch_before = std::cell::Cell::new(0);
    run(async {
        let p = open_rolling(&path2).await;
        for i in 0..12 {
            let Appended::New(info) = append(&p, big_batch(b'a' + i)) else {
                panic!("new batch")
            };
            p.wait(&info, Acks::All).await.unwrap();
        }
        epoch_before.set(p.leader_epoch().get());
        p.close().await.unwrap();
    });
    let segments = segments_of(&path);
    assert!(segments.len() >= 3, "{segments:?}");
    // Damage the second batch of the second segment; make recovery scan it.
    let (base, _) = crate::storage::parse_segment_file_name(
        &segments[1].file_name().unwrap().to_string_lossy(),
    )
    .unwrap();
    let batch_len = big_batch(b'a').len() as u64;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&segments[1])
            .unwrap();
        f.write_all_at(b"XX", batch_len + 300).unwrap();
    }
    std::fs::write(path.join(crate::storage::RECOVERY_POINT_FILE), "0\n").unwrap();
    let damaged_at = base + 5;
    run(async {
        let p = open_rolling(&path2).await;
        assert!(p.offline_reason().is_some());
        p.close().await.unwrap();
    });

    // Refused: past the damage, and inside a batch.
    use super::repair::{execute, plan, RepairError};
    let past = plan(&path, damaged_at + 1);
    assert!(
        matches!(&past, Err(RepairError::DamagedBefore { readable_to, .. }) if *readable_to == damaged_at),
        "{past:?} {segments:?}"
    );
    assert!(matches!(
        plan(&path, damaged_at - 2),
        Err(RepairError::InsideBatch { .. })
    ));
    // A dry run (planning) changes nothing.
    let listing = |d: &Path| {
        let mut v: Vec<(String, u64)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                (
                    e.file_name().into_string().unwrap(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = listing(&path);
    let repair = plan(&path, damaged_at).unwrap();
    assert_eq!(listing(&path), before);
    assert_eq!(repair.segment, segments[1]);
    assert_eq!(repair.position, batch_len);
    assert_eq!(repair.moved.len(), segments.len() - 2);
    execute(&repair).unwrap();
    assert!(repair.cut_to.exists(), "the cut bytes are kept");
    for (from, to, _) in &repair.moved {
        assert!(
            !from.exists() && to.exists(),
            "{from:?} moved aside to {to:?}"
        );
    }

    run(async {
        let p = open_rolling(&path2).await;
        assert_eq!(p.offline_reason(), None);
        assert_eq!(p.log_end_offset().get(), damaged_at);
        assert!(
            p.leader_epoch().get() > epoch_before.get() + 1,
            "repair bumps the epoch beyond the restart's own bump"
        );
        let Appended::New(info) = append(&p, big_batch(b'z')) else {
            panic!("new batch")
        };
        assert_eq!(info.base_offset, damaged_at);
        p.wait(&info, Acks::All).await.unwrap();
        p.close().await.unwrap();
    });
    // Old batches after the cut never come back, at any later open.
    run(async {
        let p = open_rolling(&path2).await;
        assert_eq!(p.log_end_offset().get(), damaged_at + 5);
        let read = p
            .read(Offset(damaged_at), Offset(i64::MAX), 1 << 20)
            .await
            .unwrap();
        assert_eq!(read.batches.len(), 1);
        assert!(read.batches[0].windows(200).any(|w| w == [b'z'; 200]));
    });
}

async fn open_as(dir: &Path, topic_id: uuid::Uuid) -> Partition {
    Partition::open(
        Arc::from("t"),
        topic_id,
        0,
        dir.to_path_buf(),
        TopicConfig::default(),
        1 << 20,
    )
    .await
    .unwrap()
}

#[test]
fn a_re_created_topic_never_sees_the_data_of_the_deleted_one() {
    // A crash between a topic's deletion (metadata) and the removal of its directory
    // leaves the directory behind; the topic re-created under the same name must start
    // empty: no records, no producer state, no log start.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t").join("0");
    let (old, new) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    run(async {
        let p = open_as(&path, old).await;
        let Appended::New(info) = append(&p, batch(7, 0, 3, false)) else {
            panic!("new batch")
        };
        p.wait(&info, Acks::All).await.unwrap();
        p.delete_records_before(Offset(1)).await.unwrap();
        p.close().await.unwrap();
        // Same id: the data is there.
        let p = open_as(&path, old).await;
        assert_eq!(p.log_end_offset().get(), 3);
        p.close().await.unwrap();
        // Another id: nothing of it.
        let p = open_as(&path, new).await;
        assert_eq!(p.log_end_offset().get(), 0);
        assert_eq!(p.log_start_offset().get(), 0);
        assert_eq!(p.producer_count(), 0);
        assert_eq!(base_offset(append(&p, batch(7, 0, 1, false))), 0);
        p.close().await.unwrap();
    });
    assert_eq!(super::identity::read_topic_id(&path), Some(new));
    // At start-up, directories whose topic id is not a live topic's are found.
    let data = dir.path();
    let live_new = |name: &str, index: i32| (name == "t" && index == 0).then_some(new);
    assert!(super::identity::orphans(data, live_new).is_empty());
    let live_other = |name: &str, index: i32| (name == "t" && index == 0).then_some(old);
    assert_eq!(
        super::identity::orphans(data, live_other),
        vec![path.clone()]
    );
    assert_eq!(super::identity::orphans(data, |_, _| None), vec![path]);
}

#[test]
fn a_producer_snapshot_beyond_the_log_end_is_discarded() {
    // After an explicit cut (`sluice repair`), the snapshot written at the old end
    // describes batches that are gone: trusting it would answer a retry of a cut batch
    // as a duplicate, acknowledging records that are not in the log.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async {
        let p = open(&path).await;
        for seq in [0, 2, 4] {
            let Appended::New(info) = append(&p, batch(7, seq, 2, false)) else {
                panic!("new batch")
            };
            p.wait(&info, Acks::All).await.unwrap();
        }
        p.close().await.unwrap();
    });
    assert!(path.join(super::snapshot::SNAPSHOT_FILE).exists());
    let cut = super::repair::plan(&path, 4).unwrap();
    super::repair::execute(&cut).unwrap();
    run(async {
        let p = open(&path).await;
        assert_eq!(p.log_end_offset().get(), 4);
        assert_eq!(base_offset(append(&p, batch(7, 4, 2, false))), 4);
    });
}
