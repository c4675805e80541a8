//! Behavioural tests of the partition log against a real filesystem.

use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::BytesMut;

use crate::storage::batch::tests::make_batch;
use crate::storage::batch::{parse_and_verify, BatchHeader};
use crate::storage::log::{LogConfig, PartitionLog};

mod compaction;
mod damage;
mod faults;
mod pipeline;
mod power_cut;
mod truncate;

/// Runs a test on a glommio executor. `io_memory(0)`: on this VM, reads into
/// registered io_memory buffers (IORING_OP_READ_FIXED) fail with EOPNOTSUPP,
/// and a zero pool also stays within the small RLIMIT_MEMLOCK.
fn run<F: Future<Output = ()>>(fut: F) {
    glommio::LocalExecutorBuilder::default()
        .io_memory(0)
        .make()
        .unwrap()
        .run(fut);
}

fn small_config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 1024,
        preallocate_step_bytes: 1 << 20,
        cache_budget_bytes: 0,
        ..LogConfig::default()
    }
}

async fn append_n(log: &PartitionLog, n: usize, records: usize, ts: i64, value: usize) {
    let mut last = None;
    for i in 0..n {
        let info = log
            .append(make_batch(records, ts + i as i64 * 10, value), false, ts)
            .unwrap();
        last = Some(info.end_position);
    }
    if let Some(p) = last {
        log.wait_durable(p).await.unwrap();
    }
}

/// Reads every batch from `from` to the end, checking CRC and contiguity.
async fn read_all(log: &PartitionLog, from: i64) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let f = log.read(next, i64::MAX, 1 << 20).await.unwrap();
        if f.batches.is_empty() {
            break;
        }
        for b in &f.batches {
            let h = parse_and_verify(b).unwrap();
            assert_eq!(h.total_size_bytes(), b.len());
            if let Some(prev) = out.last() {
                let prev: &BatchHeader = prev;
                assert_eq!(h.base_offset, prev.last_offset() + 1);
            }
            next = h.last_offset() + 1;
            out.push(h);
        }
    }
    out
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    v.sort();
    v
}

#[test]
fn tail_rewrite_three_small_batches_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t/0");
    run(async move {
        let log = PartitionLog::open(path.clone(), small_config(), 1)
            .await
            .unwrap();
        for i in 0..3 {
            let info = log.append(make_batch(2, 1000, 10), false, 1000).unwrap();
            assert_eq!(info.base_offset, 2 * i);
            assert_eq!(info.last_offset, 2 * i + 1);
            // Not readable before it is written.
            log.wait_written(info.end_position).await.unwrap();
            assert_eq!(log.written_offset(), 2 * i + 2);
        }
        drop(log); // no clean close: the written tail must be enough
        let log = PartitionLog::open(path.clone(), small_config(), 1)
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 6);
        let all = read_all(&log, 0).await;
        assert_eq!(
            all.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
            vec![0, 2, 4]
        );
        assert!(all.iter().all(|h| h.partition_leader_epoch == 1));
        let info = log.append(make_batch(1, 1000, 10), false, 1000).unwrap();
        assert_eq!(info.base_offset, 6);
        log.close().await.unwrap();
        assert!(log.append(make_batch(1, 1000, 10), false, 1000).is_err());
    });
}

#[test]
fn any_batch_size_across_chunk_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let log = PartitionLog::open(path.clone(), small_config(), 3)
            .await
            .unwrap();
        let sizes = [
            1usize, 500, 4095, 4096, 70_000, 300_000, 7, 131_072, 1, 200_000,
        ];
        let mut expected = Vec::new();
        for (i, s) in sizes.iter().enumerate() {
            let info = log
                .append(make_batch(1 + i % 3, 1000, *s), false, 1000)
                .unwrap();
            expected.push(info.base_offset);
            if i % 3 == 0 {
                log.wait_written(info.end_position).await.unwrap();
            }
        }
        log.flush().await.unwrap();
        let all = read_all(&log, 0).await;
        assert_eq!(
            all.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
            expected
        );
        let size = log.size_bytes();
        drop(log);
        let log = PartitionLog::open(path.clone(), small_config(), 3)
            .await
            .unwrap();
        assert_eq!(log.size_bytes(), size);
        let all = read_all(&log, 0).await;
        assert_eq!(
            all.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
            expected
        );
    });
}

