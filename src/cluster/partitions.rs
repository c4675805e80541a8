//! The partitions a shard owns, and which shard owns which partition.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use ahash::AHashMap;
use kafka_protocol::error::ResponseError;

use super::image::{MetadataImage, TopicMeta};
use super::topic_config::TopicConfig;
use crate::raft::{ReplicateError, ReplicatedLog};

/// The shard that owns `partition` of `topic` when `shards` shards run.
///
/// Stable across restarts with the same shard count (FNV-1a of the name, not a seeded hash),
/// and spreads a topic's partitions round-robin over shards.
pub fn shard_for(topic: &str, partition: i32, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let shards = shards.max(1) as u64;
    ((hash % shards + partition.max(0) as u64) % shards) as usize
}

/// The directory of one partition's log.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(topic).join(partition.to_string())
}

/// One partition served by this shard.
pub struct Partition {
    /// The topic this partition belongs to (shared with the image).
    pub topic: Arc<TopicMeta>,
    /// The partition index.
    pub index: i32,
    /// The replicated log every write goes through.
    pub log: ReplicatedLog,
    /// Idempotent producers' last batches on this partition (rebuilt from the log at open).
    pub producers: RefCell<crate::txn::ProducerStateTable>,
    /// Open and aborted transactions on this partition (last stable offset, aborted list),
    /// rebuilt from the log at open.
    pub txns: RefCell<crate::txn::TxnIndex>,
    config: RefCell<TopicConfig>,
    /// The partition's directory (segments, snapshots).
    pub dir: PathBuf,
    /// Log end offset of the last producer-state snapshot written.
    snapshot_offset: Cell<i64>,
}

impl Partition {
    /// Checks a client's `current_leader_epoch` (KIP-320; -1 skips the check) against this
    /// partition's and returns the partition's epoch: an older one is FENCED_LEADER_EPOCH, a
    /// newer one UNKNOWN_LEADER_EPOCH, so clients refresh metadata as after a leader change.
    pub fn check_leader_epoch(&self, current_leader_epoch: i32) -> Result<i32, ResponseError> {
        let epoch = self.log.leader_epoch();
        if current_leader_epoch >= 0 && current_leader_epoch < epoch {
            return Err(ResponseError::FencedLeaderEpoch);
        }
        if current_leader_epoch > epoch {
            return Err(ResponseError::UnknownLeaderEpoch);
        }
        Ok(epoch)
    }

    /// How far read_committed consumers may read: the first offset of the oldest open
    /// transaction, capped by the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        self.txns
            .borrow()
            .last_stable_offset(self.log.high_watermark())
    }

    /// Snapshots the producer state and transaction index if the partition is quiet and
    /// moved since the last snapshot, so a restart replays only what came after.
    pub async fn snapshot_producer_state(&self) {
        if let Some(offset) =
            crate::txn::snapshot_if_quiet(self, self.dir.clone(), self.snapshot_offset.get()).await
        {
            self.snapshot_offset.set(offset);
        }
    }

    /// The topic's effective config as this shard last applied it.
    pub fn config(&self) -> TopicConfig {
        self.config.borrow().clone()
    }
}

/// The partitions owned by one shard, by topic then partition (looked up by `&str`, so
/// the produce and fetch paths allocate nothing to find a partition).
#[derive(Default)]
pub struct PartitionTable {
    partitions: RefCell<AHashMap<String, AHashMap<i32, Rc<Partition>>>>,
}

