//! Log compaction against real segment files: the latest record per key stays at its
//! original offset, tombstones and aborted transactions go by Kafka's rules, and a restart
//! at any point of a swap finds either the old segments or the new one.

use std::path::Path;

use bytes::Bytes;

use super::run;
use crate::storage::log::{CleanerInput, CompactionConfig, LogConfig, PartitionLog, Throttle};
use crate::storage::records::{build_batch, marker_batch, KeyedRecord};

const T0: i64 = 1_000_000;

fn compacted_config() -> LogConfig {
    LogConfig {
        // About two one-record batches per segment.
        segment_size_bytes: 200,
        index_interval_bytes: 64,
        preallocate_step_bytes: 1 << 16,
        cache_budget_bytes: 0,
        delete_enabled: false,
        compaction: Some(CompactionConfig {
            min_cleanable_dirty_ratio: 0.0,
            delete_retention_ms: 1_000,
            ..CompactionConfig::default()
        }),
        ..LogConfig::default()
    }
}

/// Appends one record (a tombstone when `value` is None), durably; returns its offset.
async fn put(
    log: &PartitionLog,
    key: &str,
    value: Option<&str>,
    producer: Option<(i64, i16)>,
) -> i64 {
    let record = KeyedRecord {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
    };
    let batch = build_batch(&[record], producer, T0).unwrap();
    let info = log.append(batch, false, T0).unwrap();
    log.wait_durable(info.end_position).await.unwrap();
    info.base_offset
}

async fn mark(log: &PartitionLog, producer_id: i64, commit: bool) -> i64 {
    let batch = marker_batch(producer_id, 0, commit, 0, T0).unwrap();
    let info = log.append(batch, false, T0).unwrap();
    log.wait_durable(info.end_position).await.unwrap();
    info.base_offset
}

async fn compact(log: &PartitionLog, now_ms: i64, aborted: &[(i64, i64, i64)]) -> u64 {
    let throttle = Throttle::new(0);
    let is_aborted = |pid: i64, offset: i64| {
        aborted
            .iter()
            .any(|(p, first, last)| *p == pid && offset >= *first && offset <= *last)
    };
    let input = CleanerInput {
        now_ms,
        uncleanable_from: i64::MAX,
        is_aborted: &is_aborted,
        throttle: &throttle,
        key_map_budget_bytes: 1 << 20,
    };
    log.compact(&input).await.unwrap().segments_written
}

/// Every record in the log: (offset, key, value), and the offsets of control batches.
async fn contents(log: &PartitionLog) -> (Vec<(i64, String, Option<String>)>, Vec<i64>) {
    let (mut records, mut markers) = (Vec::new(), Vec::new());
    let mut next = log.log_start_offset();
    loop {
        let fetched = log.read(next, i64::MAX, 1 << 20).await.unwrap();
        if fetched.batches.is_empty() {
            break;
        }
        for batch in &fetched.batches {
            let header = crate::storage::batch::parse_and_verify(batch).unwrap();
            assert!(header.base_offset >= next, "offsets only go forward");
            next = header.last_offset() + 1;
            if header.is_control() {
                markers.push(header.base_offset);
                continue;
            }
            let mut bytes = batch.clone();
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).unwrap();
            for r in set.records {
                let text = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                records.push((r.offset, text(r.key).unwrap(), text(r.value)));
            }
        }
    }
    (records, markers)
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn compaction_keeps_the_latest_record_of_each_key_at_its_offset() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let log = PartitionLog::open(path.clone(), compacted_config(), 1)
            .await
            .unwrap();
        for i in 0..40 {
            let offset = put(&log, &format!("k{}", i % 5), Some(&format!("v{i}")), None).await;
            assert_eq!(offset, i);
        }
        let (before, _) = contents(&log).await;
        assert_eq!(before.len(), 40);
        assert!(compact(&log, T0, &[]).await > 0);
        let (after, _) = contents(&log).await;
        // Every record keeps the offset it was written at (value vN sits at offset N), and
        // below the active segment each key appears once, with its latest value.
        for (offset, _, value) in &after {
            assert_eq!(value.as_deref(), Some(format!("v{offset}").as_str()));
        }
        for k in 0..5 {
            let key = format!("k{k}");
            let mine: Vec<i64> = after.iter().filter(|r| r.1 == key).map(|r| r.0).collect();
            let latest = (0..40).filter(|i| i % 5 == k).max().unwrap();
            assert_eq!(mine.last(), Some(&latest), "{key} keeps its latest record");
            assert!(
                mine.iter().filter(|o| **o < 35).count() <= 1,
                "{key} appears once in the cleaned log: {mine:?}"
            );
        }
        assert!(after.len() < 15, "older values were removed: {after:?}");

        // The next pass merges the small compacted segments of one term.
        let cleaned_once = log.segment_count();
        for i in 40..44 {
            put(&log, &format!("k{}", i % 5), Some(&format!("v{i}")), None).await;
        }
        compact(&log, T0, &[]).await;
        assert!(
            log.segment_count() < cleaned_once,
            "small segments were merged"
        );
        let (after, _) = contents(&log).await;
        assert_eq!(log.log_end_offset(), 44);
        log.close().await.unwrap();
        drop(log);

        // A restart reads the compacted segments (gaps and all) and appends after them.
        let log = PartitionLog::open(path.clone(), compacted_config(), 2)
            .await
            .unwrap();
        assert!(!log.is_damaged());
        assert_eq!(contents(&log).await.0, after);
        assert_eq!(put(&log, "k0", Some("v44"), None).await, 44);
        assert!(file_names(&path)
            .iter()
            .any(|n| n.matches('-').count() == 2));
    });
}

