//! `PartitionLog::truncate_to` against a real filesystem: where the cut lands,
//! what is removed, that appends continue from the cut, that a restart never
//! brings removed batches back, and that in-flight writes are serialised.

use std::path::Path;

use crate::storage::batch::tests::make_batch;
use crate::storage::batch::BatchHeader;
use crate::storage::log::{LogConfig, PartitionLog};
use crate::storage::StorageError;

use super::{append_n, read_all, run, segment_files, segment_path, small_config};

/// Timestamps of the data appended before a truncation; data appended after
/// it uses `NEW_TS` so reads can tell the two apart.
const OLD_TS: i64 = 1_000;
const NEW_TS: i64 = 50_000;

fn bases(batches: &[BatchHeader]) -> Vec<i64> {
    batches.iter().map(|h| h.base_offset).collect()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn offset_file(dir: &Path, name: &str) -> i64 {
    std::fs::read_to_string(dir.join(name))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Every batch at or after `from` is new data (appended after the truncation).
fn assert_new_from(batches: &[BatchHeader], from: i64) {
    for h in batches.iter().filter(|h| h.base_offset >= from) {
        assert!(
            h.max_timestamp_ms >= NEW_TS,
            "old batch at {} read back after truncation",
            h.base_offset
        );
    }
}

#[test]
fn truncate_mid_active_segment_then_append_continues_from_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let config = LogConfig {
            cache_budget_bytes: 1 << 20,
            ..small_config()
        };
        let log = PartitionLog::open(path.clone(), config.clone(), 1)
            .await
            .unwrap();
        // 10 batches of 2 records: offsets 0..20, all in the cache too.
        append_n(&log, 10, 2, OLD_TS, 300).await;
        let batch_bytes = log.size_bytes() / 10;
        log.truncate_to(10).await.unwrap();
        assert_eq!(log.log_end_offset(), 10);
        assert_eq!(log.written_offset(), 10);
        assert_eq!(log.durable_offset(), 10);
        assert_eq!(log.size_bytes(), 5 * batch_bytes);
        // The file is cut to the new end: no stale batch bytes after it.
        assert_eq!(file_len(&segment_path(&path)), 5 * batch_bytes);
        assert!(offset_file(&path, "recovery-point") <= 10);
        assert_eq!(bases(&read_all(&log, 0).await), vec![0, 2, 4, 6, 8]);
        assert!(log
            .read(10, i64::MAX, 1 << 20)
            .await
            .unwrap()
            .batches
            .is_empty());
        assert!(matches!(
            log.read(12, i64::MAX, 1 << 20).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        // Appends continue at the cut, from the cache and from disk alike.
        let info = log
            .append(make_batch(3, NEW_TS, 100), false, NEW_TS)
            .unwrap();
        assert_eq!(info.base_offset, 10);
        assert_eq!(info.last_offset, 12);
        log.wait_durable(info.end_position).await.unwrap();
        let cached = log.read(10, i64::MAX, 1 << 20).await.unwrap();
        assert!(cached.from_cache);
        assert_eq!(cached.batches.len(), 1);
        let all = read_all(&log, 0).await;
        assert_eq!(bases(&all), vec![0, 2, 4, 6, 8, 10]);
        assert_new_from(&all, 10);
        // With the cache emptied, the same reads come from disk.
        log.update_config(LogConfig {
            cache_budget_bytes: 0,
            ..config.clone()
        });
        let all = read_all(&log, 0).await;
        assert_eq!(bases(&all), vec![0, 2, 4, 6, 8, 10]);
        assert_new_from(&all, 10);
        assert_eq!(log.max_timestamp().await.unwrap(), Some((12, NEW_TS + 2)));
        drop(log);
        let log = PartitionLog::open(path.clone(), config, 1).await.unwrap();
        assert_eq!(log.log_end_offset(), 13);
        let all = read_all(&log, 0).await;
        assert_eq!(bases(&all), vec![0, 2, 4, 6, 8, 10]);
        assert_new_from(&all, 10);
    });
}

#[test]
fn truncate_across_a_segment_roll_removes_later_segments() {
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
        // ~1.1 KB batches of one record: 4 per segment, 5+ segments.
        append_n(&log, 20, 1, OLD_TS, 1000).await;
        let segments = log.segment_count();
        assert!(segments >= 5, "segments {segments}");
        let names = segment_files(&path);
        // Cut inside the second segment.
        let second_base: i64 = names[1].split('-').next().unwrap().parse().unwrap();
        let cut = second_base + 1;
        log.truncate_to(cut).await.unwrap();
        assert_eq!(log.log_end_offset(), cut);
        assert_eq!(log.segment_count(), 2);
        assert_eq!(segment_files(&path), names[..2].to_vec());
        // No index files of the removed segments, nor stale ones of the cut segment.
        let leftovers: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with("index") || n.contains("tmp"))
            .filter(|n| !n.starts_with(names[0].trim_end_matches(".log")))
            .collect();
        assert!(leftovers.is_empty(), "left over: {leftovers:?}");
        assert_eq!(read_all(&log, 0).await.len() as i64, cut);
        // Appending rolls again as the size grows, continuing at the cut.
        append_n(&log, 8, 1, NEW_TS, 1000).await;
        assert_eq!(log.log_end_offset(), cut + 8);
        assert!(log.segment_count() >= 3);
        let all = read_all(&log, 0).await;
        assert_eq!(bases(&all), (0..cut + 8).collect::<Vec<_>>());
        assert_new_from(&all, cut);
        log.close().await.unwrap();
        drop(log);
        let log = PartitionLog::open(path.clone(), config, 1).await.unwrap();
        assert_eq!(log.log_end_offset(), cut + 8);
        let all = read_all(&log, 0).await;
        assert_eq!(all.len() as i64, cut + 8);
        assert_new_from(&all, cut);
    });
}