#[test]
fn concurrent_durable_waits_share_fdatasync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let log = PartitionLog::open(path, small_config(), 1).await.unwrap();
        let before = log.sync_count();
        let positions: Vec<_> = (0..20)
            .map(|_| {
                log.append(make_batch(1, 1000, 100), false, 1000)
                    .unwrap()
                    .end_position
            })
            .collect();
        let waits = positions.iter().map(|p| log.wait_durable(*p));
        for r in futures::future::join_all(waits).await {
            r.unwrap();
        }
        assert!(
            log.sync_count() - before <= 2,
            "syncs: {}",
            log.sync_count() - before
        );
        assert_eq!(log.durable_offset(), 20);
        assert_eq!(log.written_offset(), 20);
        // A later append needs a new sync.
        let p = log
            .append(make_batch(1, 1000, 100), false, 1000)
            .unwrap()
            .end_position;
        log.wait_durable(p).await.unwrap();
        assert_eq!(log.durable_offset(), 21);
    });
}

fn segment_path(dir: &Path) -> std::path::PathBuf {
    dir.join(segment_files(dir).last().unwrap())
}

fn torn_tail_case(garbage: impl Fn(&[u8]) -> Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let log = PartitionLog::open(path.clone(), small_config(), 1)
            .await
            .unwrap();
        append_n(&log, 5, 3, 1000, 50).await;
        let end = log.size_bytes();
        log.close().await.unwrap();
        drop(log);
        // Damage after the valid data.
        let mut extra = make_batch(3, 1000, 50);
        crate::storage::batch::stamp(&mut extra, 15, 1);
        let bad = garbage(&extra);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(segment_path(&path))
            .unwrap();
        f.write_at(&bad, end).unwrap();
        drop(f);
        let log = PartitionLog::open(path.clone(), small_config(), 1)
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 15);
        assert_eq!(log.size_bytes(), end);
        let info = log.append(make_batch(2, 1000, 50), false, 1000).unwrap();
        assert_eq!(info.base_offset, 15);
        log.wait_durable(info.end_position).await.unwrap();
        drop(log);
        let log = PartitionLog::open(path.clone(), small_config(), 1)
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 17);
        let all = read_all(&log, 0).await;
        assert_eq!(all.len(), 6);
        assert_eq!(all.last().unwrap().base_offset, 15);
    });
}

#[test]
fn torn_tail_garbage() {
    torn_tail_case(|b| {
        b.iter()
            .map(|x| x.wrapping_mul(31).wrapping_add(7))
            .collect()
    });
}

#[test]
fn torn_tail_half_batch() {
    torn_tail_case(|b| b[..b.len() / 2].to_vec());
}

#[test]
fn torn_tail_crc_flipped_batch() {
    torn_tail_case(|b| {
        let mut v = b.to_vec();
        let n = v.len();
        v[n - 3] ^= 0x40;
        v
    });
}

#[test]
fn rolls_on_size_and_reads_from_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let config = LogConfig {
            segment_size_bytes: 20_000,
            ..small_config()
        };
        let log = PartitionLog::open(path.clone(), config.clone(), 1)
            .await
            .unwrap();
        // 40 batches of 2 records, ~1.1 KB each.
        append_n(&log, 40, 2, 1000, 500).await;
        assert!(log.segment_count() >= 3, "segments {}", log.segment_count());
        log.close().await.unwrap();
        drop(log);
        assert!(segment_files(&path).len() >= 3);
        for reopen in 0..2 {
            let log = PartitionLog::open(path.clone(), config.clone(), 1)
                .await
                .unwrap();
            assert_eq!(log.log_end_offset(), 80, "reopen {reopen}");
            // Mid-batch fetch in the middle of an old segment: whole batch.
            let f = log.read(23, 80, 1).await.unwrap();
            assert!(!f.from_cache);
            assert_eq!(f.batches.len(), 1, "max_bytes=1 still returns one batch");
            let h = parse_and_verify(&f.batches[0]).unwrap();
            assert_eq!(h.base_offset, 22);
            // max_bytes bounds the rest.
            let one = f.batches[0].len();
            let f = log.read(22, 80, one * 3 + 1).await.unwrap();
            assert_eq!(f.batches.len(), 3);
            assert_eq!(f.total_bytes, one * 3);
            // The high watermark bounds the read.
            let f = log.read(22, 24, 1 << 20).await.unwrap();
            assert_eq!(f.batches.len(), 1);
            assert!(log.read(80, 80, 100).await.unwrap().batches.is_empty());
            assert_eq!(read_all(&log, 0).await.len(), 40);
            drop(log);
        }
    });
}

