//! Snapshots of a partition's producer state and transaction index, so a restart replays
//! only the log written after the last snapshot instead of the whole partition.
//!
//! A snapshot is taken only when the partition is quiet (everything appended is durable),
//! so its offset never lies beyond what recovery keeps; one whose offset is beyond the
//! recovered log end (or that does not parse) is ignored and the log is replayed from its
//! start, which is always correct, only slower.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::producers::{ProducerEntry, ProducerStateTable};
use super::txn_index::{AbortedTxn, TxnIndex};

/// File name in the partition directory.
pub const SNAPSHOT_FILE: &str = "producer-snapshot.json";
const SNAPSHOT_VERSION: u32 = 1;

/// What a snapshot holds: the state of every batch below `next_offset`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    version: u32,
    /// The state covers exactly the batches below this offset.
    pub next_offset: i64,
    producers: Vec<(i64, ProducerEntry)>,
    ongoing: Vec<(i64, i64)>,
    aborted: Vec<AbortedTxn>,
}

impl Snapshot {
    /// Captures the state as of `next_offset` (call with no await in between).
    pub fn capture(next_offset: i64, producers: &ProducerStateTable, txns: &TxnIndex) -> Snapshot {
        let (ongoing, aborted) = txns.parts();
        Snapshot {
            version: SNAPSHOT_VERSION,
            next_offset,
            producers: producers.entries(),
            ongoing,
            aborted,
        }
    }

    /// The state it holds.
    pub fn restore(self) -> (ProducerStateTable, TxnIndex) {
        (
            ProducerStateTable::from_entries(self.producers),
            TxnIndex::from_parts(self.ongoing, self.aborted),
        )
    }
}

/// Writes a snapshot atomically (temporary file, fsync, rename). Blocking.
pub fn write(dir: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(snapshot).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(SNAPSHOT_FILE))
}

/// Reads the snapshot of a partition directory, if there is a valid one.
pub fn read(dir: &Path) -> Option<Snapshot> {
    let bytes = fs::read(dir.join(SNAPSHOT_FILE)).ok()?;
    let snapshot: Snapshot = serde_json::from_slice(&bytes).ok()?;
    (snapshot.version == SNAPSHOT_VERSION).then_some(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let txns = TxnIndex::from_parts(
            vec![(9, 40)],
            vec![AbortedTxn {
                producer_id: 7,
                first_offset: 10,
                last_offset: 12,
            }],
        );
        let snapshot = Snapshot::capture(50, &ProducerStateTable::default(), &txns);
        write(dir.path(), &snapshot).unwrap();
        let back = read(dir.path()).expect("snapshot reads back");
        assert_eq!(back.next_offset, 50);
        let (_, txns) = back.restore();
        assert_eq!(txns.last_stable_offset(100), 40);
        assert_eq!(txns.aborted_in(0, 100).len(), 1);
        fs::write(dir.path().join(SNAPSHOT_FILE), b"{oops").unwrap();
        assert!(read(dir.path()).is_none());
    }
}
