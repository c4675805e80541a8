//! Exactly-once building blocks: producer ids and per-partition idempotent-producer state.

pub mod producer_ids;
pub mod producer_state;

pub use producer_state::{ProducerStateTable, Verdict};

use crate::storage::{BatchHeader, PartitionLog, StorageError};

/// Bytes read per step when replaying a partition's batch headers.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// Rebuilds a partition's producer state by replaying every stored batch header, so
/// duplicates are still recognised after a restart.
pub async fn rebuild_producer_state(
    log: &PartitionLog,
) -> Result<ProducerStateTable, StorageError> {
    let mut table = ProducerStateTable::default();
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    while offset < end {
        let fetched = log.read(offset, end, REPLAY_READ_BYTES).await?;
        if fetched.batches.is_empty() {
            break;
        }
        for batch in &fetched.batches {
            let Ok(header) = BatchHeader::parse(batch) else {
                continue;
            };
            table.record(&header, header.base_offset, header.max_timestamp_ms);
            offset = offset.max(header.last_offset() + 1);
        }
    }
    Ok(table)
}