#[test]
fn rolls_on_time_and_term() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let config = LogConfig {
            segment_ms: 1000,
            ..small_config()
        };
        let log = PartitionLog::open(path.clone(), config, 1).await.unwrap();
        let now = 1_000_000;
        log.append(make_batch(1, now, 10), false, now).unwrap();
        log.append(make_batch(1, now, 10), false, now + 500)
            .unwrap();
        assert_eq!(log.segment_count(), 1);
        log.append(make_batch(1, now, 10), false, now + 1000)
            .unwrap();
        assert_eq!(log.segment_count(), 2);
        log.set_term(2);
        let info = log
            .append(make_batch(1, now, 10), false, now + 1001)
            .unwrap();
        assert_eq!(log.segment_count(), 3);
        log.wait_durable(info.end_position).await.unwrap();
        let names = segment_files(&path);
        assert_eq!(names.last().unwrap(), "00000000000000000003-2.log");
        let all = read_all(&log, 0).await;
        assert_eq!(all.last().unwrap().partition_leader_epoch, 2);
    });
}

#[test]
fn timestamps_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let config = LogConfig {
            segment_size_bytes: 8_000,
            ..small_config()
        };
        let log = PartitionLog::open(path.clone(), config.clone(), 1)
            .await
            .unwrap();
        assert_eq!(log.offset_for_timestamp(0).await.unwrap(), None);
        assert_eq!(log.max_timestamp().await.unwrap(), None);
        // Batch i has 4 records, timestamps 10_000 + 100*i + j.
        for i in 0..30i64 {
            let b = make_batch(4, 10_000 + 100 * i, 300);
            log.append(b, false, 20_000).unwrap();
        }
        // A batch with an older timestamp does not change the max.
        let last = log
            .append(make_batch(1, 5, 10), false, 20_000)
            .unwrap()
            .end_position;
        log.wait_durable(last).await.unwrap();
        assert!(log.segment_count() > 1);
        for reopen in 0..2 {
            assert_eq!(
                log.offset_for_timestamp(0).await.unwrap(),
                Some((0, 10_000)),
                "{reopen}"
            );
            // Batch 17 starts at offset 68 with ts 11_700; record 2 has 11_702.
            assert_eq!(
                log.offset_for_timestamp(11_702).await.unwrap(),
                Some((70, 11_702))
            );
            assert_eq!(
                log.offset_for_timestamp(11_704).await.unwrap(),
                Some((72, 11_800))
            );
            assert_eq!(log.offset_for_timestamp(99_999).await.unwrap(), None);
            assert_eq!(log.max_timestamp().await.unwrap(), Some((119, 12_903)));
        }
        log.close().await.unwrap();
        drop(log);
        let log = PartitionLog::open(path.clone(), config, 1).await.unwrap();
        assert_eq!(
            log.offset_for_timestamp(11_702).await.unwrap(),
            Some((70, 11_702))
        );
        assert_eq!(log.max_timestamp().await.unwrap(), Some((119, 12_903)));
        // LogAppendTime: every record carries the append time.
        let info = log.append(make_batch(3, 5, 10), true, 50_000).unwrap();
        assert_eq!(info.log_append_time_ms, 50_000);
        log.wait_written(info.end_position).await.unwrap();
        assert_eq!(log.max_timestamp().await.unwrap(), Some((121, 50_000)));
        assert_eq!(
            log.offset_for_timestamp(40_000).await.unwrap(),
            Some((121, 50_000))
        );
    });
}

