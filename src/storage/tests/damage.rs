//! Recovery and reads against damaged logs: only a torn tail is cut by itself; damage
//! followed by valid data, damage in a closed segment and a missing segment take the log
//! offline with a precise reason and change no file; a read that meets damage in
//! acknowledged data does the same and the next open reports it again.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::storage::batch::tests::make_batch;
use crate::storage::log::{LogConfig, PartitionLog};
use crate::storage::{StorageError, RECOVERY_POINT_FILE};

use super::{append_n, read_all, run, segment_files, small_config};

/// Every file of the directory with its bytes: "no file changed" is this, equal.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn flip(path: &Path, position: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, position).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], position).unwrap();
}

fn rolling_config() -> LogConfig {
    LogConfig {
        segment_size_bytes: 8_000,
        ..small_config()
    }
}

/// Writes 30 single-record batches of ~1 KB (several segments with `rolling_config`),
/// closes cleanly and returns the segment paths and the size of one batch.
fn write_log(path: &Path, config: &LogConfig) -> (Vec<PathBuf>, u64) {
    let (path, config) = (path.to_path_buf(), config.clone());
    let mut out = (Vec::new(), 0);
    run(async {
        let log = PartitionLog::open(path.clone(), config, 1).await.unwrap();
        append_n(&log, 30, 1, 1000, 1000).await;
        let batch = log.size_bytes() / 30;
        log.close().await.unwrap();
        out = (
            segment_files(&path).iter().map(|n| path.join(n)).collect(),
            batch,
        );
    });
    out
}

/// Opens the log and checks it is offline for damage naming `file` and `offset`, with no
/// file of the directory changed.
fn assert_offline_untouched(path: &Path, config: &LogConfig, file: &Path, offset: i64) {
    let before = files(path);
    let (path2, config, file) = (path.to_path_buf(), config.clone(), file.to_path_buf());
    run(async move {
        let log = PartitionLog::open(path2.clone(), config, 1).await.unwrap();
        let reason = log.offline_reason().expect("a damaged log is offline");
        assert!(
            reason.contains(&file.display().to_string()) && reason.contains(&format!("{offset}")),
            "the reason names the file and the first unreadable offset: {reason}"
        );
        assert!(matches!(
            log.append(make_batch(1, 1000, 10), false, 1000),
            Err(StorageError::Poisoned { .. })
        ));
        assert!(log.truncate_to(0).await.is_err());
        assert!(log.delete_records_before(1).await.is_err());
        assert_eq!(log.enforce_retention(i64::MAX).await.unwrap(), 0);
        log.close().await.unwrap();
    });
    assert!(
        files(path) == before,
        "recovery changed a file of a damaged log"
    );
}

#[test]
fn damage_followed_by_valid_data_in_the_last_segment_is_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (segments, batch) = write_log(&path, &small_config());
    assert_eq!(segments.len(), 1);
    // A byte of batch 5's record, batches 6..29 intact after it.
    flip(&segments[0], 5 * batch + batch / 2);
    assert_offline_untouched(&path, &small_config(), &segments[0], 5);
    // Still offline, still untouched, at every open.
    assert_offline_untouched(&path, &small_config(), &segments[0], 5);
}

#[test]
fn damage_in_a_closed_segment_takes_the_log_offline_and_keeps_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let config = rolling_config();
    let (segments, batch) = write_log(&path, &config);
    assert!(segments.len() >= 3, "{segments:?}");
    // Closed segments are trusted through their indexes below the recovery point; lower
    // it, as a crash after the roll would have left it, so recovery scans them.
    std::fs::write(path.join(RECOVERY_POINT_FILE), "0\n").unwrap();
    flip(&segments[1], batch + 100);
    let (base, _) = crate::storage::parse_segment_file_name(
        &segments[1].file_name().unwrap().to_string_lossy(),
    )
    .unwrap();
    assert_offline_untouched(&path, &config, &segments[1], base + 1);
}

#[test]
fn a_missing_middle_segment_takes_the_log_offline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let config = rolling_config();
    let (segments, _) = write_log(&path, &config);
    assert!(segments.len() >= 3, "{segments:?}");
    let (base, _) = crate::storage::parse_segment_file_name(
        &segments[1].file_name().unwrap().to_string_lossy(),
    )
    .unwrap();
    std::fs::rename(&segments[1], path.join("aside")).unwrap();
    assert_offline_untouched(&path, &config, &segments[2], base);
}