impl PartitionTable {
    /// The partition, if this shard owns it.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        // Borrow only inside this call: callers await on the returned Rc, never the map.
        self.partitions
            .borrow()
            .get(topic)
            .and_then(|t| t.get(&partition))
            .cloned()
    }

    /// All partitions of this shard.
    pub fn all(&self) -> Vec<Rc<Partition>> {
        self.partitions
            .borrow()
            .values()
            .flat_map(|t| t.values().cloned())
            .collect()
    }

    /// The indexes of `topic`'s partitions this shard owns (the coordinators of internal
    /// topics serve exactly these).
    pub fn indexes_of(&self, topic: &str) -> Vec<i32> {
        self.partitions
            .borrow()
            .get(topic)
            .map(|t| t.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Number of partitions this shard owns.
    pub fn len(&self) -> usize {
        self.partitions.borrow().values().map(|t| t.len()).sum()
    }

    /// Whether this shard owns no partitions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Brings the table in line with `image`: opens (and recovers) partitions this shard
    /// now owns, closes and deletes the data of partitions whose topic is gone or was
    /// re-created, and applies config changes.
    pub async fn apply(
        &self,
        image: &MetadataImage,
        data_dir: &Path,
        shard: usize,
        shards: usize,
        leader_epoch: i32,
        cache_budget_bytes: usize,
    ) -> Result<(), ReplicateError> {
        // Drop what no longer exists (topic deleted, or re-created under a new id).
        let stale: Vec<Rc<Partition>> = self
            .all()
            .into_iter()
            .filter(|p| match image.topic(&p.topic.name) {
                Some(t) => t.id != p.topic.id || p.index >= t.partitions,
                None => true,
            })
            .collect();
        for partition in stale {
            self.remove(&partition.topic.name, partition.index);
            if let Err(e) = partition.log.close().await {
                tracing::warn!(topic = %partition.topic.name, partition = partition.index, error = %e, "closing deleted partition");
            }
            let dir = partition_dir(data_dir, &partition.topic.name, partition.index);
            remove_dir(dir).await;
        }
        // Open what is new; refresh the config of what stays.
        for topic in image.topics.values() {
            let config = topic.config();
            for index in 0..topic.partitions {
                if shard_for(&topic.name, index, shards) != shard {
                    continue;
                }
                if let Some(existing) = self.get(&topic.name, index) {
                    if *existing.config.borrow() != config {
                        existing
                            .log
                            .log()
                            .update_config(config.log_config(cache_budget_bytes));
                        *existing.config.borrow_mut() = config.clone();
                    }
                    continue;
                }
                let dir = partition_dir(data_dir, &topic.name, index);
                let log = ReplicatedLog::open(
                    dir.clone(),
                    config.log_config(cache_budget_bytes),
                    leader_epoch,
                )
                .await?;
                let (producers, txns) = crate::txn::rebuild_producer_state(log.log(), &dir).await?;
                let partition = Rc::new(Partition {
                    topic: topic.clone(),
                    index,
                    log,
                    producers: RefCell::new(producers),
                    txns: RefCell::new(txns),
                    config: RefCell::new(config.clone()),
                    dir,
                    snapshot_offset: Cell::new(-1),
                });
                self.partitions
                    .borrow_mut()
                    .entry(topic.name.clone())
                    .or_default()
                    .insert(index, partition);
            }
        }
        Ok(())
    }

    fn remove(&self, topic: &str, partition: i32) {
        let mut partitions = self.partitions.borrow_mut();
        if let Some(t) = partitions.get_mut(topic) {
            t.remove(&partition);
            if t.is_empty() {
                partitions.remove(topic);
            }
        }
    }

    /// Flushes and closes every partition (clean shutdown).
    pub async fn close_all(&self) {
        for partition in self.all() {
            if let Err(e) = partition.log.close().await {
                tracing::error!(topic = %partition.topic.name, partition = partition.index, error = %e, "flush at shutdown failed");
                continue;
            }
            partition.snapshot_producer_state().await;
        }
    }
}

/// Removes a directory tree off the reactor thread; a failure is logged, not fatal.
pub async fn remove_dir(dir: PathBuf) {
    let shown = dir.display().to_string();
    let result = glommio::executor()
        .spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(dir = %shown, error = %e, "could not remove partition directory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_of_a_topic_spread_over_all_shards() {
        let shards = 4;
        let mut seen = [0usize; 4];
        for p in 0..8 {
            seen[shard_for("orders", p, shards)] += 1;
        }
        assert_eq!(seen, [2, 2, 2, 2]);
        assert_eq!(shard_for("orders", 3, 1), 0);
        // Stable: the same inputs always map to the same shard.
        assert_eq!(shard_for("orders", 5, 3), shard_for("orders", 5, 3));
    }
}