#[test]
fn retention_by_size_and_time_deletes_whole_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let config = LogConfig {
            segment_size_bytes: 10_000,
            retention_ms: -1,
            retention_bytes: -1,
            ..small_config()
        };
        let log = PartitionLog::open(path.clone(), config.clone(), 1)
            .await
            .unwrap();
        // Segment k holds batches with timestamps around 1000*k.
        for k in 0..5i64 {
            for _ in 0..8 {
                log.append(make_batch(1, 1000 * k, 1000), false, 1000 * k)
                    .unwrap();
            }
        }
        log.flush().await.unwrap();
        let segments = log.segment_count();
        assert!(segments >= 5);
        assert_eq!(log.enforce_retention(10_000).await.unwrap(), 0);
        // Time: everything older than 2500 ms at now=4000 → segments with max ts < 1500.
        log.update_config(LogConfig {
            retention_ms: 2500,
            ..config.clone()
        });
        let deleted = log.enforce_retention(4000).await.unwrap();
        assert!(deleted > 0);
        assert!(log.segment_count() < segments);
        let start = log.log_start_offset();
        assert!(start > 0);
        assert!(read_all(&log, start)
            .await
            .iter()
            .all(|h| h.max_timestamp_ms >= 1000));
        assert!(log.read(start - 1, i64::MAX, 100).await.is_err());
        // Size: as in Kafka, a segment goes only if what remains is still >= retention.bytes,
        // so the log ends within one segment above the limit; the active one always stays.
        log.update_config(LogConfig {
            retention_bytes: 15_000,
            ..config.clone()
        });
        log.enforce_retention(4000).await.unwrap();
        assert!(
            log.size_bytes() < 15_000 + 10_000,
            "size {}",
            log.size_bytes()
        );
        assert!(log.segment_count() < segments);
        assert!(log.segment_count() >= 1);
        log.update_config(LogConfig {
            retention_bytes: 0,
            ..config.clone()
        });
        log.enforce_retention(4000).await.unwrap();
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.log_end_offset(), 40);
        let start = log.log_start_offset();
        assert_eq!(segment_files(&path).len(), 1);
        drop(log);
        let log = PartitionLog::open(path.clone(), config, 1).await.unwrap();
        assert_eq!(log.log_start_offset(), start);
        assert_eq!(log.log_end_offset(), 40);
    });
}

#[test]
fn delete_records_moves_log_start_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let config = LogConfig {
            segment_size_bytes: 5_000,
            ..small_config()
        };
        let log = PartitionLog::open(path.clone(), config.clone(), 1)
            .await
            .unwrap();
        append_n(&log, 20, 1, 1000, 1000).await;
        let segments = log.segment_count();
        assert_eq!(log.delete_records_before(13).await.unwrap(), 13);
        assert!(log.segment_count() < segments);
        assert!(log.delete_records_before(21).await.is_err());
        assert_eq!(log.delete_records_before(5).await.unwrap(), 13);
        assert!(matches!(
            log.read(12, 20, 100).await,
            Err(crate::storage::StorageError::OffsetOutOfRange { .. })
        ));
        let f = log.read(13, 20, 1).await.unwrap();
        assert_eq!(parse_and_verify(&f.batches[0]).unwrap().base_offset, 13);
        drop(log);
        let log = PartitionLog::open(path.clone(), config, 1).await.unwrap();
        assert_eq!(log.log_start_offset(), 13);
        assert_eq!(log.log_end_offset(), 20);
    });
}

#[test]
fn end_offset_for_epoch_with_two_terms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let log = PartitionLog::open(path.clone(), small_config(), 3)
            .await
            .unwrap();
        assert_eq!(log.end_offset_for_epoch(3), None);
        append_n(&log, 2, 5, 1000, 10).await; // offsets 0..10 in term 3
        log.set_term(5);
        append_n(&log, 1, 4, 1000, 10).await; // offsets 10..14 in term 5
        for _ in 0..2 {
            assert_eq!(log.end_offset_for_epoch(2), None);
            assert_eq!(log.end_offset_for_epoch(3), Some((3, 10)));
            assert_eq!(log.end_offset_for_epoch(4), Some((3, 10)));
            assert_eq!(log.end_offset_for_epoch(5), Some((5, 14)));
            assert_eq!(log.end_offset_for_epoch(9), Some((5, 14)));
        }
        log.close().await.unwrap();
        drop(log);
        let log = PartitionLog::open(path.clone(), small_config(), 5)
            .await
            .unwrap();
        assert_eq!(log.end_offset_for_epoch(4), Some((3, 10)));
        assert_eq!(log.end_offset_for_epoch(5), Some((5, 14)));
    });
}

#[test]
fn tail_reads_come_from_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let config = LogConfig {
            cache_budget_bytes: 1 << 20,
            ..small_config()
        };
        let log = PartitionLog::open(path, config, 1).await.unwrap();
        let info = log.append(make_batch(2, 1000, 10), false, 1000).unwrap();
        let unwritten = log.read(0, i64::MAX, 1000).await.unwrap();
        assert!(unwritten.batches.is_empty(), "not visible before written");
        log.wait_written(info.end_position).await.unwrap();
        let f = log.read(1, i64::MAX, 1000).await.unwrap();
        assert!(f.from_cache);
        assert_eq!(f.batches.len(), 1);
        let _ = BytesMut::new();
    });
}