#[test]
fn a_zeroed_sector_before_valid_data_is_a_torn_tail() {
    // A power cut may keep a later sector of one write and lose an earlier one: what was
    // lost reads as zeros (pre-allocated space), and none of it was ever flushed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (segments, batch) = write_log(&path, &small_config());
    let zero_from = (10 * batch).div_ceil(512) * 512;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segments[0])
        .unwrap();
    f.write_all_at(&[0u8; 512], zero_from).unwrap();
    drop(f);
    let path2 = path.clone();
    run(async move {
        let log = PartitionLog::open(path2, small_config(), 1).await.unwrap();
        assert_eq!(log.offline_reason(), None);
        // Everything from the batch holding the zeroed sector's first byte on is gone.
        assert_eq!(log.log_end_offset(), (zero_from / batch) as i64);
        assert_eq!(read_all(&log, 0).await.len() as i64, log.log_end_offset());
        let info = log.append(make_batch(1, 1000, 10), false, 1000).unwrap();
        log.wait_durable(info.end_position).await.unwrap();
    });
}

#[test]
fn a_read_that_meets_damage_takes_the_log_offline_and_the_next_open_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let config = rolling_config();
    let (segments, batch) = write_log(&path, &config);
    // The first segment is trusted at open (index below the recovery point): only a read
    // meets the damage.
    flip(&segments[0], 2 * batch + 200);
    let (path2, config2, rp_file) = (path.clone(), config.clone(), log_dir_file(&segments[0]));
    run(async move {
        let log = PartitionLog::open(path2, config2, 1).await.unwrap();
        assert_eq!(log.offline_reason(), None);
        // One batch per read (max_bytes 1): the batch right before the damage is served,
        // and the log stays online (a batch a read does not return is not checked).
        let before = log.read(1, i64::MAX, 1).await.unwrap();
        assert_eq!(before.batches.len(), 1);
        assert_eq!(log.offline_reason(), None);
        let err = log.read(2, i64::MAX, 1 << 20).await.unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(log.offline_reason().is_some());
        assert!(log.append(make_batch(1, 1000, 10), false, 1000).is_err());
        // The lowered recovery point is written by a background task.
        for _ in 0..100 {
            if std::fs::read_to_string(&rp_file).unwrap().trim() == "0" {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
        log.close().await.unwrap();
    });
    assert_offline_untouched(&path, &config, &segments[0], 2);
}

#[test]
fn the_last_batch_before_a_damaged_segment_is_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let config = rolling_config();
    let (segments, batch) = write_log(&path, &config);
    let second_base =
        crate::storage::parse_segment_file_name(segments[1].file_name().unwrap().to_str().unwrap())
            .unwrap()
            .0;
    flip(&segments[1], batch / 2);
    run(async move {
        let log = PartitionLog::open(path, config, 1).await.unwrap();
        let last = log.read(second_base - 1, i64::MAX, 1).await.unwrap();
        assert_eq!(
            last.batches.len(),
            1,
            "the batch before the damaged segment"
        );
        assert_eq!(log.offline_reason(), None);
        assert!(log.read(second_base, i64::MAX, 1).await.is_err());
        assert!(log.offline_reason().is_some());
        log.close().await.unwrap();
    });
}

fn log_dir_file(segment: &Path) -> PathBuf {
    segment.parent().unwrap().join(RECOVERY_POINT_FILE)
}

#[test]
fn every_rolled_segment_gets_its_index_and_moves_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let path2 = path.clone();
    run(async move {
        let log = PartitionLog::open(path2.clone(), rolling_config(), 1)
            .await
            .unwrap();
        // Each append durable before the next: every roll seals a segment that is already
        // durable (the case that never got an index).
        for i in 0..30 {
            append_n(&log, 1, 1, 1000 + i, 1000).await;
        }
        // Indexes and recovery point are written by a background task.
        for _ in 0..200 {
            let segments = segment_files(&path2);
            let (last_base, _) =
                crate::storage::parse_segment_file_name(segments.last().unwrap()).unwrap();
            let rp = std::fs::read_to_string(path2.join(RECOVERY_POINT_FILE)).unwrap_or_default();
            if rp.trim() == last_base.to_string() {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
        // No close: a crash now must find every closed segment indexed.
        drop(log);
    });
    let segments = segment_files(&path);
    assert!(segments.len() >= 3, "{segments:?}");
    for s in &segments[..segments.len() - 1] {
        assert!(
            path.join(s).with_extension("index").exists(),
            "{s} has no index"
        );
    }
    let (last_base, _) = crate::storage::parse_segment_file_name(segments.last().unwrap()).unwrap();
    let recovery_point: i64 = std::fs::read_to_string(path.join(RECOVERY_POINT_FILE))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        recovery_point, last_base,
        "the recovery point is the start of the active segment"
    );
}