#[test]
fn truncated_batches_are_not_resurrected_by_recovery() {
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
        append_n(&log, 30, 2, OLD_TS, 500).await;
        assert!(log.segment_count() >= 3);
        // Closed cleanly first: every closed segment has a persisted index and
        // the recovery point is the old end, both of which must not survive the cut.
        log.close().await.unwrap();
        drop(log);
        let log = PartitionLog::open(path.clone(), config.clone(), 1)
            .await
            .unwrap();
        assert_eq!(offset_file(&path, "recovery-point"), 60);
        log.truncate_to(21).await.unwrap();
        assert_eq!(log.log_end_offset(), 20);
        assert!(offset_file(&path, "recovery-point") <= 20);
        // No clean close: the truncation alone must be durable.
        drop(log);
        let log = PartitionLog::open(path.clone(), config.clone(), 1)
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 20);
        assert_eq!(read_all(&log, 0).await.len(), 10);
        // A smaller batch after the cut: the removed ones lay after it on disk.
        let info = log
            .append(make_batch(1, NEW_TS, 10), false, NEW_TS)
            .unwrap();
        assert_eq!(info.base_offset, 20);
        log.wait_durable(info.end_position).await.unwrap();
        log.close().await.unwrap();
        drop(log);
        for _ in 0..2 {
            let log = PartitionLog::open(path.clone(), config.clone(), 1)
                .await
                .unwrap();
            assert_eq!(log.log_end_offset(), 21);
            let all = read_all(&log, 0).await;
            assert_eq!(all.len(), 11);
            assert_new_from(&all, 20);
            drop(log);
        }
    });
}

#[test]
fn truncate_at_or_beyond_log_end_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let log = PartitionLog::open(path.clone(), small_config(), 1)
            .await
            .unwrap();
        log.truncate_to(0).await.unwrap(); // empty log
        assert_eq!(log.log_end_offset(), 0);
        append_n(&log, 4, 3, OLD_TS, 100).await;
        let (size, syncs) = (log.size_bytes(), log.sync_count());
        let len = file_len(&segment_path(&path));
        log.truncate_to(12).await.unwrap();
        log.truncate_to(1_000).await.unwrap();
        assert_eq!(log.log_end_offset(), 12);
        assert_eq!(log.size_bytes(), size);
        assert_eq!(log.sync_count(), syncs);
        assert_eq!(file_len(&segment_path(&path)), len);
        assert_eq!(read_all(&log, 0).await.len(), 4);
        assert!(matches!(
            log.truncate_to(-1).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        log.close().await.unwrap();
        assert!(matches!(
            log.truncate_to(3).await,
            Err(StorageError::Closed { .. })
        ));
    });
}

#[test]
fn truncate_inside_a_batch_drops_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let log = PartitionLog::open(path.clone(), small_config(), 1)
            .await
            .unwrap();
        // Batches of 5 records: 0..5, 5..10, 10..15, 15..20.
        append_n(&log, 4, 5, OLD_TS, 100).await;
        log.truncate_to(12).await.unwrap();
        assert_eq!(log.log_end_offset(), 10);
        assert_eq!(bases(&read_all(&log, 0).await), vec![0, 5]);
        // The first offset of a batch is a boundary: that batch goes.
        log.truncate_to(5).await.unwrap();
        assert_eq!(log.log_end_offset(), 5);
        // Inside the first batch of the log: it empties.
        log.truncate_to(3).await.unwrap();
        assert_eq!(log.log_end_offset(), 0);
        assert_eq!(log.size_bytes(), 0);
        assert!(read_all(&log, 0).await.is_empty());
        assert_eq!(log.max_timestamp().await.unwrap(), None);
        let info = log
            .append(make_batch(2, NEW_TS, 10), false, NEW_TS)
            .unwrap();
        assert_eq!(info.base_offset, 0);
        log.wait_durable(info.end_position).await.unwrap();
        drop(log);
        let log = PartitionLog::open(path.clone(), small_config(), 1)
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 2);
        assert_new_from(&read_all(&log, 0).await, 0);
    });
}

