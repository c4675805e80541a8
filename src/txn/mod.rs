//! Exactly-once: producer ids, per-partition idempotent-producer state, the partition side
//! of transactions (last stable offset, aborted transactions, markers) and the transaction
//! coordinator (a sans-IO core in [`coordinator`], its per-shard [`driver`]).

pub mod coordinator;
pub mod driver;
pub mod markers;
pub mod partition_txns;
pub mod producer_ids;
pub mod producer_state;
pub mod records;
pub mod snapshot;

pub use partition_txns::{AbortedTxn, TxnIndex};
pub use producer_state::{ProducerStateTable, Verdict};

use crate::storage::{BatchHeader, PartitionLog, StorageError};

/// Bytes read per step when replaying a partition's batch headers.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// Whether a stored batch belongs to an aborted or still-open transaction, so readers of
/// internal topics (the group coordinator loading `__consumer_offsets`) skip it exactly as
/// a read_committed consumer would.
pub fn hidden_from_committed_readers(
    partition: &crate::cluster::Partition,
    header: &BatchHeader,
) -> bool {
    partition.txns.borrow().hides(header)
}

/// Rebuilds a partition's producer state and transaction index: from its last snapshot
/// (if valid for the recovered log) plus a replay of every batch header written after it,
/// or by replaying the whole log. Duplicates are then still recognised, open transactions
/// still hold back the last stable offset and aborted ones are still known after a restart.
pub async fn rebuild_producer_state(
    log: &PartitionLog,
    dir: &std::path::Path,
) -> Result<(ProducerStateTable, TxnIndex), StorageError> {
    let end = log.log_end_offset();
    let (mut table, mut txns, mut offset) = match snapshot::read(dir) {
        Some(snap) if snap.next_offset <= end => {
            let from = snap.next_offset.max(log.log_start_offset());
            let (table, txns) = snap.restore();
            (table, txns, from)
        }
        _ => (
            ProducerStateTable::default(),
            TxnIndex::default(),
            log.log_start_offset(),
        ),
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
            table.record(&header, header.base_offset, header.max_timestamp_ms);
            txns.on_data(&header);
            if let Some(marker) = partition_txns::decode_marker(batch) {
                txns.on_marker(header.producer_id, header.base_offset, marker.commit);
                table.record_marker(header.producer_id, header.producer_epoch);
            }
            offset = offset.max(header.last_offset() + 1);
        }
    }
    txns.prune_below(log.log_start_offset());
    Ok((table, txns))
}

/// Writes a snapshot of a partition's producer state if it is quiet (all appended data
/// durable) and has moved since `last_offset`; returns the offset snapshotted.
pub async fn snapshot_if_quiet(
    partition: &crate::cluster::Partition,
    dir: std::path::PathBuf,
    last_offset: i64,
) -> Option<i64> {
    let log = partition.log.log();
    let end = log.log_end_offset();
    if end == last_offset || log.durable_offset() != end {
        return None;
    }
    // Captured with no await between reading the end offset and the state.
    let snap =
        snapshot::Snapshot::capture(end, &partition.producers.borrow(), &partition.txns.borrow());
    let written = glommio::executor()
        .spawn_blocking(move || snapshot::write(&dir, &snap))
        .await;
    match written {
        Ok(()) => Some(end),
        Err(e) => {
            tracing::warn!(error = %e, "writing a producer-state snapshot failed");
            None
        }
    }
}
