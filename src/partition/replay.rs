//! Rebuilding a partition's derived state at open (and after a truncation): the newest
//! valid snapshot, then every stored batch after it through the same `apply_one` the
//! leader's append uses. Duplicates are then still recognised, open transactions still hold
//! back the last stable offset and aborted ones are still known after a restart.

use std::path::Path;

use super::snapshot;
use super::{apply_one, ProducerStateTable, TxnIndex};
use crate::storage::records::decode_marker;
use crate::storage::{BatchHeader, PartitionLog, StorageError};

/// Bytes read per step when replaying a partition's batches.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// The producer table and transaction index of the log as it stands: from the snapshot if
/// it is not beyond the log end (a snapshot beyond it describes batches that are gone and
/// is deleted), plus a replay of every batch after it.
pub(super) async fn rebuild(
    log: &PartitionLog,
    dir: &Path,
) -> Result<(ProducerStateTable, TxnIndex), StorageError> {
    let end = log.log_end_offset();
    let start = log.log_start_offset();
    let snapshot_dir = dir.to_path_buf();
    let snapshot = glommio::executor()
        .spawn_blocking(move || snapshot::read(&snapshot_dir))
        .await;
    let (mut producers, mut txns, mut offset) = match snapshot {
        Some(snap) if snap.next_offset <= end => {
            let from = snap.next_offset.max(start);
            let (producers, txns) = snap.restore();
            (producers, txns, from)
        }
        stale => {
            if stale.is_some() {
                discard_snapshot(dir).await;
            }
            (ProducerStateTable::default(), TxnIndex::default(), start)
        }
    };
    while offset < end {
        let fetched = log.read(offset, end, REPLAY_READ_BYTES).await?;
        if fetched.batches.is_empty() {
            break;
        }
        for batch in &fetched.batches {
            let Ok(header) = BatchHeader::parse(batch) else {
                continue;
            };
            if header.last_offset() < offset {
                continue;
            }
            let commit_marker = decode_marker(batch).map(|m| m.commit);
            apply_one(
                &mut producers,
                &mut txns,
                &header,
                commit_marker,
                header.max_timestamp_ms,
            );
            offset = offset.max(header.last_offset() + 1);
        }
    }
    txns.prune_below(start);
    Ok((producers, txns))
}

/// Deletes a snapshot that lies beyond the log, so no later open can trust it.
async fn discard_snapshot(dir: &Path) {
    let path = dir.join(snapshot::SNAPSHOT_FILE);
    let shown = path.display().to_string();
    let removed = glommio::executor()
        .spawn_blocking(move || std::fs::remove_file(&path))
        .await;
    match removed {
        Ok(()) => tracing::info!(path = %shown, "discarded a producer snapshot beyond the log end"),
        Err(e) => {
            tracing::warn!(path = %shown, error = %e, "could not discard a stale producer snapshot")
        }
    }
}