#[test]
fn truncate_waits_for_a_write_in_flight_and_fails_its_waiters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let log = PartitionLog::open(path.clone(), small_config(), 1)
            .await
            .unwrap();
        let kept = log
            .append(make_batch(4, OLD_TS, 100), false, OLD_TS)
            .unwrap();
        log.wait_durable(kept.end_position).await.unwrap();
        // Two appends nobody waited for yet: still only in the head chunk.
        log.append(make_batch(4, OLD_TS, 3000), false, OLD_TS)
            .unwrap();
        let lost = log
            .append(make_batch(4, OLD_TS, 3000), false, OLD_TS)
            .unwrap();
        // The truncation starts first and writes the bytes out itself; the
        // waiter queues behind its write round and is told the data is gone.
        let (truncated, waited) =
            futures::join!(log.truncate_to(6), log.wait_durable(lost.end_position));
        truncated.unwrap();
        assert!(
            matches!(waited, Err(StorageError::Truncated { end_offset: 12, .. })),
            "{waited:?}"
        );
        assert_eq!(log.log_end_offset(), 4);
        // The surviving append stays durable; the lost one stays lost even
        // when new appends cover its offsets again.
        log.wait_durable(kept.end_position).await.unwrap();
        append_n(&log, 3, 4, NEW_TS, 3000).await;
        assert!(matches!(
            log.wait_durable(lost.end_position).await,
            Err(StorageError::Truncated { .. })
        ));
        assert!(matches!(
            log.wait_written(lost.end_position).await,
            Err(StorageError::Truncated { .. })
        ));
        let all = read_all(&log, 0).await;
        assert_eq!(bases(&all), vec![0, 4, 8, 12]);
        assert_new_from(&all, 4);
        drop(log);
        let log = PartitionLog::open(path.clone(), small_config(), 1)
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 16);
        assert_new_from(&read_all(&log, 0).await, 4);
    });
}

#[test]
fn truncate_serialises_with_a_write_and_sync_already_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let log = PartitionLog::open(path.clone(), small_config(), 1)
            .await
            .unwrap();
        append_n(&log, 2, 4, OLD_TS, 100).await; // 0..8
        let mut pending = Vec::new();
        for _ in 0..6 {
            pending.push(
                log.append(make_batch(4, OLD_TS, 20_000), false, OLD_TS)
                    .unwrap()
                    .end_position,
            );
        }
        // The waiters start first: their write round and fdatasync are in
        // flight when the truncation arrives, and it must wait for them.
        let waits = futures::future::join_all(pending.iter().map(|p| log.wait_durable(*p)));
        let (results, truncated) = futures::join!(waits, log.truncate_to(14));
        truncated.unwrap();
        for r in results {
            assert!(
                matches!(r, Ok(()) | Err(StorageError::Truncated { .. })),
                "{r:?}"
            );
        }
        assert_eq!(log.log_end_offset(), 12);
        assert_eq!(log.durable_offset(), 12);
        assert_eq!(bases(&read_all(&log, 0).await), vec![0, 4, 8]);
        append_n(&log, 1, 1, NEW_TS, 10).await;
        drop(log);
        let log = PartitionLog::open(path.clone(), small_config(), 1)
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 13);
        let all = read_all(&log, 0).await;
        assert_eq!(bases(&all), vec![0, 4, 8, 12]);
        assert_new_from(&all, 12);
    });
}

