//! Which topic a partition directory belongs to. Directories are named by topic name and
//! index, and a topic deleted and re-created under the same name reuses the name: a
//! directory a crash left behind mid-delete must never be mistaken for the new topic's
//! (its records, producer state and log start would come back). Each directory therefore
//! carries the topic id in a `partition.metadata` file, as Kafka's do.

use std::path::{Path, PathBuf};

use crate::storage::{create_dir_durably, sync_dir, write_atomically, StorageError};

/// The file naming the topic id of a partition directory (Kafka's name for it).
pub const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// The topic id recorded in `dir`, if the file is there and readable. Blocking.
pub fn read_topic_id(dir: &Path) -> Option<uuid::Uuid> {
    let text = std::fs::read_to_string(dir.join(PARTITION_METADATA_FILE)).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("topic_id:"))
        .and_then(|id| uuid::Uuid::parse_str(id.trim()).ok())
}

/// Makes `dir` the directory of the topic with `topic_id`, durably: data of another topic
/// of the same name (left by a crash during its deletion) is removed first; a directory
/// without the file (written before it existed) is adopted. Blocking; run it off the shard.
pub fn claim(dir: &Path, topic_id: uuid::Uuid) -> Result<(), StorageError> {
    match read_topic_id(dir) {
        Some(id) if id == topic_id => return Ok(()),
        Some(other) => {
            tracing::warn!(dir = %dir.display(), old_topic_id = %other, topic_id = %topic_id, "removing the data of a deleted topic of the same name");
            remove_durably(dir)?;
        }
        None => {}
    }
    create_dir_durably(dir)?;
    let text = format!("version: 0\ntopic_id: {}\n", topic_id.hyphenated());
    write_atomically(&dir.join(PARTITION_METADATA_FILE), text.as_bytes())
}

/// Removes a directory tree and makes that durable. Blocking.
pub fn remove_durably(dir: &Path) -> Result<(), StorageError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io("remove dir", dir, e)),
    }
    match dir.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Partition directories under `data_dir` (laid out `<topic>/<index>`) whose topic id is
/// not that of a live topic: what a crash during a topic deletion leaves. `live` answers
/// the live topic id of a name. Directories without a `partition.metadata` are not listed
/// (nothing says whose they are). Blocking; for start-up.
pub fn orphans(data_dir: &Path, live: impl Fn(&str, i32) -> Option<uuid::Uuid>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(topics) = std::fs::read_dir(data_dir) else {
        return out;
    };
    for topic in topics.flatten() {
        let Ok(name) = topic.file_name().into_string() else {
            continue;
        };
        if !topic.path().is_dir() {
            continue;
        }
        let Ok(partitions) = std::fs::read_dir(topic.path()) else {
            continue;
        };
        for partition in partitions.flatten() {
            let Some(index) = partition
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let dir = partition.path();
            if let Some(id) = read_topic_id(&dir) {
                if live(&name, index) != Some(id) {
                    out.push(dir);
                }
            }
        }
    }
    out
}
