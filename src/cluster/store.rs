//! Durable home of the metadata image on a single node: `<data>/__cluster/metadata.json`.
//!
//! Written atomically (temporary file, fsync, rename, fsync of the directory) so a crash
//! leaves either the old image or the new one. Raft group 0 replaces this file later.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::image::MetadataImage;

/// Directory under the data dir that holds cluster state.
pub const CLUSTER_DIR: &str = "__cluster";
const IMAGE_FILE: &str = "metadata.json";

/// Why the metadata image could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing the file failed.
    #[error("metadata file {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file exists but is not a valid image.
    #[error("metadata file {path} is corrupt: {source}")]
    Corrupt {
        /// The file involved.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads the image, or an empty one on a fresh data directory.
pub fn load(data_dir: &Path) -> Result<MetadataImage, StoreError> {
    let path = data_dir.join(CLUSTER_DIR).join(IMAGE_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
            path: path.clone(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MetadataImage::default()),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Persists the image atomically. Blocking: run it off the shard's reactor.
pub fn save(data_dir: &Path, image: &MetadataImage) -> Result<(), StoreError> {
    let dir = data_dir.join(CLUSTER_DIR);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = dir.join(IMAGE_FILE);
    let tmp = dir.join(format!("{IMAGE_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(image).map_err(|source| StoreError::Corrupt {
        path: path.clone(),
        source,
    })?;
    let mut file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(&bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(&dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::TopicMeta;
    use std::sync::Arc;

    #[test]
    fn image_round_trips_and_fresh_dir_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), MetadataImage::default());
        let mut image = MetadataImage {
            version: 3,
            ..Default::default()
        };
        image.topics.insert(
            "orders".into(),
            Arc::new(TopicMeta {
                name: "orders".into(),
                id: uuid::Uuid::new_v4(),
                partitions: 6,
                configs: [("retention.ms".to_string(), "1000".to_string())].into(),
                internal: false,
            }),
        );
        save(dir.path(), &image).unwrap();
        assert_eq!(load(dir.path()).unwrap(), image);
    }

    #[test]
    fn corrupt_file_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(CLUSTER_DIR)).unwrap();
        fs::write(dir.path().join(CLUSTER_DIR).join(IMAGE_FILE), b"{not json").unwrap();
        assert!(matches!(load(dir.path()), Err(StoreError::Corrupt { .. })));
    }
}