#[test]
fn truncate_below_the_log_start_restarts_the_log_there() {
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
        append_n(&log, 20, 1, OLD_TS, 1000).await;
        assert_eq!(log.delete_records_before(13).await.unwrap(), 13);
        let first_base: i64 = segment_files(&path)[0]
            .split('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(first_base > 5 && first_base <= 13);
        // Between the first segment's base and the log start: the start moves
        // back with the end (start = end = cut), persisted.
        log.truncate_to(first_base).await.unwrap();
        assert_eq!(log.log_start_offset(), first_base);
        assert_eq!(log.log_end_offset(), first_base);
        assert_eq!(offset_file(&path, "log-start-offset"), first_base);
        // Below the first segment: everything goes, the log restarts at the offset.
        log.truncate_to(5).await.unwrap();
        assert_eq!(log.log_start_offset(), 5);
        assert_eq!(log.log_end_offset(), 5);
        assert_eq!(log.segment_count(), 1);
        assert!(
            segment_files(&path).is_empty(),
            "{:?}",
            segment_files(&path)
        );
        assert_eq!(offset_file(&path, "log-start-offset"), 5);
        drop(log);
        let log = PartitionLog::open(path.clone(), config.clone(), 1)
            .await
            .unwrap();
        assert_eq!(log.log_start_offset(), 5);
        assert_eq!(log.log_end_offset(), 5);
        let info = log
            .append(make_batch(2, NEW_TS, 10), false, NEW_TS)
            .unwrap();
        assert_eq!(info.base_offset, 5);
        log.wait_durable(info.end_position).await.unwrap();
        drop(log);
        let log = PartitionLog::open(path.clone(), config, 1).await.unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (5, 7));
        assert_new_from(&read_all(&log, 5).await, 5);
    });
}

#[test]
fn truncate_recomputes_timestamps_and_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let log = PartitionLog::open(path.clone(), small_config(), 3)
            .await
            .unwrap();
        // ~360-byte batches, an index entry every 3: batch 1 holds the
        // largest timestamp of what is kept, several index entries back.
        let ts = [100, 900, 200, 300, 400, 500, 600, 700, 2_000, 800];
        for t in ts {
            log.append(make_batch(1, t, 300), false, t).unwrap();
        }
        log.flush().await.unwrap();
        log.set_term(4);
        append_n(&log, 2, 1, 3_000, 300).await; // offsets 10, 11 in term 4
        assert_eq!(log.max_timestamp().await.unwrap(), Some((11, 3_010)));
        assert_eq!(log.end_offset_for_epoch(4), Some((4, 12)));
        log.truncate_to(10).await.unwrap();
        assert_eq!(log.end_offset_for_epoch(4), Some((3, 10)));
        assert_eq!(log.max_timestamp().await.unwrap(), Some((8, 2_000)));
        log.truncate_to(8).await.unwrap();
        assert_eq!(log.max_timestamp().await.unwrap(), Some((1, 900)));
        assert_eq!(log.offset_for_timestamp(850).await.unwrap(), Some((1, 900)));
        assert_eq!(log.offset_for_timestamp(950).await.unwrap(), None);
        log.truncate_to(1).await.unwrap();
        assert_eq!(log.max_timestamp().await.unwrap(), Some((0, 100)));
        drop(log);
        let log = PartitionLog::open(path.clone(), small_config(), 4)
            .await
            .unwrap();
        assert_eq!(log.max_timestamp().await.unwrap(), Some((0, 100)));
        assert_eq!(log.end_offset_for_epoch(4), Some((3, 1)));
    });
}

#[test]
fn waits_after_several_truncations_tell_kept_from_removed_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let log = PartitionLog::open(path.clone(), small_config(), 1)
            .await
            .unwrap();
        let append = |ts| {
            log.append(make_batch(2, ts, 10), false, ts)
                .unwrap()
                .end_position
        };
        let p: Vec<_> = (0..4).map(|_| append(OLD_TS)).collect(); // 0..8
        log.flush().await.unwrap();
        log.truncate_to(6).await.unwrap(); // p[3] goes
        let q3 = append(NEW_TS); // 6..8 again
        log.truncate_to(4).await.unwrap(); // p[2] and q3 go
        let r2 = append(NEW_TS); // 4..6
        let r3 = append(NEW_TS); // 6..8
        log.flush().await.unwrap();
        log.truncate_to(7).await.unwrap(); // r3 goes (cut inside it: at 6)
        let kept = [p[0], p[1], r2];
        let removed = [p[2], p[3], q3, r3];
        let s = append(NEW_TS); // 6..8 once more
        log.wait_durable(s).await.unwrap();
        for pos in kept {
            log.wait_written(pos).await.unwrap();
            log.wait_durable(pos).await.unwrap();
        }
        for pos in removed {
            assert!(
                matches!(
                    log.wait_durable(pos).await,
                    Err(StorageError::Truncated { .. })
                ),
                "{pos:?}"
            );
        }
        assert_eq!(log.log_end_offset(), 8);
        let all = read_all(&log, 0).await;
        assert_eq!(bases(&all), vec![0, 2, 4, 6]);
        assert_new_from(&all, 4);
    });
}