#[test]
fn tombstones_survive_one_pass_and_go_after_delete_retention() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path().join("p"), compacted_config(), 1)
            .await
            .unwrap();
        put(&log, "a", Some("1"), None).await;
        put(&log, "b", Some("1"), None).await;
        let tombstone = put(&log, "a", None, None).await;
        for i in 0..4 {
            put(&log, "c", Some(&i.to_string()), None).await;
        }
        compact(&log, T0, &[]).await;
        let (records, _) = contents(&log).await;
        let a: Vec<_> = records.iter().filter(|r| r.1 == "a").collect();
        assert_eq!(
            a.len(),
            1,
            "a's value is gone, its tombstone stays: {records:?}"
        );
        assert_eq!((a[0].0, a[0].2.clone()), (tombstone, None));

        // More writes make the log dirty again; a pass within delete.retention.ms keeps the
        // tombstone.
        for i in 4..8 {
            put(&log, "c", Some(&i.to_string()), None).await;
        }
        compact(&log, T0 + 500, &[]).await;
        assert!(contents(&log).await.0.iter().any(|r| r.1 == "a"));
        // Past delete.retention.ms a pass is due for the tombstone alone, without new writes.
        assert!(compact(&log, T0 + 5_000, &[]).await > 0);
        let (records, _) = contents(&log).await;
        assert!(!records.iter().any(|r| r.1 == "a"), "{records:?}");
        assert!(records.iter().any(|r| r.1 == "b"), "b was never deleted");
    });
}

#[test]
fn aborted_records_go_and_markers_stay_while_their_records_do() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path().join("p"), compacted_config(), 1)
            .await
            .unwrap();
        let committed_before = put(&log, "k1", Some("old"), None).await;
        let aborted = put(&log, "k1", Some("aborted"), Some((7, 0))).await;
        let abort_marker = mark(&log, 7, false).await;
        let committed = put(&log, "k2", Some("txn"), Some((8, 0))).await;
        let commit_marker = mark(&log, 8, true).await;
        for i in 0..4 {
            put(&log, "filler", Some(&i.to_string()), None).await;
        }
        let aborted_txns = [(7, aborted, abort_marker)];
        compact(&log, T0, &aborted_txns).await;
        let (records, markers) = contents(&log).await;
        assert!(
            records.contains(&(committed_before, "k1".into(), Some("old".into()))),
            "an aborted write never hides the committed value: {records:?}"
        );
        assert!(!records.iter().any(|r| r.0 == aborted));
        assert!(records.iter().any(|r| r.0 == committed));
        assert!(
            markers.contains(&commit_marker),
            "its transaction's record is kept"
        );

        // Once past delete.retention.ms, the abort marker (nothing left to mark) goes; the
        // commit marker stays while k2's record does.
        for i in 4..8 {
            put(&log, "filler", Some(&i.to_string()), None).await;
        }
        compact(&log, T0 + 5_000, &aborted_txns).await;
        let (_, markers) = contents(&log).await;
        assert!(!markers.contains(&abort_marker), "{markers:?}");
        assert!(markers.contains(&commit_marker));
    });
}

#[test]
fn a_restart_finishes_a_committed_swap_and_drops_an_unfinished_one() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let log = PartitionLog::open(path.clone(), compacted_config(), 1)
            .await
            .unwrap();
        for i in 0..12 {
            put(&log, &format!("k{}", i % 3), Some(&format!("v{i}")), None).await;
        }
        // The first two segments' batches, as a cleaner would have written them whole.
        let bases: Vec<i64> = file_names(&path)
            .iter()
            .filter_map(|n| crate::storage::parse_segment_file_name(n).map(|(b, _)| b))
            .collect();
        let end = bases[2];
        let fetched = log.read(0, end, 1 << 20).await.unwrap();
        let swapped: Vec<u8> = fetched.batches.iter().flat_map(|b| b.to_vec()).collect();
        let (records_before, _) = contents(&log).await;
        log.close().await.unwrap();
        drop(log);
        let name = crate::storage::segment::compacted_segment_file_name(0, 1, end);
        std::fs::write(path.join(format!("{name}.swap")), &swapped).unwrap();
        std::fs::write(
            path.join("00000000000000000099-1-00000000000000000120.log.cleaned"),
            b"partial",
        )
        .unwrap();

        let log = PartitionLog::open(path.clone(), compacted_config(), 2)
            .await
            .unwrap();
        assert!(!log.is_damaged());
        let names = file_names(&path);
        assert!(names.contains(&name), "{names:?}");
        assert!(!names
            .iter()
            .any(|n| n.ends_with(".swap") || n.ends_with(".cleaned")));
        let old_in_range = names.iter().filter(|n| {
            crate::storage::segment::parse_segment_name(n)
                .is_some_and(|s| s.base_offset < end && s.compacted_end.is_none())
        });
        assert_eq!(old_in_range.count(), 0, "{names:?}");
        assert_eq!(contents(&log).await.0, records_before);
    });
}
