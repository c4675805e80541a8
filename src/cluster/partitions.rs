//! The partitions a shard owns, and which shard owns which partition.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use ahash::AHashMap;

use super::image::MetadataImage;
use crate::partition::Partition;
use crate::raft::ReplicateError;

/// Test hook, never set in production: `SLUICE_TEST_PANIC_ON_TOPIC=<name>` makes the shard
/// that opens a partition of topic `<name>` panic, so an end-to-end test can check that a
/// shard panic stops the whole broker (`server::start`). Read once; it costs one comparison
/// per partition opened, nowhere near a request.
pub const TEST_PANIC_ON_TOPIC_ENV: &str = "SLUICE_TEST_PANIC_ON_TOPIC";

/// The topic named by [`TEST_PANIC_ON_TOPIC_ENV`], if set (read on first use).
pub fn test_panic_topic() -> Option<&'static str> {
    static TOPIC: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    TOPIC
        .get_or_init(|| {
            std::env::var(TEST_PANIC_ON_TOPIC_ENV)
                .ok()
                .filter(|t| !t.is_empty())
        })
        .as_deref()
}

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
        cache_budget_bytes: usize,
    ) -> Result<(), ReplicateError> {
        // Drop what no longer exists (topic deleted, or re-created under a new id).
        let stale: Vec<Rc<Partition>> = self
            .all()
            .into_iter()
            .filter(|p| match image.topic(&p.topic) {
                Some(t) => t.id != p.topic_id || p.index >= t.partitions,
                None => true,
            })
            .collect();
        for partition in stale {
            self.remove(&partition.topic, partition.index);
            if let Err(e) = partition.close().await {
                tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "closing deleted partition");
            }
            remove_dir(partition.dir().to_path_buf()).await;
        }
        // Open what is new; refresh the config of what stays.
        for topic in image.topics.values() {
            let config = topic.config();
            for index in 0..topic.partitions {
                if shard_for(&topic.name, index, shards) != shard {
                    continue;
                }
                if let Some(existing) = self.get(&topic.name, index) {
                    existing.update_config(config.clone(), cache_budget_bytes);
                    continue;
                }
                if test_panic_topic() == Some(topic.name.as_str()) {
                    panic!(
                        "test hook {TEST_PANIC_ON_TOPIC_ENV}: shard {shard} opening {}/{index}",
                        topic.name
                    );
                }
                let partition = Partition::open(
                    Arc::from(topic.name.as_str()),
                    topic.id,
                    index,
                    partition_dir(data_dir, &topic.name, index),
                    config.clone(),
                    cache_budget_bytes,
                )
                .await?;
                self.partitions
                    .borrow_mut()
                    .entry(topic.name.clone())
                    .or_default()
                    .insert(index, Rc::new(partition));
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
            if let Err(e) = partition.close().await {
                tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "flush at shutdown failed");
            }
        }
    }
}

/// Removes a directory tree off the reactor thread; a failure is logged, not fatal.
pub async fn remove_dir(dir: PathBuf) {
    let shown = dir.display().to_string();
    let result = glommio::executor()
        .spawn_blocking(move || crate::partition::identity::remove_durably(&dir))
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
        // Stable across restarts and builds: pinned values of FNV-1a, not a seeded hash (a
        // change here moves partitions to other shards and their data out of reach).
        assert_eq!(shard_for("orders", 5, 3), 0);
        assert_eq!(shard_for("orders", 2, 7), 6);
    }
}
